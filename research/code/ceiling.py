"""What a motion is worth: the frames a per-frame motion makes, and simpler descriptions of a
window's true motion that bound what a motion-predicting decomposer can reach.

The ``motion_deconv`` decomposer's frames are the blurry input (or a latent deconvolved along
the motion) warped by a per-frame motion and projected so that they average to the input.
Given a window's *true* motion (:attr:`Window.motion`), :func:`motion_frames` makes the frames
of that motion or of a simpler description of it (:func:`polynomial_fit`: a per-pixel curve in
time; :func:`tile_mean`: one trajectory per tile or for the whole window; :func:`with_lengths`:
one motion's directions with another's lengths), so a benchmark can say what each description
is worth over the blurry baseline and how far a network's motion is from them
(``research/code/bench_ceiling.py``). torch and numpy only; no napari. Research code: it lives
outside the ``napari_afb`` package, which does not import it (see research/README.md).

Motion arrays here are numpy, (N, H, W, 2): per frame, the sampling offsets (dx, dy) in pixels
from the middle frame, as :class:`~napari_afb.training.window.Window` holds them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_afb.models.decomposer import project_blur_consistent, warp
from napari_afb.models.deconv import deconvolve
from napari_afb.models.layers import linear_to_srgb, srgb_to_linear

__all__ = ["motion_frames", "network_motion", "polynomial_fit", "tile_mean", "with_lengths"]


def _check_motion(motion: np.ndarray) -> np.ndarray:
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim != 4 or motion.shape[-1] != 2:
        raise ValueError(f"motion must have shape (N, H, W, 2), got {motion.shape}")
    return motion


def polynomial_fit(motion: np.ndarray, degree: int) -> np.ndarray:
    """The per-pixel least-squares polynomial of ``degree`` in time through ``motion``
    (N, H, W, 2): degree 1 is a straight line at constant speed, 2 adds an acceleration.
    The fit need not pass through zero at the middle frame (a line through the true offsets
    of an accelerating motion does not)."""
    motion = _check_motion(motion)
    n = len(motion)
    if not 0 <= degree < n:
        raise ValueError(f"degree must be in [0, {n - 1}] for {n} frames, got {degree}")
    t = np.arange(n, dtype=np.float64) - n // 2
    basis = np.stack([t**k for k in range(degree + 1)], axis=1)  # (N, degree + 1)
    hat = basis @ np.linalg.pinv(basis)  # projection onto the polynomials, (N, N)
    return np.einsum("st,thwc->shwc", hat, motion).astype(np.float32)


def tile_mean(motion: np.ndarray, tile: int | None) -> np.ndarray:
    """One trajectory per ``tile`` x ``tile`` px (the mean of the motion over the tile),
    interpolated back to every pixel (bilinear between tile centres); ``None``: one trajectory,
    the mean, for the whole window."""
    motion = _check_motion(motion)
    n, h, w, _ = motion.shape
    if tile is None:
        return np.broadcast_to(motion.mean(axis=(1, 2), keepdims=True), motion.shape).copy()
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    x = torch.from_numpy(motion).permute(0, 3, 1, 2)
    coarse = F.adaptive_avg_pool2d(x, (max(1, round(h / tile)), max(1, round(w / tile))))
    fine = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return fine.permute(0, 2, 3, 1).numpy().copy()


def with_lengths(direction: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per frame and pixel, the unit vector of ``direction`` times the length of ``length``
    (both (N, H, W, 2)): one motion's directions with another's lengths. Where ``direction``
    is zero the result is zero."""
    direction, length = _check_motion(direction), _check_motion(length)
    if direction.shape != length.shape:
        raise ValueError(f"shapes differ: {direction.shape} and {length.shape}")
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    unit = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 1e-6)
    return (unit * np.linalg.norm(length, axis=-1, keepdims=True)).astype(np.float32)


@torch.no_grad()
def motion_frames(
    blurry: np.ndarray,
    motion: np.ndarray,
    deconv_iters: int = 0,
    substeps: int = 2,
    prior: float = 0.003,
    step: float = 1.5,
) -> np.ndarray:
    """The frames a per-frame ``motion`` (N, H, W, 2) makes of ``blurry`` (H, W, 3) sRGB float
    in [0, 1], as the ``motion_deconv`` decomposer makes them: with ``deconv_iters = 0`` the
    blurry input warped by the motion, else a latent deconvolved along the motion
    (:func:`~napari_afb.models.deconv.deconvolve` with these settings) warped by it; then
    projected so that the frames' linear-light mean is the input. (N, H, W, 3) float32."""
    motion = _check_motion(motion)
    blurry = np.asarray(blurry, dtype=np.float32)
    if blurry.ndim != 3 or blurry.shape[-1] != 3 or blurry.shape[:2] != motion.shape[1:3]:
        raise ValueError(f"blurry {blurry.shape} does not match motion {motion.shape}")
    image = torch.from_numpy(np.ascontiguousarray(blurry.transpose(2, 0, 1)))[None]
    m = torch.from_numpy(np.ascontiguousarray(motion.transpose(0, 3, 1, 2)))[None]
    latent = deconvolve(srgb_to_linear(image), m, deconv_iters, substeps, prior, step)
    frames = project_blur_consistent(linear_to_srgb(warp(latent, m)), image)
    return frames[0].clamp(0, 1).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def network_motion(model: torch.nn.Module, blurry: np.ndarray, guidance: np.ndarray) -> np.ndarray:
    """The per-frame motion a ``motion_deconv`` ``model`` (on the CPU) predicts for ``blurry``
    (H, W, 3) float in [0, 1] and its ``guidance`` (H, W) labels: (N, H, W, 2), the image
    padded to the model's stride and the motion cropped back."""
    from napari_afb.engine import model_inputs

    h, w = guidance.shape
    motion = model.predict_motion(*model_inputs(blurry, guidance, model, torch.device("cpu")))
    return motion[0, :, :, :h, :w].permute(0, 2, 3, 1).numpy().copy()
