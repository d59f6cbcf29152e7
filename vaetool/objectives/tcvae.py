"""β-TCVAE: Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaetool.contracts import Objective, TrainingContext
from vaetool.objectives import ramp
from vaetool.objectives.elbo import non_negative

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class KLDecomposition:
    """The KL term split three ways, per example ``(B,)`` in nats (Chen et al., NeurIPS 2018, eq. 2).

    ``mutual_information + total_correlation + dimension_kl`` is the Monte Carlo KL estimate
    log q(z|x) − log p(z) at the sampled z, exactly (the three telescope).
    """

    mutual_information: Tensor  # log q(z|x) − log q(z): index-code MI
    total_correlation: Tensor  # log q(z) − Σ_j log q(z_j)
    dimension_kl: Tensor  # Σ_j log q(z_j) − log p(z_j)


def kl_decomposition(z: Tensor, posterior, dataset_size: int) -> KLDecomposition:
    """Estimate the KL decomposition of a minibatch, for the standard normal prior.

    β-TCVAE (Chen et al., NeurIPS 2018, §4.1 and Appendix C.2) needs the aggregate posterior
    q(z) = 1/N Σ_n q(z|n) and its marginals q(z_j) at each sampled z_i. Both are estimated by
    stratified sampling from the batch of M codes drawn from N examples: z_i's own example counts
    with its true weight 1/N and the other M − 1 examples of the batch, a uniform draw from the
    other N − 1, with (N − 1) / (N (M − 1)) each. That estimate of q(z_i) is unbiased (the weights
    sum to 1 and, when the batch is the whole dataset, it is exact), unlike the plain minibatch
    weighted sampling 1/(NM) whose log is off by a constant for each term.
    """
    batch = len(z)
    if dataset_size < batch:
        raise ValueError(f"the dataset size ({dataset_size}) cannot be smaller than the batch ({batch})")
    # log q(z_i,d | x_j,d) for every pair (i, j) and dimension d: (M, M, L).
    diff = (z[:, None, :] - posterior.mean[None, :, :]) / posterior.std[None, :, :]
    log_q_pairs = -0.5 * (diff ** 2 + posterior.log_var[None, :, :] + _LOG_2PI)
    if batch > 1:
        log_weights = torch.full((batch, batch), math.log((dataset_size - 1) / (dataset_size * (batch - 1))),
                                 dtype=z.dtype, device=z.device)
        log_weights.fill_diagonal_(-math.log(dataset_size))
    else:  # nothing else to average over: q(z) is taken as q(z|x), which leaves the ELBO's KL as dimension-wise KL
        log_weights = torch.zeros(1, 1, dtype=z.dtype, device=z.device)
    log_q_z = torch.logsumexp(log_weights + log_q_pairs.sum(-1), dim=1)
    log_q_marginals = torch.logsumexp(log_weights[:, :, None] + log_q_pairs, dim=1).sum(-1)
    log_q_z_given_x = log_q_pairs.diagonal(dim1=0, dim2=1).sum(0)  # the same sums as the pairs, so the parts telescope
    log_p_z = -0.5 * (z ** 2 + _LOG_2PI).sum(-1)
    return KLDecomposition(log_q_z_given_x - log_q_z, log_q_z - log_q_marginals, log_q_marginals - log_p_z)


class TCVAE(Objective):
    """−log p(x|z) + MI + B · TC + dimension-wise KL (Chen et al. 2018, eq. 4 with α = γ = 1).

    ``tc_weight``: B, the weight of the total correlation; the other two KL terms keep weight 1.
    ``warmup``: epochs over which the whole KL regulariser rises from 0. The three terms are
    estimated over the batch by :func:`kl_decomposition`, which needs the dataset size.
    """

    needs = ("posterior", "standard-normal-prior")

    def __init__(self, tc_weight: float = 6.0, warmup: float = 0.0):
        non_negative(tc_weight=tc_weight, warmup=warmup)
        self.tc_weight, self.warmup = float(tc_weight), float(warmup)
        self.dataset_size: int | None = None

    def begin(self, model, context: TrainingContext) -> dict[str, Any]:
        self.dataset_size = context.dataset_size
        return {}

    def loss(self, terms, epochs_done: float) -> Tensor:
        if terms.z is None or terms.posterior is None or self.dataset_size is None:
            raise ValueError("the β-TCVAE objective needs terms.z, terms.posterior and the dataset size (begin)")
        reconstruction = terms.reconstruction.mean()
        parts = kl_decomposition(terms.z, terms.posterior, self.dataset_size)
        # Chen et al. 2018, eq. 4: α·MI + β·TC + γ·Σ_j KL(q(z_j) ‖ p(z_j)), here α = γ = 1, β = B.
        regulariser = parts.mutual_information + self.tc_weight * parts.total_correlation + parts.dimension_kl
        return -reconstruction + ramp(1.0, self.warmup, epochs_done) * regulariser.mean()

    def schedule(self, epochs_done: float) -> dict[str, float]:
        return {"beta": ramp(1.0, self.warmup, epochs_done)}
