"""The solvers by name, and the one source of the phases' default budgets.

`SOLVERS` feeds the `eqn` command's choices; a new solver is one more entry here behind the
contract of `_solver.py`. `PHASE_DEFAULTS` is what both the command and the Python API run when
no budget, tolerance or sweeping is given.
"""

from __future__ import annotations

from ._anderson import Anderson
from ._fixed_step import FixedStep
from ._solver import FixedPointSolver

SOLVERS: dict[str, type[FixedPointSolver]] = {"fixed": FixedStep, "anderson": Anderson}
# Per solver, what each phase runs when nobody chose its budget, tolerance or sweeping. "fixed" is
# the papers' setting (T = 150 free and 20 nudged steps, homeostasis App. E.2).
PHASE_DEFAULTS: dict[str, dict[str, dict]] = {
    "fixed": {"free": dict(max_steps=150, tol=1e-5, sweep=False), "nudged": dict(max_steps=20, tol=1e-5, sweep=False)},
    "anderson": {"free": dict(max_steps=150, tol=1e-5, sweep=True), "nudged": dict(max_steps=30, tol=1e-4, sweep=True)},
}
# The solver of each phase when nobody chose one. The free phase runs Anderson on sweeps: on the
# README's command it settles 99.9 % of samples where 150 plain steps settle 97 %, and it settles
# the Hopfield MLP's flow, where plain steps leave 77 % of random inputs unsettled; it stops early,
# so a training step is no slower. The nudged phases keep the papers' 20 plain steps: run to their
# tolerance (Anderson, 95 % settled) at |β| = 0.5 they made one epoch 1.6x slower and its
# validation error 2.8 points worse (bench/RESULTS.md "settling").
DEFAULT_SOLVERS: dict[str, str] = {"free": "anderson", "nudged": "fixed"}


def phase_defaults(name: str, phase: str) -> dict:
    """The budget, tolerance and sweeping a `phase` ("free" or "nudged") of solver `name` runs by
    default.

    Args:
        name: a key of `SOLVERS`.
        phase: "free" or "nudged".
    """
    if name not in SOLVERS or phase not in ("free", "nudged"):
        raise ValueError(f"unknown solver {name!r} or phase {phase!r}")
    return dict(PHASE_DEFAULTS.get(name, {}).get(phase, {}))  # a new entry without its own: its fields' defaults


def make_solver(name: str, **options) -> FixedPointSolver:
    """The solver registered as `name`, built with `options` (its fields: max_steps, tol, …).

    Args:
        name: a key of `SOLVERS`.
        **options: the solver's fields; a field the solver does not have is an error.
    """
    try:
        kind = SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}") from None
    fields = set(kind.__dataclass_fields__)
    unknown = set(options) - fields
    if unknown:
        raise ValueError(f"solver {name!r} has no option {', '.join(sorted(unknown))}")
    return kind(**options)


def default_solvers(name: str | None = None) -> tuple[FixedPointSolver, FixedPointSolver]:
    """(free, nudged): the solvers the phases use when nobody chose one.

    Args:
        name: a key of `SOLVERS` for both phases, with its `PHASE_DEFAULTS`; None: each phase's
            solver of `DEFAULT_SOLVERS`.
    """
    free, nudged = (name, name) if name is not None else (DEFAULT_SOLVERS["free"], DEFAULT_SOLVERS["nudged"])
    return (make_solver(free, **phase_defaults(free, "free")), make_solver(nudged, **phase_defaults(nudged, "nudged")))
