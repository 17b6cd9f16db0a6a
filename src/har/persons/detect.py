"""Person detectors: a frame ``(H, W, 3) uint8`` RGB in, person :class:`Box` es out.

* :class:`HogDetector` (``--detector hog``): Dalal and Triggs' HOG people detector
  with OpenCV's default linear SVM. Needs no download and no model file: it runs on a
  fresh machine. OpenCV 5 moved ``HOGDescriptor`` out of the main wheel into the
  contrib one (``opencv-contrib-python-headless``), which clashes with the
  ``opencv-python-headless`` har depends on, so har computes the descriptor with NumPy
  (:mod:`har.persons.hog`) using OpenCV's published SVM weights; where ``cv2`` still
  has ``HOGDescriptor`` (OpenCV 4, or a contrib build) that is used instead.
* :class:`OnnxDetector` (``--detector FILE.onnx``): a YOLOX or an ultralytics
  (YOLOv5u/v8/v11 style) ONNX file as users have it, person class only, run as given
  with ONNX Runtime (or OpenVINO when ONNX Runtime is absent). The layout is read from
  the output's shape: ``(1, N, 5 + C)`` is YOLOX (objectness times class score; the
  grid decoding applied when the file was exported without it), ``(1, 4 + C, N)`` is
  ultralytics (boxes already decoded, class scores after the sigmoid).

docs/persons.md says where users get these files and under which licence.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import HarError
from ..fsutil import display_path
from .boxes import Box, nms


@runtime_checkable
class Detector(Protocol):
    """Anything that finds people in an RGB frame."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Box]: ...


def load_detector(spec) -> Detector:
    """``"hog"``, ``"hog-fast"``, a path to an ONNX file, or a ready :class:`Detector`."""
    if not isinstance(spec, (str, os.PathLike)):
        if not hasattr(spec, "detect"):
            raise HarError(f"detector {spec!r}: needs a detect(rgb) method; give 'hog' "
                           "or a YOLOX/ultralytics .onnx file")
        return spec
    text = os.fspath(spec)
    if text == "hog":
        return HogDetector()
    if text == "hog-fast":  # 4-6x faster, finds fewer people (docs/persons.md)
        return HogDetector(min_height=360, scale=1.1)
    if not text.lower().endswith(".onnx"):
        raise HarError(f"--detector {display_path(text)}: give 'hog', 'hog-fast' or a "
                       "YOLOX or ultralytics person detector exported to .onnx")
    return OnnxDetector(text)


# -- HOG --------------------------------------------------------------------------------
class HogDetector:
    """HOG + linear SVM people detector (see the module docstring).

    ``min_height``: frames are scaled so that they are at least this tall before
    detecting (the detector's window is 128 pixels tall and finds people about 96
    pixels tall and up). ``threshold``: the SVM margin a window needs. Scores are
    mapped to 0..1 with a logistic so the tracker's thresholds apply.
    """

    name = "hog"

    def __init__(self, *, min_height: int = 480, threshold: float = 0.0,
                 scale: float = 1.05, group: int = 2) -> None:
        import cv2

        self.min_height, self.threshold, self.scale, self.group = (min_height, threshold,
                                                                   scale, group)
        self._cv = None
        if hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            self._cv = hog
            self.backend = "opencv"
        else:
            from .hog import HogPeople

            self._np = HogPeople()
            self.backend = "numpy"

    def detect(self, rgb: np.ndarray) -> list[Box]:
        import cv2

        h, w = rgb.shape[:2]
        up = max(1.0, self.min_height / max(h, 1))
        img = rgb if up == 1.0 else cv2.resize(rgb, (int(round(w * up)), int(round(h * up))),
                                               interpolation=cv2.INTER_LINEAR)
        if self._cv is not None:
            rects, weights = self._cv.detectMultiScale(
                np.ascontiguousarray(img[..., ::-1]), hitThreshold=self.threshold,
                winStride=(8, 8), scale=self.scale)
            raw = [(float(x), float(y), float(x + rw), float(y + rh), float(s))
                   for (x, y, rw, rh), s in zip(rects, np.ravel(weights))]
        else:
            raw = self._np.detect(img, threshold=self.threshold, scale=self.scale,
                                  group=self.group)
        boxes = [Box(x0 / up, y0 / up, x1 / up, y1 / up, float(1.0 / (1.0 + np.exp(-2.0 * s))))
                 for x0, y0, x1, y1, s in raw]
        return _tighten(drop_nested(boxes))


def drop_nested(boxes: Sequence[Box], inside: float = 0.8) -> list[Box]:
    """Drop a box that lies mostly (``inside`` of its area) within a larger one: HOG
    also fires on a person's legs or torso at a smaller scale."""
    out = []
    for b in boxes:
        area = max(b.width * b.height, 1e-9)
        nested = False
        for o in boxes:
            if o is b or o.width * o.height <= area:
                continue
            ix = max(0.0, min(b.x1, o.x1) - max(b.x0, o.x0))
            iy = max(0.0, min(b.y1, o.y1) - max(b.y0, o.y0))
            if ix * iy >= inside * area:
                nested = True
                break
        if not nested:
            out.append(b)
    return out


def _tighten(boxes: Sequence[Box]) -> list[Box]:
    """HOG's 64x128 window holds a person about 40x96 in its middle: shrink to that."""
    out = []
    for b in boxes:
        dx, dy = b.width * 0.15, b.height * 0.125
        out.append(Box(b.x0 + dx, b.y0 + dy, b.x1 - dx, b.y1 - dy, b.score))
    return out


# -- ONNX ---------------------------------------------------------------------------------
class OnnxDetector:
    """A YOLOX or ultralytics ONNX detector, person class (``person_class``) only."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, *, person_class: int = 0,
                 score: float = 0.1, iou: float = 0.45) -> None:
        self.path = os.fspath(path)
        shown = display_path(self.path)
        if not Path(self.path).is_file():
            raise HarError(f"--detector {shown}: no such file; give a YOLOX or ultralytics "
                           "person detector exported to .onnx (docs/persons.md)")
        self.person_class, self.score_min, self.iou = person_class, score, iou
        try:
            self._run, in_shape, out_shape = _open_onnx(self.path)
        except HarError:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure is the file's
            raise HarError(f"--detector {shown}: cannot be loaded as ONNX "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                           "give a YOLOX or ultralytics .onnx file") from None
        if len(in_shape) != 4 or len(out_shape) != 3:
            raise HarError(f"--detector {shown}: input {in_shape} / output {out_shape} is "
                           "not an image detector's (1,3,H,W) -> (1,N,5+C) or (1,4+C,N); "
                           "give a YOLOX or ultralytics .onnx file")
        self.in_h = in_shape[2] if isinstance(in_shape[2], int) and in_shape[2] > 0 else 640
        self.in_w = in_shape[3] if isinstance(in_shape[3], int) and in_shape[3] > 0 else 640
        a, b = out_shape[1], out_shape[2]
        if isinstance(a, int) and isinstance(b, int) and a < b:
            self.layout = "ultralytics"
        elif isinstance(b, int) and b >= 6:
            self.layout = "yolox"
        elif isinstance(a, int) and a >= 5:
            self.layout = "ultralytics"
        else:
            raise HarError(f"--detector {shown}: output shape {out_shape} is neither YOLOX "
                           "(1,N,5+C) nor ultralytics (1,4+C,N)")

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        import cv2

        h, w = rgb.shape[:2]
        r = min(self.in_h / h, self.in_w / w)
        nh, nw = int(round(h * r)), int(round(w * r))
        canvas = np.full((self.in_h, self.in_w, 3), 114, np.uint8)
        if self.layout == "ultralytics":  # centred, RGB, 0..1
            py, px = (self.in_h - nh) // 2, (self.in_w - nw) // 2
        else:  # YOLOX: top-left, BGR, 0..255
            py, px = 0, 0
        canvas[py:py + nh, px:px + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if self.layout == "ultralytics":
            x = canvas.astype(np.float32) / 255.0
        else:
            x = canvas[..., ::-1].astype(np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), r, px, py

    def detect(self, rgb: np.ndarray) -> list[Box]:
        x, r, px, py = self._letterbox(rgb)
        out = np.asarray(self._run(x), np.float32)[0]
        if self.layout == "ultralytics":
            out = out.T  # (N, 4 + C)
            xywh, scores = out[:, :4], out[:, 4 + self.person_class]
        else:
            out = _yolox_decode(out, self.in_h, self.in_w)
            xywh, scores = out[:, :4], out[:, 4] * out[:, 5 + self.person_class]
        keep = scores >= self.score_min
        h, w = rgb.shape[:2]
        boxes = []
        for (cx, cy, bw, bh), s in zip(xywh[keep], scores[keep]):
            x0 = (cx - bw / 2 - px) / r
            y0 = (cy - bh / 2 - py) / r
            x1 = (cx + bw / 2 - px) / r
            y1 = (cy + bh / 2 - py) / r
            x0, x1 = float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))
            y0, y1 = float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                boxes.append(Box(x0, y0, x1, y1, float(s)))
        return nms(boxes, self.iou)


def _yolox_decode(out: np.ndarray, in_h: int, in_w: int) -> np.ndarray:
    """YOLOX files exported without ``--decode_in_inference`` give grid offsets and
    log sizes per anchor point of the stride 8, 16 and 32 grids; decode those."""
    grids, strides = [], []
    for s in (8, 16, 32):
        gh, gw = in_h // s, in_w // s
        yv, xv = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        strides.append(np.full((gh * gw, 1), s))
    n = sum(len(g) for g in grids)
    if out.shape[0] != n or np.abs(out[:, 2:4]).max(initial=0) > 20:
        return out  # already decoded (pixels of the input)
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    out = out.copy()
    out[:, :2] = (out[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(out[:, 2:4]) * stride
    return out


def _open_onnx(path: str):
    """``(run(x) -> first output, input shape, output shape)`` with ONNX Runtime, or
    OpenVINO when ONNX Runtime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
        name = inp.name
        return (lambda x: sess.run(None, {name: x})[0], list(inp.shape), list(out.shape))
    import openvino as ov

    model = ov.Core().read_model(path)
    compiled = ov.Core().compile_model(model, "CPU")

    def dims(ps):
        return [d.get_length() if d.is_static else None for d in ps]

    return (lambda x: compiled(x)[0], dims(model.inputs[0].get_partial_shape()),
            dims(model.outputs[0].get_partial_shape()))
