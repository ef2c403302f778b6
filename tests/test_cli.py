"""The ``napari-afb`` command line: outputs, exit codes, messages, and all-or-nothing writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_ARGS, perturbed_model
from PIL import Image
from skimage import data

import napari_afb
from napari_afb import api, cli, io
from napari_afb.weights import save_weights

SCRIPT = Path(sys.executable).with_name("napari-afb")


@pytest.fixture
def weights_file(tmp_path):
    return save_weights(
        perturbed_model(0),
        tmp_path / "models" / "small.safetensors",
        architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )


@pytest.fixture
def clock_png(tmp_path):
    """The real motion-blurred photo (scikit-image 'clock'), grey 300x400, as a PNG."""
    path = tmp_path / "clock.png"
    io.write_png(path, data.clock())
    return path


def _small_clock() -> np.ndarray:
    return np.ascontiguousarray(data.clock()[100:196, 130:258])  # 96 x 128 grey uint8


@pytest.fixture
def small_png(tmp_path):
    path = tmp_path / "small.png"
    io.write_png(path, _small_clock())
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected(image, guidance, weights):
    return api.decompose(image, guidance, weights=weights, device="cpu")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


FRAME_NAMES = [f"frame_{t:02d}.png" for t in range(7)]


# ------------------------------------------------------------------------------------------
# Successful runs


def test_decompose_clock_with_direction(tmp_path, capsys, clock_png, weights_file):
    out = tmp_path / "out"
    code, stdout, _ = run(
        capsys, "decompose", clock_png, "--direction", "right-up", "--out", out,
        "--weights", weights_file, "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*FRAME_NAMES, "animation.gif", "guidance.png"]
    )
    assert "wrote 7 frames (400x300)" in stdout

    clock = data.clock()
    frames = np.stack([io.read_image(out / name) for name in FRAME_NAMES])
    assert frames.shape == (7, 300, 400)  # grey in, grey out
    assert frames.dtype == np.uint8
    expected = _expected(clock, np.full(clock.shape, 1, np.uint8), weights_file)
    np.testing.assert_array_equal(frames, expected)
    assert np.abs(frames.astype(int) - clock).mean() > 2  # the model did something

    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 12  # 7 forward + 5 back
        assert gif.size == (400, 300)
        assert gif.info["duration"] == 100  # --fps default 10
    guide = io.read_image(out / "guidance.png")
    assert guide.shape == (300, 400, 3)
    assert (guide == guide[0, 0]).all() and tuple(guide[0, 0]) == (255, 0, 0)  # right-up: red
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("kind", ["npy", "png"])
def test_decompose_with_guidance_file(tmp_path, capsys, small_png, weights_file, kind):
    labels = np.random.default_rng(7).integers(0, 5, (96, 128), dtype=np.uint8)
    gpath = tmp_path / f"guide.{kind}"
    if kind == "npy":
        np.save(gpath, labels)
    else:
        io.write_png(gpath, labels)  # single-channel label map
    out = tmp_path / "out"
    code, _, _ = run(
        capsys, "decompose", small_png, "--guidance", gpath, "--out", out,
        "--weights", weights_file, "--device", "cpu", "--fps", "4",
    )  # fmt: skip
    assert code == 0
    frames = np.stack([io.read_image(out / name) for name in FRAME_NAMES])
    np.testing.assert_array_equal(frames, _expected(_small_clock(), labels, weights_file))
    np.testing.assert_array_equal(io.read_image(out / "guidance.png"), io.guidance_rgb(labels))
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 12
        assert gif.info["duration"] == 250


def test_decompose_16_bit_rgb(tmp_path, capsys, rgb_image, weights_file):
    rgb = np.ascontiguousarray(rgb_image[:80, :112])
    noise = np.random.default_rng(0).integers(0, 256, rgb.shape)
    img16 = (rgb.astype(np.uint16) * 256 + noise).astype(np.uint16)
    src = tmp_path / "deep.png"
    io.write_png(src, img16)
    out = tmp_path / "out"
    code, _, _ = run(
        capsys, "decompose", src, "--direction", "left-down", "--out", out,
        "--weights", weights_file, "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    frames = np.stack([io.read_image(out / name) for name in FRAME_NAMES])
    assert frames.dtype == np.uint16
    assert frames.shape == (7, 80, 112, 3)
    assert (frames % 256 != 0).any()  # really 16-bit values, not 8-bit ones scaled up
    expected = _expected(img16, np.full((80, 112), 3, np.uint8), weights_file)
    np.testing.assert_array_equal(frames, expected)
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 12


def test_existing_output_is_refused_then_overwritten(tmp_path, capsys, small_png, weights_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["decompose", small_png, "--direction", "left-up", "--out", out,
            "--weights", weights_file, "--device", "cpu"]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "already exists" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"

    code, _, _ = run(capsys, *argv, "--overwrite")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*FRAME_NAMES, "animation.gif", "guidance.png"]
    )
    assert _hidden(tmp_path) == []


def test_info_prints_the_metadata(capsys, weights_file):
    code, stdout, _ = run(capsys, "info", weights_file)
    assert code == 0
    info = json.loads(stdout)
    assert info["architecture"] == "motion_unet"
    assert info["arch_args"] == SMALL_ARGS
    assert info["role"] == "decomposer"
    assert info["n_frames"] == 7
    assert len(info["sha256"]) == 64


def test_info_on_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code, stdout, err = run(capsys, "info", bad)
    assert code == 2
    assert stdout == ""
    assert "not a readable safetensors file" in err


def test_demo_writes_scores(tmp_path, capsys, weights_file):
    out = tmp_path / "demo"
    code, stdout, _ = run(
        capsys, "demo", "--out", out, "--weights", weights_file, "--device", "cpu"
    )
    assert code == 0
    assert "weights: small.safetensors [motion_unet" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"blurry.png", "guidance.png", "animation.gif", "truth.gif", "scores.json"} <= names
    assert set(FRAME_NAMES) <= names
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 3
    for name, value in scores.items():
        assert isinstance(value, float), name
        assert not math.isnan(value), name
        assert value > 0, name  # a PSNR in dB (inf for an exact match)
        assert f"{value:7.2f}" in stdout  # the same numbers are printed
    assert _hidden(tmp_path) == []


# ------------------------------------------------------------------------------------------
# Bad input: exit 2, a message, and no output folder


def _write_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    io.write_png(path, _small_clock())
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _write_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_small_clock()).save(path, quality=95)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _write_junk_png(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path


def _guidance(tmp_path, name, array):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, array)
    else:
        io.write_png(path, array)
    return ["--guidance", path]


def _wrong_size(tmp_path):
    return _guidance(tmp_path, "g.npy", np.zeros((50, 60), np.uint8))


def _seven(tmp_path):
    labels = np.ones((96, 128), np.uint8)
    labels[10, 20] = 7
    return _guidance(tmp_path, "g7.png", labels)


def _colour(tmp_path):
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[:, :64] = (255, 0, 0)
    return _guidance(tmp_path, "colour.png", rgb)


DIRECTION = ["--direction", "right-down"]
BAD_INPUTS = {
    # name: (input maker, extra args maker, expected message pieces)
    "missing input": (
        lambda p: p / "nowhere.png",
        lambda p: DIRECTION,
        ["no such file", "nowhere"],
    ),
    "random bytes": (_write_junk_png, lambda p: DIRECTION, ["cannot read", "junk.png"]),
    "truncated png": (_write_truncated_png, lambda p: DIRECTION, ["cut.png", "truncated"]),
    "truncated jpeg": (_write_truncated_jpeg, lambda p: DIRECTION, ["cut.jpg", "truncated"]),
    "guidance size": (None, _wrong_size, ["50x60", "96x128"]),
    "guidance value 7": (None, _seven, ["g7.png", "0-4, found [7]"]),
    "guidance in colour": (None, _colour, ["colour image", "single-channel"]),
    "bad device": (None, lambda p: [*DIRECTION, "--device", "tpu9"], ["unknown device", "tpu9"]),
    "missing weights": (
        None,
        lambda p: [*DIRECTION, "--weights", p / "gone.safetensors"],
        ["weights file not found", "gone.safetensors"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, weights_file, small_png, case):
    make_input, make_extra, pieces = BAD_INPUTS[case]
    src = make_input(tmp_path) if make_input else small_png
    extra = make_extra(tmp_path)
    if "--weights" not in extra:
        extra = [*extra, "--weights", weights_file]
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "decompose", src, "--out", out, *extra)
    assert code == 2
    assert err.startswith("napari-afb: error: ")
    for piece in pieces:
        assert piece in err
    assert "Traceback" not in err
    assert not out.exists()
    assert _hidden(tmp_path) == []


def test_no_guidance_and_no_predictor_exits_2_and_writes_nothing(
    capsys, small_png, tmp_path, weights_file, monkeypatch
):
    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    out = tmp_path / "out"
    code, _, err = run(
        capsys, "decompose", small_png, "--out", out, "--weights", weights_file, "--device", "cpu",
        "--predictor", tmp_path / "missing.safetensors",
    )  # fmt: skip
    assert code == 2 and "predictor weights file not found" in err
    assert not out.exists()


def test_decompose_with_predicted_guidance(capsys, small_png, tmp_path, weights_file):
    from conftest import PREDICTOR_ARGS, perturbed_predictor

    from napari_afb.predict import predict_guidance

    predictor = save_weights(
        perturbed_predictor(0), tmp_path / "p.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )  # fmt: skip
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "decompose", small_png, "--out", out, "--weights", weights_file, "--device", "cpu",
        "--predictor", predictor, "--seed", "4",
    )  # fmt: skip
    assert code == 0, err
    assert "most plausible sample" in stdout
    image = io.read_image(small_png)
    expected = predict_guidance(image, 1, seed=4, weights=predictor, device="cpu")[0]
    assert np.array_equal(io.read_image(out / "guidance.png"), io.guidance_rgb(expected))
    frames = _expected(image, expected, weights_file)
    assert np.array_equal(io.read_image(out / "frame_00.png"), frames[0])


def test_usage_errors_exit_2(capsys, small_png, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["decompose", str(small_png), "--guidance", "g.npy", "--direction", "right-up"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err  # --guidance or --direction, not both
    with pytest.raises(SystemExit) as exc:
        cli.main(["decompose", str(small_png), "--direction", "sideways", "--out", "x"])
    assert exc.value.code == 2
    assert "right-up" in capsys.readouterr().err  # lists the valid names
    assert not (tmp_path / "out").exists()


def test_fps_zero_is_bad_input(tmp_path, capsys, small_png, weights_file):
    out = tmp_path / "out"
    try:
        code, _, err = run(
            capsys, "decompose", small_png, "--direction", "right-up", "--out", out,
            "--weights", weights_file, "--device", "cpu", "--fps", "0",
        )  # fmt: skip
    except SystemExit as exc:  # an argparse refusal is fine too
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    assert "fps" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# Interruptions and failures leave nothing behind


def test_interrupt_during_decompose(tmp_path, capsys, small_png, weights_file, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "decompose", interrupted)
    out = tmp_path / "out"
    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", out,
        "--weights", weights_file, "--device", "cpu",
    )  # fmt: skip
    assert code == 130
    assert "interrupted" in err and "nothing was written" in err
    assert not out.exists()
    assert _hidden(tmp_path) == []


def test_interrupt_while_writing(tmp_path, capsys, small_png, weights_file, monkeypatch):
    def interrupted(path, frames, **kwargs):
        assert len(list(Path(path).parent.glob("frame_*.png"))) == 7  # frames already written
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_gif", interrupted)
    out = tmp_path / "out"
    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", out,
        "--weights", weights_file, "--device", "cpu",
    )  # fmt: skip
    assert code == 130
    assert not out.exists()
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_write_leaves_nothing(
    tmp_path, capsys, small_png, weights_file, monkeypatch, existing
):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "frame_00.png").write_bytes(b"previous run")
    calls = []

    def disk_full(path, frames, **kwargs):
        calls.append(sorted(p.name for p in Path(path).parent.iterdir()))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "write_gif", disk_full)
    argv = ["decompose", small_png, "--direction", "right-up", "--out", out,
            "--weights", weights_file, "--device", "cpu", "--overwrite"]  # fmt: skip
    code = cli.main([str(a) for a in argv])
    assert code == 1  # a failure while running, with a one-line message, no traceback
    assert "No space left on device" in capsys.readouterr().err
    assert calls == [FRAME_NAMES]  # it failed after the frames were written
    if existing:
        assert [p.name for p in out.iterdir()] == ["frame_00.png"]
        assert (out / "frame_00.png").read_bytes() == b"previous run"
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert _hidden(tmp_path) == []


# ------------------------------------------------------------------------------------------
# The installed console script


def test_console_script(tmp_path, clock_png):
    assert SCRIPT.is_file(), f"console script not installed at {SCRIPT}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAPARI_AFB_")}
    res = subprocess.run(
        [SCRIPT, "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0
    assert res.stdout.strip() == f"napari-afb {napari_afb.__version__}"

    packaged = Path(napari_afb.__file__).parent / "weights" / "decomposer.safetensors"
    if packaged.is_file():
        pytest.skip("default weights ship now; the no-weights message no longer applies")
    out = tmp_path / "out"
    res = subprocess.run(
        [SCRIPT, "decompose", clock_png, "--direction", "right-up", "--out", out],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2
    assert "NAPARI_AFB_WEIGHTS" in res.stderr
    assert "no trained default" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_an_image_too_large_to_decode_exits_2_with_a_message(capsys, tmp_path):
    from test_reader import huge_png

    code, _, err = run(
        capsys,
        "decompose",
        huge_png(tmp_path / "huge.png"),
        "--out",
        tmp_path / "o",
        "--direction",
        "right-up",
    )
    assert code == 2
    assert "claims 100000 x 100000 px" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------
# What the terminal shows: the progress bar, and messages in the command line's own words


def test_progress_bar_first_rate_is_measured(tmp_path, capsys, small_png, weights_file):
    """The bar was made when the first tile had already finished, and its first reading was
    1 tile in no time: '1/20 [00:00<00:00, 102300.12tile/s]'."""
    from test_engine import _bar_rates

    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", tmp_path / "o",
        "--weights", weights_file, "--device", "cpu", "--tile", "40", "--overlap", "16",
    )  # fmt: skip
    assert code == 0, err
    readings = [r for r in err.split("\r") if "tile" in r]
    assert "20/20" in readings[-1]  # 4 x 5 tiles of 40 px over the 96 x 128 image
    rates = _bar_rates(err)
    assert len(rates) >= 2, err
    first, overall = rates[0], rates[-1]
    assert first < 10 * overall, readings[:3]  # the same work per tile: the same order of rate


def test_a_tile_too_small_is_refused_with_the_value_given(
    tmp_path, capsys, small_png, weights_file
):
    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", tmp_path / "o",
        "--weights", weights_file, "--device", "cpu", "--tile", "7",
    )  # fmt: skip
    assert code == 2
    # the 7 asked for (not the 8 px it was rounded up to), and what is allowed, as flags; the
    # test model's stride is 4: twice the default 128-px overlap plus 4
    assert err.startswith("napari-afb: error: --tile 7 is too small")
    assert "(8 px)" not in err and "tile=" not in err
    assert "--tile 260 or more" in err and "--tile 0" in err and "--overlap" in err
    assert "multiple of 4" in err
    assert not (tmp_path / "o").exists()


def test_an_unavailable_cuda_names_the_flag(tmp_path, capsys, small_png, weights_file, monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only build, also on a GPU machine
    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", tmp_path / "o",
        "--weights", weights_file, "--device", "cuda",
    )  # fmt: skip
    assert code == 2
    assert "--device cuda asked for" in err and "built without CUDA" in err
    assert "use --device cpu" in err and "device='cpu'" not in err


def test_out_of_memory_at_the_smallest_tile_names_the_flags(
    tmp_path, capsys, small_png, weights_file, monkeypatch
):
    import torch

    class Never(torch.nn.Module):
        n_frames, stride = 7, 8

        def forward(self, x, g):
            raise torch.OutOfMemoryError("CUDA out of memory.")

    def decompose(image, guidance, **kw):
        from napari_afb import engine

        cpu = torch.device("cpu")  # 64-px tiles: the smallest the engine tries, no retry
        gen = engine.decompose_iter(image, guidance, model=Never(), device=cpu, tile=64, overlap=16)
        return engine.run(gen)

    monkeypatch.setattr(api, "decompose", decompose)
    code, _, err = run(
        capsys, "decompose", small_png, "--direction", "right-up", "--out", tmp_path / "o",
        "--weights", weights_file, "--device", "cpu",
    )  # fmt: skip
    assert code == 1
    assert "even with 64-px tiles" in err and "--device cpu" in err and "--overlap" in err
    assert "device='cpu'" not in err and "smaller --tile" not in err  # it had the smallest


def _truncated_mp4(tmp_path) -> Path:
    import cv2

    path = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for t in range(20):
        writer.write(np.full((48, 64, 3), 10 * t, np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # mp4v puts its index (moov) at the end: gone
    return path


def _text_as_mp4(tmp_path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video, only text with a video's name\n" * 20)
    return path


def _quiet_env() -> dict:
    """The user's environment, without any OpenCV/FFmpeg log setting of ours or theirs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}


def _leaked(stderr: str) -> list[str]:
    """Lines of stderr that come from OpenCV or FFmpeg rather than from napari-afb."""
    marks = ("[mov,mp4", "moov atom", "ffmpeg", "[ warn", "videoio", "cap.cpp")
    return [line for line in stderr.splitlines() if any(m in line.lower() for m in marks)]


@pytest.mark.parametrize("make", [_truncated_mp4, _text_as_mp4], ids=["truncated", "text"])
def test_a_bad_video_shows_only_our_error(tmp_path, make):
    """FFmpeg and OpenCV print to the process's stderr from C ('[mov,mp4,...] moov atom not
    found', '[ WARN:0@0.06] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally
    available but can't be used to capture by name'); the user should see our message only."""
    path = make(tmp_path)
    res = subprocess.run(
        [SCRIPT, "inspect-data", path], capture_output=True, text=True, env=_quiet_env(),
        timeout=300,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert f"napari-afb: error: cannot read {path}" in res.stderr
    assert "not a video OpenCV can decode" in res.stderr
    assert _leaked(res.stderr) == []
    assert "Traceback" not in res.stderr


def test_a_bad_video_after_an_mp4_export_shows_no_ffmpeg_lines(tmp_path):
    """FFmpeg's log level is read once, when OpenCV first opens a capture *or a writer*: an MP4
    exported first (the napari export widget, before any video is opened) used to fix it at
    FFmpeg's default, and a bad video opened afterwards printed 'moov atom not found'."""
    bad = _text_as_mp4(tmp_path)
    script = (
        "import sys, numpy as np\n"
        "from napari_afb.export import export_frames\n"
        "export_frames(np.zeros((3, 32, 32, 3), np.uint8), sys.argv[1])\n"
        "from napari_afb.video import VideoArray\n"
        "from napari_afb.io import InputError\n"
        "try:\n"
        "    VideoArray(sys.argv[2])\n"
        "except InputError as exc:\n"
        "    print('refused:', exc)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script, tmp_path / "first.mp4", bad], capture_output=True,
        text=True, env=_quiet_env(), timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "refused: cannot read" in res.stdout
    assert _leaked(res.stderr) == [] and res.stderr.strip() == ""
