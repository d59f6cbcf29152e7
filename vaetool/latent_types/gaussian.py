"""The continuous latent of the textbook VAE: a diagonal Gaussian posterior scored against the prior."""
from __future__ import annotations

import torch
from torch import Tensor

from vaetool.contracts import Latent, Prior
from vaetool.distributions import DiagonalGaussian


class Gaussian(Latent):
    """q(z|x) = N(μ(x), diag σ²(x)) with the reparameterised sample z = μ + σ ε (Kingma & Welling,
    ICLR 2014), its KL from the model's prior in closed form where the prior has one, else the
    single-sample estimate log q(z|x) − log p(z) at that z.

    The encoder's ``raw_scale`` becomes σ by the model's ``encoder_scale``; with ``autoencoder``
    the posterior has zero variance, z is its mean, and there is no KL term. No options.
    """

    gaussian_posterior = True

    def posterior(self, mean: Tensor, raw_scale: Tensor) -> DiagonalGaussian:
        if self.autoencoder:
            return DiagonalGaussian(mean, torch.full_like(mean, -float("inf")))
        return DiagonalGaussian.from_encoder(mean, raw_scale, self.encoder_scale)

    def terms(self, posterior: DiagonalGaussian, prior: Prior, generator: torch.Generator | None = None,
              noise: Tensor | None = None) -> tuple[Tensor, Tensor, None]:
        if self.autoencoder:
            return posterior.mean, torch.zeros_like(posterior.mean), None
        z = posterior.rsample(generator, noise=noise)
        if prior.analytic_kl:
            kl = prior.kl(posterior)
        else:
            kl = (posterior.log_prob(z) - prior.log_prob(z)).unsqueeze(-1)
        return z, kl, None

    def sample(self, n: int, prior: Prior, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """z ~ p(z), scaled by ``temperature`` about the origin (for N(0, I): z ~ N(0, T² I))."""
        return temperature * prior.sample(n, generator)
