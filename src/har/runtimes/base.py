"""What every runtime is: a preprocessed batch in, logits and pooled features out."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import threading
import time
from typing import Callable, Protocol

import numpy as np

from ..defaults import pip_hint
from ..errors import HarError


class Runtime(Protocol):
    """``infer(batch) -> (logits (N, C) float32, features (N, D) float32)``;
    ``__call__(batch) -> logits``. ``batch``: ``(N, 3, T, H, W)`` float32.

    Provenance (set by :func:`har.runtimes.load_runtime`): ``labels``, ``preset``,
    ``model_name``, ``weights_sha256``.
    """

    name: str
    device: str
    batch_size: int
    precision: str

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray]: ...

    def __call__(self, batch) -> np.ndarray: ...


class RuntimeBase:
    """Shared plumbing: provenance attributes and ``__call__`` over ``infer``."""

    name = "?"
    labels: tuple[str, ...] = ()
    preset = None
    model_name: str = ""
    weights_sha256: str | None = None
    # A learned video-level head (har.models.temporal.TemporalHead) that scores a video
    # from its clips' features in order, in place of the mean of clip scores.
    video_head = None
    # Scores per clip as the loaded graph says (None where the runtime cannot tell):
    # labels from metadata must match it, else they would name the wrong classes.
    classes: int | None = None

    def set_info(self, info) -> None:
        """Take provenance from a :class:`har.models.info.ModelInfo` (WeightsError when
        its labels do not fit the loaded graph's outputs)."""
        if info is None:
            return
        if self.classes and len(info.labels) != self.classes:
            from ..errors import WeightsError
            from ..text import printable

            where = printable(info.weights_path or info.model or "the model")
            raise WeightsError(f"{where}: its metadata lists {len(info.labels)} labels but "
                               f"the model scores {self.classes} classes; the metadata was "
                               "changed or damaged: export the model again from its .pth")
        self.info = info
        self.labels, self.preset = info.labels, info.preset
        self.video_head = info.temporal_head()
        self.model_name, self.weights_sha256 = info.model, info.weights_sha256

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # Asynchronous scoring: ``submit(batch)`` starts a batch and returns a handle whose
    # ``result()`` waits for ``(logits, features)``; the caller assembles the next batch
    # meanwhile. Handles complete in submission order. Runtimes without a native
    # asynchronous API run ``infer`` at submit (no overlap) unless ``overlap`` is set,
    # then in one worker thread (calls still run one at a time, in order).
    overlap = False
    _worker = None

    def submit(self, batch) -> "Pending":
        if not self.overlap:
            return Pending.run(self.infer, batch)
        if self._worker is None:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(1, thread_name_prefix="har-infer")
        job = Pending()
        job.submitted_at = time.monotonic()

        def run() -> None:
            try:
                job.set(self.infer(batch))
            except BaseException as exc:  # noqa: BLE001 - re-raised by result()
                job.fail(exc)

        self._worker.submit(run)
        return job

    def __call__(self, batch) -> np.ndarray:
        return self.infer(batch)[0]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def need(module: str, extra: str) -> None:
    if not installed(module):
        raise HarError(f"backend needs the '{module}' package: {pip_hint(extra)} "
                       f"(or pip install {module})")


def as_batch(batch) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(batch, dtype=np.float32))


class Pending:
    """A submitted batch: ``result()`` waits and returns ``(logits, features)`` or
    raises the runtime's error. ``submitted_at``/``done_at``: monotonic seconds."""

    __slots__ = ("_event", "_value", "_error", "submitted_at", "done_at", "keep")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value = None
        self._error: BaseException | None = None
        self.submitted_at = self.done_at = 0.0
        self.keep = None  # buffers that must live until the runtime is done with them

    @classmethod
    def run(cls, fn: Callable, batch) -> "Pending":
        job = cls()
        job.submitted_at = time.monotonic()
        try:
            job.set(fn(batch))
        except Exception as exc:  # noqa: BLE001 - re-raised by result()
            job.fail(exc)
        return job

    def set(self, value) -> None:
        self._value = value
        self.done_at = time.monotonic()
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self._error = exc
        self.done_at = time.monotonic()
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def result(self, timeout: float | None = None):
        if not self._event.wait(timeout):
            raise TimeoutError("the runtime did not answer in time")
        self.keep = None
        if self._error is not None:
            raise self._error
        return self._value


# -- profile: cheap phase timers for one process (HAR_PROFILE=FILE) ---------------------
def _process_age() -> float | None:
    """Seconds since this process started (Linux; None elsewhere)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError, IndexError):
        return None


class Profile:
    """Where a process's wall time goes: phase sums (``add``), first/last marks
    (``mark``) and the runtime's busy intervals (``busy``). Monotonic clock only; each
    call costs well under a microsecond. Written as JSON at exit by :func:`profile`."""

    def __init__(self) -> None:
        now = time.monotonic()
        age = _process_age()
        self.start = now - age if age is not None else now
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.marks: dict[str, list[float]] = {}
        self.intervals: list[tuple[float, float]] = []
        self.notes: dict = {}  # other figures (the converter child's memory)
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.sums[phase] = self.sums.get(phase, 0.0) + seconds
            self.counts[phase] = self.counts.get(phase, 0) + 1

    def mark(self, name: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        with self._lock:
            m = self.marks.setdefault(name, [at, at])
            m[0], m[1] = min(m[0], at), max(m[1], at)

    def busy(self, start: float, end: float) -> None:
        with self._lock:
            self.intervals.append((start, end))

    def busy_seconds(self) -> float:
        """Union of the busy intervals: time with at least one batch in the runtime."""
        total, cur_s, cur_e = 0.0, None, None
        for s, e in sorted(self.intervals):
            if cur_e is None or s > cur_e:
                if cur_e is not None:
                    total += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e is not None:
            total += cur_e - cur_s
        return total

    def report(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        rel = {k: [v[0] - self.start, v[1] - self.start] for k, v in self.marks.items()}
        peak = None
        try:  # VmHWM: this process's own peak (ru_maxrss survives execve)
            with open("/proc/self/status") as fh:
                peak = next(int(line.split()[1]) / 1024 for line in fh
                            if line.startswith("VmHWM"))
        except (OSError, StopIteration, ValueError):
            pass
        return {"process_age_s": now - self.start, "peak_rss_mb": peak, "sums_s": dict(self.sums),
                "counts": dict(self.counts), "marks_s": rel,
                "runtime_busy_s": self.busy_seconds(), "batches": len(self.intervals),
                **self.notes}


_PROFILE: Profile | None = None
_PROFILE_INIT = False


def profile() -> Profile | None:
    """The process's :class:`Profile` when ``HAR_PROFILE`` names a file (written at
    exit), else None: instrumented code does nothing more than test for None."""
    global _PROFILE, _PROFILE_INIT
    if not _PROFILE_INIT:
        _PROFILE_INIT = True
        target = os.environ.get("HAR_PROFILE")
        if target:
            _PROFILE = Profile()

            def write() -> None:
                try:
                    with open(target, "w") as fh:
                        json.dump(_PROFILE.report(), fh)
                except OSError:
                    pass

            atexit.register(write)
    return _PROFILE
