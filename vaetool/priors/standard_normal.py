"""The standard normal prior N(0, I), the textbook VAE's."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from vaetool.contracts import Prior

_LOG_2PI = math.log(2 * math.pi)


class StandardNormal(Prior):
    """p(z) = N(0, I). Its KL from a diagonal Gaussian posterior is analytic (Kingma & Welling 2014, App. B)."""

    analytic_kl = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # tells sample() the device

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * _LOG_2PI)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=self._anchor.device)

    def kl(self, posterior) -> Tensor:
        return posterior.kl()
