#!/usr/bin/env python3
"""The textbook MLP's hand-written step, its matrix products and Adam's updates timed inside the step
and alone: what the same kernel costs between the others, against what a loop of it alone says.

Runs :class:`vaetool.fused.FusedStep` — the step ``vaetool train`` takes for the 784-400-20 MLP on
the CPU, Adam's update inside it — for ``--steps`` steps of random MNIST-shaped batches, with every
call of ``vaetool.gemm.linear`` and of the per-layer Adam update timed where it happens (wrapped
from outside; the step's code is not changed). Then each product is timed alone, back to back, on
operands of the same shapes and layouts (a transposed view stays a transposed view). The rest of
the step — the latent, the Bernoulli, the activations' and biases' gradients, the transposed copies
— is the step's time less those.

    python benchmarks/step_ops.py
    python benchmarks/step_ops.py --threads 1 --batch-size 64   # half the batch on one core
    python benchmarks/step_ops.py --evict-mb 32   # each product alone after a 32 MB sweep

With ``--evict-mb`` every call of a product alone comes after a sweep over a buffer of that many
megabytes (not timed), so its operands come from wherever the sweep left them — past the cores' own
caches, as between the step's other kernels — instead of staying cached from the call before.

Prints a table (median µs per step) and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch


def transposed(t: torch.Tensor) -> bool:
    """Whether ``t`` is the transposed view of a contiguous matrix."""
    return t.dim() == 2 and t.stride(0) == 1 and t.shape[1] > 1


def describe(x, weight, bias, activation) -> str:
    def operand(t):
        return f"{t.shape[0]}×{t.shape[1]}{'ᵀ-view' if transposed(t) else ''}"
    return f"{operand(x)} · ({operand(weight)})ᵀ" + (" + b" if bias is not None else "") + \
        (f", {activation}" if activation != "none" else "")


def alike(t: torch.Tensor) -> torch.Tensor:
    """A random tensor of ``t``'s shape and layout (a transposed view stays one)."""
    if transposed(t):
        return torch.randn(t.shape[1], t.shape[0]).t()
    return torch.randn(t.shape)


def alone_us(fn, calls: int = 200, sweep: torch.Tensor | None = None) -> float:
    """The median µs of ``calls`` calls of ``fn`` back to back, after 20 to warm up; with ``sweep``, each
    call after an untimed pass over it."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(calls):
        if sweep is not None:
            sweep.add_(1.0)
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e6 * statistics.median(times)


def random_batches(batch_size: int = 128):
    """Endless batches of random rows of 60,000 random MNIST-shaped images, gathered and cast as the
    trainer does (the same sequence in every process)."""
    data = (torch.rand(60_000, 784) * 255).to(torch.uint8)
    generator = torch.Generator().manual_seed(1)
    while True:
        rows = torch.randint(0, len(data), (batch_size,), generator=generator)
        yield torch.index_select(data, 0, rows).float().div_(255)


def timed_step(step, optimizer, x: torch.Tensor) -> float:
    """Seconds of one hand-written step on ``x``, with Adam's own step where the fused step did not take it
    (the first step, which makes Adam's moments)."""
    started = time.perf_counter()
    step(x, 0.0)
    if not step.stepped:
        optimizer.step()
    return time.perf_counter() - started


def alternated(first, second, batches, rounds: int, steps: int, report) -> list[tuple[float, float]]:
    """The median µs a step of ``first`` and of ``second`` (each a function of a batch returning its seconds)
    in each of ``rounds`` rounds of ``steps`` batches, both on every batch and the one to go first
    alternating, after 20 batches of warm-up each; ``report(round, first_us, second_us)`` after each."""
    for _ in range(20):
        x = next(batches)
        first(x), second(x)
    medians = []
    for r in range(rounds):
        times: tuple[list[float], list[float]] = ([], [])
        for i in range(steps):
            x = next(batches)
            for k in ((0, 1) if (i + r) % 2 else (1, 0)):
                times[k].append((first, second)[k](x))
        medians.append((1e6 * statistics.median(times[0]), 1e6 * statistics.median(times[1])))
        report(r + 1, *medians[-1])
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, help="torch's threads (default: torch's own choice)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--evict-mb", type=float, default=0,
                        help="sweep this many MB before each product timed alone (default: none, operands stay cached)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import vaetool
    from vaetool import allocator, fused, gemm, training
    from vaetool.objectives.elbo import ELBO

    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]})
    optimizer, objective = training.adam(model, 1e-3), ELBO()
    step = fused.FusedStep(model, objective, optimizer)

    timings: dict[str, list[float]] = defaultdict(list)  # µs of each call, in order
    operands: dict[str, tuple] = {}
    linear, update, begin = gemm.linear, fused._AdamUpdate.__call__, fused._AdamUpdate.begin

    def timed_linear(x, weight, bias=None, activation="none"):
        started = time.perf_counter()
        out = linear(x, weight, bias, activation)
        key = describe(x, weight, bias, activation)
        timings[key].append(1e6 * (time.perf_counter() - started))
        operands.setdefault(key, (x, weight, bias, activation))
        return out

    def timed_update(self, layer):
        started = time.perf_counter()
        update(self, layer)
        timings[f"Adam's update, {layer.out_features}×{layer.in_features} layer"].append(
            1e6 * (time.perf_counter() - started))

    def timed_begin(self):
        started = time.perf_counter()
        begin(self)
        timings["Adam's step count, every parameter"].append(1e6 * (time.perf_counter() - started))

    gemm.linear, fused._AdamUpdate.__call__, fused._AdamUpdate.begin = timed_linear, timed_update, timed_begin
    batches = random_batches(args.batch_size)
    steps = [1e6 * timed_step(step, optimizer, next(batches)) for _ in range(args.steps + 50)]
    gemm.linear, fused._AdamUpdate.__call__, fused._AdamUpdate.begin = linear, update, begin

    warm = 50
    per_step = {key: statistics.median(t[warm * len(t) // len(steps):]) * len(t) / len(steps)
                for key, t in timings.items()}
    step_us = statistics.median(steps[warm:])
    sweep = torch.zeros(int(args.evict_mb * 2**20 / 4)) if args.evict_mb else None
    rows = []
    for key, us in per_step.items():
        row = {"op": key, "in_step_us": us}
        if key in operands:
            x, weight, bias, activation = operands[key]
            x, weight, bias = alike(x), alike(weight), (torch.randn(bias.shape) if bias is not None else None)
            row["alone_us"] = alone_us(lambda: linear(x, weight, bias, activation), sweep=sweep)
        rows.append(row)
    products = sum(r["in_step_us"] for r in rows if "alone_us" in r)
    adam = sum(r["in_step_us"] for r in rows if "alone_us" not in r)
    print(f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, median of {args.steps} steps "
          f"of {args.batch_size}"
          f"{f', products alone after a {args.evict_mb:g} MB sweep' if sweep is not None else ''}: "
          f"step {step_us:.0f} µs")
    print("| op | µs in the step | µs alone | in the step / alone |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        alone = f"{r['alone_us']:.0f} | {r['in_step_us'] / r['alone_us']:.2f}" if "alone_us" in r else "— | —"
        print(f"| {r['op']} | {r['in_step_us']:.0f} | {alone} |")
    alone_total = sum(r["alone_us"] for r in rows if "alone_us" in r)
    print(f"| all products | {products:.0f} | {alone_total:.0f} | {products / alone_total:.2f} |")
    print(f"| Adam's updates | {adam:.0f} | | |")
    rest = step_us - products - adam
    print(f"| the rest (latent, Bernoulli, activations' and biases' gradients, copies) | {rest:.0f} | | |")
    print(json.dumps({"threads": torch.get_num_threads(), "batch_size": args.batch_size, "evict_mb": args.evict_mb,
                      "torch": torch.__version__, "step_us": step_us,
                      "rows": rows, "products_us": products, "products_alone_us": alone_total, "adam_us": adam}))


if __name__ == "__main__":
    main()
