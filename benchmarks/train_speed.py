#!/usr/bin/env python3
"""Training speed against the textbook MNIST VAE, measured side by side in one run.

Both train the same model — 784-400-20 MLP, Bernoulli likelihood on grey levels, Adam 1e-3,
batch 128 — for the same number of epochs on the same machine, alternating so that a noisy
neighbour slows both alike. Reported: the median seconds per training epoch of each (evaluation
excluded on both sides), the median of the per-round ratios, and both test ELBOs after training.

Each round also trains the variants given by ``--variant NAME=FLAGS`` (default: the same MLP with
autograd's step instead of the hand-written one, ``--no-fused-step``; the same MLP with
``--precision bf16``; and the default conv architecture, whose epoch time is the other number
users ask for), so every ratio comes from the same rounds.

Beside each vaetool time stands the arithmetic limit of that model (see ``arithmetic.py``): the
FLOPs of an epoch's steps over the rate torch's matrix product reaches, measured again in each
round so that it sees the same load; ``limit / time`` is the share of the limit reached.

    python benchmarks/train_speed.py --data ../shared/data --rounds 5 --epochs 2

The reference is ../shared/bench/reference_vae.py (DataLoader + ToTensor). Prints a table and,
last, one JSON line with every number.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import arithmetic

HERE = Path(__file__).resolve().parent
DEFAULT_REFERENCE = HERE.parent.parent / "shared" / "bench" / "reference_vae.py"


def run_reference(reference: Path, data: Path, epochs: int) -> dict:
    out = subprocess.run([sys.executable, str(reference), str(data), "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"sec_per_epoch": result["sec_per_epoch_median"], "test_elbo": -result["test_loss_nats"]}


SAME_MODEL = ["--arch", "mlp", "--hidden", "400", "--latent-dim", "20"]
DEFAULT_VARIANTS = ["mlp-autograd=--arch mlp --hidden 400 --latent-dim 20 --no-fused-step",
                    "mlp-bf16=--arch mlp --hidden 400 --latent-dim 20 --precision bf16", "conv=--arch conv"]


def run_vaetool(data: Path, epochs: int, device: str, model_flags: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        subprocess.run([sys.executable, "-m", "vaetool", "train", *model_flags, "--likelihood", "bernoulli",
                        "--data", "mnist", "--data-dir", str(data),
                        "--batch-size", "128", "--lr", "1e-3", "--epochs", str(epochs), "--device", device,
                        "--runs-dir", runs, "--name", "bench"], check=True, capture_output=True, text=True)
        lines = [json.loads(line) for line in (Path(runs) / "bench" / "metrics.jsonl").read_text().splitlines()]
    return {"sec_per_epoch": statistics.median(m["train_seconds"] for m in lines),
            "sec_per_epoch_with_eval": statistics.median(m["seconds"] for m in lines),
            "test_elbo": lines[-1]["test_elbo"]}


def model_of(flags: list[str]) -> tuple[str, int, dict]:
    """The architecture, latent size and architecture options that ``vaetool train`` flags describe."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--arch", default="conv")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden")
    parser.add_argument("--channels")
    known, _ = parser.parse_known_args(flags)
    options = {key: [int(w) for w in value.split(",")] for key, value in
               (("hidden", known.hidden), ("channels", known.channels)) if value}
    return known.arch, known.latent_dim, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="data root holding MNIST/raw")
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", action="append", metavar="NAME=FLAGS",
                        help="also train vaetool with these flags each round (repeatable; 'none' for no variant)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or DEFAULT_VARIANTS) if v != "none")

    steps = -(-60_000 // 128)
    flops = {name: arithmetic.flops_per_step(*model_of(flags))
             for name, flags in {"vaetool": SAME_MODEL, **{k: v.split() for k, v in variants.items()}}.items()}
    rounds = []
    for i in range(args.rounds):
        rate, torch_rate = arithmetic.matmul_rate(), arithmetic.matmul_rate(which="torch")
        reference = run_reference(args.reference, args.data, args.epochs)
        ours = run_vaetool(args.data, args.epochs, args.device, SAME_MODEL)
        ratio = reference["sec_per_epoch"] / ours["sec_per_epoch"]
        extra = {name: run_vaetool(args.data, args.epochs, args.device, flags.split())
                 for name, flags in variants.items()}
        rate = (rate + arithmetic.matmul_rate()) / 2  # before and after the round's training
        torch_rate = (torch_rate + arithmetic.matmul_rate(which="torch")) / 2
        for name, result in {"vaetool": ours, **extra}.items():
            result["ratio"] = reference["sec_per_epoch"] / result["sec_per_epoch"]
            result["limit_sec_per_epoch"] = steps * flops[name] / rate
            result["share_of_limit"] = result["limit_sec_per_epoch"] / result["sec_per_epoch"]
            # The same at torch.mm's rate: the limit as the reference's products see it.
            result["share_of_torch_mm_limit"] = steps * flops[name] / torch_rate / result["sec_per_epoch"]
        rounds.append({"reference": reference, "vaetool": ours, "ratio": ratio, "variants": extra,
                       "matmul_gflops": rate / 1e9, "torch_mm_gflops": torch_rate / 1e9})
        print(f"round {i + 1}: matmul {rate / 1e9:.0f} GFLOP/s (torch.mm {torch_rate / 1e9:.0f}); "
              f"reference {reference['sec_per_epoch']:.2f} s/epoch, "
              f"vaetool {ours['sec_per_epoch']:.2f} s/epoch ({ours['sec_per_epoch_with_eval']:.2f} with test ELBO), "
              f"ratio {ratio:.2f}×, {100 * ours['share_of_limit']:.0f}% of its limit "
              f"({100 * ours['share_of_torch_mm_limit']:.0f}% at torch.mm's rate); "
              f"test ELBO reference {reference['test_elbo']:.2f}, vaetool {ours['test_elbo']:.2f}"
              + "".join(f"; {name} {r['sec_per_epoch']:.2f} s/epoch ({r['ratio']:.2f}×, "
                        f"{100 * r['share_of_limit']:.0f}% of its limit, test ELBO {r['test_elbo']:.2f})"
                        for name, r in extra.items()), flush=True)

    def median(path):
        values = [r for r in rounds]
        for key in path:
            values = [v[key] for v in values]
        return statistics.median(values)

    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
                   f"torch {__import__('torch').__version__}, device {args.device}",
        "epochs": args.epochs, "rounds": args.rounds,
        "reference_sec_per_epoch": median(["reference", "sec_per_epoch"]),
        "vaetool_sec_per_epoch": median(["vaetool", "sec_per_epoch"]),
        "speedup_median": median(["ratio"]),
        "matmul_gflops": median(["matmul_gflops"]),
        "vaetool_limit_sec_per_epoch": median(["vaetool", "limit_sec_per_epoch"]),
        "vaetool_share_of_limit": median(["vaetool", "share_of_limit"]),
        "torch_mm_gflops": median(["torch_mm_gflops"]),
        "vaetool_share_of_torch_mm_limit": median(["vaetool", "share_of_torch_mm_limit"]),
        "reference_test_elbo": median(["reference", "test_elbo"]),
        "vaetool_test_elbo": median(["vaetool", "test_elbo"]),
        "variants": {name: {"flags": flags,
                            "sec_per_epoch": median(["variants", name, "sec_per_epoch"]),
                            "speedup_median": median(["variants", name, "ratio"]),
                            "limit_sec_per_epoch": median(["variants", name, "limit_sec_per_epoch"]),
                            "share_of_limit": median(["variants", name, "share_of_limit"]),
                            "share_of_torch_mm_limit": median(["variants", name, "share_of_torch_mm_limit"]),
                            "test_elbo": median(["variants", name, "test_elbo"])}
                     for name, flags in variants.items()},
    }
    print(f"median over {args.rounds} rounds: reference {summary['reference_sec_per_epoch']:.2f} s/epoch, "
          f"vaetool {summary['vaetool_sec_per_epoch']:.2f} s/epoch, speed-up {summary['speedup_median']:.2f}×, "
          f"{100 * summary['vaetool_share_of_limit']:.0f}% of the arithmetic limit "
          f"({summary['vaetool_limit_sec_per_epoch']:.2f} s/epoch at {summary['matmul_gflops']:.0f} GFLOP/s; "
          f"{100 * summary['vaetool_share_of_torch_mm_limit']:.0f}% at torch.mm's {summary['torch_mm_gflops']:.0f} GFLOP/s)")
    for name, v in summary["variants"].items():
        print(f"  {name} ({v['flags']}): {v['sec_per_epoch']:.2f} s/epoch, {v['speedup_median']:.2f}× the reference, "
              f"{100 * v['share_of_limit']:.0f}% of its limit ({v['limit_sec_per_epoch']:.2f} s/epoch; "
              f"{100 * v['share_of_torch_mm_limit']:.0f}% at torch.mm's rate), "
              f"test ELBO {v['test_elbo']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
