"""Choosing the device to run on: ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
from __future__ import annotations

import os
from pathlib import Path

from vaetool.errors import VaetoolError

# cgroup v2, then v1: a container's limit, which the kernel enforces however much RAM the host has.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


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


def memory_of(device) -> int:
    """Bytes of memory on ``device``: the GPU's, else the machine's RAM (or the container's limit, if less)."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest 16 GiB
        return 16 << 30
    for limit in _CGROUP_LIMITS:
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" (v2) is no limit; v1 writes a huge number for none
            total = min(total, int(text))
        break
    return total
