"""Guidance from the neighbouring blurry frames of a video."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

import napari_afb
from napari_afb.samples import linear_mean

STEP = (4, 3)  # the foreground moves right-down by this many px per video frame


def _sharp(t: float) -> np.ndarray:
    """A static photo (scikit-image 'coffee', CC0) with a patch of 'astronaut' (public domain)
    moving right-down."""
    from skimage import data

    frame = cv2.resize(data.coffee(), (200, 160))
    patch = cv2.resize(data.astronaut()[50:250, 150:350], (60, 60))
    x, y = 40 + round(t * STEP[0]), 40 + round(t * STEP[1])
    frame[y : y + 60, x : x + 60] = patch
    return frame


def _blurry(t: int) -> np.ndarray:
    """Video frame t: the linear-light mean over an exposure of 3/4 of the frame interval."""
    subs = np.stack([_sharp(t + s / 8) for s in range(-3, 4)]) / 255.0
    return np.rint(linear_mean(subs) * 255).astype(np.uint8)


def _regions(t: int):
    x, y = 40 + t * STEP[0], 40 + t * STEP[1]
    inner = np.s_[y + 10 : y + 50, x + 10 : x + 50]
    background = np.ones((160, 200), bool)
    background[y - 20 : y + 80, x - 20 : x + 80] = False
    return inner, background


def test_moving_region_gets_its_direction_and_the_background_is_static():
    prev, cur, nxt = _blurry(4), _blurry(5), _blurry(6)
    labels = napari_afb.guidance_from_neighbors(prev, cur, nxt)
    inner, background = _regions(5)
    assert labels.shape == (160, 200) and labels.dtype == np.uint8
    assert np.mean(labels[inner] == 4) > 0.95  # right-down
    assert np.mean(labels[background] == 0) > 0.95


@pytest.mark.parametrize("which", ["prev", "next"])
def test_one_neighbour_is_enough_at_the_ends_of_a_video(which):
    prev, cur, nxt = _blurry(4), _blurry(5), _blurry(6)
    labels = napari_afb.guidance_from_neighbors(
        prev if which == "prev" else None, cur, nxt if which == "next" else None
    )
    inner, _ = _regions(5)
    assert np.mean(labels[inner] == 4) > 0.95


def test_reversing_time_reverses_the_guidance():
    prev, cur, nxt = _blurry(4), _blurry(5), _blurry(6)
    labels = napari_afb.guidance_from_neighbors(nxt, cur, prev)
    inner, _ = _regions(5)
    assert np.mean(labels[inner] == 2) > 0.95  # left-up: the reversal of right-down


def test_grey_and_float_frames_and_clear_errors():
    frames = [_blurry(t)[..., 1] for t in (4, 5, 6)]
    labels = napari_afb.guidance_from_neighbors(*frames)
    inner, _ = _regions(5)
    assert np.mean(labels[inner] == 4) > 0.9
    as_float = [f / 255.0 for f in frames]
    assert np.array_equal(napari_afb.guidance_from_neighbors(*as_float), labels)
    with pytest.raises(ValueError, match="at least one neighbouring frame"):
        napari_afb.guidance_from_neighbors(None, frames[1])
    with pytest.raises(ValueError, match="same size"):
        napari_afb.guidance_from_neighbors(frames[0][:100], frames[1])


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (11, 40), (40, 11)])
def test_any_size_works(shape):
    frames = [np.full((*shape, 3), 100 + 10 * t, np.uint8) for t in range(3)]
    labels = napari_afb.guidance_from_neighbors(*frames)
    assert labels.shape == shape and labels.dtype == np.uint8


def test_no_torch_needed(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, napari_afb\n"
        "f = np.zeros((16, 16, 3), np.uint8)\n"
        "napari_afb.guidance_from_neighbors(f, f, f)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_signature_matches_the_contract():
    params = inspect.signature(napari_afb.guidance_from_neighbors).parameters
    assert list(params)[:3] == ["prev", "current", "next"]
    assert params["next"].default is None
