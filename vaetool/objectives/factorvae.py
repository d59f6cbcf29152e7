"""FactorVAE: Kim & Mnih, "Disentangling by Factorising", ICML 2018."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaetool.contracts import Objective, TrainingContext
from vaetool.errors import VaetoolError
from vaetool.objectives.elbo import non_negative


def permute_dims(z: Tensor) -> Tensor:
    """Each latent dimension shuffled independently across the batch (Kim & Mnih 2018, Algorithm 1):
    draws from the product of the marginals q̄(z) = Π_j q(z_j)."""
    return torch.stack([column[torch.randperm(len(z), device=z.device)] for column in z.unbind(-1)], -1)


class FactorVAE(Objective):
    """−E_q[log p(x|z)] + KL(q(z|x) ‖ p(z)) + ``gamma`` · TC(z), the total correlation estimated by a
    discriminator (Kim & Mnih 2018, eq. 2 and 3).

    The discriminator D, an MLP of ``layers`` hidden layers of ``hidden`` units (the paper's 6 × 1000,
    leaky ReLU), tells codes z ~ q(z) from codes with each dimension permuted across the batch,
    z ~ q̄(z); TC ≈ E[log D(z) − log(1 − D(z))], its logit. D trains after each model step with its own
    Adam (``discriminator_lr``, β = (0.5, 0.9) as in the paper) on the batch's codes and their
    permutation (the paper permutes a second batch; here the same batch, detached, serves). D and its
    optimiser are saved in the checkpoint, so a resumed run continues exactly.
    """

    needs = ("posterior",)

    def __init__(self, gamma: float = 6.0, hidden: int = 1000, layers: int = 6, discriminator_lr: float = 1e-4):
        non_negative(gamma=gamma)
        for name, value in (("hidden", hidden), ("layers", layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VaetoolError(f"{name} must be a whole number of at least 1, not {value!r}.")
        if not discriminator_lr > 0:
            raise VaetoolError(f"discriminator_lr must be positive, not {discriminator_lr}.")
        self.gamma, self.hidden, self.layers, self.discriminator_lr = float(gamma), hidden, layers, float(discriminator_lr)

    def begin(self, model, context: TrainingContext) -> dict[str, Any]:
        widths = [model.latent_dim] + [self.hidden] * self.layers
        blocks = [part for a, b in zip(widths, widths[1:]) for part in (nn.Linear(a, b), nn.LeakyReLU(0.2))]
        self.module = nn.Sequential(*blocks, nn.Linear(widths[-1], 2)).to(context.device)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9))
        return {}

    def total_correlation(self, z: Tensor) -> Tensor:
        """TC(z) per code, the discriminator's log D(z) / (1 − D(z)) (Kim & Mnih 2018, eq. 3)."""
        logits = self.module(z)
        return logits[:, 0] - logits[:, 1]

    def loss(self, terms, epochs_done: float) -> Tensor:
        # Kim & Mnih 2018, eq. 2: the ELBO minus γ · KL(q(z) ‖ q̄(z)), the TC by the density-ratio trick.
        elbo = terms.reconstruction.mean() - terms.kl.mean(0).sum()
        return -elbo + self.gamma * self.total_correlation(terms.z).mean()

    def after_step(self, terms) -> None:
        # Kim & Mnih 2018, Algorithm 1: D learns to tell q(z) (class 0) from q̄(z) (class 1).
        z = terms.z.detach()
        logits = self.module(torch.cat([z, permute_dims(z)]))
        labels = torch.cat([torch.zeros(len(z), dtype=torch.long, device=z.device),
                            torch.ones(len(z), dtype=torch.long, device=z.device)])
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(logits, labels).backward()
        self.optimizer.step()
