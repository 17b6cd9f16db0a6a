"""What counts as a URL, and why a pasted one cannot be opened.

The lowest layer of input handling: :mod:`har.sources` (what the user typed),
:mod:`har.video` (opening it in FFmpeg), :mod:`har.weights` (``--weights URL``) and
:mod:`har.render` all import it, and it imports nothing of har but :mod:`har.text`.
"""

from __future__ import annotations

import os
import re
import urllib.parse

from .text import printable

HTTP_SCHEMES = ("http", "https")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")


def is_url(text: str | os.PathLike, schemes: tuple[str, ...] | None = None) -> bool:
    """Whether ``text`` is a URL of one of ``schemes`` (default: every scheme har reads).

    >>> is_url("rtsp://cam/1"), is_url("https://h/v.mp4", HTTP_SCHEMES), is_url("a:b.mp4")
    (True, True, False)
    """
    text = os.fspath(text)
    if isinstance(text, bytes):
        return False
    allowed = schemes if schemes is not None else HTTP_SCHEMES + STREAM_SCHEMES
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in allowed


# Characters no URL may hold as they are (http.client refuses them; a terminal would run
# them): C0 controls, space, DEL and C1 controls.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")


def url_problem(text: str) -> str | None:
    """Why ``text`` cannot be opened as a URL (one line naming it), or None. Checked
    before any connection, so a pasted newline or escape sequence fails at once."""
    bad = _URL_FORBIDDEN.search(text)
    if bad:
        what = "a space" if bad.group() == " " else "control characters"
        return (f"{printable(text)}: the URL contains {what}; percent-encode them (a space "
                "is %20) or check what was pasted")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"{printable(text)}: not a valid URL ({printable(exc)}); check the address"
    if parts.scheme.lower() in HTTP_SCHEMES and not parts.hostname:  # udp://@:1234 listens
        return f"{printable(text)}: the URL names no host; check the address"
    return None
