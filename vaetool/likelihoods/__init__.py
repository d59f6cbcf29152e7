"""Built-in likelihood plugins, and what they share: the ``reduction`` option."""
from __future__ import annotations

from typing import Any

from vaetool.errors import VaetoolError

REDUCTIONS = ("sum", "mean")


def check_reduction(reduction: str) -> str:
    """``reduction`` if it is ``sum`` or ``mean``; one clear sentence otherwise."""
    if reduction not in REDUCTIONS:
        raise VaetoolError(f"reduction must be sum (log p(x|z) summed over pixels, the default) or mean (averaged, "
                           f"the classic bug), not {reduction!r}.")
    return reduction


def averaging_warning(config: dict[str, Any]) -> str | None:
    """One sentence on what ``reduction=mean`` does to a model with this config; None for a sum."""
    if config.get("likelihood_options", {}).get("reduction") != "mean":
        return None
    values = 1
    for size in config["input_shape"]:
        values *= int(size)
    beta = config.get("training", {}).get("beta", 1.0)
    return (f"reduction=mean trains on log p(x|z) averaged over the {values:,} pixel values while the KL stays summed, "
            f"which weighs the KL {values:,} times more (as --beta {beta * values:g} would with the sum) and blurs "
            f"the reconstructions; the reported ELBO stays summed.")
