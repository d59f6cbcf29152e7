"""The diagonal Gaussian posterior q(z|x) that every encoder outputs."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SCALES = ("exp", "softplus")
_LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian:
    """N(mean, diag(std²)), batched as ``(B, latent_dim)``."""

    def __init__(self, mean: Tensor, log_var: Tensor):
        self.mean = mean
        self.log_var = log_var
        self.std = torch.exp(0.5 * log_var)

    @classmethod
    def from_encoder(cls, mean: Tensor, raw_scale: Tensor, scale: str = "exp") -> DiagonalGaussian:
        """Interpret the encoder's unconstrained scale output.

        ``exp``: ``raw_scale`` is log σ² (Kingma & Welling 2014); clamped so exp never overflows.
        ``softplus``: σ = softplus(raw_scale), which grows linearly rather than exponentially and
        so tends to train more stably with large learning rates.
        """
        if scale == "exp":
            return cls(mean, raw_scale.clamp(-30.0, 20.0))
        if scale == "softplus":
            std = F.softplus(raw_scale) + 1e-5
            return cls(mean, 2 * torch.log(std))
        raise ValueError(f"unknown encoder scale {scale!r}; choose from {', '.join(SCALES)}")

    def rsample(self, generator: torch.Generator | None = None, temperature: float = 1.0,
                noise: Tensor | None = None) -> Tensor:
        """z = mean + std · ε, differentiable in mean and std (the reparameterisation trick).

        ε is drawn here unless ``noise`` gives it: distributed training draws the ε of the whole
        global batch on every process and hands each its rows, so N processes see the noise one
        process would.
        """
        eps = noise if noise is not None else torch.randn(self.mean.shape, generator=generator,
                                                          device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + temperature * self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q ‖ N(0, I)) per latent dimension, ``(B, latent_dim)``.

        Analytic form, Kingma & Welling 2014, Appendix B: ½(μ² + σ² − 1 − log σ²).
        """
        return 0.5 * (self.mean ** 2 + torch.exp(self.log_var) - 1.0 - self.log_var)

    def kl_to(self, other: DiagonalGaussian) -> Tensor:
        """KL(self ‖ other) per dimension, in closed form: ½(log σ₂² − log σ₁² + (σ₁² + (μ₁ − μ₂)²) / σ₂² − 1)."""
        return 0.5 * (other.log_var - self.log_var + (torch.exp(self.log_var) + (self.mean - other.mean) ** 2)
                      * torch.exp(-other.log_var) - 1.0)

    def log_prob(self, z: Tensor, per_dimension: bool = False) -> Tensor:
        """log q(z|x), summed over latent dimensions, ``(B,)`` (``per_dimension``: not summed, ``(B, L)``)."""
        terms = -0.5 * (((z - self.mean) / self.std) ** 2 + self.log_var + _LOG_2PI)
        return terms if per_dimension else terms.sum(-1)
