"""The streaming orchestrator: source -> frames -> clips -> runtime -> clip results.

:meth:`Recognizer.stream` yields each clip's result as soon as it is scored; every front
end (``har predict``, ``har live``, the service, the indexer, evaluation) is a loop over
it, and :meth:`Recognizer.predict` is a fold over it.

Threads: a decode thread reads frames, assembles clips and preprocesses them (PyAV,
FFmpeg's scaler and PyTorch release the GIL); the caller's thread gathers clips into
batches and runs the model. A batch is scored when it is full, or when its first clip
has waited ``max_latency_s``, or at the end of the video.

* Finite sources (files, URLs): the clip queue is bounded and the decoder waits for the
  model, so every clip is scored and memory stays flat.
* Live sources (``live=True``): the decoder never waits. Clips that arrive while the
  model is busy replace the oldest waiting ones, which are skipped and counted
  (:attr:`ClipStream.skipped`): latency stays bounded instead of growing.
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from .aggregate import AGGREGATES, softmax, topk
from .runtimes import Backend, load_runtime
from .runtimes.base import Pending, profile
from .memory import RowSlabs
from .errors import HarError
from .models.zoo import DEFAULT_MODEL, ModelEntry, get_entry
from .results import ClipResult, VideoResult
from .sampling import ClipAssembler, ClipSpec, resample, uniform
from .sources import Source, open_video, parse_source
from .summary import Summary
from .timeline import TimelineOptions
from .video import VideoInfo

if TYPE_CHECKING:
    from torch import nn

# Called with the number of newly processed frames and the video's header info.
ProgressFn = Callable[[int, VideoInfo], None]
_DONE = object()
# Live sources: a clip waits at most this long for its batch unless told otherwise.
LIVE_MAX_LATENCY_S = 0.0


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunOptions:
    """How one run cuts a video into clips and turns their scores into the video's
    (typed, frozen, checked here and nowhere else).

    A :class:`Recognizer` holds its defaults as ``rec.options``; :meth:`Recognizer.stream`,
    :meth:`~Recognizer.predict`, :meth:`~Recognizer.run_many` and
    :meth:`~Recognizer.predict_many` take ``options=`` for one call, so runs with
    different options can share one loaded model (the service does, per job).

    >>> opts = rec.options.replace(stride=8, topk=3)           # doctest: +SKIP
    >>> rec.predict("video.mp4", options=opts)                # doctest: +SKIP

    stride: frames between clip starts (None: the model's clip length). topk: labels
    per clip and video. aggregate: how clip scores pool into the video's ("mean", the
    paper's protocol; "max"; "topk-mean" over the ``aggregate_k`` best clips; also the
    evidence clips reported). timeline: segment settings (:class:`har.timeline.
    TimelineOptions`). tail: "pad" loop-pads the last partial clip (every frame
    covered), "drop" scores full clips only. sampler: "sliding" or "uniform"
    (``num_clips`` evenly spread clips). max_latency_s: a clip waits at most this long
    for its batch to fill (None: until full for files; live sources default to 0).
    """

    stride: int | None = None
    topk: int = 5
    aggregate: str = "mean"
    aggregate_k: int = 3
    timeline: TimelineOptions | None = None  # None: TimelineOptions()
    tail: str = "pad"
    sampler: str = "sliding"
    num_clips: int = 10
    max_latency_s: float | None = None

    def __post_init__(self) -> None:
        if self.stride is not None and not (_whole(self.stride) and self.stride >= 1):
            raise ValueError("stride must be a positive number of frames")
        if not (_whole(self.topk) and self.topk >= 1):
            raise ValueError("topk must be at least 1")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
        if not (_whole(self.aggregate_k) and self.aggregate_k >= 1):
            raise ValueError("aggregate_k must be at least 1")
        if self.timeline is None:
            object.__setattr__(self, "timeline", TimelineOptions())
        elif not isinstance(self.timeline, TimelineOptions):
            raise ValueError("timeline must be a har.timeline.TimelineOptions")
        if self.tail not in ("pad", "drop"):
            raise ValueError("tail must be 'pad' or 'drop'")
        if self.sampler not in ("sliding", "uniform"):
            raise ValueError("sampler must be 'sliding' or 'uniform'")
        if not (_whole(self.num_clips) and self.num_clips >= 1):
            raise ValueError("num_clips must be at least 1")
        wait = self.max_latency_s
        if wait is not None and not (isinstance(wait, numbers.Real) and
                                     not isinstance(wait, bool) and wait >= 0):  # NaN too
            raise ValueError("max_latency_s must be 0 or more")

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes`` (checked like the original)."""
        return dataclasses.replace(self, **changes)

    def for_clip_len(self, clip_len: int) -> "RunOptions":
        """``stride=None`` made concrete: back-to-back clips of ``clip_len`` frames."""
        return self if self.stride is not None else self.replace(stride=clip_len)


@dataclass(frozen=True)
class ClipEvent:
    """A clip of ``path`` has been scored (from :meth:`Recognizer.run_many`)."""

    path: str
    clip: ClipResult


@dataclass
class _Item:
    spec: ClipSpec
    batch: Any  # (1, 3, T, H, W) float32 tensor, preprocessed
    ready_at: float


class _FiniteChannel:
    """Bounded FIFO: the producer waits for the consumer (no clip is lost)."""

    def __init__(self, size: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.dropped = 0

    def put(self, item, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, timeout: float | None):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> None:
        with self._q.mutex:
            self._q.queue.clear()
            self._q.not_full.notify_all()


class _LatestChannel:
    """Keeps the newest ``size`` clips: putting into a full channel drops the oldest
    clip (counted). End and error markers are never dropped."""

    def __init__(self, size: int) -> None:
        self._items: collections.deque = collections.deque()
        self._size = max(1, size)
        self._cv = threading.Condition()
        self.dropped = 0

    def put(self, item, stop: threading.Event) -> None:
        with self._cv:
            if isinstance(item, _Item):
                clips = sum(isinstance(i, _Item) for i in self._items)
                if clips >= self._size:
                    for i, old in enumerate(self._items):
                        if isinstance(old, _Item):
                            del self._items[i]
                            self.dropped += 1
                            break
            self._items.append(item)
            self._cv.notify()

    def get(self, timeout: float | None):
        with self._cv:
            if not self._items:
                self._cv.wait(timeout=timeout)
            return self._items.popleft() if self._items else None

    def drain(self) -> None:
        with self._cv:
            self._items.clear()


def _submit(backend, batch) -> Pending:
    """Start ``batch`` on any runtime: its own ``submit`` (asynchronous where it has
    one), else ``infer``/``__call__`` at once."""
    submit = getattr(backend, "submit", None)
    if submit is not None:
        return submit(batch)
    return Pending.run(lambda b: _infer(backend, b), batch)


def _outputs(out) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(out, tuple):
        logits, feats = out
        return np.asarray(logits), (None if feats is None else np.asarray(feats))
    return np.asarray(out), None


def _default_depth() -> int:
    """Batches in the runtime at once for finite sources: 2 (double buffering: batch
    k+1 is assembled and started while k runs) unless ``HAR_INFER_DEPTH`` says."""
    try:
        return max(1, int(os.environ.get("HAR_INFER_DEPTH", "2")))
    except ValueError:
        return 2


def _infer(backend, batch) -> tuple[np.ndarray, np.ndarray | None]:
    """``(logits (N, C), features (N, D) or None)`` from any runtime."""
    infer = getattr(backend, "infer", None)
    if infer is not None:
        out = infer(batch)
        if isinstance(out, tuple):
            logits, feats = out
            return np.asarray(logits), (None if feats is None else np.asarray(feats))
        return np.asarray(out), None
    return np.asarray(backend(batch)), None


class Recognizer:
    """Recognize Kinetics actions in videos.

    >>> rec = Recognizer("r3d34-k400", weights="resnet-34-kinetics.pth")  # doctest: +SKIP
    >>> for clip in rec.stream("video.mp4"):                              # doctest: +SKIP
    ...     print(clip.start_s, clip.top[0].label)
    >>> rec.predict("video.mp4").top[0]                                   # doctest: +SKIP
    """

    def __init__(self, model: str = DEFAULT_MODEL, weights: str | Path | None = None,
                 device: str = "cpu", *, stride: int | None = None, topk: int = 5,
                 sampler: str = "sliding", num_clips: int = 10,
                 batch_size: int | None = None, module: nn.Module | None = None,
                 backend: Backend | str = "torch", precision: str = "auto",
                 sha256: str | None = None,
                 aggregate: str = "mean", aggregate_k: int = 3,
                 timeline: TimelineOptions | None = None, tail: str = "pad",
                 max_latency_s: float | None = None) -> None:
        # The run options (stride ... max_latency_s, see RunOptions) are the defaults
        # of every call; a call can pass its own (options=). Checked before loading.
        options = RunOptions(stride=stride, topk=topk, aggregate=aggregate,
                             aggregate_k=aggregate_k, timeline=timeline, tail=tail,
                             sampler=sampler, num_clips=num_clips,
                             max_latency_s=max_latency_s)
        from .memory import tame_malloc

        tame_malloc()  # flat memory over long videos (see har.memory)
        self.entry: ModelEntry = get_entry(model)
        self.model_name = self.entry.name
        self.labels = self.entry.class_names
        self.preset = self.entry.preset
        # backend: a runtime name ("torch", "openvino", "onnxruntime", "opencv", "auto")
        # or a ready Backend object; precision: "auto", "fp32", "fp16" or "bf16".
        prof = profile()
        if prof is not None:
            prof.mark("init")
        t_load = time.monotonic()
        if isinstance(backend, str):
            backend = load_runtime(model, weights, backend=backend, device=device,
                                   precision=precision, batch_size=batch_size,
                                   sha256=sha256, module=module)
        if prof is not None:
            prof.add("load", time.monotonic() - t_load)
            prof.mark("loaded")
        # A fine-tuned checkpoint or an exported file brings its own labels and preset.
        if getattr(backend, "labels", None):
            self.labels = tuple(backend.labels)
        if getattr(backend, "preset", None) is not None:
            self.preset = backend.preset
        # default stride: back-to-back clips of the model's length
        self._options = options.for_clip_len(self.preset.clip_len)
        self.backend: Backend = backend
        self.device = getattr(backend, "device", None) or device  # where it runs
        if getattr(backend, "model_name", "") and backend.model_name != self.model_name:
            self.model_name = backend.model_name  # a checkpoint that names its own model
        # A checkpoint's learned video head scores whole videos (har.models.temporal).
        self.video_head = getattr(backend, "video_head", None)
        self.prefetch = 2  # batches decoded ahead of the backend (finite sources)
        # Batches in the runtime at once (finite sources; live ones score one at a
        # time, so a result is never held back waiting for the next batch).
        self.infer_depth = _default_depth()
        self.slabs = RowSlabs()  # the clips' scores and features, off the heap (har.memory)
        # Keep each clip's feature vector on its ClipResult (False when nothing will
        # read them: 2 KB a clip). A temporal video head needs them and keeps them.
        self.keep_features = True
        self._backend_lock = threading.Lock()  # runtimes need not be thread-safe

    # -- options ------------------------------------------------------------
    @property
    def options(self) -> RunOptions:
        """The default :class:`RunOptions` of every call (``stride`` made concrete).
        Assigning a new one changes the defaults of the calls that start after."""
        return self._options

    @options.setter
    def options(self, value: RunOptions) -> None:
        self._options = self.resolve(value)

    def resolve(self, options: RunOptions | None) -> RunOptions:
        """``options`` for one call (None: the defaults), ``stride=None`` made the
        model's clip length."""
        if options is None:
            return self._options
        if not isinstance(options, RunOptions):
            raise TypeError(f"options must be a har.recognizer.RunOptions, not "
                            f"{type(options).__name__}")
        return options.for_clip_len(self.preset.clip_len)

    # The defaults, read-only (a call's own options go in options=, never here).
    stride = property(lambda self: self._options.stride)
    k = property(lambda self: self._options.topk)
    aggregate = property(lambda self: self._options.aggregate)
    aggregate_k = property(lambda self: self._options.aggregate_k)
    timeline = property(lambda self: self._options.timeline)
    tail = property(lambda self: self._options.tail)
    sampler = property(lambda self: self._options.sampler)
    num_clips = property(lambda self: self._options.num_clips)
    max_latency_s = property(lambda self: self._options.max_latency_s)

    # -- public API -------------------------------------------------------
    def stream(self, source: str | Path | Source | Any, *, keep_clips: bool = False,
               live: bool | None = None, progress: ProgressFn | None = None,
               options: RunOptions | None = None) -> "ClipStream":
        """Clip results of one video as they are scored (see :class:`ClipStream`).

        ``source``: a path, URL or :class:`~har.sources.Source`, or an already open
        frame source (anything with ``info``, ``stats``, ``frames(size)``, ``close()``).
        ``live`` (default: the source's own) drops clips the model has no time for.
        ``options``: this stream's :class:`RunOptions` (default: ``self.options``).
        """
        return ClipStream(self, source, keep_clips=keep_clips, live=live, progress=progress,
                          options=options)

    def predict(self, source: str | Path | Source, progress: ProgressFn | None = None, *,
                options: RunOptions | None = None) -> VideoResult:
        """Process one video. Never raises for a bad input: see ``result.error``."""
        stream = self.stream(source, keep_clips=True, live=False, progress=progress,
                             options=options)
        try:
            for _ in stream:
                pass
        except HarError:
            pass  # recorded in the result
        return stream.result()

    def run_many(self, sources: Iterable[str | Path | Source], workers: int = 1, *,
                 keep_clips: bool = True,
                 progress: Callable[[str], ProgressFn | None] | None = None,
                 options: RunOptions | None = None
                 ) -> Iterator[ClipEvent | VideoResult]:
        """Every clip (:class:`ClipEvent`) and every video's result, as they happen.

        One worker: videos in input order. ``workers`` > 1 decodes that many videos at
        once (threads) while the runtime scores their batches one at a time; results
        then come in the order videos finish. At most ``workers`` videos are in flight
        and events wait in a bounded queue, so memory does not grow with the input count.
        A bad input gives a result with ``error``; it never stops the others.
        ``options``: the run's :class:`RunOptions` (default: ``self.options``).
        """
        options = self.resolve(options)  # checked now, not when the first video starts
        if workers <= 1:
            for pos, src in enumerate(sources):
                yield from self._events(src, keep_clips, progress, pos, options)
            return
        yield from self._run_threaded(sources, workers, keep_clips, progress, options)

    def predict_many(self, sources: Iterable[str | Path | Source], workers: int = 1,
                     progress: Callable[[str], ProgressFn | None] | None = None, *,
                     options: RunOptions | None = None) -> Iterator[VideoResult]:
        """One result per source, in input order (bad inputs give results with ``error``).
        Results that finish early wait for the earlier ones (at most ``workers``)."""
        pending: dict[int, VideoResult] = {}
        nxt = 0
        for event in self.run_many(sources, workers, keep_clips=True, progress=progress,
                                   options=options):
            if isinstance(event, ClipEvent):
                continue
            pending[event.input_index] = event
            while nxt in pending:
                yield pending.pop(nxt)
                nxt += 1

    # -- running ------------------------------------------------------------
    def _events(self, src, keep_clips: bool, progress, pos: int,
                options: RunOptions | None = None) -> Iterator[ClipEvent | VideoResult]:
        name = _name(src)
        stream = self.stream(src, keep_clips=keep_clips, live=False,
                             progress=progress(name) if progress else None, options=options)
        try:
            for clip in stream:
                yield ClipEvent(name, clip)
        except HarError:
            pass  # recorded in the result
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the other inputs
            stream.fail(f"{name}: internal error ({type(exc).__name__}: {exc}); "
                        "please report it")
        finally:
            stream.close()
        result = stream.result()
        result.input_index = pos
        yield result

    def _run_threaded(self, sources, workers: int, keep_clips: bool, progress,
                      options: RunOptions | None = None
                      ) -> Iterator[ClipEvent | VideoResult]:
        events: queue.Queue = queue.Queue(maxsize=256)
        todo = iter(enumerate(sources))
        lock = threading.Lock()
        stop = threading.Event()
        finished = object()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    events.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                while not stop.is_set():
                    with lock:
                        nxt = next(todo, None)
                    if nxt is None:
                        return
                    pos, src = nxt
                    gen = self._events(src, keep_clips, progress, pos, options)
                    try:
                        for ev in gen:
                            if not put(ev):
                                return
                    finally:
                        gen.close()
            finally:
                put(finished)

        threads = [threading.Thread(target=work, name=f"har-video-{i}", daemon=True)
                   for i in range(workers)]
        for t in threads:
            t.start()
        alive = len(threads)
        try:
            while alive:
                item = events.get()
                if item is finished:
                    alive -= 1
                    continue
                yield item
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5.0)

    # -- the pipeline (used by ClipStream) -----------------------------------
    def _plan(self, info: VideoInfo, source: str, options: RunOptions | None = None
              ) -> ClipAssembler:
        opts = self.resolve(options)
        L = self.preset.clip_len
        if opts.sampler == "uniform":
            n = info.frames or 0
            if n <= 0:
                raise HarError(f"{source}: frame count unknown; use the sliding sampler")
            if self.preset.fps and info.fps:  # the plan counts frames after resampling
                n = max(1, int(round(n * self.preset.fps / info.fps)))
            return ClipAssembler(L, plan=uniform(n, opts.num_clips, L))
        return ClipAssembler(L, stride=opts.stride, tail=opts.tail, gaps=not self.preset.fps)

    def _batches(self, clips: Iterator[tuple[ClipSpec, np.ndarray]], *, live: bool,
                 progress: ProgressFn | None, info: VideoInfo, counter: "ClipStream",
                 options: RunOptions | None = None
                 ) -> Iterator[tuple[list[_Item], np.ndarray, np.ndarray | None]]:
        """Yield ``(items, logits, features)`` per batch; decoding runs in a thread."""
        bs = self.backend.batch_size
        channel = _LatestChannel(bs) if live else _FiniteChannel(bs * self.prefetch)
        max_latency = self.resolve(options).max_latency_s
        if max_latency is None and live:
            max_latency = LIVE_MAX_LATENCY_S
        stop = threading.Event()
        began = threading.Event()  # set by the decode thread first thing
        preset = self.preset

        prof = profile()
        depth = 1 if live else max(1, self.infer_depth)

        def produce() -> None:
            began.set()
            if stop.is_set():  # stopped before it ran: never touch the video
                return
            try:
                if prof is None:
                    for spec, clip in clips:
                        if stop.is_set():
                            return
                        ready = time.monotonic()
                        channel.put(_Item(spec, preset(clip[None]), ready), stop)
                else:  # the same loop, timed: decode, preprocess, wait for room
                    it = iter(clips)
                    while True:
                        t0 = time.monotonic()
                        nxt = next(it, None)
                        t1 = time.monotonic()
                        prof.add("decode", t1 - t0)
                        if nxt is None or stop.is_set():
                            break
                        spec, clip = nxt
                        item = _Item(spec, preset(clip[None]), t1)
                        t2 = time.monotonic()
                        prof.add("preprocess", t2 - t1)
                        channel.put(item, stop)
                        prof.add("decode_blocked", time.monotonic() - t2)
                    # CPU seconds of this thread (decode + preprocess + queueing): the
                    # share of the cores the runtime did not get
                    prof.add("decode_thread_cpu", time.thread_time())
                    if stop.is_set():
                        return
                channel.put(_DONE, stop)
            except BaseException as exc:  # handed to the consumer, re-raised there
                channel.put(exc, stop)

        worker = threading.Thread(target=produce, name="har-decode", daemon=True)
        counter._done_frames = 0
        ended = False
        launched = False
        try:
            # Inside the try: a signal that lands while start() waits for the new thread
            # (a Ctrl-C/SIGTERM raises there) must still reach the join below, or the
            # video would be closed under a thread that is about to read it.
            launched = True
            worker.start()
            pending: collections.deque = collections.deque()  # (items, Pending) in order
            while not ended:
                t_wait = time.monotonic()
                if pending and pending[0][1].done():
                    # the oldest batch is scored: hand it over before waiting for clips
                    yield self._collect(pending, progress, info, counter, channel)
                    continue
                first = channel.get(timeout=0.0 if pending else 0.5)
                if first is None and pending:
                    # no clip ready for the next batch: deliver the one in the runtime
                    # rather than hold its results back while the decoder catches up
                    yield self._collect(pending, progress, info, counter, channel)
                    continue
                if counter.halted:
                    break
                if first is None:
                    if worker.is_alive():
                        continue
                    first = channel.get(timeout=0.0)  # the end marker, if still there
                    if first is None:
                        break
                if first is _DONE:
                    break
                if isinstance(first, BaseException):
                    raise first
                items = [first]
                deadline = None if max_latency is None else first.ready_at + max_latency
                while len(items) < bs:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if wait is None:
                        nxt = channel.get(timeout=0.5)
                        while nxt is None and worker.is_alive():
                            nxt = channel.get(timeout=0.5)
                    else:
                        nxt = channel.get(timeout=wait) if wait > 0 else channel.get(0.0)
                    if nxt is None:
                        break
                    if nxt is _DONE:
                        ended = True
                        break
                    if isinstance(nxt, BaseException):
                        raise nxt
                    items.append(nxt)
                if prof is not None:
                    prof.add("wait_clips", time.monotonic() - t_wait)
                batch = np.concatenate([it.batch for it in items]) if len(items) > 1 \
                    else items[0].batch
                t_submit = time.monotonic()
                with self._backend_lock:
                    # one batch at a time: infer() as before issue 23 (OpenVINO splits
                    # it over its requests); more: the runtime's own submit()
                    job = (_submit(self.backend, batch) if depth > 1 else
                           Pending.run(lambda b: _infer(self.backend, b), batch))
                if prof is not None:
                    prof.add("submit", time.monotonic() - t_submit)
                pending.append((items, job))
                if len(pending) >= depth:
                    yield self._collect(pending, progress, info, counter, channel)
            while pending:  # the end of the video: the batches still in the runtime
                yield self._collect(pending, progress, info, counter, channel)
        finally:
            stop.set()
            try:  # a second Ctrl-C may land in join(): still record whether it ended
                channel.drain()
                if launched:  # start() interrupted: the thread runs soon, sees stop, ends
                    began.wait(timeout=5.0)
                    if began.is_set():
                        worker.join(timeout=0.5 if counter.halted else 5.0)
            finally:
                counter.reader_alive = worker.is_alive() or (launched and not began.is_set())
                counter.skipped = channel.dropped


    def _collect(self, pending: collections.deque, progress, info, counter, channel
                 ) -> tuple[list[_Item], np.ndarray, np.ndarray | None]:
        """Wait for the oldest batch in the runtime and return its results."""
        items, job = pending.popleft()
        prof = profile()
        t0 = time.monotonic()
        try:
            logits, feats = _outputs(job.result())
        except BaseException:
            for _, other in pending:  # let the runtime finish what it holds
                try:
                    other.result(timeout=30.0)
                except BaseException:  # noqa: BLE001 - the first error is the one raised
                    pass
            pending.clear()
            raise
        if prof is not None:
            prof.add("wait_runtime", time.monotonic() - t0)
            prof.busy(job.submitted_at, job.done_at or time.monotonic())
        counter.skipped = channel.dropped
        if progress is not None:
            end = max(it.spec.end_frame for it in items)
            progress(max(0, end - counter._done_frames), info)
            counter._done_frames = max(counter._done_frames, end)
        return items, logits, feats


def _name(src) -> str:
    if isinstance(src, Source):
        return src.text
    text = getattr(src, "source", None)
    if text is not None and not isinstance(src, (str, Path)):
        return str(text)
    return str(src)


class ClipStream:
    """One video's clip results, as an iterator; see :meth:`Recognizer.stream`.

    >>> stream = rec.stream("video.mp4")         # doctest: +SKIP
    >>> for clip in stream:                      # doctest: +SKIP
    ...     print(clip.index, clip.top[0].label, stream.snapshot().top[0].label)
    >>> stream.result().top                      # doctest: +SKIP

    Iterating raises :class:`~har.errors.HarError` when the source cannot be opened or
    decoded; :meth:`result` then has ``error`` set. ``info`` is the video's header once
    it is open; ``skipped`` counts clips a live stream dropped while the model was busy.
    """

    def __init__(self, rec: Recognizer, source, *, keep_clips: bool, live: bool | None,
                 progress: ProgressFn | None, options: RunOptions | None = None) -> None:
        self._rec = rec
        # This stream's options, fixed now: a later change of rec.options, or another
        # stream's options, never reaches it.
        self.options = opts = rec.resolve(options)
        if isinstance(source, (str, Path)):
            source = parse_source(str(source))
        self.source: Source | None = source if isinstance(source, Source) else None
        self._frame_source = None if isinstance(source, Source) else source
        self.path = _name(source)
        self.live = bool(self.source.live if live is None and self.source else live)
        self.info: VideoInfo | None = None
        self.skipped = 0
        self.halted = False  # stop() was called
        self.reader_alive = False  # the decode thread outlived the stream (halted mid-read)
        self._progress = progress
        self._base = VideoResult(path=self.path)
        self._summary = Summary(rec.labels, k=opts.topk, aggregate=opts.aggregate,
                                aggregate_k=opts.aggregate_k, timeline=opts.timeline,
                                keep_clips=keep_clips, video_head=rec.video_head)
        self._final: VideoResult | None = None
        self._gen: Iterator[ClipResult] | None = None

    def __iter__(self) -> "ClipStream":
        return self

    def __next__(self) -> ClipResult:
        if self._gen is None:
            self._gen = self._run()
        try:
            return next(self._gen)
        except HarError as exc:
            self.fail(str(exc))
            raise

    def fail(self, message: str) -> None:
        """Record that the video failed (its result carries ``error``)."""
        self._final = VideoResult(path=self.path, error=message)
        self._copy_meta(self._final)

    def stop(self) -> None:
        """Ask the stream to end soon (from any thread, e.g. a timer or a signal
        handler): iteration ends within about half a second, even while the source
        is blocked waiting for data."""
        self.halted = True
        stopper = getattr(self._frame_source, "stop", None)
        if stopper is not None:
            stopper()

    def close(self) -> None:
        """Stop decoding (and release the video) before the end."""
        if self._gen is not None:
            self._gen.close()

    def snapshot(self) -> VideoResult:
        """The video so far: scores, top labels, evidence and segments."""
        if self._final is not None:
            return self._final
        return self._summary.snapshot(self._base)

    def result(self) -> VideoResult:
        """The final result (after the stream ended; before that, a snapshot)."""
        return self.snapshot()

    def _copy_meta(self, result: VideoResult) -> None:
        b = self._base
        result.fps, result.width, result.height = b.fps, b.width, b.height
        result.codec, result.duration_s, result.frames = b.codec, b.duration_s, b.frames

    def _run(self) -> Iterator[ClipResult]:
        rec = self._rec
        prof = profile()
        if prof is not None:
            prof.mark("stream")
        video = self._frame_source or open_video(self.source)
        batches = None
        try:
            info = self.info = video.info
            base = self._base
            base.fps, base.width, base.height = info.fps, info.width, info.height
            base.codec, base.duration_s = info.codec, info.duration_s
            size = rec.preset.resized_size(info.height, info.width)
            opts = self.options
            assembler = rec._plan(info, self.path, opts)
            frames = video.frames(size=size)
            if rec.preset.fps:
                frames = resample(frames, rec.preset.fps)
            clips = assembler(frames)
            slabs = rec.slabs
            batches = rec._batches(clips, live=self.live, progress=self._progress,
                                   info=info, counter=self, options=opts)
            for items, logits, feats in batches:
                probs = softmax(logits)
                if not (rec.keep_features or rec.video_head is not None):
                    feats = None
                for i, (item, row) in enumerate(zip(items, probs)):
                    spec = item.spec
                    clip = ClipResult(index=spec.index, start_frame=spec.start_frame,
                                      end_frame=spec.end_frame, start_s=spec.start_s,
                                      end_s=spec.end_s, top=topk(row, rec.labels, opts.topk),
                                      probs=slabs.keep(row),
                                      features=None if feats is None else slabs.keep(feats[i]),
                                      ready_at=item.ready_at)
                    self._summary.add(clip)
                    yield clip
            stats = video.stats
            base.frames = stats.frames
            base.warnings = list(stats.warnings)
            if base.duration_s is None or stats.stopped_early or base.warnings:
                base.duration_s = stats.end_s or base.duration_s
            if self._summary.count == 0:
                raise HarError(f"{self.path}: no frame could be decoded")
            self._final = self._summary.snapshot(base)
        finally:
            # Close the batches first: that stops and joins the decode thread, which may
            # be inside the container right now.
            if batches is not None:
                batches.close()  # stops the decode thread, waits, sets reader_alive
            if prof is not None:
                prof.mark("stream")
            if self.reader_alive:
                # The decode thread is still inside a read: closing the container
                # under it is unsafe. A frame source that can stop closes itself
                # when its read returns.
                stopper = getattr(video, "stop", None)
                if stopper is not None:
                    stopper()
            else:
                video.close()
