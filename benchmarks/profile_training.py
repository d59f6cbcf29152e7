#!/usr/bin/env python3
"""Where a training run's time goes: torch.profiler over vaetool's own training loop.

Runs ``vaetool.training.train`` — the loop ``vaetool train`` runs, unchanged — for one epoch of
``--steps`` steps on real MNIST (a seeded subset of ``steps × batch`` training images), with the
per-epoch test ELBO over ``--test-images`` images, the checkpoint and the pictures, all under
``torch.profiler``. The parts of the model are wrapped in named ranges from outside (encoder,
decoder, latent, likelihood, objective, evaluation, pictures, saving), so the loop itself is
profiled as it ships.

Every top-level event is put in one row: a named range, the optimizer (``Optimizer.step``,
``zero_grad``), the backward pass of one autograd node (matrix product, convolution, or
elementwise), or the loop's own glue (the batch gather and cast, the running sums). Inside each row
the time of matrix products and convolutions (``addmm``, ``mm``, ``convolution`` and their
kernels) is counted apart from the rest, so the table says how much of each part is arithmetic
that a faster loop cannot remove.

The MLP trains, as in ``vaetool train``, with the hand-written step of :mod:`vaetool.fused`, whose
forward and backward pass are then one row — with Adam's step, which it takes layer by layer inside
the backward pass from the second step on; ``--no-fused-step`` profiles autograd's step part by part.

    python benchmarks/profile_training.py --data ../shared/data --arch mlp --steps 300
    python benchmarks/profile_training.py --data ../shared/data --arch mlp --steps 300 --no-fused-step
    python benchmarks/profile_training.py --data ../shared/data --arch conv --precision bf16 --steps 200

Times are the profiler's (which adds a few microseconds to each op, so the many small ops are
slightly inflated); the run's wall time without the profiler is printed beside them. Prints a
Markdown table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from vaetool import training
from vaetool.training import RunOptions, TrainConfig

MODELS = {
    "mlp": dict(architecture="mlp", architecture_options={"hidden": [400]}, latent_dim=20),
    "conv": dict(architecture="conv"),
}
# What counts as the arithmetic: matrix products and convolutions, forward and backward.
ARITHMETIC = ("addmm", "aten::mm", "aten::bmm", "matmul", "convolution", "conv2d", "conv_transpose", "mkldnn",
              "AddmmBackward", "MmBackward", "ConvolutionBackward", "linear")
RANGE = "vaetool."


def _ranged(name: str, method):
    @functools.wraps(method)
    def run(*args, **kwargs):
        with torch.profiler.record_function(RANGE + name):
            return method(*args, **kwargs)
    return run


def _instrument() -> None:
    """Named ranges around each part of the model and of the epoch, put in from outside the loop."""
    create = training.create

    def instrumented(*args, **kwargs):
        model = create(*args, **kwargs)
        model.architecture.encode = _ranged("encoder", model.architecture.encode)
        model.architecture.decode = _ranged("decoder", model.architecture.decode)
        model.likelihood.target = _ranged("likelihood", model.likelihood.target)
        model.likelihood.log_prob = _ranged("likelihood", model.likelihood.log_prob)
        model.latent.posterior = _ranged("latent: posterior, z, KL", model.latent.posterior)
        model.latent.terms = _ranged("latent: posterior, z, KL", model.latent.terms)
        return model

    training.create = instrumented
    training.evaluate = _ranged("evaluation: test ELBO", training.evaluate)
    training._write_pictures = _ranged("pictures", training._write_pictures)
    if hasattr(training, "_Curves"):  # curves.png, drawn apart from the other pictures
        training._Curves.draw = _ranged("pictures", training._Curves.draw)
    from vaetool import fused
    fused.FusedStep.__call__ = _ranged("fused step: forward and backward by hand", fused.FusedStep.__call__)
    training._save_checkpoint = _ranged("saving: checkpoint, model", training._save_checkpoint)
    training.save = _ranged("saving: checkpoint, model", training.save)
    from vaetool.objectives.elbo import ELBO
    ELBO.loss = _ranged("objective", ELBO.loss)


def _is_arithmetic(name: str) -> bool:
    return any(key in name for key in ARITHMETIC)


def _row(event) -> str:
    name = event.name
    if name.startswith(RANGE):
        return name[len(RANGE):]
    if name.startswith("Optimizer."):
        return "optimizer (Adam step, zero_grad)"
    if name.startswith("autograd::engine::evaluate_function: "):
        node = name.split(": ", 1)[1]
        if _is_arithmetic(node):
            return "backward: matrix products / convolutions"
        return "backward: elementwise and reductions"
    if name.startswith("ProfilerStep"):
        return "profiler"
    return "loop glue (batch gather and cast, running sums, ...)"


def _arithmetic_time(event) -> float:
    """Self time (µs) of the matrix-product and convolution ops at or under ``event``."""
    total, stack = 0.0, [event]
    while stack:
        e = stack.pop()
        if _is_arithmetic(e.name) and not e.name.startswith(RANGE):
            total += e.cpu_time_total  # the whole op, kernels included; not counted twice below it
            continue
        stack.extend(e.cpu_children)
    return total


def profile(args) -> dict:
    config = TrainConfig(**MODELS[args.arch], likelihood="bernoulli", dataset="mnist", epochs=1,
                         batch_size=args.batch_size, lr=1e-3, seed=0, precision=args.precision,
                         train_limit=args.steps * args.batch_size, test_limit=args.test_images)
    options = RunOptions(compile=args.compile, channels_last=args.channels_last, fused_step=args.fused_step)
    with tempfile.TemporaryDirectory() as runs:  # once without the profiler, for the wall time
        started = time.perf_counter()
        result = training.train(config, Path(runs) / "plain", device="cpu", data_dir=args.data, options=options)
        wall = time.perf_counter() - started
    plain = result.metrics[-1]
    _instrument()
    with tempfile.TemporaryDirectory() as runs, torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        training.train(config, Path(runs) / "profiled", device="cpu", data_dir=args.data, options=options)
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in prof.events():
        if event.cpu_parent is None:
            row = rows[_row(event)]
            row[0] += event.cpu_time_total
            row[1] += _arithmetic_time(event)
    return {"rows": dict(rows), "wall_seconds": wall, "train_seconds": plain["train_seconds"],
            "epoch_seconds": plain["seconds"], "test_elbo": plain["test_elbo"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="data root holding MNIST/raw")
    parser.add_argument("--arch", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=10_000, help="images the per-epoch test ELBO covers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="default: as vaetool train chooses (on for convolutions on the CPU)")
    parser.add_argument("--fused-step", action=argparse.BooleanOptionalAction, default=None,
                        help="default: as vaetool train chooses (the hand-written step for the MLP)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = profile(args)
    rows = result["rows"]
    total = sum(t for t, _ in rows.values())
    steps = args.steps
    print(f"{args.arch} {args.precision}, {steps} steps of {args.batch_size}, test ELBO over {args.test_images} "
          f"images; {args.threads} thread(s); torch {torch.__version__}")
    print(f"without the profiler: training {result['train_seconds']:.2f} s ({1000 * result['train_seconds'] / steps:.2f}"
          f" ms/step), the epoch with evaluation and pictures {result['epoch_seconds']:.2f} s\n")
    print("| part | ms/step | share | of which matmul/conv |")
    print("| --- | --- | --- | --- |")
    for name, (time_us, arithmetic) in sorted(rows.items(), key=lambda item: -item[1][0]):
        print(f"| {name} | {time_us / 1000 / steps:.3f} | {100 * time_us / total:.1f}% | "
              f"{100 * arithmetic / time_us if time_us else 0:.0f}% |")
    arithmetic = sum(a for _, a in rows.values())
    print(f"| **total** | **{total / 1000 / steps:.3f}** | 100% | {100 * arithmetic / total:.0f}% |")
    print(json.dumps({"arch": args.arch, "precision": args.precision, "steps": steps, "threads": args.threads,
                      "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
                      "argv": sys.argv[1:], **result}))


if __name__ == "__main__":
    main()
