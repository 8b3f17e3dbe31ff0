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
from dataclasses import dataclass, replace
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._solver import FixedPointSolver

Tree = Any


@dataclass(frozen=True)
class Options:
    """Everything an estimator may honour; each uses what applies to it.

    beta: |β|, the teaching amplitude. n: number of points on the circle (hep, online).
    random_sign: flip the sign of β at random for each batch (continual-ep §5).
    noise: std of Gaussian neuron noise added at every step of every phase.
    homeostasis: λ of the homeostatic loss λ·E_ε[‖Jε‖² − εᵀJ²ε] (homeostasis Eq. 12), whose
      gradient is added; homeostasis_samples: Gaussian probes per sample. homeostasis_per_neuron:
      divide that loss by the number of neurons n (the state's size), as the authors' code does:
      their λ' is λ = λ'/n here without it (λ' = 1 there is λ = 1/522 on the 256-256-10 MLP).
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
    branch_tol: the predicted relative bias of hEP (and symmetric) above which a sample's N
      nudged points are flagged as not on one holomorphic branch (`branch_statistics`).
    """

    beta: float = 0.5
    n: int = 2
    random_sign: bool = False
    noise: float = 0.0
    homeostasis: float = 0.0
    homeostasis_samples: int = 1
    homeostasis_per_neuron: bool = False
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
    branch_tol: float = 0.02


# ----------------------------------------------------------------------------- shared pieces


def _tree_add(a: Tree, b: Tree) -> Tree:
    return jax.tree_util.tree_map(lambda x, y: x + y, a, b)


def _tree_scale(a: Tree, s) -> Tree:
    return jax.tree_util.tree_map(lambda x: s * x, a)


def _zeros_like(model) -> Tree:
    return jax.tree_util.tree_map(jnp.zeros_like, model)


def _state_size(model) -> int:
    return sum(math.prod(shape) for shape in model.program.states.values())


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
            info["free_settled"] = stats.settled
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
            scale = opts.homeostasis / (_state_size(model) if opts.homeostasis_per_neuron else 1)
            grads = _tree_add(grads, _tree_scale(homeo, scale))
            info["homeostatic_loss"] = value
        info["finite"] = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
        return grads, info

    @abc.abstractmethod
    def _estimate(self, model, x, y, free, key, opts) -> tuple[Tree, dict, dict]:
        """(grads, info, state at which the loss is reported)."""

    def response(self, model, x, y, free, key, opts) -> dict:
        """The estimate of d_βu* = J⁻¹∂C/∂u at the free fixed point `free`, for the estimators
        that form one (the point estimators and `true`)."""
        raise ValueError(f"estimator {self.name!r} does not estimate d_βu*")

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
