"""Maximum mean discrepancy between the codes of a batch and draws from the prior (used by infovae and wae).

MMD² = E k(z, z') + E k(z̃, z̃') − 2 E k(z, z̃), z ~ q(z), z̃ ~ p(z), estimated without bias from n
codes and n prior draws (Gretton et al., JMLR 2012, eq. 3). The kernels are those of the WAE paper
(Tolstikhin et al., ICLR 2018, §4): the inverse multiquadric k(x, y) = C / (C + ‖x − y‖²), and the
Gaussian (RBF) k(x, y) = exp(−‖x − y‖² / C), each summed over the scales C = s · 2 d σ² for the
given s, with d the latent size and σ² = 1 the prior's variance.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vaetool.contracts import Objective, TrainingContext
from vaetool.errors import VaetoolError

KERNELS = ("imq", "rbf")
SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # the WAE authors' multi-scale sum; the objectives spell it out, for `vaetool plugins`


def check_kernel(kernel: str, scales) -> None:
    if kernel not in KERNELS:
        raise VaetoolError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}.")
    if not scales or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
        raise VaetoolError(f"scales must be positive numbers, not {scales!r}.")


def mmd(z: Tensor, prior_z: Tensor, kernel: str = "imq", scales=SCALES) -> Tensor:
    """The unbiased estimate of MMD² between the rows of ``z`` and ``prior_z`` (both ``(n, d)``), a scalar."""
    n, d = z.shape
    both = torch.cat([z, prior_z])
    distances = (both[:, None, :] - both[None, :, :]).pow(2).sum(-1)  # (2n, 2n)
    gram = sum(_kernel(distances, s * 2.0 * d, kernel) for s in scales)
    within = gram[:n, :n], gram[n:, n:]
    across = gram[:n, n:]
    off_diagonal = n * (n - 1)
    return sum((w.sum() - w.diagonal().sum()) / off_diagonal for w in within) - 2 * across.mean()


def _kernel(distances: Tensor, scale: float, kernel: str) -> Tensor:
    if kernel == "imq":
        return scale / (scale + distances)
    return (-distances / scale).exp()


class PriorMatching(Objective):
    """The part InfoVAE and WAE share: the MMD² between a batch's codes and as many draws from the prior."""

    kernel: str = "imq"
    scales: tuple[float, ...] = SCALES
    prior = None

    def begin(self, model, context: TrainingContext) -> dict[str, Any]:
        self.prior = model.prior
        return {}

    def mmd_to_prior(self, z: Tensor) -> Tensor:
        return mmd(z, self.prior.sample(len(z)).to(z.dtype), self.kernel, self.scales)
