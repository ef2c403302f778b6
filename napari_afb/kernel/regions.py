"""Which blur path explains which pixels: guidance regions, strokes and soft masks.

The guidance labels say where things moved (1-4) and where they did not (0: static or
unknown). A path applies to the moving regions its stroke touches; moving regions no stroke
touches go to the nearest stroke; with no moving label at all (no guidance, or all static) the
paths share the whole image, each pixel to its nearest stroke. Static pixels keep the input
wherever the guidance has any moving label.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from ..guidance import VECTORS
from .paths import BlurPath

__all__ = ["assign", "dominant_direction", "label_regions", "orient", "soft_masks", "stroke_mask"]


def stroke_mask(path: BlurPath, shape) -> np.ndarray:
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(path.points).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], False, 1, thickness=3)
    return mask.astype(bool)


def assign(paths: list[BlurPath], labels: np.ndarray | None, shape) -> np.ndarray:
    """(H, W) int map: the index of the path each pixel follows, -1 for "keep the input"."""
    h, w = shape
    strokes = [stroke_mask(p, shape) for p in paths]
    for i, (p, s) in enumerate(zip(paths, strokes)):
        if not s.any():
            x0, y0 = p.points.min(0).round(1)
            x1, y1 = p.points.max(0).round(1)
            raise ValueError(
                f"blur path {i + 1} ({x0:g},{y0:g} to {x1:g},{y1:g}) lies outside the "
                f"{w} x {h} image: draw it on the streak it describes"
            )
    moving = labels > 0 if labels is not None else None
    if len(paths) == 1:
        owner = np.zeros((h, w), np.int32)
    else:  # nearest stroke
        nearest = np.full((h, w), np.inf, np.float32)
        owner = np.zeros((h, w), np.int32)
        for i, s in enumerate(strokes):
            d = ndimage.distance_transform_edt(~s).astype(np.float32)
            closer = d < nearest
            owner[closer], nearest[closer] = i, d[closer]
    if moving is None or not moving.any():
        return owner
    comp, n = label_regions(labels)
    # a region belongs to the stroke with the most pixels on it, if any stroke touches it
    hits = np.stack([np.bincount(comp[s & moving], minlength=n + 1) for s in strokes])
    for c in range(1, n + 1):
        if hits[:, c].max() > 0:
            owner[comp == c] = int(np.argmax(hits[:, c]))
    owner[~moving] = -1
    return owner


def inner_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel deepest inside a region (farthest from its edge): a stroke drawn
    around it stays on the region (a centroid may lie outside, e.g. in a hole)."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    return float(x), float(y)


def label_regions(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected regions of equal moving labels (8-connected; touching regions of different
    directions stay apart): an (H, W) int map, 0 for static, and their count."""
    comp = np.zeros(labels.shape, np.int32)
    n = 0
    for value in np.unique(labels[labels > 0]):
        part, k = ndimage.label(labels == value, structure=np.ones((3, 3)))
        comp[part > 0] = part[part > 0] + n
        n += k
    return comp, n


def soft_masks(owner: np.ndarray, n: int, feather: float) -> np.ndarray:
    """(n + 1, H, W) float32 weights summing to 1: one per path, then "keep the input";
    edges feathered by a Gaussian of ``feather`` px."""
    masks = np.stack([owner == i for i in [*range(n), -1]]).astype(np.float32)
    if feather > 0 and len(np.unique(owner)) > 1:
        for m in masks:
            cv2.GaussianBlur(m, (0, 0), feather, dst=m, borderType=cv2.BORDER_REFLECT)
        masks /= np.maximum(masks.sum(0), 1e-6)
    return masks


def dominant_direction(labels: np.ndarray | None, where: np.ndarray) -> np.ndarray | None:
    """The mean (sx, sy) of the moving labels in ``where``, or None when there are none."""
    if labels is None:
        return None
    lab = labels[where]
    lab = lab[lab > 0]
    if lab.size == 0:
        return None
    counts = np.bincount(lab, minlength=len(VECTORS))
    vec = (counts[:, None] * VECTORS.astype(np.float64)).sum(0)
    return vec if np.hypot(*vec) > 0 else None


def orient(path: BlurPath, direction) -> BlurPath:
    """The path with time running along ``direction`` (sx, sy) where it has a component there."""
    if direction is not None and float(np.dot(path.direction(), direction)) < 0:
        return path.reversed()
    return path
