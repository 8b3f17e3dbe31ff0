"""Helpers shared by the tests: tiny zoo models compiled once, random states and parameters."""

from __future__ import annotations

import functools
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import eqn

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

# Small sizes for every zoo model: enough structure to test, fast to compile.
TINY = {
    "hopfield_mlp": dict(n_in=5, n_h=7, n_out=3),
    "untied_leaky": dict(n_in=5, n_h1=6, n_h2=4, n_out=3),
    "reciprocal_mlp": dict(n_in=5, n_h=6, n_out=3),
    "output_feedback": dict(n_in=5, n_h=6, n_out=3),
    "predictive_coding": dict(n_in=5, n_h=6, n_out=3),
    "rnn_symmetric": dict(n_in=5, n_h=6, n_out=3),
    "rnn_untied": dict(n_in=5, n_h=6, n_out=3),
    "conv_softpool": dict(c_in=2, hw=32, c1=2, c2=3, c3=2, c4=2, n_out=3),
    "conv_small": dict(c_in=2, hw=8, c1=2, c2=3, n_out=3),
}


@functools.lru_cache(maxsize=None)
def tiny_model(name: str, seed: int = 0):
    return eqn.compile(MODELS / f"{name}.eqn", consts=TINY[name], dtype=jnp.float64,
                       key=jax.random.PRNGKey(seed))


def random_like(key, shapes: dict, batch: int, scale: float = 1.0) -> dict:
    keys = jax.random.split(key, len(shapes))
    return {n: scale * jax.random.normal(k, (batch,) + tuple(s), jnp.float64)
            for k, (n, s) in zip(keys, shapes.items())}


def randomise_params(model, key, scale: float = 0.5):
    """The model with every parameter redrawn from N(0, scale²) (biases nonzero too)."""
    leaves = model.params
    keys = jax.random.split(key, len(leaves))
    new = {n: scale * jax.random.normal(k, v.shape, v.dtype) for k, (n, v) in zip(keys, leaves.items())}
    return eqx.tree_at(lambda m: [getattr(m, n) for n in new], model, list(new.values()))


