"""``har train --head temporal``: a learned head over each video's sequence of clips.

The backbone is frozen. Every video is cut into the test-time clips (non-overlapping
16-frame windows, centre crop) and each clip is embedded once (``forward_features``).
Then two heads are fitted on those embeddings, both cheap:

- the clip classifier (``fc``), unless the backbone already has one for these labels:
  it gives every clip its own scores, and its mean over the clips is the paper's video
  score, reported as the **mean-pooling baseline**;
- the :class:`~har.models.temporal.TemporalHead`, which reads the clips in order.

Both are saved in ``model.pth`` (the backbone with its clip classifier, and the head
under ``video_head``); ``har predict`` then scores videos with the temporal head.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.temporal import TemporalHead, pad_sequences
from .augment import eval_clips
from .data import Dataset
from .frames import FrameStore
from .run import (RunResult, data_doc, decode_datasets, finish_run, head_name, load_base,
                  metrics_doc, model_checkpoint, progress_bar, replace_head, save_torch,
                  write_history)


@torch.no_grad()
def clip_features(model, store: FrameStore, device: str = "cpu", batch: int = 8
                  ) -> dict[int, np.ndarray]:
    """``{sample index: (n_clips, D) float32}`` for every decoded video (test-time clips)."""
    model.eval().to(device)
    out = {}
    for i in store.ok:
        x = eval_clips(store.frames(i), store.preset)
        feats = [model.forward_features(x[s:s + batch].to(device)).float().cpu()
                 for s in range(0, len(x), batch)]
        out[i] = torch.cat(feats).numpy()
    return out


def _fit_linear(fc: torch.nn.Linear, feats: np.ndarray, labels: np.ndarray, epochs: int,
                lr: float, seed: int) -> None:
    """Full-batch training of the clip classifier on frozen clip embeddings."""
    torch.manual_seed(seed)
    x, y = torch.as_tensor(feats), torch.as_tensor(labels)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    # Start from a classifier that sees standardised features; fold the scaling back in.
    lin = torch.nn.Linear(x.shape[1], fc.out_features)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=1e-4)
    xs = (x - mu) / sd
    for _ in range(max(50, epochs * 5)):
        opt.zero_grad()
        F.cross_entropy(lin(xs), y).backward()
        opt.step()
    with torch.no_grad():
        fc.weight.copy_(lin.weight / sd)
        fc.bias.copy_(lin.bias - (lin.weight * (mu / sd)).sum(1))


def _video_eval(head: TemporalHead, fc, seqs: list[np.ndarray], y: list[int]) -> dict:
    head.eval()
    correct = mean_correct = 0
    loss = 0.0
    with torch.no_grad():
        for s, label in zip(seqs, y):
            logits = head(torch.as_tensor(s).unsqueeze(0))
            loss += F.cross_entropy(logits, torch.tensor([label])).item()
            correct += int(logits.argmax(1).item() == label)
            pooled = F.softmax(fc(torch.as_tensor(s)), 1).mean(0)
            mean_correct += int(pooled.argmax().item() == label)
    n = max(len(y), 1)
    return {"loss": loss / n, "acc": correct / n, "mean_pool_acc": mean_correct / n}


def train_temporal(train_set: Dataset, out: Path, o, *, val_set: Dataset | None,
                   progress: bool, log) -> RunResult:
    torch.manual_seed(o.seed)
    base = load_base(o)
    labels = train_set.labels
    model = base.model
    keep_fc = tuple(base.labels) == tuple(labels)
    if not keep_fc:
        replace_head(model, len(labels), o.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    log(f"model {base.entry.name} frozen ({'random init' if o.scratch else 'loaded weights'}); "
        f"learning a temporal head over clip embeddings, {len(labels)} classes")
    train_store, val_store = decode_datasets(train_set, val_set, base.preset, o, progress, log, out)
    t_start = time.monotonic()
    try:
        feats = clip_features(model, train_store, o.device, o.batch_size)
        val_feats = clip_features(model, val_store, o.device, o.batch_size) if val_store else {}
        doc = data_doc(train_set, val_set, train_store, val_store)
    finally:
        train_store.close()
        if val_store is not None:
            val_store.close()
    idx = sorted(feats)
    seqs = [feats[i] for i in idx]
    y = [train_set.samples[i].label for i in idx]
    fc = getattr(model, head_name(model))
    if not keep_fc:
        clip_y = np.concatenate([[lab] * len(s) for s, lab in zip(seqs, y)])
        _fit_linear(fc, np.concatenate(seqs), clip_y, o.epochs, 1e-3, o.seed)
    fc = fc.cpu().eval()
    vidx = sorted(val_feats)
    vseqs = [val_feats[i] for i in vidx]
    vy = [val_set.samples[i].label for i in vidx] if val_set is not None else []

    torch.manual_seed(o.seed)
    head = TemporalHead(seqs[0].shape[1], len(labels))
    opt = torch.optim.AdamW(head.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    rng = np.random.default_rng(o.seed)
    bs = max(1, min(o.batch_size, len(seqs)))
    history = []
    bar = progress_bar(progress, o.epochs, "temporal head", unit="epoch")
    for epoch in range(o.epochs):
        head.train()
        order = rng.permutation(len(seqs))
        loss_sum = correct = 0
        t0 = time.monotonic()
        for s in range(0, len(order), bs):
            part = order[s:s + bs]
            x, mask = pad_sequences([seqs[i] for i in part])
            target = torch.tensor([y[i] for i in part])
            logits = head(x, mask)
            loss = F.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(part)
            correct += int((logits.argmax(1) == target).sum())
        row = {"epoch": epoch + 1, "train_loss": loss_sum / len(seqs),
               "train_acc": correct / len(seqs), "lr": o.lr,
               "seconds": round(time.monotonic() - t0, 3)}
        if vseqs:
            ev = _video_eval(head, fc, vseqs, vy)
            row.update(val_loss=ev["loss"], val_video_acc=ev["acc"],
                       val_video_acc_mean_pooling=ev["mean_pool_acc"])
        history.append(row)
        bar.update(1, loss=row["train_loss"], acc=row["train_acc"])
    bar.close()
    elapsed = time.monotonic() - t_start
    train_eval = _video_eval(head, fc, seqs, y)
    last = history[-1]
    text = (f"temporal head, {o.epochs} epochs: train video acc {train_eval['acc']:.1%} "
            f"(mean pooling {train_eval['mean_pool_acc']:.1%})")
    if vseqs:
        text += (f"; val video acc {last['val_video_acc']:.1%} "
                 f"(mean pooling {last['val_video_acc_mean_pooling']:.1%})")
    log(text)
    write_history(out, history)
    model = model.cpu()
    save_torch(model_checkpoint(model, base, labels, o, epoch=o.epochs, data=doc,
                                video_head=head.eval()), out / "model.pth")
    metrics = metrics_doc(o, base, labels, history, doc, "fp32", "n/a (frozen backbone)",
                           ["backbone"], elapsed, 0)
    metrics["head"] = {"type": "temporal", "config": head.config,
                       "train_video_acc": train_eval["acc"],
                       "train_video_acc_mean_pooling": train_eval["mean_pool_acc"],
                       "val_video_acc": last.get("val_video_acc"),
                       "val_video_acc_mean_pooling": last.get("val_video_acc_mean_pooling"),
                       "clip_classifier": "kept" if keep_fc else "fitted on frozen features"}
    del metrics["train_clips_per_s"]
    metrics["options"] = asdict(o)
    finish_run(out, labels, metrics)
    return RunResult(out, metrics, history)
