"""The model options that `eqn train` and `eqn diagnose` share: the model file and its constants, the
solvers of the phases, and fitting a dataset to the model's input."""

from __future__ import annotations

import argparse

import numpy as np


def phase_solver(kind: str, phase: str, args):
    """The solver of a phase ("free" or "nudged") from the command's options: the registry's
    `kind` with its defaults for that phase (`PHASE_DEFAULTS`), overridden by the options given
    (`--free-steps`/`--nudged-steps`, `--tol`, `--sweep`; `--anderson-…` to Anderson, `--noise`
    to plain steps)."""
    from ._solvers import make_solver, phase_defaults

    options = phase_defaults(kind, phase)
    given = {"max_steps": args.free_steps if phase == "free" else args.nudged_steps, "tol": args.tol,
             "sweep": args.sweep}
    options.update({k: v for k, v in given.items() if v is not None})
    if kind == "anderson":
        if args.noise:
            raise SystemExit("eqn: error: --noise needs the fixed-step solver (--solver fixed): noise makes every "
                             "step count")
        options.update(memory=args.anderson_memory, patience=args.anderson_patience)
    elif args.noise:
        options["noise"] = args.noise
    return make_solver(kind, **options)


def _compile(args):
    """The model with its solver and initial pair angle, or None after reporting the errors."""
    import jax
    import jax.numpy as jnp

    from ._init import rotate_pairs, sign_flip_pairs
    from ._model import compile as compile_model
    from ._reporting import consts_from, load_or_report
    from ._solvers import DEFAULT_SOLVERS

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    program = load_or_report(args.file, consts_from(args.const))
    if program is None:
        return None
    model = compile_model(program, key=jax.random.PRNGKey(args.seed), dtype=getattr(jnp, args.dtype), dt=args.dt)
    kinds = {phase: getattr(args, f"{phase}_solver") or args.solver or DEFAULT_SOLVERS[phase]
             for phase in DEFAULT_SOLVERS}
    model = model.with_solver(free=phase_solver(kinds["free"], "free", args),
                              nudged=phase_solver(kinds["nudged"], "nudged", args))
    if args.angle is not None:
        model = rotate_pairs(model, args.angle)
    if args.flip_angle is not None:
        model = sign_flip_pairs(model, args.flip_angle, jax.random.PRNGKey(args.seed + 1))
    return model


def _fit(dataset, model):
    """Flatten for vector inputs; zero-pad images to the model's size (e.g. 28x28 → 32x32)."""
    program = model.program
    for kind, declared in (("input", program.inputs), ("target", program.targets)):
        if len(declared) != 1:
            names = ", ".join(declared) or "none"
            raise ValueError(f"a dataset feeds one `{kind}` of the model, but '{program.name}' declares "
                             f"{len(declared)} ({names}); declare exactly one in {program.filename}")
    (shape,) = program.inputs.values()
    (target,) = program.targets.values()
    if target != (dataset.num_classes,):
        raise ValueError(f"{dataset.name} has {dataset.num_classes} classes but the model's target is "
                         f"{list(target)}; it must be [{dataset.num_classes}] (override its size with --const)")
    images = dataset.images
    if len(shape) == 1:
        if int(np.prod(images.shape[1:])) != shape[0]:
            raise ValueError(f"the model's input has {shape[0]} values but {dataset.name} images have "
                             f"{int(np.prod(images.shape[1:]))}; override the input size with --const")
        return dataset.flatten() if images.ndim > 2 else dataset
    if images.ndim == 2:
        raise ValueError("the model expects images but the dataset is flat")
    c, h, w = images.shape[1:]
    if shape[0] != c or shape[1] < h or shape[2] < w or (shape[1] - h) % 2 or (shape[2] - w) % 2:
        raise ValueError(f"the model's input is {list(shape)} but {dataset.name} images are {[c, h, w]}; "
                         "override its constants with --const (e.g. c_in=1, hw=32)")
    if (shape[1], shape[2]) == (h, w):
        return dataset
    ph, pw = (shape[1] - h) // 2, (shape[2] - w) // 2
    padded = np.pad(images, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return dataset._replace(images=padded, image_shape=padded.shape[1:])


def _model_arguments(parser) -> None:
    from ._estimators import Options
    from ._solvers import DEFAULT_SOLVERS, PHASE_DEFAULTS, SOLVERS

    solvers = list(SOLVERS)
    parser.add_argument("file", help="the .eqn model")
    parser.add_argument("--const", action="append", metavar="NAME=VALUE", help="override a constant")
    parser.add_argument("--dataset", default="fashion_mnist", help="TFDS name (default fashion_mnist)")
    parser.add_argument("--pixels", default="standardize", choices=["standardize", "unit"],
                        help="standardize each channel (default) or keep pixels in [0, 1] (the papers' MLP setting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dt", type=float, default=None, help="Euler step of flows (maps use 1)")

    def default(phase, key):
        return " / ".join(f"{name} {PHASE_DEFAULTS[name][phase][key]}" for name in solvers if name in PHASE_DEFAULTS)

    parser.add_argument("--free-steps", type=int, default=None,
                        help=f"step budget of the free phase (default: {default('free', 'max_steps')})")
    parser.add_argument("--nudged-steps", type=int, default=None,
                        help=f"step budget of each nudged phase (default: {default('nudged', 'max_steps')}), and the "
                             f"continual estimators' phase length (default {Options.nudged_steps})")
    parser.add_argument("--tol", type=float, default=None,
                        help="a phase stops, settled, when ‖F(u)‖ ≤ tol for every sample (default: free "
                             f"{default('free', 'tol')}; nudged {default('nudged', 'tol')})")
    parser.add_argument("--solver", default=None, choices=solvers,
                        help=f"fixed-point solver of every phase (default: {DEFAULT_SOLVERS['free']} for the free "
                             f"phase, {DEFAULT_SOLVERS['nudged']} for the nudged ones): anderson = Anderson "
                             "acceleration on sweeps; fixed = plain steps, the papers' setting")
    parser.add_argument("--free-solver", choices=solvers, help="solver of the free phase only")
    parser.add_argument("--nudged-solver", choices=solvers, help="solver of the nudged phases only")
    parser.add_argument("--anderson-memory", type=int, default=5, help="past iterates Anderson mixes (default 5)")
    parser.add_argument("--anderson-patience", type=int, default=None, metavar="STEPS",
                        help="Anderson's stall rule: a sample without 10%% progress for STEPS steps takes plain steps "
                             "(off by default; for maps whose plain steps contract)")
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                        help="update the model's blocks of states one after another (block Gauss-Seidel, the blocks "
                             "`eqn show` lists) instead of all at once: the same fixed points, fewer steps on "
                             f"layered models (default: {default('free', 'sweep')})")
    parser.add_argument("--noise", type=float, default=Options.noise, help="std of Gaussian neuron noise per step")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--beta", type=float, default=Options.beta,
                        help=f"teaching amplitude |β| (default {Options.beta})")
    parser.add_argument("--n", type=int, default=Options.n,
                        help=f"points on the β circle for hep/online (default {Options.n})")
    parser.add_argument("--angle", type=float, default=None, help="initial angle (degrees) of backward weights")
    parser.add_argument("--flip-angle", type=float, default=None, help="sign-flip initialisation at this angle")
