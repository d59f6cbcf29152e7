"""The VAE: an architecture, a likelihood and the standard-normal prior, built from a config.

Everything a model can do — the ELBO, encoding, decoding, sampling — lives here, so the
training loop, the CLI and the Python API all call the same code.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaetool import registry
from vaetool.contracts import Architecture, Likelihood, Prior
from vaetool.distributions import SCALES, DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.priors.standard_normal import StandardNormal
from vaetool.validate import plugin_errors

DEFAULT_PRIOR = "standard-normal"
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class ELBOTerms:
    """The evidence lower bound of each example and its two parts, in nats.

    ``elbo = reconstruction − kl.sum(-1)``, with β = 1: the bound itself, comparable across models
    whatever β they were trained with. ``kl`` is per latent dimension ``(B, latent_dim)`` when the
    prior's KL is analytic, else the Monte Carlo estimate as one column ``(B, 1)``.
    """

    reconstruction: Tensor  # (B,) log p(x|z) for one z ~ q(z|x)
    kl: Tensor  # (B, latent_dim) or (B, 1): KL(q(z|x) ‖ p(z))
    # What objectives beyond the ELBO need (β-TCVAE): the sampled z (B, latent_dim) and q(z|x).
    z: Tensor | None = None
    posterior: DiagonalGaussian | None = None

    @property
    def elbo(self) -> Tensor:
        return self.reconstruction - self.kl.sum(-1)


@dataclass
class KLDecomposition:
    """The KL term split three ways, per example ``(B,)`` in nats (Chen et al., NeurIPS 2018, eq. 2).

    ``mutual_information + total_correlation + dimension_kl`` is the Monte Carlo KL estimate
    log q(z|x) − log p(z) at the sampled z, exactly (the three telescope).
    """

    mutual_information: Tensor  # log q(z|x) − log q(z): index-code MI
    total_correlation: Tensor  # log q(z) − Σ_j log q(z_j)
    dimension_kl: Tensor  # Σ_j log q(z_j) − log p(z_j)


def kl_decomposition(z: Tensor, posterior: DiagonalGaussian, dataset_size: int) -> KLDecomposition:
    """Estimate the KL decomposition of a minibatch, for the standard normal prior.

    β-TCVAE (Chen et al., NeurIPS 2018, §4.1 and Appendix C.2) needs the aggregate posterior
    q(z) = 1/N Σ_n q(z|n) and its marginals q(z_j) at each sampled z_i. Both are estimated by
    stratified sampling from the batch of M codes drawn from N examples: z_i's own example counts
    with its true weight 1/N and the other M − 1 examples of the batch, a uniform draw from the
    other N − 1, with (N − 1) / (N (M − 1)) each. That estimate of q(z_i) is unbiased (the weights
    sum to 1 and, when the batch is the whole dataset, it is exact), unlike the plain minibatch
    weighted sampling 1/(NM) whose log is off by a constant for each term.
    """
    batch = len(z)
    if dataset_size < batch:
        raise ValueError(f"the dataset size ({dataset_size}) cannot be smaller than the batch ({batch})")
    # log q(z_i,d | x_j,d) for every pair (i, j) and dimension d: (M, M, L).
    diff = (z[:, None, :] - posterior.mean[None, :, :]) / posterior.std[None, :, :]
    log_q_pairs = -0.5 * (diff ** 2 + posterior.log_var[None, :, :] + _LOG_2PI)
    if batch > 1:
        log_weights = torch.full((batch, batch), math.log((dataset_size - 1) / (dataset_size * (batch - 1))),
                                 dtype=z.dtype, device=z.device)
        log_weights.fill_diagonal_(-math.log(dataset_size))
    else:  # nothing else to average over: q(z) is taken as q(z|x), which leaves the ELBO's KL as dimension-wise KL
        log_weights = torch.zeros(1, 1, dtype=z.dtype, device=z.device)
    log_q_z = torch.logsumexp(log_weights + log_q_pairs.sum(-1), dim=1)
    log_q_marginals = torch.logsumexp(log_weights[:, :, None] + log_q_pairs, dim=1).sum(-1)
    log_q_z_given_x = log_q_pairs.diagonal(dim1=0, dim2=1).sum(0)  # the same sums as the pairs, so the parts telescope
    log_p_z = -0.5 * (z ** 2 + _LOG_2PI).sum(-1)
    return KLDecomposition(log_q_z_given_x - log_q_z, log_q_z - log_q_marginals, log_q_marginals - log_p_z)


def objective(terms: ELBOTerms, beta: float = 1.0, free_bits: float = 0.0, *, tc_weight: float | None = None,
              dataset_size: int | None = None, capacity: float | None = None) -> Tensor:
    """The training loss, a scalar: −E[log p(x|z)] + β · KL, averaged over the batch.

    β-VAE (Higgins et al., ICLR 2017) weighs the KL; β = 0 is the autoencoder limit. Free bits
    (Kingma et al., NeurIPS 2016) stop penalising a latent dimension's batch-average KL below
    ``free_bits`` nats, so dimensions are not pushed to collapse early in training (with a prior
    whose KL is not per dimension, the threshold applies to the whole KL).

    ``tc_weight`` B makes it β-TCVAE (Chen et al., NeurIPS 2018, eq. 4 with α = γ = 1):
    −log p(x|z) + β · (MI + B · TC + dimension-wise KL), the three estimated by
    :func:`kl_decomposition` over the batch of ``dataset_size`` examples; ``terms`` must carry
    ``z`` and ``posterior``, and β is 1 or its warm-up ramp. ``capacity`` C makes it the
    controlled capacity increase (Burgess et al. 2018, eq. 8): −log p(x|z) + β · |KL − C|, β
    being the paper's γ and KL the batch-average total. Neither takes free bits.
    """
    reconstruction = terms.reconstruction.mean()
    if tc_weight is not None:
        if terms.z is None or terms.posterior is None or dataset_size is None:
            raise ValueError("the β-TCVAE objective needs terms.z, terms.posterior and the dataset size")
        parts = kl_decomposition(terms.z, terms.posterior, dataset_size)
        regulariser = parts.mutual_information + tc_weight * parts.total_correlation + parts.dimension_kl
        return -reconstruction + beta * regulariser.mean()
    kl_per_dim = terms.kl.mean(0)
    if capacity is not None:
        return -reconstruction + beta * (kl_per_dim.sum() - capacity).abs()
    if free_bits > 0:
        kl_per_dim = kl_per_dim.clamp(min=free_bits)
    return -reconstruction + beta * kl_per_dim.sum()


class VAE(nn.Module):
    """A variational autoencoder: architecture, likelihood and prior. Build it with :func:`create`
    or :func:`VAE.from_config`.

    Images go in and come out as float tensors ``(B, C, H, W)`` in [0, 1]. Conditional models
    (``model.conditional``) take the class label ``y`` (int64 ``(B,)``) wherever it matters.
    ``autoencoder=True`` makes a deterministic autoencoder: z is the encoder's mean and there is
    no KL term, for the AE-versus-VAE comparison.
    """

    def __init__(self, architecture: Architecture, likelihood: Likelihood, config: dict[str, Any],
                 prior: Prior | None = None):
        super().__init__()
        self.architecture = architecture
        self.likelihood = likelihood
        self.prior = prior if prior is not None else StandardNormal(config["latent_dim"])
        self.config = config

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        """Rebuild a model from its config: registry names and options, nothing else."""
        config = copy.deepcopy(config)
        likelihood_cls = registry.get("likelihood", config["likelihood"])
        with plugin_errors("likelihood", config["likelihood"], config["likelihood_options"]):
            likelihood = likelihood_cls(**config["likelihood_options"])
        architecture_cls = registry.get("architecture", config["architecture"])
        with plugin_errors("architecture", config["architecture"], config["architecture_options"]):
            architecture = architecture_cls(tuple(config["input_shape"]), config["latent_dim"],
                                            likelihood.params_per_channel, config["num_classes"],
                                            **config["architecture_options"])
        # Files written before priors were plugins have no prior entry: theirs was N(0, I).
        prior_cls = registry.get("prior", config.setdefault("prior", DEFAULT_PRIOR))
        with plugin_errors("prior", config["prior"], config.setdefault("prior_options", {})):
            prior = prior_cls(config["latent_dim"], **config["prior_options"])
        return cls(architecture, likelihood, config, prior)

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["input_shape"])

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    @property
    def conditional(self) -> bool:
        return self.architecture.conditional

    @property
    def autoencoder(self) -> bool:
        return self.config["autoencoder"]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _label(self, y: Tensor | None, batch: int) -> Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise VaetoolError(f"This model is conditional on a class label (0 to {self.num_classes - 1}); give one.")
        y = torch.as_tensor(y, device=self.device).long().reshape(-1)
        if y.numel() == 1 and batch > 1:
            y = y.expand(batch)
        # Checked outside training only: the check reads the labels back to the host, and the
        # trainer validates its labels once when it loads the dataset.
        if not self.training and y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise VaetoolError(f"Labels must lie in 0 to {self.num_classes - 1} for this model.")
        return y

    # -- the model's operations ---------------------------------------------------------------

    def encode(self, x: Tensor, y: Tensor | None = None) -> DiagonalGaussian:
        """q(z|x) for images in [0, 1]. For an autoencoder the variance is zero."""
        mean, raw_scale = self.architecture.encode(x, self._label(y, len(x)))
        # Under mixed precision the network computes in bf16/fp16; the distribution, and so the
        # KL and the sample z, stay in the input's precision.
        mean, raw_scale = mean.to(x.dtype), raw_scale.to(x.dtype)
        if self.autoencoder:
            return DiagonalGaussian(mean, torch.full_like(mean, -float("inf")))
        return DiagonalGaussian.from_encoder(mean, raw_scale, self.config["encoder_scale"])

    def decode_params(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The likelihood's parameters for latents z (in z's precision, also under mixed precision,
        so that log p(x|z), a sum over every pixel, is never summed in bf16 or fp16)."""
        return self.architecture.decode(z, self._label(y, len(z))).to(z.dtype)

    def decode(self, z: Tensor, y: Tensor | None = None, sample: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
        """Images for latents z: the distribution's mean, or a sample from it."""
        params = self.decode_params(z, y)
        return self.likelihood.sample(params, generator) if sample else self.likelihood.mean(params)

    def sample(self, n: int, y: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, sample_pixels: bool = False) -> Tensor:
        """n images decoded from z ~ p(z), scaled by ``temperature`` about the origin
        (for the standard normal prior: z ~ N(0, temperature² I))."""
        z = temperature * self.prior.sample(n, generator)
        return self.decode(z, y, sample=sample_pixels, generator=generator)

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encode(x, y).mean, y)

    def elbo(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None,
             noise: Tensor | None = None) -> ELBOTerms:
        """ELBO terms for images in [0, 1], with one reparameterised sample z ~ q(z|x).

        ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  (Kingma & Welling, ICLR 2014, eq. 10 and 7): the
        KL in closed form when the prior has one, else log q(z|x) − log p(z) at the sampled z.
        ``noise``, when given, is the ε of that sample, ``(B, latent_dim)``.
        """
        target = self.likelihood.target(x, generator)
        posterior = self.encode(x, y)
        if self.autoencoder:
            z, kl = posterior.mean, torch.zeros_like(posterior.mean)
        else:
            z = posterior.rsample(generator, noise=noise)
            if self.prior.analytic_kl:
                kl = self.prior.kl(posterior)
            else:
                kl = (posterior.log_prob(z) - self.prior.log_prob(z)).unsqueeze(-1)
        reconstruction = self.likelihood.log_prob(target, self.decode_params(z, y))
        return ELBOTerms(reconstruction, kl, z, posterior)

    def forward(self, x: Tensor, y: Tensor | None = None, noise: Tensor | None = None) -> ELBOTerms:
        """The ELBO terms: what training calls, through DistributedDataParallel when there are several processes."""
        return self.elbo(x, y, noise=noise)


def create(architecture: str = "conv", likelihood: str = "bernoulli", *,
           input_shape: tuple[int, int, int] = (1, 28, 28), latent_dim: int = 16, num_classes: int = 0,
           encoder_scale: str = "exp", autoencoder: bool = False,
           architecture_options: dict[str, Any] | None = None,
           likelihood_options: dict[str, Any] | None = None, prior: str = DEFAULT_PRIOR,
           prior_options: dict[str, Any] | None = None, **extra: Any) -> VAE:
    """A new, untrained model from registry names and options.

    Options left out (or ``None``) take the plugin's own defaults; the config records the values
    actually used. ``extra`` keys (dataset, training settings, …) are recorded in the config as
    they are.
    """
    if encoder_scale not in SCALES:
        raise VaetoolError(f"The encoder scale must be one of {', '.join(SCALES)}, not {encoder_scale!r}.")
    if len(input_shape) != 3:
        raise VaetoolError(f"The input shape must be (channels, height, width), not {tuple(input_shape)}.")
    architecture_cls = registry.get("architecture", architecture)
    if architecture_cls.conditional and num_classes < 1:
        raise VaetoolError(f"The {architecture} architecture is conditional on a class label, "
                           "so it needs a labelled dataset; this one has no classes.")
    config = {
        "architecture": architecture,
        "architecture_options": registry.resolve_options("architecture", architecture, architecture_options or {}),
        "likelihood": likelihood,
        "likelihood_options": registry.resolve_options("likelihood", likelihood, likelihood_options or {}),
        "prior": prior,
        "prior_options": registry.resolve_options("prior", prior, prior_options or {}),
        "input_shape": [int(s) for s in input_shape],
        "latent_dim": int(latent_dim),
        "num_classes": int(num_classes),
        "encoder_scale": encoder_scale,
        "autoencoder": bool(autoencoder),
        **extra,
    }
    return VAE.from_config(config)
