"""Conditional VAE (Sohn, Lee & Yan, NeurIPS 2015): q(z|x, y) and p(x|z, y) given the class label y.

With the label supplied to the decoder, z is free to encode everything *but* the class — style,
thickness, slant for digits — and ``sample --label 3`` draws a chosen class.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from vaetool.architectures.conv import ConvNet
from vaetool.architectures.mlp import MLPNet
from vaetool.contracts import Architecture
from vaetool.errors import VaetoolError

BACKBONES = ("conv", "mlp")


class CVAE(Architecture):
    """A conv (default) or MLP backbone with a one-hot label appended on both sides."""

    conditional = True

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int = 1,
                 num_classes: int = 0, backbone: str = "conv", channels: Sequence[int] = (32, 64, 128),
                 hidden: Sequence[int] = (512, 256), scale_init: float | None = None):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        if num_classes < 1:
            raise VaetoolError("The cvae architecture is conditional on a class label, so it needs a labelled dataset.")
        if backbone == "conv":
            self.net = ConvNet(self.input_shape, latent_dim, self.output_channels, channels, num_classes, scale_init)
        elif backbone == "mlp":
            self.net = MLPNet(self.input_shape, latent_dim, self.output_channels, hidden, num_classes, scale_init)
        else:
            raise VaetoolError(f"The cvae backbone must be one of {', '.join(BACKBONES)}, not {backbone!r}.")

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.net.encode(x, y)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net.decode(z, y)
