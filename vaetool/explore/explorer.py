"""What ``vaetool explore`` shows, computed from a loaded model, with no HTTP in sight.

:class:`Explorer` answers the page's questions — decode this z, where does this image land, the
path between two points as a GIF, the test codes in 2-D, the model's card — and checks every value
it is given, so a bad request is a :class:`~vaetool.errors.VaetoolError` (one sentence), never a
crash. The web layer (:mod:`vaetool.explore.app`) only parses requests and renders answers.
"""
from __future__ import annotations

import io
import json
import math
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from vaetool import images, latents, metrics, plots, registry
from vaetool.errors import VaetoolError
from vaetool.runs import METRICS_FILE

Z_LIMIT = 100.0  # no latent coordinate the page sends is larger; beyond it the decoder is meaningless anyway
MAX_PIXELS = 4096 * 4096  # an uploaded image larger than this is refused before it is decoded
MAP_POINTS = 2000  # test images encoded for the latent map and the class means
TSNE_POINTS = 1000  # t-SNE runs on this many of them: a few seconds on one CPU core
MAX_STEPS = 64  # images per interpolation segment
PROJECTIONS = ("pca", "tsne")
INVERT = {"auto": None, "yes": True, "no": False}
CONTINUOUS_LATENTS = (None, "gaussian")  # the latent kinds sliders make sense for


class Explorer:
    """A model and the test codes of its dataset, ready for the page.

    ``model_file`` is where the model was read from (its run's ``metrics.jsonl`` gives the test
    ELBO); ``data_dir`` is the data root for the test images (default: ``$VAETOOL_DATA``, else the
    user cache). Test images are read and encoded once, on the first request that needs them.
    """

    def __init__(self, model, model_file: str | Path, data_dir: str | Path | None = None):
        self.model = model.eval()
        self.file = Path(model_file)
        self.data_dir = data_dir
        # One request at a time reaches the model: torch already spreads each call over the cores.
        self._lock = threading.Lock()
        self._projections: dict[str, dict[str, Any]] = {}

    # -- what the page needs to draw itself -------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The card, the sliders (most informative first), the classes and what the page can offer."""
        model, config = self.model, self.model.config
        discrete = self.discrete_reason()
        codes = self._codes if discrete is None else None
        kl, measure = self._information()
        factors = self._factors if discrete is None else None
        order = sorted(range(model.latent_dim), key=lambda d: -kl[d]) if kl is not None else list(range(model.latent_dim))
        extent = codes["means"].abs().amax(0).tolist() if codes and codes["means"] is not None else None
        dims = [{"index": d,
                 "information": None if kl is None else round(float(kl[d]), 4),
                 "factor": factors[d] if factors else None,
                 # ±3 prior standard deviations, widened to hold every test code (an autoencoder's
                 # codes are not scaled to the prior)
                 "range": round(max(3.0, 1.1 * extent[d]) if extent else 3.0, 2)} for d in order]
        class_names = list(config.get("class_names") or []) or [str(k) for k in range(model.num_classes)]
        return {
            "card": self.card(),
            "latent_dim": model.latent_dim,
            "image_shape": list(model.input_shape),
            "dims": dims,
            "information": measure,
            "conditional": bool(model.conditional),
            "classes": class_names if model.num_classes else [],
            "class_means": sorted(codes["class_means"]) if codes else [],
            "map": codes["reason"] if codes else None,
            "discrete": discrete,
            "methods": list(latents.METHODS),
            "max_steps": MAX_STEPS,
            "z_limit": Z_LIMIT,
        }

    def card(self) -> list[list[str]]:
        """The model's card as (what, value) rows: architecture, likelihood, objective, data, results."""
        config = self.model.config
        training = config.get("training", {})
        counts = metrics.parameter_counts(self.model)
        rows = [["model", str(self.file)],
                ["architecture", _named(config["architecture"], config.get("architecture_options"))],
                ["likelihood", _named(config["likelihood"], config.get("likelihood_options"))],
                ["prior", _named(config.get("prior", "standard-normal"), config.get("prior_options"))],
                ["latent", f"{self.model.latent_dim}-D" + (f", {_named(config['latent'], config.get('latent_options'))}"
                                                           if config.get("latent") not in CONTINUOUS_LATENTS else "")],
                ["objective", _objective(config)],
                ["dataset", _named(config.get("dataset", "not recorded"), config.get("dataset_options"))
                 + (f", {self.model.num_classes} classes" if self.model.num_classes else "")],
                ["parameters", f"{counts['total']:,} (encoder {counts['encoder']:,}, decoder {counts['decoder']:,})"]]
        if training:
            rows.append(["training", ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                                               for k, v in training.items() if k in ("epochs", "batch_size", "lr", "lr_schedule", "seed"))])
        last = _last_metrics(self.file.parent / METRICS_FILE)
        if last and "test_elbo" in last:
            rows.append(["test ELBO", f"{last['test_elbo']:.2f} nats (log p(x|z) {last.get('test_rec', math.nan):.2f}, "
                                      f"KL {last.get('test_kl', math.nan):.2f}), after epoch {last.get('epoch', '?')}"])
        else:
            rows.append(["test ELBO", f"not recorded (no {METRICS_FILE} beside the model)"])
        return rows

    def discrete_reason(self) -> str | None:
        """None for a continuous latent; for a discrete one, the sentence the page shows instead of sliders."""
        kind = self.model.config.get("latent")
        discrete = getattr(self.model, "discrete", None)  # what the latent plugin says, where it says it
        if not (discrete if discrete is not None else kind not in CONTINUOUS_LATENTS):
            return None
        return (f"This model's latent is {kind}: discrete codes, not continuous dimensions, so there is nothing to "
                "slide and no straight path between codes; explore shows its card only. vaetool encode, decode "
                "and sample work with its codes.")

    # -- the page's requests ----------------------------------------------------------------------

    def decode_png(self, z, label=None) -> bytes:
        """The decoded image (the likelihood's mean) of one latent, as PNG bytes at the model's size."""
        point = self.latent(z)
        y = self.label(label, 1)
        with self._lock, torch.no_grad():
            picture = self.model.decode(point, y)
        return images.png_bytes(images.grid(picture, nrow=1, zoom=1, pad=0))

    def encode_image(self, data: bytes, label=None, invert: str = "auto") -> dict[str, Any]:
        """The posterior mean of an uploaded PNG/JPEG (any size and colour, converted as
        ``vaetool encode`` does), and the image as the model saw it (PNG bytes)."""
        discrete = self.discrete_reason()
        if discrete is not None:  # its latent is codes, which the page does not show
            raise VaetoolError(discrete)
        if not data:
            raise VaetoolError("No image was sent.")
        if invert not in INVERT:
            raise VaetoolError(f"invert must be one of {', '.join(INVERT)}, not {shown(invert)}.")
        picture = images.open_image(io.BytesIO(data), name="The upload", max_pixels=MAX_PIXELS)
        x = images.to_tensor(picture, self.model.input_shape)[None].float() / 255
        x = images.match_background(x, INVERT[invert], self.model.config.get("background"))
        y = self.label(label, 1)
        with self._lock, torch.no_grad():
            z = self.model.encode(x.to(self.model.device), y).mean[0]
        if not bool(torch.isfinite(z).all()):
            raise VaetoolError("The model encodes this image to values that are not finite numbers.")
        return {"z": [float(v) for v in z.float().cpu()], "input": images.png_bytes(images.grid(x, nrow=1, zoom=1, pad=0))}

    def interpolation_gif(self, start, end, steps: int = 16, method: str = "slerp", label=None,
                          fps: float = 12.0, bounce: bool = True) -> bytes:
        """The path between two endpoints, decoded, as an animated GIF. An endpoint is
        ``{"z": [...]}`` or ``{"label": k}`` (the mean code of that class's test images)."""
        if not 2 <= steps <= MAX_STEPS:
            raise VaetoolError(f"steps must lie in 2 to {MAX_STEPS}, not {steps}.")
        if not 1 <= fps <= 50:
            raise VaetoolError(f"fps must lie in 1 to 50, not {fps}.")
        if method not in latents.METHODS:
            raise VaetoolError(f"The interpolation method must be one of {', '.join(latents.METHODS)}, "
                               f"not {shown(method)}.")
        points = torch.cat([self._endpoint(start, "from"), self._endpoint(end, "to")])
        route = latents.path(points, steps, method)
        y = self.label(label, len(route))
        with self._lock, torch.no_grad():
            frames = self.model.decode(route, y)
        if bounce:
            frames = torch.cat([frames, frames.flip(0)[1:-1]])
        return images.gif_bytes([images.grid(f[None], nrow=1, pad=0) for f in frames], fps)

    def latent_map(self, method: str = "pca") -> dict[str, Any]:
        """Test codes in 2-D (PCA of all of them, or t-SNE of the first ``TSNE_POINTS``), with their
        labels and the codes themselves, so that a click can decode the point."""
        if method not in PROJECTIONS:
            raise VaetoolError(f"The map's projection must be one of {', '.join(PROJECTIONS)}, not {shown(method)}.")
        codes = self._codes
        if codes["means"] is None:
            raise VaetoolError(codes["reason"])
        if method not in self._projections:
            n = len(codes["means"]) if method == "pca" else min(TSNE_POINTS, len(codes["means"]))
            means = codes["means"][:n].numpy()
            points, used, axes = plots.projection(means, method)
            labels = codes["labels"][:n].tolist() if codes["labels"] is not None else None
            self._projections[method] = {"method": used, "axes": list(axes), "points": _rounded(points),
                                         "codes": _rounded(means), "labels": labels}
        return self._projections[method]

    # -- checking what requests give --------------------------------------------------------------

    def latent(self, z) -> torch.Tensor:
        """A latent from a request: ``latent_dim`` finite numbers of at most ``Z_LIMIT`` in size, as ``(1, L)``."""
        discrete = self.discrete_reason()
        if discrete is not None:  # its decoder takes codes, which the page does not make
            raise VaetoolError(discrete)
        if not isinstance(z, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in z):
            raise VaetoolError("z must be a list of numbers.")
        if len(z) != self.model.latent_dim:
            raise VaetoolError(f"z must have {self.model.latent_dim} numbers, one per latent dimension, not {len(z)}.")
        if not all(abs(v) <= Z_LIMIT for v in z):  # false for NaN and ±inf; an integer of any size compares exactly
            raise VaetoolError(f"Every number in z must be finite and at most {Z_LIMIT:g} in size.")
        return torch.tensor([z], dtype=torch.float32, device=self.model.device)

    def label(self, label, n: int) -> torch.Tensor | None:
        """The class for a conditional model (required there, refused elsewhere), ``n`` copies."""
        if not self.model.conditional:
            if label is not None:
                raise VaetoolError("This model is not conditional; it takes no class.")
            return None
        classes = self.model.num_classes
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < classes:
            raise VaetoolError(f"This model is conditional: give a class from 0 to {classes - 1}"
                               + (f", not {shown(label)}." if label is not None else "."))
        return torch.full((n,), label, dtype=torch.long, device=self.model.device)

    def _endpoint(self, endpoint, which: str) -> torch.Tensor:
        if not isinstance(endpoint, dict) or len(endpoint) != 1 or not endpoint.keys() <= {"z", "label"}:
            raise VaetoolError(f'The interpolation\'s "{which}" must be {{"z": [numbers]}} or {{"label": class}}.')
        if "z" in endpoint:
            return self.latent(endpoint["z"])
        means, label = self._codes["class_means"], endpoint["label"]
        if not isinstance(label, int) or isinstance(label, bool):
            raise VaetoolError(f'The interpolation\'s "{which}" label must be a class, an integer, not {shown(label)}.')
        if not means:
            reason = self._codes["reason"] or "The model's test images have no labels."
            raise VaetoolError(f"There are no class means to start from here: {reason[0].lower()}{reason[1:].rstrip('.')}.")
        if label not in means:
            raise VaetoolError(f"There is no class {label} among the test codes; "
                               f"classes: {', '.join(map(str, sorted(means)))}.")
        return means[label][None].to(self.model.device, torch.float32)

    # -- the model's test codes, computed once ----------------------------------------------------

    @cached_property
    def _codes(self) -> dict[str, Any]:
        """Posterior means of the first ``MAP_POINTS`` test images, their labels and the class means;
        ``means`` is None, with the ``reason``, when the model's dataset cannot be read here."""
        from vaetool.datasets import data_root

        config = self.model.config
        none = {"means": None, "labels": None, "class_means": {}, "images": None}
        if "dataset" not in config:
            return {**none, "reason": "The model file does not say which dataset it was trained on, so there are "
                                      "no test codes to map."}
        try:
            dataset, _ = registry.build("dataset", config["dataset"], config.get("dataset_options", {}))
            split = dataset.load("test", data_root(self.data_dir))
        except VaetoolError as exc:
            return {**none, "reason": f"The test images of {config['dataset']} cannot be read here ({exc})"}
        if tuple(split.images.shape[1:]) != self.model.input_shape:
            return {**none, "reason": f"The test images of {config['dataset']} are {tuple(split.images.shape[1:])}, "
                                      f"not the model's {self.model.input_shape}."}
        n = min(MAP_POINTS, len(split))
        x = split.images[:n]
        labels = split.labels[:n] if split.labels is not None else None
        with self._lock:
            means, _ = metrics.posterior_moments(self.model, x, labels)
        if not bool(torch.isfinite(means).all()):
            return {**none, "reason": "The model encodes its test images to values that are not finite numbers, "
                                      "so there is no map of them."}
        class_means = {int(k): means[labels == k].mean(0) for k in labels.unique().tolist()} if labels is not None else {}
        return {"means": means.float(), "labels": labels, "class_means": class_means, "images": x,
                "reason": None}

    def _information(self) -> tuple[list[float] | None, str | None]:
        """Each dimension's average KL on the test data (recorded at training), or computed from the
        test codes; for an autoencoder, the variance of its codes."""
        kl = self.model.recorded_kl_per_dim()
        if kl is not None:
            return kl, "KL"
        if self.discrete_reason() is not None or self._codes["means"] is None:
            return None, None
        codes = self._codes
        with self._lock:
            values = latents.kl_per_dimension(self.model, codes["images"], codes["labels"]).tolist()
        return values, ("variance" if self.model.autoencoder or not self.model.prior.analytic_kl else "KL")

    @cached_property
    def _factors(self) -> list[str] | None:
        from vaetool import disentanglement

        with self._lock:
            return disentanglement.captured_factors(self.model, self.data_dir)


def shown(value) -> str:
    """A value a client sent, as JSON, cut short when long (a request can hold a 100,000-character string)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text):,} characters)"


def _named(name: str, options: dict | None) -> str:
    shown = ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in (options or {}).items()
                      if v is not None)  # an option left unset says nothing
    return f"{name} ({shown})" if shown else name


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _objective(config: dict[str, Any]) -> str:
    """What the model was trained to maximise, in words, from what its config records."""
    if config.get("autoencoder"):
        return "autoencoder: log p(x|z) at the encoder's code, no KL"
    if "objective" in config:  # a recorded objective plugin speaks for itself
        return _named(str(config["objective"]), config.get("objective_options"))
    t = config.get("training", {})
    if t.get("tc_weight") is not None:
        text = f"β-TCVAE, total-correlation weight {t['tc_weight']:g}"
    elif t.get("capacity") is not None:
        text = f"ELBO with capacity {t['capacity']:g} nats, γ = {t.get('beta', 1):g}"
    else:
        text = f"ELBO, β = {t.get('beta', 1):g}" if t else "not recorded"
    extras = [f"warm-up {t['warmup']:g} epochs" if t.get("warmup") else "",
              f"free bits {t['free_bits']:g}" if t.get("free_bits") else ""]
    return ", ".join([text, *filter(None, extras)])


def _last_metrics(path: Path) -> dict[str, Any] | None:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def _rounded(array) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in array]
