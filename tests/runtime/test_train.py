"""Training: every zoo model learns with every estimator that applies to it (tiny sizes, a
teacher task), checkpoints resume exactly, and divergence stops with the last finite parameters."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MODELS as ROOT_MODELS, TINY, tiny_model

import eqn
from eqn.runtime import ArrayDataset, DivergenceError, FixedStep, TrainConfig, evaluate, load_checkpoint, train

GENERAL = ["classic", "symmetric", "hep", "online", "true", "rbp", "bptt"]
ESTIMATORS = {
    name: GENERAL + (["cep"] if name == "hopfield_mlp" else ["cvf"])
    for name in TINY if name != "conv_softpool"
}
ESTIMATORS["conv_softpool"] = ["hep", "true", "cvf"]

OPTIONS = dict(beta=0.2, n=4, free_solver=FixedStep(max_steps=100, tol=1e-7),
               nudged_solver=FixedStep(max_steps=30, tol=1e-7), periods=2, steps_per_point=15,
               bptt_steps=100, nudged_steps=20, eta=1e-5)


def teacher_data(model, count=96, seed=0) -> ArrayDataset:
    """Labels from a fixed random linear teacher on random inputs: learnable by every model."""
    (shape,) = model.program.inputs.values()
    (classes,) = next(iter(model.program.targets.values()))
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count,) + shape).astype(np.float64)
    teacher = rng.normal(size=(int(np.prod(shape)), classes))
    labels = np.argmax(images.reshape(count, -1) @ teacher, axis=1)
    return ArrayDataset(images, labels, classes, name="teacher")


@pytest.mark.parametrize("name,estimator", [(n, e) for n, es in ESTIMATORS.items() for e in es])
def test_every_zoo_model_learns_with_every_applicable_estimator(name, estimator, request):
    if name.startswith("conv"):
        request.getfixturevalue("xla_optimized")  # convolutions: run time dominates compile time
    model = tiny_model(name)
    data = teacher_data(model, count=24 if name == "conv_softpool" else 96)  # one batch: compile time dominates
    config = TrainConfig(estimator=estimator, lr=0.03 if name != "conv_softpool" else 0.1, momentum=0.5,
                         epochs=3, batch_size=24, options=dict(OPTIONS))
    before = evaluate(model, data, config)["loss"]
    trained, history = train(model, data, config=config, progress=False)
    after = evaluate(trained, data, config)["loss"]
    assert np.isfinite(after)
    assert after < before, (before, after, [h["train_loss"] for h in history])


def _tiny_run(tmp_path, epochs, max_steps=None, resume=False, out="run", checkpoint_every=None):
    model = tiny_model("reciprocal_mlp")
    data = teacher_data(model, count=120)
    config = TrainConfig(estimator="hep", lr=0.05, epochs=epochs, batch_size=20, options=dict(OPTIONS),
                         checkpoint_every=checkpoint_every)
    return train(model, data, config=config, out=tmp_path / out, resume=resume, progress=False,
                 max_steps=max_steps)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    uninterrupted, _ = _tiny_run(tmp_path, epochs=3, out="full")
    _tiny_run(tmp_path, epochs=3, max_steps=8, out="cut")  # stops inside epoch 2 (6 steps per epoch)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]  # the cut epoch is neither recorded nor saved
    resumed, history = _tiny_run(tmp_path, epochs=3, resume=True, out="cut")
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    on_disk, _, meta = load_checkpoint(tmp_path / "cut" / "checkpoint.eqx", tiny_model("reciprocal_mlp"), None)
    assert meta["epochs_done"] == 3


def test_checkpoints_inside_an_epoch_resume_to_the_uninterrupted_run(tmp_path):
    """With checkpoint_every=4, a run cut after step 11 (inside epoch 2, 6 steps per epoch) resumes
    from step 10: it skips the 4 batches epoch 2 took, and ends with the parameters and the epoch
    records (every field but the wall time) of the run that was never cut."""
    uninterrupted, full_history = _tiny_run(tmp_path, epochs=3, out="full")
    _tiny_run(tmp_path, epochs=3, max_steps=11, out="cut", checkpoint_every=4)
    _, _, meta = load_checkpoint(tmp_path / "cut" / "checkpoint.eqx", tiny_model("reciprocal_mlp"), None)
    assert (meta["epochs_done"], meta["steps_done"]) == (1, 4)
    assert len(meta["partial"]["steps"]["loss"]) == 4
    resumed, history = _tiny_run(tmp_path, epochs=3, resume=True, out="cut", checkpoint_every=4)
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    drop = lambda h: {k: v for k, v in h.items() if k not in ("seconds", "train_seconds")}  # noqa: E731
    assert [drop(h) for h in history] == [drop(h) for h in full_history]
    on_disk = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [drop(h) for h in on_disk] == [drop(h) for h in full_history]


DIVERGING = """
model runaway
input x[3]
target y[2]
state h[4]
state o[2] output
param W[4, 3] ~ glorot
param V[2, 4] ~ glorot
param R[4, 4] ~ zeros
d h/dt = W @ x + R @ h - h
d o/dt = V @ h - o
cost C = 0.5 * sum((o - y)^2)
"""


def test_divergence_stops_with_phase_step_and_residual_and_keeps_last_finite_parameters(tmp_path):
    model = eqn.compile(DIVERGING, dtype=jnp.float64, solver=FixedStep(max_steps=200, tol=1e-8))
    data = ArrayDataset(np.random.default_rng(0).normal(size=(40, 3)) * 3, np.arange(40) % 2, 2)
    config = TrainConfig(estimator="rbp", optimizer="sgd", lr=3.0, momentum=0.0, epochs=5, batch_size=10)
    with pytest.raises(DivergenceError) as info:
        train(model, data, config=config, out=tmp_path / "run", progress=False)
    message = str(info.value)
    assert "free phase diverged" in message and "residual" in message
    step = int(message.split("training step ")[1].split(":")[0])
    assert step > 0
    saved, _, meta = load_checkpoint(tmp_path / "run" / "last_finite.eqx", model,
                                     None)
    assert meta["step"] == step
    for leaf in jax.tree_util.tree_leaves(saved):
        assert np.all(np.isfinite(leaf))
    replay, _ = train(model, data, config=config, progress=False, max_steps=step)
    for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(replay)):
        np.testing.assert_array_equal(a, b)


FASHION = __import__("pathlib").Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_cnn_learns_fashion_mnist_in_one_epoch_on_2000_images(xla_optimized):
    """The softmax-pooling dSiLU CNN (conv_small: the blocks of homeostasis App. E.2), hEP N = 2,
    one epoch on 2000 real Fashion-MNIST images: clearly above chance (90 % error). Block sweeps
    (u1, then u2) bring the phases ten times closer to their fixed points than as many plain
    steps, at the same cost."""
    from eqn.runtime import load_dataset, rotate_pairs
    model = eqn.compile(ROOT_MODELS / "conv_small.eqn", consts=dict(c1=8, c2=16),
                        solver=FixedStep(max_steps=30, tol=1e-4, sweep=True))
    model = rotate_pairs(model, 0.0)
    train_set = load_dataset("fashion_mnist", "train").subset(2000)
    test_set = load_dataset("fashion_mnist", "test").subset(500)
    config = TrainConfig(estimator="hep", lr=0.02, epochs=1, batch_size=50,
                         options=dict(beta=0.5, n=2, nudged_solver=FixedStep(max_steps=10, tol=1e-4, sweep=True)))
    trained, history = train(model, train_set, val=test_set, config=config, progress=False)
    assert history[-1]["val_error"] < 0.6, history


def test_per_parameter_learning_rate_scales_and_cosine_schedule():
    model = tiny_model("reciprocal_mlp")
    data = teacher_data(model, count=40)
    config = TrainConfig(estimator="true", lr=0.05, epochs=2, batch_size=20, schedule="cosine",
                         lr_scales={"W_in": 0.0, "W21f": 2.0}, options=dict(OPTIONS))
    trained, _ = train(model, data, config=config, progress=False)
    np.testing.assert_array_equal(trained.W_in, model.W_in)  # scale 0: frozen
    assert not np.allclose(trained.W21f, model.W21f)
    with pytest.raises(ValueError, match="unknown parameters: nope"):
        train(model, data, config=TrainConfig(lr_scales={"nope": 1.0}, batch_size=20), progress=False)


def test_gradient_clipping_rescales_to_the_global_norm_and_is_recorded():
    """One SGD step (no momentum) moves θ by −lr·g·min(1, C/‖g‖), ‖g‖ over all parameters."""
    from eqn.runtime import estimate
    model = tiny_model("reciprocal_mlp")
    data = teacher_data(model, count=20)
    x, y = jnp.asarray(data.images), jnp.asarray(np.eye(3)[data.labels])
    grads, _ = estimate(model, x, y, "true", **OPTIONS)
    norm = float(np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in jax.tree_util.tree_leaves(grads))))
    for clip, scale in ((0.1 * norm, 0.1), (10 * norm, 1.0)):
        config = TrainConfig(estimator="true", lr=0.05, momentum=0.0, clip_norm=clip, batch_size=20,
                             options=dict(OPTIONS))
        trained, history = train(model, data, config=config, progress=False)
        np.testing.assert_allclose(trained.W21f - model.W21f, -0.05 * scale * grads.W21f, rtol=1e-6, atol=1e-12)
        assert history[0]["clipped_fraction"] == (1.0 if scale < 1 else 0.0)
        np.testing.assert_allclose(history[0]["gradient_norm_max"], norm, rtol=1e-9)
    with pytest.raises(ValueError, match="clip_norm must be positive"):
        train(model, data, config=TrainConfig(clip_norm=-1.0, batch_size=20), progress=False)


def test_noise_and_random_sign_options_act_and_are_reproducible():
    from eqn.runtime import estimate
    model = tiny_model("hopfield_mlp")
    data = teacher_data(model, count=8)
    x, y = jnp.asarray(data.images), jnp.asarray(np.eye(3)[data.labels])
    noisy = dict(free_solver=FixedStep(max_steps=50, noise=0.05), nudged_solver=FixedStep(max_steps=20, noise=0.05))
    a, _ = estimate(model, x, y, "symmetric", key=jax.random.PRNGKey(1), **noisy)
    b, _ = estimate(model, x, y, "symmetric", key=jax.random.PRNGKey(1), **noisy)
    c, _ = estimate(model, x, y, "symmetric", key=jax.random.PRNGKey(2), **noisy)
    np.testing.assert_array_equal(a.W1, b.W1)
    assert not np.allclose(a.W1, c.W1)
    signs = set()
    for k in range(8):
        g, _ = estimate(model, x, y, "classic", key=jax.random.PRNGKey(k), beta=0.3, random_sign=True)
        plus, _ = estimate(model, x, y, "classic", beta=0.3)
        minus, _ = estimate(model, x, y, "classic", beta=-0.3)
        signs.add("+" if np.allclose(g.W1, plus.W1) else "-" if np.allclose(g.W1, minus.W1) else "?")
    assert signs == {"+", "-"}
    with pytest.raises(ValueError, match="beta must be nonzero"):
        estimate(model, x, y, "classic", beta=0.0)
    # inside the jitted training step too; evaluation runs the noise-free network
    config = TrainConfig(estimator="classic", lr=0.05, epochs=1, batch_size=4,
                         options=dict(beta=0.3, random_sign=True, **noisy))
    first, history = train(model, data, val=data, config=config, progress=False)
    again, _ = train(model, data, val=data, config=config, progress=False)
    np.testing.assert_array_equal(first.W1, again.W1)
    assert not np.allclose(first.W1, model.W1)
    assert history[-1]["val_loss"] == evaluate(first, data, config)["loss"]
