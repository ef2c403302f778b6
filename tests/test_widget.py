"""The guidance painter and the decompose widget in a real napari viewer (Qt under Xvfb)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from conftest import SlowModel, perturbed_model  # noqa: E402

from napari_afb import decompose  # noqa: E402
from napari_afb._widget import DecomposeWidget, GuidanceWidget  # noqa: E402
from napari_afb.guidance import NAMES  # noqa: E402

WAIT_MS = 30_000


@pytest.fixture
def astronaut() -> np.ndarray:
    """48 x 64 crop of scikit-image's astronaut (public domain)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:148, 150:214])


def _guidance_widget(viewer) -> GuidanceWidget:
    widget = GuidanceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _decompose_widget(viewer, model=None) -> DecomposeWidget:
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = model
    return widget


def _run(qtbot, widget: DecomposeWidget) -> None:
    """Click Run and wait for the worker to finish."""
    widget.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def _select_uniform(widget: DecomposeWidget, name: str) -> None:
    (text,) = [
        widget.guidance_combo.itemText(i)
        for i in range(widget.guidance_combo.count())
        if widget.guidance_combo.itemText(i).startswith("uniform:")
        and widget.guidance_combo.itemText(i).endswith(f" {name}")
    ]
    assert widget.guidance_combo.select(text)


# -- guidance painting ---------------------------------------------------------------------


@pytest.mark.parametrize("video", [False, True], ids=["photo", "video"])
def test_new_guidance_layer_is_aligned_and_coloured(make_napari_viewer, astronaut, video):
    viewer = make_napari_viewer()
    data = np.stack([astronaut] * 5) if video else astronaut
    translate = (0.0, 10.0, -4.0) if video else (10.0, -4.0)
    scale = (1.0, 2.0, 0.5) if video else (2.0, 0.5)
    viewer.add_image(data, name="blurry", rgb=True, translate=translate, scale=scale)
    widget = _guidance_widget(viewer)

    widget.new_button.click()
    layer = viewer.layers["blurry guidance"]
    assert isinstance(layer, napari.layers.Labels)
    assert layer.data.shape == (48, 64) and layer.data.dtype == np.uint8
    assert not layer.data.any()
    assert np.allclose(layer.colormap.map(np.array([1]))[0], (1, 0, 0, 1))  # right-up: red
    assert layer.colormap.map(np.array([0]))[0][3] == 0  # static: transparent
    assert [d.split(" ", 1)[1] for d in layer.features["direction"]] == list(NAMES)
    assert tuple(layer.translate) == (10.0, -4.0) and tuple(layer.scale) == (2.0, 0.5)
    assert viewer.layers.selection.active is layer and layer.mode == "paint"
    assert widget.guidance_combo.current() is layer

    layer.paint((3, 4), 1)  # brush 10 around data (3, 4), i.e. world (16, -2)
    world = (2, 16, -2) if video else (16, -2)
    assert layer.get_status(world, world=True)["value"] == "1; direction: \u2197 right-up"

    widget.new_button.click()  # a second click selects the same layer, adds none
    assert len(viewer.layers) == 2
    layer.name = "renamed"  # the widget keeps following the layer
    assert widget.guidance_combo.current() is layer


def test_direction_buttons_and_brush_follow_the_layer(make_napari_viewer, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    widget = _guidance_widget(viewer)
    layer = widget.new_guidance_layer()
    assert layer.selected_label == 1  # right-up is picked to start with

    for label in (4, 2, 0, 3):
        widget.direction_buttons[label].click()
        assert layer.selected_label == label
        assert widget.direction_buttons[label].isChecked()
    assert "left-down" in widget.apply_button.text()

    layer.selected_label = 2  # picked in napari's own layer controls
    assert widget.direction_buttons[2].isChecked() and widget.label == 2
    widget.brush_spin.setValue(23)
    assert layer.brush_size == 23
    layer.brush_size = 7
    assert widget.brush_spin.value() == 7
    widget.mode_buttons["fill"].click()
    assert layer.mode == "fill"


def test_painted_guidance_is_what_the_decomposer_reads(make_napari_viewer, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    decomposer = _decompose_widget(viewer)
    painter = _guidance_widget(viewer)
    layer = painter.new_guidance_layer()
    painter.direction_buttons[4].click()
    layer.brush_size = 9
    layer.paint((20, 30), layer.selected_label)
    layer.data[:5, :] = 2
    layer.refresh()

    assert decomposer.guidance_combo.current() is layer  # picked up by name
    job = decomposer._collect()
    assert job.guidance.shape == (48, 64)
    assert np.array_equal(job.guidance, layer.data)
    assert job.guidance[20, 30] == 4 and job.guidance[20, 20] == 0 and job.guidance[0, 0] == 2


def test_apply_direction_to_drawn_regions(make_napari_viewer, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry", translate=(5, 7))
    widget = _guidance_widget(viewer)
    guidance = widget.new_guidance_layer()
    assert widget.apply_to_regions() == 0 and "Draw regions" in widget.status.text()

    regions = widget.regions_layer()
    assert regions.name == "blurry regions" and tuple(regions.translate) == (5, 7)
    regions.add_rectangles(np.array([[10, 5], [20, 30]]))  # (y, x) corners in data coordinates
    widget.direction_buttons[3].click()
    widget.apply_button.click()

    ys, xs = np.nonzero(guidance.data)
    assert set(np.unique(guidance.data[ys, xs])) == {3}  # left-down
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 20, 5, 30)
    assert len(ys) == 11 * 26  # the filled rectangle, nothing else
    assert "blurry regions" not in viewer.layers  # a helper: gone once applied
    assert viewer.layers.selection.active is guidance
    assert "286 px" in widget.status.text()

    guidance.undo()  # one undo step removes it
    assert not guidance.data.any()

    widget.direction_buttons[1].click()
    widget.fill_all_button.click()
    assert (guidance.data == 1).all()


# -- decompose -----------------------------------------------------------------------------


def test_decompose_adds_frames_then_updates_them(make_napari_viewer, qtbot, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry", translate=(3, 4))
    guidance = viewer.add_labels(np.zeros((48, 64), np.uint8), name="blurry guidance")
    guidance.data[:, :32] = 1
    guidance.data[10:30, 40:60] = 3
    guidance.refresh()
    model = perturbed_model(0)
    widget = _decompose_widget(viewer, model)
    assert widget.guidance_combo.current() is guidance
    _run(qtbot, widget)

    frames = viewer.layers["blurry frames"]
    assert frames.data.shape == (7, 48, 64, 3) and frames.rgb
    assert frames.axis_labels == ("frame", "y", "x")
    assert tuple(frames.translate) == (0, 3, 4)
    expected = decompose(astronaut, guidance.data, model=model)
    assert np.array_equal(frames.data, expected)
    assert not np.array_equal(frames.data[0], frames.data[-1])  # really moving frames
    meta = frames.metadata["napari_afb"]
    assert meta["guidance"] == "layer 'blurry guidance'"
    assert meta["weights"] == "model passed in" and meta["device"] == "cpu"
    assert meta["n_frames"] == 7 and meta["seconds"] > 0
    assert widget.run_button.text() == "Run" and "Done" in widget.status.text()
    assert widget.progress.value() == widget.progress.maximum() == 1

    # Re-run with other guidance: the same layer is updated, none added.
    guidance.data[:] = 4
    guidance.refresh()
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert len(viewer.layers) == n_layers and viewer.layers["blurry frames"] is frames
    assert np.array_equal(frames.data, decompose(astronaut, guidance.data, model=model))
    assert not np.array_equal(frames.data, expected)

    # A uniform direction for the whole image (camera shake).
    _select_uniform(widget, "right-up")
    _run(qtbot, widget)
    uniform = np.full((48, 64), 1, np.uint8)
    assert np.array_equal(frames.data, decompose(astronaut, uniform, model=model))
    assert frames.metadata["napari_afb"]["guidance"] == "uniform right-up"
    assert len(viewer.layers) == n_layers


def test_decompose_current_frame_of_a_video(make_napari_viewer, qtbot):
    rng = np.random.default_rng(3)
    video = rng.integers(0, 256, size=(5, 32, 40, 3), dtype=np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True)
    viewer.dims.set_current_step(0, 3)
    model = perturbed_model(1)
    widget = _decompose_widget(viewer, model)
    _select_uniform(widget, "left-down")
    _run(qtbot, widget)

    frames = viewer.layers["clip frames"]
    assert frames.data.shape == (7, 1, 32, 40, 3)  # its own 'frame' axis, then the video's t
    assert frames.axis_labels == ("frame", "t", "y", "x")
    expected = decompose(video[3], np.full((32, 40), 3, np.uint8), model=model)
    assert np.array_equal(frames.data[:, 0], expected)
    assert frames.metadata["napari_afb"]["frame"] == 3
    assert "frames of video frame 3" in widget.status.text()
    assert "'frame' slider" in widget.status.text()


def _on_screen(layer) -> bool:
    """Whether napari's current slice of ``layer`` holds data (False: out of its range)."""
    return layer.visible and not layer._slice.empty


def test_video_results_have_their_own_axis(make_napari_viewer, qtbot):
    """Decompose frame 12 of a 20-frame video: the 7 frames show at t = 12 at once, stepping
    through them leaves the video on frame 12, and moving the video hides them (they are the
    frames of frame 12). Guidance samples get an axis of their own too, so stepping through
    the frames does not change the sample on screen, nor the reverse."""
    rng = np.random.default_rng(4)
    video = rng.integers(0, 256, size=(20, 32, 48, 3), dtype=np.uint8)
    viewer = make_napari_viewer()
    clip = viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    viewer.dims.set_current_step(0, 12)
    samples = np.stack([np.full((32, 48), k % 5, np.uint8) for k in range(5)])
    from napari_afb._layout import stack_placement

    placement = stack_placement(viewer, clip, 12, "sample")
    sample_layer = viewer.add_labels(
        placement.shaped(samples), name="clip guidance samples", **placement.kwargs()
    )
    assert viewer.dims.axis_labels == ("sample", "t", "y", "x")
    viewer.dims.set_current_step(0, 2)  # the user picks sample 2
    widget = _decompose_widget(viewer, perturbed_model(1))
    assert widget.guidance_combo.current() is sample_layer  # the image's samples, by name
    job = widget._collect()
    assert np.array_equal(job.guidance, samples[2]) and job.frame == 12
    _run(qtbot, widget)

    frames = viewer.layers["clip frames"]
    assert viewer.dims.axis_labels == ("frame", "sample", "t", "y", "x")
    step = viewer.dims.current_step
    assert step[1:3] == (2, 12)  # the sample and the video frame did not move
    assert _on_screen(frames) and _on_screen(clip) and _on_screen(sample_layer)
    for k in range(7):  # step through the frames: the video stays on frame 12
        viewer.dims.set_current_step(0, k)
        assert viewer.dims.current_step[1:3] == (2, 12) and _on_screen(frames)
        assert frames.data.shape == (7, 1, 1, 32, 48, 3)  # frame; sample and t singletons
        assert np.array_equal(np.asarray(frames._slice.image.raw), frames.data[k, 0, 0])
        assert np.array_equal(np.asarray(clip._slice.image.raw), video[12])
    viewer.dims.set_current_step(2, 13)  # another video frame: these frames are not its own
    assert not _on_screen(frames) and _on_screen(clip)
    assert not _on_screen(sample_layer)  # the samples were made for frame 12 too
    viewer.dims.set_current_step(1, 4)  # another sample: the frames layer is not affected
    viewer.dims.set_current_step(2, 12)
    assert _on_screen(frames)

    # Re-run at frame 13: the same layer moves to t = 13.
    viewer.dims.set_current_step(2, 13)
    _run(qtbot, widget)
    assert viewer.layers["clip frames"] is frames
    assert _on_screen(frames) and frames.metadata["napari_afb"]["frame"] == 13
    viewer.dims.set_current_step(2, 12)
    assert not _on_screen(frames)


def test_cancel_leaves_the_viewer_as_it_was(make_napari_viewer, qtbot, astronaut):
    image = np.tile(astronaut, (2, 2, 1))  # 96 x 128: six 64-px tiles
    viewer = make_napari_viewer()
    viewer.add_image(image, name="blurry")
    model = SlowModel(perturbed_model(0), delay=0.3)
    widget = _decompose_widget(viewer, model)
    widget.tile_spin.setValue(64)
    before = [layer.name for layer in viewer.layers]

    widget.run_button.click()
    assert widget.run_button.text() == "Cancel"
    qtbot.waitUntil(lambda: widget.progress.value() >= 1, timeout=WAIT_MS)
    widget.run_button.click()  # Cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)

    assert [layer.name for layer in viewer.layers] == before
    assert widget.run_button.text() == "Run" and widget.run_button.isEnabled()
    assert "cancelled" in widget.status.text().lower()
    assert model.calls < 6


def test_ui_stays_responsive_during_a_run(make_napari_viewer, qtbot, astronaut):
    from qtpy.QtCore import QTimer

    image = np.tile(astronaut, (2, 2, 1))
    viewer = make_napari_viewer()
    viewer.add_image(image, name="blurry")
    widget = _decompose_widget(viewer, SlowModel(perturbed_model(0), delay=0.15))
    widget.tile_spin.setValue(64)
    _select_uniform(widget, "left-up")
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    # The result layer is made on the main thread once the worker is done (napari's add_image,
    # about 0.1-0.3 s here): that is not a tile, so the ticks stop counting there.
    added = []
    viewer.layers.events.inserted.connect(lambda _e: added.append(time.perf_counter()))
    timer.start(10)
    start = time.perf_counter()
    _run(qtbot, widget)
    elapsed = time.perf_counter() - start
    timer.stop()
    during = [t for t in ticks if t <= added[0]]

    assert elapsed > 6 * 0.15  # six slow tiles ran in the worker
    assert len(ticks) >= 0.5 * elapsed / 0.010  # the event loop kept turning
    assert np.diff(during).max() < 0.25  # never blocked for a whole tile
    assert viewer.layers["blurry frames"].data.shape == (7, 96, 128, 3)


def test_missing_weights_is_a_message_not_a_traceback(
    make_napari_viewer, qtbot, astronaut, monkeypatch, tmp_path
):
    monkeypatch.delenv("NAPARI_AFB_WEIGHTS", raising=False)
    monkeypatch.setattr("napari_afb.weights.PACKAGE_WEIGHTS_DIR", tmp_path)  # none packaged
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    widget = _decompose_widget(viewer)  # no model_override, no weights file
    widget.set_engine("learned")  # (the blur-kernel engine, the default, needs no weights)
    _run(qtbot, widget)
    status = widget.status.text()
    assert "No trained default decomposer weights" in status and "Weights field" in status
    assert "--weights" not in status and "command line" not in status  # GUI words, not CLI
    assert [layer.name for layer in viewer.layers] == ["blurry"]
    assert widget.run_button.text() == "Run"

    widget.weights_edit.value = tmp_path / "nope.safetensors"  # Run greys out, saying why
    assert not widget.run_button.isEnabled()
    assert "nope.safetensors was not found" in widget.run_button.toolTip()
    widget.run()  # called directly, it still says why
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert "weights file not found" in widget.status.text()
    assert len(viewer.layers) == 1


def test_mismatched_guidance_is_refused_before_running(make_napari_viewer, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    viewer.add_labels(np.zeros((40, 64), np.uint8), name="blurry guidance")
    widget = _decompose_widget(viewer, perturbed_model(0))
    assert widget.run() is None and not widget.running
    assert "does not match" in widget.status.text()
    assert len(viewer.layers) == 2


def test_guidance_from_neighbouring_video_frames(make_napari_viewer, qtbot):
    """A video whose patch moves right-down: the estimated guidance is shown as a layer, is
    right-down on the patch and static elsewhere, and is what the frames were made with."""
    from skimage import data

    background = cv2.resize(data.coffee(), (120, 96))
    patch = cv2.resize(data.astronaut()[50:250, 150:350], (32, 32))
    video = np.stack([background.copy() for _ in range(5)])
    for t in range(5):
        video[t, 20 + 3 * t : 52 + 3 * t, 20 + 4 * t : 52 + 4 * t] = patch
    viewer = make_napari_viewer()
    viewer.add_image(video, name="clip", rgb=True)
    viewer.dims.set_current_step(0, 2)
    model = perturbed_model(2)
    widget = _decompose_widget(viewer, model)
    assert widget.guidance_combo.select("from neighbouring frames (video)")
    _run(qtbot, widget)

    estimated = viewer.layers["clip video guidance"].data
    assert estimated.shape == (96, 120)
    assert np.mean(estimated[30:52, 32:54] == 4) > 0.9  # the patch at frame 2, right-down
    assert np.mean(estimated[70:, :] == 0) > 0.9  # the static bottom of the photo
    frames = viewer.layers["clip frames"]
    assert np.array_equal(frames.data[:, 0], decompose(video[2], estimated, model=model))
    assert "neighbouring frames" in frames.metadata["napari_afb"]["guidance"]


def test_neighbour_guidance_needs_a_video(make_napari_viewer, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="photo")
    widget = _decompose_widget(viewer, perturbed_model(0))
    assert widget.guidance_combo.select("from neighbouring frames (video)")
    widget.run_button.click()
    assert not widget.running
    assert "needs a video" in widget.status.text()
    assert [layer.name for layer in viewer.layers] == ["photo"]
