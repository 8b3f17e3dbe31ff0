"""Estimators that learn while the network runs: the online estimator with an always-on
oscillating teaching signal (holomorphic-ep Eq. 10) and the continual ones, C-EP and C-VF
(continual-ep Eq. 6, 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._estimator import (
    Estimator, Tree, _from_response, _tree_add, _tree_scale, _zeros_like, cost_param_grad, energy_param_grad,
    field_param_vjp,
)
from ._solver import residual_norm


class Online(Estimator):
    """No free phase: the teaching signal β(t) = |β|e^{2iπk/N} steps round the circle, every
    `steps_per_point` steps, for `periods` periods, while the network runs and the estimate
    accumulates (holomorphic-ep Eq. 10; homeostasis Eq. 8-9: d_βu* from the running Fourier
    coefficient of u, ∂F/∂θ at the running mean of u).

    Two limits bound how close it comes to hEP with the same N and |β|: the network starts at the
    zero state, not at the free fixed point, so the first period's transient biases the average
    by an amount that falls like 1/periods; and at each point the state relaxes for only
    `steps_per_point` steps towards u*_{β_k}, so it lags the teaching signal by an amount that does
    not fall with more periods. The error therefore falls like 1/periods down to a floor set by
    `steps_per_point` (in the paper's setting, 2–52 % from hEP; tests/runtime/test_trust.py
    measures both)."""

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
            raise ValueError(f"cep needs an energy model (continual-ep Eq. 6 differentiates its primitive "
                             f"function); '{model.program.name}' is a {model.program.form}: use 'cvf' (Eq. 12)")
        after = energy_param_grad(model, u_next, x, y, 0.0, 1.0)
        before = energy_param_grad(model, u, x, y, 0.0, 1.0)
        return _tree_scale(jax.tree_util.tree_map(lambda a, b: a - b, after, before), -1.0 / opts.beta)


class ContinualVF(Continual):
    """C-VF: θ ← θ + (η/β)(∂F/∂θ(u_t))ᵀ(u_{t+1} − u_t) (continual-ep Eq. 12, generalised)."""

    name = "cvf"

    def update(self, model, u, u_next, x, y, opts):
        delta = {k: (u_next[k] - u[k]) / opts.beta for k in u}
        return field_param_vjp(model, u, x, delta)

