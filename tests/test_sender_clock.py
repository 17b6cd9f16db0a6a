"""Event times from the RTSP sender's clock (RTCP sender reports), else arrival.

A real GStreamer RTSP server (Debian's gir1.2-gst-rtsp-server-1.0, run with
/usr/bin/python3) whose *system clock is shifted by SKEW seconds*: an LD_PRELOAD shim
(compiled here with gcc) adds SKEW to CLOCK_REALTIME in that process only, so its RTCP
sender reports carry NTP times SKEW seconds ahead of this machine's clock. Times that
equal the sender's clock therefore cannot be arrival times in disguise. The server
prints, for every frame it sends, the frame's capture time and send time on its own
(shifted) clock; har's sender-clock times must match them within TOLERANCE_S.

A UDP MPEG-TS stream (no RTCP) and a file must fall back to arrival (``clock:
"arrival"``, no sender time). Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from serve_helpers import Server, free_port
from stream_servers import free_udp_port, udp_sender

SKEW_S = 1000  # the sender's clock runs this far ahead of ours
# sender-clock time against the sender's own capture time: less than a frame at
# 30 fps, so the match names one frame. Measured here: a steady 13.3 ms (GStreamer's
# RTCP mapping of RTP time to NTP time, not the capture instant itself).
TOLERANCE_S = 0.025

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static long long offset(void) {
    const char *s = getenv("SENDER_CLOCK_OFFSET_S");
    return s ? atoll(s) : 0;
}
int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset();
    return r;
}
int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (r == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return r;
}
time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""

# tests/rtsp_server.py's stream, and for every frame entering the payloader:
# "frame <capture time> <send time>" on this process's (shifted) clock. The capture
# time is when the pipeline's running time equalled the frame's running time
# (videotestsrc is live: it stamps each frame with the running time at which it is
# captured).
SERVER = r"""
import sys, time
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,"
    "framerate=30/1 ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=15 ! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)

def probe(pad, info, element):
    buf = info.get_buffer()
    clock = element.get_clock()
    if clock is None or buf.pts == Gst.CLOCK_TIME_NONE:
        return Gst.PadProbeReturn.OK
    event = pad.get_sticky_event(Gst.EventType.SEGMENT, 0)
    if event is None:
        return Gst.PadProbeReturn.OK
    # the encoder shifts pts (by 1000 hours); its segment maps them to running time
    pts = event.parse_segment().to_running_time(Gst.Format.TIME, buf.pts)
    send = time.time()
    running = clock.get_time() - element.get_base_time()
    capture = send - (running - pts) / 1e9
    print(f"frame {capture:.6f} {send:.6f}", flush=True)
    return Gst.PadProbeReturn.OK

def configure(factory, media):
    pay = media.get_element().get_by_name("pay0")
    pay.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe, pay)

factory.connect("media-configure", configure)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot listen")
print("ready", flush=True)
GLib.MainLoop().run()
"""


class SkewedRtsp:
    """The RTSP server above, with its clock SKEW_S ahead; ``frames`` collects
    ``(capture, send)`` times on that clock."""

    def __init__(self, tmp_path, skew_s: int = SKEW_S) -> None:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            pytest.skip("no C compiler for the clock shim (apt-get install gcc)")
        if not os.path.exists("/usr/bin/python3"):
            pytest.skip("no /usr/bin/python3 with python3-gi")
        probe = subprocess.run(["/usr/bin/python3", "-c",
                                "import gi; gi.require_version('GstRtspServer', '1.0')"],
                               capture_output=True, timeout=30)
        if probe.returncode:
            pytest.skip("no GStreamer RTSP server (apt-get install "
                        "gir1.2-gst-rtsp-server-1.0 python3-gi)")
        src = tmp_path / "shim.c"
        src.write_text(SHIM)
        lib = tmp_path / "shim.so"
        subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"],
                       check=True, capture_output=True, timeout=60)
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        env = dict(os.environ, LD_PRELOAD=str(lib), SENDER_CLOCK_OFFSET_S=str(skew_s))
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", SERVER, str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            pytest.skip("the GStreamer RTSP server did not start")
        self.frames: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "frame":
                with self.lock:
                    self.frames.append((float(parts[1]), float(parts[2])))

    def logged(self, until: float | None = None) -> list[tuple[float, float]]:
        """The frames logged so far; with ``until`` (a time on the sender's clock),
        once the log has reached past it (its lines are read by a thread, and may
        lag; bounded wait)."""
        deadline = time.monotonic() + 5
        while True:
            with self.lock:
                frames = list(self.frames)
            if until is None or (frames and frames[-1][0] > until + 0.1) \
                    or time.monotonic() > deadline:
                return frames
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.reader.join(timeout=5)  # every line it printed is read


def nearest(logged: list[tuple[float, float]], t: float) -> tuple[float, float]:
    return min(logged, key=lambda cs: abs(cs[0] - t))


def test_the_shim_shifts_only_the_sender(tmp_path):
    """The shifted clock is the sender's alone: its printed times run SKEW ahead."""
    server = SkewedRtsp(tmp_path)
    try:
        from har.video import VideoSource

        with VideoSource(server.url, live=True, timeout_s=(10, 5)) as video:
            next(iter(video.frames()))
        deadline = time.monotonic() + 10
        while not server.logged() and time.monotonic() < deadline:
            time.sleep(0.1)
        capture, send = server.logged()[-1]
        assert abs(send - time.time() - SKEW_S) < 2.0
    finally:
        server.close()


def test_rtsp_frames_carry_the_senders_clock(tmp_path):
    """LiveSource over RTSP: once the first RTCP sender report is in, every frame has
    a sender time equal to the sender's capture time of that frame (within
    TOLERANCE_S), SKEW ahead of its arrival here; before it, none (no invented
    value)."""
    from har.live import LiveSource

    server = SkewedRtsp(tmp_path)
    live = LiveSource(server.url, open_timeout_s=10, read_timeout_s=5, max_reconnects=0)
    got = []  # (index, sender time, arrival as wall-clock time)
    try:
        deadline = time.monotonic() + 20
        for f in live.frames(size=(160, 120)):
            wall = time.time() - (time.monotonic() - f.arrival)
            got.append((f.index, f.sender_time, wall))
            if time.monotonic() > deadline or \
                    sum(1 for _, s, _ in got if s is not None) >= 90:
                break
    finally:
        live.close()
        server.close()
    timed = [(i, s, w) for i, s, w in got if s is not None]
    assert len(timed) >= 90, f"no RTCP sender time within 20 s ({len(got)} frames)"
    # once known, known for every later frame
    first = next(k for k, (_, s, _) in enumerate(got) if s is not None)
    assert all(s is not None for _, s, _ in got[first:])
    logged = server.logged()
    errors, sends = [], []
    for i, sent, wall in timed:
        capture, send = nearest(logged, sent)
        errors.append(capture - sent)
        assert abs(capture - sent) <= TOLERANCE_S, (i, sent, capture)
        sends.append(send - sent)
        assert 0 <= send - sent < 0.2  # sent after it was captured (and encoded)
        # the sender's clock, not ours: SKEW ahead of the arrival, less the transit
        assert 0 < (wall + SKEW_S) - sent < 1.0, (i, sent, wall)
        assert live.sender_time(i) == sent
    # 30 fps on the sender's clock
    span = (timed[-1][1] - timed[0][1]) / (timed[-1][0] - timed[0][0])
    assert abs(span - 1 / 30) < 0.002
    # one mapping for the whole run: the offset does not wander
    assert max(errors) - min(errors) < 0.003
    print(f"sender capture time - har's sender time: {min(errors) * 1000:.2f} to "
          f"{max(errors) * 1000:.2f} ms; sender's send time - har's sender time: "
          f"{min(sends) * 1000:.2f} to {max(sends) * 1000:.2f} ms, over {len(timed)} "
          f"frames; the first sender report came after {first} frames")


def test_file_and_udp_have_no_sender_clock(tmp_path):
    """No RTCP: a file played in real time and UDP MPEG-TS give no sender time."""
    from conftest import make_video
    from har.live import LiveSource

    video = make_video(tmp_path / "v.mp4", 30, size=(64, 48), fps=30)
    live = LiveSource(str(video), realtime=True, max_reconnects=0)
    frames = list(live.frames(size=(64, 48)))
    assert frames and all(f.sender_time is None for f in frames)

    port = free_udp_port()
    sender = udp_sender(str(video), port, 15)
    try:
        live = LiveSource(f"udp://127.0.0.1:{port}", open_timeout_s=10, read_timeout_s=5,
                          max_reconnects=0)
        got = []
        deadline = time.monotonic() + 15
        for f in live.frames(size=(64, 48)):
            got.append(f)
            if len(got) >= 20 or time.monotonic() > deadline:
                break
        live.close()
    finally:
        sender.kill()
        sender.wait(timeout=10)
    assert len(got) >= 20
    assert all(f.sender_time is None and f.arrival is not None for f in got)


@pytest.mark.slow
def test_serve_events_use_the_senders_clock(tmp_path, r10_weights, source_video):
    """`har serve` with the skewed RTSP camera and a UDP camera: the RTSP clip and
    segment events carry ``clock: "sender"`` and the sender's times; the UDP ones
    ``clock: "arrival"``; latency from the sender's clock is reported."""
    from test_serve_streams import sse_events, wait_for

    rtsp = SkewedRtsp(tmp_path)
    udp_port = free_udp_port()
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls")
    sender = None
    try:
        server.start()
        api = server.url + "/v1/streams"
        r = httpx.post(api, json={"url": rtsp.url, "name": "skewed",
                                  "options": {"threshold": 0.0}}, timeout=30)
        assert r.status_code == 201, r.text
        rtsp_id = r.json()["id"]
        r = httpx.post(api, json={"url": f"udp://127.0.0.1:{udp_port}", "name": "udp"},
                       timeout=30)
        assert r.status_code == 201, r.text
        udp_id = r.json()["id"]
        time.sleep(1.0)
        sender = udp_sender(str(source_video), udp_port, 60)

        def sender_clips():
            evs, _ = sse_events(f"{api}/{rtsp_id}/events", 200, 10,
                                types=("clip", "segment_start"))
            clips = [e for e in evs if e["type"] == "clip" and e["clock"] == "sender"]
            return evs if len(clips) >= 3 else None
        evs = wait_for(sender_clips, 90, "3 RTSP clips on the sender's clock")
        logged = rtsp.logged(until=max(e["wall_time"] for e in evs
                                       if e.get("clock") == "sender"))
        arrival_clips = [e for e in evs if e["type"] == "clip" and e["clock"] == "arrival"]
        sender_clips_ = [e for e in evs if e["type"] == "clip" and e["clock"] == "sender"]
        # before the first sender report: arrival; after it: the sender's clock only
        last_arrival = max((e["index"] for e in arrival_clips), default=-1)
        assert all(e["index"] > last_arrival for e in sender_clips_)
        for e in sender_clips_:
            for key in ("wall_time", "start_wall_time"):
                capture, _ = nearest(logged, e[key])
                assert abs(capture - e[key]) <= TOLERANCE_S, (key, e)
            assert 0 < e["frame_wall_time"] + SKEW_S - e["wall_time"] < 1.0
            # latency from the sender's clock: the sender is SKEW ahead of this
            # machine, so it reads SKEW less than the true one
            assert 0 <= e["sender_latency_s"] + SKEW_S - e["latency_s"] < 1.0
        for e in arrival_clips:
            assert e["wall_time"] == e["frame_wall_time"] and "sender_latency_s" not in e
        for e in evs:  # segments: their times on the clock they name
            if e["type"] == "segment_start" and e["clock"] == "sender":
                assert abs(nearest(logged, e["wall_time"])[0] - e["wall_time"]) \
                    <= TOLERANCE_S
                # a segment that began before the first sender report has no start
                # time on the sender's clock (clocks are never mixed)
                if e["start_wall_time"] is not None:
                    assert abs(nearest(logged, e["start_wall_time"])[0]
                               - e["start_wall_time"]) <= TOLERANCE_S

        def udp_clips():
            evs, _ = sse_events(f"{api}/{udp_id}/events", 3, 10, types=("clip",))
            return evs if len(evs) >= 3 else None
        for e in wait_for(udp_clips, 60, "3 UDP clips"):
            assert e["clock"] == "arrival" and "sender_latency_s" not in e
            assert e["wall_time"] == e["frame_wall_time"]
        # state events are this machine's
        states, _ = sse_events(f"{api}/{rtsp_id}/events", 1, 10, types=("state",))
        assert states[0]["clock"] == "arrival"

        st = httpx.get(f"{api}/{rtsp_id}", timeout=10).json()
        assert st["sender_latency_p50_s"] is not None
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        assert f'har_stream_sender_latency_seconds{{stream="{rtsp_id}",name="skewed",' \
               f'quantile="0.5"}}' in metrics
        assert f'har_stream_sender_latency_seconds{{stream="{udp_id}"' not in metrics
        assert httpx.get(f"{api}/{udp_id}", timeout=10).json()["sender_latency_p50_s"] is None
    finally:
        if sender is not None:
            sender.kill()
            sender.wait(timeout=10)
        server.stop()
        rtsp.close()


def test_har_live_clips_carry_the_senders_clock(tmp_path, r10_weights):
    """`har live` on the skewed RTSP camera: clips after the first sender report carry
    the capture times on the sender's clock and the latency from it; the summary has
    its percentiles."""
    import json

    from conftest import har_main

    rtsp = SkewedRtsp(tmp_path)
    try:
        res = har_main("live", rtsp.url, "--duration", "12", "--jsonl", "-", "--model",
                       "r3d10-k400", "--weights", r10_weights, "--backend", "torch",
                       "--quiet", timeout=120)
        events = [json.loads(line) for line in res.stdout.splitlines()]
        clips = [e for e in events if e["type"] == "clip"]
        timed = [e for e in clips if "sender_wall_time" in e]
        assert len(timed) >= 3, (res.stderr[-1000:], len(clips))
        logged = rtsp.logged(until=max(e["sender_wall_time"] for e in timed))
    finally:
        rtsp.close()
    # before the first sender report: no sender time; after it, every clip has one
    first = min(e["index"] for e in timed)
    assert all("sender_wall_time" in e for e in clips if e["index"] > first)
    for e in timed:
        for key in ("sender_wall_time", "sender_start_wall_time"):
            capture, _ = nearest(logged, e[key])
            assert abs(capture - e[key]) <= TOLERANCE_S, (key, e)
        # this machine's wall_time is SKEW behind the sender's clock
        assert 0 < e["wall_time"] + SKEW_S - e["sender_wall_time"] < 5.0, e
        assert 0 <= e["sender_latency_s"] + SKEW_S - e["latency_s"] < 1.0, e
    summary = events[-1]
    assert summary["type"] == "summary" and summary["sender_latency_p95_s"] is not None


@pytest.fixture(scope="module")
def source_video(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "src.mp4", 60, size=(128, 96), fps=30)
