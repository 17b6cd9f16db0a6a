"""Keep the process's memory flat over long runs.

Inference frees activation tensors of tens to hundreds of MB after every batch, while
small objects (each clip's scores) live on. glibc's malloc raises its mmap threshold
each time a large mmapped block is freed (up to 32 MB), after which large tensors come
from the heap, land between small live objects, and can never be given back: resident
memory grew about 4x over a 30-minute video (measured: 562 MB for 30 s, 2292 MB for
30 min, ResNet-10, PyTorch CPU). Pinning the thresholds keeps every large block
mmapped, so it returns to the system when freed (the same run: flat).

Only on Linux with glibc; ``HAR_NO_MALLOPT=1`` leaves malloc alone.

The clips' own results (400 probabilities and 512 features each) live as long as the
video's summary. As thousands of small arrays they would sit on the heap between the
short-lived tensors of every batch and let the heap's high-water mark creep up (peak
RSS +13% from 1 to 30 minutes of video, ResNet-10 on PyTorch). :class:`RowSlabs` keeps
them as rows of large blocks instead, which malloc maps and unmaps on their own.
"""

from __future__ import annotations

import os
import sys

_done = False
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tame_malloc(mmap_threshold: int = 1 << 20, trim_threshold: int = 16 << 20) -> bool:
    """Pin glibc's mmap and trim thresholds (once per process); True if applied."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("HAR_NO_MALLOPT"):
        return _done
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except (OSError, AttributeError):  # musl, or no libc.so.6
        return False
    _done = ok
    return ok


class RowSlabs:
    """Copies of small 1-D arrays packed as rows of large blocks (each at least the
    mmap threshold, so off the heap); :meth:`keep` returns the row, a view that keeps
    its block alive. A block is freed once no row of it is referenced."""

    def __init__(self, block_bytes: int = 2 << 20) -> None:
        import threading

        self.block_bytes = block_bytes
        self._open: dict = {}  # (shape, dtype) -> [block, rows used]
        self._lock = threading.Lock()  # one Recognizer serves several video threads

    def keep(self, row):
        import numpy as np

        row = np.asarray(row)
        key = (row.shape, row.dtype.str)
        with self._lock:
            slot = self._open.get(key)
            if slot is None or slot[1] == len(slot[0]):
                rows = max(64, self.block_bytes // max(1, row.nbytes))
                slot = self._open[key] = [np.empty((rows, *row.shape), row.dtype), 0]
            block, used = slot
            slot[1] = used + 1
        block[used] = row
        return block[used]
