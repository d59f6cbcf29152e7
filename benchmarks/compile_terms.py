#!/usr/bin/env python3
"""The hand-written MLP step with its elementwise terms compiled by ``torch.compile``: does it pay?

What is left of the textbook MLP's step besides its matrix products and Adam is some fifty small
kernels between the products: the Gaussian posterior, z and the KL; the Bernoulli's log-probability
and gradient; the latent's backward pass. A compiler fuses them into a few loops. Here those three
stretches of ``vaetool/fused.py``'s step are compiled (inductor, static shapes, the products and Adam
left as they are, ε drawn eagerly so the random draws stay autograd's), and the step is timed against
the plain one in one process, on the same batches, alternating step by step (as ``step_ab.py``).

Reported: the seconds the three compilations took in this process (run the script twice: the second
run finds inductor's cache, ``--cache``, warm), the median µs of each step per round and the median of
the per-round ratios, and how many epochs of 469 steps the compile time needs to pay back. Before
timing, both steps train a copy of the same model for 30 steps and their weights are compared.

    python benchmarks/compile_terms.py --cache /tmp/compile-terms     # cold: compiles
    python benchmarks/compile_terms.py --cache /tmp/compile-terms     # warm: inductor's cache

Prints the rows and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="inductor's cache folder (TORCHINDUCTOR_CACHE_DIR)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache  # read when inductor is first imported
    import torch

    import vaetool
    from vaetool import allocator, fused, training
    from vaetool.likelihoods import bernoulli
    from vaetool.model import ELBOTerms
    from vaetool.objectives.elbo import ELBO

    from step_ops import random_batches, timed_step

    def posterior(out, eps, L: int):
        mean, raw = out[:, :L], out[:, L:]
        log_var = raw.clamp(-30.0, 20.0)
        std = torch.exp(0.5 * log_var)
        return mean + std * eps, log_var, std

    def terms(target, logits, mean, log_var, n: int):
        reconstruction, sigma = bernoulli.log_prob_and_mean(target, logits)
        kl = 0.5 * (mean * mean + torch.exp(log_var) - 1.0 - log_var)
        return reconstruction, kl, (sigma - target) / n

    def latent_backward(grad_z, out, eps, std, log_var, c: float, L: int):
        mean, raw = out[:, :L], out[:, L:]
        grad_log_var = grad_z * eps * std * 0.5 + (torch.exp(log_var) - 1.0) * (0.5 * c)
        return torch.cat([grad_z + mean * c, torch.where(log_var != raw, 0.0, grad_log_var)], 1)

    compiled = [torch.compile(f, fullgraph=True, dynamic=False) for f in (posterior, terms, latent_backward)]

    class CompiledTerms(fused.FusedStep):
        """FusedStep's __call__ with its three elementwise stretches compiled (beta fixed at the objective's)."""

        @torch.no_grad()
        def __call__(self, x, epochs_done):
            L, n = self.latent_dim, len(x)
            update = self.update if self.update is not None and self.update.ready() else None
            if update is not None:
                update.begin()
            target = self.model.likelihood.target(x).flatten(1)
            out, encoded = fused._forward(self.encoder, target)
            eps = torch.randn((n, L))
            z, log_var, std = compiled[0](out, eps, L)
            logits, decoded = fused._forward(self.decoder, z)
            reconstruction, kl, grad = compiled[1](target, logits, out[:, :L], log_var, n)
            grad_z = fused._backward(self.decoder, decoded, grad, input_grad=True, update=update)
            beta = self.objective.beta_at(epochs_done)
            grad_out = compiled[2](grad_z, out, eps, std, log_var, beta / n, L)
            fused._backward(self.encoder, encoded, grad_out, input_grad=False, update=update)
            self.stepped = update is not None
            return ELBOTerms(reconstruction, kl, z)

    allocator.reuse_freed_memory()  # as CPU training does
    torch.manual_seed(0)
    model = vaetool.create("mlp", "bernoulli", latent_dim=20, architecture_options={"hidden": [400]})
    other = copy.deepcopy(model)
    plain_opt, compiled_opt = training.adam(model, 1e-3), training.adam(other, 1e-3)
    plain = (fused.FusedStep(model, ELBO(), plain_opt), plain_opt)
    terms_step = (CompiledTerms(other, ELBO(), compiled_opt), compiled_opt)
    batches = random_batches()

    scratch = copy.deepcopy(model)  # compiled on a copy, so that the two timed models stay equal
    scratch_opt = training.adam(scratch, 1e-3)
    started = time.perf_counter()
    timed_step(CompiledTerms(scratch, ELBO(), scratch_opt), scratch_opt, next(batches))  # compiles all three
    compile_s = time.perf_counter() - started
    print(f"compiling the three stretches: {compile_s:.1f} s (cache {args.cache})", flush=True)

    # The same 30 steps both ways, from the same weights and random draws: the same training.
    for i in range(30):
        x = next(batches)
        torch.manual_seed(100 + i)
        timed_step(*plain, x)
        torch.manual_seed(100 + i)
        timed_step(*terms_step, x)
    difference = max((a - b).abs().max().item() for a, b in zip(model.parameters(), other.parameters()))
    print(f"largest weight difference after 30 steps: {difference:.2e}", flush=True)

    rounds = []
    for r in range(args.rounds):
        plain_times, compiled_times = [], []
        for i in range(args.steps):
            x = next(batches)
            first, second = (plain, terms_step) if (i + r) % 2 else (terms_step, plain)
            t_first, t_second = timed_step(*first, x), timed_step(*second, x)
            (plain_times if first is plain else compiled_times).append(t_first)
            (compiled_times if first is plain else plain_times).append(t_second)
        a, b = 1e6 * statistics.median(plain_times), 1e6 * statistics.median(compiled_times)
        rounds.append({"plain_us": a, "compiled_us": b, "ratio": a / b})
        print(f"round {r + 1}: plain {a:.0f} µs, compiled terms {b:.0f} µs, ratio {a / b:.3f}", flush=True)
    ratio = statistics.median(r["ratio"] for r in rounds)
    plain_us = statistics.median(r["plain_us"] for r in rounds)
    compiled_us = statistics.median(r["compiled_us"] for r in rounds)
    saved_per_epoch = (plain_us - compiled_us) * 1e-6 * 469
    payback = compile_s / saved_per_epoch if saved_per_epoch > 0 else float("inf")
    print(f"median of {args.rounds} per-round ratios: {ratio:.3f} ({plain_us:.0f} against {compiled_us:.0f} µs a "
          f"step); {saved_per_epoch * 1e3:.0f} ms saved an epoch of 469 steps: the compile pays back after "
          f"{payback:.0f} epochs")
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "compile_s": compile_s,
                      "weight_difference": difference, "rounds": rounds, "ratio": ratio,
                      "payback_epochs": payback}))


if __name__ == "__main__":
    main()
