"""Complex β: the nudged dynamics of holomorphic models are complex-differentiable in β, and
models using non-holomorphic operations are reported as such, with the line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, randomise_params, tiny_model

import eqn
from eqn.runtime import FixedStep

HOLOMORPHIC = ["hopfield_mlp", "untied_leaky", "reciprocal_mlp", "predictive_coding", "rnn_untied"]


def _inputs(model, batch=2):
    (x_shape,) = model.program.inputs.values()
    (y_shape,) = model.program.targets.values()
    x = jax.random.uniform(jax.random.PRNGKey(4), (batch,) + x_shape, jnp.float64)
    y = jax.nn.one_hot(jnp.arange(batch) % y_shape[0], y_shape[0], dtype=jnp.float64)
    return x, y


@pytest.mark.parametrize("name", HOLOMORPHIC)
def test_nudged_fixed_point_satisfies_cauchy_riemann(name):
    """u*(β) is holomorphic: the derivative along the real axis equals the one along the imaginary
    axis (central differences), at a complex β on the circle used by hEP."""
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(9), scale=0.3)
    x, y = _inputs(model)
    solver = FixedStep(max_steps=5000, tol=1e-13)
    free = model.free(x, solver=solver)
    beta, h = 0.3 * np.exp(0.7j), 1e-4

    @jax.jit
    def fixed_point(b):
        return model.nudged(x, y, b, init=free, solver=solver)

    along_real = {k: (fixed_point(beta + h)[k] - fixed_point(beta - h)[k]) / (2 * h) for k in free}
    along_imag = {k: (fixed_point(beta + 1j * h)[k] - fixed_point(beta - 1j * h)[k]) / (2j * h) for k in free}
    for k in free:
        scale = float(jnp.max(jnp.abs(along_real[k]))) + 1e-12
        assert float(jnp.max(jnp.abs(along_real[k] - along_imag[k]))) < 1e-6 * max(1.0, scale), k


@pytest.mark.parametrize("name", HOLOMORPHIC)
def test_vector_field_is_complex_linear_in_the_state_direction(name):
    """J(iv) = iJv: the field's derivative in the state is complex-linear at a complex state."""
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(9), scale=0.3)
    x, y = _inputs(model)
    key = jax.random.PRNGKey(1)
    state = {k: 0.3 * (jax.random.normal(key, (2,) + s) + 1j * jax.random.normal(jax.random.fold_in(key, 1), (2,) + s))
             for k, s in model.program.states.items()}
    direction = {k: jax.random.normal(jax.random.fold_in(key, 2), v.shape) + 0j for k, v in state.items()}

    def field(s):
        return model.vector_field(s, x, y, 0.2 + 0.1j)

    _, jv = jax.jvp(field, (state,), (direction,))
    _, jiv = jax.jvp(field, (state,), ({k: 1j * v for k, v in direction.items()},))
    for k in state:
        np.testing.assert_allclose(jiv[k], 1j * jv[k], rtol=1e-12, atol=1e-12)


NON_HOLOMORPHIC = """
model leaky_relu
const n = 3
input x[n]
target y[n]
state h[n] output
param W[n, n] ~ glorot
d h/dt = W @ relu(x) - h
    + abs(h) * 0
cost C = 0.5 * sum((h - y)^2)
"""


def test_non_holomorphic_operations_are_reported_with_their_line():
    program = eqn.load(NON_HOLOMORPHIC)
    assert not program.holomorphic
    assert [(n.operation, n.span.line, n.span.column) for n in program.non_holomorphic] == [
        ("relu", 8, 14), ("abs", 9, 7)]


def test_non_holomorphic_model_is_refused_when_holomorphy_is_required():
    with pytest.raises(eqn.ErrorList) as info:
        eqn.load(NON_HOLOMORPHIC, holomorphic=True)
    lines = [(e.span.line, e.span.column) for e in info.value.errors]
    assert lines == [(8, 14), (9, 7)]
    assert "'relu' is not holomorphic" in info.value.errors[0].message


def test_non_holomorphic_function_inside_user_function_is_found():
    source = NON_HOLOMORPHIC.replace("d h/dt = W @ relu(x) - h\n    + abs(h) * 0",
                                     "fn act(u) = hardsigmoid(u)\nd h/dt = W @ act(x) - h")
    program = eqn.load(source)
    assert [(n.operation, n.span.line) for n in program.non_holomorphic] == [("hardsigmoid", 8)]


def test_every_zoo_model_is_holomorphic():
    for name in TINY:
        assert tiny_model(name).program.holomorphic, name
