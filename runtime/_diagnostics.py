"""Diagnostics at the free fixed point, the quantities the papers plot: Jacobian symmetry, the
homeostatic loss, forward/backward angles, cosines between d_βu* and δ per layer, the C-EP/BPTT
angle Ψ, and the map of complex β where a nudged fixed point exists."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._estimators import RecurrentBackprop, estimate, nudge_response
from ._init import pair_angles
from ._fixed_step import FixedStep


def _cosine(a, b) -> float:
    a, b = np.ravel(np.asarray(a)), np.ravel(np.asarray(b))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree_util.tree_leaves(tree)])


def diagnose(model, x, y, *, beta: float = 0.5, n: int = 2, solver=None, key=None,
             homeostasis_samples: int = 4, cep_steps: int = 20) -> dict:
    """All scalar diagnostics for one batch, at the free fixed point.

    Args:
        model: a compiled model.
        x, y: a batch of inputs and one-hot targets.
        beta, n: |β| and the points of the hEP estimate whose d_βu* is compared with δ.
        solver: the free phase's solver (default: the model's, without noise).
        key: a PRNG key for the homeostatic loss's probes (default PRNGKey(0)).
        homeostasis_samples: Gaussian probes per sample of the homeostatic loss.
        cep_steps: nudged steps of the C-EP/BPTT angle Ψ (continual-ep §4.3).

    Returns:
        A dict of floats (Jacobian symmetry, homeostatic loss, …) and of dicts per layer or pair
        (angles between forward and backward weights, cosines between d_βu* and δ).
    """
    key = jax.random.PRNGKey(0) if key is None else key
    solver = (solver or model.free_solver).without_noise()
    free, stats = eqx.filter_jit(lambda m, x: m.free(x, solver=solver, with_stats=True))(model, x)
    report: dict = {"free_residual": float(stats.residual), "free_steps": int(stats.steps)}
    size = sum(math.prod(s) for s in model.program.states.values())
    at_free = _jacobian_diagnostics(model, x, y, free, key, homeostasis_samples, dense=size <= 4096)
    if "symmetry" in at_free:
        report["symmetry"] = float(at_free["symmetry"])
    report["homeostatic_loss"] = float(at_free["homeostatic_loss"])
    report["pair_angles_degrees"] = pair_angles(model)
    response = nudge_response(model, x, y, free, "hep", beta=beta, n=n, free_solver=solver)
    if "delta" in at_free:
        # dβs = φ'(u)·dβu in the coordinates EP reads against δ of the dynamics' field: they are
        # equal when EP is exact (homeostasis Fig. 4d compares these two).
        slopes, delta = at_free["slopes"], at_free["delta"]
        report["cosine_response_delta"] = {s: _cosine(slopes[s] * response[s], delta[s])
                                           for s in model.program.states}
    exact, _ = estimate(model, x, y, "rbp" if size <= 4096 else "bptt", free_solver=solver)
    ep, _ = estimate(model, x, y, "hep", beta=beta, n=n, free_solver=solver)
    report["cosine_ep_exact"] = _cosine(_flat(ep), _flat(exact))
    continual = "cep" if model.program.form == "energy" else "cvf"
    bptt, _ = estimate(model, x, y, "bptt", free_solver=solver)
    cont, _ = estimate(model, x, y, continual, beta=beta, eta=1e-5, nudged_steps=cep_steps, free_solver=solver)
    report[f"{continual}_bptt_angle_degrees"] = math.degrees(math.acos(max(-1.0, min(1.0, _cosine(
        _flat(cont), _flat(bptt))))))
    return report


@eqx.filter_jit
def _jacobian_diagnostics(model, x, y, free, key, homeostasis_samples: int, dense: bool) -> dict:
    """The homeostatic loss, and where a dense Jacobian is affordable the symmetry measure and
    δ = J^{-T}∂C/∂u with the coordinate slopes φ'(u), in one compiled program."""
    out = {"homeostatic_loss": jnp.mean(model.homeostatic_loss(free, x, key, homeostasis_samples))}
    if dense:
        out["symmetry"] = jnp.mean(model.symmetry(free, x))
        out["delta"] = RecurrentBackprop().adjoint(model, x, y, free)
        out["slopes"] = model.coordinate_slopes(free)
    return out


def stability_map(model, x, y, *, radius: float = 2.0, resolution: int = 41, steps: int = 200,
                  tol: float = 1e-4, init=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual of the nudged phase started from the free fixed point, on a grid of complex β
    (holomorphic-ep Fig. 2b): (real axis, imaginary axis, residual[imag, real])."""
    solver = FixedStep(max_steps=steps, tol=tol)
    free = model.free(x, solver=solver) if init is None else init
    axis = np.linspace(-radius, radius, resolution)
    betas = (axis[None, :] + 1j * axis[:, None]).ravel()

    @eqx.filter_jit
    def residual(m, beta):
        state, stats = m.nudged(x, y, beta, init=free, solver=solver, with_stats=True)
        value = stats.residual
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    values = np.array([float(residual(model, jnp.asarray(b))) for b in betas]).reshape(resolution, resolution)
    return axis, axis, values


def plot_stability_map(axis_re, axis_im, residuals, path, tol: float = 1e-4, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    converged = np.where(residuals <= tol, 1.0, 0.0)
    ax.imshow(converged, origin="lower", cmap="Blues", vmin=0, vmax=1,
              extent=(axis_re[0], axis_re[-1], axis_im[0], axis_im[-1]))
    ax.set_xlabel("Re β")
    ax.set_ylabel("Im β")
    ax.set_title(title or "fixed point exists (dark) / diverges (light)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
