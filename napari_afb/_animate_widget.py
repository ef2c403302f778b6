"""Dock widget: animate a range of a video's frames, each decomposed into its N sharp frames.

The napari side of ``napari-afb animate``. The user picks a video layer, a range of frames (by
default ten from the one on screen: a whole clip takes many CPU minutes, and the widget says
how many before it starts), the guidance source and, optionally, a file to write. The job runs
in a ``thread_worker`` (:func:`napari_afb.animate.animate_frames`), reports each frame to the
widget's bar with the time left and to napari's activity dock, can be cancelled, and the
result opens as one layer on an axis of its own (:mod:`._layout`), N frames per video frame.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QSpinBox,
    QWidget,
)

from ._dock import RunGate, fit_scroll_width, lay_out_dock, missing_file, run_controls
from ._export_widget import _confirm_overwrite
from ._layout import METADATA_KEY, is_result, squeeze_leading, stack_placement
from ._qt_guidance import (
    CancelOnClose,
    LayerCombo,
    current_index,
    device_combo,
    weights_field,
)

if TYPE_CHECKING:
    import napari
    import torch

__all__ = ["AnimateWidget", "animate_job"]

#: Default length of the range, in video frames
DEFAULT_FRAMES = 10
#: Frames per exposure of the default decomposer (for estimates before the model is loaded)
N_FRAMES = 7
#: The result is kept in memory as a layer; above this the widget asks for a shorter range
MAX_RESULT_BYTES = 4 * 2**30


def _is_video(layer) -> bool:
    return layer.ndim == 3 and not is_result(layer)


def animate_job(
    video,
    frames,
    *,
    guidance,
    weights,
    predictor_weights,
    model,
    predictor,
    device,
    tile,
    out,
    fps,
    cancel,
    speed="slow",
    engine_name="learned",
):
    """Worker thread (no Qt, no napari): load the models, animate ``frames`` of ``video``,
    write ``out`` if given (in slow motion at ``fps``, or with ``speed="real"`` at N times it);
    yields Progress, returns ``(stack, summary, error, codec)`` with the frames
    (M * N, H, W[, C]) and the codec of ``out`` ("" when none was written), or
    ``(None, "", message, "")`` for an expected failure, or None when cancelled.
    ``engine_name="kernel"``: the blur-kernel engine, each frame's blur paths from its neighbours
    (no model is loaded)."""
    from . import engine
    from .animate import animate_frames
    from .weights import cached_model, gui_message, model_on

    try:
        kernel = {"shutter": "auto"} if engine_name == "kernel" else None
        n_frames = N_FRAMES
        if kernel is not None:
            dev, summary = None, "none (blur-kernel engine: paths from neighbouring frames)"
        else:
            dev = engine.select_device(device)
            yield engine.Progress(0, 0, f"loading the model on {dev}...")
            model, summary = model_on(model, weights, dev)
            n_frames = int(model.n_frames)
        if kernel is None and guidance == "predict" and predictor is None:
            predictor, _ = cached_model(predictor_weights, dev, role="predictor")
        chunks: list[np.ndarray] = []
        yield from animate_frames(
            video,
            frames,
            chunks.append,
            model=model,
            device=dev,
            tile=tile,
            cancel=cancel,
            guidance=guidance,
            predictor=predictor,
            kernel=kernel,
        )
        stack = np.concatenate(chunks)
        if out is not None:
            from .export import write_frames

            yield engine.Progress(len(frames), len(frames), f"writing {out.name}...")
            rate = fps * n_frames if speed == "real" else fps
            codec = write_frames(stack, out, fps=rate, overwrite=True).codec
    except engine.Cancelled:
        return None
    except (ValueError, TypeError, OSError, engine.DeviceError, MemoryError) as exc:
        return None, "", gui_message(exc), ""
    return stack, summary, "", codec if out is not None else ""


class AnimateWidget(CancelOnClose, QWidget):
    """Animate video frames ``start`` to ``stop`` (exclusive) of the selected video layer.

    ``model_override`` and ``predictor_override`` (``nn.Module`` s), when set, are used instead
    of the weights files: for tests and scripts.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from magicgui.widgets import FileEdit
        from napari.layers import Image

        self.viewer = napari_viewer
        self.model_override: torch.nn.Module | None = None
        self.predictor_override: torch.nn.Module | None = None
        self._worker = None
        self._cancel = threading.Event()
        self._activity = None  # napari's progress in the activity dock
        self._handled = False  # the running job's result has been shown
        self._started = 0.0

        self.video_combo = LayerCombo(napari_viewer, (Image,), prefer=_is_video)
        self.engine_combo = QComboBox()
        self.engine_combo.addItem("blur kernel (no training)", "kernel")
        self.engine_combo.addItem("learned decomposer", "learned")
        self.engine_combo.setToolTip(
            "Blur kernel: each frame is deblurred along the blur paths the flow to its "
            "neighbours gives (no weights needed). Learned: the decomposer network (its "
            "shipped weights are provisional, CPU-trained)."
        )
        self.start_spin = QSpinBox()
        self.stop_spin = QSpinBox()
        self.stop_spin.setToolTip("Animate up to this frame, not including it")
        self.guidance_combo = QComboBox()
        self.guidance_combo.addItem("from neighbouring frames", "neighbors")
        self.guidance_combo.addItem("predicted (continuing from frame to frame)", "predict")
        self.speed_combo = QComboBox()
        self.speed_combo.addItem("slow motion", "slow")
        self.speed_combo.addItem(f"real time ({N_FRAMES}x rate)", "real")
        self.speed_combo.setToolTip(
            "Slow motion: the sharp frames play at the video's own frame rate, so the result "
            f"lasts {N_FRAMES} times as long. Real time: {N_FRAMES} times the frame rate, as "
            "long as the source."
        )
        self.weights_edit = weights_field("decomposer")
        self.predictor_edit = weights_field("predictor")
        self.out_edit = FileEdit(mode="w", filter="*.mp4 *.gif *.tif", nullable=True)
        self.out_edit.line_edit.native.setPlaceholderText("(optional) also save as .mp4/.gif/.tif")
        self.device_combo = device_combo()
        self.run_button, self.progress, self.status = run_controls(
            "Animate", "Pick a video and a range of frames, then Animate."
        )

        form = QFormLayout()
        form.addRow("Engine", self.engine_combo)
        form.addRow("Video", self.video_combo)
        form.addRow("From frame", self.start_spin)
        form.addRow("To frame (excl.)", self.stop_spin)
        form.addRow("Guidance", self.guidance_combo)
        form.addRow("Weights", self.weights_edit.native)
        form.addRow("Predictor", self.predictor_edit.native)
        form.addRow("Playback", self.speed_combo)
        form.addRow("Save as", self.out_edit.native)
        form.addRow("Device", self.device_combo)
        self._inputs = [
            self.engine_combo,
            self.video_combo,
            self.start_spin,
            self.stop_spin,
            self.guidance_combo,
            self.weights_edit.native,
            self.predictor_edit.native,
            self.speed_combo,
            self.out_edit.native,
            self.device_combo,
        ]
        lay_out_dock(
            self,
            [form],
            "animate",
            [
                ("engine", self.engine_combo),
                ("guidance", self.guidance_combo),
                ("weights", self.weights_edit),
                ("predictor", self.predictor_edit),
                ("playback", self.speed_combo),
                ("device", self.device_combo),
            ],
        )
        self.gate = RunGate(self.run_button, self._reason, busy=lambda: self.running)
        self.run_button.clicked.connect(self._on_run_clicked)
        self.video_combo.changed.connect(self._on_video)
        self.start_spin.valueChanged.connect(self._on_range)
        self.stop_spin.valueChanged.connect(self._on_range)
        self.engine_combo.currentIndexChanged.connect(self._on_engine)
        self.gate.watch(
            self.engine_combo.currentIndexChanged,
            self.video_combo.currentIndexChanged,
            self.start_spin.valueChanged,
            self.stop_spin.valueChanged,
            self.guidance_combo.currentIndexChanged,
            self.weights_edit.changed,
            self.predictor_edit.changed,
            napari_viewer.layers.events.inserted,
            napari_viewer.layers.events.removed,
        )
        self._on_video()
        self._on_engine()
        self.gate.update()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        fit_scroll_width(self)  # once napari's style sheet applies
        super().showEvent(event)

    def _reason(self) -> str:
        """Why Animate cannot start now ('' when it can)."""
        if self._video() is None:
            return "Open a video (File > Open) to animate its frames."
        if self.stop_spin.value() <= self.start_spin.value():
            return "'To frame' must be after 'From frame'."
        if self.engine() == "kernel":
            return ""
        if self.model_override is None:
            reason = missing_file(self.weights_edit.value, "decomposer weights")
            if reason:
                return reason
        if self.guidance_combo.currentData() == "predict" and self.predictor_override is None:
            return missing_file(self.predictor_edit.value, "predictor weights")
        return ""

    # -- choices ---------------------------------------------------------------------------

    def engine(self) -> str:
        """ "kernel" or "learned" (a model set by a script means the learned engine)."""
        if self.model_override is not None:
            return "learned"
        return self.engine_combo.currentData()

    def _on_engine(self) -> None:
        learned = self.engine() == "learned"
        for field in (self.guidance_combo, self.weights_edit.native, self.predictor_edit.native):
            field.setEnabled(learned)
        if not learned:  # the kernel engine's paths come from the neighbouring frames
            self.guidance_combo.setCurrentIndex(self.guidance_combo.findData("neighbors"))

    def _video(self):
        layer = self.video_combo.current()
        return layer if layer is not None and _is_video(layer) else None

    def _on_video(self) -> None:
        """A new video: the range becomes DEFAULT_FRAMES frames from the one on screen."""
        layer = self._video()
        n = len(layer.data) if layer is not None else 1
        here = current_index(self.viewer, layer) if layer is not None else 0
        for spin in (self.start_spin, self.stop_spin):
            spin.blockSignals(True)
        self.start_spin.setRange(0, max(n - 1, 0))
        self.stop_spin.setRange(1, n)
        self.start_spin.setValue(min(here, n - 1))
        self.stop_spin.setValue(min(here + DEFAULT_FRAMES, n))
        for spin in (self.start_spin, self.stop_spin):
            spin.blockSignals(False)
        self._on_range()

    def _on_range(self) -> None:
        if self.running:
            return
        layer = self._video()
        if layer is None:
            self.status.setText("Open a video (File > Open) to animate its frames.")
            return
        count = self.stop_spin.value() - self.start_spin.value()
        if count < 1:
            self.status.setText("'To frame' must be after 'From frame'.")
            return
        self.status.setText(
            f"{count} of the video's {len(layer.data)} frames, each into {N_FRAMES} (with the "
            f"default model). The time left shows once the first frame is done."
        )

    # -- running ---------------------------------------------------------------------------

    def run(self):
        """Start the animation in a worker thread; returns the worker (None if not started)."""
        from napari.qt.threading import thread_worker
        from napari.utils import progress

        from .animate import frame_range

        if self.running:
            return self._worker
        layer = self._video()
        if layer is None:
            return self._fail("No video layer: open a video (mp4, avi, mov, ...) first.")
        video = squeeze_leading(layer.data[0] if layer.multiscale else layer.data, layer.rgb)
        try:
            frames = frame_range(len(video), self.start_spin.value(), self.stop_spin.value())
        except ValueError as exc:
            return self._fail(str(exc))
        h, w = video.shape[1:3]
        need = len(frames) * N_FRAMES * h * w * (3 if layer.rgb else 1)
        if need > MAX_RESULT_BYTES:
            return self._fail(
                f"{len(frames)} frames would make a {need / 2**30:.1f} GiB layer: animate a "
                f"shorter range here, or the whole video with `napari-afb animate` (it streams "
                f"to a file)."
            )
        fps = float((layer.metadata or {}).get("fps") or getattr(video, "fps", None) or 25.0)
        out = self.out_edit.value
        out = Path(out).expanduser() if out else None
        if out is not None:
            from .export import check_folder

            try:
                check_folder(out)  # before the long part: a missing folder is not created
            except OSError as exc:
                return self._fail(str(exc))
        if out is not None and out.exists() and not _confirm_overwrite(self, out):
            return self._fail(f"Not started: kept the existing {out.name}.")
        weights, pweights = self.weights_edit.value, self.predictor_edit.value
        self._cancel = threading.Event()
        worker = thread_worker(animate_job, start_thread=False)(
            video,
            frames,
            guidance=self.guidance_combo.currentData(),
            weights=str(weights) if weights else None,
            predictor_weights=str(pweights) if pweights else None,
            model=self.model_override,
            predictor=self.predictor_override,
            device=self.device_combo.currentText(),
            tile=None,
            out=out,
            fps=fps,
            cancel=self._cancel.is_set,
            speed=self.speed_combo.currentData(),
            engine_name=self.engine(),
        )
        context = (layer, frames, out, fps, self.speed_combo.currentData())
        worker.returned.connect(lambda result: self._on_returned(result, context))
        self._handled = False
        self._activity = progress(total=len(frames), desc=f"animate {layer.name}")
        self._started = time.perf_counter()
        return self._start_run(worker, f"Animating {len(frames)} frames...", total=len(frames))

    def cancel(self) -> None:
        """Ask the running animation to stop after its current tile; nothing is added."""
        self._cancel_run("Cancelling after the current tile...")

    def _on_progress(self, p) -> None:
        if self._cancel.is_set() or self._handled:
            return
        if not p.total or p.done == p.total:  # loading, or writing the file at the end
            self.status.setText(p.message)
            if not p.total:
                return
        if 0 < p.done < p.total:
            elapsed = time.perf_counter() - self._started
            left = elapsed / p.done * (p.total - p.done)
            self.status.setText(
                f"{p.done} of {p.total} video frames done, about {_duration(left)} left."
            )
        elif p.done < p.total:
            self.status.setText(p.message)
        self.progress.setValue(p.done)
        if self._activity is not None:
            self._activity.update(p.done - self._activity.n)

    def _on_returned(self, result, context) -> None:
        self._handled = True  # progress that arrives after the result changes nothing
        if result is None or self._cancel.is_set() or self.closed:
            self.status.setText("Cancelled: nothing was added.")
            return
        stack, summary, error, codec = result
        if error:
            self._fail(error)
            return
        layer, frames, out, fps, speed = context
        n = len(stack) // len(frames)
        placement = stack_placement(self.viewer, layer, None, "animation")
        rgb = stack.ndim == 4
        result_layer = self.viewer.add_image(
            placement.shaped(stack),
            name=f"{layer.name} animation {frames[0]}-{frames[-1]}",
            rgb=rgb,
            metadata={
                "fps": fps * n if speed == "real" else fps,
                METADATA_KEY: {
                    "source": layer.name,
                    "frames": [frames[0], frames[-1] + 1],
                    "n_frames": n,
                    "weights": summary,
                    "seconds": round(time.perf_counter() - self._started, 3),
                },
            },
            **placement.kwargs(),
        )
        self.viewer.layers.selection.active = result_layer
        saved = f" Saved to {out} ({codec})." if out is not None else ""
        self.status.setText(
            f"Done in {_duration(time.perf_counter() - self._started)}: {len(stack)} frames "
            f"in '{result_layer.name}'; step through them with the "
            f"'{result_layer.axis_labels[0]}' slider.{saved}"
        )

    def _on_errored(self, exc: Exception) -> None:
        self.status.setText(f"Failed: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._end_run({self.run_button: "Animate"})
        if self._cancel.is_set():
            self.progress.setValue(0)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
