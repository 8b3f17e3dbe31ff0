"""Smart constructors of IR operations: each checks its operands' shapes (raising `ShapeMismatch`)
and folds trivial algebra as it builds (x·1, x+0, −(−x), constants, c₁x ± c₂x), so derived
expressions come out simplified without a separate pass. The operations' records
(`_tensor_ops.py`) rebuild through them.
"""

from __future__ import annotations

from ._ir import (
    Const, Node, Op, Shape, ShapeMismatch, Var, Zero, broadcast_shapes, const, fmt_shape, is_const, is_zero, op, zeros,
)


def neg(a: Node, span=None) -> Node:
    if is_zero(a):
        return a
    if isinstance(a, Const):
        return const(-a.value)
    if isinstance(a, Op) and a.op == "neg":
        return a.args[0]
    if isinstance(a, Op) and a.op == "sub":
        return sub(a.args[1], a.args[0], span)
    if isinstance(a, Op) and a.op == "outer" and isinstance(a.args[0], Op) and a.args[0].op == "sub":
        first = a.args[0]
        return outer(sub(first.args[1], first.args[0]), a.args[1], span)
    return op("neg", (a,), a.shape, span=span)


def _fold(fn, a: Node, b: Node) -> Node | None:
    if isinstance(a, Const) and isinstance(b, Const):
        return const(fn(a.value, b.value))
    return None


def same(a: Node, b: Node, depth: int = 12) -> bool:
    """Structural equality of two sub-expressions (bounded depth; False when unsure)."""
    if a is b:
        return True
    if type(a) is not type(b) or a.shape != b.shape or depth == 0:
        return False
    if isinstance(a, Const):
        return a.value == b.value
    if isinstance(a, Zero):
        return True
    if isinstance(a, Var):
        return a.name == b.name and a.kind == b.kind
    if isinstance(a, Op):
        return (a.op == b.op and a.attrs == b.attrs and len(a.args) == len(b.args)
                and all(same(x, y, depth - 1) for x, y in zip(a.args, b.args)))
    return False


def _coefficient(node: Node) -> tuple[float, Node]:
    """node = c·rest with a constant c (1 when there is none)."""
    if isinstance(node, Op) and node.op == "mul" and isinstance(node.args[0], Const):
        return node.args[0].value, node.args[1]
    if isinstance(node, Op) and node.op == "neg":
        c, rest = _coefficient(node.args[0])
        return -c, rest
    return 1.0, node


def _combine(a: Node, b: Node, sign: float, shape: Shape) -> Node | None:
    """c₁x ± c₂x → (c₁ ± c₂)x, so derived fields read like the equations one would write."""
    ca, ra = _coefficient(a)
    cb, rb = _coefficient(b)
    if isinstance(ra, Const) or not same(ra, rb):
        return None
    return broadcast(mul(const(ca + sign * cb), ra), shape)


def add(a: Node, b: Node, span=None) -> Node:
    shape = broadcast_shapes(a.shape, b.shape)
    if (folded := _fold(lambda x, y: x + y, a, b)) is not None:
        return folded
    if (combined := _combine(a, b, 1.0, shape)) is not None:
        return combined
    if is_zero(b):
        return broadcast(a, shape)
    if is_zero(a):
        return broadcast(b, shape)
    if isinstance(b, Op) and b.op == "neg":
        return sub(a, b.args[0], span)
    if isinstance(a, Op) and a.op == "neg":
        return sub(b, a.args[0], span)
    return op("add", (a, b), shape, span=span)


def sub(a: Node, b: Node, span=None) -> Node:
    shape = broadcast_shapes(a.shape, b.shape)
    if (folded := _fold(lambda x, y: x - y, a, b)) is not None:
        return folded
    if (combined := _combine(a, b, -1.0, shape)) is not None:
        return combined
    if is_zero(b):
        return broadcast(a, shape)
    if is_zero(a):
        return broadcast(neg(b), shape)
    if isinstance(b, Op) and b.op == "neg":
        return add(a, b.args[0], span)
    return op("sub", (a, b), shape, span=span)


def _unbroadcast_const(node: Node) -> Node:
    if isinstance(node, Op) and node.op == "broadcast" and isinstance(node.args[0], Const):
        return node.args[0]
    return node


def mul(a: Node, b: Node, span=None) -> Node:
    shape = broadcast_shapes(a.shape, b.shape)
    a, b = _unbroadcast_const(a), _unbroadcast_const(b)
    if (folded := _fold(lambda x, y: x * y, a, b)) is not None:
        return folded
    if is_zero(a) or is_zero(b):
        return zeros(shape)
    if is_const(a, 1.0):
        return broadcast(b, shape)
    if is_const(b, 1.0):
        return broadcast(a, shape)
    if is_const(a, -1.0):
        return broadcast(neg(b), shape)
    if is_const(b, -1.0):
        return broadcast(neg(a), shape)
    if isinstance(b, Const) and not isinstance(a, Const):
        a, b = b, a
    if isinstance(a, Op) and a.op == "neg":
        return neg(mul(a.args[0], b, span))
    if isinstance(b, Op) and b.op == "neg":
        return neg(mul(a, b.args[0], span))
    if isinstance(a, Const) and isinstance(b, Op) and b.op == "mul" and isinstance(b.args[0], Const):
        return mul(const(a.value * b.args[0].value), b.args[1], span)
    return op("mul", (a, b), shape, span=span)


def _logistic_argument(b: Node) -> Node | None:
    """z when b is 1 + exp(−z) (either order), so 1/b is sigmoid(z)."""
    if not (isinstance(b, Op) and b.op == "add"):
        return None
    one, other = (b.args[0], b.args[1]) if is_const(b.args[0], 1.0) else (b.args[1], b.args[0])
    if is_const(one, 1.0) and isinstance(other, Op) and other.op == "exp":
        return neg(other.args[0])
    return None


def div(a: Node, b: Node, span=None) -> Node:
    shape = broadcast_shapes(a.shape, b.shape)
    # 1/(1 + exp(−z)) is the logistic function: evaluate it as one (stable where exp overflows).
    if is_const(a, 1.0) and (z := _logistic_argument(b)) is not None:
        return op("sigmoid", (z,), shape, span=span)
    if isinstance(b, Const) and b.value != 0:
        if isinstance(a, Const):
            return const(a.value / b.value)
        return mul(const(1.0 / b.value), a, span)
    if is_zero(a):
        return zeros(shape)
    if isinstance(a, Op) and a.op == "neg":
        return neg(div(a.args[0], b, span))
    return op("div", (a, b), shape, span=span)


def power(a: Node, b: Node, span=None) -> Node:
    shape = broadcast_shapes(a.shape, b.shape)
    if (folded := _fold(lambda x, y: x**y, a, b)) is not None:
        return folded
    if is_const(b, 1.0):
        return a
    if is_const(b, 0.0):
        return broadcast(const(1.0), shape)
    return op("pow", (a, b), shape, span=span)


def broadcast(a: Node, shape: Shape) -> Node:
    shape = tuple(shape)
    if a.shape == shape:
        return a
    if isinstance(a, Zero):
        return zeros(shape)
    if isinstance(a, Const) or a.shape == ():
        return op("broadcast", (a,), shape, (("shape", shape),))
    broadcast_shapes(a.shape, shape)
    return op("broadcast", (a,), shape, (("shape", shape),))


def sum_to(a: Node, shape: Shape) -> Node:
    """Sum a broadcast cotangent back down to `shape` (the adjoint of `broadcast`)."""
    shape = tuple(shape)
    if a.shape == shape:
        return a
    if isinstance(a, Zero):
        return zeros(shape)
    if shape == ():
        return reduce_sum(a)
    return op("sum_to", (a,), shape, (("shape", shape),))


def reduce_sum(a: Node, span=None) -> Node:
    if a.shape == ():
        return a
    if isinstance(a, Zero):
        return zeros(())
    if isinstance(a, Op) and a.op == "neg":
        return neg(reduce_sum(a.args[0], span))
    return op("sum", (a,), (), span=span)


def _negated(a: Node) -> bool:
    return isinstance(a, Op) and a.op == "neg"


def _sign_out(product, a: Node, b: Node, span) -> Node:
    """A bilinear `product` of factors of which one is negated, as −product(a', b) (or with b')."""
    if _negated(a):
        return neg(product(a.args[0], b, span))
    return neg(product(a, b.args[0], span))


def matmul(a: Node, b: Node, span=None) -> Node:
    if a.ndim == 0 or b.ndim == 0 or a.ndim > 2 or b.ndim > 2:
        raise ShapeMismatch(f"'@' needs vectors or matrices, got {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}")
    inner_a = a.shape[-1]
    inner_b = b.shape[0]
    if inner_a != inner_b:
        raise ShapeMismatch(f"'@' shapes {fmt_shape(a.shape)} and {fmt_shape(b.shape)} do not match "
                            f"({inner_a} ≠ {inner_b})")
    shape = a.shape[:-1] + b.shape[1:]
    if is_zero(a) or is_zero(b):
        return zeros(shape)
    if _negated(a) or _negated(b):
        return _sign_out(matmul, a, b, span)
    return op("matmul", (a, b), shape, span=span)


def dot(a: Node, b: Node, span=None) -> Node:
    if a.shape != b.shape:
        raise ShapeMismatch(f"'.' needs equal shapes, got {fmt_shape(a.shape)} . {fmt_shape(b.shape)}")
    if is_zero(a) or is_zero(b):
        return zeros(())
    if a.shape == ():
        return mul(a, b, span)
    if _negated(a) or _negated(b):
        return _sign_out(dot, a, b, span)
    return op("dot", (a, b), (), span=span)


def outer(a: Node, b: Node, span=None) -> Node:
    if a.ndim > 1 or b.ndim > 1:
        raise ShapeMismatch(f"outer needs vectors, got {fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b, span)
    shape = a.shape + b.shape
    if is_zero(a) or is_zero(b):
        return zeros(shape)
    if _negated(a) or _negated(b):
        return _sign_out(outer, a, b, span)
    return op("outer", (a, b), shape, span=span)


def transpose(a: Node, span=None) -> Node:
    if a.ndim < 2:
        return a
    if isinstance(a, Zero):
        return zeros(a.shape[::-1])
    if isinstance(a, Op) and a.op == "transpose":
        return a.args[0]
    if isinstance(a, Op) and a.op == "neg":
        return neg(transpose(a.args[0], span))
    return op("transpose", (a,), a.shape[::-1], span=span)


def reshape(a: Node, shape: Shape, span=None) -> Node:
    shape = tuple(shape)
    if a.shape == shape:
        return a
    if isinstance(a, Zero):
        return zeros(shape)
    return op("reshape", (a,), shape, (("shape", shape),), span=span)


def unary(name: str, a: Node, span=None) -> Node:
    return op(name, (a,), a.shape, span=span)
