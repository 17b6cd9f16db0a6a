"""A short MP4 for each segment_start of a stream added with ``"mp4": true``.

A real `har serve` subprocess, real UDP MPEG-TS senders (tests/stream_servers.py),
the MP4s fetched over HTTP with the server's token and decoded with PyAV. Every wait
is bounded.
"""

from __future__ import annotations

import time

import httpx
import pytest

from serve_helpers import Server
from stream_servers import free_udp_port, udp_sender
from test_serve_streams import sse_events, wait_for

TOKEN = "t0ken-for-clips"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def source_video(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "src.mp4", 60, size=(128, 96), fps=30)


def _segment_start(api: str, stream_id: str, timeout_s: float) -> dict:
    def got():
        evs, _ = sse_events(f"{api}/{stream_id}/events?token={TOKEN}", 1, 15,
                            types=("segment_start",))
        return evs[0] if evs else None
    return wait_for(got, timeout_s, f"a segment_start of stream {stream_id}")


def _fetch(url: str, timeout_s: float = 30) -> httpx.Response:
    """GET, waiting (bounded) while the server answers 409 (being written)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(url, headers=AUTH, timeout=10)
        if r.status_code != 409 or time.monotonic() > deadline:
            return r
        assert r.headers.get("retry-after") == "1"
        time.sleep(0.3)


def _decoded_frames(path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.slow
def test_segment_mp4_end_to_end(tmp_path, r10_weights, source_video):
    data = tmp_path / "data"
    ports = [free_udp_port(), free_udp_port()]
    server = Server(data, r10_weights, "--allow-private-urls", "--token", TOKEN)
    senders = []
    try:
        server.start()
        api = server.url + "/v1/streams"
        # bad options: one line each, naming the option and the fix
        for bad, word in (({"mp4": "yes"}, "mp4: give true or false"),
                          ({"mp4": True, "mp4_max_s": 60}, "mp4_max_s: must be"),
                          ({"mp4_max_s": 2}, 'with "mp4": true')):
            r = httpx.post(api, headers=AUTH, timeout=10,
                           json={"url": "udp://127.0.0.1:9", "options": bad})
            assert r.status_code == 400 and word in r.json()["detail"], r.text
            assert "\n" not in r.json()["detail"]
        ids = []
        for port, opts in zip(ports, ({"threshold": 0.0, "mp4": True},
                                      {"threshold": 0.0, "mp4": True, "mp4_max_s": 0.5,
                                       "snapshots": False})):
            r = httpx.post(api, headers=AUTH, timeout=30,
                           json={"url": f"udp://127.0.0.1:{port}", "options": opts})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        time.sleep(1.0)
        senders = [udp_sender(str(source_video), port, 60) for port in ports]

        # the whole opening (first clip to the announcing one), within the bound
        seg = _segment_start(api, ids[0], 90)
        assert seg["mp4"] == f"/v1/streams/{ids[0]}/clips/" + seg["mp4"].rsplit("/", 1)[1]
        expected = (seg["end_clip"] - seg["start_clip"] + 1) * 16  # back-to-back clips
        assert seg["mp4_frames"] == expected <= 4 * 30
        assert httpx.get(server.url + seg["mp4"], timeout=10).status_code == 401
        r = _fetch(server.url + seg["mp4"])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        got = tmp_path / "got.mp4"
        got.write_bytes(r.content)
        assert _decoded_frames(got) == expected
        on_disk = data / "clips" / ids[0] / seg["mp4"].rsplit("/", 1)[1]
        assert on_disk.read_bytes() == r.content

        # mp4_max_s 0.5: the first 0.5 s (15 frames at 30 fps), also without snapshots
        seg2 = _segment_start(api, ids[1], 90)
        assert seg2["mp4_frames"] == 15 and seg2["snapshot"] is False
        r = _fetch(server.url + seg2["mp4"])
        assert r.status_code == 200
        (tmp_path / "got2.mp4").write_bytes(r.content)
        assert _decoded_frames(tmp_path / "got2.mp4") == 15

        # names the server did not give, and a stream's MP4s go with the stream
        for bad in ("../../jobs.sqlite3", "0123456789abcdef.mp4", "x.mp4"):
            assert httpx.get(f"{api}/{ids[0]}/clips/{bad}", headers=AUTH,
                             timeout=10).status_code == 404
        assert httpx.delete(f"{api}/{ids[0]}", headers=AUTH, timeout=10).status_code == 200
        assert not on_disk.exists()
        # an MP4 still being written is removed once done; nothing is left
        wait_for(lambda: not on_disk.parent.exists(), 20, "the stream's MP4 folder gone")
    finally:
        for p in senders:
            p.kill()
            p.wait(timeout=10)
        server.stop()
