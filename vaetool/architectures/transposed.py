"""The conv decoder's transposed convolutions on the CPU: two costs of oneDNN's layer taken elsewhere.

The conv decoder's transposed convolutions are ``ConvTranspose2d(n, C, 4, stride=2, padding=1)``. On the
CPU, oneDNN runs them, and two parts of that run far below the rate its kernels reach
(``benchmarks/conv_primitives.py``, docs/benchmarks.md):

- **The bias's gradient.** oneDNN computes it in a plain reference loop for a deconvolution: 1.4 ms
  a step for the default net's 64 → 32 layer, against 40 µs for torch's sum over the batch and the
  positions. Here it is that sum; the input's and the weights' gradients stay oneDNN's.
- **The forward pass of some layers.** Onto few channels (the last layer, back to a grey or RGB image:
  6–11 GFLOP/s onto one channel where the product reaches 270), and with an output padding (an odd size
  such as 3 → 7, which oneDNN's deconvolution kernel does not take, so a slower strided convolution runs
  instead). Written the other way, the forward pass is a product of the input's rows ``(B · H · W, n)``
  by an ``n × 16 C`` matrix — every input position's 16 taps — and the taps are added back where they
  land: a 4×4 kernel at stride 2 splits into 2×2 phases (padded pixel ``2(i + q) + r`` meets tap
  ``2q + r`` at position ``i``), so the scatter is four shifted additions of whole windows. :func:`pays`
  says for which layers the conv net takes this patch form.

The backward pass is differentiable itself, so a double backward differentiates through it as through
torch's layer. :class:`ConvTranspose` is an ``nn.ConvTranspose2d`` — the same parameters, the same model
files — that computes so on the CPU in float32 and is ``nn.ConvTranspose2d`` everywhere else (another
device or dtype, autocast, ``torch.compile``). The two agree to float32 rounding (tests/test_transposed.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vaetool import gemm


def pays(out_channels: int, output_padding: tuple[int, int]) -> bool:
    """Whether the patch form's forward pass beat oneDNN's for such a layer where it was measured.

    On the Intel host of docs/benchmarks.md, each layer's forward and backward pass at batch 128
    (``python benchmarks/conv_edges.py --sweep``): onto 1–3 channels 1.28–1.60 times as fast (at 14×14 to
    32×32 inputs); with an output padding 1.09–1.20 times as fast at every size tried (3×3 to 14×14
    inputs, 32 to 256 channels in); with neither, torch's own was the faster (the patch form at
    0.55–0.87×), but for one layer onto 6 channels at 14×14 (1.10×; at 32×32 the same layer, 0.50×).
    """
    return out_channels <= 3 or any(output_padding)


def matrix(weight: Tensor) -> Tensor:
    """A kernel (n, C, 4, 4) as (n, 16 C): columns ordered by (phase qy, qx, tap ry, rx, channel)."""
    n, c = weight.shape[:2]
    return weight.reshape(n, c, 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(n, 16 * c)


def rows_major(feature_map: Tensor) -> Tensor:
    """(B, C, H, W) as (B · H · W, C): free for a channels-last tensor."""
    b, c, h, w = feature_map.shape
    return feature_map.permute(0, 2, 3, 1).reshape(b * h * w, c)


def unpatch(columns: Tensor, bias: Tensor, b: int, c: int, rows: int, cols: int, h: int, w: int) -> Tensor:
    """Each input position's 16 taps (B · rows · cols, 16 C) added where they land, plus the bias:
    the (B, C, h, w) output, channels-last."""
    windows = columns.view(b, rows, cols, 4, 4 * c)
    # The padded output split into phases, (ry, rx, channel) last; each pixel starts at its bias.
    phased = bias.repeat(4).expand(b, rows + 1, cols + 1, 4 * c).contiguous()
    for q, (qy, qx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        phased[:, qy:qy + rows, qx:qx + cols] += windows[:, :, :, q]
    full = phased.view(b, rows + 1, cols + 1, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * rows + 2,
                                                                                        2 * cols + 2, c)
    return full[:, 1:1 + h, 1:1 + w].permute(0, 3, 1, 2)


class _ConvTranspose(torch.autograd.Function):
    """Forward as patches or oneDNN's own; backward oneDNN's for the input and the weights, the bias's a sum."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, output_padding: tuple[int, int],
                as_patches: bool) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.output_padding = list(output_padding)
        if not as_patches:
            return torch.ops.aten.convolution(x, weight, bias, [2, 2], [1, 1], [1, 1], True, ctx.output_padding, 1)
        b, _, rows, cols = x.shape
        h, w = 2 * rows + output_padding[0], 2 * cols + output_padding[1]
        return unpatch(gemm.linear(rows_major(x), matrix(weight).t()), bias, b, weight.shape[1], rows, cols, h, w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        # Differentiable itself: under a double backward autograd records it like any other op.
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [2, 2], [1, 1], [1, 1], True, ctx.output_padding, 1, [needs_x, needs_w, False])
        return grad_x, grad_w, grad.sum((0, 2, 3)) if needs_b else None, None, None


class ConvTranspose(nn.ConvTranspose2d):
    """``ConvTranspose2d(n, C, 4, stride=2, padding=1)`` by :class:`_ConvTranspose` on the CPU in float32,
    its forward pass as patches where ``patches`` is set."""

    def __init__(self, *args, patches: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.patches = patches

    def extra_repr(self) -> str:
        return super().extra_repr() + (", patches=True" if self.patches else "")

    def _cpu_form_applies(self, x: Tensor) -> bool:
        return (x.device.type == "cpu" and x.dim() == 4 and x.dtype == self.weight.dtype == torch.float32
                and self.bias is not None and self.kernel_size == (4, 4) and self.stride == (2, 2)
                and self.padding == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and max(self.output_padding) <= 1
                and not gemm.autocast_on() and not gemm.compiling())

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None or not self._cpu_form_applies(x):
            return super().forward(x, output_size)
        return _ConvTranspose.apply(x, self.weight, self.bias, self.output_padding, self.patches)
