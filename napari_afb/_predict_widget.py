"""Dock widget: sample guidance maps for an image from the guidance predictor.

The samples go into one new Labels layer, '<image> guidance samples', on an axis of its own
('sample', see :mod:`._layout`), each distinct map once, in order of plausibility: step through
them with its slider, touch one up with the brush, and pick that layer in "Decompose blur into
frames", which uses the sample on screen. A new layer is added on every run, so nothing the
user painted is replaced.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ._dock import RunGate, fit_scroll_width, lay_out_dock, missing_file
from ._layout import is_result, stack_placement
from ._qt_guidance import (
    CancelOnClose,
    LayerCombo,
    current_image,
    device_combo,
    weights_field,
)

if TYPE_CHECKING:
    import napari
    import torch

__all__ = ["SampleGuidanceWidget", "sample_job"]

METADATA_KEY = "napari_afb"


def sample_job(image, n_samples, seed, *, weights, model, device, cancel):
    """Predict guidance samples (worker thread: no Qt, no napari).

    Returns None when cancelled, else ``(labels, log_prob, weights summary, error)``: expected
    failures (missing or bad weights, a bad image, an unavailable device, out of memory) come
    back as ``error``, a sentence for the status line, not as an exception and a traceback.
    """
    from . import engine
    from .predict import predict_guidance
    from .weights import cached_model, gui_message

    try:
        dev = engine.select_device(device)
        summary = "model passed in"
        if model is None:
            model, info = cached_model(weights, dev, role="predictor")
            summary = info.summary()
        if cancel():
            return None
        labels, log_prob = predict_guidance(
            image,
            n_samples,
            seed=seed,
            model=model,
            device=str(dev),
            return_log_prob=True,
            unique=True,
        )
    except (ValueError, TypeError, engine.DeviceError, MemoryError) as exc:
        return None, None, "", gui_message(exc)  # WeightsError is a ValueError
    return labels, log_prob, summary, ""


class SampleGuidanceWidget(CancelOnClose, QWidget):
    """Sample several plausible guidance maps for the selected image (or video frame).

    ``predictor_override`` (an ``nn.Module``), when set, is used instead of the weights file.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Image

        self.viewer = napari_viewer
        self.predictor_override: torch.nn.Module | None = None
        self._worker = None
        self._cancel = threading.Event()

        self.image_combo = LayerCombo(napari_viewer, (Image,), prefer=lambda ly: not is_result(ly))
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(1, 32)
        self.samples_spin.setValue(5)
        self.samples_spin.setToolTip(
            "How many maps. A blur can be explained in 2^regions ways (which way each moving "
            "region went); samples differ in those signs. Each distinct map comes once, in "
            "order of plausibility; a map and its time-reversal are equally plausible."
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The same seed always gives the same samples")
        self.weights_edit = weights_field("predictor")
        self.device_combo = device_combo()
        self.run_button = QPushButton("Sample guidance")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = QLabel("Pick a blurry image, then Sample guidance.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Samples", self.samples_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Weights", self.weights_edit.native)
        form.addRow("Device", self.device_combo)
        self._inputs = [
            self.image_combo,
            self.samples_spin,
            self.seed_spin,
            self.weights_edit.native,
            self.device_combo,
        ]
        lay_out_dock(
            self,
            [form],
            "sample",
            [
                ("samples", self.samples_spin),
                ("seed", self.seed_spin),
                ("weights", self.weights_edit),
                ("device", self.device_combo),
            ],
        )
        self.gate = RunGate(self.run_button, self._reason, busy=lambda: self.running)
        self.gate.watch(
            self.image_combo.currentIndexChanged,
            self.weights_edit.changed,
            napari_viewer.layers.events.inserted,
            napari_viewer.layers.events.removed,
        )
        self.gate.update()
        self.run_button.clicked.connect(self._on_run_clicked)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        fit_scroll_width(self)  # once napari's style sheet applies
        super().showEvent(event)

    def _reason(self) -> str:
        """Why sampling cannot start now ('' when it can)."""
        if self.image_combo.current() is None:
            return "Open a blurry image or video first."
        if self.predictor_override is None:
            return missing_file(self.weights_edit.value, "predictor weights")
        return ""

    def cancel(self) -> None:
        """Ask the running sampling to stop; what it returns afterwards is not added."""
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling...")

    def _current_image(self):
        layer = self.image_combo.current()
        if layer is None:
            raise ValueError("No image layer: open a blurry image or video first.")
        image, frame = current_image(self.viewer, layer)
        return layer, image, frame

    def run(self):
        """Start sampling in a worker thread; returns the worker (None if not started)."""
        from napari.qt.threading import thread_worker

        if self.running:
            return self._worker
        try:
            layer, image, frame = self._current_image()
        except ValueError as exc:
            self._fail(str(exc))
            return None
        n, seed = self.samples_spin.value(), self.seed_spin.value()
        weights = self.weights_edit.value
        self._cancel = threading.Event()
        worker = thread_worker(sample_job, start_thread=False)(
            image,
            n,
            seed,
            weights=str(weights) if weights else None,
            model=self.predictor_override,
            device=self.device_combo.currentText(),
            cancel=self._cancel.is_set,
        )
        context = (layer, frame, seed, n)
        worker.returned.connect(lambda result: self._on_returned(result, context))
        return self._start_run(worker, f"Sampling {n} guidance maps...")

    def _on_returned(self, result, context) -> None:
        from ._sample_data import guidance_layer_kwargs
        from .predict import describe_order, plausibility_ranks

        if result is None or self._cancel.is_set():
            self.status.setText("Cancelled: nothing was added.")
            return
        labels, log_prob, summary, error = result
        if error:
            self._fail(error)
            return
        source, frame, seed, asked = context
        placement = stack_placement(self.viewer, source, frame, "sample")
        layer = self.viewer.add_labels(
            placement.shaped(labels),
            **guidance_layer_kwargs(f"{source.name} guidance samples"),
            **placement.kwargs(),
            metadata={
                METADATA_KEY: {
                    "source": source.name,
                    "frame": frame,
                    "seed": seed,
                    "log_prob": [float(v) for v in log_prob],
                    "rank": [int(r) for r in plausibility_ranks(log_prob)],
                    "weights": summary,
                }
            },
        )
        self.viewer.dims.set_current_step(0, 0)  # its own new axis: the first sample
        order = describe_order(log_prob, asked)
        self.status.setText(
            f"{order[0].upper()}{order[1:]} in '{layer.name}'. Step through them with the "
            f"'{layer.axis_labels[0]}' slider; Decompose uses the one on screen."
        )

    def _on_errored(self, exc: Exception) -> None:
        self._fail(f"{exc}" if isinstance(exc, ValueError) else f"Failed: {exc!r}")

    def _on_finished(self) -> None:
        self._end_run({self.run_button: "Sample guidance"})
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if not self._cancel.is_set() else 0)
