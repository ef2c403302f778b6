"""Predicted guidance in napari: the sampling widget and the decompose widget's "predicted"
source, in a real viewer (Qt under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from conftest import perturbed_model, perturbed_predictor  # noqa: E402

from napari_afb import decompose  # noqa: E402
from napari_afb._predict_widget import SampleGuidanceWidget  # noqa: E402
from napari_afb._widget import DecomposeWidget  # noqa: E402
from napari_afb.predict import predict_guidance  # noqa: E402

WAIT_MS = 30_000


@pytest.fixture
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:180, 150:250])  # 80 x 100


def _sampler(viewer, predictor) -> SampleGuidanceWidget:
    widget = SampleGuidanceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.predictor_override = predictor
    return widget


def _click_and_wait(qtbot, widget) -> None:
    widget.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def test_samples_land_in_a_new_labels_stack_most_plausible_first(
    make_napari_viewer, qtbot, astronaut
):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry", translate=(5, 7))
    predictor = perturbed_predictor(0)
    widget = _sampler(viewer, predictor)
    widget.samples_spin.setValue(4)
    widget.seed_spin.setValue(9)
    _click_and_wait(qtbot, widget)
    layer = viewer.layers["blurry guidance samples"]
    expected, log_prob = predict_guidance(
        astronaut, 4, seed=9, model=predictor, device="cpu", return_log_prob=True, unique=True
    )
    assert np.array_equal(layer.data, expected)
    assert tuple(layer.translate) == (0.0, 5.0, 7.0)
    meta = layer.metadata["napari_afb"]
    assert meta["seed"] == 9 and np.allclose(meta["log_prob"], log_prob)
    assert f"{len(expected)} distinct sample" in widget.status.text()
    # a second run adds another layer: nothing the user may have painted is replaced
    layer.data[0, :5, :5] = 2
    _click_and_wait(qtbot, widget)
    stacks = [lay for lay in viewer.layers if lay.name.startswith("blurry guidance samples")]
    assert len(stacks) == 2 and (stacks[0].data[0, :5, :5] == 2).all()


def test_decompose_uses_the_sample_on_screen(make_napari_viewer, qtbot, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    predictor, model = perturbed_predictor(1), perturbed_model(0)
    sampler = _sampler(viewer, predictor)
    sampler.samples_spin.setValue(3)
    _click_and_wait(qtbot, sampler)
    samples = viewer.layers["blurry guidance samples"].data
    last = len(samples) - 1  # each distinct map once: this crop has 2
    assert last >= 1
    viewer.dims.set_current_step(0, last)  # the last sample
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = model
    widget.image_combo.select("blurry")
    assert widget.guidance_combo.select("blurry guidance samples")
    _click_and_wait(qtbot, widget)
    frames = viewer.layers["blurry frames"]
    # The frames get an axis of their own: the samples' slider stays on the last sample,
    # and the frames show whichever sample is on screen.
    assert frames.axis_labels == ("frame", "sample", "y", "x")
    assert frames.data.shape == (7, 1, 80, 100, 3)
    assert viewer.dims.current_step[:2] == (0, last)
    expected = decompose(astronaut, samples[last], model=model, device="cpu")
    assert np.array_equal(frames.data[:, 0], expected)
    viewer.dims.set_current_step(1, 0)
    assert not frames._slice.empty


def test_decompose_with_predicted_guidance_shows_the_map(make_napari_viewer, qtbot, astronaut):
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    predictor, model = perturbed_predictor(2), perturbed_model(0)
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override, widget.predictor_override = model, predictor
    assert widget.guidance_combo.select("predicted (most plausible sample)")
    _click_and_wait(qtbot, widget)
    first = predict_guidance(astronaut, 1, seed=0, model=predictor, device="cpu")[0]
    assert np.array_equal(viewer.layers["blurry predicted guidance"].data, first)
    frames = viewer.layers["blurry frames"]
    assert np.array_equal(frames.data, decompose(astronaut, first, model=model, device="cpu"))
    assert "predicted" in frames.metadata["napari_afb"]["guidance"]


def test_missing_predictor_weights_is_a_message(
    make_napari_viewer, qtbot, astronaut, monkeypatch, tmp_path
):
    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    monkeypatch.setattr("napari_afb.weights.PACKAGE_WEIGHTS_DIR", tmp_path)  # none packaged
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = perturbed_model(0)
    assert widget.guidance_combo.select("predicted (most plausible sample)")
    _click_and_wait(qtbot, widget)
    assert "predictor" in widget.status.text()
    assert [lay.name for lay in viewer.layers] == ["blurry"]


def test_sampling_without_predictor_weights_is_a_message(
    make_napari_viewer, qtbot, astronaut, monkeypatch, tmp_path
):
    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    monkeypatch.setattr("napari_afb.weights.PACKAGE_WEIGHTS_DIR", tmp_path)  # none packaged
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    widget = _sampler(viewer, None)
    _click_and_wait(qtbot, widget)
    status = widget.status.text()
    assert "No trained default predictor weights" in status and "Weights field" in status
    assert "--weights" not in status and "--predictor" not in status
    assert [lay.name for lay in viewer.layers] == ["blurry"]


def test_decompose_takes_a_predictor_file_from_its_predictor_field(
    make_napari_viewer, qtbot, astronaut, tmp_path, monkeypatch
):
    """Predicted guidance from Decompose alone: the Predictor field names the file (no
    environment variable, no override)."""
    from conftest import PREDICTOR_ARGS

    from napari_afb.weights import save_weights

    monkeypatch.delenv("NAPARI_AFB_PREDICTOR_WEIGHTS", raising=False)
    predictor = perturbed_predictor(3)
    path = save_weights(
        predictor, tmp_path / "mine.safetensors", architecture="guidance_net",
        arch_args=PREDICTOR_ARGS,
    )  # fmt: skip
    viewer = make_napari_viewer()
    viewer.add_image(astronaut, name="blurry")
    model = perturbed_model(0)
    widget = DecomposeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_override = model
    widget.predictor_edit.value = path
    assert widget.guidance_combo.select("predicted (most plausible sample)")
    _click_and_wait(qtbot, widget)
    assert "Done" in widget.status.text(), widget.status.text()
    first = predict_guidance(astronaut, 1, seed=0, model=predictor, device="cpu")[0]
    assert np.array_equal(viewer.layers["blurry predicted guidance"].data, first)
