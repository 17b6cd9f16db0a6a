"""A self-contained HTML report of a run (``har predict ... --report out.html``).

Built from the ``har.predictions/1`` document (:func:`har.writers.predictions_doc`),
the same one ``--json`` writes, so the two never disagree. One file, no network:
styles, the sorting script, the charts (inline SVG) and the thumbnails (JPEG data
URIs, about 160 px wide) are all inside it.

The page has a summary table of every input (sortable by any column; failed inputs
show their one-line error) and, per video, a row of thumbnails from its top
segments, the segment timeline (one lane per label, so overlaps stay apart) and a
chart of the clips' top labels over time. Label colours come from
:func:`har.render.segment_colors`, the same as the annotated video and the plot, and a
label keeps the colour it got first in every later video of the report (the first
video's colours are its overlay's; a later video's may differ from its overlay's).
"""

from __future__ import annotations

import base64
import html
import math
import os
from typing import Any

from .fsutil import atomic_open, display_path

THUMB_WIDTH = 160
MAX_THUMBS = 4
MAX_CHART_LABELS = 6
_W, _PAD = 760, 130  # SVG width, left margin for lane names


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _mmss(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(max(seconds, 0.0))), 60)
    return f"{m}:{s:02d}"


def _status(v: dict) -> str:
    if v.get("error"):
        return "failed"
    return "partial" if v.get("warnings") else "done"


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def colors_for(video: dict, taken: dict[str, str] | None = None) -> dict[str, str]:
    """Label -> ``#rrggbb``: the segment labels as in :mod:`har.render`, then the other
    labels of the clips' top-k (palette continued). ``taken``: the colours the
    report's earlier videos gave their labels; a label keeps its colour and a new one
    gets the next colour no earlier label of this video has."""
    from .palette import PALETTE
    from .render import segment_colors

    if taken is None:
        colors = {k: _hex(v) for k, v in segment_colors(video.get("segments") or []).items()}
    else:
        colors = {}
        for k in segment_colors(video.get("segments") or []):
            colors[k] = taken.get(k) or _next_colour(taken, colors)
            taken.setdefault(k, colors[k])
    for label in _chart_labels(video):
        if label not in colors:
            if taken is None:
                colors[label] = _hex(PALETTE[len(colors) % len(PALETTE)])
            else:
                colors[label] = taken.get(label) or _next_colour(taken, colors)
                taken.setdefault(label, colors[label])
    return colors


def _next_colour(taken: dict[str, str], here: dict[str, str]) -> str:
    """The palette's first colour used by no label yet (of the report, else of this
    video; past that the palette repeats)."""
    from .palette import PALETTE

    palette = [_hex(c) for c in PALETTE]
    for used in (set(taken.values()) | set(here.values()), set(here.values())):
        free = [c for c in palette if c not in used]
        if free:
            return free[0]
    return palette[len(here) % len(palette)]


def _duration(v: dict) -> float:
    d = v.get("duration_s")
    ends = [c["end_s"] for c in v.get("clips") or [] if c.get("end_s") is not None]
    ends += [s["end_s"] for s in v.get("segments") or []]
    best = max([x for x in [d, *ends] if x is not None and math.isfinite(x)] or [0.0])
    return best if best > 0 else 1.0


def _chart_labels(v: dict) -> list[str]:
    """Labels to chart: the segment labels, then the most frequent clip top-1s."""
    out: list[str] = []
    for s in v.get("segments") or []:
        if s["label"] not in out:
            out.append(s["label"])
    counts: dict[str, float] = {}
    for c in v.get("clips") or []:
        for p in (c.get("top") or [])[:1]:
            counts[p["label"]] = counts.get(p["label"], 0.0) + p["score"]
    for p in v.get("top") or []:
        counts.setdefault(p["label"], 0.0)
    for label in sorted(counts, key=lambda k: -counts[k]):
        if label not in out:
            out.append(label)
    return out[:MAX_CHART_LABELS]


def _axis(duration: float, y: int, height: int) -> str:
    """m:ss ticks along the x axis (the plot's steps and labels: tenths of a second on
    a short video); a tick near the right edge is right-aligned so it is not cut."""
    from .render import fmt_tick, tick_step

    step = tick_step(duration)
    parts = []
    i = 0
    while i * step <= duration + 1e-9:
        t = i * step
        x = _PAD + (_W - _PAD - 10) * t / duration
        text = fmt_tick(t, step)
        anchor = "end" if x + 3.5 * len(text) > _W - 2 else "middle"
        tx = min(x, _W - 2) if anchor == "end" else x
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y - height}" '
                     f'class="grid"/><text x="{tx:.1f}" y="{y + 14}" '
                     f'text-anchor="{anchor}">{text}</text>')
        i += 1
    return "".join(parts)


def timeline_svg(v: dict, colors: dict[str, str]) -> str:
    """One lane per segment label; each segment a bar in its label's colour."""
    segs = v.get("segments") or []
    if not segs:
        return '<p class="muted">No segments above the threshold.</p>'
    dur = _duration(v)
    lanes = list(dict.fromkeys(s["label"] for s in
                               sorted(segs, key=lambda s: (s["start_s"], -s["mean_score"]))))
    lane_h = 22
    h = lane_h * len(lanes) + 26
    sx = (_W - _PAD - 10) / dur
    out = [f'<svg class="timeline" viewBox="0 0 {_W} {h}" width="{_W}" height="{h}" '
           f'role="img" aria-label="segment timeline">']
    out.append(_axis(dur, h - 18, h - 18))
    for i, label in enumerate(lanes):
        y = i * lane_h + 2
        out.append(f'<text x="{_PAD - 6}" y="{y + 15}" text-anchor="end">'
                   f'{_esc(_short(label, 20))}<title>{_esc(label)}</title></text>')
    for s in segs:
        y = lanes.index(s["label"]) * lane_h + 2
        x0 = _PAD + s["start_s"] * sx
        w = max((s["end_s"] - s["start_s"]) * sx, 2.0)
        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 4}" rx="3" '
                   f'fill="{colors.get(s["label"], "#999")}"><title>{_esc(s["label"])} '
                   f'{_mmss(s["start_s"])}-{_mmss(s["end_s"])} mean {s["mean_score"]:.0%} '
                   f'peak {s["peak_score"]:.0%}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def persons_svg(v: dict, colors: dict[str, str]) -> str:
    """``--persons``: one lane per person; each of their segments a bar in its label's
    colour, the lane's span (first to last frame seen) a thin grey line."""
    from .palette import PALETTE

    persons = v.get("persons") or []
    if not persons:
        return ""
    fps = v.get("fps") or 25.0
    dur = max([_duration(v)] + [p["last_frame"] / fps for p in persons])
    lane_h = 22
    h = lane_h * len(persons) + 26
    sx = (_W - _PAD - 10) / max(dur, 1e-6)
    out = [f'<svg class="timeline persons" viewBox="0 0 {_W} {h}" width="{_W}" height="{h}" '
           f'role="img" aria-label="per-person timeline">']
    out.append(_axis(dur, h - 18, h - 18))
    n = len(colors)
    for i, p in enumerate(persons):
        y = i * lane_h + 2
        top = p["top"][0]["label"] if p.get("top") else "no clip"
        out.append(f'<text x="{_PAD - 6}" y="{y + 15}" text-anchor="end">person '
                   f'{int(p["id"])}<title>person {int(p["id"])}: {_esc(top)}</title></text>')
        x0, x1 = _PAD + p["first_frame"] / fps * sx, _PAD + (p["last_frame"] + 1) / fps * sx
        out.append(f'<line x1="{x0:.1f}" y1="{y + 9}" x2="{x1:.1f}" y2="{y + 9}" '
                   f'class="grid"/>')
        for seg in p.get("segments") or []:
            if seg["label"] not in colors:
                colors[seg["label"]] = _hex(PALETTE[n % len(PALETTE)])
                n += 1
            sx0 = _PAD + seg["start_s"] * sx
            w = max((seg["end_s"] - seg["start_s"]) * sx, 2.0)
            out.append(f'<rect x="{sx0:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 4}" '
                       f'rx="3" fill="{colors[seg["label"]]}"><title>person {int(p["id"])}: '
                       f'{_esc(seg["label"])} {_mmss(seg["start_s"])}-{_mmss(seg["end_s"])} '
                       f'mean {seg["mean_score"]:.0%}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def chart_svg(v: dict, colors: dict[str, str]) -> str:
    """The clips' scores for the main labels over time (from each clip's top-k; a
    label outside a clip's top-k counts as 0 there)."""
    clips = v.get("clips") or []
    labels = _chart_labels(v)
    if not clips or not labels:
        return ""
    dur = _duration(v)
    h, top = 170, 8
    base = h - 22
    sx = (_W - _PAD - 10) / dur
    sy = (base - top)
    out = [f'<svg class="chart" viewBox="0 0 {_W} {h}" width="{_W}" height="{h}" '
           f'role="img" aria-label="probabilities over time">', _axis(dur, base, base - top)]
    for p in (0.0, 0.5, 1.0):
        y = base - p * sy
        out.append(f'<text x="{_PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{p:.0%}</text>')
    for label in labels:
        pts = []
        for c in clips:
            t = (c["start_s"] + c["end_s"]) / 2
            score = next((p["score"] for p in c.get("top") or [] if p["label"] == label), 0.0)
            pts.append(f"{_PAD + t * sx:.1f},{base - score * sy:.1f}")
        out.append(f'<polyline fill="none" stroke="{colors.get(label, "#999")}" '
                   f'stroke-width="2" points="{" ".join(pts)}"><title>{_esc(label)}</title>'
                   '</polyline>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{colors.get(k, "#999")}">'
                     f'</i>{_esc(k)}</span>' for k in labels)
    return "".join(out) + f'<div class="legend">{legend}</div>'


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "\u2026"


def _thumb_times(v: dict) -> list[tuple[float, str]]:
    segs = sorted(v.get("segments") or [], key=lambda s: -s["mean_score"])[:MAX_THUMBS]
    if segs:
        return sorted(((s["start_s"] + s["end_s"]) / 2, s["label"]) for s in segs)
    clips = {c["index"]: c for c in v.get("clips") or []}
    label = (v.get("top") or [{"label": ""}])[0]["label"]
    out = [((clips[i]["start_s"] + clips[i]["end_s"]) / 2, label)
           for i in (v.get("evidence") or [])[:MAX_THUMBS] if i in clips]
    return sorted(out)


def thumbnails(v: dict) -> list[tuple[float, str, str]]:
    """``(time, label, data URI)`` for the video's top segments; ``[]`` when the input
    cannot be reopened (a stream, a file since removed, a broken file)."""
    times = _thumb_times(v)
    path = v.get("path")
    if not times or not path or v.get("error") or not os.path.isfile(path):
        return []
    try:
        import cv2

        from .video import VideoSource

        w, h = v.get("width") or 0, v.get("height") or 0
        size = None
        if w and h:
            tw = min(THUMB_WIDTH, w)
            size = (tw - tw % 2, max(2, int(round(tw * h / w / 2)) * 2))
        out: list[tuple[float, str, str]] = []
        pending = list(times)
        with VideoSource(path) as video:
            for frame in video.frames(size=size):
                while pending and frame.time_s + frame.duration_s > pending[0][0]:
                    t, label = pending.pop(0)
                    rgb = frame.rgb
                    if size is None and rgb.shape[1] > THUMB_WIDTH:
                        scale = THUMB_WIDTH / rgb.shape[1]
                        rgb = cv2.resize(rgb, (THUMB_WIDTH, max(1, int(rgb.shape[0] * scale))),
                                         interpolation=cv2.INTER_AREA)
                    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, 75])
                    if ok:
                        out.append((t, label, "data:image/jpeg;base64,"
                                    + base64.b64encode(buf.tobytes()).decode("ascii")))
                if not pending:
                    break
        return out
    except Exception:  # noqa: BLE001 - thumbnails are a nicety; the report goes on
        return []


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h3{font-size:.95em;margin:.8em 0 .2em;color:#444}h2{font-size:1.1em;margin:0 0 .3em;word-break:break-all}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top;white-space:nowrap}td.wrap{white-space:normal;
overflow-wrap:anywhere;max-width:28em}th{background:#f0f0f0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{background:#fde8e8}tr.partial td{background:#fff6dc}.err{color:#a00}
.muted{color:#777}section.video{border-top:1px solid #ddd;padding:1em 0;
content-visibility:auto;contain-intrinsic-size:auto 480px}
.thumbs{display:flex;gap:8px;flex-wrap:wrap}.thumbs figure{margin:0;font-size:12px}
.thumbs img{display:block;width:160px;height:auto;background:#eee}
svg text{font-size:11px;fill:#333}svg .grid{stroke:#e4e4e4}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px}
.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""

_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
      var nx = parseFloat(x), ny = parseFloat(y), r;
      if (!isNaN(nx) && !isNaN(ny)) r = nx - ny; else r = x.localeCompare(y);
      return asc ? r : -r;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def _td(text: Any, sort: Any = None, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td data-v="{_esc(text if sort is None else sort)}"{c}>{_esc(text)}</td>'


def render_html(doc: dict) -> str:
    """The report as one HTML string."""
    videos: list[dict] = list(doc.get("videos") or [])
    model = doc.get("model") or "?"
    counts = {"done": 0, "partial": 0, "failed": 0}
    for v in videos:
        counts[_status(v)] += 1
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            f'img-src data:; style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">'
            f'<title>har report: {len(videos)} input(s), {_esc(model)}</title>'
            f'<style>{_CSS}</style></head><body>')
    parts = [head, f'<h1>Action recognition report</h1><p>Model <b>{_esc(model)}</b>; '
             f'{len(videos)} input(s): {counts["done"]} done, {counts["partial"]} partial, '
             f'{counts["failed"]} failed'
             + ("; <b>interrupted</b>: only the inputs that finished are listed"
                if doc.get("interrupted") else "") + '.</p>']
    parts.append('<table class="sortable" id="summary"><thead><tr><th>#</th><th>input</th>'
                 '<th>status</th><th>top-1</th><th>score</th><th>duration</th>'
                 '<th>segments</th><th>warnings / error</th></tr></thead><tbody>')
    for i, v in enumerate(videos, 1):
        st = _status(v)
        top1 = (v.get("top") or [None])[0]
        dur = v.get("duration_s")
        note = v.get("error") or "; ".join(v.get("warnings") or [])
        name = display_path(v.get("path") or "?")
        parts.append(
            f'<tr class="{st}">' + _td(i) +
            f'<td class="wrap" data-v="{_esc(name)}"><a href="#v{i}">{_esc(name)}</a></td>' + _td(st)
            + _td(top1["label"] if top1 else "") +
            _td(f'{top1["score"]:.1%}' if top1 else "", top1["score"] if top1 else -1)
            + _td(_mmss(dur) if dur is not None else "", dur if dur is not None else -1)
            + _td(len(v.get("segments") or []))
            + _td(note, cls="wrap err" if v.get("error") else "wrap") + "</tr>")
    parts.append("</tbody></table>")
    taken: dict[str, str] = {}  # one colour per label over the whole report
    for i, v in enumerate(videos, 1):
        parts.append(_video_section(i, v, model, taken))
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "".join(parts)


def _video_section(i: int, v: dict, model: str, taken: dict[str, str] | None = None) -> str:
    name = display_path(v.get("path") or "?")
    out = [f'<section class="video" id="v{i}"><h2>{i}. {_esc(name)}</h2>']
    if v.get("error"):
        out.append(f'<p class="err">failed: {_esc(v["error"])}</p></section>')
        return "".join(out)
    fps = v.get("fps")
    info = [f'{v.get("width")}x{v.get("height")}' if v.get("width") else None,
            f"{fps:.2f} fps" if fps else None, _mmss(v.get("duration_s")), v.get("codec"),
            f'{len(v.get("clips") or [])} clips', f"model {model}"]
    out.append(f'<p class="muted">{_esc(", ".join(x for x in info if x))}</p>')
    if v.get("top"):
        out.append("<p>" + ", ".join(f'<b>{_esc(p["label"])}</b> {p["score"]:.1%}'
                                     for p in v["top"][:5]) + "</p>")
    for w in v.get("warnings") or []:
        out.append(f'<p class="err">warning: {_esc(w)}</p>')
    thumbs = thumbnails(v)
    if thumbs:
        out.append('<div class="thumbs">' + "".join(
            f'<figure><img loading="lazy" src="{uri}" alt="{_esc(label)} at {_mmss(t)}">'
            f'<figcaption>{_mmss(t)} {_esc(_short(label, 24))}</figcaption></figure>'
            for t, label, uri in thumbs) + "</div>")
    colors = colors_for(v, taken)
    out.append('<h3>Segments</h3>' + timeline_svg(v, colors))
    if v.get("persons") is not None:  # --persons: a lane per person
        out.append(f'<h3>Persons ({len(v["persons"])})</h3>'
                   + (persons_svg(v, colors) or '<p class="muted">Nobody was found.</p>'))
    chart = chart_svg(v, colors)
    if chart:
        out.append("<h3>Clips' top labels over time</h3>" + chart)
    out.append("</section>")
    return "".join(out)


def write_report(doc: dict, out_path: str | os.PathLike) -> None:
    """Write the HTML report of ``doc`` (``har.predictions/1``) to ``out_path``,
    atomically: the file appears complete or not at all."""
    text = render_html(doc)
    with atomic_open(out_path, "w") as fh:
        fh.write(text)
