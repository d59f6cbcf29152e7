#!/usr/bin/env python3
"""vaetool against Pythae and the textbook VAE: the same model, the same batch, side by side.

Each round trains, one after another and in this order, on real MNIST (grey levels, Bernoulli /
binary cross-entropy, Adam 1e-3, batch 128, the same number of epochs):

- ``mlp``: the textbook reference (``shared/bench/reference_vae.py``, 784-400-20), Pythae 0.1.2's
  ``VAE`` with the same layers (``peers_pythae.py``), and ``vaetool train --arch mlp --hidden 400
  --latent-dim 20``;
- ``conv``: Pythae with the layers of vaetool's default conv net (channels 32-64-128, 16-D
  latent), and ``vaetool train --arch conv``. The reference has no conv model.

Every round runs every peer, so a noisy neighbour slows all of them alike; reported are the median
seconds of each over the rounds and, per pair, the ratio of the medians: seconds per training
epoch (each one's own training pass, evaluation excluded), per epoch with the per-epoch test
evaluation that vaetool and Pythae both do, and per whole command (start-up, data loading,
saving and pictures included). The arithmetic limit of each model (``arithmetic.py``) stands beside.

Pythae runs in a virtual environment of its own: ``--pythae-venv DIR`` uses one that has it, else
the script makes ``.venv-peers`` in the repository (once: ``pip install pythae==0.1.2``, a few MB
from PyPI), with a ``.pth`` file that lends it this interpreter's torch rather than downloading
another.

    python benchmarks/peers.py --data ../shared/data --rounds 3 --epochs 2
    python benchmarks/peers.py --data ../shared/data --models conv --rounds 3 --epochs 1

Prints a table per model and, last, one JSON line with every number.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import arithmetic
import train_speed

HERE = Path(__file__).resolve().parent
PYTHAE = "pythae==0.1.2"
VAETOOL_FLAGS = {"mlp": train_speed.SAME_MODEL, "conv": ["--arch", "conv"]}


def pythae_python(venv: Path | None) -> Path:
    """The interpreter of a virtual environment with Pythae, made (with this torch lent to it) if need be."""
    import torch

    made = venv is None
    venv = venv or HERE.parent / ".venv-peers"
    python = venv / "bin" / "python"
    if not python.exists():
        if not made:
            sys.exit(f"{venv} is not a virtual environment (no bin/python).")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        # This torch (and what sits beside it) is importable there, and pip sees it as installed.
        Path(site, "_lent_torch.pth").write_text(str(Path(torch.__file__).resolve().parent.parent) + "\n")
    if subprocess.run([str(python), "-c", "import pythae"], capture_output=True).returncode != 0:
        if not made:
            sys.exit(f"{venv} has no pythae; pip install {PYTHAE} there, or leave --pythae-venv out.")
        subprocess.run([str(python), "-m", "pip", "install", "-q", PYTHAE], check=True)
    return python


def timed(command: list[str]) -> tuple[str, float]:
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return out, time.perf_counter() - started


def run_pythae(python: Path, data: Path, arch: str, epochs: int) -> dict:
    out, seconds = timed([str(python), str(HERE / "peers_pythae.py"), str(data), "--arch", arch,
                          "--epochs", str(epochs)])
    result = json.loads(out.strip().splitlines()[-1])
    return {**{k: result[k] for k in ("sec_per_epoch", "sec_per_epoch_with_eval", "test_elbo")},
            "command_seconds": seconds}


def run_reference(reference: Path, data: Path, epochs: int) -> dict:
    started = time.perf_counter()
    result = train_speed.run_reference(reference, data, epochs)
    return {**result, "command_seconds": time.perf_counter() - started}


def run_vaetool(data: Path, arch: str, epochs: int) -> dict:
    started = time.perf_counter()
    result = train_speed.run_vaetool(data, epochs, "cpu", VAETOOL_FLAGS[arch])
    return {**result, "command_seconds": time.perf_counter() - started}


KEYS = (("sec_per_epoch", "training s/epoch"), ("sec_per_epoch_with_eval", "with test evaluation"),
        ("command_seconds", "whole command s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="data root holding MNIST/raw")
    parser.add_argument("--reference", type=Path, default=train_speed.DEFAULT_REFERENCE)
    parser.add_argument("--pythae-venv", type=Path, help="a virtual environment with pythae (default: make .venv-peers)")
    parser.add_argument("--models", default="mlp,conv", help="comma-separated: mlp, conv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if not set(models) <= set(VAETOOL_FLAGS):
        sys.exit(f"--models takes mlp and/or conv, not {args.models!r}.")
    python = pythae_python(args.pythae_venv)
    data = args.data.resolve()
    steps = -(-60_000 // arithmetic.BATCH)
    flops = {arch: arithmetic.flops_per_step(*train_speed.model_of(VAETOOL_FLAGS[arch])) for arch in models}

    rounds = []
    for i in range(args.rounds):
        rate = arithmetic.matmul_rate()
        results = {}
        for arch in models:
            peers = {}
            if arch == "mlp":
                peers["reference"] = run_reference(args.reference, data, args.epochs)
            peers["pythae"] = run_pythae(python, data, arch, args.epochs)
            peers["vaetool"] = run_vaetool(data, arch, args.epochs)
            results[arch] = peers
        rate = (rate + arithmetic.matmul_rate()) / 2
        rounds.append({"matmul_gflops": rate / 1e9, "results": results})
        print(f"round {i + 1}: matmul {rate / 1e9:.0f} GFLOP/s; " + "; ".join(
            f"{arch} " + ", ".join(f"{name} {r['sec_per_epoch']:.2f} s/epoch (ELBO {r['test_elbo']:.2f})"
                                   for name, r in peers.items()) for arch, peers in results.items()), flush=True)

    summary = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
                          f"torch {__import__('torch').__version__}",
               "epochs": args.epochs, "rounds": args.rounds, "pythae": PYTHAE,
               "matmul_gflops": statistics.median(r["matmul_gflops"] for r in rounds), "models": {}}
    for arch in models:
        names = list(rounds[0]["results"][arch])
        medians = {name: {key: statistics.median(r["results"][arch][name][key] for r in rounds)
                          for key in rounds[0]["results"][arch][name]}
                   for name in names}
        limit = statistics.median(steps * flops[arch] / (r["matmul_gflops"] * 1e9) for r in rounds)
        summary["models"][arch] = {"medians": medians, "limit_sec_per_epoch": limit,
                                   "vaetool_share_of_limit": limit / medians["vaetool"]["sec_per_epoch"]}
        print(f"\n{arch}: median of {args.rounds} rounds of {args.epochs} epochs; arithmetic limit "
              f"{limit:.2f} s/epoch ({flops[arch] / 1e9:.2f} GFLOP a step at {summary['matmul_gflops']:.0f} GFLOP/s)")
        print("| | " + " | ".join(label for _, label in KEYS) + " | test ELBO |")
        print("| --- |" + " --- |" * (len(KEYS) + 1))
        for name in names:
            cells = [f"{medians[name][key]:.2f}" if key in medians[name] else "—" for key, _ in KEYS]
            print(f"| {name} | " + " | ".join(cells) + f" | {medians[name]['test_elbo']:.2f} |")
        for name in names[:-1]:
            ratios = {key: medians[name][key] / medians["vaetool"][key] for key, _ in KEYS if key in medians[name]}
            summary["models"][arch][f"vaetool_vs_{name}"] = ratios
            print(f"| vaetool's speed-up over {name} | " +
                  " | ".join(f"{ratios[key]:.2f}×" if key in ratios else "—" for key, _ in KEYS) + " | |")
        print(f"vaetool's training epoch: {100 * summary['models'][arch]['vaetool_share_of_limit']:.0f}% of the limit")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
