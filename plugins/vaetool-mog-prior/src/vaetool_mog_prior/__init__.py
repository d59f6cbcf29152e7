"""A learnable mixture-of-Gaussians prior for vaetool, registered as the prior ``mog``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetool.contracts import Prior
from vaetool.errors import VaetoolError

__version__ = "0.1.0"
__all__ = ["MixtureOfGaussians"]

#: A component's standard deviations are exp(raw_log_stds) + MIN_STD: no component can collapse onto
#: a single code, and a sum (unlike a clamp) keeps the gradient everywhere.
MIN_STD = 1e-2
_LOG_MIN_STD = math.log(MIN_STD)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class MixtureOfGaussians(Prior):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), with the weights π, means μ and deviations σ learned with
    the model (a trainable mixture prior, as in Dilokthanakul et al., 2016, and Tomczak & Welling's
    VampPrior paper, AISTATS 2018, whose "MoG" baseline this is).

    Its KL from the posterior has no closed form (``analytic_kl = False``), so the ELBO uses the
    single-sample estimate log q(z|x) − log p(z). The means start at draws from N(0, I) (from
    torch's global generator, which ``vaetool train --seed`` sets), the deviations at about 1 and
    the weights equal; all of them are saved with the model. Each standard deviation is
    ``exp(raw) + MIN_STD``.

    Options: ``components``, the number K of mixture components.
    """

    analytic_kl = False

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__(latent_dim)
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise VaetoolError(f"components must be a whole number of 1 or more for the mog prior, not {components!r}.")
        self.components = components
        self.means = nn.Parameter(torch.randn(components, self.latent_dim))
        self.raw_log_stds = nn.Parameter(torch.zeros(components, self.latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        """The log weights ``(K,)``, means ``(K, D)`` and standard deviations ``(K, D)`` of the mixture."""
        return F.log_softmax(self.logits, -1), self.means, self._log_stds().exp()

    def _log_stds(self) -> Tensor:
        return torch.logaddexp(self.raw_log_stds, self.raw_log_stds.new_tensor(_LOG_MIN_STD))

    def log_prob(self, z: Tensor) -> Tensor:
        log_stds = self._log_stds()
        # (..., 1, D) against (K, D): the log density of every row under every component.
        u = (z.unsqueeze(-2) - self.means) * torch.exp(-log_stds)
        per_component = (-0.5 * u.pow(2) - log_stds - _HALF_LOG_2PI).sum(-1)
        return torch.logsumexp(per_component + F.log_softmax(self.logits, -1), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if n == 0:
            return self.means.new_zeros(0, self.latent_dim)
        weights = F.softmax(self.logits, -1)
        k = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[k] + self._log_stds().exp()[k] * eps
