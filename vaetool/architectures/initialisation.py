"""Where the encoder's scale starts: the ``scale_init`` option of the built-in architectures.

With ``--encoder-scale exp`` the encoder's raw scale is a log-variance, so a default-initialised
last layer can start σ = exp(raw / 2) far from 1 and, on a deep or wide encoder, make the first
steps' KL and gradients explode. ``scale_init=c`` sets the scale half of the encoder's last layer
to weights 0 and bias ``c``: every input then starts with raw scale ``c`` — ``0`` is log σ² = 0,
σ = 1 under exp (under softplus, σ = 1 is ``c = 0.5413``, softplus⁻¹(1)).
"""
from __future__ import annotations

import torch
from torch import nn


def start_scale_at(layer: nn.Linear, latent_dim: int, value: float | None) -> None:
    """Make the last ``latent_dim`` outputs of ``layer`` (the raw scale) start at ``value`` for every
    input; ``None`` keeps PyTorch's default initialisation."""
    if value is None:
        return
    with torch.no_grad():
        layer.weight[latent_dim:] = 0
        layer.bias[latent_dim:] = float(value)
