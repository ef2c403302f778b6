"""The Process a folder widget in a real napari viewer (Qt under Xvfb), on its own local Dask
cluster of one worker process, on small photos and a clip the test makes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL_ARGS, perturbed_model
from test_batch import photo, write_clip

from napari_afb import io
from napari_afb.weights import save_weights

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from napari_afb._batch_widget import BatchWidget  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        io.write_png(src / f"p{k}.png", photo(k))
        io.write_guidance_png(src / f"p{k}.guidance.png", np.full((48, 64), 4, np.uint8))
    write_clip(src / "clip.avi", frames=3)
    (src / "broken.png").write_bytes(b"\x89PNG but no more")
    weights = save_weights(
        perturbed_model(0), tmp_path / "w.safetensors", architecture="motion_unet",
        arch_args=SMALL_ARGS,
    )  # fmt: skip
    return src, weights


def _widget(make_napari_viewer, src, weights, out):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Process a folder")
    widget.in_edit.value = src
    widget.out_edit.value = out
    widget.weights_edit.value = weights
    widget.device_combo.setCurrentText("cpu")
    widget.workers_spin.setValue(1)
    return viewer, widget


def test_processes_a_folder_and_opens_the_results(qtbot, make_napari_viewer, folder, tmp_path):
    src, weights = folder
    viewer, widget = _widget(make_napari_viewer, src, weights, tmp_path / "out")
    worker = widget.run()
    assert worker is not None and widget.run_button.text() == "Cancel"
    assert widget._activity is not None  # napari's activity dock shows the batch
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.summary is not None and not widget.summary.cancelled
    assert "4 done, 0 skipped, 1 failed" in widget.status.text()
    assert "broken.png" in widget.status.text()
    names = sorted(layer.name for layer in viewer.layers)
    assert names == ["clip", "p0 frames", "p1 frames", "p2 frames"]
    assert viewer.layers["p0 frames"].data.shape == (7, 48, 64, 3)
    assert viewer.layers["clip"].data.shape == (21, 48, 64, 3)
    assert widget.run_button.text() == "Process folder" and widget._activity is None

    # Run again: the finished outputs are skipped, nothing new opens
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "0 done, 4 skipped, 1 failed" in widget.status.text()
    assert len(viewer.layers) == 4


def test_cancel_stops_and_keeps_the_viewer(qtbot, make_napari_viewer, folder, tmp_path):
    src, weights = folder
    viewer, widget = _widget(make_napari_viewer, src, weights, tmp_path / "out")
    widget.run()
    widget.cancel()
    assert widget.run_button.text() == "Cancelling..."
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.status.text().startswith("Cancelled")
    assert len(viewer.layers) == 0
    assert not [p for p in (tmp_path / "out").rglob("*") if "partial" in p.name]


def test_refuses_to_start_without_folders(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    assert widget.run() is None and "folder" in widget.status.text()
