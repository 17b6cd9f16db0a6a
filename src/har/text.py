"""Text that reaches a person: terminal lines, tables, log messages.

File names, labels from a checkpoint or an exported file's metadata, and URLs are
data from outside; printed raw, an escape sequence in them would drive the terminal
and a newline would split one output line into two. ``printable`` is the one place
that makes such text safe to show.
"""

from __future__ import annotations

import math
import unicodedata

__all__ = ["fmt_time", "printable"]


def printable(text: object) -> str:
    """``text`` with every control character shown as an escape, never executed.

    >>> printable("a\\x1b[31mb\\nc")
    'a\\\\x1b[31mb\\\\nc'

    Printable characters, non-ASCII letters included, are kept as they are.
    """
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch) == "Zs":  # odd spaces (no-break, ...) read as a space
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def fmt_time(seconds: float | None) -> str:
    """``m:ss.ss`` (e.g. ``1:05.20``); ``?`` when unknown.

    >>> fmt_time(65.2), fmt_time(None), fmt_time(float("nan"))
    ('1:05.20', '?', '?')
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:05.2f}"
