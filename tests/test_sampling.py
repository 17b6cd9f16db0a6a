from __future__ import annotations

import numpy as np
import pytest

from har.sampling import ClipAssembler, loop_pad, sliding_window, uniform
from har.video import Frame


def _frames(n, fps=10.0):
    for i in range(n):
        yield Frame(index=i, time_s=i / fps, duration_s=1 / fps,
                    rgb=np.full((2, 2, 3), i % 256, np.uint8))


def test_loop_padding_matches_original_tool():
    assert loop_pad([32, 33, 34], 8) == (32, 33, 34, 32, 33, 34, 32, 33)
    assert loop_pad(list(range(16)), 16) == tuple(range(16))


@pytest.mark.parametrize("n,stride", [(1, 16), (10, 16), (16, 16), (17, 16), (40, 16),
                                      (280, 16), (40, 8), (41, 5), (100, 1), (50, 20)])
def test_streaming_assembler_equals_pure_sliding_window(n, stride):
    want = sliding_window(n, 16, stride)
    got = list(ClipAssembler(16, stride=stride)(_frames(n)))
    assert [(c.start_frame, c.end_frame, c.frame_indices) for c in want] == \
           [(s.start_frame, s.end_frame, s.frame_indices) for s, _ in got]
    for spec, clip in got:
        assert clip.shape == (16, 2, 2, 3)
        assert [int(v) for v in clip[:, 0, 0, 0]] == [i % 256 for i in spec.frame_indices]
        assert spec.start_s == pytest.approx(spec.start_frame / 10)
        assert spec.end_s == pytest.approx(spec.end_frame / 10)


@pytest.mark.parametrize("n", [1, 5, 16, 17, 39, 40, 300])
def test_default_stride_covers_every_frame_once(n):
    clips = sliding_window(n)
    assert clips[0].start_frame == 0 and clips[-1].end_frame == n
    covered = [f for c in clips for f in range(c.start_frame, c.end_frame)]
    assert covered == list(range(n))
    assert len(clips) == -(-n // 16)


def test_overlapping_stride_still_covers_everything_without_redundant_tail():
    clips = sliding_window(40, 16, 8)
    assert [c.start_frame for c in clips] == [0, 8, 16, 24]
    assert clips[-1].end_frame == 40


def test_uniform_sampler_and_its_streaming_form():
    plan = uniform(100, 3)
    assert [(c.start_frame, c.end_frame) for c in plan] == [(0, 16), (42, 58), (84, 100)]
    got = list(ClipAssembler(16, plan=plan)(_frames(100)))
    assert [s.start_frame for s, _ in got] == [0, 42, 84]
    short = uniform(5, 4)
    assert len(short) == 1 and short[0].frame_indices == loop_pad(range(5), 16)


def test_uniform_plan_on_a_truncated_stream_uses_what_decoded():
    got = list(ClipAssembler(16, plan=uniform(100, 3))(_frames(50)))
    assert [(s.start_frame, s.end_frame) for s, _ in got] == [(0, 16), (42, 50)]


def test_empty_stream_gives_no_clip():
    assert list(ClipAssembler(16)(_frames(0))) == []
    assert sliding_window(0) == []


def test_uniform_never_repeats_a_clip():
    clips = uniform(40, 100)
    starts = [c.start_frame for c in clips]
    assert starts == sorted(set(starts)) == list(range(25))
    assert [c.index for c in clips] == list(range(25))
    assert len(uniform(5, 4)) == 1
