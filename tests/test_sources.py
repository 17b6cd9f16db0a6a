"""What the user typed -> sources: files, folders, globs, URLs, stdin, devices, streams."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from har.errors import DecodeError
from har.sources import is_url, open_video, parse_source, resolve_inputs


def test_kinds():
    assert parse_source("-").kind == "stdin"
    cam = parse_source("0")
    assert (cam.kind, cam.live, cam.url, cam.format) == ("device", True, "/dev/video0", "v4l2")
    assert parse_source("/dev/video3").url == "/dev/video3"
    rtsp = parse_source("rtsp://127.0.0.1:8554/cam")
    assert rtsp.kind == "stream" and rtsp.live and rtsp.options["rtsp_transport"] == "tcp"
    assert parse_source("rtsp://h/x", rtsp_transport="udp").options["rtsp_transport"] == "udp"
    udp = parse_source("udp://127.0.0.1:5000")
    assert udp.live and udp.format == "mpegts"
    hls = parse_source("https://h/live/index.m3u8")
    assert hls.kind == "stream" and hls.live and hls.format == "hls"
    url = parse_source("https://h/v.mp4")
    assert url.kind == "url" and not url.live
    for name in ("v.mp4", "file:c.mp4", "a:b.mp4", "pipe:0.mp4"):
        src = parse_source(name)
        assert src.kind == "file" and src.url == name and not src.live
    assert parse_source("file:///tmp/x%20y.mp4").url == "/tmp/x y.mp4"


def test_one_is_url():
    assert is_url("rtsp://h/1") and is_url("HTTPS://h/v.mp4") and is_url("srt://h:1")
    assert not is_url("a:b.mp4") and not is_url("file:c.mp4") and not is_url("v.mp4")
    assert is_url("https://h/w.pth", ("http", "https")) and not is_url("rtsp://h", ("http",))


def test_an_existing_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0").write_bytes(b"x")
    assert parse_source("0").kind == "file"


def test_folders_globs_and_duplicates(tmp_path, video_factory):
    v = video_factory(3)
    (tmp_path / "sub").mkdir()
    w = video_factory(3, ext=".mkv")
    os.replace(w, tmp_path / "sub" / "w.mkv")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".har-tmp-partial.mp4").write_bytes(b"")  # har's own temporary file
    srcs, errs = resolve_inputs([str(tmp_path), str(tmp_path / "empty"), "https://x/y.mp4",
                                 str(v)])
    texts = [s.text for s in srcs]
    assert texts.count(str(v)) == 1  # named twice, read once
    assert str(tmp_path / "sub" / "w.mkv") in texts and "https://x/y.mp4" in texts
    assert not any(t.endswith((".txt", "partial.mp4")) for t in texts)
    assert errs and "no video files" in errs[0][1] and "empty" in errs[0][1]
    srcs, errs = resolve_inputs([str(tmp_path / "**" / "*.mkv")])
    assert [s.text for s in srcs] == [str(tmp_path / "sub" / "w.mkv")] and not errs
    srcs, errs = resolve_inputs([str(tmp_path / "*.avi")])
    assert not srcs and "no files match" in errs[0][1]


def test_stdin_is_spooled_and_removed(tmp_path, video_factory):
    v = video_factory(20)
    code = ("import sys, glob, tempfile, os; from har.sources import open_video, parse_source;"
            "video = open_video(parse_source('-')); n = sum(1 for _ in video.frames());"
            "tmp = video.source; video.close(); print(n, os.path.exists(tmp))")
    with open(v, "rb") as fh:
        out = subprocess.run([sys.executable, "-c", code], stdin=fh, capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["20", "False"]


def test_empty_stdin_is_one_clear_line():
    code = ("from har.sources import open_video, parse_source\n"
            "try:\n    open_video(parse_source('-'))\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("DecodeError -: standard input is empty")


@pytest.fixture
def no_range_server(tmp_path):
    """A local HTTP/1.0 server that ignores Range requests and sends no Content-Length:
    the whole file, every time, so FFmpeg cannot seek in it."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            path = tmp_path / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            self.wfile.write(path.read_bytes())

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_mp4_with_index_at_the_end_on_a_server_without_ranges(tmp_path, video_factory,
                                                              no_range_server):
    v = video_factory(300)  # PyAV writes the moov atom at the end
    data = v.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    with open_video(parse_source(f"{no_range_server}/{v.name}")) as video:
        assert sum(1 for _ in video.frames()) == 300


def test_download_cap(tmp_path, video_factory, no_range_server, monkeypatch):
    v = video_factory(300)
    monkeypatch.setenv("HAR_MAX_FETCH_MB", "0.001")
    with pytest.raises(DecodeError, match="HAR_MAX_FETCH_MB"):
        open_video(parse_source(f"{no_range_server}/{v.name}"))
