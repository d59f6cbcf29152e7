"""Bernoulli decoder on logits: the textbook choice for MNIST-like data."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vaetool.contracts import Likelihood
from vaetool.errors import VaetoolError
from vaetool.likelihoods import check_reduction

BINARIZATIONS = ("none", "dynamic", "static")


class Bernoulli(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; sigmoid(logit_i)).

    ``binarize`` chooses what the data looks like to this distribution:
    ``none`` scores grey levels directly (the cross-entropy most tutorials use; not a
    normalised density for non-binary x), ``dynamic`` draws a fresh binarization x ~ Bernoulli(grey)
    for every batch (Salakhutdinov & Murray 2008), and ``static`` is one fixed binarization,
    thresholding at 0.5, the same in every epoch. ``reduction="mean"`` trains on the averaged
    reconstruction term (see :class:`vaetool.contracts.Likelihood`).
    """

    params_per_channel = 1
    levels = 2  # a mass on {0, 1}, also when it scores grey levels (which is why those are no likelihood)

    def __init__(self, binarize: str = "none", reduction: str = "sum"):
        super().__init__()
        if binarize not in BINARIZATIONS:
            raise VaetoolError(f"binarize must be one of {', '.join(BINARIZATIONS)}, not {binarize!r}.")
        self.binarize = binarize
        self.reduction = check_reduction(reduction)
        self.discrete = binarize != "none"

    def target(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.binarize == "dynamic":
            return torch.bernoulli(x, generator=generator)
        if self.binarize == "static":
            return (x > 0.5).to(x.dtype)
        return x

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        # log p = x log σ(l) + (1 - x) log(1 - σ(l)) = -BCE(l, x), summed over every pixel.
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)
