"""What ``vaetool train --nproc N`` shows of torchrun's standard error (without importing torch)."""
from __future__ import annotations

import re


class TorchrunOutput:
    """What ``vaetool train --nproc N`` shows of the standard error of torchrun and its processes.

    The processes' own lines pass through as they come. torchrun's are dropped: its log lines, and,
    when a process fails, its traceback and its report of the failure — a user's mistake (an option
    the model refuses) would otherwise end in two screens of torchrun's internals. The report's
    first failure gives :attr:`exit_code`, that process's status (2 for a usage error), which
    torchrun itself turns into 1. An error every process prints alike is shown once: the lines
    ``Error (process K): …`` are held to the end and shown only where rank 0 said something else.
    A traceback that is not torchrun's (a bug in a process) is shown whole.
    """

    # torchrun's log lines: "W1203 14:37:45.459000 992 torch/distributed/elastic/…] …" in torch 2.14,
    # "[2024-…] torch.distributed.elastic.…: [WARNING] …" or "WARNING:torch.distributed.elastic…" before.
    _LOG = re.compile(r"^(\[[^\]]*\] |[DIWE]\d{4} [\d:.]+ \d+ |[A-Z]+:)\S*torch[./]distributed[./]")
    _OTHER_RANK = re.compile(r"^Error \(process \d+\): (.*)$")

    def __init__(self, stream):
        self.stream, self.exit_code = stream, None
        self._traceback: list[str] | None = None
        self._report = False  # inside torchrun's report of a failed process
        self._root = False  # past its "Root Cause" line
        self._said: set[str] = set()
        self._held: list[tuple[str, str]] = []

    def line(self, line: str) -> None:
        text = line.rstrip("\n")
        if self._report:
            self._in_report(text)
        elif self._traceback is not None:
            self._traceback.append(line)
            if text and not text[0].isspace() and not text.startswith("Traceback"):  # its exception's line
                traceback, self._traceback = self._traceback, None
                if text.startswith("torch.distributed.elastic."):
                    self._report = "ChildFailedError" in text
                else:
                    self._write("".join(traceback))
        elif text.startswith("Traceback (most recent call last):"):
            self._traceback = [line]
        elif self._LOG.match(text):
            pass
        elif other := self._OTHER_RANK.match(text):
            self._held.append((other.group(1), line))
        else:
            if text.startswith("Error: "):
                self._said.add(text[len("Error: "):])
            self._write(line)

    def _in_report(self, text: str) -> None:
        if text.startswith("Root Cause"):
            self._root = True
        elif self._root and text.strip().startswith("exitcode") and self.exit_code is None:
            found = re.search(r":\s*(-?\d+)", text)
            self.exit_code = int(found.group(1)) if found and int(found.group(1)) > 0 else None
        elif self._root and text.startswith("====="):
            self._report = self._root = False

    def close(self) -> None:
        """Show what is left: a traceback cut short, and the other processes' errors not said by rank 0."""
        if self._traceback:
            self._write("".join(self._traceback))
        for message, line in self._held:
            if message not in self._said:
                self._write(line)
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
