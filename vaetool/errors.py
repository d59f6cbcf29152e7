"""The exception types that mean "the user can fix this", and the exit code each one ends with.

Exit codes: 2 when the command as given cannot run (a flag, a value, a file or folder that is not
what the command needs), 1 when a valid command failed while running (training diverged, a
download failed, the run is in use by another process), 130 when interrupted.
"""
import os

USAGE_EXIT = 2
RUNTIME_EXIT = 1
INTERRUPT_EXIT = 130


class VaetoolError(Exception):
    """A problem the user caused and can fix: the CLI prints its message as one sentence, no traceback."""

    exit_code = USAGE_EXIT


class RuntimeFailure(VaetoolError):
    """A valid command that failed while it ran: the CLI exits with 1 rather than 2."""

    exit_code = RUNTIME_EXIT


def no_file(path, what: str) -> VaetoolError:
    """The error for a ``path`` that should be a ``what`` (``"model file"``) but is not a regular file: missing, or
    a pipe, device or socket, which vaetool does not read (a FIFO would block, ``/dev/zero`` never ends)."""
    if os.path.exists(path) and not os.path.isdir(path):  # (a broken link is missing, for this)
        article = "an" if what[0] in "aeiou" else "a"
        return VaetoolError(f"{path} is not a regular file (a pipe, device or socket), so it cannot be "
                            f"{article} {what}.")
    return VaetoolError(f"There is no {what} at {path}.")
