"""The runtime: fixed-point solvers, estimators, training, data and the `eqn` command."""

from ._estimators import ESTIMATORS, Estimator, Options, estimate, get_estimator
from ._solvers import FixedPointSolver, FixedStep, SolveStats, residual_norm, unrolled

__all__ = ["FixedPointSolver", "FixedStep", "SolveStats", "residual_norm", "unrolled", "ESTIMATORS",
           "Estimator", "Options", "estimate", "get_estimator"]
