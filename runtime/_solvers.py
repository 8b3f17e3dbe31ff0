"""Fixed-point solvers behind one interface.

A solver receives the batched vector field `field(u) -> du/dt` (a pytree function) and a start
state and returns the fixed point with `SolveStats`. The dynamics run as one `lax.while_loop`
that stops on a residual tolerance or a step budget, so the step count never unrolls into the
compiled program.
"""

from __future__ import annotations

import abc
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp


class SolveStats(eqx.Module):
    """How a phase ended: steps taken and the residual ‖F(u)‖ (largest over the batch)."""

    steps: jax.Array
    residual: jax.Array


def residual_norm(field: dict) -> jax.Array:
    """Per-sample Euclidean norm of a batched state-shaped pytree; the batch axis is leading."""
    squares = [jnp.sum(jnp.abs(v.reshape(v.shape[0], -1)) ** 2, axis=1) for v in jax.tree_util.tree_leaves(field)]
    return jnp.sqrt(sum(squares))


class FixedPointSolver(eqx.Module):
    """Finds u with F(u) = 0 by running dynamics; subclasses choose how."""

    @abc.abstractmethod
    def solve(self, field: Callable, u0, dt: float) -> tuple[dict, SolveStats]:
        ...


class FixedStep(FixedPointSolver):
    """Explicit steps u ← u + dt·F(u) (Euler for flows; with dt = 1, plain iteration of a map
    u ← G(u) since F = G − id), until ‖F(u)‖ ≤ tol for every sample or `max_steps` is reached."""

    max_steps: int = eqx.field(static=True, default=200)
    tol: float = eqx.field(static=True, default=1e-5)

    def solve(self, field, u0, dt):
        def cond(carry):
            step, _, residual = carry
            return (step < self.max_steps) & (residual > self.tol)

        def body(carry):
            step, u, _ = carry
            f = field(u)
            residual = jnp.max(residual_norm(f))
            u = jax.tree_util.tree_map(lambda a, b: a + dt * b, u, f)
            return step + 1, u, residual

        init = (jnp.asarray(0), u0, jnp.asarray(jnp.inf, dtype=jnp.result_type(float)))
        steps, u, _ = jax.lax.while_loop(cond, body, init)
        residual = jnp.max(residual_norm(field(u)))
        return u, SolveStats(steps, residual)
