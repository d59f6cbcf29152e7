#!/usr/bin/env python3
"""The textbook MLP's hand-written step with its products through oneDNN against through torch's own
(MKL's), in one process: which library :mod:`vaetool.gemm` should pick on this CPU.

Two copies of the same model, each with its own Adam, take the same batches step by step, one with
:func:`vaetool.gemm.linear` on oneDNN and one on torch's product (which goes first alternates), so
both see the same load to within a step. ``vaetool.gemm`` itself chooses by the CPU's vendor — oneDNN
on AMD's cores, MKL on Intel's — and says which it chose here.

    python benchmarks/gemm_ab.py
    python benchmarks/gemm_ab.py --rounds 20 --steps 100

Prints, per round, the median µs a step of each and their ratio; last, the median of the per-round
ratios (oneDNN's time over torch's: above 1, torch's product is faster here) and one JSON line.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from step_ops import alternated, random_batches, timed_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    import vaetool
    from vaetool import allocator, fused, gemm, training
    from vaetool.objectives.elbo import ELBO

    if not gemm.onednn_works():
        parser.error("this torch has no working oneDNN linear operator on this machine: nothing to compare")
    chosen = "oneDNN" if gemm.onednn_available() else "torch's"
    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]})
    steps = {}
    for library, m in (("onednn", model), ("torch", copy.deepcopy(model))):
        optimizer = training.adam(m, 1e-3)
        steps[library] = (fused.FusedStep(m, ELBO(), optimizer), optimizer)
    batches = random_batches()
    chooses = gemm.onednn_available

    def step(library: str, x: torch.Tensor) -> float:
        gemm.onednn_available = (lambda: True) if library == "onednn" else (lambda: False)
        try:
            return timed_step(*steps[library], x)
        finally:
            gemm.onednn_available = chooses

    def report(r, a, b):
        print(f"round {r}: oneDNN {a:.0f} µs, torch's {b:.0f} µs, ratio {a / b:.3f}", flush=True)

    rounds = [{"onednn_us": a, "torch_us": b, "ratio": a / b}
              for a, b in alternated(lambda x: step("onednn", x), lambda x: step("torch", x),
                                     batches, args.rounds, args.steps, report)]
    ratio = statistics.median(r["ratio"] for r in rounds)
    print(f"median of {args.rounds} per-round ratios (oneDNN's over torch's): {ratio:.3f} "
          f"({statistics.median(r['onednn_us'] for r in rounds):.0f} against "
          f"{statistics.median(r['torch_us'] for r in rounds):.0f} µs a step); "
          f"vaetool chooses {chosen} products on this CPU ({gemm.cpu_vendor() or 'vendor unknown'})")
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "vendor": gemm.cpu_vendor(),
                      "chosen": chosen, "rounds": rounds, "ratio": ratio}))


if __name__ == "__main__":
    main()
