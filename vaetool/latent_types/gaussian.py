"""The continuous latent of the textbook VAE: a diagonal Gaussian posterior scored against the prior."""
from __future__ import annotations

import torch
from torch import Tensor

from vaetool.contracts import Latent, LatentTerms, Prior
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
              noise: Tensor | None = None, samples: int = 1) -> LatentTerms:
        """One reparameterised z per image (``samples`` S > 1: S of them, ``(S, B, L)``; 0: the mean)."""
        if self.autoencoder:
            return LatentTerms(posterior.mean, torch.zeros_like(posterior.mean))
        if samples == 0:  # the encoder used deterministically (WAE): z is the posterior mean
            z = posterior.mean
            # The KL is reported in closed form; a prior without one has no single-point estimate.
            return LatentTerms(z, prior.kl(posterior) if prior.analytic_kl else torch.zeros_like(z[:, :1]))
        if samples == 1:
            z = posterior.rsample(generator, noise=noise)
            log_posterior, log_prior = posterior.log_prob(z), prior.log_prob(z)
            kl = prior.kl(posterior) if prior.analytic_kl else (log_posterior - log_prior).unsqueeze(-1)
            return LatentTerms(z, kl, None, log_prior, log_posterior)
        expanded = DiagonalGaussian(posterior.mean.expand(samples, *posterior.mean.shape),
                                    posterior.log_var.expand(samples, *posterior.log_var.shape))
        z = expanded.rsample(generator, noise=noise.transpose(0, 1) if noise is not None else None)
        log_posterior, log_prior = expanded.log_prob(z), prior.log_prob(z)
        kl = prior.kl(posterior) if prior.analytic_kl else (log_posterior - log_prior).mean(0).unsqueeze(-1)
        return LatentTerms(z, kl, expanded, log_prior, log_posterior)

    def sample(self, n: int, prior: Prior, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """z ~ p(z), scaled by ``temperature`` about the origin (for N(0, I): z ~ N(0, T² I))."""
        return temperature * prior.sample(n, generator)
