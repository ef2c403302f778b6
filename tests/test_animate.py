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
    summary = animate_video(clip, out, model=model, device="cpu", speed="real")
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
    assert "42 frames at 10 fps (slow motion)" in capsys.readouterr().out
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


# -- a range of frames, stills refused, SIGTERM, --help ------------------------------------------


def _decomposed(video, t, model, *, prev=True):
    """Video frame t's decomposition with guidance from its neighbours (``prev`` False: as if
    it had no previous frame), as the engine gives it."""
    before = video[t - 1] if t and prev else None
    after = video[t + 1] if t + 1 < len(video) else None
    labels = guidance_from_neighbors(before, video[t], after)
    cpu = engine.select_device("cpu")
    return engine.run(engine.decompose_iter(video[t], labels, model=model, device=cpu))


def _err(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


def _weights(tmp_path):
    return save_weights(
        perturbed_model(0), tmp_path / "w.safetensors", architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )  # fmt: skip


def test_animate_a_range_of_frames_uses_their_real_neighbours(tmp_path, clip, monkeypatch):
    import napari_afb.animate as animate_module

    calls = []  # (previous, current, next) of each guidance computed

    def spy(prev, cur, nxt):
        calls.append((prev, cur, nxt))
        return guidance_from_neighbors(prev, cur, nxt)

    monkeypatch.setattr(animate_module, "guidance_from_neighbors", spy)
    model = perturbed_model(0)
    out = tmp_path / "range.mp4"
    summary = animate_video(clip, out, model=model, device="cpu", start=2, stop=4)
    frames, fps = decode_video(out)
    assert frames.shape == (2 * 7, 48, 64, 3)
    assert fps == pytest.approx(10.0)  # slow motion by default: the source's rate
    assert summary["first"] == 2 and summary["stop"] == 4
    assert summary["frames_in"] == 2 and summary["frames_out"] == 14
    video = VideoArray(clip)
    # frame 2's guidance comes from frames 1 (outside the range) and 3; frame 3's from 2 and 4
    assert len(calls) == 2
    for (prev, cur, nxt), t in zip(calls, (2, 3)):
        assert prev is not None and nxt is not None
        assert np.array_equal(prev, video[t - 1]) and np.array_equal(cur, video[t])
        assert np.array_equal(nxt, video[t + 1])
    two, three = _decomposed(video, 2, model), _decomposed(video, 3, model)
    assert err_ok(frames[:7], two, [two[::-1], _decomposed(video, 0, model), three])
    assert err_ok(frames[7:14], three, [two, three[::-1]])
    # where frame 1's part in the guidance matters, the output follows it: closer to frame 2
    # with both neighbours than to frame 2 as if it had none before it (mp4v's loss: ~12)
    alone = _decomposed(video, 2, model, prev=False)
    differs = np.abs(two.astype(int) - alone.astype(int)) > 15
    assert differs.sum() > 100
    near = np.abs(frames[:7].astype(int) - two)[differs].mean()
    assert near < 0.7 * np.abs(frames[:7].astype(int) - alone)[differs].mean()
    assert not list(tmp_path.glob(".*partial*"))


def err_ok(got, expected, others):
    """``got`` is ``expected`` up to mp4v's loss, and clearly closer to it than to ``others``."""
    e = _err(got, expected)
    assert e < 12, e
    for other in others:
        assert e < 0.7 * _err(got, other), (e, _err(got, other))
    return True


@pytest.mark.parametrize(
    ("start", "stop", "message"),
    [
        (6, None, "start frame 6 is outside the video's frames 0..5"),
        (9, 10, "start frame 9 is outside"),
        (-1, None, "start frame -1 is outside"),
        (3, 3, r"stop frame 3 must be after the start frame \(3\)"),
        (3, 2, r"stop frame 2 must be after the start frame \(3\)"),
        (None, 7, r"stop frame 7 must be .* at most 6 \(the video's length"),
        (2, 7, r"stop frame 7 must be .* at most 6"),
    ],
)
def test_animate_refuses_a_bad_range_and_writes_nothing(tmp_path, clip, start, stop, message):
    out = tmp_path / "sharp.mp4"
    with pytest.raises(ValueError, match=message):
        animate_video(clip, out, model=perturbed_model(0), device="cpu", start=start, stop=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_cli_animate_a_range(tmp_path, clip, capsys):
    weights = _weights(tmp_path)
    out = tmp_path / "range.mp4"
    argv = ["animate", str(clip), "--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert cli.main([*argv, "--start", "1", "--stop", "3"]) == 0
    printed = capsys.readouterr().out
    assert "2 frames (1 to 2) at 10 fps -> 14 frames at 10 fps" in printed, printed
    assert decode_video(out)[0].shape[0] == 14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "range.mp4", "w.safetensors"]
    # a bad range from the command line: exit 2, the problem named, nothing written
    bad = tmp_path / "bad.mp4"
    argv = ["animate", str(clip), "--out", str(bad), "--weights", str(weights), "--device", "cpu"]
    assert cli.main([*argv, "--start", "4", "--stop", "4"]) == 2
    assert "stop frame 4 must be after the start frame (4)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "range.mp4", "w.safetensors"]


@pytest.mark.parametrize("name", ["still.jpg", "STILL.JPEG"])
def test_cli_animate_refuses_a_still_image(tmp_path, clip, capsys, name):
    from skimage import data

    still = tmp_path / name
    assert cv2.imwrite(str(still), cv2.resize(data.coffee(), (64, 48))[..., ::-1].copy())
    weights = _weights(tmp_path)
    out = tmp_path / "sharp.mp4"
    argv = ["animate", str(still), "--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "still image" in err and "napari-afb decompose" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["clip.avi", name, "w.safetensors"])
    with pytest.raises(ValueError, match="still image"):  # the Python API too
        animate_video(still, out, model=perturbed_model(0), device="cpu")
    assert not out.exists()


def test_an_error_outside_the_run_removes_the_partial_output_at_once(tmp_path, clip):
    """An exception from the progress callback (as from a signal handler) closes the job's
    generator in engine.run: the hidden partial file is gone while the exception is still
    being handled, not only once the generator is garbage-collected."""

    class Stop(Exception):
        pass

    seen = []

    def progress(p):
        if p.total and p.done:
            seen.append(sorted(x.name for x in tmp_path.glob(".*partial*")))
            raise Stop

    out = tmp_path / "sharp.mp4"
    with pytest.raises(Stop) as info:
        animate_video(clip, out, model=perturbed_model(0), device="cpu", progress=progress)
    assert len(seen) == 1 and len(seen[0]) == 1  # the partial file existed mid-run
    assert info.traceback  # (the traceback, and so the generator's frames, still held)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


@pytest.mark.slow
def test_cli_animate_sigterm_removes_the_partial_output(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    n = 300  # long enough that the run is far from done when it is killed
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    clip = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for t in range(n):
        frame = background.copy()
        frame[10:26, (2 * t) % 48 : (2 * t) % 48 + 16] = 255
        writer.write(frame)
    writer.release()
    weights = _weights(tmp_path)
    out = tmp_path / "sharp.mp4"
    log = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "napari_afb", "animate", str(clip), "--out", str(out),
           "--weights", str(weights), "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "TQDM_MININTERVAL": "0", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 120
        done = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.findall(rf"\b(\d+)/{n}\b", log.read_text(errors="replace"))
            if found and int(found[-1]) >= 1:
                done = int(found[-1])
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"ended before SIGTERM: {log.read_text(errors='replace')}"
        assert done is not None and done < n, log.read_text(errors="replace")
        assert len(list(tmp_path.glob(f".{out.name}.{proc.pid}.partial.mp4"))) == 1
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = log.read_text(errors="replace")
    assert code == 143, said  # SystemExit(128 + SIGTERM) from the CLI's handler
    assert not re.search(rf"\b{n}/{n}\b", said)  # killed mid-way
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "long.avi", "stderr.txt", "w.safetensors"
    ]  # fmt: skip


def test_cli_animate_help_names_avi_and_the_range(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        cli.main(["animate", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert ".avi" in text and ".mp4" in text
    assert "--start N" in text and "--stop M" in text
    assert "not including it" in text  # stop is exclusive
