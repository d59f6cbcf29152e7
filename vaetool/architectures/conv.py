"""Strided-convolution encoder and a mirrored transposed-convolution decoder."""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vaetool.architectures import transposed
from vaetool.architectures.conditioning import OneHot
from vaetool.architectures.initialisation import start_scale_at
from vaetool.contracts import Architecture
from vaetool.errors import VaetoolError


class ConvNet(nn.Module):
    """Each encoder stage is a 4×4 convolution with stride 2 (halving height and width) and a ReLU;
    a linear layer maps the last feature map to the posterior. The decoder mirrors it with
    transposed convolutions, padded so that odd sizes (28 → 14 → 7 → 3) come back exactly.

    ``num_classes > 0`` appends a one-hot label at the bottleneck on both sides.
    """

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, output_channels: int,
                 channels: Sequence[int], num_classes: int = 0, scale_init: float | None = None):
        super().__init__()
        channels = [int(c) for c in channels]
        in_channels, height, width = input_shape
        sizes = [(height, width)]
        for _ in channels:
            h, w = sizes[-1]
            sizes.append(((h - 2) // 2 + 1, (w - 2) // 2 + 1))  # k=4, s=2, p=1
        if not channels or min(sizes[-1]) < 1 or any(c < 1 for c in channels):
            raise VaetoolError(f"The conv architecture cannot take {height}×{width} images through "
                               f"{len(channels)} stride-2 stages with channels {channels}.")
        self.one_hot = OneHot(num_classes)
        self.bottleneck = (channels[-1], *sizes[-1])
        features = math.prod(self.bottleneck)

        # ReLUs in place where their input is a layer's fresh output, which no backward pass needs: one feature
        # map less written through memory a layer (the conv step about 2% faster on the CPU, docs/benchmarks.md).
        encoder: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels):
            encoder += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.to_posterior = nn.Linear(features + num_classes, 2 * latent_dim)
        start_scale_at(self.to_posterior, latent_dim, scale_init)

        self.from_latent = nn.Sequential(nn.Linear(latent_dim + num_classes, features), nn.ReLU(inplace=True))
        decoder: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), output_channels]
        for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs)):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            padding = (h_out - 2 * h_in, w_out - 2 * w_in)  # transposed k=4, s=2, p=1 gives 2·size + padding
            # Onto few channels or with an output padding, oneDNN's forward kernel is slow on the CPU and the
            # layer's forward pass is a matrix product and four shifted adds (vaetool/architectures/transposed.py).
            patches = transposed.pays(c_out, padding)
            decoder.append(transposed.ConvTranspose(c_in, c_out, 4, stride=2, padding=1, output_padding=padding,
                                                    patches=patches))
            if i < len(channels) - 1:
                # The patch form's output is a strided view: a ReLU's own output is the channels-last copy
                # the next layer wants.
                decoder.append(nn.ReLU(inplace=not patches))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.to_posterior(self.one_hot.append(self.encoder(x), y))
        mean, raw_scale = h.chunk(2, dim=-1)
        return mean, raw_scale

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.from_latent(self.one_hot.append(z, y))
        return self.decoder(h.view(-1, *self.bottleneck))


class Conv(Architecture):
    """Convolutional VAE; ``channels`` lists the encoder's stage widths, one stride-2 stage each."""

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int = 1,
                 num_classes: int = 0, channels: Sequence[int] = (32, 64, 128), scale_init: float | None = None):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.net = ConvNet(self.input_shape, latent_dim, self.output_channels, channels, scale_init=scale_init)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.net.encode(x)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net.decode(z)
