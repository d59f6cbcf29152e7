"""Choosing the device to run on: ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
from __future__ import annotations

from vaetool.errors import VaetoolError


def resolve(name=None):
    """A ``torch.device`` for ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (or a ``torch.device``);
    a clear error if unavailable."""
    import torch

    name = str(name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise VaetoolError(f"{name!r} is not a device; use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VaetoolError(f"The device {name} was asked for, but this torch sees no CUDA GPU.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VaetoolError(f"There is no {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise VaetoolError("The mps device was asked for, but it is not available on this machine.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise VaetoolError(f"{name!r} is not a supported device; use auto, cpu, cuda, cuda:N or mps.")
    return device
