"""Continuous Bernoulli decoder (Loaiza-Ganem & Cunningham, NeurIPS 2019).

The Bernoulli cross-entropy on grey levels is not a density on [0, 1]; multiplying by the
normalising constant C(λ) makes it one, which is what this likelihood adds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetool.contracts import Likelihood
from vaetool.likelihoods import check_reduction

_TAYLOR_BELOW = 0.1  # |logit| under which the series is more accurate than the closed form


def log_normalizer(logits: Tensor) -> Tensor:
    """log C(λ) for λ = sigmoid(logits), elementwise.

    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), which in terms of the logit η is η / tanh(η/2): even in η,
    equal to 2 at η = 0. The closed form cancels catastrophically near η = 0, so a Taylor series in
    u = η/2 takes over there: log(u / tanh u) = u²/3 − 7u⁴/90 + O(u⁶).
    """
    a = logits.abs()
    u2 = (logits / 2) ** 2
    series = math.log(2.0) + u2 / 3 - 7 * u2 ** 2 / 90
    safe = torch.where(a < _TAYLOR_BELOW, torch.ones_like(a), a)  # keeps the unused branch's gradient finite
    e = torch.exp(-safe)
    closed = torch.log(safe) - torch.log1p(-e) + torch.log1p(e)  # log η − log tanh(η/2)
    return torch.where(a < _TAYLOR_BELOW, series, closed)


class ContinuousBernoulli(Likelihood):
    """p(x|z) = Π C(λ_i) λ_i^x_i (1 − λ_i)^(1 − x_i) on x ∈ [0, 1], parametrised by logits."""

    params_per_channel = 1
    support = (0.0, 1.0)

    def __init__(self, reduction: str = "sum"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return (log_normalizer(params) - bce).flatten(1).sum(1)

    def _distribution(self, params: Tensor) -> torch.distributions.ContinuousBernoulli:
        return torch.distributions.ContinuousBernoulli(logits=params, validate_args=False)

    def protocol(self, dataset: str) -> tuple[str, bool]:
        return (f"continuous-bernoulli density of {dataset}'s pixel values in [0, 1], without dequantization: "
                "not comparable with published log-likelihoods", False)

    def mean(self, params: Tensor) -> Tensor:
        return self._distribution(params).mean

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(params.shape, generator=generator, device=params.device, dtype=params.dtype)
        return self._distribution(params).icdf(u.clamp(1e-6, 1 - 1e-6)).clamp(0, 1)
