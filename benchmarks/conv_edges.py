#!/usr/bin/env python3
"""The conv VAE's layers written as matrix products over image patches: which of them pay?

The default conv net opens with ``Conv2d(1, 32, 4, stride 2)`` on the grey image, and its decoder is three
transposed convolutions, ``128 → 64`` (3×3 to 7×7, an output padding), ``64 → 32`` (7×7 to 14×14) and
``32 → 1`` back to the image. A 4×4 kernel at stride 2 splits into 2×2 phases (padded pixel
``2(i + q) + r`` meets tap ``2q + r`` at output ``i``), so every patch is one of four shifted windows of
the phase-split image, and a transposed convolution's scatter back is four shifted additions. The first
layer is then one product of ``(B · rows · cols, 16)`` patches by a ``16 × 32`` matrix (its backward by
hand here); a transposed layer's forward pass one product of its input's rows by its ``n × 16 C`` taps —
vaetool's own form (``vaetool.architectures.transposed``, whose backward pass is oneDNN's but for the
bias's gradient, a sum), which the conv net uses where ``transposed.pays`` says it measured faster.

Reported, at the threads torch uses: each layer's forward and backward pass alone (nn, vaetool's layer
with oneDNN's forward — its summed bias gradient alone — and the patch form, batch 128, channels-last,
median µs), and whole training steps of the conv VAE — the loop's own calls: model, ELBO, backward,
fused Adam — with torch's layers everywhere ("nn"), vaetool's transposed layers with no patch form
("bias"), the last layer alone as patches ("last"), vaetool's net as it ships ("vaetool"), and that with
the first layer as patches too ("first"), alternating round by round (median ms per step and the median
of per-round ratios against "nn").
The patch forms are checked against the nn layers first (outputs and gradients to float32 rounding).
Beside them, every transposed convolution of the decoder in the sub-pixel form (a stride-1 2×2
convolution onto one channel per output phase, interleaved), the usual other way to write one.

    python benchmarks/conv_edges.py --rounds 14
    python benchmarks/conv_edges.py --sweep     # transposed layers of other shapes, alone

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
from vaetool.architectures.transposed import ConvTranspose, matrix, pays, rows_major, unpatch

from step_ops import alone_us


def patches(image: Tensor, rows: int, cols: int) -> Tensor:
    """Every 4×4 stride-2 patch of ``image`` (B, C, H, W) padded by 1: (B · rows · cols, 16 C), columns in
    the order of ``transposed.matrix``."""
    b, c, h, w = image.shape
    padded = F.pad(image, (1, 2 * cols + 1 - w, 1, 2 * rows + 1 - h))
    phased = padded.view(b, c, rows + 1, 2, cols + 1, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, rows + 1, cols + 1, 4 * c)
    windows = [phased[:, qy:qy + rows, qx:qx + cols] for qy in (0, 1) for qx in (0, 1)]
    return torch.stack(windows, dim=3).view(b * rows * cols, 16 * c)


def unmatrix(columns: Tensor, weight_shape: torch.Size) -> Tensor:
    """The inverse of ``transposed.matrix``: a (n, 16 C) gradient in the kernel's own shape."""
    n, c = weight_shape[:2]
    return columns.view(n, 2, 2, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(weight_shape)


class _PatchConv(torch.autograd.Function):
    """patches @ Wᵀ forward; gradᵀ @ patches and the unpatching of grad @ W backward, by hand."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        b, c, h, w = x.shape
        rows, cols = (h - 2) // 2 + 1, (w - 2) // 2 + 1
        columns, kernel = patches(x, rows, cols), matrix(weight)
        ctx.save_for_backward(columns, kernel)
        ctx.dims, ctx.weight_shape = (b, c, rows, cols, h, w), weight.shape
        return gemm.linear(columns, kernel, bias).view(b, rows, cols, -1).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        columns, kernel = ctx.saved_tensors
        b, c, rows, cols, h, w = ctx.dims
        grad_rows = rows_major(grad)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = unpatch(gemm.linear(grad_rows, kernel.t()), grad.new_zeros(c), b, c, rows, cols, h, w)
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
    """The first layer and every transposed one alone: nn, vaetool's transposed layer with oneDNN's forward,
    and the patch form; outputs and gradients compared with nn's."""
    first = [("nn", nn.Conv2d, None), ("patches", PatchConv, None)]
    cases = [("first: Conv2d(1, 32)", net.encoder[0], first, torch.rand(128, 1, 28, 28), False)]
    forms = [("nn", nn.ConvTranspose2d, None), ("bias", ConvTranspose, False), ("patches", ConvTranspose, True)]
    size = net.bottleneck[1:]
    for layer in (m for m in net.decoder if isinstance(m, nn.ConvTranspose2d)):
        name = (f"ConvTranspose2d({layer.in_channels}, {layer.out_channels}), {size[0]}×{size[1]}"
                f"{', output padding' if any(layer.output_padding) else ''}")
        cases.append((name, layer, forms, torch.randn(128, layer.in_channels, *size), True))
        size = tuple(2 * s + p for s, p in zip(size, layer.output_padding))
    rows = []
    for name, layer, kinds, x, input_grad in cases:
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(input_grad)
        row, results = {"layer": name}, {}
        grad = torch.randn_like(layer(x))
        for label, cls, patches in kinds:
            module = cls.__new__(cls)
            module.__dict__ = dict(layer.__dict__)  # the same parameters, another forward
            if patches is not None:
                module.patches = patches
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = module(x)
            out.backward(grad)
            results[label] = (out.detach(), module.weight.grad.clone(), module.bias.grad.clone(), x.grad)

            def step(module=module):
                module.zero_grad(set_to_none=True)
                x.grad = None
                module(x).backward(grad)

            row[label + "_us"] = alone_us(step, calls=30)
        row["largest_relative_difference"] = max(((a - b).abs().max() / a.abs().max()).item()
                                                 for label, _, _ in kinds[1:]
                                                 for a, b in zip(results["nn"], results[label]) if a is not None)
        rows.append(row)
    return rows


# (in channels, out channels, input side, output padding): transposed layers of conv nets at other sizes.
SWEEP = [(32, 1, 28, 0), (16, 1, 14, 0), (32, 2, 14, 0), (32, 3, 14, 0), (32, 3, 32, 0), (64, 3, 16, 0),
         (32, 6, 14, 0), (32, 6, 32, 0), (32, 16, 7, 0), (64, 32, 4, 0), (64, 32, 16, 0), (128, 64, 4, 0),
         (128, 64, 8, 0), (64, 32, 3, 1), (128, 32, 3, 1), (256, 128, 3, 1), (128, 64, 4, 1), (64, 32, 7, 1),
         (128, 64, 7, 1), (32, 16, 14, 1)]


def sweep_rows(batch_size: int) -> list[dict]:
    """Transposed layers of other shapes alone, forward and backward: torch's, and vaetool's with oneDNN's
    forward and with the patch form (what ``pays`` chooses between)."""
    rows = []
    for c_in, c_out, side, output_padding in SWEEP:
        torch.manual_seed(0)
        plain = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=output_padding)
        forms = {"nn": plain}
        for label, patches in (("bias", False), ("patches", True)):
            forms[label] = ConvTranspose(c_in, c_out, 4, 2, 1, output_padding=output_padding, patches=patches)
            forms[label].load_state_dict(plain.state_dict())
        x = torch.randn(batch_size, c_in, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn_like(plain(x))
        row = {"layer": f"ConvTranspose2d({c_in}, {c_out}), {side}×{side}{', output padding' if output_padding else ''}",
               "patches_pay": pays(c_out, (output_padding, output_padding))}
        for label, module in forms.items():
            row[label + "_us"] = alone_us(lambda module=module: module(x).backward(grad), calls=10)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--steps", type=int, default=25, help="training steps per model and round")
    parser.add_argument("--sweep", action="store_true",
                        help="time transposed layers of other shapes alone instead (what transposed.pays rests on)")
    parser.add_argument("--batch-size", type=int, default=128, help="the sweep's batch")
    args = parser.parse_args()
    if args.sweep:
        rows = sweep_rows(args.batch_size)
        for row in rows:
            print(f"{row['layer']}: {row['nn_us']:.0f} µs (nn), {row['bias_us']:.0f} µs (oneDNN's forward, "
                  f"summed bias), {row['patches_us']:.0f} µs (patches): patches {row['bias_us'] / row['patches_us']:.2f}× "
                  f"— vaetool's conv net takes {'patches' if row['patches_pay'] else 'oneDNN'}'s forward")
        print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                          "batch_size": args.batch_size, "sweep": rows}))
        return

    import vaetool
    from vaetool import allocator, training
    from vaetool.objectives.elbo import ELBO

    allocator.reuse_freed_memory()  # as CPU training does

    def model(variant: str):
        torch.manual_seed(0)
        m = vaetool.create("conv", "bernoulli").to(memory_format=torch.channels_last)
        if variant == "first":
            m.architecture.net.encoder[0].__class__ = PatchConv
        transposed = [layer for layer in m.architecture.net.decoder if isinstance(layer, nn.ConvTranspose2d)]
        for layer in transposed:
            layer.patches = {"nn": False, "bias": False, "last": layer is transposed[-1]}.get(
                variant, pays(layer.out_channels, layer.output_padding))  # "vaetool", "first": as it ships
            layer.__class__ = nn.ConvTranspose2d if variant == "nn" else ConvTranspose
        return m, training.adam(m, 1e-3)

    net = model("nn")[0].architecture.net
    layers = layer_rows(net)
    for row in layers:
        print(f"{row['layer']}: forward and backward {row['nn_us']:.0f} µs (nn), "
              + (f"{row['bias_us']:.0f} µs (oneDNN's forward, summed bias), " if "bias_us" in row else "")
              + f"{row['patches_us']:.0f} µs (patches); largest difference {row['largest_relative_difference']:.1e} "
              "of the largest value")
    subpixels = subpixel_rows(net)
    for row in subpixels:
        print(f"{row['layer']}: forward and backward {row['nn_us']:.0f} µs (nn), {row['subpixel_us']:.0f} µs "
              f"(sub-pixel); largest difference {row['largest_relative_difference']:.1e} of the largest value")

    models = {name: model(name) for name in ("nn", "bias", "last", "vaetool", "first")}
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
          + "; ".join(f"{name} {step[name]:.2f} ms ({ratio[name]:.3f}× faster)" for name in ratio)
          + " (medians of the per-round ratios against nn)")
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "layers": layers,
                      "subpixel": subpixels, "step_ms": step, "speedup": ratio}))


if __name__ == "__main__":
    main()
