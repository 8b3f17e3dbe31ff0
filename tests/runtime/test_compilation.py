"""No wasted work: a training run compiles its step, evaluation and probes once, in the first
epoch, and never again; the dynamics are `lax` loops, so the compiled program does not grow with
the number of steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import tiny_model
from jax import monitoring

from eqn.runtime import ArrayDataset, FixedStep, TrainConfig, train

_compiles = [0]


def _count(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _compiles[0] += 1


monitoring.register_event_duration_secs_listener(_count)


class CountingDataset:
    """Wraps a dataset and records how many XLA compilations had happened when each epoch's
    first batch was drawn."""

    def __init__(self, data: ArrayDataset):
        self.data = data
        self.at_epoch_start: dict[int, int] = {}

    def __len__(self):
        return len(self.data)

    def num_batches(self, *args, **kwargs):
        return self.data.num_batches(*args, **kwargs)

    def batches(self, *args, epoch, **kwargs):
        for i, batch in enumerate(self.data.batches(*args, epoch=epoch, **kwargs)):
            if i == 0 and kwargs.get("shuffle", True):
                self.at_epoch_start.setdefault(epoch, _compiles[0])
            yield batch


def test_training_compiles_only_in_its_first_epoch():
    model = tiny_model("reciprocal_mlp")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60,) + model.program.inputs["x"])
    data = CountingDataset(ArrayDataset(images, rng.integers(0, 3, 60), 3))
    val = ArrayDataset(images[:25], rng.integers(0, 3, 25), 3)  # a remainder batch too
    config = TrainConfig(estimator="hep", epochs=3, batch_size=20, eval_batch_size=10,
                         options=dict(beta=0.2, n=4, free_solver=FixedStep(max_steps=30, tol=1e-6),
                                      nudged_solver=FixedStep(max_steps=10, tol=1e-6)))
    train(model, data, val=val, config=config, progress=False)
    after = _compiles[0]
    assert data.at_epoch_start[1] < data.at_epoch_start[2], "the first epoch should have compiled the step"
    assert data.at_epoch_start[2] == data.at_epoch_start[3] == after, (data.at_epoch_start, after)


def test_compiled_program_does_not_grow_with_the_step_count():
    """The phases are `lax.while_loop`s: 10 and 1000 steps give the same program."""
    model = tiny_model("reciprocal_mlp")
    x = jnp.zeros((2,) + model.program.inputs["x"])

    def size(steps):
        lowered = jax.jit(lambda m, x: m.free(x, solver=FixedStep(max_steps=steps, tol=0.0))).lower(model, x)
        return len(lowered.as_text())

    assert abs(size(1000) - size(10)) <= 2  # only the constant 10 → 1000 differs
