"""Sliders and axes do not pile up (issue 23, item 9): photo results share one 'frame' axis, no
layer gets a size-1 axis it does not need, and helper layers go when their work is done. A real
napari viewer, shown (pytest-xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from conftest import perturbed_model  # noqa: E402

from napari_afb._widget import DecomposeWidget, GuidanceWidget  # noqa: E402

WAIT_MS = 30_000


@pytest.fixture
def photos():
    from skimage import data

    return (
        np.ascontiguousarray(data.astronaut()[40:136, 100:228]),  # 96 x 128 x 3
        np.ascontiguousarray(data.chelsea()[60:140, 100:220]),  # 80 x 120 x 3: another size
    )


def _run(qtbot, widget) -> None:
    widget.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def test_two_photos_share_one_frame_axis(make_napari_viewer, qtbot, photos):
    viewer = make_napari_viewer(show=True)
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = perturbed_model(0)
    for i, photo in enumerate(photos):
        layer = viewer.add_image(photo, name=f"photo {i}")
        assert widget.image_combo.select_layer(layer)
        assert widget.guidance_combo.select_value(2)  # uniform right-down
        _run(qtbot, widget)
        assert f"photo {i} frames" in viewer.layers, widget.status.text()

    assert viewer.dims.axis_labels == ("frame", "y", "x")  # no "frame 2" slider
    for i, photo in enumerate(photos):
        frames = viewer.layers[f"photo {i} frames"]
        assert frames.data.shape == (7, *photo.shape)  # no size-1 axes
        assert frames.axis_labels == ("frame", "y", "x")
    assert all(1 not in layer.data.shape[: layer.ndim - 2] for layer in viewer.layers)


def test_a_video_result_then_a_photo_result_add_one_axis_each(make_napari_viewer, qtbot, photos):
    viewer = make_napari_viewer()
    video = np.stack([photos[0]] * 4)
    viewer.add_image(video, name="clip", rgb=True, axis_labels=("t", "y", "x"))
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = perturbed_model(0)
    assert widget.guidance_combo.select_value(1)
    _run(qtbot, widget)
    assert viewer.dims.axis_labels == ("frame", "t", "y", "x")
    photo = viewer.add_image(photos[1], name="photo")
    assert widget.image_combo.select_layer(photo)
    assert widget.guidance_combo.select_value(1)
    _run(qtbot, widget)
    assert viewer.dims.axis_labels == ("frame", "t", "y", "x")  # shared, still one 'frame'
    # one size-1 axis: the photo's frames show at every video frame
    assert viewer.layers["photo frames"].data.shape == (7, 1, *photos[1].shape)


def test_the_regions_helper_layer_goes_after_apply(make_napari_viewer, photos):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(photos[0], name="blurry")
    painter = GuidanceWidget(viewer)
    viewer.window.add_dock_widget(painter)
    guidance = painter.new_guidance_layer()
    regions = painter.regions_layer()
    regions.add_rectangles(np.array([[10, 5], [20, 30]]))
    painter.apply_button.click()
    assert guidance.data.any()
    assert [layer.name for layer in viewer.layers] == ["blurry", "blurry guidance"]
    assert viewer.layers.selection.active is guidance  # back to painting
