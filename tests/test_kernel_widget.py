"""The blur-kernel engine in the Decompose dock: drawn and estimated blur paths, the preview,
errors and Cancel, on the real licence-plate photo (Qt under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from napari_afb._kernel_widget import paths_from_shapes, visible_region  # noqa: E402
from napari_afb._widget import DecomposeWidget  # noqa: E402
from napari_afb.samples import licence_plate  # noqa: E402

WAIT_MS = 30_000
PLATE = (slice(200, 290), slice(220, 380))  # rows, cols of the plate and the car's badge


@pytest.fixture(autouse=True)
def own_settings(tmp_path):
    """The dock's saved settings go to a folder of the test's own."""
    from qtpy.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))


@pytest.fixture(scope="module")
def plate() -> np.ndarray:
    return licence_plate()


def gradient_energy(rgb: np.ndarray, y0: int = 0, x0: int = 0) -> float:
    """Mean squared gradient over the plate, for an image whose top left is pixel (y0, x0)."""
    rows, cols = PLATE
    g = rgb[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]
    g = g.astype(np.float64).mean(axis=-1)
    return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())


def _widget(viewer) -> DecomposeWidget:
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _click_and_wait(qtbot, widget, button) -> None:
    button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def test_drawn_path_preview_and_sharp_frames(make_napari_viewer, qtbot, plate):
    viewer = make_napari_viewer()
    viewer.add_image(plate, name="plate")
    widget = _widget(viewer)
    assert widget.engine() == "kernel" and widget.kernel.isVisibleTo(widget)
    assert not widget.learned_box.isVisibleTo(widget)
    assert widget.guidance_combo.current() == "none"  # the path says which way time ran

    widget.kernel.new_button.click()
    paths = viewer.layers["plate blur paths"]
    assert paths.mode == "add_line" and viewer.layers.selection.active is paths
    assert widget.kernel.paths_combo.current() is paths
    paths.add_lines(np.array([[248.0, 292.0], [232.0, 308.0]]))  # (row, col): up and right
    (path,) = paths_from_shapes(paths, viewer.layers["plate"], kernel_bound=51)
    assert np.allclose(path.points, [[292, 248], [308, 232]])  # (x, y), start to end

    arrows = viewer.layers["plate blur paths direction"]
    assert list(arrows.shape_type) == ["polygon", "ellipse"]
    assert np.allclose(arrows.data[0][0], [232, 308])  # the arrowhead's tip: the path's end
    assert np.allclose(np.mean(arrows.data[1], axis=0), [248, 292])  # the disc: its start

    # Preview of what is on screen: a temporary layer over that region, well under a second.
    region = visible_region(viewer, viewer.layers["plate"])
    assert region is not None
    preview = widget.kernel.preview()
    assert preview is viewer.layers["plate preview"]
    y0, y1, x0, x1 = region
    assert preview.data.shape == (y1 - y0, x1 - x0, 3)
    assert tuple(preview.translate) == (y0, x0)
    seconds = float(widget.status.text().split(" in ")[1].split(" s")[0])
    assert seconds < 1.0
    assert y0 <= 200 and y1 >= 290 and x0 <= 220 and x1 >= 380  # the plate is on screen
    assert gradient_energy(preview.data, y0, x0) > 3 * gradient_energy(plate)
    assert widget.kernel.preview() is viewer.layers["plate preview"]  # replaced, not added
    assert sum(layer.name.startswith("plate preview") for layer in viewer.layers) == 1

    _click_and_wait(qtbot, widget, widget.run_button)
    frames = viewer.layers["plate frames"]
    assert frames.data.shape == (7, 482, 600, 3) and frames.data.dtype == np.uint8
    before = gradient_energy(plate)
    assert all(gradient_energy(f) > 4 * before for f in frames.data)
    meta = frames.metadata["napari_afb"]
    assert meta["engine"] == "kernel" and meta["path_source"] == ["drawn"]
    assert meta["blur"] == ["gamma"]  # "auto": the plate's blur mixed its pixel values
    assert meta["paths"] == [[[292.0, 248.0], [308.0, 232.0]]]
    assert "plate preview" not in viewer.layers  # the full run replaces the preview
    assert "Done" in widget.status.text() and widget.run_button.text() == "Run"
    assert "(blur kernel, blur of the pixel values)" in widget.status.text()


def test_estimate_blur_path_shows_kernel_and_path(make_napari_viewer, qtbot, plate):
    viewer = make_napari_viewer()
    viewer.add_image(plate, name="plate")
    widget = _widget(viewer)
    assert widget.kernel.paths_combo.current() == "estimate"  # no paths layer yet
    _click_and_wait(qtbot, widget, widget.kernel.estimate_button)

    paths = viewer.layers["plate blur paths"]
    assert list(paths.shape_type) == ["path"]
    assert widget.kernel.paths_combo.current() is paths
    (path,) = paths_from_shapes(paths, viewer.layers["plate"], kernel_bound=51)
    assert path.source == "estimated" and path.kernel is not None  # left as it was
    dx, dy = path.direction()
    angle = np.degrees(np.arctan2(-dy, dx)) % 180  # up-right (or its reverse): 45 degrees
    assert abs(angle - 45) < 10 and 17 < path.extent() < 30
    assert widget.kernel.inset.isVisibleTo(widget) and not widget.kernel.inset.pixmap().isNull()
    assert "Kernel found" in widget.kernel.inset_caption.text()
    assert "Estimated 1 blur path" in widget.status.text()
    assert "plate blur paths direction" in viewer.layers

    _click_and_wait(qtbot, widget, widget.run_button)
    frames = viewer.layers["plate frames"]
    assert frames.data.shape == (7, 482, 600, 3)
    assert all(gradient_energy(f) > 4 * gradient_energy(plate) for f in frames.data)
    assert frames.metadata["napari_afb"]["path_source"] == ["estimated"]

    # Reverse keeps the kernel (time flipped); an edited path is deblurred as drawn.
    assert widget.kernel.reverse_paths() == 1
    (flipped,) = paths_from_shapes(paths, viewer.layers["plate"], kernel_bound=51)
    assert flipped.source == "estimated" and np.allclose(flipped.direction(), -path.direction())
    data = [np.asarray(paths.data[0]).copy()]
    data[0][0] += 1.0
    paths.data = data
    (edited,) = paths_from_shapes(paths, viewer.layers["plate"], kernel_bound=51)
    assert edited.source == "drawn" and edited.kernel is None

    # Estimating again replaces the estimate, but keeps what the user drew or edited.
    _click_and_wait(qtbot, widget, widget.kernel.estimate_button)
    assert paths.nshapes == 2


def test_a_run_that_estimated_its_path_shows_it_and_reverse_flips_the_frames(
    make_napari_viewer, qtbot, plate
):
    """Run with no path drawn: the estimated path appears in '<image> blur paths' (the path on
    screen is the one the frames follow); Reverse then Run gives the frames in the other
    order. A layer with a drawn path is never written into."""
    viewer = make_napari_viewer()
    viewer.add_image(plate, name="plate")
    widget = _widget(viewer)
    _click_and_wait(qtbot, widget, widget.run_button)
    first = np.array(viewer.layers["plate frames"].data)
    paths = viewer.layers["plate blur paths"]
    assert widget.kernel.paths_combo.current() is paths
    (path,) = paths_from_shapes(paths, viewer.layers["plate"], kernel_bound=51)
    assert path.source == "estimated" and 17 < path.extent() < 30
    assert "'Reverse' flips its time" in widget.status.text()

    caption = widget.kernel.inset_caption.text()
    assert widget.kernel.reverse_paths() == 1
    assert widget.kernel.inset_caption.text() != caption  # the inset turned with the path
    _click_and_wait(qtbot, widget, widget.run_button)
    flipped = np.array(viewer.layers["plate frames"].data)  # a re-run updates the layer
    n = len(first)
    # the same frames, the other way round (frame i now shows what frame n - 1 - i showed)
    assert np.abs(flipped[0].astype(int) - first[n - 1]).mean() < 1.0
    assert np.abs(flipped[0].astype(int) - first[0]).mean() > 2.0

    # a drawn path in the layer: the user's; a run that estimates leaves the layer as it is
    viewer2 = make_napari_viewer()
    viewer2.add_image(plate, name="plate")
    widget2 = _widget(viewer2)
    drawn = widget2.kernel.new_paths_layer()
    drawn.add_lines(np.array([[240.0, 292.0], [232.0, 308.0]]))
    widget2.kernel.paths_combo.select_value("estimate")
    _click_and_wait(qtbot, widget2, widget2.run_button)
    assert drawn.nshapes == 1 and "flips its time" not in widget2.status.text()


def test_bad_paths_get_a_message_and_change_nothing(make_napari_viewer, plate):
    viewer = make_napari_viewer()
    viewer.add_image(plate[:120, :160], name="small")
    widget = _widget(viewer)
    shapes = viewer.add_shapes(name="boxes")
    shapes.add_rectangles(np.array([[10, 10], [40, 60]]))
    assert widget.kernel.paths_combo.select_layer(shapes)
    before = [layer.name for layer in viewer.layers]

    assert widget.run() is None and not widget.running
    assert "holds rectangles" in widget.status.text() and "lines or paths" in widget.status.text()
    assert widget.kernel.preview() is None and "holds rectangles" in widget.status.text()

    paths = widget.kernel.new_paths_layer()
    before = [layer.name for layer in viewer.layers]
    assert widget.run() is None and "holds no blur path" in widget.status.text()
    cases = [
        (np.array([[30.0, 30.0], [30.0, 30.0]]), "zero length"),
        (np.array([[300.0, 400.0], [310.0, 420.0]]), "outside the 160 x 120 image"),
        (np.array([[10.0, 10.0], [90.0, 100.0]]), "more than the kernel bound of 51 px"),
    ]
    for line, message in cases:
        paths.data = []
        paths.add_lines(line)
        assert widget.run() is None and not widget.running
        assert message in widget.status.text(), widget.status.text()
        assert [layer.name for layer in viewer.layers] == before
    widget.kernel.bound_spin.setValue(151)  # a longer bound lets the long path through
    assert len(paths_from_shapes(paths, viewer.layers["small"], kernel_bound=151)) == 1


def test_no_blur_found_is_a_message(make_napari_viewer, qtbot):
    from skimage import data

    viewer = make_napari_viewer()
    viewer.add_image(np.ascontiguousarray(data.astronaut()[::4, ::4]), name="sharp")
    widget = _widget(viewer)
    _click_and_wait(qtbot, widget, widget.kernel.estimate_button)
    assert "No blur path found" in widget.status.text()
    assert [layer.name for layer in viewer.layers] == ["sharp"]


@pytest.mark.parametrize("which", ["estimate", "run"])
def test_cancel_leaves_no_layer(make_napari_viewer, qtbot, plate, which):
    viewer = make_napari_viewer()
    viewer.add_image(plate, name="plate")
    widget = _widget(viewer)
    button = widget.kernel.estimate_button if which == "estimate" else widget.run_button
    before = [layer.name for layer in viewer.layers]

    other = widget.run_button if which == "estimate" else widget.kernel.estimate_button
    button.click()
    assert button.text() == "Cancel" and not other.isEnabled()
    button.click()  # Cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers] == before
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.text() == "Run" and widget.run_button.isEnabled()
    assert widget.kernel.estimate_button.text() == "Estimate blur path"


def test_settings_persist_and_weights_pick_the_learned_engine(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.kernel.bound_spin.setValue(41)
    widget.kernel.strength_spin.setValue(1500)
    assert widget.kernel.strength == 1500.0
    again = _widget(viewer)
    assert again.kernel.kernel_bound == 41 and again.kernel.strength == 1500.0
    again.kernel.strength_spin.setValue(0)
    assert again.kernel.strength == "auto" and again.kernel.strength_spin.text() == "auto"
    assert again.kernel.space == "auto"
    again.kernel.space_combo.setCurrentIndex(again.kernel.space_combo.findData("gamma"))
    assert _widget(viewer).kernel.space == "gamma"

    again.weights_edit.value = tmp_path / "mine.safetensors"
    assert again.engine() == "learned" and again.learned_box.isVisibleTo(again)
    assert not again.kernel.isVisibleTo(again)


def test_a_video_frame_follows_the_paths_its_neighbours_give(make_napari_viewer, qtbot):
    """A panning clip: with guidance from neighbouring frames, the kernel engine takes the
    frame's blur path from the flow (no path drawn) and its frames move the way the camera
    panned."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_kernel_video import STEP, _blurry

    video = np.stack([_blurry(t, 1.0) for t in range(4)])
    viewer = make_napari_viewer()
    viewer.add_image(video, name="pan", rgb=True)
    viewer.dims.set_current_step(0, 2)
    widget = _widget(viewer)
    assert widget.guidance_combo.current() == "neighbors"
    widget.kernel.space_combo.setCurrentIndex(widget.kernel.space_combo.findData("linear"))
    _click_and_wait(qtbot, widget, widget.run_button)

    frames = viewer.layers["pan frames"].data
    frames = frames.reshape(7, *video.shape[1:])
    meta = viewer.layers["pan frames"].metadata["napari_afb"]
    assert meta["path_source"] == ["video"]
    assert meta["blur"] == ["linear"]  # as set in the dock (the clip was blurred in light)
    (x0, y0), (x1, y1) = np.asarray(meta["paths"][0])[[0, -1]]
    assert np.sign(x1 - x0) == np.sign(STEP[0]) and np.sign(y1 - y0) == np.sign(STEP[1])
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 2


def test_the_animate_dock_runs_the_kernel_engine_without_weights(make_napari_viewer, qtbot):
    import sys
    from pathlib import Path

    from napari_afb._animate_widget import AnimateWidget

    sys.path.insert(0, str(Path(__file__).parent))
    from test_kernel_video import _blurry

    video = np.stack([_blurry(t, 1.0) for t in range(4)])
    viewer = make_napari_viewer()
    viewer.add_image(video, name="pan", rgb=True, axis_labels=("t", "y", "x"))
    widget = AnimateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.engine() == "kernel" and not widget.weights_edit.native.isEnabled()
    widget.start_spin.setValue(1)
    widget.stop_spin.setValue(3)
    assert widget.run_button.isEnabled()  # no weights needed
    widget.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    layer = viewer.layers["pan animation 1-2"]
    data = layer.data.reshape(14, *video.shape[1:])
    assert np.abs(data[0].astype(int) - data[6]).mean() > 2  # the scene moves within frame 1
    assert "Done" in widget.status.text()


def test_a_photo_whose_parts_moved_different_ways_says_it_kept_the_input(make_napari_viewer, qtbot):
    """The synthetic sample (background and disc moving two ways), Run with nothing drawn: the
    one estimated path cannot explain it all, so the frames are the input and the status line
    says so first, with why and what to do."""
    from napari_afb.samples import synthetic_blur

    s = synthetic_blur()
    viewer = make_napari_viewer()
    viewer.add_image(s.blurry, name="sample")
    widget = _widget(viewer)
    _click_and_wait(qtbot, widget, widget.run_button)
    frames = viewer.layers["sample frames"].data
    assert all(np.array_equal(f, s.blurry) for f in frames)
    text = widget.status.text()
    assert "Nothing was deblurred" in text and "The blur differs across the image" in text
    assert text.index("Nothing was deblurred") < text.index("The blur differs")
    assert "paint the guidance" in text and "time order" not in text
