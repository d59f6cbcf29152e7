"""The VampPrior: a mixture of the encoder's own posteriors at learned pseudo-inputs."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaetool.contracts import Prior
from vaetool.errors import VaetoolError

_LOG_2PI = math.log(2 * math.pi)


class VampPrior(Prior):
    """p(z) = 1/K Σ_k q(z | u_k): the "variational mixture of posteriors" of Tomczak & Welling
    (AISTATS 2018, eq. 9), whose K pseudo-inputs u_k are images learned with the model.

    The ELBO-optimal prior is the aggregate posterior 1/N Σ_n q(z|x_n); the VampPrior approximates
    it with K ≪ N learned inputs pushed through the same encoder, so prior and posterior are
    coupled and the KL term no longer pulls every code towards one Gaussian. Its KL from q(z|x) has
    no closed form: the ELBO uses the single-sample estimate log q(z|x) − log p(z).

    The pseudo-inputs are ``sigmoid(w_k)``, so they stay images in [0, 1]; w starts at draws from
    N(0, 1) (torch's global generator, which ``vaetool train --seed`` sets). The prior lives
    inside a model (:meth:`bind`): it needs the model's encoder and input shape, an unconditional
    architecture and a Gaussian latent.

    Options: ``components``, the number K of pseudo-inputs.
    """

    analytic_kl = False

    def __init__(self, latent_dim: int, components: int = 500):
        super().__init__(latent_dim)
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise VaetoolError(f"components must be a whole number of 1 or more for the vamp prior, not {components!r}.")
        self.components = components
        self._encode = None

    def bind(self, model: nn.Module) -> None:
        if model.conditional:
            raise VaetoolError("The vamp prior pushes its pseudo-inputs through the encoder, which for a conditional "
                               "architecture needs a class label; use an unconditional architecture.")
        if model.autoencoder or not model.latent.gaussian_posterior:
            raise VaetoolError("The vamp prior is a mixture of the encoder's Gaussian posteriors, and this model's "
                               "encoder has none (an autoencoder, or a latent that is not gaussian).")
        self.raw_pseudo_inputs = nn.Parameter(torch.randn(self.components, *model.input_shape))
        self._encode = model.encode  # a bound method, not a submodule: the model is not nested in its prior

    def pseudo_inputs(self) -> Tensor:
        """The K learned images ``(K, C, H, W)`` in [0, 1]."""
        return torch.sigmoid(self.raw_pseudo_inputs)

    def mixture(self):
        """The K components q(z | u_k), one :class:`~vaetool.distributions.DiagonalGaussian` of ``(K, latent_dim)``."""
        if self._encode is None:
            raise VaetoolError("The vamp prior lives inside a model, whose encoder it uses; build it with "
                               "vaetool.create(..., prior='vamp').")
        return self._encode(self.pseudo_inputs())

    def log_prob(self, z: Tensor) -> Tensor:
        components = self.mixture()
        precision = torch.exp(-components.log_var)  # (K, L)
        # Σ_l (z_l − μ_kl)² / σ_kl² for every row and component, as three products: a tensor of
        # (..., K), never (..., K, L), however many z the importance-weighted estimate asks about.
        squares = (z.pow(2) @ precision.T - 2 * z @ (components.mean * precision).T
                   + (components.mean.pow(2) * precision).sum(-1))
        per_component = -0.5 * (squares + components.log_var.sum(-1) + self.latent_dim * _LOG_2PI)
        return torch.logsumexp(per_component, dim=-1) - math.log(self.components)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        components = self.mixture()
        device, dtype = components.mean.device, components.mean.dtype
        k = torch.randint(self.components, (n,), generator=generator, device=device)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=dtype)
        return components.mean[k] + components.std[k] * eps
