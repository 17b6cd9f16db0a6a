"""Live benchmark: a 30 fps stream served in real time over UDP MPEG-TS for N minutes,
with `har live` reading it on the fastest backend. Prints a table, writes JSON.

    python bench/live.py                   # 10 minutes (the issue's target run)
    python bench/live.py --minutes 2       # shorter

Measured from the events `har live --jsonl` writes:

* latency: each clip's ``latency_s`` (from the arrival of its last frame to its event),
  p50 / p95 / max;
* drift: how far the processing falls behind the stream clock. For each clip,
  ``wall_time - end_s`` (wall time of the event minus the stream time of the clip's
  last frame) is constant when har keeps up; drift is its median over the last minute
  minus its median over the first minute;
* skipped clips (the model had no time for them) and peak RSS of the har process
  (sampled from /proc every 0.5 s): first minute against the whole run.

Targets (issue 13): p95 <= one clip (16/30 s = 0.53 s) + two model calls; drift <= 0.1 s;
memory flat. Random weights in the published format (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import cpu_name  # noqa: E402  (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", default="r3d34-k400")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--video", help="send this video (looped) instead of a generated one, "
                    "e.g. a real multi-person video for --har-args '--persons ...'")
    ap.add_argument("--har-args", default="", help="more `har live` options, one string "
                    "(e.g. '--persons --detector hog-fast --stride 32'); with --persons "
                    "the rows are the person_clip events")
    args = ap.parse_args()
    import shlex

    import torch

    from conftest import make_video
    from reference_hara import hara_resnet, published_checkpoint, randomize_
    from stream_servers import free_udp_port, udp_sender

    work = Path(tempfile.mkdtemp(prefix="har-bench-live-"))
    depth = int("".join(ch for ch in args.model.split("-")[0][3:] if ch.isdigit()))
    weights = work / f"resnet-{depth}-kinetics.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(depth, "A"), seed=1),
                                    f"resnet-{depth}"), weights)
    video = Path(args.video) if args.video else make_video(work / "src.mp4", 90,
                                                             size=(320, 240), fps=30)
    port = free_udp_port()
    seconds = args.minutes * 60
    events_path = work / "events.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep +
               os.environ.get("PYTHONPATH", ""), HAR_HOME=str(work / "home"))
    cmd = [sys.executable, "-m", "har", "live", f"udp://127.0.0.1:{port}", "--model",
           args.model, "--weights", str(weights), "--backend", args.backend, "--jsonl",
           str(events_path), "--duration", str(seconds + 8), "--quiet",
           "--read-timeout", "5", *shlex.split(args.har_args)]
    har = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            value = rss_mb(har.pid)
            if value is not None:
                samples.append((time.monotonic() - t0, value))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(6)  # model loading and the receiver's start, before the stream begins
    sender = udp_sender(str(video), port, seconds)
    sender.wait(timeout=seconds + 120)
    _, err = har.communicate(timeout=120)
    stop.set()
    sampler.join()

    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    kind = "person_clip" if "--persons" in args.har_args else "clip"
    clips = [e for e in events if e["type"] == kind]
    summary = next((e for e in events if e["type"] == "summary"), {})
    start = next((e for e in events if e["type"] == "start"), {})
    lat = np.array([c["latency_s"] for c in clips], dtype=float)
    behind = np.array([c["wall_time"] - c["end_s"] for c in clips], dtype=float)
    stream_t = np.array([c["end_s"] for c in clips], dtype=float)
    first = behind[stream_t <= stream_t.min() + 60] if len(clips) else behind
    last = behind[stream_t >= stream_t.max() - 60] if len(clips) else behind
    drift = float(np.median(last) - np.median(first)) if len(clips) else None
    rss_first = max((v for t, v in samples if t <= 66), default=None)
    rss_all = max((v for _, v in samples), default=None)
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "note": "other work may have shared the machine"},
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "minutes": args.minutes, "model": args.model,
        "video": str(args.video) if args.video else "generated 320x240 30 fps",
        "har_args": args.har_args, "rows": kind,
        "persons": len({c.get("person") for c in clips}) if kind == "person_clip" else None,
        "detections_skipped": summary.get("detections_skipped"),
        "backend": start.get("settings", {}).get("backend"),
        "precision": start.get("settings", {}).get("precision"),
        "clips": len(clips), "skipped": summary.get("skipped"),
        "reconnects": summary.get("reconnects"),
        "latency_s": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                      "p95": float(np.percentile(lat, 95)) if len(lat) else None,
                      "max": float(lat.max()) if len(lat) else None},
        "drift_s": drift,
        "peak_rss_mb": {"first_minute": rss_first, "whole_run": rss_all},
        "stderr_tail": err[-500:],
    }
    print(f"\nhar live, {args.minutes:g} min of {result['video']} as UDP MPEG-TS, "
          f"{args.model}, {result['backend']} {result['precision']} {args.har_args}, "
          f"{cpu_name()} ({os.cpu_count()} cores)")
    rows = [(f"{kind} events", f"{len(clips)}"), ("clips skipped", f"{summary.get('skipped')}"),
            ("persons", f"{result['persons']}"),
            ("detections skipped", f"{summary.get('detections_skipped')}"),
            ("reconnects", f"{summary.get('reconnects')}")]
    for k in ("p50", "p95", "max"):
        v = result["latency_s"][k]
        rows.append((f"latency {k}", "n/a" if v is None else f"{v:.3f} s"))
    rows.append(("drift (last min - first min)", "n/a" if drift is None else f"{drift:+.3f} s"))
    rows.append(("peak RSS, first minute", f"{rss_first:.0f} MB" if rss_first else "n/a"))
    rows.append(("peak RSS, whole run", f"{rss_all:.0f} MB" if rss_all else "n/a"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"live-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
