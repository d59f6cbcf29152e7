#!/usr/bin/env python3
"""Every model family at the same small budget, side by side: the table of docs/models.md.

MNIST (an MLP, Bernoulli likelihood on grey levels) for the likelihood families — the ELBO, IWAE,
InfoVAE, WAE (and the VampPrior when a ``vamp`` prior is installed) — and the shapes sprites for the
disentangling ones — β = 1, β-TCVAE, FactorVAE, DIP-VAE — each trained for the same epochs with the
same architecture, batch and learning rate. Reported per model: the test ELBO (none for the WAE, which
has no likelihood bound), the importance-weighted log p(x) with K samples on the first test images,
active units, MMD² of the codes to the prior, MIG on shapes, and the median seconds per training
epoch against ``elbo`` on the same data in the same run (the machine may be shared: only ratios
are quoted).

    python benchmarks/zoo.py --data ../shared/data --threads 1 --epochs 3 --write docs/models.md

``--write`` replaces the table between the ``zoo`` markers of that file. Last line: JSON of every number.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"

# (name, dataset, objective, options, what the paper leads one to expect of it)
MNIST = [
    ("elbo", "mnist", "elbo", {}, None),
    ("iwae k=5", "mnist", "iwae", {"k": 5}, "IW log p(x) ≥ elbo's (Burda et al. 2016, table 1)"),
    ("infovae", "mnist", "infovae", {"mmd_weight": 1000}, None),
    ("wae", "mnist", "wae", {"mmd_weight": 10}, None),
]
SHAPES = [
    ("elbo", "shapes", "elbo", {}, None),
    ("tcvae", "shapes", "tcvae", {"tc_weight": 6}, "MIG above β = 1 (Chen et al. 2018, fig. 5)"),
    ("factorvae", "shapes", "factorvae", {"gamma": 6}, "MIG above β = 1 (Kim & Mnih 2018, fig. 4)"),
    ("dipvae", "shapes", "dipvae", {"kind": "ii"}, "MIG above β = 1 (Kumar et al. 2018, table 2)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data root holding MNIST/raw (default: $VAETOOL_DATA)")
    parser.add_argument("--runs", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model, the same for every family")
    parser.add_argument("--hidden", default="256", help="the MLP's hidden widths, comma-separated")
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--shapes-train", type=int, default=20000, help="shapes training images")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the importance-weighted log p(x)")
    parser.add_argument("--test-images", type=int, default=500, help="test images every number is computed on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated datasets to run: mnist, shapes")
    parser.add_argument("--write", type=Path, default=None, help="markdown file whose zoo table to replace")
    args = parser.parse_args()

    import torch

    from vaetool import compare, disentanglement, registry
    from vaetool.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    plans = (MNIST if not args.only or "mnist" in args.only else []) + \
            (SHAPES if not args.only or "shapes" in args.only else [])
    if "vamp" in registry.names("prior") and (not args.only or "mnist" in args.only):
        plans.insert(1, ("vampprior", "mnist", "elbo", {"prior": "vamp"},
                         "IW log p(x) ≥ elbo's (Tomczak & Welling 2018, table 2)"))
    runs = args.runs or Path(tempfile.mkdtemp(prefix="vaetool-zoo-"))
    hidden = [int(h) for h in args.hidden.split(",")]
    results, started = [], time.time()
    for name, data, objective, options, expectation in plans:
        options = dict(options)
        prior = options.pop("prior", "standard-normal")
        dataset_options = {"n_train": args.shapes_train} if data == "shapes" else {}
        config = TrainConfig(architecture="mlp", architecture_options={"hidden": hidden}, dataset=data,
                             dataset_options=dataset_options, latent_dim=args.latent_dim, epochs=args.epochs,
                             batch_size=128, lr=1e-3, seed=0, objective=objective, objective_options=options,
                             prior=prior)
        run_dir = runs / f"{data}-{name.replace(' ', '').replace('=', '')}"
        print(f"[{time.time() - started:6.0f} s] training {name} on {data}", file=sys.stderr, flush=True)
        result = train(config, run_dir, device="cpu", data_dir=args.data)
        entries = compare.load_entries([run_dir], "cpu")
        dataset, _ = registry.build("dataset", data, dataset_options)
        test = dataset.load("test", _root(args.data))
        images = test.images[:args.test_images].float() / 255
        labels = test.labels[:args.test_images] if test.labels is not None else None
        compare.evaluate(entries, images, labels, iw_samples=args.iw_samples, seed=0)
        numbers = entries[0].numbers
        row = {"name": name, "data": data, "objective": objective, "options": options, "prior": prior,
               "expectation": expectation, "test_elbo": numbers.get("elbo"), "iw_ll": numbers.get("iw_ll"),
               "rec": numbers["rec"], "active_units": numbers["active_units"], "mmd": numbers["mmd"],
               "seconds_per_epoch": statistics.median(m["train_seconds"] for m in result.metrics),
               "label": entries[0].label}
        if data == "shapes":
            import numpy as np

            truth = disentanglement.ground_truth_for(entries[0].config)
            row["mig"] = disentanglement.mig(truth, disentanglement.representation(entries[0].model),
                                             np.random.default_rng(0))["mig"]
        results.append(row)
    for row in results:
        reference = next(r for r in results if r["data"] == row["data"] and r["name"] == "elbo")
        row["time_ratio"] = row["seconds_per_epoch"] / reference["seconds_per_epoch"]
    table = _table(results, args)
    print(table)
    if args.write:
        _write(args.write, table)
    print(json.dumps({"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                      "python": platform.python_version(), "torch": torch.__version__,
                      "seconds": round(time.time() - started), "results": results}))


def _root(data):
    from vaetool.datasets import data_root

    return data_root(data)


def _cell(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _table(results: list[dict], args) -> str:
    lines = ["| model | data | trained with | test ELBO | log p(x) IW | log p(x\\|z) | active | MMD² | MIG | "
             "s/epoch vs elbo |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['name']} | {r['data']} | {r['label'].split(', ', 2)[-1]} | {_cell(r['test_elbo'], '{:.1f}')} | "
                     f"{_cell(r['iw_ll'], '{:.1f}')} | {r['rec']:.1f} | {r['active_units']}/{args.latent_dim} | "
                     f"{r['mmd']:.4f} | {_cell(r.get('mig'), '{:.3f}')} | {r['time_ratio']:.2f}× |")
    held = []
    for r in results:
        if not r["expectation"]:
            continue
        reference = next(x for x in results if x["data"] == r["data"] and x["name"] == "elbo")
        key = "mig" if "MIG" in r["expectation"] else "iw_ll"
        ok = r.get(key) is not None and reference.get(key) is not None and r[key] >= reference[key]
        held.append(f"- {r['name']}: {r['expectation']} — {'held' if ok else 'did not hold'} "
                    f"({key} {r.get(key):.3f} vs {reference.get(key):.3f}).")
    return "\n".join(lines + [""] + held)


def _write(path: Path, table: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} … {END} markers to put the table between.")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
