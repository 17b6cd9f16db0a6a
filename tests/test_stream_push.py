"""A stream's own webhook and MQTT topic prefix, over the server's defaults.

Real parts: a `har serve` subprocess, UDP MPEG-TS senders, two local webhook
receivers that check the HMAC (the server's and one stream's), Debian's mosquitto
with a paho subscriber to every topic. The SSRF policy of a stream's webhook is
checked on har.netsafe's own path against a real local receiver. Every wait is
bounded.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from serve_helpers import Server
from stream_servers import free_udp_port, udp_sender
from test_serve_streams import SECRET, Broker, Receiver, wait_for


@pytest.fixture(scope="module")
def source_video(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "src.mp4", 60, size=(128, 96), fps=30)


class AllTopics:
    """A second paho subscriber, to ``#`` (every topic) on the test broker."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho

        self.got: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="har-test-all")

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe("#", qos=1)

        def on_message(client, userdata, msg):
            with self.lock:
                self.got.append((msg.topic, json.loads(msg.payload)))

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "could not subscribe to #"

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.got]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_streams_webhook_follows_the_url_jobs_policy():
    """Pusher.add_webhook: a loopback receiver gets nothing unless private addresses
    are allowed (--allow-private-urls), and the refusal is counted as a failure;
    _check_webhook refuses such URLs (and non-http schemes) at once."""
    from har.netsafe import UrlRefused
    from har.serve.app import _check_webhook
    from har.serve.push import Pusher

    for url in ("http://127.0.0.1:9/hook", "http://localhost/x", "http://10.1.2.3/x",
                "http://[::1]/x", "ftp://example.org/x"):
        with pytest.raises(UrlRefused):
            _check_webhook(url, False)
    _check_webhook("http://127.0.0.1:9/hook", True)  # allowed with the option

    receiver = Receiver()
    try:
        for allow, want in ((False, 0), (True, 1)):
            pusher = Pusher(allow_private=allow, retries=0)
            pusher.add_webhook("s1", receiver.url, SECRET)
            pusher.publish("streams", "s1", {"type": "state", "state": "live"})
            wait_for(lambda: pusher.sent["webhook"] + pusher.failed["webhook"] >= 1, 10,
                     "the webhook's answer")
            pusher.close()
            assert len(receiver.events()) == want
            assert pusher.failed["webhook"] == 1 - want
        assert receiver.events()[0]["signed"]
    finally:
        receiver.close()


@pytest.mark.slow
def test_stream_webhook_and_topic_override_the_servers(tmp_path, r10_weights, source_video):
    server_hook, own_hook = Receiver(), Receiver()
    broker = Broker(tmp_path)
    everything = AllTopics(broker.port)
    ports = [free_udp_port(), free_udp_port()]
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls",
                    "--webhook", server_hook.url, "--webhook-secret", SECRET,
                    "--mqtt", f"127.0.0.1:{broker.port}")
    senders = []
    try:
        server.start()
        api = server.url + "/v1/streams"
        for bad, word in (({"webhook": "ftp://x/y"}, "only http:// and https://"),
                          ({"webhook_secret": "s"}, "give webhook as well"),
                          ({"mqtt_topic": "home/#"}, "without '#'"),
                          ({"webhook": 5}, "webhook: give a non-empty string")):
            r = httpx.post(api, json={"url": f"udp://127.0.0.1:{ports[0]}",
                                      "options": bad}, timeout=30)
            assert r.status_code == 400 and word in r.json()["detail"], r.text
            assert "\n" not in r.json()["detail"]
        own = {"threshold": 0.0, "webhook": own_hook.url, "webhook_secret": SECRET,
               "mqtt_topic": "home/garden"}
        r = httpx.post(api, json={"url": f"udp://127.0.0.1:{ports[0]}", "name": "garden",
                                  "options": own}, timeout=30)
        assert r.status_code == 201, r.text
        garden = r.json()
        assert garden["options"]["webhook_secret"] == "***"
        assert garden["options"]["webhook"] == own_hook.url
        r = httpx.post(api, json={"url": f"udp://127.0.0.1:{ports[1]}", "name": "door",
                                  "options": {"threshold": 0.0}}, timeout=30)
        assert r.status_code == 201, r.text
        door = r.json()
        time.sleep(1.0)
        senders = [udp_sender(str(source_video), port, 60) for port in ports]

        def pushed():
            own_types = {e["event"]["type"] for e in own_hook.events()}
            srv_types = {e["event"]["type"] for e in server_hook.events()}
            topics = set(everything.topics())
            ok = {"state", "segment_start"} <= own_types and \
                {"state", "segment_start"} <= srv_types and \
                f"home/garden/streams/{garden['id']}/segment_start" in topics and \
                f"har/streams/{door['id']}/segment_start" in topics
            return ok
        wait_for(pushed, 90, "both streams' events at their own outputs")
        # the garden's events go to its receiver and topic only, the door's to the
        # server's
        assert {e["event"]["stream"] for e in own_hook.events()} == {garden["id"]}
        assert {e["event"]["stream"] for e in server_hook.events()} == {door["id"]}
        assert all(e["signed"] for e in own_hook.events() + server_hook.events())
        topics = everything.topics()
        assert not [t for t in topics if t.startswith(f"har/streams/{garden['id']}/")]
        assert not [t for t in topics if t.startswith(f"home/garden/streams/{door['id']}")]
        # the server's default subscriber (har/#) sees the door only
        assert {p["stream"] for _, p in broker.got()} == {door["id"]}

        # after a restart the stream keeps its own outputs; DELETE sends its last
        # segment_end to its own receiver
        server.stop()
        n_before = len(own_hook.events())
        server.start()
        wait_for(lambda: any(e["event"]["type"] == "segment_start"
                             for e in own_hook.events()[n_before:]), 60,
                 "a segment_start at the garden's own webhook after the restart")
        assert httpx.delete(f"{api}/{garden['id']}", timeout=10).status_code == 200
        wait_for(lambda: any(e["event"]["type"] == "segment_end"
                             and e["event"]["stream"] == garden["id"]
                             for e in own_hook.events()), 30,
                 "the garden's segment_end at its own receiver after DELETE")
        assert {e["event"]["stream"] for e in own_hook.events()} == {garden["id"]}
    finally:
        for p in senders:
            p.kill()
            p.wait(timeout=10)
        server.stop()
        everything.close()
        broker.close()
        server_hook.close()
        own_hook.close()
