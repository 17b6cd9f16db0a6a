"""Fetching a URL that a client gave, without reaching this machine's own network.

A URL job on ``har serve`` makes the server fetch what a client asks for. Without a
check, ``http://127.0.0.1:PORT/secret`` (or a name that resolves there, or a redirect
to it) would read internal services (SSRF). :func:`fetch` therefore

- accepts ``http`` and ``https`` only (any letter case), with the host percent-decoded
  the way other clients decode it;
- resolves the host itself and refuses loopback, private, link-local, multicast,
  reserved and unspecified addresses (unless ``allow_private``), and then connects to
  the address it checked, so a second DNS answer cannot differ (DNS rebinding);
- follows redirects itself, at most ``max_redirects``, checking every hop the same way;
- stops at a size limit, an overall deadline and whenever ``cancelled()`` says so
  (checked every ``poll_s`` seconds, even while the server sends nothing).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .errors import HarError, InputError
from .text import printable

__all__ = ["UrlRefused", "check_url", "check_address", "fetch", "FetchLimits",
           "stream_refusal", "STREAM_SCHEMES"]


class UrlRefused(InputError):
    """The URL is not one this server fetches (scheme, host or address)."""


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 200 * 1024 * 1024
    deadline_s: float = 300.0  # the whole download, redirects included
    idle_s: float = 30.0  # longest wait for the next bytes
    max_redirects: int = 5
    poll_s: float = 0.5  # how often a blocked read checks cancelled()
    # How a body over max_bytes is refused: "... is more than <limit_name> of N MB<advice>"
    limit_name: str = "the server's limit"
    advice: str = ""


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # decoded, lower case, without brackets
    port: int
    path: str  # path + query, as sent


def check_url(url: str) -> _Target:
    """The parts of an http(s) URL, or :class:`UrlRefused` naming what is wrong.

    >>> check_url("HTTP://%31%32%37.0.0.1:8/x?y").host
    '127.0.0.1'
    """
    shown = printable(url)[:200]
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UrlRefused(f"{shown}: the URL holds spaces or control characters; "
                         "percent-encode them")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{shown}: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"{shown}: only http:// and https:// URLs can be fetched")
    host = urllib.parse.unquote(parts.hostname or "").lower().rstrip(".")
    if not host or any(not (c.isalnum() or c in "-._:") for c in host):
        raise UrlRefused(f"{shown}: the URL has no valid host name")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def check_address(address: str, allow_private: bool = False) -> str | None:
    """Why this IP address may not be fetched (None when it may)."""
    if allow_private:
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, bad in (("a loopback", ip.is_loopback), ("an unspecified", ip.is_unspecified),
                      ("a link-local", ip.is_link_local), ("a multicast", ip.is_multicast),
                      ("a private", ip.is_private), ("a reserved", ip.is_reserved)):
        if bad:
            return f"{what} address ({ip})"
    if not ip.is_global:
        return f"a non-public address ({ip})"
    return None


def literal_refusal(url: str, allow_private: bool = False) -> str | None:
    """Why the URL is refused without a DNS look-up (its host is an IP address or a
    name of this machine), else None; :class:`UrlRefused` for a malformed URL."""
    target = check_url(url)
    if allow_private:
        return None
    if target.host == "localhost" or target.host.endswith(".localhost"):
        return "localhost (this machine)"
    try:
        return check_address(target.host)
    except ValueError:
        return None  # a name: checked once resolved


def _resolve(target: _Target, allow_private) -> str:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise InputError(f"{target.host}: the name does not resolve ({exc}); check the URL"
                         ) from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:  # every answer must be allowed: any could be used
        if callable(allow_private) and allow_private(address, target.port):
            continue
        why = check_address(address, allow_private is True)
        if why:
            raise UrlRefused(f"{target.host} resolves to {why}; this server does not fetch "
                             "URLs on its own network (start it with --allow-private-urls "
                             "to allow them)")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address already checked (Host header: the name)."""

    def __init__(self, host, port, address, **kw):
        super().__init__(host, port, **kw)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.held = self.sock  # http.client drops .sock once a response owns it


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, **kw):
        super().__init__(host, port, context=ssl.create_default_context(), **kw)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.held = sock
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self.held = self.sock


def fetch(url: str, out: BinaryIO, *, limits: FetchLimits = FetchLimits(),
          allow_private: bool | Callable[[str, int], bool] = False,
          cancelled: Callable[[], bool] = lambda: False,
          on_bytes: Callable[[int], None] | None = None,
          user_agent: str = "har-serve") -> int:
    """Download ``url`` into ``out``; the number of bytes written.

    ``allow_private``: True allows every address; a callable ``(address, port)``
    allows the private addresses it returns True for (one internal host, say).
    Raises :class:`InputError` (one line, naming the URL) for every failure: refused
    address, HTTP error, too large, too slow, cancelled. A watcher thread checks the
    deadline and ``cancelled()`` every ``poll_s`` and shuts the socket down, so a
    server that trickles or sends nothing cannot hold the caller."""
    shown = printable(url)[:200]
    deadline = time.monotonic() + limits.deadline_s
    state: dict = {"why": None, "conn": None}
    stop = threading.Event()

    def why_stop() -> str | None:
        if cancelled():
            return f"{shown}: the download was cancelled"
        if time.monotonic() >= deadline:
            return (f"{shown}: the download took longer than {limits.deadline_s:g} s "
                    "(the server's limit)")
        return None

    def watch() -> None:
        while not stop.wait(limits.poll_s):
            why = why_stop()
            if why:
                state["why"] = why
                conn = state["conn"]
                sock = getattr(conn, "held", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="har-fetch-watch", daemon=True)
    watcher.start()
    try:
        got = _fetch(url, out, limits, allow_private, state, why_stop, shown, on_bytes,
                     user_agent)
        if state["why"]:  # the socket was shut down: what came is not the whole body
            raise InputError(state["why"])
        return got
    except HarError:
        if state["why"]:
            raise InputError(state["why"]) from None
        raise
    finally:
        stop.set()
        watcher.join()


def _fetch(url, out, limits, allow_private, state, why_stop, shown, on_bytes,
           user_agent) -> int:
    current = url
    for _hop in range(limits.max_redirects + 1):
        target = check_url(current)
        why = why_stop()
        if why:
            raise InputError(why)
        address = _resolve(target, allow_private)
        cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        conn = cls(target.host, target.port, address, timeout=limits.idle_s)
        state["conn"] = conn
        try:
            try:
                conn.request("GET", target.path, headers={
                    "User-Agent": user_agent, "Accept": "video/*, */*;q=0.5",
                    "Accept-Encoding": "identity"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise InputError(f"{shown}: cannot be downloaded ({_reason(exc)})") from None
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise InputError(f"{shown}: the server answered {resp.status} without a "
                                     "Location")
                current = urllib.parse.urljoin(current, location.strip())
                try:
                    check_url(current)
                except UrlRefused as exc:
                    raise UrlRefused(f"{shown}: redirected to {exc}") from None
                continue
            if resp.status != 200:
                raise InputError(f"{shown}: the server answered {resp.status} "
                                 f"{printable(resp.reason)[:80]}")
            return _copy(resp, out, limits, shown, on_bytes)
        finally:
            state["conn"] = None
            conn.close()
    raise InputError(f"{shown}: more than {limits.max_redirects} redirects")


def _copy(resp, out, limits, shown, on_bytes) -> int:
    size = resp.getheader("Content-Length")
    mb = limits.max_bytes / 2**20
    if size and size.isdigit() and int(size) > limits.max_bytes:
        raise InputError(f"{shown}: is {int(size) / 2**20:.1f} MB, more than "
                         f"{limits.limit_name} of {mb:g} MB{limits.advice}")
    got = 0
    while True:
        try:
            chunk = resp.read1(1 << 16)
        except TimeoutError:
            raise InputError(f"{shown}: the server sent nothing for {limits.idle_s:g} s"
                             ) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise InputError(f"{shown}: the download broke off ({_reason(exc)})") from None
        if not chunk:
            if resp.length:  # Content-Length not reached: the connection was cut
                raise InputError(f"{shown}: the download broke off after {got} bytes")
            return got
        got += len(chunk)
        if got > limits.max_bytes:
            raise InputError(f"{shown}: is more than {limits.limit_name} of {mb:g} "
                             f"MB{limits.advice}")
        out.write(chunk)
        if on_bytes is not None:
            on_bytes(got)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return printable(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)[:120]


# -- live streams (har serve's /v1/streams) ---------------------------------------------
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "srt", "http", "https")


def stream_refusal(url: str, allow_private: bool = False,
                   resolve: bool = True) -> str | None:
    """Why a live stream URL may not be opened by the server (None when it may);
    :class:`UrlRefused` for a malformed URL or a scheme other than
    :data:`STREAM_SCHEMES`.

    The same policy as URL jobs: loopback, private, link-local, multicast and reserved
    addresses are refused unless ``allow_private`` (cameras are usually on a private
    network: their server is started with --allow-private-urls). A host name is
    resolved here and every address it has is checked; FFmpeg then resolves it again
    when it connects, so a name whose answer changes later is not caught (give
    cameras by IP address, or run the server where it can reach cameras only)."""
    shown = printable(url)[:200]
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UrlRefused(f"{shown}: the URL holds spaces or control characters; "
                         "percent-encode them")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{shown}: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise UrlRefused(f"{shown}: a stream URL starts with "
                         f"{', '.join(s + '://' for s in STREAM_SCHEMES)}")
    host = urllib.parse.unquote(parts.hostname or "").lower().rstrip(".")
    if scheme == "udp" and host in ("", "@"):
        host = "0.0.0.0"  # udp://@:PORT listens on every address of this machine
    if not host or any(not (c.isalnum() or c in "-._:") for c in host):
        raise UrlRefused(f"{shown}: the URL has no valid host name")
    if allow_private:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "localhost (this machine)"
    try:
        return check_address(host)
    except ValueError:
        pass  # a name
    if not resolve:
        return None
    try:
        infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"{shown}: the host name cannot be resolved ({exc})") from None
    for info in infos:
        why = check_address(info[4][0])
        if why:
            return why
    return None
