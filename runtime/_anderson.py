"""Anderson acceleration of the fixed-point iteration u ← u + dt·F(u).

Each sample of the batch is its own fixed-point problem, so each keeps its own history and solves
its own small least-squares problem; a sample that has converged stops moving while the others go
on. Walker & Ni, "Anderson acceleration for fixed-point iterations" (SIAM J. Numer. Anal. 2011),
the "type II" form with mixing.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ._solver import FixedPointSolver, residual_norm


def _flatten(tree: dict) -> jax.Array:
    """A batched state dict as one [batch, n] array, keys in sorted order (whatever order the dict
    has)."""
    return jnp.concatenate([tree[k].reshape(tree[k].shape[0], -1) for k in sorted(tree)], axis=1)


class _Layout(eqx.Module):
    """Where each state lies in the flat array: static, so it travels in the loop's carry."""

    names: tuple[str, ...] = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    @classmethod
    def of(cls, tree: dict) -> "_Layout":
        names = tuple(sorted(tree))
        return cls(names, tuple(tuple(tree[k].shape[1:]) for k in names))

    def unflatten(self, array: jax.Array) -> dict:
        out, offset = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            out[name] = array[:, offset:offset + size].reshape((array.shape[0],) + shape)
            offset += size
        return out


class Anderson(FixedPointSolver):
    """Anderson acceleration with `memory` past differences and mixing `mixing` (1: the plain
    map's step). Stops when the step's residual is ≤ tol for every sample or after `max_steps`
    field evaluations; reports ‖F(u)‖ at the end.

    With f = dt·F(u), the difference form (Walker & Ni, Eq. 2.4): γ minimises ‖f_k − ΔF γ‖ over
    the last `memory` differences, then u_{k+1} = u_k + mixing·f_k − (ΔU + mixing·ΔF)γ. Columns
    are normalised and `regularization` (Tikhonov, relative) keeps the small normal equations
    well posed when the history is nearly collinear. A sample whose residual is below tol stops
    moving, so each sample's result does not depend on the rest of the batch.

    Safeguards, per sample, none of which reads the model: the first `warmup` steps are plain
    (far from the fixed point, as at the start of a free phase, extrapolation misleads); an
    extrapolation that is not finite becomes a plain step; a residual that grows past `restart`
    times the best since the warm-up forgets the history. With `patience`, a residual that has
    not fallen below `progress` times its last reference for `patience` steps forgets the history
    and takes `cooldown` plain steps: for maps whose plain steps contract but where extrapolation
    stagnates in a nonlinear region (the trained reciprocal MLP, bench/RESULTS.md "speed"). It is
    off by default because it assumes plain steps make progress: where they do not (a map whose
    plain iteration diverges, or a saturated start where the residual stays flat) it slows
    Anderson down or stops it. With `sweep`, the map accelerated is the block Gauss–Seidel sweep
    (`swept_field`).
    """

    max_steps: int = eqx.field(static=True, default=200)
    tol: float = eqx.field(static=True, default=1e-5)
    memory: int = eqx.field(static=True, default=5)
    mixing: float = eqx.field(static=True, default=1.0)
    regularization: float = eqx.field(static=True, default=1e-8)
    restart: float = eqx.field(static=True, default=4.0)
    warmup: int = eqx.field(static=True, default=5)
    patience: int | None = eqx.field(static=True, default=None)
    progress: float = eqx.field(static=True, default=0.9)
    cooldown: int = eqx.field(static=True, default=3)
    sweep: bool = eqx.field(static=True, default=False)

    def init(self, field, u0, dt, key):
        flat0 = _flatten(u0)
        batch, n = flat0.shape
        real_dtype = jnp.real(flat0).dtype
        history = jnp.zeros((batch, self.memory, n), flat0.dtype)
        infinite = jnp.full((batch,), jnp.inf, real_dtype)
        counter = jnp.zeros((batch,), jnp.int32)
        stall = (infinite, counter, counter, infinite, jnp.ones((batch,), bool))
        return (_Layout.of(u0), jnp.asarray(0), flat0, flat0, jnp.zeros_like(flat0), history, history, counter,
                infinite, stall)

    def value(self, state):
        return state[0].unflatten(state[2])

    def step(self, field, state, dt):
        layout, step, u, u_prev, f_prev, du_hist, df_hist, age, best, stall = state
        reference, stalled_for, plain_left, plain_from, trust = stall
        m = self.memory
        real_dtype = jnp.real(u).dtype
        tiny = jnp.finfo(real_dtype).tiny
        value = field(layout.unflatten(u))
        f, residual = dt * _flatten(value), residual_norm(value).astype(real_dtype)
        slot = (step - 1) % m
        write = step > 0
        # one slot is written in place; a select over the whole history would copy it every step
        du_hist = du_hist.at[:, slot].set(jnp.where(write, u - u_prev, du_hist[:, slot]))
        df_hist = df_hist.at[:, slot].set(jnp.where(write, f - f_prev, df_hist[:, slot]))
        age = jnp.where(write, jnp.minimum(age + 1, m), age)
        warming = step < self.warmup
        # the stall rule trusts plain steps only once a stretch of them (the warm-up, a cooldown)
        # has cut the residual by `progress`: where plain steps do not help, it stays off
        plain_from = jnp.where(step == 0, residual, plain_from)
        stretch_ended = ((step == self.warmup) & (step > 0)) | (plain_left == 1)
        trust = jnp.where(stretch_ended, residual < self.progress * plain_from, trust)
        moved = warming | (residual < self.progress * reference)
        stalled_for = jnp.where(moved, 0, stalled_for + 1)
        stalled = ((stalled_for >= self.patience) & trust) if self.patience is not None else jnp.zeros_like(moved)
        reference = jnp.where(moved | stalled, residual, reference)
        stalled_for = jnp.where(stalled, 0, stalled_for)
        plain_from = jnp.where(stalled, residual, plain_from)
        plain_left = jnp.where(stalled, self.cooldown, jnp.maximum(plain_left - 1, 0))
        # the extrapolation made things much worse: forget the history, take a plain step
        restart = (residual > self.restart * best) | warming | stalled | (plain_left > 0)
        age = jnp.where(restart, 0, age)
        best = jnp.where(warming, jnp.inf, jnp.minimum(best, residual))
        recency = (step - 1 - jnp.arange(m)) % m  # 0 for the newest slot
        valid = (recency[None, :] < age[:, None]).astype(real_dtype)
        # the normalised columns' Gram matrix from the raw one: one pass over the history
        raw = jnp.einsum("bin,bjn->bij", jnp.conj(df_hist), df_hist)  # [batch, m, m]
        norms = jnp.sqrt(jnp.abs(jnp.diagonal(raw, axis1=1, axis2=2)))  # [batch, m]
        scale = valid / jnp.maximum(norms, tiny)
        gram = raw * (scale[:, :, None] * scale[:, None, :])
        eye = jnp.eye(m, dtype=real_dtype)
        gram = gram + eye * (1 - valid)[:, None, :] + self.regularization * eye * valid[:, None, :]
        rhs = scale * jnp.einsum("bin,bn->bi", jnp.conj(df_hist), f)
        gamma = jnp.linalg.solve(gram, rhs[..., None])[..., 0] * scale
        plain = u + self.mixing * f
        proposal = plain - jnp.einsum("bi,bin->bn", gamma, du_hist + self.mixing * df_hist)
        # where the extrapolation breaks down (no fixed point nearby), fall back to a plain step
        proposal = jnp.where(jnp.all(jnp.isfinite(proposal), axis=1, keepdims=True), proposal, plain)
        done = (residual <= self.tol)[:, None]
        state = (layout, step + 1, jnp.where(done, u, proposal), u, f, du_hist, df_hist, age, best,
                 (reference, stalled_for, plain_left, plain_from, trust))
        return state, residual
