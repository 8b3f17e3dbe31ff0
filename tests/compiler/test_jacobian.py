"""Jacobians, symmetry and the homeostatic loss of compiled models (homeostasis §3, Eq. 12, App. A.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, randomise_params, random_like, tiny_model

import eqn

FLAT_MODELS = sorted(n for n in TINY if n != "conv_softpool")


def _setup(name):
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(1), scale=0.5)
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    state = random_like(k1, model.program.states, 2, 0.5)
    (x_shape,) = model.program.inputs.values()
    x = jax.random.normal(k2, (2,) + x_shape, jnp.float64)
    return model, state, x


def _ravel(state, names):
    return jnp.concatenate([state[n].reshape(state[n].shape[0], -1) for n in names], axis=1)


@pytest.mark.parametrize("name", FLAT_MODELS)
def test_dense_jacobian_equals_jacfwd_and_matrix_free_products_agree(name):
    model, state, x = _setup(name)
    names = list(model.program.states)
    shapes = model.program.states

    def flat_field(flat, xi):
        tree, offset = {}, 0
        for n in names:
            size = int(np.prod(shapes[n]))
            tree[n] = flat[offset:offset + size].reshape((1,) + shapes[n])
            offset += size
        out = model.ep_field(tree, xi[None])
        return _ravel(out, names)[0]

    tangent = random_like(jax.random.PRNGKey(3), shapes, 2)

    @jax.jit
    def compute(state, x, tangent):
        reference = jax.vmap(jax.jacfwd(flat_field))(_ravel(state, names), x)
        return (reference, model.jacobian(state, x), _ravel(model.jvp(state, x, tangent), names),
                _ravel(model.vjp(state, x, tangent), names))

    reference, dense, jv, vj = compute(state, x, tangent)
    np.testing.assert_allclose(dense, reference, rtol=1e-12, atol=1e-12)
    t = _ravel(tangent, names)
    np.testing.assert_allclose(jv, jnp.einsum("bij,bj->bi", dense, t), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(vj, jnp.einsum("bji,bj->bi", dense, t), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["hopfield_mlp"])
def test_energy_models_have_symmetric_jacobians(name):
    model, state, x = _setup(name)
    np.testing.assert_allclose(model.symmetry(state, x), 1.0, atol=1e-12)


def test_tied_predictive_coding_is_symmetric():
    """With w^b = (w^f)' the predictive-coding field is the gradient flow of ½Σ|ε|² (App. D)."""
    source = (tiny_model("predictive_coding").program.source
              + "\ntie W2b = W2f'\ntie W3b = W3f'\n")
    model = eqn.compile(source, consts=TINY["predictive_coding"], dtype=jnp.float64)
    model = randomise_params(model, jax.random.PRNGKey(5))
    _, state, x = _setup("predictive_coding")
    np.testing.assert_allclose(model.symmetry(state, x), 1.0, atol=1e-12)


def _tied_reciprocal(coordinates: bool):
    source = tiny_model("reciprocal_mlp").program.source + "\ntie W12b = W21f'\ntie W23b = W32f'\n"
    if not coordinates:  # the same map, with EP in the coordinates u
        source = source.replace("coordinates s1 = sigma(u1), s2 = sigma(u2), s3 = sigma(u3)",
                                "let s1 = sigma(u1)\nlet s2 = sigma(u2)\nlet s3 = sigma(u3)")
    model = eqn.compile(source, consts=TINY["reciprocal_mlp"], dtype=jnp.float64)
    return randomise_params(model, jax.random.PRNGKey(5))


def test_reciprocal_map_is_symmetric_in_activated_coordinates():
    """u ← Wσ(u) + b with W symmetric: ∂F/∂u = Wσ'(u) − I is not symmetric, but the field EP
    differentiates, σ'(u)⊙F, has the Jacobian σ'(u)(Wσ'(u) − I), which is (homeostasis App. E.2,
    the authors' activated coordinates)."""
    _, state, x = _setup("reciprocal_mlp")
    model = _tied_reciprocal(coordinates=True)
    np.testing.assert_allclose(model.symmetry(state, x), 1.0, atol=1e-12)
    P = model._param_env()
    n = {k: v.shape[1] for k, v in state.items()}
    weights = np.zeros((sum(n.values()),) * 2)
    h, o = n["u1"], n["u1"] + n["u2"]
    weights[:h, h:o], weights[h:o, :h] = P["W12b"], P["W21f"]
    weights[h:o, o:], weights[o:, h:o] = P["W23b"], P["W32f"]
    field = model.vector_field(state, x)
    for i in range(2):
        u = np.concatenate([np.asarray(state[k][i]) for k in ("u1", "u2", "u3")])
        f = np.concatenate([np.asarray(field[k][i]) for k in ("u1", "u2", "u3")])
        sigma = 1 / (1 + np.exp(-4 * u + 2))
        slope, curvature = 4 * sigma * (1 - sigma), 16 * sigma * (1 - sigma) * (1 - 2 * sigma)
        # d/du [σ'(u)·F(u)] = σ'(u)·J + σ''(u)·F(u); the second term vanishes at a fixed point.
        expected = np.diag(slope) @ (weights @ np.diag(slope) - np.eye(len(u))) + np.diag(curvature * f)
        np.testing.assert_allclose(model.jacobian(state, x)[i], expected, rtol=1e-12, atol=1e-12)
    plain = _tied_reciprocal(coordinates=False)
    assert np.all(plain.symmetry(state, x) < 0.99)


@pytest.mark.parametrize("name", ["untied_leaky", "reciprocal_mlp", "output_feedback", "predictive_coding",
                                  "rnn_untied"])
def test_untied_models_are_not_symmetric(name):
    model, state, x = _setup(name)
    measure = model.symmetry(state, x)
    assert np.all(measure < 0.99) and np.all(measure > 0.0)


def test_symmetry_measure_matches_its_definition():
    model, state, x = _setup("reciprocal_mlp")
    jac = np.asarray(model.jacobian(state, x))[0]
    s = np.linalg.norm((jac + jac.T) / 2)
    a = np.linalg.norm((jac - jac.T) / 2)
    np.testing.assert_allclose(model.symmetry(state, x)[0], s / (s + a), rtol=1e-12)


def test_hutchinson_homeostatic_loss_converges_to_twice_the_skew_norm():
    model, state, x = _setup("reciprocal_mlp")
    jac = np.asarray(model.jacobian(state, x))
    exact = np.trace(np.swapaxes(jac, 1, 2) @ jac, axis1=1, axis2=2) - np.trace(jac @ jac, axis1=1, axis2=2)
    skew = (jac - np.swapaxes(jac, 1, 2)) / 2
    np.testing.assert_allclose(exact, 2 * np.sum(skew**2, axis=(1, 2)), rtol=1e-10)
    errors = []
    for samples in (16, 256, 4096):
        estimate = np.asarray(model.homeostatic_loss(state, x, jax.random.PRNGKey(samples), samples))
        errors.append(np.max(np.abs(estimate - exact) / exact))
    assert errors[-1] < 0.1
    assert errors[-1] < errors[0]


def test_homeostatic_loss_vanishes_for_energy_models():
    model, state, x = _setup("hopfield_mlp")
    values = model.homeostatic_loss(state, x, jax.random.PRNGKey(0), 8)
    np.testing.assert_allclose(values, 0.0, atol=1e-10)
