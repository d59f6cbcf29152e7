"""A residual convolutional VAE architecture for vaetool, registered as ``resnet``."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from vaetool.contracts import Architecture
from vaetool.errors import VaetoolError

__version__ = "0.1.0"
__all__ = ["ResNet", "ResidualBlock"]


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm normalises each example on its own, so a batch of one behaves like any other
    # batch and eval mode needs no running statistics (Wu & He, ECCV 2018).
    return nn.GroupNorm(math.gcd(channels, 32), channels)


def _widths(channels) -> list[int]:
    try:
        widths = [int(channels)] if isinstance(channels, (int, float)) else [int(c) for c in channels]
    except (TypeError, ValueError):
        widths = []
    if not widths or any(c < 1 for c in widths) or isinstance(channels, str):
        raise VaetoolError(f"The resnet architecture needs channels: positive stage widths such as 64,128,256, "
                           f"not {channels!r}.")
    return widths


class ResidualBlock(nn.Module):
    """x + conv(SiLU(norm(conv(SiLU(norm(x)))))): a pre-activation residual block
    (He et al., ECCV 2016) of two 3×3 convolutions. The last convolution starts at zero, so every
    block starts as the identity and a deep stack trains as easily as a shallow one
    (Goyal et al., 2017)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """Nearest-neighbour upsampling to an exact size, then a 3×3 convolution: no checkerboard
    artefacts, and odd sizes (7 → 14 → 28, or 4 → 7) come back exactly."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, int]):
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, size=self.size, mode="nearest"))


class ResNet(Architecture):
    """Residual convolutional VAE.

    The encoder has one stage per entry of ``channels``: a 3×3 convolution with stride 2, which
    halves height and width (rounding up: 28 → 14 → 7 → 4), followed by ``blocks`` residual
    blocks. A linear layer maps the last feature map to the posterior's mean and raw scale.
    The decoder mirrors it: a linear layer back to the last feature map, then per stage
    ``blocks`` residual blocks and an upsampling to the size the encoder had there, so any image
    size comes back exactly.

    Options:

    - ``channels``: the width of each stride-2 stage, e.g. ``[64, 128, 256]``.
    - ``blocks``: residual blocks after each stage (0 gives a plain strided-convolution VAE).
    """

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int = 1,
                 num_classes: int = 0, channels: Sequence[int] = (64, 128, 256), blocks: int = 1):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        channels, blocks = _widths(channels), int(blocks)
        if blocks < 0:
            raise VaetoolError(f"blocks must be zero or more for the resnet architecture, not {blocks}.")
        in_channels, height, width = self.input_shape
        sizes = [(height, width)]
        for _ in channels:
            h, w = sizes[-1]
            sizes.append(((h + 1) // 2, (w + 1) // 2))  # k=3, s=2, p=1
        self.bottleneck = (channels[-1], *sizes[-1])
        features = math.prod(self.bottleneck)

        encoder: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels):
            encoder.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
            encoder += [ResidualBlock(c_out) for _ in range(blocks)]
        encoder += [_norm(channels[-1]), nn.SiLU(), nn.Flatten()]
        self.encoder = nn.Sequential(*encoder)
        self.to_posterior = nn.Linear(features, 2 * latent_dim)

        self.from_latent = nn.Linear(latent_dim, features)
        decoder: list[nn.Module] = []
        for i in reversed(range(len(channels))):
            decoder += [ResidualBlock(channels[i]) for _ in range(blocks)]
            if i == 0:  # the last upsampling reads normalised, activated features, as each block does
                decoder += [_norm(channels[0]), nn.SiLU(), _Upsample(channels[0], self.output_channels, sizes[0])]
            else:
                decoder.append(_Upsample(channels[i], channels[i - 1], sizes[i]))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, raw_scale = self.to_posterior(self.encoder(x)).chunk(2, dim=-1)
        return mean, raw_scale

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.bottleneck))
