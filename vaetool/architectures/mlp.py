"""Fully connected encoder and decoder."""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vaetool.architectures.conditioning import OneHot
from vaetool.architectures.initialisation import (INITS, OUTPUT_BIASES, check_choice, initialise, start_bias_at,
                                                  start_scale_at)
from vaetool.contracts import Architecture
from vaetool.errors import VaetoolError
from vaetool.gemm import Linear


# The nonlinearity between hidden layers, by name (the IWAE paper's nets use tanh).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU, "gelu": nn.GELU, "elu": nn.ELU,
               "softplus": nn.Softplus, "leaky_relu": nn.LeakyReLU}


def stack(widths: Sequence[int], activation: str = "relu", init: str = "default") -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last), their weights
    started by ``init`` (see :mod:`vaetool.architectures.initialisation`)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Linear(a, b))  # nn.Linear, its products through oneDNN on AMD's x86-64 CPUs
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    net = nn.Sequential(*layers)
    initialise(net, init)
    return net


class MLPNet(nn.Module):
    """Encoder D → hidden… → 2·latent and decoder latent → …hidden → D·P, ``activation`` between layers.

    With no hidden layers each side is a single linear map. ``num_classes > 0`` appends a one-hot
    label to the encoder's input and to z (Sohn et al., NeurIPS 2015). ``scale_init`` and ``init``: see
    :mod:`vaetool.architectures.initialisation`.
    """

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, output_channels: int,
                 hidden: Sequence[int], num_classes: int = 0, scale_init: float | None = None,
                 activation: str = "relu", init: str = "default"):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if any(h < 1 for h in hidden):
            raise VaetoolError(f"Hidden widths must be positive, not {hidden}.")
        if activation not in ACTIVATIONS:
            raise VaetoolError(f"The activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}.")
        channels, height, width = input_shape
        self.output_shape = (output_channels, height, width)
        self.one_hot = OneHot(num_classes)
        pixels = channels * height * width
        check_choice("init", init, INITS, "a fully connected net")
        self.encoder = stack([pixels + num_classes, *hidden, 2 * latent_dim], activation, init)
        self.decoder = stack([latent_dim + num_classes, *reversed(hidden), math.prod(self.output_shape)], activation,
                             init)
        start_scale_at(self.encoder[-1], latent_dim, scale_init)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.encoder(self.one_hot.append(x.flatten(1), y))
        mean, raw_scale = h.chunk(2, dim=-1)
        return mean, raw_scale

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(self.one_hot.append(z, y)).view(-1, *self.output_shape)

    def start_output_at(self, params: Tensor) -> None:
        start_bias_at(self.decoder[-1], params)


class MLP(Architecture):
    """Multilayer perceptron VAE; ``hidden`` lists the encoder's hidden widths (the decoder mirrors them),
    ``activation`` names the nonlinearity between layers: relu, tanh, silu, gelu, elu, softplus or leaky_relu.

    ``init=glorot`` starts every weight Glorot-uniform with zero biases; ``output_bias=data-mean`` starts
    the decoder's output bias at the likelihood's parameters for the training images' mean. Together
    they are how the IWAE paper's code starts its tanh nets (see :mod:`vaetool.architectures.initialisation`).
    """

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int = 1,
                 num_classes: int = 0, hidden: Sequence[int] = (512, 256), scale_init: float | None = None,
                 activation: str = "relu", init: str = "default", output_bias: str = "default"):
        super().__init__(input_shape, latent_dim, params_per_channel, num_classes)
        self.output_bias = check_choice("output_bias", output_bias, OUTPUT_BIASES, "the mlp architecture")
        if not hidden:
            raise VaetoolError("The mlp architecture needs at least one hidden layer; the linear architecture has none.")
        self.net = MLPNet(self.input_shape, latent_dim, self.output_channels, hidden, scale_init=scale_init,
                          activation=activation, init=init)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.net.encode(x)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net.decode(z)

    def start_output_at(self, params: Tensor) -> None:
        self.net.start_output_at(params)
