"""Does a plugin work at all? One tiny model with it, one forward and one backward pass.

Architectures, likelihoods and priors each go into a tiny model for one forward and backward pass
and a sample; an objective trains a tiny model one step; a learning-rate schedule gives the rates of
a short run.

What ``vaetool plugins --check`` runs for every installed plugin: a plugin that imports but cannot
be built with its own defaults, or whose networks fail, return the wrong shapes or non-finite
numbers, is reported as unusable with its error. (The full conformance checks plugin authors run
are in :mod:`vaetool.testing`.) Datasets need their files, so for them importing is the check.
"""
from __future__ import annotations

from typing import Any

from vaetool.errors import VaetoolError

SHAPES = ((1, 32, 32), (3, 32, 32))  # grey first; colour for architectures that only take colour
LATENT = 4


def check(kind: str, name: str) -> None:
    """Raise a :class:`VaetoolError` saying what fails when the plugin ``kind``/``name`` is used."""
    from vaetool import registry

    cls = registry.get(kind, name)
    if kind == "architecture":
        _build_and_step(architecture=name, num_classes=2 if getattr(cls, "conditional", False) else 0)
    elif kind == "likelihood":
        _build_and_step(architecture="linear", likelihood=name)
    elif kind == "prior":
        _build_and_step(architecture="linear", prior=name)
    elif kind == "objective":
        _objective_step(name)
    elif kind == "lr_schedule":
        _schedule_rates(name)
    # Other kinds (datasets need their files) are checked by importing them, done above.


def _build_and_step(**plugins: Any) -> None:
    """Build a tiny model (trying each of :data:`SHAPES`) and train it one step on random images."""
    import torch

    from vaetool.model import create

    failure: Exception | None = None
    for shape in SHAPES:
        try:
            torch.manual_seed(0)
            model = create(plugins.get("architecture", "linear"), plugins.get("likelihood", "bernoulli"),
                           prior=plugins.get("prior", "standard-normal"), input_shape=shape, latent_dim=LATENT,
                           num_classes=plugins.get("num_classes", 0))
            break
        except VaetoolError as exc:
            failure = exc
    else:
        raise failure
    try:
        _step(model, shape)
    except VaetoolError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise VaetoolError(f"a forward and backward pass on {shape} images fails ({type(exc).__name__}: {text})") from exc


def _objective_step(name: str) -> None:
    """One training step of a tiny model with the objective ``name`` and its own defaults."""
    import torch

    from vaetool import registry
    from vaetool.contracts import TrainingContext
    from vaetool.model import create

    objective, _ = registry.build("objective", name, {})
    torch.manual_seed(0)
    model = create("linear", "bernoulli", input_shape=(1, 8, 8), latent_dim=LATENT)
    batch, device = 8, torch.device("cpu")
    try:
        objective.begin(model, TrainingContext(batch, 1, 1, 1e-3, device))
        x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        terms = model(x, None, model.draw_noise(batch, objective.samples, device), objective.samples)
        loss = objective.loss(terms, 0.5)
        if loss.dim() != 0 or not torch.isfinite(loss):
            raise VaetoolError(f"its loss is {loss.detach().tolist()}, not one finite number")
        loss.backward()
        objective.after_step(terms)
    except VaetoolError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise VaetoolError(f"a training step fails ({type(exc).__name__}: {text})") from exc


def _schedule_rates(name: str, epochs: int = 3, steps: int = 4) -> None:
    """The schedule ``name``, with its own defaults, at every step of a short run: positive, finite numbers."""
    import math

    from vaetool import registry

    schedule, _ = registry.build("lr_schedule", name, {})
    for at in (epoch + step / steps for epoch in range(epochs) for step in range(steps)):
        try:
            factor = schedule.factor(at, epochs)
        except Exception as exc:
            text = " ".join(str(exc).split())[:200]
            raise VaetoolError(f"its factor at epoch {at:g} of {epochs} fails ({type(exc).__name__}: {text})") from exc
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (math.isfinite(factor) and factor > 0):
            raise VaetoolError(f"its factor at epoch {at:g} of {epochs} is {factor!r}, not a positive finite number")


def _step(model, shape) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, *shape), generator=generator).float() / 255
    y = torch.zeros(2, dtype=torch.long) if model.conditional else None
    model.train()
    terms = model.elbo(x, y, generator=generator)
    for part, value in (("log p(x|z)", terms.reconstruction), ("KL", terms.kl)):
        if value.shape[0] != 2:
            raise VaetoolError(f"{part} has shape {tuple(value.shape)} for a batch of 2; it must be one value per image")
        if not torch.isfinite(value).all():
            raise VaetoolError(f"{part} is not finite on random images")
    loss = -terms.elbo.mean()
    loss.backward()
    for pname, parameter in model.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            raise VaetoolError(f"the gradient of {pname} is not finite")
    with torch.no_grad():
        model.eval()
        pictures = model.sample(2, torch.zeros(2, dtype=torch.long) if model.conditional else None, generator=generator)
    if tuple(pictures.shape) != (2, *shape):
        raise VaetoolError(f"samples have shape {tuple(pictures.shape)}, not {(2, *shape)}")
