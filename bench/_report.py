"""Shared by the benchmarks: machine description and writing a section of bench/RESULTS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import jax

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, JAX {jax.__version__} on {jax.default_backend()}, "
            f"Python {platform.python_version()}")


def commit() -> str:
    """The commit the benchmark ran (with '+changes' when the tree differs from it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BENCH,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, command: str, body: str, data: dict) -> None:
    """Replace (or append) the section `name` of RESULTS.md and write results/NAME.json."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- begin {name} -->\n## {name}\n\n`{command}` — {stamp}, commit {commit()}, {machine()}\n\n"
               f"{body.strip()}\n<!-- end {name} -->")
    fresh = "# Benchmark results\n\nProduced by the commands in each section; see bench/README.md.\n"
    text = RESULTS.read_text() if RESULTS.exists() else fresh
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / f"{name}.json").write_text(json.dumps({"command": command, "date": stamp, "commit": commit(),
                                                                "machine": machine(), **data}, indent=2))
