"""Built-in dataset plugins, and where datasets keep their files.

The data root is ``--data-dir`` if given, else ``$VAETOOL_DATA``, else a per-user cache folder.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache() -> Path:
    """The platform's per-user cache folder for vaetool."""
    if sys.platform == "darwin":
        cache = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        cache = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "vaetool"


def default_root() -> Path:
    """``$VAETOOL_DATA``, else ``data`` in the per-user cache folder."""
    if os.environ.get("VAETOOL_DATA"):
        return Path(os.environ["VAETOOL_DATA"]).expanduser()
    return user_cache() / "data"


def data_root(explicit: str | Path | None = None) -> Path:
    return Path(explicit).expanduser() if explicit else default_root()
