"""Histograms of oriented gradients (Dalal and Triggs, CVPR 2005) in NumPy, laid out
as OpenCV's ``HOGDescriptor`` lays them, so that OpenCV's default people SVM
(``hog_people_svm.npy``: the 3780 weights and the bias of
``cv2.HOGDescriptor_getDefaultPeopleDetector()`` from OpenCV 5.0.0, Apache-2.0,
saved as data) scores them.

The descriptor, as OpenCV's defaults: a 64x128 window; gamma correction (square root
of the pixel values); centred [-1, 0, 1] gradients, per pixel the colour channel with
the largest magnitude; 9 unsigned orientation bins of 20 degrees with linear
interpolation between bin centres; 16x16 blocks of four 8x8 cells at a stride of 8,
each pixel weighted by a Gaussian (sigma 4) centred on the block and shared
bilinearly between the cells; L2-Hys block normalisation (clip at 0.2). Order:
blocks column by column, in a block the cells column by column, then the bins.

Whole images are scored at once: the per-cell sums are separable, so each pyramid
level costs a few array passes, and the SVM is a sum of 105 block-wise dot products.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CELL, _BINS = 8, 9
_WIN_BX, _WIN_BY = 7, 15  # blocks across and down a 64x128 window


def _kernels() -> np.ndarray:
    """``(2 cells, 16 pixels)``: Gaussian times the bilinear cell weight, per axis."""
    p = np.arange(16, dtype=np.float64)
    gauss = np.exp(-((p - 8.0) ** 2) / (2 * 4.0 ** 2))
    pos = (p + 0.5) / _CELL - 0.5
    return np.stack([gauss * np.clip(1 - np.abs(pos - c), 0, None) for c in (0, 1)])


_K = _kernels()


def gradients(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 9)``: each pixel's gradient magnitude split between its two nearest
    orientation bins."""
    import cv2

    img = np.sqrt(rgb.astype(np.float32))
    h, w = img.shape[:2]
    # centred differences, the border reflected without repeating the edge pixel
    dx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    mag2 = dx * dx + dy * dy
    # per pixel the channel with the largest gradient (the first one on ties)
    c1 = mag2[..., 1] > mag2[..., 0]
    m = np.where(c1, mag2[..., 1], mag2[..., 0])
    c2 = mag2[..., 2] > m
    gx = np.where(c2, dx[..., 2], np.where(c1, dx[..., 1], dx[..., 0]))
    gy = np.where(c2, dy[..., 2], np.where(c1, dy[..., 1], dy[..., 0]))
    mag, ang = cv2.cartToPolar(gx, gy)  # radians in [0, 2 pi)
    a = ang * np.float32(_BINS / np.pi) - np.float32(0.5)
    lo = np.floor(a)
    frac = a - lo
    lo = lo.astype(np.int64) % _BINS
    hi = (lo + 1) % _BINS
    base = np.arange(h * w, dtype=np.int64).reshape(h, w) * _BINS
    n = h * w * _BINS
    out = np.bincount((base + lo).ravel(), (mag * (1 - frac)).ravel(), minlength=n)
    out += np.bincount((base + hi).ravel(), (mag * frac).ravel(), minlength=n)
    return out.astype(np.float32).reshape(h, w, _BINS)


def blocks(rgb: np.ndarray) -> np.ndarray:
    """``(nby, nbx, 36)`` normalised block descriptors of an image (cut to whole cells)."""
    h, w = rgb.shape[0] // _CELL * _CELL, rgb.shape[1] // _CELL * _CELL
    g = gradients(rgb[:h, :w])
    ncy, ncx = h // _CELL, w // _CELL
    k4 = _K.reshape(2, 2, _CELL).reshape(4, _CELL).astype(np.float32)  # (cell, half) rows
    # down the rows: per cell row, the 4 kernels (cell c, half k) -> (ncy, 4, w * bins)
    r = np.matmul(k4, g.reshape(ncy, _CELL, w * _BINS))
    rows = np.stack([r[:-1, 2 * c] + r[1:, 2 * c + 1] for c in (0, 1)])  # (cy, nby, w*bins)
    rows = rows.reshape(2, ncy - 1, ncx, _CELL, _BINS).swapaxes(-1, -2)  # (cy, nby, ncx, bins, 8)
    x = np.matmul(rows, k4.T)  # (cy, nby, ncx, bins, 4)
    cols = np.stack([x[:, :, :-1, :, 2 * c] + x[:, :, 1:, :, 2 * c + 1] for c in (0, 1)])
    # cols: (cx, cy, nby, nbx, bins)
    v = cols.transpose(2, 3, 0, 1, 4).reshape(ncy - 1, ncx - 1, 36).astype(np.float32)
    v = v / (np.sqrt((v * v).sum(-1, keepdims=True)) + 36 * 0.1)
    v = np.minimum(v, 0.2)
    return v / (np.sqrt((v * v).sum(-1, keepdims=True)) + 1e-3)


def window_descriptor(rgb: np.ndarray) -> np.ndarray:
    """The 3780 values of one 64x128 window, in OpenCV's order."""
    b = blocks(rgb)  # (15, 7, 36)
    return b.transpose(1, 0, 2).reshape(-1)


class HogPeople:
    """Sliding-window people detection over an image pyramid."""

    def __init__(self) -> None:
        w = np.load(Path(__file__).with_name("hog_people_svm.npy")).astype(np.float32)
        self.weights = w[:-1].reshape(_WIN_BX, _WIN_BY, 36)  # (bx, by, 36)
        self.bias = float(w[-1])
        self._wmat = np.ascontiguousarray(self.weights.reshape(-1, 36).T)  # (36, 105)

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """``(ny, nx)`` SVM margins of the windows at every 8-pixel step."""
        b = blocks(rgb)
        ny, nx = b.shape[0] - _WIN_BY + 1, b.shape[1] - _WIN_BX + 1
        if ny <= 0 or nx <= 0:
            return np.zeros((0, 0), np.float32)
        s = np.full((ny, nx), self.bias, np.float32)
        # every block against every window position's weights at once, then shifted sums
        p = b @ self._wmat  # (nby, nbx, 7 * 15)
        for dx in range(_WIN_BX):
            for dy in range(_WIN_BY):
                s += p[dy:dy + ny, dx:dx + nx, dx * _WIN_BY + dy]
        return s

    def detect(self, rgb: np.ndarray, *, threshold: float = 0.0, scale: float = 1.05,
               group: int = 1) -> list[tuple[float, float, float, float, float]]:
        """``[(x0, y0, x1, y1, margin)]`` in the image's pixels, grouped."""
        import cv2

        h, w = rgb.shape[:2]
        found = []
        s = 1.0
        while h / s >= 128 and w / s >= 64:
            img = rgb if s == 1.0 else cv2.resize(rgb, (int(round(w / s)), int(round(h / s))),
                                                  interpolation=cv2.INTER_LINEAR)
            sc = self.scores(img)
            for y, x in zip(*np.nonzero(sc > threshold)):
                found.append((x * 8 * s, y * 8 * s, (x * 8 + 64) * s, (y * 8 + 128) * s,
                              float(sc[y, x])))
            s *= scale
        return _group(found, group)


def _group(rects: list, min_neighbours: int, eps: float = 0.2) -> list:
    """Cluster near-identical windows (OpenCV's groupRectangles rule: corners within
    ``eps`` of the mean size), keep clusters of more than ``min_neighbours`` windows,
    and return each cluster's mean box with its best margin."""
    n = len(rects)
    if n == 0:
        return []
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    r = np.array([x[:4] for x in rects], np.float64)
    wh = np.stack([r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]], 1)
    for i in range(n):
        d = eps * (np.minimum(wh[i, 0], wh[i + 1:, 0]) + np.minimum(wh[i, 1], wh[i + 1:, 1])) * 0.5
        close = (np.abs(r[i + 1:] - r[i]) <= d[:, None]).all(1)
        for j in np.nonzero(close)[0] + i + 1:
            parent[find(int(j))] = find(i)
    clusters: dict[int, list[int]] = {}
    for i in range(n):
        clusters.setdefault(find(i), []).append(i)
    out = []
    for members in clusters.values():
        if len(members) <= min_neighbours:
            continue
        box = r[members].mean(0)
        out.append((*map(float, box), max(rects[m][4] for m in members)))
    return out
