"""`eqn train` end to end on real Fashion-MNIST: SIGKILL mid-epoch, then --resume, ends with the
parameters of an uninterrupted run; `eqn plot` draws the curves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

FASHION = Path(os.environ.get("EQN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
ROOT = Path(__file__).resolve().parents[2]


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "eqn.runtime.cli", "train", str(ROOT / "models" / "reciprocal_mlp.eqn"),
            "--const", "n_h=32", "--dataset", "fashion_mnist", "--estimator", "hep", "--epochs", "3",
            "--train-size", "3000", "--val-size", "200", "--batch-size", "50", "--free-steps", "40",
            "--nudged-steps", "10", "--lr", "0.02", "--solver", "anderson", "--sweep", "--anderson-patience", "2",
            "--checkpoint-every", "7", "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def shared_cache_env(tmp_path_factory) -> dict:
    """The environment of the `eqn` subprocesses: the command's own compilation cache in a fresh
    folder, every program cached, so a restarted run loads the programs the first run compiled
    (the same executables) instead of compiling them again."""
    cache = tmp_path_factory.mktemp("eqn_cache")
    env = dict(os.environ, EQN_COMPILE_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def _params(path: Path) -> list[np.ndarray]:
    import eqn
    from eqn.runtime import load_checkpoint
    model = eqn.compile(ROOT / "models" / "reciprocal_mlp.eqn", consts={"n_h": 32})
    loaded, _, meta = load_checkpoint(path, model, None)
    assert meta["epochs_done"] == 3
    return [np.asarray(getattr(loaded, p)) for p in loaded.program.params]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, shared_cache_env):
    full = tmp_path / "full"
    subprocess.run(_command(full), check=True, capture_output=True, timeout=600, env=shared_cache_env)
    cached = [p.name for p in Path(shared_cache_env["EQN_COMPILE_CACHE"]).glob("*/jit_step-*-cache")]
    assert cached, "the command did not cache its training step"

    cut = tmp_path / "cut"
    process = subprocess.Popen(_command(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=shared_cache_env)
    metrics = cut / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            time.sleep(0.3)  # into the second epoch
            break
        time.sleep(0.05)
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed, "the run finished before it could be killed"
    done = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert done and done[-1] < 3

    resumed = subprocess.run(_command(cut) + ["--resume"], capture_output=True, text=True, timeout=600,
                             env=shared_cache_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "final validation error" in resumed.stdout
    for a, b in zip(_params(cut / "checkpoint.eqx"), _params(full / "checkpoint.eqx")):
        np.testing.assert_array_equal(a, b)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key in ("epoch", "train_loss", "train_error", "val_error", "symmetry", "seconds", "field_evaluations"):
        assert key in records[-1]
    assert 0 < records[-1]["field_evaluations"] <= 40 + 2 * 10
    assert 0.0 <= records[-1]["val_error"] < 0.9

    plotted = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "plot", str(cut)], capture_output=True,
                             text=True, timeout=120, env=shared_cache_env)
    assert plotted.returncode == 0 and (cut / "curves.png").stat().st_size > 1000


def test_diagnose_prints_the_diagnostics_and_draws_the_stability_map(tmp_path):
    png = tmp_path / "map.png"
    result = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "diagnose",
                             str(ROOT / "models" / "reciprocal_mlp.eqn"), "--const", "n_h=16", "--batch-size", "4",
                             "--free-steps", "100", "--stability-map", str(png), "--resolution", "5"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for key in ("symmetry", "homeostatic_loss", "pair_angles_degrees", "cosine_response_delta",
                "cosine_ep_exact", "cvf_bptt_angle_degrees"):
        assert key in result.stdout
    assert png.stat().st_size > 1000


def test_train_refuses_a_model_without_an_input_by_name(tmp_path):
    """A model the dataset cannot feed gets a sentence naming what is missing, not a traceback."""
    model = tmp_path / "no_input.eqn"
    model.write_text("model no_input\ntarget y[10]\nstate u[10] output\nparam b[10] ~ zeros\n"
                     "du/dt = -u + b\ncost C = 0.5 * sum((u - y)^2)\n")
    result = subprocess.run([sys.executable, "-m", "eqn.runtime.cli", "train", str(model), "--dataset", "fashion_mnist",
                             "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "eqn: error: a dataset feeds one `input` of the model, but 'no_input' declares 0 (none)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_folder_in_use_is_refused_and_a_damaged_checkpoint_is_named(tmp_path, shared_cache_env):
    """A second `eqn train` on the folder of a running one exits at once with one line, the first
    finishes normally; `--resume` from its checkpoint cut in half exits with one line naming it."""
    out = tmp_path / "run"
    # long enough to outlast the second process's start (its imports, its data): 12 short epochs
    first = subprocess.Popen(_command(out) + ["--epochs", "12"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=shared_cache_env)
    deadline = time.time() + 300
    while not (out / "checkpoint.eqx").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(_command(out), capture_output=True, text=True, timeout=300, env=shared_cache_env)
    assert first.poll() is None, "the first run ended before the second started"
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"eqn: error: {out}: in use by another run (its lock {out / '.lock'} is held); "
        "wait for it to end or choose another --out"]
    _, errors = first.communicate(timeout=600)
    assert first.returncode == 0, errors

    checkpoint = out / "checkpoint.eqx"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    resumed = subprocess.run(_command(out) + ["--resume"], capture_output=True, text=True, timeout=300,
                             env=shared_cache_env)
    assert resumed.returncode == 2
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"eqn: error: {checkpoint}: damaged checkpoint, cannot resume")
