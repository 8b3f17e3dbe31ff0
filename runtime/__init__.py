"""The runtime: the compiled model and its solvers, estimators, training, data, diagnostics and
the `eqn` command. Names load on first use, so `eqn check` imports only what checking needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_PUBLIC = {
    "EqnModel": "_model", "compile": "_model", "emit": "_model", "rules": "_model",
    "FixedPointSolver": "_solver", "Solution": "_solver", "RESULTS": "_solver", "BlockField": "_solver",
    "residual_norm": "_solver", "swept_field": "_solver", "unrolled": "_solver", "fixed_point": "_solver",
    "FixedStep": "_fixed_step", "Anderson": "_anderson",
    "SOLVERS": "_solvers", "make_solver": "_solvers", "default_solvers": "_solvers",
    "ESTIMATORS": "_estimators", "Estimator": "_estimators", "Options": "_estimators", "estimate": "_estimators",
    "get_estimator": "_estimators", "nudge_response": "_estimators",
    "ArrayDataset": "_data", "DatasetUnavailable": "_data", "load_dataset": "_data", "one_hot": "_data",
    "diagnose": "_diagnostics", "stability_map": "_diagnostics", "plot_stability_map": "_diagnostics",
    "pair_angles": "_init", "rotate_pairs": "_init", "sign_flip_pairs": "_init",
    "plot_metrics": "_plot",
    "DivergenceError": "_train", "UnsettledError": "_train", "TrainConfig": "_train", "evaluate": "_train",
    "train": "_train",
    "DataError": "_health", "TrainingWarning": "_health", "check_data": "_health",
    "RunFolder": "_run_folder", "RunFolderError": "_run_folder", "load_checkpoint": "_run_folder",
    "save_checkpoint": "_run_folder",
}
__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)

if TYPE_CHECKING:
    from ._anderson import Anderson  # noqa: F401
    from ._data import ArrayDataset, DatasetUnavailable, load_dataset, one_hot  # noqa: F401
    from ._diagnostics import diagnose, plot_stability_map, stability_map  # noqa: F401
    from ._estimators import ESTIMATORS, Estimator, Options, estimate, get_estimator, nudge_response  # noqa: F401
    from ._fixed_step import FixedStep  # noqa: F401
    from ._init import pair_angles, rotate_pairs, sign_flip_pairs  # noqa: F401
    from ._model import EqnModel, compile, emit, rules  # noqa: F401
    from ._plot import plot_metrics  # noqa: F401
    from ._solver import RESULTS, BlockField, FixedPointSolver, Solution, fixed_point, residual_norm, swept_field, unrolled  # noqa: F401,E501
    from ._solvers import SOLVERS, default_solvers, make_solver  # noqa: F401
    from ._health import DataError, TrainingWarning, check_data  # noqa: F401
    from ._run_folder import RunFolder, RunFolderError, load_checkpoint, save_checkpoint  # noqa: F401
    from ._train import DivergenceError, TrainConfig, UnsettledError, evaluate, train  # noqa: F401
