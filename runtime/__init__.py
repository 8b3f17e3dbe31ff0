"""The runtime: fixed-point solvers, estimators, training, data and the `eqn` command."""

from ._solvers import FixedPointSolver, FixedStep, SolveStats, residual_norm

__all__ = ["FixedPointSolver", "FixedStep", "SolveStats", "residual_norm"]
