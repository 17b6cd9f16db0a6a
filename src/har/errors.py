"""Errors that reach users. Each one is printed as a single line by the CLI.

A message says what went wrong, for which input, and what to do next.
"""

from __future__ import annotations


class HarError(Exception):
    """Base class: a user-facing error whose ``str()`` is one readable line."""


class DecodeError(HarError):
    """A video could not be opened or decoded at all."""


class WeightsError(HarError):
    """Weights are missing, corrupt, or do not fit the chosen architecture."""


class ModelNotFoundError(HarError, KeyError):
    """An unknown model name (the message suggests the closest one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
