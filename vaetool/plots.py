"""Plots made with matplotlib (Agg backend: no display needed), saved atomically as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vaetool import heavy_imports
from vaetool.io import atomic_write


def _pyplot():
    matplotlib = heavy_imports.load("matplotlib")
    matplotlib.use("Agg")
    return heavy_imports.load("matplotlib.pyplot")


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


def latent_scatter(z, labels, path: str | Path, method: str = "auto", class_names=None, seed: int = 0,
                   names: list[str] | None = None) -> str:
    """The latent space in 2-D, one point per image, coloured by label; returns the projection used.

    A 2-D latent is drawn as it is. Otherwise ``pca`` projects on the two principal axes (``auto``
    does this), and ``tsne`` runs scikit-learn's t-SNE (van der Maaten & Hinton 2008), which keeps
    neighbourhoods rather than distances. ``names`` writes each point's name beside it.
    """
    return latent_scatters([("", z, labels, names)], path, method=method, class_names=class_names, seed=seed)[0]


def latent_scatters(panels: list[tuple[str, Any, Any, list[str] | None]], path: str | Path, method: str = "auto",
                    class_names=None, seed: int = 0) -> list[str]:
    """Several latent spaces side by side on shared axes, one panel per ``(title, z, labels, names)``
    (several models on the same images, say); returns the projection used in each."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 if len(panels) == 1 else 4.6 * len(panels), 5.6 if len(panels) == 1 else 4.8),
                             constrained_layout=True, sharex=True, sharey=True, squeeze=False)
    used_all = []
    for ax, (title, z, labels, names) in zip(axes[0], panels):
        points, used, axis_names = projection(z, method, seed)
        used_all.append(used)
        if labels is not None and (np.asarray(labels) >= 0).any():
            labels = np.asarray(labels)
            for k in np.unique(labels):
                name = class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)
                mask = labels == k
                ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.7, label=name)
            ax.legend(markerscale=3, fontsize=8, loc="best", ncol=2 if len(np.unique(labels)) > 5 else 1)
        else:
            ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
        for name, (x, y) in zip(names or [], points):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
        ax.set_title(f"{title + ': ' if title else ''}latent space ({used}), {len(z)} images", fontsize=10)
        ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return used_all


def projection(z, method: str = "auto", seed: int = 0):
    """Latents ``(N, L)`` in 2-D: ``(points (N, 2), the projection's name, the two axis titles)``.

    A 2-D latent is kept as it is. Otherwise ``pca`` projects on the two principal axes (``auto``
    does this), and ``tsne`` runs scikit-learn's t-SNE (van der Maaten & Hinton 2008), which keeps
    neighbourhoods rather than distances.
    """
    import numpy as np

    z = np.asarray(z, dtype=np.float64)
    if z.shape[1] == 2 and method in ("auto", "pca"):
        return z, "latent", ("z₀", "z₁")
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), "latent", ("z₀", "")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(z) - 1) / 3))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
        return points, "t-SNE", ("t-SNE 1", "t-SNE 2")
    centred = z - z.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = (s[:2] ** 2 / max((s ** 2).sum(), 1e-12) * 100).round(1)
    return centred @ vt[:2].T, "PCA", (f"PC 1 ({share[0]}% of variance)", f"PC 2 ({share[1]}%)")


def rate_distortion(points: list[tuple[str, float, float]], path: str | Path,
                    curves: list[list[str]] | None = None) -> None:
    """KL (rate) against −log p(x|z) (distortion), one labelled point per model (Alemi et al. 2018).

    ``curves`` lists names to join in order (a β sweep: the trade-off curve); the dotted diagonals
    are constant ELBO.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), constrained_layout=True)
    where = {name: (rate, distortion) for name, rate, distortion in points}
    for names in curves or []:
        ax.plot([where[n][0] for n in names], [where[n][1] for n in names], "-", color="grey", linewidth=1, zorder=0)
    for name, rate, distortion in points:
        ax.scatter([rate], [distortion], s=30)
        ax.annotate(name, (rate, distortion), textcoords="offset points", xytext=(5, 4), fontsize=8)
    rates = [p[1] for p in points]
    distortions = [p[2] for p in points]
    if len(points) > 1:  # iso-ELBO lines: rate + distortion = −ELBO
        lo, hi = min(r + d for _, r, d in points), max(r + d for _, r, d in points)
        span = max(rates) - min(rates) or 1.0
        xs = [min(rates) - 0.1 * span, max(rates) + 0.1 * span]
        for total in {lo, hi}:
            ax.plot(xs, [total - x for x in xs], ":", color="grey", linewidth=0.8)
        ax.set_ylim(min(distortions) - 0.1 * (max(distortions) - min(distortions) or 1),
                    max(distortions) + 0.1 * (max(distortions) - min(distortions) or 1))
    ax.set_xlabel("rate: KL(q(z|x) ‖ p(z)) (nats)")
    ax.set_ylabel("distortion: −log p(x|z) (nats)")
    ax.set_title("rate–distortion (dotted: constant ELBO)", fontsize=10)
    ax.grid(alpha=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def curves_overlay(histories: dict[str, list[dict[str, Any]]], path: str | Path) -> None:
    """Test ELBO per epoch of several runs on one plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for name, history in histories.items():
        if history:
            ax.plot([m["epoch"] for m in history], [m["test_elbo"] for m in history], marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test ELBO (nats)")
    ax.set_title("training curves", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
