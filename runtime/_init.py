"""Asymmetric initialisation of the declared forward/backward pairs (`pair Wf, Wb`)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp


def _mirror(forward: jax.Array, backward_shape) -> jax.Array:
    """The forward weight in the backward weight's layout (a transpose for matrices)."""
    return forward.T if forward.ndim == 2 and forward.shape[::-1] == tuple(backward_shape) else forward


def rotate_pairs(model, angle_degrees: float):
    """w_b ← sin α·w_b + cos α·w_fᵀ for every declared pair (homeostasis §4): α = 0 gives
    symmetric weights, α = 90° leaves w_b independent."""
    alpha = math.radians(angle_degrees)
    pairs = model.program.pairs
    if not pairs:
        return model
    new = [math.sin(alpha) * getattr(model, b) + math.cos(alpha) * _mirror(getattr(model, f), getattr(model, b).shape)
           for f, b in pairs]
    return eqx.tree_at(lambda m: [getattr(m, b) for _, b in pairs], model, new)


def sign_flip_pairs(model, angle_degrees: float, key):
    """θ_b = (M ⊙ θ_f)ᵀ with i.i.d. signs flipped with probability p = (1 − cos Ψ)/2, so the
    expected angle between θ_b and θ_fᵀ is Ψ (continual-ep App. F.1, Eq. 104)."""
    pairs = model.program.pairs
    if not pairs:
        return model
    p = 0.5 * (1.0 - math.cos(math.radians(angle_degrees)))
    keys = jax.random.split(key, len(pairs))
    new = []
    for (f, b), k in zip(pairs, keys):
        forward = getattr(model, f)
        mask = jnp.where(jax.random.bernoulli(k, p, forward.shape), -1.0, 1.0).astype(forward.dtype)
        new.append(_mirror(mask * forward, getattr(model, b).shape))
    return eqx.tree_at(lambda m: [getattr(m, b) for _, b in pairs], model, new)


def pair_angles(model) -> dict[str, float]:
    """Angle in degrees between each backward weight and its forward partner (continual-ep F.1)."""
    angles = {}
    for f, b in model.program.pairs:
        backward = getattr(model, b)
        forward = _mirror(getattr(model, f), backward.shape)
        cos = jnp.sum(forward * backward) / (jnp.linalg.norm(forward) * jnp.linalg.norm(backward))
        angles[f"{f}/{b}"] = float(jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))))
    return angles
