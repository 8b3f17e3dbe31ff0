"""The exact references: forward-mode d_βu* (`true`, homeostasis §4), recurrent backprop by
implicit differentiation (`rbp`, homeostasis Eq. 4) and backprop through time (`bptt`,
continual-ep App. B)."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import lineax as lx

from ._estimator import (
    Estimator, _batch, _from_response, _nudged_solver, _tree_add, _tree_scale, cost_param_grad, cost_state_grad,
    energy_param_grad, field_param_vjp,
)
from ._solver import FixedPointSolver, Solution, residual_norm, unrolled


class TrueResponse(Estimator):
    """d_βu* by forward-mode differentiation of the nudged phase at β = 0 (homeostasis §4,
    "True d_βu*"): the EP estimate without any finite-β bias."""

    name = "true"

    def _estimate(self, model, x, y, free, key, opts):
        if self._path(model, opts) == "energy":
            def param_grad(beta):
                return energy_param_grad(model, self._nudged_phase(model, x, y, free, opts)(beta), x, y, beta, 1.0)
            _, grads = jax.jvp(param_grad, (jnp.asarray(0.0, jnp.result_type(float)),),
                               (jnp.asarray(1.0, jnp.result_type(float)),))
        else:
            grads = _from_response(model, x, y, free, self.response(model, x, y, free, key, opts))
        return grads, {"nudged_evaluations": jnp.asarray(self._steps(model, opts))}, free

    @staticmethod
    def _steps(model, opts) -> int:
        return _nudged_solver(model, opts).max_steps

    def _nudged_phase(self, model, x, y, free, opts):
        """β ↦ the state after the nudged phase's step budget. A fixed step count: a loop that
        stops on the residual would stop at once at β = 0 and carry no tangent."""
        steps = self._steps(model, opts)
        return lambda beta: unrolled(model.phase_field(x, y, beta), free, model.dt, steps)

    def response(self, model, x, y, free, key, opts) -> dict:
        _, tangent = jax.jvp(self._nudged_phase(model, x, y, free, opts),
                             (jnp.asarray(0.0, jnp.result_type(float)),), (jnp.asarray(1.0, jnp.result_type(float)),))
        return tangent


class RecurrentBackprop(Estimator):
    """Implicit differentiation at the free fixed point: λ = J^{-T}∂C/∂u, dL/dθ = ∂C/∂θ −
    (∂F/∂θ)ᵀλ (homeostasis Eq. 4). The exact gradient of the loss at u*₀; lineax solves."""

    name = "rbp"
    dense_limit = 1024
    eliminate = True  # solve on the Schur complement of Program.diagonal_block where there is one

    def _estimate(self, model, x, y, free, key, opts):
        info = {}
        if opts.adjoint == "solve":
            lam = self.adjoint(model, x, y, free, opts.free_solver)
        elif opts.adjoint == "dynamics":
            solver = opts.nudged_solver or model.nudged_solver  # the nudged phases' solver and budget
            lam, stats = self.adjoint_dynamics(model, x, y, free, solver)
            info = {"nudged_residual": stats.residual, "nudged_steps": stats.steps, "nudged_evaluations": stats.steps,
                    "nudged_settled": stats.settled}
        else:
            raise ValueError(f"adjoint must be 'solve' or 'dynamics', got {opts.adjoint!r}")
        grads = _tree_add(_tree_scale(field_param_vjp(model, free, x, lam, ep=False), -1.0),
                          cost_param_grad(model, free, x, y))
        return grads, info, free

    @staticmethod
    def adjoint_dynamics(model, x, y, free, solver: FixedPointSolver) -> tuple[dict, Solution]:
        """λ from the linear adjoint dynamics dλ/dt = Jᵀλ − ∂C/∂u, started at 0 and run by
        `solver` (each step one VJP of the field at the free state). With a finite budget this is
        truncated recurrent backprop; run to convergence it is λ = J^{-T}∂C/∂u."""
        g = cost_state_grad(model, free, x, y)
        _, pull = jax.vjp(model.phase_field(x), free)

        def adjoint_field(lam):
            (back,) = pull(lam)
            return {k: back[k] - g[k] for k in lam}

        return solver.solve(adjoint_field, {k: jnp.zeros_like(v) for k, v in free.items()}, model.dt)

    def adjoint(self, model, x, y, free, solver: FixedPointSolver | None = None) -> dict:
        """λ = J^{-T}∂C/∂u per sample (δ of homeostasis Eq. 4, up to this package's sign of β),
        with J the Jacobian of the dynamics' own field. The gradient does not depend on the field
        chosen, and φ'(u)⊙F (declared coordinates) is singular where φ' underflows.

        Where the Jacobian is diagonal on a block of states (`Program.diagonal_block`: every other
        layer of a layered map or energy), that block is eliminated first and the solve runs on
        the Schur complement, the size of the other states (`_eliminated_adjoint`). Either system
        is solved by `_transposed_solve`: a dense LU up to `dense_limit` unknowns, matrix-free GMRES
        beyond.
        """
        g = cost_state_grad(model, free, x, y)
        block = model.program.diagonal_block if self.eliminate else ()
        if block:
            return _eliminated_adjoint(model, x, free, g, block, self.dense_limit)
        field, inputs = model._sample_field(x, ep=False)

        def solve_one(u, b, sample_inputs):
            flat, unravel = jax.flatten_util.ravel_pytree(u)
            _, pull = jax.vjp(lambda v: jax.flatten_util.ravel_pytree(field(unravel(v), sample_inputs))[0], flat)
            return unravel(_transposed_solve(lambda c: pull(c)[0], jax.flatten_util.ravel_pytree(b)[0],
                                             self.dense_limit))

        return jax.vmap(solve_one)(free, g, inputs)


def _transposed_solve(transposed_matvec, rhs, dense_limit: int):
    """x with Mᵀx = rhs for one sample, given c ↦ Mᵀc. Up to `dense_limit` unknowns Mᵀ is formed
    from a basis (reverse mode) and LU-solved. Beyond, matrix-free GMRES (lineax), one product per
    iteration, which needs no stability of the dynamics; in float32 it often stalls above its
    tolerance on the Jacobians of trained maps, so the dense solve is preferred wherever it fits."""
    n = rhs.shape[0]
    if n <= dense_limit:
        rows = jax.vmap(transposed_matvec)(jnp.eye(n, dtype=rhs.dtype))  # row r: Mᵀe_r, so rows = M
        return lx.linear_solve(lx.MatrixLinearOperator(rows.T), rhs, lx.LU()).value
    operator = lx.FunctionLinearOperator(transposed_matvec, jax.ShapeDtypeStruct(rhs.shape, rhs.dtype))
    tol = 1e-10 if rhs.dtype == jnp.float64 else 1e-5
    solver = lx.GMRES(rtol=tol, atol=tol, restart=min(n, 60), max_steps=20 * n)
    # A sample whose loss is flat in u (∂C/∂u underflows to 0) has λ = 0; GMRES would divide by
    # its zero norm.
    flat = jnp.all(rhs == 0)
    value = lx.linear_solve(operator, jnp.where(flat, jnp.ones_like(rhs), rhs), solver, throw=False).value
    return jnp.where(flat, jnp.zeros_like(value), value)


def _eliminated_adjoint(model, x, free, rhs, inside: tuple[str, ...], dense_limit: int) -> dict:
    """λ with Jᵀλ = rhs, per sample, where J is diagonal on the states `inside`
    (`Program.diagonal_block`). In the (inside, outside) ordering J = [[Λ, A], [C, D]] with Λ
    diagonal: the inside rows give λ_in = Λ⁻¹(rhs_in − Cᵀλ_out), and the outside rows then
    Sᵀλ_out = rhs_out − AᵀΛ⁻¹rhs_in with the Schur complement S = D − CΛ⁻¹A, the size of the
    outside states. Λ is one JVP along ones; on a layered map it is −I.

    Sᵀc is a VJP through the outside states' field and then one through the inside states'. Formed
    over a basis (reverse mode), the first products are with the weights alone, shared by the
    batch, so only the second layer's are per sample, and the full Jacobian is never formed. Where
    Λ has a zero the elimination divides by it; at a stable fixed point of an energy flow Λ < 0."""
    field, inputs = model._sample_field(x, ep=False)
    outside = tuple(s for s in model.program.states if s not in inside)

    def solve_one(u, b, sample_inputs):
        def split(v_in, v_out, names):
            f = field({**v_in, **v_out}, sample_inputs)
            return {s: f[s] for s in names}

        u_in, u_out = {s: u[s] for s in inside}, {s: u[s] for s in outside}
        b_in, b_out = {s: b[s] for s in inside}, {s: b[s] for s in outside}
        ones = {s: jnp.ones_like(v) for s, v in u_in.items()}
        diag = jax.jvp(lambda v: split(v, u_out, inside), (u_in,), (ones,))[1]
        _, pull_out = jax.vjp(lambda v_in, v_out: split(v_in, v_out, outside), u_in, u_out)  # c ↦ (Cᵀc, Dᵀc)
        _, pull_in = jax.vjp(lambda v: split(u_in, v, inside), u_out)  # c ↦ Aᵀc
        _, unravel_out = jax.flatten_util.ravel_pytree(u_out)

        def schur_transposed(c):  # Sᵀc = Dᵀc − AᵀΛ⁻¹Cᵀc
            c_in, c_out = pull_out(unravel_out(c))
            (a_c,) = pull_in({s: c_in[s] / diag[s] for s in inside})
            return jax.flatten_util.ravel_pytree({s: c_out[s] - a_c[s] for s in outside})[0]

        (a_b,) = pull_in({s: b_in[s] / diag[s] for s in inside})
        reduced = jax.flatten_util.ravel_pytree({s: b_out[s] - a_b[s] for s in outside})[0]
        lam_out = unravel_out(_transposed_solve(schur_transposed, reduced, dense_limit))
        c_lam, _ = pull_out(lam_out)
        return {**lam_out, **{s: (b_in[s] - c_lam[s]) / diag[s] for s in inside}}

    return jax.vmap(solve_one)(free, rhs, inputs)


class BackpropThroughTime(Estimator):
    """Backprop through the unrolled free phase from the zero state (continual-ep App. B)."""

    name = "bptt"
    needs_free_phase = False

    def _estimate(self, model, x, y, free, key, opts):
        steps = opts.bptt_steps or (opts.free_solver or model.free_solver).max_steps
        batch = _batch(x)

        def final_state(m):
            return unrolled(m.phase_field(x), m.init_state(x), m.dt, steps)

        def loss(m):
            return jnp.sum(m.cost(final_state(m), y, x)) / batch

        grads = jax.grad(loss)(model)
        state = jax.lax.stop_gradient(final_state(model))
        residual = jnp.max(residual_norm(model.vector_field(state, x)))
        return grads, {"free_residual": residual, "free_steps": jnp.asarray(steps)}, state
