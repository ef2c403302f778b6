"""Dock widget: *Process a folder*, the napari side of ``napari-afb batch``.

The user picks a folder of photos and videos and an output folder; the batch
(:func:`napari_afb.batch.batch_iter`) runs in a ``thread_worker`` on a local Dask cluster (or the
scheduler in ``scheduler_override``), with its progress in the widget's bar and in napari's
activity dock, and Cancel. Each result opens as it finishes (photos as a stack of frames, videos
lazily through the plugin's reader), up to ``MAX_OPENED`` layers. Outputs that a previous run
finished are skipped, so Cancel and run again continues where it stopped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QSpinBox,
    QWidget,
)

from ._dock import RunGate, fit_scroll_width, lay_out_dock, missing_file, run_controls
from ._qt_guidance import CancelOnClose, device_combo, weights_field

if TYPE_CHECKING:
    import napari

__all__ = ["BatchWidget", "batch_job"]

#: Results opened as layers at most (a folder of hundreds would swamp the layer list)
MAX_OPENED = 12
ENGINES = ("auto", "kernel", "learned")


def batch_job(inputs, out, options, *, scheduler, workers, cancel):
    """Worker thread (no Qt, no napari): the batch; yields BatchProgress, returns
    ``(summary, "")`` or ``(None, message)`` for an expected failure."""
    from .batch import batch_iter

    try:
        summary = yield from batch_iter(
            inputs, out, options, scheduler=scheduler, workers=workers, cancel=cancel
        )
    except (ValueError, OSError, TimeoutError) as exc:
        return None, str(exc)
    return summary, ""


class BatchWidget(CancelOnClose, QWidget):
    """Decompose every photo and animate every video of a folder into an output folder.

    ``scheduler_override`` (a Dask address or ``distributed.Client``), when set, is used
    instead of a new local cluster: for tests and for users with a cluster running.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from magicgui.widgets import FileEdit

        self.viewer = napari_viewer
        self.scheduler_override = None
        self._worker = None
        self._cancel = threading.Event()
        self._activity = None
        self._opened = 0
        self._started = 0.0
        self.summary = None  # the last run's napari_afb.batch.Summary

        self.in_edit = FileEdit(mode="d")
        self.out_edit = FileEdit(mode="d")
        self.guidance_combo = QComboBox()
        for text, value in [
            ("automatic (guidance file beside a photo, else predicted)", "auto"),
            ("predicted", "predict"),
            ("none: the engine decides", "none"),
        ]:
            self.guidance_combo.addItem(text, value)
        self.engine_combo = QComboBox()
        self.engine_combo.addItems(ENGINES)
        self.weights_edit = weights_field("decomposer")
        self.device_combo = device_combo()
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(0, 64)
        self.workers_spin.setSpecialValueText("auto")
        self.workers_spin.setToolTip("Worker processes of the local cluster (auto: by the cores)")
        self.open_check = QCheckBox("open results as they finish")
        self.open_check.setChecked(True)
        self.run_button, self.progress, self.status = run_controls(
            "Process folder", "Pick a folder of photos and videos and an output folder."
        )

        form = QFormLayout()
        form.addRow("Folder", self.in_edit.native)
        form.addRow("Output folder", self.out_edit.native)
        form.addRow("Guidance", self.guidance_combo)
        form.addRow("Engine", self.engine_combo)
        form.addRow("Weights", self.weights_edit.native)
        form.addRow("Device", self.device_combo)
        form.addRow("Workers", self.workers_spin)
        form.addRow("", self.open_check)
        self._inputs = [
            self.in_edit.native,
            self.out_edit.native,
            self.guidance_combo,
            self.engine_combo,
            self.weights_edit.native,
            self.device_combo,
            self.workers_spin,
        ]
        lay_out_dock(
            self,
            [form],
            "batch",
            [
                ("folder", self.in_edit),
                ("output", self.out_edit),
                ("guidance", self.guidance_combo),
                ("engine", self.engine_combo),
                ("weights", self.weights_edit),
                ("device", self.device_combo),
                ("workers", self.workers_spin),
                ("open", self.open_check),
            ],
        )
        self.gate = RunGate(self.run_button, self._reason, busy=lambda: self.running)
        self.gate.watch(self.in_edit.changed, self.out_edit.changed, self.weights_edit.changed)
        self.gate.update()
        self.run_button.clicked.connect(self._on_run_clicked)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        fit_scroll_width(self)  # once napari's style sheet applies
        super().showEvent(event)

    def _reason(self) -> str:
        """Why the batch cannot start now ('' when it can)."""
        folder, out = self.in_edit.value, self.out_edit.value
        if not folder or str(folder) in ("", ".") or not Path(folder).expanduser().is_dir():
            return "Pick the folder of photos and videos to process."
        if not out or str(out) in ("", "."):
            return "Pick an output folder."
        if self.engine_combo.currentText() == "learned":
            return missing_file(self.weights_edit.value, "decomposer weights")
        return ""

    def options(self):
        from .batch import BatchOptions

        weights = self.weights_edit.value
        engine = self.engine_combo.currentText()
        return BatchOptions(
            guidance=self.guidance_combo.currentData(),
            weights=str(weights) if weights else None,
            device=self.device_combo.currentText(),
            decompose_kwargs={} if engine == "auto" else {"engine": engine},
        )

    def run(self):
        """Start the batch in a worker thread; returns the worker (None if not started)."""
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        if self.running:
            return self._worker
        folder, out = self.in_edit.value, self.out_edit.value
        if not folder or not Path(folder).is_dir():
            return self._fail("Pick the folder of photos and videos to process.")
        if not out or str(out) in ("", "."):
            return self._fail("Pick an output folder.")
        folder, out = Path(folder).expanduser(), Path(out).expanduser()
        if out.resolve() == folder.resolve():
            return self._fail("The output folder must not be the input folder.")
        self._cancel = threading.Event()
        worker = thread_worker(batch_job, start_thread=False)(
            [folder],
            out,
            self.options(),
            scheduler=self.scheduler_override,
            workers=self.workers_spin.value() or None,
            cancel=self._cancel.is_set,
        )
        worker.returned.connect(self._on_returned)
        self._opened = 0
        self._activity = progress(total=0, desc=f"batch {folder.name}")
        self._started = time.perf_counter()
        return self._start_run(worker, "Starting the workers...")  # busy until the first count

    def cancel(self) -> None:
        """Stop the batch: running tasks are dropped, finished outputs kept."""
        self._cancel_run("Cancelling; finished outputs are kept...")

    def _on_progress(self, p) -> None:
        if self._cancel.is_set() or self.closed:
            return
        if p.frames_total:
            self.progress.setRange(0, p.frames_total)
            self.progress.setValue(p.frames_done)
        if self._activity is not None and p.frames_total:
            self._activity.total = p.frames_total
            self._activity.update(p.frames_done - self._activity.n)
        left = ""
        if 0 < p.frames_done < p.frames_total:
            elapsed = time.perf_counter() - self._started
            left = (
                f", about {elapsed / p.frames_done * (p.frames_total - p.frames_done):.0f} s left"
            )
        files = f"{p.files_done} of {p.files_total} files"
        text = f"{files}, {p.frames_done} of {p.frames_total} frames{left}."
        if p.message.startswith("dashboard"):
            text += f" Dask {p.message}"
        self.status.setText(text)
        if p.result is not None and p.result.status == "done" and self.open_check.isChecked():
            self._open(p.result)

    def _open(self, result) -> None:
        """Add a finished output as a layer (the first MAX_OPENED of a run)."""
        if self._opened >= MAX_OPENED:
            return
        self._opened += 1
        if result.kind == "photo":
            from .io import read_image

            frames = np.stack([read_image(p) for p in sorted(result.output.glob("frame_*.png"))])
            self.viewer.add_image(
                frames,
                name=f"{result.output.name} frames",
                rgb=frames.ndim == 4 and frames.shape[-1] in (3, 4),
                metadata={"source_path": str(result.output)},
            )
        else:
            from ._reader import read_file

            for data, kwargs, _ in [t for t in read_file(result.output) if t[0] is not None]:
                self.viewer.add_image(data, **kwargs)

    def _on_returned(self, result) -> None:
        summary, error = result
        if error:
            self._fail(error)
            return
        done, skipped, failed = (summary.count(s) for s in ("done", "skipped", "failed"))
        lead = "Cancelled" if summary.cancelled else "Done"
        text = f"{lead} in {summary.seconds:.0f} s: {done} done, {skipped} skipped, {failed} failed"
        reasons = [f"{r.name}: {r.reason}" for r in summary.results if r.status == "failed"]
        self.status.setText(text + (". " + "; ".join(reasons[:5]) if reasons else "."))
        self.summary = summary

    def _on_errored(self, exc: Exception) -> None:
        self.status.setText(f"Failed: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._end_run({self.run_button: "Process folder"})
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if not self._cancel.is_set() else 0)
