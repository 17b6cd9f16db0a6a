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

A stream may name its own webhook (stream options ``webhook``, ``webhook_secret``)
and MQTT topic prefix (``mqtt_topic``), which replace the server's for its events:
:meth:`Pusher.add_webhook` gives that stream its own queue and thread (a dead
receiver of one stream holds up no other). Such a URL comes from a client of the
API, so it gets the URL jobs' SSRF policy (:mod:`har.netsafe`): http(s) only, the
host resolved by the server and every address checked (no loopback, private,
link-local ... unless the server runs with ``--allow-private-urls``), the connection
made to the address that was checked, and redirects not followed.
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

from ..errors import HarError

log = logging.getLogger("har.serve")

SIGNATURE_HEADER = "X-Har-Signature"


def _shown(url: str) -> str:
    """A URL for the log, without a password."""
    from .streams import redact_url

    return redact_url(url)


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


class _Webhook:
    """One webhook receiver: its URL, secret, queue and thread. ``client``: the URL
    came from a client of the API (a stream's option), so it is checked and pinned
    as URL jobs are; ``allow_private`` is then --allow-private-urls."""

    def __init__(self, url: str, secret: str | None, size: int, *, client: bool = False,
                 allow_private: bool = False) -> None:
        self.url, self.secret = url, secret
        self.client, self.allow_private = client, allow_private
        self.queue = _Queue(size)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None


class Pusher:
    """Webhook and MQTT outputs (either may be None); :meth:`close` stops them."""

    def __init__(self, *, webhook: str | None = None, secret: str | None = None,
                 mqtt: tuple[str, int] | None = None, topic: str = "har",
                 queue_size: int = 1000, retries: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, timeout_s: float = 5.0,
                 allow_private: bool = False) -> None:
        self.webhook, self.secret = webhook, secret
        self.topic = topic.strip("/") or "har"
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self.queue_size = queue_size
        self.allow_private = allow_private  # for streams' own webhooks (client URLs)
        self.sent = {"webhook": 0, "mqtt": 0}
        self.failed = {"webhook": 0, "mqtt": 0}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server_hook = _Webhook(webhook, secret, queue_size) if webhook else None
        self._web = self._server_hook.queue if self._server_hook else None
        self._hooks: dict[str, _Webhook] = {}  # a stream's own webhook, by stream id
        self._hooks_lock = threading.Lock()
        self._dropped_gone = 0  # dropped by streams' webhooks since removed
        self._mqtt = None
        if webhook:
            self._start_hook(self._server_hook, "har-webhook")
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
    def mqtt_enabled(self) -> bool:
        return self._mqtt is not None

    @property
    def dropped(self) -> dict[str, int]:
        with self._hooks_lock:
            own = sum(h.queue.dropped for h in self._hooks.values()) + self._dropped_gone
        return {"webhook": (self._web.dropped if self._web else 0) + own, "mqtt": 0}

    # -- a stream's own webhook ------------------------------------------------------
    def _start_hook(self, hook: _Webhook, name: str) -> None:
        hook.thread = threading.Thread(target=self._web_loop, args=(hook,), name=name,
                                       daemon=True)
        self._threads.append(hook.thread)
        hook.thread.start()

    def add_webhook(self, owner: str, url: str, secret: str | None = None) -> None:
        """Events published for ``owner`` (a stream id) go to ``url`` instead of the
        server's webhook, with their own queue and thread."""
        hook = _Webhook(url, secret, self.queue_size, client=True,
                        allow_private=self.allow_private)
        with self._hooks_lock:
            old = self._hooks.pop(owner, None)
            self._hooks[owner] = hook
        if old is not None:
            self._retire(old)
        self._start_hook(hook, "har-webhook-stream")

    def remove_webhook(self, owner: str, drain_s: float = 2.0) -> None:
        """Stop ``owner``'s own webhook, after up to ``drain_s`` seconds for what it
        still has to send (in its own thread: the caller does not wait)."""
        with self._hooks_lock:
            hook = self._hooks.pop(owner, None)
        if hook is not None:
            threading.Thread(target=self._retire, args=(hook, drain_s), daemon=True).start()

    def _retire(self, hook: _Webhook, drain_s: float = 0.0) -> None:
        deadline = time.monotonic() + drain_s
        while not hook.queue.q.empty() and time.monotonic() < deadline \
                and not self._stop.is_set():
            time.sleep(0.05)
        hook.stop.set()
        with self._hooks_lock:
            self._dropped_gone += hook.queue.dropped

    def publish(self, kind: str, owner: str, event: dict[str, Any],
                topic: str | None = None) -> None:
        """Push ``event`` of a stream (``kind`` "streams") or a job ("jobs") whose id is
        ``owner``; returns at once. A stream with its own webhook
        (:meth:`add_webhook`) gets it instead of the server's; ``topic``: the MQTT
        topic prefix instead of the server's."""
        with self._hooks_lock:
            hook = self._hooks.get(owner) if kind == "streams" else None
        if hook is not None:
            hook.queue.put(event)
        elif self._web is not None:
            self._web.put(event)
        if self._mqtt is not None:
            prefix = (topic or "").strip("/") or self.topic
            topic = f"{prefix}/{kind}/{owner}/{event.get('type', 'event')}"
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
    def _web_loop(self, hook: _Webhook) -> None:
        while not (self._stop.is_set() or hook.stop.is_set()):
            try:
                event = hook.queue.q.get(timeout=0.5)
            except queue.Empty:
                continue
            body = json.dumps(event, ensure_ascii=False, allow_nan=False).encode()
            if self._post(hook, body, str(event.get("type", "event"))):
                self.sent["webhook"] += 1
            else:
                self.failed["webhook"] += 1

    def _post(self, hook: _Webhook, body: bytes, type_: str) -> bool:
        from ..netsafe import UrlRefused

        headers = {"Content-Type": "application/json", "X-Har-Event": type_,
                   "User-Agent": "har-serve"}
        if hook.secret:
            headers[SIGNATURE_HEADER] = signature(hook.secret, body)
        shown = _shown(hook.url)
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                code = self._send(hook, body, headers)
                if code < 300:
                    return True
                if code != 429 and code < 500:
                    log.warning("webhook: %s answered %d; the event is dropped", shown, code)
                    return False
                why = f"HTTP {code}"
            except UrlRefused as exc:  # a stream's webhook on a refused address
                log.warning("webhook: %s; the event is dropped", exc)
                return False
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    log.warning("webhook: %s answered %d; the event is dropped",
                                shown, exc.code)
                    return False
                why = f"HTTP {exc.code}"
            except (OSError, ValueError, HarError) as exc:  # timeouts, refused, DNS
                why = str(getattr(exc, "reason", None) or exc)
            if attempt == self.retries or self._stop.wait(delay) or hook.stop.is_set():
                log.warning("webhook: %s failed (%s); the event is dropped", shown, why)
                return False
            delay = min(delay * 2, self.max_backoff_s)
        return False

    def _send(self, hook: _Webhook, body: bytes, headers: dict[str, str]) -> int:
        """POST once; the HTTP status. The server's webhook: urllib. A stream's (a
        client's URL): resolved and checked by har.netsafe, sent to the address that
        was checked, redirects not followed (a 3xx is a final answer)."""
        if not hook.client:
            req = urllib.request.Request(hook.url, data=body, headers=headers,
                                         method="POST")
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(65536)
                return resp.status
        from ..netsafe import _PinnedHTTP, _PinnedHTTPS, _resolve, check_url

        target = check_url(hook.url)
        address = _resolve(target, hook.allow_private)
        cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        conn = cls(target.host, target.port, address, timeout=self.timeout_s)
        try:
            conn.request("POST", target.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(65536)
            return resp.status
        finally:
            conn.close()

    def close(self, drain_s: float = 2.0) -> None:
        """Stop, after up to ``drain_s`` seconds for what is queued."""
        deadline = time.monotonic() + drain_s
        with self._hooks_lock:
            queues = [h.queue for h in self._hooks.values()]
        if self._web is not None:
            queues.append(self._web)
        while any(not q.q.empty() for q in queues) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1.0)
        if self._mqtt is not None:
            with contextlib.suppress(Exception):
                self._mqtt.disconnect()
                self._mqtt.loop_stop()
