"""The linear baseline: encoder and decoder are each one linear layer, no hidden layer.

With the Gaussian likelihood's identity link and a shared σ (``--likelihood gaussian
--likelihood-opt link=identity``) this is exactly probabilistic PCA's model family (Tipping &
Bishop 1999), whose optimum ``compare`` shows as a reference line; it is the baseline of the
classic "is deeper better?" comparison.
"""
from __future__ import annotations

from torch import Tensor

from vaetool.architectures.mlp import MLPNet
from vaetool.contracts import Architecture


class Linear(Architecture):
    """Encoder x ↦ W x + b gives (mean, raw scale); decoder z ↦ V z + c gives the likelihood's parameters."""

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int = 1,
                 num_classes: int = 0, scale_init: float | None = None):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.net = MLPNet(self.input_shape, latent_dim, self.output_channels, hidden=(), scale_init=scale_init)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.net.encode(x)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net.decode(z)
