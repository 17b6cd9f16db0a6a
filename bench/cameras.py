"""How many 30 fps cameras one `har serve` keeps real time: N UDP MPEG-TS cameras
(30 fps 320x240, sent in real time by tests/stream_servers.py) added with
``POST /v1/streams``, for N = 1, 2, ... Prints a table, writes JSON.

    python bench/cameras.py                          # N = 1..4, 60 s each, r3d34, OpenVINO
    python bench/cameras.py --cameras 1 2 3 --seconds 90 --stride 16
    python bench/cameras.py --cameras 4 6 --frame-stride 2       # scored at 15 fps

For each N, after a warm-up, from ``GET /v1/streams`` (the server's own figures):
clips scored and skipped per camera over the measured window, latency p50/p95 (from
the arrival of a clip's last frame to its scores) and the model's busy share from
``/metrics``. A camera stays real time when it skips at most 5 % of its clips and its
p95 latency is at most one clip (16/30 s) plus two model calls (the live target of
docs/live.md). The senders run on the same machine (x264 encoding in Python) and take
CPU too: the figure is a lower bound for cameras that encode by themselves.
Random weights in the published format (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from machine import cpu_name  # noqa: E402  (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))


def busy_ratio(url: str) -> float | None:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith('har_model_busy_seconds_total{work="streams"}'):
            return float(line.split()[-1])
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured, per N")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--frame-stride", type=int, default=1,
                    help="each stream's frame_stride option (2: scored at 15 fps)")
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--model", default="r3d34-k400")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    import tempfile

    import torch

    from conftest import make_video
    from reference_hara import hara_resnet, published_checkpoint, randomize_
    from serve_helpers import Server
    from stream_servers import free_udp_port, udp_sender

    work = Path(tempfile.mkdtemp(prefix="har-bench-cameras-"))
    depth = int("".join(ch for ch in args.model.split("-")[0][3:] if ch.isdigit()))
    weights = work / f"resnet-{depth}-kinetics.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(depth, "A"), seed=1),
                                    f"resnet-{depth}"), weights)
    video = make_video(work / "src.mp4", 90, size=(320, 240), fps=30)
    os.environ["HAR_HOME"] = str(work / "home")
    os.environ["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    load0 = os.getloadavg()[0]
    rows = []
    for n in args.cameras:
        # the helper passes --backend torch first; the last --backend given wins
        server = Server(work / f"data{n}", str(weights), "--allow-private-urls",
                        "--stride", str(args.stride), "--backend", args.backend,
                        model=args.model)
        senders = []
        try:
            server.start(timeout_s=300)
            ports = [free_udp_port() for _ in range(n)]
            ids = []
            for k, port in enumerate(ports):
                r = httpx.post(server.url + "/v1/streams", timeout=30,
                               json={"url": f"udp://127.0.0.1:{port}", "name": f"cam{k}",
                                     "options": {"frame_stride": args.frame_stride}})
                r.raise_for_status()
                ids.append(r.json()["id"])
            time.sleep(2)
            total = args.warmup + args.seconds + 5
            senders = [udp_sender(str(video), port, total) for port in ports]
            time.sleep(args.warmup)
            before = {s["id"]: s for s in httpx.get(server.url + "/v1/streams",
                                                    timeout=10).json()["streams"]}
            busy0, t0 = busy_ratio(server.url), time.monotonic()
            time.sleep(args.seconds)
            after = {s["id"]: s for s in httpx.get(server.url + "/v1/streams",
                                                   timeout=10).json()["streams"]}
            busy1, t1 = busy_ratio(server.url), time.monotonic()
            load = os.getloadavg()[0]
        finally:
            for p in senders:
                p.kill()
                p.wait(timeout=10)
            server.stop()
        per = []
        for sid in ids:
            a, b = after[sid], before[sid]
            clips = a["clips"] - b["clips"]
            skipped = a["skipped"] - b["skipped"]
            per.append({"clips": clips, "skipped": skipped,
                        "skip_share": skipped / max(1, clips + skipped),
                        "latency_p50_s": a["latency_p50_s"],
                        "latency_p95_s": a["latency_p95_s"], "state": a["state"]})
        busy = None if busy0 is None or busy1 is None else (busy1 - busy0) / (t1 - t0)
        rows.append({"cameras": n, "streams": per, "model_busy": busy,
                     "load_average_1min": load})
        worst_skip = max(p["skip_share"] for p in per)
        worst_p95 = max(p["latency_p95_s"] or float("inf") for p in per)
        print(f"{n} camera(s): clips {sum(p['clips'] for p in per)}, skipped "
              f"{sum(p['skipped'] for p in per)} (worst {worst_skip:.0%}), worst p95 "
              f"{worst_p95:.3f} s, model busy {busy if busy is None else round(busy, 2)}, "
              f"load {load:.1f}", flush=True)
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "load_average_1min_at_start": load0,
                          "note": "other work shared the machine; the senders ran on it"},
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": args.model, "backend": args.backend, "stride": args.stride,
              "frame_stride": args.frame_stride,
              "seconds": args.seconds, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cameras-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
