"""Data-parallel training: the batch axis sharded over two (forced host) devices gives the same
parameters as one device, within float64 rounding. Runs in a subprocess because the device count
is fixed when JAX starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 2, jax.devices()
from helpers import tiny_model
from eqn.runtime import ArrayDataset, FixedStep, TrainConfig, train
from eqn.runtime._train import Placement

model = tiny_model("reciprocal_mlp")
rng = np.random.default_rng(0)
images = rng.normal(size=(80,) + model.program.inputs["x"])
data = ArrayDataset(images, rng.integers(0, 3, 80), 3)
results = {}
for devices in (1, 2):
    config = TrainConfig(estimator="hep", epochs=2, batch_size=20, devices=devices,
                         options=dict(beta=0.2, n=4, free_solver=FixedStep(max_steps=40, tol=1e-9),
                                      nudged_solver=FixedStep(max_steps=15, tol=1e-9)))
    trained, history = train(model, data, val=data, config=config, progress=False)
    results[devices] = (trained, history)

placed = Placement(2).batch(np.zeros((20, 5)))
assert len(placed.sharding.device_set) == 2, placed.sharding
assert placed.addressable_shards[0].data.shape == (10, 5)
one, two = results[1][0], results[2][0]
for name in one.program.params:
    a, b = np.asarray(getattr(one, name)), np.asarray(getattr(two, name))
    assert not np.allclose(a, np.asarray(getattr(model, name))), name  # it trained
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)
assert abs(results[1][1][-1]["val_error"] - results[2][1][-1]["val_error"]) < 1e-12
print("EQUAL")
"""


def test_two_devices_train_to_the_same_parameters_as_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EQUAL" in result.stdout
