"""The abstract syntax tree of a `.eqn` file: plain frozen dataclasses, each with a source span.

The tree records what the author wrote and where; it knows nothing of shapes, values or JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of one source file; lines and columns count from 1."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def unknown() -> "Span":
        return Span(1, 1, 1, 1)


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Number(Expr):
    value: float
    is_integer: bool


@dataclass(frozen=True)
class Name(Expr):
    """A reference to a constant, variable, let binding or parameter."""

    id: str


@dataclass(frozen=True)
class Beta(Expr):
    """The nudging strength β, placed explicitly by the author."""


@dataclass(frozen=True)
class BinOp(Expr):
    op: str  # one of + - * / @ . ^
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr


@dataclass(frozen=True)
class Transpose(Expr):
    operand: Expr


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span = field(compare=False)


@dataclass(frozen=True)
class Call(Expr):
    """`f(a, b, k=v)`; `primes` counts derivative marks, as in `rho'(u)`."""

    func: str
    primes: int
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    func_span: Span = field(compare=False)


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    span: Span = field(compare=False)


@dataclass(frozen=True)
class ModelDecl(Statement):
    name: str
    holomorphic: bool


@dataclass(frozen=True)
class ConstDecl(Statement):
    name: str
    value: Expr


@dataclass(frozen=True)
class Initializer:
    name: str
    args: tuple[Expr, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True)
class VarDecl(Statement):
    """`input`, `target`, `state` or `param` with an optional shape."""

    kind: str
    name: str
    name_span: Span = field(compare=False)
    shape: tuple[Expr, ...] = ()
    output: bool = False
    init: Initializer | None = None


@dataclass(frozen=True)
class PairDecl(Statement):
    """`pair Wf, Wb`: Wb carries the feedback of Wf (diagnostics, asymmetric init)."""

    forward: str
    backward: str
    forward_span: Span = field(compare=False)
    backward_span: Span = field(compare=False)


@dataclass(frozen=True)
class TieDecl(Statement):
    """`tie Wb = W'`: the parameter Wb is not free but always equals the expression."""

    name: str
    name_span: Span = field(compare=False)
    value: Expr


@dataclass(frozen=True)
class FnDecl(Statement):
    name: str
    name_span: Span = field(compare=False)
    params: tuple[str, ...]
    body: Expr


@dataclass(frozen=True)
class LetDecl(Statement):
    name: str
    name_span: Span = field(compare=False)
    value: Expr


@dataclass(frozen=True)
class CoordinateDecl(Statement):
    """`coordinates s1 = sigma(u1)`: EP reads state u1 through s1 = φ(u1), an elementwise function of
    that state alone. The name is usable like a `let`."""

    name: str
    name_span: Span = field(compare=False)
    value: Expr


@dataclass(frozen=True)
class EnergyDecl(Statement):
    name: str
    value: Expr


@dataclass(frozen=True)
class CostDecl(Statement):
    name: str
    value: Expr


@dataclass(frozen=True)
class PredictDecl(Statement):
    """`predict logits`: the scores whose argmax is the predicted class (default: the output state)."""

    value: Expr


@dataclass(frozen=True)
class FlowEq(Statement):
    """`d h/dt = expr`."""

    state: str
    state_span: Span = field(compare=False)
    value: Expr


@dataclass(frozen=True)
class MapEq(Statement):
    """`h <- expr`: a discrete-time fixed-point update."""

    state: str
    state_span: Span = field(compare=False)
    value: Expr


@dataclass(frozen=True)
class Module:
    """A whole `.eqn` file."""

    statements: tuple[Statement, ...]
    filename: str
    source: str
