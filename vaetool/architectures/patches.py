"""A 4×4, stride-2 transposed convolution onto one channel as one matrix product and four shifted adds.

The conv decoder ends with ``ConvTranspose2d(n, 1, 4, stride=2, padding=1)`` back to a grey image.
With one output channel oneDNN has almost nothing to vectorise over, and on the CPUs vaetool is measured
on it ran that layer's forward pass at 6–11 GFLOP/s where the matrix product reaches 270
(``benchmarks/conv_primitives.py``, docs/benchmarks.md). Written the other way, the layer is a product
of the input's rows ``(B · H · W, n)`` by a ``n × 16`` matrix — every input position's 16 taps — and
the taps are added back where they land: a 4×4 kernel at stride 2 splits into 2×2 phases (padded pixel
``2(i + q) + r`` meets tap ``2q + r`` at position ``i``), so the scatter is four shifted additions of
whole windows. The backward pass is the adjoint: the output gradient's patches as four shifted windows
of its phase-split image, and two products. On the Intel host of docs/benchmarks.md that made the whole
conv training step 1.047 times as fast (``benchmarks/conv_edges.py``); on the AMD hosts it was even
(1.007×).

:class:`PatchConvTranspose` is an ``nn.ConvTranspose2d`` — the same parameters, the same model files —
that computes so on the CPU in float32 and is ``nn.ConvTranspose2d`` everywhere else (another device or
dtype, autocast, ``torch.compile``). The two agree to float32 rounding (tests/test_patches.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetool import gemm


def patches(image: Tensor, rows: int, cols: int) -> Tensor:
    """Every 4×4 stride-2 patch of ``image`` (B, C, H, W) padded by 1: (B · rows · cols, 16 C)."""
    b, c, h, w = image.shape
    padded = F.pad(image, (1, 2 * cols + 1 - w, 1, 2 * rows + 1 - h))
    phased = padded.view(b, c, rows + 1, 2, cols + 1, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, rows + 1, cols + 1, 4 * c)
    windows = [phased[:, qy:qy + rows, qx:qx + cols] for qy in (0, 1) for qx in (0, 1)]
    return torch.stack(windows, dim=3).view(b * rows * cols, 16 * c)


def unpatch(columns: Tensor, b: int, c: int, rows: int, cols: int, h: int, w: int) -> Tensor:
    """The adjoint of :func:`patches`: each patch added back where it came from, cropped to h × w."""
    windows = columns.view(b, rows, cols, 4, 4 * c)
    phased = columns.new_zeros(b, rows + 1, cols + 1, 4 * c)
    for q, (qy, qx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        phased[:, qy:qy + rows, qx:qx + cols] += windows[:, :, :, q]
    full = phased.view(b, rows + 1, cols + 1, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, 2 * rows + 2,
                                                                                        2 * cols + 2)
    return full[:, :, 1:1 + h, 1:1 + w]


def matrix(weight: Tensor) -> Tensor:
    """A kernel (n, C, 4, 4) as (n, 16 C) in the column order of :func:`patches`."""
    n, c = weight.shape[:2]
    return weight.reshape(n, c, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(n, 16 * c)


def unmatrix(columns: Tensor, weight_shape: torch.Size) -> Tensor:
    """The inverse of :func:`matrix`: a (n, 16 C) gradient in the kernel's own shape."""
    n, c = weight_shape[:2]
    return columns.view(n, 2, 2, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(weight_shape)


def channels_last(matrix_rows: Tensor, b: int, rows: int, cols: int) -> Tensor:
    """A (B · rows · cols, C) matrix as the channels-last (B, C, rows, cols) tensor it is."""
    return matrix_rows.view(b, rows, cols, -1).permute(0, 3, 1, 2)


def rows_major(feature_map: Tensor) -> Tensor:
    """(B, C, H, W) as (B · H · W, C): free for a channels-last tensor."""
    b, c, h, w = feature_map.shape
    return feature_map.permute(0, 2, 3, 1).reshape(b * h * w, c)


class _PatchConvTranspose(torch.autograd.Function):
    """The unpatching of x @ W forward; its adjoint's products backward, by hand."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, size: tuple[int, int]) -> Tensor:
        b, _, rows, cols = x.shape
        # The inputs themselves are kept, their matrix forms made again backward: a double backward
        # then reaches x and the weight through them.
        ctx.save_for_backward(x, weight)
        ctx.dims, ctx.weight_shape = (b, weight.shape[1], rows, cols), weight.shape
        return unpatch(gemm.linear(rows_major(x), matrix(weight).t()), *ctx.dims, *size) + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        x_rows, kernel = rows_major(x), matrix(weight)
        b, c, rows, cols = ctx.dims
        # A double backward differentiates these products: torch's own then, which autograd knows.
        product = (lambda a, w: a @ w.t()) if torch.is_grad_enabled() else gemm.linear
        columns = patches(grad, rows, cols)
        grad_x = channels_last(product(columns, kernel), b, rows, cols) if ctx.needs_input_grad[0] else None
        grad_w = unmatrix(x_rows.t() @ columns, ctx.weight_shape) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class PatchConvTranspose(nn.ConvTranspose2d):
    """``ConvTranspose2d(n, C, 4, stride=2, padding=1)`` by :class:`_PatchConvTranspose` on the CPU in float32."""

    def _patches_apply(self, x: Tensor) -> bool:
        return (x.device.type == "cpu" and x.dim() == 4 and x.dtype == self.weight.dtype == torch.float32
                and self.bias is not None and self.kernel_size == (4, 4) and self.stride == (2, 2)
                and self.padding == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and max(self.output_padding) <= 1
                and not gemm.autocast_on() and not gemm.compiling())

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None or not self._patches_apply(x):
            return super().forward(x, output_size)
        size = (2 * x.shape[2] + self.output_padding[0], 2 * x.shape[3] + self.output_padding[1])
        return _PatchConvTranspose.apply(x, self.weight, self.bias, size)
