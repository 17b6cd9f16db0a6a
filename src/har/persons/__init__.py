"""Per-person action recognition: detect people, track them, classify each person's tube.

The flow (docs/persons.md)::

    frames -> Detector (every N frames) -> Tracker (ByteTrack style) -> per-track windows
           -> square crops kept steady over each clip (tubes) -> the model's Preset
           -> the recognizer's runtime, batched across people -> one Summary per person

or, with tracks made elsewhere, ``--tracks FILE`` (MOTChallenge text) instead of the
detector and tracker. Library code only: the CLI options live in ``har.cli.predict``.
"""

from __future__ import annotations

from .boxes import Box, TrackedBox
from .mot import read_mot, write_mot

__all__ = ["Box", "TrackedBox", "read_mot", "write_mot", "PersonOptions", "PersonStream",
           "PersonResult", "PersonClip", "Tracker"]


def __getattr__(name: str):  # the heavier parts load when first used
    if name in ("PersonOptions", "PersonStream", "PersonResult", "PersonClip"):
        from . import stream

        return getattr(stream, name)
    if name == "Tracker":
        from .track import Tracker

        return Tracker
    raise AttributeError(name)
