"""Latent codes on disk: what ``encode`` writes and ``decode`` reads, by file extension.

| extension | layout |
| --- | --- |
| ``.npy`` | a structured array with fields ``name``, ``label``, ``mean`` (L,), ``log_var`` (L,): no pickle |
| ``.csv`` | one row per image: name, label, mean_0 … mean_{L-1}, log_var_0 … log_var_{L-1} |
| ``.json`` | ``{"latent_dim": L, "items": [{"name", "label", "mean": [...], "log_var": [...]}]}`` |
| ``.safetensors`` | tensors ``mean``, ``log_var``, ``label``; names in the header |

A model with a discrete latent (``--latent vq``) writes code indices instead: the field, columns,
key or tensor ``code`` (int64, ``(L,)`` per image, ``code_0`` … ``code_{L-1}`` in CSV) in place of
``mean`` and ``log_var``.

A label of −1 means "none". ``read`` also accepts latents written by hand or by other tools: a plain
``(N, L)`` ``.npy`` array, a ``.csv`` of numbers alone (no header), a ``.json`` list of rows of numbers.
Integers are codes, any other number makes the rows posterior means; a model of the other kind takes
them as its own (:attr:`Latents.plain`).
"""
from __future__ import annotations

import csv
import io as _io
import json
import tokenize
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaetool import validate
from vaetool.errors import VaetoolError, no_file
from vaetool.io import atomic_write, atomic_write_text, read_tensors, save_tensors

SUFFIXES = (".npy", ".csv", ".json", ".safetensors")
MAX_JSON_CHARS = 1 << 28  # a JSON latent file of 256 MB holds some 700,000 16-D latents


@dataclass
class Latents:
    """Posterior means (and log-variances), or for a discrete latent the codes, with each row's label
    (−1: none) and name."""

    mean: np.ndarray | None  # (N, L) float32; None when the rows are codes
    log_var: np.ndarray | None = None  # (N, L)
    labels: np.ndarray | None = None  # (N,) int64
    names: list[str] | None = None
    codes: np.ndarray | None = None  # (N, L) int64: a discrete latent's code indices
    plain: bool = False  # a bare matrix of numbers: whether its rows are codes or means was guessed

    @classmethod
    def of_codes(cls, codes: np.ndarray, labels: np.ndarray | None = None, names: list[str] | None = None,
                 plain: bool = False) -> Latents:
        return cls(None, None, labels, names, codes=np.ascontiguousarray(codes), plain=plain)

    @property
    def discrete(self) -> bool:
        return self.codes is not None

    @property
    def rows(self) -> np.ndarray:
        """What each image's latent is: its codes, or its posterior mean."""
        return self.codes if self.discrete else self.mean

    def __post_init__(self):
        n = len(self.rows)
        if self.labels is None:
            self.labels = np.full(n, -1, dtype=np.int64)
        if self.names is None:
            self.names = [str(i) for i in range(n)]
        if self.log_var is None and not self.discrete:
            self.log_var = np.full_like(self.mean, np.nan)


def check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise VaetoolError(f"Latents are written as {', '.join(SUFFIXES)}; {path.name} has none of these extensions.")
    return suffix


def write(path: str | Path, latents: Latents) -> None:
    """Write latents in the format the extension names, atomically."""
    path = Path(path)
    suffix = check_suffix(path)
    if latents.discrete:
        return _write_codes(path, suffix, latents)
    mean, log_var = latents.mean.astype(np.float32), latents.log_var.astype(np.float32)
    n, dim = mean.shape
    if suffix == ".npy":
        width = max([1, *map(len, latents.names)])
        table = np.zeros(n, dtype=[("name", f"<U{width}"), ("label", "<i8"), ("mean", "<f4", (dim,)),
                                   ("log_var", "<f4", (dim,))])
        table["name"], table["label"], table["mean"], table["log_var"] = latents.names, latents.labels, mean, log_var
        atomic_write(path, lambda tmp: tmp.write_bytes(_npy_bytes(table)))
    elif suffix == ".csv":
        out = _io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["name", "label", *[f"mean_{i}" for i in range(dim)], *[f"log_var_{i}" for i in range(dim)]])
        for i in range(n):
            writer.writerow([latents.names[i], int(latents.labels[i]), *map(_num, mean[i]), *map(_num, log_var[i])])
        atomic_write_text(path, out.getvalue())
    elif suffix == ".json":
        items = [{"name": latents.names[i], "label": int(latents.labels[i]), "mean": mean[i].tolist(),
                  "log_var": [None if np.isnan(v) else v for v in log_var[i].tolist()]} for i in range(n)]
        atomic_write_text(path, json.dumps({"latent_dim": dim, "items": items}, indent=1))
    else:
        import torch

        save_tensors(path, {"mean": torch.from_numpy(mean), "log_var": torch.from_numpy(log_var),
                            "label": torch.from_numpy(latents.labels.astype(np.int64))}, {"names": latents.names})


def _write_codes(path: Path, suffix: str, latents: Latents) -> None:
    codes = latents.codes.astype(np.int64)
    n, dim = codes.shape
    if suffix == ".npy":
        width = max([1, *map(len, latents.names)])
        table = np.zeros(n, dtype=[("name", f"<U{width}"), ("label", "<i8"), ("code", "<i8", (dim,))])
        table["name"], table["label"], table["code"] = latents.names, latents.labels, codes
        atomic_write(path, lambda tmp: tmp.write_bytes(_npy_bytes(table)))
    elif suffix == ".csv":
        out = _io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["name", "label", *[f"code_{i}" for i in range(dim)]])
        for i in range(n):
            writer.writerow([latents.names[i], int(latents.labels[i]), *map(int, codes[i])])
        atomic_write_text(path, out.getvalue())
    elif suffix == ".json":
        items = [{"name": latents.names[i], "label": int(latents.labels[i]), "code": codes[i].tolist()} for i in range(n)]
        atomic_write_text(path, json.dumps({"latent_dim": dim, "items": items}, indent=1))
    else:
        import torch

        save_tensors(path, {"code": torch.from_numpy(codes), "label": torch.from_numpy(latents.labels.astype(np.int64))},
                     {"names": latents.names})


def _num(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = _io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read(path: str | Path) -> Latents:
    """Read latents written by :func:`write` (or a plain ``(N, L)`` array in ``.npy``).

    The file is untrusted input: JSON is parsed under a size and nesting limit, and whatever the
    format, the result must be an ``(N, L)`` array of numbers with one label and name per row.
    """
    path = Path(path)
    suffix = check_suffix(path)
    if not path.is_file():
        raise no_file(path, "latent file")
    try:
        # A number past float32's range becomes inf here, quietly: the command refuses it in a sentence.
        with np.errstate(over="ignore"):
            return _checked(_read(path, suffix), path)
    except VaetoolError:
        raise
    except KeyError as exc:
        raise VaetoolError(f"{path} is not a latent file that vaetool can read: it lacks {exc.args[0]!r}, which "
                           "`vaetool encode` writes.") from exc
    except (ValueError, IndexError, TypeError, AttributeError, OSError, EOFError, OverflowError,
            csv.Error, SyntaxError, tokenize.TokenError) as exc:  # (the last two: numpy parsing a .npy header)
        if "allow_pickle" in str(exc):  # numpy's advice to load it unsafely is not ours to give
            raise VaetoolError(f"{path} is not an array of numbers: numpy would read it as pickled Python objects, "
                               "which vaetool never loads.") from exc
        text = " ".join(str(exc).split())[:200]
        raise VaetoolError(f"{path} is not a latent file that vaetool can read ({type(exc).__name__}: {text}).") from exc


def _read(path: Path, suffix: str) -> Latents:
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.dtype.names and "code" in array.dtype.names:
            return Latents.of_codes(array["code"], array["label"], [str(s) for s in array["name"]])
        if array.dtype.names:
            return Latents(array["mean"], array["log_var"], array["label"], [str(s) for s in array["name"]])
        if array.ndim > 2:
            raise VaetoolError(f"{path} holds an array of shape {array.shape}; latents are one row per image, (N, L).")
        if np.issubdtype(array.dtype, np.integer):
            return Latents.of_codes(np.atleast_2d(array), plain=True)
        if array.dtype.kind not in "bf":  # complex numbers would lose their imaginary part without a word
            raise VaetoolError(f"{path} holds {array.dtype} values; latents are real numbers.")
        return Latents(np.atleast_2d(array).astype(np.float32), plain=True)
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise VaetoolError(f"{path} is empty.")
        if all(_number(cell) is not None for cell in rows[0]):  # no header: a matrix of numbers alone
            return _matrix([[_number(cell) for cell in row] for row in rows if row], path)
        header, rows = rows[0], rows[1:]
        code_columns = [i for i, h in enumerate(header) if h.startswith("code_")]
        if code_columns:
            return Latents.of_codes(np.array([[int(r[i]) for i in code_columns] for r in rows], dtype=np.int64),
                                    np.array([int(r[header.index("label")]) for r in rows], dtype=np.int64),
                                    [r[0] for r in rows])
        means = [i for i, h in enumerate(header) if h.startswith("mean_")]
        log_vars = [i for i, h in enumerate(header) if h.startswith("log_var_")]
        if not means:
            raise VaetoolError(f"{path} has a header without mean_0, mean_1, … or code_0, … columns; a latent CSV "
                               "is what `vaetool encode` writes, or rows of numbers alone.")
        value = lambda s: float(s) if s != "" else np.nan  # noqa: E731
        return Latents(np.array([[value(r[i]) for i in means] for r in rows], dtype=np.float32),
                       np.array([[value(r[i]) for i in log_vars] for r in rows], dtype=np.float32),
                       np.array([int(r[header.index("label")]) for r in rows], dtype=np.int64), [r[0] for r in rows])
    if suffix == ".json":
        data = validate.loads_json(path.read_bytes(), str(path), max_chars=MAX_JSON_CHARS)
        if isinstance(data, list):  # rows of numbers alone
            return _matrix(data if all(isinstance(row, list) for row in data) else [data], path)
        if not isinstance(data, dict):
            kind = {str: "a string", bool: "true or false", type(None): "null"}.get(type(data), "a number")
            raise VaetoolError(f"{path} holds {kind}; a latent file is a JSON object with "
                               "\"items\", as `vaetool encode` writes, or a list of rows of numbers.")
        items = data["items"]
        if not isinstance(items, list) or not all(isinstance(it, dict) for it in items):
            raise VaetoolError(f"{path}: its \"items\" must be a list of objects, one per image.")
        if items and isinstance(items[0], dict) and "code" in items[0]:
            return Latents.of_codes(np.array([it["code"] for it in items]),
                                    np.array([it.get("label", -1) for it in items]),
                                    [str(it.get("name", i)) for i, it in enumerate(items)])
        return Latents(np.array([it["mean"] for it in items], dtype=np.float32),
                       np.array([[np.nan if v is None else v for v in it["log_var"]] for it in items], dtype=np.float32),
                       np.array([it.get("label", -1) for it in items]),
                       [str(it.get("name", i)) for i, it in enumerate(items)])
    tensors, header = read_tensors(path)
    if "code" in tensors:
        return Latents.of_codes(tensors["code"].numpy(), tensors["label"].numpy(), header["names"])
    return Latents(tensors["mean"].numpy(), tensors["log_var"].numpy(), tensors["label"].numpy(), header["names"])


def _number(text: str) -> int | float | None:
    """A CSV cell as the number it spells (an int if it is one), or None."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def _matrix(rows: list, path: Path) -> Latents:
    """Rows of numbers, one per image: codes if every one is a whole number written as such, else means."""
    if not rows or any(not isinstance(row, list) or not row for row in rows):
        raise VaetoolError(f"{path} holds no rows of numbers; latents are one row per image, (N, L).")
    if len({len(row) for row in rows}) > 1:
        raise VaetoolError(f"{path} holds rows of {min(map(len, rows))} to {max(map(len, rows))} numbers; every row "
                           "(one per image) must have the same length.")
    values = [v for row in rows for v in row]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise VaetoolError(f"{path} holds rows with something other than numbers in them.")
    if all(isinstance(v, int) for v in values):
        return Latents.of_codes(np.array(rows, dtype=np.int64), plain=True)
    return Latents(np.array(rows, dtype=np.float32), plain=True)


def as_kind(latents: Latents, discrete: bool, path: Path) -> Latents:
    """Plain rows of numbers as codes or as means, whichever the model takes; others unchanged."""
    if not latents.plain or latents.discrete == discrete:
        return latents
    if not discrete:
        return Latents(latents.codes.astype(np.float32), labels=latents.labels, names=latents.names, plain=True)
    mean = latents.mean
    if not (np.isfinite(mean).all() and (mean == np.round(mean)).all()):
        raise VaetoolError(f"{path} holds numbers that are not whole, but this model's latent takes code indices.")
    return Latents.of_codes(mean.astype(np.int64), latents.labels, latents.names, plain=True)


def _checked(latents: Latents, path: Path) -> Latents:
    """Latents whose parts agree: ``(N, L)`` numbers, log-variances of the same shape, N labels and N names."""
    if latents.discrete:
        return _checked_codes(latents, path)
    mean, log_var, labels = (np.asarray(a) for a in (latents.mean, latents.log_var, latents.labels))
    for name, array in (("means", mean), ("log-variances", log_var), ("labels", labels)):
        if array.dtype.kind not in "biuf":
            raise VaetoolError(f"The {name} in {path} are not numbers ({array.dtype}).")
    if mean.ndim != 2 or mean.shape[0] == 0 or mean.shape[1] == 0:
        raise VaetoolError(f"{path} holds latents of shape {mean.shape}; they must be one row per image, (N, L).")
    if log_var.shape != mean.shape:
        raise VaetoolError(f"{path} holds means of shape {mean.shape} but log-variances of shape {log_var.shape}.")
    if labels.shape != (len(mean),) or not isinstance(latents.names, list) or len(latents.names) != len(mean):
        raise VaetoolError(f"{path} holds {len(mean)} latents but not one label and one name for each.")
    if labels.dtype.kind == "f" and not (np.isfinite(labels) & (labels == np.round(labels))).all():
        raise VaetoolError(f"The labels in {path} must be whole numbers.")
    return Latents(mean.astype(np.float32), log_var.astype(np.float32), labels.astype(np.int64),
                   [str(n) for n in latents.names], plain=latents.plain)


def _checked_codes(latents: Latents, path: Path) -> Latents:
    """Codes whose parts agree: ``(N, L)`` whole numbers, N labels and N names."""
    codes, labels = np.asarray(latents.codes), np.asarray(latents.labels)
    if codes.dtype.kind not in "iu":
        raise VaetoolError(f"The codes in {path} are not whole numbers ({codes.dtype}).")
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise VaetoolError(f"{path} holds codes of shape {codes.shape}; they must be one row per image, (N, L).")
    if labels.dtype.kind not in "biu" or labels.shape != (len(codes),) or not isinstance(latents.names, list) \
            or len(latents.names) != len(codes):
        raise VaetoolError(f"{path} holds {len(codes)} codes but not one whole-number label and one name for each.")
    return Latents.of_codes(codes.astype(np.int64), labels.astype(np.int64), [str(n) for n in latents.names],
                            plain=latents.plain)
