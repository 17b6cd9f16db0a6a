"""Drawing people on the annotated video: each person's box, id and current label."""

from __future__ import annotations

import numpy as np

# Distinct colours (RGB) for person ids, cycled.
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


class PersonPainter:
    """``draw(rgb, frame_index, t)`` draws the people of ``result.persons`` boxed in
    that frame, each with ``#id label score`` from their clip around ``t``."""

    def __init__(self, persons) -> None:
        self.by_frame: dict[int, list] = {}
        self.clips = {p.id: sorted(p.clips, key=lambda c: c.start_s) for p in persons}
        for p in persons:
            for b in p.boxes:
                self.by_frame.setdefault(b.frame, []).append(b)

    def label(self, pid: int, t: float) -> str:
        covering = [c for c in self.clips.get(pid, []) if c.start_s <= t < c.end_s]
        if not covering or not covering[0].top:
            return ""
        clip = min(covering, key=lambda c: abs((c.start_s + c.end_s) / 2 - t))
        top = clip.top[0]
        text = f"{top.label} {top.score:.0%}"
        return text.encode("ascii", "replace").decode("ascii")

    def draw(self, rgb: np.ndarray, index: int, t: float) -> np.ndarray:
        import cv2

        people = self.by_frame.get(index)
        if not people:
            return rgb
        img = np.ascontiguousarray(rgb)
        h, w = img.shape[:2]
        thick = max(2, int(round(min(h, w) / 240)))
        font = 0.4 * max(1.0, min(h, w) / 360)
        for tb in people:
            color = _PALETTE[(tb.id - 1) % len(_PALETTE)]
            b = tb.box
            p0 = (int(round(max(b.x0, 0))), int(round(max(b.y0, 0))))
            p1 = (int(round(min(b.x1, w - 1))), int(round(min(b.y1, h - 1))))
            cv2.rectangle(img, p0, p1, color, thick)
            text = f"#{tb.id} {self.label(tb.id, t)}".strip()
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            y = max(p0[1], th + base + 2)
            cv2.rectangle(img, (p0[0], y - th - base - 2), (p0[0] + tw + 4, y), color, -1)
            cv2.putText(img, text, (p0[0] + 2, y - base - 1), cv2.FONT_HERSHEY_SIMPLEX, font,
                        (0, 0, 0), 1, cv2.LINE_AA)
        return img
