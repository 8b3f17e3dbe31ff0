"""What every `eqn` subcommand shares: reading `--const` overrides, and loading a model with its
errors and warnings printed as the user should see them (located, no traceback)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..compiler import load, zoo
from ..dsl.errors import EqnError, ErrorList


def consts_from(pairs: list[str] | None) -> dict[str, float]:
    """The `--const NAME=VALUE` overrides as a dict; a malformed one exits with one line."""
    consts: dict[str, float] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"eqn: error: --const expects NAME=VALUE, got {pair!r}")
        try:
            number = float(value)
        except ValueError:
            raise SystemExit(f"eqn: error: --const {name}: {value!r} is not a number") from None
        consts[name.strip()] = int(number) if number.is_integer() else number
    return consts


def _load(path: str, consts: dict, holomorphic: bool = False):
    """A model file, or where no such file exists, the zoo model of that name (`eqn models`)."""
    if Path(path).is_dir():
        raise IsADirectoryError(21, "is a directory", path)
    if not Path(path).is_file():
        if path in zoo():
            return load(path, consts=consts, holomorphic=holomorphic)
        raise FileNotFoundError(path)
    return load(Path(path), consts=consts, holomorphic=holomorphic)


def load_or_report(path: str, consts: dict, holomorphic: bool = False):
    """The checked program after printing its warnings, or None after printing the located errors."""
    try:
        program = _load(path, consts, holomorphic)
    except (ErrorList, EqnError, OSError) as exc:
        _report(exc)
        return None
    for warning in program.warnings:
        print(warning.render(), file=sys.stderr)
    return program


def _report(exc: Exception) -> None:
    if isinstance(exc, ErrorList):
        print(exc.render(), file=sys.stderr)
    elif isinstance(exc, EqnError):
        print(exc.render(), file=sys.stderr)
    elif isinstance(exc, FileNotFoundError):
        hint = "" if Path(exc.args[0]).suffix or "/" in exc.args[0] else " or zoo model (`eqn models` lists them)"
        print(f"eqn: error: cannot read {exc.args[0]}: no such file{hint}", file=sys.stderr)
    elif isinstance(exc, (IsADirectoryError, PermissionError)):
        print(f"eqn: error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
    else:
        raise exc
