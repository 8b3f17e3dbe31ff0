"""The operation library: for every operation its holomorphy and its symbolic derivative (VJP).

Elementwise functions differentiate into other IR operations, so rules stay readable; operations
whose adjoint has no compact closed form here (convolutions, pooling, softmax, Python functions)
differentiate into a `vjp` node that the emitter evaluates with `jax.vjp`.
"""

from __future__ import annotations

from ._ir import (
    Node, Op, add, broadcast, const, div, matmul, mul, neg, op, outer, power, reduce_sum, register_op,
    reshape, sub, sum_to, transpose, unary, OPS,
)


def pullback(node: Op, ct: Node) -> tuple[Node, ...]:
    """Cotangents of an opaque operation: one `vjp` node per argument."""
    return tuple(
        op("vjp", node.args + (ct,), arg.shape,
           (("of", node.op), ("index", i), ("inner", node.attrs), ("primal_shape", node.shape)),
           span=node.span)
        for i, arg in enumerate(node.args)
    )


def _binary_vjps():
    def v_add(n, ct):
        a, b = n.args
        return sum_to(ct, a.shape), sum_to(ct, b.shape)

    def v_sub(n, ct):
        a, b = n.args
        return sum_to(ct, a.shape), sum_to(neg(ct), b.shape)

    def v_mul(n, ct):
        a, b = n.args
        return sum_to(mul(ct, b), a.shape), sum_to(mul(ct, a), b.shape)

    def v_div(n, ct):
        a, b = n.args
        return sum_to(div(ct, b), a.shape), sum_to(neg(div(mul(ct, n), b)), b.shape)

    def v_pow(n, ct):
        a, b = n.args
        da = sum_to(mul(ct, mul(b, power(a, sub(b, const(1.0))))), a.shape)
        db = None if b.__class__.__name__ == "Const" else sum_to(mul(ct, mul(unary("log", a), n)), b.shape)
        return da, db

    def v_matmul(n, ct):
        a, b = n.args
        if a.ndim == 2 and b.ndim == 1:
            return outer(ct, b), matmul(transpose(a), ct)
        if a.ndim == 2 and b.ndim == 2:
            return matmul(ct, transpose(b)), matmul(transpose(a), ct)
        if a.ndim == 1 and b.ndim == 2:
            return matmul(b, ct), outer(a, ct)
        return mul(ct, b), mul(ct, a)

    def v_dot(n, ct):
        a, b = n.args
        return mul(ct, b), mul(ct, a)

    def v_outer(n, ct):
        a, b = n.args
        return matmul(ct, b), matmul(transpose(ct), a)

    for name, rule in [("add", v_add), ("sub", v_sub), ("mul", v_mul), ("div", v_div), ("pow", v_pow)]:
        register_op(name, holomorphic=True, vjp=rule, elementwise=True)
    register_op("matmul", holomorphic=True, vjp=v_matmul)
    register_op("dot", holomorphic=True, vjp=v_dot)
    register_op("outer", holomorphic=True, vjp=v_outer)


def _structural_vjps():
    register_op("neg", holomorphic=True, vjp=lambda n, ct: (neg(ct),), elementwise=True)
    register_op("transpose", holomorphic=True, vjp=lambda n, ct: (transpose(ct),))
    register_op("sum", holomorphic=True, vjp=lambda n, ct: (broadcast(ct, n.args[0].shape),))
    register_op("mean", holomorphic=True,
                vjp=lambda n, ct: (broadcast(mul(const(1.0 / _size(n.args[0].shape)), ct), n.args[0].shape),))
    register_op("sum_to", holomorphic=True, vjp=lambda n, ct: (broadcast(ct, n.args[0].shape),))
    register_op("broadcast", holomorphic=True, vjp=lambda n, ct: (sum_to(ct, n.args[0].shape),))
    register_op("reshape", holomorphic=True, vjp=lambda n, ct: (reshape(ct, n.args[0].shape),))
    register_op("named", holomorphic=True, vjp=lambda n, ct: (ct,))
    register_op("call", holomorphic=True, vjp=_vjp_call)
    register_op("vjp", holomorphic=True, vjp=pullback)


def _size(shape) -> int:
    size = 1
    for d in shape:
        size *= d
    return size


def _vjp_call(n: Op, ct: Node):
    return (mul(derivative_call(n), ct),)


def derivative_call(n: Op) -> Op:
    """`f'(a)` for a call node `f(a)` of a one-argument elementwise user function."""
    from ._derive import vjp  # the derivative of the body is itself a derivation

    param = n.attr("param")
    body = n.attr("body")
    local = next(v for v in _leaves(body) if v.name == param) if _leaves(body) else None
    if local is None:
        d_body = const(0.0)
    else:
        d_body = vjp(body, {param}, const(1.0)).get(param, const(0.0))
    attrs = (("name", n.attr("name")), ("primes", n.attr("primes") + 1), ("param", param), ("body", d_body))
    return Op(n.shape, n.span, op="call", args=n.args, attrs=attrs)


def _leaves(body: Node):
    from ._ir import Var, walk
    return [v for v in walk(body) if isinstance(v, Var) and v.kind == "local"]


# ----------------------------------------------------------------------------- elementwise functions


def sigmoid(a: Node) -> Node:
    return unary("sigmoid", a)


def _elementwise():
    def rule(derivative):
        return lambda n, ct: (mul(derivative(n, n.args[0]), ct),)

    one = const(1.0)
    table = {
        "exp": (True, lambda n, a: n),
        "log": (True, lambda n, a: div(one, a)),
        "tanh": (True, lambda n, a: sub(one, mul(n, n))),
        "sigmoid": (True, lambda n, a: mul(n, sub(one, n))),
        "sin": (True, lambda n, a: unary("cos", a)),
        "cos": (True, lambda n, a: neg(unary("sin", a))),
        "sinh": (True, lambda n, a: unary("cosh", a)),
        "cosh": (True, lambda n, a: unary("sinh", a)),
        "sqrt": (True, lambda n, a: div(const(0.5), n)),
        "softplus": (True, lambda n, a: sigmoid(a)),
        # silu(z) = z σ(z)
        "silu": (True, lambda n, a: mul(sigmoid(a), add(one, mul(a, sub(one, sigmoid(a)))))),
        # dsilu(z) = (z/2) σ(z) + (1 − z/2) σ(z − 2)   (holomorphic-ep App. B.2)
        "dsilu": (True, _dsilu_derivative),
        "relu": (False, lambda n, a: unary("heaviside", a)),
        "abs": (False, lambda n, a: unary("sign", a)),
        "hardsigmoid": (False, lambda n, a: unary("box", a)),
        "heaviside": (False, lambda n, a: mul(const(0.0), a)),
        "sign": (False, lambda n, a: mul(const(0.0), a)),
        "box": (False, lambda n, a: mul(const(0.0), a)),
    }
    for name, (holomorphic, derivative) in table.items():
        register_op(name, holomorphic=holomorphic, vjp=rule(derivative), elementwise=True)


def _dsilu_derivative(n: Node, a: Node) -> Node:
    one, half = const(1.0), const(0.5)
    s0 = sigmoid(a)
    s2 = sigmoid(sub(a, const(2.0)))
    term0 = mul(half, add(s0, mul(a, mul(s0, sub(one, s0)))))
    term2 = add(mul(neg(half), s2), mul(sub(one, mul(half, a)), mul(s2, sub(one, s2))))
    return add(term0, term2)


def _vjp_logsumexp(n: Op, ct: Node):
    (a,) = n.args
    return (mul(op("softmax", (a,), a.shape) if a.ndim == 1 else pullback(n, const(1.0))[0], broadcast(ct, a.shape)),)


def _vjp_softmax(n: Op, ct: Node):
    """s ⊙ (ct − ⟨ct, s⟩) for a vector; other ranks through jax.vjp."""
    (a,) = n.args
    if a.ndim != 1:
        return pullback(n, ct)
    from ._ir import dot
    return (mul(n, sub(ct, dot(ct, n))),)


def _vjp_conv(n: Op, ct: Node):
    """The input's cotangent is the transposed convolution with the same kernel, stride and
    padding (the dynamics' feedback path, so the rules print it and it runs channels-last); the
    kernel's goes through jax.vjp."""
    x, kernel = n.args
    return (op("conv_transpose", (ct, kernel), x.shape, n.attrs), pullback(n, ct)[1])


def _opaque():
    register_op("softmax", holomorphic=True, vjp=_vjp_softmax)
    register_op("logsumexp", holomorphic=True, vjp=_vjp_logsumexp)
    register_op("conv", holomorphic=True, vjp=_vjp_conv)
    for name in ("conv_transpose", "softpool"):
        register_op(name, holomorphic=True, vjp=pullback)


_binary_vjps()
_structural_vjps()
_elementwise()
_opaque()

ELEMENTWISE_FUNCTIONS = sorted(name for name, d in OPS.items()
                               if d.elementwise and name not in {"add", "sub", "mul", "div", "pow", "neg"}
                               and name not in {"heaviside", "sign", "box"})
