"""The Train widget in a real napari viewer: a tiny CPU run, its live curve, cancel and weights."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

napari = pytest.importorskip("napari", reason="napari is in the testing extra")

from qtpy.QtCore import Qt  # noqa: E402

from napari_afb._train_widget import WEIGHTS_ENV, TrainWidget  # noqa: E402
from napari_afb.weights import load_weights, resolve_weights  # noqa: E402


def _tiny_config(tmp_path: Path, steps: int) -> Path:
    """Stills only, 32-px crops, a two-level network: a few steps take about a second."""
    cfg = {
        "seed": 3,
        "log_every": 1,
        "val_every": 100,
        "checkpoint_every": 100,
        "model": {"args": {"widths": [8, 16], "enc_blocks": [1, 1], "dec_blocks": [1]}},
        "data": {
            "stills": True,
            "crop": 32,
            "batch_size": 2,
            "items_per_epoch": 8,
            "workers": 0,
            "val_windows": 2,
        },
        "optim": {"steps": steps, "warmup_steps": 1, "lr": 1e-3},
    }
    path = tmp_path / f"tiny{steps}.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture
def widget(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, "unset-by-test")  # restored (removed) after the test
    monkeypatch.delenv(WEIGHTS_ENV)
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    yield w
    if w.running:  # never leave a run going into the next test
        w.cancel()
        qtbot.waitUntil(lambda: not w.running, timeout=30_000)


def _configure(w: TrainWidget, tmp_path: Path, steps: int, out: str = "run") -> Path:
    w._builtin.value = False
    w._config.value = _tiny_config(tmp_path, steps)
    w._out.value = tmp_path / out
    w._device.value = "cpu"
    return tmp_path / out


def _click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_a_run_shows_its_curve_and_its_weights_can_be_made_active(qtbot, widget, tmp_path):
    out = _configure(widget, tmp_path, steps=3)
    assert not widget.use_weights_button.isEnabled()
    _click(qtbot, widget.start_button)
    assert widget.running and widget.start_button.text() == "Cancel"
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)

    assert [x for x, _ in widget.plot.points] == [1, 2, 3]
    assert all(0 < y < 10 for _, y in widget.plot.points)
    widget.plot.resize(300, 150)
    picture = widget.plot.grab().toImage()
    orange = sum(
        picture.pixelColor(x, y).name() == "#ff8c00" for x in range(300) for y in range(150)
    )
    assert orange > 100  # the curve is drawn
    assert widget.progress.value() == 3 and widget.progress.maximum() == 3
    assert widget.start_button.text() == "Start training"
    assert widget.status.text().startswith("Finished 3 steps. Best validation PSNR")
    best = out / "best.safetensors"
    assert str(best) in widget.status.text()
    model, info = load_weights(best)
    assert info.metrics["step"] == 3 and model.n_frames == 7
    assert (out / "last.safetensors").is_file() and (out / "checkpoint.pt").is_file()

    assert WEIGHTS_ENV not in os.environ
    _click(qtbot, widget.use_weights_button)
    assert os.environ[WEIGHTS_ENV] == str(best)
    assert resolve_weights() == best
    assert str(best) in widget.status.text()


def test_cancel_stops_promptly_and_leaves_a_checkpoint_to_resume(qtbot, widget, tmp_path):
    out = _configure(widget, tmp_path, steps=500)
    _click(qtbot, widget.start_button)
    qtbot.waitUntil(lambda: len(widget.plot.points) >= 1, timeout=60_000)
    t0 = time.perf_counter()
    _click(qtbot, widget.start_button)  # now "Cancel"
    assert widget.start_button.text() == "Cancelling..." and not widget.start_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert time.perf_counter() - t0 < 10

    result = widget.result
    assert result.cancelled and 1 <= result.step < 500
    assert widget.status.text().startswith(f"Cancelled at step {result.step}")
    assert (out / "checkpoint.pt").is_file() and (out / "last.safetensors").is_file()
    assert widget.progress.value() < 500 and widget.start_button.text() == "Start training"
    assert widget.use_weights_button.isEnabled()  # the last weights of the cancelled run

    # Starting again into the same folder is refused unless the run is resumed.
    _click(qtbot, widget.start_button)
    assert not widget.running and "already holds a training run" in widget.status.text()
    widget._resume.value = True
    _click(qtbot, widget.start_button)
    assert widget.running
    qtbot.waitUntil(lambda: len(widget.plot.points) >= 1, timeout=60_000)
    widget.worker.quit()  # what napari's activity dock does: honoured as a cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.plot.points[0][0] == result.step + 1  # continued where it stopped
    assert widget.result.cancelled and widget.result.step > result.step


def test_form_errors_are_shown_and_nothing_starts(qtbot, widget, tmp_path):
    _click(qtbot, widget.start_button)
    assert not widget.running and "Choose an output folder" in widget.status.text()
    widget._out.value = tmp_path / "run"
    widget._builtin.value = False
    assert widget._config.enabled and not widget._steps.enabled
    _click(qtbot, widget.start_button)
    assert "Choose a config file" in widget.status.text()
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\ncrop = 30\nstills = true\n")
    widget._config.value = bad
    _click(qtbot, widget.start_button)
    assert not widget.running and "data.crop must be a multiple of 8" in widget.status.text()
    widget._builtin.value = True
    widget._videos.value = tmp_path / "no-such-folder"
    cfg = widget.build_config()
    assert cfg.data.videos == [str(tmp_path / "no-such-folder")] and cfg.data.workers == 0
    assert cfg.optim.steps == widget._steps.value and cfg.out_dir == str(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_widget_trains_the_guidance_predictor_too(qtbot, widget, tmp_path, monkeypatch):
    from napari_afb.weights import ENV_VARS

    env = ENV_VARS["predictor"]
    monkeypatch.setenv(env, "unset-by-test")
    monkeypatch.delenv(env)
    out = _configure(widget, tmp_path, steps=3)
    cfg = json.loads(widget._config.value.read_text())
    cfg["model"]["architecture"] = "guidance_net"
    (tmp_path / "predictor.json").write_text(json.dumps(cfg))
    widget._config.value = tmp_path / "predictor.json"

    _click(qtbot, widget.start_button)  # the model picker still says decomposer: refused
    assert not widget.running and "trains a predictor, not a decomposer" in widget.status.text()

    widget._model.value = "predictor"
    _click(qtbot, widget.start_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert [x for x, _ in widget.plot.points] == [1, 2, 3] and widget.plot.name == "loss"
    assert "Best validation guidance accuracy" in widget.status.text()
    _, info = load_weights(out / "best.safetensors")
    assert info.role == "predictor"
    _click(qtbot, widget.use_weights_button)
    assert os.environ[env] == str(out / "best.safetensors")
    assert WEIGHTS_ENV not in os.environ  # the decomposer's default is left alone
