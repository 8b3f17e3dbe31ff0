"""EP from nudged fixed points at β_k with weights w_k: classic (holomorphic-ep Eq. 2),
symmetric, and holomorphic EP with N points on a circle (holomorphic-ep Eq. 8)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from ._estimator import (
    Estimator, _from_response, _nudged_solver, _tree_add, _zeros_like, energy_param_grad,
)


@dataclass(frozen=True)
class _Points:
    betas: tuple[complex, ...]
    weights: tuple[complex, ...]
    free_weight: float = 0.0  # weight of the free fixed point (classic)


def branch_statistics(phases, free: dict, beta, tol: float) -> dict:
    """Whether the N nudged fixed points u_k at β_k = |β|e^{2iπk/N} lie on one holomorphic branch
    u*(β) = Σ_j a_j β^j around the free point a_0 (holomorphic-ep Eq. 8-9).

    On one branch, with radius of convergence R, the discrete Fourier coefficients of the points,
    c_m = (1/N)Σ_k u_k e^{-2iπkm/N} = Σ_{j ≡ m (mod N)} a_j |β|^j, decay like t^m with t = |β|/R:
    ‖c_m‖/‖c_1‖ ≈ t^{m-1} for 2 ≤ m < N, and ‖c_0 − u*_0‖/‖c_1‖ ≈ t^{N-1}. Each ratio gives an
    estimate of t; their largest, raised to the N-th power, estimates hEP's relative bias
    a_{N+1}|β|^N/a_1 (Eq. 9). Where the circle leaves the region in which the nudged fixed
    point is one branch of β (|β| ≥ R, or a phase that settled on another fixed point), the
    coefficients do not decay and the estimate is near or above 1.

    Args:
        phases: [(betas, weights, states, counts)] per dtype group; a point of count 2 stands for
            its conjugate too (`PointEstimator._groups`).
        free: the free fixed point, u*_0.
        beta: |β|.
        tol: the predicted relative bias above which a sample is flagged.

    Returns:
        `branch_bias`: the largest predicted relative bias of the batch; `branch_flagged`: the
        fraction of its samples above `tol`.
    """
    points = []
    for betas, _, states, counts in phases:
        flat = jnp.concatenate([states[k].reshape(states[k].shape[0], states[k].shape[1], -1) for k in sorted(free)],
                               axis=-1)  # [points, batch, n]
        points.append((betas / beta, flat, jnp.asarray(counts, jnp.real(flat).dtype)))
    n = sum(len(counts) + counts.count(2) for _, _, _, counts in phases)
    origin = jnp.concatenate([free[k].reshape(free[k].shape[0], -1) for k in sorted(free)], axis=-1)

    def coefficient(m):
        total = 0.0
        for phase, flat, counts in points:
            total = total + jnp.real(jnp.tensordot(counts * phase ** (-m), flat, axes=1))
        return total / n

    tiny = jnp.finfo(jnp.real(origin).dtype).tiny
    first = jnp.linalg.norm(coefficient(1), axis=-1)
    estimates = [(jnp.linalg.norm(coefficient(0) - origin, axis=-1) / jnp.maximum(first, tiny)) ** (1.0 / (n - 1))]
    estimates += [(jnp.linalg.norm(coefficient(m), axis=-1) / jnp.maximum(first, tiny)) ** (1.0 / (m - 1))
                  for m in range(2, n)]
    bias = jnp.max(jnp.stack(estimates), axis=0) ** n
    bias = jnp.where(jnp.isfinite(bias), bias, jnp.inf)
    return {"branch_bias": jnp.max(bias), "branch_flagged": jnp.mean((bias > tol).astype(jnp.float32))}


class PointEstimator(Estimator):
    """EP from nudged fixed points at β_k with weights w_k: d_βu ≈ Σ w_k u*_{β_k} (+ w₀ u*₀).

    The dynamics have real parameters and inputs, so u*_{β̄} is the conjugate of u*_β and a
    conjugate pair of points costs one complex phase: Re(w u*_β + w̄ u*_β̄) = Re(2w u*_β). Real
    points run in real arithmetic; the rest run as one batched complex solve. Estimators whose
    points lie on a circle around 0 (`on_circle`) check that they lie on one holomorphic branch
    (`branch_statistics`).
    """

    on_circle: bool = False

    def points(self, opts) -> _Points:
        raise NotImplementedError

    def _groups(self, opts) -> tuple[jax.Array | None, list[tuple[jax.Array, jax.Array, tuple[int, ...]]]]:
        """(weight of the free point or None, [(betas, weights, counts)] per dtype group), conjugate
        pairs folded together (count 2: the point stands for its conjugate too). The pattern is
        fixed at |β| = 1 (β_k = |β|p_k, w_k = q_k/|β| for every estimator), so |β| may be traced: a
        random sign or a β that changes between calls."""
        unit = self.points(replace(opts, beta=1.0))
        real, complex_ = [], []
        pending = [(complex(b), complex(w)) for b, w in zip(unit.betas, unit.weights)]
        while pending:
            beta, weight = pending.pop(0)
            if abs(beta.imag) < 1e-12:
                real.append((beta.real, weight.real, 1))
                continue
            partner = next((i for i, (b, w) in enumerate(pending)
                            if abs(b - beta.conjugate()) < 1e-12 and abs(w - weight.conjugate()) < 1e-12), None)
            if partner is None:
                complex_.append((beta, weight, 1))
            else:
                pending.pop(partner)
                complex_.append((beta, 2 * weight, 2))
        groups = [(opts.beta * jnp.asarray([b for b, _, _ in group]), jnp.asarray([w for _, w, _ in group]) / opts.beta,
                   tuple(c for _, _, c in group))
                  for group in (real, complex_) if group]
        free_weight = unit.free_weight / opts.beta if unit.free_weight else None
        return free_weight, groups

    def _phases(self, model, x, y, free, key, opts):
        free_weight, groups = self._groups(opts)
        solver = _nudged_solver(model, opts)

        def nudged(beta, k):
            return model.nudged(x, y, beta, init=free, solver=solver, with_stats=True, key=k)

        phases, residuals, steps, evaluations, converged = [], [], [], [], []
        for (betas, weights, counts), group_key in zip(groups, jax.random.split(key, len(groups))):
            states, stats = jax.vmap(nudged)(betas, jax.random.split(group_key, betas.shape[0]))
            phases.append((betas, weights, states, counts))
            residuals.append(jnp.max(stats.residual))
            converged.append(jnp.all(stats.converged, axis=0))
            steps.append(jnp.max(stats.steps))
            # the vectorised phases of a group run until the slowest one is done
            evaluations.append(betas.shape[0] * jnp.max(stats.steps))
        info = {"nudged_residual": jnp.max(jnp.stack(residuals)), "nudged_steps": jnp.max(jnp.stack(steps)),
                "nudged_evaluations": sum(evaluations),
                # a sample is settled when every one of its nudged phases is
                "nudged_settled": jnp.mean(jnp.all(jnp.stack(converged), axis=0).astype(jnp.float32))}
        if self.on_circle:
            info.update(branch_statistics(phases, free, opts.beta, opts.branch_tol))
        return free_weight, phases, info

    @staticmethod
    def _combine(free_weight, phases, free) -> dict:
        """Re Σ_k w_k u*_{β_k} (+ w₀ u*₀)."""
        response = {k: jnp.zeros_like(v) for k, v in free.items()}
        for _, weights, states, _ in phases:
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
            for betas, weights, states, _ in phases:
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
    on_circle = True

    def points(self, opts):
        beta = opts.beta
        return _Points((beta, -beta), (0.5 / beta, -0.5 / beta))


class Holomorphic(PointEstimator):
    """N points β_k = |β|e^{2iπk/N} and the first Fourier coefficient: holomorphic-ep Eq. 8,
    homeostasis Eq. 7 / Eq. 22. Exact up to O(|β|^N) (holomorphic-ep Eq. 9)."""

    name = "hep"
    complex_beta = True
    on_circle = True

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
