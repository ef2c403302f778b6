"""The plugin's sample data in a real napari viewer (Qt under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")


def test_synthetic_sample_opens_with_truth_and_guidance(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-afb", "synthetic")
    names = [layer.name for layer in viewer.layers]
    assert names == ["synthetic true frames", "synthetic blur", "synthetic blur guidance"]
    frames, blurry, guidance = (viewer.layers[n] for n in names)
    assert frames.data.shape == (7, 256, 320, 3) and frames.rgb and not frames.visible
    assert frames.axis_labels == ("t", "y", "x")
    assert blurry.data.shape == (256, 320, 3) and blurry.data.dtype == np.uint8
    assert isinstance(guidance, napari.layers.Labels)
    assert set(np.unique(guidance.data)) == {2, 4}  # left-up disc over a right-down background
    assert np.allclose(guidance.colormap.map(np.array([1]))[0], (1, 0, 0, 1))  # right-up: red
    assert guidance.colormap.map(np.array([0]))[0][3] == 0  # static: transparent
    assert list(guidance.features["direction"])[4].endswith("right-down")


def test_clock_sample_is_the_real_photo(make_napari_viewer):
    from skimage import data

    viewer = make_napari_viewer()
    viewer.open_sample("napari-afb", "clock")
    (layer,) = viewer.layers
    assert layer.name == "blurry clock"
    assert np.array_equal(layer.data[..., 0], data.clock())


@pytest.mark.parametrize(
    ("title", "class_path"),
    [
        ("Paint motion guidance", "napari_afb._widget:GuidanceWidget"),
        ("Decompose blur into frames", "napari_afb._widget:DecomposeWidget"),
        ("Export frames", "napari_afb._export_widget:ExportWidget"),
        ("Train on your videos", "napari_afb._train_widget:TrainWidget"),
    ],
)
def test_widgets_dock_from_the_manifest(make_napari_viewer, title, class_path):
    """As a user gets them: Plugins menu -> napari-afb -> widget, found through npe2."""
    import importlib

    module, name = class_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-afb", title)
    assert isinstance(widget, cls)
    assert title in dock.name
