"""What a new user meets in napari: defaults that follow the selection and the newest result,
docks that scroll, closing a dock mid-run, a status line that stays true, and the
whole-video workflow (the Animate widget), in a real viewer (Qt under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from conftest import SlowModel, perturbed_model  # noqa: E402

from napari_afb import decompose  # noqa: E402
from napari_afb._animate_widget import AnimateWidget  # noqa: E402
from napari_afb._export_widget import ExportWidget  # noqa: E402
from napari_afb._predict_widget import SampleGuidanceWidget  # noqa: E402
from napari_afb._widget import NEIGHBORS, DecomposeWidget  # noqa: E402
from napari_afb.flow import guidance_from_neighbors  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:148, 150:214])  # 48 x 64


@pytest.fixture
def video() -> np.ndarray:
    """14 frames, 48 x 64: a patch of 'astronaut' moving right-down over 'coffee'."""
    import cv2
    from skimage import data

    background = cv2.resize(data.coffee(), (64, 48))
    patch = cv2.resize(data.astronaut()[50:250, 150:350], (16, 16))
    frames = np.stack([background.copy() for _ in range(14)])
    for t in range(14):
        frames[t, 8 + t : 24 + t, 8 + 2 * t : 24 + 2 * t] = patch
    return frames


def _docked(viewer, widget_class, model=None):
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget)
    if model is not None:
        widget.model_override = model
    return widget


def _run(qtbot, widget):
    widget.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def _on_screen(layer) -> bool:
    return layer.visible and not layer._slice.empty


# -- defaults --------------------------------------------------------------------------------


def test_image_choice_follows_the_selection_not_the_newest_result(make_napari_viewer, qtbot, photo):
    viewer = make_napari_viewer()
    first = viewer.add_image(photo, name="photo")
    other = viewer.add_image(photo[::-1].copy(), name="other photo")
    sampler = _docked(viewer, SampleGuidanceWidget)
    decomposer = _docked(viewer, DecomposeWidget, perturbed_model(0))
    assert sampler.image_combo.current() is other  # the newest image
    viewer.layers.selection.active = first  # the user clicks the photo in the layer list
    assert sampler.image_combo.current() is first
    assert decomposer.image_combo.current() is first
    decomposer.guidance_combo.select("uniform: ↗ right-up")
    _run(qtbot, decomposer)
    result = viewer.layers["photo frames"]
    # The new result is selected in the layer list, but is no input for the image combos.
    assert viewer.layers.selection.active is result
    assert sampler.image_combo.current() is first
    assert decomposer.image_combo.current() is first
    viewer.layers.selection.active = other
    assert sampler.image_combo.current() is other


def test_export_defaults_to_the_newest_result_not_the_video(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    exporter = _docked(viewer, ExportWidget)
    assert exporter._layer.value is viewer.layers["clip"]  # the only stack there is
    decomposer = _docked(viewer, DecomposeWidget, perturbed_model(0))
    _run(qtbot, decomposer)
    frames = viewer.layers["clip frames"]
    assert exporter._layer.value is frames
    viewer.layers.selection.active = viewer.layers["clip"]  # unless the user picks the video
    assert exporter._layer.value is viewer.layers["clip"]


def test_exporting_a_video_result_writes_its_seven_frames(
    make_napari_viewer, qtbot, video, tmp_path
):
    from PIL import Image

    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    viewer.dims.set_current_step(0, 5)
    decomposer = _docked(viewer, DecomposeWidget, perturbed_model(0))
    _run(qtbot, decomposer)
    exporter = _docked(viewer, ExportWidget)
    assert exporter._layer.value is viewer.layers["clip frames"]
    exporter._path.value = tmp_path / "frames.gif"
    exporter._button.changed.emit(True)
    qtbot.waitUntil(lambda: (tmp_path / "frames.gif").exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Saved" in exporter._status.value, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: exporter._button.enabled, timeout=WAIT_MS)  # the worker is done
    with Image.open(tmp_path / "frames.gif") as gif:
        assert gif.n_frames == 7 and gif.size == (64, 48)


def test_decompose_on_a_video_defaults_to_its_neighbouring_frames(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    viewer.dims.set_current_step(0, 6)
    model = perturbed_model(1)
    widget = _docked(viewer, DecomposeWidget, model)
    assert widget.guidance_combo.current() == NEIGHBORS
    _run(qtbot, widget)
    used = viewer.layers["clip video guidance"].data  # what the job estimated and used
    frames = viewer.layers["clip frames"].data
    assert np.array_equal(frames[:, 0], decompose(video[6], used, model=model))
    # It is the motion between frames 5, 6 and 7. (OpenCV's DIS flow is not bit-reproducible
    # across threads and thread settings: in the full suite 4 % of the labels differed from a
    # fresh estimate in the main thread.)
    fresh = guidance_from_neighbors(video[5], video[6], video[7])
    other = guidance_from_neighbors(video[0], video[1], video[2])
    assert np.mean(used == fresh) > 0.9 and np.mean(used == fresh) > np.mean(used == other)
    # A photo has no neighbours: its default stays a direction or its painted layer.
    viewer.add_image(video[0], name="still", rgb=True)
    widget.image_combo.select("still")
    assert widget.guidance_combo.current() != NEIGHBORS


# -- docks -----------------------------------------------------------------------------------


def test_docks_scroll_instead_of_overlapping(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QScrollArea

    from napari_afb._qt_guidance import GuidanceWidget
    from napari_afb._train_widget import TrainWidget

    viewer = make_napari_viewer()
    tall = []
    for cls in (GuidanceWidget, SampleGuidanceWidget, DecomposeWidget, AnimateWidget, TrainWidget):
        widget = cls(viewer)
        area = widget.findChild(QScrollArea)
        assert area is not None and area.widgetResizable(), cls.__name__
        # What a dock must keep on screen: at most 240 px of its form (four docks fit in
        # 1080 px), the rest scrolls.
        content = area.widget().sizeHint().height()
        assert widget.minimumSizeHint().height() <= min(content, 240) + 10, cls.__name__
        tall.append(content > 240)
    assert sum(tall) >= 3  # most forms are taller than that: they scroll
    # napari docks a magicgui widget's inner widget (a scroll area around it would be dropped):
    # the Export form is short enough not to need one
    export = ExportWidget(viewer).native
    assert export.minimumSizeHint().height() <= 320


def test_closing_the_decompose_dock_cancels_its_run(make_napari_viewer, qtbot, photo):
    image = np.tile(photo, (2, 2, 1))  # 96 x 128: six 64-px tiles
    viewer = make_napari_viewer()
    viewer.add_image(image, name="blurry")
    model = SlowModel(perturbed_model(0), delay=0.3)
    widget = DecomposeWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Decompose")
    widget.model_override = model
    widget.tile_spin.setValue(64)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.progress.value() >= 1, timeout=WAIT_MS)
    dock.destroyOnClose()  # what napari's close button on the dock does
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert widget.closed and model.calls < 6
    assert [layer.name for layer in viewer.layers] == ["blurry"]  # no layer appears later


def test_status_says_when_the_layers_it_names_are_deleted(make_napari_viewer, qtbot, photo):
    viewer = make_napari_viewer()
    viewer.add_image(photo, name="photo")
    widget = _docked(viewer, DecomposeWidget, perturbed_model(0))
    _run(qtbot, widget)
    assert "'photo frames'" in widget.status.text()
    viewer.layers.remove("photo frames")
    assert "'photo frames' was deleted" in widget.status.text()


# -- the Animate widget ----------------------------------------------------------------------


def test_animate_widget_animates_a_range_into_a_layer_of_its_own(
    make_napari_viewer, qtbot, video, tmp_path, monkeypatch
):
    from napari_afb import animate, engine

    used = []  # (previous, current, next, labels) of every estimate the job made

    def recording(prev, cur, nxt):
        labels = guidance_from_neighbors(prev, cur, nxt)
        used.append((prev, cur, nxt, labels))
        return labels

    monkeypatch.setattr(animate, "guidance_from_neighbors", recording)
    viewer = make_napari_viewer()
    clip = viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    viewer.dims.set_current_step(0, 3)
    model = perturbed_model(2)
    widget = _docked(viewer, AnimateWidget, model)
    # The default range: ten frames from the one on screen, said in the status line.
    assert (widget.start_spin.value(), widget.stop_spin.value()) == (3, 13)
    assert "10 of the video's 14 frames" in widget.status.text()
    widget.start_spin.setValue(4)
    widget.stop_spin.setValue(6)
    widget.out_edit.value = tmp_path / "anim.tif"
    messages = []
    widget.progress.valueChanged.connect(lambda _v: messages.append(widget.status.text()))
    _run(qtbot, widget)

    layer = viewer.layers["clip animation 4-5"]
    assert layer.data.shape == (14, 1, 48, 64, 3)  # its own axis; stretched over the video's t
    assert layer.axis_labels[0] == "animation"
    # Video frame 4, with the guidance estimated from its real neighbours 3 and 5, then 5.
    assert len(used) == 2
    for (prev, cur, nxt, _), t in zip(used, (4, 5)):
        assert all(np.array_equal(a, video[b]) for a, b in ((prev, t - 1), (cur, t), (nxt, t + 1)))
    cpu = engine.select_device("cpu")
    first = engine.run(engine.decompose_iter(video[4], used[0][3], model=model, device=cpu))
    assert np.array_equal(layer.data[:7, 0], first)
    assert layer.metadata["napari_afb"]["frames"] == [4, 6]
    assert any("left" in m for m in messages)  # an estimate of the time left
    assert "Done" in widget.status.text() and "Saved to" in widget.status.text()
    import tifffile

    assert tifffile.imread(tmp_path / "anim.tif").shape == (14, 48, 64, 3)
    for t in (0, 13):  # the animation shows wherever the video's slider is
        viewer.dims.set_current_step(1, t)
        assert _on_screen(layer) and _on_screen(clip)


def test_animate_widget_cancel_adds_nothing(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True)
    model = SlowModel(perturbed_model(0), delay=0.2)
    widget = _docked(viewer, AnimateWidget, model)
    widget.start_spin.setValue(0)
    widget.stop_spin.setValue(14)
    widget.run_button.click()
    qtbot.waitUntil(lambda: model.calls >= 2, timeout=WAIT_MS)
    widget.run_button.click()  # Cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers] == ["clip"]
    assert "Cancelled" in widget.status.text() and model.calls < 14


def test_animate_widget_reports_its_progress_in_the_activity_dock(make_napari_viewer, qtbot, video):
    from napari.utils import progress

    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True)
    widget = _docked(viewer, AnimateWidget, SlowModel(perturbed_model(0), delay=0.05))
    widget.start_spin.setValue(0)
    widget.stop_spin.setValue(3)
    seen = []
    widget.progress.valueChanged.connect(
        lambda _v: seen.append([(p.desc, p.total) for p in progress._all_instances])
    )
    _run(qtbot, widget)
    assert any(("animate clip", 3) in snapshot for snapshot in seen)
    assert not any(p.desc == "animate clip" for p in progress._all_instances)  # closed at the end


def test_animate_widget_needs_a_video(make_napari_viewer, photo):
    viewer = make_napari_viewer()
    viewer.add_image(photo, name="photo")
    widget = _docked(viewer, AnimateWidget, perturbed_model(0))
    assert widget.run() is None and not widget.running
    assert "video" in widget.status.text().lower()
    assert [layer.name for layer in viewer.layers] == ["photo"]


def test_empty_weights_fields_say_what_they_will_use(make_napari_viewer, monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_AFB_WEIGHTS", raising=False)
    monkeypatch.setenv("NAPARI_AFB_PREDICTOR_WEIGHTS", str(tmp_path / "mine.safetensors"))
    monkeypatch.setattr("napari_afb.weights.PACKAGE_WEIGHTS_DIR", tmp_path)  # none packaged
    viewer = make_napari_viewer()
    widget = DecomposeWidget(viewer)
    text = widget.weights_edit.line_edit.native.placeholderText()
    assert text == "choose a decomposer weights file (no default ships yet)"
    predictor = widget.predictor_edit.line_edit.native.placeholderText()
    assert predictor == "$NAPARI_AFB_PREDICTOR_WEIGHTS: mine.safetensors"
    (tmp_path / "decomposer.safetensors").write_bytes(b"")
    assert DecomposeWidget(viewer).weights_edit.line_edit.native.placeholderText() == (
        "default decomposer weights"
    )
