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


def rational_derivative(u):
    """d/du u/(1 + u²) = (1 − u²)/(1 + u²)², by hand."""
    return (1.0 - u * u) / (1.0 + u * u) ** 2


eqn.register_function("rational_el", rational, holomorphic=True, elementwise=True)

ELEMENTWISE = """
model elementwise_call
input x[4]
target y[2]
state u[3]
state o[2] output
param W[3, 4] ~ glorot
param V[2, 3] ~ glorot
du/dt = rational_el(W @ x) - u
do/dt = V @ rational_el(u) - o
cost C = 0.5 * sum((o - y)^2)
"""


def test_rules_through_an_elementwise_python_function_read_like_the_librarys():
    """Its derivative is a function, printed as rational_el', as tanh's is (1 - tanh²)."""
    rules = eqn.load(ELEMENTWISE).rules
    assert rules["W"].text() == "ΔW ∝ (rational_el'(W @ x)*dβ(u)) ⊗ x"
    assert rules["V"].text() == "ΔV ∝ dβ(o) ⊗ rational_el(u)"
    assert "∂" not in eqn.load(SOURCE.replace("rational_act", "rational_el")).rules["W1"].text()


def test_derivatives_of_an_elementwise_python_function_are_exact():
    """rational_el'(z) and rational_el''(z), written in a model, equal the hand derivative and
    JAX's second derivative; the rule through it equals autodiff's gradient."""
    source = ELEMENTWISE.replace("rational_el(W @ x) - u", "rational_el'(W @ x) + rational_el''(W @ x) - u")
    model = randomise_params(eqn.compile(source, dtype=jnp.float64), jax.random.PRNGKey(3))
    state, x, y = _data()
    state = {"u": state["h"], "o": state["o"]}
    z = x @ model.W.T
    second = jax.vmap(jax.vmap(jax.grad(jax.grad(rational))))(z)
    np.testing.assert_allclose(model.vector_field(state, x, y, 0.0)["u"],
                               rational_derivative(z) + second - state["u"], rtol=1e-12)
    response = {"u": jnp.arange(6.0).reshape(2, 3) - 2.0, "o": jnp.ones((2, 2))}
    _, pull = jax.vjp(lambda m: m.vector_field(state, x, y, 0.0), model)
    (grads,) = pull(response)
    np.testing.assert_allclose(jnp.sum(model.rule("W", state, x, y, response=response), axis=0), grads.W, rtol=1e-10)


def test_an_elementwise_python_function_can_be_a_coordinate():
    program = eqn.load(ELEMENTWISE.replace("do/dt = V @ rational_el(u) - o",
                                           "coordinates s = rational_el(u)\ndo/dt = V @ s - o"))
    assert "s" in {c.name for c in program.coordinates.values()}


def test_registration_refuses_library_names_and_elementwise_functions_of_two_arguments():
    with pytest.raises(ValueError, match="'tanh' is a function of the language's library"):
        eqn.register_function("tanh", rational, holomorphic=True)
    with pytest.raises(ValueError, match="an elementwise function takes one argument"):
        eqn.register_function("pair_el", lambda a, b: a * b, holomorphic=True, elementwise=True, arity=2)
    with pytest.raises(eqn.ErrorList, match="'mix' is not an elementwise function"):
        eqn.load(SOURCE.replace("mix(h, o)", "mix'(h, o)"))
