"""The stepped learning rate of Burda, Grosse & Salakhutdinov, "Importance weighted autoencoders", ICLR 2016."""
from __future__ import annotations

from vaetool.contracts import LRSchedule
from vaetool.errors import VaetoolError

PASSES = 8
#: Pass i (1 to 8) lasts 3^(i−1) epochs: 3,280 epochs in all.
EPOCHS = sum(3 ** (i - 1) for i in range(1, PASSES + 1))
#: The epoch at which each pass ends.
ENDS = tuple(sum(3 ** (j - 1) for j in range(1, i + 1)) for i in range(1, PASSES + 1))
#: Each pass's rate as a multiple of 0.001: 1, 0.72, 0.52, 0.37, 0.27, 0.19, 0.14, 0.1. The authors' code
#: rounds 10^(1−(i−1)/7) to one decimal; this rounds a tenth of it to two, the same digits as exact decimals.
FACTORS = tuple(round(10 ** (-(i - 1) / 7), 2) for i in range(1, PASSES + 1))


class Burda(LRSchedule):
    """Burda et al. 2016, section 5: 3^(i−1) passes over the data at 0.001 · 10^(−(i−1)/7) for
    i = 1 … 8, 3,280 epochs in all. The rates are rounded to two digits as the authors' code
    (yburda/iwae, experiments.py) rounds them, 1e-4 · round(10^(1−(i−1)/7), 1): 1e-3, 7.2e-4, 5.2e-4,
    3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1e-4. They scale with ``--lr``, whose paper value is 0.001.

    ``fit``: false (the default) follows the paper's epochs, so a run of fewer than 3,280 epochs
    stops part-way through the schedule (and one of more stays at the last rate); true compresses
    the 3,280 epochs proportionally onto the run's ``--epochs``, so a short run walks all eight passes.
    """

    def __init__(self, fit: bool = False):
        if not isinstance(fit, bool):
            raise VaetoolError(f"The burda schedule's fit must be true or false, not {fit!r}.")
        self.fit = fit

    def factor(self, epochs_done: float, epochs: int) -> float:
        at = epochs_done * EPOCHS / epochs if self.fit else epochs_done
        return next((f for end, f in zip(ENDS, FACTORS) if at < end), FACTORS[-1])
