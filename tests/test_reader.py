"""The napari reader: images and lazy, frame-accurate videos, on files the tests write (and one
real clip from ../shared/data), read directly and through a real viewer (Qt under Xvfb)."""

from __future__ import annotations

import pickle
import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from conftest import decode_video
from PIL import Image

from napari_afb._reader import get_reader, read_file
from napari_afb.io import InputError, write_png
from napari_afb.video import VideoArray

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZE = 64  # video frames are SIZE x SIZE: rows 0-2 of 16-px blocks hold the frame index in
BLOCK = 16  # binary (12 bits), row 3 holds a red, a green, a blue and a grey block.


# ------------------------------------------------------------------------------ helpers


def _video_frame(k: int) -> np.ndarray:
    """RGB frame whose content encodes ``k`` robustly enough for lossy codecs."""
    f = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(12):
        if k >> bit & 1:
            r, c = divmod(bit, 4)
            f[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)]):
        f[3 * BLOCK :, c * BLOCK : (c + 1) * BLOCK] = colour
    return f


def _index_of(frame: np.ndarray) -> int:
    """The frame index that :func:`_video_frame` drew into ``frame`` (block centres only)."""
    grey = frame.mean(axis=2)
    index = 0
    for bit in range(12):
        r, c = divmod(bit, 4)
        if grey[r * BLOCK + 4 : r * BLOCK + 12, c * BLOCK + 4 : c * BLOCK + 12].mean() > 128:
            index |= 1 << bit
    return index


def _write_video(path: Path, n: int, fourcc: str = "MJPG", fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (SIZE, SIZE))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc} {path.suffix}")
    for k in range(n):
        writer.write(cv2.cvtColor(_video_frame(k), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(params=[("MJPG", ".avi"), ("mp4v", ".mp4")], ids=["mjpg-avi", "mp4v-mp4"])
def video_path(request, tmp_path) -> Path:
    fourcc, ext = request.param
    return _write_video(tmp_path / f"clip{ext}", 60, fourcc)


@pytest.fixture
def error_messages():
    """Error notifications napari receives during the test (via its notification manager)."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)

    def messages(severity=NotificationSeverity.ERROR) -> list[str]:
        new = notification_manager.records[start:]
        return [str(n.message) for n in new if n.severity == severity]

    return messages


@pytest.fixture
def reader_plugin():
    """The plugin to open files with: napari-afb once its manifest lists this reader; until
    then a temporary plugin that contributes the same ``get_reader`` to napari."""
    from npe2 import DynamicPlugin, PluginManager

    pm = PluginManager.instance()
    ours = pm.get_manifest("napari-afb").contributions if "napari-afb" in pm else None
    wired = ours is not None and any(
        c.python_name == "napari_afb._reader:get_reader"
        and c.id in {r.command for r in ours.readers or []}
        for c in ours.commands or []
    )
    if wired:
        yield "napari-afb"
        return
    with DynamicPlugin("afb-reader-under-test", plugin_manager=pm) as plugin:
        patterns = ["*.png", "*.jpg", "*.tif", "*.avi", "*.mp4"]
        plugin.contribute.reader(filename_patterns=patterns)(get_reader)
        yield plugin.name


# ------------------------------------------------------------------------------ images


def _rgb(rgb_image):
    return rgb_image


def _grey(rgb_image):
    return cv2.cvtColor(rgb_image, cv2.COLOR_RGB2GRAY)


def _rgba(rgb_image):
    h, w = rgb_image.shape[:2]
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    return np.dstack([rgb_image, alpha])


def _rgb16(rgb_image):
    noise = np.random.default_rng(0).integers(0, 256, rgb_image.shape)
    return (rgb_image.astype(np.uint16) * 256 + noise).astype(np.uint16)


@pytest.mark.parametrize(
    "make, name, rgb",
    [
        (_rgb, "rgb.png", True),
        (_grey, "grey.png", False),
        (_rgba, "rgba.png", True),
        (_rgb16, "rgb16.png", True),
        (_rgb, "rgb.bmp", True),
        (_rgb, "rgb.tif", True),
        (lambda im: _rgb16(im)[..., 1], "grey16.tif", False),
        (_rgb, "rgb.webp", True),
    ],
)
def test_lossless_images_read_to_their_exact_pixels(tmp_path, rgb_image, make, name, rgb):
    pixels = make(rgb_image)
    path = tmp_path / name
    if path.suffix == ".tif":
        tifffile.imwrite(path, pixels)
    elif path.suffix == ".webp":
        Image.fromarray(pixels).save(path, lossless=True)
    elif path.suffix == ".bmp":
        cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    else:
        write_png(path, pixels)
    reader = get_reader(str(path))
    assert reader is not None
    ((data, meta, kind),) = reader(str(path))
    assert kind == "image" and meta["rgb"] is rgb
    assert data.dtype == pixels.dtype and np.array_equal(data, pixels)
    assert meta["name"] == path.stem and meta["metadata"]["source_path"] == str(path)
    if pixels.dtype == np.uint16:  # a full-range 16-bit image is shown on the full range
        assert meta["contrast_limits"] == (0, 65535)


def test_12_bit_data_in_16_bit_file_is_shown_on_its_own_range(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 4096, (40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "sensor.tif", pixels)
    ((data, meta, _),) = read_file(tmp_path / "sensor.tif")
    assert np.array_equal(data, pixels) and meta["contrast_limits"] == (0, 4095)


def test_jpeg_reads_in_rgb_order(tmp_path, rgb_image):
    path = tmp_path / "photo.JPG"
    Image.fromarray(rgb_image).save(path, quality=98)
    ((data, meta, _),) = get_reader(str(path))(str(path))
    assert meta["rgb"] and data.shape == rgb_image.shape and data.dtype == np.uint8
    # lossy, so close to the pixels, and much closer than the BGR-swapped pixels
    error = np.abs(data.astype(int) - rgb_image).mean()
    swapped = np.abs(data.astype(int) - rgb_image[..., ::-1]).mean()
    assert error < 2.0 < 10 * error < swapped


def test_get_reader_accepts_only_one_existing_supported_file(tmp_path, rgb_image):
    png = tmp_path / "a.png"
    write_png(png, rgb_image)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder.png").mkdir()
    assert get_reader(str(png)) is read_file
    assert get_reader([str(png)]) is read_file  # napari's stack=True passes a list
    assert np.array_equal(read_file([str(png)])[0][0], rgb_image)
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.png")) is None
    assert get_reader(str(tmp_path / "missing.mp4")) is None
    assert get_reader(str(tmp_path / "folder.png")) is None
    assert get_reader([str(png), str(png)]) is None


# ------------------------------------------------------------------------------ videos


def test_video_random_access_is_frame_accurate(video_path):
    reference = decode_video(video_path)[0]
    assert [_index_of(f) for f in reference] == list(range(60))  # the codec kept the index
    video = VideoArray(video_path)
    assert len(video) == 60 and video.shape == (60, SIZE, SIZE, 3) and video.ndim == 4
    assert video.dtype == np.uint8
    order = list(range(60)) * 2
    random.Random(0).shuffle(order)
    for k in order:
        frame = video[k]
        assert frame.shape == (SIZE, SIZE, 3) and frame.dtype == np.uint8
        assert np.array_equal(frame, reference[k]), f"frame {k} is frame {_index_of(frame)}"
    red, green, blue = (video[0][3 * BLOCK + 8, c * BLOCK + 8] for c in range(3))
    assert red[0] > 200 > 60 > red[2] and green[1] > 200 and blue[2] > 200 > 60 > blue[0]


def test_video_indexing_follows_numpy(video_path):
    reference = decode_video(video_path)[0]
    video = VideoArray(video_path)
    assert np.array_equal(video[-1], reference[-1])
    assert np.array_equal(video[np.int64(7)], reference[7])
    assert np.array_equal(video[10:20], reference[10:20])
    assert np.array_equal(video[50:5:-9], reference[50:5:-9])
    assert np.array_equal(video[[3, -2, 3]], reference[[3, -2, 3]])
    assert np.array_equal(video[5, 10:30, ::3, 0], reference[5, 10:30, ::3, 0])
    assert np.array_equal(video[2:4, 1], reference[2:4, 1])
    assert np.array_equal(video[..., 2][9], reference[..., 2][9])
    assert video[30:10].shape == (0, SIZE, SIZE, 3)
    assert video[5:5, :, 3].shape == (0, SIZE, 3)
    with pytest.raises(IndexError):
        video[60]
    with pytest.raises(IndexError):
        video[0, 0, 0, 0, 0]
    frame = video[4]
    frame[:] = 0  # a copy: the cache keeps the decoded frame
    assert np.array_equal(video[4], reference[4])
    assert np.array_equal(np.asarray(video), reference)


def test_sequential_reads_are_served_without_seeking(tmp_path):
    path = _write_video(tmp_path / "seq.avi", 120)
    video = VideoArray(path, cache_frames=4)
    video[0]
    seeks, decoded = video.seeks, video.frames_decoded
    for k in range(1, 120):
        assert _index_of(video[k]) == k
    assert video.seeks == seeks and video.frames_decoded == decoded + 119
    video[30]  # far back: one seek, one frame
    assert video.seeks == seeks + 1 and video.frames_decoded == decoded + 120
    assert _index_of(video[35]) == 35  # a short jump ahead decodes through, no seek
    assert video.seeks == seeks + 1
    video[35]  # cached
    assert video.frames_decoded == decoded + 125


def test_opening_a_long_video_is_instant_and_decodes_almost_nothing(tmp_path):
    path = _write_video(tmp_path / "long.avi", 2000)
    start = time.perf_counter()
    ((video, meta, _),) = read_file(path)
    opened = time.perf_counter() - start
    assert len(video) == 2000 and meta["metadata"]["n_frames"] == 2000
    assert opened < 0.25, f"opening took {opened:.3f} s"
    assert video.frames_decoded <= 4 and video.seeks <= 1  # only the frame-count check
    start = time.perf_counter()
    assert _index_of(video[1234]) == 1234 and _index_of(video[17]) == 17
    assert time.perf_counter() - start < 0.25
    assert video.frames_decoded <= 6


def test_video_layer_metadata(video_path):
    reader = get_reader(str(video_path))
    ((video, meta, kind),) = reader(str(video_path))
    assert kind == "image" and isinstance(video, VideoArray)
    assert meta["rgb"] is True and meta["multiscale"] is False
    assert meta["axis_labels"] == ("t", "y", "x") and meta["name"] == "clip"
    assert meta["metadata"] == {"source_path": str(video_path), "fps": 25.0, "n_frames": 60}
    assert video.fps == 25.0 and video.path == video_path


def test_truncated_video_opens_with_the_frames_that_decode(tmp_path, error_messages):
    from napari.utils.notifications import NotificationSeverity

    path = _write_video(tmp_path / "cut.avi", 300)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    reference = decode_video(path)[0]
    assert 100 < len(reference) < 200
    ((video, _, _),) = read_file(path)
    assert video.n_claimed == 300 and len(video) == len(reference)
    assert np.array_equal(video[-1], reference[-1]) and _index_of(video[-1]) == len(video) - 1
    (warning,) = error_messages(NotificationSeverity.WARNING)
    assert f"only the first {len(video)} of the 300 frames of cut.avi" in warning


def test_video_survives_pickling_close_and_concurrent_readers(tmp_path):
    path = _write_video(tmp_path / "threads.avi", 80)
    reference = decode_video(path)[0]
    video = pickle.loads(pickle.dumps(VideoArray(path)))
    assert video.shape == reference.shape and np.array_equal(video[33], reference[33])
    video.close()
    assert np.array_equal(video[34], reference[34])  # reopens
    wrong = []

    def scrub(seed):
        for k in np.random.default_rng(seed).integers(0, 80, 60):
            if not np.array_equal(video[int(k)], reference[k]):
                wrong.append(int(k))

    threads = [threading.Thread(target=scrub, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


@pytest.mark.shared_data
def test_shared_data_box_mp4_is_frame_accurate():
    """box.mp4 (H.264 with B-frames) claims 456 frames; 455 decode."""
    path = SHARED / "opencv_doc_debian" / "box.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    video = VideoArray(path)
    assert video.n_claimed == 456 and len(video) == 455
    cap = cv2.VideoCapture(str(path))
    for _ in range(201):
        ok, bgr = cap.read()
    cap.release()
    assert ok and np.array_equal(video[200], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert video[454].shape == (480, 640, 3)


# ------------------------------------------------------------------------------ bad files


def _corrupt_files(tmp_path, rgb_image) -> list[Path]:
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(20000))
    png = tmp_path / "cut.png"
    write_png(png, rgb_image)
    png.write_bytes(png.read_bytes()[:3000])
    jpg = tmp_path / "empty.jpg"
    jpg.write_bytes(b"")
    return [noise, png, jpg, huge_png(tmp_path / "huge.png")]


def huge_png(path, side: int = 100_000):
    """A small PNG file whose header claims side x side pixels (too many for OpenCV)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = zlib.compress(b"\0" * 64)
    idat = b"IDAT" + data
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(data))
        + idat
        + struct.pack(">I", zlib.crc32(idat))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )
    return path


def test_corrupt_files_give_a_notification_not_an_exception(tmp_path, rgb_image, error_messages):
    files = _corrupt_files(tmp_path, rgb_image)
    for path in files:
        reader = get_reader(str(path))
        assert reader is not None  # the name is ours: the reader answers, with a message
        assert reader(str(path)) == [(None,)]  # napari's "no layers" sentinel
    messages = error_messages()
    assert len(messages) == len(files)
    for path, message in zip(files, messages):
        assert message.startswith(f"napari-afb could not read {path.name}: ")
        assert str(tmp_path) not in message  # the reason, without the path repeated
        assert len(message) > len(f"napari-afb could not read {path.name}: ") + 5
    with pytest.raises(InputError):
        VideoArray(files[0])


# ------------------------------------------------------------------------------ in napari


def test_viewer_opens_an_image(make_napari_viewer, reader_plugin, tmp_path, rgb_image):
    path = tmp_path / "photo.png"
    write_png(path, _rgba(rgb_image))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=reader_plugin)
    assert layer.name == "photo" and layer.rgb and np.array_equal(layer.data, _rgba(rgb_image))
    assert viewer.dims.ndim == 2


def test_viewer_scrubs_a_video_lazily(make_napari_viewer, reader_plugin, tmp_path):
    path = _write_video(tmp_path / "long.avi", 2000)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=reader_plugin)
    video = layer.data
    assert isinstance(video, VideoArray) and layer.rgb and layer.name == "long"
    assert viewer.dims.ndim == 3 and viewer.dims.axis_labels == ("t", "y", "x")
    assert viewer.dims.nsteps[0] == 2000
    assert layer.metadata["fps"] == 25.0 and layer.metadata["source_path"] == str(path)
    for k in (1500, 3, 4, 1999, 700):
        viewer.dims.set_current_step(0, k)
        shown = np.asarray(layer._slice.image.raw)
        assert shown.shape == (SIZE, SIZE, 3) and _index_of(shown) == k
        assert np.array_equal(shown, video[k])
    assert video.frames_decoded < 20, "napari decoded more than the frames it showed"


def test_viewer_stays_empty_and_tells_the_user_about_a_corrupt_file(
    make_napari_viewer, reader_plugin, tmp_path, rgb_image, error_messages
):
    viewer = make_napari_viewer()
    files = _corrupt_files(tmp_path, rgb_image)[:2]
    for path in files:
        assert viewer.open(str(path), plugin=reader_plugin) == []
    assert len(viewer.layers) == 0
    assert [m.split(":")[0] for m in error_messages()] == [
        f"napari-afb could not read {p.name}" for p in files
    ]


def test_napari_turns_an_empty_reader_result_into_an_error(make_napari_viewer, tmp_path):
    """Why read_file returns [(None,)] rather than [] for a file it could not read: napari
    raises on [] (a second error after ours). If this fails, napari changed its contract."""
    from npe2 import DynamicPlugin

    path = tmp_path / "x.png"
    path.write_bytes(b"")

    def get_empty_reader(path):
        return lambda path: []

    viewer = make_napari_viewer()
    with DynamicPlugin("afb-empty-reader") as plugin:
        plugin.contribute.reader(filename_patterns=["*.png"])(get_empty_reader)
        with pytest.raises(ValueError, match="returned no data"):
            viewer.open(str(path), plugin=plugin.name)
