"""``har index --engine ray``: the indexing pipeline as a Ray Data job.

* Every video is a row of a Ray Dataset; a CPU task per video (``Dataset.map``) runs
  :meth:`har.Recognizer.stream` on it: decoding, clip assembly and preprocessing happen
  there, exactly as in the local engine (no second implementation).
* The model lives in a pool of Ray actors (:class:`ModelActor`), one GPU each when the
  cluster has GPUs. The tasks' recognizers score their batches through
  :class:`ActorRuntime`, a runtime object that sends each batch to an actor.
* Results stream back to the driver, which writes each video to the same SQLite
  database in one transaction (the local engine's :func:`~har.archive.indexer.write_result`),
  or, with ``--parquet DIR``, the workers write the clip rows as Parquet files.

On a multi-node cluster every node needs ``har-video`` installed (or a ``runtime_env``)
and the video paths and ``--weights`` must be readable on every node (a shared file
system); see docs/archive.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import HarError
from ..runtimes.base import RuntimeBase
from .export import parquet_schema as _parquet_schema  # the one schema of clip rows


@dataclass(frozen=True)
class ModelSpec:
    """What an actor needs to load the runtime (picklable): the arguments of
    :func:`har.runtimes.load_runtime`, the one model factory, which the local engine's
    Recognizer uses too. ``weights`` may be a file, a URL or a ``har train`` run folder;
    a fine-tuned checkpoint keeps its labels and preset (tests/test_factory.py)."""

    model: str
    weights: str | None = None
    sha256: str | None = None
    backend: str = "auto"
    device: str = "cpu"  # on a cluster with GPUs, "cpu" means: the actors take "cuda"
    precision: str = "auto"
    batch_size: int | None = None


@dataclass(frozen=True)
class ClipSpecs:
    """The recognizer's clip and timeline settings (picklable)."""

    stride: int = 16
    topk: int = 5
    sampler: str = "sliding"
    num_clips: int = 10
    tail: str = "pad"
    aggregate: str = "mean"
    aggregate_k: int = 3
    timeline: Any = None  # har.timeline.TimelineOptions (None: its defaults)


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray job runs."""

    address: str | None = None  # a cluster (ray://head:10001, auto); None: a local instance
    actors: int = 1  # model actors (one GPU each on a cluster with GPUs)
    parquet: str | None = None  # write the clip rows as Parquet under this folder instead
    progress: bool = False  # Ray Data's progress bars on stderr
    num_cpus: int | None = None  # a local instance's CPUs (default: $HAR_RAY_NUM_CPUS or all)


class RayMissing(HarError):
    """Ray (with Ray Data) is not installed."""


def _ray():
    try:
        import ray
    except ImportError:
        from ..defaults import pip_hint

        raise RayMissing(f"--engine ray needs Ray, which is not installed; install it "
                         f"with: {pip_hint('ray')}") from None
    return ray


class ModelActor:
    """Holds one loaded runtime and scores batches ((N, 3, T, H, W) float32). The
    runtime is loaded as the local engine loads it (:func:`har.runtimes.load_runtime`),
    so a fine-tuned checkpoint or an exported file brings its labels, preset and head."""

    def __init__(self, spec: ModelSpec) -> None:
        from ..runtimes import load_runtime

        self.error = None
        try:
            self.backend = load_runtime(spec.model, spec.weights, backend=spec.backend,
                                        device=spec.device, precision=spec.precision,
                                        batch_size=spec.batch_size, sha256=spec.sha256)
        except HarError as exc:  # told to the driver by info(): one line, not an actor death
            self.error = str(exc)

    def info(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        b = self.backend
        return {"name": b.name, "batch_size": b.batch_size,
                "precision": getattr(b, "precision", None), "device": getattr(b, "device", "cpu"),
                "model_info": getattr(b, "info", None),  # har.models.info.ModelInfo
                "model_name": getattr(b, "model_name", ""),
                "weights_sha256": getattr(b, "weights_sha256", None)}

    def infer(self, batch: np.ndarray):
        from ..recognizer import _infer

        return _infer(self.backend, batch)


class ActorRuntime(RuntimeBase):
    """A runtime whose batches are scored by the Ray actors, round robin. It carries
    the actors' provenance (labels, preset, model name, weights digest, video head)."""

    def __init__(self, actors: list, info: dict) -> None:
        self.actors = actors
        self.name = f"ray/{info['name']}"
        self.batch_size = info["batch_size"]
        self.precision = info["precision"]
        self.device = info["device"]
        if info.get("model_info") is not None:
            self.set_info(info["model_info"])
        else:  # a runtime without a ModelInfo: what it says of itself
            self.model_name = info.get("model_name") or ""
            self.weights_sha256 = info.get("weights_sha256")
        self._next = itertools.cycle(range(len(actors)))
        self._lock = threading.Lock()

    def infer(self, batch):
        import ray

        with self._lock:
            actor = self.actors[next(self._next)]
        x = batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        return ray.get(actor.infer.remote(x))


def _recognizer(model: str, clips: ClipSpecs, runtime: ActorRuntime):
    from ..recognizer import Recognizer

    return Recognizer(model, backend=runtime, stride=clips.stride, topk=clips.topk,
                      sampler=clips.sampler, num_clips=clips.num_clips, tail=clips.tail,
                      aggregate=clips.aggregate, aggregate_k=clips.aggregate_k,
                      timeline=clips.timeline)


def _index_one(row: dict, *, model: str, clips: ClipSpecs, actors: list, info: dict) -> dict:
    """A Ray Data task: one video through Recognizer.stream, its result pickled."""
    rec = _recognizer(model, clips, ActorRuntime(actors, info))
    result = rec.predict(row["source"])
    result.probs = None  # the clips keep theirs (for the embeddings)
    return {"pos": row["pos"], "result": pickle.dumps(result)}


def _clip_table(batch: dict):
    """Parquet rows for a cluster-wide run: one per clip, with its video's fields (a
    failed video: one row with its error and no clip). One schema for every file."""
    import json

    import pyarrow as pa

    from ..writers import video_status
    from .indexer import _embedding

    rows = []
    for blob in batch["result"]:
        r = pickle.loads(blob)
        base = {"path": r.path, "status": video_status(r), "error": r.error,
                "duration_s": r.duration_s, "fps": r.fps, "frames": r.frames}
        if not r.clips:
            rows.append(base)
        for c in r.clips:
            emb = _embedding(c)
            rows.append({**base, "clip": c.index, "start_frame": c.start_frame,
                         "end_frame": c.end_frame, "start_s": c.start_s, "end_s": c.end_s,
                         "top_label": c.top[0].label, "top_score": float(c.top[0].score),
                         "topk": json.dumps([[p.label, round(float(p.score), 6)]
                                             for p in c.top]),
                         "embedding": None if emb is None else
                         emb[1].astype(np.float16).astype(np.float32).tolist()})
    return pa.Table.from_pylist(rows, schema=_parquet_schema(pa))


def index_ray(conn, todo: list, *, spec: ModelSpec, clips: ClipSpecs,
              options: RayOptions = RayOptions(), settings: dict | None = None,
              db_name: str = "", on_result: Callable[[Any], None] | None = None
              ) -> list | None:
    """Run ``todo`` ([(source, FileKey)]) on Ray; write each video into ``conn`` as it
    comes back and return the results (lightened), or with ``options.parquet`` have the
    workers write the Parquet files (None). ``settings``: the clip and timeline options
    recorded with each video. Raises :class:`~har.archive.indexer.ModelMismatch` before
    any work when the archive was indexed with another model."""
    from .indexer import claim_model, model_info, write_result

    ray = _ray()
    init = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False}
    if options.address:
        ray.init(address=options.address, **init)
    else:
        cpus = options.num_cpus or int(os.environ.get("HAR_RAY_NUM_CPUS", os.cpu_count() or 1))
        ray.init(num_cpus=cpus, **init)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = options.progress
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus and spec.device == "cpu":
            spec = dataclasses.replace(spec, device="cuda")  # the cluster's GPUs hold it
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(ModelActor)
        actors = [remote.remote(spec) for _ in range(options.actors)]
        info = ray.get(actors[0].info.remote())
        if "error" in info:
            raise HarError(info["error"])  # the model could not be loaded: its one line
        items = [{"pos": i, "source": getattr(src, "url", str(src))}
                 for i, (src, _) in enumerate(todo)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map(_index_one, num_cpus=1, fn_kwargs={"model": spec.model, "clips": clips,
                                                       "actors": actors, "info": info})
        if options.parquet:
            ds.map_batches(_clip_table, batch_size=1, batch_format="numpy",
                           num_cpus=0.5).write_parquet(options.parquet)
            return None
        # The archive's record of the run: what the local engine records.
        minfo = model_info(_recognizer(spec.model, clips, ActorRuntime(actors, info)),
                           settings or {}, spec.weights)
        claim_model(conn, minfo, db_name)
        results = []
        for row in ds.iter_rows():
            r = pickle.loads(row["result"])
            write_result(conn, todo[row["pos"]][1], r, minfo)
            r.clips = []
            results.append(r)
            if on_result is not None:
                on_result(r)
        return results
    finally:
        ray.shutdown()
