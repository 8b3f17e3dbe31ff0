"""A training run's folder: one run at a time, records and checkpoints that cannot be lost apart.

    out/.lock            held while a run writes here (a second run refuses at once)
    out/checkpoint.eqx   the last state to resume from: a JSON header line (epochs and steps done,
                         the configuration, the run's identity, every epoch's record so far), then
                         the Equinox-serialised (model, optimiser state)
    out/metrics.jsonl    one JSON record per epoch, rewritten from the checkpoint's records
    out/last_finite.eqx  the parameters before a step that diverged

The checkpoint is the record of truth: an epoch's metrics record goes into its header, and
metrics.jsonl is rewritten from it afterwards, so an exit between the two loses neither (a
resume rewrites metrics.jsonl from the checkpoint). Every file is written to a temporary file of
its own (unique name, same folder) and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import filelock


class RunFolderError(RuntimeError):
    """The run folder cannot be used: in use by another run, unwritable, or its checkpoint is
    damaged or belongs to another run. The message is one line naming the file."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic_write(path: Path, write) -> None:
    """Call `write(file)` on a fresh temporary file beside `path`, sync it, rename it to `path`."""
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o666 & ~_UMASK)  # mkstemp makes it private; a run folder is shared as usual
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, model, opt_state, meta: dict) -> None:
    """Write (meta, model, optimiser state) to `path` atomically.

    Args:
        path: the checkpoint file.
        model: the model (any Equinox pytree).
        opt_state: the optimiser state.
        meta: JSON-serialisable header (epochs done, configuration, records, …).
    """
    def write(f):
        f.write((json.dumps(meta) + "\n").encode())
        eqx.tree_serialise_leaves(f, (model, opt_state))

    _atomic_write(Path(path), write)


def read_header(path: Path) -> dict:
    """The JSON header of a checkpoint, without reading its arrays.

    Raises:
        RunFolderError: the file is missing or its header is not a checkpoint's (one line).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _header(f)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: damaged checkpoint, cannot resume ({_reason(exc)})") from None


def _header(f) -> dict:
    meta = json.loads(f.readline())
    if not isinstance(meta, dict) or "epochs_done" not in meta:
        raise ValueError("its header is not a checkpoint header")
    return meta


def _reason(exc: Exception) -> str:
    known = {"UnicodeDecodeError": "its header is not text", "JSONDecodeError": "its header is not JSON"}
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _short(known.get(type(exc).__name__, text))


def load_checkpoint(path: Path, model, opt_state):
    """(model, optimiser state, meta) from a checkpoint written by `save_checkpoint`.

    Args:
        path: the checkpoint file.
        model, opt_state: templates with the structure, shapes and dtypes to read into (an
            `opt_state` of None reads the model alone).

    Raises:
        RunFolderError: the file is missing, not a checkpoint, truncated, or holds arrays of other
            shapes than the templates (one line naming the file).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            meta = _header(f)
            model, opt_state = eqx.tree_deserialise_leaves(f, (model, opt_state))
            if opt_state is not None and f.read(1):
                raise ValueError("it has bytes after the last array")
    except (OSError, ValueError, TypeError, EOFError, RuntimeError) as exc:
        raise RunFolderError(f"{path}: damaged checkpoint, cannot resume ({_reason(exc)})") from None
    return model, opt_state, meta


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def model_identity(model) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint: the model's name, its
    constants, its parameters' shapes and a hash of its derived equations (comments and layout
    of the source do not change it)."""
    from ..compiler import render

    program = model.program
    equations = "\n".join(f"{s}: {render(program.field[s])}" for s in sorted(program.field))
    return {"name": program.name,
            "consts": {k: program.consts[k] for k in sorted(program.consts)},
            "params": {k: list(v.shape) for k, v in program.params.items()},
            "equations_sha256": hashlib.sha256(equations.encode()).hexdigest()}


def identity_difference(saved: dict, current: dict) -> str | None:
    """A phrase naming the first difference between two run identities, or None."""
    for key, what in (("name", "model"), ("estimator", "estimator")):
        if saved.get(key) != current.get(key):
            return f"the {what} is {current.get(key)!r} but the checkpoint's is {saved.get(key)!r}"
    old, new = saved.get("consts", {}), current.get("consts", {})
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        name = changed[0]
        shown = lambda consts: f"{consts[name]:g}" if name in consts else "absent"  # noqa: E731
        return f"const {name} is {shown(new)} but the checkpoint's is {shown(old)}"
    if saved.get("params") != current.get("params"):
        return "the parameters' shapes differ from the checkpoint's"
    if saved.get("equations_sha256") != current.get("equations_sha256"):
        return "the model's equations differ from the checkpoint's"
    return None


class RunFolder:
    """The folder of one training run, held under a lock while the run writes to it.

        with RunFolder("runs/x") as folder:
            folder.save(model, opt_state, meta)

    Args:
        path: the folder (created if needed).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint.eqx"
        self.metrics = self.path / "metrics.jsonl"
        self.last_finite = self.path / "last_finite.eqx"
        self._lock: filelock.BaseFileLock | None = None

    def __enter__(self) -> "RunFolder":
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: the run folder is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # one lock object per folder entry: filelock shares (and re-enters) a lock taken twice
            # in one thread on the same path, which would let a second run in
            self._lock = filelock.FileLock(self.path / ".lock", timeout=0, is_singleton=False, thread_local=False)
            self._lock.acquire()
        except filelock.Timeout:
            raise RunFolderError(f"{self.path}: in use by another run (its lock {self.path / '.lock'} is held); "
                                 "wait for it to end or choose another --out") from None
        except OSError as exc:
            raise RunFolderError(f"{self.path}: cannot write the run folder ({exc.strerror})") from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def save(self, model, opt_state, meta: dict) -> None:
        """Write the checkpoint, then metrics.jsonl from the records in `meta["history"]`."""
        save_checkpoint(self.checkpoint, model, opt_state, meta)
        self.write_metrics(meta.get("history", []))

    def load(self, model, opt_state):
        """(model, optimiser state, meta) from the checkpoint; see `load_checkpoint`."""
        if not self.checkpoint.is_file():
            raise RunFolderError(f"{self.checkpoint}: no checkpoint to resume from")
        return load_checkpoint(self.checkpoint, model, opt_state)

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.jsonl atomically with one line per record."""
        text = "".join(json.dumps(record) + "\n" for record in history).encode()
        _atomic_write(self.metrics, lambda f: f.write(text))
