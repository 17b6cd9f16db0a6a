"""`har live` as a hostile user runs it (issue 21 items 2, 11, 12, 15): outputs that
name the input or each other are refused and the input is never changed; a full disk
is one error line and exit 1; a trickling or endless HTTP body ends at --duration and
writes nothing to disk; argument messages say what is allowed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
import time

import pytest

from conftest import har_main
from har.cli import ExitCode, main
from stream_servers import serve_endless, serve_trickle


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "good.mp4", 40, size=(128, 96), fps=30)


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def har_live(args, weights, env=None):
    """`har live ARGS` with the test model, in this process (conftest.har_main)."""
    return har_main("live", *args, "--model", "r3d10-k400", "--weights", weights,
                    "--backend", "torch", "--quiet", env=env)


def open_files_under(folder) -> list[str]:
    """The files under ``folder`` that this process has open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{folder}/"):
                found.append(target)
    return found


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def test_an_output_that_is_the_input_is_refused(good, tmp_path, capsys):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(good.read_bytes())
    link = tmp_path / "link.mp4"
    os.link(copy, link)
    before = digest(copy)
    for out in (copy, link, tmp_path / "." / "copy.mp4"):
        for flag in ("--jsonl", "--record"):
            code = main(["live", str(copy), "--realtime", flag, str(out)])
            assert code == ExitCode.USAGE, (flag, out)
            line = one_error_line(capsys.readouterr().err)
            assert flag in line and "input" in line, line
    # the hard link is the input too, whichever of the two is read
    assert main(["live", str(link), "--realtime", "--jsonl", str(copy)]) == ExitCode.USAGE
    capsys.readouterr()
    assert digest(copy) == before and digest(link) == before


def test_record_and_jsonl_naming_one_file_is_refused(good, tmp_path, capsys):
    r = tmp_path / "r.mp4"
    for jsonl in (r, tmp_path / "." / "r.mp4"):
        code = main(["live", str(good), "--realtime", "--record", str(r), "--jsonl", str(jsonl)])
        assert code == ExitCode.USAGE
        line = one_error_line(capsys.readouterr().err)
        assert "same file" in line, line
    r.write_bytes(b"the user's file")  # an existing file of the user's is kept
    assert main(["live", str(good), "--realtime", "--record", str(r), "--jsonl",
                 str(r)]) == ExitCode.USAGE
    assert r.read_bytes() == b"the user's file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".har-tmp")]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_duration_message_says_what_is_allowed(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["live", "udp://127.0.0.1:9", f"--duration={value}"])
    assert exc.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "must be more than 0 seconds" in err, err
    assert "0 or more" not in err


def test_jsonl_onto_a_full_disk_is_one_line_and_exit_1(r10_weights, good):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    res = har_live([str(good), "--realtime", "--jsonl", "/dev/full"], r10_weights)
    assert res.returncode == ExitCode.OUTPUT, res.stderr
    line = one_error_line(res.stderr)
    assert "--jsonl /dev/full" in line and "No space left" in line, line


def test_record_onto_a_full_disk_is_an_error_and_exit_1(r10_weights, good, tmp_path):
    """r.mp4 -> /dev/full: every write fails with ENOSPC, as on a full disk. One error
    line and exit 1 (not ENOSPC and exit 0); the link is the user's and stays."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    rec = tmp_path / "r.mp4"
    rec.symlink_to("/dev/full")
    res = har_live([str(good), "--realtime", "--record", str(rec)], r10_weights)
    assert res.returncode == ExitCode.OUTPUT, res.stderr
    line = one_error_line(res.stderr)
    assert "--record" in line and "No space left" in line, line
    assert rec.is_symlink() and os.readlink(rec) == "/dev/full"


@contextlib.contextmanager
def full_tmpfs(tmp_path, keep: dict[str, bytes] | None = None):
    """A small tmpfs holding ``keep`` (name -> bytes), then filled up; skips where this
    user may not mount one. Unmounted at the end."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        for name, data in (keep or {}).items():
            (full / name).write_bytes(data)
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)  # fill it up
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield full
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


def test_record_onto_a_full_file_system(r10_weights, good, tmp_path):
    """--record into a folder whose file system is full: error line, exit 1, and no
    temporary file left."""
    with full_tmpfs(tmp_path) as full:
        res = har_live([str(good), "--realtime", "--record", str(full / "r.mp4")],
                       r10_weights)
        assert res.returncode == ExitCode.OUTPUT, res.stderr
        line = one_error_line(res.stderr)
        assert "--record" in line and "No space left" in line, line
        assert [p.name for p in full.iterdir()] == ["filler"]  # no temporary file left
        # nor one held open (deleted, its space still taken) by this process, which
        # ran the command: PyAV never closes a file whose header could not be written
        assert not open_files_under(full)


def test_jsonl_over_an_existing_file_on_a_full_file_system(r10_weights, good, tmp_path):
    """The user's existing events.jsonl is kept as it was when the new one cannot be
    written; no temporary file is left."""
    old = b'{"type": "start"}\n' * 20
    with full_tmpfs(tmp_path, {"events.jsonl": old}) as full:
        res = har_live([str(good), "--realtime", "--jsonl", str(full / "events.jsonl")],
                       r10_weights)
        assert res.returncode == ExitCode.OUTPUT, res.stderr
        line = one_error_line(res.stderr)
        assert "--jsonl" in line and "No space left" in line, line
        assert (full / "events.jsonl").read_bytes() == old
        assert sorted(p.name for p in full.iterdir()) == ["events.jsonl", "filler"]


def test_trickling_http_server_ends_at_duration(r10_weights):
    server = serve_trickle(b"G", every_s=0.3, seconds=60)
    try:
        t0 = time.monotonic()
        res = har_live([f"{server.url}/cam.ts", "--realtime", "--duration", "4",
                        "--open-timeout", "2", "--read-timeout", "2",
                        "--max-reconnects", "100", "--jsonl", "-"], r10_weights)
        took = time.monotonic() - t0
    finally:
        server.close()
    assert "Traceback" not in res.stderr, res.stderr
    events = [json.loads(ln) for ln in res.stdout.splitlines()]
    summary = events[-1]
    assert summary["type"] == "summary" and events[0]["type"] == "start"
    # --duration holds while opening (the model's loading, on a loaded machine, is
    # the only thing that may outlast it: the run starts once the model is there)
    assert summary["seconds"] < max(4, events[0]["model_load_s"]) + 2.5, events[0]
    assert took < 40
    assert res.returncode == ExitCode.INPUT_FAILED  # nothing could be scored
    assert one_error_line(res.stderr)


def test_endless_body_is_streamed_not_fetched_to_disk(r10_weights, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # TMPDIR for this call: Python's tempfile reads it again (it caches the folder)
    monkeypatch.setattr(tempfile, "tempdir", None)
    server = serve_endless(seconds=60)
    try:
        t0 = time.monotonic()
        res = har_live([f"{server.url}/v.mp4", "--realtime", "--duration", "5",
                        "--open-timeout", "3", "--read-timeout", "3", "--jsonl", "-"],
                       r10_weights, env={"TMPDIR": str(tmp)})
        took = time.monotonic() - t0
    finally:
        server.close()
    events = [json.loads(ln) for ln in res.stdout.splitlines()]
    summary = events[-1]
    assert summary["type"] == "summary", summary
    assert summary["seconds"] < max(5, events[0]["model_load_s"]) + 2.5, events[0]
    assert took < 40  # the body is never read to its end (60 s)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == ExitCode.INPUT_FAILED
    assert one_error_line(res.stderr)
    assert not list(tmp.iterdir())  # no temporary copy of the body


def test_several_sources_share_one_model(r10_weights, good, tmp_path):
    """Two files played at once in one process (issue 25 item 2): clips of both,
    tagged by source, a summary per source; a third source that cannot be opened is
    one error line and exit 1, and does not lose the others' clips."""
    from conftest import make_video

    other = make_video(tmp_path / "other.mp4", 48, size=(96, 64), fps=30)
    missing = tmp_path / "missing.mp4"
    res = har_live([str(good), str(other), str(missing), "--realtime", "--jsonl", "-"],
                   r10_weights)
    assert "Traceback" not in res.stderr, res.stderr
    events = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert events[0]["type"] == "start"
    assert events[0]["sources"] == [str(good), str(other), str(missing)]
    clips = [e for e in events if e["type"] == "clip"]
    by = {p: [c for c in clips if c["path"] == p] for p in (str(good), str(other))}
    assert by[str(good)] and by[str(other)], [c["path"] for c in clips]
    for p, cs in by.items():  # each source's clips in order, from its own frames
        assert [c["index"] for c in cs] == sorted(c["index"] for c in cs)
        assert all(c["end_frame"] <= (40 if p == str(good) else 48) for c in cs)
    summary = events[-1]
    assert summary["type"] == "summary"
    per = {s["source"]: s for s in summary["sources"]}
    assert per[str(good)]["clips"] == len(by[str(good)])
    assert per[str(other)]["clips"] == len(by[str(other)])
    assert per[str(missing)]["clips"] == 0 and "error" in per[str(missing)]
    assert summary["clips"] == len(clips)
    assert res.returncode == ExitCode.INPUT_FAILED
    line = one_error_line(res.stderr)
    assert "missing.mp4" in line, line
    ended = [e for e in events if e.get("state") == "ended"]
    assert {e["source"] for e in ended} >= {str(good), str(other)}
    last_clip = max(i for i, e in enumerate(events) if e["type"] == "clip")
    assert all(events.index(e) > last_clip for e in ended)


def test_several_sources_usage(good, capsys):
    assert main(["live", str(good), str(good), "--realtime"]) == ExitCode.USAGE
    assert "named twice" in capsys.readouterr().err
    assert main(["live", str(good), "udp://127.0.0.1:9", "--realtime", "--record",
                 "x.mp4"]) == ExitCode.USAGE
    assert "one source" in capsys.readouterr().err


def test_ended_is_printed_after_the_last_clip_line(r10_weights, good):
    """Issue 26 item 7: `ended` used to be printed while clips were still coming."""
    res = har_main("live", good, "--realtime", "--model", "r3d10-k400", "--weights",
                   r10_weights, "--backend", "torch")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    clip_lines = [i for i, ln in enumerate(lines) if ln.strip().endswith("%)")]
    ended = [i for i, ln in enumerate(lines) if ln.startswith("har live: ended")]
    assert clip_lines and len(ended) == 1, lines
    assert ended[0] > clip_lines[-1], lines
