"""The VAE: an architecture, a likelihood, a prior and a latent kind, built from a config.

Everything a model can do — the ELBO, encoding, decoding, sampling — lives here, so the
training loop, the CLI and the Python API all call the same code.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from vaetool import registry
from vaetool.contracts import NEEDS, Architecture, Latent, Likelihood, Prior
from vaetool.distributions import SCALES, DiagonalGaussian
from vaetool.errors import VaetoolError
from vaetool.latent_types.gaussian import Gaussian
from vaetool.priors.standard_normal import StandardNormal
from vaetool.validate import plugin_errors

DEFAULT_PRIOR = "standard-normal"
DEFAULT_LATENT = "gaussian"


def _inference(method):
    """Outside training, run without autograd, so results are plain tensors (``.numpy()`` works)
    and no graph is kept. In training mode, and inside :meth:`VAE.elbo`, gradients flow as ever."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if self.training or self.__dict__.get("_differentiating"):
            return method(self, *args, **kwargs)
        with torch.no_grad():
            return method(self, *args, **kwargs)

    return run


def _differentiable(method):
    """The bound keeps its gradient in any mode: the inference methods it calls keep theirs."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        outer = self.__dict__.get("_differentiating", False)
        self.__dict__["_differentiating"] = True
        try:
            return method(self, *args, **kwargs)
        finally:
            self.__dict__["_differentiating"] = outer

    return run


@dataclass
class ELBOTerms:
    """The evidence lower bound of each example and its parts, in nats: what an objective is given.

    ``elbo = reconstruction − kl.sum(-1)``, with β = 1: the bound itself, comparable across models
    whatever β they were trained with. ``kl`` is per latent dimension ``(B, latent_dim)`` when the
    prior's KL is analytic, else the Monte Carlo estimate as one column ``(B, 1)``.

    With S > 1 samples of z per image (``VAE.elbo(samples=S)``), ``reconstruction``,
    ``log_prior`` and ``log_posterior`` are ``(S, B)``, ``z`` is ``(S, B, latent_dim)`` and
    ``posterior`` is q(z|x) expanded to that shape; ``kl`` stays per image (the closed form, or the
    Monte Carlo estimate averaged over the samples).
    """

    reconstruction: Tensor  # (B,) log p(x|z) for one z ~ q(z|x)
    kl: Tensor  # (B, latent_dim) or (B, 1): KL(q(z|x) ‖ p(z))
    # What objectives beyond the ELBO need: the sampled z (B, latent_dim), q(z|x), and
    # log p(z), log q(z|x) at that z (importance weights). None for an autoencoder.
    z: Tensor | None = None
    posterior: DiagonalGaussian | None = None
    log_prior: Tensor | None = None
    log_posterior: Tensor | None = None
    # What the latent kind adds to every objective's loss, per example (B,): a vector-quantised
    # latent's codebook and commitment terms. None when it adds nothing.
    latent_loss: Tensor | None = None

    @property
    def elbo(self) -> Tensor:
        return self.reconstruction - self.kl.sum(-1)

    def weighted(self, weight: float) -> ELBOTerms:
        """These terms with log p(x|z) scaled by ``weight`` for the training loss: what a likelihood
        with ``reduction="mean"`` trains on (see ``Likelihood.training_weight``). Reports keep the sums."""
        return self if weight == 1 else replace(self, reconstruction=self.reconstruction * weight)

    @property
    def log_weights(self) -> Tensor:
        """log p(x, z) − log q(z|x) for each sample, ``(S, B)`` (S = 1 for a single sample)."""
        return torch.atleast_2d(self.reconstruction + self.log_prior - self.log_posterior)

    def sums(self) -> tuple[Tensor, Tensor]:
        """Σ over the batch of log p(x|z) (averaged over samples) and of the KL: what progress shows."""
        reconstruction = self.reconstruction if self.reconstruction.dim() == 1 else self.reconstruction.mean(0)
        return reconstruction.sum(), self.kl.sum()


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config written by an earlier vaetool, in today's terms (changed in place and returned)."""
    options = config.get("likelihood_options")
    # Before binarize_seed existed, Bernoulli's "static" thresholded at 0.5: today's "threshold".
    if config.get("likelihood") == "bernoulli" and isinstance(options, dict) \
            and options.get("binarize") == "static" and "binarize_seed" not in options:
        options["binarize"] = "threshold"
    return config


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
        config = upgrade_config(copy.deepcopy(config))
        likelihood_cls = registry.get("likelihood", config["likelihood"])
        with plugin_errors("likelihood", config["likelihood"], config["likelihood_options"], likelihood_cls):
            likelihood = likelihood_cls(**config["likelihood_options"])
        # Files written before latents were plugins have no latent entry: theirs was the Gaussian.
        latent_cls = registry.get("latent", config.setdefault("latent", DEFAULT_LATENT))
        with plugin_errors("latent", config["latent"], config.setdefault("latent_options", {}), latent_cls):
            latent = latent_cls(config["latent_dim"], config["encoder_scale"], config["autoencoder"],
                                **config["latent_options"])
        architecture_cls = registry.get("architecture", config["architecture"])
        # The latent kind says how wide the architecture's latent is: a code of latent_dim
        # vectors of a quantised latent is latent_dim · dim features wide.
        with plugin_errors("architecture", config["architecture"], config["architecture_options"], architecture_cls):
            architecture = architecture_cls(tuple(config["input_shape"]), latent.features,
                                            likelihood.params_per_channel, config["num_classes"],
                                            **config["architecture_options"])
        # Files written before priors were plugins have no prior entry: theirs was N(0, I).
        prior_cls = registry.get("prior", config.setdefault("prior", DEFAULT_PRIOR))
        with plugin_errors("prior", config["prior"], config.setdefault("prior_options", {}), prior_cls):
            # The prior scores the top stochastic layer: the code itself for a latent of one layer.
            prior = prior_cls(latent.layers[-1], **config["prior_options"])
        return cls(architecture, likelihood, config, prior, latent)

    @property
    def latent_dim(self) -> int:
        """The width of the code that :meth:`encode` gives and :meth:`decode` takes: ``--latent-dim`` for one
        stochastic layer, the chosen layer's for several (:meth:`select_layer`); code positions for a discrete latent."""
        return self.latent.code_dim

    def select_layer(self, layer: int | None = None) -> VAE:
        """Make stochastic layer ``layer`` (1 is nearest the data; None: the top) the code that :meth:`encode`,
        :meth:`decode`, :meth:`sample_latents` and the commands work with. Training always uses every layer."""
        count = len(self.latent.layers)
        if layer is None:
            layer = count
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= count:
            if count == 1:
                raise VaetoolError(f"This model has one stochastic layer, so the only layer is 1, not {layer!r}.")
            raise VaetoolError(f"This model has stochastic layers 1 (nearest the data) to {count} (the top); "
                               f"there is no layer {layer!r}.")
        self.latent.layer = layer
        return self

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

    def recorded_kl_per_dim(self) -> list[float] | None:
        """The test KL of each dimension of the code (the chosen layer's), as training recorded it; None where
        it was not recorded per dimension."""
        kl, widths = self.config.get("test_kl_per_dim"), self.latent.layers
        if kl is None or len(kl) != sum(widths):
            return None
        start = sum(widths[:self.latent.layer - 1])
        return list(kl[start:start + widths[self.latent.layer - 1]])

    def lacks(self, need: str) -> str | None:
        """Why this model cannot give what an objective needs (a name from ``contracts.NEEDS``), or None."""
        if need not in NEEDS:
            return f"{need!r} is nothing vaetool knows (it knows {', '.join(NEEDS)})"
        if need in ("kl", "posterior", "samples") and self.autoencoder:
            return "an autoencoder (--autoencoder) has a deterministic encoder and no KL term"
        if need in ("kl", "posterior", "samples", "single-code") and not self.latent.gaussian_posterior:
            return (f"this model's {self.config['latent']} latent is a discrete code, with no Gaussian posterior "
                    "to sample and no KL that the encoder shapes")
        if need == "standard-normal-prior" and self.config["prior"] != DEFAULT_PRIOR:
            return f"this model's prior is {self.config['prior']}"
        return self.latent.lacks(need)

    def draw_noise(self, batch: int, samples: int = 1, device=None) -> Tensor | None:
        """The ε of ``samples`` draws of z for each of ``batch`` images, batch first; None when z is deterministic."""
        if self.autoencoder or samples == 0 or not self.latent.gaussian_posterior:
            return None
        width = sum(self.latent.layers)  # one ε per dimension of every stochastic layer
        shape = (batch, width) if samples == 1 else (batch, samples, width)
        return torch.randn(shape, device=device)

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

    @_inference
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

    @_inference
    def decode(self, z: Tensor, y: Tensor | None = None, sample: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
        """Images for latents z (codes of the chosen layer, see :meth:`select_layer`): the distribution's mean,
        or a sample from it."""
        params = self.decode_params(self.latent.decoder_input(z), y)
        return self.likelihood.sample(params, generator) if sample else self.likelihood.mean(params)

    @_inference
    def sample(self, n: int, y: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None, sample_pixels: bool = False) -> Tensor:
        """n images decoded from z ~ p(z), scaled by ``temperature`` about the origin
        (for the standard normal prior: z ~ N(0, temperature² I); for a discrete latent,
        codes drawn from its prior over codes with the logits divided by ``temperature``)."""
        return self.decode(self.sample_latents(n, generator, temperature), y, sample=sample_pixels,
                           generator=generator)

    @_inference
    def sample_latents(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n codes z ~ p(z) that :meth:`decode` takes, ``(n, latent_dim)`` (for several stochastic layers, the
        chosen layer's, drawn through the layers above it); see :meth:`sample`."""
        return self.latent.sample(n, self.prior, generator, temperature)

    @_inference
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encode(x, y).mean, y)

    @_differentiable
    def elbo(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None,
             noise: Tensor | None = None, samples: int = 1) -> ELBOTerms:
        """ELBO terms for images in [0, 1], with reparameterised samples z ~ q(z|x) (one by default).

        ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  (Kingma & Welling, ICLR 2014, eq. 10 and 7): the
        KL in closed form when the prior has one, else log q(z|x) − log p(z) at the sampled z. x is
        first turned into the likelihood's ``target`` (a binarization, say), which both the encoder
        and the likelihood receive.
        ``noise``, when given, is the ε of the samples, as :meth:`draw_noise` lays it out.
        ``samples`` > 1 draws that many z per image (importance-weighted objectives); see
        :class:`ELBOTerms` for the shapes. ``samples`` = 0 takes z as the posterior mean, a
        deterministic encoder (the Wasserstein autoencoder's).
        """
        # The encoder sees the data as the likelihood scores it: under a binarization, the same binary
        # sample reaches both (the protocol of the binarized-MNIST literature, e.g. Burda et al. 2016).
        target = self.likelihood.target(x, generator)
        posterior = self.encode(target, y)
        # The latent kind makes z, the KL and the densities (see vaetool.contracts.Latent).
        drawn = self.latent.terms(posterior, self.prior, generator, noise, samples)
        if drawn.z.dim() == 2:
            reconstruction = self.likelihood.log_prob(target, self.decode_params(drawn.z, y))
        else:  # (S, B, features): S samples of each image, decoded as one batch of S·B
            count, batch = drawn.z.shape[:2]
            labels = y.repeat(count) if y is not None else None  # row s·B + b is image b
            params = self.decode_params(drawn.z.reshape(count * batch, -1), labels)
            repeated = target.expand(count, *target.shape).reshape(count * batch, *target.shape[1:])
            reconstruction = self.likelihood.log_prob(repeated, params).reshape(count, batch)
        return ELBOTerms(reconstruction, drawn.kl, drawn.z, drawn.posterior or posterior, drawn.log_prior,
                         drawn.log_posterior, drawn.loss)

    def forward(self, x: Tensor, y: Tensor | None = None, noise: Tensor | None = None, samples: int = 1) -> ELBOTerms:
        """The ELBO terms: what training calls, through DistributedDataParallel when there are several processes."""
        return self.elbo(x, y, noise=noise, samples=samples)


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
    model = VAE.from_config(config)
    if model.architecture.output_bias == "data-mean" and model.likelihood.params_at(
            torch.full(model.input_shape, 0.5)) is None:
        raise VaetoolError(f"output_bias=data-mean starts the decoder at the {likelihood} likelihood's parameters for "
                           "the mean image, and that likelihood has none; leave output_bias out or use bernoulli.")
    return model
