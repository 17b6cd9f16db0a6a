"""Exit codes per error class (README.md, "Exit codes"): usage 2, input 3, model 4,
output 1, interrupted 130; each triggered through ``har.cli.main`` in this process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from har.cli import EXIT_CODES, ExitCode, exit_code_for, main, worst
from har.errors import (DecodeError, HarError, InputError, ModelError, ModelNotFoundError,
                        OutputError, UsageError, WeightsError)

README = Path(__file__).resolve().parents[1] / "README.md"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


def test_a_bad_flag_is_usage(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "v.mp4"), "--no-such-flag"])
    assert e.value.code == ExitCode.USAGE == 2
    capsys.readouterr()
    code, _, err = _run(capsys, "predict", tmp_path / "v.mp4", "--device", "tpu")
    assert code == 2 and _error_lines(err) == [
        "har predict: error: --device tpu: unknown device; use cpu, cuda or cuda:N"]


def test_a_missing_input_file_is_input(capsys, tmp_path):
    code, _, err = _run(capsys, "predict", tmp_path / "typo.mp4", "--json",
                        tmp_path / "r.json")
    assert code == ExitCode.INPUT == 3
    assert _error_lines(err)[0] == f"error: {tmp_path / 'typo.mp4'}: no such file; check the path"


def test_one_bad_input_keeps_the_others_results(capsys, tmp_path, video_factory, r10_weights):
    import json

    good = video_factory(16)
    code, _, err = _run(capsys, "predict", good, tmp_path / "typo.mp4", "--model",
                        "r3d10-k400", "--weights", r10_weights, "--backend", "torch",
                        "--no-progress", "--json", tmp_path / "r.json")
    assert code == 3, err
    videos = json.loads((tmp_path / "r.json").read_text())["videos"]
    assert [v["error"] is None for v in videos] == [True, False]


def test_a_missing_model_file_is_model(capsys, tmp_path, video_factory):
    code, _, err = _run(capsys, "predict", video_factory(16), "--model", "r3d10-k400",
                        "--weights", tmp_path / "none.pth", "--backend", "torch")
    assert code == ExitCode.MODEL == 4
    lines = _error_lines(err)
    assert len(lines) == 1 and "none.pth: no such weights file" in lines[0], err


def test_an_unknown_model_name_is_model(capsys, video_factory):
    code, _, err = _run(capsys, "predict", video_factory(16), "--model", "r3d34-k4OO")
    assert code == 4 and len(_error_lines(err)) == 1, err


def test_an_output_under_a_regular_file_is_output(capsys, tmp_path, video_factory):
    plain = tmp_path / "notes.txt"
    plain.write_text("the user's file")
    code, out, err = _run(capsys, "predict", video_factory(16), "--json", plain / "r.json")
    assert code == ExitCode.OUTPUT == 1
    lines = _error_lines(err)
    assert len(lines) == 1 and "is a file, not a directory" in lines[0], err
    assert plain.read_text() == "the user's file" and out == ""


def test_an_output_that_fails_while_writing_is_output(capsys, tmp_path, video_factory,
                                                      r10_weights, monkeypatch):
    """The run's results are in; writing --json fails (a full disk, simulated): exit 1,
    and the other output still gets its file."""
    import har.cli.predict

    real = har.cli.predict.atomic_open

    def full(path, *a, **k):
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(har.cli.predict, "atomic_open", full)
    code, _, err = _run(capsys, "predict", video_factory(16), "--model", "r3d10-k400",
                        "--weights", r10_weights, "--backend", "torch", "--no-progress",
                        "--json", tmp_path / "r.json", "--csv", tmp_path / "c.csv")
    assert code == 1, err
    assert "No space left" in err and (tmp_path / "c.csv").stat().st_size > 0


def test_interrupted(capsys, tmp_path, video_factory, monkeypatch):
    """Ctrl-C while the model loads (raised where a signal would land, no subprocess)."""
    import har.cli.predict

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(har.cli.predict, "make_recognizer", interrupted)
    code, _, err = _run(capsys, "predict", video_factory(16), "--json", tmp_path / "r.json")
    assert code == ExitCode.INTERRUPTED == 130, err


@pytest.mark.parametrize("exc, code", [
    (UsageError("x"), 2), (InputError("x"), 3), (DecodeError("x"), 3),
    (ModelError("x"), 4), (WeightsError("x"), 4), (ModelNotFoundError("x"), 4),
    (OutputError("x"), 1), (HarError("x"), 1), (KeyboardInterrupt(), 130)])
def test_each_error_class_has_its_code(exc, code):
    assert exit_code_for(exc) == code


def test_an_error_outside_the_classes_has_no_code():
    with pytest.raises(TypeError):
        exit_code_for(RuntimeError("a bug"))
    assert all(issubclass(cls, (HarError, UsageError)) for cls, _ in EXIT_CODES)


def test_the_worst_outcome_wins():
    assert worst() == worst(0, 0) == 0
    assert worst(0, 3) == 3  # an input failed, the outputs are whole
    assert worst(3, 1) == 1  # an output was lost as well
    assert worst(1, 4) == 4 and worst(4, 2) == 2 and worst(2, 130) == 130


def test_the_readme_table_is_the_code():
    """README.md has one exit-code table, and it says what ExitCode says."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\d+)` \| (\w+) \|", text, re.M)
    assert {int(code): name for code, name in rows} == {
        0: "ok", 1: "output", 2: "usage", 3: "input", 4: "model", 130: "interrupted"}
    assert {int(c) for c, _ in rows} == {int(c) for c in ExitCode}
