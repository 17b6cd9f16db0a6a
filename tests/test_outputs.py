"""`har predict` timeline outputs (issue 5): JSON segments/evidence, the segment table,
--srt/--vtt (parsed with standard parsers), --plot, --segments-csv, --annotate and the
one-output-per-input rule. Runs the CLI in-process with a model whose output is known."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest

import har.recognizer
from har.cli import ExitCode, main
from timeline_helpers import (BLUE, BLUE_LABEL, GREEN, LABELS, RED, RED_LABEL, ColourModel,
                              count_frames, write_video)


@pytest.fixture(autouse=True)
def colour_model(monkeypatch):
    """`har predict` builds its Recognizer with the colour model instead of weights."""
    base = har.recognizer.Recognizer

    class KnownModelRecognizer(base):
        def __init__(self, *args, **kw):
            kw.pop("weights", None)
            kw.pop("sha256", None)
            # `har.Recognizer` resolves lazily, so callers may reach this subclass with
            # their own colour model already given.
            kw["module"] = kw.get("module") or ColourModel()
            super().__init__(*args, **kw)

    monkeypatch.setattr(har.recognizer, "Recognizer", KnownModelRecognizer)


@pytest.fixture
def red_blue(tmp_path):
    """Red for 2 s, then blue for 2.27 s (30 fps, 128 frames)."""
    return write_video(tmp_path / "red_blue.mp4", [RED, BLUE], [60, 68])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_json_has_segments_evidence_and_settings(capsys, red_blue):
    code, out, err = run(capsys, "predict", red_blue, "--json", "-", "--aggregate", "max")
    assert code == ExitCode.OK, err
    doc = json.loads(out)  # nothing else on stdout
    assert doc["settings"]["aggregate"] == "max"
    assert doc["settings"]["segments"]["threshold"] == 0.3
    v = doc["videos"][0]
    segs = [(s["label"], s["start_s"], s["end_s"], s["start_clip"], s["end_clip"])
            for s in v["segments"]]
    assert segs == [(RED_LABEL, 0.0, 2.1333, 0, 3), (BLUE_LABEL, 2.1333, 4.2667, 4, 7)]
    assert v["segments"][0]["peak_score"] > 0.99
    # With max, the top label is the one with the highest single clip: evidence = it.
    top = v["top"][0]["label"]
    clips_top1 = {c["index"]: c["top"][0] for c in v["clips"]}
    assert clips_top1[v["evidence"][0]]["label"] == top
    assert len(v["evidence"]) == 3


def test_table_lists_segments_and_evidence(capsys, red_blue):
    code, out, _ = run(capsys, "predict", red_blue, "--clips", "0")
    assert code == ExitCode.OK
    assert "evidence for" in out
    lines = [ln for ln in out.splitlines() if RED_LABEL in ln and "0:00.00-0:02.13" in ln]
    assert lines and "0-3" in lines[0]
    assert any(BLUE_LABEL in ln and "0:02.13-0:04.27" in ln for ln in out.splitlines())


def test_srt_and_vtt_parse_with_standard_parsers(capsys, red_blue, tmp_path):
    srt_lib = pytest.importorskip("srt")
    webvtt = pytest.importorskip("webvtt")
    srt_path, vtt_path = tmp_path / "a.srt", tmp_path / "a.vtt"
    code, _, err = run(capsys, "predict", red_blue, "--srt", srt_path, "--vtt", vtt_path)
    assert code == ExitCode.OK, err
    subs = list(srt_lib.parse(srt_path.read_text(encoding="utf-8")))
    assert [s.content.split(" (")[0] for s in subs] == [RED_LABEL, BLUE_LABEL]
    assert subs[0].start.total_seconds() == 0.0
    assert abs(subs[0].end.total_seconds() - 2.0) <= 16 / 30
    assert abs(subs[1].start.total_seconds() - 2.0) <= 16 / 30
    assert "%" in subs[0].content
    cues = webvtt.read(str(vtt_path))
    assert [c.text.split(" (")[0] for c in cues] == [RED_LABEL, BLUE_LABEL]
    assert cues[1].start == "00:00:02.133" and cues[1].end == "00:00:04.267"


def test_plot_png_shows_the_curves(capsys, red_blue, tmp_path):
    pytest.importorskip("matplotlib")
    from har.render import plot_timeline
    from timeline_helpers import recognizer

    png = tmp_path / "p.png"
    code, _, err = run(capsys, "predict", red_blue, "--plot", png)
    assert code == ExitCode.OK, err
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 300
    # The data behind it: the red label is high in the first half, the blue one after.
    result = recognizer().predict(str(red_blue))
    fig = plot_timeline(result, LABELS)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    t, red = lines[RED_LABEL].get_data()
    _, blue = lines[BLUE_LABEL].get_data()
    first = np.asarray(t) < 2.0
    assert red[first].min() > 0.9 and red[~first].max() < 0.1
    assert blue[first].max() < 0.1 and blue[~first][1:].min() > 0.9
    # The shaded segments are spans covering each half.
    spans = [p for p in fig.axes[0].patches]
    assert len(spans) == 2


def test_segments_csv(capsys, red_blue, tmp_path):
    code, out, _ = run(capsys, "predict", red_blue, "--segments-csv", "-")
    assert code == ExitCode.OK
    rows = list(csv.DictReader(io.StringIO(out)))  # nothing but the CSV on stdout
    assert [r["label"] for r in rows] == [RED_LABEL, BLUE_LABEL]
    assert float(rows[1]["start_s"]) == pytest.approx(2.1333, abs=1e-3)


def test_annotate_one_input(capsys, red_blue, tmp_path):
    out_path = tmp_path / "ann.mp4"
    code, _, err = run(capsys, "predict", red_blue, "--annotate", out_path)
    assert code == ExitCode.OK, err
    assert count_frames(out_path)[:4] == count_frames(red_blue)[:4]


def test_several_inputs_need_a_directory_and_keep_going(capsys, tmp_path, red_blue):
    other = write_video(tmp_path / "green.mp4", [GREEN], [40])
    not_a_dir = tmp_path / "one.mp4"
    not_a_dir.write_bytes(b"x")
    code, out, err = run(capsys, "predict", red_blue, other, "--annotate", not_a_dir)
    assert code == ExitCode.USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and "--annotate" in err and "directory" in err

    outdir = tmp_path / "out"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    code, _, err = run(capsys, "predict", red_blue, broken, other, "--annotate", outdir,
                       "--srt", outdir, "--vtt", outdir, "--json", tmp_path / "r.json")
    assert code == ExitCode.INPUT_FAILED  # the broken one
    assert "broken.mp4" in err
    names = sorted(p.name for p in outdir.iterdir())
    assert names == ["green.annotated.mp4", "green.srt", "green.vtt",
                     "red_blue.annotated.mp4", "red_blue.srt", "red_blue.vtt"]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [v["error"] is None for v in doc["videos"]] == [True, False, True]


def test_output_write_failure_is_one_line_and_keeps_other_results(capsys, tmp_path, red_blue,
                                                                   monkeypatch):
    import har.render

    def boom(*a, **k):
        raise RuntimeError("simulated")

    monkeypatch.setattr(har.render, "annotate_video", boom)
    code, _, err = run(capsys, "predict", red_blue, "--annotate", tmp_path / "x.mp4",
                       "--srt", tmp_path / "x.srt", "--json", tmp_path / "r.json")
    assert code == ExitCode.OUTPUT  # the annotated video was lost; the video itself is fine
    assert "x.mp4" in err and "internal error" in err
    assert (tmp_path / "x.srt").exists() and (tmp_path / "r.json").exists()


def test_bad_option_values_are_usage_errors(capsys, red_blue):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(red_blue), "--threshold", "1.5"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["predict", str(red_blue), "--aggregate", "median"])
    assert "Traceback" not in capsys.readouterr().err


def test_clean_copies_a_document_only_when_something_needs_escaping():
    import os

    from har.fsutil import clean

    doc = {"videos": [{"path": "a.mp4", "clips": [{"top": [{"label": "x", "score": 1.0}]}]}]}
    assert clean(doc) is doc  # a 30-minute video's document is not duplicated to write it
    odd = {"videos": [{"path": os.fsdecode(b"caf\xe9.mp4")}]}
    out = clean(odd)
    assert out is not odd and out["videos"][0]["path"] == "caf\\xe9.mp4"
    assert odd["videos"][0]["path"] == os.fsdecode(b"caf\xe9.mp4")  # the input is untouched
