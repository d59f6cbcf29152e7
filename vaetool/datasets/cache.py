"""Decoded image caches: a folder of image files, decoded once into uint8 ``.npy`` files.

Decoding JPEGs and PNGs is the slow part of reading an image folder, and a folder of hundreds of
thousands of images does not fit in memory as tensors. So the first use decodes every image, in
parallel worker processes, into one ``(N, C, H, W)`` uint8 array per split on disk; every later
use memory-maps those arrays, which costs nothing up front and reads only the rows a batch needs.

A cache is keyed by everything that decides its bytes — the folder, each file's name, size and
modification time, the image shape and the split — so a changed folder gets a fresh cache and
an unchanged one is never decoded twice. Caches live in ``$VAETOOL_CACHE/folders``, else the
per-user cache folder, never beside the images (the folder may be read-only or shared).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from vaetool.datasets import user_cache
from vaetool.errors import VaetoolError

FORMAT = 1  # bump when the layout or the decoding changes: every cache is rebuilt
CHUNK = 256  # images per task handed to a decoding worker
PARALLEL_FROM = 2 * CHUNK  # fewer images decode faster in this process than a pool starts


def cache_root() -> Path:
    """``$VAETOOL_CACHE/folders``, else ``folders`` in the per-user cache."""
    if os.environ.get("VAETOOL_CACHE"):
        return Path(os.environ["VAETOOL_CACHE"]).expanduser() / "folders"
    return user_cache() / "folders"


def fingerprint(root: Path, files: list[Path], shape: tuple[int, int, int], splits: dict[str, list[int]]) -> str:
    """A hash of everything the cached bytes depend on."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "root": str(root.resolve()), "shape": list(shape),
                                        "splits": splits}).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def load_or_build(root: Path, files: list[Path], shape: tuple[int, int, int],
                  splits: dict[str, list[int]]) -> dict[str, Path]:
    """The ``.npy`` file of each split (rows: ``files[i]`` for i in the split's list), built if need be."""
    key = fingerprint(root, files, shape, splits)
    folder = cache_root() / f"{root.resolve().name or 'root'}-{key}"
    paths = {name: folder / f"{name}.npy" for name in splits}
    if (folder / "done").exists():
        if _intact(paths, splits, shape):
            return paths
        # Damaged since it was built (truncated, overwritten): every later run would fail on it.
        print(f"vaetool: the decoded-image cache in {folder} is damaged; decoding the images again", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        build(folder, files, shape, splits)
    except OSError as exc:
        raise VaetoolError(f"Could not write the decoded-image cache in {folder} ({exc.strerror or exc}); "
                           "set VAETOOL_CACHE to a writable folder.") from exc
    return paths


def _intact(paths: dict[str, Path], splits: dict[str, list[int]], shape: tuple[int, int, int]) -> bool:
    """Whether every split's file is a uint8 array of the shape its rows and the image shape give."""
    for name, path in paths.items():
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return False
        if array.dtype != np.uint8 or array.shape != (len(splits[name]), *shape):
            return False
    return True


def _reserve(path: Path) -> None:
    """Allocate a memory-mapped file's blocks now: on a full disk, writing through the map would
    end the process with SIGBUS instead of the OSError (ENOSPC) this raises."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: no way to ask; the map is written as it is
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot say: go on
                raise


def build(folder: Path, files: list[Path], shape: tuple[int, int, int], splits: dict[str, list[int]],
          workers: int | None = None) -> None:
    """Decode ``files`` into one uint8 array per split under ``folder``, in parallel.

    Written into a temporary folder renamed into place at the end, so an interrupted build
    leaves no cache that looks complete.
    """
    total = sum(len(rows) for rows in splits.values())
    if total >= 10 * CHUNK:
        print(f"vaetool: decoding {total:,} images once into {folder}", file=sys.stderr)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    workers = workers or max(1, min(os.cpu_count() or 1, 16))
    pool = ProcessPoolExecutor(workers) if workers > 1 and total >= PARALLEL_FROM else None
    try:
        for name, rows in splits.items():
            array = np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+", dtype=np.uint8,
                                              shape=(len(rows), *shape))
            _reserve(partial / f"{name}.npy")
            chunks = [[str(files[i]) for i in rows[start:start + CHUNK]] for start in range(0, len(rows), CHUNK)]
            decoded = (pool.map if pool else map)(_decode, chunks, [shape] * len(chunks))
            for index, block in enumerate(decoded):
                array[index * CHUNK:index * CHUNK + len(block)] = block
            array.flush()
            del array
        (partial / "done").write_text(json.dumps({"images": total, "shape": list(shape)}))
        if folder.exists():  # another process finished the same cache first: keep theirs
            shutil.rmtree(partial)
        else:
            partial.rename(folder)
    finally:
        if pool is not None:
            pool.shutdown()
        shutil.rmtree(partial, ignore_errors=True)


def _decode(paths: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    from vaetool.images import open_image, to_tensor

    return np.stack([to_tensor(open_image(path), shape).numpy() for path in paths])
