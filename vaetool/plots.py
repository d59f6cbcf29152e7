"""Plots made with matplotlib (Agg backend: no display needed), saved atomically as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vaetool.io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(metrics: list[dict[str, Any]], path: str | Path) -> None:
    """ELBO per epoch (train and test) beside its two terms, reconstruction and KL."""
    plt = _pyplot()
    epochs = [m["epoch"] for m in metrics]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for split, style in (("train", "-"), ("test", "--")):
        left.plot(epochs, [m[f"{split}_elbo"] for m in metrics], style, marker="o", label=split)
        middle.plot(epochs, [m[f"{split}_rec"] for m in metrics], style, marker="o", label=split)
        right.plot(epochs, [m[f"{split}_kl"] for m in metrics], style, marker="o", label=split)
    for ax, title in ((left, "ELBO (nats, higher is better)"), (middle, "log p(x|z) (nats)"),
                      (right, "KL(q(z|x) ‖ p(z)) (nats)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
