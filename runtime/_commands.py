"""The `eqn train` subcommand, and the registration of `train`, `diagnose` and `plot`."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

from ._model_options import _compile, _fit, _model_arguments


def _pairs(values: list[str] | None, what: str) -> dict[str, float]:
    result = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        try:
            result[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"eqn: error: {what} expects NAME=NUMBER, got {item!r}")
    return result


COMMANDS = ("train", "diagnose", "plot")


def cmd_train(args) -> int:
    from . import _data
    from ._health import DataError
    from ._run_folder import RunFolderError
    from ._train import DivergenceError, TrainConfig, UnsettledError, train

    if args.distributed:
        import jax
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    model = _compile(args)
    if model is None:
        return 1
    try:
        normalize = args.pixels == "standardize"
        train_set = _data.load_dataset(args.dataset, "train", normalize=normalize)
        val_set = _data.load_dataset(args.dataset, "test", normalize=normalize)
        train_set, val_set = _fit(train_set, model), _fit(val_set, model)
    except _data.DatasetUnavailable as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 2
    if args.train_size:
        train_set = train_set.subset(args.train_size)
    if args.val_size:
        val_set = val_set.subset(args.val_size)
    options = dict(beta=args.beta, n=args.n, homeostasis=args.homeostasis, homeostasis_samples=args.homeostasis_samples,
                   homeostasis_per_neuron=args.homeostasis_per_neuron, random_sign=args.random_sign, eta=args.eta)
    if args.nudged_steps is not None:
        options["nudged_steps"] = args.nudged_steps
    if args.branch_tol is not None:
        options["branch_tol"] = args.branch_tol
    if args.path:
        options["path"] = args.path
    if args.free_dtype:
        options["free_dtype"] = args.free_dtype
    if args.adjoint:
        options["adjoint"] = args.adjoint
    config = TrainConfig(estimator=args.estimator, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, clip_norm=args.clip_norm, schedule=args.schedule,
                         checkpoint_every=args.checkpoint_every,
                         lr_scales=_pairs(args.lr_scale, "--lr-scale"), epochs=args.epochs,
                         batch_size=args.batch_size, seed=args.seed, max_residual=args.max_residual,
                         min_settled=args.min_settled, unsettled=args.unsettled, devices=args.devices,
                         options=options)
    out = Path(args.out or f"runs/{model.program.name}_{args.dataset}_{args.estimator}")
    print(f"eqn: training {model.program.name} ({model.program.param_count():,} parameters) on "
          f"{train_set.describe()} with {args.estimator}; writing {out}", flush=True)
    try:
        with _warnings_as_lines():
            model, history = train(model, train_set, val=val_set, out=out, resume=args.resume,
                                   progress=not args.no_progress, config=config)
    except DivergenceError as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        print(f"eqn: the last finite parameters are in {out / 'last_finite.eqx'}", file=sys.stderr)
        return 3
    except (UnsettledError, RunFolderError) as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, UnsettledError) else 2
    except (DataError, ValueError) as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 2
    if history:
        last = history[-1]
        print(f"final validation error: {100 * last['val_error']:.2f}% (epoch {last['epoch']}, "
              f"train error {100 * last['train_error']:.2f}%)")
        if last.get("diverging"):
            print(f"eqn: error: the run ended without learning (epoch {last['epoch']} at chance); "
                  f"see the warnings above and {out / 'metrics.jsonl'}", file=sys.stderr)
            return 3
    return 0


@contextlib.contextmanager
def _warnings_as_lines():
    """Within the block, a `TrainingWarning` prints as one line `eqn: warning: …` on stderr."""
    from ._health import TrainingWarning

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        warnings.simplefilter("always", TrainingWarning)
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, TrainingWarning):
                print(f"eqn: warning: {message}", file=sys.stderr, flush=True)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def register(sub, with_options: bool = True) -> None:
    """Add `train`, `diagnose` and `plot` to the subcommands; their options only `with_options`."""
    from . import _figure_commands as _figures

    train = sub.add_parser("train", help="train a model on a dataset with an EP estimator")
    diag = sub.add_parser("diagnose", help="symmetry, homeostatic loss, angles and cosines at the free fixed point")
    plot = sub.add_parser("plot", help="draw the curves of a training run (metrics.jsonl) to PNG")
    train.set_defaults(run=cmd_train)
    diag.set_defaults(run=_figures.cmd_diagnose)
    plot.set_defaults(run=_figures.cmd_plot)
    if not with_options:
        return
    from ._estimators import ESTIMATORS, Options
    from ._health import UNSETTLED_POLICIES
    from ._train import TrainConfig

    _model_arguments(train)
    train.add_argument("--estimator", default=TrainConfig.estimator, choices=sorted(ESTIMATORS))
    train.add_argument("--path", choices=["energy", "field"], help="gradient path (default: energy for energy models)")
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    train.add_argument("--lr", type=float, default=TrainConfig.lr)
    train.add_argument("--optimizer", default=TrainConfig.optimizer, choices=["sgd", "adam"])
    train.add_argument("--momentum", type=float, default=TrainConfig.momentum)
    train.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    train.add_argument("--schedule", choices=["cosine"], default=TrainConfig.schedule)
    train.add_argument("--clip-norm", type=float, default=TrainConfig.clip_norm, metavar="C",
                       help="rescale a gradient whose global norm exceeds C (metrics.jsonl records how often)")
    train.add_argument("--lr-scale", action="append", metavar="PARAM=SCALE", help="per-parameter learning-rate scale")
    train.add_argument("--homeostasis", type=float, default=Options.homeostasis, help="λ of the homeostatic loss")
    train.add_argument("--homeostasis-samples", type=int, default=Options.homeostasis_samples)
    train.add_argument("--homeostasis-per-neuron", action="store_true",
                       help="divide the homeostatic loss by the number of neurons, as the authors' code does "
                            "(their λ; without it λ is the paper's, Eq. 12)")
    train.add_argument("--random-sign", action="store_true", help="random sign of β for each batch")
    train.add_argument("--branch-tol", type=float, default=None, metavar="BIAS",
                       help=f"hep/symmetric: flag a sample whose N nudged points predict a relative bias above BIAS "
                            f"(not one holomorphic branch; default {Options.branch_tol})")
    train.add_argument("--eta", type=float, default=Options.eta,
                       help="per-step rate of cep/cvf (tiny: App. F.2 variant)")
    train.add_argument("--train-size", type=int, default=None, help="use the first K training examples")
    train.add_argument("--val-size", type=int, default=None, help="use the first K test examples")
    train.add_argument("--max-residual", type=float, default=TrainConfig.max_residual,
                       help="stop when a phase ends above this residual")
    train.add_argument("--min-settled", type=float, default=TrainConfig.min_settled, metavar="FRACTION",
                       help=f"a step is unsettled when fewer of its samples than this reached the phase tolerance "
                            f"(default {TrainConfig.min_settled})")
    train.add_argument("--unsettled", choices=UNSETTLED_POLICIES, default=TrainConfig.unsettled,
                       help="what an unsettled step does: warn = apply it and warn once per epoch (default), "
                            "skip = leave the parameters unchanged, stop = end the run")
    train.add_argument("--adjoint", choices=["solve", "dynamics"],
                       help="rbp: solve Jᵀλ = ∂C/∂u exactly (default), or run the adjoint dynamics for the "
                            "nudged phases' budget (truncated recurrent backprop, the papers' RBP baseline)")
    train.add_argument("--free-dtype", choices=["bfloat16", "float16"],
                       help="run the free phase in this precision (the rest stays in --dtype)")
    train.add_argument("--devices", type=int, default=TrainConfig.devices,
                       help="split each batch over this many devices (data parallel)")
    train.add_argument("--distributed", action="store_true",
                       help="multi-host run: call jax.distributed.initialize() first")
    train.add_argument("--coordinator", help="HOST:PORT of process 0 (default: detected from SLURM/MPI/TPU)")
    train.add_argument("--num-processes", type=int, help="number of processes (default: detected)")
    train.add_argument("--process-id", type=int, help="this process's id (default: detected)")
    train.add_argument("--out", default=None, help="run directory (metrics.jsonl, checkpoint.eqx)")
    train.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    train.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every, metavar="STEPS",
                       help="also checkpoint every STEPS training steps inside an epoch (long epochs)")
    train.add_argument("--no-progress", action="store_true")

    _figures.add_arguments(diag, plot, _model_arguments)
