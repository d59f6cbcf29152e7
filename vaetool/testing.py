"""Conformance checks for plugins: the same checks vaetool runs on its built-ins, for plugin authors.

Call them from your plugin's own tests (pytest or anything else: they are plain functions)::

    from vaetool.testing import check_architecture

    def test_my_arch_keeps_the_contract():
        check_architecture("my-arch")                         # an installed entry point, by name
        check_architecture(MyArch, options={"hidden": [32]})  # or the class itself, not yet installed

A check returns ``None`` when the plugin keeps its contract (:mod:`vaetool.contracts`) and raises
:class:`ContractViolation`, an ``AssertionError``, naming the plugin and the rule it broke otherwise.
A class is registered in this process under a temporary name for the duration of the check (so that
save → load can find it) and unregistered afterwards.

- :func:`check_architecture`, :func:`check_likelihood`, :func:`check_prior`, :func:`check_latent`,
  :func:`check_dataset`, :func:`check_objective`, :func:`check_lr_schedule`: one plugin, thoroughly.
- :func:`check_plugin`: the right one of those for a kind and a name.
- :func:`check_all_installed`: every installed plugin, with every failure reported at once.
- :class:`ArchitectureConformance`, :class:`LikelihoodConformance`, :class:`PriorConformance`,
  :class:`LatentConformance`, :class:`DatasetConformance`, :class:`ObjectiveConformance`,
  :class:`LRScheduleConformance`: mixins for a pytest test class, in the manner of diffusers'
  ``ModelTesterMixin``.

Nothing here needs pytest. Everything runs on the CPU in seconds with small options.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import vaetool
from vaetool import devices, registry
from vaetool.contracts import (NEEDS, PLUGIN_API_VERSION, Architecture, Dataset, Latent, Likelihood, LRSchedule,
                               Objective, Prior, Split)
from vaetool.errors import VaetoolError
from vaetool.training import Progress

__all__ = [
    "ArchitectureConformance", "ContractViolation", "DatasetConformance", "LRScheduleConformance", "LatentConformance",
    "LikelihoodConformance", "ObjectiveConformance", "PriorConformance", "check_all_installed", "check_architecture",
    "check_dataset", "check_latent", "check_likelihood", "check_lr_schedule", "check_objective", "check_plugin",
    "check_prior",
]

CONTRACTS = {"architecture": Architecture, "likelihood": Likelihood, "prior": Prior, "latent": Latent,
             "dataset": Dataset, "objective": Objective, "lr_schedule": LRSchedule}

#: What an objective's ``bound`` may say (see :class:`vaetool.contracts.Objective`).
BOUNDS = ("elbo", "iw", "none")

#: The built-in likelihood that needs each number of decoder outputs per pixel: an architecture's
#: full-ELBO checks run through these.
LIKELIHOOD_FOR_PARAMS = {1: "bernoulli", 2: "logistic"}

# The arguments vaetool passes positionally, before the options, to each kind's constructor.
_CORE = {"architecture": ("input_shape", "latent_dim", "params_per_channel", "num_classes"), "prior": ("latent_dim",),
         "latent": ("latent_dim", "encoder_scale", "autoencoder")}


class ContractViolation(AssertionError):
    """A plugin broke a rule of its contract. ``plugin``, ``rule`` and ``detail`` say which and how."""

    def __init__(self, plugin: str, rule: str, detail: str):
        super().__init__(f"{plugin} breaks the plugin contract: {rule}.\n    {detail}")
        self.plugin, self.rule, self.detail = plugin, rule, detail


# -- how a check states its rules -----------------------------------------------------------------

class _Broken(Exception):
    """Raised by ``_expect`` inside a rule; the rule turns it into a ContractViolation."""


def _expect(condition: Any, detail: str) -> None:
    if not condition:
        raise _Broken(detail)


class _Subject:
    """The plugin under check, and the rules it is held to."""

    def __init__(self, kind: str, name: str):
        self.label = f"the {kind} {name!r}"

    @contextmanager
    def rule(self, rule: str, passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Whatever goes wrong in the block (a failed expectation or an exception) breaks ``rule``."""
        try:
            yield
        except ContractViolation:
            raise
        except passthrough:
            raise
        except _Broken as broken:
            raise ContractViolation(self.label, rule, str(broken)) from None
        except Exception as exc:
            raise ContractViolation(self.label, rule, f"it raised {type(exc).__name__}: {exc}") from exc


@contextmanager
def _installed(kind: str, plugin: str | type, device: torch.device) -> Iterator[tuple[_Subject, str, type]]:
    """(subject, registry name, class) of a plugin given by name or class; a class is registered meanwhile.

    The caller's random state is left as it was: the checks seed torch as they go.
    """
    with torch.random.fork_rng(devices=_cuda_indices(device)):
        with _registered(kind, plugin) as found:
            yield found


def _cuda_indices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [torch.cuda.current_device() if device.index is None else device.index]


@contextmanager
def _registered(kind: str, plugin: str | type) -> Iterator[tuple[_Subject, str, type]]:
    if isinstance(plugin, str):
        subject = _Subject(kind, plugin)
        with subject.rule(f"it is installed, imports, and declares api_version = {PLUGIN_API_VERSION}"):
            cls = registry.get(kind, plugin)
        _check_class(subject, kind, cls)
        yield subject, plugin, cls
        return
    if not isinstance(plugin, type):
        raise TypeError(f"check a plugin by its registry name or its class, not {plugin!r}")
    subject = _Subject(kind, plugin.__qualname__)
    _check_class(subject, kind, plugin)
    taken, base = set(registry.names(kind)), f"conformance-{plugin.__name__.lower()}"
    name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, 1000))) if n not in taken)
    registry.register(kind, name, plugin)
    try:
        yield subject, name, plugin
    finally:
        registry.unregister(kind, name)


def _check_class(subject: _Subject, kind: str, cls: type) -> None:
    with subject.rule(f"api_version is {PLUGIN_API_VERSION}, the plugin API version this vaetool speaks"):
        version = getattr(cls, "api_version", None)
        _expect(version == PLUGIN_API_VERSION, f"api_version is {version!r}")
    base = CONTRACTS[kind]
    with subject.rule(f"it subclasses vaetool.contracts.{base.__name__}"):
        _expect(issubclass(cls, base), f"{cls.__qualname__} derives from {[b.__name__ for b in cls.__mro__[1:]]}")


def _check_options(subject: _Subject, kind: str, name: str, cls: type, options: Mapping[str, Any] | None) -> dict:
    """Checks the constructor's signature and the options' values; returns the full resolved options."""
    with subject.rule("its options are keyword arguments with defaults, after the core arguments vaetool passes"):
        init = cls.__init__
        params = list(inspect.signature(init).parameters.values())[1:]  # drop self
        expected = _CORE.get(kind, ())
        core = tuple(p.name for p in params[:len(expected)])
        _expect(core == expected, f"the constructor must begin ({', '.join(expected)}), not ({', '.join(core)})")
        params = params[len(expected):]
        inherited = init in (object.__init__, nn.Module.__init__)  # no options at all
        for p in params:
            if inherited and p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            _expect(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD),
                    f"*args/**kwargs ({p.name}) hide options from the model file and `vaetool plugins`; name each one")
            _expect(p.kind != p.POSITIONAL_ONLY, f"option {p.name!r} is positional-only; options are passed by name")
            _expect(p.name not in registry.CORE_ARGUMENTS,
                    f"option {p.name!r} has the name of a core argument, never passed as an option to a {kind}")
            _expect(p.default is not p.empty, f"option {p.name!r} has no default; every option needs one")
    resolved = registry.resolve_options(kind, name, dict(options or {}))  # an unknown option is the caller's error
    with subject.rule("its option values are JSON data (the model file records them; tuples come back as lists)"):
        for key, value in resolved.items():
            try:
                back = json.loads(json.dumps(value))
            except (TypeError, ValueError) as exc:
                raise _Broken(f"option {key!r} = {value!r} cannot be written as JSON ({exc})") from None
            _expect(back == value, f"option {key!r} = {value!r} comes back from JSON as {back!r}")
    return resolved


def _device(device: str | torch.device) -> torch.device:
    try:
        return devices.resolve(device)
    except VaetoolError as exc:
        warnings.warn(f"{exc} The conformance checks run on the CPU instead; moving to {device} is not checked.",
                      stacklevel=3)
        return torch.device("cpu")


def _on(tensor: Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def _check_placement(subject: _Subject, module: nn.Module, device: torch.device) -> None:
    with subject.rule(f".to({device}) moves every parameter, buffer and tensor attribute"):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            _expect(_on(tensor, device), f"{name} stays on {tensor.device}")
        for prefix, sub in module.named_modules():
            for attr, value in vars(sub).items():
                if torch.is_tensor(value) and not _on(value, device):
                    raise _Broken(f"{prefix + '.' if prefix else ''}{attr} is a plain tensor attribute left on "
                                  f"{value.device}; register it with register_buffer (persistent=False if it "
                                  "need not be saved)")


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal on the CPU; on an accelerator, equal up to the non-determinism of its kernels."""
    if a.device.type == "cpu":
        return torch.equal(a, b)
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def _numbers(t: Tensor) -> str:
    return "[" + ", ".join(f"{v:.5g}" for v in t.flatten().tolist()) + "]"


def _shape(value: Any) -> Any:
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


def _images(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> Tensor:
    """Images on 8-bit levels in [0, 1], with exact 0s and 1s among them."""
    x = torch.randint(0, 256, tuple(shape), generator=generator).float().div_(255)
    x.view(len(x), -1)[:, 0], x.view(len(x), -1)[:, -1] = 0.0, 1.0
    return x.to(device)


def _same_model(subject: _Subject, model, loaded) -> None:
    config = {k: loaded.config.get(k) for k in model.config}
    _expect(config == model.config, f"the config came back as {config}, not {model.config}")
    saved, back = model.state_dict(), loaded.state_dict()
    _expect(saved.keys() == back.keys(), f"the weights came back as {sorted(back)}, not {sorted(saved)}")
    changed = [k for k in saved if not torch.equal(saved[k].to(back[k].device), back[k])]
    _expect(not changed, f"these weights came back changed: {changed}")


def _save_and_load(model, device: torch.device):
    with tempfile.TemporaryDirectory(prefix="vaetool-conformance-") as tmp:
        path = Path(tmp) / "model.safetensors"
        vaetool.save(model, path)
        return vaetool.load(path, device=str(device))


# -- architectures --------------------------------------------------------------------------------

def check_architecture(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None,
                       input_shapes: Sequence[Sequence[int]] = ((1, 28, 28), (3, 32, 32), (1, 64, 64)),
                       latent_dim: int = 4, num_classes: int = 3, params_per_channel: Sequence[int] = (1, 2),
                       device: str = "cpu") -> None:
    """Check that an architecture keeps the :class:`~vaetool.contracts.Architecture` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults). For every input shape and every ``params_per_channel`` it checks that:

    - it is built as ``cls(input_shape, latent_dim, params_per_channel, num_classes, **options)``,
      its options being keyword arguments with JSON-able defaults, and passes the core arguments
      on to ``Architecture.__init__``;
    - ``encode(x, y)`` returns ``(mean, raw_scale)``, each ``(B, latent_dim)``, and ``decode(z, y)``
      returns ``(B, params_per_channel·C, H, W)``, all finite, for B = 1 and B = 5, and that in
      eval mode each example's output does not depend on the rest of the batch;
    - a conditional architecture (``conditional = True``, built with ``num_classes`` > 0) decodes
      differently for different labels, and any other architecture ignores ``y``, built with
      ``num_classes`` > 0 (a labelled dataset) or 0;
    - for ``params_per_channel`` 1 and 2, inside a model with the bernoulli and the logistic
      likelihood: the gradient of the ELBO reaches every parameter and is finite;

    and, for the first input shape: that a few Adam steps keep the loss finite, that save → load
    (``vaetool.save`` / ``vaetool.load``) gives back the same config, weights and outputs, and that
    ``.to(device)`` moves every tensor. ``device`` is where all of it runs; when that device is not
    available here, a warning says so and the checks run on the CPU.
    """
    device = _device(device)
    generator = torch.Generator().manual_seed(0)
    with _installed("architecture", name_or_cls, device) as (subject, name, cls):
        with subject.rule("`conditional` is a bool"):
            _expect(isinstance(cls.conditional, bool), f"conditional is {cls.conditional!r}")
        if cls.conditional and num_classes < 2:
            raise ValueError("check a conditional architecture with num_classes of 2 or more")
        resolved = _check_options(subject, "architecture", name, cls, options)
        for index, shape in enumerate(input_shapes):
            shape = tuple(int(s) for s in shape)
            for params in params_per_channel:
                likelihood = LIKELIHOOD_FOR_PARAMS.get(params)
                # As the trainer builds it for a labelled dataset; and for an unlabelled one below.
                with subject.rule(f"it builds as cls(input_shape, latent_dim, params_per_channel, num_classes, "
                                  f"**options) for input {shape} and params_per_channel={params}"):
                    torch.manual_seed(0)
                    if likelihood:
                        model = vaetool.create(name, likelihood, input_shape=shape, latent_dim=latent_dim,
                                               num_classes=num_classes, architecture_options=resolved).to(device)
                        architecture = model.architecture
                    else:
                        architecture = cls(shape, latent_dim, params, num_classes, **resolved).to(device)
                _check_placement(subject, architecture, device)
                _check_forward(subject, architecture, shape, params, latent_dim, num_classes, generator, device)
                if likelihood:
                    _check_gradients(subject, model, shape, likelihood, num_classes, generator, device)
                if index == 0 and likelihood:
                    _check_training_steps(subject, model, shape, num_classes, generator, device)
                    _check_round_trip(subject, model, shape, num_classes, generator, device)
            if index == 0 and not cls.conditional:
                with subject.rule(f"it builds with num_classes=0 (an unlabelled dataset) for input {shape}"):
                    architecture = cls(shape, latent_dim, params_per_channel[0], 0, **resolved).to(device)
                _check_forward(subject, architecture, shape, params_per_channel[0], latent_dim, 0, generator, device)


def _labels(n: int, num_classes: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(0, max(num_classes, 1), (n,), generator=generator).to(device)


@torch.no_grad()
def _check_forward(subject: _Subject, architecture: Architecture, shape: tuple[int, int, int], params: int,
                   latent_dim: int, num_classes: int, generator: torch.Generator, device: torch.device) -> None:
    channels, height, width = shape
    where = f"(input {shape}, params_per_channel={params}, num_classes={num_classes})"
    with subject.rule("it passes the core arguments on to Architecture.__init__"):
        seen = (architecture.input_shape, architecture.latent_dim, architecture.params_per_channel,
                architecture.num_classes)
        _expect(seen == (shape, latent_dim, params, num_classes),
                f"input_shape, latent_dim, params_per_channel, num_classes are {seen} {where}")
    architecture.eval()
    conditional = architecture.conditional
    for batch in (1, 5):
        x = _images((batch, *shape), generator, device)
        y = _labels(batch, num_classes, generator, device) if conditional else None
        z = torch.randn(batch, latent_dim, generator=generator).to(device)
        with subject.rule("encode(x, y) returns a pair (mean, raw_scale), each (B, latent_dim), finite, on x's device"):
            encoded = architecture.encode(x, y)
            _expect(isinstance(encoded, (tuple, list)) and len(encoded) == 2,
                    f"it returned {type(encoded).__name__} {where}")
            for what, t in zip(("mean", "raw_scale"), encoded):
                _expect(torch.is_tensor(t) and t.shape == (batch, latent_dim),
                        f"{what} is {_shape(t)}, not {(batch, latent_dim)} for B={batch} {where}")
                _expect(torch.isfinite(t).all(), f"{what} is not finite for B={batch} {where}")
                _expect(t.device == x.device, f"{what} is on {t.device}, x on {x.device}")
        expected = (batch, params * channels, height, width)
        with subject.rule("decode(z, y) returns (B, params_per_channel·C, H, W), finite, on z's device"):
            decoded = architecture.decode(z, y)
            _expect(torch.is_tensor(decoded) and decoded.shape == expected,
                    f"it returned {_shape(decoded)}, not {expected}, for B={batch} {where}")
            _expect(torch.isfinite(decoded).all(), f"it is not finite for B={batch} {where}")
            _expect(decoded.device == z.device, f"it is on {decoded.device}, z on {z.device}")
    with subject.rule("in eval mode each example is encoded and decoded on its own, whatever else is in the batch"):
        one_y = y[:1] if y is not None else None
        # Accelerators may pick other kernels for other batch sizes: a looser tolerance there.
        rtol, atol = (1e-4, 1e-5) if device.type == "cpu" else (1e-2, 1e-3)
        pairs = (("encode", architecture.encode(x[:1], one_y)[0], architecture.encode(x, y)[0][:1]),
                 ("decode", architecture.decode(z[:1], one_y), architecture.decode(z, y)[:1]))
        for what, alone, together in pairs:
            _expect(torch.allclose(alone, together, rtol=rtol, atol=atol),
                    f"{what} of the first example alone differs from it in a batch of 5 by "
                    f"{(alone - together).abs().max().item():.3g} {where}")
    if conditional:  # built with num_classes ≥ 2
        with subject.rule("a conditional architecture uses the label: decode(z, y) changes with y"):
            first, second = torch.zeros_like(y), torch.ones_like(y)
            _expect(not _same(architecture.decode(z, first), architecture.decode(z, second)),
                    f"decode gives the same output for labels 0 and 1 {where}")
    else:
        with subject.rule("an architecture that is not conditional ignores y"):
            y = _labels(len(x), num_classes, generator, device)
            _expect(_same(architecture.encode(x, y)[0], architecture.encode(x, None)[0]),
                    f"encode(x, y) differs from encode(x) {where}")
            _expect(_same(architecture.decode(z, y), architecture.decode(z, None)),
                    f"decode(z, y) differs from decode(z) {where}")


def _batch(model, shape, num_classes, generator, device, n=5):
    x = _images((n, *shape), generator, device)
    return x, (_labels(n, num_classes, generator, device) if model.conditional else None)


def _check_gradients(subject: _Subject, model, shape, likelihood: str, num_classes: int,
                     generator: torch.Generator, device: torch.device) -> None:
    from vaetool.objectives.elbo import ELBO

    with subject.rule(f"the ELBO's gradient (with the {likelihood} likelihood) reaches every parameter and is finite"):
        model.train()
        model.zero_grad(set_to_none=True)
        x, y = _batch(model, shape, num_classes, generator, device)
        loss = ELBO().loss(model.elbo(x, y), 0.0)
        _expect(torch.isfinite(loss), f"the loss is {loss.item()} for input {shape}")
        loss.backward()
        for name, p in model.architecture.named_parameters():
            if p.requires_grad:
                _expect(p.grad is not None, f"{name} gets no gradient for input {shape}")
                _expect(torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient for input {shape}")
        model.zero_grad(set_to_none=True)


def _check_training_steps(subject: _Subject, model, shape, num_classes, generator, device) -> None:
    from vaetool.objectives.elbo import ELBO
    from vaetool.training import adam

    with subject.rule("a few Adam steps on tiny random data keep the loss and the weights finite"):
        model.train()
        x, y = _batch(model, shape, num_classes, generator, device, n=8)
        optimizer = adam(model, 1e-3)
        for step in range(3):
            loss = ELBO().loss(model.elbo(x, y), 0.0)
            _expect(torch.isfinite(loss), f"the loss is {loss.item()} at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        for name, p in model.named_parameters():
            _expect(torch.isfinite(p).all(), f"{name} is not finite after 3 steps")


@torch.no_grad()
def _check_round_trip(subject: _Subject, model, shape, num_classes, generator, device) -> None:
    with subject.rule("save → load rebuilds it from its recorded config with the same weights and outputs"):
        loaded = _save_and_load(model, device)
        _check_placement(subject, loaded, device)
        _same_model(subject, model, loaded)
        model.eval()
        x, y = _batch(model, shape, num_classes, generator, device)
        z = torch.randn(len(x), model.latent_dim, generator=generator).to(device)
        for what, a, b in (("encode", model.architecture.encode(x, y), loaded.architecture.encode(x, y)),
                           ("decode", (model.architecture.decode(z, y),), (loaded.architecture.decode(z, y),))):
            _expect(all(_same(u, v) for u, v in zip(a, b)), f"{what} gives different outputs after loading")


# -- likelihoods ----------------------------------------------------------------------------------

def check_likelihood(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None,
                     shape: Sequence[int] = (2, 3, 8, 8), device: str = "cpu", levels: int | None = None) -> None:
    """Check that a likelihood keeps the :class:`~vaetool.contracts.Likelihood` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults); ``shape`` is the ``(B, C, H, W)`` of the images it scores. It checks that:

    - it is built as ``cls(**options)`` from keyword arguments with JSON-able defaults;
    - ``params_per_channel`` is an integer ≥ 1 and ``discrete`` a bool;
    - ``target(x, generator)`` keeps the shape of ``x`` and stays in [0, 1];
    - ``log_prob(x, params)`` is ``(B,)`` and finite for 8-bit images with exact 0s and 1s, for
      continuous ones, and for random parameters; it **sums** over pixels and channels (an image
      tiled twice, its parameters tiled the same way, scores twice as much: a mean would score the
      same); the parameters are ``params_per_channel`` consecutive blocks of C channels; and each
      example is scored on its own;
    - its gradient with respect to the parameters, and to the likelihood's own weights, is finite;
    - ``mean(params)`` and ``sample(params, generator)`` are ``(B, C, H, W)`` in [0, 1], and a
      sample depends on the generator's seed only, not on torch's global random state;
    - inside a model it survives save → load with the same config, weights and ELBO;
    - ``.to(device)`` moves its tensors;
    - it is normalised, on a one-pixel image: with ``levels`` (the argument, else the likelihood's
      own ``levels`` attribute: 256 for 8-bit data, 2 for binary) the probabilities of the levels
      ``k / (levels − 1)`` sum to 1; without, ``exp(log_prob)`` integrates numerically to 1 over the
      likelihood's ``support``.
    """
    device = _device(device)
    batch, channels, height, width = (int(s) for s in shape)
    if channels < 2 or batch < 2:
        raise ValueError("check a likelihood on a shape with at least 2 examples and 2 channels")
    generator = torch.Generator().manual_seed(0)
    with _installed("likelihood", name_or_cls, device) as (subject, name, cls):
        resolved = _check_options(subject, "likelihood", name, cls, options)
        with subject.rule("it builds as cls(**options)"):
            likelihood = cls(**resolved).to(device)
        params_per_channel = likelihood.params_per_channel
        with subject.rule("params_per_channel is an integer of 1 or more"):
            _expect(isinstance(params_per_channel, int) and not isinstance(params_per_channel, bool)
                    and params_per_channel >= 1, f"params_per_channel is {params_per_channel!r}")
        with subject.rule("`discrete` is a bool"):
            _expect(isinstance(likelihood.discrete, bool), f"discrete is {likelihood.discrete!r}")
        _check_placement(subject, likelihood, device)

        def draw_params(scale: float = 1.0) -> Tensor:
            size = (batch, params_per_channel * channels, height, width)
            return (scale * torch.randn(size, generator=generator)).to(device)

        images = (_images((batch, channels, height, width), generator, device),
                  torch.rand(batch, channels, height, width, generator=generator).to(device))
        with subject.rule("target(x, generator) keeps the shape of x and stays in [0, 1]"):
            targets = []
            for x in images:
                t = likelihood.target(x, torch.Generator(device=device).manual_seed(1))
                _expect(torch.is_tensor(t) and t.shape == x.shape, f"target(x) is {_shape(t)}, x is {tuple(x.shape)}")
                _expect(((t >= 0) & (t <= 1)).all(), f"target(x) lies in [{t.min().item()}, {t.max().item()}]")
                targets.append(t)
        with torch.no_grad(), subject.rule("log_prob(x, params) is (B,) and finite for any x in [0, 1] and parameters"):
            for x in targets:
                for scale in (1.0, 4.0):
                    log_p = likelihood.log_prob(x, draw_params(scale))
                    _expect(torch.is_tensor(log_p) and log_p.shape == (batch,),
                            f"log_prob is {_shape(log_p)}, not {(batch,)}, for images {tuple(x.shape)}")
                    _expect(torch.isfinite(log_p).all(),
                            f"log_prob is {_numbers(log_p)} for parameters ~ N(0, {scale}²)")
        x, params = targets[0], draw_params()
        _check_sums(subject, likelihood, x, params)
        with subject.rule("log_prob is differentiable: finite gradients reach the parameters and the weights"):
            params = params.clone().requires_grad_()
            likelihood.zero_grad(set_to_none=True)
            likelihood.log_prob(x, params).sum().backward()
            _expect(params.grad is not None and torch.isfinite(params.grad).all(),
                    "the gradient w.r.t. params is not finite")
            for weight_name, weight in likelihood.named_parameters():
                _expect(weight.grad is not None and torch.isfinite(weight.grad).all(),
                        f"its weight {weight_name} gets no finite gradient")
            likelihood.zero_grad(set_to_none=True)
        _check_images(subject, likelihood, params.detach(), (batch, channels, height, width), device)
        _check_likelihood_round_trip(subject, name, resolved, (channels, height, width), generator, device)
        levels = levels if levels is not None else getattr(likelihood, "levels", None)
        if levels is not None:
            _check_levels(subject, likelihood, levels, generator, device)
        else:
            _check_density(subject, likelihood, generator)


@torch.no_grad()
def _check_levels(subject: _Subject, likelihood: Likelihood, levels: int, generator, device) -> None:
    with subject.rule(f"on one pixel, the probabilities of the {levels} levels k/{levels - 1} sum to 1"):
        grid = (torch.arange(levels, dtype=torch.float32) / (levels - 1)).view(-1, 1, 1, 1).to(device)
        for scale in (0.5, 1.0, 3.0):
            params = (scale * torch.randn(1, likelihood.params_per_channel, 1, 1, generator=generator)).to(device)
            total = likelihood.log_prob(grid, params.expand(levels, -1, -1, -1)).exp().sum().item()
            _expect(abs(total - 1) < 1e-3, f"they sum to {total:.6g} for parameters {_numbers(params)}")


@torch.no_grad()
def _check_density(subject: _Subject, likelihood: Likelihood, generator, points: int = 200_001) -> None:
    """exp(log_prob) of one pixel integrates to 1 over the support: the trapezoid rule in float64 on a grid
    about the distribution's mean whose spacing grows with the distance from it (x = mean ± c·sinh t), so
    that scales from 1e-5 to 1e3 are all resolved."""
    low, high = (float(v) for v in getattr(likelihood, "support", (-math.inf, math.inf)))
    with subject.rule(f"on one pixel, exp(log_prob) integrates to 1 over its support [{low:g}, {high:g}]"):
        exact = copy.deepcopy(likelihood).to("cpu", torch.float64)
        t = torch.linspace(-math.asinh(1e8), math.asinh(1e8), points, dtype=torch.float64)
        offsets = 1e-5 * torch.sinh(t)
        ends = torch.tensor([low, high], dtype=torch.float64).clamp(-1e9, 1e9)
        for scale in (0.5, 1.0, 3.0):
            params = scale * torch.randn(1, exact.params_per_channel, 1, 1, generator=generator).double()
            centre = exact.mean(params).reshape(()).clamp(max(low, -1e6), min(high, 1e6))
            x = torch.cat([(centre + offsets).clamp(low, high), ends]).unique()  # sorted
            density = exact.log_prob(x.view(-1, 1, 1, 1), params.expand(len(x), -1, -1, -1)).exp()
            total = torch.trapezoid(density, x).item()
            _expect(abs(total - 1) < 2e-3, f"it integrates to {total:.6g} for parameters {_numbers(params)}")


@torch.no_grad()
def _check_sums(subject: _Subject, likelihood: Likelihood, x: Tensor, params: Tensor) -> None:
    channels = x.shape[1]
    once = likelihood.log_prob(x, params)
    with subject.rule("log_prob sums over every pixel and channel, never averages "
                      "(a mean silently rescales the reconstruction against the KL)"):
        for dim, what in ((2, "height"), (3, "width")):
            twice = likelihood.log_prob(torch.cat([x, x], dim), torch.cat([params, params], dim))
            if not torch.allclose(twice, 2 * once, rtol=1e-4, atol=1e-3):
                ratio = (twice / once).mean().item()
                hint = " — it averages instead of summing" if abs(ratio - 1) < 1e-3 else ""
                raise _Broken(f"an image tiled twice along its {what}, parameters tiled the same way, must score "
                              f"2× the log-probability of the original; it scores {ratio:.4g}×{hint}")
    with subject.rule("the parameters are params_per_channel consecutive blocks of C channels "
                      "(channel c's parameters are params[:, c::C]) and channels are summed"):
        per_channel = sum(likelihood.log_prob(x[:, c:c + 1], params[:, c::channels]) for c in range(channels))
        _expect(torch.allclose(once, per_channel, rtol=1e-4, atol=1e-3),
                f"log_prob is {_numbers(once)}, the sum of each channel scored alone {_numbers(per_channel)}")
    with subject.rule("log_prob scores each example on its own"):
        alone = likelihood.log_prob(x[:1], params[:1])
        _expect(torch.allclose(alone, once[:1], rtol=1e-5, atol=1e-4),
                f"the first example scores {alone.item()} alone, {once[0].item()} in the batch")


@torch.no_grad()
def _check_images(subject: _Subject, likelihood: Likelihood, params: Tensor, shape, device) -> None:
    with subject.rule("mean(params) is (B, C, H, W) in [0, 1]"):
        mean = likelihood.mean(params)
        _expect(torch.is_tensor(mean) and mean.shape == shape, f"mean is {_shape(mean)}, not {shape}")
        _expect(((mean >= 0) & (mean <= 1)).all(), f"mean lies in [{mean.min().item()}, {mean.max().item()}]")
    with subject.rule("sample(params, generator) is (B, C, H, W) in [0, 1]"):
        sample = likelihood.sample(params, torch.Generator(device=device).manual_seed(1))
        _expect(torch.is_tensor(sample) and sample.shape == shape, f"sample is {_shape(sample)}, not {shape}")
        _expect(((sample >= 0) & (sample <= 1)).all(), f"sample lies in [{sample.min().item()}, {sample.max().item()}]")
    with subject.rule("sample(params, generator) draws from the generator only: the same seed gives the same sample"):
        with torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(12345)  # a different global state must not matter
            again = likelihood.sample(params, torch.Generator(device=device).manual_seed(1))
        _expect(_same(sample, again), "two samples with generators seeded alike differ")


def _check_likelihood_round_trip(subject: _Subject, name: str, options: dict, shape, generator, device) -> None:
    with subject.rule("it round-trips inside a model: save → load gives the same config, weights and ELBO"):
        model = vaetool.create("linear", name, input_shape=shape, latent_dim=2, likelihood_options=options).to(device)
        with torch.no_grad():
            for weight in model.likelihood.parameters():  # moved off their initial values, so loading must restore them
                weight.add_(0.125)
        loaded = _save_and_load(model, device)
        _check_placement(subject, loaded, device)
        _same_model(subject, model, loaded)
        _expect(loaded.likelihood.params_per_channel == model.likelihood.params_per_channel,
                "params_per_channel changed on loading")
        x = _images((3, *shape), generator, device)
        with torch.no_grad():
            before = model.eval().elbo(x, generator=torch.Generator(device=device).manual_seed(2)).elbo
            after = loaded.elbo(x, generator=torch.Generator(device=device).manual_seed(2)).elbo
        _expect(_same(before, after), f"the ELBO is {_numbers(before)} before and {_numbers(after)} after")


# -- priors ---------------------------------------------------------------------------------------

def check_prior(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None, latent_dim: int = 4,
                device: str = "cpu") -> None:
    """Check that a prior keeps the :class:`~vaetool.contracts.Prior` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults). It checks that:

    - it is built as ``cls(latent_dim, **options)``, its options keyword arguments with JSON-able
      defaults, and passes ``latent_dim`` on to ``Prior.__init__``; ``analytic_kl`` is a bool;
    - ``sample(n, generator)`` is ``(n, latent_dim)``, finite, on the prior's device, and depends on
      the generator's seed only, not on torch's global random state;
    - ``log_prob(z)`` is one finite value per row of ``z`` ``(..., latent_dim)``, differentiable;
    - ``sample`` and ``log_prob`` describe the same normalised distribution: in one dimension, the
      probability of intervals between sample quantiles, integrated from ``exp(log_prob)``, matches
      the share of samples in them;
    - with ``analytic_kl``: ``kl(posterior)`` is ``(B, latent_dim)`` and its sum matches a Monte Carlo
      estimate of E_q[log q(z|x) − log p(z)];
    - inside a model, the ELBO's gradient reaches the prior's weights, and save → load gives the
      same config, weights, ELBO and samples;
    - ``.to(device)`` moves its tensors.
    """
    from vaetool.distributions import DiagonalGaussian

    device = _device(device)
    generator = torch.Generator().manual_seed(0)
    with _installed("prior", name_or_cls, device) as (subject, name, cls):
        resolved = _check_options(subject, "prior", name, cls, options)
        with subject.rule("`analytic_kl` is a bool"):
            _expect(isinstance(cls.analytic_kl, bool), f"analytic_kl is {cls.analytic_kl!r}")
        with subject.rule("it builds as cls(latent_dim, **options) and passes latent_dim on to Prior.__init__"):
            torch.manual_seed(0)
            prior = _built_prior(name, cls, latent_dim, resolved, device)
            _expect(prior.latent_dim == latent_dim, f"latent_dim is {prior.latent_dim!r}, not {latent_dim}")
        _check_placement(subject, prior, device)
        _check_prior_samples(subject, prior, latent_dim, device)
        with subject.rule("log_prob(z) is one finite value per row of z (..., latent_dim), with finite gradients"):
            for shape in ((5, latent_dim), (3, 5, latent_dim)):
                z = (3 * torch.randn(shape, generator=generator)).to(device).requires_grad_()
                log_p = prior.log_prob(z)
                _expect(torch.is_tensor(log_p) and log_p.shape == shape[:-1],
                        f"log_prob is {_shape(log_p)} for z of shape {shape}, not {shape[:-1]}")
                _expect(torch.isfinite(log_p).all(), f"log_prob is {_numbers(log_p)}")
                log_p.sum().backward()
                _expect(torch.isfinite(z.grad).all(), "the gradient w.r.t. z is not finite")
            prior.zero_grad(set_to_none=True)
        with subject.rule("sample and log_prob describe the same normalised distribution "
                          "(checked in one dimension: interval probabilities match the samples)"):
            torch.manual_seed(0)
            one = _built_prior(name, cls, 1, resolved, device)
            _check_density_matches_samples(one, device)
        if cls.analytic_kl:
            with torch.no_grad(), subject.rule("with analytic_kl, kl(posterior) is (B, latent_dim) and sums to "
                                               "E_q[log q(z|x) − log p(z)]"):
                posterior = DiagonalGaussian(torch.randn(3, latent_dim, generator=generator).to(device),
                                             (0.5 * torch.randn(3, latent_dim, generator=generator)).to(device))
                kl = prior.kl(posterior)
                _expect(torch.is_tensor(kl) and kl.shape == (3, latent_dim),
                        f"kl is {_shape(kl)}, not {(3, latent_dim)}")
                eps = torch.randn(20000, 3, latent_dim, generator=generator).to(device)
                z = posterior.mean + posterior.std * eps
                estimates = posterior.log_prob(z) - prior.log_prob(z)
                error = estimates.std(0) / math.sqrt(len(z))
                gap = (estimates.mean(0) - kl.sum(-1)).abs()
                _expect((gap <= 6 * error + 1e-3).all(), f"kl sums to {_numbers(kl.sum(-1))}; the Monte Carlo estimate "
                                                         f"is {_numbers(estimates.mean(0))} ± {_numbers(error)}")
        _check_prior_in_a_model(subject, name, resolved, generator, device)


def _built_prior(name: str, cls: type, latent_dim: int, options: dict, device: torch.device) -> Prior:
    """The prior on its own, or, for one that binds to a model (:meth:`Prior.bind`), inside a tiny model."""
    if cls.bind is Prior.bind:
        return cls(latent_dim, **options).to(device)
    model = vaetool.create("linear", "bernoulli", input_shape=(1, 6, 6), latent_dim=latent_dim, prior=name,
                           prior_options=options).to(device).eval()
    return model.prior


def _check_prior_samples(subject: _Subject, prior: Prior, latent_dim: int, device: torch.device) -> None:
    with torch.no_grad(), subject.rule("sample(n, generator) is (n, latent_dim), finite, on the prior's device"):
        for n in (1, 5):
            z = prior.sample(n, torch.Generator(device=device).manual_seed(1))
            _expect(torch.is_tensor(z) and z.shape == (n, latent_dim), f"sample(n={n}) is {_shape(z)}")
            _expect(torch.isfinite(z).all(), f"sample(n={n}) is not finite")
            _expect(_on(z, device), f"sample(n={n}) is on {z.device}, the prior on {device}")
    with torch.no_grad(), subject.rule("sample(n, generator) draws from the generator only: "
                                       "the same seed gives the same sample"):
        with torch.random.fork_rng(devices=_cuda_indices(device)):
            torch.manual_seed(12345)  # a different global state must not matter
            again = prior.sample(5, torch.Generator(device=device).manual_seed(1))
        _expect(_same(z, again), "two samples with generators seeded alike differ")


@torch.no_grad()
def _check_density_matches_samples(prior: Prior, device: torch.device, n: int = 20000) -> None:
    z = prior.sample(n, torch.Generator(device=device).manual_seed(2)).flatten().double()
    quantiles = torch.quantile(z.cpu(), torch.tensor([0.1, 0.25, 0.5, 0.9, 0.95], dtype=torch.float64)).tolist()
    for (a, qa), (b, qb) in (((0.1, quantiles[0]), (0.9, quantiles[3])), ((0.25, quantiles[1]), (0.5, quantiles[2])),
                             ((0.5, quantiles[2]), (0.95, quantiles[4]))):
        grid = torch.linspace(qa, qb, 20001, dtype=torch.float64)
        density = prior.log_prob(grid.to(device=device, dtype=torch.float32).view(-1, 1)).double().cpu().exp()
        mass = torch.trapezoid(density, grid).item()
        _expect(abs(mass - (b - a)) < 0.02, f"exp(log_prob) integrates to {mass:.4f} between the {a:.0%} and "
                                            f"{b:.0%} quantiles of {n} samples, which hold {b - a:.0%} of them")


def _check_prior_in_a_model(subject: _Subject, name: str, options: dict, generator, device) -> None:
    from vaetool.objectives.elbo import ELBO

    x = _images((4, 1, 6, 6), generator, device)
    with subject.rule("inside a model, the ELBO's gradient reaches the prior's weights and is finite"):
        model = vaetool.create("linear", "bernoulli", input_shape=(1, 6, 6), latent_dim=3, prior=name,
                               prior_options=options).to(device)
        ELBO().loss(model.elbo(x, generator=torch.Generator(device=device).manual_seed(3)), 0.0).backward()
        for weight_name, weight in model.prior.named_parameters():
            if weight.requires_grad:
                _expect(weight.grad is not None and torch.isfinite(weight.grad).all(),
                        f"its weight {weight_name} gets no finite gradient")
    with torch.no_grad(), subject.rule("it round-trips inside a model: save → load gives the same config, weights, "
                                       "ELBO and samples"):
        for weight in model.prior.parameters():  # moved off their initial values, so loading must restore them
            weight.add_(0.125)
        loaded = _save_and_load(model, device)
        _check_placement(subject, loaded, device)
        _same_model(subject, model, loaded)
        model.eval()
        for what, run in (("ELBO", lambda m, g: m.elbo(x, generator=g).elbo),
                          ("samples", lambda m, g: m.sample(3, generator=g))):
            before = run(model, torch.Generator(device=device).manual_seed(4))
            after = run(loaded, torch.Generator(device=device).manual_seed(4))
            _expect(_same(before, after), f"the {what} differ after loading")


# -- latents --------------------------------------------------------------------------------------

def check_latent(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None, latent_dim: int = 3,
                 device: str = "cpu") -> None:
    """Check that a latent kind keeps the :class:`~vaetool.contracts.Latent` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults). Inside a small model it checks that:

    - it is built as ``cls(latent_dim, encoder_scale, autoencoder, **options)``, its options keyword
      arguments with JSON-able defaults; ``features`` is a whole number of 1 or more;
    - ``posterior(...).mean`` is ``(B, code_dim)`` (``(B, features)`` for a discrete latent) and ``decoder_input`` makes it ``(B, features)``; the ELBO
      terms are finite: z ``(B, features)``, the KL ``(B, sum(layers))`` or ``(B, 1)``, the latent's loss
      ``None`` or ``(B,)``;
    - the reconstruction term's gradient reaches the encoder's outputs through z (through a
      quantiser too: a straight-through estimate), and the objective's gradient reaches the latent's
      own weights and is finite;
    - ``sample(n, prior, generator)`` is as wide as the posterior's mean, finite, decodable, and depends on the
      generator's seed only; with several layers, so at every layer :meth:`VAE.select_layer` picks;
    - a few training steps keep every weight and buffer finite;
    - save → load gives the same config, weights and buffers, encodings, ELBO and samples;
    - for a discrete latent: ``codes`` are int64 ``(B, latent_dim)`` in 0 … ``codebook_size`` − 1,
      the same after loading; ``embed(codes)`` is the posterior's mean; ``sample_codes`` draws valid
      codes; ``usage`` counts the codes used and gives a perplexity between 1 and that count;
    - ``.to(device)`` moves its tensors.
    """
    from vaetool.model import with_latent_loss
    from vaetool.objectives.elbo import ELBO

    def objective(terms):  # what training minimises: the ELBO objective and the latent's own loss
        return with_latent_loss(ELBO().loss(terms, 0.0), terms)

    device = _device(device)
    generator = torch.Generator().manual_seed(0)
    shape = (1, 6, 6)
    with _installed("latent", name_or_cls, device) as (subject, name, cls):
        resolved = _check_options(subject, "latent", name, cls, options)
        with subject.rule("it builds as cls(latent_dim, encoder_scale, autoencoder, **options) inside a model, "
                          "and features is a whole number of 1 or more"):
            torch.manual_seed(0)
            model = vaetool.create("linear", "bernoulli", input_shape=shape, latent_dim=latent_dim, latent=name,
                                   latent_options=resolved).to(device)
            features = model.latent.features
            _expect(isinstance(features, int) and features >= 1, f"features is {features!r}")
            _expect(model.latent.latent_dim == latent_dim, f"latent_dim is {model.latent.latent_dim!r}, not {latent_dim}")
        _check_placement(subject, model, device)
        x = _images((5, *shape), generator, device)
        with subject.rule("training steps keep every weight and buffer finite"):
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for step in range(3):
                loss = objective(model.elbo(x, generator=torch.Generator(device=device).manual_seed(step)))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            for tensor_name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                if tensor.is_floating_point():
                    _expect(torch.isfinite(tensor).all(), f"{tensor_name} is not finite after three steps")
        with subject.rule("posterior(mean, raw_scale).mean is (B, code_dim), decoder_input makes it (B, features), "
                          "and the ELBO terms are finite: z (B, features), kl (B, sum(layers)) or (B, 1), the "
                          "latent's loss None or (B,)"):
            terms = model.elbo(x, generator=torch.Generator(device=device).manual_seed(1))
            posterior = terms.posterior
            # A discrete latent's code is its indices; its posterior's mean is already the decoder's input.
            code_dim = features if cls.discrete else model.latent.code_dim
            _expect(_shape(posterior.mean) == (5, code_dim), f"the posterior's mean is {_shape(posterior.mean)}")
            _expect(_shape(model.latent.decoder_input(posterior.mean)) == (5, features),
                    f"decoder_input makes it {_shape(model.latent.decoder_input(posterior.mean))}")
            _expect(_shape(terms.z) == (5, features), f"z is {_shape(terms.z)}, not {(5, features)}")
            _expect(_shape(terms.kl) in ((5, sum(model.latent.layers)), (5, 1)), f"kl is {_shape(terms.kl)}")
            _expect(torch.isfinite(terms.kl).all() and torch.isfinite(terms.reconstruction).all(),
                    f"kl is {_numbers(terms.kl)}, the reconstruction {_numbers(terms.reconstruction)}")
            _expect(terms.latent_loss is None or (_shape(terms.latent_loss) == (5,)
                                                   and torch.isfinite(terms.latent_loss).all()),
                    f"the latent's loss is {_shape(terms.latent_loss)}")
        with subject.rule("the reconstruction term's gradient reaches the encoder's outputs through z"):
            mean, raw_scale = model.architecture.encode(x)
            z = model.latent.terms(model.latent.posterior(mean, raw_scale), model.prior,
                                   torch.Generator(device=device).manual_seed(1)).z
            reconstruction = model.likelihood.log_prob(x, model.decode_params(z))
            grad, = torch.autograd.grad(reconstruction.sum(), mean)
            _expect(torch.isfinite(grad).all() and grad.abs().sum() > 0, "the encoder's mean gets no finite, "
                                                                          "non-zero gradient from log p(x|z)")
        with subject.rule("the objective's gradient reaches the latent's own weights and is finite"):
            model.zero_grad(set_to_none=True)
            objective(model.elbo(x, generator=torch.Generator(device=device).manual_seed(1))).backward()
            for weight_name, weight in model.latent.named_parameters():
                if weight.requires_grad:
                    _expect(weight.grad is not None and torch.isfinite(weight.grad).all(),
                            f"its weight {weight_name} gets no finite gradient")
        model.eval()
        with torch.no_grad(), subject.rule("sample(n, prior, generator) is (n, code_dim), finite and decodable, "
                                           "and the same seed gives the same sample, at every layer"):
            draw = lambda m, seed: m.sample_latents(4, torch.Generator(device=device).manual_seed(seed))  # noqa: E731
            for layer in range(1, len(model.latent.layers) + 1):
                model.select_layer(layer)
                z = draw(model, 5)
                code_dim = features if cls.discrete else model.latent.code_dim
                _expect(_shape(z) == (4, code_dim) and torch.isfinite(z).all(),
                        f"sample(4) at layer {layer} is {_shape(z)}")
                _expect(_shape(model.encode(x).mean) == (5, code_dim),
                        f"the posterior's mean at layer {layer} is {_shape(model.encode(x).mean)}")
                _expect(_shape(model.decode(z)) == (4, *shape), f"the samples at layer {layer} do not decode to images")
                with torch.random.fork_rng(devices=_cuda_indices(device)):
                    torch.manual_seed(12345)
                    _expect(_same(z, draw(model, 5)), "two samples with generators seeded alike differ")
            model.select_layer()
        if cls.discrete:
            _check_discrete_latent(subject, model, x, latent_dim, device)
        with torch.no_grad(), subject.rule("it round-trips inside a model: save → load gives the same config, "
                                           "weights, encodings, ELBO and samples"):
            loaded = _save_and_load(model, device)
            _check_placement(subject, loaded, device)
            _same_model(subject, model, loaded)
            for what, run in (("encodings", lambda m, g: m.encode(x).mean),
                              ("ELBO", lambda m, g: m.elbo(x, generator=g).elbo),
                              ("samples", lambda m, g: m.sample(3, generator=g)),
                              *((("codes", lambda m, g: m.latent.codes(m.encode(x))),) if cls.discrete else ())):
                before = run(model, torch.Generator(device=device).manual_seed(4))
                after = run(loaded, torch.Generator(device=device).manual_seed(4))
                _expect(_same(before, after), f"the {what} differ after loading")


@torch.no_grad()
def _check_discrete_latent(subject: _Subject, model, x: Tensor, latent_dim: int, device: torch.device) -> None:
    latent = model.latent
    size = latent.codebook_size
    with subject.rule("codes(posterior) are int64 (B, latent_dim) in 0 … codebook_size − 1, and embed(codes) is "
                      "the posterior's mean"):
        posterior = model.encode(x)
        codes = latent.codes(posterior)
        _expect(torch.is_tensor(codes) and codes.dtype == torch.int64 and codes.shape == (len(x), latent_dim),
                f"codes are {_shape(codes)} of {getattr(codes, 'dtype', None)}")
        _expect(bool(((codes >= 0) & (codes < size)).all()), f"codes {_numbers(codes)} leave 0 … {size - 1}")
        _expect(_same(latent.embed(codes), posterior.mean), "embed(codes) is not the posterior's mean")
    with subject.rule("sample_codes(n, generator) draws int64 (n, latent_dim) codes in 0 … codebook_size − 1"):
        drawn = latent.sample_codes(200, torch.Generator(device=device).manual_seed(6))
        _expect(drawn.dtype == torch.int64 and drawn.shape == (200, latent_dim), f"they are {_shape(drawn)}")
        _expect(bool(((drawn >= 0) & (drawn < size)).all()), "some leave the codebook")
    with subject.rule("usage(codes) is the number of codes used and a perplexity between 1 and that number"):
        used, perplexity = latent.usage(drawn)
        _expect(used == len(torch.unique(drawn)), f"usage says {used} codes are used, not {len(torch.unique(drawn))}")
        _expect(1 - 1e-6 <= perplexity <= used + 1e-6, f"the perplexity {perplexity} is outside 1 … {used}")


# -- datasets -------------------------------------------------------------------------------------

def check_dataset(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None,
                  root: str | Path | None = None, splits: Sequence[str] = ("train", "test"),
                  max_items: int | None = None, train: bool = True) -> None:
    """Check that a dataset keeps the :class:`~vaetool.contracts.Dataset` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults); ``root`` is the data root passed to ``load`` (default: ``$VAETOOL_DATA``, else
    the user cache, as for ``vaetool train``). It checks that:

    - it is built as ``cls(**options)`` from keyword arguments with JSON-able defaults;
    - ``image_shape`` is ``(C, H, W)`` with C of 1 or 3; ``num_classes`` ≥ 0 with as many
      ``class_names``; ``factor_names`` are strings;
    - ``load(split, root)`` returns a :class:`~vaetool.contracts.Split` of uint8 images
      ``(N, *image_shape)`` with N > 0; int64 labels ``(N,)`` in [0, num_classes) exactly when
      num_classes > 0; float factors ``(N, len(factor_names))`` exactly when there are factor names;
      a ``file``, when named, maps to exactly those images;
    - a second instance built from the same options loads identical data (the model file records
      the options, so they must describe the data fully);
    - an unknown split is a :class:`~vaetool.errors.VaetoolError`;
    - with ``train`` (the default): one epoch of a tiny mlp via :func:`vaetool.training.train`
      finishes with finite losses, on at most ``max_items`` images per split when that is given.

    A ``VaetoolError`` from building the dataset or loading its first split (files that are not
    there, say) is raised as it is, so that a caller can skip the check.
    """
    from vaetool.datasets import data_root

    root = data_root(root)
    with _installed("dataset", name_or_cls, torch.device("cpu")) as (subject, name, cls):
        resolved = _check_options(subject, "dataset", name, cls, options)
        with subject.rule("it builds as cls(**options)", passthrough=(VaetoolError,)):
            dataset = cls(**resolved)
        _check_dataset_attributes(subject, dataset)
        loaded = {}
        for split in splits:
            # Missing files surface at the first load: the caller may skip on them.
            skippable = () if loaded else (VaetoolError,)
            with subject.rule(f"load({split!r}, root) returns a Split", passthrough=skippable):
                loaded[split] = dataset.load(split, root)
                _expect(isinstance(loaded[split], Split), f"it returned {type(loaded[split]).__name__}")
            _check_split(subject, dataset, split, loaded[split])
        with subject.rule("a new instance built from the same options loads identical data (deterministic)"):
            again = cls(**copy.deepcopy(resolved))
            for split, first in loaded.items():
                second = again.load(split, root)
                for part in ("images", "labels", "factors"):
                    a, b = getattr(first, part), getattr(second, part)
                    _expect((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b)),
                            f"the {part} of the {split!r} split differ between two loads")
        with subject.rule("an unknown split is a VaetoolError"):
            try:
                dataset.load("no-such-split", root)
            except VaetoolError:
                pass
            else:
                raise _Broken("load('no-such-split', root) returned data")
        if train:
            _check_training_run(subject, name, cls, resolved, root, max_items)


def _check_dataset_attributes(subject: _Subject, dataset: Dataset) -> None:
    with subject.rule("image_shape is (C, H, W) of positive integers, with C = 1 (grey) or 3 (RGB)"):
        shape = getattr(dataset, "image_shape", None)
        _expect(isinstance(shape, (tuple, list)) and len(shape) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape),
                f"image_shape is {shape!r}")
        _expect(shape[0] in (1, 3), f"image_shape has {shape[0]} channels")
    with subject.rule("num_classes is an integer ≥ 0 with as many class_names (none when unlabelled)"):
        n, names = dataset.num_classes, tuple(dataset.class_names)
        _expect(isinstance(n, int) and not isinstance(n, bool) and n >= 0, f"num_classes is {n!r}")
        _expect(len(names) == n and all(isinstance(s, str) for s in names),
                f"num_classes is {n} and class_names {names!r}")
    with subject.rule("factor_names is a sequence of strings (empty without ground-truth factors)"):
        factors = dataset.factor_names
        _expect(not isinstance(factors, str) and all(isinstance(s, str) for s in factors),
                f"factor_names is {factors!r}")


def _check_split(subject: _Subject, dataset: Dataset, split: str, data: Split) -> None:
    images, labels, factors = data.images, data.labels, data.factors
    n_classes, factor_names = dataset.num_classes, tuple(dataset.factor_names)
    with subject.rule(f"a split's images are uint8 (N, {', '.join(map(str, dataset.image_shape))}), N > 0"):
        _expect(torch.is_tensor(images), f"the {split!r} images are a {type(images).__name__}")
        _expect(images.dtype == torch.uint8, f"the {split!r} images are {images.dtype}, not uint8 (0 to 255)")
        _expect(images.ndim == 4 and tuple(images.shape[1:]) == tuple(dataset.image_shape),
                f"the {split!r} images are {tuple(images.shape)}; image_shape is {tuple(dataset.image_shape)}")
        _expect(len(images) > 0, f"the {split!r} split is empty")
    with subject.rule(f"a split has int64 labels (N,) in [0, num_classes) exactly when num_classes > 0 "
                      f"(here {n_classes})"):
        if n_classes == 0:
            _expect(labels is None, f"the {split!r} split has labels but num_classes is 0")
        else:
            _expect(torch.is_tensor(labels), f"the {split!r} split has no labels")
            _expect(labels.dtype == torch.int64 and labels.shape == (len(images),),
                    f"the {split!r} labels are {labels.dtype} {tuple(labels.shape)}, not int64 {(len(images),)}")
            _expect(labels.min() >= 0 and labels.max() < n_classes,
                    f"the {split!r} labels lie in [{labels.min().item()}, {labels.max().item()}]")
    with subject.rule(f"a split has float factors (N, F) exactly when there are F = len(factor_names) "
                      f"factor names (here {len(factor_names)})"):
        if not factor_names:
            _expect(factors is None, f"the {split!r} split has factors but factor_names is empty")
        else:
            expected = (len(images), len(factor_names))
            _expect(torch.is_tensor(factors), f"the {split!r} split has no factors")
            _expect(factors.is_floating_point() and factors.shape == expected,
                    f"the {split!r} factors are {factors.dtype} {tuple(factors.shape)}, not float {expected}")
    if data.file is not None:
        with subject.rule("a split's file, when named, is a uint8 .npy file of exactly its images, to stream from"):
            import numpy as np

            try:
                cached = np.load(data.file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise _Broken(f"the {split!r} split names {data.file}, which numpy cannot map ({exc})") from exc
            _expect(cached.dtype == np.uint8 and tuple(cached.shape) == tuple(images.shape),
                    f"{data.file} holds {cached.dtype} {tuple(cached.shape)}, not uint8 {tuple(images.shape)}")
            _expect(torch.equal(torch.from_numpy(np.array(cached[:64])), images[:64]),
                    f"{data.file} does not hold the {split!r} images")


def _check_training_run(subject: _Subject, name: str, cls: type, options: dict, root: Path,
                        max_items: int | None) -> None:
    from vaetool.training import TrainConfig, train

    with subject.rule("one epoch of a tiny mlp trains on it with finite losses (vaetool.training.train)"):
        source = name
        if max_items is not None:
            def first_items(self, split, root=None):
                data = cls.load(self, split, root)
                cut = slice(0, max_items)
                return Split(data.images[cut], None if data.labels is None else data.labels[cut],
                             None if data.factors is None else data.factors[cut])
            # A subclass keeps the constructor, so the same options build it.
            truncated = type(cls.__name__, (cls,), {"load": first_items, "__module__": cls.__module__})
            source = f"{name}-first-{max_items}"
            registry.register("dataset", source, truncated)
        try:
            config = TrainConfig(architecture="mlp", architecture_options={"hidden": [16]}, likelihood="bernoulli",
                                 dataset=source, dataset_options=options, latent_dim=2, epochs=1, batch_size=64)
            with tempfile.TemporaryDirectory(prefix="vaetool-conformance-") as tmp:
                result = train(config, Path(tmp) / "run", device="cpu", data_dir=root)
                _expect(result.status == "finished", f"training ended {result.status}")
                line = result.metrics[-1]
                _expect(all(math.isfinite(line[k]) for k in ("train_loss", "test_elbo")),
                        f"the epoch's metrics are {line}")
        finally:
            if max_items is not None:
                registry.unregister("dataset", source)


# -- objectives -----------------------------------------------------------------------------------

class _Dots(Dataset):
    """8×8 grey images of one bright pixel pair at a seeded place: a dataset the objective checks train on."""

    image_shape = (1, 8, 8)

    def __init__(self, n_train: int = 64, n_test: int = 16):
        self.n_train, self.n_test = n_train, n_test

    def load(self, split: str, root: Path | None = None) -> Split:
        if split not in ("train", "test"):
            raise VaetoolError(f"Unknown split {split!r}.")
        n = self.n_train if split == "train" else self.n_test
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
        where = torch.randint(0, 7, (n, 2), generator=generator)
        for i, (r, c) in enumerate(where.tolist()):
            images[i, 0, r, c:c + 2] = 255
        return Split(images)


def check_objective(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None,
                    resume: bool = True) -> None:
    """Check that an objective keeps the :class:`~vaetool.contracts.Objective` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults). It checks that:

    - it is built as ``cls(**options)`` from keyword arguments with JSON-able defaults; ``needs``
      names only what :data:`vaetool.contracts.NEEDS` lists; ``samples`` is an int ≥ 0;
      ``bound`` is one of :data:`BOUNDS`;
    - on a tiny model's terms, ``loss`` is a finite scalar whose gradient reaches every encoder and
      decoder weight, finite; ``schedule`` gives numbers;
    - two epochs of a tiny mlp train with finite losses, and the model file records the objective's
      name and options, which rebuild it;
    - with ``resume`` (the default): one epoch, then a resume to two, gives the same weights, checkpoint
      (its own trainable state and optimiser included) and metrics, bit for bit, as two epochs straight.
    """
    from vaetool.training import TrainConfig, resume as resume_run, train

    with _installed("objective", name_or_cls, torch.device("cpu")) as (subject, name, cls):
        resolved = _check_options(subject, "objective", name, cls, options)
        with subject.rule("it builds as cls(**options)"):
            objective = cls(**resolved)
        with subject.rule(f"needs names only what vaetool knows ({', '.join(NEEDS)})"):
            unknown = [need for need in cls.needs if need not in NEEDS]
            _expect(not unknown, f"needs lists {unknown}")
        with subject.rule("samples is an int, 0 or more"):
            _expect(isinstance(objective.samples, int) and objective.samples >= 0, f"samples is {objective.samples!r}")
        with subject.rule(f"bound is one of {', '.join(BOUNDS)}"):
            _expect(cls.bound in BOUNDS, f"bound is {cls.bound!r}")
        _check_objective_loss(subject, name, resolved)
        registry.register("dataset", "conformance-dots", _Dots)
        try:
            config = TrainConfig(architecture="mlp", architecture_options={"hidden": [16]}, likelihood="bernoulli",
                                 dataset="conformance-dots", latent_dim=3, epochs=2, batch_size=32, lr=3e-3,
                                 objective=name, objective_options=dict(options or {}))
            with tempfile.TemporaryDirectory(prefix="vaetool-conformance-") as tmp:
                straight = Path(tmp) / "straight"
                with subject.rule("two epochs of a tiny mlp train with finite losses (vaetool.training.train)"):
                    result = train(config, straight, device="cpu")
                    _expect(all(math.isfinite(m["train_loss"]) for m in result.metrics),
                            f"the metrics are {result.metrics}")
                with subject.rule("the model file records the objective's name and options, which rebuild it"):
                    saved = vaetool.load(straight).config
                    _expect(saved.get("objective") == name, f"the model file records objective {saved.get('objective')!r}")
                    again = TrainConfig.from_model_config(saved).build_objective()[1]
                    _expect(again == saved["objective_options"],
                            f"recorded {saved['objective_options']}, rebuilt as {again}")
                if resume:
                    with subject.rule("one epoch and a resume to two equal two epochs straight, bit for bit"):
                        run = Path(tmp) / "resumed"
                        # With the options the straight run settled (a schedule fixed to its length, say).
                        settled = dataclasses.replace(config, epochs=1, objective_options=saved["objective_options"])
                        train(settled, run, device="cpu")
                        resume_run(run, epochs=2, device="cpu")
                        _expect_same_run(straight, run)
        finally:
            registry.unregister("dataset", "conformance-dots")


def _expect_same_run(straight: Path, run: Path) -> None:
    """The same model, checkpoint and metrics (wall-clock times aside) in two run directories, bit for bit."""
    for file in ("model.safetensors", "checkpoint.safetensors"):
        a, b = _tensors(straight / file), _tensors(run / file)
        differ = sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))
        _expect(not differ, f"{file} differs in {differ[:5]}")
    _expect(_lines(straight) == _lines(run), "the metrics differ")


def _tensors(path: Path) -> dict[str, Tensor]:
    from vaetool.io import read_tensors

    return read_tensors(path)[0]


def _lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if not k.endswith("seconds")} for line in lines]


def _check_objective_loss(subject: _Subject, name: str, options: dict) -> None:
    from vaetool.contracts import TrainingContext

    with subject.rule("loss(terms, epochs_done) is a finite scalar whose gradient reaches every encoder and "
                      "decoder weight, finite; schedule(epochs_done) gives numbers"):
        torch.manual_seed(0)
        model = vaetool.create("mlp", "bernoulli", input_shape=(1, 8, 8), latent_dim=3,
                               architecture_options={"hidden": [16]})
        objective, _ = registry.build("objective", name, options)
        objective.begin(model, TrainingContext(dataset_size=96, epochs=2, steps_per_epoch=3, lr=1e-3,
                                               device=torch.device("cpu")))
        x = _images((32, 1, 8, 8), torch.Generator().manual_seed(1), torch.device("cpu"))
        terms = model(x, None, None, objective.samples)
        loss = objective.loss(terms, 0.5)
        _expect(torch.is_tensor(loss) and loss.shape == (), f"loss is {_shape(loss)}, not a scalar")
        _expect(torch.isfinite(loss), f"loss is {loss.item()}")
        loss.backward()
        for weight, p in model.architecture.named_parameters():
            _expect(p.grad is not None, f"{weight} gets no gradient")
            _expect(torch.isfinite(p.grad).all(), f"{weight} has a non-finite gradient")
        schedule = objective.schedule(0.5)
        _expect(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in schedule.values()),
                f"schedule gives {schedule}")


# -- learning-rate schedules ------------------------------------------------------------------------

def check_lr_schedule(name_or_cls: str | type, *, options: Mapping[str, Any] | None = None,
                      epochs: Sequence[int] = (1, 10, 100), steps_per_epoch: int = 4, train: bool = True) -> None:
    """Check that a learning-rate schedule keeps the :class:`~vaetool.contracts.LRSchedule` contract.

    ``name_or_cls`` is a registry name or the class itself; ``options`` are its options (left out:
    its defaults). It checks that:

    - it is built as ``cls(**options)`` from keyword arguments with JSON-able defaults; ``constant``
      is a bool;
    - over a run of each of ``epochs`` epochs, at every step (``epoch + step / steps_per_epoch``),
      ``factor`` is a positive, finite Python number (not a tensor), and 1 when ``constant``;
    - ``factor`` is a pure function of its arguments: asked again in the reverse order, and asked of
      a second schedule built from the same options, it gives the same numbers, bit for bit;
    - the options round-trip: through JSON they rebuild a schedule with the same factors, and
      resolved again they are unchanged;
    - with ``train`` (the default): two epochs of a tiny mlp train with it, the model file records its
      name and options (nothing for the default, ``constant``), which rebuild it; each epoch's ``lr``
      in metrics.jsonl and the optimiser's rate in the checkpoint are ``--lr`` times its factor at the
      epoch's last step; and a run stopped after its first epoch and resumed gives the same weights,
      checkpoint and metrics, bit for bit, as the run straight through.
    """
    with _installed("lr_schedule", name_or_cls, torch.device("cpu")) as (subject, name, cls):
        resolved = _check_options(subject, "lr_schedule", name, cls, options)
        with subject.rule("it builds as cls(**options)"):
            schedule = cls(**resolved)
        with subject.rule("constant is True or False"):
            _expect(isinstance(cls.constant, bool), f"constant is {cls.constant!r}")
        runs = [(n, [e + s / steps_per_epoch for e in range(n) for s in range(steps_per_epoch)]) for n in epochs]
        with subject.rule("factor(epochs_done, epochs) is a positive, finite Python number at every step of a run, "
                          "and 1 throughout when constant"):
            factors = {n: [schedule.factor(at, n) for at in points] for n, points in runs}
            for n, points in runs:
                for at, value in zip(points, factors[n]):
                    _expect(isinstance(value, (int, float)) and not isinstance(value, bool),
                            f"factor({at:g}, {n}) is {type(value).__name__} {value!r}, not a number "
                            "(a tensor would be read back from the device at every step)")
                    _expect(math.isfinite(value) and value > 0, f"factor({at:g}, {n}) is {value!r}")
                    _expect(not cls.constant or value == 1, f"constant, but factor({at:g}, {n}) is {value!r}")
        with subject.rule("factor is a pure function of the step and the run's length: asked again, in another "
                          "order or of another instance, it gives the same numbers (resume relies on it)"):
            for other in (schedule, cls(**resolved)):
                for n, points in runs:
                    again = [other.factor(at, n) for at in reversed(points)][::-1]
                    differ = [(at, a, b) for at, a, b in zip(points, factors[n], again) if a != b]
                    _expect(not differ, f"over {n} epochs, (epochs_done, first, again) {differ[:3]}")
        with subject.rule("its options round-trip: through JSON they rebuild the same schedule, and resolved again "
                          "they are unchanged"):
            back = json.loads(json.dumps(resolved))
            _expect(registry.resolve_options("lr_schedule", name, back) == resolved,
                    f"{resolved} resolves again as {registry.resolve_options('lr_schedule', name, back)}")
            rebuilt = cls(**back)
            for n, points in runs:
                differ = [at for at, a in zip(points, factors[n]) if rebuilt.factor(at, n) != a]
                _expect(not differ, f"rebuilt from {back}, it differs over {n} epochs at {differ[:3]}")
        if train:
            _check_schedule_training(subject, name, cls, dict(options or {}), resolved)


class _StopAfterFirstEpoch(Progress):
    """Ends training with an error once the first epoch is saved, as a crash or a kill would."""

    class Stopped(Exception):
        pass

    def epoch_end(self, metrics: dict[str, Any]) -> None:
        raise self.Stopped


def _check_schedule_training(subject: _Subject, name: str, cls: type, options: dict, resolved: dict) -> None:
    from vaetool.io import read_tensors
    from vaetool.lr_schedules import DEFAULT
    from vaetool.training import TrainConfig, resume as resume_run, train

    registry.register("dataset", "conformance-dots", _Dots)
    try:
        config = TrainConfig(architecture="mlp", architecture_options={"hidden": [16]}, likelihood="bernoulli",
                             dataset="conformance-dots", latent_dim=3, epochs=2, batch_size=32, lr=3e-3,
                             lr_schedule=name, lr_schedule_options=options)
        with tempfile.TemporaryDirectory(prefix="vaetool-conformance-") as tmp:
            straight = Path(tmp) / "straight"
            with subject.rule("two epochs of a tiny mlp train with it with finite losses (vaetool.training.train)"):
                result = train(config, straight, device="cpu")
                _expect(all(math.isfinite(m["train_loss"]) for m in result.metrics), f"the metrics are {result.metrics}")
            with subject.rule("the model file records its name and options (nothing for the default), which rebuild it"):
                training = vaetool.load(straight).config["training"]
                recorded = (training.get("lr_schedule"), training.get("lr_schedule_options"))
                _expect(recorded == ((None, None) if name == DEFAULT else (name, resolved)),
                        f"the training settings record {recorded}")
                again = TrainConfig.from_model_config(vaetool.load(straight).config).build_lr_schedule()[1]
                _expect(again == resolved, f"the model file rebuilds it with {again}, not {resolved}")
            with subject.rule("each epoch's lr in metrics.jsonl and the optimiser's rate at the end are --lr times "
                              "its factor at the epoch's last step (no lr when constant)"):
                steps = training["steps_per_epoch"]
                expected = [config.lr * cls(**resolved).factor(e + (steps - 1) / steps, 2) for e in range(2)]
                shown = [m.get("lr") for m in _lines(straight)]
                _expect(shown == ([None, None] if cls.constant else expected), f"the lines say {shown}, not {expected}")
                header = read_tensors(straight / "checkpoint.safetensors")[1]
                rates = [g["lr"] for g in header["optimizer"]["param_groups"]]
                _expect(rates == [expected[-1]] * len(rates), f"the optimiser ends at {rates}, not {expected[-1]}")
            with subject.rule("a run stopped after its first epoch and resumed equals the run straight through, "
                              "bit for bit"):
                run = Path(tmp) / "resumed"
                try:
                    train(config, run, device="cpu", progress=_StopAfterFirstEpoch())
                except _StopAfterFirstEpoch.Stopped:
                    pass
                resume_run(run, device="cpu")
                _expect_same_run(straight, run)
    finally:
        registry.unregister("dataset", "conformance-dots")


# -- every plugin -----------------------------------------------------------------------------------

_CHECKS = {"architecture": check_architecture, "likelihood": check_likelihood, "prior": check_prior,
           "latent": check_latent, "dataset": check_dataset, "objective": check_objective,
           "lr_schedule": check_lr_schedule}


def check_plugin(kind: str, name_or_cls: str | type, **kwargs: Any) -> None:
    """Run the check for a plugin of ``kind`` ("architecture", "likelihood", "prior", "latent", "dataset",
    "objective" or "lr_schedule"); ``kwargs`` go to that kind's check (:func:`check_architecture`, …,
    :func:`check_lr_schedule`)."""
    if kind not in _CHECKS:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are {', '.join(_CHECKS)}")
    _CHECKS[kind](name_or_cls, **kwargs)


def check_all_installed(kinds: Iterable[str] | None = None, *,
                        options: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                        skip: Mapping[str, Iterable[str]] | None = None,
                        check_options: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, str]]:
    """Check every installed plugin of ``kinds`` (default: every kind); returns the (kind, name) checked.

    ``options[kind][name]`` are the options to check a plugin with (default: its own defaults);
    ``skip[kind]`` names plugins to leave out (datasets whose files are not here, say);
    ``check_options[kind]`` are more keyword arguments for that kind's check. Every plugin is
    checked, and then one ``AssertionError`` lists every one that failed, or failed to import.
    """
    options, skip, check_options = options or {}, skip or {}, check_options or {}
    checked, failures = [], []
    for kind in kinds or registry.GROUPS:
        for name in registry.names(kind):
            if name in set(skip.get(kind, ())):
                continue
            checked.append((kind, name))
            try:
                check_plugin(kind, name, options=options.get(kind, {}).get(name), **check_options.get(kind, {}))
            except (AssertionError, VaetoolError) as exc:
                failures.append(f"- {kind} {name!r}: {exc}")
    if failures:
        raise AssertionError(f"{len(failures)} of the {len(checked)} plugins checked break their contract:\n"
                             + "\n".join(failures))
    return checked


# -- pytest mixins --------------------------------------------------------------------------------

class _Conformance:
    plugin: str | type | None = None  # the registry name or the class
    options: dict[str, Any] | None = None  # the plugin's options (None: its defaults)
    check_options: dict[str, Any] = {}  # more keyword arguments for the check

    def test_keeps_the_plugin_contract(self) -> None:
        if self.plugin is None:
            raise TypeError(f"{type(self).__name__} must set `plugin` to a registry name or a class")
        check_plugin(self._kind, self.plugin, options=self.options, **self.check_options)


class ArchitectureConformance(_Conformance):
    """Mixin for a pytest class (``class TestMyArch(ArchitectureConformance): plugin = "my-arch"``);
    runs :func:`check_architecture` with ``options`` and ``check_options``."""

    _kind = "architecture"


class LikelihoodConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_likelihood` on ``plugin``."""

    _kind = "likelihood"


class PriorConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_prior` on ``plugin``."""

    _kind = "prior"


class LatentConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_latent` on ``plugin``."""

    _kind = "latent"


class DatasetConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_dataset` on ``plugin``."""

    _kind = "dataset"


class ObjectiveConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_objective` on ``plugin``."""

    _kind = "objective"


class LRScheduleConformance(_Conformance):
    """Mixin for a pytest class; runs :func:`check_lr_schedule` on ``plugin``."""

    _kind = "lr_schedule"
