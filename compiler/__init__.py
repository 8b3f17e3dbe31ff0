"""The compiler: checks, IR, derivations, learning rules and the per-sample JAX evaluation of a
model's expressions. It imports `eqn.dsl` only; the compiled module lives in `eqn.runtime`."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ..dsl import ErrorList, EqnNameError, parse
from ..dsl.ast import Module
from . import _library  # noqa: F401  (registers the operations' records)
from ._check import check
from ._evaluate import evaluate, evaluate_many
from ._functions import PythonFunction, register_function
from ._ir import Node, state_independent
from ._print import render
from ._program import MODULE_ATTRIBUTES, Program
from ._rules import Rule


def read_model(path_or_source: str | Path) -> tuple[str | bytes, str]:
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


_SENTENCE_END = re.compile(r"(?<!\bApp)(?<!\bEq)(?<!\bFig)(?<!\bal)\.(\s|$)")  # not after "App." or "et al."


def zoo() -> dict[str, str]:
    """The zoo: each model shipped in `eqn.models` by name, with the first sentence of its header
    comment (what it is)."""
    models = {}
    for entry in sorted(resources.files("eqn.models").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".eqn"):
            header = []
            for line in entry.read_text().splitlines():
                if not line.startswith("#"):
                    break
                header.append(line.lstrip("#").strip())
            text = " ".join(header)
            end = _SENTENCE_END.search(text)
            models[entry.name[:-len(".eqn")]] = text[:end.start() + 1] if end else text
    return models


def load(path_or_source: str | Path, *, consts: dict | None = None, holomorphic: bool = False) -> Program:
    """Parse, check and derive a model.

    Args:
        path_or_source: a `Path`, a path or zoo name ("hopfield_mlp"), or `.eqn` source text.
        consts: values that override the file's constants.
        holomorphic: refuse non-holomorphic operations.

    Returns:
        The checked, derived `Program`.

    Raises:
        ErrorList: every error of the file, located.
    """
    text, filename = read_model(path_or_source)
    try:
        module = parse(text, filename)
    except ErrorList:
        raise
    except Exception as error:  # EqnSyntaxError
        raise ErrorList([error]) from None
    program = check(module, consts=consts, holomorphic=holomorphic)
    clashes = [spec for name, spec in program.params.items() if name in MODULE_ATTRIBUTES]
    if clashes:
        raise ErrorList([EqnNameError(f"param name '{spec.name}' clashes with a method of the compiled module; "
                                      "rename it", spec.span, filename=filename, source=module.source)
                         for spec in clashes])
    return program


def rules(program_or_path: Program | str | Path, **kwargs) -> dict[str, Rule]:
    """The derived learning rule of every parameter, by name.

    Args:
        program_or_path: a `Program`, or what `load` takes.
        **kwargs: passed to `load` (consts, holomorphic).
    """
    program = program_or_path if isinstance(program_or_path, Program) else load(program_or_path, **kwargs)
    return dict(program.rules)


__all__ = ["load", "rules", "check", "read_model", "zoo", "Program", "Rule", "register_function", "PythonFunction",
           "render", "evaluate", "evaluate_many", "state_independent", "Node", "Module", "MODULE_ATTRIBUTES"]
