"""The base classes every plugin kind implements: architectures, likelihoods, priors, latents, datasets,
objectives and learning-rate schedules.

A plugin is a class registered under an entry-point group (see :mod:`vaetool.registry`).
Its constructor arguments are its options: each one typed and defaulted, because the
values it was built with are recorded in the model file and rebuild it exactly.

The three kinds are cut so that any architecture pairs with any likelihood: the likelihood
says how many decoder outputs each pixel needs (``params_per_channel``) and the architecture
produces that many.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

#: Version of the contracts below. A plugin declares the version it was written for
#: (``api_version``) and is refused when it differs.
PLUGIN_API_VERSION = 1


class Architecture(nn.Module):
    """An encoder and a decoder.

    Built as ``cls(input_shape, latent_dim, params_per_channel, num_classes, **options)``.

    - ``encode(x, y)`` takes images ``(B, C, H, W)`` scaled to [0, 1] and returns the posterior
      ``(mean, raw_scale)``, each ``(B, latent_dim)``. ``raw_scale`` is unconstrained: the model
      turns it into a standard deviation (``exp`` of a log-variance or ``softplus``).
    - ``decode(z, y)`` returns the likelihood's parameters, ``(B, params_per_channel * C, H, W)``,
      laid out as ``params_per_channel`` consecutive blocks of ``C`` channels.

    ``y`` is the integer class label ``(B,)``; only architectures with ``conditional = True``
    receive it, and they are only built with ``num_classes > 0``.

    Optional: an architecture whose ``output_bias`` is ``"data-mean"`` (an option of its own, say)
    implements ``start_output_at(params)``; before a new run's first step the trainer calls it with
    the likelihood's parameters for the training images' mean (:meth:`Likelihood.params_at`).
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    conditional: ClassVar[bool] = False
    output_bias: str = "default"

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int,
                 params_per_channel: int = 1, num_classes: int = 0):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_dim = int(latent_dim)
        self.params_per_channel = int(params_per_channel)
        self.num_classes = int(num_classes)

    @property
    def output_channels(self) -> int:
        """Channels the decoder must produce: one block of C per likelihood parameter."""
        return self.input_shape[0] * self.params_per_channel

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def start_output_at(self, params: Tensor) -> None:
        """Start the decoder's per-pixel output bias at ``params`` ``(params_per_channel · C, H, W)``."""
        raise NotImplementedError


class Likelihood(nn.Module):
    """The decoder distribution p(x | z), one independent factor per pixel and channel.

    Built as ``cls(**options)``. It may own parameters (a learned noise scale, say): they are
    trained and saved with the model.

    - ``params_per_channel``: decoder outputs needed per pixel and channel (an instance
      attribute when it depends on the options).
    - ``target(x, generator)``: the data in [0, 1] as this distribution scores it, e.g. a
      dynamic binarization. The default is ``x`` unchanged.
    - ``log_prob(x, params)``: log p(x | z) per example, shape ``(B,)``, **summed** over every
      pixel and channel. Never a mean: a mean silently rescales the reconstruction term
      against the KL and is the classic VAE bug.
    - ``mean(params)`` and ``sample(params, generator)``: images in [0, 1] (a likelihood may say
      otherwise for its mean, as the gaussian's identity link does for exact pPCA).
    - ``discrete``: True when ``log_prob`` is a probability mass on 8-bit or binary values,
      so that bits per dimension are a meaningful report.
    - ``reduction``: ``"sum"`` (the default), or ``"mean"`` to train on purpose with the
      averaged reconstruction term, the classic bug: the training loss then weighs log p(x|z)
      by 1/(pixels·channels), see :meth:`training_weight`. ``log_prob`` stays a sum either way,
      so every reported ELBO and log-likelihood is comparable with other models.
    - ``levels``: when the distribution of one pixel is a probability mass on the values
      ``k / (levels − 1)`` (2 for a Bernoulli, 256 for 8-bit data), their number; ``None`` for a
      density, which integrates to 1 over ``support`` (the real line unless said otherwise). The
      conformance kit checks either on a one-pixel image: an unnormalised ``log_prob`` silently
      changes the objective.
    - ``protocol(dataset)``: what this likelihood's log-likelihoods of ``dataset`` measure, in
      words, and whether they are comparable with published tables: ``(sentence, comparable)``.
      The default, ``None``, says the protocol was not checked; ``compare`` prints either.
    - ``params_at(mean)``: decoder parameters ``(params_per_channel · C, H, W)`` whose ``mean`` is the
      image ``mean`` ``(C, H, W)`` (clamped into reach), where a decoder's output bias starts under
      ``output_bias=data-mean``; the default, ``None``, says this likelihood has none.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    params_per_channel: int = 1
    discrete: bool = False
    reduction: str = "sum"
    levels: int | None = None
    support: tuple[float, float] = (-float("inf"), float("inf"))

    def training_weight(self, x: Tensor) -> float:
        """The weight of log p(x|z) in the training loss: 1, or one over the values per example
        (pixels × channels) when ``reduction`` is ``"mean"``."""
        return 1.0 if self.reduction == "sum" else 1.0 / x[0].numel()

    def target(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def protocol(self, dataset: str) -> tuple[str, bool] | None:
        return None

    def params_at(self, mean: Tensor) -> Tensor | None:
        return None


class Prior(nn.Module):
    """The prior p(z) over the latent space.

    Built as ``cls(latent_dim, **options)``. It may own parameters (a learned mixture, say): they
    are trained with the model and saved in its file.

    - ``log_prob(z)``: log p(z) per row of ``z`` ``(..., latent_dim)``, summed over dimensions.
    - ``sample(n, generator)``: ``(n, latent_dim)`` draws on the prior's device.
    - ``analytic_kl``: True when ``kl(posterior)`` gives KL(q(z|x) ‖ p(z)) in closed form per latent
      dimension, ``(B, latent_dim)``. Otherwise the ELBO uses the single-sample Monte Carlo estimate
      log q(z|x) − log p(z) at the same z as the reconstruction term.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    analytic_kl: ClassVar[bool] = False

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = int(latent_dim)

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def kl(self, posterior) -> Tensor:
        raise NotImplementedError

    def bind(self, model: nn.Module) -> None:
        """Called once by the model that owns this prior, as soon as the model is built.

        A prior defined through the model's own networks keeps what it needs here: the VampPrior
        (Tomczak & Welling, AISTATS 2018) pushes its pseudo-inputs through ``model.encode``, and
        creates them here, where it learns the input shape. It must not store ``model`` as a
        submodule (that would nest the model inside itself); a bound method such as
        ``model.encode`` is a plain attribute. Parameters created here are trained and saved like
        any other. The default needs nothing.
        """


@dataclass
class LatentTerms:
    """What a latent kind gives the bound for a batch (see :meth:`Latent.terms`).

    ``z``: the decoder's input, ``(B, features)``, or ``(S, B, features)`` for S samples per image;
    ``kl``: KL(q(z|x) ‖ p(z)) per image, per latent dimension ``(B, latent_dim)`` or as one column
    ``(B, 1)``; ``posterior``: q(z|x) as the samples were drawn, when it differs from the encoding
    (expanded to S samples); ``log_prior`` and ``log_posterior``: log p(z) and log q(z|x) at z,
    ``(B,)`` or ``(S, B)``, for importance weights (``None`` when there is no density);
    ``loss``: what the latent adds to any objective's loss, per example ``(B,)``, or ``None``.
    """

    z: Tensor
    kl: Tensor
    posterior: object | None = None
    log_prior: Tensor | None = None
    log_posterior: Tensor | None = None
    loss: Tensor | None = None


class Latent(nn.Module):
    """What the latent code is: how the encoder's output becomes the decoder's input, what that
    code costs in the bound, and how codes are drawn for sampling.

    Built as ``cls(latent_dim, encoder_scale, autoencoder, **options)``: ``latent_dim`` is the length
    of the code (``--latent-dim``); ``encoder_scale`` and ``autoencoder`` are the model's settings of
    those names, which a latent uses or refuses. It may own parameters and buffers (a codebook, a
    prior over codes): they are trained and saved with the model.

    - ``features``: the width of the architecture's latent. The architecture is built with
      ``latent_dim = features``: its encoder returns ``(mean, raw_scale)``, each ``(B, features)``,
      and its decoder takes ``z`` ``(B, features)``. So any architecture serves any latent.
    - ``posterior(mean, raw_scale)``: the encoding of a batch, an object whose ``mean``
      ``(B, features)`` is what a reconstruction decodes.
    - ``terms(posterior, prior, generator, noise, samples)``: a :class:`LatentTerms`, whose ``z`` is
      what the reconstruction term decodes, differentiable in the encoder's outputs. ``noise`` is
      the reparameterisation ε when the caller draws it; ``samples`` is how many z an objective
      asks for per image (0: the posterior mean, used deterministically). A latent without a
      Gaussian posterior is only asked for one.
    - ``sample(n, prior, generator, temperature)``: ``(n, features)`` decoder inputs drawn from the prior.
    - ``uses_prior``: True when the model's prior plugin scores z; False when the latent brings
      its own prior (a distribution over codes).
    - ``gaussian_posterior``: True when ``posterior`` is a
      :class:`~vaetool.distributions.DiagonalGaussian` with a density: what β-TCVAE's
      decomposition and the importance-weighted likelihood need.
    - ``discrete``: True when the code is a row of integers; see :class:`DiscreteLatent`.

    A latent may have several stochastic layers (a hierarchical VAE). Then:

    - ``layers``: the width of each, from the one nearest the data (layer 1, which the decoder
      reads) to the top (which the prior scores); one layer, ``(latent_dim,)``, by default.
    - ``layer``: the layer that is the code — what ``posterior(...).mean`` and ``sample`` give and
      what ``decoder_input`` takes — 1-based, the top by default (:meth:`VAE.select_layer`);
      ``code_dim`` is its width.
    - ``decoder_input(code)``: the decoder's input ``(B, features)`` for codes ``(B, code_dim)``;
      the code itself for a latent of one layer.
    - ``lacks(need)``: why it cannot give an objective what it needs (a name from :data:`NEEDS`), or None.
    - ``kl`` of :meth:`terms` is per dimension of every layer, ``(B, sum(layers))``, or one column.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    uses_prior: ClassVar[bool] = True
    gaussian_posterior: ClassVar[bool] = False
    discrete: ClassVar[bool] = False

    def __init__(self, latent_dim: int, encoder_scale: str = "exp", autoencoder: bool = False):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder_scale = encoder_scale
        self.autoencoder = bool(autoencoder)
        self.layer = 1

    @property
    def features(self) -> int:
        return self.latent_dim

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    @property
    def code_dim(self) -> int:
        return self.layers[self.layer - 1]

    def decoder_input(self, code: Tensor) -> Tensor:
        return code

    def lacks(self, need: str) -> str | None:
        return None

    def posterior(self, mean: Tensor, raw_scale: Tensor):
        raise NotImplementedError

    def terms(self, posterior, prior: Prior, generator: torch.Generator | None = None,
              noise: Tensor | None = None, samples: int = 1) -> LatentTerms:
        raise NotImplementedError

    def sample(self, n: int, prior: Prior, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        raise NotImplementedError


class DiscreteLatent(Latent):
    """A latent whose code is ``latent_dim`` integers, each one of ``codebook_size`` values.

    On top of :class:`Latent`:

    - ``codes(posterior)``: the code of each example, int64 ``(B, latent_dim)``;
    - ``embed(codes)``: the decoder input for codes, ``(B, features)``;
    - ``sample_codes(n, generator, temperature)``: int64 ``(n, latent_dim)`` drawn from the latent's
      own prior over codes; ``temperature`` divides its logits;
    - ``usage(codes)``: how many of the codebook's entries ``codes`` use, and the perplexity
      exp(H) of their empirical distribution.
    """

    discrete = True
    uses_prior = False
    codebook_size: int

    def codes(self, posterior) -> Tensor:
        raise NotImplementedError

    def embed(self, codes: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_codes(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, prior: Prior, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        return self.embed(self.sample_codes(n, generator, temperature))

    def usage(self, codes: Tensor) -> tuple[int, float]:
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).double()
        share = counts / counts.sum()
        entropy = -(share[share > 0] * share[share > 0].log()).sum()
        return int((counts > 0).sum()), float(entropy.exp())


@dataclass
class Split:
    """One split of a dataset.

    ``images`` is uint8 ``(N, C, H, W)``; ``labels`` int64 ``(N,)`` when the dataset is
    labelled; ``factors`` float ``(N, F)`` when it has ground-truth generative factors.

    ``images`` may be memory-mapped from a ``.npy`` file of exactly those images (uint8,
    ``(N, C, H, W)``, C order); ``file`` then names it, and the trainer streams batches from it
    through worker processes when it is too large to hold on the device. A dataset larger than
    memory should decode once into such a file (see :mod:`vaetool.datasets.cache`).
    """

    images: Tensor
    labels: Tensor | None = None
    factors: Tensor | None = None
    file: Path | None = None

    def __len__(self) -> int:
        return len(self.images)


class Dataset:
    """A source of images.

    Built as ``cls(**options)``; the options must describe the data fully (they are recorded
    in the model file), but not where it is stored: ``load(split, root)`` receives the data
    root that the user chose (``--data-dir``, ``$VAETOOL_DATA`` or the user cache).

    - ``image_shape``: ``(C, H, W)``.
    - ``num_classes``: 0 when unlabelled; ``class_names`` to match.
    - ``factor_names``: names of the ground-truth factors, empty when there are none.
    - ``load(split, root)``: ``split`` is ``"train"`` or ``"test"``; returns a :class:`Split`.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    factor_names: tuple[str, ...] = ()

    def load(self, split: str, root: Path) -> Split:
        raise NotImplementedError


#: What an objective may need from the model, and how to say it in a sentence. A model says which
#: of these it lacks, and why, through ``VAE.lacks``.
NEEDS = {
    "kl": "a stochastic encoder and its KL term",
    "posterior": "the Gaussian posterior q(z|x) and its sampled z",
    "samples": "several samples of z for each image",
    "standard-normal-prior": "the standard-normal prior, whose marginals it estimates",
    "single-code": "one continuous code that the decoder reads and the prior scores",
}


@dataclass
class TrainingContext:
    """What an objective learns about the run in :meth:`Objective.begin`."""

    dataset_size: int  # examples in the training split
    epochs: int  # the run's total epochs
    steps_per_epoch: int
    lr: float  # the model's learning rate (an objective's own optimiser may follow it)
    device: torch.device
    processes: int = 1  # data-parallel training processes (each calls the objective on its share of a batch)


class Objective:
    """How a model is trained: its per-batch terms turned into the scalar loss.

    Built as ``cls(**options)``; the options are typed and defaulted, validated in the
    constructor (a :class:`~vaetool.errors.VaetoolError` for a bad value) and recorded in the model
    file as ``objective`` and ``objective_options``.

    - ``needs``: names from :data:`NEEDS` (an instance attribute when an option adds one); a model
      lacking one is refused in one sentence before any data is read.
    - ``samples``: z samples the model draws per image each step (an instance attribute when an
      option sets it). With more than one, the terms carry a leading sample dimension; 0 takes z
      as the posterior mean (a deterministic encoder).
    - ``bound``: what the run's reported bound means: ``"elbo"`` (the β = 1 ELBO bounds
      log p(x)), ``"iw"`` (trained on an importance-weighted bound of log p(x)) or ``"none"`` (no
      likelihood bound: the WAE family, judged by reconstruction and MMD).
    - ``begin(model, context)``: once, before the first step (also on resume). Builds extra
      trainable state, if any, and returns options settled only now (a schedule's length, say) to
      record in the model file.
    - ``loss(terms, epochs_done)``: the scalar loss for a batch; ``epochs_done`` is fractional.
    - ``schedule(epochs_done)``: the values of its schedules (β, a capacity), shown while training
      and recorded each epoch.
    - ``module``, ``optimizer``: extra trainable state (FactorVAE's discriminator) and its own
      optimiser, both saved in the checkpoint so that resuming is exact; ``None`` when there is none.
    - ``after_step(terms)``: called after the model's optimiser step, to train that extra state.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    needs: ClassVar[tuple[str, ...]] = ()
    samples: int = 1
    bound: ClassVar[str] = "elbo"
    module: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None

    def begin(self, model: nn.Module, context: TrainingContext) -> dict[str, Any]:
        return {}

    def loss(self, terms, epochs_done: float) -> Tensor:
        raise NotImplementedError

    def schedule(self, epochs_done: float) -> dict[str, float]:
        return {}

    def after_step(self, terms) -> None:
        pass


class LRSchedule:
    """How the learning rate moves over a run: a multiple of ``--lr`` at every training step.

    Built as ``cls(**options)``; the options are typed and defaulted, validated in the constructor
    (a :class:`~vaetool.errors.VaetoolError` for a bad value) and recorded in the model file's
    training settings as ``lr_schedule`` and ``lr_schedule_options`` (a ``constant`` schedule
    records nothing, so its runs compare with those trained before schedules existed).

    - ``factor(epochs_done, epochs)``: the multiple of ``--lr`` for the step taken at
      ``epochs_done`` (fractional: epoch + step / steps per epoch, counted from 0) of a run of
      ``epochs`` epochs in all. A positive, finite Python number (not a tensor: the trainer sets
      the optimiser's rate from it before every step, and a tensor would be read back from the
      device each time). It must be a pure function of its arguments, keeping no state between
      calls: a resumed run gets its rates again from the step alone, with nothing saved.
    - ``constant``: True when the factor is 1 throughout; the learning rate is then not shown
      while training nor recorded per epoch.
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    constant: ClassVar[bool] = False

    def factor(self, epochs_done: float, epochs: int) -> float:
        raise NotImplementedError
