"""Blur paths from a video's neighbouring frames, and the kernel engine's `animate`."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from napari_afb import cli
from napari_afb.kernel.video import blur_paths_from_neighbors, paths_from_motion
from napari_afb.samples import linear_mean

STEP = np.array([6.0, -2.0])  # the whole scene moves right and up by this much per frame


def _sharp(t: float) -> np.ndarray:
    from skimage import data

    big = data.astronaut()
    m = np.array([[1, 0, 40 + t * STEP[0]], [0, 1, 40 + t * STEP[1]]])
    return cv2.warpAffine(big, m, (200, 160), flags=cv2.INTER_LINEAR)


def _blurry(t: int, shutter: float) -> np.ndarray:
    """Frame t of a panning camera: the mean over ``shutter`` of the frame interval."""
    subs = np.stack([_sharp(t + shutter * (s / 16 - 0.5)) for s in range(17)]) / 255.0
    return np.rint(linear_mean(subs) * 255).astype(np.uint8)


@pytest.mark.parametrize("shutter", [0.5, 1.0])
def test_a_panning_camera_gives_one_path_along_its_motion(shutter):
    paths, labels = blur_paths_from_neighbors(
        _blurry(3, shutter), _blurry(4, shutter), _blurry(5, shutter), shutter=shutter
    )
    assert len(paths) == 1 and paths[0].source == "video"
    d = paths[0].direction()  # time runs with the motion
    assert np.allclose(d, STEP * shutter, atol=1.0), d
    assert np.mean(labels == 1) > 0.9  # right-up


def test_auto_shutter_takes_a_length_that_does_not_ring():
    prev, cur, nxt = (_blurry(t, 0.5) for t in (3, 4, 5))
    paths, _ = blur_paths_from_neighbors(prev, cur, nxt)  # shutter "auto"
    length = paths[0].extent()
    assert 0.5 * np.hypot(*STEP) * 0.5 <= length <= np.hypot(*STEP) * 0.5 * 1.3, length


def test_still_scenes_and_bad_shutters():
    still = np.zeros((40, 50, 2), np.float32)
    paths, labels = paths_from_motion(still, shutter=0.5)
    assert paths == [] and not labels.any()
    with pytest.raises(ValueError, match="fraction of the frame interval"):
        paths_from_motion(still, shutter=1.5)


def test_cli_animates_a_clip_with_the_kernel_engine(tmp_path, capsys):
    path = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 160))
    for t in range(4):
        writer.write(_blurry(t, 1.0)[..., ::-1].copy())
    writer.release()
    out = tmp_path / "sharp.avi"
    assert cli.main(["animate", str(path), "--out", str(out), "--shutter", "1"]) == 0
    said = capsys.readouterr().out
    assert "kernel engine" in said and "28 frames at 10 fps" in said
    cap = cv2.VideoCapture(str(out))
    frames = []
    while (ok := cap.read())[0]:
        frames.append(ok[1])
    assert len(frames) == 28
    # the first and last of a video frame's 7 frames differ: the scene moved during the exposure
    assert np.abs(frames[7].astype(int) - frames[13]).mean() > 3


@pytest.mark.parametrize("source", ["video", "drawn"])
def test_parts_of_a_video_region_that_ring_keep_the_input(source):
    """A region measured as moving 14 px whose right half did not move: deconvolved along the
    video's path, the still half rings, and keeps the input; the moving half is deblurred. A
    drawn path is the user's to judge: their result is kept whole."""
    from skimage import data

    from napari_afb.jobs import run
    from napari_afb.kernel import BlurPath
    from napari_afb.kernel.decompose import decompose_iter

    sharp = data.astronaut()[100:356, 100:356].astype(np.float32) / 255
    path = BlurPath([[120, 128], [134, 128]], source=source)
    moved = np.mean([np.roll(sharp, s, axis=1) for s in range(-7, 8)], axis=0)
    img = sharp.copy()
    img[:, :128] = moved[:, :128]
    u8 = np.rint(img * 255).astype(np.uint8)
    res = run(decompose_iter(u8, np.ones((256, 256), np.uint8), [path]))
    kept = np.all(np.asarray(res.frames)[3] == u8, axis=-1)
    assert res.applied == [True]
    assert kept[:, 20:108].mean() < 0.2, kept[:, 20:108].mean()
    if source == "video":
        assert kept[:, 148:236].mean() > 0.6, kept[:, 148:236].mean()
        assert "rang in parts that moved otherwise" in " ".join(res.notes)
    else:
        assert kept[:, 148:236].mean() < 0.2
