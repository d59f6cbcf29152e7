"""CPU training keeps the memory a step frees for the next step instead of faulting it in again."""
from __future__ import annotations

import platform
import resource

import pytest
import torch

from test_training import config, tiny_squares  # noqa: F401
from vaetool import allocator, training


def faults_while_reallocating(rounds: int = 4, blocks: int = 10, megabytes: int = 4) -> int:
    """Minor page faults taken while 40 MB of tensors are made, touched and freed, over and over."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        tensors = [torch.ones(megabytes * 2 ** 18) for _ in range(blocks)]  # 4 MB of float32 each
        del tensors
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    assert allocator.reuse_freed_memory()
    faults_while_reallocating(rounds=2)  # the heap grows to its peak once
    # Without the setting glibc trims the 40 MB freed at the top of its heap, and the next round
    # faults every 4 KiB page in again: 10,240 faults a round, 40,960 over the four rounds. With it,
    # the heap may still grow by a block once (1,024 faults), so the bound is a tenth of that.
    assert faults_while_reallocating() < 4096


def test_cpu_training_asks_for_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(training.allocator, "reuse_freed_memory", lambda: calls.append(True))
    training.train(config(epochs=1), tmp_path / "run", device="cpu")
    assert calls
