"""Reading images and guidance, writing PNG/GIF, and the all-or-nothing output folder."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image
from skimage import data

from napari_afb import io
from napari_afb.io import InputError


def _clock_crop() -> np.ndarray:
    return np.ascontiguousarray(data.clock()[100:196, 130:258])  # 96 x 128 grey uint8


def _to16(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """A real 16-bit image: the 8-bit one scaled up, with low bits that 8 bits cannot hold."""
    noise = np.random.default_rng(seed).integers(0, 256, img.shape)
    return (img.astype(np.uint16) * 256 + noise).astype(np.uint16)


def _rgba(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    alpha = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])


# ------------------------------------------------------------------------------------------
# read_image / write_png


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba"])
def test_png_round_trip_is_exact(tmp_path, rgb_image, kind, depth):
    img = {"grey": _clock_crop(), "rgb": rgb_image, "rgba": _rgba(rgb_image)}[kind]
    if depth == 16:
        img = _to16(img)
    path = tmp_path / f"{kind}{depth}.png"
    io.write_png(path, img)
    # what other software sees: the right mode, so channels are in RGB order on disk
    with Image.open(path) as im:
        expected_mode = {"grey": "L", "rgb": "RGB", "rgba": "RGBA"}[kind]
        if depth == 16 and kind == "grey":
            assert im.mode.startswith("I")
        else:
            assert im.mode == expected_mode
        if depth == 8:
            np.testing.assert_array_equal(np.asarray(im), img)
    back = io.read_image(path)
    assert back.dtype == img.dtype
    assert back.shape == img.shape
    np.testing.assert_array_equal(back, img)


def test_png_written_by_pillow_reads_in_rgb_order(tmp_path, rgb_image):
    path = tmp_path / "pillow.png"
    Image.fromarray(rgb_image).save(path)
    np.testing.assert_array_equal(io.read_image(path), rgb_image)


def test_jpeg_exif_orientation_is_applied(tmp_path, rgb_image):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb_image).save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        stored = np.asarray(im.convert("RGB")).copy()  # as stored, without the tag applied
    assert stored.shape == (197, 223, 3)

    img = io.read_image(path)
    assert img.shape == (223, 197, 3)
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.rot90(stored, k=-1))  # turned clockwise
    # and it is still the photo (JPEG is lossy, so close, not equal)
    assert np.abs(np.rot90(img, k=1).astype(int) - rgb_image).mean() < 4


def test_grey_jpeg_stays_grey(tmp_path):
    path = tmp_path / "grey.jpeg"
    Image.fromarray(_clock_crop()).save(path, quality=95)
    img = io.read_image(path)
    assert img.shape == (96, 128)
    assert np.abs(img.astype(int) - _clock_crop()).mean() < 3


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_non_ascii_file_name(tmp_path, rgb_image, suffix):
    folder = tmp_path / "Bilder_ÄÖÜ"
    folder.mkdir()
    path = folder / f"unscharf_日本_é{suffix}"
    if suffix == ".png":
        io.write_png(path, rgb_image)
    else:
        Image.fromarray(rgb_image).save(path, quality=95)
    assert path.is_file()
    img = io.read_image(path)
    assert img.shape == rgb_image.shape
    if suffix == ".png":
        np.testing.assert_array_equal(img, rgb_image)


def test_read_image_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.read_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="cannot read") as exc:
        io.read_image(junk)
    assert "junk.png" in str(exc.value)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg"):
        io.read_image(empty)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_read_image_refuses_truncated_files(tmp_path, rgb_image, fmt):
    path = tmp_path / f"photo.{fmt}"
    if fmt == "png":
        io.write_png(path, rgb_image)
    else:
        Image.fromarray(rgb_image).save(path, quality=95)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as exc:
        io.read_image(path)
    assert str(path) in str(exc.value)


# ------------------------------------------------------------------------------------------
# Guidance files


def test_read_guidance_palette_png_returns_indices(tmp_path):
    labels = np.random.default_rng(3).integers(0, 5, (40, 56), dtype=np.uint8)
    im = Image.fromarray(labels, mode="P")
    # a palette in the UI's colours, so the picture looks nothing like its indices
    im.putpalette([255, 0, 0, 0, 204, 0, 255, 217, 0, 26, 77, 255, 0, 0, 0])
    path = tmp_path / "labels.png"
    im.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"
    out = io.read_guidance(path, shape=(40, 56))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_read_guidance_npy_and_grey_png(tmp_path):
    labels = np.random.default_rng(4).integers(0, 5, (30, 20))
    np.save(tmp_path / "g.npy", labels.astype(np.int64))
    io.write_png(tmp_path / "g.png", labels.astype(np.uint8))
    for name in ("g.npy", "g.png"):
        out = io.read_guidance(tmp_path / name, shape=(30, 20))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, labels)


def test_read_guidance_refusals(tmp_path, rgb_image):
    np.save(tmp_path / "g.npy", np.zeros((30, 20), np.uint8))
    with pytest.raises(InputError, match=r"30x20.*40x20"):
        io.read_guidance(tmp_path / "g.npy", shape=(40, 20))
    bad = np.zeros((30, 20), np.uint8)
    bad[3, 4] = 7
    io.write_png(tmp_path / "seven.png", bad)
    with pytest.raises(InputError, match=r"0-4, found \[7\]"):
        io.read_guidance(tmp_path / "seven.png")
    io.write_png(tmp_path / "colour.png", rgb_image)
    with pytest.raises(InputError, match="colour image"):
        io.read_guidance(tmp_path / "colour.png")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy"):
        io.read_guidance(tmp_path / "obj.npy")
    with pytest.raises(InputError, match="no such guidance file"):
        io.read_guidance(tmp_path / "none.npy")


# ------------------------------------------------------------------------------------------
# GIF


@pytest.mark.parametrize(("bounce", "n_out"), [(False, 7), (True, 12)])
@pytest.mark.parametrize(("fps", "ms"), [(10, 100), (4, 250)])
def test_write_gif_frames_and_timing(tmp_path, rgb_image, bounce, n_out, fps, ms):
    frames = np.stack([np.roll(rgb_image[:64, :80], 6 * t, axis=1) for t in range(7)])
    path = tmp_path / "a.gif"
    io.write_gif(path, frames, fps=fps, bounce=bounce)
    with Image.open(path) as im:
        assert im.n_frames == n_out
        assert im.size == (80, 64)
        assert im.info["loop"] == 0
        durations = []
        firsts = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            firsts.append(np.asarray(im.convert("RGB")).astype(int))
    assert durations == [ms] * n_out
    # the order: forward, then back without repeating the ends
    order = list(range(7)) + (list(range(5, 0, -1)) if bounce else [])
    for shown, t in zip(firsts, order):
        errs = [np.abs(shown - f).mean() for f in frames]
        assert int(np.argmin(errs)) == t


def test_write_gif_grey_uint16(tmp_path):
    grey = _to16(_clock_crop())
    frames = np.stack([grey, grey[::-1], grey[:, ::-1]])
    io.write_gif(tmp_path / "g.gif", frames, fps=5)
    with Image.open(tmp_path / "g.gif") as im:
        assert im.n_frames == 3
        assert im.info["duration"] == 200
        first = np.asarray(im.convert("L")).astype(int)
    assert np.abs(first - (grey >> 8)).max() <= 1


# ------------------------------------------------------------------------------------------
# staged_directory


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_staged_directory_success(tmp_path):
    dest = tmp_path / "sub" / "out"
    with io.staged_directory(dest) as tmp:
        assert tmp.parent == dest.parent
        assert not dest.exists()  # nothing visible until complete
        (tmp / "a.txt").write_text("frames")
        (tmp / "inner").mkdir()
        (tmp / "inner" / "b.txt").write_text("more")
    assert (dest / "a.txt").read_text() == "frames"
    assert (dest / "inner" / "b.txt").read_text() == "more"
    assert _leftovers(dest.parent) == []


def test_staged_directory_error_leaves_nothing(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with io.staged_directory(dest) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_interrupt_leaves_nothing(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with io.staged_directory(dest) as tmp:
            (tmp / "a.txt").write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_refuses_existing_non_empty(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        with io.staged_directory(dest) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert (dest / "keep.txt").read_text() == "precious"
    assert _leftovers(tmp_path) == []

    a_file = tmp_path / "file_out"
    a_file.write_text("a file")
    with pytest.raises(FileExistsError):
        with io.staged_directory(a_file):
            pass
    assert a_file.read_text() == "a file"


def test_staged_directory_overwrite_replaces(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with io.staged_directory(dest, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").exists()  # the old content stays until the new is complete
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path) == []


def test_staged_directory_overwrite_failure_keeps_old(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with io.staged_directory(dest, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise OSError("disk full")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert _leftovers(tmp_path) == []


def test_staged_directory_empty_existing_dest_is_fine(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    with io.staged_directory(dest) as tmp:
        (tmp / "a.txt").write_text("x")
    assert [p.name for p in dest.iterdir()] == ["a.txt"]
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_staged_directory_output_has_normal_permissions(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()  # what any other program's output folder gets under this umask
    dest = tmp_path / "out"
    with io.staged_directory(dest) as tmp:
        (tmp / "a.txt").write_text("x")
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_header_claiming_too_many_pixels_is_refused_clearly(tmp_path):
    from test_reader import huge_png

    with pytest.raises(InputError, match=r"claims 100000 x 100000 px .*larger than OpenCV"):
        io.read_image(huge_png(tmp_path / "huge.png"))
