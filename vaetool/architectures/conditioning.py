"""Appending a one-hot class label to a feature vector, shared by the conditional networks."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class OneHot(nn.Module):
    """Appends one_hot(y) to features; does nothing when ``num_classes`` is 0."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        # Indexing an identity matrix stays on the device; F.one_hot would read the labels back.
        # (zeros + diagonal rather than torch.eye, whose meta-device kernel imports torch._dynamo:
        # model files are checked on the meta device before they are loaded.)
        self.register_buffer("eye", torch.zeros(num_classes, num_classes).fill_diagonal_(1.0), persistent=False)

    def append(self, h: Tensor, y: Tensor | None) -> Tensor:
        if self.num_classes == 0:
            return h
        return torch.cat([h, self.eye[y].to(h.dtype)], dim=-1)
