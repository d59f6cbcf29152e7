"""Several stochastic layers of diagonal Gaussians: the two-layer VAE of the IWAE paper (Burda, Grosse &
Salakhutdinov, ICLR 2016) and the ladder VAE's top-down inference (Sønderby et al., NeurIPS 2016)."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vaetool.architectures.initialisation import INITS, check_choice
from vaetool.architectures.mlp import ACTIVATIONS, stack
from vaetool.contracts import Latent, LatentTerms, Prior
from vaetool.distributions import DiagonalGaussian
from vaetool.errors import VaetoolError

INFERENCES = ("bottom-up", "ladder")


def precision_weighted(a: DiagonalGaussian, b: DiagonalGaussian) -> DiagonalGaussian:
    """The normalised product of two diagonal Gaussians (Sønderby et al. 2016, eqs. 18–19):
    σ² = 1 / (σ_a⁻² + σ_b⁻²), μ = (μ_a σ_a⁻² + μ_b σ_b⁻²) σ²; each mean weighs by the other's share of variance."""
    log_var = -torch.logaddexp(-a.log_var, -b.log_var)
    weight = torch.sigmoid(b.log_var - a.log_var)  # σ_b² / (σ_a² + σ_b²): a's weight
    return DiagonalGaussian(weight * a.mean + (1 - weight) * b.mean, log_var)


class LayeredPosterior(DiagonalGaussian):
    """A batch encoded by a :class:`Hierarchical` latent.

    As a diagonal Gaussian it is q at the latent's chosen layer (its ``mean``, ``log_var``, ``std``, ``kl``,
    ``log_prob``), with every layer it depends on at its mean; ``bottom`` is q(z₁|x) as the encoder gave
    it, from which :meth:`Hierarchical.terms` draws every layer. The chosen layer's Gaussian is only
    computed when it is asked for, so training does not pay for it.
    """

    def __init__(self, latent: Hierarchical, bottom: DiagonalGaussian):  # mean, log_var, std are properties here
        self.latent, self.bottom = latent, bottom
        self._layers: list[DiagonalGaussian] | None = None
        self._bottom_up: list[DiagonalGaussian] | None = None

    def layers(self) -> list[DiagonalGaussian]:
        """q at every layer, bottom first, each with the layers it depends on at their means."""
        if self._layers is None:
            self._layers = self.latent.at_means(self)
        return self._layers

    def bottom_up(self) -> list[DiagonalGaussian]:
        """The ladder's bottom-up Gaussians of every layer, a deterministic pass from x."""
        if self._bottom_up is None:
            self._bottom_up = self.latent.bottom_up(self.bottom)
        return self._bottom_up

    @property
    def mean(self) -> Tensor:
        return self.layers()[self.latent.layer - 1].mean

    @property
    def log_var(self) -> Tensor:
        return self.layers()[self.latent.layer - 1].log_var

    @property
    def std(self) -> Tensor:
        return self.layers()[self.latent.layer - 1].std


def _widths(name: str, value, empty: bool) -> list[int]:
    widths = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(widths, (list, tuple)) or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                                                        for w in widths) or (not widths and not empty):
        raise VaetoolError(f"{name} must be {'' if empty else 'one or more '}whole numbers of 1 or more, "
                           f"e.g. {name}=50,50, for the hierarchical latent, not {value!r}.")
    return list(widths)


class Hierarchical(Latent):
    """A hierarchy of diagonal Gaussian layers z₁ … z_L: p(x, z) = p(x|z₁) p(z₁|z₂) … p(z_{L−1}|z_L) p(z_L).

    z₁ is ``latent_dim`` wide: the architecture's encoder gives q(z₁|x)'s bottom-up Gaussian and its
    decoder reads z₁, so any architecture serves as the x ↔ z₁ part. ``dims`` are the widths of the
    layers above, bottom to top; between two layers an MLP of ``hidden`` widths with ``activation``
    gives each conditional's mean and raw scale (read by the model's ``--encoder-scale``), one MLP
    per direction, its weights started by ``init`` (``glorot``: as the IWAE paper's code, see
    :mod:`vaetool.architectures.initialisation`). The model's prior scores the top layer. With
    ``--arch mlp --hidden 200,200 --arch-opt activation=tanh --latent-dim 100`` the defaults are the
    two-layer net of Burda et al. 2016 as their code builds it (x → 200-200 → z₁ 100-D → 100-100 →
    z₂ 50-D, tanh, and mirrored).

    ``inference``:

    - ``bottom-up`` (Burda et al. 2016): q(z|x) = q(z₁|x) q(z₂|z₁) … q(z_L|z_{L−1}), each layer sampled
      from the one below.
    - ``ladder`` (Sønderby et al. 2016): a deterministic bottom-up pass gives a Gaussian at every layer;
      z_L is drawn from the top one, and each layer below from the precision-weighted product of its
      bottom-up Gaussian and the generative p(z_i|z_{i+1}), whose network it shares.

    The bound: ELBO = E_q[log p(x|z₁)] − KL, with KL = E_q[log q(z|x) − log p(z)] over every layer,
    in closed form per layer where it is exact given the layer above or below (the top layer against a
    prior with a closed form; every layer under ``ladder``), else the single-sample estimate at the
    drawn z. The importance weights are p(x|z₁) p(z₁|z₂) … p(z_L) / q(z₁|x) q(z₂|·) … over all layers.

    Commands work on one layer, the top by default (:meth:`VAE.select_layer`): a code at layer k
    decodes through the conditional means of the layers below it, and the prior's samples at layer
    k are drawn through every layer above it (at layer 1, the model's own ancestral sample).
    """

    gaussian_posterior = True

    def __init__(self, latent_dim: int, encoder_scale: str = "exp", autoencoder: bool = False,
                 dims: Sequence[int] = (50,), hidden: Sequence[int] = (100, 100), activation: str = "tanh",
                 inference: str = "bottom-up", init: str = "default"):
        super().__init__(latent_dim, encoder_scale, autoencoder)
        if autoencoder:
            raise VaetoolError("The hierarchical latent is a stack of stochastic layers; leave --autoencoder out.")
        self.dims = _widths("dims", dims, empty=False)
        self.hidden = _widths("hidden", hidden, empty=True)
        if activation not in ACTIVATIONS:
            raise VaetoolError(f"activation must be one of {', '.join(ACTIVATIONS)} for the hierarchical latent, "
                               f"not {activation!r}.")
        if inference not in INFERENCES:
            raise VaetoolError(f"inference must be {' or '.join(INFERENCES)} for the hierarchical latent, "
                               f"not {inference!r}.")
        self.inference = inference
        check_choice("init", init, INITS, "the hierarchical latent")
        widths = self.layers
        # up[i]: layer i+1 from layer i (bottom-up: its sample; ladder: its bottom-up mean and log-variance).
        fan_in = 2 if inference == "ladder" else 1
        self.up = nn.ModuleList(stack([fan_in * a, *self.hidden, 2 * b], activation, init)
                                for a, b in zip(widths[:-1], widths[1:]))
        # down[i]: p(z_i | z_{i+1}), the generative direction.
        self.down = nn.ModuleList(stack([b, *self.hidden, 2 * a], activation, init)
                                  for a, b in zip(widths[:-1], widths[1:]))
        self.layer = len(widths)

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.latent_dim, *self.dims)

    def lacks(self, need: str) -> str | None:
        if need in ("posterior", "single-code"):
            return (f"this model's hierarchical latent has {len(self.layers)} stochastic layers, not the one Gaussian "
                    "q(z|x) whose code the decoder reads")
        return None

    def _gaussian(self, net: nn.Module, inputs: Tensor) -> DiagonalGaussian:
        # In the inputs' precision under mixed precision, as VAE.encode does, so log-densities are fp32 sums.
        mean, raw_scale = net(inputs).to(inputs.dtype).chunk(2, dim=-1)
        return DiagonalGaussian.from_encoder(mean, raw_scale, self.encoder_scale)

    @contextlib.contextmanager
    def _top(self):
        # The prior scores the top layer; a prior that encodes (the VampPrior) must get the top layer's codes.
        chosen, self.layer = self.layer, len(self.layers)
        try:
            yield
        finally:
            self.layer = chosen

    # -- encoding ------------------------------------------------------------------------------------

    def posterior(self, mean: Tensor, raw_scale: Tensor) -> LayeredPosterior:
        return LayeredPosterior(self, DiagonalGaussian.from_encoder(mean, raw_scale, self.encoder_scale))

    def bottom_up(self, bottom: DiagonalGaussian) -> list[DiagonalGaussian]:
        found = [bottom]
        for net in self.up:
            found.append(self._gaussian(net, torch.cat([found[-1].mean, found[-1].log_var], -1)))
        return found

    def at_means(self, posterior: LayeredPosterior) -> list[DiagonalGaussian]:
        """q at every layer with the layers it is conditioned on at their means (what ``encode`` reports)."""
        if self.inference == "bottom-up":
            found = [posterior.bottom]
            for net in self.up:
                found.append(self._gaussian(net, found[-1].mean))
            return found
        bottom_up = posterior.bottom_up()
        found = [bottom_up[-1]]
        for i in reversed(range(len(self.down))):
            found.insert(0, precision_weighted(bottom_up[i], self._gaussian(self.down[i], found[0].mean)))
        return found

    def decoder_input(self, code: Tensor) -> Tensor:
        """z₁ for codes at the chosen layer: each layer below it at the mean of p(z_i | z_{i+1})."""
        z = code
        for i in reversed(range(self.layer - 1)):
            z = self._gaussian(self.down[i], z).mean
        return z

    # -- the bound ------------------------------------------------------------------------------------

    def terms(self, posterior: LayeredPosterior, prior: Prior, generator: torch.Generator | None = None,
              noise: Tensor | None = None, samples: int = 1) -> LatentTerms:
        """z₁ ``(B, features)`` (``(S, B, features)`` for S samples), the KL per dimension of every layer
        and log p(z), log q(z|x) over every layer; ``samples`` = 0: every layer at its mean."""
        with self._top():
            if samples == 0:
                return self._at_means_terms(posterior, prior)
            count = len(self.layers)
            if noise is not None:  # (B, Σ widths) or (B, S, Σ widths), as VAE.draw_noise lays it out
                noise = noise if samples == 1 else noise.transpose(0, 1)
                noise = list(noise.split(list(self.layers), -1))
            else:
                noise = [None] * count

            def draw(q: DiagonalGaussian, i: int) -> tuple[DiagonalGaussian, Tensor]:
                if samples > 1 and q.mean.dim() == 2:
                    q = DiagonalGaussian(q.mean.expand(samples, *q.mean.shape), q.log_var.expand(samples, *q.mean.shape))
                return q, q.rsample(generator, noise=noise[i])

            z: list[Tensor] = [None] * count
            q: list[DiagonalGaussian] = [None] * count
            p: list[DiagonalGaussian | None] = [None] * count  # p(z_i | z_{i+1}); the prior scores the top
            kl: list[Tensor] = [None] * count
            if self.inference == "bottom-up":
                q[0], z[0] = draw(posterior.bottom, 0)
                for i, net in enumerate(self.up):
                    q[i + 1], z[i + 1] = draw(self._gaussian(net, z[i]), i + 1)
                for i, net in enumerate(self.down):
                    p[i] = self._gaussian(net, z[i + 1])
                    # z_{i+1} was drawn given z_i, so only the single-sample estimate is unbiased here.
                    kl[i] = q[i].log_prob(z[i], per_dimension=True) - p[i].log_prob(z[i], per_dimension=True)
            else:
                bottom_up = posterior.bottom_up()
                q[-1], z[-1] = draw(bottom_up[-1], count - 1)
                for i in reversed(range(count - 1)):
                    p[i] = self._gaussian(self.down[i], z[i + 1])
                    up = bottom_up[i]
                    if samples > 1:
                        up = DiagonalGaussian(up.mean.expand_as(p[i].mean), up.log_var.expand_as(p[i].mean))
                    q[i], z[i] = draw(precision_weighted(up, p[i]), i)
                    kl[i] = q[i].kl_to(p[i])  # exact given z_{i+1}, which q(z_i|·) is conditioned on
            log_posterior = sum(qi.log_prob(zi) for qi, zi in zip(q, z))
            top_prior = prior.log_prob(z[-1])
            log_prior = top_prior + sum(pi.log_prob(zi) for pi, zi in zip(p[:-1], z[:-1]))
            if prior.analytic_kl:
                kl[-1] = prior.kl(q[-1])  # exact given the layer below, which q(z_L|·) is conditioned on
                per_dim = torch.cat(kl, -1)
            else:  # one Monte Carlo column for the whole latent
                per_dim = (sum(k.sum(-1) for k in kl[:-1]) + q[-1].log_prob(z[-1]) - top_prior).unsqueeze(-1)
            if samples > 1:
                per_dim = per_dim.mean(0)
            return LatentTerms(z[0], per_dim, None, log_prior, log_posterior)

    def _at_means_terms(self, posterior: LayeredPosterior, prior: Prior) -> LatentTerms:
        q = posterior.layers()
        kl = [q[i].kl_to(self._gaussian(self.down[i], q[i + 1].mean)) for i in range(len(self.down))]
        top = prior.kl(q[-1]) if prior.analytic_kl else torch.zeros_like(q[-1].mean[:, :1])
        return LatentTerms(q[0].mean, torch.cat([*kl, top], -1) if prior.analytic_kl else top)

    # -- sampling ----------------------------------------------------------------------------------

    def sample(self, n: int, prior: Prior, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """Codes of the chosen layer drawn from the model: z_L ~ p(z_L) scaled by ``temperature``, then each
        layer down to the chosen one from p(z_i | z_{i+1}) with its standard deviation scaled alike."""
        chosen = self.layer
        with self._top():
            z = temperature * prior.sample(n, generator)
        for i in reversed(range(chosen - 1, len(self.down))):
            z = self._gaussian(self.down[i], z).rsample(generator, temperature)
        return z

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, hidden={self.hidden}, inference={self.inference}, layer={self.layer}"
