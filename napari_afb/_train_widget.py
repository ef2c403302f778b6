"""Dock widget: train the decomposer or the guidance predictor on a folder of sharp videos, with
live progress and cancel.

Design of the background work: :func:`napari_afb.training.train.train` runs in a napari
``thread_worker`` (one background thread, no Qt in it). Its ``callback`` only puts each logged
record into a ``queue.Queue``; a timer on the UI thread drains that queue ten times a second
into the plot, the progress bar and the status line, so a fast run cannot flood the UI with
signals. ``should_stop`` reads a ``threading.Event`` that the Cancel button sets (and the
worker's abort flag, which napari's activity dock sets); train then saves a checkpoint and
returns normally with ``cancelled=True``, so the run can be resumed.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox
from qtpy.QtCore import QPointF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ._dock import Persist, fit_dock_width, fit_scroll_width, reset_button
from ._qt_guidance import CancelOnClose, fit_scroll_body, scroll_body

if TYPE_CHECKING:
    import napari

    from .training.config import TrainConfig

from .weights import ENV_VARS

WEIGHTS_ENV = ENV_VARS["decomposer"]

# The CPU recipe of configs/decomposer_deconv_cpu.toml (motion-supervised motion_deconv), without
# its data paths (the widget's folders supply them) and without the window cache (windows are
# made as they are needed). workers = 0: no DataLoader processes start from the GUI process.
QUICK_CPU = {
    "seed": 0,
    "log_every": 10,
    "val_every": 100,
    "checkpoint_every": 50,
    "model": {"architecture": "motion_deconv", "args": {}},
    "data": {
        "stills": True,
        "stills_fraction": 0.4,
        "crop": 128,
        "batch_size": 8,
        "items_per_epoch": 800,
        "workers": 0,
        "val_windows": 8,
        "val_width": 320,
    },
    "optim": {"lr": 1e-3, "warmup_steps": 100},
}

# The quick CPU recipe of configs/predictor_cpu.toml, likewise.
QUICK_CPU_PREDICTOR = {
    "seed": 0,
    "log_every": 10,
    "val_every": 100,
    "checkpoint_every": 50,
    "model": {"architecture": "guidance_net", "args": {}},
    "data": {
        "stills": True,
        "stills_fraction": 0.5,
        "crop": 128,
        "batch_size": 8,
        "items_per_epoch": 800,
        "workers": 0,
        "val_windows": 12,
        "val_width": 320,
    },
    "optim": {"lr": 1e-3, "warmup_steps": 50},
}
QUICK = {"decomposer": QUICK_CPU, "predictor": QUICK_CPU_PREDICTOR}


class LossPlot(QWidget):
    """A small line plot against the step: for the decomposer the loss ratio (model / blurry
    baseline), with a dashed line at 1.0, the score of a model that copies its blurry input;
    for the predictor its loss (see :meth:`clear`)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.name, self.reference = "ratio", 1.0
        self.setMinimumHeight(120)
        self.setToolTip("loss / blurry-baseline loss per step (lower is better; 1.0 = copying)")

    def clear(self, name: str = "ratio", reference: float | None = 1.0) -> None:
        """Forget the points; plot ``name`` next, with a dashed line at ``reference`` (None:
        none)."""
        self.points, self.name, self.reference = [], name, reference
        tip = {"ratio": "loss / blurry-baseline loss per step (lower is better; 1.0 = copying)"}
        self.setToolTip(tip.get(name, f"training {name} per step (lower is better)"))
        self.update()

    def add_points(self, points: list[tuple[float, float]]) -> None:
        self.points.extend(points)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        left, top, right, bottom = 40, 8, self.width() - 8, self.height() - 20
        p.setPen(QPen(fg, 1))
        p.drawRect(left, top, right - left, bottom - top)
        if not self.points:
            p.drawText(left + 6, top + 16, f"{self.name} vs step: no data yet")
            p.end()
            return
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        x0, x1 = min(xs), max(max(xs), min(xs) + 1)
        ref = self.reference
        y0, y1 = min(ys + ([ref] if ref is not None else [])), max(ys + ([ref] if ref else []))
        pad = 0.05 * (y1 - y0 or 1.0)
        y0, y1 = y0 - pad, y1 + pad

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(
                left + (x - x0) / (x1 - x0) * (right - left),
                bottom - (y - y0) / (y1 - y0) * (bottom - top),
            )

        if ref is not None:
            p.setPen(QPen(fg, 1, Qt.PenStyle.DashLine))
            p.drawLine(to_px(x0, ref), to_px(x1, ref))
        p.setPen(QPen(QColor(255, 140, 0), 2))
        if len(self.points) == 1:
            p.drawEllipse(to_px(*self.points[0]), 2, 2)
        else:
            p.drawPolyline(QPolygonF([to_px(x, y) for x, y in self.points]))
        p.setPen(QPen(fg, 1))
        p.drawText(2, top + 10, f"{y1:.2f}")
        p.drawText(2, bottom, f"{y0:.2f}")
        p.drawText(left, self.height() - 4, f"step {int(x0)}")
        p.drawText(right - 60, self.height() - 4, f"{int(x1)}")
        p.end()


class TrainWidget(CancelOnClose, QWidget):
    """Train on your videos: data folders, settings, device, Start/Cancel, live curve."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from .engine import available_devices

        self._viewer = napari_viewer
        self.worker = None
        self.result = None  # the last run's TrainResult
        self._role = "decomposer"  # the model of the last run started
        self._stop = threading.Event()
        self._records: queue.Queue[dict] = queue.Queue()

        self._model = ComboBox(
            label="model",
            choices=[("decomposer", "decomposer"), ("guidance predictor", "predictor")],
            value="decomposer",
        )
        self._videos = FileEdit(label="sharp videos", mode="d", nullable=True)
        self._val = FileEdit(label="validation", mode="d", nullable=True)
        self._builtin = CheckBox(text="use built-in quick CPU settings", value=True)
        self._steps = SpinBox(label="steps", value=400, min=1, max=1_000_000, step=50)
        self._config = FileEdit(
            label="config file", mode="r", nullable=True, filter="*.toml *.yaml *.yml *.json"
        )
        self._out = FileEdit(label="output folder", mode="d", nullable=True)
        self._resume = CheckBox(text="resume the run in the output folder", value=False)
        self._device = ComboBox(label="device", choices=available_devices(), value="auto")
        self._form = Container(
            widgets=[
                self._model,
                self._videos,
                self._val,
                self._builtin,
                self._steps,
                self._config,
                self._out,
                self._resume,
                self._device,
            ]
        )
        self._form.margins = (0, 0, 0, 0)  # the dock's own margins suffice
        self._videos.tooltip = "folder of sharp videos; empty: synthetic motion over stills only"
        self._val.tooltip = "held-out videos for validation; empty: a fixed set of stills windows"
        self._builtin.changed.connect(self._on_builtin)
        self._on_builtin(self._builtin.value)

        self.start_button = QPushButton("Start training")
        self.progress = QProgressBar()
        self.progress.setFormat("step %v of %m")
        self.plot = LossPlot()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.use_weights_button = QPushButton("Use as active weights")
        self.use_weights_button.setEnabled(False)
        self.use_weights_button.setToolTip(
            f"decompose with the trained weights (sets {WEIGHTS_ENV} for this napari session)"
        )
        layout = QVBoxLayout(scroll_body(self))
        for w in (
            self._form.native,
            self.start_button,
            self.progress,
            self.plot,
            self.status,
            self.use_weights_button,
        ):
            layout.addWidget(w)
        self.persist = Persist("train")
        for key, widget in [
            ("model", self._model),
            ("videos", self._videos),
            ("validation", self._val),
            ("builtin", self._builtin),
            ("steps", self._steps),
            ("config", self._config),
            ("output", self._out),
            ("device", self._device),
        ]:
            self.persist.bind(key, widget)
        self.reset_button = reset_button(self.persist)
        layout.addWidget(self.reset_button)
        layout.addStretch(1)
        fit_dock_width(self)
        fit_scroll_body(self)
        self.start_button.clicked.connect(self._start_or_cancel)
        self.use_weights_button.clicked.connect(self.use_as_active_weights)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._drain)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        fit_scroll_width(self)  # once napari's style sheet applies
        super().showEvent(event)

    def _on_builtin(self, builtin: bool) -> None:
        self._steps.enabled = bool(builtin)
        self._config.enabled = not builtin

    @property
    def running(self) -> bool:
        return self.worker is not None

    # -- configuration ---------------------------------------------------------------------

    def build_config(self) -> TrainConfig:
        """The run's configuration from the form (raises ConfigError / ValueError to show)."""
        from .training.config import config_from_mapping, load_config

        if self._out.value is None:
            raise ValueError("Choose an output folder for the run's weights and logs.")
        overrides: dict = {"out_dir": str(Path(self._out.value).expanduser())}
        if self._videos.value is not None:
            overrides["data.videos"] = [str(self._videos.value)]
        if self._val.value is not None:
            overrides["data.val_videos"] = [str(self._val.value)]
        role = self._model.value
        if self._builtin.value:
            overrides["optim.steps"] = int(self._steps.value)
            return config_from_mapping(QUICK[role], overrides, where="built-in settings")
        if self._config.value is None:
            raise ValueError("Choose a config file, or tick 'use built-in quick CPU settings'.")
        cfg = load_config(self._config.value, overrides)
        from .models import role_of

        found = role_of(cfg.model.architecture)  # ValueError for an unknown architecture
        if found != role:
            raise ValueError(f"{self._config.value} trains a {found}, not a {role}.")
        return cfg

    def _check_output(self, out: Path, resume: bool) -> None:
        from .training.train import CHECKPOINT

        has_run = (out / CHECKPOINT).is_file() or (out / "log.jsonl").is_file()
        if resume and not (out / CHECKPOINT).is_file():
            raise ValueError(f"Nothing to resume: {out} holds no {CHECKPOINT}.")
        if has_run and not resume:
            raise FileExistsError(
                f"{out} already holds a training run. Tick 'resume' to continue it, or choose "
                f"an empty output folder."
            )

    # -- running ---------------------------------------------------------------------------

    def _start_or_cancel(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.start()

    def start(self) -> None:
        """Check the form and start a run in the background; errors go to the status line."""
        if self.running:
            return
        from .training.train import train

        try:
            cfg = self.build_config()
            self._check_output(Path(cfg.out_dir), bool(self._resume.value))
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError
            self.status.setText(str(exc))
            return
        self.result = None
        self._stop = threading.Event()  # fresh per run
        self._records = queue.Queue()
        self._role = self._model.value
        if self._role == "predictor":
            self.plot.clear("loss", None)
        else:
            self.plot.clear()
        self.progress.setRange(0, cfg.optim.steps)
        self.progress.setValue(0)
        self.use_weights_button.setEnabled(False)
        self.status.setText(f"Starting: {cfg.optim.steps} steps, output in {cfg.out_dir}")
        self.start_button.setText("Cancel")
        records, stop, outcome = self._records, self._stop, []
        worker = None

        def should_stop() -> bool:
            return stop.is_set() or (worker is not None and worker.abort_requested)

        def run():
            # The result goes through `outcome`, not the `returned` signal: a worker whose
            # abort flag is set (napari's activity dock) finishes without emitting `returned`.
            outcome.append(
                train(
                    cfg,
                    resume=resume,
                    device=device,
                    progress=False,
                    callback=records.put,
                    should_stop=should_stop,
                )
            )

        from napari.qt.threading import create_worker

        resume, device = bool(self._resume.value), self._device.value
        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(lambda: self._on_finished(outcome))
        self.worker = worker
        self._timer.start()
        worker.start()

    def cancel(self) -> None:
        """Ask the run to stop after the current step (it saves a checkpoint first)."""
        if self.running:
            self._stop.set()
            self.start_button.setEnabled(False)
            self.start_button.setText("Cancelling...")
            self.status.setText("Cancelling: saving a checkpoint after the current step...")

    def _drain(self) -> None:
        points, last, val = [], None, None
        while True:
            try:
                record = self._records.get_nowait()
            except queue.Empty:
                break
            if self.plot.name in record:
                points.append((float(record["step"]), float(record[self.plot.name])))
                last = record
            if "val_psnr" in record or "val_acc_moving_best5" in record:
                val = record
        if points:
            self.plot.add_points(points)
            self.progress.setValue(min(int(points[-1][0]), self.progress.maximum()))
        if last is not None and not self._stop.is_set():
            self.status.setText(_step_text(last, val))

    def _show_result(self, result) -> None:
        self.result = result
        weights = result.best_weights or result.last_weights
        if result.cancelled:
            text = (
                f"Cancelled at step {result.step}; checkpoint saved in {result.out_dir} "
                f"(tick 'resume' to continue)."
            )
        else:
            self.progress.setValue(self.progress.maximum())
            text = f"Finished {result.step} steps."
            if result.best_metrics.get("psnr") is not None:
                text += f" Best validation PSNR {result.best_metrics['psnr']:.2f} dB."
            if result.best_metrics.get("acc_moving_best5") is not None:
                acc = result.best_metrics["acc_moving_best5"]
                text += f" Best validation guidance accuracy (moving pixels, best of 5) {acc:.3f}."
        if weights is not None:
            text += f"\nWeights: {weights}"
        self.status.setText(text)
        self.use_weights_button.setEnabled(weights is not None)

    def _on_errored(self, exc: Exception) -> None:
        self._drain()
        self.status.setText(f"Training failed: {exc}")

    def _on_finished(self, outcome: list) -> None:
        self._timer.stop()
        self._drain()
        if outcome:
            self._show_result(outcome[0])
        self.worker = None
        self.start_button.setText("Start training")
        self.start_button.setEnabled(True)

    def use_as_active_weights(self) -> Path | None:
        """Point napari-afb's default weights of the run's model (the environment variable) at
        this run's best weights, or its last weights when it never validated; show which file."""
        if self.result is None:
            return None
        weights = self.result.best_weights or self.result.last_weights
        if weights is None:
            return None
        env = ENV_VARS[self._role]
        os.environ[env] = str(weights)
        self.status.setText(
            f"Active weights for this session: {weights}\n(to keep them, set {env})"
        )
        return Path(weights)


def _step_text(last: dict, val: dict | None) -> str:
    """The status line for the latest logged step (and validation) of either model."""
    if "ratio" in last:
        text = f"Step {last['step']}: loss {last['loss']:.4f}, ratio {last['ratio']:.3f}"
    else:
        text = (
            f"Step {last['step']}: loss {last['loss']:.4f}, axis right on "
            f"{last.get('axis_acc', float('nan')):.1%} of moving pixels"
        )
    if val is not None and "val_psnr" in val:
        text += f"; validation PSNR {val['val_psnr']:.2f} dB"
    elif val is not None:
        text += f"; validation accuracy (best of 5) {val['val_acc_moving_best5']:.3f}"
    return text
