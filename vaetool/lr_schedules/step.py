"""Step decay: the learning rate multiplied by a constant every few epochs."""
from __future__ import annotations

import math

from vaetool.contracts import LRSchedule
from vaetool.lr_schedules import number


class Step(LRSchedule):
    """``--lr`` · ``gamma`` ^ ⌊epoch / ``every``⌋: the classic step decay (He et al., CVPR 2016,
    divide by 10 when the error plateaus; PyTorch's ``StepLR`` by epochs).

    ``every``: whole epochs between decays. ``gamma``: the factor each decay multiplies by
    (positive; below 1 lowers the rate).
    """

    def __init__(self, every: int = 10, gamma: float = 0.1):
        self.every = number("step", "every", every, low=1, whole=True)
        self.gamma = number("step", "gamma", gamma, low_open=True)

    def factor(self, epochs_done: float, epochs: int) -> float:
        # Decays fall on epoch boundaries: the whole epochs done, so no rounding of the fraction can move one.
        return self.gamma ** (math.floor(epochs_done) // self.every)
