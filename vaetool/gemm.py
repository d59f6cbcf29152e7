"""Dense layers' matrix products on the CPU through oneDNN, where this torch build has it.

torch's own CPU matrix product (``torch.mm``, ``addmm``, ``nn.Linear``) calls MKL's sgemm. On the
AMD EPYC machines vaetool is measured on, that ran at 40–45% of the rate oneDNN's kernels reach on
the same cores, for every shape of the textbook MLP's step (``benchmarks/arithmetic.py`` times
both; docs/benchmarks.md). oneDNN ships inside torch for its convolutions, and
``torch.ops.mkldnn._linear_pointwise`` — the operator torch's own compiler emits for linear layers
on the CPU — computes ``activation(x Wᵀ + b)`` with it, the activation fused into the product.

:func:`linear` is that product, or torch's where oneDNN does not apply: another device or dtype,
a torch without the operator, a CPU that is not x86-64 (where torch's oneDNN may lack tuned
kernels), or ``VAETOOL_CPU_GEMM=torch`` in the environment. The choice depends only on the
machine and the environment, never on timings, so a run and its resumption on one machine use
the same kernels. The results agree with torch's to float32 rounding (a different summation
order), as a product on another thread count does.

No autograd: the hand-written training step (:mod:`vaetool.fused`) and no-grad evaluation call it.
"""
from __future__ import annotations

import functools
import os
import platform

import torch
from torch import Tensor

ACTIVATIONS = ("none", "relu", "tanh")


@functools.cache
def onednn_available() -> bool:
    """Whether :func:`linear` uses oneDNN for float32 CPU tensors in this process."""
    if os.environ.get("VAETOOL_CPU_GEMM", "").lower() == "torch":
        return False
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=generator) for shape in ((5, 7), (3, 7), (3,)))
        # A transposed operand too: the backward pass hands it views.
        ok = torch.allclose(op(x, w, b, "relu", [], ""), torch.addmm(b, x, w.t()).relu(), atol=1e-5) and \
            torch.allclose(op(x.t(), x.t(), None, "none", [], ""), x.t() @ x, atol=1e-5)
    except (AttributeError, RuntimeError):
        return False
    return bool(ok)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str = "none") -> Tensor:
    """``activation(x @ weight.T + bias)`` for ``x`` ``(B, in)`` and ``weight`` ``(out, in)``, either of them
    possibly a transposed view; ``activation`` is one of :data:`ACTIVATIONS`."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32 and onednn_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "")
    y = torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
    if activation == "relu":
        return y.relu_()
    if activation == "tanh":
        return y.tanh_()
    return y
