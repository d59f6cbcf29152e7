"""A run directory belongs to one process at a time: a lock held for the life of the run.

The lock is an operating-system lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on the
file ``.NAME.lock`` beside the run directory ``NAME`` (outside it, so the run's own files are all
that is ever in it). The system releases it when the process ends, however
it ends, so a lock left behind by a killed process is never in the way: the file stays, its lock
does not, and the next run takes it over. The file records who holds it (process id, host, start
time) so that a refused run can say who has it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from vaetool.errors import RuntimeFailure, VaetoolError


_held: dict[Path, int] = {}  # run directories this process holds, and how many times over


class RunInUse(RuntimeFailure):
    """Another live process holds the run directory."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def lock_file(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def holder(run_dir: str | Path) -> dict | None:
    """Who recorded themselves in the run's lock file (it may be a process that has since ended)."""
    try:
        return json.loads(lock_file(run_dir).read_text() or "null")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def claim(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``run_dir`` for the duration of the block; :class:`RunInUse` if another live process
    holds it. Re-entrant within one process. Folders made for the run are removed if it leaves them empty."""
    run_dir = Path(run_dir)
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    for path in (run_dir, *run_dir.parents):  # a file where a folder must go: say which, before making any
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise VaetoolError(f"{path} is there but is not a folder (a file or a broken link), so no run can be "
                                   "written there; choose another --runs-dir or --name.")
            break
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield run_dir
        finally:
            _held[key] -= 1
        return
    fd = _lock(run_dir)
    try:
        # Ours now, whoever wrote the file before (a process that was killed, or one that finished).
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        _held[key] = 1
        try:
            yield run_dir
        finally:
            del _held[key]
            _release(run_dir, made)
    finally:
        os.close(fd)  # closing the descriptor releases the operating-system lock


def _lock(run_dir: Path) -> int:
    """A descriptor of the run's lock file, locked by this process."""
    path = lock_file(run_dir)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            who = holder(run_dir) or {}
            by = f" (process {who['pid']} on {who['host']})" if isinstance(who, dict) and "pid" in who else ""
            raise RunInUse(f"{run_dir} is in use by another vaetool run{by}; wait for it to finish or choose "
                           "another --name.")
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we locked it: lock the one there now


def _release(run_dir: Path, made: list[Path]) -> None:
    """Leave no trace of a run that wrote nothing: its lock file, and the folders made for it."""
    with contextlib.suppress(OSError):
        lock_file(run_dir).unlink()
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
