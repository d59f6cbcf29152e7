#!/usr/bin/env python3
"""The CPU kernels a training step is made of, timed alone: which of them this torch build vectorises.

A kernel that is not vectorised costs as much as a matrix product's share of the step, and the
cure is to write the same function with kernels that are. Each row is a pair — what PyTorch's
usual spelling runs, and what vaetool runs instead — on the shapes of the textbook MLP (a 128×784
batch of logits, a 128×400 hidden layer) and of the IWAE paper's net, one thread by default, median of ``--rounds`` timings of 50
calls each, in microseconds. The ratio is in the same run, so a loaded machine moves both alike.

    python benchmarks/kernels.py
    python benchmarks/kernels.py --threads 2

Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from inference_speed import cpu_name


def pairs() -> list[tuple[str, str, object, str, object]]:
    """(what, the usual spelling, its call, vaetool's, its call)."""
    from vaetool import gemm
    from vaetool.likelihoods.bernoulli import log_prob, log_prob_and_mean, sum_of_logs

    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(128, 784, generator=generator)
    x = (torch.rand(128, 784, generator=generator) < 0.3).float()
    leaf = logits.clone().requires_grad_()
    hidden = torch.relu(torch.randn(128, 400, generator=generator))
    tanh = torch.tanh(torch.randn(128, 400, generator=generator))
    grad = torch.randn(128, 400, generator=generator)
    tails = logits.abs().neg_().exp_()  # exp(−|l|), in (0, 1]: what log1p is given in a cross-entropy
    larger = torch.sigmoid(logits.abs())  # max(σ(l), 1 − σ(l)), in [½, 1]: what the Bernoulli takes logarithms of

    def bce_backward():
        F.binary_cross_entropy_with_logits(leaf, x, reduction="none").sum().backward()

    def ours_backward():
        log_prob(x, leaf).sum().backward()

    def product(m: int, k: int, n: int):
        a, w = torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator)
        return (f"matrix product {m}×{k} by {k}×{n}", "torch.mm (MKL)", lambda: torch.mm(a, w.t()),
                "gemm.linear (oneDNN where it applies)", lambda: gemm.linear(a, w))

    return [
        product(128, 784, 400),  # the textbook MLP's largest layer, batch 128
        product(1000, 200, 784),  # the IWAE paper's decoder output at K = 1000 samples of one image
        product(20, 784, 200),  # the IWAE paper's first layer at its batch of 20
        product(20, 200, 200),  # its hidden layer: below gemm.MIN_MULTIPLY_ADDS, so torch's own
        ("Bernoulli log p(x|z), forward", "binary_cross_entropy_with_logits",
         lambda: F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1),
         "x·l − relu(l) + log Π max(σ(l), 1 − σ(l)) per 112 pixels", lambda: log_prob(x, logits)),
        ("Bernoulli log p(x|z) and σ(l), the hand-written step's gradient", "the cross-entropy, then sigmoid",
         lambda: (F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1),
                  torch.sigmoid(logits)),
         "bernoulli.log_prob_and_mean", lambda: log_prob_and_mean(x, logits)),
        ("Bernoulli log p(x|z), forward and backward", "binary_cross_entropy_with_logits", bce_backward,
         "the same, its backward x − σ(l)", ours_backward),
        ("one function of 128×784 values in (0, 1]", "log1p", lambda: torch.log1p(tails), "log(1 + x)",
         lambda: torch.log(tails + 1)),
        ("Σ log of 128×784 values in [½, 1], per image", "log(m).sum(1)", lambda: larger.log().sum(1),
         "bernoulli.sum_of_logs (a log per 112)", lambda: sum_of_logs(larger)),
        ("ReLU's backward, 128×400", "masked_fill_(out <= 0, 0)", lambda: grad.clone().masked_fill_(hidden <= 0, 0.0),
         "aten threshold_backward", lambda: torch.ops.aten.threshold_backward(grad, hidden, 0.0)),
        ("tanh's backward, 128×400", "grad · (1 − out²)", lambda: grad.mul(1.0 - tanh * tanh),
         "aten tanh_backward", lambda: torch.ops.aten.tanh_backward(grad, tanh)),
    ]


def timed(call, rounds: int) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(50):
            call()
        times.append((time.perf_counter() - started) / 50 * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"torch {torch.__version__}, {cpu_name()}, {args.threads} thread(s), median of {args.rounds} rounds of 50 calls")
    print("| what | usual spelling | µs | vaetool's | µs | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for what, usual, usual_call, ours, ours_call in pairs():
        # Alternating, so that both see the same load.
        a, b = [], []
        for _ in range(3):
            a.append(timed(usual_call, args.rounds))
            b.append(timed(ours_call, args.rounds))
        usual_us, ours_us = statistics.median(a), statistics.median(b)
        rows.append({"what": what, "usual": usual, "usual_us": usual_us, "vaetool": ours, "vaetool_us": ours_us})
        print(f"| {what} | `{usual}` | {usual_us:.0f} | {ours} | {ours_us:.0f} | {usual_us / ours_us:.1f}× |")
    print(json.dumps({"threads": args.threads, "torch": torch.__version__, "cpu": cpu_name(), "rows": rows}))


if __name__ == "__main__":
    main()
