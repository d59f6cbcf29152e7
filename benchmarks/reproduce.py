#!/usr/bin/env python3
"""Rows of published log-likelihood tables, each one command with a time budget: docs/reproductions.md.

Each row trains the paper's model with ``vaetool train`` in chunks of epochs until its budget of
wall time is spent (``--resume`` between chunks, so a budget can be extended later with the same
command and ``--continue``), then estimates log p(x) on the whole test set with K importance
samples on one seeded binarization of it (what ``vaetool compare`` does), and records the learning
curve — test ELBO against epochs and wall time — beside the published number.

    python benchmarks/reproduce.py --data ../shared/data --row burda-vae-1 --minutes 20
    python benchmarks/reproduce.py --data ../shared/data --row burda-vae-1 --minutes 20 --continue
    python benchmarks/reproduce.py --list

Results accumulate in docs/reproductions/results.json (one entry per row, the latest run) and
docs/reproductions.md is rewritten from all of them, with a plot of every learning curve.
A row whose plugin is not installed is listed with the reason.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "reproductions" / "results.json"
DOC = ROOT / "docs" / "reproductions.md"
CURVES = ROOT / "docs" / "reproductions" / "curves.png"

# Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016, Table 1: MNIST
# (dynamically binarized, 60,000 training images), one stochastic layer: 784-200-200-50 tanh MLPs,
# NLL with K = 5000. Their training: Adam, batch 20, 3^8 passes in stages with a falling learning
# rate, about 3,280 epochs (``--lr-schedule burda``: pass i of 3^(i-1) epochs at 0.001·10^(-(i-1)/7)). Rows
# train with each paper's batch size (``batch``) and learning-rate schedule (``schedule``) unless
# --batch-size or --lr-schedule say otherwise; a budget of minutes walks the schedule's first passes.
# Their nets start as their code starts them: Glorot-uniform weights, zero biases, the decoder's output bias at
# the logit of the mean training image (init=glorot, output_bias=data-mean).
_BURDA_INIT = ["--arch-opt", "init=glorot", "--arch-opt", "output_bias=data-mean"]
_BURDA_1 = ["--data", "mnist", "--arch", "mlp", "--hidden", "200,200", "--arch-opt", "activation=tanh", *_BURDA_INIT,
            "--latent-dim", "50", "--likelihood", "bernoulli", "--binarize", "dynamic"]
# The same table, two stochastic layers, as the authors' code builds them (yburda/iwae, experiments.py):
# x → 200-200 → z1 (100-D) → 100-100 → z2 (50-D), tanh, each layer a diagonal Gaussian, and the generative
# net mirrored (z2 → 100-100 → z1 → 200-200 → x); the mlp architecture is the x ↔ z1 part and the
# hierarchical latent the z1 ↔ z2 part. Same protocol and training.
_BURDA_2 = ["--data", "mnist", "--arch", "mlp", "--hidden", "200,200", "--arch-opt", "activation=tanh", *_BURDA_INIT,
            "--latent-dim", "100", "--latent", "hierarchical", "--latent-opt", "dims=50",
            "--latent-opt", "hidden=100,100", "--latent-opt", "activation=tanh", "--latent-opt", "init=glorot",
            "--likelihood", "bernoulli", "--binarize", "dynamic"]
# Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018, Table 2: dynamic MNIST, one stochastic layer,
# 40-D latent, two hidden layers of 300 (theirs are gated), K = 500 pseudo-inputs, KL warm-up over
# 100 epochs; NLL with K = 5000.
# Tipping & Bishop, "Probabilistic principal component analysis", JRSS B 1999: the linear VAE with a
# Gaussian likelihood (identity link, one learned σ) is pPCA's model family, whose maximum-likelihood
# fit is closed-form. Its "published" number is that optimum's test log-density, computed here on the
# same data (grey levels, a continuous density, not comparable with the binarized rows).
_PPCA = ["--data", "mnist", "--arch", "linear", "--likelihood", "gaussian", "--likelihood-opt", "link=identity",
         "--latent-dim", "16"]
_TOMCZAK = ["--data", "mnist", "--arch", "mlp", "--hidden", "300,300", "--latent-dim", "40",
            "--likelihood", "bernoulli", "--binarize", "dynamic"]

_BURDA = dict(batch=20, schedule="burda")
ROWS = {
    "burda-vae-1": dict(**_BURDA, paper="Burda et al. 2016, Table 1",
                        row="MNIST, 1 stochastic layer, VAE, k = 1", published=-86.76, train=_BURDA_1),
    "burda-iwae5-1": dict(**_BURDA, paper="Burda et al. 2016, Table 1",
                          row="MNIST, 1 stochastic layer, IWAE, k = 5", published=-85.54,
                          train=_BURDA_1 + ["--objective", "iwae", "--objective-opt", "k=5"]),
    "burda-iwae50-1": dict(**_BURDA, paper="Burda et al. 2016, Table 1",
                           row="MNIST, 1 stochastic layer, IWAE, k = 50", published=-84.78,
                           train=_BURDA_1 + ["--objective", "iwae", "--objective-opt", "k=50"]),
    "burda-vae-2": dict(**_BURDA, paper="Burda et al. 2016, Table 1",
                        row="MNIST, 2 stochastic layers, VAE, k = 1", published=-85.33, train=_BURDA_2),
    "burda-iwae50-2": dict(**_BURDA, paper="Burda et al. 2016, Table 1",
                           row="MNIST, 2 stochastic layers, IWAE, k = 50", published=-82.90,
                           train=_BURDA_2 + ["--objective", "iwae", "--objective-opt", "k=50"]),
    "tomczak-standard": dict(paper="Tomczak & Welling 2018, Table 2", row="dynamic MNIST, VAE, standard prior",
                             published=-88.56, batch=100, train=_TOMCZAK),
    "tomczak-vamp": dict(paper="Tomczak & Welling 2018, Table 2", row="dynamic MNIST, VAE, VampPrior (500)",
                         published=-85.57, batch=100,
                         train=_TOMCZAK + ["--prior", "vamp", "--prior-opt", "components=500"],
                         needs=("prior", "vamp")),
    "ppca-linear-16": dict(paper="Tipping & Bishop 1999 (exact pPCA)", batch=128,
                           row="grey-level MNIST, linear VAE, Gaussian likelihood, 16-D latent",
                           published=None, reference="ppca", train=_PPCA),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", action="append", default=[], help="a row id (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--data", type=Path, default=None, help="data root holding MNIST/raw (default: $VAETOOL_DATA)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "reproduce", help="where the runs go")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall time per row")
    parser.add_argument("--chunk", type=int, default=None,
                        help="epochs per training call (default: as many as the budget left holds at the pace so far, "
                             "at most 50)")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="continue the row's earlier run instead of starting afresh")
    parser.add_argument("--iw-samples", type=int, default=5000, help="K of the final log p(x) estimate")
    parser.add_argument("--test-images", type=int, default=None, help="test images for log p(x) (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for training and evaluation")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch (default: the paper's, 20 for Burda et al., 100 for Tomczak & Welling)")
    parser.add_argument("--lr-schedule", default=None,
                        help="learning-rate schedule (default: the paper's, burda for Burda et al., else constant)")
    parser.add_argument("--no-write", action="store_true", help="print the results without touching docs/")
    args = parser.parse_args()

    if args.list:
        for key, row in ROWS.items():
            published = "computed exactly" if row.get("reference") else row["published"]
            print(f"{key:18} {row['paper']}: {row['row']} — published {published}"
                  + (f"  [not runnable: {row['missing']}]" if "missing" in row else ""))
        return
    unknown = [r for r in args.row if r not in ROWS]
    if unknown or not args.row:
        sys.exit(f"give --row with one of: {', '.join(ROWS)}" + (f" (not {', '.join(unknown)})" if unknown else ""))
    data = args.data or (Path(os.environ["VAETOOL_DATA"]) if os.environ.get("VAETOOL_DATA") else None)
    if data is None:
        sys.exit("give --data (a folder holding MNIST/raw) or set VAETOOL_DATA")

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for key in args.row:
        row = ROWS[key]
        if "missing" in row:
            print(f"{key}: not runnable — {row['missing']}")
            results[key] = {"missing": row["missing"]}
            continue
        results[key] = run_row(key, row, args, data)
        print(json.dumps({key: results[key]}))
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_write:
        write_doc(results)


def vaetool(*argv: str, threads: int | None) -> None:
    extra = ["--threads", str(threads)] if threads and argv[0] == "train" else []
    subprocess.run([sys.executable, "-m", "vaetool", *argv, *extra], check=True, stdout=subprocess.DEVNULL)


def run_row(key: str, row: dict, args, data: Path) -> dict:
    from vaetool import registry

    if "needs" in row and row["needs"][1] not in registry.names(row["needs"][0]):
        return {"missing": f"the {row['needs'][0]} {row['needs'][1]!r} is not installed"}
    run = args.runs / key
    common = ["--data-dir", str(data), "--runs-dir", str(args.runs), "--name", key, "--device", "cpu"]
    history = run / "metrics.jsonl"
    batch = args.batch_size or row["batch"]
    schedule = args.lr_schedule or row.get("schedule", "constant")
    if not args.resume:
        if run.exists():
            import shutil

            shutil.rmtree(run)
        first = ["train", *row["train"], "--batch-size", str(batch), "--lr-schedule", schedule, *common,
                 "--epochs", str(args.chunk or 1)]
        started = time.monotonic()
        vaetool(*first, threads=args.threads)
    else:
        started = time.monotonic()
    budget = args.minutes * 60
    while (left := budget - (time.monotonic() - started)) > 0:
        lines = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        vaetool("train", "--resume", "--name", key, "--runs-dir", str(args.runs), "--data-dir", str(data),
                "--device", "cpu", "--epochs", str(len(lines) + (args.chunk or chunk_for(left, lines))),
                threads=args.threads)
    curve = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    trained = tomllib.loads((run / "config.toml").read_text())["train"]  # as trained, --continue too
    batch, schedule = trained["batch_size"], trained.get("lr_schedule", "constant")
    evaluated = time.monotonic()
    log_px = estimate(run, data, args.iw_samples, args.test_images, args.threads)
    elbo = curve[-1]["test_elbo"]
    exact = None
    if row.get("reference") == "ppca":
        row = dict(row, published=ppca_optimum(data, row["train"], args.test_images))
        exact = linear_gaussian_log_density(run, data, args.test_images)
    train_seconds = sum(m["seconds"] for m in curve)
    return {
        "paper": row["paper"], "row": row["row"], "published": row["published"], "ours": log_px,
        "test_elbo": elbo, "k": args.iw_samples, "test_images": args.test_images or 10000,
        "epochs": len(curve), "train_minutes": train_seconds / 60, "iw_minutes": (time.monotonic() - evaluated) / 60,
        "curve": [[m["epoch"], m["test_elbo"], m["seconds"]] for m in curve],
        **({"exact": exact} if exact is not None else {}),
        # An exact optimum (pPCA) is approached, not extrapolated to.
        "extrapolation": None if row.get("reference") else extrapolate(curve, row["published"] - (log_px - elbo)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {torch_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/reproduce.py --data DATA --row {key} --minutes {args.minutes:g}"
                   + (f" --threads {args.threads}" if args.threads else "")
                   + (f" --batch-size {args.batch_size}" if args.batch_size else "")
                   + (f" --lr-schedule {args.lr_schedule}" if args.lr_schedule else "")
                   + (f" --iw-samples {args.iw_samples}" if args.iw_samples != 5000 else "")
                   + (f" --test-images {args.test_images}" if args.test_images else ""),
        "train_command": "vaetool train " + " ".join(row["train"]) + f" --batch-size {batch} --lr-schedule {schedule}",
    }


def chunk_for(seconds_left: float, lines: list[dict]) -> int:
    """Epochs for the next training call: as many as ``seconds_left`` holds at the last epochs' pace, at most
    50, at least 1. Each call restarts vaetool (loading the data and the checkpoint, a few seconds), so
    fewer, longer calls leave more of the budget to training."""
    recent = [m["seconds"] for m in lines[-5:]]
    if not recent:
        return 1
    return max(1, min(50, int(seconds_left / (sum(recent) / len(recent)))))


def estimate(run: Path, data: Path, k: int, limit: int | None, threads: int | None) -> float:
    """Mean IW log p(x) over the test set, on one seeded draw of its binarization (as compare does)."""
    import torch

    import vaetool
    from vaetool import metrics, registry

    if threads:
        torch.set_num_threads(threads)
    model = vaetool.load(run)
    config = model.config
    dataset, _ = registry.build("dataset", config["dataset"], config["dataset_options"])
    images = dataset.load("test", data).images[:limit]
    scored = metrics.scored_data(model, images, seed=0)
    return float(metrics.iw_log_likelihood(model, scored, k=k, seed=0).mean())


def ppca_optimum(data: Path, train_flags: list[str], limit: int | None) -> float:
    """The exact maximum-likelihood pPCA's mean test log-density (nats), fitted to the training images."""
    from vaetool import metrics, registry

    dataset, _ = registry.build("dataset", "mnist", {})
    latent_dim = int(train_flags[train_flags.index("--latent-dim") + 1])
    train, test = dataset.load("train", data).images, dataset.load("test", data).images[:limit]
    return metrics.ppca_log_likelihood(train, test, latent_dim)


def linear_gaussian_log_density(run: Path, data: Path, limit: int | None) -> float:
    """The trained linear VAE's exact log p(x) = log N(x; c, V Vᵀ + σ² I), read off its decoder, in nats.

    The decoder is affine, so c = decode(0) and V's columns are decode(e_i) − c; σ is the likelihood's
    shared scale. This is what its IW estimate bounds from below, with no sampling error.
    """
    import torch

    import vaetool
    from vaetool import metrics, registry

    model = vaetool.load(run)
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, model.latent_dim), torch.eye(model.latent_dim)])
        params = model.decode_params(basis)
        mean, log_sigma = model.likelihood.mean_and_log_sigma(params)
        mean = mean.flatten(1).double()
        V = (mean[1:] - mean[0]).T
    dataset, _ = registry.build("dataset", model.config["dataset"], model.config["dataset_options"])
    images = dataset.load("test", data).images[:limit]
    return metrics.ppca_log_density(images, mean[0], V, float(torch.exp(2 * log_sigma))).mean().item()


def extrapolate(curve: list[dict], target_elbo: float) -> dict | None:
    """Where the test ELBO is heading: a line in log(epoch) fitted to the second half of the curve.

    The published log p(x), less this run's gap between IW estimate and ELBO, is the ELBO the run
    would need; its epoch on that line is a rough guess of the training the row takes, not a promise.
    """
    points = [(math.log(m["epoch"]), m["test_elbo"]) for m in curve[len(curve) // 2:]]
    if len(points) < 3:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    if slope <= 0:
        return {"nats_per_doubling": slope * math.log(2), "epochs_to_published": None}
    epochs = math.exp(mean_x + (target_elbo - mean_y) / slope)
    return {"nats_per_doubling": slope * math.log(2), "epochs_to_published": epochs}


def torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def write_doc(results: dict) -> None:
    ran = {k: r for k, r in results.items() if "missing" not in r}
    # The pPCA row's grey-level densities (hundreds of nats above zero) are left off the binarized rows' plot.
    plotted = {k: r for k, r in ran.items() if not ROWS.get(k, {}).get("reference")}
    if plotted:
        plot(plotted)
    lines = [
        "# Published log-likelihoods, reproduced",
        "",
        "Each row is one command of [`benchmarks/reproduce.py`](../benchmarks/reproduce.py), which trains the",
        "paper's model for a wall-time budget and then estimates log p(x) on the whole MNIST test set with K",
        "importance samples, on one seeded binarization of it. Every Bernoulli row follows the papers' protocol:",
        "dynamically binarized MNIST, the encoder seeing the same binary images the Bernoulli likelihood",
        "scores, so the numbers are comparable with the published ones — but the budgets here are minutes on",
        "a shared 2-core CPU where the papers trained for thousands of epochs, so each row says how far it",
        "got, its learning curve, and a rough extrapolation of the epochs the published number needs.",
        "",
        "The pPCA row is of another kind: a linear VAE with a Gaussian likelihood on grey levels, whose model",
        "family is probabilistic PCA, so its optimum is computed exactly (the \"published\" column) from the",
        "training images; its numbers are continuous densities of grey-level images and are comparable only",
        "with each other, not with the binarized rows.",
        "",
        "| paper | row | published | ours (IW) | gap | test ELBO | K | epochs | train time | extrapolated epochs | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        row = ROWS.get(key, {})
        if "missing" in r:
            lines.append(f"| {row.get('paper', '?')} | {row.get('row', key)} | {row.get('published', '')} | "
                         f"not run: {r['missing']} | | | | | | | |")
            continue
        guess = (r.get("extrapolation") or {}).get("epochs_to_published")
        lines.append(f"| {r['paper']} | {r['row']} | {r['published']:.2f} | {r['ours']:.2f} | "
                     f"{r['ours'] - r['published']:+.2f} | {r['test_elbo']:.2f} | "
                     f"{r['k']} | {r['epochs']} | {r['train_minutes']:.0f} min | "
                     f"{f'~{guess:,.0f}' if guess else '—'} | `{r['command']}`{' ' + r['note'] if r.get('note') else ''} |")
    lines += ["", *findings(ran)]
    lines += ["", "Machines and dates, per row:", ""]
    lines += [f"- `{k}`: {r['machine']}, {r['date']}; IW estimate {r['iw_minutes']:.1f} min; trains "
              f"`{r['train_command']}`."
              + (f" The trained model's exact log p(x), read off its affine decoder: {r['exact']:.2f}." if "exact" in r else "")
              for k, r in ran.items()]
    if ran:
        lines += ["", "![learning curves](reproductions/curves.png)", "",
                  "Test ELBO (nats, one seeded sample per image) against epochs and wall time for every binarized row above."]
    lines += ["", "Differences from the papers' setups, besides the budget: the learning rate and batch each row's",
              "command gives — Burda et al.'s rows train with the paper's stepped schedule (`--lr-schedule burda`,",
              "which a budget of minutes follows through its first passes only), batch 20; rows whose command says",
              "`--lr-schedule constant` or another batch were trained before the schedule existed or as a comparison",
              "— and for Tomczak & Welling plain rather than gated hidden layers and no KL warm-up (batch 100).",
              "The two-layer rows use `--latent hierarchical`, bottom-up inference as in Burda et al. (see",
              "models.md), at the widths of the authors' code.", ""]
    DOC.write_text("\n".join(lines))


def findings(ran: dict) -> list[str]:
    """What the measured rows say beside each other, in sentences made from the numbers."""
    said = []
    if {"tomczak-standard", "tomczak-vamp"} <= ran.keys():
        std, vamp = ran["tomczak-standard"], ran["tomczak-vamp"]
        said.append(f"- VampPrior against the standard prior, same network and budget: IW {vamp['ours']:.2f} against "
                    f"{std['ours']:.2f} nats ({vamp['ours'] - std['ours']:+.2f}; published "
                    f"{vamp['published'] - std['published']:+.2f}), the VampPrior row after {vamp['epochs']} epochs "
                    f"to the standard prior's {std['epochs']} (each of its epochs costs more).")
    for key, r in ran.items():
        if "exact" in r:
            said.append(f"- `{key}`: the trained linear VAE's exact log p(x) is {r['exact']:.2f} nats, its IW estimate "
                        f"{r['ours']:.2f}, the exact pPCA optimum {r['published']:.2f}: "
                        f"{r['published'] - r['exact']:.2f} nats short after {r['epochs']} epochs.")
    ones = [r for k, r in ran.items() if k.startswith("burda-vae-1")]
    if ones and "burda-vae-2" in ran:
        two = ran["burda-vae-2"]
        # The one-layer run trained as the two-layer one was, where there is one.
        one = next((r for r in ones if setup(r) == setup(two)), ones[0])
        epoch = min(len(one["curve"]), len(two["curve"]))
        a, b = two["curve"][epoch - 1][1], one["curve"][epoch - 1][1]
        text = (f"- Two stochastic layers against one: after {epoch} epochs the two-layer VAE's test ELBO is {a:.2f} "
                f"against the one-layer net's {b:.2f} ({a - b:+.2f}); their IW log p(x) at the end of each run, "
                f"{two['epochs']} and {one['epochs']} epochs: {two['ours']:.2f} against {one['ours']:.2f}")
        if setup(one) != setup(two):
            text += (f", but they did not train alike (one layer: {setup(one)}; two layers: {setup(two)}), so the "
                     "difference is not the layers' alone")
        said.append(text + f". Burda et al. report the two-layer net {two['published'] - one['published']:.2f} nats "
                    "ahead after about 3,280 epochs.")
    batches = {setup(r): r for r in ones}
    if len(batches) > 1:
        said.append(f"- The one-layer VAE trained {len(batches)} ways: " + "; ".join(
            f"{how}, {r['epochs']} epochs in {r['train_minutes']:.0f} min: IW {r['ours']:.2f}, test ELBO "
            f"{r['test_elbo']:.2f}" for how, r in batches.items()) + ".")
    if any(ROWS.get(k, {}).get("train", []).count("iwae") for k in ran):
        said.append("- The extrapolation fits the test ELBO, which an IWAE does not maximise and which rises "
                    "steeply in its first epochs: for the IWAE rows it is optimistic.")
    return said or ["- (no rows measured yet)"]


def setup(result: dict) -> str:
    """How a row's run was trained, beyond its network: its batch, learning rate and how its weights started."""
    flags = result["train_command"].split()
    batch = flags[flags.index("--batch-size") + 1]  # every stored train_command states its batch
    schedule = flags[flags.index("--lr-schedule") + 1] if "--lr-schedule" in flags else "constant"
    rate = {"constant": "a constant learning rate", "burda": "the paper's stepped learning rate"}.get(
        schedule, f"the {schedule} learning-rate schedule")
    start = "the authors' initialisation" if "output_bias=data-mean" in flags else "PyTorch's default initialisation"
    return f"batch {batch}, {rate}, {start}"


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for key, r in results.items():
        epochs = [e for e, _, _ in r["curve"]]
        elbo = [v for _, v, _ in r["curve"]]
        minutes = [sum(s for _, _, s in r["curve"][:i + 1]) / 60 for i in range(len(r["curve"]))]
        by_epoch.plot(epochs, elbo, marker=".", label=key)
        by_time.plot(minutes, elbo, marker=".", label=key)
        for axis in (by_epoch, by_time):
            axis.axhline(r["published"], linestyle=":", linewidth=0.8, color=axis.lines[-1].get_color())
    by_epoch.set(xlabel="epoch", ylabel="test ELBO (nats)", xscale="log")
    by_time.set(xlabel="training minutes")
    by_epoch.legend(fontsize=8)
    fig.suptitle("Learning curves; dotted: the published log p(x)", fontsize=10)
    fig.tight_layout()
    CURVES.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CURVES, dpi=110)


if __name__ == "__main__":
    main()
