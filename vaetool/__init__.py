"""vaetool: train, inspect and compare variational autoencoders.

The public Python API. Importing this package is cheap: torch is only imported when a function
that needs it is called, so ``vaetool --help`` stays fast.

    >>> import vaetool
    >>> model = vaetool.load("runs/conv-mnist")          # a model file or a run directory
    >>> images = model.sample(16)
    >>> vaetool.save(model, "copy.safetensors")
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "create", "list_plugins", "load", "save"]


def load(path, device: str = "cpu", *, allow_nonfinite: bool = False):
    """Load a model from a ``.safetensors`` file or a run directory; returns a :class:`vaetool.model.VAE`.

    The file is checked as untrusted input before anything is built; weights that are NaN or
    infinite are refused unless ``allow_nonfinite=True`` (for debugging such a model).
    """
    from vaetool import io

    return io.load(path, device, allow_nonfinite=allow_nonfinite)


def save(model, path) -> None:
    """Save a model as one self-describing ``.safetensors`` file, atomically."""
    from vaetool import io

    io.save(model, path)


def create(architecture: str = "conv", likelihood: str = "bernoulli", **kwargs):
    """A new model from registry names and options; see :func:`vaetool.model.create`."""
    from vaetool.model import create as _create

    return _create(architecture, likelihood, **kwargs)


def list_plugins(kind: str | None = None):
    """Installed plugins (name, package, version), without importing them."""
    from vaetool import registry

    kinds = [kind] if kind else list(registry.GROUPS)
    return [info for k in kinds for info in registry.infos(k)]
