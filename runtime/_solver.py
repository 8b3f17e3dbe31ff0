"""The fixed-point solver contract and the one loop every solver runs in.

A solver is an Equinox module with declared fields (`max_steps`, `tol`, `sweep`) and three
methods: `init` builds its state from the start, `step` takes one iteration, returning the new
state and each sample's step residual, and `value` reads the current iterate off the state (a
solver may keep it in its own layout, such as one flat array). `fixed_point` owns the loop: it stops when every
sample's residual is at or below `tol` (a non-finite residual never counts as settled) or after
`max_steps`, and returns a `Solution` that says, per sample, how the phase ended. The solvers know
nothing of the compiler: a field is any function of a batched state dict.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

State = dict[str, Array]


class RESULTS:
    """How a sample's phase ended: the codes of `Solution.result`, and their meaning."""

    converged: ClassVar[int] = 0
    max_steps: ClassVar[int] = 1
    nonfinite: ClassVar[int] = 2
    messages: ClassVar[dict[int, str]] = {
        0: "converged: the residual reached the tolerance",
        1: "ran out of steps above the tolerance",
        2: "non-finite: the state or its residual is NaN or infinite",
    }


class Solution(eqx.Module):
    """How a phase ended.

    Attributes:
        result: per sample, one of the `RESULTS` codes (converged, ran out of steps, non-finite).
        residuals: per sample, ‖F(u)‖ at the returned state.
        sample_steps: per sample, the iterations after which it met the tolerance (the phase's
            `steps` for a sample that never did).
        steps: iterations the phase ran (each one field evaluation), the batch together.
    """

    result: Int[Array, " batch"]
    residuals: Float[Array, " batch"]
    sample_steps: Int[Array, " batch"]
    steps: Int[Array, ""]

    @property
    def residual(self) -> Float[Array, ""]:
        """The largest residual of the batch."""
        return jnp.max(self.residuals, axis=-1)

    @property
    def converged(self) -> Array:
        """Per sample, whether the phase reached its tolerance."""
        return self.result == RESULTS.converged

    @property
    def settled(self) -> Float[Array, ""]:
        """The fraction of the batch that reached the tolerance."""
        return jnp.mean(self.converged.astype(jnp.float32), axis=-1)


def residual_norm(field: dict) -> jax.Array:
    """Per-sample Euclidean norm of a batched state-shaped pytree; the batch axis is leading."""
    squares = [jnp.sum(jnp.abs(v.reshape(v.shape[0], -1)) ** 2, axis=1) for v in jax.tree_util.tree_leaves(field)]
    return jnp.sqrt(sum(squares))


class BlockField:
    """A batched field u ↦ F(u) that can also evaluate some states' components alone:
    `part(names)(u)` costs only those states' expressions. `blocks` groups the states so that no
    state reads another of its own block, in the order a sweep updates them (the compiler derives
    it from what each state's field reads); a plain function has no blocks."""

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
    if not isinstance(field, BlockField) or len(field.blocks) < 2:
        return field

    def swept(u):
        current, steps = dict(u), {}
        for block in field.blocks:
            part = field.part(block)(current)
            for s in block:
                steps[s] = part[s]
                current[s] = u[s] + dt * part[s]
        return {s: steps[s] for s in u}

    return swept


class FixedPointSolver(eqx.Module):
    """Finds u with F(u) = 0 by iterating; subclasses say how one iteration goes.

    Every solver declares `max_steps` (its budget of iterations), `tol` (the per-sample residual
    at which a sample counts as settled) and `sweep` (iterate the block Gauss–Seidel sweep,
    `swept_field`, instead of the synchronous step).
    """

    max_steps: eqx.AbstractVar[int]
    tol: eqx.AbstractVar[float]
    sweep: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def init(self, field: Callable, u0: State, dt: float, key) -> Any:
        """The solver's state before the first iteration, from the start `u0`."""

    @abc.abstractmethod
    def step(self, field: Callable, state: Any, dt: float) -> tuple[Any, Array]:
        """One iteration: (new state, each sample's residual at the iterate it started from)."""

    @abc.abstractmethod
    def value(self, state: Any) -> State:
        """The current iterate, as a batched state dict."""

    @property
    def stops_early(self) -> bool:
        """Whether the loop may stop once every sample is settled (a noisy solver runs its budget)."""
        return True

    def without_noise(self) -> "FixedPointSolver":
        """The same solver for evaluation and diagnostics (a noisy solver drops its noise)."""
        return self

    def solve(self, field: Callable, u0: State, dt: float, key=None) -> tuple[State, Solution]:
        """`fixed_point(self, field, u0, dt, key)`."""
        return fixed_point(self, field, u0, dt, key)


def fixed_point(solver: FixedPointSolver, field: Callable, u0: State, dt: float, key=None) -> tuple[State, Solution]:
    """Run `solver` on the batched field `field` from `u0` until every sample is settled or the
    budget is spent, in one `lax.while_loop` (the step count never unrolls into the program).

    Args:
        solver: the iteration and its budget.
        field: u ↦ F(u) on a batched state dict (a `BlockField` for sweeps).
        u0: the start, a dict of arrays with a leading batch axis.
        dt: the step of the plain iteration u ← u + dt·F(u) (1 for maps).
        key: a PRNG key for solvers that draw noise.

    Returns:
        (u, Solution): the final state and how each sample's phase ended.
    """
    iterated = swept_field(field, dt) if solver.sweep else field
    real = jnp.real(jax.tree_util.tree_leaves(u0)[0]).dtype
    batch = jax.tree_util.tree_leaves(u0)[0].shape[0]

    def settled(residual):
        return residual <= solver.tol  # False for NaN: a non-finite sample never stops the batch

    def cond(carry):
        step, _, residual, _ = carry
        running = step < solver.max_steps
        return running & ~jnp.all(settled(residual)) if solver.stops_early else running

    def body(carry):
        step, state, residual, sample_steps = carry
        was_settled = settled(residual)
        state, residual = solver.step(iterated, state, dt)
        sample_steps = jnp.where(was_settled, sample_steps, step + 1)
        return step + 1, state, residual.astype(real), sample_steps

    start = (jnp.asarray(0), solver.init(iterated, u0, dt, key), jnp.full((batch,), jnp.inf, real),
             jnp.zeros((batch,), jnp.int32))
    steps, state, step_residual, sample_steps = jax.lax.while_loop(cond, body, start)
    u = solver.value(state)
    residuals = residual_norm(field(u)).astype(real)
    finite = jnp.isfinite(residuals) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(v.reshape(batch, -1)), axis=1)
                                                           for v in jax.tree_util.tree_leaves(u)]), axis=0)
    result = jnp.where(~finite, RESULTS.nonfinite,
                       jnp.where(settled(step_residual), RESULTS.converged, RESULTS.max_steps)).astype(jnp.int32)
    return u, Solution(result, residuals, sample_steps, steps)


def unrolled(field: Callable, u0, dt: float, steps: int):
    """Exactly `steps` Euler/map steps as a `lax.scan` (reverse-differentiable, for BPTT)."""

    def body(u, _):
        f = field(u)
        return jax.tree_util.tree_map(lambda a, b: a + dt * b, u, f), None

    u, _ = jax.lax.scan(body, u0, None, length=steps)
    return u
