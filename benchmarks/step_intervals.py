#!/usr/bin/env python3
"""How the textbook MLP's step time moves within one `vaetool train` run, block by block.

`vaetool train` reports seconds per epoch; whether a slow epoch was slow throughout or had a few
slow steps, and whether a process keeps one speed, it cannot say. This runs `vaetool train` in
this process on real MNIST (the model of ``train_speed.py``) with the hand-written step's calls
time-stamped from outside (``vaetool.fused.FusedStep.__call__`` wrapped; nothing else changes), and
prints the median interval between consecutive steps — the whole loop's time per step, the
report and the batch included — for each block of ``--block`` steps. The interval that spans the
end of an epoch (its evaluation and saving) is left out.

    python benchmarks/step_intervals.py --data ../shared/data --epochs 2

Prints one line per block and, last, one JSON line with every block's median.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from vaetool import cli, fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder holding MNIST/raw")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--block", type=int, default=47, help="steps per block (469 steps an epoch)")
    args = parser.parse_args()

    stamps: list[tuple[float, float]] = []  # (time, the epoch's progress the trainer passed)
    plain = fused.FusedStep.__call__

    def timed(self, x, epochs_done):
        stamps.append((time.perf_counter(), epochs_done))
        return plain(self, x, epochs_done)

    fused.FusedStep.__call__ = timed
    with tempfile.TemporaryDirectory() as runs:
        sys.argv = ["vaetool", "--quiet", "train", "--arch", "mlp", "--hidden", "400", "--latent-dim", "20",
                    "--likelihood", "bernoulli", "--data", "mnist", "--data-dir", args.data, "--batch-size", "128",
                    "--lr", "1e-3", "--epochs", str(args.epochs), "--runs-dir", runs, "--name", "intervals"]
        try:
            cli.main()
        except SystemExit as exit_:
            if exit_.code:
                raise
    if not stamps:
        sys.exit("The run took no hand-written steps (is this an x86-64 CPU with the plain MLP?).")
    # Intervals within an epoch only: the one across an epoch's end holds its evaluation.
    intervals = [(int(a_epoch), b - a) for (a, a_epoch), (b, b_epoch) in zip(stamps, stamps[1:])
                 if int(a_epoch) == int(b_epoch)]
    blocks = []
    for epoch in sorted({e for e, _ in intervals}):
        times = [t for e, t in intervals if e == epoch]
        for start in range(0, len(times), args.block):
            block = times[start:start + args.block]
            blocks.append({"epoch": epoch + 1, "first_step": start, "median_us": 1e6 * statistics.median(block)})
            print(f"epoch {epoch + 1}, steps {start}–{start + len(block)}: {blocks[-1]['median_us']:.0f} µs a step")
    print(json.dumps({"block": args.block, "blocks": blocks}))


if __name__ == "__main__":
    main()
