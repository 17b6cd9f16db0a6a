"""Decode + preprocess speed: the old decoding mode against the new one, side by side.

    python bench/decode.py            # prints a table, writes bench/results/decode-<host>-<date>.json
    python bench/decode.py --repeat 5

old: frame threading (thread_type AUTO) and FFmpeg's default bilinear scaler while
     converting to RGB (its fast path darkens flat areas at some output sizes).
new: slice threading only (deterministic on damaged input) and the scaler writing
     planar RGB (gbrp), which is exact on flat grey (what har.video uses now).
har: har.video.VideoSource(...).frames(size=...) itself (the new mode, end to end).

Each video is decoded at the preset's resized size (short side 112). Figures are
frames per second, best of --repeat; old and new run interleaved in one process so
they share the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import cpu_name  # noqa: E402  (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "videos"
sys.path.insert(0, str(ROOT / "src"))


def generated(folder: Path, w: int, h: int, n: int) -> Path:
    import av

    path = folder / f"gen_{w}x{h}.mp4"
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast"}
        for i in range(n):
            base = ((xx * 3 + yy * 2 + i * 5) % 256).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(np.stack([base, np.roll(base, i, 1), 255 - base], -1),
                                           format="rgb24")
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def decode_raw(path: Path, thread_type: str, flags, fmt: str = "rgb24") -> tuple[int, float]:
    import av
    from av.video.reformatter import VideoReformatter

    from har.transforms import HARA_KINETICS

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = thread_type
        s.codec_context.thread_count = 0
        w, h = HARA_KINETICS.resized_size(s.codec_context.height, s.codec_context.width)
        r = VideoReformatter()
        for frame in c.decode(s):
            r.reformat(frame, width=w, height=h, format=fmt, interpolation=flags).to_ndarray()
            n += 1
    return n, time.perf_counter() - t0


def decode_har(path: Path) -> tuple[int, float]:
    from har.transforms import HARA_KINETICS
    from har.video import VideoSource

    t0 = time.perf_counter()
    n = 0
    with VideoSource(path) as v:
        size = HARA_KINETICS.resized_size(v.info.height, v.info.width)
        for _ in v.frames(size=size):
            n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    from av.video.reformatter import Interpolation as I

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=250, help="frames per generated video")
    args = ap.parse_args()
    modes = {
        "old": lambda p: decode_raw(p, "AUTO", I.BILINEAR),
        "new": lambda p: decode_raw(p, "SLICE", I.BILINEAR, "gbrp"),
        "har": decode_har,
    }
    with tempfile.TemporaryDirectory() as tmp:
        videos = [generated(Path(tmp), w, h, args.frames)
                  for w, h in [(340, 256), (640, 360), (1280, 720)]]
        videos += [SHARED / n for n in ("mmaction2__demo.mp4", "torchcodec__nasa_13013.mp4")
                   if (SHARED / n).exists()]
        rows = []
        for path in videos:
            best = {m: float("inf") for m in modes}
            frames = {}
            for _ in range(args.repeat):
                for m, fn in modes.items():  # interleaved: same load for each mode
                    n, dt = fn(path)
                    frames[m] = n
                    best[m] = min(best[m], dt)
            fps = {m: frames[m] / best[m] for m in modes}
            rows.append({"video": path.name, "frames": frames["old"],
                         **{f"{m}_fps": round(v, 1) for m, v in fps.items()},
                         "new_vs_old": round(fps["new"] / fps["old"], 3),
                         "har_vs_old": round(fps["har"] / fps["old"], 3)})
    cpu = cpu_name()
    print(f"decode + resize to short side 112, frames/s (best of {args.repeat}); "
          f"CPU: {cpu}, {os.cpu_count()} cores")
    print(f"{'video':34} {'frames':>6} {'old':>8} {'new':>8} {'har':>8} {'new/old':>8}")
    for r in rows:
        print(f"{r['video']:34} {r['frames']:>6} {r['old_fps']:>8} {r['new_fps']:>8} "
              f"{r['har_fps']:>8} {r['new_vs_old']:>8}")
    out = HERE / "results" / (f"decode-{socket.gethostname()}-"
                              f"{datetime.now(timezone.utc):%Y%m%d-%H%M}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(),
                               "date": datetime.now(timezone.utc).isoformat(),
                               "repeat": args.repeat, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
