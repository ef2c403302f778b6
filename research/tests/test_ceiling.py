"""What a motion is worth (research/code/ceiling.py): descriptions of a true motion and the
frames a motion makes, as research/code/bench_ceiling.py uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ceiling import (
    motion_frames,
    network_motion,
    polynomial_fit,
    tile_mean,
    with_lengths,
)
from conftest import perturbed_model
from test_deconv import SMALL, _photo, _uniform_motion

from napari_afb.models.decomposer import warp
from napari_afb.models.layers import linear_to_srgb, srgb_to_linear
from napari_afb.samples import linear_mean
from napari_afb.training.evaluate import mean_psnr


def _accelerating(n=7, h=6, w=5, seed=0) -> np.ndarray:
    """A per-pixel quadratic trajectory in time, zero at the middle frame, (N, H, W, 2)."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n) - n // 2)[:, None, None, None].astype(np.float32)
    v, a = rng.normal(0, 2, (2, 1, h, w, 2)).astype(np.float32)
    return v * t + a * t**2


def test_polynomial_fit_keeps_a_quadratic_and_fits_a_least_squares_line():
    motion = _accelerating()
    np.testing.assert_allclose(polynomial_fit(motion, 2), motion, atol=1e-4)
    line = polynomial_fit(motion, 1)
    t = np.arange(7) - 3
    for y, x, c in ((0, 0, 0), (5, 4, 1), (2, 3, 0)):
        slope, intercept = np.polyfit(t, motion[:, y, x, c], 1)
        np.testing.assert_allclose(line[:, y, x, c], slope * t + intercept, atol=1e-4)
    assert not np.allclose(line, motion, atol=1e-2)  # the acceleration is gone
    with pytest.raises(ValueError, match="degree"):
        polynomial_fit(motion, 7)


def test_tile_mean_keeps_a_uniform_motion_and_averages_the_window():
    uniform = np.broadcast_to(np.array([1.5, -2.0], np.float32), (7, 40, 48, 2)).copy()
    uniform *= (np.arange(7) - 3)[:, None, None, None]
    np.testing.assert_allclose(tile_mean(uniform, 16), uniform, atol=1e-5)
    motion = _accelerating(h=40, w=48)
    whole = tile_mean(motion, None)
    np.testing.assert_allclose(whole[:, 7, 9], motion.mean(axis=(1, 2)), atol=1e-5)
    assert np.ptp(whole, axis=(1, 2)).max() == 0
    tiled = tile_mean(motion, 16)
    assert tiled.shape == motion.shape and not np.allclose(tiled, whole)


def test_with_lengths_takes_directions_from_one_motion_and_lengths_from_the_other():
    direction = np.zeros((7, 2, 2, 2), np.float32)
    direction[..., 0] = 3.0  # to the right
    direction[3] = 0.0
    length = np.zeros_like(direction)
    length[..., 1] = -5.0  # 5 px up
    out = with_lengths(direction, length)
    np.testing.assert_allclose(out[0, 0, 0], [5.0, 0.0])
    np.testing.assert_allclose(out[3], 0.0)  # no direction: no motion


def _blurred_photo(dx=2.0, dy=1.0):
    """A real photo blurred along a uniform motion of (dx, dy) px per frame step (linear
    light, 8 sub-steps per step), its 7 true frames and the true motion (N, H, W, 2)."""
    sharp = _photo(96, 96, seed=2)
    lin = srgb_to_linear(sharp)
    dense = _uniform_motion(49, 96, 96, dx / 8, dy / 8)
    blurry = linear_to_srgb(warp(lin, dense).mean(dim=1))[0].permute(1, 2, 0).numpy()
    motion = _uniform_motion(7, 96, 96, dx, dy)
    frames = linear_to_srgb(warp(lin, motion))[0].permute(0, 2, 3, 1).numpy()
    return blurry, frames, motion[0].permute(0, 2, 3, 1).numpy()


def test_the_true_motion_is_worth_more_than_a_wrong_length_and_deconvolution_adds_to_it():
    blurry, truth, motion = _blurred_photo()
    inner = np.s_[:, 12:-12, 12:-12]
    base = mean_psnr(np.repeat(blurry[None], 7, 0)[inner], truth[inner])

    def gain(m, iters):
        frames = motion_frames(blurry, m, deconv_iters=iters)
        # the frames are blur consistent: their linear-light mean is the input
        np.testing.assert_allclose(linear_mean(frames), blurry, atol=2e-3)
        return mean_psnr(frames[inner], truth[inner]) - base

    warped, deconvolved = gain(motion, 0), gain(motion, 10)
    assert warped > 1.0, warped
    assert deconvolved > warped + 1.0, (warped, deconvolved)
    assert gain(1.5 * motion, 10) < deconvolved - 1.0
    assert gain(0 * motion, 0) == pytest.approx(0.0, abs=0.05)  # no motion: the input


def test_network_motion_pads_to_the_stride_and_keeps_the_middle_frame():
    model = perturbed_model(0, "motion_deconv", head=(0.02, 0.3), **SMALL)
    rng = np.random.default_rng(0)
    blurry = rng.random((37, 45, 3)).astype(np.float32)
    guidance = rng.integers(0, 5, (37, 45)).astype(np.uint8)
    motion = network_motion(model, blurry, guidance)
    assert motion.shape == (7, 37, 45, 2)
    np.testing.assert_array_equal(motion[3], 0.0)
    assert np.abs(motion).mean() > 0.1  # the seeded head moves things
    with torch.no_grad():
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
    np.testing.assert_array_equal(network_motion(model, blurry, guidance), 0.0)
