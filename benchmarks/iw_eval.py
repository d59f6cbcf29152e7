#!/usr/bin/env python3
"""Wall time of the literature's log-likelihood estimate: ``vaetool compare --iw-samples 5000`` on MNIST.

The importance-weighted estimate log p(x) ≈ log 1/K Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x)
(Burda, Grosse & Salakhutdinov, ICLR 2016), with K = 5000 over the 10,000 MNIST test images, is how
papers report a VAE's likelihood: 50 million decoder passes. This script

1. trains the textbook MLP (784-400-20, Bernoulli on grey levels) with
   ``vaetool train --arch mlp --hidden 400 --latent-dim 20 --likelihood bernoulli --epochs N
   --data mnist --data-dir DIR`` into a temporary runs directory (not timed; ``--model`` skips it);
2. times ``vaetool compare RUN --iw-samples K --limit N --no-sample-quality --no-disentanglement
   -o report.json`` as a subprocess: wall time, the log p(x) from the JSON report, and the peak
   resident memory of that child (``ru_maxrss`` from ``os.wait4`` — the same figure
   ``getrusage(RUSAGE_CHILDREN)`` gives, but for this child alone: RUSAGE_CHILDREN is the maximum
   over every child waited for, and the training child, which holds the training set, would mask it);
3. times the same command with ``--iw-samples 0``: what ``compare`` computes besides the IW
   estimate and cannot be told to skip — loading the model and test set, the test ELBO, parameter
   counts, active units, the aggregate-posterior KL and the report's pictures. The difference of
   the two is the IW estimate's own time, from which the throughput in (image, sample) pairs per
   second is computed.

At small K the difference drowns in the noise of starting two processes; ``--in-process`` then
also calls ``vaetool.metrics.iw_log_likelihood`` — the function ``compare`` calls, with the same
images, seed and default chunk sizes — in this process, times it alone and checks that its mean is
the log p(x) in the report.

``--rounds`` > 1 alternates the commands so that a noisy neighbour slows all alike, and reports
medians. Subprocesses inherit the environment, OMP_NUM_THREADS included.

    OMP_NUM_THREADS=2 python benchmarks/iw_eval.py --data-dir ../shared/data --k 5000 --epochs 10

(a quick check: ``--k 50 --test-images 500 --epochs 1 --in-process``). Prints a table and, last, one JSON line
with every number and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaetool import devices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import machine  # noqa: E402  (the same machine description for every benchmark)

MNIST_TEST_IMAGES = 10_000


def _max_rss_bytes(usage) -> int:
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


def run_child(command: list[str], log: Path) -> dict:
    """Run ``command`` with its output in ``log``; its wall seconds and peak resident memory."""
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)}\nexited with {child.returncode}:\n{log.read_text()[-3000:]}")
    return {"seconds": seconds, "max_rss_bytes": _max_rss_bytes(usage),
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


def train(runs: Path, data_dir: Path, epochs: int, device: str, seed: int) -> Path:
    run_child([sys.executable, "-m", "vaetool", "train", "--arch", "mlp", "--hidden", "400", "--latent-dim", "20",
               "--likelihood", "bernoulli", "--data", "mnist", "--data-dir", str(data_dir), "--epochs", str(epochs),
               "--device", device, "--seed", str(seed), "--runs-dir", str(runs), "--name", "iw"],
              runs.parent / "train.log")
    return runs / "iw"


def compare(model: Path, k: int, test_images: int, data_dir: Path, device: str, seed: int, work: Path) -> dict:
    """``vaetool compare`` restricted as far as its flags allow; the child's costs and its JSON report."""
    report = work / f"report-k{k}.json"
    command = [sys.executable, "-m", "vaetool", "compare", str(model), "--iw-samples", str(k),
               "--limit", str(test_images), "--iw-images", str(test_images), "--no-sample-quality", "--no-disentanglement",
               "--data-dir", str(data_dir), "--device", device, "--seed", str(seed), "-o", str(report)]
    result = run_child(command, work / f"compare-k{k}.log")
    numbers = json.loads(report.read_text())["models"][0]
    result["command"] = " ".join(["vaetool"] + command[3:])
    result["numbers"] = {key: numbers.get(key) for key in ("iw_ll", "iw_k", "elbo", "rec", "kl", "bits_per_dim",
                                                           "active_units", "aggregate_kl", "params_total")}
    return result


def in_process(model_path: Path, k: int, test_images: int, data_dir: Path, device: torch.device, seed: int) -> dict:
    """``metrics.iw_log_likelihood`` timed alone, on the images ``compare`` uses, as ``compare`` calls it."""
    import vaetool
    from vaetool import metrics, registry
    from vaetool.datasets import data_root

    model = vaetool.load(model_path, str(device))
    dataset, _ = registry.build("dataset", model.config["dataset"], model.config.get("dataset_options", {}))
    test = dataset.load("test", data_root(data_dir))
    images = test.images[:test_images].float() / 255
    labels = test.labels[:test_images] if test.labels is not None else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    log_px = metrics.iw_log_likelihood(model, images, labels, k=k, seed=seed)  # returns on the CPU: synchronised
    result = {"seconds": time.perf_counter() - start, "iw_log_likelihood": float(log_px.mean())}
    if device.type == "cuda":
        result["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("VAETOOL_DATA"),
                        help="data root holding MNIST/raw [default: $VAETOOL_DATA]")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--test-images", type=int, default=MNIST_TEST_IMAGES, help="the first N MNIST test images")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the model evaluated")
    parser.add_argument("--model", type=Path, help="evaluate this model file or run directory instead of training one")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as vaetool's --device)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true",
                        help="also time metrics.iw_log_likelihood alone in this process and check its mean")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("give --data-dir (or set VAETOOL_DATA)")
    if args.k < 1 or args.test_images < 1 or args.rounds < 1 or args.epochs < 1:
        parser.error("--k, --test-images, --rounds and --epochs must be at least 1")
    device = devices.resolve(args.device)
    images = min(args.test_images, MNIST_TEST_IMAGES)
    pairs = images * args.k

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.model is None:
            print(f"training the 784-400-20 MLP for {args.epochs} epochs (not timed)…", flush=True)
            model = train(work / "runs", args.data_dir, args.epochs, str(device), args.seed)
        else:
            model = args.model
        rounds = []
        for r in range(args.rounds):
            pair = {}
            for k in ((args.k, 0) if r % 2 == 0 else (0, args.k)):
                pair["iw" if k else "base"] = compare(model, k, images, args.data_dir, str(device), args.seed, work)
            iw, base = pair["iw"], pair["base"]
            pair["iw_seconds"] = iw["seconds"] - base["seconds"]
            line = (f"round {r + 1}: compare --iw-samples {args.k} {iw['seconds']:.1f} s, "
                    f"--iw-samples 0 {base['seconds']:.1f} s → IW estimate {pair['iw_seconds']:.1f} s; "
                    f"log p(x) {iw['numbers']['iw_ll']:.2f}, peak RSS {iw['max_rss_bytes'] / 2**20:.0f} MiB "
                    f"(without IW {base['max_rss_bytes'] / 2**20:.0f} MiB)")
            if args.in_process:
                pair["in_process"] = in_process(model, args.k, images, args.data_dir, device, args.seed)
                line += (f"; in-process iw_log_likelihood {pair['in_process']['seconds']:.2f} s, "
                         f"log p(x) {pair['in_process']['iw_log_likelihood']:.2f}")
            rounds.append(pair)
            print(line, flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    iw_seconds = statistics.median(r["iw_seconds"] for r in rounds)
    numbers = rounds[0]["iw"]["numbers"]
    summary = {
        "machine": machine(device),
        "model": str(args.model) if args.model else f"mlp 784-400-20, bernoulli, {args.epochs} epochs on MNIST",
        "k": args.k, "test_images": images, "pairs": pairs, "rounds": args.rounds, "seed": args.seed,
        "command": rounds[0]["iw"]["command"],
        "wall_seconds": median("iw", "seconds"), "cpu_seconds": median("iw", "cpu_seconds"),
        "max_rss_bytes": max(r["iw"]["max_rss_bytes"] for r in rounds),
        "baseline_command": rounds[0]["base"]["command"],
        "baseline_wall_seconds": median("base", "seconds"),
        "baseline_max_rss_bytes": max(r["base"]["max_rss_bytes"] for r in rounds),
        "iw_seconds": iw_seconds,
        "pairs_per_second": pairs / iw_seconds if iw_seconds > 0 else None,
        "pairs_per_second_whole_command": pairs / median("iw", "seconds"),
        "iw_log_likelihood": numbers["iw_ll"],
        "in_process": None,
        "also_computed": {key: value for key, value in numbers.items() if key not in ("iw_ll", "iw_k")},
        "rounds_detail": [{"wall_seconds": r["iw"]["seconds"], "baseline_wall_seconds": r["base"]["seconds"],
                           "iw_seconds": r["iw_seconds"], "max_rss_bytes": r["iw"]["max_rss_bytes"],
                           "iw_log_likelihood": r["iw"]["numbers"]["iw_ll"],
                           "in_process_seconds": r["in_process"]["seconds"] if "in_process" in r else None}
                          for r in rounds],
    }

    if args.in_process:
        seconds = statistics.median(r["in_process"]["seconds"] for r in rounds)
        value = rounds[0]["in_process"]["iw_log_likelihood"]
        summary["in_process"] = {"seconds": seconds, "pairs_per_second": pairs / seconds, "iw_log_likelihood": value,
                                 "matches_report": abs(value - numbers["iw_ll"]) <= 1e-6 * abs(numbers["iw_ll"]),
                                 "cuda_max_allocated_bytes": rounds[0]["in_process"].get("cuda_max_allocated_bytes")}

    print(f"\nK = {args.k:,} importance samples × {images:,} MNIST test images = {pairs:,} (image, sample) pairs, "
          f"device {device}, median of {args.rounds} round(s):")
    rows = [("vaetool compare --iw-samples K, whole command", f"{summary['wall_seconds']:.1f} s"),
            ("  of which besides the IW estimate (--iw-samples 0)", f"{summary['baseline_wall_seconds']:.1f} s"),
            ("  IW estimate alone (difference)", f"{iw_seconds:.1f} s"),
            ("throughput, IW estimate alone",
             f"{summary['pairs_per_second']:,.0f} pairs/s" if summary["pairs_per_second"] else "—"),
            ("throughput, whole command", f"{summary['pairs_per_second_whole_command']:,.0f} pairs/s")]
    if summary["in_process"]:
        check = summary["in_process"]
        rows += [("metrics.iw_log_likelihood alone, in-process", f"{check['seconds']:.2f} s"),
                 ("  throughput", f"{check['pairs_per_second']:,.0f} pairs/s"),
                 ("  its log p(x) equals the report's", "yes" if check["matches_report"] else
                  f"NO: {check['iw_log_likelihood']:.4f}")]
        if check["cuda_max_allocated_bytes"] is not None:
            rows.append(("  peak CUDA memory allocated", f"{check['cuda_max_allocated_bytes'] / 2**20:,.0f} MiB"))
    rows += [
            ("peak resident memory of the child", f"{summary['max_rss_bytes'] / 2**20:,.0f} MiB"),
            ("  with --iw-samples 0", f"{summary['baseline_max_rss_bytes'] / 2**20:,.0f} MiB"),
            (f"log p(x), IW with K = {args.k:,}", f"{numbers['iw_ll']:.2f} nats"),
            ("test ELBO (also computed)", f"{numbers['elbo']:.2f} nats"),
            ("active units / agg. KL (also computed)", f"{numbers['active_units']} / {numbers['aggregate_kl']:.2f}")]
    if iw_seconds < 0.2 * summary["wall_seconds"]:
        rows.append(("note", "the IW estimate is a small part of the command here: its time is mostly noise"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>18}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
