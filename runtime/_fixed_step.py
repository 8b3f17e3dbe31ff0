"""Plain iteration: the papers' setting."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from ._solver import FixedPointSolver, residual_norm


def _add_noise(u, key, sigma):
    leaves, tree = jax.tree_util.tree_flatten(u)
    keys = jax.random.split(key, len(leaves))
    noisy = [v + sigma * jax.random.normal(k, v.shape, jnp.real(v).dtype) for v, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


class FixedStep(FixedPointSolver):
    """Explicit steps u ← u + dt·F(u) (Euler for flows; with dt = 1, iteration of a map u ← G(u),
    since F = G − id) until ‖F(u)‖ ≤ tol for every sample or `max_steps` is reached.

    Args:
        max_steps: the budget of steps.
        tol: the per-sample residual at which a sample counts as settled.
        noise: the standard deviation of Gaussian neuron noise added at every step
            (holomorphic-ep App. B.1, Table 1); it needs a `key`, and with noise the phase runs
            all `max_steps`.
        sweep: a step is a block Gauss–Seidel sweep (`swept_field`) instead of all states at
            once: the same fixed points, reached in fewer evaluations on layered models; the
            stopping test then reads the sweep's step, and the reported residual is ‖F(u)‖.
    """

    max_steps: int = eqx.field(static=True, default=200)
    tol: float = eqx.field(static=True, default=1e-5)
    noise: float = eqx.field(static=True, default=0.0)
    sweep: bool = eqx.field(static=True, default=False)

    @property
    def stops_early(self) -> bool:
        return not self.noise > 0

    def without_noise(self) -> "FixedStep":
        return dataclasses.replace(self, noise=0.0) if self.noise else self

    def init(self, field, u0, dt, key):
        if self.noise > 0 and key is None:
            raise ValueError("a solver with neuron noise needs a PRNG key")
        return u0, key if key is not None else jax.random.PRNGKey(0)

    def step(self, field, state, dt):
        u, key = state
        f = field(u)
        u = jax.tree_util.tree_map(lambda a, b: a + dt * b, u, f)
        if self.noise > 0:
            key, sub = jax.random.split(key)
            u = _add_noise(u, sub, self.noise)
        return (u, key), residual_norm(f)

    def value(self, state):
        return state[0]
