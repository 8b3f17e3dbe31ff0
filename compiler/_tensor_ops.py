"""The records of the arithmetic, contraction, reduction, shape, structural, convolution and
pooling operations: for each, its evaluation, derivative, notation and call signature together.

Operations whose adjoint has no compact closed form here (the kernel of a convolution, pooling,
softmax of a tensor) differentiate into a `vjp` node, which evaluates with `jax.vjp`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._algebra import (
    add, broadcast, div, dot, matmul, mul, neg, outer, power, reduce_sum, reshape, sub, sum_to, transpose, unary,
)
from ._derive import vjp
from ._evaluate import evaluate
from ._print import notation, render
from ._ir import (
    OPERATIONS, Const, Keyword, Node, Op, Operation, ShapeMismatch, Signature, Var, const, fmt_shape, op, register,
    walk,
)

# ----------------------------------------------------------------------------- helpers of evaluation


def real_part(x):
    return jnp.real(x) if jnp.iscomplexobj(x) else x


def _shift(x):
    """A constant that keeps exp() finite; softmax-like operations are invariant to it."""
    return jax.lax.stop_gradient(jnp.max(real_part(x)))


def _softmax(x):
    e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(real_part(x), axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _logsumexp(x):
    c = _shift(x)
    return c + jnp.log(jnp.sum(jnp.exp(x - c)))


def conv(x, kernel, stride, padding):
    """conv of a [C, H, W] image with an [O, C, kh, kw] kernel, run channels-last: XLA:CPU runs an
    NCHW convolution inside a loop body about 10× slower than the same one outside it
    (jax-ml/jax#12868), and the dynamics are loops."""
    dtype = jnp.result_type(x, kernel)
    out = jax.lax.conv_general_dilated(
        jnp.transpose(x, (1, 2, 0))[None].astype(dtype), jnp.transpose(kernel, (2, 3, 1, 0)).astype(dtype),
        (stride, stride), [(padding, padding), (padding, padding)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out[0], (2, 0, 1))


def conv_transpose(h, kernel, stride, padding, shape):
    """The exact adjoint of `conv` with respect to its input (transposed convolution) for an input
    of `shape` [C, H, W]: the kernel flipped with its channels swapped, run over the input dilated
    by the stride, channels-last like `conv` (JAX's own transpose rule picks a layout that is
    again slow inside loops)."""
    dtype = jnp.result_type(h, kernel)
    size = kernel.shape[2:]
    pads = []
    for axis in (0, 1):
        n, m, k = shape[1 + axis], h.shape[1 + axis], size[axis]
        extra = n - ((m - 1) * stride + k - 2 * padding)  # rows the forward conv's stride skipped
        pads.append((k - 1 - padding, k - 1 - padding + extra))
    flipped = jnp.transpose(kernel[:, :, ::-1, ::-1], (2, 3, 0, 1)).astype(dtype)  # [kh, kw, O, C]
    out = jax.lax.conv_general_dilated(
        jnp.transpose(h, (1, 2, 0))[None].astype(dtype), flipped, (1, 1), pads, lhs_dilation=(stride, stride),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out[0], (2, 0, 1))


def _softpool(x, size, stride, tau):
    """Softmax pooling (holomorphic-ep App. B.2): y = Σ_R softmax(x/τ)_i x_i over each window R."""
    weights = jnp.exp((x - _shift(x)) / tau)
    zero = np.zeros((), weights.dtype)  # concrete, so JAX picks the differentiable window-sum

    def window_sum(v):
        return jax.lax.reduce_window(v, zero, jax.lax.add, (1, size, size), (1, stride, stride), "VALID")

    return window_sum(weights * x) / window_sum(weights)


def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    x = jnp.sum(x, axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and x.shape[i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _power(a, b, node):
    exponent = node.args[1]
    if isinstance(exponent, Const) and float(exponent.value).is_integer():
        return a ** int(exponent.value)
    return a ** b


# ----------------------------------------------------------------------------- derivatives


def pullback(node: Op, ct: Node) -> tuple[Node, ...]:
    """Cotangents of an operation without a closed-form adjoint here: one `vjp` node per argument."""
    return tuple(
        op("vjp", node.args + (ct,), arg.shape,
           (("of", node.op), ("index", i), ("inner", node.attrs), ("primal_shape", node.shape)), span=node.span)
        for i, arg in enumerate(node.args))


def _evaluate_pullback(values, node: Op):
    *primals, cotangent = values
    primal = Op(node.attr("primal_shape"), None, op=node.attr("of"), args=(), attrs=node.attr("inner"))
    dtype = jnp.result_type(*primals, cotangent)
    primals = [jnp.asarray(p).astype(dtype) if jnp.issubdtype(dtype, jnp.complexfloating) else p for p in primals]
    out, pull = jax.vjp(lambda *args: OPERATIONS[primal.op].evaluate(list(args), primal), *primals)
    return pull(jnp.asarray(cotangent).astype(out.dtype))[node.attr("index")]


def _render_pullback(node: Op):
    *primal, ct = node.args
    return f"∂{node.attr('of')}/∂#{node.attr('index') + 1}({', '.join(render(a) for a in primal)})ᵀ·{render(ct, 7)}", 7


def derivative_call(n: Op) -> Op:
    """`f'(a)` for a call node `f(a)` of a one-argument elementwise user function."""
    param, body = n.attr("param"), n.attr("body")
    has_param = any(isinstance(v, Var) and v.kind == "local" and v.name == param for v in walk(body))
    d_body = vjp(body, {param}, const(1.0)).get(param, const(0.0)) if has_param else const(0.0)
    attrs = (("name", n.attr("name")), ("primes", n.attr("primes") + 1), ("param", param), ("body", d_body))
    return Op(n.shape, n.span, op="call", args=n.args, attrs=attrs)


def _vjp_matmul(n, ct):
    a, b = n.args
    if a.ndim == 2 and b.ndim == 1:
        return outer(ct, b), matmul(transpose(a), ct)
    if a.ndim == 2 and b.ndim == 2:
        return matmul(ct, transpose(b)), matmul(transpose(a), ct)
    if a.ndim == 1 and b.ndim == 2:
        return matmul(b, ct), outer(a, ct)
    return mul(ct, b), mul(ct, a)


def _vjp_pow(n, ct):
    a, b = n.args
    da = sum_to(mul(ct, mul(b, power(a, sub(b, const(1.0))))), a.shape)
    db = None if isinstance(b, Const) else sum_to(mul(ct, mul(unary("log", a), n)), b.shape)
    return da, db


def _vjp_softmax(n: Op, ct: Node):
    """s ⊙ (ct − ⟨ct, s⟩) for a vector; other ranks through jax.vjp."""
    (a,) = n.args
    return pullback(n, ct) if a.ndim != 1 else (mul(n, sub(ct, dot(ct, n))),)


def _vjp_logsumexp(n: Op, ct: Node):
    (a,) = n.args
    weights = op("softmax", (a,), a.shape) if a.ndim == 1 else pullback(n, const(1.0))[0]
    return (mul(weights, broadcast(ct, a.shape)),)


def _vjp_conv(n: Op, ct: Node):
    """The input's cotangent is the transposed convolution with the same kernel, stride and
    padding (the dynamics' feedback path, so the rules print it and it runs channels-last); the
    kernel's goes through jax.vjp."""
    x, kernel = n.args
    return (op("conv_transpose", (ct, kernel), x.shape, n.attrs), pullback(n, ct)[1])


def _size(shape) -> int:
    size = 1
    for d in shape:
        size *= d
    return size


# ----------------------------------------------------------------------------- notation


def _infix(precedence: int, symbol: str):
    def render_infix(node: Op):
        # contractions inside a product get parentheses although they bind tighter: easier to read
        bump = 4 if precedence == 2 else 0
        left = render(node.args[0], max(precedence, bump))
        right = render(node.args[1], max(precedence + 1, bump))
        return f"{left}{symbol}{right}", precedence
    return render_infix


def _render_reshape(node: Op):
    name = "flatten" if len(node.shape) == 1 else f"reshape{fmt_shape(node.shape)}"
    return f"{name}({render(node.args[0])})", 7


def _render_call(node: Op):
    return f"{node.attr('name')}{chr(39) * node.attr('primes')}({render(node.args[0])})", 7


# ----------------------------------------------------------------------------- shape rules of calls


def _softmax_like(name, shape_of):
    def build(args, keywords, span):
        if args[0].ndim == 0:
            raise ShapeMismatch(f"'{name}' needs a vector or tensor, got a scalar", argument=0)
        return op(name, (args[0],), shape_of(args[0]), span=span)
    return build


def _build_conv(name):
    def build(args, keywords, span):
        x, kernel = args
        stride, padding = keywords["stride"], keywords["padding"]
        if x.ndim != 3:
            raise ShapeMismatch(f"{name} needs a [C, H, W] input, got {fmt_shape(x.shape)}", argument=0)
        if kernel.ndim != 4:
            raise ShapeMismatch(f"{name} needs a [out, in, kh, kw] kernel, got {fmt_shape(kernel.shape)}", argument=1)
        out_c, in_c, kh, kw = kernel.shape
        if name == "conv":
            if x.shape[0] != in_c:
                raise ShapeMismatch(f"conv input has {x.shape[0]} channels but the kernel {fmt_shape(kernel.shape)} "
                                    f"expects {in_c}")
            h, w = ((x.shape[1 + i] + 2 * padding - k) // stride + 1 for i, k in enumerate((kh, kw)))
            shape = (out_c, h, w)
        else:
            if x.shape[0] != out_c:
                raise ShapeMismatch(f"conv_transpose input has {x.shape[0]} channels but the kernel "
                                    f"{fmt_shape(kernel.shape)} produces {out_c}")
            h, w = ((x.shape[1 + i] - 1) * stride - 2 * padding + k for i, k in enumerate((kh, kw)))
            shape = (in_c, h, w)
        if h < 1 or w < 1:
            raise ShapeMismatch(f"{name} of {fmt_shape(x.shape)} with kernel {fmt_shape(kernel.shape)} "
                                "leaves no output")
        return op(name, (x, kernel), shape, (("stride", stride), ("padding", padding)), span)
    return build


def _build_softpool(args, keywords, span):
    (x,) = args
    size, stride, tau = keywords["size"], keywords["stride"], keywords["tau"]
    if x.ndim != 3:
        raise ShapeMismatch(f"softpool needs a [C, H, W] tensor, got {fmt_shape(x.shape)}", argument=0)
    c, h, w = x.shape
    if h < size or w < size:
        raise ShapeMismatch(f"softpool window {size} is larger than the input {fmt_shape(x.shape)}")
    shape = (c, (h - size) // stride + 1, (w - size) // stride + 1)
    return op("softpool", (x,), shape, (("size", size), ("stride", stride), ("tau", float(tau))), span)


def _binary(build):
    return Signature(2, lambda args, keywords, span: build(args[0], args[1], span))


def _unary(build):
    return Signature(1, lambda args, keywords, span: build(args[0], span))


_CONV_KEYWORDS = (Keyword("stride", 1), Keyword("padding", 0, "non-negative integer"))

# ----------------------------------------------------------------------------- the records

for _name, _build, _precedence, _symbol, _evaluate, _vjp in [
    ("add", add, 1, " + ", lambda v, n: v[0] + v[1], lambda n, ct: (sum_to(ct, n.args[0].shape),
                                                                    sum_to(ct, n.args[1].shape))),
    ("sub", sub, 1, " - ", lambda v, n: v[0] - v[1], lambda n, ct: (sum_to(ct, n.args[0].shape),
                                                                    sum_to(neg(ct), n.args[1].shape))),
    ("mul", mul, 2, "*", lambda v, n: v[0] * v[1], lambda n, ct: (sum_to(mul(ct, n.args[1]), n.args[0].shape),
                                                                  sum_to(mul(ct, n.args[0]), n.args[1].shape))),
    ("div", div, 2, "/", lambda v, n: v[0] / v[1],
     lambda n, ct: (sum_to(div(ct, n.args[1]), n.args[0].shape),
                    sum_to(neg(div(mul(ct, n), n.args[1])), n.args[1].shape))),
]:
    register(Operation(_name, _evaluate, _vjp, elementwise=True, render=_infix(_precedence, _symbol),
                       rebuild=lambda node, args, build=_build: build(*args, span=node.span)))

register(Operation("pow", lambda v, n: _power(v[0], v[1], n), _vjp_pow, elementwise=True,
                   rebuild=lambda node, args: power(*args, span=node.span),
                   render=lambda n: (f"{render(n.args[0], 6)}^{render(n.args[1], 6)}", 5)))
register(Operation("neg", lambda v, n: -v[0], lambda n, ct: (neg(ct),), elementwise=True,
                   rebuild=lambda node, args: neg(args[0], node.span),
                   render=lambda n: (f"-{render(n.args[0], 5)}", 4)))
register(Operation("matmul", lambda v, n: jnp.matmul(v[0], v[1]), _vjp_matmul, render=_infix(3, " @ "),
                   rebuild=lambda node, args: matmul(*args, span=node.span)))
register(Operation("dot", lambda v, n: jnp.sum(v[0] * v[1]), lambda n, ct: (mul(ct, n.args[1]), mul(ct, n.args[0])),
                   render=_infix(3, "·"), rebuild=lambda node, args: dot(*args, span=node.span),
                   signature=_binary(dot)))
register(Operation("outer", lambda v, n: jnp.outer(v[0], v[1]),
                   lambda n, ct: (matmul(ct, n.args[1]), matmul(transpose(ct), n.args[0])),
                   render=_infix(3, " ⊗ "), rebuild=lambda node, args: outer(*args, span=node.span),
                   signature=_binary(outer)))
register(Operation("transpose", lambda v, n: jnp.transpose(v[0]), lambda n, ct: (transpose(ct),),
                   rebuild=lambda node, args: transpose(args[0], node.span),
                   render=lambda n: (f"{render(n.args[0], 7)}'", 6), signature=_unary(transpose)))
register(Operation("sum", lambda v, n: jnp.sum(v[0]), lambda n, ct: (broadcast(ct, n.args[0].shape),),
                   rebuild=lambda node, args: reduce_sum(args[0], node.span), signature=_unary(reduce_sum)))
register(Operation("mean", lambda v, n: jnp.mean(v[0]),
                   lambda n, ct: (broadcast(mul(const(1.0 / _size(n.args[0].shape)), ct), n.args[0].shape),),
                   signature=_unary(lambda a, span: op("mean", (a,), (), span=span))))
register(Operation("sum_to", lambda v, n: _sum_to(v[0], n.attr("shape")),
                   lambda n, ct: (broadcast(ct, n.args[0].shape),),
                   rebuild=lambda node, args: sum_to(args[0], node.attr("shape")),
                   render=lambda n: (f"sum_to{fmt_shape(n.attr('shape'))}({render(n.args[0])})", 7)))
register(Operation("broadcast", lambda v, n: jnp.broadcast_to(v[0], n.attr("shape")),
                   lambda n, ct: (sum_to(ct, n.args[0].shape),),
                   rebuild=lambda node, args: broadcast(args[0], node.attr("shape")),
                   render=lambda n: notation(n.args[0])))
register(Operation("reshape", lambda v, n: jnp.reshape(v[0], n.attr("shape")),
                   lambda n, ct: (reshape(ct, n.args[0].shape),),
                   rebuild=lambda node, args: reshape(args[0], node.attr("shape"), node.span), render=_render_reshape,
                   signature=Signature(1, lambda args, kw, span: reshape(args[0], (_size(args[0].shape),), span),
                                       name="flatten")))
register(Operation("named", lambda v, n: v[0], lambda n, ct: (ct,), elementwise=True,
                   render=lambda n: (n.attr("name"), 7)))
register(Operation("call",
                   lambda v, n: jnp.broadcast_to(evaluate(n.attr("body"), {n.attr("param"): v[0]}), jnp.shape(v[0])),
                   lambda n, ct: (mul(derivative_call(n), ct),), elementwise=True, render=_render_call))
register(Operation("vjp", _evaluate_pullback, pullback, render=_render_pullback))
register(Operation("softmax", lambda v, n: _softmax(v[0]), _vjp_softmax,
                   signature=Signature(1, _softmax_like("softmax", lambda a: a.shape))))
register(Operation("logsumexp", lambda v, n: _logsumexp(v[0]), _vjp_logsumexp,
                   signature=Signature(1, _softmax_like("logsumexp", lambda a: ()))))
register(Operation("conv", lambda v, n: conv(v[0], v[1], n.attr("stride"), n.attr("padding")), _vjp_conv,
                   signature=Signature(2, _build_conv("conv"), _CONV_KEYWORDS)))
register(Operation("conv_transpose",
                   lambda v, n: conv_transpose(v[0], v[1], n.attr("stride"), n.attr("padding"), n.shape), pullback,
                   signature=Signature(2, _build_conv("conv_transpose"), _CONV_KEYWORDS)))
register(Operation("softpool", lambda v, n: _softpool(v[0], n.attr("size"), n.attr("stride"), n.attr("tau")), pullback,
                   signature=Signature(1, _build_softpool, (Keyword("size", 2), Keyword("stride", "size"),
                                                            Keyword("tau", 1.0, "positive number")))))
