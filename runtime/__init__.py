"""The runtime: fixed-point solvers, estimators, training, data, diagnostics and the `eqn` command."""

from ._anderson import Anderson
from ._data import ArrayDataset, DatasetUnavailable, load_dataset, one_hot
from ._diagnostics import diagnose, plot_stability_map, stability_map
from ._estimators import ESTIMATORS, Estimator, Options, estimate, get_estimator, nudge_response
from ._init import pair_angles, rotate_pairs, sign_flip_pairs
from ._plot import plot_metrics
from ._solvers import BlockField, FixedPointSolver, FixedStep, SolveStats, residual_norm, swept_field, unrolled
from ._train import DivergenceError, TrainConfig, evaluate, load_checkpoint, save_checkpoint, train

__all__ = [
    "FixedPointSolver", "FixedStep", "Anderson", "BlockField", "SolveStats", "residual_norm", "swept_field", "unrolled",
    "ESTIMATORS", "Estimator",
    "Options", "estimate", "get_estimator", "nudge_response", "ArrayDataset", "DatasetUnavailable",
    "load_dataset", "one_hot", "diagnose", "stability_map", "plot_stability_map", "pair_angles",
    "rotate_pairs", "sign_flip_pairs", "plot_metrics", "DivergenceError", "TrainConfig", "evaluate",
    "load_checkpoint", "save_checkpoint", "train",
]
