"""The elementwise functions of the language's library, one line each: name, holomorphy, value
in `jax.numpy`, and the derivative as IR (from the node n = f(a) and its argument a).

Adding a function is one `elementwise(...)` line here and its row in docs/LANGUAGE.md §7 (a test
compares the two). Its rules print as `f'(…)*dβ(u)` through the derivative given here, a model
may write `f'(x)`, and it may serve as a coordinate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._algebra import add, div, mul, neg, sub, unary
from ._ir import Operation, Signature, const, register
from ._tensor_ops import real_part

ONE, HALF = const(1.0), const(0.5)


def elementwise(name: str, value, derivative, *, holomorphic: bool = True, callable: bool = True) -> None:
    """Register the elementwise function `name`: `value(x)` on an array, `derivative(n, a)` the IR
    of f'(a) given the node n = f(a); `callable=False` for functions that only derivatives produce."""
    signature = Signature(1, lambda args, keywords, span: unary(name, args[0], span)) if callable else None
    register(Operation(name, lambda values, node: value(values[0]),
                       lambda node, ct: (mul(derivative(node, node.args[0]), ct),),
                       holomorphic=holomorphic, elementwise=True, signature=signature))


def _sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x)) if jnp.iscomplexobj(x) else jax.nn.sigmoid(x)


def _indicator(condition):
    return lambda x: condition(real_part(x)).astype(x.dtype)


def sigmoid(a):
    return unary("sigmoid", a)


def _dsilu_derivative(n, a):
    s0, s2 = sigmoid(a), sigmoid(sub(a, const(2.0)))
    term0 = mul(HALF, add(s0, mul(a, mul(s0, sub(ONE, s0)))))
    term2 = add(mul(neg(HALF), s2), mul(sub(ONE, mul(HALF, a)), mul(s2, sub(ONE, s2))))
    return add(term0, term2)


def _zero(n, a):
    return mul(const(0.0), a)


elementwise("exp", jnp.exp, lambda n, a: n)
elementwise("log", jnp.log, lambda n, a: div(ONE, a))
elementwise("tanh", jnp.tanh, lambda n, a: sub(ONE, mul(n, n)))
elementwise("sigmoid", _sigmoid, lambda n, a: mul(n, sub(ONE, n)))
elementwise("sin", jnp.sin, lambda n, a: unary("cos", a))
elementwise("cos", jnp.cos, lambda n, a: neg(unary("sin", a)))
elementwise("sinh", jnp.sinh, lambda n, a: unary("cosh", a))
elementwise("cosh", jnp.cosh, lambda n, a: unary("sinh", a))
elementwise("sqrt", jnp.sqrt, lambda n, a: div(HALF, n))
elementwise("softplus", lambda x: jnp.log1p(jnp.exp(x)) if jnp.iscomplexobj(x) else jax.nn.softplus(x),
            lambda n, a: sigmoid(a))
elementwise("silu", lambda x: x * _sigmoid(x), lambda n, a: mul(sigmoid(a), add(ONE, mul(a, sub(ONE, sigmoid(a))))))
# holomorphic-ep App. B.2: dsilu(z) = (z/2) σ(z) + (1 − z/2) σ(z − 2)
elementwise("dsilu", lambda x: 0.5 * x * _sigmoid(x) + (1.0 - 0.5 * x) * _sigmoid(x - 2.0), _dsilu_derivative)
elementwise("relu", lambda x: x * _indicator(lambda r: r > 0)(x), lambda n, a: unary("heaviside", a),
            holomorphic=False)
elementwise("abs", jnp.abs, lambda n, a: unary("sign", a), holomorphic=False)
elementwise("hardsigmoid", lambda x: jnp.clip(x, 0.0, 1.0), lambda n, a: unary("box", a), holomorphic=False)
elementwise("softsign", lambda x: x / (1.0 + jnp.abs(x)), lambda n, a: div(ONE, mul(add(ONE, unary("abs", a)),
                                                                              add(ONE, unary("abs", a)))),
            holomorphic=False)
elementwise("heaviside", _indicator(lambda r: r > 0), _zero, holomorphic=False, callable=False)
elementwise("sign", jnp.sign, _zero, holomorphic=False, callable=False)
elementwise("box", _indicator(lambda r: (r > 0) & (r < 1)), _zero, holomorphic=False, callable=False)
