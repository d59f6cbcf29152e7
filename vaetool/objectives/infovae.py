"""InfoVAE (MMD-VAE): Zhao, Song & Ermon, "InfoVAE: Balancing Learning and Inference in Variational
Autoencoders", AAAI 2019."""
from __future__ import annotations

from torch import Tensor

from vaetool.objectives.elbo import non_negative
from vaetool.objectives.mmd import PriorMatching, check_kernel


class InfoVAE(PriorMatching):
    """−E_q[log p(x|z)] + ``kl_weight`` · KL(q(z|x) ‖ p(z)) + ``mmd_weight`` · MMD(q(z), p(z)).

    Zhao et al. 2019, eq. 6: the InfoVAE family weighs the per-image KL by 1 − α and a divergence
    between the aggregate posterior q(z) and the prior by α + λ − 1; with MMD as that divergence and
    α = 1 it is the MMD-VAE, which keeps the latent informative where a strong KL would collapse it.
    ``kl_weight`` is 1 − α, ``mmd_weight`` is α + λ − 1; ``kernel`` and ``scales`` choose the MMD's
    kernel (see :mod:`vaetool.objectives.mmd`). MMD is estimated over each batch against as many
    draws from the prior.
    """

    needs = ("posterior",)

    def __init__(self, mmd_weight: float = 1000.0, kl_weight: float = 0.0, kernel: str = "imq",
                 scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)):
        non_negative(mmd_weight=mmd_weight, kl_weight=kl_weight)
        check_kernel(kernel, scales)
        self.mmd_weight, self.kl_weight, self.kernel, self.scales = float(mmd_weight), float(kl_weight), kernel, tuple(scales)

    def loss(self, terms, epochs_done: float) -> Tensor:
        z = terms.z
        # Zhao et al. 2019, eq. 6 with D = MMD: −E log p(x|z) + (1 − α) KL + (α + λ − 1) MMD(q(z) ‖ p(z)).
        divergence = self.mmd_to_prior(z)
        return -terms.reconstruction.mean() + self.kl_weight * terms.kl.mean(0).sum() + self.mmd_weight * divergence
