"""The vector-quantised latent of VQ-VAE: each code is the nearest of a learned codebook's entries."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetool.contracts import DiscreteLatent, LatentTerms, Prior
from vaetool.errors import VaetoolError


class QuantisedCode:
    """A batch encoded by a :class:`VectorQuantised` latent.

    ``features`` are the encoder's outputs ``(B, P, D)`` before quantisation, ``codes`` the index
    of the nearest codebook entry at each of the P positions ``(B, P)``, ``quantised`` those
    entries ``(B, P, D)``. ``mean`` (also ``mode()``) is the decoder input, ``(B, P·D)``.
    """

    def __init__(self, features: Tensor, codes: Tensor, quantised: Tensor):
        self.features, self.codes, self.quantised = features, codes, quantised

    @property
    def mean(self) -> Tensor:
        return self.quantised.flatten(1)

    def mode(self) -> Tensor:
        return self.mean


def _whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise VaetoolError(f"{name} must be a whole number of {low} or more for the vq latent, not {value!r}.")
    return value


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise VaetoolError(f"{name} must be a number from 0 up to 1 for the vq latent, not {value!r}.")
    return float(value)


class VectorQuantised(DiscreteLatent):
    """VQ-VAE's latent (van den Oord, Vinyals & Kavukcuoglu, NeurIPS 2017, "Neural Discrete
    Representation Learning"): the encoder's output, read as ``latent_dim`` positions of ``dim``
    numbers, is replaced at each position by the nearest of ``codebook`` learned vectors.

    The architecture's latent is ``latent_dim · dim`` features wide: its encoder's mean output is
    reshaped into positions (its scale output is unused) and its decoder takes the chosen vectors,
    flattened, so every architecture serves unchanged.

    Training (eq. 3 of the paper, each term summed over positions and dimensions per example):
    the decoder's gradient is copied straight through the quantiser to the encoder; the codebook
    loss ‖sg[h] − e‖² moves each chosen vector towards the encoder output h, and the commitment
    loss ``commitment_cost`` · ‖h − sg[e]‖² keeps h near its vector. With ``ema`` the codebook
    instead follows exponential moving averages of the outputs assigned to each entry (the paper's
    Appendix A.1, ``decay`` 0.99, counts Laplace-smoothed by ``epsilon``). An entry no output chose
    for ``restart_after`` training steps is dead: it restarts at a random encoder output of the
    current batch (0 never restarts). The codebook starts at random encoder outputs of the first
    training batch, so its scale matches the encoder's.

    Prior: a categorical distribution over codes at each position, the smoothed moving-average
    frequency of the codes training chose (``prior_decay`` per step, one pseudo-count per code),
    so it tracks the encoder as it learns. The posterior is one code, so the KL term is
    −log p(code) at each position and the ELBO log p(x|z_q) + log p(z_q) bounds log p(x) for the
    model that samples codes from this prior; with the uniform prior it starts from, the KL is the
    paper's constant log K per position.
    """

    def __init__(self, latent_dim: int, encoder_scale: str = "exp", autoencoder: bool = False, codebook: int = 512,
                 dim: int = 16, commitment_cost: float = 0.25, ema: bool = False, decay: float = 0.99,
                 epsilon: float = 1e-5, restart_after: int = 5, prior_decay: float = 0.999):
        super().__init__(latent_dim, encoder_scale, autoencoder)
        if autoencoder:
            raise VaetoolError("The vq latent is deterministic already; leave --autoencoder out.")
        self.codebook_size = _whole("codebook", codebook, 2)
        self.dim = _whole("dim", dim, 1)
        if isinstance(commitment_cost, bool) or not isinstance(commitment_cost, (int, float)) or commitment_cost < 0:
            raise VaetoolError(f"commitment_cost must be zero or more for the vq latent, not {commitment_cost!r}.")
        if not isinstance(ema, bool):
            raise VaetoolError(f"ema must be true or false for the vq latent, not {ema!r}.")
        self.commitment_cost, self.ema = float(commitment_cost), ema
        self.decay, self.prior_decay = _fraction("decay", decay), _fraction("prior_decay", prior_decay)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise VaetoolError(f"epsilon must be positive for the vq latent, not {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.restart_after = _whole("restart_after", restart_after, 0)
        vectors = torch.randn(codebook, dim)
        if ema:  # moved by the running averages, not by the optimiser
            self.register_buffer("codebook", vectors)
            self.register_buffer("cluster_size", torch.zeros(codebook))
            self.register_buffer("cluster_sum", vectors.clone())
        else:
            self.codebook = torch.nn.Parameter(vectors)
        self.register_buffer("steps_unused", torch.zeros(codebook, dtype=torch.long))
        self.register_buffer("code_counts", torch.zeros(latent_dim, codebook))  # the prior's moving counts
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def features(self) -> int:
        return self.latent_dim * self.dim

    # -- encoding ----------------------------------------------------------------------------------

    def posterior(self, mean: Tensor, raw_scale: Tensor) -> QuantisedCode:
        features = mean.reshape(len(mean), self.latent_dim, self.dim)
        if self.training and not self.initialised:
            self._initialise(features.detach())
        flat = features.reshape(-1, self.dim)
        with torch.no_grad():  # the choice of code is not differentiated
            distances = (flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ self.codebook.T
                         + self.codebook.pow(2).sum(-1))
            codes = distances.argmin(-1).view(len(mean), self.latent_dim)
        return QuantisedCode(features, codes, F.embedding(codes, self.codebook))

    @torch.no_grad()
    def _initialise(self, features: Tensor) -> None:
        flat = features.reshape(-1, self.dim)
        chosen = flat[torch.randint(len(flat), (self.codebook_size,), device=flat.device)]
        self.codebook.data.copy_(chosen)
        if self.ema:
            self.cluster_sum.copy_(chosen)
            self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    def codes(self, posterior: QuantisedCode) -> Tensor:
        return posterior.codes

    def embed(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.codebook).flatten(1)

    # -- the bound and the losses --------------------------------------------------------------------

    def log_prior(self) -> Tensor:
        """log p(code) at each position ``(latent_dim, codebook)``: smoothed frequencies of the codes training chose."""
        return torch.log((self.code_counts + 1.0) / (self.code_counts.sum(-1, keepdim=True) + self.codebook_size))

    def terms(self, posterior: QuantisedCode, prior: Prior, generator: torch.Generator | None = None,
              noise: Tensor | None = None, samples: int = 1) -> LatentTerms:
        h, e = posterior.features, posterior.quantised
        # Straight-through: the decoder sees e, the encoder receives the decoder's gradient as if it had seen h.
        z = (h + (e - h).detach()).flatten(1)
        kl = -self.log_prior().gather(1, posterior.codes.T).T  # (B, P): −log p(code) per position
        loss = self.commitment_cost * (h - e.detach()).pow(2).sum((1, 2))
        if not self.ema:
            loss = loss + (h.detach() - e).pow(2).sum((1, 2))
        if self.training:
            self._learn(h.detach(), posterior.codes)
        # The posterior is one code, so log q(z|x) = 0 and the importance weight is the ELBO's.
        return LatentTerms(z, kl, log_prior=-kl.sum(-1), log_posterior=torch.zeros_like(loss), loss=loss)

    @torch.no_grad()
    def _learn(self, features: Tensor, codes: Tensor) -> None:
        """After a training batch: the moving averages, the prior's counts and dead-code restarts."""
        flat, chosen = features.reshape(-1, self.dim), codes.reshape(-1)
        used = torch.bincount(chosen, minlength=self.codebook_size).to(flat.dtype)
        if self.ema:
            sums = torch.zeros_like(self.cluster_sum).index_add_(0, chosen, flat)
            self.cluster_size.mul_(self.decay).add_(used, alpha=1 - self.decay)
            self.cluster_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
            self.codebook.copy_(self.cluster_sum / smoothed[:, None])
        per_position = F.one_hot(codes, self.codebook_size).sum(0).to(self.code_counts.dtype)
        self.code_counts.mul_(self.prior_decay).add_(per_position)
        self.steps_unused.add_(1).masked_fill_(used > 0, 0)
        if self.restart_after:
            # Without reading anything back to the host: every step draws the candidates, and only
            # the dead entries take theirs.
            dead = self.steps_unused >= self.restart_after
            fresh = flat[torch.randint(len(flat), (self.codebook_size,), device=flat.device)]
            self.codebook.data.copy_(torch.where(dead[:, None], fresh, self.codebook))
            if self.ema:
                self.cluster_sum.copy_(torch.where(dead[:, None], fresh, self.cluster_sum))
                self.cluster_size.masked_fill_(dead, 1.0)
            self.code_counts.masked_fill_(dead[None, :], 0.0)
            self.steps_unused.masked_fill_(dead, 0)

    # -- sampling ----------------------------------------------------------------------------------

    def sample_codes(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        probabilities = torch.softmax(self.log_prior() / temperature, -1)  # (P, K)
        if n == 0:
            return torch.zeros(0, self.latent_dim, dtype=torch.long, device=probabilities.device)
        return torch.multinomial(probabilities, n, replacement=True, generator=generator).T.contiguous()

    def prior_entropy(self) -> float:
        """The code prior's entropy in nats, summed over positions: log K per position when uniform."""
        log_p = self.log_prior()
        return float(-(log_p.exp() * log_p).sum())

    def extra_repr(self) -> str:
        return (f"latent_dim={self.latent_dim}, codebook={self.codebook_size}, dim={self.dim}, ema={self.ema}, "
                f"bits={self.latent_dim * math.log2(self.codebook_size):.0f}")
