"""What training checks beside the gradient: data that is finite before any phase runs on it, an
epoch's statistics, and the warnings made from them (phases that did not settle, hEP points off
one holomorphic branch, divergence that stays under the residual limit).
"""

from __future__ import annotations

import warnings

import numpy as np


class DataError(ValueError):
    """A dataset holds a value no phase can run on; the message names the split and the sample."""


class TrainingWarning(UserWarning):
    """An epoch's results are doubtful: unsettled phases, hEP off its branch, or divergence."""


UNSETTLED_POLICIES = ("warn", "skip", "stop")


def check_data(dataset, split: str) -> None:
    """Refuse a dataset with a non-finite input or a label outside its classes.

    Args:
        dataset: an `ArrayDataset` (any other dataset's batches are checked as they come,
            `check_batch`).
        split: how the message names it ("training", "validation").

    Raises:
        DataError: one line naming the split, the sample index (in the dataset's own order) and
            the value.
    """
    if not hasattr(dataset, "images"):
        return
    images = np.asarray(dataset.images).reshape(len(dataset), -1)
    if np.issubdtype(images.dtype, np.inexact):
        finite = np.isfinite(images)
        if not finite.all():
            sample = int(np.argmin(finite.all(axis=1)))
            position = int(np.argmin(finite[sample]))
            raise DataError(f"{split} data ({dataset.name}): sample {sample} has a non-finite input "
                            f"({images[sample, position]} at position {position}); remove or repair it")
    labels = np.asarray(dataset.labels)
    outside = (labels < 0) | (labels >= dataset.num_classes)
    if outside.any():
        sample = int(np.argmax(outside))
        raise DataError(f"{split} data ({dataset.name}): sample {sample} has label {labels[sample]}, outside "
                        f"0…{dataset.num_classes - 1}")


def check_batch(x, split: str, epoch: int, batch: int) -> None:
    """Refuse a batch with a non-finite input, naming the split, the epoch, the batch and the
    sample in it (for datasets that are not in memory as a whole).

    Raises:
        DataError: one line.
    """
    flat = np.asarray(x).reshape(len(x), -1)
    if np.issubdtype(flat.dtype, np.inexact) and not np.isfinite(flat).all():
        sample = int(np.argmin(np.isfinite(flat).all(axis=1)))
        raise DataError(f"{split} data: sample {sample} of batch {batch} in epoch {epoch} has a non-finite input")


# per step: the info entries an epoch keeps, and how its record summarises each
_SUMMARIES = {
    "loss": ("train_loss", "mean"), "error": ("train_error", "mean"),
    "free_residual": ("free_residual", "max"), "nudged_residual": ("nudged_residual", "max"),
    "free_settled": ("free_settled", "mean"), "nudged_settled": ("nudged_settled", "mean"),
    "field_evaluations": ("field_evaluations", "mean"), "homeostatic_loss": ("homeostatic_loss", "mean"),
    "branch_bias": ("branch_bias", "max"), "branch_flagged": ("branch_flagged", "mean"),
}


class EpochLog:
    """An epoch's per-step statistics, the record made from them, and its warnings.

    Args:
        steps: per-step lists to continue (from a checkpoint inside the epoch), or None.
    """

    def __init__(self, steps: dict[str, list] | None = None):
        self.steps: dict[str, list] = {k: list(v) for k, v in (steps or {}).items()}

    def add(self, info: dict[str, float], *, settled: bool, updated: bool) -> None:
        """Keep one step's info; `settled`: its phases met the policy; `updated`: it was applied."""
        for key in (*_SUMMARIES, "gradient_norm"):
            if key in info and np.isfinite(info[key]):
                self.steps.setdefault(key, []).append(float(info[key]))
        self.steps.setdefault("unsettled", []).append(not settled)
        self.steps.setdefault("skipped", []).append(not updated)

    def record(self, epoch: int, clip_norm: float | None = None) -> dict:
        """The epoch's metrics record (the statistics over its steps)."""
        record: dict = {"epoch": epoch}
        for key, (name, how) in _SUMMARIES.items():
            values = self.steps.get(key)
            if values:
                record[name] = float(np.max(values) if how == "max" else np.mean(values))
        for key in ("free_residual", "nudged_residual"):
            if self.steps.get(key):
                record[f"{key}_median"] = float(np.median(self.steps[key]))
        norms = self.steps.get("gradient_norm", [])
        if norms:
            record["gradient_norm_median"], record["gradient_norm_max"] = float(np.median(norms)), float(np.max(norms))
            if clip_norm:
                record["clipped_fraction"] = float(np.mean(np.asarray(norms) > clip_norm))
        record["steps"] = len(self.steps.get("skipped", []))
        record["unsettled_steps"] = int(np.sum(self.steps.get("unsettled", [])))
        record["skipped_steps"] = int(np.sum(self.steps.get("skipped", [])))
        record.update(self._trend())
        return record

    def _trend(self) -> dict:
        """The first and second halves' mean loss and error (divergence shows in these)."""
        losses, errors = self.steps.get("loss", []), self.steps.get("error", [])
        if len(losses) < 2:
            return {}
        half = len(losses) // 2
        return {"loss_first_half": float(np.mean(losses[:half])), "loss_second_half": float(np.mean(losses[half:])),
                "error_second_half": float(np.mean(errors[half:]))}


def epoch_warnings(record: dict, *, min_settled: float, unsettled: str, tol: dict[str, float],
                   branch_tol: float, num_classes: int | None, previous: dict | None) -> list[str]:
    """One line per doubt about the epoch `record`, and `record["diverging"]` set.

    Args:
        record: the epoch's record (`EpochLog.record`, with val_error where there is one).
        min_settled: the fraction of samples whose phases must have settled in a step.
        unsettled: the policy applied to steps below it ("warn", "skip" or "stop").
        tol: each phase's tolerance, for the message ("free", "nudged").
        branch_tol: hEP's predicted-bias limit (`Options.branch_tol`).
        num_classes: the classes of the task (chance error 1 − 1/K), or None.
        previous: the previous epoch's record, or None.
    """
    lines = []
    epoch, steps = record["epoch"], max(record.get("steps", 0), 1)
    if record.get("unsettled_steps"):
        phases = ", ".join(f"{phase} {100 * record[f'{phase}_settled']:.1f} % (tol {tol[phase]:g})"
                           for phase in ("free", "nudged") if f"{phase}_settled" in record)
        done = {"warn": "their updates were applied", "skip": "they were skipped, the parameters unchanged"}
        lines.append(f"epoch {epoch}: {record['unsettled_steps']} of {steps} steps had fewer than "
                     f"{100 * min_settled:g} % of their samples settled (samples settled: {phases}); "
                     f"{done.get(unsettled, unsettled)}")
    if record.get("branch_flagged", 0.0) > 1.0 - min_settled:
        lines.append(f"epoch {epoch}: for {100 * record['branch_flagged']:.1f} % of samples the N nudged points "
                     f"were not on one holomorphic branch (predicted bias up to {record['branch_bias']:.2g} > "
                     f"{branch_tol:g}); the estimate may be far from the gradient: lower |β| or raise N")
    record["diverging"] = False
    if num_classes and "error_second_half" in record:
        chance = 1.0 - 1.0 / num_classes
        at_chance = record["error_second_half"] >= chance - 0.02 and record.get("val_error", chance) >= chance - 0.02
        start = previous["train_loss"] if previous else record["loss_first_half"]
        rising = record["loss_second_half"] > 1.05 * start
        if at_chance:
            record["diverging"] = True
            trend = (f"the loss rose from {start:.4g} to {record['loss_second_half']:.4g}" if rising
                     else f"the loss is {record['loss_second_half']:.4g}")
            lines.append(f"epoch {epoch}: training is not learning below the residual limit: {trend} and the "
                         f"error is at chance ({100 * record['error_second_half']:.1f} %, chance "
                         f"{100 * chance:.1f} %); lower the learning rate or β")
    return lines


def warn(lines: list[str]) -> None:
    """Issue each line as a `TrainingWarning`."""
    for line in lines:
        warnings.warn(line, TrainingWarning, stacklevel=4)
