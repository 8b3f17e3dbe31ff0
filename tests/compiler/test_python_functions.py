"""The way out to Python: functions registered from JAX, called from a model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import randomise_params

import eqn


def rational(u):
    return u / (1.0 + u * u)


eqn.register_function("rational_act", rational, holomorphic=True)
eqn.register_function("leaky_rect", lambda u: jnp.where(jnp.real(u) > 0, u, 0.1 * u), holomorphic=False)
eqn.register_function("mix", lambda a, b: a[:2] * b, holomorphic=True, shape=lambda a, b: (2,), arity=2)

SOURCE = """
model python_calls
input x[4]
target y[2]
state h[3]
state o[2] output
param W1[3, 4] ~ glorot
param W2[2, 3] ~ glorot
d h/dt = W1 @ rational_act(x) - h
d o/dt = W2 @ rational_act(h) + mix(h, o) - o
cost C = 0.5 * sum((o - y)^2)
"""


@pytest.fixture(scope="module")
def model():
    return randomise_params(eqn.compile(SOURCE, dtype=jnp.float64), jax.random.PRNGKey(0))


def _data():
    key = jax.random.PRNGKey(1)
    state = {"h": jax.random.normal(key, (2, 3)), "o": jax.random.normal(jax.random.fold_in(key, 1), (2, 2))}
    x = jax.random.normal(jax.random.fold_in(key, 2), (2, 4))
    y = jnp.eye(2)
    return state, x, y


def test_registered_functions_evaluate_as_written(model):
    state, x, y = _data()
    field = model.vector_field(state, x, y, 0.5)
    h, o = state["h"], state["o"]
    np.testing.assert_allclose(field["h"], rational(x) @ model.W1.T - h, rtol=1e-12)
    expected_o = rational(h) @ model.W2.T + h[:, :2] * o - o + 0.5 * (y - o)
    np.testing.assert_allclose(field["o"], expected_o, rtol=1e-12)


def test_rules_through_python_functions_agree_with_autodiff(model):
    state, x, y = _data()
    response = {"h": jnp.ones((2, 3)), "o": jnp.arange(4.0).reshape(2, 2)}
    _, pull = jax.vjp(lambda m: m.vector_field(state, x, y, 0.0), model)
    (grads,) = pull(response)
    for name in ("W1", "W2"):
        value = jnp.sum(model.rule(name, state, x, y, response=response), axis=0)
        np.testing.assert_allclose(value, getattr(grads, name), rtol=1e-10)


def test_holomorphy_of_python_functions_is_as_declared():
    assert eqn.load(SOURCE).holomorphic
    program = eqn.load(SOURCE.replace("rational_act(x)", "leaky_rect(x)"))
    assert [(n.operation, n.span.line) for n in program.non_holomorphic] == [("leaky_rect", 9)]


def test_shape_function_and_arity_are_checked():
    with pytest.raises(eqn.ErrorList) as info:
        eqn.load(SOURCE.replace("mix(h, o)", "mix(h)"))
    assert "'mix' takes 2 arguments, got 1" in info.value.errors[0].message
