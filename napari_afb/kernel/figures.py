"""Pictures of what the blur-kernel engine did: the kernel magnified, the path drawn on the
photo, and an input | frames strip (for the CLI, the demo, napari and the benchmarks)."""

from __future__ import annotations

import cv2
import numpy as np

from .paths import BlurPath


def kernel_picture(path: BlurPath, side: int = 160) -> np.ndarray:
    """(side, side, 3) uint8: the kernel (white on black, brightest = 1), with the path's start
    (green) and end (red) marked, time running green -> red."""
    k = path.render()
    img = cv2.resize(k / max(float(k.max()), 1e-12), (side, side), interpolation=cv2.INTER_NEAREST)
    rgb = np.repeat((np.sqrt(img) * 255).astype(np.uint8)[..., None], 3, axis=2)
    r = k.shape[0] // 2
    scale = side / k.shape[0]
    for t, colour in ((0.0, (0, 220, 0)), (1.0, (255, 40, 40))):
        x, y = path.position(np.array([t]))[0] - np.asarray(path.origin) + r + 0.5
        cv2.circle(rgb, (int(x * scale), int(y * scale)), max(2, side // 40), colour, -1)
    return rgb


def draw_path(image: np.ndarray, path: BlurPath, colour=(255, 200, 0)) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 image with the path drawn as an arrow, start to end."""
    out = np.ascontiguousarray(image.copy())
    pts = np.round(path.points).astype(np.int32)
    thick = max(1, min(out.shape[:2]) // 250)
    cv2.polylines(out, [pts.reshape(-1, 1, 2)], False, colour, thick, cv2.LINE_AA)
    tip = 10.0 / max(path.length(), 10.0)
    cv2.arrowedLine(out, tuple(pts[-2]), tuple(pts[-1]), colour, thick, cv2.LINE_AA, 0, tip)
    return out


def strip(image: np.ndarray, frames: np.ndarray, which=(0, None, -1), crop=None) -> np.ndarray:
    """Input | chosen frames (default first, middle, last) side by side, optionally cropped to
    ``crop`` = (y0, y1, x0, x1); uint8 RGB."""
    idx = [len(frames) // 2 if i is None else i for i in which]
    tiles = [image, *(frames[i] for i in idx)]
    if crop is not None:
        y0, y1, x0, x1 = crop
        tiles = [t[y0:y1, x0:x1] for t in tiles]
    tiles = [np.repeat(t[..., None], 3, 2) if t.ndim == 2 else t[..., :3] for t in tiles]
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.hstack(row)
