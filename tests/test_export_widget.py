"""The Export frames widget in a real napari viewer (Qt under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from qtpy.QtCore import Qt  # noqa: E402

from napari_afb import _export_widget  # noqa: E402
from napari_afb._export_widget import ExportWidget  # noqa: E402


def _frames() -> np.ndarray:
    photo = data.astronaut()
    return np.stack([photo[100:164, 150 + 5 * i : 246 + 5 * i] for i in range(7)])  # 7x64x96x3


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(data.camera(), name="single photo")  # 2-D: not a stack of frames
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Export frames")
    return viewer, widget


def _export(qtbot, widget) -> None:
    qtbot.mouseClick(widget._button.native, Qt.MouseButton.LeftButton)
    if widget.worker is not None:
        qtbot.waitUntil(lambda: widget._button.enabled, timeout=20_000)


def test_exports_a_frames_layer_as_a_gif_at_the_layer_fps(qtbot, viewer_and_widget, tmp_path):
    viewer, widget = viewer_and_widget
    assert widget._layer.choices == ()  # the 2-D photo is not offered
    frames = _frames()
    layer = viewer.add_image(frames, name="sharp frames", rgb=True, metadata={"fps": 20})
    assert widget._layer.choices == (layer,)
    assert widget._layer.value is layer and widget._fps.value == 20
    widget._bounce.value = True
    widget._path.value = tmp_path / "anim.gif"
    _export(qtbot, widget)
    path = tmp_path / "anim.gif"
    assert widget._status.value == f"Saved 7 frames to {path}."
    with Image.open(path) as im:
        assert im.n_frames == 12 and im.size == (96, 64) and im.info["duration"] == 50
    assert len(viewer.layers) == 2  # the viewer is left as it was


def test_format_and_file_name_follow_each_other(qtbot, viewer_and_widget, tmp_path):
    viewer, widget = viewer_and_widget
    frames = _frames()[..., 0].astype(np.uint16) * 257
    viewer.add_image(frames, name="grey16")
    widget._path.value = tmp_path / "stack"
    widget._format.value = "TIFF"
    assert widget._path.value == tmp_path / "stack.tif"
    widget._path.value = tmp_path / "clip.mp4"
    assert widget._format.value == "MP4" and not widget._bounce.enabled
    widget._format.value = "TIFF"
    _export(qtbot, widget)
    back = tifffile.imread(tmp_path / "clip.tif")
    assert back.dtype == np.uint16 and np.array_equal(back, frames)


def test_declining_to_overwrite_keeps_the_old_file(qtbot, viewer_and_widget, tmp_path, monkeypatch):
    viewer, widget = viewer_and_widget
    viewer.add_image(_frames(), name="frames", rgb=True)
    path = tmp_path / "video.mp4"
    path.write_bytes(b"precious")
    asked = []

    def decline(parent, p):
        asked.append(p)
        return False

    monkeypatch.setattr(_export_widget, "_confirm_overwrite", decline)
    widget._path.value = path
    _export(qtbot, widget)
    assert asked == [path]
    assert widget.worker is None and path.read_bytes() == b"precious"
    assert "kept the existing video.mp4" in widget._status.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]

    monkeypatch.setattr(_export_widget, "_confirm_overwrite", lambda parent, p: True)
    _export(qtbot, widget)
    assert widget._status.value.startswith("Saved 7 frames")
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7 and cap.read()[1].shape == (64, 96, 3)
    cap.release()


def test_errors_are_shown_not_raised(qtbot, viewer_and_widget, tmp_path):
    viewer, widget = viewer_and_widget
    _export(qtbot, widget)
    assert "select an image layer" in widget._status.value
    viewer.add_image(_frames(), name="frames", rgb=True)
    _export(qtbot, widget)
    assert widget._status.value == "Choose a file to save to."
    widget._path.value = tmp_path / "missing-folder" / "deeper" / "x.gif"
    (tmp_path / "missing-folder").write_text("a file where a folder should be")
    _export(qtbot, widget)
    assert widget._status.value.startswith("Export failed:")
    assert widget._button.enabled


def test_a_folder_as_destination_gets_a_file_named_after_the_layer_inside_it(
    qtbot, viewer_and_widget, tmp_path
):
    viewer, widget = viewer_and_widget
    viewer.add_image(_frames(), name="photo frames", rgb=True)
    folder = tmp_path / "exports"
    folder.mkdir()
    widget._path.value = folder
    for fmt in ("MP4", "GIF"):  # switching formats does not rename the folder (exports.gif)
        widget._format.value = fmt
        assert widget._path.value == folder
    _export(qtbot, widget)
    path = folder / "photo frames.gif"
    assert path.is_file() and not (tmp_path / "exports.gif").exists()
    assert widget._status.value == f"Saved 7 frames to {path}."
