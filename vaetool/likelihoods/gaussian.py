"""Gaussian decoder with a fixed, a learned shared, or a learned per-pixel standard deviation."""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetool.contracts import Likelihood
from vaetool.errors import VaetoolError
from vaetool.likelihoods import check_reduction

_MIN_LOG_SIGMA = math.log(1e-3)  # below 8-bit resolution a smaller σ only rewards memorising noise
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LINKS = ("sigmoid", "identity")


def _soft_floor(log_sigma: Tensor) -> Tensor:
    # A smooth lower bound, as in the σ-VAE code: keeps gradients where a hard clamp would stop them.
    return _MIN_LOG_SIGMA + F.softplus(log_sigma - _MIN_LOG_SIGMA)


class Gaussian(Likelihood):
    """p(x|z) = Π N(x_i; μ_i, σ²), μ = link(decoder output).

    - ``sigma=<value>``: a fixed σ. Then −log p is a scaled squared error, and σ sets the
      weight of reconstruction against the KL term (σ² plays the role of 1/β).
    - ``sigma`` unset: σ is learned, one scalar shared by every pixel — the calibrated decoder of
      the σ-VAE (Rybkin, Daniilidis & Levine, ICML 2021), which removes the need to tune β by hand.
    - ``per_pixel=True``: the decoder outputs a log σ for every pixel and channel.
    - ``link``: ``"sigmoid"`` keeps μ in (0, 1); ``"identity"`` makes μ the decoder output itself,
      unbounded (``mean`` returns it as it is, so the maths stays exact; samples are still clamped
      to [0, 1]). With ``link="identity"``, the ``linear`` architecture and one shared σ the model
      family is exactly probabilistic PCA (Tipping & Bishop 1999), whose maximum-likelihood fit
      :func:`vaetool.metrics.ppca_log_likelihood` computes in closed form.
    - ``reduction="mean"``: train on the averaged reconstruction term (the classic bug; see
      :class:`vaetool.contracts.Likelihood`).
    """

    def __init__(self, sigma: float | None = None, per_pixel: bool = False, link: str = "sigmoid",
                 reduction: str = "sum"):
        super().__init__()
        if link not in LINKS:
            raise VaetoolError(f"link must be one of {', '.join(LINKS)} for the gaussian likelihood, not {link!r}.")
        if sigma is not None and per_pixel:
            raise VaetoolError("Give either a fixed sigma or per_pixel=True for the gaussian likelihood, not both.")
        if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
                                  or not math.isfinite(sigma) or sigma <= 0):
            raise VaetoolError(f"sigma must be a positive number for the gaussian likelihood, not {sigma!r}.")
        self.sigma = sigma
        self.per_pixel = per_pixel
        self.link = link
        self.reduction = check_reduction(reduction)
        self.params_per_channel = 2 if per_pixel else 1
        if sigma is None and not per_pixel:
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))

    def mean_and_log_sigma(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian's mean and log σ for decoder outputs ``params``: log σ is per pixel ``(B, C, H, W)``
        under ``per_pixel``, else one value (fixed ``sigma`` or the learned, softly floored one)."""
        if self.per_pixel:
            params, log_sigma = params.chunk(2, dim=1)
            log_sigma = _soft_floor(log_sigma)
        elif self.sigma is not None:
            log_sigma = params.new_tensor(math.log(self.sigma))
        else:
            log_sigma = _soft_floor(self.log_sigma)
        return (torch.sigmoid(params) if self.link == "sigmoid" else params), log_sigma

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        mean, log_sigma = self.mean_and_log_sigma(params)
        z = (x - mean) * torch.exp(-log_sigma)
        log_p = -0.5 * z ** 2 - log_sigma - _HALF_LOG_2PI
        return log_p.flatten(1).sum(1)

    def protocol(self, dataset: str) -> tuple[str, bool]:
        return (f"gaussian density of {dataset}'s pixel values in [0, 1], without dequantization: "
                "not comparable with published log-likelihoods", False)

    def mean(self, params: Tensor) -> Tensor:
        return self.mean_and_log_sigma(params)[0]

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mean, log_sigma = self.mean_and_log_sigma(params)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (mean + noise * torch.exp(log_sigma)).clamp(0, 1)
