"""har train benchmark: the two proofs on generated data, and training throughput.

    python bench/train.py                 # proofs with ResNet-10, throughput of ResNet-34
    python bench/train.py --quick         # smaller datasets, fewer epochs
    python bench/train.py --device cuda   # on a GPU machine

1. Motion (``har.train.synthetic.make_motion_dataset``): a textured square moving left
   or right. Trained from scratch on 16-frame clips, then on one frame repeated 16
   times (the same network, no motion): held-out video top-1 of each.
2. Order (``make_order_dataset``): "A then B" against "B then A" from the same clips.
   Frozen backbone; video top-1 of the mean of clip scores (the paper's protocol)
   against the temporal head.
3. Training throughput (clips/s, forward + backward + step at batch 8) of the default
   ResNet-34 at 16x112x112: fp32 against bf16 autocast, measured side by side, with
   whether bf16's gradients agree with fp32's on this machine.

Prints tables and writes bench/results/train-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import cpu_name  # noqa: E402


def proofs(model: str, per_class: int, epochs: int, device: str) -> dict:
    from har.train import TrainOptions, load_dataset, train
    from har.train.synthetic import make_motion_dataset, make_order_dataset

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_motion_dataset(tmp / "m-train", per_class, seed=1, frames=32)
        make_motion_dataset(tmp / "m-val", per_class, seed=2, frames=32)
        tr = load_dataset(tmp / "m-train")
        va = load_dataset(tmp / "m-val", labels=tr.labels)
        for name, single in (("3d_clips", False), ("one_frame_repeated", True)):
            t0 = time.monotonic()
            r = train(tr, tmp / f"run-{name}", TrainOptions(
                model=model, scratch=True, epochs=epochs, single_frame=single, device=device),
                val_set=va, log=lambda m: None)
            out[f"motion_{name}"] = {"val_video_acc": r.metrics["final"]["val_video_acc"],
                                     "train_seconds": round(time.monotonic() - t0, 1),
                                     "epochs": epochs, "videos": len(tr), "val_videos": len(va)}
        make_order_dataset(tmp / "o-train", per_class, seed=3)
        make_order_dataset(tmp / "o-val", per_class, seed=4)
        tr = load_dataset(tmp / "o-train")
        va = load_dataset(tmp / "o-val", labels=tr.labels)
        t0 = time.monotonic()
        r = train(tr, tmp / "run-order", TrainOptions(model=model, scratch=True,
                                                      head="temporal", device=device),
                  val_set=va, log=lambda m: None)
        h = r.metrics["head"]
        out["order"] = {"val_video_acc_mean_pooling": h["val_video_acc_mean_pooling"],
                        "val_video_acc_temporal_head": h["val_video_acc"],
                        "train_seconds": round(time.monotonic() - t0, 1),
                        "videos": len(tr), "val_videos": len(va)}
    return out


def throughput(model: str, device: str, steps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from har.models.zoo import get_entry
    from har.train.trainer import gradients_agree

    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 112, 112) * 50
    y = torch.arange(8) % 2
    rows = {}
    net = get_entry(model).build(num_classes=2)
    agree = gradients_agree(net, x[:2], y[:2], device, torch.bfloat16)
    for precision in ("fp32", "bf16"):
        m = get_entry(model).build(num_classes=2).to(device).train()
        m = m.to(memory_format=torch.channels_last_3d)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        xb = x.to(device).contiguous(memory_format=torch.channels_last_3d)
        times = []
        for i in range(steps + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                                enabled=precision == "bf16"):
                loss = F.cross_entropy(m(xb).float(), y.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t)
        best = min(times)
        rows[precision] = {"clips_per_s": round(8 / best, 2), "ms_per_clip": round(best / 8 * 1000, 1)}
    rows["bf16_gradients_agree_with_fp32"] = agree
    rows["bf16_speedup"] = round(rows["bf16"]["clips_per_s"] / rows["fp32"]["clips_per_s"], 2)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--proof-model", default="r3d10-k400")
    p.add_argument("--speed-model", default="r3d34-k400")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch

    machine = cpu_name() if args.device == "cpu" else torch.cuda.get_device_name()
    per_class, epochs = (10, 4) if args.quick else (16, 6)
    doc = {"machine": machine, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "device": args.device, "proof_model": args.proof_model,
           "speed_model": args.speed_model}
    doc["throughput"] = throughput(args.speed_model, args.device, 2 if args.quick else 4)
    doc["proofs"] = proofs(args.proof_model, per_class, epochs, args.device)

    t = doc["throughput"]
    print(f"\nTraining throughput, {args.speed_model}, batch 8, 16x112x112 ({machine}):")
    print(f"  {'precision':<10}{'clips/s':>9}{'ms/clip':>9}")
    for k in ("fp32", "bf16"):
        print(f"  {k:<10}{t[k]['clips_per_s']:>9.2f}{t[k]['ms_per_clip']:>9.1f}")
    print(f"  bf16 / fp32 speed: {t['bf16_speedup']:.2f}x; bf16 gradients agree with fp32: "
          f"{t['bf16_gradients_agree_with_fp32']} (har train uses bf16 only when they do)")
    pr = doc["proofs"]
    print(f"\nProofs on generated data ({args.proof_model}, from scratch; held-out video top-1):")
    print(f"  {'dataset':<8}{'model':<36}{'top-1':>7}{'time':>8}")
    for label, key, acc in (("motion", "16-frame clips (3D)", pr["motion_3d_clips"]),
                            ("motion", "one frame repeated 16x", pr["motion_one_frame_repeated"])):
        print(f"  {label:<8}{key:<36}{acc['val_video_acc']:>6.0%}{acc['train_seconds']:>7.0f}s")
    o = pr["order"]
    print(f"  {'order':<8}{'mean of clip scores (paper)':<36}{o['val_video_acc_mean_pooling']:>6.0%}")
    print(f"  {'order':<8}{'temporal head':<36}{o['val_video_acc_temporal_head']:>6.0%}"
          f"{o['train_seconds']:>7.0f}s")
    out = Path(args.out) if args.out else HERE / "results" / (
        f"train-{machine.split(',')[0].replace(' ', '-').lower()}-"
        f"{datetime.now().strftime('%Y%m%d')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
