"""The compiler: checks, derivations and emission of `.eqn` models."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jax

from ..dsl import ErrorList, EqnNameError, parse
from ..dsl.ast import Module
from ._check import check
from ._derive import Rule
from ._emit import RESERVED_NAMES, EqnModel, emit, evaluate, evaluate_many
from ._functions import PythonFunction, register_function
from ._print import render
from ._program import Program


def _read(path_or_source: str | Path) -> tuple[str | bytes, str]:
    """(text, filename) for a path, a zoo model name, or `.eqn` source text."""
    if isinstance(path_or_source, Path):
        return path_or_source.read_bytes(), str(path_or_source)
    text = str(path_or_source)
    if "\n" in text or "=" in text:
        return text, "<string>"
    candidate = Path(text)
    if candidate.exists():
        return candidate.read_bytes(), text
    zoo = resources.files("eqn.models").joinpath(f"{text}.eqn")
    if zoo.is_file():
        return zoo.read_bytes(), f"models/{text}.eqn"
    raise FileNotFoundError(f"no such model file or zoo model: {text!r}")


def load(path_or_source: str | Path, *, consts: dict | None = None, holomorphic: bool = False) -> Program:
    """Parse, check and derive a model; raise `ErrorList` (every error, located) on a bad file."""
    text, filename = _read(path_or_source)
    try:
        module = parse(text, filename)
    except ErrorList:
        raise
    except Exception as error:  # EqnSyntaxError
        raise ErrorList([error]) from None
    program = check(module, consts=consts, holomorphic=holomorphic)
    clashes = [spec for name, spec in program.params.items() if name in RESERVED_NAMES]
    if clashes:
        raise ErrorList([EqnNameError(f"param name '{spec.name}' clashes with a method of the compiled module; "
                                      "rename it", spec.span, filename=filename, source=module.source)
                         for spec in clashes])
    return program


def compile(path_or_source: str | Path | Program, *, key=None, consts: dict | None = None, dtype=None,
            holomorphic: bool = False, solver=None, dt: float | None = None) -> EqnModel:
    """Compile a `.eqn` file (a path, a zoo name such as "hopfield_mlp", or source text) into an
    Equinox module with parameters drawn from `key` (default PRNGKey(0)).

    `consts` overrides the file's constants; `holomorphic=True` refuses non-holomorphic operations;
    `solver` and `dt` set how `free`/`nudged` find fixed points.
    """
    program = path_or_source if isinstance(path_or_source, Program) else load(
        path_or_source, consts=consts, holomorphic=holomorphic)
    key = jax.random.PRNGKey(0) if key is None else key
    return emit(program, key, dtype=dtype, solver=solver, dt=dt)


def rules(model_or_path: EqnModel | Program | str | Path, **kwargs) -> dict[str, Rule]:
    """The derived learning rule of every parameter, by name."""
    if isinstance(model_or_path, EqnModel):
        return dict(model_or_path.program.rules)
    if isinstance(model_or_path, Program):
        return dict(model_or_path.rules)
    return dict(load(model_or_path, **kwargs).rules)


__all__ = ["compile", "load", "rules", "check", "EqnModel", "Program", "Rule", "register_function",
           "PythonFunction", "render", "evaluate", "evaluate_many", "Module"]
