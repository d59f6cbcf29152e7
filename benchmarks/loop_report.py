#!/usr/bin/env python3
"""A training step's report — its loss and running sums — taken right after the step or at the refresh.

The loop reports every step's loss, log p(x|z) and KL in running sums (``vaetool.training._RunningSums``).
With autograd the loss must exist at once, its backward pass needs it; the hand-written step of
``vaetool.fused`` has written the gradient itself, so its loss is only reported, and the loop keeps
the step's terms until the next refresh (a quarter of a second) and sums all kept steps then.

This times both ways in one process, on the same model and batches, alternating round by round:
``each step`` adds every step's loss and sums right after it; ``at refresh`` keeps them and reads the
sums every ``--refresh`` steps, as the loop does. Each step is the textbook MLP's (784-400-20,
batch 128, fused Adam) on a random-row batch of 60,000 random MNIST-shaped images, gathered and
cast as the loop does. Both ways end with the same sums, which the script checks.

    python benchmarks/loop_report.py --rounds 10

Prints, per round, µs a step for the report alone and for the whole step with it; last, the medians,
the median of the per-round ratios of the whole (above 1: the refresh's way is faster) and one
JSON line.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--refresh", type=int, default=100, help="steps between two reads of the sums")
    args = parser.parse_args()

    import vaetool
    from vaetool import allocator, fused, training
    from vaetool.model import with_latent_loss
    from vaetool.objectives.elbo import ELBO

    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]})
    optimizer, objective = training.adam(model, 1e-3), ELBO()
    step = fused.FusedStep(model, objective, optimizer)
    images = (torch.rand(60_000, 784) * 255).to(torch.uint8)
    batch = 128
    weight = model.likelihood.training_weight(images[:1])

    def loss_of(terms, weight, at):
        return with_latent_loss(objective.loss(terms.weighted(weight), at), terms)

    def one_round(later: bool, order: torch.Tensor) -> tuple[float, float, list[float]]:
        sums = training._RunningSums(torch.zeros(3), loss_of)
        reporting = 0.0
        started = time.perf_counter()
        for i in range(args.steps):
            rows = order[(i % (len(order) // batch)) * batch:][:batch]
            x = torch.index_select(images, 0, rows).float().div_(255)
            at = i / args.steps
            terms = step(x, at)
            if not step.stepped:  # the first step makes Adam's moments
                optimizer.step()
            t = time.perf_counter()
            if later:
                sums.add_later(terms, weight, at, len(x))
                if (i + 1) % args.refresh == 0:
                    sums.value()
            else:
                sums.add(loss_of(terms, weight, at), terms, len(x))
            reporting += time.perf_counter() - t
        t = time.perf_counter()
        totals = sums.value().tolist()
        reporting += time.perf_counter() - t
        whole = time.perf_counter() - started
        return reporting / args.steps * 1e6, whole / args.steps * 1e6, totals

    one_round(False, torch.randperm(len(images)))  # warm-up
    rows = {"each step": [], "at refresh": []}
    for r in range(args.rounds):
        order = torch.randperm(len(images))
        # The same batches for both ways; the same starting weights too, so their sums must agree.
        state = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        results = {}
        for later in ([False, True] if r % 2 else [True, False]):
            model.load_state_dict(state[0])
            optimizer.load_state_dict(copy.deepcopy(state[1]))  # load_state_dict keeps the tensors it is given
            torch.manual_seed(r)  # the same ε
            results[later] = one_round(later, order)
        if results[False][2] != results[True][2]:
            raise SystemExit(f"the two ways' sums differ: {results[False][2]} against {results[True][2]}")
        rows["each step"].append(results[False][:2])
        rows["at refresh"].append(results[True][:2])
        print(f"round {r + 1}: each step {results[False][0]:.1f} µs report, {results[False][1]:.0f} µs a step; "
              f"at refresh {results[True][0]:.1f} µs report, {results[True][1]:.0f} µs a step")
    ratio = statistics.median(a[1] / b[1] for a, b in zip(rows["each step"], rows["at refresh"]))
    medians = {name: {"report_us": statistics.median(v[0] for v in values),
                      "step_us": statistics.median(v[1] for v in values)} for name, values in rows.items()}
    for name, m in medians.items():
        print(f"{name}: report {m['report_us']:.1f} µs, step and report {m['step_us']:.0f} µs")
    print(f"median of {args.rounds} per-round ratios (each step over at refresh): {ratio:.3f}")
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds,
                      "steps": args.steps, "refresh": args.refresh, "medians": medians, "ratio": ratio}))


if __name__ == "__main__":
    main()
