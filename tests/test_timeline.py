"""Smoothing, segments and aggregation (issue 5): synthetic arrays and generated videos."""

from __future__ import annotations

import numpy as np
import pytest

from har.aggregate import (aggregate_scores, evidence_clips, max_scores, topk_mean_scores,
                           video_scores)
from har.timeline import TimelineOptions, clip_cells, segments, smooth, to_srt, to_vtt
from timeline_helpers import BLUE, BLUE_LABEL, GREEN, GREEN_LABEL, RED, RED_LABEL, recognizer, write_video

LABELS = ["a", "b", "c", "d"]


def grid(n, clip_s=0.5):
    """Touching clips of ``clip_s`` seconds: starts, ends."""
    starts = [i * clip_s for i in range(n)]
    return starts, [s + clip_s for s in starts]


def probs_from(tracks: dict[int, list[float]], n: int, num=4) -> np.ndarray:
    p = np.zeros((n, num))
    for c, values in tracks.items():
        p[:, c] = values
    return p


# -- smoothing ----------------------------------------------------------------------
def test_moving_mean_is_centred_and_shrinks_at_the_ends():
    x = np.array([0.0, 0.0, 3.0, 0.0, 0.0])
    assert smooth(x, 3, "mean").tolist() == pytest.approx([0, 1, 1, 1, 0])
    # ends: only the clips that exist are averaged
    assert smooth(np.array([3.0, 0.0, 0.0]), 3, "mean").tolist() == pytest.approx([1.5, 1, 0])
    assert smooth(x, 1).tolist() == x.tolist()


def test_moving_median_removes_a_single_clip_spike_and_keeps_steps():
    spike = np.array([0.0, 0.0, 0.9, 0.0, 0.0])
    assert smooth(spike, 3, "median").tolist() == pytest.approx([0, 0, 0, 0, 0])
    step = np.array([1.0, 1, 1, 0, 0, 0])
    assert smooth(step, 3, "median").tolist() == pytest.approx(step.tolist())


def test_smoothing_is_per_class():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    s = smooth(p, 3, "mean")
    assert s[1].tolist() == pytest.approx([2 / 3, 1 / 3])


# -- clip cells ---------------------------------------------------------------------
def test_cells_of_touching_overlapping_and_gapped_clips():
    assert clip_cells([0, 16, 32], [16, 32, 40]).tolist() == [[0, 16], [16, 32], [32, 40]]
    assert clip_cells([0, 8, 16], [16, 24, 32]).tolist() == [[0, 12], [12, 20], [20, 32]]
    assert clip_cells([0, 42], [16, 58]).tolist() == [[0, 29], [29, 58]]


# -- segments -----------------------------------------------------------------------
def test_step_gives_two_segments_at_the_step():
    n = 12
    a = [0.9] * 6 + [0.05] * 6
    b = [0.05] * 6 + [0.8] * 6
    segs = segments(probs_from({0: a, 1: b}, n), LABELS, *grid(n))
    assert [(s.label, s.start_s, s.end_s, s.start_clip, s.end_clip) for s in segs] == [
        ("a", 0.0, 3.0, 0, 5), ("b", 3.0, 6.0, 6, 11)]
    assert segs[0].mean_score == pytest.approx(0.9) and segs[1].peak_score == pytest.approx(0.8)


def test_overlapping_actions_give_overlapping_segments():
    n = 12
    a = [0.6] * 8 + [0.0] * 4
    b = [0.0] * 4 + [0.4] * 8
    segs = segments(probs_from({0: a, 1: b}, n), LABELS, *grid(n))
    assert [(s.label, s.start_s, s.end_s) for s in segs] == [("a", 0.0, 4.0), ("b", 2.0, 6.0)]


def test_min_duration_drops_short_runs():
    n = 12
    a = [0.0] * 3 + [0.9] * 2 + [0.0] * 7  # 1.0 s
    opt = TimelineOptions(window=1, min_duration_s=1.5)
    assert segments(probs_from({0: a}, n), LABELS, *grid(n), opt) == []
    kept = segments(probs_from({0: a}, n), LABELS, *grid(n), TimelineOptions(window=1))
    assert [(s.start_s, s.end_s) for s in kept] == [(1.5, 2.5)]


def test_a_video_shorter_than_min_duration_keeps_its_action():
    segs = segments(np.array([[0.9, 0.1, 0, 0]]), LABELS, [0.0], [0.3])
    assert [(s.label, s.start_s, s.end_s) for s in segs] == [("a", 0.0, 0.3)]


def test_gap_bridging_merges_a_dip_and_reports_raw_scores():
    n = 12
    a = [0.8] * 4 + [0.1, 0.1] + [0.8] * 6  # a 1-second dip
    opt = TimelineOptions(window=1, max_gap_s=1.5)
    segs = segments(probs_from({0: a}, n), LABELS, *grid(n), opt)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 6.0)]
    assert segs[0].mean_score == pytest.approx(np.mean(a)) and segs[0].peak_score == 0.8
    split = segments(probs_from({0: a}, n), LABELS, *grid(n), TimelineOptions(window=1))
    assert [(s.start_s, s.end_s) for s in split] == [(0.0, 2.0), (3.0, 6.0)]


def test_smoothing_removes_a_flicker_before_thresholding():
    n = 10
    a = [0.0] * 4 + [0.9] + [0.0] * 5
    opt = TimelineOptions(min_duration_s=0)
    assert segments(probs_from({0: a}, n), LABELS, *grid(n), opt) == []
    raw = segments(probs_from({0: a}, n), LABELS, *grid(n), TimelineOptions(window=1,
                                                                              min_duration_s=0))
    assert len(raw) == 1


def test_max_labels_keeps_the_strongest_peaks():
    n = 6
    p = probs_from({0: [0.4] * n, 1: [0.9] * n, 2: [0.6] * n, 3: [0.5] * n}, n)
    segs = segments(p, LABELS, *grid(n), TimelineOptions(max_labels=2))
    assert sorted(s.label for s in segs) == ["b", "c"]


def test_clip_indices_and_validation():
    n = 4
    p = probs_from({2: [0.9] * n}, n)
    segs = segments(p, LABELS, *grid(n), clip_indices=[10, 11, 12, 13])
    assert (segs[0].start_clip, segs[0].end_clip) == (10, 13)
    with pytest.raises(ValueError):
        segments(p, LABELS[:3], *grid(n))
    with pytest.raises(ValueError):
        TimelineOptions(threshold=2)


def test_subtitle_text():
    n = 12
    segs = segments(probs_from({0: [0.9] * 6 + [0] * 6, 1: [0] * 4 + [0.7] * 8}, n),
                    LABELS, *grid(n, 61.25))
    srt = to_srt(segs)
    assert srt.startswith("1\n00:00:00,000 --> 00:06:07,500\na (90%, peak 90%)\n")
    assert "2\n00:04:05,000 --> 00:12:15,000\nb (70%, peak 70%)\n" in srt
    vtt = to_vtt(segs)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:06:07.500\n")


# -- aggregation --------------------------------------------------------------------
def test_aggregates_and_evidence():
    p = np.array([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3], [0.0, 1.0]])
    assert aggregate_scores(p, "mean").tolist() == pytest.approx(video_scores(p).tolist())
    assert max_scores(p).tolist() == pytest.approx([0.8, 1.0])
    assert topk_mean_scores(p, 2).tolist() == pytest.approx([0.75, 0.95])
    assert topk_mean_scores(p, 10).tolist() == pytest.approx(p.mean(0).tolist())
    assert evidence_clips(p, 0, 2) == [1, 2]
    assert evidence_clips(p, 1, 3) == [3, 0, 2]
    with pytest.raises(ValueError):
        aggregate_scores(p, "median")


def test_a_short_action_wins_with_max_but_not_with_mean(tmp_path):
    """A long blue video with a short red burst: mean says blue, max/topk-mean see red."""
    video = write_video(tmp_path / "burst.mp4", [BLUE, RED, BLUE], [64, 32, 64])
    mean = recognizer().predict(str(video))
    assert mean.ok and mean.top[0].label == BLUE_LABEL
    for how in ("max", "topk-mean"):
        r = recognizer(aggregate=how, aggregate_k=2).predict(str(video))
        assert r.ok and r.top[0].label == RED_LABEL, how
        assert sorted(r.evidence) == [4, 5], how  # the red clips (frames 64..95)
    # The clip scores themselves do not depend on the aggregate.
    assert [c.top[0].label for c in r.clips] == [c.top[0].label for c in mean.clips]


# -- on generated videos, with a model whose output is known -------------------------
@pytest.mark.parametrize("change_at", [60, 64, 75])
def test_segment_boundaries_within_one_clip_of_the_truth(tmp_path, change_at):
    fps, total = 30, 150
    video = write_video(tmp_path / "v.mp4", [RED, GREEN], [change_at, total - change_at],
                        fps=fps)
    r = recognizer().predict(str(video))
    assert r.ok, r.error
    clip_s = 16 / fps
    truth = change_at / fps
    by_label = {s.label: s for s in r.segments}
    assert set(by_label) == {RED_LABEL, GREEN_LABEL}, r.segments
    red, green = by_label[RED_LABEL], by_label[GREEN_LABEL]
    assert red.start_s == pytest.approx(0.0)
    assert abs(red.end_s - truth) <= clip_s + 1e-6
    assert abs(green.start_s - truth) <= clip_s + 1e-6
    assert green.end_s == pytest.approx(total / fps, abs=1e-3)
    assert red.mean_score > 0.9 and green.peak_score > 0.99


def test_segments_with_overlapping_clips_and_a_uniform_sampler(tmp_path):
    video = write_video(tmp_path / "v.mp4", [RED, BLUE], [70, 70])
    truth, clip_s = 70 / 30, 16 / 30
    for kw in ({"stride": 8}, {"sampler": "uniform", "num_clips": 6}):
        r = recognizer(**kw, timeline=TimelineOptions(min_duration_s=0.5)).predict(str(video))
        by_label = {s.label: s for s in r.segments}
        assert set(by_label) == {RED_LABEL, BLUE_LABEL}, (kw, r.segments)
        # uniform clips leave gaps: within one clip plus the gap's half
        tol = clip_s if "stride" in kw else clip_s + (140 - 16 * 6) / 5 / 30
        assert abs(by_label[RED_LABEL].end_s - truth) <= tol + 1e-6, kw
        assert abs(by_label[BLUE_LABEL].start_s - truth) <= tol + 1e-6, kw
