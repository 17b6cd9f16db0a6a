"""Several live streams in one `har serve`, events pushed out, /metrics.

Real parts only: a `har serve` subprocess (uvicorn) driven with httpx, MPEG-TS over
UDP from real senders (tests/stream_servers.py), GStreamer's RTSP server, a local
HTTP receiver for webhooks that checks the HMAC, and Debian's mosquitto broker with a
paho-mqtt subscriber. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from serve_helpers import Server, free_port
from stream_servers import free_udp_port, udp_sender

SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def source_video(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "src.mp4", 60, size=(128, 96), fps=30)


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps each POST's body, headers and whether
    its X-Har-Signature is right; answers ``fail_first`` requests with 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[dict] = []
        self.fails = fail_first
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rec.lock:
                    if rec.fails > 0:
                        rec.fails -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    want = "sha256=" + hmac.new(SECRET.encode(), body,
                                                hashlib.sha256).hexdigest()
                    rec.got.append({"event": json.loads(body),
                                    "signed": hmac.compare_digest(
                                        self.headers.get("X-Har-Signature", ""), want),
                                    "type": self.headers.get("X-Har-Event")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Broker:
    """Debian's mosquitto on 127.0.0.1 (skips without it) and a paho subscriber to
    ``har/#``."""

    def __init__(self, tmp_path) -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                            if os.path.exists("/usr/sbin/mosquitto") else None)
        if exe is None:
            pytest.skip("no mosquitto broker (apt-get install mosquitto)")
        paho = pytest.importorskip("paho.mqtt.client")
        self.port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="har-test-sub")
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe("har/#", qos=1)

        def on_subscribe(*a):
            subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload)))

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_subscribe = on_subscribe
        deadline = time.monotonic() + 15
        while True:  # the broker takes a moment to listen
            try:
                self.client.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    pytest.skip(f"mosquitto did not start: {self.proc.stderr.read()[-300:]}")
                time.sleep(0.2)
        self.client.loop_start()
        assert subscribed.wait(10), "the subscriber could not subscribe"

    def got(self) -> list[tuple[str, dict]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _rtsp_server(port):
    script = os.path.join(os.path.dirname(__file__), "rtsp_server.py")
    if not os.path.exists("/usr/bin/python3"):
        return None
    proc = subprocess.Popen(["/usr/bin/python3", script, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        return None
    return proc


def sse_events(url: str, n: int, timeout_s: float, last_event_id: str | None = None,
               types: tuple[str, ...] | None = None) -> tuple[list[dict], list[str]]:
    """The first ``n`` SSE events (of ``types``), and the ``id:`` lines seen."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events, ids = [], []
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=5)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        ev_id = None
        for line in r.iter_lines():
            if line.startswith("id: "):
                ev_id = line[4:]
            elif line.startswith("data: "):
                ev = json.loads(line[6:])
                if types is None or ev["type"] in types:
                    events.append(ev)
                    ids.append(ev_id)
                ev_id = None
            if len(events) >= n or time.monotonic() > deadline:
                break
    return events, ids


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """The Prometheus text format, strictly: every line a comment or a sample."""
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = sample.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(label.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def wait_for(fn, timeout_s: float, what: str, step: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.slow
def test_several_cameras_one_server(tmp_path, r10_weights, source_video):
    """Two UDP cameras and an RTSP camera in one server: all live and scored by one
    model, SSE with ids and resume, webhooks signed, MQTT events, /metrics, and the
    streams back after a restart."""
    receiver = Receiver(fail_first=1)  # the first POST fails: it must be retried
    broker = Broker(tmp_path)
    udp_ports = [free_udp_port(), free_udp_port()]
    rtsp_port = free_port()
    rtsp = _rtsp_server(rtsp_port)
    senders = []
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls",
                    "--webhook", receiver.url, "--webhook-secret", SECRET,
                    "--mqtt", f"127.0.0.1:{broker.port}")
    try:
        server.start()
        api = server.url + "/v1/streams"
        ids = []
        for k, port in enumerate(udp_ports):
            r = httpx.post(api, json={"url": f"udp://127.0.0.1:{port}", "name": f"udp{k}",
                                      "options": {"threshold": 0.0}}, timeout=30)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        if rtsp is not None:
            r = httpx.post(api, json={"url": f"rtsp://127.0.0.1:{rtsp_port}/cam",
                                      "name": "rtsp",
                                      "options": {"frame_stride": 2, "snapshots": False}},
                           timeout=30)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        time.sleep(1.0)  # the server listens on the UDP ports before the cameras send
        senders = [udp_sender(str(source_video), port, 40) for port in udp_ports]

        def all_scored():
            streams = httpx.get(api, timeout=10).json()["streams"]
            return streams if all(s["clips"] >= 4 and s["state"] == "live"
                                  for s in streams) else None
        streams = wait_for(all_scored, 90, "every stream live with 4 clips")
        assert [s["id"] for s in streams] == ids
        for s in streams:
            assert s["latency_p50_s"] is not None and s["latency_p95_s"] is not None
            assert s["url"].startswith(("udp://", "rtsp://"))
        if rtsp is not None:
            assert streams[2]["frame_stride"] == 2

        # SSE: ids, wall_time; a reconnect with Last-Event-ID resumes after it
        sse = f"{api}/{ids[0]}/events"
        first, first_ids = sse_events(sse, 6, 30)
        assert all(e.get("wall_time") and e["stream"] == ids[0] for e in first)
        assert first_ids == [e["id"] for e in first]
        assert all(i for i in first_ids)
        resumed, resumed_ids = sse_events(sse, 2, 30, last_event_id=first_ids[2])
        assert resumed_ids[0] == first_ids[3], (first_ids, resumed_ids)
        clips = [e for e in first if e["type"] == "clip"]
        assert clips and all(e["latency_s"] is not None and e["frame_wall_time"]
                             for e in clips)

        # threshold 0: every top label is "on": segment_start after min-duration,
        # with a snapshot
        def seg_start():
            evs, eids = sse_events(sse, 1, 20, types=("segment_start",))
            return list(zip(evs, eids))
        (seg, seg_id), = wait_for(seg_start, 40, "a segment_start event")
        assert seg["snapshot"] is True
        jpeg = httpx.get(f"{api}/{ids[0]}/snapshot", params={"event": seg_id}, timeout=10)
        assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
        assert jpeg.headers["content-type"] == "image/jpeg"
        latest = httpx.get(f"{api}/{ids[1]}/snapshot", timeout=10)
        assert latest.status_code == 200 and latest.content[:2] == b"\xff\xd8"
        if rtsp is not None:  # snapshots off: no full-size frame is kept
            assert httpx.get(f"{api}/{ids[2]}/snapshot", timeout=10).status_code == 409

        # /metrics parses and names every stream
        m = httpx.get(server.url + "/metrics", timeout=10)
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        samples = parse_metrics(m.text)
        for sid in ids:
            key = ("har_stream_clips_total", frozenset({("stream", sid),
                                                        ("name", next(
                                                            s["name"] for s in streams
                                                            if s["id"] == sid))}))
            assert samples[key] >= 4
        busy = [v for (n, _), v in samples.items() if n == "har_model_busy_ratio"]
        assert busy and 0 < busy[0] <= 1
        assert samples[("har_jobs", frozenset({("status", "queued")}))] == 0

        # pushed: webhooks (signed, the failed first POST retried) and MQTT
        def pushed():
            web = receiver.events()
            mq = broker.got()
            web_types = {(e["event"]["stream"], e["event"]["type"]) for e in web}
            mq_topics = {t for t, _ in mq}
            ok = all((sid, "state") in web_types for sid in ids[:2]) and \
                (ids[0], "segment_start") in web_types and \
                all(f"har/streams/{sid}/state" in mq_topics for sid in ids[:2]) and \
                f"har/streams/{ids[0]}/segment_start" in mq_topics
            return (web, mq) if ok else None
        web, mq = wait_for(pushed, 30, "webhook and MQTT events")
        assert all(e["signed"] for e in web), "a webhook without the right HMAC"
        assert {e["type"] for e in web} <= {"state", "segment_start", "segment_end"}
        assert any(e["event"]["type"] == "state" and e["event"]["state"] == "live"
                   for e in web)
        live_msgs = [p for t, p in mq if t == f"har/streams/{ids[0]}/state"]
        assert any(p["state"] == "live" for p in live_msgs)

        # DELETE ends open segments (segment_end pushed) and forgets the stream
        r = httpx.delete(f"{api}/{ids[1]}", timeout=10)
        assert r.status_code == 200
        assert httpx.get(f"{api}/{ids[1]}", timeout=10).status_code == 404
        wait_for(lambda: f"har/streams/{ids[1]}/segment_end" in {t for t, _ in broker.got()},
                 20, "segment_end on MQTT after DELETE")

        # restart: the streams come back (the deleted one does not) and run again
        old_last = httpx.get(f"{api}/{ids[0]}", timeout=10).json()["last_event_id"]
        server.stop()
        server.start()
        keep = [ids[0]] + ids[2:]
        back = httpx.get(api, timeout=10).json()["streams"]
        assert [s["id"] for s in back] == keep
        wait_for(lambda: httpx.get(f"{api}/{ids[0]}", timeout=10).json()["clips"] >= 2,
                 60, "the kept UDP stream scored again after the restart")
        # an id of the previous run: the new run's events from the start
        again, again_ids = sse_events(sse, 1, 20, last_event_id=old_last)
        assert again_ids[0].endswith("-0") and again_ids[0] != old_last

        # a job's end is pushed too, while the streams run
        with open(source_video, "rb") as fh:
            r = httpx.post(server.url + "/v1/jobs", files={"file": ("v.mp4", fh)}, timeout=30)
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        server.wait_all([job], timeout_s=120)

        def job_pushed():
            web = [e["event"] for e in receiver.events() if e["event"].get("job") == job]
            mq = [p for t, p in broker.got() if t == f"har/jobs/{job}/video"]
            return (web, mq) if web and mq else None
        web_job, mq_job = wait_for(job_pushed, 30, "the job's end on webhook and MQTT")
        assert web_job[0]["type"] == "video" and web_job[0]["status"] == "done"
        assert mq_job[0]["status"] == "done"
        samples = parse_metrics(httpx.get(server.url + "/metrics", timeout=10).text)
        streams_s = samples[("har_model_busy_seconds_total", frozenset({("work", "streams")}))]
        all_s = samples[("har_model_busy_seconds_total", frozenset({("work", "all")}))]
        assert 0 < streams_s < all_s  # the job's model time counts in "all" only
        server.stop()  # a graceful shutdown with streams open: no traceback
        log = server.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        for p in senders:
            p.kill()
            p.wait(timeout=10)
        if rtsp is not None:
            rtsp.kill()
            rtsp.wait(timeout=10)
        server.stop()
        broker.close()
        receiver.close()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory, r10_weights):
    server = Server(tmp_path_factory.mktemp("plain") / "data", r10_weights,
                    "--max-streams", "1")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("body, words", [
    ({"url": "rtsp://127.0.0.1:8554/cam"}, "--allow-private-urls"),
    ({"url": "rtsp://10.1.2.3/cam"}, "private"),
    ({"url": "udp://@:5000"}, "--allow-private-urls"),
    ({"url": "file:///etc/passwd"}, "a stream URL starts with"),
    ({"url": "rtsp://8.8.8.8/cam", "options": {"stride": 0}}, "stride"),
    ({"url": "rtsp://8.8.8.8/cam", "options": {"fps": 5, "frame_stride": 2}}, "not both"),
    ({"url": "rtsp://8.8.8.8/cam", "options": {"colour": 1}}, "not a stream option"),
    ({"url": "rtsp://8.8.8.8/cam", "options": [1]}, "options: give an object"),
    ({"url": "rtsp://8.8.8.8/cam", "options": {"snapshots": "yes"}}, "true or false"),
    ({"url": 5}, 'give {"url"'),
    ({"name": "x"}, 'give {"url"'),
])
def test_stream_refusals_are_one_line(plain_server, body, words):
    r = httpx.post(plain_server.url + "/v1/streams", json=body, timeout=30)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail


def test_stream_limit_password_hidden_and_metrics(plain_server):
    api = plain_server.url + "/v1/streams"
    # a public address (nothing answers there from the test machine: it stays connecting)
    r = httpx.post(api, json={"url": "rtsp://admin:hunter2@8.8.8.8:9/cam"}, timeout=30)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    try:
        assert "hunter2" not in r.text and r.json()["url"] == "rtsp://admin:***@8.8.8.8:9/cam"
        same = httpx.post(api, json={"url": "rtsp://admin:hunter2@8.8.8.8:9/cam"},
                          timeout=30)
        assert same.status_code == 409 and "already watched" in same.json()["detail"]
        assert "hunter2" not in same.text
        again = httpx.post(api, json={"url": "rtsp://8.8.4.4:9/cam"}, timeout=30)
        assert again.status_code == 409 and "--max-streams" in again.json()["detail"]
        assert "hunter2" not in httpx.get(api, timeout=10).text
        assert httpx.get(f"{api}/{sid}/snapshot", timeout=10).status_code == 409
        samples = parse_metrics(httpx.get(plain_server.url + "/metrics", timeout=10).text)
        assert samples[("har_stream_up", frozenset({("stream", sid),
                                                     ("name", r.json()["name"])}))] == 0
        # a cross-site POST is refused like any state-changing request
        evil = httpx.post(api, json={"url": "rtsp://8.8.4.4:9/cam"},
                          headers={"Origin": "http://evil.example"}, timeout=10)
        assert evil.status_code == 403
        doc = httpx.get(plain_server.url + "/openapi.json", timeout=10).json()
        assert "/v1/streams" in doc["paths"] and "/metrics" in doc["paths"]
        # the answers match the schemas the OpenAPI document gives for them
        jsonschema = pytest.importorskip("jsonschema")
        for ref, body in (("Stream", httpx.get(f"{api}/{sid}", timeout=10).json()),
                          ("StreamList", httpx.get(api, timeout=10).json())):
            jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{ref}",
                                             "components": doc["components"]}
                                            ).validate(body)
    finally:
        assert httpx.delete(f"{api}/{sid}", timeout=10).status_code == 200
    assert httpx.delete(f"{api}/{sid}", timeout=10).status_code == 404


def test_webhook_retries_and_signs():
    """The Pusher alone: a 503 is retried with backoff, the body is signed, and a
    full queue drops the oldest event instead of blocking."""
    from har.serve.push import Pusher, signature

    receiver = Receiver(fail_first=2)
    pusher = Pusher(webhook=receiver.url, secret=SECRET, backoff_s=0.05)
    try:
        t0 = time.monotonic()
        for n in range(3):
            pusher.publish("jobs", "x" * 32, {"type": "video", "n": n})
        assert time.monotonic() - t0 < 0.5  # never blocks the caller
        got = wait_for(lambda: receiver.events() if len(receiver.events()) == 3 else None,
                       10, "three webhooks")
        assert [g["event"]["n"] for g in got] == [0, 1, 2]  # in order, none lost
        assert all(g["signed"] and g["type"] == "video" for g in got)
        assert pusher.sent["webhook"] == 3 and pusher.failed["webhook"] == 0
    finally:
        pusher.close()
        receiver.close()
    assert signature("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
    # nobody listens: a small queue overflows, dropping the oldest; publish stays fast
    dead = Pusher(webhook=f"http://127.0.0.1:{free_port()}/", queue_size=2, retries=0,
                  backoff_s=0.01)
    try:
        t0 = time.monotonic()
        for n in range(200):
            dead.publish("jobs", "y" * 32, {"type": "video", "n": n})
        assert time.monotonic() - t0 < 1.0
        assert dead.dropped["webhook"] > 0
    finally:
        dead.close(drain_s=0)


@pytest.mark.parametrize("args, words", [
    (["--webhook", "ftp://127.0.0.1/x"], "--webhook"),
    (["--webhook-secret", "s"], "give --webhook URL as well"),
    (["--mqtt", "127.0.0.1"], "HOST:PORT"),
    (["--mqtt", "127.0.0.1:1883", "--mqtt-topic", "a/#"], "--mqtt-topic"),
])
def test_push_options_bad_input_is_one_line(tmp_path, args, words):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(os.path.dirname(__file__), "..", "src"),
         os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "har", "serve", "--data",
                        str(tmp_path / "d"), *args], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert words in lines[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_event_ring_resume_and_missed():
    """The SSE ring: resume after an id of this run, everything kept for an id of
    another run, and how many a client that was away too long missed."""
    from har.serve.streams import EventRing, redact_url
    from har.writers import EventWriter

    ring = EventRing("abc", size=3)
    writer = EventWriter(sink=ring)  # the one event writer, the ring as its sink
    ids = [writer.emit("clip", n=n)["id"] for n in range(5)]
    assert ids == [f"abc-{n}" for n in range(5)] and ring.last_id == "abc-4"
    assert ring.start_after("abc-3") == 4
    assert ring.start_after("other-3") == 0 and ring.start_after("junk") == 0
    assert ring.start_after(None) == 0
    got, missed = ring.read(ring.start_after("abc-0"))  # 1..4 wanted, 2..4 kept
    assert [e["n"] for _, e in got] == [2, 3, 4] and missed == 1
    got, missed = ring.read(5)
    assert got == [] and missed == 0
    assert all(e["wall_time"] > 0 for _, e in ring.read(0)[0])
    assert redact_url("rtsp://u:p@10.0.0.1:554/s?x=1") == "rtsp://u:***@10.0.0.1:554/s?x=1"
    assert redact_url("udp://127.0.0.1:5000") == "udp://127.0.0.1:5000"


@pytest.mark.slow
def test_camera_that_drops_and_comes_back(tmp_path, r10_weights, source_video):
    """A UDP camera that stops for 8 s and comes back: the stream goes stalled ->
    reconnecting -> live (pushed on MQTT), counts one reconnect, and scores again."""
    broker = Broker(tmp_path)
    port = free_udp_port()
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls",
                    "--mqtt", f"127.0.0.1:{broker.port}")
    senders = []
    try:
        server.start()
        r = httpx.post(server.url + "/v1/streams", timeout=30,
                       json={"url": f"udp://127.0.0.1:{port}", "name": "flaky"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        time.sleep(1.0)
        senders.append(udp_sender(str(source_video), port, 6))
        senders[-1].wait(timeout=60)
        before = httpx.get(f"{server.url}/v1/streams/{sid}", timeout=10).json()["clips"]
        assert before >= 1
        time.sleep(8)  # the camera is away
        senders.append(udp_sender(str(source_video), port, 12))

        def back():
            st = httpx.get(f"{server.url}/v1/streams/{sid}", timeout=10).json()
            return st if st["reconnects"] >= 1 and st["clips"] > before + 2 else None
        st = wait_for(back, 60, "the stream to reconnect and score again")
        assert st["state"] == "live" and st["stalls"] >= 1
        topic = f"har/streams/{sid}/state"
        states = wait_for(lambda: [p["state"] for t, p in broker.got() if t == topic]
                          if [p["state"] for t, p in broker.got()
                              if t == topic].count("live") >= 2 else None,
                          20, "two live states on MQTT")
        i = states.index("stalled")
        assert "reconnecting" in states[i:] and "live" in states[i:], states
        samples = parse_metrics(httpx.get(server.url + "/metrics", timeout=10).text)
        assert samples[("har_stream_reconnects_total",
                        frozenset({("stream", sid), ("name", "flaky")}))] >= 1
    finally:
        for p in senders:
            p.kill()
            p.wait(timeout=10)
        server.stop()
        broker.close()


@pytest.mark.slow
def test_restart_without_allow_private_does_not_open_private_cameras(tmp_path, r10_weights):
    """Streams are opened again at start-up under the policy of the new run."""
    port = free_udp_port()
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls")
    try:
        server.start()
        r = httpx.post(server.url + "/v1/streams", timeout=30,
                       json={"url": f"udp://127.0.0.1:{port}", "name": "lan"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        server.stop()
        server.extra = ()  # the same folder, without --allow-private-urls
        server.start()
        st = httpx.get(f"{server.url}/v1/streams/{sid}", timeout=10).json()
        assert st["state"] == "ended" and "--allow-private-urls" in st["error"]
        assert "\n" not in st["error"]
        assert httpx.delete(f"{server.url}/v1/streams/{sid}", timeout=10).status_code == 200
    finally:
        server.stop()
