"""The `eqn diagnose` and `eqn plot` subcommands: diagnostics at the free fixed point, the stability
map of the nudged phase over complex β, and the figures of a training run."""

from __future__ import annotations

import json
import sys


def cmd_diagnose(args) -> int:
    import jax.numpy as jnp

    from . import _data
    from ._model_options import _compile, _fit
    from ._diagnostics import diagnose, plot_stability_map, stability_map

    model = _compile(args)
    if model is None:
        return 1
    try:
        data = _fit(_data.load_dataset(args.dataset, "test", normalize=args.pixels == "standardize"), model)
    except (_data.DatasetUnavailable, ValueError) as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 2
    x, y = next(iter(data.batches(args.batch_size, seed=args.seed, epoch=0)))
    x, y = jnp.asarray(x), jnp.asarray(y)
    report = diagnose(model, x, y, beta=args.beta, n=args.n)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"    {k:<20} {v:.4f}")
            else:
                print(f"{key:<28} {value:.6g}" if isinstance(value, float) else f"{key:<28} {value}")
    if args.stability_map:
        re, im, residuals = stability_map(model, x[:1], y[:1], radius=args.radius, resolution=args.resolution)
        plot_stability_map(re, im, residuals, args.stability_map, title=f"{model.program.name}: fixed point of β ∈ ℂ")
        print(f"stability map written to {args.stability_map}")
    return 0


def cmd_plot(args) -> int:
    from ._plot import plot_metrics

    try:
        path = plot_metrics(args.directory, args.output)
    except FileNotFoundError as exc:
        print(f"eqn: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def add_arguments(diag, plot, model_arguments) -> None:
    """The options of `eqn diagnose` (the model's, through `model_arguments`, and its own) and `eqn plot`."""
    model_arguments(diag)
    diag.add_argument("--batch-size", type=int, default=20)
    diag.add_argument("--json", action="store_true")
    diag.add_argument("--stability-map", metavar="PNG", help="draw where the nudged fixed point exists in ℂ")
    diag.add_argument("--radius", type=float, default=2.0)
    diag.add_argument("--resolution", type=int, default=41)

    plot.add_argument("directory")
    plot.add_argument("--output", default=None)
