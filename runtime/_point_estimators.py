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
