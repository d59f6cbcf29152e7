#!/usr/bin/env python3
"""What one training step costs under each of the CPU speed settings, measured side by side.

Each case runs in a fresh process (glibc's malloc settings are per process and cannot be undone),
trains ``--steps`` steps of vaetool's model on random MNIST-shaped batches after a few warm-up
steps — the training loop's own calls: ``model(x)``, the ELBO objective's loss, backward, the fused
Adam of ``vaetool.training.adam`` — and reports per step the wall time, the CPU time in user space
and in the kernel, and the minor page faults. The cases alternate round by round; reported are the
medians over ``--rounds`` rounds and each case's ratio to ``plain`` (the median of the per-round
ratios, on CPU time, which a loaded machine disturbs less than wall time).

- ``plain``: contiguous tensors, glibc's default malloc (what training did before);
- ``reuse``: :func:`vaetool.allocator.reuse_freed_memory`, as CPU training now does;
- ``channels-last``: the model and batches in channels-last;
- ``both``: reuse and channels-last, the CPU default for a conv net now;
- ``compile`` (only when named): ``torch.compile`` of the networks (its compile time is reported);
- ``fused`` (only when named, MLP models): reuse, and the hand-written step of :mod:`vaetool.fused`
  instead of autograd, as CPU training of the textbook MLP VAE now does.

``--arch burda`` is the IWAE paper's 784-200-200-50 tanh net on dynamically binarized batches, the
reproduction rows' model (with ``--batch-size 20``, the paper's batch).

    python benchmarks/step_costs.py --arch conv --rounds 6
    python benchmarks/step_costs.py --arch mlp --cases plain,reuse,compile --rounds 5
    python benchmarks/step_costs.py --arch mlp --cases plain,reuse,fused --rounds 7
    python benchmarks/step_costs.py --arch burda --batch-size 20 --cases plain,reuse,fused --rounds 7

Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = ("plain", "reuse", "channels-last", "both")
MODELS = {"mlp": {"latent_dim": 20, "architecture_options": {"hidden": [400]}}, "conv": {},
          "burda": {"latent_dim": 50, "architecture_options": {"hidden": [200, 200], "activation": "tanh"},
                    "likelihood_options": {"binarize": "dynamic"}}}


def child(case: str, arch: str, steps: int, threads: int, batch_size: int) -> dict:
    import torch

    import vaetool
    from vaetool import allocator, fused, training
    from vaetool.objectives.elbo import ELBO

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case in ("reuse", "both", "fused"):
        allocator.reuse_freed_memory()
    last = case in ("channels-last", "both")
    model = vaetool.create("mlp" if arch == "burda" else arch, "bernoulli", **MODELS[arch])
    if last:
        model = model.to(memory_format=torch.channels_last)
    compile_seconds = None
    if case == "compile":
        model.architecture.encode = torch.compile(model.architecture.encode)
        model.architecture.decode = torch.compile(model.architecture.decode)
    optimizer, objective = training.adam(model, 1e-3), ELBO()
    by_hand = fused.FusedStep(model, objective) if case == "fused" else None
    data = (torch.rand(10_000, 1, 28, 28) * 255).to(torch.uint8)
    generator = torch.Generator().manual_seed(1)

    def step():
        x = data[torch.randint(0, len(data), (batch_size,), generator=generator)].float().div_(255)
        if last:
            x = x.contiguous(memory_format=torch.channels_last)
        if by_hand is not None:  # the gradient is in .grad already
            objective.loss(by_hand(x, 0.0), 0.0)
            optimizer.step()
            return
        loss = objective.loss(model(x), 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    started = time.perf_counter()
    step()
    if case == "compile":
        compile_seconds = time.perf_counter() - started
    for _ in range(4):
        step()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_ms": 1000 * wall / steps, "user_ms": 1000 * (after.ru_utime - before.ru_utime) / steps,
            "sys_ms": 1000 * (after.ru_stime - before.ru_stime) / steps,
            "cpu_ms": 1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / steps,
            "faults": (after.ru_minflt - before.ru_minflt) / steps, "compile_seconds": compile_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(MODELS), default="conv")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="timed steps per case and round (default: 20 conv, 100 mlp)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (20 if args.arch == "conv" else 100)
    if args.child:
        print(json.dumps(child(args.child, args.arch, steps, args.threads, args.batch_size)))
        return
    cases = args.cases.split(",")
    if "plain" not in cases or not set(cases) <= {*CASES, "compile", "fused"}:
        sys.exit(f"--cases must include plain and name only {', '.join(CASES)}, compile, fused.")
    if "fused" in cases and args.arch == "conv":
        sys.exit("The fused step is the MLP's: --cases fused needs --arch mlp or burda.")
    rounds = []
    for i in range(args.rounds):
        results = {}
        for case in cases:
            out = subprocess.run([sys.executable, __file__, "--child", case, "--arch", args.arch, "--steps", str(steps),
                                  "--threads", str(args.threads), "--batch-size", str(args.batch_size)], check=True, capture_output=True, text=True).stdout
            results[case] = json.loads(out.strip().splitlines()[-1])
        rounds.append(results)
        print(f"round {i + 1}: " + "; ".join(f"{c} {r['cpu_ms']:.1f} ms CPU ({r['sys_ms']:.1f} kernel), "
                                             f"{r['faults']:.0f} faults" for c, r in results.items()), flush=True)
    summary = {"arch": args.arch, "threads": args.threads, "batch_size": args.batch_size, "steps": steps,
               "rounds": args.rounds, "cases": {}}
    print(f"\n{args.arch}, {args.threads} thread(s), median of {args.rounds} rounds of {steps} steps of "
          f"{args.batch_size}")
    print("| case | wall ms/step | CPU ms/step | of which kernel | page faults/step | CPU time vs plain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in cases:
        medians = {k: statistics.median(r[case][k] for r in rounds) for k in ("wall_ms", "cpu_ms", "sys_ms", "faults")}
        medians["speedup"] = statistics.median(r["plain"]["cpu_ms"] / r[case]["cpu_ms"] for r in rounds)
        if case == "compile":
            medians["compile_seconds"] = statistics.median(r[case]["compile_seconds"] for r in rounds)
        summary["cases"][case] = medians
        print(f"| {case} | {medians['wall_ms']:.1f} | {medians['cpu_ms']:.1f} | {medians['sys_ms']:.1f} | "
              f"{medians['faults']:.0f} | {medians['speedup']:.2f}× |"
              + (f" (first step, compiling: {medians['compile_seconds']:.0f} s)" if case == "compile" else ""))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
