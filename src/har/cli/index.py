"""``har index``, ``har search``, ``har similar``, ``har export-index``: video archives.

``har index`` stores every clip's results, the action segments and the clip embeddings
of many videos in one SQLite database (one transaction per video, so a killed run loses
at most the video in flight, and a re-run skips what is already there). The other three
commands read it. See docs/archive.md for the schema.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..defaults import pip_hint
from ..fsutil import clean_text, display_path
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, fmt_time, make_recognizer, positive_int,
                     probability, seconds, timeline_settings)

DEFAULT_DB = "har-index.db"

INDEX_EPILOG = """\
examples:
  har index videos/ --db archive.db             index a folder (re-runs skip what is done)
  har index 'cams/**/*.mp4' --db archive.db --retry-failed
  har index videos/ --db archive.db --engine ray --address ray://head:10001
  har search falling --db archive.db            where does someone fall?
  har similar clip.mp4 --start 3 --end 5 --db archive.db

exit codes:
  0 every input indexed (or already there)   1 an input failed (recorded as failed)
  2 bad command line   4 the model could not be loaded   130 interrupted (finished
  videos are kept; run again to go on)
"""


def register(sub) -> None:
    p = add_command(sub, "index", help="index videos into a searchable archive (SQLite)",
                    description="Recognize actions in many videos and store every clip's "
                    "results, the action segments and the clip embeddings in a SQLite "
                    "archive. Resumable: a re-run skips files indexed with the same size "
                    "and modification time.", epilog=INDEX_EPILOG)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, directories (recursive), quoted globs or URLs")
    p.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                   help=f"the archive database (default {DEFAULT_DB}; created if missing)")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the inputs that failed before (skipped otherwise)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="videos decoded at once (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default) or ray: a Ray Data job (decoding as CPU tasks, "
                        f"the model in an actor pool; needs {pip_hint('ray')})")
    p.add_argument("--address", metavar="ADDR",
                   help="--engine ray: the cluster (e.g. ray://head:10001 or auto); "
                        "default: a local Ray instance")
    p.add_argument("--ray-actors", type=positive_int, default=1, metavar="N",
                   help="--engine ray: model actors (default 1; one per GPU on a GPU cluster)")
    p.add_argument("--parquet", metavar="DIR",
                   help="--engine ray: write the clip rows as Parquet files under DIR "
                        "instead of into --db (written by the cluster's workers; --db is "
                        "only read, to skip what it holds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_arguments(p)
    add_clip_arguments(p)
    add_timeline_arguments(p, files=False)
    p.set_defaults(func=cmd_index)

    s = add_command(sub, "search", help="find the segments of an action in an archive",
                    description="Segments of an action in the archive, ranked by score. "
                    "QUERY is a label: its exact name, a prefix ('play') or a close "
                    "spelling ('juggling balls').")
    s.add_argument("query", nargs="?", metavar="QUERY", help="an action label")
    s.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                   help=f"the archive (default {DEFAULT_DB})")
    s.add_argument("--min-score", type=probability, default=0.0, metavar="P",
                   help="only segments whose peak score is at least P")
    s.add_argument("--limit", type=positive_int, default=20, metavar="N",
                   help="at most N results (default 20)")
    s.add_argument("--summary", action="store_true",
                   help="instead: per label, the segments, videos, seconds and clips")
    s.add_argument("--json", action="store_true", help="JSON on stdout")
    s.set_defaults(func=cmd_search)

    m = add_command(sub, "similar", help="find clips like a video (or a part of one)",
                    description="The archive's clips nearest to VIDEO (or its span "
                    "--start..--end) by cosine similarity of their embeddings. A video in "
                    "the archive uses its stored clips; another one is scored with the "
                    "model options first.")
    m.add_argument("video", metavar="VIDEO", help="a video file (indexed or not)")
    m.add_argument("--start", type=seconds, metavar="S", help="span start (seconds)")
    m.add_argument("--end", type=seconds, metavar="S", help="span end (seconds)")
    m.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                   help=f"the archive (default {DEFAULT_DB})")
    m.add_argument("--limit", type=positive_int, default=10, metavar="N",
                   help="nearest N clips (default 10)")
    m.add_argument("--json", action="store_true", help="JSON on stdout")
    add_model_arguments(m)
    add_clip_arguments(m, sampler=False)
    m.set_defaults(func=cmd_similar)

    e = add_command(sub, "export-index", help="export an archive (ActivityNet, CSV, Parquet)",
                    description="Write the archive as ActivityNet detection JSON (segments), "
                    "CSV (one row per clip) or Parquet (clips with embeddings).")
    e.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                   help=f"the archive (default {DEFAULT_DB})")
    e.add_argument("--format", choices=("activitynet", "csv", "parquet"), required=True)
    e.add_argument("--output", "-o", metavar="FILE",
                   help="output file (default stdout; required for parquet)")
    e.set_defaults(func=cmd_export)


# -- helpers -----------------------------------------------------------------------
def _open_archive(path: str):
    from ..archive import db

    try:
        return db.connect(path, readonly=True)
    except FileNotFoundError:
        raise UsageError(f"--db {display_path(path)}: no such archive; create it with "
                         f"har index VIDEOS --db {display_path(path)}") from None
    except db.NotAnArchive:
        raise UsageError(f"--db {display_path(path)}: is not a har archive (no videos "
                         "table); check the file name") from None


def _check_db_target(path: str, inputs: list[str]) -> None:
    from ..fsutil import same_file

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--db {display_path(path)}: directory {display_path(parent)} "
                         "does not exist; create it or choose another path")
    if os.path.isdir(path):
        raise UsageError(f"--db {display_path(path)}: is a directory; give a file name")
    for item in inputs:
        if same_file(path, item):
            raise UsageError(f"--db {display_path(path)}: that is one of the inputs; "
                             "choose another file name")


# -- har index ---------------------------------------------------------------------
def cmd_index(args: argparse.Namespace) -> int:
    import sqlite3

    from ..archive import db, indexer
    from ..sources import resolve_inputs

    check_runtime_options(args)
    if args.engine != "ray" and (args.address or args.parquet):
        raise UsageError("--address and --parquet go with --engine ray")
    _check_db_target(args.db, args.inputs)
    sources, input_errors = resolve_inputs(args.inputs)
    try:
        conn = db.connect(args.db)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"--db {display_path(args.db)}: cannot be used as an archive "
                         f"({exc}); choose another file") from None
    work = indexer.plan(conn, sources, retry_failed=args.retry_failed)
    bad = indexer.plan(conn, [t for t, _ in input_errors], retry_failed=args.retry_failed)
    bad_msgs = dict(input_errors)
    parts = [f"{len(work.todo)} to index"]
    if work.changed:
        parts.append(f"{work.changed} of them changed since indexed")
    if work.skipped:
        parts.append(f"{work.skipped} already indexed")
    if work.skipped_failed + bad.skipped_failed:
        parts.append(f"{work.skipped_failed + bad.skipped_failed} failed before "
                     "(--retry-failed tries them again)")
    print(f"har index: {display_path(args.db)}: {', '.join(parts)}", file=sys.stderr)

    failed = 0
    base_info = indexer.ModelInfo(args.model, None, {})
    for text, key in bad.todo:
        print(f"error: {clean_text(bad_msgs[text])}", file=sys.stderr)
        indexer.write_failed_input(conn, text, bad_msgs[text], base_info)
        failed += 1
    if not work.todo:
        conn.close()
        return ExitCode.INPUT_FAILED if failed else ExitCode.OK

    if args.engine == "ray":
        from ..archive import ray_engine

        try:
            results = ray_engine.index_ray(args, conn, work.todo)
        finally:
            conn.close()
        if results is None:  # --parquet: the rows are in the files
            return ExitCode.INPUT_FAILED if failed else ExitCode.OK
        failed += sum(not r.ok for r in results)
        return _index_exit(failed, results)

    recognizer = make_recognizer(args)
    info = model_info(args, recognizer)
    sizes = {i: key.size or 0 for i, (_, key) in enumerate(work.todo)}
    bar = _progress(args, sizes)
    results = []

    def on_result(r) -> None:
        nonlocal failed
        results.append(r)
        if r.error:
            failed += 1
            _write_line(bar, f"error: {clean_text(r.error)}")
        for w in r.warnings:
            _write_line(bar, f"warning: {display_path(r.path)}: {clean_text(w)}")
        if bar is not None:
            bar.update(sizes.get(r.input_index, 0) if bar.unit == "B" else 1)
            bar.set_postfix_str(f"{len(results)}/{len(sizes)} videos", refresh=False)

    try:
        indexer.index_local(recognizer, conn, work.todo, info, workers=args.workers,
                            on_result=on_result)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        print(f"har index: interrupted; the {len(results)} video(s) finished in this run "
              "are kept; run the same command again to go on", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        if bar is not None:
            bar.close()
        conn.close()
    return _index_exit(failed, results)


def model_info(args, recognizer):
    from ..archive import indexer

    settings = {"stride": args.stride, "tail": args.tail, "sampler": args.sampler,
                "num_clips": args.num_clips, "topk": args.topk,
                "clip_len": recognizer.preset.clip_len, "backend": recognizer.backend.name,
                "precision": getattr(recognizer.backend, "precision", None),
                **timeline_settings(args)}
    return indexer.ModelInfo(recognizer.model_name,
                             indexer.weights_sha256(args.weights, recognizer), settings)


def _index_exit(failed: int, results) -> int:
    done = sum(r.ok for r in results)
    print(f"har index: {done} indexed, {failed} failed", file=sys.stderr)
    if failed:
        return ExitCode.INPUT_FAILED
    if any(r.warnings for r in results):
        return ExitCode.PARTIAL
    return ExitCode.OK


def _progress(args, sizes: dict[int, int]):
    """A bar with an ETA, on a terminal only. It counts the bytes of the videos done
    (a long video weighs more than a short one), or videos when sizes are unknown."""
    if args.no_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    total = sum(sizes.values())
    if total:
        return tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr,
                    dynamic_ncols=True, desc="indexing")
    return tqdm(total=len(sizes), unit="video", file=sys.stderr, dynamic_ncols=True,
                desc="indexing")


def _write_line(bar, text: str) -> None:
    if bar is not None:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


# -- har search --------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    from ..archive import search

    if not args.summary and not args.query:
        raise UsageError("give an action to search for (e.g. har search 'juggling balls'), "
                         "or --summary for the counts per label")
    conn = _open_archive(args.db)
    try:
        if args.summary:
            rows = search.label_summary(conn, limit=args.limit)
            if args.json:
                print(json.dumps({"labels": rows}, indent=1))
            else:
                print(f"{'label':32} {'segments':>8} {'videos':>6} {'seconds':>9} "
                      f"{'peak':>6} {'clips':>6}")
                for r in rows:
                    print(f"{r['label'][:32]:32} {r['segments']:8d} {r['videos']:6d} "
                          f"{r['seconds']:9.1f} {r['peak_score']:6.3f} {r['clips_top1']:6d}")
            return ExitCode.OK
        labels, how = search.match_labels(args.query, search.known_labels(conn))
        if not labels:
            print(f"har search: no label in {display_path(args.db)} matches "
                  f"{args.query!r}; `har search --summary --db {display_path(args.db)}` "
                  "lists them", file=sys.stderr)
            if args.json:
                print(json.dumps({"query": args.query, "labels": [], "results": []}))
            return ExitCode.INPUT_FAILED
        hits = search.search(conn, labels, min_score=args.min_score, limit=args.limit)
    finally:
        conn.close()
    if how != "exact":
        print(f"har search: {args.query!r} matched ({how}): {', '.join(labels)}",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"query": args.query, "match": how, "labels": labels,
                          "results": [h.to_dict() for h in hits]}, indent=1,
                         ensure_ascii=False))
    else:
        for h in hits:
            print(f"{h.score:6.3f}  {fmt_time(h.start_s)}-{fmt_time(h.end_s)}  "
                  f"{h.label}  {display_path(h.path)}" + ("  (clip)" if h.kind == "clip" else ""))
        if not hits:
            print(f"har search: no result above --min-score {args.min_score}", file=sys.stderr)
    return ExitCode.OK


# -- har similar -------------------------------------------------------------------
def cmd_similar(args: argparse.Namespace) -> int:
    from ..archive import db, similar
    from ..errors import HarError

    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end:g} must be after --start {args.start:g}")
    if not os.path.exists(args.video):
        raise UsageError(f"{display_path(args.video)}: no such file; give a video file")
    conn = _open_archive(args.db)
    try:
        kind = db.get_meta(conn, "embedding_kind")
        if kind is None:
            print(f"har similar: {display_path(args.db)} holds no clip embeddings yet; "
                  "index some videos first", file=sys.stderr)
            return ExitCode.INPUT_FAILED
        q = similar.stored_query(conn, args.video, args.start, args.end)
        if q is None:  # not in the archive: score it now
            check_runtime_options(args)
            rec = make_recognizer(args)
            result = rec.predict(args.video)
            if result.error:
                print(f"error: {clean_text(result.error)}", file=sys.stderr)
                return ExitCode.INPUT_FAILED
            q = similar.query_vector(result.clips, args.start, args.end, kind)
            dim = int(db.get_meta(conn, "embedding_dim") or 0)
            if q is not None and q.shape[0] != dim:
                raise UsageError(f"this model's vectors have {q.shape[0]} values but the "
                                 f"archive's have {dim}; use the model the archive was "
                                 "indexed with")
            if q is None and kind == "features" and result.clips and \
                    result.clips[0].features is None:
                raise UsageError(f"the archive holds feature vectors but --backend "
                                 f"{args.backend} gives none; use the runtime the archive "
                                 "was indexed with")
        if q is None:
            print(f"har similar: {display_path(args.video)} has no clip in "
                  f"{args.start or 0:g}..{'end' if args.end is None else f'{args.end:g}'} s",
                  file=sys.stderr)
            return ExitCode.INPUT_FAILED
        index = similar.load_index(conn, args.db)
        hits = similar.nearest(conn, index, q, k=args.limit)
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.MODEL
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"query": {"video": display_path(args.video), "start_s": args.start,
                                    "end_s": args.end},
                          "results": [h.to_dict() for h in hits]}, indent=1, ensure_ascii=False))
    else:
        for h in hits:
            print(f"{h.similarity:6.3f}  {fmt_time(h.start_s)}-{fmt_time(h.end_s)}  "
                  f"clip {h.clip:<4d} {display_path(h.path)}  ({h.top_label} {h.top_score:.3f})")
    return ExitCode.OK


# -- har export-index --------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from ..archive import export
    from ..fsutil import atomic_open

    if args.format == "parquet":
        if not args.output or args.output == "-":
            raise UsageError("--format parquet writes a file; give --output FILE.parquet")
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise UsageError("--format parquet needs pyarrow, which is not installed; "
                             f"install it with: {pip_hint('archive')}")
    if args.output and args.output != "-" and Path(args.output).resolve() == \
            Path(args.db).resolve():
        raise UsageError("--output is the archive itself; choose another file")
    conn = _open_archive(args.db)
    try:
        if args.format == "parquet":
            n = export.write_parquet(conn, args.output)
            print(f"har export-index: {n} clips -> {display_path(args.output)}", file=sys.stderr)
            return ExitCode.OK

        def write(fh) -> None:
            if args.format == "activitynet":
                fh.write(export.dumps(export.activitynet(conn)))
            else:
                export.write_csv(conn, fh)

        if not args.output or args.output == "-":
            write(sys.stdout)
        else:
            with atomic_open(args.output, "w", newline="") as fh:
                write(fh)
    finally:
        conn.close()
    return ExitCode.OK
