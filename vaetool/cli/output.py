"""How commands talk: consoles that respect -q/-v and pipes, staged progress, tables that fit.

- :func:`console` is the rich console for results (stdout) or for talk (stderr). When the stream
  is not a terminal, lines are never soft-wrapped: a log file or a pipe gets each line whole.
- :class:`Stages` reports work in named stages. On a terminal it is a live bar with the stage's
  label; otherwise it writes one line when a stage starts, every few seconds while it runs, and
  when it ends, so a redirected run still says what it is doing.
- :func:`fitted_tables` lays out a table of numbers within the console's width: as it is when it
  fits, else transposed (one row per column), split into several tables by model when even
  that is too wide. Numbers are never shortened.
- :func:`note` is one line of talk on stderr, so stdout stays scriptable (e.g. which run a
  command chose when the user named none).

Nothing here imports torch.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

# -q: results only; -v: more detail. Set once by the root command's callback.
QUIET, NORMAL, VERBOSE = 0, 1, 2
verbosity = NORMAL


# The command line as typed, when vaetool runs as a program (set by ``vaetool.cli.main``).
command: list[str] | None = None


def set_verbosity(quiet: bool, verbose: bool) -> None:
    global verbosity
    verbosity = QUIET if quiet else VERBOSE if verbose else NORMAL


def command_line(fallback: list[str]) -> str:
    """The command that is running, as a shell would read it back (for report headers); when
    vaetool was called from Python rather than as a program, ``fallback``."""
    import shlex

    return shlex.join(command if command is not None else fallback)


def console(stderr: bool = False, *, talk: bool | None = None, wide: bool = False):
    """A rich console on stdout (results) or stderr (progress, notes).

    ``talk``: messages that -q silences (default: the stderr console talks, stdout does not).
    Off a terminal, lines are not wrapped at the console width; with ``wide``, tables are not
    either (a listing meant for grep), whatever the width would be.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    talk = stderr if talk is None else talk
    terminal = stream.isatty()
    return Console(file=stream, stderr=stderr, soft_wrap=not terminal, quiet=talk and verbosity == QUIET,
                   highlight=False, width=None if terminal or not wide else 10_000)


def counted(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless one: "1 image", "2 images"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def note(message: str) -> None:
    """One line of talk on stderr (silenced by -q)."""
    console(stderr=True).print(message, markup=False)


class Stages:
    """Progress through named stages, for the terminal or for a log.

    Call the instance as ``stages(label, done, total)`` (the shape of the library's progress
    callbacks), or use :meth:`stage` for work with no inner steps. A stage ends when its
    ``done`` reaches ``total`` or when another stage begins. Use as a context manager.

    Off a terminal a stage is named once it has run for a second (so quick work and an early
    error stay quiet), then every ``LOG_EVERY`` seconds with how far it got, and once more when
    it ends, with its time.
    """

    LOG_EVERY = 10.0  # seconds between lines off a terminal
    QUIET_START = 1.0  # stages shorter than this are not announced off a terminal

    def __init__(self, console=None):
        import threading

        self.console = console or globals()["console"](stderr=True)
        self.live = self.console.is_terminal
        self.bar = None
        self._label = None
        self._announced = False
        self._done, self._total = 0, 0
        self._started = 0.0
        self._logged = 0.0
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = None

    def __enter__(self):
        import threading

        if self.console.quiet:
            return self
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.start()
        else:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self._end()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, label: str, done: int, total: int) -> None:
        with self._lock:
            if label != self._label:
                self._end()
                self._begin(label, total)
            self._done, self._total = done, total
            if self.bar is not None:
                self.bar.update(self._tasks[label], completed=done, total=total)
            if done >= total:
                self._end()

    def stage(self, label: str):
        """A context manager for one stage without inner steps."""
        stages = self

        class _Stage:
            def __enter__(self):
                stages(label, 0, 1)

            def __exit__(self, *exc):
                if stages._label != label:  # inner steps ended it, or another stage took over
                    return
                if exc[0] is None:
                    stages(label, 1, 1)
                else:
                    stages._label = None

        return _Stage()

    def _begin(self, label: str, total: int) -> None:
        self._label, self._started, self._announced = label, time.monotonic(), False
        self._logged = self._started
        if self.bar is not None:
            self._tasks[label] = self.bar.add_task(label, total=total)

    def _end(self) -> None:
        if self._label is None:
            return
        label, self._label = self._label, None
        if self.bar is not None:
            self.bar.update(self._tasks[label], visible=False)
            if verbosity == VERBOSE:
                self.console.print(f"{label}: {self._elapsed()}", markup=False)
        elif self._announced or time.monotonic() - self._started > self.QUIET_START:
            self._line(f"{label}: done, {self._elapsed()}")

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                if self._label is None:
                    continue
                now = time.monotonic()
                if not self._announced and now - self._started > self.QUIET_START:
                    self._announced, self._logged = True, now
                    self._line(f"{self._label} …")
                elif self._announced and now - self._logged > self.LOG_EVERY:
                    self._logged = now
                    done, total = self._done, self._total
                    how_far = f"{done:,}/{total:,} ({done / total:.0%}), " if total > 1 and 0 < done < total else ""
                    self._line(f"{self._label}: {how_far}{self._elapsed()}")

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.1f} s"

    def _line(self, text: str) -> None:
        if not self.console.quiet:
            self.console.print(text, markup=False)


def _width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in str(text).splitlines()), default=0)


def fitted_tables(title: str, headings: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], width: int, *,
                  first: str = "model", styles: dict[tuple[int, int], str] | None = None,
                  units: Sequence[str] | None = None,
                  descriptions: Sequence[str] | None = None) -> tuple[list, bool]:
    """Rich tables of ``rows`` (name, cells), one cell per heading, that fit in ``width`` columns,
    and whether they are transposed.

    As it is when it fits (with a ``description`` column after the names, if given); else
    transposed, one row per heading (with its unit, if ``units`` are given) and one column per
    name, without the descriptions (the caller lists them); and when that is too wide too, split
    into several tables of as many names as fit. ``styles[(row, column)]`` is a rich style for
    one cell (e.g. the best of a column). Cells are never shortened: a column too narrow for its
    longest cell is a reason to transpose or split, not to cut.
    """
    from rich import box
    from rich.table import Table

    from rich.markup import escape

    styles = styles or {}

    def styled(text: str, i: int, j: int) -> str:
        style = styles.get((i, j))
        return f"[{style}]{escape(text)}[/]" if style else escape(text)

    # Wide layout: one row per name. Its width: every column's widest cell, plus 3 per column for
    # the border and padding, plus 1.
    columns = [[first] + [name for name, _ in rows]] + [[h] + [cells[j] for _, cells in rows]
                                                         for j, h in enumerate(headings)]
    if descriptions is not None:
        columns.append(["description", *descriptions])
    wide = 1 + sum(max(_width(c) for c in col) + 3 for col in columns)
    if wide <= width:
        table = Table(title=title, title_justify="left", box=box.SQUARE)
        table.add_column(first, style="bold", no_wrap=True)
        if descriptions is not None:
            table.add_column("description", no_wrap=True)
        for h in headings:
            table.add_column(h, justify="right", no_wrap=True)
        for i, (name, cells) in enumerate(rows):
            extra = [escape(descriptions[i])] if descriptions is not None else []
            table.add_row(escape(name), *extra, *(styled(c, i, j) for j, c in enumerate(cells)))
        return [table], False

    # Transposed: one row per heading. Names are column heads and may wrap; numbers may not.
    label_width = max(_width(h) for h in headings) + 3
    unit_width = (max(_width(u) for u in units) + 3) if units else 0
    room = max(width - 1 - label_width - unit_width, 1)
    numbers = [max((_width(cells[j]) for j in range(len(headings))), default=1) for _, cells in rows]
    groups, current, used = [], [], 0
    for i, (name, _) in enumerate(rows):
        need = max(numbers[i], min(_width(name), 16)) + 3
        if current and used + need > room:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += need
    groups.append(current)
    tables = []
    for n, group in enumerate(groups):
        part = f" ({n + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + part, title_justify="left", box=box.SQUARE)
        table.add_column("", style="bold", no_wrap=True)
        if units:
            table.add_column("unit", style="dim", no_wrap=True)
        for i in group:
            table.add_column(escape(rows[i][0]), justify="right", overflow="fold", min_width=numbers[i])
        for j, h in enumerate(headings):
            table.add_row(h, *([units[j]] if units else []), *(styled(rows[i][1][j], i, j) for i in group))
        tables.append(table)
    return tables, True
