"""The controlled capacity increase of Burgess et al. (2018), "Understanding disentangling in β-VAE"."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from vaetool.contracts import Objective, TrainingContext
from vaetool.errors import VaetoolError
from vaetool.objectives import ramp
from vaetool.objectives.elbo import non_negative


class Capacity(Objective):
    """−E_q[log p(x|z)] + γ · |KL − C|, with the target C rising linearly from 0.

    ``capacity``: the final C in nats. ``capacity_epochs``: epochs over which C rises (unset: the
    whole run, fixed when it starts so that a longer resume keeps the schedule). ``beta``: the weight
    γ (the paper uses 1000). ``warmup``: epochs over which γ itself rises from 0.
    """

    needs = ("kl",)

    def __init__(self, capacity: float = 25.0, capacity_epochs: float | None = None, beta: float = 1.0,
                 warmup: float = 0.0):
        non_negative(capacity=capacity, beta=beta, warmup=warmup)
        if capacity_epochs is not None and not capacity_epochs > 0:
            raise VaetoolError(f"capacity-epochs must be positive, not {capacity_epochs}.")
        self.capacity, self.beta, self.warmup = float(capacity), float(beta), float(warmup)
        self.capacity_epochs = None if capacity_epochs is None else float(capacity_epochs)

    def begin(self, model, context: TrainingContext) -> dict[str, Any]:
        if self.capacity_epochs is None:
            self.capacity_epochs = float(context.epochs)
        return {"capacity_epochs": self.capacity_epochs}

    def capacity_at(self, epochs_done: float) -> float:
        return ramp(self.capacity, self.capacity_epochs, epochs_done)

    def loss(self, terms, epochs_done: float) -> Tensor:
        # Burgess et al. 2018, eq. 8: γ |KL(q(z|x) ‖ p(z)) − C|, KL being the batch-average total.
        reconstruction = terms.reconstruction.mean()
        kl = terms.kl.mean(0).sum()
        return -reconstruction + ramp(self.beta, self.warmup, epochs_done) * (kl - self.capacity_at(epochs_done)).abs()

    def schedule(self, epochs_done: float) -> dict[str, float]:
        return {"beta": ramp(self.beta, self.warmup, epochs_done), "capacity": self.capacity_at(epochs_done)}
