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
from ..text import printable
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, fmt_time, make_recognizer, positive_int,
                     probability, run_options, seconds, signals_interrupt,
                     timeline_options)

DEFAULT_DB = "har-index.db"

INDEX_EPILOG = """\
examples:
  har index videos/ --db archive.db             index a folder (re-runs skip what is done)
  har index 'cams/**/*.mp4' --db archive.db --retry-failed
  har index videos/ --db archive.db --engine ray --address ray://head:10001
  har search falling --db archive.db            where does someone fall?
  har similar clip.mp4 --start 3 --end 5 --db archive.db

exit codes:  (the table in README.md)
  0 every input indexed (or already there)   1 --db could not be written (a full disk)
  3 an input failed (recorded as failed) or was read only in part
  2 bad command line, or --db is not a har archive (left unchanged), is locked by
    another process, or was indexed with another model
  4 the model could not be loaded   130 interrupted by Ctrl-C or SIGTERM (finished
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
    s.epilog = ("exit codes:\n  0 results (or none above --min-score)   3 no label matches "
                "QUERY\n  2 bad command line, or --db is not a har archive or is locked")

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
    m.add_argument("--include-self", action="store_true",
                   help="keep the query's own clips in the results (by default a video in "
                        "the archive does not find its own query span)")
    m.add_argument("--json", action="store_true", help="JSON on stdout")
    add_model_arguments(m)
    add_clip_arguments(m, sampler=False)
    # No --model: a video that is not in the archive is scored with the archive's model.
    m.set_defaults(func=cmd_similar, model=None)
    for action in m._actions:
        if action.dest == "model":
            action.help = ("model for a video that is not in the archive (default: the "
                           "archive's own; another one is refused)")

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
def _db_error(exc) -> UsageError:
    """A --db that cannot be used (not a har archive, locked, another model): one line."""
    return UsageError(f"--db {exc}")


def _open_archive(path: str):
    from ..archive import db

    try:
        return db.connect(path, readonly=True)
    except FileNotFoundError:
        raise UsageError(f"--db {_show(display_path(path))}: no such archive; create it with "
                         f"har index VIDEOS --db {_show(display_path(path))}") from None
    except db.ArchiveError as exc:
        raise _db_error(exc) from None


def _show(text) -> str:
    """Outside text (a file name, a label, an error) as one printable line."""
    return printable(clean_text(str(text)))


def _check_db_target(path: str, inputs: list[str]) -> None:
    from ..fsutil import same_file

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--db {_show(display_path(path))}: directory "
                         f"{_show(display_path(parent))} does not exist; create it or "
                         "choose another path")
    if os.path.isdir(path):
        raise UsageError(f"--db {_show(display_path(path))}: is a directory; give a file "
                         "name")
    for item in inputs:
        if same_file(path, item):
            raise UsageError(f"--db {_show(display_path(path))}: that is one of the inputs; "
                             "choose another file name (har never overwrites an input)")


# -- har index ---------------------------------------------------------------------
def cmd_index(args: argparse.Namespace) -> int:
    with signals_interrupt():  # SIGTERM stops the run as Ctrl-C does (exit 130)
        return _cmd_index(args)


def _cmd_index(args: argparse.Namespace) -> int:
    import sqlite3

    from ..archive import db, indexer
    from ..fsutil import same_file
    from ..sources import resolve_inputs

    check_runtime_options(args)
    if args.engine != "ray" and (args.address or args.parquet):
        raise UsageError("--address and --parquet go with --engine ray")
    if args.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--engine ray needs Ray, which is not installed; install it "
                             f"with: {pip_hint('ray')}")
    _check_db_target(args.db, args.inputs)
    sources, input_errors = resolve_inputs(args.inputs)
    for src in sources:  # a video found in a folder or a glob
        if getattr(src, "local", False) and same_file(args.db, src.url):
            raise UsageError(f"--db {_show(display_path(args.db))}: that is one of the "
                             "input videos; choose another file name (har never "
                             "overwrites an input)")
    try:
        conn = db.connect(args.db)  # checks, read-only, that it is a har archive first
    except db.ArchiveError as exc:
        raise _db_error(exc) from None
    except sqlite3.Error as exc:
        raise UsageError(f"--db {_show(display_path(args.db))}: cannot be used as an "
                         f"archive ({exc}); choose another file") from None
    try:
        return _index_into(args, conn, sources, input_errors)
    except indexer.ModelMismatch as exc:
        raise UsageError(str(exc)) from None
    except sqlite3.Error as exc:  # locked by another process for 30 s, a full disk, ...
        if db.is_busy(exc):
            print(f"har index: error: --db {_show(display_path(args.db))}: is locked by "
                  "another process (waited 30 s); the videos finished before are kept; "
                  "run again when it has finished", file=sys.stderr)
            return ExitCode.USAGE
        print(f"har index: error: --db {_show(display_path(args.db))}: {exc}; the videos "
              "finished before are kept", file=sys.stderr)
        return ExitCode.OUTPUT  # the archive could not be written (a full disk, ...)
    finally:
        conn.close()


def _index_into(args: argparse.Namespace, conn, sources, input_errors) -> int:
    from ..archive import indexer

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
    print(f"har index: {_show(display_path(args.db))}: {', '.join(parts)}", file=sys.stderr)

    failed = 0
    results: list = []

    def write_bad_inputs(info) -> None:
        nonlocal failed
        for text, _key in bad.todo:
            print(f"error: {_show(bad_msgs[text])}", file=sys.stderr)
            indexer.write_failed_input(conn, text, bad_msgs[text], info)
            failed += 1

    if not work.todo:
        write_bad_inputs(indexer.IndexedWith(args.model, None, {}))
        return ExitCode.INPUT_FAILED if failed else ExitCode.OK

    sizes = {i: key.size or 0 for i, (_, key) in enumerate(work.todo)}
    bar = None

    def on_result(r) -> None:
        nonlocal failed
        results.append(r)
        if r.error:
            failed += 1
            _write_line(bar, f"error: {_show(r.error)}")
        for w in r.warnings:
            _write_line(bar, f"warning: {_show(display_path(r.path))}: {_show(w)}")
        if bar is not None:
            bar.update(sizes.get(r.input_index, 0) if bar.unit == "B" else 1)
            bar.set_postfix_str(f"{len(results)}/{len(sizes)} videos", refresh=False)

    try:
        if args.engine == "ray":
            from ..archive import ray_engine

            spec = ray_engine.ModelSpec(args.model, args.weights, args.sha256, args.backend,
                                        args.device, args.precision, args.batch_size)
            clips = ray_engine.ClipSpecs(args.stride, args.topk, args.sampler,
                                         args.num_clips, args.tail, args.aggregate,
                                         args.aggregate_k, timeline_options(args))
            options = ray_engine.RayOptions(
                address=args.address, actors=args.ray_actors, parquet=args.parquet,
                progress=bool(sys.stderr.isatty() and not args.no_progress))
            out = ray_engine.index_ray(conn, work.todo, spec=spec, clips=clips,
                                       options=options, settings=index_settings(args),
                                       db_name=display_path(args.db), on_result=on_result)
            write_bad_inputs(indexer.IndexedWith(args.model, None, {}))
            if out is None:  # --parquet: the rows are in the files
                print(f"har index: clip rows written as Parquet under "
                      f"{_show(display_path(args.parquet))}", file=sys.stderr)
                return ExitCode.INPUT_FAILED if failed else ExitCode.OK
            return _index_exit(failed, results)

        recognizer = make_recognizer(args)
        info = indexer.model_info(recognizer, index_settings(args), args.weights)
        # Refused before anything is written: another model's vectors and labels.
        indexer.claim_model(conn, info, display_path(args.db))
        write_bad_inputs(indexer.IndexedWith(info.model, None, {}))
        bar = _progress(args, sizes)
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
    return _index_exit(failed, results)


def index_settings(args) -> dict:
    """The clip and timeline options an archive records with each video (the clip part
    of every output's settings: har.writers.clip_settings)."""
    from ..writers import clip_settings

    return clip_settings(run_options(args))


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

    if not args.summary and not search.normalize(args.query or ""):
        shown = "" if args.query is None else f" ({printable(repr(args.query))} names no label)"
        raise UsageError(f"give an action to search for{shown}, e.g. har search "
                         "'juggling balls', or --summary for the counts per label")
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
                    print(f"{_show(r['label'])[:32]:32} {r['segments']:8d} {r['videos']:6d} "
                          f"{r['seconds']:9.1f} {r['peak_score']:6.3f} {r['clips_top1']:6d}")
            return ExitCode.OK
        labels, how = search.match_labels(args.query, search.known_labels(conn))
        if not labels:
            print(f"har search: no label in {_show(display_path(args.db))} matches "
                  f"{_show(repr(args.query))}; `har search --summary --db "
                  f"{_show(display_path(args.db))}` lists them", file=sys.stderr)
            if args.json:
                print(json.dumps({"query": args.query, "labels": [], "results": []}))
            return ExitCode.INPUT_FAILED
        hits = search.search(conn, labels, min_score=args.min_score, limit=args.limit)
    finally:
        conn.close()
    if how != "exact":
        print(f"har search: {_show(repr(args.query))} matched ({how}): "
              f"{', '.join(_show(lb) for lb in labels)}", file=sys.stderr)
    if args.json:
        print(json.dumps({"query": args.query, "match": how, "labels": labels,
                          "results": [h.to_dict() for h in hits]}, indent=1,
                         ensure_ascii=False))
    else:
        for h in hits:
            print(f"{h.score:6.3f}  {fmt_time(h.start_s)}-{fmt_time(h.end_s)}  "
                  f"{_show(h.label)}  {_show(display_path(h.path))}"
                  + ("  (clip)" if h.kind == "clip" else ""))
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
        raise UsageError(f"{_show(display_path(args.video))}: no such file; give a video file")
    conn = _open_archive(args.db)
    try:
        kind = db.get_meta(conn, "embedding_kind")
        if kind is None:
            print(f"har similar: {_show(display_path(args.db))} holds no clip embeddings "
                  "yet; index some videos first", file=sys.stderr)
            return ExitCode.INPUT_FAILED
        indexed = similar.indexed_video(conn, args.video)
        if indexed is not None:
            _check_span(args, indexed[1])
            q = similar.stored_query(conn, args.video, args.start, args.end)
        else:  # not in the archive: check the span, then score it with the archive's model
            code = _check_span_of_file(args)
            if code is not None:
                return code
            q = _score_query(args, conn, kind)
            if isinstance(q, int):
                return q
        if q is None:
            print(f"har similar: {_show(display_path(args.video))} has no clip in "
                  f"{args.start or 0:g}..{'end' if args.end is None else f'{args.end:g}'} s",
                  file=sys.stderr)
            return ExitCode.INPUT_FAILED
        if similar.foreign_index(args.db):
            print(f"har similar: warning: {_show(display_path(args.db))}.faiss (or its "
                  ".json) was not written by har; it is left as it is and the index is "
                  "built in memory; move it away to have har keep one", file=sys.stderr)
        index = similar.load_index(conn, args.db)
        if args.include_self or indexed is None:
            hits = similar.nearest(conn, index, q, k=args.limit)
        else:  # the query's own clips would come first: leave them out
            hits = [h for h in similar.nearest(conn, index, q, k=args.limit + 64)
                    if not _is_query_clip(h, args)][:args.limit]
    except HarError as exc:
        print(f"error: {_show(exc)}", file=sys.stderr)
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
                  f"clip {h.clip:<4d} {_show(display_path(h.path))}  "
                  f"({_show(h.top_label)} {h.top_score:.3f})")
    return ExitCode.OK


def _is_query_clip(hit, args) -> bool:
    """A clip of the query video that overlaps the query span (the whole video when no
    span is given): the query itself, not a neighbour."""
    try:
        same = os.path.samefile(hit.path, args.video)
    except OSError:
        same = os.path.realpath(hit.path) == os.path.realpath(args.video)
    if not same:
        return False
    start = args.start if args.start is not None else 0.0
    end = args.end if args.end is not None else float("inf")
    return hit.start_s < end and hit.end_s > start


def _check_span(args, duration_s: float | None) -> None:
    """A --start at or past the end of the video is a usage error (exit 2)."""
    if args.start is not None and duration_s and args.start >= duration_s:
        raise UsageError(f"--start {args.start:g} is past the end of "
                         f"{_show(display_path(args.video))} ({duration_s:.2f} s long); "
                         "give a span within the video")


def _check_span_of_file(args) -> int | None:
    """Open the video (no model yet): a file that is not a video is one error line
    (exit 1), a span past its end a usage error; no weights are loaded for either."""
    from ..errors import HarError
    from ..sources import open_video

    try:
        video = open_video(args.video)
    except HarError as exc:
        print(f"error: {_show(exc)}", file=sys.stderr)
        return ExitCode.INPUT_FAILED
    try:
        info = video.info
    finally:
        video.close()
    _check_span(args, info.duration_s)
    return None


def _score_query(args, conn, kind: str):
    """The query vector of a video that is not in the archive, scored with the archive's
    model (``--model`` when given); an exit code when it cannot be."""
    from ..archive import db, indexer, similar

    stored = indexer.archive_model(conn)
    if args.model is None:
        from ..defaults import DEFAULT_MODEL

        args.model = stored[0] if stored is not None else DEFAULT_MODEL
    check_runtime_options(args)
    rec = make_recognizer(args)
    if stored is not None:
        sha = indexer.weights_sha256(args.weights, rec)
        if not indexer.same_model(stored, rec.model_name, sha):
            raise UsageError(
                f"--db {_show(display_path(args.db))} was indexed with "
                f"{indexer.describe_model(*stored)}, but the video would be scored with "
                f"{indexer.describe_model(rec.model_name, sha)}; their vectors cannot be "
                "compared: give the archive's --model and --weights")
    result = rec.predict(args.video)
    if result.error:
        print(f"error: {_show(result.error)}", file=sys.stderr)
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
    return q


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
            print(f"har export-index: {n} clips -> {_show(display_path(args.output))}",
                  file=sys.stderr)
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
