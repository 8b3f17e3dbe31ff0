"""Fixed-point solvers on problems whose answer is known by hand (float64): linear fields solved
with numpy, a map whose plain iteration diverges, complex states, batches, dict key order."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from eqn.runtime import Anderson, BlockField, FixedStep, residual_norm

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
    solver = Anderson(max_steps=3000, tol=1e-10, memory=N + 1, warmup=0)
    u, stats = solver.solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
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
    Plain Euler at dt = 0.3 converges slowly; Anderson must get there too, and faster. The
    saturated start keeps the residual flat under plain steps, so the stall rule, which trusts
    plain steps only after seeing them cut the residual, must stay out of the way."""
    def field(u):
        return {"u": jnp.tanh(6.0 * (1.0 - u["u"])) - 0.01 * u["u"]}

    start = {"u": jnp.full((2, 4), -30.0)}
    plain, plain_stats = FixedStep(max_steps=5000, tol=1e-10).solve(field, start, 0.3)
    for solver in (Anderson(max_steps=5000, tol=1e-10), Anderson(max_steps=5000, tol=1e-10, patience=2)):
        u, stats = solver.solve(field, start, 0.3)
        np.testing.assert_allclose(u["u"], plain["u"], atol=1e-9)
        assert int(stats.steps) < int(plain_stats.steps) // 3


@pytest.mark.parametrize("patience,cooldown", [(1, 2), (2, 3), (3, 6)])
def test_the_stall_rule_changes_the_path_not_the_fixed_point(patience, cooldown):
    u, stats = Anderson(max_steps=3000, tol=1e-12, patience=patience, cooldown=cooldown).solve(
        linear_field, {"u": jnp.zeros((3, N))}, 0.2)
    np.testing.assert_allclose(u["u"], EXACT, atol=1e-10)
    assert float(stats.residual) <= 1e-12


def _two_block_map(a, b1, b2):
    """u1 ← a·u2 + b1, u2 ← a·u1 + b2 as a field G(u) − u with two blocks."""
    def part(names):
        def components(u):
            full = {"u1": a * u["u2"] + b1 - u["u1"], "u2": a * u["u1"] + b2 - u["u2"]}
            return {s: full[s] for s in names}
        return components

    return BlockField(part, ("u1", "u2"), (("u1",), ("u2",)))


def test_a_sweep_squares_the_rate_of_a_two_block_map():
    """By hand: synchronously the errors swap and scale, e₁' = a·e₂, e₂' = a·e₁ (eigenvalues ±a);
    in a sweep u2 reads the new u1, so e₂' = a·e₁' = a²·e₂: k sweeps do what 2k steps do."""
    a, b1, b2 = 0.9, 1.0, 2.0
    field = _two_block_map(a, b1, b2)
    exact_u2 = (a * b1 + b2) / (1 - a * a)
    start = {"u1": jnp.zeros((1, 1)), "u2": jnp.zeros((1, 1))}
    for k in (4, 10):
        synchronous, _ = FixedStep(max_steps=k, tol=0.0).solve(field, start, 1.0)
        swept, stats = FixedStep(max_steps=k, tol=0.0, sweep=True).solve(field, start, 1.0)
        np.testing.assert_allclose(float(synchronous["u2"][0, 0]) - exact_u2, a ** k * -exact_u2, rtol=1e-12)
        np.testing.assert_allclose(float(swept["u2"][0, 0]) - exact_u2, a ** (2 * k) * -exact_u2, rtol=1e-12)
        # the reported residual is ‖F(u)‖, not the sweep's own step
        true = float(jnp.max(residual_norm(field(swept))))
        np.testing.assert_allclose(float(stats.residual), true, rtol=1e-12)
    u, stats = Anderson(max_steps=100, tol=1e-12, sweep=True).solve(field, start, 1.0)
    np.testing.assert_allclose(float(u["u2"][0, 0]), exact_u2, rtol=1e-11)
    assert float(stats.residual) <= 1e-11


def test_a_field_without_blocks_sweeps_as_one_block():
    for solver in (FixedStep(max_steps=3000, tol=1e-12, sweep=True), Anderson(max_steps=3000, tol=1e-12, sweep=True)):
        u, _ = solver.solve(linear_field, {"u": jnp.zeros((3, N))}, 0.2)
        np.testing.assert_allclose(u["u"], EXACT, atol=1e-10)


@pytest.mark.parametrize("name", ["reciprocal_mlp", "output_feedback"])
def test_a_sweep_finds_a_layered_models_fixed_point_in_fewer_steps(name):
    """The compiler's blocks on zoo models (float64): the same fixed point as synchronous steps,
    in fewer sweeps than steps (each sweep evaluates every state's field once)."""
    import jax
    from helpers import randomise_params, tiny_model

    model = randomise_params(tiny_model(name), jax.random.PRNGKey(3), 0.6)
    (x_shape,) = model.program.inputs.values()
    x = 4 * jax.random.uniform(jax.random.PRNGKey(1), (8,) + x_shape, jnp.float64)
    synchronous, plain = model.free(x, solver=FixedStep(max_steps=2000, tol=1e-11), with_stats=True)
    swept, stats = model.free(x, solver=FixedStep(max_steps=2000, tol=1e-11, sweep=True), with_stats=True)
    assert float(plain.residual) < 1e-10 and float(stats.residual) < 1e-10
    for s in synchronous:
        np.testing.assert_allclose(swept[s], synchronous[s], atol=1e-9)
    assert int(stats.steps) < 0.6 * int(plain.steps)
