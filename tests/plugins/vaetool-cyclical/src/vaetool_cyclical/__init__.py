"""The ELBO with a cyclical β schedule (Fu et al., NAACL 2019), as a vaetool objective plugin."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from vaetool.contracts import Objective, TrainingContext
from vaetool.errors import VaetoolError


class Cyclical(Objective):
    """−E_q[log p(x|z)] + β(t) · KL, β(t) repeating ``cycles`` times over ``epochs``: within each cycle it
    rises linearly from 0 to ``beta`` over the first ``ratio`` of the cycle, then stays (Fu et al. 2019, eq. 5).

    ``epochs`` unset: the run's length, fixed when it starts and recorded, so a longer resume keeps it.
    """

    needs = ("kl",)

    def __init__(self, beta: float = 1.0, cycles: int = 4, ratio: float = 0.5, epochs: float | None = None):
        if not beta >= 0:
            raise VaetoolError(f"beta must be zero or more, not {beta}.")
        if not isinstance(cycles, int) or cycles < 1:
            raise VaetoolError(f"cycles must be a whole number of at least 1, not {cycles!r}.")
        if not 0 < ratio <= 1:
            raise VaetoolError(f"ratio must lie in (0, 1], not {ratio}.")
        self.beta, self.cycles, self.ratio, self.epochs = float(beta), cycles, float(ratio), epochs

    def begin(self, model, context: TrainingContext) -> dict[str, Any]:
        if self.epochs is None:
            self.epochs = float(context.epochs)
        return {"epochs": self.epochs}

    def beta_at(self, epochs_done: float) -> float:
        period = self.epochs / self.cycles
        position = (epochs_done % period) / period
        return self.beta * min(1.0, position / self.ratio)

    def loss(self, terms, epochs_done: float) -> Tensor:
        return -terms.reconstruction.mean() + self.beta_at(epochs_done) * terms.kl.mean(0).sum()

    def schedule(self, epochs_done: float) -> dict[str, float]:
        return {"beta": self.beta_at(epochs_done)}
