"""`eqn plot DIR`: training curves from metrics.jsonl as PNG."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(directory: Path) -> list[dict]:
    path = Path(directory) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; train with --out {directory} first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(directory: str | Path, output: str | Path | None = None) -> Path:
    """Errors, loss, Jacobian symmetry and homeostatic loss against epochs, in one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(Path(directory))
    epochs = [r["epoch"] for r in records]
    panels = [("error (%)", [("train_error", "train"), ("val_error", "validation")], 100.0),
              ("loss", [("train_loss", "train"), ("val_loss", "validation")], 1.0),
              ("Jacobian symmetry ‖S‖/(‖S‖+‖A‖)", [("symmetry", "symmetry")], 1.0),
              ("homeostatic loss", [("homeostatic_loss", "λ-free value")], 1.0)]
    panels = [p for p in panels if any(any(r.get(k) is not None for r in records) for k, _ in p[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, series, scale) in zip(axes[0], panels):
        for key, label in series:
            values = [(e, r[key] * scale) for e, r in zip(epochs, records) if r.get(key) is not None]
            if values:
                ax.plot(*zip(*values), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    output = Path(output) if output else Path(directory) / "curves.png"
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
