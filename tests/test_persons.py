"""Per-person recognition (har.persons, issue 24): MOT files, the tracker on generated
scenes, the crop rule, ONNX detectors in both layouts, the person stream and the CLI.
The end-to-end proof with a trained model is in test_persons_e2e.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from har.errors import HarError
from har.persons.boxes import Box, TrackedBox, iou_matrix
from har.persons.mot import parse_mot, read_mot, write_mot
from har.persons.track import Tracker
from har.persons.tubes import clip_square, crop, tube_clip
from har.transforms import HARA_KINETICS

from persons_helpers import two_actor_scene, walk


# -- MOTChallenge files ---------------------------------------------------------------
def test_mot_round_trip_keeps_frames_ids_and_boxes():
    rows = [TrackedBox(0, 1, Box(10, 20, 50, 120, 0.9)),
            TrackedBox(0, 7, Box(100.5, 20.25, 140, 121, 1.0)),
            TrackedBox(3, 1, Box(12, 21, 52, 122, 0.5))]
    buf = io.StringIO()
    write_mot(buf, rows)
    text = buf.getvalue()
    assert text.splitlines()[0] == "1,1,10.00,20.00,40.00,100.00,0.9000,-1,-1,-1"
    back = parse_mot(text.splitlines())
    assert [(r.frame, r.id) for r in back] == [(0, 1), (0, 7), (3, 1)]
    for a, b in zip(rows, back):
        assert np.allclose([a.box.x0, a.box.y0, a.box.x1, a.box.y1, a.box.score],
                           [b.box.x0, b.box.y0, b.box.x1, b.box.y1, b.box.score], atol=0.01)


def test_mot_ground_truth_columns_and_spaces_are_read():
    # MOT17 gt.txt: frame,id,l,t,w,h,flag,class,visibility
    rows = parse_mot(["2,3,5,6,10,20,1,1,0.83", "", "# comment", "1 4 0 0 8 8"])
    assert [(r.frame, r.id, r.box.x1, r.box.y1) for r in rows] == [(0, 4, 8, 8), (1, 3, 15, 26)]


@pytest.mark.parametrize("line, words", [
    ("1,1,10,10", "expected frame,id,left,top"),
    ("0,1,10,10,5,5", "frames from 1"),
    ("1,1,10,10,0,5", "width and height must be positive"),
    ("1,1,10,nan,5,5", "not finite"),
    ("x,1,10,10,5,5", "expected frame,id"),
])
def test_bad_mot_lines_are_one_line_errors_naming_the_line(line, words):
    with pytest.raises(HarError) as err:
        parse_mot(["1,1,1,1,5,5", line], "t.txt")
    msg = str(err.value)
    assert "\n" not in msg and "t.txt line 2" in msg and words in msg


def test_mot_duplicate_id_and_missing_file(tmp_path):
    with pytest.raises(HarError, match="appears twice"):
        parse_mot(["1,1,1,1,5,5", "1,1,2,2,5,5"])
    with pytest.raises(HarError, match="cannot be read"):
        read_mot(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(HarError, match="holds no tracks"):
        read_mot(tmp_path / "empty.txt")


# -- the tracker on generated scenes --------------------------------------------------
def _run_tracker(people: list[dict[int, Box]], frames: int, tracker: Tracker | None = None,
                 hide: dict[int, set[int]] | None = None):
    """Feed the tracker every visible person's box; return, per true person, the
    track id matched to them in each frame they were visible (None when unmatched)."""
    tracker = tracker or Tracker()
    hide = hide or {}
    seen: list[dict[int, int | None]] = [{} for _ in people]
    for f in range(frames):
        visible = [(i, p[f]) for i, p in enumerate(people) if f in p and f not in hide.get(i, ())]
        out = tracker.update([b for _, b in visible])
        if not out or not visible:
            for i, _ in visible:
                seen[i][f] = None
            continue
        # one-to-one, as the CLEAR MOT metrics match (Hungarian, IoU above 0.5)
        from scipy.optimize import linear_sum_assignment

        iou = iou_matrix([b for _, b in visible], [b for _, b in out])
        for i, _ in visible:
            seen[i][f] = None
        for k, j in zip(*linear_sum_assignment(-iou)):
            if iou[k, j] > 0.5:
                seen[visible[k][0]][f] = out[j][0]
    return seen


def _switches(ids: dict[int, int | None]) -> int:
    """Identity switches: how often the id given to one true person changes."""
    got = [v for _, v in sorted(ids.items()) if v is not None]
    return sum(a != b for a, b in zip(got, got[1:]))


def test_two_people_crossing_keep_their_ids():
    a = walk((40, 150), (4, 0), range(0, 60))
    b = walk((280, 160), (-4, 0), range(0, 60))  # they cross around frame 30
    seen = _run_tracker([a, b], 60)
    assert _switches(seen[0]) == 0 and _switches(seen[1]) == 0
    ids_a = {v for v in seen[0].values() if v}
    ids_b = {v for v in seen[1].values() if v}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b


def test_occluded_person_keeps_the_id_after_reappearing():
    a = walk((40, 150), (3, 0), range(0, 70))
    b = walk((300, 155), (-3, 0), range(0, 70))
    # b is hidden behind a for 10 frames while they cross (no detection at all)
    seen = _run_tracker([a, b], 70, hide={1: set(range(38, 48))})
    assert _switches(seen[0]) == 0 and _switches(seen[1]) == 0
    after = [v for f, v in seen[1].items() if f >= 48]
    assert after and all(v == seen[1][10] for v in after[2:])


def test_occlusion_longer_than_max_age_gives_a_new_id():
    a = walk((100, 150), (0, 0), range(0, 40))
    seen = _run_tracker([a], 40, Tracker(max_age=5), hide={0: set(range(10, 20))})
    ids = [v for _, v in sorted(seen[0].items()) if v is not None]
    assert ids[0] != ids[-1]  # the honest outcome: the old track was dropped


def test_people_entering_and_leaving_and_a_one_frame_false_detection():
    a = walk((50, 150), (2, 0), range(0, 30))
    b = walk((300, 150), (-2, 0), range(15, 50))
    tracker = Tracker()
    seen = _run_tracker([a, b], 50, tracker)
    assert {v for v in seen[0].values() if v} != {v for v in seen[1].values() if v}
    assert _switches(seen[0]) == 0 and _switches(seen[1]) == 0
    # a single stray detection never becomes a person
    t = Tracker()
    t.update([Box(0, 0, 10, 30, 0.9)])
    assert t.update([]) == [] and t.alive() == set()


def test_low_score_detections_keep_a_track_in_stage_two():
    t = Tracker()
    person = walk((100, 150), (2, 0), range(0, 20))
    for f in range(10):
        t.update([person[f]])
    pid = t.update([person[10]])[0][0]
    for f in range(11, 20):  # half hidden: the detector is unsure (score 0.3)
        b = person[f]
        out = t.update([Box(b.x0, b.y0, b.x1, b.y1, 0.3)])
        assert [i for i, _ in out] == [pid]
    # and a low score alone never starts a track
    t2 = Tracker()
    for f in range(5):
        assert t2.update([Box(0, 0, 10, 30, 0.3)]) == []


# -- the crop rule --------------------------------------------------------------------
def test_square_is_steady_covers_every_box_and_stays_inside_when_it_fits():
    boxes = [Box(100 + i, 50, 140 + i, 150) for i in range(16)]  # 40x100, drifting right
    x0, y0, side = clip_square(boxes, 640, 480, margin=0.25)
    assert side == 125
    for b in boxes:
        assert x0 <= b.x0 and b.x1 <= x0 + side and y0 <= b.y0 and b.y1 <= y0 + side
    # near the left edge: moved inside, not padded
    x0, y0, side = clip_square([Box(0, 100, 30, 200)], 640, 480, margin=0.25)
    assert x0 == 0 and side == 125
    # larger than the frame: centred on the person, padded
    x0, y0, side = clip_square([Box(10, 0, 60, 100)], 640, 90, margin=0.25)
    assert side == 125 and y0 < 0


def test_crop_fills_outside_the_frame_with_the_models_mean():
    frame = np.full((50, 80, 3), 200, np.uint8)
    fill = np.array([115, 108, 99], np.uint8)
    out = crop(frame, -10, -10, 30, fill)
    assert out.shape == (30, 30, 3)
    assert (out[:10, :] == fill).all() and (out[10:, 10:] == 200).all()
    clips, square = tube_clip([frame] * 4, [Box(0, 0, 40, 40)] * 4, HARA_KINETICS, 0.25)
    assert clips.shape == (4, 112, 112, 3) and square.x1 - square.x0 == 50


# -- ONNX detectors with generated graphs ---------------------------------------------
def _constant_detector(path: Path, output: np.ndarray, size: int = 64) -> Path:
    """An ONNX graph (1,3,size,size) -> ``output`` (depends on the input, as a real
    detector's does: plus 0 x its mean)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "det", [x], [y], initializer=[
        numpy_helper.from_array(output.astype(np.float32), "const"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_ultralytics_layout_person_only_and_letterbox_undone(tmp_path):
    from har.persons.detect import OnnxDetector

    n = 100
    out = np.zeros((1, 4 + 3, n), np.float32)
    # anchor 0: a person at (cx 32, cy 32, w 16, h 32) in the 64x64 input, score 0.9
    out[0, :4, 0] = [32, 32, 16, 32]
    out[0, 4, 0] = 0.9
    # anchor 1: the same place, class 1 (not a person), score 0.99
    out[0, :4, 1] = [32, 32, 16, 32]
    out[0, 5, 1] = 0.99
    # anchor 2: a weaker duplicate of the person, removed by NMS
    out[0, :4, 2] = [33, 32, 16, 32]
    out[0, 4, 2] = 0.5
    det = OnnxDetector(_constant_detector(tmp_path / "u.onnx", out), score=0.25)
    assert det.layout == "ultralytics"
    # a 128x64 frame: scaled by 0.5 into 64x32, centred with 16 rows of padding on top
    boxes = det.detect(np.zeros((64, 128, 3), np.uint8))
    assert len(boxes) == 1
    b = boxes[0]
    assert b.score == pytest.approx(0.9)
    assert [b.x0, b.y0, b.x1, b.y1] == pytest.approx([48, 0, 80, 64])


def test_yolox_layout_raw_grid_outputs_are_decoded(tmp_path):
    from har.persons.detect import OnnxDetector

    size = 64
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    out = np.zeros((1, n, 5 + 2), np.float32)
    out[0, :, 2:4] = -5  # tiny boxes everywhere, objectness 0
    # stride-8 grid cell (x=3, y=2): offset (0.5, 0.5) -> centre (28, 20); size exp(1)*8
    cell = 2 * (size // 8) + 3
    out[0, cell, :7] = [0.5, 0.5, np.log(2.0), np.log(4.0), 0.8, 0.9, 0.1]
    # a confident non-person elsewhere
    out[0, cell + 10, :7] = [0.5, 0.5, np.log(2.0), np.log(4.0), 0.9, 0.1, 0.95]
    det = OnnxDetector(_constant_detector(tmp_path / "x.onnx", out), score=0.3)
    assert det.layout == "yolox"
    boxes = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert len(boxes) == 1
    b = boxes[0]
    assert b.score == pytest.approx(0.72)
    assert [b.x0, b.y0, b.x1, b.y1] == pytest.approx([20, 4, 36, 36])


def test_onnx_detector_runs_on_openvino_without_onnxruntime(tmp_path, monkeypatch):
    import sys

    from har.persons.detect import OnnxDetector

    out = np.zeros((1, 5, 100), np.float32)  # a person-only ultralytics file
    out[0, :, 0] = [32, 32, 16, 32, 0.8]
    path = _constant_detector(tmp_path / "p.onnx", out)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    det = OnnxDetector(path)
    boxes = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert len(boxes) == 1 and boxes[0].score == pytest.approx(0.8)
    assert [boxes[0].x0, boxes[0].y0, boxes[0].x1, boxes[0].y1] == pytest.approx([24, 16, 40, 48])


def test_detector_files_that_are_not_detectors_are_one_line(tmp_path):
    from har.persons.detect import load_detector

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for spec, words in ((bad, "cannot be loaded"), (tmp_path / "no.onnx", "no such file"),
                        ("yolo.pt", "give 'hog'")):
        with pytest.raises(HarError) as err:
            load_detector(str(spec))
        assert words in str(err.value) and "\n" not in str(err.value)


# -- the person stream with given tracks (random weights) ------------------------------
@pytest.fixture(scope="module")
def rec(r10_weights):
    from har import Recognizer

    return Recognizer("r3d10-k400", weights=r10_weights, backend="torch", batch_size=4)


def test_each_person_gets_clips_only_while_their_track_exists(rec, tmp_path):
    from har.persons import PersonOptions, PersonStream

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=48)
    # person 1 all 48 frames; person 2 only frames 10..29 (20 frames); person 3: 5 frames
    tracks = [t for t in tracks if t.id == 1 or 10 <= t.frame < 30]
    tracks += [TrackedBox(f, 3, Box(100, 20, 140, 100)) for f in range(40, 45)]
    ps = PersonStream(rec, video, PersonOptions(tracks=tracks))
    events = list(ps)
    kinds = [(e.kind, e.id) for e in events]
    persons = {p.id: p for p in ps.persons()}
    assert set(persons) == {1, 2, 3}
    assert [(c.start_frame, c.end_frame) for c in persons[1].clips] == [(0, 16), (16, 32), (32, 48)]
    # 20 frames: one full clip and the 4-frame rest is under min_frames (8): no clip
    assert [(c.start_frame, c.end_frame) for c in persons[2].clips] == [(10, 26)]
    assert persons[3].clips == [] and persons[3].frames == 5  # too short
    for p in persons.values():
        for c in p.clips:
            assert p.first_frame <= c.start_frame and c.end_frame - 1 <= p.last_frame
    # events: a start before the first clip, an end after the last, per person with clips
    for pid in (1, 2):
        mine = [k for k, i in kinds if i == pid]
        assert mine[0] == "start" and mine[-1] == "end" and mine.count("end") == 1
    assert ("start", 3) not in kinds
    doc = ps.result().to_dict()
    assert [p["id"] for p in doc["persons"]] == [1, 2, 3]
    assert doc["persons"][0]["clips"][0]["box"] == [1.0, 1.0, 111.0, 111.0]


def test_a_person_crop_never_shows_the_other_person(tmp_path):
    """Each pixel of the frame holds its own column number: the left person's clip
    holds only columns of the left actor's region, the right one's only the right's."""
    _, tracks = two_actor_scene(tmp_path / "s.mp4", frames=1)
    frame = np.zeros((112, 240, 3), np.uint8)
    frame[..., 0] = np.arange(240)[None, :]
    for pid, lo, hi in ((1, 0, 112), (2, 128, 240)):
        boxes = [t.box for t in tracks if t.id == pid]
        clip, square = tube_clip([frame], boxes, HARA_KINETICS, margin=0.25)
        cols = clip[..., 0]
        assert lo <= cols.min() and cols.max() < hi, (pid, cols.min(), cols.max())


def test_gap_in_a_track_restarts_the_window(rec, tmp_path):
    from har.persons import PersonOptions, PersonStream

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=48)
    tracks = [t for t in tracks if t.id == 1 and not 20 <= t.frame < 24]
    ps = PersonStream(rec, video, PersonOptions(tracks=tracks))
    list(ps)
    clips = ps.persons()[0].clips
    # frames 16..19 (4, under min_frames) make no clip; 40..47 (8) make a padded one
    assert [(c.start_frame, c.end_frame) for c in clips] == [(0, 16), (24, 40), (40, 48)]
    for c in clips:  # no clip spans the gap
        assert not (c.start_frame < 24 and c.end_frame > 20)


# -- the CLI ----------------------------------------------------------------------------
def test_cli_mot_output_read_back_by_tracks_gives_the_same_persons(r10_weights, tmp_path):
    from har.cli import main

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=32)
    given = tmp_path / "given.txt"
    with open(given, "w") as fh:
        write_mot(fh, tracks)
    common = ["predict", str(video), "--model", "r3d10-k400", "--weights", r10_weights,
              "--backend", "torch", "--no-progress"]
    assert main([*common, "--tracks", str(given), "--mot", str(tmp_path / "m1.txt"),
                 "--json", str(tmp_path / "a.json"), "--ava", str(tmp_path / "a.csv"),
                 "--jsonl", str(tmp_path / "a.jsonl"), "--annotate",
                 str(tmp_path / "ann.mp4"), "--report", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Persons (2)" in html and html.count('aria-label="per-person timeline"') == 1
    assert ">person 1<" in html and ">person 2<" in html
    assert main([*common, "--tracks", str(tmp_path / "m1.txt"),
                 "--json", str(tmp_path / "b.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())["videos"][0]["persons"]
    b = json.loads((tmp_path / "b.json").read_text())["videos"][0]["persons"]
    assert a == b and [p["id"] for p in a] == [1, 2]
    assert sorted(read_mot(tmp_path / "m1.txt"), key=lambda t: (t.frame, t.id)) == \
        sorted(read_mot(given), key=lambda t: (t.frame, t.id))
    events = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    types = [e["type"] for e in events]
    assert types.count("person_start") == 2 and types.count("person_end") == 2
    assert types.count("person_clip") == 4
    # the annotated video boxes each person in their colour (#2: green, 60,180,75)
    import av

    with av.open(str(tmp_path / "ann.mp4")) as c:
        frame = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    edge = frame[60, 227:230].astype(int)  # person 2's right edge, x = 228
    assert (np.abs(edge - [60, 180, 75]).max(axis=1) < 50).any(), edge
    rows = [r.split(",") for r in (tmp_path / "a.csv").read_text().splitlines()]
    # 32 frames at 25 fps: seconds 0 and 1; 2 people; the top 5 labels each
    assert len(rows) == 2 * 2 * 5 and all(len(r) == 9 and r[0] == "s" for r in rows)
    assert {(r[1], r[7]) for r in rows} == {("0", "1"), ("1", "1"), ("0", "2"), ("1", "2")}
    one = next(r for r in rows if r[7] == "1")
    # person 1's box 12..100 x 12..100 in the 240x112 frame, normalised
    assert [float(v) for v in one[2:6]] == pytest.approx([12 / 240, 12 / 112, 100 / 240,
                                                          100 / 112], abs=1e-4)
    from har.models.zoo import get_entry

    clip_top = a[0]["clips"][0]["top"][0]  # second 0 of person 1: their first clip
    assert get_entry("r3d10-k400").class_names[int(one[6]) - 1] == clip_top["label"]
    assert float(one[8]) == pytest.approx(clip_top["score"], abs=1e-5)


def test_cli_person_usage_errors_are_one_line_and_touch_nothing(r10_weights, tmp_path,
                                                                 capsys):
    from har.cli import main

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=16)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,2\n")
    keep = tmp_path / "keep.json"
    keep.write_text("mine")
    common = ["predict", str(video), "--model", "r3d10-k400", "--weights", r10_weights,
              "--no-progress", "--json", str(keep)]
    cases = [(["--tracks", str(bad)], "bad.txt line 1"),
             (["--mot", str(tmp_path / "m.txt")], "add --persons"),
             (["--persons", "--detector", "x.pt"], "give 'hog'"),
             (["--tracks", str(bad), "--detect-every", "3"], "nothing to do")]
    for extra, words in cases:
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert keep.read_text() == "mine"
    # tracks made for another video size: the whole-frame result stands, one warning
    far = tmp_path / "far.txt"
    far.write_text("1,1,5000,10,50,100,1,-1,-1,-1\n")
    assert main([*common[:-2], "--tracks", str(far), "--json", str(tmp_path / "o.json")]) == 3
    err = capsys.readouterr().err
    assert "lie outside its 240x112 frame" in err and "Traceback" not in err
    doc = json.loads((tmp_path / "o.json").read_text())["videos"][0]
    assert doc["top"] and doc["persons"] == []


# -- the built-in HOG detector on real videos ------------------------------------------
def _frame(name: str, index: int, long_side: int = 640) -> np.ndarray:
    from conftest import shared_video
    from har.video import VideoSource

    with VideoSource(str(shared_video(name))) as v:
        s = long_side / max(v.info.width, v.info.height)
        size = (int(round(v.info.width * s)), int(round(v.info.height * s)))
        for f in v.frames(size=size):
            if f.index == index:
                return f.rgb
    raise AssertionError(f"{name} has no frame {index}")


@pytest.fixture(scope="module", params=["hog", "hog-fast"])
def hog(request):
    from har.persons.detect import load_detector

    return load_detector(request.param)


# People boxed by hand on the frame (640-pixel-wide frames): x0, y0, x1, y1.
_PEOPLE = {
    ("mmaction2__demo_skeleton.mp4", 20): [(215, 95, 300, 305), (300, 85, 385, 290)],
    ("mmaction2__S001C001P001R001A001_rgb.avi", 20): [(330, 97, 372, 245)],
}


@pytest.mark.parametrize("name, index", list(_PEOPLE))
def test_hog_finds_the_people_and_nothing_else(hog, name, index):
    rgb = _frame(name, index)
    boxes = hog.detect(rgb)
    truth = [Box(*b) for b in _PEOPLE[(name, index)]]
    iou = iou_matrix(truth, boxes)
    assert iou.shape[1] == len(truth), boxes  # one box per person, no other box
    assert (iou.max(axis=1) >= 0.5).all(), iou


def test_hog_finds_nobody_in_blank_frames(hog):
    rng = np.random.default_rng(0)
    for frame in (np.zeros((360, 640, 3), np.uint8), np.full((360, 640, 3), 128, np.uint8),
                  np.full((360, 640, 3), 255, np.uint8),
                  rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)):
        assert hog.detect(frame) == []


def test_hog_descriptor_is_opencvs_layout():
    """A window holding one vertical edge: its gradient is horizontal (bin 0 and 8,
    centred on 0 degrees), and the edge's blocks hold it in OpenCV's column order."""
    from har.persons.hog import window_descriptor

    win = np.zeros((128, 64, 3), np.uint8)
    win[:, 32:] = 200
    d = window_descriptor(win).reshape(7, 15, 2, 2, 9)  # (block x, block y, cx, cy, bin)
    energy = d.sum(axis=(1, 2, 3, 4))
    assert energy.argmax() in (2, 3)  # the blocks around x = 32
    assert d[:, :, :, :, [0, 8]].sum() > 0.95 * d.sum()


class _SceneDetector:
    """The detector interface answered from a scene's known boxes (the thing under
    test here is the stream and tracker around it, not a detector)."""

    name = "scene"

    def __init__(self, boxes_by_size: dict[int, list[Box]]):
        self.calls = 0
        self.by_frame = boxes_by_size

    def detect(self, rgb):
        self.calls += 1
        return list(self.by_frame.get(self.calls - 1, []))


def test_detect_every_n_frames_tracks_people_between_detections(rec, tmp_path):
    from har.persons import PersonOptions, PersonStream

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=40)
    every = 4
    # the detector sees frames 0, 4, 8, ...; answer with the true boxes of those frames
    by_call: dict[int, list[Box]] = {}
    for t in tracks:
        if t.frame % every == 0:
            by_call.setdefault(t.frame // every, []).append(
                Box(t.box.x0, t.box.y0, t.box.x1, t.box.y1, 0.9))
    det = _SceneDetector(by_call)
    ps = PersonStream(rec, video, PersonOptions(detector=det, detect_every=every))
    list(ps)
    assert det.calls == 10  # 40 frames, every 4th
    persons = ps.persons()
    assert len(persons) == 2
    # confirmed on the second detection (frame 4), then boxed on every frame after
    for p in persons:
        assert p.first_frame == 4 and p.last_frame == 39 and p.frames == 36
        # two full clips; the last 4 frames are under min_frames (8): no padded clip
        assert [(c.start_frame, c.end_frame) for c in p.clips] == [(4, 20), (20, 36)]
    left = min(persons, key=lambda p: p.boxes[0].box.x0)
    assert all(b.box.x1 < 120 for b in left.boxes)  # the left person stays on the left


class _SlowDetector(_SceneDetector):
    """The scene's boxes, after ``delay`` seconds (a detector slower than the camera)."""

    def __init__(self, boxes: list[Box], delay: float):
        super().__init__({})
        self.boxes, self.delay = boxes, delay

    def detect(self, rgb):
        import time

        self.calls += 1
        time.sleep(self.delay)
        return list(self.boxes)


def test_live_persons_skip_detections_instead_of_falling_behind(rec, tmp_path):
    """A camera (a file played in real time) with a detector 10x slower than its frame
    rate: detections that would fall behind are skipped, the tracker carries the
    people, and the stream ends about when the video does."""
    import time

    from har.live import LiveSource
    from har.persons import PersonOptions, PersonStream

    video, tracks = two_actor_scene(tmp_path / "s.mp4", frames=75)  # 3 s at 25 fps
    boxes = [Box(t.box.x0, t.box.y0, t.box.x1, t.box.y1, 0.9) for t in tracks if t.frame == 0]
    det = _SlowDetector(boxes, delay=0.4)
    live = LiveSource(str(video), realtime=True)
    ps = PersonStream(rec, live, PersonOptions(detector=det, detect_every=1), live=True,
                      keep_clips=False)
    t0 = time.monotonic()
    events = list(ps)
    elapsed = time.monotonic() - t0
    assert ps.detections_skipped > 0 and det.calls >= 2
    assert det.calls + ps.detections_skipped == 75
    # every frame detected would take 75 x 0.4 = 30 s; skipping keeps it near 3 s
    assert elapsed < 15, elapsed
    assert {e.id for e in events if e.kind == "clip"} == {1, 2}
    assert ps.persons()[0].frames > 50 and ps.rows == []  # live: no per-frame history


def test_live_person_options_need_persons(capsys):
    from har.cli import main

    assert main(["live", "0", "--detector", "x.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "add --persons" in err and len(err.splitlines()) == 1


def _noisy_scene(seed: int) -> list[dict[int, Box]]:
    """Three people (two crossing, one walking down), boxes jittered by a few pixels,
    15% of detections missed, scores spread from 0.3 to 0.95."""
    rng = np.random.default_rng(seed)
    people = [walk((40, 150), (3, 0), range(0, 80)), walk((300, 160), (-3, 0), range(0, 80)),
              walk((170, 40), (0, 2), range(10, 80), size=(30, 80))]
    noisy = []
    for p in people:
        q = {}
        for f, b in p.items():
            if rng.random() < 0.15:
                continue  # missed
            j = rng.normal(0, 2, 4)
            q[f] = Box(b.x0 + j[0], b.y0 + j[1], b.x1 + j[2], b.y1 + j[3],
                       float(rng.uniform(0.3, 0.95)))
        noisy.append(q)
    return noisy


def test_noisy_detections_identity_switches_counted_over_20_scenes():
    switches, ids_per_scene = [], []
    for seed in range(20):
        seen = _run_tracker(_noisy_scene(seed), 80)
        switches.append(sum(_switches(s) for s in seen))
        ids_per_scene.append(len(set().union(*[{v for v in s.values() if v} for s in seen])))
    # Measured: 1 of the 20 scenes has one person taken by the other's track for a
    # frame at the crossing (2 switches); no scene creates an extra id.
    assert sum(switches) <= 2 and sum(x > 0 for x in switches) <= 1, switches
    assert ids_per_scene == [3] * 20
