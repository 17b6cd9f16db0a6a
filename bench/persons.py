"""Per-person recognition speed and the built-in HOG detector on real videos.

    python bench/persons.py                 # both parts
                                            # -> bench/results/persons-<part>-<host>-<date>.json
    python bench/persons.py --part hog      # the detector only
    python bench/persons.py --part people   # clips/s with 1, 2, 4, 8 people

hog: ``har.persons.detect.HogDetector`` on every frame of the multi-person videos in
  ../shared/videos, decoded as ``PersonStream`` decodes them (longer side 640): boxes
  per frame, frames with a box, milliseconds per frame; and on blank frames.
people: a generated 640x360 scene with N actors given as tracks (``PersonOptions
  (tracks=...)``), ResNet-10 on the torch runtime, against whole-frame recognition of
  the same video: clips scored per second and the real-time factor (video seconds per
  wall second). Rows "given tracks" have no detector; rows "hog every 5th frame" run
  the HOG detector (its time counted) and the tracker, with the scene's true boxes
  handed to the tracker (HOG finds no people among textured squares).
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT / "tests"))

HOG_VIDEOS = ("mmaction2__demo_spatiotemporal_det.mp4", "mmaction2__demo_skeleton.mp4",
              "mmaction2__S001C001P001R001A001_rgb.avi",
              "mmaction2__test_video_structuralize.mp4")


def bench_hog(limit: int) -> list[dict]:
    from har.persons.detect import HogDetector
    from har.video import VideoSource

    det = HogDetector()
    rows = []
    for name in HOG_VIDEOS:
        path = SHARED / name
        if not path.exists():
            continue
        with VideoSource(str(path)) as v:
            W, H = v.info.width, v.info.height
            s = min(1.0, 640 / max(W, H))
            size = None if s >= 1 else (int(round(W * s)), int(round(H * s)))
            counts, times = [], []
            for f in v.frames(size=size):
                if f.index >= limit:
                    break
                t = time.perf_counter()
                counts.append(len(det.detect(f.rgb)))
                times.append(time.perf_counter() - t)
        rows.append({"video": name, "size": f"{f.rgb.shape[1]}x{f.rgb.shape[0]}",
                     "frames": len(counts), "boxes_per_frame": round(float(np.mean(counts)), 2),
                     "frames_with_a_box": int(sum(c > 0 for c in counts)),
                     "ms_per_frame": round(1000 * float(np.median(times)), 1)})
        print(rows[-1], flush=True)
    blank = [np.full((360, 640, 3), v, np.uint8) for v in (0, 128, 255)]
    rng = np.random.default_rng(0)
    blank.append(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8))
    rows.append({"video": "blank (black, grey, white, noise)", "size": "640x360",
                 "frames": 4,
                 "boxes_per_frame": float(np.mean([len(det.detect(b)) for b in blank])),
                 "frames_with_a_box": sum(len(det.detect(b)) > 0 for b in blank),
                 "ms_per_frame": None})
    print(rows[-1], flush=True)
    return rows


def scene(folder: Path, people: int, frames: int):
    from har.persons.boxes import Box, TrackedBox
    from har.train.synthetic import motion_video, write_video

    rng = np.random.default_rng(people)
    W, H, side = 640, 360, 112
    img = np.full((frames, H, W, 3), 100, np.uint8)
    tracks = []
    for p in range(people):
        x, y = (p % 5) * 128, (p // 5) * 128
        img[:, y:y + side, x:x + side] = motion_video(1 if p % 2 else -1, rng, size=side,
                                                      frames=frames)
        tracks += [TrackedBox(f, p + 1, Box(x + 12, y + 12, x + side - 12, y + side - 12))
                   for f in range(frames)]
    path = folder / f"scene{people}.mp4"
    write_video(path, img)
    return path, tracks


class _HogCostSceneBoxes:
    """Pays for the HOG detector on every frame it is asked about, then answers with the
    scene's true boxes (HOG finds no people in a scene of textured squares): the
    detector's time is in the row, the tracker sees the same people."""

    name = "hog-cost"

    def __init__(self, tracks, detector: str):
        from har.persons.boxes import Box
        from har.persons.detect import load_detector

        self.hog = load_detector(detector)
        self.by_frame: dict[int, list] = {}
        for t in tracks:
            b = t.box
            self.by_frame.setdefault(t.frame, []).append(Box(b.x0, b.y0, b.x1, b.y1, 0.9))
        self.frame = 0

    def detect(self, rgb):
        self.hog.detect(rgb)
        boxes = self.by_frame.get(self.frame, [])
        return boxes

    def at(self, frame: int) -> "_HogCostSceneBoxes":
        self.frame = frame
        return self


def bench_people(weights: str | None, frames: int, every: int = 5,
                 detector: str = "hog", model: str = "r3d10-k400", backend: str = "torch",
                 stride: int | None = None) -> list[dict]:
    from har import Recognizer
    from har.persons import PersonOptions, PersonStream

    rec = Recognizer(model, weights=weights, backend=backend, stride=stride)
    print(f"{model} on {rec.backend.name} ({getattr(rec.backend, 'precision', '?')}), "
          f"stride {rec.options.stride}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for people in (1, 2, 4, 8):
            path, tracks = scene(Path(tmp), people, frames)
            if people == 1:
                t = time.perf_counter()
                n = sum(1 for _ in rec.stream(str(path)))
                dt = time.perf_counter() - t
                rows.append({"mode": "whole frame", "people": None, "clips": n,
                             "clips_per_s": round(n / dt, 2),
                             "realtime": round(frames / 25 / dt, 2)})
                print(rows[-1], flush=True)
            t = time.perf_counter()
            ps = PersonStream(rec, str(path), PersonOptions(tracks=tracks))
            n = sum(1 for e in ps if e.kind == "clip")
            dt = time.perf_counter() - t
            rows.append({"mode": "per person (given tracks)", "people": people, "clips": n,
                         "clips_per_s": round(n / dt, 2), "realtime": round(frames / 25 / dt, 2)})
            print(rows[-1], flush=True)
            det = _HogCostSceneBoxes(tracks, detector)
            counter = iter(range(0, frames, every))
            real = det.detect

            def detect(rgb, det=det, counter=counter, real=real):
                det.at(next(counter, 0))
                return real(rgb)
            det.detect = detect
            t = time.perf_counter()
            ps = PersonStream(rec, str(path), PersonOptions(detector=det, detect_every=every))
            n = sum(1 for e in ps if e.kind == "clip")
            dt = time.perf_counter() - t
            rows.append({"mode": f"per person ({detector} every {every}th frame, tracker)",
                         "people": people, "clips": n, "clips_per_s": round(n / dt, 2),
                         "realtime": round(frames / 25 / dt, 2)})
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("hog", "people", "all"), default="all")
    ap.add_argument("--weights", help="r3d10 weights (default: random, same speed)")
    ap.add_argument("--frames", type=int, default=64, help="frames of each generated scene")
    ap.add_argument("--hog-frames", type=int, default=60, help="frames per real video")
    ap.add_argument("--detect-every", type=int, default=5, help="people part: detector cadence")
    ap.add_argument("--detector", default="hog", help="people part: hog or hog-fast")
    ap.add_argument("--model", default="r3d10-k400", help="people part: r3d10-k400 or r3d34-k400")
    ap.add_argument("--backend", default="torch", help="people part: the runtime")
    ap.add_argument("--stride", type=int, help="people part: frames between a person's clips "
                    "(default: the clip length)")
    args = ap.parse_args()
    weights = args.weights
    if weights is None and args.part != "hog":
        import torch
        from reference_hara import hara_resnet, published_checkpoint, randomize_

        depth = 34 if args.model.startswith("r3d34") else 10
        weights = str(Path(tempfile.mkdtemp()) / f"r{depth}.pth")
        torch.save(published_checkpoint(randomize_(hara_resnet(depth, "A"), seed=depth),
                                        f"resnet-{depth}"), weights)
    out = {"cpu": cpu_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if args.part in ("hog", "all"):
        out["hog"] = bench_hog(args.hog_frames)
    if args.part in ("people", "all"):
        out["people"] = bench_people(weights, args.frames, args.detect_every, args.detector,
                                     args.model, args.backend, args.stride)
        out["people_settings"] = {"model": args.model, "backend": args.backend,
                                  "stride": args.stride, "frames": args.frames,
                                  "detector": args.detector, "detect_every": args.detect_every}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    name = f"persons-{args.part}-{socket.gethostname()}-{datetime.now(timezone.utc):%Y%m%d}.json"
    (results / name).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {results / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
