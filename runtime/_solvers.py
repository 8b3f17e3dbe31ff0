"""The solvers by name, and the one source of the phases' default budgets.

`SOLVERS` feeds the `eqn` command's choices; a new solver is one more entry here behind the
contract of `_solver.py`. `DEFAULT_FREE_STEPS` and `DEFAULT_NUDGED_STEPS` are what both the
command and the Python API run when no budget is given (the papers' T = 150 free and 20 nudged
steps, homeostasis App. E.2).
"""

from __future__ import annotations

from ._anderson import Anderson
from ._fixed_step import FixedStep
from ._solver import FixedPointSolver

SOLVERS: dict[str, type[FixedPointSolver]] = {"fixed": FixedStep, "anderson": Anderson}
DEFAULT_SOLVER = "fixed"
DEFAULT_FREE_STEPS = 150
DEFAULT_NUDGED_STEPS = 20
DEFAULT_TOL = 1e-5


def make_solver(name: str = DEFAULT_SOLVER, **options) -> FixedPointSolver:
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


def default_solvers() -> tuple[FixedPointSolver, FixedPointSolver]:
    """(free, nudged): the solvers a phase uses when nobody chose one."""
    return (make_solver(DEFAULT_SOLVER, max_steps=DEFAULT_FREE_STEPS, tol=DEFAULT_TOL),
            make_solver(DEFAULT_SOLVER, max_steps=DEFAULT_NUDGED_STEPS, tol=DEFAULT_TOL))
