"""The Export frames and Animate docks with a missing folder and with MP4 (issue 23, items 7 and
8): the folder is refused and not created, the user's own path is named in a napari
notification, and a saved MP4 says its codec."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from qtpy.QtCore import Qt  # noqa: E402

from napari_afb import export  # noqa: E402
from napari_afb._export_widget import ExportWidget  # noqa: E402


def _frames() -> np.ndarray:
    photo = data.astronaut()
    return np.stack([photo[100:164, 150 + 5 * i : 246 + 5 * i] for i in range(7)])


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_frames(), name="frames", rgb=True, metadata={"fps": 10})
    w = ExportWidget(viewer)
    viewer.window.add_dock_widget(w, name="Export frames")
    return w


def _click(qtbot, w) -> None:
    qtbot.mouseClick(w._button.native, Qt.MouseButton.LeftButton)
    if w.worker is not None:
        qtbot.waitUntil(lambda: w._button.enabled, timeout=20_000)


def test_a_missing_folder_is_refused_with_a_notification(qtbot, widget, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    target = tmp_path / "nonexistent_dir" / "sub" / "out.gif"
    widget._path.value = target
    _click(qtbot, widget)
    assert widget._status.value.startswith("Export failed:")
    assert "does not exist" in widget._status.value
    assert len(shown) == 1 and str(target) in shown[0]
    assert list(tmp_path.iterdir()) == []  # no folder created
    assert widget._button.enabled


def test_an_unwritable_target_is_named_in_the_notification(qtbot, widget, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(export.os, "replace", refuse)
    target = tmp_path / "out.gif"
    widget._path.value = target
    _click(qtbot, widget)
    assert len(shown) == 1 and str(target) in shown[0] and ".partial" not in shown[0]
    assert list(tmp_path.iterdir()) == []


def test_a_saved_mp4_says_its_codec(qtbot, widget, tmp_path):
    target = tmp_path / "out.mp4"
    widget._path.value = target
    _click(qtbot, widget)
    codec = "H.264" if export.h264_available() else "MPEG-4 Part 2"
    assert widget._status.value == f"Saved 7 frames to {target} ({codec} at 10 fps)."
    assert target.is_file()
