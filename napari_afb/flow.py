"""Optical flow and guidance from the neighbouring frames of a video (OpenCV DIS; no weights
to download). Used by blur synthesis for training and by ``guidance_from_neighbors``."""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

from .guidance import VIDEO_THRESHOLD, guidance_from_flow
from .images import to_rgb_float  # the same input checks as decompose()

__all__ = [
    "backward_warp",
    "consistency_mask",
    "dis_flow",
    "guidance_from_neighbors",
    "motion_from_neighbors",
]

_local = threading.local()  # one DIS object per thread: they are not safe to share


MIN_FLOW_SIZE = 32  # DIS refuses images under 12 px; small ones are padded to this


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from grey uint8 frame ``a`` to ``b``: (H, W, 2) float32 (dx, dy) such that
    ``a(x) ~ b(x + flow(x))``. Any size: frames smaller than 32 px are padded by edge
    replication for the computation and the flow is cropped back."""
    dis = getattr(_local, "dis", None)
    if dis is None:
        dis = _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    h, w = a.shape[:2]
    ph, pw = max(MIN_FLOW_SIZE - h, 0), max(MIN_FLOW_SIZE - w, 0)
    if ph or pw:
        a = cv2.copyMakeBorder(a, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        b = cv2.copyMakeBorder(b, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return dis.calc(a, b, None)[:h, :w]


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y), each (H, W) float32, read-only. Cached: blur synthesis warps
    hundreds of times per window at one size."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear, borders replicated. image (H, W[, C])."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(
        image,
        gx + flow[..., 0],
        gy + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def consistency_mask(f01: np.ndarray, f10: np.ndarray) -> np.ndarray:
    """(H, W) float32 1 where the forward flow ``f01`` is confirmed by the backward ``f10``."""
    err = np.linalg.norm(f01 + backward_warp(f10, f01), axis=-1)
    return (err <= 1.0 + 0.05 * np.linalg.norm(f01, axis=-1)).astype(np.float32)


def _grey(frame) -> np.ndarray:
    rgb, _, _ = to_rgb_float(frame)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.rint(grey * 255).astype(np.uint8)


def _inside(flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def guidance_from_neighbors(prev, current, next=None, *, threshold: float = VIDEO_THRESHOLD):  # noqa: A002 (the contract's name)
    """Guidance for ``current`` from the neighbouring *blurry* frames of a video.

    The motion at each pixel of ``current`` is estimated from the flow to the previous frame and
    to the next one (``v = (F_next - F_prev) / 2``: both flows start on ``current``'s grid, so
    nothing is warped), in pixels per video frame, then quantised by the paper's rule (0.5 px
    by default, the reference's threshold for video guidance). Where one neighbour's flow fails
    its forward-backward check, or leaves the frame, the other alone is used; where both fail
    the label is 0 (unknown), so the decomposer treats the pixel as static.

    prev, current, next : (H, W[, C]) frames of the same size (uint8, uint16 or float in [0, 1]);
        ``prev`` or ``next`` may be None (first or last frame of a video), not both.
    Returns an (H, W) uint8 label map.
    """
    motion, _ = motion_from_neighbors(prev, current, next)
    return guidance_from_flow(motion, threshold=threshold)


def motion_from_neighbors(prev, current, next=None):  # noqa: A002 (as guidance_from_neighbors)
    """The motion of ``current``'s pixels in px per video frame toward the future, from the
    flows to its neighbouring frames (see :func:`guidance_from_neighbors`), and where it was
    measured: ((H, W, 2) float32 (dx, dy), (H, W) bool)."""
    if prev is None and next is None:
        raise ValueError("guidance_from_neighbors needs at least one neighbouring frame")
    cur = _grey(current)
    estimates = []  # (motion per frame toward the future, validity)
    for frame, sign, name in ((prev, -1.0, "prev"), (next, 1.0, "next")):
        if frame is None:
            continue
        other = _grey(frame)
        if other.shape != cur.shape:
            raise ValueError(
                f"{name} frame is {other.shape[1]}x{other.shape[0]}, current is "
                f"{cur.shape[1]}x{cur.shape[0]}: neighbours must have the same size"
            )
        there = dis_flow(cur, other)
        back = dis_flow(other, cur)
        valid = (consistency_mask(there, back) > 0) & _inside(there)
        estimates.append((sign * there, valid))
    num = np.zeros(cur.shape + (2,), np.float32)
    count = np.zeros(cur.shape, np.float32)
    for motion, valid in estimates:
        num += motion * valid[..., None]
        count += valid
    motion = np.where(count[..., None] > 0, num / np.maximum(count, 1)[..., None], 0.0)
    return motion.astype(np.float32), count > 0
