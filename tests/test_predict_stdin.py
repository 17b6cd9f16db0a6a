"""`har predict -`: a video on standard input, with the per-video outputs.

--annotate draws on the video read a second time, after scoring; standard input cannot
be read twice, so the command is refused in one line before any work (as --persons is).
The other per-video outputs (--srt, --json) come from the results alone and work."""

from __future__ import annotations

import json

from conftest import har_main
from har.cli import ExitCode


def _model(weights: str) -> list[str]:
    return ["--model", "r3d10-k400", "--weights", weights, "--backend", "torch",
            "--no-progress"]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_annotate_of_stdin_is_refused_before_any_work(video_factory, r10_weights, tmp_path):
    data = video_factory(40).read_bytes()
    out = tmp_path / "annotated.mp4"
    code, stdout, err = har_main("predict", "-", "--annotate", out,
                                 "--json", tmp_path / "r.json", *_model(r10_weights),
                                 stdin=data)
    assert code == ExitCode.USAGE, err
    line = _one_line(err)  # no "speed:" line: nothing was scored
    assert "--annotate" in line and "standard input" in line and "save it to a file" in line
    assert stdout == ""
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_annotate_into_a_folder_with_stdin_among_the_inputs_is_refused(
        video_factory, r10_weights, tmp_path):
    video = video_factory(40)
    folder = tmp_path / "annotated"
    code, _, err = har_main("predict", video, "-", "--annotate", f"{folder}/",
                            *_model(r10_weights), stdin=video.read_bytes())
    assert code == ExitCode.USAGE, err
    assert "--annotate" in _one_line(err) and "standard input" in err
    assert not folder.exists() or not any(folder.iterdir())


def test_stdin_video_gives_subtitles_and_json_named_dash(video_factory, r10_weights, tmp_path):
    """The refusal is --annotate's own: the same video on stdin is scored, and the
    outputs that need only the results are written, naming the input `-`."""
    data = video_factory(40).read_bytes()
    srt, doc_path = tmp_path / "a.srt", tmp_path / "r.json"
    code, _, err = har_main("predict", "-", "--srt", srt, "--json", doc_path,
                            *_model(r10_weights), stdin=data)
    assert code == ExitCode.OK, err
    assert "Traceback" not in err
    doc = json.loads(doc_path.read_text())
    (video,) = doc["videos"]
    assert video["path"] == "-" and video["error"] is None
    assert video["frames"] == 40 and len(video["clips"]) == 3
    text = srt.read_text()
    assert text.startswith("1\n") and " --> " in text
