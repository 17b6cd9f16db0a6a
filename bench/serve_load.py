"""Load test for `har serve`: 40 concurrent submissions, good and broken mixed, the
server SIGKILLed and restarted in the middle.

Checks: every accepted job ends ``done`` or ``failed`` exactly once (the SQLite
``finishes`` counter), good videos' results equal ``har predict``'s for the same files
(top-5 labels and probabilities), broken ones fail with one line naming the upload.
Reports throughput (jobs/s, wall time including the restart) and the latency from
submission to result (p50/p90/max), with `har predict` over the same good files in the
same run as the baseline. Prints a table, writes JSON.

    flock /tmp/har-bench.lock python bench/serve_load.py [--jobs 40] [--out FILE]

Random weights in the published format (nothing is downloaded); model r3d10-k400 by
default, torch runtime.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--broken-every", type=int, default=4, help="every Nth job is broken")
    ap.add_argument("--model", default="r3d10-k400")
    ap.add_argument("--frames", type=int, default=48, help="frames per generated video")
    ap.add_argument("--out", default=None, help="JSON (default bench/results/serve_load-DATE.json)")
    args = ap.parse_args()

    import httpx
    import numpy as np
    import torch

    from conftest import make_video
    from reference_hara import hara_resnet, published_checkpoint, randomize_
    from run import cpu_facts
    from serve_helpers import Server

    from har.models.zoo import get_entry

    work = Path(tempfile.mkdtemp(prefix="har-serve-load-"))
    entry = get_entry(args.model)
    depth = int(entry.arch.split("-")[1])
    weights = work / f"random-{entry.arch}.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(depth, "A"), seed=0), entry.arch),
               weights)

    # inputs: 6 distinct generated videos; broken: text, truncated MP4, empty file
    goods = []
    for i in range(6):
        rng = np.random.default_rng(i)
        base = rng.integers(0, 255, (112, 160, 3), dtype=np.uint8)
        goods.append(make_video(work / f"good{i}.mp4", args.frames + 8 * i, size=(160, 112),
                                frame_fn=lambda k, b=base, s=i: np.roll(b, k * (s + 1), axis=1)))
    text = work / "notes.mp4"
    text.write_text("not a video\n" * 100)
    trunc = work / "truncated.mp4"
    trunc.write_bytes(goods[0].read_bytes()[:600])
    empty = work / "empty.mp4"
    empty.write_bytes(b"")
    broken = [text, trunc, empty]
    plan = [broken[(i // args.broken_every) % 3] if i % args.broken_every == args.broken_every - 1
            else goods[i % len(goods)] for i in range(args.jobs)]

    # baseline: har predict over the same good files, model loaded once, same run
    cli_json = work / "cli.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "har", "predict", *map(str, goods), "--model",
                    args.model, "--weights", str(weights), "--backend", "torch", "--json",
                    str(cli_json), "--no-progress", "--clips", "0"], check=False,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="2"))
    cli_wall = time.perf_counter() - t0
    cli = {Path(v["path"]).name: v for v in json.loads(cli_json.read_text())["videos"]}

    server = Server(work / "data", str(weights), "--max-queue", str(args.jobs + 10),
                    model=args.model, log=work / "server.log")
    server.start()
    # CLI cost per good job without model load (measured: load + N videos); the server's
    # model is loaded before submissions start, so compare per-video time after load
    submitted: dict[str, tuple[Path, float]] = {}

    def submit(path: Path):
        with open(path, "rb") as fh:
            t = time.time()
            r = httpx.post(f"{server.url}/v1/jobs", files={"file": (path.name, fh)}, timeout=60)
        return path, t, r.status_code, r.json()

    t_start = time.time()
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for path, t, code, body in pool.map(submit, plan):
            assert code == 202, (code, body)
            submitted[body["id"]] = (path, t)
    t_submitted = time.time()

    finished: dict[str, dict] = {}
    seen_done_at: dict[str, float] = {}

    def poll_once():
        for job in httpx.get(f"{server.url}/v1/jobs?limit=1000", timeout=30).json()["jobs"]:
            if job["status"] in ("done", "failed") and job["id"] not in seen_done_at:
                seen_done_at[job["id"]] = time.time()
                finished[job["id"]] = job

    # kill when about a third of the jobs have ended
    deadline = time.monotonic() + 1800
    while len(finished) < args.jobs // 3 and time.monotonic() < deadline:
        poll_once()
        time.sleep(0.1)
    ended_before_kill = len(finished)
    running = [j["id"] for j in httpx.get(f"{server.url}/v1/jobs?limit=1000",
                                          timeout=30).json()["jobs"] if j["status"] == "running"]
    t_kill = time.time()
    server.kill()
    server.start(timeout_s=180)
    restart_s = time.time() - t_kill
    while len(finished) < args.jobs and time.monotonic() < deadline:
        poll_once()
        time.sleep(0.1)
    t_end = max(seen_done_at.values())

    # checks
    problems = []
    for job_id, (path, t_sub) in submitted.items():
        job = finished.get(job_id)
        if job is None:
            problems.append(f"{path.name}: never finished")
            continue
        if path in goods:
            if job["status"] != "done":
                problems.append(f"{path.name}: {job['status']} {job['error']}")
                continue
            doc = httpx.get(f"{server.url}/v1/jobs/{job_id}/result", timeout=30).json()
            got, want = doc["videos"][0], cli[path.name]
            if [(p["label"], p["score"]) for p in got["top"]] != \
                    [(p["label"], p["score"]) for p in want["top"]]:
                problems.append(f"{path.name}: top-5 differs from har predict")
        elif job["status"] != "failed" or path.name not in (job["error"] or "") or \
                "\n" in (job["error"] or ""):
            problems.append(f"{path.name}: expected one-line failure, got {job}")
    server.stop()
    db = sqlite3.connect(work / "data" / "jobs.sqlite3")
    rows = db.execute("SELECT finishes, attempts FROM jobs").fetchall()
    db.close()
    once = all(f == 1 for f, _ in rows) and len(rows) == args.jobs
    rerun = sum(1 for _, a in rows if a > 1)
    if not once:
        problems.append(f"finishes per job: {sorted(f for f, _ in rows)}")

    lat = sorted(seen_done_at[j] - submitted[j][1] for j in submitted)
    good_jobs = sum(1 for p, _ in submitted.values() if p in goods)
    wall = t_end - t_start
    report = {
        "bench": "serve_load", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_facts(), "python": platform.python_version(), "torch": torch.__version__,
        "model": args.model, "backend": "torch", "frames_per_video": [args.frames + 8 * i
                                                                     for i in range(6)],
        "jobs": args.jobs, "good": good_jobs, "broken": args.jobs - good_jobs,
        "submit_s": round(t_submitted - t_start, 3),
        "ended_before_kill": ended_before_kill, "running_at_kill": len(running),
        "rerun_after_kill": rerun, "restart_s": round(restart_s, 2),
        "wall_s": round(wall, 2), "jobs_per_s": round(args.jobs / wall, 3),
        "good_videos_per_s": round(good_jobs / wall, 3),
        "latency_s": {"p50": round(statistics.median(lat), 2),
                      "p90": round(lat[int(0.9 * (len(lat) - 1))], 2), "max": round(lat[-1], 2)},
        "baseline_cli": {"videos": len(goods), "wall_s_with_model_load": round(cli_wall, 2),
                         "videos_per_s": round(len(goods) / cli_wall, 3)},
        "exactly_once": once, "results_equal_cli": not any("differs" in p for p in problems),
        "problems": problems,
        "note": "2-core machine shared with other agents; figures are indicative, compare "
                "ratios within this run",
    }
    out = Path(args.out) if args.out else HERE / "results" / \
        f"serve_load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    c = report
    print(f"# har serve load test — {c['cpu']['model']}, {c['cpu']['cores']} cores "
          f"(shared with other work)")
    print(f"{'jobs':<34}{c['jobs']} ({c['good']} good, {c['broken']} broken), "
          f"{args.model}, torch")
    print(f"{'40 concurrent submissions took':<34}{c['submit_s']} s")
    print(f"{'SIGKILL after':<34}{ended_before_kill} ended, {len(running)} running; "
          f"restart {c['restart_s']} s; {rerun} job(s) ran again")
    print(f"{'wall (first submit -> last end)':<34}{c['wall_s']} s")
    print(f"{'throughput':<34}{c['jobs_per_s']} jobs/s, {c['good_videos_per_s']} good videos/s")
    print(f"{'baseline har predict (6 videos)':<34}{c['baseline_cli']['videos_per_s']} "
          f"videos/s incl. model load ({c['baseline_cli']['wall_s_with_model_load']} s)")
    print(f"{'latency submit -> result':<34}p50 {c['latency_s']['p50']} s, "
          f"p90 {c['latency_s']['p90']} s, max {c['latency_s']['max']} s")
    print(f"{'every job ended exactly once':<34}{once}")
    print(f"{'results equal har predict':<34}{c['results_equal_cli']}")
    for p in problems:
        print("PROBLEM:", p)
    print(f"JSON: {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
