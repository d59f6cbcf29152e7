"""The built-in learning-rate schedules, one per file (see :class:`vaetool.contracts.LRSchedule`).

``constant`` (the default) keeps ``--lr`` throughout; ``step`` multiplies it by ``gamma`` every
``every`` epochs; ``cosine`` decays it along a half cosine to ``final`` · ``--lr``, after an
optional linear warm-up; ``burda`` is the stepped schedule of Burda et al.'s IWAE paper. The
trainer sets the optimiser's rate to ``--lr`` times the schedule's factor before every step.
"""
from __future__ import annotations

import math
from typing import Any

from vaetool.errors import VaetoolError

DEFAULT = "constant"


def number(schedule: str, name: str, value: Any, *, low: float = 0.0, low_open: bool = False,
           high: float | None = None, whole: bool = False) -> float:
    """An option's value as a finite number in range, else one sentence naming the schedule and option.

    ``low`` is allowed unless ``low_open``; ``high`` always is. ``whole``: a whole number, returned as an int.
    """
    if high is None:
        bounds = f"above {low:g}" if low_open else f"of {low:g} or more"
    else:
        bounds = f"above {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
    kind = "a whole number" if whole else "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and (high is None or value <= high) \
        and (not whole or float(value).is_integer())
    if not ok:
        raise VaetoolError(f"The {schedule} schedule's {name} must be {kind} {bounds}, not {value!r}.")
    return int(value) if whole else float(value)
