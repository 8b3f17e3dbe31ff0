"""Gradient estimators: every EP variant and the exact references, behind one interface.

An estimator maps (model, batch) to an estimate of dL/dθ with the model's structure (a pytree to
descend) and an `info` dict. Sign convention: the compiled nudge gives ∂F/∂β = −∂C/∂u, so the
response of the fixed point to the nudge is d_βu* = J⁻¹∂C/∂u and

    dL/dθ ≈ −(∂F/∂θ)ᵀ·d_βu* + ∂C/∂θ                      (field path, homeostasis Eq. 6)
    dL/dθ ≈ Σ_k w_k ∂(E + β_k C)/∂θ (u*_{β_k})           (energy path, holomorphic-ep Eq. 2, 8)

where the points β_k and weights w_k define classic, symmetric and hEP estimates alike. Exact
references: `rbp` (implicit differentiation at the free fixed point, homeostasis Eq. 4), `bptt`
(backprop through the unrolled free phase) and `true` (forward-mode d_βu*, homeostasis §4).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field, replace
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import lineax as lx

from ._fixed_step import FixedStep
from ._solver import FixedPointSolver, Solution, residual_norm, unrolled

Tree = Any


@dataclass(frozen=True)
class Options:
    """Everything an estimator may honour; each uses what applies to it.

    beta: |β|, the teaching amplitude. n: number of points on the circle (hep, online).
    random_sign: flip the sign of β at random for each batch (continual-ep §5).
    noise: std of Gaussian neuron noise added at every step of every phase.
    homeostasis: λ of the homeostatic loss λ·E_ε[‖Jε‖² − εᵀJ²ε] (homeostasis Eq. 12), whose
      gradient is added; homeostasis_samples: Gaussian probes per sample.
    path: "energy" or "field" (default: energy for energy models, field otherwise).
    free_solver / nudged_solver: how the phases find fixed points.
    eta: per-step learning rate of the continual estimators (cep, cvf); a tiny eta is the
      debugging variant of continual-ep App. F.2. nudged_steps: their phase length.
    periods, steps_per_point: the online estimator's oscillation (n points per period).
    bptt_steps: length of the unrolled free phase for bptt.
    free_dtype: run the free phase in this lower precision (e.g. "bfloat16", as the papers' CNN
      runs do on accelerators); the nudged phases and the gradient stay in the model's precision.
    adjoint: how rbp finds λ = J^{-T}∂C/∂u: "solve" (a linear solve: the exact gradient) or
      "dynamics" (the adjoint dynamics dλ/dt = Jᵀλ − ∂C/∂u run by the nudged phases' solver and
      budget: recurrent backprop as Almeida and Pineda ran it, and as the homeostasis paper's
      RBP baseline does with T_nudge steps).
    """

    beta: float = 0.5
    n: int = 2
    random_sign: bool = False
    noise: float = 0.0
    homeostasis: float = 0.0
    homeostasis_samples: int = 1
    path: str | None = None
    free_solver: FixedPointSolver | None = None
    nudged_solver: FixedPointSolver | None = None
    eta: float = 1e-5
    nudged_steps: int = 20
    periods: int = 5
    steps_per_point: int = 60
    bptt_steps: int | None = None
    free_dtype: str | None = None
    adjoint: str = "solve"


# ----------------------------------------------------------------------------- shared pieces


def _tree_add(a: Tree, b: Tree) -> Tree:
    return jax.tree_util.tree_map(lambda x, y: x + y, a, b)


def _tree_scale(a: Tree, s) -> Tree:
    return jax.tree_util.tree_map(lambda x: s * x, a)


def _zeros_like(model) -> Tree:
    return jax.tree_util.tree_map(jnp.zeros_like, model)


def _batch(x) -> int:
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def _as_complex(tree: Tree) -> Tree:
    return jax.tree_util.tree_map(lambda p: p.astype(jnp.result_type(p, 1j)), tree)


def energy_param_grad(model, state, x, y, beta, weight) -> Tree:
    """Re[w · ∂(E + βC)/∂θ] averaged over the batch; the holomorphic derivative for complex β."""
    batch = _batch(x)
    if jnp.iscomplexobj(beta) or any(jnp.iscomplexobj(v) for v in state.values()):
        complex_model = _as_complex(model)
        value, pull = jax.vjp(lambda m: jnp.sum(m.energy(state, x, y, beta)) / batch, complex_model)
        (grads,) = pull(jnp.ones((), value.dtype))
        return jax.tree_util.tree_map(lambda g, p: jnp.real(weight * g).astype(p.dtype), grads, model)
    grads = jax.grad(lambda m: jnp.sum(m.energy(state, x, y, beta)) / batch)(model)
    return _tree_scale(grads, jnp.real(weight))


def field_param_vjp(model, state, x, cotangent, ep: bool = True) -> Tree:
    """(∂F/∂θ)ᵀ·v at β = 0, averaged over the batch, F being the model's `ep_field` (or with
    `ep=False` its `vector_field`)."""
    batch = _batch(x)
    field = type(model).ep_field if ep else type(model).vector_field
    _, pull = jax.vjp(lambda m: field(m, state, x, None, 0.0), model)
    (grads,) = pull(cotangent)
    return _tree_scale(grads, 1.0 / batch)


def cost_param_grad(model, state, x, y) -> Tree:
    """∂C/∂θ at a fixed state (nonzero only for parameters the cost reads, e.g. a readout)."""
    batch = _batch(x)
    return jax.grad(lambda m: jnp.sum(m.cost(state, y, x)) / batch)(model)


def cost_state_grad(model, state, x, y) -> dict:
    """∂C/∂u per sample."""
    return jax.grad(lambda s: jnp.sum(model.cost(s, y, x)))(state)


def _nudged_solver(model, opts) -> FixedPointSolver:
    """The nudged phases' solver: the one given for them, else the free phase's when one was
    given, else the model's own."""
    return opts.nudged_solver or opts.free_solver or model.nudged_solver


def classification_error(model, state, x, y) -> jax.Array:
    prediction = model.prediction(state, x)
    return jnp.mean(jnp.argmax(prediction, axis=-1) != jnp.argmax(y, axis=-1))


def _free_phase(model, x, solver, key, dtype: str | None):
    """The free fixed point, found in `dtype` when given and returned in the model's precision."""
    if dtype is None:
        return model.free(x, solver=solver, with_stats=True, key=key)
    low = jnp.dtype(dtype)
    cast = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda a: a.astype(low) if eqx.is_inexact_array(a) else a, tree)
    state, stats = cast(model).free(cast(x), solver=solver, with_stats=True, key=key)
    full = jnp.result_type(*jax.tree_util.tree_leaves(model.params))
    return {k: v.astype(full) for k, v in state.items()}, stats


# ----------------------------------------------------------------------------- the interface


class Estimator(abc.ABC):
    """Estimates dL/dθ for a batch. Subclasses implement `_estimate` after the free phase."""

    name: str = ""
    needs_free_phase: bool = True
    complex_beta: bool = False  # whether it evaluates the dynamics at complex β

    def __call__(self, model, x, y, key, options: Options) -> tuple[Tree, dict]:
        key_free, key_sign, key_est, key_homeo = jax.random.split(key, 4)
        opts = options
        if opts.random_sign:
            sign = jnp.where(jax.random.bernoulli(key_sign), 1.0, -1.0)
            opts = replace(opts, beta=sign * opts.beta)
        free_solver = opts.free_solver or model.free_solver
        info: dict[str, jax.Array] = {}
        if self.needs_free_phase:
            free, stats = _free_phase(model, x, free_solver, key_free, opts.free_dtype)
            free = jax.lax.stop_gradient(free)
            info["free_residual"], info["free_steps"] = stats.residual, stats.steps
        else:
            free = None
        grads, more, reference_state = self._estimate(model, x, y, free, key_est, opts)
        info.update(more)
        info["field_evaluations"] = info.get("free_steps", 0) + info.get("nudged_evaluations", 0)
        state = free if free is not None else reference_state
        info["loss"] = jnp.mean(model.cost(state, y, x))
        info["error"] = classification_error(model, state, x, y)
        if opts.homeostasis:
            value, homeo = jax.value_and_grad(
                lambda m: jnp.mean(m.homeostatic_loss(state, x, key_homeo, opts.homeostasis_samples)))(model)
            grads = _tree_add(grads, _tree_scale(homeo, opts.homeostasis))
            info["homeostatic_loss"] = value
        info["finite"] = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
        return grads, info

    @abc.abstractmethod
    def _estimate(self, model, x, y, free, key, opts) -> tuple[Tree, dict, dict]:
        """(grads, info, state at which the loss is reported)."""

    @staticmethod
    def _path(model, opts) -> str:
        path = opts.path or ("energy" if model.program.form == "energy" else "field")
        if path == "energy" and model.program.form != "energy":
            raise ValueError(f"the energy path needs an energy model; '{model.program.name}' is a {model.program.form}")
        if path not in ("energy", "field"):
            raise ValueError(f"path must be 'energy' or 'field', got {path!r}")
        return path


def _from_response(model, x, y, free, response) -> Tree:
    """dL/dθ ≈ −(∂F/∂θ)ᵀ·d_βu* + ∂C/∂θ (homeostasis Eq. 6, with this package's sign of β)."""
    response = {k: jnp.real(v).astype(free[k].dtype) for k, v in response.items()}
    grads = _tree_scale(field_param_vjp(model, free, x, response), -1.0)
    return _tree_add(grads, cost_param_grad(model, free, x, y))


# ----------------------------------------------------------------------------- EP from points


@dataclass(frozen=True)
class _Points:
    betas: tuple[complex, ...]
    weights: tuple[complex, ...]
    free_weight: float = 0.0  # weight of the free fixed point (classic)


class PointEstimator(Estimator):
    """EP from nudged fixed points at β_k with weights w_k: d_βu ≈ Σ w_k u*_{β_k} (+ w₀ u*₀).

    The dynamics have real parameters and inputs, so u*_{β̄} is the conjugate of u*_β and a
    conjugate pair of points costs one complex phase: Re(w u*_β + w̄ u*_β̄) = Re(2w u*_β). Real
    points run in real arithmetic; the rest run as one batched complex solve.
    """

    def points(self, opts) -> _Points:
        raise NotImplementedError

    def _groups(self, opts) -> tuple[jax.Array | None, list[tuple[jax.Array, jax.Array]]]:
        """(weight of the free point or None, [(betas, weights)] per dtype group), conjugate pairs
        folded together. The pattern is fixed at |β| = 1 (β_k = |β|p_k, w_k = q_k/|β| for every
        estimator), so |β| may be traced: a random sign or a β that changes between calls."""
        unit = self.points(replace(opts, beta=1.0))
        real, complex_ = [], []
        pending = list(zip(unit.betas, unit.weights))
        while pending:
            beta, weight = pending.pop(0)
            if complex(beta).imag == 0:
                real.append((complex(beta).real, complex(weight).real))
                continue
            partner = next((i for i, (b, w) in enumerate(pending)
                            if abs(complex(b) - complex(beta).conjugate()) < 1e-12
                            and abs(complex(w) - complex(weight).conjugate()) < 1e-12), None)
            if partner is None:
                complex_.append((beta, weight))
            else:
                pending.pop(partner)
                complex_.append((beta, 2 * weight))
        groups = [(opts.beta * jnp.asarray([b for b, _ in group]), jnp.asarray([w for _, w in group]) / opts.beta)
                  for group in (real, complex_) if group]
        free_weight = unit.free_weight / opts.beta if unit.free_weight else None
        return free_weight, groups

    def _phases(self, model, x, y, free, key, opts):
        free_weight, groups = self._groups(opts)
        solver = _nudged_solver(model, opts)

        def nudged(beta, k):
            return model.nudged(x, y, beta, init=free, solver=solver, with_stats=True, key=k)

        phases, residuals, steps, evaluations = [], [], [], []
        for (betas, weights), group_key in zip(groups, jax.random.split(key, len(groups))):
            states, stats = jax.vmap(nudged)(betas, jax.random.split(group_key, betas.shape[0]))
            phases.append((betas, weights, states))
            residuals.append(jnp.max(stats.residual))
            steps.append(jnp.max(stats.steps))
            # the vectorised phases of a group run until the slowest one is done
            evaluations.append(betas.shape[0] * jnp.max(stats.steps))
        info = {"nudged_residual": jnp.max(jnp.stack(residuals)), "nudged_steps": jnp.max(jnp.stack(steps)),
                "nudged_evaluations": sum(evaluations)}
        return free_weight, phases, info

    @staticmethod
    def _combine(free_weight, phases, free) -> dict:
        """Re Σ_k w_k u*_{β_k} (+ w₀ u*₀)."""
        response = {k: jnp.zeros_like(v) for k, v in free.items()}
        for _, weights, states in phases:
            for k in response:
                response[k] = response[k] + jnp.real(jnp.tensordot(weights, states[k], axes=1))
        if free_weight is not None:
            response = {k: response[k] + free_weight * free[k] for k in response}
        return response

    def response(self, model, x, y, free, key, opts) -> dict:
        """The estimate of d_βu* = J⁻¹∂C/∂u from the nudged fixed points."""
        free_weight, phases, _ = self._phases(model, x, y, free, key, opts)
        return self._combine(free_weight, phases, free)

    def _estimate(self, model, x, y, free, key, opts):
        free_weight, phases, info = self._phases(model, x, y, free, key, opts)
        if self._path(model, opts) == "energy":
            grads = _zeros_like(model)
            for betas, weights, states in phases:
                per_point = jax.vmap(lambda s, b, w: energy_param_grad(model, s, x, y, b, w))(states, betas, weights)
                grads = _tree_add(grads, jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), per_point))
            if free_weight is not None:
                grads = _tree_add(grads, energy_param_grad(model, free, x, y, 0.0, free_weight))
            return grads, info, free
        return _from_response(model, x, y, free, self._combine(free_weight, phases, free)), info, free


class Classic(PointEstimator):
    """One-sided difference (u*_β − u*₀)/β: holomorphic-ep Eq. 2, vector-field Eq. 16."""

    name = "classic"

    def points(self, opts):
        beta = opts.beta
        return _Points((beta,), (1.0 / beta,), free_weight=-1.0 / beta)


class Symmetric(PointEstimator):
    """(u*_β − u*_−β)/2β: the symmetric estimate, equal to hEP with N = 2."""

    name = "symmetric"

    def points(self, opts):
        beta = opts.beta
        return _Points((beta, -beta), (0.5 / beta, -0.5 / beta))


class Holomorphic(PointEstimator):
    """N points β_k = |β|e^{2iπk/N} and the first Fourier coefficient: holomorphic-ep Eq. 8,
    homeostasis Eq. 7 / Eq. 22. Exact up to O(|β|^N) (holomorphic-ep Eq. 9)."""

    name = "hep"
    complex_beta = True

    def points(self, opts):
        n = int(opts.n)
        if n < 2:
            raise ValueError(f"hep needs n >= 2 points, got {n}")
        amplitude = opts.beta
        betas, weights = [], []
        for k in range(n):
            phase = complex(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n))
            if n == 2:
                phase = phase.real
            betas.append(amplitude * phase)
            weights.append(1.0 / (n * amplitude * phase))
        if n == 2:
            return _Points(tuple(float(b.real) for b in betas), tuple(float(w.real) for w in weights))
        return _Points(tuple(betas), tuple(weights))


# ----------------------------------------------------------------------------- exact references


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
            solver = opts.nudged_solver or FixedStep(max_steps=opts.nudged_steps, tol=0.0)
            lam, stats = self.adjoint_dynamics(model, x, y, free, solver)
            info = {"nudged_residual": stats.residual, "nudged_steps": stats.steps, "nudged_evaluations": stats.steps}
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


# ----------------------------------------------------------------------------- online


class Online(Estimator):
    """No free phase: the teaching signal β(t) = |β|e^{2iπk/N} steps round the circle, every
    `steps_per_point` steps, for `periods` periods, while the network runs and the estimate
    accumulates (holomorphic-ep Eq. 10; homeostasis Eq. 8-9: d_βu* from the running Fourier
    coefficient of u, ∂F/∂θ at the running mean of u). Converges to hEP as periods grow."""

    name = "online"
    needs_free_phase = False
    complex_beta = True

    def _estimate(self, model, x, y, free, key, opts):
        n, per, periods = int(opts.n), int(opts.steps_per_point), int(opts.periods)
        amplitude = opts.beta
        ks = jnp.arange(n * per * periods) // per % n
        phases = jnp.exp(2j * jnp.pi * ks / n)
        betas = amplitude * phases
        weights = jnp.conj(phases) / (amplitude * n * per * periods)
        start = {k: v.astype(jnp.result_type(v, 1j)) for k, v in model.init_state(x).items()}
        energy = self._path(model, opts) == "energy"

        def body(carry, inputs):
            u, response, mean, grads = carry
            beta, weight = inputs
            f = model.vector_field(u, x, y, beta)
            u = {k: u[k] + model.dt * f[k] for k in u}
            if energy:
                grads = _tree_add(grads, energy_param_grad(model, u, x, y, beta, weight))
            response = {k: response[k] + weight * u[k] for k in u}
            mean = {k: mean[k] + jnp.real(u[k]) / ks.shape[0] for k in u}
            return (u, response, mean, grads), None

        zeros = {k: jnp.zeros_like(v) for k, v in start.items()}
        real_zeros = {k: jnp.zeros(v.shape, jnp.real(v).dtype) for k, v in start.items()}
        carry = (start, zeros, real_zeros, _zeros_like(model))
        (u, response, mean, grads), _ = jax.lax.scan(body, carry, (betas, weights))
        info = {"nudged_residual": jnp.max(residual_norm(model.vector_field(u, x, y, betas[-1]))),
                "nudged_evaluations": jnp.asarray(ks.shape[0])}
        if not energy:
            grads = _from_response(model, x, y, mean, response)
        return grads, info, mean


# ----------------------------------------------------------------------------- continual


class Continual(Estimator):
    """Weights move at every step of the nudged phase; the estimate is the normalised total move
    (θ₀ − θ_K)/η. continual-ep Eq. 6 (C-EP, energy models) and Eq. 12 (C-VF, any dynamics)."""

    needs_free_phase = True

    def update(self, model, u, u_next, x, y, opts) -> Tree:
        raise NotImplementedError

    def _estimate(self, model, x, y, free, key, opts):
        eta, beta = opts.eta, opts.beta

        def body(carry, _):
            m, u = carry
            f = m.vector_field(u, x, y, beta)
            u_next = {k: u[k] + m.dt * f[k] for k in u}
            m = _tree_add(m, _tree_scale(self.update(m, u, u_next, x, y, opts), eta))
            return (m, u_next), None

        (final, u), _ = jax.lax.scan(body, (model, free), None, length=int(opts.nudged_steps))
        grads = _tree_scale(jax.tree_util.tree_map(lambda a, b: a - b, model, final), 1.0 / eta)
        grads = _tree_add(grads, cost_param_grad(model, free, x, y))
        residual = jnp.max(residual_norm(model.vector_field(u, x, y, beta)))
        return grads, {"nudged_residual": residual, "nudged_evaluations": jnp.asarray(int(opts.nudged_steps))}, free


class ContinualEP(Continual):
    """C-EP: θ ← θ − (η/β)(∂E/∂θ(u_{t+1}) − ∂E/∂θ(u_t)) (continual-ep Eq. 6 with Φ = ½u² − dt·E)."""

    name = "cep"

    def update(self, model, u, u_next, x, y, opts):
        if model.program.form != "energy":
            raise ValueError("cep needs an energy model; use 'cvf' for flows and maps")
        after = energy_param_grad(model, u_next, x, y, 0.0, 1.0)
        before = energy_param_grad(model, u, x, y, 0.0, 1.0)
        return _tree_scale(jax.tree_util.tree_map(lambda a, b: a - b, after, before), -1.0 / opts.beta)


class ContinualVF(Continual):
    """C-VF: θ ← θ + (η/β)(∂F/∂θ(u_t))ᵀ(u_{t+1} − u_t) (continual-ep Eq. 12, generalised)."""

    name = "cvf"

    def update(self, model, u, u_next, x, y, opts):
        delta = {k: (u_next[k] - u[k]) / opts.beta for k in u}
        return field_param_vjp(model, u, x, delta)


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Classic(), Symmetric(), Holomorphic(), Online(), TrueResponse(), RecurrentBackprop(),
    BackpropThroughTime(), ContinualEP(), ContinualVF())}


def get_estimator(name: str) -> Estimator:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}") from None


def _static_and_beta(options: dict) -> tuple[Options, jax.Array]:
    """The options a compiled program is specialised on, and |β| as its argument."""
    opts = Options(**options)
    if opts.beta == 0:
        raise ValueError("beta must be nonzero: the EP estimates divide by β")
    return replace(opts, beta=None), jnp.asarray(opts.beta)


def nudge_response(model, x, y, free, method: str = "true", *, key=None, **options) -> dict:
    """d_βu* at the free fixed point `free`, estimated by `method` (classic, symmetric, hep, true)."""
    chosen = get_estimator(method)
    if not hasattr(chosen, "response"):
        raise ValueError(f"estimator {method!r} does not estimate d_βu*")
    key = jax.random.PRNGKey(0) if key is None else key
    return _response_compiled(chosen, model, x, y, free, key, *_static_and_beta(options))


@eqx.filter_jit
def _response_compiled(chosen: Estimator, model, x, y, free, key, opts: Options, beta) -> dict:
    return chosen.response(model, x, y, free, key, replace(opts, beta=beta))


def estimate(model, x, y, estimator: str = "hep", *, key=None, **options) -> tuple[Tree, dict]:
    """Estimate dL/dθ on a batch: `grads` has the model's structure (descend it), `info` holds
    the loss, the classification error and the residual of each phase.

        grads, info = eqn.estimate(model, x, y, estimator="hep", beta=0.5, n=4)
    """
    chosen = get_estimator(estimator)
    if chosen.complex_beta and not model.program.holomorphic:
        lines = ", ".join(f"{n.operation} at line {n.span.line}" for n in model.program.non_holomorphic)
        raise ValueError(f"estimator '{estimator}' evaluates the dynamics at complex β, but model "
                         f"'{model.program.name}' is not holomorphic ({lines})")
    key = jax.random.PRNGKey(0) if key is None else key
    return _estimate_compiled(chosen, model, x, y, key, *_static_and_beta(options))


@eqx.filter_jit
def _estimate_compiled(chosen: Estimator, model, x, y, key, opts: Options, beta) -> tuple[Tree, dict]:
    """One compiled program per estimator and options; |β| is an argument, not a constant, so a
    sweep over β reuses it."""
    return chosen(model, x, y, key, replace(opts, beta=beta))
