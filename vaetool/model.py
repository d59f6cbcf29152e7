"""The VAE: an architecture, a likelihood, a prior and a latent kind, built from a config.

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
from vaetool.contracts import Architecture, Latent, Likelihood, Prior
from vaetool.distributions import SCALES, DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.latent_types.gaussian import Gaussian
from vaetool.priors.standard_normal import StandardNormal
from vaetool.validate import plugin_errors

DEFAULT_PRIOR = "standard-normal"
DEFAULT_LATENT = "gaussian"
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
    # What the latent kind adds to every objective's loss, per example (B,): a vector-quantised
    # latent's codebook and commitment terms. None when it adds nothing.
    latent_loss: Tensor | None = None

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
        return with_latent_loss(-reconstruction + beta * regulariser.mean(), terms)
    kl_per_dim = terms.kl.mean(0)
    if capacity is not None:
        return with_latent_loss(-reconstruction + beta * (kl_per_dim.sum() - capacity).abs(), terms)
    if free_bits > 0:
        kl_per_dim = kl_per_dim.clamp(min=free_bits)
    return with_latent_loss(-reconstruction + beta * kl_per_dim.sum(), terms)


def with_latent_loss(loss: Tensor, terms: ELBOTerms) -> Tensor:
    """An objective's loss plus what the latent kind adds to every objective (its batch mean), if anything."""
    return loss if terms.latent_loss is None else loss + terms.latent_loss.mean()


class VAE(nn.Module):
    """A variational autoencoder: architecture, likelihood and prior. Build it with :func:`create`
    or :func:`VAE.from_config`.

    Images go in and come out as float tensors ``(B, C, H, W)`` in [0, 1]. Conditional models
    (``model.conditional``) take the class label ``y`` (int64 ``(B,)``) wherever it matters.
    ``autoencoder=True`` makes a deterministic autoencoder: z is the encoder's mean and there is
    no KL term, for the AE-versus-VAE comparison.
    """

    def __init__(self, architecture: Architecture, likelihood: Likelihood, config: dict[str, Any],
                 prior: Prior | None = None, latent: Latent | None = None):
        super().__init__()
        self.architecture = architecture
        self.likelihood = likelihood
        self.prior = prior if prior is not None else StandardNormal(config["latent_dim"])
        self.latent = latent if latent is not None else Gaussian(config["latent_dim"], config["encoder_scale"],
                                                                 config["autoencoder"])
        self.config = config
        self.prior.bind(self)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        """Rebuild a model from its config: registry names and options, nothing else."""
        config = copy.deepcopy(config)
        likelihood_cls = registry.get("likelihood", config["likelihood"])
        with plugin_errors("likelihood", config["likelihood"], config["likelihood_options"]):
            likelihood = likelihood_cls(**config["likelihood_options"])
        # Files written before latents were plugins have no latent entry: theirs was the Gaussian.
        latent_cls = registry.get("latent", config.setdefault("latent", DEFAULT_LATENT))
        with plugin_errors("latent", config["latent"], config.setdefault("latent_options", {})):
            latent = latent_cls(config["latent_dim"], config["encoder_scale"], config["autoencoder"],
                                **config["latent_options"])
        architecture_cls = registry.get("architecture", config["architecture"])
        # The latent kind says how wide the architecture's latent is: a code of latent_dim
        # vectors of a quantised latent is latent_dim · dim features wide.
        with plugin_errors("architecture", config["architecture"], config["architecture_options"]):
            architecture = architecture_cls(tuple(config["input_shape"]), latent.features,
                                            likelihood.params_per_channel, config["num_classes"],
                                            **config["architecture_options"])
        # Files written before priors were plugins have no prior entry: theirs was N(0, I).
        prior_cls = registry.get("prior", config.setdefault("prior", DEFAULT_PRIOR))
        with plugin_errors("prior", config["prior"], config.setdefault("prior_options", {})):
            prior = prior_cls(config["latent_dim"], **config["prior_options"])
        return cls(architecture, likelihood, config, prior, latent)

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

    @property
    def discrete(self) -> bool:
        """Whether the latent code is a row of integers (a vector-quantised latent)."""
        return self.latent.discrete

    def encode(self, x: Tensor, y: Tensor | None = None):
        """q(z|x) for images in [0, 1], as the latent kind makes it: a
        :class:`~vaetool.distributions.DiagonalGaussian` for the Gaussian latent (zero variance for an
        autoencoder). Its ``mean`` is what :meth:`reconstruct` decodes."""
        mean, raw_scale = self.architecture.encode(x, self._label(y, len(x)))
        # Under mixed precision the network computes in bf16/fp16; the distribution, and so the
        # KL and the sample z, stay in the input's precision.
        return self.latent.posterior(mean.to(x.dtype), raw_scale.to(x.dtype))

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
        (for the standard normal prior: z ~ N(0, temperature² I); for a discrete latent,
        codes drawn from its prior over codes with the logits divided by ``temperature``)."""
        return self.decode(self.sample_latents(n, generator, temperature), y, sample=sample_pixels,
                           generator=generator)

    def sample_latents(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n decoder inputs z ~ p(z), ``(n, features)``; see :meth:`sample`."""
        return self.latent.sample(n, self.prior, generator, temperature)

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encode(x, y).mean, y)

    def elbo(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None,
             noise: Tensor | None = None) -> ELBOTerms:
        """ELBO terms for images in [0, 1], with one reparameterised sample z ~ q(z|x).

        ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  (Kingma & Welling, ICLR 2014, eq. 10 and 7): the
        KL in closed form when the prior has one, else log q(z|x) − log p(z) at the sampled z.
        ``noise``, when given, is the ε of that sample, ``(B, latent_dim)``. The latent kind makes
        z and the KL (see :class:`vaetool.contracts.Latent`).
        """
        target = self.likelihood.target(x, generator)
        posterior = self.encode(x, y)
        z, kl, latent_loss = self.latent.terms(posterior, self.prior, generator, noise)
        reconstruction = self.likelihood.log_prob(target, self.decode_params(z, y))
        return ELBOTerms(reconstruction, kl, z, posterior, latent_loss)

    def forward(self, x: Tensor, y: Tensor | None = None, noise: Tensor | None = None) -> ELBOTerms:
        """The ELBO terms: what training calls, through DistributedDataParallel when there are several processes."""
        return self.elbo(x, y, noise=noise)


def create(architecture: str = "conv", likelihood: str = "bernoulli", *,
           input_shape: tuple[int, int, int] = (1, 28, 28), latent_dim: int = 16, num_classes: int = 0,
           encoder_scale: str = "exp", autoencoder: bool = False,
           architecture_options: dict[str, Any] | None = None,
           likelihood_options: dict[str, Any] | None = None, prior: str = DEFAULT_PRIOR,
           prior_options: dict[str, Any] | None = None, latent: str = DEFAULT_LATENT,
           latent_options: dict[str, Any] | None = None, **extra: Any) -> VAE:
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
    if not registry.get("latent", latent).uses_prior and prior != DEFAULT_PRIOR:
        raise VaetoolError(f"The {latent} latent brings its own prior over codes, so the prior {prior!r} does not "
                           "apply; leave --prior out.")
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
        "latent": latent,
        "latent_options": registry.resolve_options("latent", latent, latent_options or {}),
        "input_shape": [int(s) for s in input_shape],
        "latent_dim": int(latent_dim),
        "num_classes": int(num_classes),
        "encoder_scale": encoder_scale,
        "autoencoder": bool(autoencoder),
        **extra,
    }
    return VAE.from_config(config)
