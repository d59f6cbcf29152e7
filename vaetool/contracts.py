"""The base classes every plugin kind implements: architectures, likelihoods, priors, latents and datasets.

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
from typing import ClassVar

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
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    conditional: ClassVar[bool] = False

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
    """

    api_version: ClassVar[int] = PLUGIN_API_VERSION
    params_per_channel: int = 1
    discrete: bool = False

    def target(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


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
    - ``terms(posterior, prior, generator, noise)``: ``(z, kl, loss)``. ``z`` ``(B, features)`` is what
      the reconstruction term decodes, differentiable in the encoder's outputs; ``kl`` is the
      example's KL(q(z|x) ‖ p(z)) per latent dimension ``(B, latent_dim)``, or as one column
      ``(B, 1)``; ``loss`` is what this latent adds to any objective's loss, per example ``(B,)``,
      or ``None``. ``noise`` is the reparameterisation ε when the caller draws it.
    - ``sample(n, prior, generator, temperature)``: ``(n, features)`` decoder inputs drawn from the prior.
    - ``uses_prior``: True when the model's prior plugin scores z; False when the latent brings
      its own prior (a distribution over codes).
    - ``gaussian_posterior``: True when ``posterior`` is a
      :class:`~vaetool.distributions.DiagonalGaussian` with a density: what β-TCVAE's
      decomposition and the importance-weighted likelihood need.
    - ``discrete``: True when the code is a row of integers; see :class:`DiscreteLatent`.
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

    @property
    def features(self) -> int:
        return self.latent_dim

    def posterior(self, mean: Tensor, raw_scale: Tensor):
        raise NotImplementedError

    def terms(self, posterior, prior: Prior, generator: torch.Generator | None = None,
              noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
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
