"""Cosine decay over the run, after an optional linear warm-up."""
from __future__ import annotations

import math

from vaetool.contracts import LRSchedule
from vaetool.lr_schedules import number


class Cosine(LRSchedule):
    """Half a cosine from ``--lr`` down to ``final`` · ``--lr`` over the run (Loshchilov & Hutter,
    "SGDR", ICLR 2017, eq. 5, without restarts), after ``warmup`` epochs of linear warm-up from
    ``warmup_start`` · ``--lr`` (Goyal et al., "Accurate, large minibatch SGD", 2017).

    ``final``: the rate the run ends at, as a fraction of ``--lr`` (0 to 1). ``warmup``: epochs of
    warm-up (0: none); the cosine spans the epochs after it, so a warm-up as long as the run never
    decays. ``warmup_start``: where the warm-up starts, a fraction of ``--lr`` above 0, so that the
    first step moves the weights.
    """

    def __init__(self, final: float = 0.0, warmup: float = 0.0, warmup_start: float = 0.01):
        self.final = number("cosine", "final", final, high=1)
        self.warmup = number("cosine", "warmup", warmup)
        self.warmup_start = number("cosine", "warmup_start", warmup_start, low_open=True, high=1)

    def factor(self, epochs_done: float, epochs: int) -> float:
        if epochs_done < self.warmup:
            return self.warmup_start + (1 - self.warmup_start) * epochs_done / self.warmup
        span = epochs - self.warmup  # none when the warm-up lasts the whole run
        progress = min(1.0, (epochs_done - self.warmup) / span) if span > 0 else 1.0
        # ½ (1 + cos πp) written as cos²(πp / 2), which keeps its last digits near the end of the run.
        return self.final + (1 - self.final) * math.cos(math.pi * progress / 2) ** 2
