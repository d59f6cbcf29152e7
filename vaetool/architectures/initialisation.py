"""How the built-in architectures' weights start: the ``scale_init``, ``init`` and ``output_bias`` options.

``scale_init`` (every built-in architecture) sets where the encoder's scale starts:

With ``--encoder-scale exp`` the encoder's raw scale is a log-variance, so a default-initialised
last layer can start σ = exp(raw / 2) far from 1 and, on a deep or wide encoder, make the first
steps' KL and gradients explode. ``scale_init=c`` sets the scale half of the encoder's last layer
to weights 0 and bias ``c``: every input then starts with raw scale ``c`` — ``0`` is log σ² = 0,
σ = 1 under exp (under softplus, σ = 1 is ``c = 0.5413``, softplus⁻¹(1)).
"""
from __future__ import annotations

import torch
from torch import nn

from vaetool.errors import VaetoolError


def start_scale_at(layer: nn.Linear, latent_dim: int, value: float | None) -> None:
    """Make the last ``latent_dim`` outputs of ``layer`` (the raw scale) start at ``value`` for every
    input; ``None`` keeps PyTorch's default initialisation."""
    if value is None:
        return
    with torch.no_grad():
        layer.weight[latent_dim:] = 0
        layer.bias[latent_dim:] = float(value)


#: Weight initialisations of the fully connected nets: ``default`` keeps PyTorch's (uniform in
#: ±1/√fan_in); ``glorot`` is Glorot & Bengio (2010)'s uniform in ±√(6 / (fan_in + fan_out)) with zero
#: biases, the initialisation of tanh nets that the IWAE paper's code uses.
INITS = ("default", "glorot")

#: Where the decoder's per-pixel output bias starts: ``default`` keeps the layer's initialisation;
#: ``data-mean`` puts it at the likelihood parameters whose mean is the training images' mean
#: (Burda et al.'s code starts its Bernoulli decoder at the logit of the mean image), so the first
#: steps need not learn the pixels' marginals before the code is used.
OUTPUT_BIASES = ("default", "data-mean")


def check_choice(name: str, value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise VaetoolError(f"{name} must be {' or '.join(choices)} for {what}, not {value!r}.")
    return value


def initialise(net: nn.Module, init: str) -> None:
    """Apply ``init`` (one of :data:`INITS`) to every linear layer of ``net``."""
    if init == "default":
        return
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def start_bias_at(layer: nn.Linear, params: torch.Tensor) -> None:
    """Set the bias of ``layer``, whose outputs are the decoder's flattened per-pixel parameters, to ``params``."""
    flat = params.reshape(-1)
    if flat.numel() != layer.bias.numel():
        raise ValueError(f"{flat.numel()} parameters for a bias of {layer.bias.numel()}")
    with torch.no_grad():
        layer.bias.copy_(flat.to(layer.bias))
