#!/usr/bin/env python3
"""The default conv VAE's training step on the CPU, primitive by primitive: oneDNN's own times and rates.

Trains ``vaetool.create("conv", "bernoulli")`` — the quick start's model — as ``vaetool train`` does on
the CPU (channels-last, the fused Adam of ``vaetool.training.adam``, the ELBO) on random MNIST-shaped
batches of ``--batch-size``, in a child process with ``ONEDNN_VERBOSE=1``, and sums the time oneDNN
reports for each primitive over the last ``--steps`` steps. Each convolution's multiply-adds come from
its own descriptor (``mb, ic, oc`` and the spatial sizes), so each row carries its GFLOP/s: which
kernels run near the matrix product's rate and which do not. A second child without the verbose log
times the same steps, so the share of the step that oneDNN's primitives take is on the last line.

    python benchmarks/conv_primitives.py
    python benchmarks/conv_primitives.py --threads 1 --steps 20

Prints a Markdown table (ms a step, sorted) and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

WARMUP = 10


def child(steps: int, batch_size: int) -> None:
    import torch

    import vaetool
    from vaetool import allocator, training
    from vaetool.objectives.elbo import ELBO

    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("conv", "bernoulli", latent_dim=16).to(memory_format=torch.channels_last)
    optimizer, objective = training.adam(model, 1e-3), ELBO()
    data = torch.rand(2_000, 1, 28, 28)
    for i in range(WARMUP + steps):
        x = data[torch.randint(0, len(data), (batch_size,))].contiguous(memory_format=torch.channels_last)
        print("STEP", flush=True)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        objective.loss(model.elbo(x), 0.0).backward()
        optimizer.step()
        print(f"TOOK {time.perf_counter() - started}", flush=True)


def multiply_adds(kind: str, shape: str) -> float | None:
    """Multiply-adds of one convolution or deconvolution, from oneDNN's ``mb128_ic32oc64_ih14oh7kh4...``."""
    sizes = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", shape)}
    try:
        if kind == "convolution":  # one kernel window per output position
            return sizes["mb"] * sizes["ic"] * sizes["oc"] * sizes["oh"] * sizes["ow"] * sizes["kh"] * sizes["kw"]
        if kind == "deconvolution":  # one kernel window per input position
            return sizes["mb"] * sizes["ic"] * sizes["oc"] * sizes["ih"] * sizes["iw"] * sizes["kh"] * sizes["kw"]
    except KeyError:
        return None
    return None


def run_child(args, verbose: bool) -> list[str]:
    env = dict(os.environ, ONEDNN_VERBOSE="1" if verbose else "0")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    command = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps summed, after 10 of warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the child (default: torch's own choice)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.steps, args.batch_size)

    plain = run_child(args, verbose=False)
    took = [float(line.split()[1]) for line in plain if line.startswith("TOOK")]
    step_ms = 1e3 * statistics.median(took[WARMUP:])
    logged = run_child(args, verbose=True)
    starts = [i for i, line in enumerate(logged) if line == "STEP"]
    totals: dict[tuple[str, str, str, str], float] = collections.defaultdict(float)
    for line in logged[starts[WARMUP]:]:
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        fields = line.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,KIND,IMPLEMENTATION,PROPAGATION,...,SHAPE,MS
        kind, implementation, propagation, shape = fields[5], fields[6], fields[7], fields[-2]
        totals[(kind, implementation, propagation, shape)] += float(fields[-1])

    rows = []
    for (kind, implementation, propagation, shape), ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        ms /= args.steps
        macs = multiply_adds(kind, shape)
        rows.append({"primitive": kind, "implementation": implementation, "pass": propagation, "shape": shape,
                     "ms_per_step": ms, "gflops": 2 * macs / (ms * 1e6) if macs and ms > 0 else None})
    onednn_ms = sum(r["ms_per_step"] for r in rows)
    flops = sum(2 * (multiply_adds(r["primitive"], r["shape"]) or 0) for r in rows)
    print(f"conv VAE, batch {args.batch_size}, torch threads {args.threads or 'default'}: step {step_ms:.1f} ms "
          f"(median of {args.steps}, no log); oneDNN's primitives {onednn_ms:.1f} ms of it "
          f"({100 * onednn_ms / step_ms:.0f}%), {flops / 1e9:.2f} GFLOP at {flops / onednn_ms / 1e6:.0f} GFLOP/s")
    print("| ms a step | GFLOP/s | primitive | pass | implementation | shape |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r["ms_per_step"] >= 0.05:
            rate = f"{r['gflops']:.0f}" if r["gflops"] else "—"
            print(f"| {r['ms_per_step']:.2f} | {rate} | {r['primitive']} | {r['pass']} | {r['implementation']} | "
                  f"{r['shape']} |")
    print(json.dumps({"step_ms": step_ms, "onednn_ms": onednn_ms, "gflop": flops / 1e9, "rows": rows}))


if __name__ == "__main__":
    main()
