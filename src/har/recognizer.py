"""The orchestrator: video -> clips -> preprocessing -> backend -> scores.

Decoding and preprocessing run in a producer thread (PyAV and PyTorch release the
GIL) that feeds ready batches through a bounded queue to the backend, so the slower
of decoding and inference sets the pace, and memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .aggregate import AGGREGATES, softmax, topk, video_scores
from .backends import Backend, make_backend
from .errors import HarError
from .models.zoo import DEFAULT_MODEL, ModelEntry, get_entry, load_model
from .results import ClipResult, VideoResult
from .sampling import ClipAssembler, ClipSpec, uniform
from .timeline import TimelineOptions
from .video import VideoInfo, VideoSource

# Called with the number of newly processed frames and the video's header info.
ProgressFn = Callable[[int, VideoInfo], None]
_DONE = object()


class Recognizer:
    """Recognize Kinetics actions in videos.

    >>> rec = Recognizer("r3d34-k400", weights="resnet-34-kinetics.pth")  # doctest: +SKIP
    >>> result = rec.predict("video.mp4")                                 # doctest: +SKIP
    >>> result.top[0].label, [c.top[0].label for c in result.clips]       # doctest: +SKIP
    """

    def __init__(self, model: str = DEFAULT_MODEL, weights: str | Path | None = None,
                 device: str = "cpu", *, stride: int = 16, topk: int = 5,
                 sampler: str = "sliding", num_clips: int = 10,
                 batch_size: int | None = None, module: nn.Module | None = None,
                 backend: Backend | str = "torch", precision: str = "auto",
                 sha256: str | None = None,
                 aggregate: str = "mean", aggregate_k: int = 3,
                 timeline: TimelineOptions | None = None, tail: str = "pad",
                 max_latency_s: float | None = None) -> None:
        # aggregate: how clip scores pool into the video's ("mean", the paper's
        # protocol; "max"; "topk-mean" over the aggregate_k best clips). timeline:
        # segment settings (har.timeline). Both only post-process the clip scores.
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
        if aggregate_k < 1:
            raise ValueError("aggregate_k must be at least 1")
        self.aggregate, self.aggregate_k = aggregate, aggregate_k
        self.timeline = timeline or TimelineOptions()
        self.entry: ModelEntry = get_entry(model)
        self.labels = self.entry.class_names
        self.preset = self.entry.preset
        if stride < 1:
            raise ValueError("stride must be a positive number of frames")
        if sampler not in ("sliding", "uniform"):
            raise ValueError("sampler must be 'sliding' or 'uniform'")
        self.stride, self.k, self.sampler, self.num_clips = stride, topk, sampler, num_clips
        if tail not in ("pad", "drop"):
            raise ValueError("tail must be 'pad' or 'drop'")
        self.tail, self.max_latency_s = tail, max_latency_s
        # backend: a runtime name ("torch", "openvino", "onnxruntime", "opencv", "auto")
        # or a ready Backend object; precision: "auto", "fp32", "fp16" or "bf16".
        if isinstance(backend, str):
            if module is None:
                module = load_model(model, weights=weights, device="cpu", sha256=sha256)
            backend = make_backend(backend, module, device, batch_size=batch_size,
                                   precision=precision,
                                   input_shape=(self.preset.clip_len, self.preset.crop,
                                                self.preset.crop))
        self.backend: Backend = backend
        self.prefetch = 2  # batches decoded ahead of the backend
        self._backend_lock = threading.Lock()  # backends need not be thread-safe

    # -- public API -------------------------------------------------------
    def predict(self, source: str | Path, progress: ProgressFn | None = None) -> VideoResult:
        """Process one video. Never raises for a bad input: see ``result.error``."""
        result = VideoResult(path=str(source))
        try:
            for _ in self._run(source, result, progress):
                pass
        except HarError as exc:
            result.error = str(exc)
        return result

    def predict_many(self, sources: Iterable[str | Path], workers: int = 1,
                     progress: Callable[[str], ProgressFn | None] | None = None
                     ) -> Iterator[VideoResult]:
        """One result per source, in input order; bad inputs give results with ``error``.

        ``workers`` > 1 decodes that many videos at once (threads: PyAV and FFmpeg's
        scaler release the GIL) while the backend runs their batches one at a time.
        That is what keeps a many-core GPU machine busy on an archive of short videos;
        on a 2-core CPU the model is the limit and one worker is enough.
        ``progress(source)`` may return a per-video progress callback.
        """
        if workers <= 1:
            for src in sources:
                yield self._predict_safe(src, progress(str(src)) if progress else None)
            return
        from concurrent.futures import ThreadPoolExecutor

        srcs = list(sources)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="har-video") as pool:
            futures = [pool.submit(self._predict_safe, s,
                                   progress(str(s)) if progress else None) for s in srcs]
            for fut in futures:
                yield fut.result()

    def _predict_safe(self, source, progress: ProgressFn | None) -> VideoResult:
        try:
            return self.predict(source, progress)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the other inputs
            return VideoResult(path=str(source), error=f"{source}: internal error "
                               f"({type(exc).__name__}: {exc}); please report it")

    def iter_clips(self, source: str | Path, result: VideoResult | None = None
                   ) -> Iterator[ClipResult]:
        """Stream clip results as they are computed (errors raise HarError)."""
        yield from self._run(source, result or VideoResult(path=str(source)), None)

    # -- the pipeline -----------------------------------------------------
    def _plan(self, video: VideoSource) -> ClipAssembler:
        L = self.preset.clip_len
        if self.sampler == "uniform":
            n = video.info.frames or 0
            if n <= 0:
                raise HarError(f"{video.source}: frame count unknown; use the sliding sampler")
            return ClipAssembler(L, plan=uniform(n, self.num_clips, L))
        return ClipAssembler(L, stride=self.stride, tail=self.tail)

    def _run(self, source, result: VideoResult, progress: ProgressFn | None
             ) -> Iterator[ClipResult]:
        video = VideoSource(source)
        try:
            info = video.info
            result.fps, result.width, result.height = info.fps, info.width, info.height
            result.codec, result.duration_s = info.codec, info.duration_s
            size = self.preset.resized_size(info.height, info.width)
            assembler = self._plan(video)
            frames = video.frames(size=size)
            probs: list[np.ndarray] = []
            for specs, logits in self._batches(assembler(frames), progress, info):
                p = softmax(logits)
                for spec, row in zip(specs, p):
                    clip = ClipResult(index=spec.index, start_frame=spec.start_frame,
                                      end_frame=spec.end_frame, start_s=spec.start_s,
                                      end_s=spec.end_s, top=topk(row, self.labels, self.k),
                                      probs=row)
                    result.clips.append(clip)
                    probs.append(row)
                    yield clip
            stats = video.stats
            result.frames = stats.frames
            result.warnings = list(stats.warnings)
            if result.duration_s is None or stats.stopped_early or result.warnings:
                result.duration_s = stats.end_s or result.duration_s
            if not probs:
                raise HarError(f"{source}: no frame could be decoded")
            result.probs = video_scores(np.stack(probs))
            result.top = topk(result.probs, self.labels, self.k)
            self._summarize(result)
        finally:
            video.close()

    def _summarize(self, result: VideoResult) -> None:
        """Post-process the clip scores: the video score by ``self.aggregate``, the
        evidence clips of the top label, and the action segments (har.timeline)."""
        from .aggregate import aggregate_scores, evidence_clips
        from .timeline import video_segments

        clips = [c for c in result.clips if c.probs is not None]
        if not clips:
            return
        probs = np.stack([c.probs for c in clips])
        if self.aggregate != "mean":
            result.probs = aggregate_scores(probs, self.aggregate, self.aggregate_k)
            result.top = topk(result.probs, self.labels, self.k)
        best = int(np.argmax(result.probs))  # = result.top[0] (first index wins ties)
        result.evidence = [clips[i].index
                           for i in evidence_clips(probs, best, self.aggregate_k)]
        result.segments = video_segments(result, self.labels, self.timeline)

    def _batches(self, clips: Iterator[tuple[ClipSpec, np.ndarray]],
                 progress: ProgressFn | None, info: VideoInfo):
        """Yield ``(specs, logits)`` per batch; decoding runs ahead in a thread."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        bs = self.backend.batch_size

        def produce() -> None:
            try:
                specs: list[ClipSpec] = []
                arrays: list[np.ndarray] = []
                for spec, clip in clips:
                    if stop.is_set():
                        return
                    specs.append(spec)
                    arrays.append(clip)
                    if len(specs) == bs:
                        q.put((specs, self.preset(np.stack(arrays))))
                        specs, arrays = [], []
                if specs:
                    q.put((specs, self.preset(np.stack(arrays))))
                q.put(_DONE)
            except BaseException as exc:  # handed to the consumer, re-raised there
                q.put(exc)

        worker = threading.Thread(target=produce, name="har-decode", daemon=True)
        worker.start()
        done_frames = 0
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                specs, batch = item
                with self._backend_lock:
                    logits = self.backend(batch)
                if progress is not None:
                    end = max(s.end_frame for s in specs)
                    progress(end - done_frames, info)
                    done_frames = max(done_frames, end)
                yield specs, logits
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)
