"""Exporting frames as GIF, MP4 and TIFF (files the tests write themselves), and the npe2 writer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile
from conftest import decode_video
from PIL import Image
from skimage import data

from napari_afb import export
from napari_afb._writer import write_frames
from napari_afb.export import export_frames


def _moving_frames(h: int = 61, w: int = 83, n: int = 7) -> np.ndarray:
    """(n, h, w, 3) uint8: a window sliding right over a real photo, 6 px per frame."""
    photo = data.astronaut()
    return np.stack([photo[100 : 100 + h, 150 + 6 * i : 150 + 6 * i + w] for i in range(n)])


def _to16(frames: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).integers(0, 256, frames.shape)
    return (frames.astype(np.uint16) * 256 + noise).astype(np.uint16)


def _read_gif(path) -> tuple[list[np.ndarray], list[int]]:
    frames, durations = [], []
    with Image.open(path) as im:
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")).copy())
            durations.append(im.info["duration"])
    return frames, durations


def _nearest(frame: np.ndarray, originals: np.ndarray) -> int:
    errors = [np.abs(frame.astype(float) - o).mean() for o in originals]
    return int(np.argmin(errors))


def test_gif_plays_the_frames_in_order_at_the_frame_rate(tmp_path):
    frames = _moving_frames()
    out = export_frames(frames, tmp_path / "anim.gif", fps=20)
    assert out == tmp_path / "anim.gif"
    read, durations = _read_gif(out)
    assert len(read) == 7 and read[0].shape == (61, 83, 3)
    assert [_nearest(f, frames) for f in read] == list(range(7))
    assert set(durations) == {50}


def test_gif_bounce_plays_forward_then_back_without_repeating_the_ends(tmp_path):
    frames = _moving_frames()
    read, _ = _read_gif(export_frames(frames, tmp_path / "b.gif", bounce=True))
    assert len(read) == 12
    assert [_nearest(f, frames) for f in read] == [0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(("bounce", "n_shown"), [(False, 7), (True, 12)])
@pytest.mark.parametrize("grey", [False, True], ids=["rgb", "grey"])
def test_gif_of_identical_frames_keeps_every_frame_and_its_duration(
    tmp_path, bounce, n_shown, grey
):
    """Pillow's GIF writer merges identical neighbouring frames: 7 equal frames at 10 fps
    became one 700-ms still. A static scene decomposes into equal frames; they must all play."""
    still = _moving_frames(n=1)[0]
    frames = np.stack([still[..., 1] if grey else still] * 7)
    read, durations = _read_gif(export_frames(frames, tmp_path / "s.gif", fps=10, bounce=bounce))
    assert len(read) == n_shown
    assert durations == [100] * n_shown
    with Image.open(tmp_path / "s.gif") as im:
        assert im.n_frames == n_shown and im.info["loop"] == 0
    for shown in read:
        assert np.array_equal(shown, read[0])
    expected = np.repeat(frames[0][..., None], 3, axis=-1) if grey else frames[0]
    assert np.abs(read[0].astype(int) - expected).mean() < 3  # GIF's 256 colours, no more


def test_gif_keeps_identical_frames_between_different_ones(tmp_path):
    frames = _moving_frames(n=3)
    frames = frames[[0, 1, 1, 1, 2, 2, 0]]
    read, durations = _read_gif(export_frames(frames, tmp_path / "r.gif", fps=4))
    assert [_nearest(f, frames[[0, 1, 4]]) for f in read] == [0, 1, 1, 1, 2, 2, 0]
    assert durations == [250] * 7


def test_gif_of_grey_uint16_frames_is_8_bit_grey(tmp_path):
    grey16 = _to16(_moving_frames()[..., 1])
    read, _ = _read_gif(export_frames(grey16, tmp_path / "g.gif"))
    assert len(read) == 7
    assert np.abs(read[3][..., 0].astype(int) - (grey16[3] >> 8)).max() <= 1


def test_mp4_reads_back_every_frame_in_order(tmp_path):
    frames = _moving_frames(h=64, w=96)
    out = export_frames(frames, tmp_path / "v.mp4", fps=12)
    read = decode_video(out)[0]
    assert len(read) == 7 and read[0].shape == (64, 96, 3)
    assert [_nearest(f, frames) for f in read] == list(range(7))
    assert np.abs(read[2].astype(float) - frames[2]).mean() < 12  # lossy, but the same picture
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12, abs=0.1)
    cap.release()


def test_mp4_pads_odd_sizes_to_even_by_repeating_the_edge(tmp_path):
    frames = _moving_frames(h=61, w=83)
    read = decode_video(export_frames(frames, tmp_path / "odd.mp4"))[0]
    assert len(read) == 7 and read[0].shape == (62, 84, 3)
    assert np.abs(read[4][:61, :83].astype(float) - frames[4]).mean() < 12
    # the added column repeats the last one (up to compression)
    assert np.abs(read[4][:, 83].astype(float) - read[4][:, 82]).mean() < 12


def test_mp4_of_grey_uint16_frames(tmp_path):
    grey16 = _to16(_moving_frames(h=64, w=96)[..., 0])
    read = decode_video(export_frames(grey16, tmp_path / "g.mp4"))[0]
    assert len(read) == 7 and read[0].shape == (64, 96, 3)
    assert np.abs(read[5][..., 1].astype(float) - (grey16[5] >> 8)).mean() < 12


@pytest.mark.parametrize(
    "kind", ["rgb8", "grey8", "rgb16", "grey16", "grey_float32", "rgba8", "one_channel"]
)
@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
def test_tiff_keeps_the_stack_exactly(tmp_path, kind, suffix):
    rgb = _moving_frames()
    frames = {
        "rgb8": rgb,
        "grey8": rgb[..., 0],
        "rgb16": _to16(rgb),
        "grey16": _to16(rgb[..., 0]),
        "grey_float32": rgb[..., 2].astype(np.float32) / 255,
        "rgba8": np.concatenate([rgb, rgb[..., :1]], axis=-1),
        "one_channel": rgb[..., :1],
    }[kind]
    out = export_frames(frames, tmp_path / f"stack{suffix}", fps=15)
    back = tifffile.imread(out)
    assert back.dtype == frames.dtype and back.shape == frames.shape
    assert np.array_equal(back, frames)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == ("TYXS" if frames.ndim == 4 else "TYX")
        meta = tif.imagej_metadata or tif.shaped_metadata[0]
        assert meta["fps"] == 15


def test_uint8_rgb_and_grey_tiffs_are_imagej_hyperstacks(tmp_path):
    rgb = _moving_frames()
    for name, frames in (("rgb", rgb), ("grey16", _to16(rgb[..., 0]))):
        out = export_frames(frames, tmp_path / f"{name}.tif", fps=8)
        with tifffile.TiffFile(out) as tif:
            assert tif.is_imagej
            assert tif.imagej_metadata["frames"] == 7
            assert tif.imagej_metadata["finterval"] == pytest.approx(1 / 8)


@pytest.mark.parametrize("suffix", [".gif", ".mp4", ".tif"])
def test_an_existing_file_is_refused_unless_overwrite(tmp_path, suffix):
    path = tmp_path / f"old{suffix}"
    path.write_bytes(b"precious")
    frames = _moving_frames(h=32, w=32)
    with pytest.raises(FileExistsError, match="already exists"):
        export_frames(frames, path)
    assert path.read_bytes() == b"precious"
    export_frames(frames, path, overwrite=True)
    assert path.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_failed_write_leaves_no_file_and_the_old_one_intact(tmp_path, monkeypatch):
    def broken(path, *args, **kwargs):
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_tiff", broken)
    monkeypatch.setattr(export.io, "write_gif", broken)
    frames = _moving_frames(h=32, w=32)
    with pytest.raises(OSError, match="disk full"):
        export_frames(frames, tmp_path / "new.tif")
    old = tmp_path / "old.gif"
    old.write_bytes(b"precious")
    with pytest.raises(OSError, match="disk full"):
        export_frames(frames, old, overwrite=True)
    assert old.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["old.gif"]


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        (np.zeros((16, 16), np.uint8), {}, "frames must be"),
        (np.zeros((0, 16, 16), np.uint8), {}, "N >= 1"),
        (np.zeros((3, 16, 16, 2), np.uint8), {}, "C = 1, 3 or 4"),
        (np.zeros((3, 4, 16, 16, 3), np.uint8), {}, "frames must be"),
        (np.zeros((3, 16, 16), np.uint8), {"fps": 0}, "positive"),
        (np.zeros((3, 16, 16), np.uint8), {"fps": float("nan")}, "positive"),
        (np.zeros((3, 16, 16), np.uint8), {"bounce": True, "name": "a.mp4"}, "only available"),
        (np.zeros((3, 16, 16), np.uint8), {"name": "a.png"}, "unknown extension"),
    ],
)
def test_bad_input_is_refused_with_a_readable_error(tmp_path, frames, kwargs, message):
    name = kwargs.pop("name", "a.gif")
    with pytest.raises(ValueError, match=message):
        export_frames(frames, tmp_path / name, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_writer_uses_the_layer_fps_and_replaces_a_file_napari_confirmed(tmp_path):
    frames = _moving_frames()
    path = tmp_path / "layer.gif"
    path.write_bytes(b"old")  # napari's save dialog has already asked the user
    written = write_frames(str(path), frames, {"name": "f", "rgb": True, "metadata": {"fps": 25}})
    assert written == [str(path)]
    read, durations = _read_gif(path)
    assert len(read) == 7 and set(durations) == {40}

    grey = frames[..., 0]
    (tif,) = write_frames(str(tmp_path / "g.tif"), grey, {"rgb": False, "metadata": {}})
    assert np.array_equal(tifffile.imread(tif), grey)
    with tifffile.TiffFile(tif) as t:
        assert t.imagej_metadata["fps"] == 10


def test_writer_refuses_a_single_image(tmp_path):
    with pytest.raises(ValueError, match="single image"):
        write_frames(str(tmp_path / "one.gif"), _moving_frames()[0], {"name": "p", "rgb": True})
    assert list(tmp_path.iterdir()) == []
