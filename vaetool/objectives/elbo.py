"""The evidence lower bound, with β, KL warm-up and free bits: the default objective."""
from __future__ import annotations

import numbers

from torch import Tensor

from vaetool.contracts import Objective
from vaetool.errors import VaetoolError
from vaetool.objectives import ramp


def non_negative(**values: float) -> None:
    """Refuse an option that is not a number, or is negative (or NaN), in one sentence."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # a string from a config file, say
            raise VaetoolError(f"{name} must be a number, not {value!r}.")
        if not value >= 0:
            raise VaetoolError(f"{name} must be zero or more, not {value}.")


class ELBO(Objective):
    """−E_q[log p(x|z)] + β · KL(q(z|x) ‖ p(z)), averaged over the batch.

    ``beta``: β-VAE (Higgins et al., ICLR 2017) weighs the KL; 0 is the autoencoder limit.
    ``warmup``: epochs over which β rises linearly from 0 (Bowman et al., CoNLL 2016).
    ``free_bits``: nats of each latent dimension's batch-average KL that are not penalised
    (Kingma et al., NeurIPS 2016), so dimensions are not pushed to collapse early; with a prior
    whose KL is not per dimension the threshold applies to the whole KL.
    """

    def __init__(self, beta: float = 1.0, warmup: float = 0.0, free_bits: float = 0.0):
        non_negative(beta=beta, warmup=warmup, free_bits=free_bits)
        self.beta, self.warmup, self.free_bits = float(beta), float(warmup), float(free_bits)
        if self.free_bits > 0:  # they floor each dimension's KL, which a discrete code (VQ) does not have
            self.needs = ("kl",)

    def beta_at(self, epochs_done: float) -> float:
        return ramp(self.beta, self.warmup, epochs_done)

    def loss(self, terms, epochs_done: float) -> Tensor:
        # Kingma & Welling (ICLR 2014), eq. 10, with the KL weighed by β (Higgins et al. 2017).
        reconstruction = terms.reconstruction.mean()
        kl_per_dim = terms.kl.mean(0)
        if self.free_bits > 0:
            # Free bits (Kingma et al. 2016, eq. 15): the KL of each dimension is floored at λ.
            kl_per_dim = kl_per_dim.clamp(min=self.free_bits)
        return -reconstruction + self.beta_at(epochs_done) * kl_per_dim.sum()

    def schedule(self, epochs_done: float) -> dict[str, float]:
        return {"beta": self.beta_at(epochs_done)}
