"""IR → the notation of the `.eqn` language, for learning rules and derived flows."""

from __future__ import annotations

from ._ir import Const, Node, Op, Var, Zero, fmt_shape

_INFIX = {"add": (1, " + "), "sub": (1, " - "), "mul": (2, "*"), "div": (2, "/"),
          "matmul": (3, " @ "), "dot": (3, "·"), "outer": (3, " ⊗ ")}


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def render(node: Node, parent: int = 0) -> str:
    text, prec = _render(node)
    return f"({text})" if prec < parent else text


def _render(node: Node) -> tuple[str, int]:
    if isinstance(node, Const):
        return _number(node.value), 7 if node.value >= 0 else 4
    if isinstance(node, Zero):
        return ("0" if node.shape == () else f"zeros{fmt_shape(node.shape)}"), 7
    if isinstance(node, Var):
        if node.kind == "cotangent":
            return f"dβ({node.name})", 7
        if node.kind == "beta":
            return "β", 7
        return node.name, 7
    assert isinstance(node, Op)
    if node.op in _INFIX:
        prec, symbol = _INFIX[node.op]
        # Contractions inside a product get parentheses although they bind tighter: easier to read.
        bump = 4 if prec == 2 else 0
        left = render(node.args[0], max(prec, bump))
        right = render(node.args[1], max(prec + 1, bump))
        return f"{left}{symbol}{right}", prec
    if node.op == "neg":
        return f"-{render(node.args[0], 5)}", 4
    if node.op == "pow":
        return f"{render(node.args[0], 6)}^{render(node.args[1], 6)}", 5
    if node.op == "transpose":
        return f"{render(node.args[0], 7)}'", 6
    if node.op == "named":
        return node.attr("name"), 7
    if node.op == "broadcast":
        return _render(node.args[0])
    if node.op == "call":
        return f"{node.attr('name')}{chr(39) * node.attr('primes')}({render(node.args[0])})", 7
    if node.op == "sum_to":
        return f"sum_to{fmt_shape(node.attr('shape'))}({render(node.args[0])})", 7
    if node.op == "reshape":
        name = "flatten" if len(node.shape) == 1 else f"reshape{fmt_shape(node.shape)}"
        return f"{name}({render(node.args[0])})", 7
    if node.op == "vjp":
        *primal, ct = node.args
        which = node.attr("index")
        return (f"∂{node.attr('of')}/∂#{which + 1}({', '.join(render(a) for a in primal)})ᵀ·{render(ct, 7)}", 7)
    keywords = [f"{k}={_number(v) if isinstance(v, (int, float)) else v}" for k, v in node.attrs
                if k in ("stride", "padding", "size", "tau")]
    args = ", ".join([render(a) for a in node.args] + keywords)
    name = node.op[3:] if node.op.startswith("py:") else node.op
    return f"{name}({args})", 7
