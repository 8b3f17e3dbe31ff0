"""Every zoo model against its paper's equations written directly in jax.numpy.

The compiled vector field (or map) must equal the reference at random states, inputs, targets and
parameters, in float64, to 1e-10 relative error, for real and complex β. Energy models are also
checked against −∇(E + βC) from `jax.grad` of a hand-written energy.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY, randomise_params, random_like, tiny_model


def sig4(u):
    """Shifted sigmoid 1/(1 + exp(-4u + 2)) of holomorphic-ep App. B.1 and homeostasis App. E.2."""
    return 1.0 / (1.0 + jnp.exp(-4.0 * u + 2.0))


def sig4_prime(u):
    s = sig4(u)
    return 4.0 * s * (1.0 - s)


def logistic(u):
    return 1.0 / (1.0 + jnp.exp(-u))


def dsilu(z):
    """holomorphic-ep App. B.2."""
    return 0.5 * z * logistic(z) + (1.0 - 0.5 * z) * logistic(z - 2.0)


def softmax(v):
    e = jnp.exp(v - jnp.max(jnp.real(v)))
    return e / jnp.sum(e)


# ---------------------------------------------------------------------------- references (one sample)


def hopfield_energy(P, S, x, y, beta):
    h, o = S["h"], S["o"]
    energy = (0.5 * (h @ h + o @ o) - sig4(h) @ (P["W1"] @ x) - sig4(o) @ (P["W2"] @ sig4(h))
              - P["b1"] @ sig4(h) - P["b2"] @ sig4(o))
    return energy + beta * 0.5 * jnp.sum((o - y) ** 2)


def hopfield_field(P, S, x, y, beta):
    # du/dt = -dF/du; the holomorphic derivative is the VJP with cotangent 1 (no conjugation).
    _, pull = jax.vjp(lambda s: hopfield_energy(P, s, x, y, beta), S)
    grads = pull(jnp.ones((), jnp.result_type(beta, S["h"])))[0]
    return {k: -v for k, v in grads.items()}


def untied_leaky_field(P, S, x, y, beta):
    """vector-field Eq. 6-8 with the nudge of Eq. 14-15."""
    o, h1, h2 = S["o"], S["h1"], S["h2"]
    return {
        "o": P["W01"] @ logistic(h1) - o + beta * (y - o),
        "h1": P["W12"] @ logistic(h2) + P["W10"] @ logistic(o) - h1,
        "h2": P["W23"] @ logistic(x) + P["W21"] @ logistic(h1) - h2,
    }


def readout_nudge(P, u3, y, beta):
    """β w_roᵀ(y − softmax(w_ro σ(u_L) + b_ro)) = −β ∂C/∂σ(u_L): homeostasis App. E.2, as printed."""
    p = softmax(P["W_ro"] @ sig4(u3) + P["b_ro"])
    return beta * (P["W_ro"].T @ (y - p))


def reciprocal_field(P, S, x, y, beta):
    """homeostasis App. E.2 multi-layer networks; field = G(u) - u."""
    u1, u2, u3 = S["u1"], S["u2"], S["u3"]
    g1 = P["W_in"] @ x + P["W12b"] @ sig4(u2) + P["b1"]
    g2 = P["W21f"] @ sig4(u1) + P["W23b"] @ sig4(u3) + P["b2"]
    g3 = P["W32f"] @ sig4(u2) + P["b3"] + readout_nudge(P, u3, y, beta)
    return {"u1": g1 - u1, "u2": g2 - u2, "u3": g3 - u3}


def output_feedback_field(P, S, x, y, beta):
    """homeostasis Fig. 4e: the output feeds back to the first hidden layer only."""
    u1, u2, u3 = S["u1"], S["u2"], S["u3"]
    g1 = P["W_in"] @ x + P["W13"] @ sig4(u3) + P["b1"]
    g2 = P["W21"] @ sig4(u1) + P["b2"]
    g3 = P["W32"] @ sig4(u2) + P["b3"] + readout_nudge(P, u3, y, beta)
    return {"u1": g1 - u1, "u2": g2 - u2, "u3": g3 - u3}


def predictive_coding_field(P, S, x, y, beta):
    """homeostasis App. D with u_0 = x and the squared-error nudge on the top layer."""
    u1, u2, u3 = S["u1"], S["u2"], S["u3"]
    e1 = u1 - P["W1f"] @ sig4(x)
    e2 = u2 - P["W2f"] @ sig4(u1)
    e3 = u3 - P["W3f"] @ sig4(u2)
    return {
        "u1": -e1 + sig4_prime(u1) * (P["W2b"] @ e2),
        "u2": -e2 + sig4_prime(u2) * (P["W3b"] @ e3),
        "u3": -e3 + beta * (y - u3),
    }


def cep_sigma(u):
    """continual-ep Eq. 102."""
    return 1.0 / (1.0 + jnp.exp(-4.0 * (u - 0.5)))


def rnn_field(P, S, x, y, beta, feedback):
    """continual-ep App. E.1 / E.4 (Eq. 85, 94, 98), one hidden layer; field = G(s) - s."""
    s0, s1 = S["s0"], S["s1"]
    g0 = cep_sigma(P["W01"] @ s1) + beta * (y - s0)
    g1 = cep_sigma(P["W1x"] @ x + feedback(P) @ s0)
    return {"s0": g0 - s0, "s1": g1 - s1}


def conv(x, kernel, padding):
    dtype = jnp.result_type(x, kernel)
    return jax.lax.conv_general_dilated(x[None].astype(dtype), kernel.astype(dtype), (1, 1), [(padding, padding)] * 2,
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]


def softpool(x):
    """Softmax pooling over 2x2 windows with stride 2 (holomorphic-ep App. B.2, τ = 1)."""
    c, h, w = x.shape
    windows = x[:, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 2, 4)
    windows = windows.reshape(c, h // 2, w // 2, 4)
    weights = jnp.exp(windows - jnp.max(jnp.real(windows)))
    return jnp.sum(weights * windows, axis=-1) / jnp.sum(weights, axis=-1)


def conv_field(P, S, x, y, beta):
    """homeostasis App. E.2 convolutional network; P~ as the VJP of u_l+1 . P(w_b * σ(u_l))."""
    u1, u2, u3, u4 = S["u1"], S["u2"], S["u3"], S["u4"]

    def backward(u_low, kernel, u_high, padding):
        return jax.grad(lambda s: jnp.sum(u_high * softpool(conv(s, kernel, padding))),
                        holomorphic=jnp.iscomplexobj(u_low))(dsilu(u_low))

    g1 = softpool(conv(x, P["W1f"], 1)) + backward(u1, P["W2b"], u2, 1) + P["b1"]
    g2 = softpool(conv(dsilu(u1), P["W2f"], 1)) + backward(u2, P["W3b"], u3, 1) + P["b2"]
    g3 = softpool(conv(dsilu(u2), P["W3f"], 1)) + backward(u3, P["W4b"], u4, 0) + P["b3"]
    g4 = softpool(conv(dsilu(u3), P["W4f"], 0)) + P["b4"]
    g4 = g4 + beta * _readout_pull(P, u4, y)
    return {"u1": g1 - u1, "u2": g2 - u2, "u3": g3 - u3, "u4": g4 - u4}


def conv_small_field(P, S, x, y, beta):
    """The two-layer version of conv_field (same blocks, 28x28 sizes in the zoo)."""
    u1, u2 = S["u1"], S["u2"]
    back = jax.grad(lambda s: jnp.sum(u2 * softpool(conv(s, P["W2b"], 1))),
                    holomorphic=jnp.iscomplexobj(u1))(dsilu(u1))
    g1 = softpool(conv(x, P["W1f"], 1)) + back + P["b1"]
    g2 = softpool(conv(dsilu(u1), P["W2f"], 1)) + P["b2"] + beta * _readout_pull(P, u2, y)
    return {"u1": g1 - u1, "u2": g2 - u2}


def _readout_pull(P, u4, y):
    """-∂C/∂u4 for the cross-entropy readout on flatten(dsilu(u4)), via a VJP with cotangent 1."""
    def cost(u):
        logits = P["W_ro"] @ dsilu(u).reshape(-1) + P["b_ro"]
        c = jnp.max(jnp.real(logits))
        return c + jnp.log(jnp.sum(jnp.exp(logits - c))) - y @ logits
    _, pull = jax.vjp(cost, u4)
    return -pull(jnp.ones((), u4.dtype))[0]


REFERENCES = {
    "hopfield_mlp": hopfield_field,
    "untied_leaky": untied_leaky_field,
    "reciprocal_mlp": reciprocal_field,
    "output_feedback": output_feedback_field,
    "predictive_coding": predictive_coding_field,
    "rnn_symmetric": lambda *a: rnn_field(*a, feedback=lambda P: P["W01"].T),
    "rnn_untied": lambda *a: rnn_field(*a, feedback=lambda P: P["W10"]),
    "conv_softpool": conv_field,
    "conv_small": conv_small_field,
}


def _sample(model, key, batch=3, complex_state=False):
    k1, k2, k3 = jax.random.split(key, 3)
    program = model.program
    state = random_like(k1, program.states, batch, 0.5)
    if complex_state:
        imag = random_like(k3, program.states, batch, 0.3)
        state = {n: state[n] + 1j * imag[n] for n in state}
    (x_name, x_shape), = program.inputs.items()
    (y_name, y_shape), = program.targets.items()
    x = jax.random.normal(k2, (batch,) + x_shape, jnp.float64)
    y = jax.nn.one_hot(jnp.arange(batch) % y_shape[0], y_shape[0], dtype=jnp.float64)
    return state, x, y


def _relative_error(a: dict, b: dict) -> float:
    num = sum(float(jnp.sum(jnp.abs(a[k] - b[k]) ** 2)) for k in b)
    den = sum(float(jnp.sum(jnp.abs(b[k]) ** 2)) for k in b)
    return np.sqrt(num / den)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("beta", [0.0, 0.37, 0.4 * np.exp(0.9j)])
def test_compiled_field_equals_paper_equations(name, beta):
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(7), scale=0.4)
    state, x, y = _sample(model, jax.random.PRNGKey(11), complex_state=isinstance(beta, complex))
    compiled = eqx.filter_jit(lambda m, s, x, y, b: m.vector_field(s, x, y, b))(model, state, x, y, beta)
    reference = jax.jit(jax.vmap(REFERENCES[name], in_axes=(None, 0, 0, 0, None)))(model.params, state, x, y, beta)
    assert set(compiled) == set(reference)
    for k in reference:
        assert compiled[k].shape == reference[k].shape
    assert _relative_error(compiled, reference) < 1e-10


@pytest.mark.parametrize("name", ["reciprocal_mlp", "output_feedback"])
@pytest.mark.parametrize("beta", [0.0, 0.37, 0.4 * np.exp(0.9j)])
def test_ep_field_is_the_map_field_in_activated_coordinates(name, beta):
    """With `coordinates s = sigma(u)`, EP differentiates σ'(u)⊙(G_β(u) − u), whose β-derivative is
    −∂C/∂u (homeostasis Definition 1) although the map itself is nudged by −β ∂C/∂σ(u)."""
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(7), scale=0.4)
    state, x, y = _sample(model, jax.random.PRNGKey(12), complex_state=isinstance(beta, complex))
    compiled = model.ep_field(state, x, y, beta)
    field = jax.vmap(REFERENCES[name], in_axes=(None, 0, 0, 0, None))(model.params, state, x, y, beta)
    assert _relative_error(compiled, {k: sig4_prime(state[k]) * field[k] for k in field}) < 1e-10
    if beta == 0.0:
        d_beta = jax.jvp(lambda b: model.ep_field(state, x, y, b), (0.0,), (1.0,))[1]
        cost_grad = jax.grad(lambda s: jnp.sum(model.cost(s, y, x)))(state)
        assert _relative_error(d_beta, {k: -v for k, v in cost_grad.items()}) < 1e-12


def test_energy_model_field_is_minus_gradient_of_its_energy():
    model = randomise_params(tiny_model("hopfield_mlp"), jax.random.PRNGKey(3))
    state, x, y = _sample(model, jax.random.PRNGKey(4))
    for beta in (0.0, 0.8):
        grads = jax.grad(lambda s: jnp.sum(model.energy(s, x, y, beta)))(state)
        field = model.vector_field(state, x, y, beta)
        assert _relative_error(field, {k: -v for k, v in grads.items()}) < 1e-12
    reference = jax.vmap(hopfield_energy, in_axes=(None, 0, 0, 0, None))(model.params, state, x, y, 0.8)
    np.testing.assert_allclose(model.energy(state, x, y, 0.8), reference, rtol=1e-12)


def test_map_step_is_the_map():
    model = randomise_params(tiny_model("reciprocal_mlp"), jax.random.PRNGKey(5))
    state, x, y = _sample(model, jax.random.PRNGKey(6))
    stepped = model.step(state, x, y, 0.3)
    reference = jax.vmap(reciprocal_field, in_axes=(None, 0, 0, 0, None))(model.params, state, x, y, 0.3)
    assert _relative_error(stepped, {k: state[k] + reference[k] for k in state}) < 1e-12


def test_tiny_sizes_cover_every_zoo_model():
    from helpers import MODELS
    assert sorted(p.stem for p in MODELS.glob("*.eqn")) == sorted(TINY) == sorted(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_free_phase_field_drops_the_teaching_term(name):
    """At a literal β = 0 the compiled field is the free dynamics alone: it reads neither the
    target nor β, and it equals the nudged field evaluated at a traced β = 0."""
    from eqn.compiler._ir import free_vars

    model = randomise_params(tiny_model(name), jax.random.PRNGKey(7), scale=0.4)
    program = model.program
    for roots in (program.free_field, program.free_ep_field):
        assert set(roots) == set(program.states)
        read = set().union(*(free_vars(node) for node in roots.values()))
        assert not read & (set(program.targets) | {"beta"})
    state, x, y = _sample(model, jax.random.PRNGKey(13))
    for ep in (False, True):
        at_rest = jax.jit(lambda: model.phase_field(x, y, 0.0, ep=ep)(state))()  # the literal stays static
        traced = jax.jit(lambda b: model.phase_field(x, y, b, ep=ep)(state))(0.0)
        assert _relative_error(at_rest, traced) < 1e-14


SWEEP_BLOCKS = {  # by hand from the equations: layers alternate; output feedback closes a cycle of three
    "reciprocal_mlp": (("u1", "u3"), ("u2",)),
    "predictive_coding": (("u1", "u3"), ("u2",)),
    "output_feedback": (("u1",), ("u2",), ("u3",)),
    "hopfield_mlp": (("h",), ("o",)),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_sweep_blocks_never_read_their_own_block(name):
    """The sweep blocks partition the states, no state's field reads another state of its block
    (so updating a block at once is updating its states one by one), and a block's components
    evaluated alone equal the full field's."""
    from eqn.compiler._ir import free_vars

    model = randomise_params(tiny_model(name), jax.random.PRNGKey(7), scale=0.4)
    program = model.program
    blocks = program.sweep_blocks
    assert sorted(s for block in blocks for s in block) == sorted(program.states)
    for block in blocks:
        for s in block:
            assert not set(free_vars(program.field[s])) & (set(block) - {s}), (s, block)
    if name in SWEEP_BLOCKS:
        assert blocks == SWEEP_BLOCKS[name]
    state, x, y = _sample(model, jax.random.PRNGKey(13))
    field = model.phase_field(x, y, 0.37)
    full, parts = jax.jit(lambda s: (field(s), [field.part(block)(s) for block in blocks]))(state)
    for block, alone in zip(blocks, parts):
        assert set(alone) == set(block)
        for s in block:
            np.testing.assert_array_equal(alone[s], full[s])


DIAGONAL_BLOCKS = {  # by hand: every other layer reads the other layers only, or itself through a leak
    # and φ'(u); predictive coding's errors u − W·f(u_below) feed back through Wᵀ, so no block is
    "reciprocal_mlp": ("u1", "u3"),
    "hopfield_mlp": ("h",),
    "untied_leaky": ("o", "h2"),
    "predictive_coding": (),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_the_diagonal_block_has_a_diagonal_jacobian(name):
    """`Program.diagonal_block` (what exact rbp eliminates): autodiff's Jacobian of the free field
    is diagonal on that block, at a random state with random parameters."""
    model = randomise_params(tiny_model(name), jax.random.PRNGKey(7), scale=0.4)
    block = model.program.diagonal_block
    if name in DIAGONAL_BLOCKS:
        assert block == DIAGONAL_BLOCKS[name]
    if not block:
        return
    state, x, _ = _sample(model, jax.random.PRNGKey(13))
    flat_field, ravel, unravel, inputs = model._flat_field(x, ep=False)
    first = ravel({k: v[0] for k, v in state.items()}), {k: v[0] for k, v in inputs.items()}
    jac = np.asarray(jax.jacfwd(flat_field)(*first))
    positions = unravel(np.arange(jac.shape[0]))
    inside = np.concatenate([np.ravel(positions[s]) for s in block])
    sub = jac[np.ix_(inside, inside)]
    assert np.abs(np.diag(sub)).min() > 0
    np.testing.assert_array_equal(sub - np.diag(np.diag(sub)), 0.0)


def test_a_state_that_reads_itself_through_a_matmul_is_not_diagonal():
    """Only elementwise self-reads keep a block diagonal; of two diagonal blocks the larger is taken."""
    import eqn

    source = """
model self_recurrent
input x[3]
target y[2]
state h[4]
state o[2] output
param W[4, 3] ~ glorot
param R[4, 4] ~ glorot
param V[2, 4] ~ glorot
d h/dt = -h + R @ tanh(h) + W @ x
d o/dt = -o + V @ tanh(h)
cost C = 0.5 * sum((o - y)^2)
"""
    assert eqn.load(source).diagonal_block == ("o",)  # h's own Jacobian block is −I + R·diag(tanh'(h))
    assert eqn.load(source.replace("R @ tanh(h)", "0.5 * tanh(h)")).diagonal_block == ("h",)  # the larger block
