"""Every derived learning rule against JAX autodiff, with JAX as the referee.

Energy form: the rule is −∂E/∂θ at the given state. Flow and map forms: the rule is
(∂F/∂θ)ᵀ·v for the response v = dβu, F being the field EP differentiates (φ'(u)⊙F for states
with coordinates s = φ(u)). Parameters read by the cost also carry −∂C/∂θ.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, randomise_params, random_like, tiny_model

import eqn


def _setup(name, seed=0):
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(100 + seed), scale=0.4)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(200 + seed), 3)
    program = model.program
    state = random_like(k1, program.states, 2, 0.5)
    response = random_like(k3, program.states, 2, 1.0)
    (x_shape,) = program.inputs.values()
    (y_shape,) = program.targets.values()
    x = jax.random.normal(k2, (2,) + x_shape, jnp.float64)
    y = jax.nn.one_hot(jnp.array([0, 1]), y_shape[0], dtype=jnp.float64)
    return model, state, x, y, response


def _autodiff_rules(model, state, x, y, response):
    """What each rule must equal, summed over the batch, computed by JAX."""
    if model.program.form == "energy":
        grads = jax.grad(lambda m: jnp.sum(m.energy(state, x, y, 0.0)))(model)
        return {p: -getattr(grads, p) for p in model.program.rules}
    _, pull = jax.vjp(lambda m: m.ep_field(state, x, y, 0.0), model)
    (grads,) = pull(response)
    return {p: getattr(grads, p) for p in model.program.rules}


@eqx.filter_jit
def _rules_and_references(model, state, x, y, response):
    """Each derived rule (its field part and its cost part), with what autodiff says they must be:
    one compiled program rather than hundreds of eagerly dispatched operations."""
    expected = _autodiff_rules(model, state, x, y, response)
    cost_grads = jax.grad(lambda m: jnp.sum(m.cost(state, y, x)))(model)
    derived, cost_part, direct = {}, {}, {}
    for param, rule in model.program.rules.items():
        derived[param] = jnp.sum(model.rule(param, state, x, y, response=response), axis=0)
        direct[param] = -getattr(cost_grads, param)
        if rule.cost_expression is not None:
            cost_part[param] = jnp.sum(model.rule(param, state, x, y, part="cost"), axis=0)
    return derived, expected, cost_part, direct


@pytest.mark.parametrize("name", sorted(TINY))
def test_rules_equal_autodiff(name):
    model, state, x, y, response = _setup(name)
    derived, expected, cost_part, direct = _rules_and_references(model, state, x, y, response)
    for param in model.program.rules:
        np.testing.assert_allclose(derived[param], expected[param], rtol=1e-10, atol=1e-12, err_msg=param)
        if param in cost_part:
            np.testing.assert_allclose(cost_part[param], direct[param], rtol=1e-10, atol=1e-12, err_msg=param)
        else:
            np.testing.assert_allclose(direct[param], 0.0, atol=1e-14, err_msg=f"{param} is read by the cost")


def test_hopfield_rules_read_as_in_the_design():
    rules = eqn.rules(tiny_model("hopfield_mlp"))
    assert rules["W2"].text() == "ΔW2 ∝ [ rho(o) ⊗ rho(h) ]^β − [ rho(o) ⊗ rho(h) ]^0"
    assert rules["W2"].reads_text() == "reads o (post), h (pre): local"
    assert rules["W1"].text() == "ΔW1 ∝ [ rho(h) ⊗ x ]^β − [ rho(h) ⊗ x ]^0"
    assert rules["b1"].reads_text() == "reads h: local"


def test_untied_rules_are_post_response_times_pre_rate():
    rules = eqn.rules(tiny_model("untied_leaky"))
    assert rules["W12"].text() == "ΔW12 ∝ dβ(h1) ⊗ rho(h2)"
    assert rules["W12"].reads_text() == "reads h1 (post), h2 (pre): local"


def test_rules_in_activated_coordinates_read_the_coordinates():
    """homeostasis App. E.2 in the authors' coordinates s = σ(u): Δw ∝ dβ(s_post) ⊗ s_pre."""
    rules = eqn.rules(tiny_model("reciprocal_mlp"))
    assert rules["W21f"].text() == "ΔW21f ∝ dβ(s2) ⊗ s1"
    assert rules["W21f"].reads_text() == "reads u2 (post), u1 (pre): local"
    assert rules["b3"].text() == "Δb3 ∝ dβ(s3)"


def test_predictive_coding_forward_rule_is_not_local():
    rules = eqn.rules(tiny_model("predictive_coding"))
    assert rules["W1f"].local
    assert not rules["W2f"].local and "W2b" in rules["W2f"].other_params
    assert rules["W2b"].local and rules["W2b"].pre == ("e2",)


def test_tied_parameter_rule_collects_both_uses():
    """rnn_symmetric ties W10 = W01', so W01's rule has the forward and the transposed feedback term."""
    model, state, x, y, response = _setup("rnn_symmetric")
    assert set(model.program.rules) == {"W01", "W1x"}
    value = jnp.sum(model.rule("W01", state, x, y, response=response), axis=0)
    expected = _autodiff_rules(model, state, x, y, response)["W01"]
    np.testing.assert_allclose(value, expected, rtol=1e-10)
