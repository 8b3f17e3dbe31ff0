"""Diagnostics at the free fixed point, asymmetric initialisation, and the complex-β stability map."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from helpers import randomise_params, tiny_model

import eqn
from eqn.runtime import (
    FixedStep, diagnose, pair_angles, plot_stability_map, rotate_pairs, sign_flip_pairs, stability_map,
)


def _batch(model, n=3):
    (x_shape,) = model.program.inputs.values()
    (y_shape,) = model.program.targets.values()
    x = jax.random.uniform(jax.random.PRNGKey(0), (n,) + x_shape, jnp.float64)
    return x, jax.nn.one_hot(jnp.arange(n) % y_shape[0], y_shape[0], dtype=jnp.float64)


def _exact_diagnostics(model, x, y) -> dict:
    """The diagnostics of a model whose EP is exact: a symmetric Jacobian and aligned estimates."""
    report = diagnose(model, x, y, beta=0.01, n=4, solver=FixedStep(max_steps=3000, tol=1e-12))
    assert abs(report["symmetry"] - 1) < 1e-12
    assert abs(report["homeostatic_loss"]) < 1e-10
    assert all(c > 1 - 1e-6 for c in report["cosine_response_delta"].values())
    assert report["cosine_ep_exact"] > 1 - 1e-6
    return report


def test_energy_model_diagnostics_are_those_of_exact_ep():
    model = randomise_params(tiny_model("hopfield_mlp"), jax.random.PRNGKey(3), 0.3)
    x, y = _batch(model)
    report = _exact_diagnostics(model, x, y)
    assert report["cep_bptt_angle_degrees"] < 5


def test_reciprocal_map_with_aligned_pairs_is_exact_ep():
    """rotate_pairs(…, 0°) sets w_b = w_fᵀ (homeostasis §4); in its activated coordinates the
    reciprocal MLP is then as exact as an energy model, on every diagnostic."""
    model = rotate_pairs(randomise_params(tiny_model("reciprocal_mlp"), jax.random.PRNGKey(3), 0.3), 0.0)
    x, y = _batch(model)
    _exact_diagnostics(model, x, y)


def test_untied_model_diagnostics_show_the_asymmetry():
    model = randomise_params(tiny_model("untied_leaky"), jax.random.PRNGKey(3), 0.5)
    x, y = _batch(model)
    report = diagnose(model, x, y, beta=0.01, n=4, solver=FixedStep(max_steps=3000, tol=1e-12))
    assert report["symmetry"] < 0.99 and report["homeostatic_loss"] > 0
    assert min(report["cosine_response_delta"].values()) < 0.999
    assert set(report["pair_angles_degrees"]) == {"W01/W10", "W12/W21"}


def test_rotation_sets_the_angle_between_pairs():
    model = tiny_model("reciprocal_mlp")
    assert all(a < 1e-5 for a in pair_angles(rotate_pairs(model, 0.0)).values())
    before = pair_angles(model)
    np.testing.assert_allclose(list(pair_angles(rotate_pairs(model, 90.0)).values()), list(before.values()), atol=1e-9)


def test_sign_flips_give_the_requested_angle_on_average():
    """continual-ep App. F.1, Eq. 104: p = (1 − cos Ψ)/2 flips give an angle close to Ψ."""
    source = tiny_model("rnn_untied").program.source
    model = eqn.compile(source, consts=dict(n_in=5, n_h=300, n_out=200), dtype=jnp.float64)
    for target in (45.0, 90.0, 135.0):
        (angle,) = pair_angles(sign_flip_pairs(model, target, jax.random.PRNGKey(1))).values()
        assert abs(angle - target) < 2.0, (target, angle)


def test_stability_map_converges_near_zero_and_draws(tmp_path):
    model = randomise_params(tiny_model("hopfield_mlp"), jax.random.PRNGKey(3), 0.3)
    x, y = _batch(model, 1)
    re, im, residuals = stability_map(model, x, y, radius=1.0, resolution=5, steps=300, tol=1e-6)
    assert residuals.shape == (5, 5)
    assert residuals[2, 2] <= 1e-6  # β = 0
    path = tmp_path / "map.png"
    plot_stability_map(re, im, residuals, path, tol=1e-6)
    assert path.stat().st_size > 1000
