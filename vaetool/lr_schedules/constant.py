"""The constant learning rate: ``--lr`` at every step, the default."""
from __future__ import annotations

from vaetool.contracts import LRSchedule


class Constant(LRSchedule):
    """``--lr`` throughout: Adam's rate as it was before schedules existed, and what a run records
    nothing about."""

    constant = True

    def factor(self, epochs_done: float, epochs: int) -> float:
        return 1.0
