"""Dense layers' matrix products on the CPU: through oneDNN on AMD's x86-64 cores, MKL's on Intel's.

torch's own CPU matrix product (``torch.mm``, ``addmm``, ``nn.Linear``) calls MKL's sgemm. On the
AMD EPYC machines vaetool is measured on, that ran at 40–45% of the rate oneDNN's kernels reach on
the same cores, for every shape of the textbook MLP's step (``benchmarks/arithmetic.py`` times
both; docs/benchmarks.md). oneDNN ships inside torch for its convolutions, and
``torch.ops.mkldnn._linear_pointwise`` — the operator torch's own compiler emits for linear layers
on the CPU — computes ``activation(x Wᵀ + b)`` with it, the activation fused into the product. On
an Intel Xeon, MKL's own vendor's cores, MKL ran at oneDNN's rate and takes the backward pass's
transposed operands as they are, where oneDNN needs a transposed copy of the gradient; the
hand-written MLP step took 1.14–1.25 times as long through oneDNN there (``benchmarks/gemm_ab.py``).

:func:`linear` is oneDNN's product on x86-64 CPUs that do not say they are Intel's, and torch's
otherwise: on Intel's, another device or dtype, a torch without the operator, a CPU that is not
x86-64 (where torch's oneDNN may lack tuned kernels). ``VAETOOL_CPU_GEMM`` in the environment
overrides the CPU rule: ``torch`` for torch's product everywhere, ``onednn`` for oneDNN wherever it
works. The choice depends only on the machine and the environment, never on timings, so a run and
its resumption on one machine use the same kernels. The results agree with torch's to float32
rounding (a different summation order), as a product on another thread count does.

:func:`linear` has no autograd (the hand-written training step, :mod:`vaetool.fused`, calls it and writes
its own backward pass). :class:`Linear` is an ``nn.Linear`` whose forward and backward products go
the same way — vaetool's MLP layers are made of it — and which falls back to ``nn.Linear`` itself
under autocast (whose bf16/fp16 products it must not bypass), under ``torch.compile``, and for a
backward pass that builds a graph of its own (``create_graph=True``).
"""
from __future__ import annotations

import functools
import os
import platform
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("none", "relu", "tanh")


CHOICES = ("auto", "torch", "onednn")


@functools.cache
def onednn_available() -> bool:
    """Whether :func:`linear` uses oneDNN for float32 CPU tensors in this process."""
    chosen = os.environ.get("VAETOOL_CPU_GEMM", "").lower() or "auto"
    if chosen not in CHOICES:  # a typo would otherwise pass unseen
        print(f"vaetool: VAETOOL_CPU_GEMM={os.environ['VAETOOL_CPU_GEMM']} is not a choice (torch: torch's product "
              "everywhere; onednn: oneDNN's wherever it works; auto or unset: by the CPU); it is ignored.",
              file=sys.stderr)
        chosen = "auto"
    if chosen == "torch" or (chosen == "auto" and cpu_vendor() == "GenuineIntel"):
        return False
    return onednn_works()


@functools.cache
def onednn_works() -> bool:
    """Whether this torch, on this machine, has oneDNN's linear operator and it computes the right products."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=generator) for shape in ((5, 7), (3, 7), (3,)))
        # A transposed operand too: the backward pass hands it views.
        ok = torch.allclose(op(x, w, b, "relu", [], ""), torch.addmm(b, x, w.t()).relu(), atol=1e-5) and \
            torch.allclose(op(x.t(), x.t(), None, "none", [], ""), x.t() @ x, atol=1e-5)
    except (AttributeError, RuntimeError, TypeError):  # an operator missing, or of another signature
        return False
    return bool(ok)


@functools.cache
def cpu_vendor() -> str:
    """The x86 CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, …) where the system says it, else ''."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:  # Linux
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    # Windows names it last: "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel".
    name = platform.processor()
    return next((vendor for vendor in ("GenuineIntel", "AuthenticAMD") if vendor in name), "")


# oneDNN's call costs about 20–40 µs more than MKL's: below about two million multiply-adds (20×200 by 200×200,
# the IWAE paper's hidden layer at its batch of 20; a 400×128 by 128×20 weight gradient) MKL is faster, above
# it oneDNN (1.3× at 3M, 2.3× at 40M; one core, docs/benchmarks.md). A function of the shapes alone, so the
# same products go the same way every run.
MIN_MULTIPLY_ADDS = 2_000_000


def _onednn_takes(x: Tensor, weight: Tensor) -> bool:
    """Whether the product of ``x`` ``(B, in)`` by ``weight`` ``(out, in)``ᵀ goes to oneDNN."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.shape[0] * weight.shape[1] * weight.shape[0] >= MIN_MULTIPLY_ADDS and onednn_available())


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str = "none") -> Tensor:
    """``activation(x @ weight.T + bias)`` for ``x`` ``(B, in)`` and ``weight`` ``(out, in)``, either of them
    possibly a transposed view; ``activation`` is one of :data:`ACTIVATIONS`."""
    if _onednn_takes(x, weight):
        # A transposed source (the weight gradient's gradᵀ) costs oneDNN more than torch's copy of it does.
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, activation, [], "")
    y = torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
    if activation == "relu":
        return y.relu_()
    if activation == "tanh":
        return y.tanh_()
    return y


def autocast_on() -> bool:
    """Whether CPU autocast is on: its bf16/fp16 products are then left to torch's own layers."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4 asks per device by name
        return torch.is_autocast_cpu_enabled()


def compiling() -> bool:
    """Whether torch.compile is tracing: it sees through torch's own layers, not through a Function."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        # A double backward differentiates these products: torch's own then, which autograd knows.
        product = (lambda a, w: a @ w.t()) if torch.is_grad_enabled() else linear
        return (product(grad, weight.t()) if ctx.needs_input_grad[0] else None,
                product(grad.t(), x.t()) if ctx.needs_input_grad[1] else None,
                grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None)


class Linear(nn.Linear):
    """``nn.Linear`` with its products through :func:`linear` (oneDNN on AMD's x86-64 CPUs, in float32)."""

    def forward(self, x: Tensor) -> Tensor:
        if autocast_on() or compiling():
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1])
        if not _onednn_takes(flat, self.weight):  # including products too small for oneDNN to pay
            return F.linear(x, self.weight, self.bias)
        return _Linear.apply(flat, self.weight, self.bias).reshape(*x.shape[:-1], self.out_features)
