"""Do the phases settle? The README's main command, one epoch, with three choices of solvers.

    python bench/settling.py [--train-size K]

The command (reciprocal MLP, hEP N = 2, |β| = 0.5, `--angle 0`, real Fashion-MNIST) runs with
the default solvers (Anderson on sweeps for the free phase, the papers' 20 plain steps for the
nudged ones), with `--solver fixed` (the papers' setting in every phase, the default before) and
with `--solver anderson` (Anderson on sweeps in every phase, the nudged ones to tol 1e-4 in 30
steps). Each run's epoch record gives the share of samples whose phases settled, the validation
error and the training time of the epoch (its compilation included). The runs are one after
another on an otherwise idle machine. Writes the "settling" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = ["eqn", "train", "models/reciprocal_mlp.eqn", "--dataset", "fashion_mnist", "--estimator", "hep",
          "--n", "2", "--beta", "0.5", "--epochs", "1", "--angle", "0", "--no-progress"]
CHOICES = {"default": [], "--solver fixed": ["--solver", "fixed"], "--solver anderson": ["--solver", "anderson"]}
KEYS = ("free_settled", "nudged_settled", "val_error", "train_seconds", "field_evaluations", "branch_flagged",
        "free_residual_median", "nudged_residual_median")


def run(flags: list[str], train_size: int | None, folder: Path) -> dict:
    size = ["--train-size", str(train_size)] if train_size else []
    subprocess.run(README + size + flags + ["--out", str(folder)], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    return {k: record[k] for k in KEYS if k in record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=None, help="the first K training images (default: all)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CHOICES.items():
            results[name] = run(flags, args.train_size, Path(tmp) / name.replace(" ", "_").strip("-"))
            print(name, results[name], flush=True)
    rows = ["| solvers | free settled | nudged settled | branch flagged | validation error | epoch (s) | "
            "field evaluations per step |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| {name} | {100 * r['free_settled']:.1f} % | {100 * r['nudged_settled']:.1f} % | "
                    f"{100 * r['branch_flagged']:.1f} % | {100 * r['val_error']:.2f} % | {r['train_seconds']:.0f} | "
                    f"{r['field_evaluations']:.0f} |")
    size = f"the first {args.train_size} training images" if args.train_size else "all 60,000 training images"
    body = (f"The README's main command on {size}, one epoch, validation on the 10,000 test images; "
            "settled: ‖F(u)‖ at or below the phase's tolerance (free 1e-5; nudged 1e-5 plain, 1e-4 Anderson).\n\n"
            + "\n".join(rows))
    command = "python bench/settling.py" + (f" --train-size {args.train_size}" if args.train_size else "")
    write_section("settling" if not args.train_size else f"settling ({args.train_size})", command, body,
                  {"results": results})
    print(body)


if __name__ == "__main__":
    main()
