"""IR → the notation of the `.eqn` language, for learning rules and derived flows. Each
operation's notation is in its record; this module prints leaves and puts the parentheses."""

from __future__ import annotations

from ._ir import OPERATIONS, Const, Node, Op, Var, Zero, fmt_shape


def number(value: float) -> str:
    """A constant as a person would write it: 2, 0.5, 1e-05."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def render(node: Node, parent: int = 0) -> str:
    """The expression as text, parenthesised when its precedence is below `parent`'s."""
    text, precedence = notation(node)
    return f"({text})" if precedence < parent else text


def call_notation(node: Op, name: str | None = None) -> tuple[str, int]:
    """`name(arguments, keywords)`, the keywords being those of the operation's signature."""
    record = OPERATIONS[node.op]
    keywords = [k.name for k in record.signature.keywords] if record.signature else []
    values = [f"{k}={number(v) if isinstance(v, (int, float)) else v}" for k, v in node.attrs if k in keywords]
    return f"{name or node.op}({', '.join([render(a) for a in node.args] + values)})", 7


def notation(node: Node) -> tuple[str, int]:
    """The expression as text, with its precedence (7 binds tightest; a sum is 1)."""
    if isinstance(node, Const):
        return number(node.value), 7 if node.value >= 0 else 4
    if isinstance(node, Zero):
        return ("0" if node.shape == () else f"zeros{fmt_shape(node.shape)}"), 7
    if isinstance(node, Var):
        if node.kind == "cotangent":
            return f"dβ({node.name})", 7
        return ("β" if node.kind == "beta" else node.name), 7
    assert isinstance(node, Op)
    own = OPERATIONS[node.op].render
    return own(node) if own is not None else call_notation(node)
