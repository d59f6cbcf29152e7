#!/usr/bin/env python3
"""The textbook MLP's hand-written step of this checkout against another checkout's, in one process.

On a shared host the load changes within minutes, so two versions timed one after the other differ
by more than a change to the step's small kernels saves. Here both steps run in the same process,
on the same batches, one after the other step by step (which goes first alternates), each on its
own copy of the same model with its own Adam: the same load for both, to within a step.

``--against`` is a vaetool checkout (a ``git worktree`` of an earlier commit, say); its
``vaetool/fused.py`` and ``vaetool/likelihoods/bernoulli.py`` are loaded beside this checkout's, and
everything else they import is this checkout's — so it compares changes to those two files.

    git worktree add /tmp/before 559e29c
    python benchmarks/step_ab.py --against /tmp/before

Prints, per round of ``--steps`` steps, the median µs of each and their ratio; last, the median of
the per-round ratios (the other's time over this checkout's: above 1, this one is faster) and one
JSON line.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
from pathlib import Path

import torch

from step_ops import alternated, random_batches, timed_step


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, required=True, help="another vaetool checkout")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    fused_file, bernoulli_file = (args.against / "vaetool" / "fused.py",
                                  args.against / "vaetool" / "likelihoods" / "bernoulli.py")
    if not fused_file.is_file() or not bernoulli_file.is_file():
        parser.error(f"{args.against} is not a vaetool checkout with vaetool/fused.py")

    import vaetool
    from vaetool import allocator, fused, training
    from vaetool.objectives.elbo import ELBO

    other = load("other_fused", fused_file)
    other.bernoulli = load("other_bernoulli", bernoulli_file)  # the name its step calls
    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]})
    theirs_model = copy.deepcopy(model)
    ours_opt, theirs_opt = training.adam(model, 1e-3), training.adam(theirs_model, 1e-3)
    ours = (fused.FusedStep(model, ELBO(), ours_opt), ours_opt)
    theirs = (other.FusedStep(theirs_model, ELBO(), theirs_opt), theirs_opt)
    batches = random_batches()

    def report(r, b, a):
        print(f"round {r}: {args.against} {a:.0f} µs, this checkout {b:.0f} µs, ratio {a / b:.3f}", flush=True)

    rounds = [{"against_us": a, "this_us": b, "ratio": a / b}
              for b, a in alternated(lambda x: timed_step(*ours, x), lambda x: timed_step(*theirs, x),
                                     batches, args.rounds, args.steps, report)]
    ratio = statistics.median(r["ratio"] for r in rounds)
    print(f"median of {args.rounds} per-round ratios: {ratio:.3f} "
          f"({statistics.median(r['against_us'] for r in rounds):.0f} against "
          f"{statistics.median(r['this_us'] for r in rounds):.0f} µs a step)")
    print(json.dumps({"against": str(args.against), "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "rounds": rounds, "ratio": ratio}))


if __name__ == "__main__":
    main()
