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

import itertools
import os
import pickle
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """What an actor needs to load the runtime (picklable)."""

    model: str
    weights: str | None
    sha256: str | None
    backend: str
    device: str
    precision: str
    batch_size: int | None


@dataclass(frozen=True)
class ClipSpecs:
    """The recognizer's clip and timeline settings (picklable)."""

    stride: int
    topk: int
    sampler: str
    num_clips: int
    tail: str
    aggregate: str
    aggregate_k: int
    timeline: Any  # har.timeline.TimelineOptions


def _ray():
    try:
        import ray
    except ImportError:
        from ..cli import UsageError
        from ..defaults import pip_hint

        raise UsageError(f"--engine ray needs Ray, which is not installed; install it "
                         f"with: {pip_hint('ray')}") from None
    return ray


class ModelActor:
    """Holds one loaded runtime and scores batches ((N, 3, T, H, W) float32)."""

    def __init__(self, spec: ModelSpec) -> None:
        from ..backends import make_backend
        from ..models.zoo import get_entry, load_model

        entry = get_entry(spec.model)
        module = load_model(spec.model, weights=spec.weights, device="cpu", sha256=spec.sha256)
        p = entry.preset
        self.backend = make_backend(spec.backend, module, spec.device,
                                    batch_size=spec.batch_size, precision=spec.precision,
                                    input_shape=(p.clip_len, p.crop, p.crop))

    def info(self) -> dict:
        b = self.backend
        return {"name": b.name, "batch_size": b.batch_size,
                "precision": getattr(b, "precision", None), "device": getattr(b, "device", "cpu")}

    def infer(self, batch: np.ndarray):
        from ..recognizer import _infer

        return _infer(self.backend, batch)


class ActorRuntime:
    """A runtime (the :class:`har.backends.Backend` interface) whose batches are scored
    by the Ray actors, round robin."""

    def __init__(self, actors: list, info: dict) -> None:
        self.actors = actors
        self.name = f"ray/{info['name']}"
        self.batch_size = info["batch_size"]
        self.precision = info["precision"]
        self.device = info["device"]
        self._next = itertools.cycle(range(len(actors)))
        self._lock = threading.Lock()

    def infer(self, batch):
        import ray

        with self._lock:
            actor = self.actors[next(self._next)]
        x = batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        return ray.get(actor.infer.remote(x))

    def __call__(self, batch):
        return self.infer(batch)[0]


def _index_one(row: dict, *, model: str, clips: ClipSpecs, actors: list, info: dict) -> dict:
    """A Ray Data task: one video through Recognizer.stream, its result pickled."""
    from ..recognizer import Recognizer

    rec = Recognizer(model, backend=ActorRuntime(actors, info), stride=clips.stride,
                     topk=clips.topk, sampler=clips.sampler, num_clips=clips.num_clips,
                     tail=clips.tail, aggregate=clips.aggregate,
                     aggregate_k=clips.aggregate_k, timeline=clips.timeline)
    result = rec.predict(row["source"])
    result.probs = None  # the clips keep theirs (for the embeddings)
    return {"pos": row["pos"], "result": pickle.dumps(result)}


def _parquet_schema(pa):
    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("error", pa.string()),
        ("duration_s", pa.float64()), ("fps", pa.float64()), ("frames", pa.int64()),
        ("clip", pa.int64()), ("start_frame", pa.int64()), ("end_frame", pa.int64()),
        ("start_s", pa.float64()), ("end_s", pa.float64()), ("top_label", pa.string()),
        ("top_score", pa.float64()), ("topk", pa.string()),
        ("embedding", pa.list_(pa.float32()))])


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


def index_ray(args, conn, todo: list) -> list | None:
    """Run ``todo`` ([(source, FileKey)]) on Ray; write each video as it comes back
    (the results, lightened), or with ``args.parquet`` the Parquet files (None)."""
    from ..cli.common import timeline_options
    from .indexer import ModelInfo, weights_sha256, write_result

    ray = _ray()
    init = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": False}
    if args.address:
        ray.init(address=args.address, **init)
    else:
        ray.init(num_cpus=int(os.environ.get("HAR_RAY_NUM_CPUS", os.cpu_count() or 1)), **init)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(sys.stderr.isatty() and not args.no_progress)
        gpus = ray.cluster_resources().get("GPU", 0)
        device = args.device
        if gpus and device == "cpu":
            device = "cuda"  # the cluster's GPUs hold the model
        spec = ModelSpec(args.model, args.weights, args.sha256, args.backend, device,
                         args.precision, args.batch_size)
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(ModelActor)
        actors = [remote.remote(spec) for _ in range(args.ray_actors)]
        info = ray.get(actors[0].info.remote())
        clips = ClipSpecs(args.stride, args.topk, args.sampler, args.num_clips, args.tail,
                          args.aggregate, args.aggregate_k, timeline_options(args))
        items = [{"pos": i, "source": getattr(src, "url", str(src))}
                 for i, (src, _) in enumerate(todo)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map(_index_one, num_cpus=1, fn_kwargs={"model": args.model, "clips": clips,
                                                       "actors": actors, "info": info})
        if args.parquet:
            ds.map_batches(_clip_table, batch_size=1, batch_format="numpy",
                           num_cpus=0.5).write_parquet(args.parquet)
            print(f"har index: clip rows written as Parquet under {args.parquet}",
                  file=sys.stderr)
            return None
        from ..fsutil import clean_text
        from ..models.zoo import get_entry

        entry = get_entry(args.model)

        class _Rec:  # what model_info needs
            backend = ActorRuntime(actors, info)
            preset = entry.preset
            model_name = entry.name

        from ..cli.index import model_info

        minfo = model_info(args, _Rec())
        if minfo.weights_sha256 is None:
            minfo = ModelInfo(minfo.model, weights_sha256(args.weights, _Rec()), minfo.settings)
        results = []
        for row in ds.iter_rows():
            r = pickle.loads(row["result"])
            write_result(conn, todo[row["pos"]][1], r, minfo)
            if r.error:
                print(f"error: {clean_text(r.error)}", file=sys.stderr)
            r.clips = []
            results.append(r)
        return results
    finally:
        ray.shutdown()
