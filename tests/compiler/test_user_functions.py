"""User functions: elementwise ones stay calls with derived derivatives; others are inlined with
the arguments' real shapes (hand-computed values)."""

import jax.numpy as jnp
import numpy as np
import pytest

import eqn

SOURCE = """
input x[2]
target y[2]
state h[2] output
param W[2, 2]
fn g(a) = sum(a) * a
fn sq(u) = u . u
fn lin(A, v) = A @ v
fn rho(u) = tanh(u)
d h/dt = g(h) + lin(W, x) + sq(h) - h + rho'(h)
cost C = 0.5 * sum((h - y)^2)
"""


def test_non_elementwise_functions_are_inlined_with_real_shapes():
    model = eqn.compile(SOURCE, dtype=jnp.float64)
    h = jnp.array([[1.0, 2.0]])
    x = jnp.array([[0.5, -1.0]])
    field = model.vector_field({"h": h}, x)["h"][0]
    expected = 3.0 * np.array([1, 2]) + np.asarray(model.W) @ [0.5, -1.0] + 5.0 - np.array([1, 2]) \
        + 1 - np.tanh([1.0, 2.0]) ** 2
    np.testing.assert_allclose(field, expected, rtol=1e-12)


def test_elementwise_functions_print_as_calls_and_others_expand():
    program = eqn.load(SOURCE)
    from eqn.compiler import render
    text = render(program.dynamics["h"])
    assert "rho'(h)" in text and "sum(h)" in text and "W @ x" in text


def test_prime_of_non_elementwise_function_is_refused():
    with pytest.raises(eqn.ErrorList, match="not an elementwise function of one argument"):
        eqn.load(SOURCE.replace("rho'(h)", "g'(h)"))
