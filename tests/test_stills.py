"""Synthetic camera motion over scikit-image stills (napari_afb.training.stills)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from napari_afb.guidance import TRAINING_THRESHOLD, guidance_from_flow
from napari_afb.samples import linear_to_srgb, srgb_to_linear
from napari_afb.training.stills import (
    STILLS,
    Layer,
    MotionPath,
    StillsSource,
    render_exposure,
)
from napari_afb.training.window import Window


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _gray(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.mean(axis=-1), dtype=np.float32)


def _shift_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dx, dy) by which ``b`` is ``a`` moved (phase correlation, Hann window)."""
    a, b = _gray(a), _gray(b)
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, win)
    return np.array([dx, dy])


def test_blurry_is_the_linear_mean_of_the_subframes():
    src = StillsSource(n_frames=7, size=(48, 64), substeps=8, foreground_prob=1.0)
    exposure, source = src.render(np.random.default_rng(3))
    sub = exposure.subframes
    assert sub.shape == (6 * 8 + 1, 48, 64, 3) and sub.dtype == np.float32
    assert source["foreground"] is not None
    expected = linear_to_srgb(sub.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(exposure.blurry, expected, atol=1e-5, rtol=0)
    # The frames are the sub-positions at tau = linspace(-0.5, 0.5, n_frames), in sRGB (encoded
    # by torch there, by numpy here: float32 rounding apart).
    np.testing.assert_allclose(exposure.frames, linear_to_srgb(sub[::8]), atol=1e-6, rtol=0)
    # The blur is not one of its frames (the path moved during the exposure).
    assert np.abs(exposure.blurry - exposure.frames[3]).max() > 0.05
    # sample() is render() packed into a Window.
    window = src.sample(np.random.default_rng(3))
    np.testing.assert_array_equal(window.blurry, exposure.blurry)
    np.testing.assert_array_equal(window.flow, exposure.flow)


def test_shapes_dtypes_ranges_and_source():
    src = StillsSource(n_frames=5, size=(40, 56), substeps=4)
    rng = np.random.default_rng(0)
    for _ in range(6):
        w = src.sample(rng)
        assert isinstance(w, Window)
        assert w.blurry.shape == (40, 56, 3) and w.blurry.dtype == np.float32
        assert w.frames.shape == (5, 40, 56, 3) and w.frames.dtype == np.float32
        assert w.flow.shape == (40, 56, 2) and w.flow.dtype == np.float32
        assert w.guidance.shape == (40, 56) and w.guidance.dtype == np.uint8
        for arr in (w.blurry, w.frames):
            assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0
        assert np.isfinite(w.flow).all()
        # The displacement over the exposure stays near max_shift (rotation/zoom add a bit).
        assert np.abs(w.flow).max() * 4 <= 24.0 * 1.5
        np.testing.assert_array_equal(
            w.guidance, guidance_from_flow(w.flow, threshold=TRAINING_THRESHOLD)
        )
        assert w.source["kind"] == "still" and w.source["image"] in STILLS
        assert set(w.source["path"]) == {"shift", "accel", "rotation", "zoom", "center"}


def test_determinism():
    src = StillsSource(size=(32, 32), substeps=2)
    a, b = (src.sample(np.random.default_rng(7)) for _ in range(2))
    for name in ("blurry", "frames", "flow", "guidance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.source == b.source
    c = src.sample(np.random.default_rng(8))
    assert not np.array_equal(a.blurry, c.blurry) or a.source != c.source


@pytest.mark.parametrize(
    ("shift", "label"),
    [((12.0, 6.0), 4), ((-12.0, 0.0), 3), ((0.0, -12.0), 2), ((10.0, -4.0), 1)],
)
def test_pure_translation(astronaut, shift, label):
    src = StillsSource(size=(96, 96), images={"astronaut": astronaut}, foreground_prob=0.0)
    exposure, _ = src.render(
        np.random.default_rng(1), background_path=MotionPath(shift=shift), foreground=False
    )
    w = Window.from_flow(exposure.blurry, exposure.frames, exposure.flow)
    per_step = np.array(shift, np.float32) / 6
    np.testing.assert_allclose(w.flow, np.broadcast_to(per_step, w.flow.shape), atol=1e-5)
    assert (w.guidance == label).all()
    # The true frames move by the path: the whole shift from first to last, a sixth per step.
    np.testing.assert_allclose(_shift_between(w.frames[0], w.frames[-1]), shift, atol=0.5)
    np.testing.assert_allclose(_shift_between(w.frames[2], w.frames[3]), per_step, atol=0.5)


def test_static_path_gives_static_labels_and_a_sharp_blur(astronaut):
    src = StillsSource(size=(64, 64), images=[astronaut])
    exposure, source = src.render(
        np.random.default_rng(2), background_path=MotionPath(), foreground=False
    )
    assert source["image"] == "image0"
    assert (exposure.flow == 0).all()
    for frame in exposure.frames:
        np.testing.assert_allclose(frame, exposure.blurry, atol=1e-5)


def test_foreground_moving_the_other_way(astronaut):
    from skimage import data

    images = {"astronaut": astronaut, "coffee": data.coffee()}
    src = StillsSource(size=(96, 96), images=images)
    exposure, source = src.render(
        np.random.default_rng(5),
        background_path=MotionPath(shift=(12.0, 6.0)),
        foreground_path=MotionPath(shift=(-12.0, -6.0), center=(48.0, 48.0)),
    )
    fg = source["foreground"]
    assert fg is not None and fg["image"] != source["image"]
    labels = guidance_from_flow(exposure.flow, threshold=TRAINING_THRESHOLD)
    assert set(np.unique(labels).tolist()) == {2, 4}
    assert labels[48, 48] == 2
    np.testing.assert_array_equal(labels == 2, exposure.foreground_mask)
    assert np.abs(exposure.flow[labels == 2] - [-2.0, -1.0]).max() < 1e-5
    # Where the ellipse is at mid-exposure, and nowhere else.
    rx, ry = fg["axes"]
    assert abs((labels == 2).sum() / (math.pi * rx * ry) - 1) < 0.1
    yy, xx = np.mgrid[0:96, 0:96]
    r = np.hypot(xx - 48, yy - 48)
    assert (labels[r < min(rx, ry) - 2] == 2).all()
    assert (labels[r > max(rx, ry) + 2] == 4).all()
    # Inside the patch the content moves the other way: frame k shows at p + tau_k * (-12, -6)
    # what the mid-exposure frame shows at p (integer shifts here, so exactly).
    f = exposure.frames
    inside = np.argwhere(r < min(rx, ry) - 8)
    assert len(inside) > 50
    y, x = inside.T
    np.testing.assert_allclose(f[-1][y - 3, x - 6], f[3][y, x], atol=1e-5)
    np.testing.assert_allclose(f[0][y + 3, x + 6], f[3][y, x], atol=1e-5)
    # ... and the background the right way, away from the patch.
    # (far enough that the patch, 13.4 px nearer at the end, never covers them)
    out = np.argwhere((r > max(rx, ry) + 18) & (yy >= 3) & (yy < 93) & (xx >= 6) & (xx < 90))
    y, x = out.T
    np.testing.assert_allclose(f[-1][y + 3, x + 6], f[3][y, x], atol=1e-5)
    assert np.abs(f[-1][y - 3, x - 6] - f[3][y, x]).mean() > 0.01


def test_rotation_and_zoom_frames_follow_the_path(astronaut):
    """With rotation and zoom the flow varies over the image; the frames at the ends of the
    exposure show, at G_tau(p), what the mid-exposure frame shows at p."""
    n = 7
    src = StillsSource(n_frames=n, size=(80, 96), images={"astronaut": astronaut})
    path = MotionPath(shift=(6.0, -4.0), accel=(2.0, 1.0), rotation=4.0, zoom=0.06, center=(30, 50))
    exposure, source = src.render(np.random.default_rng(4), background_path=path, foreground=False)
    assert MotionPath.from_dict(source["path"]) == path
    grid = np.stack(np.meshgrid(np.arange(96.0), np.arange(80.0)), axis=-1)
    np.testing.assert_allclose(exposure.flow * (n - 1), path.displacement(grid), atol=1e-4)
    assert np.ptp(exposure.flow[..., 0]) > 1.0  # not a translation
    lin = srgb_to_linear(exposure.frames)
    mid = lin[n // 2]
    inner = np.s_[10:-10, 10:-10]
    for k, tau in ((0, -0.5), (n - 1, 0.5)):
        m = path.forward(tau)
        at = grid @ m[:, :2].T + m[:, 2]
        moved = cv2.remap(lin[k], *at.astype(np.float32).transpose(2, 0, 1), cv2.INTER_LINEAR)
        err = np.abs(moved - mid)[inner].mean()
        unmoved = np.abs(lin[k] - mid)[inner].mean()
        assert err < 0.01 and unmoved > 3 * err, (k, err, unmoved)
    # Time-ordered: the end-to-end flow is not the reverse of the truth.
    assert path.displacement(grid)[40, 48] @ np.array([6.0, -4.0]) > 0


def test_background_must_cover_the_output():
    small = Layer(np.zeros((20, 20, 3), np.float32), (0.0, 0.0), MotionPath(shift=(8.0, 0.0)))
    with pytest.raises(ValueError, match="does not cover"):
        render_exposure(small, size=(20, 20))


def test_user_images_grey_rgba_and_too_small_are_accepted():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    rgba = rng.random((50, 60, 4)).astype(np.float32)
    src = StillsSource(size=(64, 64), images={"grey": grey, "rgba": rgba}, max_shift=20)
    seen = set()
    for _ in range(8):
        w = src.sample(rng)
        seen.add(w.source["image"])
        assert w.blurry.shape == (64, 64, 3)
        assert w.source["scale"] > 1  # too small for the output: upscaled, never padded
    assert seen == {"grey", "rgba"}
    with pytest.raises(ValueError, match="empty"):
        StillsSource(images={}).sample(rng)
