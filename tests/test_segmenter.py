"""The one segmenter (har.timeline.Segmenter, issue 22): exact segments and events on
generated clip probabilities, the delay of its decisions, and live events that agree
with the summary's segments (random sequences, a generated video and a real one)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from har.results import ClipResult
from har.summary import Summary
from har.timeline import Segmenter, TimelineOptions, clip_cells, segments, smooth

LABELS = ["a", "b", "c", "d"]
LABELS12 = [f"l{i}" for i in range(12)]


def grid(n, clip_s=0.5):
    """Touching clips of ``clip_s`` seconds: starts, ends."""
    starts = [i * clip_s for i in range(n)]
    return starts, [s + clip_s for s in starts]


def probs_from(tracks: dict[int, list[float]], n: int, num=4) -> np.ndarray:
    p = np.zeros((n, num))
    for c, values in tracks.items():
        p[:, c] = values
    return p


def run(p, starts, ends, opt=None, labels=LABELS):
    """Feed the clips one by one: ``([(clip position, type, fields)], final segments)``."""
    seg = Segmenter(labels, opt)
    events = []
    for i, row in enumerate(p):
        events += [(i, kind, f) for kind, f in seg.push(row, starts[i], ends[i], i)]
    events += [("flush", kind, f) for kind, f in seg.flush()]
    return events, seg.segments()


def spans(segs):
    return [(s.label, s.start_s, s.end_s, s.start_clip, s.end_clip) for s in segs]


# -- exact segments and when they are announced ---------------------------------------
def test_on_off_pattern_and_when_its_events_come():
    n = 14
    a = [0.0] * 2 + [0.9] * 6 + [0.0] * 6  # on over clips 2..7 = 1.0 .. 4.0 s
    events, segs = run(probs_from({0: a}, n), *grid(n), TimelineOptions(window=1))
    assert spans(segs) == [("a", 1.0, 4.0, 2, 7)]
    assert segs[0].mean_score == pytest.approx(0.9) and segs[0].peak_score == pytest.approx(0.9)
    # Announced once it has lasted min_duration_s (clips 2..3 = 1.0 s): clip 3 is
    # decided when clip 4 arrives (its cell ends where clip 4 begins).
    # Ended once off for max_gap_s (1 s): clip 9's cell ends at 5.0 = 4.0 + 1.0;
    # clip 9 is decided when clip 10 arrives.
    assert [(i, k, f["start_s"], f["end_s"], f["end_clip"]) for i, k, f in events] == [
        (4, "segment_start", 1.0, 2.0, 3), (10, "segment_end", 1.0, 4.0, 7)]
    assert events[1][2] == segs[0].to_dict()


def test_the_delay_is_half_the_smoothing_window():
    n = 16
    a = [0.0] * 4 + [0.9] * 12
    # (window, first clip on, clips of delay): a step stays where it is under an odd
    # median; an even window leans one clip to the future (its median of 0 and 0.9
    # is 0.45)
    for window, first, lag in ((1, 4, 1), (2, 3, 1), (3, 4, 1), (5, 4, 2), (7, 4, 3)):
        events, segs = run(probs_from({0: a}, n), *grid(n),
                           TimelineOptions(window=window, min_duration_s=0))
        assert spans(segs) == [("a", first / 2, 8.0, first, 15)], window
        (i, kind, f), end = events[0], events[-1]
        assert (kind, f["start_clip"], i) == ("segment_start", first, first + lag), window
        assert end[:2] == ("flush", "segment_end")


def test_a_dip_shorter_than_max_gap_is_bridged_and_its_raw_scores_count():
    n = 12
    a = [0.8] * 4 + [0.1, 0.1] + [0.8] * 6  # a 1-second dip between runs
    events, segs = run(probs_from({0: a}, n), *grid(n), TimelineOptions(window=1,
                                                                        max_gap_s=1.5))
    assert spans(segs) == [("a", 0.0, 6.0, 0, 11)]
    assert segs[0].mean_score == pytest.approx(np.mean(a)) and segs[0].peak_score == 0.8
    assert [k for _, k, _ in events] == ["segment_start", "segment_end"]
    # a gap of exactly max_gap_s is not bridged: two segments, each announced and ended
    events, segs = run(probs_from({0: a}, n), *grid(n), TimelineOptions(window=1,
                                                                        max_gap_s=1.0))
    assert spans(segs) == [("a", 0.0, 2.0, 0, 3), ("a", 3.0, 6.0, 6, 11)]
    assert [(i, k) for i, k, _ in events] == [
        (2, "segment_start"), (6, "segment_end"), (8, "segment_start"),
        ("flush", "segment_end")]
    assert segs[0].mean_score == pytest.approx(0.8)  # the dip is not part of it


def test_a_blip_shorter_than_min_duration_is_never_announced():
    n = 12
    a = [0.0] * 3 + [0.9] * 2 + [0.0] * 7  # 1.0 s
    events, segs = run(probs_from({0: a}, n), *grid(n),
                       TimelineOptions(window=1, min_duration_s=1.5))
    assert events == [] and segs == []
    events, segs = run(probs_from({0: a}, n), *grid(n), TimelineOptions(window=1))
    assert spans(segs) == [("a", 1.5, 2.5, 3, 4)]
    assert [k for _, k, _ in events] == ["segment_start", "segment_end"]
    # ... and a single-clip flicker is removed by the median before the threshold
    flick = [0.0] * 4 + [0.9] + [0.0] * 5
    assert run(probs_from({0: flick}, 10), *grid(10), TimelineOptions(min_duration_s=0)) \
        == ([], [])


def test_a_stream_shorter_than_min_duration_keeps_its_action_at_the_end():
    events, segs = run(np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0]]), [0.0, 0.3],
                       [0.3, 0.6])
    assert spans(segs) == [("a", 0.0, 0.6, 0, 1)]
    assert [(i, k) for i, k, _ in events] == [("flush", "segment_start"),
                                               ("flush", "segment_end")]
    # not when the short run is only part of the stream
    events, segs = run(np.array([[0.9, 0, 0, 0], [0.9, 0, 0, 0], [0, 0, 0, 0]]),
                       *grid(3, 0.3), TimelineOptions(window=1))
    assert events == [] and segs == []


def test_several_labels_at_once_overlap():
    n = 12
    a = [0.6] * 8 + [0.0] * 4
    b = [0.0] * 4 + [0.4] * 8
    events, segs = run(probs_from({0: a, 1: b}, n), *grid(n))
    assert spans(segs) == [("a", 0.0, 4.0, 0, 7), ("b", 2.0, 6.0, 4, 11)]
    assert [(i, k, f["label"]) for i, k, f in events] == [
        (2, "segment_start", "a"), (6, "segment_start", "b"), (10, "segment_end", "a"),
        ("flush", "segment_end", "b")]


def test_max_labels_bounds_the_segments_open_at_once():
    n = 12
    # all on from the start: the highest smoothed scores get the slots
    p = probs_from({0: [0.35] * n, 1: [0.9] * n, 2: [0.6] * n, 3: [0.5] * n}, n)
    _, segs = run(p, *grid(n), TimelineOptions(max_labels=2))
    assert sorted(s.label for s in segs) == ["b", "c"]
    # a label that turns on while the slots are taken starts once one is free
    a = [0.9] * 6 + [0.0] * 6
    b = [0.0] * 3 + [0.5] * 9
    p = probs_from({0: a, 1: b}, n)
    _, segs = run(p, *grid(n), TimelineOptions(window=1, max_labels=1))
    # a ends at 3.0 s and is over (off for 1 s) at clip 7's cell: b starts there
    assert spans(segs) == [("a", 0.0, 3.0, 0, 5), ("b", 3.5, 6.0, 7, 11)]
    _, segs = run(p, *grid(n), TimelineOptions(window=1, max_labels=2))
    assert spans(segs) == [("a", 0.0, 3.0, 0, 5), ("b", 1.5, 6.0, 3, 11)]


def test_cells_of_overlapping_and_gapped_clips_bound_the_segments():
    # overlapping clips (stride half a clip): boundaries at the midpoints of centres
    starts = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    ends = [s + 0.5 for s in starts]
    a = [0.9] * 4 + [0.0] * 4
    _, segs = run(probs_from({0: a}, 8), starts, ends, TimelineOptions(window=1,
                                                                      min_duration_s=0))
    cells = clip_cells(starts, ends)
    # clip 3 is centred at 1.0 s, clip 4 at 1.25 s
    assert spans(segs) == [("a", 0.0, float(cells[3, 1]), 0, 3)] and cells[3, 1] == 1.125
    # clips with gaps (skipped live clips): a gap is split in the middle
    starts, ends = [0.0, 0.5, 2.5, 3.0], [0.5, 1.0, 3.0, 3.5]
    _, segs = run(probs_from({0: [0.9, 0.9, 0, 0]}, 4), starts, ends,
                  TimelineOptions(window=1, min_duration_s=0, max_gap_s=0))
    assert spans(segs) == [("a", 0.0, 1.75, 0, 1)]


def test_snapshots_before_the_end_are_the_segments_of_the_clips_so_far():
    n = 20
    rng = np.random.default_rng(5)
    p = probs_from({0: [0.9] * 7 + [0.0] * 13, 1: rng.uniform(0, 0.7, n)}, n)
    starts, ends = grid(n)
    seg = Segmenter(LABELS)
    for i in range(n):
        seg.push(p[i], starts[i], ends[i], i)
        assert spans(seg.segments()) == spans(
            segments(p[:i + 1], LABELS, starts[:i + 1], ends[:i + 1])), i


def test_bad_input_is_refused():
    seg = Segmenter(LABELS)
    with pytest.raises(ValueError, match="3 classes but 4 labels"):
        seg.push([0.1, 0.2, 0.7], 0.0, 0.5)
    seg.flush()
    with pytest.raises(ValueError, match="flushed"):
        seg.push([0.1, 0.2, 0.3, 0.4], 0.0, 0.5)
    assert seg.flush() == []


# -- one rule: the whole-array restatement, and live == summary ------------------------
def random_probs(rng, n, c=12):
    """Softmax clips whose logits follow a few actions switching on and off (so there
    are segments, dips and blips), plus noise."""
    logits = rng.normal(size=(n, c)) * rng.uniform(0.3, 1.5)
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(0, c))
        a = int(rng.integers(0, n))
        b = int(rng.integers(a, n)) + 1
        logits[a:b, k] += rng.uniform(2, 6)
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def random_times(rng, n):
    kind = rng.integers(0, 3)
    step = (0.5, 0.25, 0.9)[kind]  # touching, overlapping, gapped
    starts = np.arange(n) * step
    if kind == 0:  # touching, with skipped clips (gaps) as on a busy live stream
        starts = starts + np.cumsum(rng.random(n) < 0.1) * 0.5
    return starts.tolist(), (starts + 0.5).tolist()


def random_options(rng, c):
    return TimelineOptions(threshold=float(rng.choice([0.0, 0.1, 0.3, 0.5])),
                           window=int(rng.integers(1, 6)),
                           smoothing=str(rng.choice(["mean", "median"])),
                           min_duration_s=float(rng.choice([0, 1, 2.5])),
                           max_gap_s=float(rng.choice([0, 0.5, 1.0, 2.0])),
                           max_labels=int(rng.integers(1, c + 1)))


def whole_array_rule(p, labels, starts, ends, opt):
    """The rule restated over the whole array (as the old har predict computed it):
    centred smoothing of every class, runs, bridging, minimum duration. It agrees with
    the segmenter whenever no more than max_labels labels ever reach the threshold.
    Returns (segments, how many labels reach it)."""
    q = p.astype(np.float64)
    n = len(q)
    cells = clip_cells(starts, ends)
    on = smooth(q, opt.window, opt.smoothing) >= opt.threshold
    out = []
    for k in np.flatnonzero(on.any(axis=0)):
        edges = np.diff(np.concatenate(([0], on[:, k].astype(int), [0])))
        merged = []
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            if merged and cells[a, 0] - cells[merged[-1][1], 1] < opt.max_gap_s:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        for a, b in merged:
            s0, e0 = float(cells[a, 0]), float(cells[b, 1])
            if e0 - s0 < opt.min_duration_s - 1e-6 and not (a == 0 and b == n - 1):
                continue
            out.append((labels[k], s0, e0, int(a), int(b), float(q[a:b + 1, k].mean()),
                        float(q[a:b + 1, k].max())))
    return sorted(out, key=lambda s: (s[1], -s[5], s[0])), int(on.any(axis=0).sum())


def test_the_segmenter_is_the_whole_array_rule_while_max_labels_does_not_bind():
    rng = np.random.default_rng(0)
    compared = 0
    for trial in range(300):
        n, c = int(rng.integers(1, 60)), 12
        p = random_probs(rng, n, c)
        starts, ends = random_times(rng, n)
        opt = random_options(rng, c)
        labels = [f"l{i}" for i in range(c)]
        want, reached = whole_array_rule(p, labels, starts, ends, opt)
        if reached > opt.max_labels:
            continue  # there the rule's max_labels is the causal one (tested above)
        got = [(s.label, s.start_s, s.end_s, s.start_clip, s.end_clip, s.mean_score,
                s.peak_score) for s in segments(p, labels, starts, ends, opt)]
        assert [g[:5] for g in got] == [w[:5] for w in want], (trial, opt)
        assert np.allclose([g[5:] for g in got], [w[5:] for w in want], rtol=0,
                           atol=1e-12), trial
        compared += 1
    assert compared > 150  # most trials were compared, with and without segments


def feed_live_and_summary(p, starts, ends, opt, keep_clips=True):
    """As har live / har serve do: a segmenter's events; as the stream's summary does:
    a Summary of the same clips. Returns (events, summary)."""
    live = Segmenter(LABELS12, opt, keep=0)
    summ = Summary(LABELS12, timeline=opt, keep_clips=keep_clips)
    events, own = [], []
    for i, row in enumerate(p):
        clip = ClipResult(index=i, start_frame=i * 16, end_frame=i * 16 + 16,
                          start_s=starts[i], end_s=ends[i], top=[], probs=row)
        events += live.add(clip)
        own += summ.add(clip)
    events += live.flush()
    final = summ.segments()
    own += summ.finish()  # the summary's own events are the same decisions
    assert own == events and summ.segments() == final
    return events, summ


def check_agreement(events, segs):
    """The segment_end events are exactly ``segs``; each has one segment_start before
    it, with the same label, start and first clip."""
    ends = [f for k, f in events if k == "segment_end"]
    key = lambda f: (f["start_s"], -f["mean_score"], f["label"])  # noqa: E731
    assert sorted(ends, key=key) == [s.to_dict() for s in segs]
    open_ = {}
    for kind, f in events:
        ident = (f["label"], f["start_s"], f["start_clip"])
        if kind == "segment_start":
            assert ident not in open_
            open_[ident] = f
        else:
            assert ident in open_, f
            assert open_.pop(ident)["end_s"] <= f["end_s"]
    assert open_ == {}


def test_live_events_equal_the_summarys_segments_on_random_sequences():
    rng = np.random.default_rng(22)
    with_segments = 0
    for trial in range(200):
        n = int(rng.integers(1, 80))
        p = random_probs(rng, n)
        starts, ends = random_times(rng, n)
        opt = random_options(rng, 12)
        events, summ = feed_live_and_summary(p, starts, ends, opt)
        final = summ.segments()
        check_agreement(events, final)
        # and a summary that keeps no clips (live, days long) has the same segments
        _, lean = feed_live_and_summary(p, starts, ends, opt, keep_clips=False)
        assert lean.segments() == final
        with_segments += bool(final)
    assert with_segments > 100


def test_summary_finish_returns_the_last_decisions_once():
    n = 10
    p = np.zeros((n, 12))
    p[:, 3] = 0.9
    starts, ends = grid(n)
    summ = Summary(LABELS12)
    added = []
    for i in range(n):
        added += summ.add(ClipResult(index=i, start_frame=0, end_frame=16,
                                     start_s=starts[i], end_s=ends[i], top=[], probs=p[i]))
    before = summ.segments()  # as if it ended now
    assert [k for k, _ in added] == ["segment_start"]
    last = summ.finish()
    assert last == [("segment_end", before[0].to_dict())]
    assert summ.finish() == [] and summ.segments() == before


def test_a_lean_summary_keeps_the_last_window_segments():
    n = 60
    p = np.zeros((n, 12))
    p[::4, 1] = p[1::4, 1] = 0.9  # on 2 clips, off 2: a 1-second segment every 2 s
    starts, ends = grid(n)
    opt = TimelineOptions(window=1, max_gap_s=0.5)
    events, full = feed_live_and_summary(p, starts, ends, opt)
    lean = Summary(LABELS12, timeline=opt, keep_clips=False, window=4)
    for i in range(n):
        lean.add(ClipResult(index=i, start_frame=0, end_frame=16, start_s=starts[i],
                            end_s=ends[i], top=[], probs=p[i]))
    assert len(full.segments()) == 15
    assert lean.segments() == full.segments()[-4:]


# -- through a Recognizer: a generated video and a real one ----------------------------
def stream_and_segment(rec, source, **kw):
    """har live's wiring: the recognizer's stream and a Segmenter fed each clip."""
    stream = rec.stream(source, **kw)
    seg = Segmenter(rec.labels, rec.timeline, keep=0)
    events = []
    for clip in stream:
        events += seg.add(clip)
    events += seg.flush()
    return events, stream.result()


def test_live_events_equal_predict_segments_on_a_generated_video(tmp_path):
    from timeline_helpers import BLUE, GREEN, RED, recognizer, write_video

    video = write_video(tmp_path / "v.mp4", [RED, GREEN, RED, BLUE], [64, 96, 20, 96])
    rec = recognizer(stride=8, timeline=TimelineOptions(min_duration_s=0.5))
    events, result = stream_and_segment(rec, str(video))
    assert result.ok, result.error
    assert len(result.segments) >= 3, result.segments
    check_agreement(events, result.segments)
    assert result.segments == rec.predict(str(video)).segments  # har predict's


def test_live_events_equal_the_snapshot_on_a_real_video_read_live():
    """A real video read by a LiveSource, kept clips bounded (keep_clips=False, as
    har live runs): the events and the stream's own snapshot agree."""
    import har
    from conftest import shared_video
    from har.live import LiveSource
    from timeline_helpers import ColourModel

    path = shared_video("torchcodec__nasa_13013.mp4")
    opt = TimelineOptions(min_duration_s=0.5, max_gap_s=0.5)
    rec = har.Recognizer(module=ColourModel(gain=0.5), timeline=opt)
    events, result = stream_and_segment(rec, LiveSource(str(path)), live=True,
                                        keep_clips=False)
    assert result.ok, result.error
    labels = [s.label for s in result.segments]
    assert len(labels) >= 2 and len(set(labels)) >= 2, result.segments  # it can fail
    check_agreement(events, result.segments)


def test_har_live_writes_the_segments_of_its_own_clips(r10_weights, tmp_path, capsys):
    """`har live FILE --realtime`, in this process: its segment_start/segment_end events
    are the segments the one rule gives on the clips it scored (read back from its clip
    events, all 400 scores each), skipped clips or not."""
    from conftest import make_video
    from har.cli import main
    from har.labels import load_labels

    video = make_video(tmp_path / "v.mp4", 96, size=(128, 96), fps=60)
    opt = TimelineOptions(threshold=0.5, window=1, min_duration_s=0, max_gap_s=0)
    jsonl = tmp_path / "live.jsonl"
    assert main(["live", str(video), "--realtime", "--model", "r3d10-k400", "--weights",
                 r10_weights, "--backend", "torch", "--topk", "400", "--threshold", "0.5",
                 "--smooth", "1", "--min-duration", "0", "--merge-gap", "0", "--jsonl",
                 str(jsonl), "--quiet"]) == 0
    capsys.readouterr()
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    labels = load_labels("kinetics400")
    clips = [e for e in events if e["type"] == "clip"]
    assert clips and all(len(c["top"]) == len(labels) for c in clips)
    probs = np.zeros((len(clips), len(labels)))
    for i, c in enumerate(clips):
        for t in c["top"]:
            probs[i, labels.index(t["label"])] = t["score"]
    want = segments(probs, labels, [c["start_s"] for c in clips], [c["end_s"] for c in clips],
                    opt, clip_indices=[c["index"] for c in clips])
    assert want, "no segment: the test would prove nothing"
    got = [(e["type"], {k: e[k] for k in want[0].to_dict()}) for e in events
           if e["type"] in ("segment_start", "segment_end")]
    ends = sorted((f for k, f in got if k == "segment_end"),
                  key=lambda f: (f["start_s"], -f["mean_score"], f["label"]))
    # the clip events' scores are rounded to 6 decimals: compare the scores to 1e-6
    same = lambda f: {k: v for k, v in f.items() if not k.endswith("_score")}  # noqa: E731
    assert [same(f) for f in ends] == [same(s.to_dict()) for s in want]
    for f, s in zip(ends, want):
        assert abs(f["mean_score"] - s.mean_score) <= 2e-6
        assert abs(f["peak_score"] - s.peak_score) <= 2e-6
    check_agreement(got, [_Seg(f) for f in ends])


class _Seg:
    """A segment given by its event fields."""

    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d
