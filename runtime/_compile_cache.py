"""Where the `eqn` command keeps XLA's compiled programs between runs.

A training step takes seconds to compile and is the same program on every rerun of the same
command; JAX's persistent compilation cache turns the second run's compile into a file read. The
command turns it on for itself (`run` in `cli.py`); `main(argv)` called from Python leaves the
caller's JAX configuration alone.

`EQN_COMPILE_CACHE` chooses: unset for `~/.cache/eqn/xla` (or `$XDG_CACHE_HOME/eqn/xla`), a folder
for that folder, `off` for no cache. A `JAX_COMPILATION_CACHE_DIR` the user set wins over all three.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import MutableMapping

ENVIRONMENT_VARIABLE = "EQN_COMPILE_CACHE"
DISABLED = frozenset({"off", "0", "no", "false", "none"})
# Programs that compile faster than this are not worth a file each.
MIN_COMPILE_SECONDS = 0.2
# Least recently used programs are evicted past this size.
MAX_BYTES = 2**30


def machine_tag() -> str:
    """The kind of CPU the executables are compiled for: XLA:CPU specialises to the host's
    instruction set, so a cache in a home folder shared by a cluster's nodes keeps one subfolder
    per kind of CPU rather than trading executables between them."""
    features = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                features = line.split(":", 1)[1]
                break
    except OSError:
        pass
    digest = hashlib.sha256(" ".join(sorted(features.split())).encode()).hexdigest()[:12]
    return f"{platform.machine() or 'cpu'}-{digest}"


def cache_folder(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """The folder the command caches compiled programs in, or None when the cache is off."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    setting = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if setting.lower() in DISABLED:
        return None
    if setting:
        root = Path(setting).expanduser()
    else:
        root = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eqn" / "xla"
    return root / machine_tag()


def enable_compile_cache(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Point JAX's persistent compilation cache at `cache_folder()`; before the first compile.
    Returns the folder, or None when the cache is off or its folder cannot be made (said once on
    stderr: a missing cache costs time, not results)."""
    import jax

    folder = cache_folder(environ)
    if folder is None:
        return None
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return folder  # JAX read the user's settings when it was imported
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"eqn: note: compiling without a cache: cannot create {folder} ({exc.strerror}); "
              f"set {ENVIRONMENT_VARIABLE} to a writable folder or to 'off'", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in environ:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
