"""Segments: the column filter in timeline.segments gives exactly the full computation."""

import numpy as np


def test_segments_column_filter_is_exact():
    import sys
    from har import timeline
    from har.timeline import TimelineOptions, smooth, runs, merge_runs, clip_cells
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, c = rng.integers(1, 60), 30
        logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
        p = np.exp(logits); p /= p.sum(1, keepdims=True); p = p.astype(np.float32)
        st = np.arange(n) * 0.5; en = st + 0.53
        opt = TimelineOptions(threshold=float(rng.choice([0.0, 0.1, 0.3, 0.5])), window=int(rng.integers(1, 6)),
                              smoothing=str(rng.choice(["mean", "median"])), min_duration_s=float(rng.choice([0, 1])),
                              max_gap_s=1.0, max_labels=int(rng.integers(1, 6)))
        labels = [f"l{i}" for i in range(c)]
        new = timeline.segments(p, labels, st, en, opt)
        # the old algorithm, restated
        q = p.astype(np.float64); cells = clip_cells(st, en); sm = smooth(q, opt.window, opt.smoothing)
        peaks = sm.max(0); cand = [k for k in np.argsort(-peaks, kind="stable")[:opt.max_labels] if peaks[k] >= opt.threshold]
        old = []
        for k in cand:
            for a, b in merge_runs(runs(sm[:, k] >= opt.threshold), cells, opt.max_gap_s):
                s0, e0 = float(cells[a, 0]), float(cells[b, 1])
                if e0 - s0 < opt.min_duration_s - 1e-6 and not (a == 0 and b == n - 1): continue
                old.append((labels[k], s0, e0, float(q[a:b+1, k].mean()), float(q[a:b+1, k].max()), a, b))
        old.sort(key=lambda s: (s[1], -s[3], s[0]))
        got = [(s.label, s.start_s, s.end_s, s.mean_score, s.peak_score, s.start_clip, s.end_clip) for s in new]
        assert got == old, (trial, got, old)
