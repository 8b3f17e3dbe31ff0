"""Every estimator by name, and the compiled entry points `estimate` and `nudge_response`.

A new estimator is a new `Estimator` subclass (`_estimator.py`) and one entry in `ESTIMATORS`;
the training loop only calls `estimate`.
"""

from __future__ import annotations

from dataclasses import replace

import equinox as eqx
import jax
import jax.numpy as jnp

from ._continual import ContinualEP, ContinualVF, Online
from ._estimator import Estimator, Options, Tree
from ._point_estimators import Classic, Holomorphic, PointEstimator, Symmetric
from ._references import BackpropThroughTime, RecurrentBackprop, TrueResponse

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
    """d_βu*, the response of the fixed point to the nudge, at the free fixed point.

    Args:
        model: a compiled model.
        x, y: a batch of inputs and targets.
        free: the free fixed point of that batch.
        method: classic, symmetric, hep (from nudged fixed points) or true (forward mode).
        key: a PRNG key (default PRNGKey(0)).
        **options: the fields of `Options`.

    Returns:
        A state dict: the estimate of d_βu* = J⁻¹∂C/∂u per sample.
    """
    chosen = get_estimator(method)
    key = jax.random.PRNGKey(0) if key is None else key
    return _response_compiled(chosen, model, x, y, free, key, *_static_and_beta(options))


@eqx.filter_jit
def _response_compiled(chosen: Estimator, model, x, y, free, key, opts: Options, beta) -> dict:
    return chosen.response(model, x, y, free, key, replace(opts, beta=beta))


def estimate(model, x, y, estimator: str = "hep", *, key=None, **options) -> tuple[Tree, dict]:
    """Estimate dL/dθ on a batch.

        grads, info = eqn.estimate(model, x, y, estimator="hep", beta=0.5, n=4)

    Args:
        model: a compiled model.
        x, y: a batch of inputs and one-hot targets (leading axis: the batch).
        estimator: a name of `ESTIMATORS` (classic, symmetric, hep, online, true, rbp, bptt, cep, cvf).
        key: a PRNG key for random signs, noise and probes (default PRNGKey(0)).
        **options: the fields of `Options` (beta, n, homeostasis, free_solver, nudged_solver, …).

    Returns:
        (grads, info): `grads` has the model's structure (descend it); `info` holds the loss, the
        classification error, each phase's residual and steps, and whether the gradient is finite.
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


__all__ = ["ESTIMATORS", "Estimator", "Options", "PointEstimator", "Classic", "Symmetric", "Holomorphic", "Online",
           "TrueResponse", "RecurrentBackprop", "BackpropThroughTime", "ContinualEP", "ContinualVF", "estimate",
           "get_estimator", "nudge_response"]
