"""The big libraries — torch, torchvision, matplotlib — imported with Python's cyclic collector paused.

Importing torch makes some hundreds of thousands of long-lived objects, torchvision and matplotlib tens of
thousands more. With the collector running, an import sets off full collections over everything made so
far, again and again, and every later full collection walks it all once more: about 0.6 s of a 2.2 s
``vaetool sample`` and 1.6 s of a one-epoch ``vaetool train`` on the 2-core machine measured
(docs/benchmarks.md, "Command-line start-up"). :func:`load` pauses the collector for the import and then
calls ``gc.freeze``, which moves what exists to the permanent generation that collections skip; objects
made afterwards are collected as before.
"""
from __future__ import annotations

import gc
import importlib
import sys
from types import ModuleType


def load(name: str) -> ModuleType:
    """The module ``name``, imported (if it is not yet) with the collector paused, and frozen after."""
    if name not in sys.modules:
        enabled = gc.isenabled()
        gc.disable()
        try:
            importlib.import_module(name)
        finally:
            gc.freeze()
            if enabled:
                gc.enable()
    return sys.modules[name]
