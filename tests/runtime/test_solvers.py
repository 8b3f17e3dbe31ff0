"""Fixed-point solvers on problems whose answer is known by hand (float64): linear fields solved
with numpy, a map whose plain iteration diverges, complex states, batches, dict key order."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from eqn.runtime import Anderson, FixedStep, residual_norm

rng = np.random.default_rng(0)
N = 8
A = -np.eye(N) + 0.3 * rng.normal(size=(N, N)) / np.sqrt(N)  # a stable, non-symmetric linear flow
B = rng.normal(size=(3, N))  # one constant drive per sample
EXACT = np.linalg.solve(-A, B.T).T  # F(u) = A u + b = 0


def linear_field(u):
    return {"u": u["u"] @ A.T + B[: u["u"].shape[0]]}


@pytest.mark.parametrize("solver", [FixedStep(max_steps=3000, tol=1e-12), Anderson(max_steps=3000, tol=1e-12)])
def test_solvers_find_the_fixed_point_of_a_linear_flow(solver):
    u, stats = solver.solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
    np.testing.assert_allclose(u["u"], EXACT, atol=1e-10)
    assert float(stats.residual) <= 1e-12
    np.testing.assert_allclose(float(stats.residual), float(jnp.max(residual_norm(linear_field(u)))), rtol=1e-12)


def test_anderson_with_full_memory_solves_a_linear_problem_in_about_n_steps():
    """On a linear problem Anderson mixing with memory ≥ n is GMRES in disguise (Walker & Ni,
    Theorem 2.2): exact after about n + 1 mixing steps (n + 3 evaluations unregularised, a couple
    more with the default Tikhonov term), where plain Euler needs ~140."""
    plain = FixedStep(max_steps=3000, tol=1e-10).solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)[1]
    u, stats = Anderson(max_steps=3000, tol=1e-10, memory=N + 1, warmup=0).solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
    assert int(stats.steps) <= N + 5 < int(plain.steps) // 5
    np.testing.assert_allclose(u["u"], EXACT, atol=1e-9)


def test_anderson_converges_where_plain_iteration_diverges():
    """The map u ← −1.5u + 1 has the fixed point 0.4, but plain iteration multiplies the error by
    −1.5 each step."""
    def field(u):
        return {"u": -2.5 * u["u"] + 1.0}  # G(u) − u

    start = {"u": jnp.zeros((2, 3))}
    _, plain = FixedStep(max_steps=30, tol=1e-12).solve(field, start, 1.0)
    assert float(plain.residual) > 1e3
    u, stats = Anderson(max_steps=30, tol=1e-12, warmup=0).solve(field, start, 1.0)
    np.testing.assert_allclose(u["u"], 0.4, atol=1e-12)
    assert int(stats.steps) <= 4
    u, stats = Anderson(max_steps=30, tol=1e-12, warmup=5).solve(field, start, 1.0)  # plain steps first
    np.testing.assert_allclose(u["u"], 0.4, atol=1e-11)


def test_anderson_complex_states():
    shift = np.array([0.3 + 0.4j, -1.0j, 2.0, 0.5 - 0.5j])
    target = np.linalg.solve(-(A[:4, :4] + 0.2j * np.eye(4)), shift)

    def field(u):
        return {"u": u["u"] @ (A[:4, :4] + 0.2j * np.eye(4)).T + shift}

    u, stats = Anderson(max_steps=500, tol=1e-12).solve(field, {"u": jnp.zeros((1, 4), jnp.complex128)}, 0.3)
    np.testing.assert_allclose(u["u"][0], target, atol=1e-10)


def test_anderson_samples_do_not_depend_on_the_rest_of_the_batch():
    solver = Anderson(max_steps=3000, tol=1e-12)
    together, _ = solver.solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
    alone, _ = solver.solve(linear_field, {"u": jnp.zeros((1, N))}, 0.2)
    np.testing.assert_allclose(together["u"][0], alone["u"][0], atol=1e-11)


def test_anderson_pairs_states_by_name_whatever_the_dict_order():
    """The field may return its states in another order than the start state has."""
    def field(u):
        return {"b": 1.0 - u["b"], "a": jnp.sum(u["b"], axis=1, keepdims=True) - u["a"]}

    u, _ = Anderson(max_steps=200, tol=1e-12).solve(field, {"a": jnp.zeros((1, 2)), "b": jnp.zeros((1, 3))}, 0.5)
    np.testing.assert_allclose(u["b"], 1.0, atol=1e-11)
    np.testing.assert_allclose(u["a"], 3.0, atol=1e-11)


def test_a_phase_that_runs_out_of_steps_reports_its_residual():
    u, stats = Anderson(max_steps=2, tol=1e-12).solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
    assert int(stats.steps) == 2
    assert float(stats.residual) > 1e-3
    np.testing.assert_allclose(float(stats.residual), float(jnp.max(residual_norm(linear_field(u)))), rtol=1e-12)


def test_anderson_restarts_instead_of_wandering_on_a_stiff_start():
    """A strongly nonlinear flow started far from its fixed point: u' = tanh(6(1 − u)) − 0.01u.
    Plain Euler at dt = 0.3 converges slowly; Anderson must get there too, and faster."""
    def field(u):
        return {"u": jnp.tanh(6.0 * (1.0 - u["u"])) - 0.01 * u["u"]}

    start = {"u": jnp.full((2, 4), -30.0)}
    plain, plain_stats = FixedStep(max_steps=5000, tol=1e-10).solve(field, start, 0.3)
    u, stats = Anderson(max_steps=5000, tol=1e-10).solve(field, start, 0.3)
    np.testing.assert_allclose(u["u"], plain["u"], atol=1e-9)
    assert int(stats.steps) < int(plain_stats.steps)
