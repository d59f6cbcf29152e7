"""The one exception type that means "the user can fix this"."""


class VaetoolError(Exception):
    """A problem the user caused and can fix: the CLI prints its message as one sentence, no traceback."""
