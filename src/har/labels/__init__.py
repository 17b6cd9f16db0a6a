"""Class-name lists shipped with the package, in the order of the models' outputs."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load_labels(name: str = "kinetics400") -> tuple[str, ...]:
    """Return the class names of a label set, e.g. ``load_labels()[0] == 'abseiling'``."""
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
