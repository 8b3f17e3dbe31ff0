"""The one context the checker's passes share: the module, what each pass found, and the errors
and warnings of the whole file (all reported in one pass)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..dsl import ast
from ..dsl.errors import EqnError, EqnWarning
from ._ir import Node
from ._program import NonHolomorphic, ParamSpec


@dataclass
class Scope:
    """What a name may refer to where an expression is being lowered: `where` is "dynamics",
    "cost", "tie" or "fn"; `locals` binds a function's parameters; `uses_beta` collects where
    `beta` was read."""

    where: str
    locals: dict[str, Node] = field(default_factory=dict)
    uses_beta: list[ast.Span] = field(default_factory=list)


@dataclass
class Declarations:
    """Every statement of the file, sorted by kind (the first pass)."""

    model: ast.ModelDecl | None = None
    names: dict[str, tuple[str, ast.Span]] = field(default_factory=dict)  # name → (kind, span)
    consts: dict[str, ast.ConstDecl] = field(default_factory=dict)
    variables: dict[str, ast.VarDecl] = field(default_factory=dict)
    functions: dict[str, ast.FnDecl] = field(default_factory=dict)
    lets: dict[str, ast.LetDecl | ast.CoordinateDecl] = field(default_factory=dict)
    coordinates: dict[str, ast.CoordinateDecl] = field(default_factory=dict)
    ties: dict[str, ast.TieDecl] = field(default_factory=dict)
    pairs: list[ast.PairDecl] = field(default_factory=list)
    energies: list[ast.EnergyDecl] = field(default_factory=list)
    costs: list[ast.CostDecl] = field(default_factory=list)
    predicts: list[ast.PredictDecl] = field(default_factory=list)
    flows: list[ast.FlowEq] = field(default_factory=list)
    maps: list[ast.MapEq] = field(default_factory=list)


@dataclass
class Lowered:
    """What lowering has built so far, by name, and the state of each lazy definition ("active"
    while it is being lowered, "done" or "failed" after)."""

    lets: dict[str, Node] = field(default_factory=dict)
    ties: dict[str, Node] = field(default_factory=dict)
    function_bodies: dict[str, Node] = field(default_factory=dict)  # elementwise user functions
    progress: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) → state
    lets_with_beta: dict[str, ast.Span] = field(default_factory=dict)
    non_holomorphic: dict[tuple, NonHolomorphic] = field(default_factory=dict)


@dataclass
class Context:
    """The checker's state: the module and its options, the declarations, the constants and
    variables resolved from them, lowered definitions, and the diagnostics."""

    module: ast.Module
    const_overrides: dict
    require_holomorphic: bool
    decls: Declarations = field(default_factory=Declarations)
    consts: dict[str, float] = field(default_factory=dict)
    const_progress: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, tuple] = field(default_factory=dict)
    targets: dict[str, tuple] = field(default_factory=dict)
    states: dict[str, tuple] = field(default_factory=dict)
    params: dict[str, ParamSpec] = field(default_factory=dict)
    leaves: dict[str, Node] = field(default_factory=dict)
    output: str | None = None
    lowered: Lowered = field(default_factory=Lowered)
    used: set[str] = field(default_factory=set)
    errors: list[EqnError] = field(default_factory=list)
    warnings: list[EqnError] = field(default_factory=list)

    def error(self, cls, message: str, span: ast.Span | None) -> None:
        """Record an error of class `cls` (once, however often a pass meets it)."""
        span = span or ast.Span.unknown()
        key = (cls, message, span.line, span.column)
        if all((type(e), e.message, e.span.line, e.span.column) != key for e in self.errors):
            self.errors.append(cls(message, span))

    def warn(self, message: str, span: ast.Span) -> None:
        self.warnings.append(EqnWarning(message, span))

    def model_span(self) -> ast.Span:
        """Where file-wide errors point: the `model` line, or the start of the file."""
        return self.decls.model.span if self.decls.model else ast.Span.unknown()


def suggest(name: str, candidates) -> str:
    """'; did you mean …?' for the closest of `candidates`, or nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def a(noun: str) -> str:
    """The noun with its indefinite article."""
    return f"an {noun}" if noun[:1] in tuple("aeiou") else f"a {noun}"


def fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
