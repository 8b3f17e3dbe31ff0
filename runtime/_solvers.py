"""Fixed-point solvers behind one interface.

A solver receives the batched vector field `field(u) -> du/dt` (a function of a state dict) and a
start state and returns the fixed point with `SolveStats`. Dynamics run as `lax` loops, so the
step count never unrolls into the compiled program. A faster solver is a new subclass; the
estimators only call `solve`.
"""

from __future__ import annotations

import abc
import dataclasses
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


def _add_noise(u, key, sigma):
    leaves, tree = jax.tree_util.tree_flatten(u)
    keys = jax.random.split(key, len(leaves))
    noisy = [v + sigma * jax.random.normal(k, v.shape, jnp.real(v).dtype) for v, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


class BlockField:
    """A batched field u ↦ F(u) that can also evaluate some states' components alone:
    `part(names)(u)` costs only those states' expressions. `blocks` groups the states so that no
    state reads another of its own block, in the order a sweep updates them (the compiler derives
    it from what each state's field reads)."""

    def __init__(self, part: Callable, states: tuple[str, ...], blocks: tuple[tuple[str, ...], ...]):
        self.part, self.states, self.blocks = part, states, blocks

    def __call__(self, u):
        return self.part(self.states)(u)


def swept_field(field: Callable, dt: float) -> Callable:
    """The field of one block Gauss–Seidel sweep: each block of `field.blocks` takes its step
    u_b ← u_b + dt·F_b(u) reading the blocks already updated, and the result is those steps over
    dt. One sweep costs one field evaluation and has F's fixed points; on a layered network (two
    blocks) its linear rate is the square of the synchronous step's, whose Jacobian has its
    eigenvalues in ± pairs there. A field without blocks is one block: the synchronous step."""
    blocks = getattr(field, "blocks", ())
    if len(blocks) < 2:
        return field

    def swept(u):
        current, steps = dict(u), {}
        for block in blocks:
            part = field.part(block)(current)
            for s in block:
                steps[s] = part[s]
                current[s] = u[s] + dt * part[s]
        return {s: steps[s] for s in u}

    return swept


class FixedPointSolver(eqx.Module):
    """Finds u with F(u) = 0 by running dynamics; subclasses choose how."""

    @abc.abstractmethod
    def solve(self, field: Callable, u0, dt: float, key=None) -> tuple[dict, SolveStats]:
        ...


def without_noise(solver: FixedPointSolver) -> FixedPointSolver:
    """The same solver with neuron noise off: evaluation and diagnostics look at the network
    itself, while noise perturbs the training phases only."""
    return dataclasses.replace(solver, noise=0.0) if getattr(solver, "noise", 0.0) else solver


class FixedStep(FixedPointSolver):
    """Explicit steps u ← u + dt·F(u) (Euler for flows; with dt = 1, iteration of a map u ← G(u),
    since F = G − id) until ‖F(u)‖ ≤ tol for every sample or `max_steps` is reached.

    `noise` adds Gaussian neuron noise of that standard deviation at every step (holomorphic-ep
    App. B.1, Table 1); it needs a `key`, and with noise the phase runs all `max_steps`. With
    `sweep`, a step is a block Gauss–Seidel sweep (`swept_field`) instead of all states at once:
    the same fixed points, reached in fewer evaluations on layered models; the stopping test then
    reads the sweep's step, and the reported residual is ‖F(u)‖ as always.
    """

    max_steps: int = eqx.field(static=True, default=200)
    tol: float = eqx.field(static=True, default=1e-5)
    noise: float = eqx.field(static=True, default=0.0)
    sweep: bool = eqx.field(static=True, default=False)

    def solve(self, field, u0, dt, key=None):
        noisy = self.noise > 0
        if noisy and key is None:
            raise ValueError("a solver with neuron noise needs a PRNG key")
        tol = -1.0 if noisy else self.tol
        step_field = swept_field(field, dt) if self.sweep else field

        def cond(carry):
            step, _, residual, _ = carry
            return (step < self.max_steps) & (residual > tol)

        def body(carry):
            step, u, _, k = carry
            f = step_field(u)
            residual = jnp.max(residual_norm(f)).astype(real_dtype)
            u = jax.tree_util.tree_map(lambda a, b: a + dt * b, u, f)
            if noisy:
                k, sub = jax.random.split(k)
                u = _add_noise(u, sub, self.noise)
            return step + 1, u, residual, k

        real_dtype = jnp.real(jax.tree_util.tree_leaves(u0)[0]).dtype
        init = (jnp.asarray(0), u0, jnp.asarray(jnp.inf, dtype=real_dtype),
                key if key is not None else jax.random.PRNGKey(0))
        steps, u, _, _ = jax.lax.while_loop(cond, body, init)
        residual = jnp.max(residual_norm(field(u)))
        return u, SolveStats(steps, residual)


def unrolled(field: Callable, u0, dt: float, steps: int):
    """Exactly `steps` Euler/map steps as a `lax.scan` (reverse-differentiable, for BPTT)."""

    def body(u, _):
        f = field(u)
        return jax.tree_util.tree_map(lambda a, b: a + dt * b, u, f), None

    u, _ = jax.lax.scan(body, u0, None, length=steps)
    return u
