"""Discretized logistic decoder for 8-bit images (Salimans et al., PixelCNN++, ICLR 2017)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetool.contracts import Likelihood
from vaetool.likelihoods import check_reduction

_MIN_LOG_SCALE = -7.0
_HALF_BIN = 1.0 / 255.0  # pixels live on 256 levels in [-1, 1], 2/255 apart


class DiscretizedLogistic(Likelihood):
    """p(x|z) = Π P(bin of x_i) under a logistic with location μ_i and scale s_i.

    The mass of each of the 256 levels is the logistic CDF across its bin; the lowest and highest
    levels take the tails, so the 256 masses sum to one and log p is an honest log-probability,
    reported also in bits per dimension. The decoder outputs μ and log s per pixel and channel.
    """

    params_per_channel = 2
    discrete = True
    levels = 256

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def target(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.round(x * 255) / 255  # the model is a distribution over 8-bit levels

    def protocol(self, dataset: str) -> tuple[str, bool]:
        return f"discretized logistic over the 8-bit levels of {dataset} (bits/dim tables)", True

    def _location_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_s = params.chunk(2, dim=1)
        return mu, log_s.clamp(min=_MIN_LOG_SCALE)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        mu, log_s = self._location_scale(params)
        x = 2 * x - 1
        centered = x - mu
        inv_s = torch.exp(-log_s)
        plus = inv_s * (centered + _HALF_BIN)
        minus = inv_s * (centered - _HALF_BIN)
        log_cdf_plus = plus - F.softplus(plus)  # log σ(plus): mass of the lowest level
        log_sf_minus = -F.softplus(minus)  # log(1 − σ(minus)): mass of the highest level
        cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centered
        # When the bin's mass underflows, use the density at its centre times the bin width.
        log_pdf_mid = mid - log_s - 2 * F.softplus(mid) + math.log(2 * _HALF_BIN)
        log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
        log_p = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_sf_minus, log_mid))
        return log_p.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        mu, _ = self._location_scale(params)
        return (mu.clamp(-1, 1) + 1) / 2

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mu, log_s = self._location_scale(params)
        u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype).clamp(1e-5, 1 - 1e-5)
        x = (mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        return torch.round((x + 1) / 2 * 255) / 255
