"""Whole-video animation: napari-afb animate / napari_afb.animate.animate_video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SMALL_ARGS, decode_video, perturbed_model

from napari_afb import cli, engine
from napari_afb.animate import animate_video
from napari_afb.flow import guidance_from_neighbors
from napari_afb.video import VideoArray
from napari_afb.weights import save_weights


@pytest.fixture
def clip(tmp_path):
    """A 6-frame 10 fps clip: a patch of 'astronaut' moving right-down over 'coffee'."""
    from skimage import data

    background = cv2.resize(data.coffee(), (64, 48))
    patch = cv2.resize(data.astronaut()[50:250, 150:350], (16, 16))
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for t in range(6):
        frame = background.copy()
        frame[10 + 2 * t : 26 + 2 * t, 10 + 3 * t : 26 + 3 * t] = patch
        writer.write(frame[..., ::-1].copy())
    writer.release()
    return path


def test_animation_has_n_times_the_frames_and_rate(tmp_path, clip):
    model = perturbed_model(0)
    out = tmp_path / "sharp.mp4"
    summary = animate_video(clip, out, model=model, device="cpu")
    frames, fps = decode_video(out)
    assert frames.shape == (6 * 7, 48, 64, 3)
    assert fps == pytest.approx(70.0)
    assert summary["frames_out"] == 42 and summary["audio"] == "not carried over"
    # The first exposure's 7 frames are video frame 0's decomposition, in time order: closer
    # to it than to the same frames reversed or to frame 1's (mp4v is lossy: ~8 levels).
    video = VideoArray(clip)
    cpu = engine.select_device("cpu")

    def decomposed(t):
        labels = guidance_from_neighbors(video[t - 1] if t else None, video[t], video[t + 1])
        return engine.run(engine.decompose_iter(video[t], labels, model=model, device=cpu))

    def err(a, b):
        return np.abs(a.astype(int) - b.astype(int)).mean()

    first, second = decomposed(0), decomposed(1)
    assert err(frames[:7], first) < 12
    assert err(frames[:7], first) < 0.7 * err(frames[:7], first[::-1])
    assert err(frames[:7], first) < 0.7 * err(frames[:7], second)
    assert err(frames[7:14], second) < err(frames[7:14], first)
    assert not list(tmp_path.glob(".*partial*"))


def test_cancel_leaves_no_output(tmp_path, clip):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    out = tmp_path / "sharp.mp4"
    with pytest.raises(engine.Cancelled):
        animate_video(clip, out, model=perturbed_model(0), device="cpu", cancel=cancel)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["clip.avi"]


def test_cli_animate_refuses_to_overwrite_and_writes_when_asked(tmp_path, clip, capsys):
    weights = save_weights(
        perturbed_model(0),
        tmp_path / "w.safetensors",
        architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )
    out = tmp_path / "sharp.mp4"
    out.write_bytes(b"keep me")
    argv = ["animate", str(clip), "--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert cli.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert cli.main([*argv, "--overwrite"]) == 0
    assert "42 frames at 70 fps" in capsys.readouterr().out
    assert decode_video(out)[0].shape[0] == 42


def test_cli_animate_bad_input(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    code = cli.main(
        [
            "animate",
            str(bad),
            "--out",
            str(tmp_path / "o.mp4"),
            "--device",
            "cpu",
            "--weights",
            str(tmp_path / "missing.safetensors"),
        ]
    )
    assert code == 2
    assert "napari-afb: error" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_animation_with_predicted_guidance(tmp_path, clip):
    from conftest import PREDICTOR_ARGS, perturbed_predictor

    predictor = save_weights(
        perturbed_predictor(0), tmp_path / "p.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )  # fmt: skip
    out = tmp_path / "sharp.mp4"
    summary = animate_video(
        clip, out, model=perturbed_model(0), device="cpu", guidance="predict",
        predictor_weights=predictor,
    )  # fmt: skip
    frames, _ = decode_video(out)
    assert frames.shape == (42, 48, 64, 3) and summary["guidance"] == "predict"
    with pytest.raises(ValueError, match="guidance must be one of"):
        animate_video(clip, tmp_path / "x.mp4", model=perturbed_model(0), guidance="paint")
    assert not (tmp_path / "x.mp4").exists()


def test_predicted_guidance_continues_the_previous_frames_direction():
    from napari_afb.animate import _continuing

    previous = np.full((4, 4), 4, np.uint8)
    samples = np.stack([np.full((4, 4), 2, np.uint8), np.full((4, 4), 4, np.uint8)])
    assert (_continuing(samples, None) == 2).all()  # the first frame: the most plausible
    assert (_continuing(samples, previous) == 4).all()  # later: the one continuing the motion
    static = np.zeros((4, 4), np.uint8)
    assert (_continuing(samples, static) == 2).all()  # nothing to continue: most plausible
