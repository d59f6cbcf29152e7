"""Picking dataset images by label, by index or at random: what ``show``, ``interpolate``,
``traverse``, ``encode`` and ``compare`` use to take their inputs from a dataset.

A selection is made on one split. Labels may be given as class numbers or class names
(``3``, ``heart``); indices are positions in the split. A label the dataset does not have, or an
index out of range, is one sentence that says what exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaetool.errors import VaetoolError

SPLITS = ("train", "test")


@dataclass
class Picked:
    """Images taken from one split, with where they came from.

    ``images`` is uint8 ``(N, C, H, W)``; ``labels`` int64 ``(N,)`` or None for an unlabelled
    dataset; ``factors`` float ``(N, F)`` when the dataset has ground truth; ``indices`` their
    positions in the split; ``names`` such as ``mnist/test/7``.
    """

    images: Any
    labels: Any
    factors: Any
    indices: list[int]
    names: list[str]
    dataset: Any

    def __len__(self) -> int:
        return len(self.indices)

    def floats(self):
        """The images as floats in [0, 1], as models take them."""
        return self.images.float() / 255

    def captions(self, factors: bool = False) -> list[str]:
        """A caption per image: its index, class name and (``factors=True``) factor values."""
        class_names = list(getattr(self.dataset, "class_names", ()) or ())
        factor_names = list(getattr(self.dataset, "factor_names", ()) or ())
        out = []
        for i, index in enumerate(self.indices):
            parts = [f"#{index}"]
            if self.labels is not None:
                label = int(self.labels[i])
                parts.append(class_names[label] if 0 <= label < len(class_names) else str(label))
            if factors and self.factors is not None:
                values = self.factors[i].tolist()
                names = factor_names if len(factor_names) == len(values) else [f"f{k}" for k in range(len(values))]
                parts += [f"{name} {value:.3g}" for name, value in zip(names, values)]
            out.append("\n".join([": ".join(parts[:2]), *parts[2:]]))
        return out


def resolve_dataset(value: str) -> tuple[str, dict]:
    """A registered dataset name, or a folder of images (the ``folder`` dataset) with its path option."""
    from vaetool import registry

    if value in registry.names("dataset"):
        return value, {}
    path = Path(value).expanduser()
    if path.is_dir():
        return "folder", {"path": str(path.resolve())}
    if "/" in value or "\\" in value or value.startswith("."):
        raise VaetoolError(f"There is no folder {value}.")
    raise VaetoolError(f"No dataset named {value!r} is installed and there is no folder by that name; "
                       f"datasets: {', '.join(registry.names('dataset'))}.")


def open_split(data: str, split: str = "test", *, data_dir=None, options: dict | None = None, model=None):
    """``(dataset, Split, name)`` for ``--data`` and ``--split``; ``name`` is how messages call it.

    With a ``model``, its own dataset comes with the options it was trained on (size, subset, …),
    and a dataset whose images do not match the model's input is refused.
    """
    from vaetool import registry
    from vaetool.datasets import data_root

    if split not in SPLITS:
        raise VaetoolError(f"--split must be train or test, not {split!r}.")
    name, found = resolve_dataset(data)
    recorded = {}
    if model is not None and name == model.config.get("dataset"):
        recorded = dict(model.config.get("dataset_options", {}))
    dataset, _ = registry.build("dataset", name, {**recorded, **found, **(options or {})})
    shown = Path(data).name if name == "folder" else name
    if model is not None and tuple(dataset.image_shape) != tuple(model.input_shape):
        trained = model.config.get("dataset")
        hint = f"pick from the dataset it was trained on ({trained})" if trained else "pick from a matching dataset"
        raise VaetoolError(f"{data} has {tuple(dataset.image_shape)} images but the model takes "
                           f"{tuple(model.input_shape)}; {hint} or pass a matching --model.")
    return dataset, dataset.load(split, data_root(data_dir)), shown


def parse_list(text: str | None, flag: str) -> list[str] | None:
    """``"2,7"`` → ``["2", "7"]``; None stays None."""
    if text is None:
        return None
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        raise VaetoolError(f"{flag} takes one or more comma-separated values, not {text!r}.")
    return items


def parse_indices(text: str | None) -> list[int] | None:
    items = parse_list(text, "--index")
    if items is None:
        return None
    try:
        return [int(item) for item in items]
    except ValueError:
        raise VaetoolError(f"--index takes comma-separated image numbers, e.g. 0,1,2, not {text!r}.") from None


def class_numbers(items: list[str], dataset, name: str) -> list[int]:
    """Each label, given as a class number or a class name, as its class number."""
    count = int(getattr(dataset, "num_classes", 0) or 0)
    if count == 0:
        raise VaetoolError(f"{name} has no labels, so --label cannot pick from it; use --index instead.")
    class_names = [str(c) for c in getattr(dataset, "class_names", ()) or ()]
    numbers = []
    for item in items:
        if item.lstrip("-").isdigit() and 0 <= int(item) < count:
            numbers.append(int(item))
        elif item in class_names:
            numbers.append(class_names.index(item))
        else:
            named = ", ".join(f"{k} ({n})" if n != str(k) else str(k) for k, n in enumerate(class_names)) \
                if class_names else f"0 to {count - 1}"
            raise VaetoolError(f"{name} has no label {item!r}; its labels are {named}.")
    return numbers


def pick(dataset, split, *, name: str, split_name: str = "test", labels: list[str] | None = None,
         indices: list[int] | None = None, per_label: int | None = None, count: int | None = None,
         seed: int | None = None) -> Picked:
    """Images of ``split`` chosen by ``indices``, or by ``labels`` (``per_label`` of each class, in
    the order given; all of them, in the split's order, when ``per_label`` is None), or ``count``
    at random.

    With labels, the first images of each class in the split's order are taken, or random ones when
    ``seed`` is given. With neither labels nor indices, ``count`` images are drawn at random
    (seed 0 unless given); ``count=None`` then takes the whole split.
    """
    import torch

    total = len(split)
    if total == 0:
        raise VaetoolError(f"The {split_name} split of {name} is empty.")
    if indices is not None and labels is not None:
        raise VaetoolError("Pick images by --label or by --index, not both.")
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < total]
        if bad:
            raise VaetoolError(f"The {split_name} split of {name} has {total:,} images, indices 0 to {total - 1}; "
                               f"{bad[0]} is not one of them.")
        chosen = list(indices)
    elif labels is not None:
        if split.labels is None:
            raise VaetoolError(f"{name} has no labels, so --label cannot pick from it; use --index instead.")
        numbers = class_numbers(labels, dataset, name)
        for number in numbers:
            if not (split.labels == number).any():
                raise VaetoolError(f"The {split_name} split of {name} holds no image of label {number}.")
        if per_label is None:  # every image of those classes, in the split's order
            chosen = torch.isin(split.labels, torch.tensor(numbers)).nonzero().flatten().tolist()
        else:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            chosen = []
            for number in numbers:
                where = (split.labels == number).nonzero().flatten()
                if generator is not None:
                    where = where[torch.randperm(len(where), generator=generator)]
                chosen += where[:per_label].tolist()
    else:
        if count is None:
            chosen = list(range(total))
        else:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
            chosen = torch.randperm(total, generator=generator)[:count].tolist()
    rows = torch.tensor(chosen, dtype=torch.long)
    return Picked(images=split.images[rows],
                  labels=split.labels[rows] if split.labels is not None else None,
                  factors=split.factors[rows] if split.factors is not None else None,
                  indices=chosen, names=[f"{name}/{split_name}/{i}" for i in chosen], dataset=dataset)


def from_options(data: str, *, split: str = "test", label: str | None = None, index: str | None = None,
                 per_label: int | None = None, count: int | None = None, seed: int | None = None,
                 data_dir=None, options: dict | None = None, model=None) -> Picked:
    """What a command's ``--data``, ``--split``, ``--label``, ``--index`` (and ``-n``, ``--seed``) select."""
    dataset, chosen, name = open_split(data, split, data_dir=data_dir, options=options, model=model)
    return pick(dataset, chosen, name=name, split_name=split, labels=parse_list(label, "--label"),
                indices=parse_indices(index), per_label=per_label, count=count, seed=seed)


def subset(split, limit: int | None, seed: int = 0):
    """``limit`` images of ``split`` drawn at random with ``seed`` (kept in the split's order), or the
    split itself when ``limit`` is None or not smaller: what ``--train-limit`` / ``--test-limit`` train on."""
    import torch

    from vaetool.contracts import Split

    if limit is None or limit >= len(split):
        return split
    rows = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return Split(split.images[rows], split.labels[rows] if split.labels is not None else None,
                 split.factors[rows] if split.factors is not None else None)
