"""The arithmetic limit of a training epoch: its FLOP count over the rate torch's matrix product reaches.

``flops_per_step`` counts, with ``torch.utils.flop_counter``, the multiply-adds of one training step
(forward and backward) of a vaetool model — the matrix products and convolutions, which is what any
implementation of the same model must compute. ``matmul_rate`` times the fastest fp32 matrix product
torch offers (its own, or oneDNN's where :mod:`vaetool.gemm` uses it) at the MLP's own largest shape
(128×784 by 784×400) on this machine, now, with the threads torch uses: the rate the products run at
when nothing else is in the way. A step can go no faster than
``flops / rate``, so ``limit / measured`` is how close a loop comes to the arithmetic.

Used by ``train_speed.py`` and ``peers.py``, which measure the rate again in every round, so that
the limit sees the same machine load as the epochs it is compared with.
"""
from __future__ import annotations

import statistics
import time

import torch

BATCH = 128


def flops_per_step(architecture: str, latent_dim: int, architecture_options: dict, batch: int = BATCH) -> float:
    """FLOPs (2 per multiply-add) of one step of the ELBO's forward and backward pass on MNIST's shape."""
    from unittest import mock

    from torch.utils.flop_counter import FlopCounterMode

    import vaetool
    from vaetool import gemm

    model = vaetool.create(architecture, "bernoulli", latent_dim=latent_dim, architecture_options=architecture_options)
    x = torch.rand(batch, *model.input_shape)
    # Counted with torch's own products: the flop counter knows aten's matrix products, not oneDNN's operator.
    with mock.patch.object(gemm, "onednn_available", lambda: False), FlopCounterMode(display=False) as counter:
        (-model.elbo(x).elbo.mean()).backward()
    return float(counter.get_total_flops())


def matmul_rate(seconds: float = 0.5, which: str = "fastest") -> float:
    """FLOP/s of the fastest fp32 matrix product this torch offers at the MLP's largest shape — torch's own
    (``torch.mm``, MKL on x86) or oneDNN's (:mod:`vaetool.gemm`, where it applies), whichever is faster
    now: the median of timings over ``seconds`` each (the median rather than the best, so that the rate
    sees the load the epochs see). Counting the faster one keeps the limit a limit whichever library
    vaetool's step uses on this CPU. ``which="torch"``: torch.mm's rate alone, the limit as it was
    defined before vaetool used oneDNN (and as the reference and Pythae, which use torch.mm, see it)."""
    from vaetool import gemm

    a, b = torch.rand(BATCH, 784), torch.rand(784, 400)
    weight = b.t().contiguous()
    products = [lambda: a @ b]
    if which == "fastest" and gemm.onednn_works():  # whether or not this CPU's products go there
        products.append(lambda: gemm.linear(a, weight))
    return max(_rate(product, seconds) for product in products)


def _rate(product, seconds: float) -> float:
    for _ in range(5):
        product()
    rates, flops = [], 2 * BATCH * 784 * 400
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        started = time.perf_counter()
        for _ in range(10):
            product()
        rates.append(10 * flops / (time.perf_counter() - started))
    return statistics.median(rates)
