"""Errors that reach users. Each one is printed as a single line by the CLI.

A message says what went wrong, for which input, and what to do next.

The class says which exit code the command line gives (``har.cli.EXIT_CODES``, the
table in README.md's "Exit codes"): :class:`UsageError` 2, :class:`InputError` 3,
:class:`ModelError` 4, :class:`OutputError` 1; a plain :class:`HarError` is a run
that failed for another reason (exit 1).
"""

from __future__ import annotations


class HarError(Exception):
    """Base class: a user-facing error whose ``str()`` is one readable line."""


class UsageError(Exception):
    """A bad command line found after parsing (exit 2, one line). Not a HarError, so
    code that turns a HarError into one input's failure never swallows it. Library
    code may raise it for an argument it is given (it lives here, not in ``har.cli``,
    so the library never imports the CLI)."""


class InputError(HarError):
    """An input cannot be used: a video, a folder of labelled data, a file to read."""


class ModelError(HarError):
    """The model, its weights or its runtime cannot be loaded."""


class OutputError(HarError):
    """An output cannot be written (a full disk, no permission, a path under a file)."""


class DecodeError(InputError):
    """A video could not be opened or decoded at all."""


class WeightsError(ModelError):
    """Weights are missing, corrupt, or do not fit the chosen architecture."""


class ModelNotFoundError(ModelError, KeyError):
    """An unknown model name (the message suggests the closest one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
