"""Checking and normalising user images (numpy only: no torch, so cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageLayout", "alloc_output", "store_rows", "to_rgb_float"]


@dataclass(frozen=True)
class ImageLayout:
    """How a user's image was stored, so the frames come back the same way."""

    dtype: np.dtype
    channels: int  # 0 for (H, W) grey, else 1, 3 or 4
    scale: float  # 255 for uint8, 65535 for uint16, 1 for float


def to_rgb_float(image) -> tuple[np.ndarray, np.ndarray | None, ImageLayout]:
    """Check an image and return (rgb (H, W, 3) float32 in [0, 1], alpha or None, layout).

    Accepts (H, W) or (H, W, 1) grey, (H, W, 3) RGB and (H, W, 4) RGBA, as uint8, uint16 or
    float in [0, 1]. Anything else is refused with a message saying what was found.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        hint = ""
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
            hint = " (channels first? napari-afb wants channels last: (H, W, 3))"
        elif arr.ndim == 4:
            hint = " (a video or stack? decompose one frame at a time)"
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"the image is empty: shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scale = 1.0
        if not np.isfinite(arr).all():
            raise ValueError("the image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"a float image must hold values in [0, 1], found [{lo:.4g}, {hi:.4g}] "
                f"(for 0-255 data pass uint8, or divide by 255)"
            )
    else:
        raise ValueError(
            f"unsupported image dtype {arr.dtype}: use uint8, uint16 or float in [0, 1]"
        )
    channels = 0 if arr.ndim == 2 else arr.shape[2]
    layout = ImageLayout(arr.dtype, channels, scale)
    if arr.ndim == 2:
        arr = arr[..., None]
    alpha = arr[..., 3] if channels == 4 else None
    rgb = arr[..., :3]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    rgb = rgb.astype(np.float32) / np.float32(scale)
    return np.clip(rgb, 0.0, 1.0, out=rgb), alpha, layout


def alloc_output(n: int, h: int, w: int, layout: ImageLayout) -> np.ndarray:
    shape = (n, h, w) if layout.channels == 0 else (n, h, w, layout.channels)
    return np.empty(shape, dtype=layout.dtype)


def store_rows(out: np.ndarray, y0: int, rgb: np.ndarray, layout: ImageLayout, alpha) -> None:
    """Write float RGB rows (N, h, W, 3) into the output at row y0, in the user's layout."""
    h = rgb.shape[1]
    if layout.channels in (0, 1):
        vals = rgb.mean(axis=-1)  # grey in, grey out: the three channels carry one signal
        if layout.channels == 1:
            vals = vals[..., None]
    else:
        vals = rgb
    if layout.scale != 1.0:
        vals = np.rint(np.clip(vals, 0, 1) * np.float32(layout.scale))
    if layout.channels == 4:
        out[:, y0 : y0 + h, :, :3] = vals
        out[:, y0 : y0 + h, :, 3] = alpha[None, y0 : y0 + h]
    else:
        out[:, y0 : y0 + h] = vals
