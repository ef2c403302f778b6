"""napari widgets: paint motion guidance, and decompose a blurry image into its frames.

Widgets are thin. :class:`DecomposeWidget` collects its inputs on the main thread, runs
:func:`decompose_job` (the learned engine's generator, plus model loading) or
:func:`._kernel_widget.kernel_job` (the blur-kernel engine; its path tools live in
:class:`._kernel_widget.KernelPanel`) in a napari ``thread_worker`` and turns the returned
frames into one Image layer on the main thread. The job never touches Qt
or napari objects; a cancelled or failed run leaves the layer list as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ._dock import RunGate, fit_scroll_width, lay_out_dock, missing_file, run_controls
from ._layout import is_result, leading_index, squeeze_leading, stack_placement
from ._qt_guidance import (
    CancelOnClose,
    GuidanceWidget,
    LayerCombo,
    current_image,
    device_combo,
    direction_text,
    image_spatial_shape,
    spatial_transform,
    weights_field,
)
from .guidance import NAMES, check_guidance

if TYPE_CHECKING:
    import napari
    import torch

__all__ = ["DecomposeWidget", "GuidanceWidget", "Outcome", "decompose_job"]

METADATA_KEY = "napari_afb"


@dataclass
class Outcome:
    """What a decomposition job returns: frames, or why there are none."""

    frames: np.ndarray | None = None
    weights: str = ""
    device: str = ""
    seconds: float = 0.0
    error: str = ""
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    guidance: np.ndarray | None = None  # the map used, when it was estimated in the job
    paths: list = field(default_factory=list)  # kernel engine: the paths it estimated and used


#: Guidance-combo entry: estimate the guidance from the video frames around the current one.
NEIGHBORS = "neighbors"
#: Guidance-combo entry: the guidance predictor's most plausible sample.
PREDICTED = "predicted"
#: Guidance-combo entry (blur-kernel engine): no guidance, the whole image follows the paths.
NO_GUIDANCE = "none"
#: Engine-combo entries: (text, value).
ENGINES = (("blur kernel (no training)", "kernel"), ("learned decomposer", "learned"))


def decompose_job(
    image: np.ndarray,
    guidance: np.ndarray | Callable[[], np.ndarray],
    *,
    weights: str | None,
    model: torch.nn.Module | None,
    device: str,
    tile: int | None,
    cancel: Callable[[], bool],
    estimating: str = "estimating guidance...",
) -> Generator[Any, None, Outcome]:
    """Load the model (unless given) and decompose; yields engine Progress, returns an Outcome.

    ``guidance`` may be a callable that estimates the map (from neighbouring video frames, or
    with the guidance predictor): it runs here, in the worker, after the ``estimating`` message,
    and the map comes back in the Outcome.

    Expected failures (missing or bad weights, a bad input, an unavailable device, out of
    memory) and cancellation come back as an Outcome with a message, not as exceptions, so the
    widget shows a sentence rather than a traceback. Runs in a worker thread: no Qt, no napari.
    """
    from . import engine
    from .weights import gui_message, model_on

    start = time.perf_counter()
    estimated = None
    try:
        if callable(guidance):
            yield engine.Progress(0, 0, estimating)
            guidance = estimated = guidance()
        dev = engine.select_device(device)
        yield engine.Progress(0, 0, f"loading the model on {dev}...")
        model, summary = model_on(model, weights, dev)
        overlap = engine.DEFAULT_OVERLAP if not tile else min(engine.DEFAULT_OVERLAP, tile // 4)
        yield engine.Progress(0, 0, f"decomposing on {dev}...")
        frames = yield from engine.decompose_iter(
            image, guidance, model=model, device=dev, tile=tile, overlap=overlap, cancel=cancel
        )
    except engine.Cancelled:
        return Outcome(cancelled=True)
    except (ValueError, TypeError, engine.DeviceError, MemoryError) as exc:
        return Outcome(error=gui_message(exc))  # WeightsError is a ValueError
    return Outcome(
        frames=frames,
        weights=summary,
        device=str(dev),
        seconds=time.perf_counter() - start,
        extra={"tile": tile or "auto", "overlap": overlap},
        guidance=estimated,
    )


def _is_input(layer) -> bool:
    """What the image combo picks by default: an image or video, not a result or a preview of
    ours."""
    meta = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}
    return not is_result(layer) and not meta.get("preview")


@dataclass
class _Job:
    """A run's inputs, fixed on the main thread when Run is clicked."""

    image_name: str
    image: np.ndarray
    layer: Any  # the source layer (its placement in the viewer's dims)
    guidance: np.ndarray | Callable[[], np.ndarray]
    guidance_source: str
    frame: int | None
    transform: dict[str, tuple[float, ...]]
    estimated_name: str = "video guidance"  # layer-name suffix of an estimated map
    estimating: str = "estimating guidance..."


class DecomposeWidget(CancelOnClose, QWidget):
    """Decompose the selected image (or the current frame of a video) into its sharp frames.

    ``model_override`` and ``predictor_override`` (``nn.Module`` s), when set, are used instead
    of the weights files: for tests and scripts.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Image, Labels

        from ._kernel_widget import KernelPanel

        self.viewer = napari_viewer
        self._model_override: torch.nn.Module | None = None
        self.predictor_override: torch.nn.Module | None = None
        self._worker = None
        self._cancel = threading.Event()
        self._job: _Job | None = None
        self._active_button: QPushButton | None = None
        self._guidance_picked = False  # the user chose the guidance entry themselves

        self.engine_combo = QComboBox()
        for text, value in ENGINES:
            self.engine_combo.addItem(text, value)
        self.engine_combo.setToolTip(
            "Blur kernel: the blur is explained by blur paths (drawn or estimated) and undone "
            "by deconvolution; no training, strong on camera shake and things moving one way. "
            "Learned: the decomposer network (chosen when you pick a weights file)."
        )

        order = [1, 2, 3, 4, 0]
        uniform = [(f"uniform: {direction_text(lab)}", lab) for lab in order]
        self.image_combo = LayerCombo(napari_viewer, (Image,), prefer=_is_input)
        extras = [
            *uniform,
            ("from neighbouring frames (video)", NEIGHBORS),
            ("predicted (most plausible sample)", PREDICTED),
            ("none (time from the path)", NO_GUIDANCE),
        ]
        self.guidance_combo = LayerCombo(napari_viewer, (Labels,), extras=extras)
        self.guidance_combo.setToolTip(
            "A painted guidance Labels layer (a stack of samples: the one on screen), the motion "
            "between this video frame and its neighbours, the guidance predictor's most "
            "plausible sample, or one direction for the whole image (camera shake)"
        )
        self.weights_edit = weights_field("decomposer")
        self.weights_edit.native.setToolTip("The decomposer's weights file (.safetensors)")
        self.predictor_edit = weights_field("predictor")
        self.predictor_edit.native.setToolTip(
            "The guidance predictor's weights file, for the 'predicted' guidance"
        )
        self.device_combo = device_combo()
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 16384)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText("auto")
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Tile side; smaller tiles need less memory. auto: by device")
        self.kernel = KernelPanel(self, napari_viewer)
        self.run_button, self.progress, self.status = run_controls(
            "Run", "Pick an image, then draw or estimate a blur path (or just Run)."
        )

        form = QFormLayout()
        form.addRow("Engine", self.engine_combo)
        form.addRow("Image", self.image_combo)
        form.addRow("Guidance", self.guidance_combo)
        learned = QFormLayout()
        learned.addRow("Weights", self.weights_edit.native)
        learned.addRow("Predictor", self.predictor_edit.native)
        learned.addRow("Device", self.device_combo)
        learned.addRow("Tile", self.tile_spin)
        self.learned_box = QGroupBox("Learned decomposer")
        self.learned_box.setLayout(learned)
        self._inputs = [
            self.engine_combo,
            self.image_combo,
            self.guidance_combo,
            self.weights_edit.native,
            self.predictor_edit.native,
            self.device_combo,
            self.tile_spin,
            *self.kernel.inputs,
            *self.kernel.buttons,
        ]
        self._buttons = {self.run_button: "Run", self.kernel.estimate_button: "Estimate blur path"}
        lay_out_dock(
            self,
            [form, self.kernel, self.learned_box],
            "decompose",
            [
                ("weights", self.weights_edit),
                ("predictor", self.predictor_edit),
                ("engine", self.engine_combo),  # after the weights: a stored engine wins
                ("device", self.device_combo),
                ("tile", self.tile_spin),
                ("kernel_bound", self.kernel.bound_spin),
                ("strength", self.kernel.strength_spin),
                ("space", self.kernel.space_combo),
            ],
            self._after_reset,
        )
        self.gate = RunGate(
            self.run_button, self._reason, status=self.status, busy=lambda: self.running
        )
        self.run_button.clicked.connect(self._on_run_clicked)
        self.image_combo.changed.connect(self._prefer_guidance_layer)
        self.guidance_combo.activated.connect(self._on_guidance_picked)
        self.engine_combo.currentIndexChanged.connect(self._on_engine_changed)
        self.weights_edit.changed.connect(self._on_weights_changed)
        napari_viewer.layers.events.inserted.connect(self._on_layer_inserted)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        self._reported: set[str] = set()  # the layers the status line names
        self._on_engine_changed()
        self.gate.watch(
            self.image_combo.currentIndexChanged,
            self.guidance_combo.currentIndexChanged,
            self.engine_combo.currentIndexChanged,
            self.weights_edit.changed,
            self.predictor_edit.changed,
            napari_viewer.layers.events.inserted,
            napari_viewer.layers.events.removed,
        )
        self.gate.update()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """As wide as the form once styled (napari's style sheet widens it), so that a small
        window squeezes the canvas rather than hiding the form's right edge behind a scroll."""
        fit_scroll_width(self)
        super().showEvent(event)

    def _after_reset(self) -> None:
        self._on_engine_changed()
        self.gate.update()

    def _reason(self) -> str:
        """Why Run cannot start now ('' when it can)."""
        if self.image_combo.current() is None:
            return "Open a blurry image or video (File > Open, or a sample) to decompose."
        if self.engine() == "kernel":
            return ""
        if self.model_override is None:
            reason = missing_file(self.weights_edit.value, "decomposer weights")
            if reason:
                return reason
        if self.guidance_combo.current() == PREDICTED and self.predictor_override is None:
            reason = missing_file(self.predictor_edit.value, "predictor weights")
            if reason:
                return reason
        if self.guidance_combo.current() == NO_GUIDANCE:
            return "The learned decomposer needs guidance: paint it, or pick a direction."
        return ""

    # -- engine ----------------------------------------------------------------------------

    @property
    def model_override(self) -> torch.nn.Module | None:
        return self._model_override

    @model_override.setter
    def model_override(self, model) -> None:
        """A decomposer module to use instead of the weights file: picks the learned engine."""
        self._model_override = model
        if model is not None:
            self.set_engine("learned")

    def engine(self) -> str:
        """ "kernel" or "learned"."""
        return self.engine_combo.currentData()

    def set_engine(self, engine: str) -> None:
        self.engine_combo.setCurrentIndex(self.engine_combo.findData(engine))

    def _on_weights_changed(self, value=None) -> None:
        if self.weights_edit.value:  # a chosen weights file is for the learned engine
            self.set_engine("learned")

    def _on_engine_changed(self, index=None) -> None:
        kernel = self.engine() == "kernel"
        self.kernel.setVisible(kernel)
        self.learned_box.setVisible(not kernel)
        self._prefer_guidance_layer()

    def _on_guidance_picked(self, index=None) -> None:
        self._guidance_picked = True

    # -- choices ---------------------------------------------------------------------------

    def _prefer_guidance_layer(self) -> None:
        """The image's painted guidance, else its predicted samples, else (for a video) the
        motion from its neighbouring frames."""
        image = self.image_combo.current()
        if image is None:
            return
        for name in (f"{image.name} guidance", f"{image.name} guidance samples"):
            if self.guidance_combo.select(name):
                return
        current = self.guidance_combo.current()
        if image.ndim > 2 and not is_result(image):
            self.guidance_combo.select_value(NEIGHBORS)
        elif current == NEIGHBORS:  # a photo has no neighbours
            self.guidance_combo.setCurrentIndex(0)
        kernel = self.engine() == "kernel"
        current = self.guidance_combo.current()
        if kernel and isinstance(current, int) and not self._guidance_picked:
            self.guidance_combo.select_value(NO_GUIDANCE)  # the paths say which way
        elif not kernel and current == NO_GUIDANCE:
            self.guidance_combo.setCurrentIndex(0)

    def _on_layer_inserted(self, event) -> None:
        image = self.image_combo.current()
        names = (f"{image.name} guidance", f"{image.name} guidance samples") if image else ()
        if event.value.name in names:
            self.guidance_combo.refresh()  # this callback may run before the combo's own
            self.guidance_combo.select(event.value.name)

    def _on_layer_removed(self, event) -> None:
        """A status that names a deleted layer is stale: say so instead."""
        name = event.value.name
        if name in self._reported and not self.running:
            self._reported = set()
            self.status.setText(f"'{name}' was deleted. Pick an image and its guidance, then Run.")

    def _collect(self, kernel: bool | None = None) -> _Job:
        """Read the inputs from the layers (main thread); ValueError says what is missing.
        ``kernel``: for the blur-kernel engine (guidance optional); None: the engine chosen."""
        from napari.layers import Labels

        layer = self.image_combo.current()
        if layer is None:
            raise ValueError("No image layer: open a blurry image or video first.")
        image, frame = current_image(self.viewer, layer)
        h, w = image_spatial_shape(layer)
        source = self.guidance_combo.current()
        if isinstance(source, Labels):
            labels = source.data
            if labels.ndim > 2:  # one map per video frame, or samples: the one on screen
                labels = labels[leading_index(self.viewer, source)]
            guidance = np.array(labels, copy=True)  # painting during the run changes nothing
            name = f"layer '{source.name}'"
        elif source == NEIGHBORS:
            kernel = kernel if kernel is not None else self.engine() == "kernel"
            return self._neighbor_job(layer, image, frame, kernel=kernel)
        elif source == PREDICTED:
            return self._predicted_job(layer, image, frame)
        elif isinstance(source, int):
            guidance = np.full((h, w), source, dtype=np.uint8)
            name = f"uniform {NAMES[source]}"
        elif source == NO_GUIDANCE:
            if not (kernel if kernel is not None else self.engine() == "kernel"):
                raise ValueError(
                    "The learned decomposer needs guidance: paint a guidance layer, pick a "
                    "uniform direction or 'predicted'."
                )
            return _Job(layer.name, image, layer, None, "none", frame, spatial_transform(layer))
        else:
            raise ValueError("No guidance: paint a guidance layer or pick a uniform direction.")
        try:
            guidance = check_guidance(guidance, shape=(h, w))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Guidance {name}: {exc}") from None
        return _Job(layer.name, image, layer, guidance, name, frame, spatial_transform(layer))

    def _neighbor_job(
        self, layer, image: np.ndarray, frame: int | None, *, kernel: bool = False
    ) -> _Job:
        """Guidance estimated in the worker from the frames before and after the current one;
        for the blur-kernel engine the frame's blur paths too (a (labels, paths) pair: the
        paths measured from the neighbours, used where no path is drawn)."""
        from .flow import guidance_from_neighbors
        from .kernel.video import blur_paths_from_neighbors

        if frame is None:
            raise ValueError(
                "Guidance from neighbouring frames needs a video (or a stack of frames): "
                f"'{layer.name}' is a single image."
            )
        data = squeeze_leading(layer.data[0] if layer.multiscale else layer.data, layer.rgb)
        n = data.shape[0]
        prev = np.asarray(data[frame - 1]) if frame > 0 else None
        nxt = np.asarray(data[frame + 1]) if frame + 1 < n else None
        if prev is None and nxt is None:
            raise ValueError(f"'{layer.name}' has a single frame: no neighbours to compare.")

        def estimate():
            if kernel:
                paths, labels = blur_paths_from_neighbors(prev, image, nxt)
                return labels, paths
            return guidance_from_neighbors(prev, image, nxt)

        source = f"neighbouring frames of frame {frame}"
        return _Job(
            layer.name,
            image,
            layer,
            estimate,
            source,
            frame,
            spatial_transform(layer),
            estimating="estimating guidance from the neighbouring frames...",
        )

    def _predicted_job(self, layer, image: np.ndarray, frame: int | None) -> _Job:
        """Guidance sampled in the worker by the guidance predictor (seed 0, most plausible)."""
        from .predict import predict_guidance

        predictor, device = self.predictor_override, self.device_combo.currentText()
        weights = self.predictor_edit.value
        weights = str(weights) if weights and predictor is None else None

        def estimate():
            return predict_guidance(
                image, 1, seed=0, device=device, weights=weights, model=predictor
            )[0]

        return _Job(
            layer.name,
            image,
            layer,
            estimate,
            "predicted (most plausible sample, seed 0)",
            frame,
            spatial_transform(layer),
            estimated_name="predicted guidance",
            estimating="predicting guidance...",
        )

    # -- running ---------------------------------------------------------------------------

    def run(self):
        """Start a decomposition in a worker thread; returns the worker (None if not started)."""
        from napari.qt.threading import thread_worker

        if self.running:
            return self._worker
        kernel = self.engine() == "kernel"
        try:
            job = self._collect()
            paths = self.kernel.paths(job.layer) if kernel else None
        except ValueError as exc:
            self._fail(str(exc))
            return None
        if kernel:
            from ._kernel_widget import kernel_job

            worker = thread_worker(kernel_job, start_thread=False)(
                job.image,
                job.guidance,
                paths,
                kernel_bound=self.kernel.kernel_bound,
                strength=self.kernel.strength,
                cancel=self._new_cancel(),
                estimating=job.estimating,
                space=self.kernel.space,
            )
        else:
            weights = self.weights_edit.value
            worker = thread_worker(decompose_job, start_thread=False)(
                job.image,
                job.guidance,
                weights=str(weights) if weights else None,
                model=self.model_override,
                device=self.device_combo.currentText(),
                tile=self.tile_spin.value() or None,
                cancel=self._new_cancel(),
                estimating=job.estimating,
            )
        self._job = job
        worker.returned.connect(self._on_returned)
        return self._start(worker, self.run_button, "Starting...")

    def _new_cancel(self) -> Callable[[], bool]:
        self._cancel = threading.Event()
        return self._cancel.is_set

    @property
    def cancelled(self) -> bool:
        """Whether Cancel was clicked during the current (or last) run."""
        return self._cancel.is_set()

    def _start(self, worker, button: QPushButton, message: str):
        """Start ``worker`` (its ``returned`` already connected) with ``button`` as its Cancel
        button, the other inputs disabled, and progress in the bar and status line."""
        self._active_button = button
        for other in self._buttons:
            other.setEnabled(other is button)
        return self._start_run(worker, message, button=button)  # busy until the first step

    def cancel(self) -> None:
        """Ask the running job to stop after its current step."""
        self._cancel_run("Cancelling after the current step...", self._active_button)

    def _on_progress(self, p) -> None:
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        else:
            self.progress.setRange(0, 0)
        if p.message and not self._cancel.is_set():
            self.status.setText(p.message)

    def _on_returned(self, out: Outcome) -> None:
        job = self._job
        if out.cancelled or self._cancel.is_set():  # frames that come after a Cancel are dropped
            self.status.setText("Cancelled: nothing was added.")
        elif out.error:
            self._fail(out.error)
        elif job is not None:
            layer = self._show_frames(job, out)
            if out.guidance is not None:
                self._show_estimated_guidance(job, out.guidance)
                self.viewer.layers.selection.active = layer
            self._reported = {layer.name, job.image_name}
            at = "" if job.frame is None else f" of video frame {job.frame}"
            notes = out.extra.get("notes") or []
            engine = ""
            if out.extra.get("engine") == "kernel":
                applied = [b for b, a in zip(out.extra["blur"], out.extra["applied"]) if a]
                what = {"gamma": "of the pixel values", "linear": "of the light"}
                blur = ", ".join(dict.fromkeys(what[b] for b in applied))
                engine = f" (blur kernel{', blur ' + blur if blur else ''})"
            # "nothing was deblurred" first: the one thing the user must not miss
            notes = sorted(notes, key=lambda n: not n.startswith("nothing was deblurred"))
            self.status.setText(
                f"Done in {out.seconds:.1f} s on {out.device}{engine}: {len(out.frames)} "
                f"frames{at} in '{layer.name}'. "
                + "".join(f"{n[:1].upper()}{n[1:].rstrip('.')}. " for n in notes)
                + f"Step through them with the '{layer.axis_labels[0]}' slider."
            )
            if out.extra.get("engine") == "kernel":
                from napari.utils.notifications import show_warning

                self.kernel.remove_preview(job.image_name)
                shown = self.kernel.show_run_paths(job, out.paths) if out.paths else None
                if shown is not None:
                    self.viewer.layers.selection.active = layer  # the frames, to step through
                    self.status.setText(
                        f"{self.status.text()} The estimated path is in '{shown.name}': "
                        f"'Reverse' flips its time, then Run again."
                    )
                for note in notes:
                    show_warning(note)

    def _on_errored(self, exc: Exception) -> None:
        # Unexpected errors only (expected ones come back in the Outcome); napari's worker also
        # reports them in a notification with the traceback, for a bug report.
        self.status.setText(f"Failed: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._job = None
        self._active_button = None
        self._end_run(self._buttons)
        done = self.progress.maximum() > 0 and self.progress.value() == self.progress.maximum()
        if not done or self._cancel.is_set():
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show_estimated_guidance(self, job: _Job, labels: np.ndarray) -> None:
        """Show the estimated map as '<image> video guidance' or '<image> predicted guidance'
        (updated in place on re-runs), so the user sees what the decomposer was given."""
        from napari.layers import Labels

        from ._sample_data import guidance_layer_kwargs

        name = f"{job.image_name} {job.estimated_name}"
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(layer, Labels) and layer.data.shape == labels.shape:
            layer.data = labels
        else:
            layer = self.viewer.add_labels(labels, **guidance_layer_kwargs(name), **job.transform)
        layer.metadata = {**layer.metadata, METADATA_KEY: {"frame": job.frame}}

    def _show_frames(self, job: _Job, out: Outcome):
        """Add '<image> frames' on an axis of its own (:mod:`._layout`), or update it in place
        when it already exists with the same layout."""
        from napari.layers import Image

        frames = out.frames
        name = f"{job.image_name} frames"
        provenance = {
            "source": job.image_name,
            "frame": job.frame,
            "guidance": job.guidance_source,
            "weights": out.weights,
            "device": out.device,
            "seconds": round(out.seconds, 3),
            "n_frames": int(frames.shape[0]),
            **out.extra,
        }
        rgb = frames.ndim == 4
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        lead = tuple(layer.data.shape[1 : layer.ndim - 2]) if isinstance(layer, Image) else ()
        if (
            isinstance(layer, Image)
            and layer.rgb == rgb
            and layer.ndim > 2
            and all(n == 1 for n in lead)
            and tuple(layer.data.shape[layer.ndim - 2 :]) == frames.shape[1:]
        ):  # a re-run: the same layer on the same axis, moved to the new video frame
            translate = list(layer.translate)
            pinned = layer.ndim - job.layer.ndim  # the layer's axis of the video's time
            if job.frame is not None and pinned >= 1:
                source = job.layer
                translate[pinned] = source.translate[0] + job.frame * source.scale[0]
            layer.data = frames.reshape(len(frames), *lead, *frames.shape[1:])
            layer.translate = translate
            layer.metadata = {**layer.metadata, METADATA_KEY: provenance}
            layer.refresh()
        else:
            placement = stack_placement(self.viewer, job.layer, job.frame, "frame")
            layer = self.viewer.add_image(
                placement.shaped(frames),
                name=name,
                rgb=rgb,
                metadata={METADATA_KEY: provenance},
                **placement.kwargs(),
            )
        self.viewer.layers.selection.active = layer
        return layer
