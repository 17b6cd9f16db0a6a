"""PNG charts drawn with OpenCV: a confusion-matrix heat map and training curves.

OpenCV is always installed with har, so these need no plotting library. Every image is
encoded in memory and written atomically (see :mod:`har.fsutil`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import cv2
import numpy as np

from har.fsutil import atomic_open

__all__ = ["confusion_png", "curves_png"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (150, 150, 150)
LIGHT_GREY = (225, 225, 225)
# Line colours (BGR), one per series.
SERIES_COLOURS = {
    "train_loss": (180, 119, 31),     # blue
    "val_loss": (14, 127, 255),       # orange
    "train_acc": (180, 119, 31),
    "val_acc": (14, 127, 255),
    "val_video_acc": (44, 160, 44),   # green
}
# White to dark blue (BGR anchors), for the heat map.
_RAMP = np.array([[255, 251, 247], [239, 219, 198], [225, 202, 158], [214, 163, 66],
                  [181, 113, 33], [107, 48, 8]], dtype=np.float64)
MIN_SIDE = 400
MAX_SIDE = 4000


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

def _ascii(text: Any) -> str:
    """``text`` as something cv2.putText can draw: printable ASCII, others as '?'."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))


def _text_width(text: str, scale: float, thickness: int = 1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def _fit(text: str, max_width: int, scale: float, thickness: int = 1) -> str:
    """``text`` shortened with '..' until it is at most ``max_width`` pixels wide."""
    if _text_width(text, scale, thickness) <= max_width:
        return text
    for n in range(len(text) - 1, 0, -1):
        candidate = text[:n].rstrip() + ".."
        if _text_width(candidate, scale, thickness) <= max_width:
            return candidate
    return ""


def _put(img: np.ndarray, text: str, org: tuple[int, int], scale: float,
         colour: tuple[int, int, int] = BLACK, thickness: int = 1, align: str = "left",
         valign: str = "baseline") -> None:
    """Draw ``text`` with its anchor at ``org``: ``align`` left/center/right and
    ``valign`` baseline/center (vertical middle of the capital letters)."""
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if align == "center":
        x -= w // 2
    elif align == "right":
        x -= w
    if valign == "center":
        y += h // 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, colour, thickness, cv2.LINE_AA)


def _write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"could not encode a {img.shape[1]}x{img.shape[0]} PNG")
    with atomic_open(path, "wb") as fh:
        fh.write(buf.tobytes())


# --------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------

def _heat_colours(values: np.ndarray) -> np.ndarray:
    """BGR uint8 colours for values in [0, 1] along the white-to-blue ramp."""
    pos = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(_RAMP) - 1)
    frac = (pos - lo)[..., None]
    return np.round(_RAMP[lo] * (1 - frac) + _RAMP[hi] * frac).astype(np.uint8)


def _label_strip(labels: Sequence[str], cell: int, width: int, scale: float,
                 align: str) -> np.ndarray:
    """A white (n * cell, width) image with one label per row, vertically centred."""
    strip = np.full((len(labels) * cell, width, 3), 255, np.uint8)
    x = width - 4 if align == "right" else 4
    for i, label in enumerate(labels):
        _put(strip, label, (x, i * cell + cell // 2), scale, align=align, valign="center")
    return strip


def confusion_png(path: str | os.PathLike, confusion: Sequence[Sequence[float]] | np.ndarray,
                  labels: Sequence[str], *, normalize: bool = True,
                  title: str = "Confusion matrix") -> None:
    """Draw a C x C confusion matrix (rows true class, columns predicted) as a PNG heat map.

    With ``normalize`` each row is divided by its total (the per-class recall is then on
    the diagonal); otherwise colours scale with the largest count. Cell values are
    printed when there are at most 30 classes. Class names label both axes, shortened
    to fit, non-ASCII characters drawn as '?'. The image is at least 400x400 pixels and
    grows with the number of classes up to about 4000.
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    n = len(labels)
    if matrix.size == 0 and n == 0:
        matrix = matrix.reshape(0, 0)
    if matrix.ndim != 2 or matrix.shape != (n, n):
        raise ValueError(f"confusion_png: confusion has shape {matrix.shape}, expected ({n}, {n}) "
                         f"for {n} labels")
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        peak = 1.0
    else:
        shown = matrix
        peak = float(matrix.max()) if matrix.size and matrix.max() > 0 else 1.0

    # Geometry: big cells for a few classes, small ones for many, the whole under MAX_SIDE.
    cell = max(1, min((MAX_SIDE - 400) // max(n, 1), max(44, 480 // max(n, 1))))
    grid = n * cell
    label_scale = float(np.clip(cell * 0.6 / 22, 0.25, 0.5))
    names = [_ascii(label) for label in labels]
    label_w = min(240, max([_text_width(s, label_scale) for s in names] + [20]) + 8)
    names = [_fit(s, label_w - 8, label_scale) for s in names]
    if cell < 5:  # too small for any legible text
        names = ["" for _ in names]

    pad, title_h, axis_h, bar_w = 12, 36, 22, 70
    left = pad + axis_h + label_w
    top = title_h + axis_h + label_w
    width = max(MIN_SIDE, left + grid + pad + bar_w)
    height = max(MIN_SIDE, top + grid + pad)
    img = np.full((height, width, 3), 255, np.uint8)

    _put(img, _fit(_ascii(title), width - 2 * pad, 0.7, 2), (width // 2, 26), 0.7,
         thickness=2, align="center")
    if n:
        colours = _heat_colours(shown / peak)
        heat = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
        img[top:top + grid, left:left + grid] = heat
        if cell >= 6:
            for i in range(n + 1):  # light grid lines
                cv2.line(img, (left + i * cell, top), (left + i * cell, top + grid - 1), LIGHT_GREY, 1)
                cv2.line(img, (left, top + i * cell), (left + grid - 1, top + i * cell), LIGHT_GREY, 1)
        cv2.rectangle(img, (left - 1, top - 1), (left + grid, top + grid), GREY, 1)

        img[top:top + grid, left - label_w:left] = _label_strip(names, cell, label_w, label_scale, "right")
        columns = _label_strip(names, cell, label_w, label_scale, "left")
        img[top - label_w:top, left:left + grid] = cv2.rotate(columns, cv2.ROTATE_90_COUNTERCLOCKWISE)

        if n <= 30:
            value_scale = float(np.clip(cell / 100, 0.3, 0.6))
            for i in range(n):
                for j in range(n):
                    value = shown[i, j]
                    text = f"{value:.2f}" if normalize else f"{value:g}"
                    scale = value_scale
                    while scale > 0.25 and _text_width(text, scale) > cell - 4:
                        scale -= 0.05
                    colour = WHITE if value / peak > 0.55 else BLACK
                    _put(img, text, (left + j * cell + cell // 2, top + i * cell + cell // 2),
                         scale, colour, align="center", valign="center")

    # Axis names: "predicted" above the column labels, "true" turned up the left side.
    _put(img, "predicted", (left + max(grid, 1) // 2, title_h + axis_h - 6), 0.5, align="center")
    true_strip = np.full((axis_h, max(grid, 80), 3), 255, np.uint8)
    _put(true_strip, "true", (true_strip.shape[1] // 2, axis_h - 6), 0.5, align="center")
    true_strip = cv2.rotate(true_strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    img[top:top + true_strip.shape[0], pad:pad + axis_h] = true_strip[:height - top]

    # Colour bar.
    bar_h = max(min(grid, 300), 100)
    bx, by = left + grid + 16, top
    ramp = _heat_colours(np.linspace(1.0, 0.0, bar_h))[:, None, :]
    img[by:by + bar_h, bx:bx + 14] = np.repeat(ramp, 14, axis=1)
    cv2.rectangle(img, (bx - 1, by - 1), (bx + 14, by + bar_h), GREY, 1)
    top_text = "1" if normalize else f"{peak:g}"
    _put(img, top_text, (bx + 18, by), 0.4, valign="center")
    _put(img, "0", (bx + 18, by + bar_h - 1), 0.4, valign="center")

    _write_png(path, img)


# --------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, NaN, text)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> np.ndarray:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if hi <= lo:
        spread = abs(lo) * 0.1 or 0.5
        lo, hi = lo - spread, hi + spread
    raw = (hi - lo) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    count = int(round((last - first) / step)) + 1
    return first + step * np.arange(count)


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _log_ticks(lo: float, hi: float) -> tuple[np.ndarray, list[str]]:
    """Ticks of a log10 axis over values ``lo..hi`` (> 0): their log10 positions and
    labels; decades, with 2 and 5 between them when the range is under two decades."""
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if b == a:
        b = a + 1
    mults = (1, 2, 5) if b - a <= 2 else (1,)
    every = max(1, math.ceil((b - a) / 8))
    decades = list(range(a, b + every, every))  # the last one at or above hi
    values = [m * 10.0 ** e for e in decades for m in mults]
    values = [v for v in values if v <= 10.0 ** decades[-1] * 1.0001]
    return np.log10(values), [f"{v:g}" for v in values]


def _panel(img: np.ndarray, box: tuple[int, int, int, int], title: str,
           series: list[tuple[str, list[tuple[float, float]]]], log_y: bool = False) -> None:
    """One chart in ``box`` (x, y, w, h): axes with ticks, a line per series, a legend.
    ``log_y``: a log10 value axis (when every value is positive), so that one spike
    does not flatten everything else."""
    x0, y0, w, h = box
    if log_y and series and all(y > 0 for _, pts in series for _, y in pts):
        series = [(name, [(x, math.log10(y)) for x, y in pts]) for name, pts in series]
        title += " (log scale)"
    else:
        log_y = False
    _put(img, title, (x0 + w // 2, y0 + 18), 0.55, thickness=1, align="center")
    plot_l, plot_r = x0 + 60, x0 + w - 12
    plot_t, plot_b = y0 + 54, y0 + h - 42
    inset = 8  # keeps points on the extreme ticks off the frame
    cv2.rectangle(img, (plot_l, plot_t), (plot_r, plot_b), GREY, 1)
    _put(img, "epoch", ((plot_l + plot_r) // 2, y0 + h - 6), 0.45, align="center")

    points = [p for _, pts in series for p in pts]
    if not points:
        _put(img, "no data", ((plot_l + plot_r) // 2, (plot_t + plot_b) // 2), 0.5, GREY,
             align="center", valign="center")
        return
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_ticks = _nice_ticks(min(xs), max(xs), max_ticks=8)
    if min(xs) == max(xs):
        x_ticks = np.array([min(xs) - 1, min(xs), min(xs) + 1])
    if log_y:
        y_ticks, y_labels = _log_ticks(10.0 ** min(ys), 10.0 ** max(ys))
    else:
        y_ticks = _nice_ticks(min(ys), max(ys))
        y_step = float(y_ticks[1] - y_ticks[0])
        y_labels = [_tick_text(float(t), y_step) for t in y_ticks]
    x_lo, x_hi = float(x_ticks[0]), float(x_ticks[-1])
    y_lo, y_hi = float(y_ticks[0]), float(y_ticks[-1])

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = plot_l + inset + (x - x_lo) / (x_hi - x_lo) * (plot_r - plot_l - 2 * inset)
        py = plot_b - inset - (y - y_lo) / (y_hi - y_lo) * (plot_b - plot_t - 2 * inset)
        return int(round(px)), int(round(py))

    x_step = float(x_ticks[1] - x_ticks[0])
    for t in x_ticks:
        px, _ = to_px(float(t), y_lo)
        cv2.line(img, (px, plot_t + 1), (px, plot_b - 1), LIGHT_GREY, 1)
        cv2.line(img, (px, plot_b), (px, plot_b + 4), BLACK, 1)
        _put(img, _tick_text(float(t), x_step), (px, plot_b + 18), 0.4, align="center")
    for t, label in zip(y_ticks, y_labels):
        _, py = to_px(x_lo, float(t))
        cv2.line(img, (plot_l + 1, py), (plot_r - 1, py), LIGHT_GREY, 1)
        cv2.line(img, (plot_l - 4, py), (plot_l, py), BLACK, 1)
        _put(img, label, (plot_l - 7, py), 0.4, align="right", valign="center")
    cv2.rectangle(img, (plot_l, plot_t), (plot_r, plot_b), BLACK, 1)

    drawn = []
    for name, pts in series:
        if not pts:
            continue
        colour = SERIES_COLOURS.get(name, BLACK)
        pixels = np.array([to_px(x, y) for x, y in pts], dtype=np.int32)
        if len(pixels) > 1:
            cv2.polylines(img, [pixels.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        if len(pixels) <= 40:
            for px, py in pixels:
                cv2.circle(img, (int(px), int(py)), 4, colour, -1, cv2.LINE_AA)
        drawn.append((name, colour))

    # Legend: one row between the panel title and the plot, centred.
    widths = [40 + _text_width(name, 0.42) for name, _ in drawn]
    lx = (plot_l + plot_r - sum(widths) - 16 * (len(drawn) - 1)) // 2
    cy = plot_t - 14
    for (name, colour), item_w in zip(drawn, widths):
        cv2.line(img, (lx, cy), (lx + 26, cy), colour, 2, cv2.LINE_AA)
        cv2.circle(img, (lx + 13, cy), 4, colour, -1, cv2.LINE_AA)
        _put(img, name, (lx + 32, cy), 0.42, valign="center")
        lx += item_w + 16


def curves_png(path: str | os.PathLike, history: Sequence[dict[str, Any]], *,
               title: str = "Training") -> None:
    """Draw training curves as a PNG: loss (train_loss, val_loss) on the left, on a
    log axis when every loss is positive, and accuracy (train_acc, val_acc,
    val_video_acc) on the right, against the epoch.

    ``history`` holds one dict per epoch, e.g. ``{"epoch": 1, "train_loss": 0.7,
    "train_acc": 0.5, "val_loss": None, ...}``. Missing keys, None and non-finite values
    are skipped (a row without "epoch" counts as its position, from 1); a series with a
    single value is drawn as a point.
    """
    def series(key: str) -> list[tuple[float, float]]:
        pts = []
        for i, row in enumerate(history):
            x = _number(row.get("epoch", i + 1))
            y = _number(row.get(key))
            if x is not None and y is not None:
                pts.append((x, y))
        return sorted(pts, key=lambda p: p[0])

    panel_w, panel_h, title_h = 600, 420, 40
    img = np.full((title_h + panel_h, 2 * panel_w, 3), 255, np.uint8)
    _put(img, _fit(_ascii(title), 2 * panel_w - 24, 0.7, 2), (panel_w, 28), 0.7,
         thickness=2, align="center")
    _panel(img, (0, title_h, panel_w, panel_h), "loss",
           [(key, series(key)) for key in ("train_loss", "val_loss")], log_y=True)
    _panel(img, (panel_w, title_h, panel_w, panel_h), "accuracy",
           [(key, series(key)) for key in ("train_acc", "val_acc", "val_video_acc")])
    _write_png(path, img)
