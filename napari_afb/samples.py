"""Sample data: a real motion-blurred photo and a synthetic blur with its ground truth.

The synthetic sample moves CC0 / public-domain stills that ship in scikit-image along known
straight paths (a background one way, a round foreground patch another), averages many
sub-positions in linear light, and keeps the N frames and the guidance as ground truth.
numpy, OpenCV and scikit-image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .guidance import TRAINING_THRESHOLD, guidance_from_flow


@dataclass
class BlurSample:
    """A blurry image with what made it: (H, W, 3) uint8 blurry, (N, H, W, 3) uint8 frames in
    time order, (H, W) uint8 guidance, and a description."""

    blurry: np.ndarray
    frames: np.ndarray
    guidance: np.ndarray
    description: str


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] -> linear light (float32)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB values (float32)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    return np.where(
        x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055
    ).astype(np.float32)


def linear_mean(frames: np.ndarray) -> np.ndarray:
    """The blur a camera makes of ``frames`` (N, H, W, C) in [0, 1]: the linear-light mean,
    back in sRGB. Returns (H, W, C) float32."""
    return linear_to_srgb(srgb_to_linear(frames).mean(axis=0))


def licence_plate() -> np.ndarray:
    """A real photo of a car's back, strongly motion-blurred (OpenCV's motion-deblur sample,
    Apache-2.0 / BSD-3-Clause, shipped in ``napari_afb/data``), as (482, 600, 3) uint8 RGB.
    A straight 23 px blur up and to the right; deblurred, the plate reads 127-RFS."""
    from importlib.resources import files

    data = np.frombuffer(
        files("napari_afb.data").joinpath("licenseplate_motion.jpg").read_bytes(), np.uint8
    )
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def clock() -> np.ndarray:
    """A real photo of a wall clock blurred by camera motion (scikit-image, public domain),
    as (300, 400, 3) uint8 RGB."""
    from skimage import data

    return np.repeat(data.clock()[..., None], 3, axis=2)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate by (dx, dy) px with bilinear interpolation; edges reflected."""
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def synthetic_blur(
    n_frames: int = 7,
    background_motion: tuple[float, float] = (24.0, 12.0),
    foreground_motion: tuple[float, float] = (-18.0, -18.0),
    substeps: int = 8,
    size: tuple[int, int] = (256, 320),
) -> BlurSample:
    """Blur scikit-image's ``coffee`` (background) and a disc of ``astronaut`` (foreground).

    Motions are the total displacement over the exposure in pixels (dx, dy), linear in time.
    The exposure is sampled at ``(n_frames - 1) * substeps + 1`` sub-positions; the ground-truth
    frames are every ``substeps``-th of them, so the blur is smooth, not ghosted.
    """
    from skimage import data

    h, w = size
    background = cv2.resize(data.coffee(), (w + 64, h + 64), interpolation=cv2.INTER_AREA)
    face = data.astronaut()[30:230, 150:350]
    r = min(h, w) // 5
    face = cv2.resize(face, (2 * r, 2 * r), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[-r:r, -r:r] + 0.5
    disc = (np.hypot(yy, xx) <= r).astype(np.float32)[..., None]
    cx, cy = w * 0.62, h * 0.45  # foreground centre at mid-exposure

    bg_lin = srgb_to_linear(background / 255.0)
    fg_lin = srgb_to_linear(face / 255.0)
    steps = (n_frames - 1) * substeps + 1
    taus = np.linspace(-0.5, 0.5, steps)
    subframes = np.empty((steps, h, w, 3), dtype=np.float32)
    for i, tau in enumerate(taus):
        bdx, bdy = tau * background_motion[0], tau * background_motion[1]
        frame = _shift(bg_lin, bdx, bdy)[32 : 32 + h, 32 : 32 + w]
        fdx, fdy = cx + tau * foreground_motion[0] - r, cy + tau * foreground_motion[1] - r
        m = np.array([[1, 0, fdx], [0, 1, fdy]], dtype=np.float64)
        canvas = cv2.warpAffine(fg_lin * disc, m, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(disc, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        subframes[i] = frame * (1 - alpha) + canvas
    blurry = linear_to_srgb(subframes.mean(axis=0))
    frames = linear_to_srgb(subframes[::substeps])

    # Guidance: per-step motion of whichever layer covers the pixel during the exposure.
    per_step_bg = np.array(background_motion, np.float32) / (n_frames - 1)
    per_step_fg = np.array(foreground_motion, np.float32) / (n_frames - 1)
    covered = np.zeros((h, w), bool)
    for tau in (-0.5, 0.0, 0.5):
        m = np.array(
            [
                [1, 0, cx + tau * foreground_motion[0] - r],
                [0, 1, cy + tau * foreground_motion[1] - r],
            ],
            dtype=np.float64,
        )
        covered |= cv2.warpAffine(disc[..., 0], m, (w, h)) > 0.5
    flow = np.where(covered[..., None], per_step_fg, per_step_bg).astype(np.float32)
    guidance = guidance_from_flow(flow, threshold=TRAINING_THRESHOLD)

    to8 = lambda x: np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return BlurSample(
        blurry=to8(blurry),
        frames=to8(frames),
        guidance=guidance,
        description=(
            f"scikit-image 'coffee' moving {background_motion} px and an 'astronaut' disc moving "
            f"{foreground_motion} px during the exposure; {n_frames} frames, {steps} sub-steps"
        ),
    )
