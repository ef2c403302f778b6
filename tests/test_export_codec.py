"""MP4 codec, playback speed and destination folders of exports and animations (issue 23, items 7
and 8): H.264 yuv420p where PyAV is installed, MPEG-4 Part 2 otherwise, and always said which;
slow motion (the source's rate) by default, real time on request; a missing folder is refused
and not created, an unwritable target is reported with the user's own path, nothing is left."""

from __future__ import annotations

import errno
import os

import cv2
import numpy as np
import pytest
from conftest import SMALL_ARGS, decode_video, perturbed_model

from napari_afb import cli, export
from napari_afb.animate import animate_video
from napari_afb.export import export_frames, write_frames
from napari_afb.weights import save_weights

needs_h264 = pytest.mark.skipif(
    not export.h264_available(), reason="PyAV with libx264 is not installed"
)


def _frames(n=5, h=33, w=47) -> np.ndarray:
    from skimage import data

    photo = data.astronaut()
    return np.stack([photo[100 : 100 + h, 150 + 3 * i : 150 + 3 * i + w] for i in range(n)])


def _stream(path) -> tuple[str, str, float, int]:
    """(codec, pixel format, frame rate, frames) as FFmpeg (PyAV) reads them from the file."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        n = sum(1 for _ in container.decode(s))
        return s.codec_context.name, s.codec_context.pix_fmt, float(s.average_rate), n


@needs_h264
def test_mp4_is_h264_yuv420p_and_says_so(tmp_path):
    done = write_frames(_frames(), tmp_path / "v.mp4", fps=12)
    assert done.codec == "H.264" and done.format == "MP4" and done.frames == 5
    codec, pix_fmt, fps, n = _stream(done.path)
    assert (codec, pix_fmt, n) == ("h264", "yuv420p", 5)
    assert fps == pytest.approx(12)
    frames, cv_fps = decode_video(done.path)  # OpenCV (what the reader uses) plays it too
    assert frames.shape == (5, 34, 48, 3) and cv_fps == pytest.approx(12)
    # a good quality: close to the (padded) input
    assert np.abs(frames[:, :33, :47].astype(int) - _frames().astype(int)).mean() < 12


def test_without_pyav_mp4_falls_back_to_mpeg4_part2_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "h264_available", lambda: False)
    done = write_frames(_frames(), tmp_path / "v.mp4", fps=10)
    assert done.codec == "MPEG-4 Part 2"
    assert _stream(done.path)[0] == "mpeg4"  # MPEG-4 Part 2 (FourCC FMP4 / mp4v)
    assert decode_video(done.path)[0].shape[0] == 5


def test_other_formats_report_their_format(tmp_path):
    assert write_frames(_frames(), tmp_path / "a.gif").codec == "GIF"
    assert write_frames(_frames(), tmp_path / "a.tif").codec == "TIFF"
    assert write_frames(_frames(), tmp_path / "b.gif", bounce=True).frames == 8


@pytest.mark.parametrize("name", ["out.gif", "out.mp4", "out.tif"])
def test_a_missing_folder_is_refused_not_created(tmp_path, name):
    target = tmp_path / "nonexistent_dir" / "sub" / name
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        export_frames(_frames(), target)
    assert str(target) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        export_frames(_frames(), tmp_path / "f" / "out.gif")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("name", ["out.gif", "out.mp4"])
def test_an_unwritable_target_names_the_users_path_and_leaves_nothing(
    tmp_path, monkeypatch, name
):
    """The rename into place fails (as on a read-only target): the message names out.gif,
    not the temporary file, and the temporary file is gone."""

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(export.os, "replace", refuse)
    target = tmp_path / name
    with pytest.raises(PermissionError) as info:
        export_frames(_frames(), target)
    message = str(info.value)
    assert str(target) in message and ".partial" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_writing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable") as info:
            export_frames(_frames(), folder / "out.gif")
        assert str(folder / "out.gif") in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# -- animation: slow motion by default, real time on request, the codec said --------------------


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    rng = np.random.default_rng(1)
    for _ in range(3):
        writer.write((rng.random((24, 32, 3)) * 255).astype(np.uint8))
    writer.release()
    return path


def test_animation_is_slow_motion_by_default_and_real_time_on_request(tmp_path, clip):
    model = perturbed_model(0)
    slow = animate_video(clip, tmp_path / "slow.mp4", model=model, device="cpu")
    real = animate_video(clip, tmp_path / "real.mp4", model=model, device="cpu", speed="real")
    assert (slow["fps_out"], slow["speed"]) == (10, "slow motion")
    assert (real["fps_out"], real["speed"]) == (70, "real time")
    for summary, path, fps in [(slow, "slow.mp4", 10), (real, "real.mp4", 70)]:
        frames, read_fps = decode_video(tmp_path / path)
        assert frames.shape[0] == 21 and read_fps == pytest.approx(fps)
        assert summary["codec"] == ("H.264" if export.h264_available() else "MPEG-4 Part 2")
    with pytest.raises(ValueError, match="speed"):
        animate_video(clip, tmp_path / "x.mp4", model=model, device="cpu", speed="fast")


def test_animation_into_a_missing_folder_is_refused(tmp_path, clip):
    out = tmp_path / "nope" / "a.mp4"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        animate_video(clip, out, model=perturbed_model(0), device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_cli_animate_speed_and_codec(tmp_path, clip, capsys):
    w = save_weights(
        perturbed_model(0), tmp_path / "w.safetensors", architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )  # fmt: skip
    out = tmp_path / "a.mp4"
    argv = ["animate", str(clip), "--out", str(out), "--weights", str(w), "--device", "cpu"]
    assert cli.main([*argv, "--speed", "real"]) == 0
    printed = capsys.readouterr().out
    codec = "H.264" if export.h264_available() else "MPEG-4 Part 2"
    assert "21 frames at 70 fps (real time)" in printed and f"codec {codec}" in printed
    assert decode_video(out)[1] == pytest.approx(70)
