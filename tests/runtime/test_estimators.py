"""The identities of DESIGN.md for the estimators, on zoo models at small sizes, in float64.

The referee is the exact gradient of the loss at the free fixed point: `rbp` (implicit
differentiation with a dense LU solve), itself checked against `bptt` (autodiff through the
unrolled dynamics) and against numbers computed here from the dense Jacobian.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, randomise_params, tiny_model

import eqn
from eqn.runtime import Anderson, FixedStep, estimate
from eqn.runtime._estimators import nudge_response

SOLVER = FixedStep(max_steps=4000, tol=1e-13)
# The identities must hold whichever solver finds the fixed points.
SOLVERS = {"fixed": SOLVER, "anderson": Anderson(max_steps=4000, tol=1e-13),
           "anderson_sweep": Anderson(max_steps=4000, tol=1e-13, sweep=True, patience=2)}


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree_util.tree_leaves(tree)])


def _relative(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _problem(name, seed=3, scale=0.3, batch=4, solver=SOLVER):
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(seed), scale)
    model = model.with_solver(solver)
    (x_shape,) = model.program.inputs.values()
    (y_shape,) = model.program.targets.values()
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch,) + x_shape, jnp.float64)
    y = jax.nn.one_hot(jnp.arange(batch) % y_shape[0], y_shape[0], dtype=jnp.float64)
    return model, x, y


def _grad(model, x, y, estimator, **options):
    options.setdefault("free_solver", model.solver)
    run = eqx.filter_jit(lambda m, x, y: estimate(m, x, y, estimator, **options))
    return run(model, x, y)


@pytest.fixture(scope="module", params=list(SOLVERS))
def hopfield(request):
    """The Hopfield problem with the exact gradient, and the free and nudged phases solved by each
    solver in turn."""
    model, x, y = _problem("hopfield_mlp")
    model = model.with_solver(SOLVERS[request.param])
    exact, info = _grad(model, x, y, "rbp")
    assert info["free_residual"] < 1e-12
    return model, x, y, exact


def _slope(betas, errors) -> float:
    return float(np.polyfit(np.log(betas), np.log(errors), 1)[0])


@pytest.mark.parametrize("n", [2, 4, 6])
def test_hep_error_shrinks_like_beta_to_the_n(hopfield, n):
    """holomorphic-ep Eq. 9: the bias of N points is O(|β|^N)."""
    model, x, y, exact = hopfield
    betas = [0.2, 0.1, 0.05]
    errors = [_relative(_grad(model, x, y, "hep", beta=b, n=n)[0], exact) for b in betas]
    assert abs(_slope(betas, errors) - n) < 0.3, errors


def test_classic_error_shrinks_like_beta(hopfield):
    model, x, y, exact = hopfield
    betas = [0.02, 0.01, 0.005]
    errors = [_relative(_grad(model, x, y, "classic", beta=b)[0], exact) for b in betas]
    assert abs(_slope(betas, errors) - 1) < 0.3, errors


def test_symmetric_equals_hep_with_two_points(hopfield):
    model, x, y, _ = hopfield
    symmetric = _grad(model, x, y, "symmetric", beta=0.3)[0]
    hep = _grad(model, x, y, "hep", beta=0.3, n=2)[0]
    np.testing.assert_allclose(_flat(symmetric), _flat(hep), rtol=1e-12, atol=1e-14)


def test_energy_model_hep_true_rbp_and_bptt_agree(hopfield):
    model, x, y, exact = hopfield
    for estimator, options in [("hep", dict(beta=0.02, n=6)), ("true", {}), ("bptt", dict(bptt_steps=4000)),
                               ("hep", dict(beta=0.02, n=6, path="field"))]:
        grads, _ = _grad(model, x, y, estimator, **options)
        assert _relative(grads, exact) < 1e-6, (estimator, options)


def test_rbp_matches_the_implicit_function_theorem_by_hand(hopfield):
    """dL/dθ = ∂C/∂θ − (∂F/∂θ)ᵀ J^{-T} ∂C/∂u with J from jax.jacfwd, for W2 of one sample."""
    model, x, y, exact = hopfield
    x1, y1 = x[:1], y[:1]
    grads, _ = _grad(model, x1, y1, "rbp")
    free = model.free(x1, solver=SOLVER)
    jac = np.asarray(model.jacobian(free, x1))[0]
    g = np.concatenate([np.zeros(7), np.asarray(free["o"][0] - y1[0])])
    lam = np.linalg.solve(jac.T, g)
    dF_dW2 = jax.jacfwd(lambda w: jnp.concatenate([v[0] for v in eqx.tree_at(
        lambda m: m.W2, model, w).vector_field(free, x1).values()]))(model.W2)
    expected = -np.tensordot(lam, np.asarray(dF_dW2), axes=1)
    np.testing.assert_allclose(grads.W2, expected, rtol=1e-9)


def test_untied_flow_response_is_inverse_jacobian_times_transpose_times_delta():
    """homeostasis Eq. 10: d_βu* = J⁻¹Jᵀδ with δ the adjoint of the exact gradient."""
    model, x, y = _problem("untied_leaky")
    free = model.free(x, solver=SOLVER)
    response = nudge_response(model, x, y, free, "true", free_solver=SOLVER)
    from eqn.runtime._estimators import RecurrentBackprop
    delta = RecurrentBackprop().adjoint(model, x, y, free)
    names = list(model.program.states)
    flat = lambda t: np.concatenate([np.asarray(t[n]) for n in names], axis=1)  # noqa: E731
    jac = np.asarray(model.jacobian(free, x))
    for b in range(x.shape[0]):
        predicted = np.linalg.solve(jac[b], jac[b].T @ flat(delta)[b])
        np.testing.assert_allclose(flat(response)[b], predicted, rtol=1e-8, atol=1e-12)
    # the response of an asymmetric network is not the adjoint itself
    assert np.linalg.norm(flat(response) - flat(delta)) > 1e-3 * np.linalg.norm(flat(delta))
    hep = nudge_response(model, x, y, free, "hep", beta=0.02, n=6, free_solver=SOLVER)
    np.testing.assert_allclose(flat(hep), flat(response), rtol=1e-6, atol=1e-9)


def test_tied_flow_response_equals_delta():
    source = tiny_model("predictive_coding").program.source + "\ntie W2b = W2f'\ntie W3b = W3f'\n"
    model = randomise_params(eqn.compile(source, consts=TINY["predictive_coding"], dtype=jnp.float64),
                             jax.random.PRNGKey(2), 0.3)
    _, x, y = _problem("predictive_coding")
    free = model.free(x, solver=SOLVER)
    response = nudge_response(model, x, y, free, "true", free_solver=SOLVER)
    from eqn.runtime._estimators import RecurrentBackprop
    delta = RecurrentBackprop().adjoint(model, x, y, free)
    for k in response:
        np.testing.assert_allclose(response[k], delta[k], rtol=1e-8, atol=1e-12)


def test_reciprocal_map_in_activated_coordinates_gives_exact_gradients():
    """homeostasis App. E.2 with w_b = w_fᵀ: EP on σ'(u)⊙(G(u) − u), the field `coordinates`
    declares, is unbiased (Eq. 10 vanishes), so `true` and small-|β| hEP equal the exact gradient.
    EP on G(u) − u itself (the same map, no coordinates) is not, whatever the weights."""
    source = tiny_model("reciprocal_mlp").program.source + "\ntie W12b = W21f'\ntie W23b = W32f'\n"
    _, x, y = _problem("reciprocal_mlp")
    gaps = {}
    for coordinates in (True, False):
        text = source if coordinates else source.replace(
            "coordinates s1 = sigma(u1), s2 = sigma(u2), s3 = sigma(u3)",
            "let s1 = sigma(u1)\nlet s2 = sigma(u2)\nlet s3 = sigma(u3)")
        model = eqn.compile(text, consts=TINY["reciprocal_mlp"], dtype=jnp.float64)
        model = randomise_params(model, jax.random.PRNGKey(4), 0.3).with_solver(SOLVER)
        exact, info = _grad(model, x, y, "rbp")
        assert info["free_residual"] < 1e-12
        gaps[coordinates] = [_relative(_grad(model, x, y, name, **options)[0], exact)
                             for name, options in (("true", {}), ("hep", dict(beta=0.01, n=6)))]
    assert max(gaps[True]) < 1e-6, gaps
    assert min(gaps[False]) > 1e-2, gaps


def test_rbp_adjoint_dynamics_converge_to_the_solve_and_truncate_like_the_nudged_phase():
    """Recurrent backprop run as dynamics (Almeida-Pineda; the homeostasis paper's RBP baseline):
    to convergence it is the exact gradient; truncated at K steps it is the gradient through K
    steps of the linearised adjoint, which for a tied (symmetric) map equals the `true` estimate
    from a K-step nudged phase."""
    source = tiny_model("reciprocal_mlp").program.source + "\ntie W12b = W21f'\ntie W23b = W32f'\n"
    model = randomise_params(eqn.compile(source, consts=TINY["reciprocal_mlp"], dtype=jnp.float64),
                             jax.random.PRNGKey(4), 0.3).with_solver(SOLVER)
    _, x, y = _problem("reciprocal_mlp")
    exact, _ = _grad(model, x, y, "rbp")
    converged, info = _grad(model, x, y, "rbp", adjoint="dynamics", nudged_solver=SOLVER)
    assert info["nudged_residual"] < 1e-12
    assert _relative(converged, exact) < 1e-9
    short = FixedStep(max_steps=3, tol=0.0)
    truncated, _ = _grad(model, x, y, "rbp", adjoint="dynamics", nudged_solver=short)
    true_short, _ = _grad(model, x, y, "true", nudged_solver=short)
    assert _relative(truncated, exact) > 1e-3
    assert _relative(truncated, true_short) < 1e-9


def test_rbp_survives_saturated_units_in_float32():
    """Where σ' underflows, σ'(u)⊙F has zero rows; rbp solves with the map's own Jacobian, which
    gives the same gradient and stays invertible."""
    model = eqn.compile(tiny_model("reciprocal_mlp").program.source, consts=TINY["reciprocal_mlp"],
                        key=jax.random.PRNGKey(0))
    _, x, y = _problem("reciprocal_mlp")
    x = 100.0 * x.astype(jnp.float32)
    assert float(jnp.min(jnp.abs(model.coordinate_slopes(model.free(x))["u1"]))) == 0.0
    grads, _ = estimate(model, x, y.astype(jnp.float32), "rbp")
    assert np.all(np.isfinite(_flat(grads)))


def test_homeostatic_gradient_converges_to_gradient_of_twice_skew_norm():
    """homeostasis Eq. 12 / App. A.2: the Hutchinson loss has expectation 2‖A‖²_F, so its
    parameter gradient converges to the gradient of 2‖A‖²_F as the probes grow."""
    model, x, y = _problem("reciprocal_mlp", batch=2)
    free = model.free(x, solver=SOLVER)

    def exact(m):
        jac = m.jacobian(free, x)
        skew = 0.5 * (jac - jnp.swapaxes(jac, 1, 2))
        return jnp.mean(2.0 * jnp.sum(skew**2, axis=(1, 2)))

    reference = jax.grad(exact)(model)
    errors = []
    for samples in (4, 64, 1024):
        hutchinson = eqx.filter_jit(jax.grad(
            lambda m: jnp.mean(m.homeostatic_loss(free, x, jax.random.PRNGKey(samples), samples))))
        errors.append(_relative(hutchinson(model), reference))
    assert errors[-1] < 0.15 and errors[-1] < errors[0], errors
    with_homeo, info = _grad(model, x, y, "true", homeostasis=1.0, homeostasis_samples=8)
    without, _ = _grad(model, x, y, "true")
    assert info["homeostatic_loss"] > 0
    assert _relative(with_homeo, without) > 1e-3


def test_cep_normalised_updates_approach_truncated_bptt():
    """continual-ep Theorem 1 (GDD): with the free phase at its steady state, the normalised
    C-EP update summed over K steps equals −(BPTT gradient through the last K steps) as β, η → 0."""
    model, x, y = _problem("hopfield_mlp")
    free = model.free(x, solver=SOLVER)
    for steps in (1, 5, 30):
        def truncated_loss(m):
            u = free
            for _ in range(steps):
                f = m.vector_field(u, x)
                u = {k: u[k] + m.dt * f[k] for k in u}
            return jnp.mean(m.cost(u, y, x))

        bptt = jax.grad(truncated_loss)(model)
        errors = [_relative(_grad(model, x, y, "cep", beta=b, eta=e, nudged_steps=steps)[0], bptt)
                  for b, e in ((1e-2, 1e-4), (1e-3, 1e-6))]
        assert errors[1] < 1e-2 and errors[1] < errors[0], (steps, errors)


def test_online_estimate_approaches_hep_as_periods_grow():
    """holomorphic-ep App. A.6 / homeostasis Eq. 8-9: the running Fourier coefficient of an
    always-nudged network converges to the hEP estimate."""
    model, x, y = _problem("untied_leaky")
    hep, _ = _grad(model, x, y, "hep", beta=0.1, n=4)
    errors = [_relative(_grad(model, x, y, "online", beta=0.1, n=4, periods=p, steps_per_point=300)[0], hep)
              for p in (1, 4, 16)]
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.03, errors


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("name", ["untied_leaky", "reciprocal_mlp"])
def test_ep_estimates_on_flows_converge_to_the_true_response_estimate(name, solver):
    model, x, y = _problem(name, solver=SOLVERS[solver])
    true, _ = _grad(model, x, y, "true")
    hep, _ = _grad(model, x, y, "hep", beta=0.02, n=6)
    assert _relative(hep, true) < 1e-6
    exact, _ = _grad(model, x, y, "rbp")
    assert _relative(true, exact) > 1e-4  # asymmetric networks: EP is biased (homeostasis Eq. 11)


def test_non_holomorphic_model_refused_for_complex_estimators():
    source = tiny_model("untied_leaky").program.source.replace("fn rho(u) = sigmoid(u)", "fn rho(u) = relu(u)").replace(
        "model untied_leaky holomorphic", "model untied_relu")
    model = eqn.compile(source, consts=TINY["untied_leaky"], dtype=jnp.float64)
    _, x, y = _problem("untied_leaky")
    with pytest.raises(ValueError, match="not holomorphic.*relu at line"):
        estimate(model, x, y, "hep", n=4)
    grads, _ = estimate(model, x, y, "classic", beta=0.1)
    assert np.all(np.isfinite(_flat(grads)))


@pytest.mark.parametrize("eliminate", [True, False])
def test_matrix_free_adjoint_dynamics_match_the_dense_solve(eliminate):
    """rbp on large states solves Jᵀλ = ∂C/∂u matrix-free (GMRES), on the Schur complement or on
    the whole Jacobian; either must match the dense solve."""
    from eqn.runtime._estimators import RecurrentBackprop
    model, x, y = _problem("untied_leaky")
    free = model.free(x, solver=SOLVER)
    full = RecurrentBackprop()
    full.eliminate = False
    dense = full.adjoint(model, x, y, free, SOLVER)
    iterative = RecurrentBackprop()
    iterative.dense_limit, iterative.eliminate = 0, eliminate
    matrix_free = iterative.adjoint(model, x, y, free, SOLVER)
    for k in dense:
        np.testing.assert_allclose(matrix_free[k], dense[k], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, block", [("reciprocal_mlp", ("u1", "u3")), ("output_feedback", ("u1",)),
                                         ("conv_small", ("u2",)), ("rnn_untied", ("s1",)), ("hopfield_mlp", ("h",)),
                                         ("untied_leaky", ("o", "h2"))])
def test_the_adjoint_solve_on_the_schur_complement_matches_the_full_solve(name, block):
    """Where the field of a block of states reads no other state of the block and its own only
    elementwise, the Jacobian is diagonal there (−I for a layered map; a leak and φ'(u) terms for a
    flow or an energy): rbp eliminates the block and solves the rest (a Schur complement). Same λ
    as the full LU."""
    from eqn.runtime._estimators import RecurrentBackprop
    model, x, y = _problem(name, scale=0.5)
    assert model.program.diagonal_block == block
    free = model.free(x, solver=SOLVER)
    full = RecurrentBackprop()
    full.eliminate = False
    expected = full.adjoint(model, x, y, free)
    eliminated = RecurrentBackprop().adjoint(model, x, y, free)
    for k in expected:
        np.testing.assert_allclose(eliminated[k], expected[k], rtol=1e-10, atol=1e-13)


def test_free_phase_in_bfloat16_gives_nearly_the_same_gradient():
    """The low-precision free phase (a speed option for accelerators) perturbs the free fixed
    point by bfloat16 rounding (~1e-2) and the gradient by as little."""
    model, x, y = _problem("reciprocal_mlp", solver=FixedStep(max_steps=200, tol=1e-12))
    full, _ = _grad(model, x, y, "hep", beta=0.1, n=2)
    low, info = _grad(model, x, y, "hep", beta=0.1, n=2, free_dtype="bfloat16")
    a, b = _flat(full), _flat(low)
    assert np.all(np.isfinite(b)) and low.W_in.dtype == jnp.float64
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99
    assert _relative(low, full) > 1e-6  # the option did act
