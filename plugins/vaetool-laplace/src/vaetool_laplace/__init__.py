"""A Laplace decoder distribution for vaetool, registered as the likelihood ``laplace``."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaetool.contracts import Likelihood

__version__ = "0.1.0"
__all__ = ["Laplace"]

#: The scale b is exp(output) + MIN_SCALE: below 8-bit resolution a smaller b only rewards memorising
#: noise, and a sum (unlike a clamp) keeps the gradient everywhere.
MIN_SCALE = 1e-3
_LOG_MIN_SCALE = math.log(MIN_SCALE)
_LOG_2 = math.log(2.0)


class Laplace(Likelihood):
    """p(x|z) = Π Laplace(x_i; μ_i, b_i) = Π exp(−|x_i − μ_i| / b_i) / (2 b_i), with μ = sigmoid(output).

    −log p is an L1 reconstruction error weighed by 1/b, plus log(2b): sharper than a Gaussian's
    squared error on edges, and robust to outlying pixels.

    Options:

    - ``per_pixel=True``: the decoder outputs log b for every pixel and channel as well
      (``params_per_channel = 2``: a block of C means, then a block of C log-scales).
    - ``per_pixel=False``: one learned log b shared by every pixel (``params_per_channel = 1``).

    The scale is b = exp(log-scale output) + :data:`MIN_SCALE`.
    """

    def __init__(self, per_pixel: bool = True):
        super().__init__()
        self.per_pixel = bool(per_pixel)
        self.params_per_channel = 2 if self.per_pixel else 1
        if not self.per_pixel:
            self.log_scale = nn.Parameter(torch.tensor(math.log(0.1)))

    def loc_and_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The location μ in (0, 1) and the scale b > 0 of every pixel (b broadcasts when shared)."""
        loc, log_scale = self._loc_and_log_scale(params)
        return loc, log_scale.exp()

    def _loc_and_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.per_pixel:
            params, log_scale = params.chunk(2, dim=1)
        else:
            log_scale = self.log_scale.to(params.dtype)
        return torch.sigmoid(params), torch.logaddexp(log_scale, log_scale.new_tensor(_LOG_MIN_SCALE))

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        loc, log_scale = self._loc_and_log_scale(params)
        log_p = -(x - loc).abs() * torch.exp(-log_scale) - log_scale - _LOG_2
        return log_p.flatten(1).sum(1)

    def protocol(self, dataset: str) -> tuple[str, bool]:
        return (f"Laplace density of {dataset}'s pixel values, without dequantization: "
                "not comparable with published log-likelihoods", False)

    def mean(self, params: Tensor) -> Tensor:
        return self._loc_and_log_scale(params)[0]

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc, scale = self.loc_and_scale(params)
        # The difference of two independent Exp(1) variables is a standard Laplace variable.
        draws = torch.empty((2, *loc.shape), device=loc.device, dtype=loc.dtype).exponential_(generator=generator)
        return (loc + scale * (draws[0] - draws[1])).clamp(0, 1)
