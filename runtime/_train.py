"""Training: optax optimisers over any estimator, evaluation, metrics, atomic checkpoints, resume.

One jitted step per batch (estimate → optimiser update); the loop around it is plain Python so
that a diverging phase stops with a message and the last finite parameters stay on disk.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._estimator import _nudged_solver
from ._estimators import Options, estimate, get_estimator
from ._health import UNSETTLED_POLICIES, EpochLog, check_batch, check_data, epoch_warnings, warn
from ._run_folder import (
    RunFolder, RunFolderError, identity_difference, model_identity, read_header, save_checkpoint,
)


class DivergenceError(RuntimeError):
    """A phase diverged or produced NaN/Inf; the parameters were not updated."""


@dataclass
class TrainConfig:
    estimator: str = "hep"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: float | None = None  # rescale any gradient whose global norm exceeds this
    schedule: str | None = None  # None or "cosine"
    final_lr_fraction: float = 0.0
    lr_scales: dict[str, float] = field(default_factory=dict)
    epochs: int = 1
    batch_size: int = 50
    seed: int = 0
    max_residual: float = 100.0
    eval_batch_size: int = 500
    symmetry_samples: int = 50
    devices: int = 1
    checkpoint_every: int | None = None  # also checkpoint every this many steps inside an epoch
    # a step is unsettled when fewer than `min_settled` of its samples settled in a phase; it is
    # then applied with a warning ("warn"), not applied ("skip"), or ends the run ("stop")
    min_settled: float = 0.95
    unsettled: str = "warn"
    options: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- optimisers


def make_optimizer(model, config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """optax SGD (momentum) or Adam, with weight decay, an optional cosine schedule,
    per-parameter learning-rate scales (as in the papers' layer-wise tables), and optional
    clipping of the gradient's global norm (applied first, to the whole gradient)."""
    total = max(1, steps_per_epoch * config.epochs)
    if config.clip_norm is not None and not config.clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {config.clip_norm}")

    def clipped(transform):
        # without clipping the optimiser state keeps its structure, so earlier checkpoints load
        return optax.chain(optax.clip_by_global_norm(config.clip_norm), transform) if config.clip_norm else transform

    def build(lr):
        if config.schedule == "cosine":
            lr = optax.cosine_decay_schedule(lr, total, alpha=config.final_lr_fraction)
        elif config.schedule not in (None, "", "constant"):
            raise ValueError(f"unknown schedule {config.schedule!r} (use 'cosine')")
        if config.optimizer == "sgd":
            core = optax.sgd(lr, momentum=config.momentum or None)
            return optax.chain(optax.add_decayed_weights(config.weight_decay), core) if config.weight_decay else core
        if config.optimizer == "adam":
            return optax.adamw(lr, weight_decay=config.weight_decay) if config.weight_decay else optax.adam(lr)
        raise ValueError(f"unknown optimizer {config.optimizer!r} (use 'sgd' or 'adam')")

    unknown = set(config.lr_scales) - set(model.program.params)
    if unknown:
        raise ValueError(f"--lr-scale names unknown parameters: {', '.join(sorted(unknown))}")
    if not config.lr_scales:
        return clipped(build(config.lr))
    labels = jax.tree_util.tree_map(lambda _: "1", model)
    labels = eqx.tree_at(lambda m: [getattr(m, p) for p in config.lr_scales], labels,
                         [str(s) for s in config.lr_scales.values()])
    groups = {str(s): build(config.lr * float(s)) for s in set(config.lr_scales.values()) | {1}}
    groups.setdefault("1", build(config.lr))
    return clipped(optax.multi_transform(groups, labels))


# ----------------------------------------------------------------------------- devices


class Placement:
    """Data parallelism over the first `devices` devices: batches are split along their leading
    axis, parameters and optimiser state are replicated, and XLA inserts the gradient all-reduce.
    With several hosts (after `jax.distributed.initialize()`), each process holds its own slice
    of every global batch."""

    def __init__(self, devices: int = 1):
        available = jax.devices()
        if devices < 1 or devices > len(available):
            raise ValueError(f"asked for {devices} devices but JAX sees {len(available)}: {available}")
        self.devices = devices
        if devices > 1:
            mesh = jax.sharding.Mesh(np.array(available[:devices]), ("batch",))
            self.split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
            self.whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def batch(self, array) -> jax.Array:
        if self.devices == 1:
            return jnp.asarray(array)
        if array.shape[0] % self.devices:
            return jax.device_put(np.asarray(array), self.whole)  # a remainder batch: not split
        per_process = array.shape[0] // jax.process_count()
        local = np.asarray(array)[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]
        return jax.make_array_from_process_local_data(self.split, local, array.shape)

    def replicate(self, tree):
        return tree if self.devices == 1 else eqx.filter_shard(tree, self.whole)


# ----------------------------------------------------------------------------- the loop


def make_step(model, config: TrainConfig, optimizer, placement: Placement | None = None):
    """One jitted training step. The update is applied only when the gradient is finite and
    every phase ended below `max_residual` (`info["healthy"]`), and with the policy
    `unsettled="skip"` only when at least `min_settled` of the batch's samples settled in every
    phase (`info["settled"]`): parameters are never updated with NaN, so their buffers can be
    donated to the next step."""
    estimator = config.estimator
    options = dict(config.options)
    get_estimator(estimator)
    placement = placement or Placement(1)
    limit = config.max_residual

    @eqx.filter_jit(donate="all")
    def step(model, opt_state, x, y, key):
        grads, info = estimate(model, x, y, estimator, key=key, **options)
        info["gradient_norm"] = optax.tree.norm(grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        new_model = eqx.apply_updates(model, updates)
        residuals = [info[k] for k in ("free_residual", "nudged_residual") if k in info]
        healthy = info["finite"] & jnp.all(jnp.array([jnp.isfinite(r) & (r <= limit) for r in residuals] or [True]))
        fractions = [info[k] for k in ("free_settled", "nudged_settled") if k in info]
        settled = jnp.all(jnp.array([f >= config.min_settled for f in fractions] or [True]))
        ok = healthy & settled if config.unsettled in ("skip", "stop") else healthy
        info.update(healthy=healthy, settled=settled, updated=ok)
        keep = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
            lambda a, b: jnp.where(ok, a, b) if eqx.is_array(a) else a, new, old)
        new_model = placement.replicate(keep(new_model, model))
        return new_model, placement.replicate(keep(new_opt_state, opt_state)), info

    return step


def make_evaluator(model, config: TrainConfig):
    """(model, x, y) → (wrong answers, summed loss, largest free residual, settled samples) for a batch."""
    solver = (config.options.get("free_solver") or model.free_solver).without_noise()
    return functools.partial(_evaluate_batch, solver=solver)


@eqx.filter_jit
def _evaluate_batch(model, x, y, solver):
    state, stats = model.free(x, solver=solver, with_stats=True)
    wrong = jnp.sum(jnp.argmax(model.prediction(state, x), -1) != jnp.argmax(y, -1))
    return wrong, jnp.sum(model.cost(state, y, x)), stats.residual, jnp.sum(stats.converged)


def evaluate(model, dataset, config: TrainConfig, evaluator=None, placement: Placement | None = None) -> dict:
    """Classification error (a fraction), mean loss, largest free residual and the fraction of
    samples whose free phase settled, at the free fixed point over a dataset.

    Args:
        model: a compiled model.
        dataset: an `ArrayDataset` (checked for non-finite inputs first).
        config: the training configuration (evaluation batch size, solver options).
        evaluator, placement: a compiled evaluator and device placement to reuse.
    """
    check_data(dataset, "evaluation")
    evaluator = evaluator or make_evaluator(model, config)
    placement = placement or Placement(1)
    wrong = total = settled = 0
    loss = 0.0
    residual = 0.0
    for x, y in dataset.batches(config.eval_batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False):
        w, batch_loss, r, s = evaluator(model, placement.batch(x), placement.batch(y))
        wrong += int(w)
        settled += int(s)
        loss += float(batch_loss)
        total += x.shape[0]
        residual = max(residual, float(r))
    total = max(total, 1)
    return {"error": wrong / total, "loss": loss / total, "residual": residual, "free_settled": settled / total}


def symmetry_at_free_point(model, x, config: TrainConfig) -> float | None:
    """Mean Jacobian symmetry ‖S‖/(‖S‖+‖A‖) at the free fixed point, where a dense Jacobian is
    affordable (None otherwise)."""
    size = sum(math.prod(s) for s in model.program.states.values())
    if size > 4096:
        return None
    solver = (config.options.get("free_solver") or model.free_solver).without_noise()
    return float(_mean_symmetry(model, x, solver))


@eqx.filter_jit
def _mean_symmetry(model, x, solver):
    state = model.free(x, solver=solver)
    return jnp.mean(model.symmetry(state, x))


def _diagnose_failure(model, x, y, config: TrainConfig, info: dict, step: int) -> str:
    """Name the phase, the step and the residual, and the first state that went non-finite."""
    phases = [("free", info.get("free_residual")), ("nudged", info.get("nudged_residual"))]
    bad_phase, residual = next(((p, r) for p, r in phases if r is not None and
                                (not np.isfinite(float(r)) or float(r) > config.max_residual)),
                               ("gradient", None))
    solver = (config.options.get("free_solver") or model.free_solver).without_noise()
    state = model.free(x, solver=solver)
    offending = [name for name, v in state.items() if not bool(jnp.all(jnp.isfinite(v)))]
    detail = f"state {offending[0]!r} is not finite" if offending else "all free states are finite"
    res = "nan" if residual is None else f"{float(residual):.3g}"
    return (f"training step {step}: the {bad_phase} phase diverged (residual {res}, limit "
            f"{config.max_residual:g}); {detail}. Parameters were not updated; lower the learning rate, "
            "β or dt, or raise the step count.")


def train(model, data, *, val=None, out: str | os.PathLike | None = None, resume: bool = False,
          progress: bool = True, max_steps: int | None = None, config: TrainConfig | None = None,
          **overrides):
    """Train `model` on `data` (an ArrayDataset) with an EP estimator and an optax optimiser.

        model, history = eqn.train(model, train_set, val=test_set, estimator="hep", beta=0.5, n=2,
                                   epochs=1, lr=0.01, out="runs/x")

    Args:
        model: a compiled model; its phases use its own solvers unless the options name others.
        data: the training set (an `ArrayDataset`).
        val: a validation set, evaluated after each epoch.
        out: the run folder (`RunFolder`), locked while the run writes to it: each epoch's record
            goes into out/checkpoint.eqx, rewritten atomically, and then into out/metrics.jsonl.
        resume: continue from out/checkpoint.eqx exactly, as if never stopped; a checkpoint of
            another model, other consts or another estimator is refused.
        progress: show a progress bar and a line per epoch.
        max_steps: stop after that many training steps in all (tests and smoke runs).
        config: a `TrainConfig`; its fields may also be given as keywords.
        **overrides: `TrainConfig` fields (lr, epochs, checkpoint_every, unsettled, …) and
            estimator options (beta, n, homeostasis, …, see `Options`). With `checkpoint_every=K`
            the checkpoint is also written every K steps inside an epoch, with the epoch's running
            statistics, so that a long epoch loses at most K steps; resuming from it skips the
            batches taken.

    Returns:
        (model, history): the trained model and one record per epoch (as in metrics.jsonl),
        with the fractions of samples whose phases settled, hEP's branch check, and the epoch's
        warnings (also issued as `TrainingWarning`s).

    Raises:
        DataError: a training or validation sample is not finite (before any phase runs).
        DivergenceError: a phase diverged or the gradient was not finite; the parameters were
            not updated, and with `out` the last finite ones are in out/last_finite.eqx.
        UnsettledError: with `unsettled="stop"`, a step whose phases did not settle.
        RunFolderError: `out` is in use by another run, unwritable, or its checkpoint is damaged
            or belongs to another run.
    """
    config = replace(config or TrainConfig(), **{k: v for k, v in overrides.items()
                                                  if k in TrainConfig.__dataclass_fields__})
    option_names = set(Options.__dataclass_fields__)
    extra = {k: v for k, v in overrides.items() if k not in TrainConfig.__dataclass_fields__}
    unknown = set(extra) - option_names
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
    config.options = {**config.options, **extra}
    _check_config(config)
    check_data(data, "training")
    if val is not None:
        check_data(val, "validation")
    if out is None:
        return _train(model, data, val, None, resume, progress, max_steps, config)
    with RunFolder(out) as folder:
        return _train(model, data, val, folder, resume, progress, max_steps, config)


class UnsettledError(RuntimeError):
    """With `unsettled="stop"`: a step's phases did not settle; the parameters were not updated."""


def _check_config(config: TrainConfig) -> None:
    if config.unsettled not in UNSETTLED_POLICIES:
        raise ValueError(f"unsettled must be one of {', '.join(UNSETTLED_POLICIES)}, got {config.unsettled!r}")
    if not 0.0 <= config.min_settled <= 1.0:
        raise ValueError(f"min_settled is a fraction of the batch, in [0, 1]; got {config.min_settled}")
    if config.checkpoint_every is not None and config.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive number of steps, got {config.checkpoint_every}")
    if config.batch_size % config.devices:
        raise ValueError(f"batch size {config.batch_size} is not divisible by {config.devices} devices")


def _phase_tolerances(model, config: TrainConfig) -> dict[str, float]:
    opts = Options(**config.options)
    return {"free": (opts.free_solver or model.free_solver).tol, "nudged": _nudged_solver(model, opts).tol}


def _train(model, data, val, folder: RunFolder | None, resume: bool, progress: bool, max_steps: int | None,
           config: TrainConfig):
    steps_per_epoch = data.num_batches(config.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset has {len(data)} examples, fewer than one batch of {config.batch_size}")
    optimizer = make_optimizer(model, config, steps_per_epoch)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    identity = {**model_identity(model), "estimator": config.estimator}
    header = {"config": _jsonable(config), "identity": identity}
    start_epoch = resumed_steps = 0
    partial: dict | None = None
    history: list[dict] = []
    if folder is not None:
        if resume and folder.checkpoint.exists():
            saved = read_header(folder.checkpoint).get("identity")
            difference = identity_difference(saved, identity) if saved is not None else None
            if difference:
                raise RunFolderError(f"{folder.checkpoint}: cannot resume: {difference}")
            model, opt_state, meta = folder.load(model, opt_state)
            start_epoch = int(meta["epochs_done"])
            resumed_steps, partial = int(meta.get("steps_done", 0)), meta.get("partial")
            history = meta.get("history", _older_history(folder, start_epoch))
            folder.write_metrics(history)
        else:
            folder.save(model, opt_state, {"epochs_done": 0, **header, "history": []})

    placement = Placement(config.devices)
    # the step donates its arguments' buffers: train on a copy, never on the caller's arrays
    model = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True) if eqx.is_array(a) else a, model)
    model, opt_state = placement.replicate(model), placement.replicate(opt_state)
    step_fn = make_step(model, config, optimizer, placement)
    evaluator = make_evaluator(model, config)
    base_key = jax.random.PRNGKey(config.seed)
    flatten = all(len(s) == 1 for s in model.program.inputs.values())
    tolerances = _phase_tolerances(model, config)
    in_memory = hasattr(data, "images")  # checked as a whole before training (`check_data`)
    global_step = start_epoch * steps_per_epoch + resumed_steps
    for epoch in range(start_epoch + 1, config.epochs + 1):
        skip = resumed_steps if epoch == start_epoch + 1 else 0
        log = EpochLog(partial["steps"] if skip and partial else None)
        started = time.time() - (partial["seconds"] if skip and partial else 0.0)
        batches: Iterable = data.batches(config.batch_size, seed=config.seed, epoch=epoch)
        if skip:  # the batches this epoch took before its checkpoint
            batches = itertools.islice(batches, skip, None)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, total=steps_per_epoch, initial=skip, desc=f"epoch {epoch}/{config.epochs}",
                           leave=True)
        for batch_index, (x_host, y_host) in enumerate(batches, start=skip):
            if not flatten and x_host.ndim == 2:
                raise ValueError("the model expects image-shaped inputs")
            if not in_memory:
                check_batch(x_host, "training", epoch, batch_index)
            key = jax.random.fold_in(base_key, global_step)
            # every argument is donated: the step returns the parameters to keep
            model, opt_state, info = step_fn(model, opt_state, placement.batch(x_host), placement.batch(y_host), key)
            info = {k: float(v) for k, v in info.items()}
            if not info["healthy"]:  # the step kept the previous parameters
                message = _diagnose_failure(model, jnp.asarray(x_host), jnp.asarray(y_host), config, info, global_step)
                if folder is not None:
                    save_checkpoint(folder.last_finite, model, opt_state,
                                    {"epochs_done": epoch - 1, "step": global_step, "error": message})
                raise DivergenceError(message)
            if not info["settled"] and config.unsettled == "stop":
                raise UnsettledError(f"training step {global_step}: {_settled_text(info, tolerances)} settled, "
                                     f"fewer than min_settled {config.min_settled:g} (unsettled='stop'); "
                                     "parameters were not updated")
            global_step += 1
            log.add(info, settled=bool(info["settled"]), updated=bool(info["updated"]))
            if progress:
                batches.set_postfix_str(_postfix(info), refresh=False)
            in_epoch = global_step - (epoch - 1) * steps_per_epoch
            if folder is not None and config.checkpoint_every and in_epoch % config.checkpoint_every == 0 \
                    and in_epoch < steps_per_epoch:
                folder.save(model, opt_state, {"epochs_done": epoch - 1, "steps_done": in_epoch, **header,
                                               "history": history,
                                               "partial": {"steps": log.steps, "seconds": time.time() - started}})
            if max_steps is not None and global_step >= max_steps:
                break
        if max_steps is not None and global_step >= max_steps and global_step < epoch * steps_per_epoch:
            break  # stopped inside the epoch: nothing of it is recorded (its checkpoints stay, to resume from)
        record = log.record(epoch, config.clip_norm)
        record["train_seconds"] = time.time() - started
        if val is not None:
            result = evaluate(model, val, config, evaluator, placement)
            record["val_error"], record["val_loss"] = result["error"], result["loss"]
            record["val_free_settled"] = result["free_settled"]
        probe = next(iter(data.batches(min(config.symmetry_samples, len(data)), seed=0, epoch=0, shuffle=False)))[0]
        record["symmetry"] = symmetry_at_free_point(model, jnp.asarray(probe), config)
        record["seconds"] = time.time() - started
        lines = epoch_warnings(record, min_settled=config.min_settled, unsettled=config.unsettled, tol=tolerances,
                               branch_tol=config.options.get("branch_tol", Options.branch_tol),
                               num_classes=getattr(data, "num_classes", None),
                               previous=history[-1] if history else None)
        record["warnings"] = lines
        history.append(record)
        if folder is not None:
            folder.save(model, opt_state, {"epochs_done": epoch, **header, "history": history})
        if progress:
            summary = ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                if isinstance(v, float) and k in _EPOCH_LINE)
            print(f"epoch {epoch}: {summary}", flush=True)
        warn(lines)
        if max_steps is not None and global_step >= max_steps:
            break
    return model, history


# what the line printed after each epoch shows (metrics.jsonl has everything)
_EPOCH_LINE = ("train_loss", "train_error", "val_error", "val_loss", "free_residual", "nudged_residual",
               "free_settled", "nudged_settled", "branch_flagged", "symmetry", "seconds")


def _postfix(info: dict) -> str:
    parts = [f"loss={info['loss']:.3f}", f"err={info['error']:.2f}"]
    for phase in ("free", "nudged"):
        if f"{phase}_residual" in info:
            settled = f" {100 * info[f'{phase}_settled']:.0f}%" if f"{phase}_settled" in info else ""
            parts.append(f"{phase}={info[f'{phase}_residual']:.1e}{settled}")
    return ", ".join(parts)


def _settled_text(info: dict, tolerances: dict) -> str:
    return " and ".join(f"{100 * info[f'{p}_settled']:.0f} % of the {p} phases (tol {tolerances[p]:g})"
                        for p in ("free", "nudged") if f"{p}_settled" in info)


def _older_history(folder: RunFolder, epochs_done: int) -> list[dict]:
    """The records of a checkpoint written before records went into checkpoints: metrics.jsonl's."""
    if not folder.metrics.exists():
        return []
    lines = [json.loads(line) for line in folder.metrics.read_text().splitlines() if line.strip()]
    return [h for h in lines if h["epoch"] <= epochs_done]


def _jsonable(config: TrainConfig) -> dict:
    data = asdict(config)
    data["options"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                       for k, v in config.options.items()}
    return data
