"""Events pushed out of ``har serve``: webhooks and MQTT.

:class:`Pusher` takes events from any thread with :meth:`Pusher.publish`, which never
blocks: each output has its own bounded queue and thread, and when a queue is full
its oldest event is dropped (counted in ``dropped``), so a slow receiver or a dead
broker never holds up the model.

- **Webhook**: ``POST`` of the event as JSON (``Content-Type: application/json``) with
  ``X-Har-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`` when a
  secret is set, and ``X-Har-Event`` (the event type). A connection error, a timeout,
  429 or a 5xx answer is retried with exponential backoff (``retries`` times); other
  answers are final. Events are sent one at a time, in order.
- **MQTT**: paho-mqtt publishes each event (QoS 1) on ``PREFIX/streams/<id>/<type>``
  or ``PREFIX/jobs/<id>/<type>``; paho reconnects by itself and keeps what could not
  be sent yet (at most ``queue`` messages).

The webhook URL and the broker are the operator's (command line), not a client's,
so they are not subject to the SSRF policy of URL jobs and streams.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("har.serve")

SIGNATURE_HEADER = "X-Har-Signature"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Har-Signature`` value for ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Queue:
    """A bounded queue whose put never blocks: a full queue drops its oldest item."""

    def __init__(self, size: int) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=size)
        self.dropped = 0

    def put(self, item) -> None:
        while True:
            try:
                self.q.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.q.get_nowait()
                    self.dropped += 1


class Pusher:
    """Webhook and MQTT outputs (either may be None); :meth:`close` stops them."""

    def __init__(self, *, webhook: str | None = None, secret: str | None = None,
                 mqtt: tuple[str, int] | None = None, topic: str = "har",
                 queue_size: int = 1000, retries: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, timeout_s: float = 5.0) -> None:
        self.webhook, self.secret = webhook, secret
        self.topic = topic.strip("/") or "har"
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.sent = {"webhook": 0, "mqtt": 0}
        self.failed = {"webhook": 0, "mqtt": 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._web = _Queue(queue_size) if webhook else None
        self._mqtt = None
        if webhook:
            t = threading.Thread(target=self._web_loop, name="har-webhook", daemon=True)
            self._threads.append(t)
            t.start()
        if mqtt:
            import paho.mqtt.client as paho

            client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                 client_id=f"har-serve-{id(self):x}")
            client.max_queued_messages_set(queue_size)
            client.reconnect_delay_set(1, 30)
            client.connect_async(mqtt[0], mqtt[1], keepalive=30)
            client.loop_start()
            self._mqtt = client

    @property
    def enabled(self) -> bool:
        return self._web is not None or self._mqtt is not None

    @property
    def dropped(self) -> dict[str, int]:
        return {"webhook": self._web.dropped if self._web else 0, "mqtt": 0}

    def publish(self, kind: str, owner: str, event: dict[str, Any]) -> None:
        """Push ``event`` of a stream (``kind`` "streams") or a job ("jobs") whose id is
        ``owner``; returns at once."""
        if self._web is not None:
            self._web.put(event)
        if self._mqtt is not None:
            topic = f"{self.topic}/{kind}/{owner}/{event.get('type', 'event')}"
            payload = json.dumps(event, ensure_ascii=False, allow_nan=False)
            try:
                info = self._mqtt.publish(topic, payload, qos=1)
            except Exception as exc:  # noqa: BLE001 - e.g. paho's queue is full
                self.failed["mqtt"] += 1
                log.warning("mqtt: %s not queued (%s)", topic, exc)
                return
            if info.rc in (0, 4):  # sent or queued until (re)connected
                self.sent["mqtt"] += 1
            else:
                self.failed["mqtt"] += 1

    # -- webhook ------------------------------------------------------------------
    def _web_loop(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._web.q.get(timeout=0.5)
            except queue.Empty:
                continue
            body = json.dumps(event, ensure_ascii=False, allow_nan=False).encode()
            if self._post(body, str(event.get("type", "event"))):
                self.sent["webhook"] += 1
            else:
                self.failed["webhook"] += 1

    def _post(self, body: bytes, type_: str) -> bool:
        headers = {"Content-Type": "application/json", "X-Har-Event": type_,
                   "User-Agent": "har-serve"}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.webhook, data=body, headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    resp.read(65536)
                return True
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    log.warning("webhook: %s answered %d; the event is dropped",
                                self.webhook, exc.code)
                    return False
                why = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused
                why = str(getattr(exc, "reason", None) or exc)
            if attempt == self.retries or self._stop.wait(delay):
                log.warning("webhook: %s failed (%s); the event is dropped",
                            self.webhook, why)
                return False
            delay = min(delay * 2, self.max_backoff_s)
        return False

    def close(self, drain_s: float = 2.0) -> None:
        """Stop, after up to ``drain_s`` seconds for what is queued."""
        deadline = time.monotonic() + drain_s
        while self._web is not None and not self._web.q.empty() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        if self._mqtt is not None:
            with contextlib.suppress(Exception):
                self._mqtt.disconnect()
                self._mqtt.loop_stop()
