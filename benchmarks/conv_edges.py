#!/usr/bin/env python3
"""The conv VAE's first and last layers written as matrix products over image patches: do they pay?

The default conv net opens with ``Conv2d(1, 32, 4, stride 2)`` on the grey image and ends with
``ConvTranspose2d(32, 1, 4, stride 2)`` back to it. With one channel on a side oneDNN has little
to vectorise over, and the last layer runs at a few GFLOP/s. Here both are written the other way:
a 4×4 kernel at stride 2 splits into 2×2 phases (padded pixel ``2(i + q) + r`` meets tap ``2q + r``
at output ``i``), so every patch is one of four shifted windows of the phase-split image, and the
transposed convolution's scatter back is four shifted additions. The layer is then one product of
``(B · rows · cols, 16)`` patches by a ``16 × C`` matrix, its backward two more (written by hand, with
oneDNN's products where vaetool.gemm takes them).

Reported, at the threads torch uses: each layer's forward and backward pass alone (nn against the
patch form, batch 128, channels-last, median µs), and whole training steps of the conv VAE — the
loop's own calls: model, ELBO, backward, fused Adam — with the nn layers and with the patch forms
swapped in (the last layer alone, and both), alternating round by round (median ms per step and
the median of per-round ratios).
The last layer's patch form is vaetool's own (``vaetool.architectures.patches``, which the conv net
uses on the CPU since this measured 1.047× on an Intel host); "nn" here is torch's layer put back.
The patch forms are checked against the nn layers first (outputs and gradients to float32 rounding).
Beside them, every transposed convolution of the decoder in the sub-pixel form (a stride-1 2×2
convolution onto one channel per output phase, interleaved), the usual other way to write one.

    python benchmarks/conv_edges.py --rounds 14

Prints the rows and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetool import gemm
from vaetool.architectures.patches import PatchConvTranspose, channels_last, matrix, patches, rows_major, unmatrix, unpatch

from step_ops import alone_us


class _PatchConv(torch.autograd.Function):
    """patches @ Wᵀ forward; gradᵀ @ patches and the unpatching of grad @ W backward, by hand."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        b, c, h, w = x.shape
        rows, cols = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        columns, kernel = patches(x, rows, cols), matrix(weight)
        ctx.save_for_backward(columns, kernel)
        ctx.dims, ctx.weight_shape = (b, c, rows, cols, h, w), weight.shape
        return channels_last(gemm.linear(columns, kernel, bias), b, rows, cols)

    @staticmethod
    def backward(ctx, grad):
        columns, kernel = ctx.saved_tensors
        b, c, rows, cols, h, w = ctx.dims
        grad_rows = rows_major(grad)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = unpatch(gemm.linear(grad_rows, kernel.t()), b, c, rows, cols, h, w)
        return grad_x, unmatrix(grad_rows.t() @ columns, ctx.weight_shape), grad_rows.sum(0)


class PatchConv(nn.Conv2d):
    """Conv2d(C, n, 4, stride 2, padding 1) by :class:`_PatchConv`."""

    def forward(self, x: Tensor) -> Tensor:
        return _PatchConv.apply(x, self.weight, self.bias)


def subpixel(x: Tensor, weight: Tensor, bias: Tensor, output_padding) -> Tensor:
    """ConvTranspose2d(n, C, 4, stride 2, padding 1) as one stride-1 convolution with a 2×2 kernel onto
    4 C channels (one per output phase), interleaved: the sub-pixel form, the same 16 taps per output."""
    n, c = weight.shape[:2]
    # Output 2p + r − 1 takes input p − q through tap 2q + r: the 2×2 kernel's tap t is q = 1 − t.
    kernel = weight.view(n, c, 2, 2, 2, 2).flip(2, 4).permute(1, 3, 5, 0, 2, 4).reshape(4 * c, n, 2, 2)
    phases = F.conv2d(x, kernel.contiguous(memory_format=torch.channels_last), bias.repeat_interleave(4), padding=1)
    b, _, rows, cols = phases.shape  # (rows, cols) = the input's + 1
    full = phases.view(b, c, 2, 2, rows, cols).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * rows, 2 * cols)
    return full[:, :, 1:2 * rows - 1 + output_padding[0], 1:2 * cols - 1 + output_padding[1]]


def subpixel_rows(net) -> list[dict]:
    """Every transposed convolution of the decoder alone: nn against the sub-pixel form."""
    rows, size = [], net.bottleneck[1:]
    for layer in (m for m in net.decoder if isinstance(m, nn.ConvTranspose2d)):
        x = torch.randn(128, layer.in_channels, *size).contiguous(memory_format=torch.channels_last).requires_grad_()
        out = layer(x)
        grad = torch.randn_like(out)
        difference = ((subpixel(x, layer.weight, layer.bias, layer.output_padding) - out).abs().max()
                      / out.abs().max()).item()

        def run(forward):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            forward().backward(grad)

        rows.append({"layer": f"ConvTranspose2d({layer.in_channels}, {layer.out_channels})",
                     "nn_us": alone_us(lambda: run(lambda: layer(x)), calls=30),
                     "subpixel_us": alone_us(lambda: run(lambda: subpixel(x, layer.weight, layer.bias,
                                                                             layer.output_padding)), calls=30),
                     "largest_relative_difference": difference})
        size = out.shape[2:]
    return rows


def layer_rows(net) -> list[dict]:
    """The first and last layer alone, nn against the patch form; outputs and gradients compared."""
    rows = []
    cases = (("first: Conv2d(1, 32)", net.encoder[0], PatchConv, torch.rand(128, 1, 28, 28), False),
             ("last: ConvTranspose2d(32, 1)", net.decoder[-1], PatchConvTranspose, torch.randn(128, 32, 14, 14), True))
    for name, layer, patch_class, x, input_grad in cases:
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(input_grad)
        patch = patch_class.__new__(patch_class)
        patch.__dict__ = dict(layer.__dict__)  # the same parameters, the other forward
        grad = torch.randn_like(layer(x))
        results = {}
        for label, module in (("nn", layer), ("patches", patch)):
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = module(x)
            out.backward(grad)
            results[label] = (out.detach(), module.weight.grad.clone(), x.grad)

            def step(module=module):
                module.zero_grad(set_to_none=True)
                x.grad = None
                module(x).backward(grad)

            results[label + "_us"] = alone_us(step, calls=30)
        error = max(((a - b).abs().max() / a.abs().max()).item()
                    for a, b in zip(results["nn"], results["patches"]) if a is not None)
        rows.append({"layer": name, "nn_us": results["nn_us"], "patches_us": results["patches_us"],
                     "largest_relative_difference": error})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--steps", type=int, default=25, help="training steps per model and round")
    args = parser.parse_args()

    import vaetool
    from vaetool import allocator, training
    from vaetool.objectives.elbo import ELBO

    allocator.reuse_freed_memory()  # as CPU training does

    def model(first: bool, last: bool):
        torch.manual_seed(0)
        m = vaetool.create("conv", "bernoulli").to(memory_format=torch.channels_last)
        if first:
            m.architecture.net.encoder[0].__class__ = PatchConv
        # The conv net's own last layer is the patch form on the CPU; torch's for the others.
        m.architecture.net.decoder[-1].__class__ = PatchConvTranspose if last else nn.ConvTranspose2d
        return m, training.adam(m, 1e-3)

    net = model(False, False)[0].architecture.net
    layers = layer_rows(net)
    for row in layers:
        print(f"{row['layer']}: forward and backward {row['nn_us']:.0f} µs (nn), {row['patches_us']:.0f} µs "
              f"(patches); largest difference {row['largest_relative_difference']:.1e} of the largest value")
    subpixels = subpixel_rows(net)
    for row in subpixels:
        print(f"{row['layer']}: forward and backward {row['nn_us']:.0f} µs (nn), {row['subpixel_us']:.0f} µs "
              f"(sub-pixel); largest difference {row['largest_relative_difference']:.1e} of the largest value")

    models = {"nn": model(False, False), "last": model(False, True), "both": model(True, True)}
    objective = ELBO()
    data = (torch.rand(5000, 1, 28, 28) * 255).to(torch.uint8)
    generator = torch.Generator().manual_seed(1)

    def train(m, optimizer, steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            x = torch.index_select(data, 0, torch.randint(0, len(data), (128,), generator=generator))
            x = x.float().div_(255).contiguous(memory_format=torch.channels_last)
            loss = objective.loss(m(x), 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return 1e3 * (time.perf_counter() - started) / steps

    for m, optimizer in models.values():
        train(m, optimizer, 5)
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (m, optimizer) in models.items():
            times[name].append(train(m, optimizer, args.steps))
    step = {name: statistics.median(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(times["nn"], t))
             for name, t in times.items() if name != "nn"}
    print(f"training step, median of {args.rounds} rounds of {args.steps}: nn layers {step['nn']:.2f} ms; "
          f"the last layer as patches {step['last']:.2f} ms ({ratio['last']:.3f}× faster); both "
          f"{step['both']:.2f} ms ({ratio['both']:.3f}×; medians of the per-round ratios)")
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "layers": layers,
                      "subpixel": subpixels, "step_ms": step, "speedup": ratio}))


if __name__ == "__main__":
    main()
