"""The guidance painter (Qt): make a guidance Labels layer for an image and paint directions.

The widget is thin: napari's Labels layer does the painting, erasing and filling; the widget
creates that layer aligned with the image, picks the label with one button per direction, and
adds the quicker region tool: draw shapes in a Shapes layer, then apply a direction to all of
them at once. Imports neither torch nor the engine, so opening it is quick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._layout import leading_index
from ._sample_data import guidance_layer_kwargs
from .guidance import ARROWS, COLORS, NAMES

if TYPE_CHECKING:
    import napari

__all__ = [
    "GuidanceWidget",
    "LayerCombo",
    "current_image",
    "current_index",
    "direction_text",
    "image_spatial_shape",
]


def direction_text(label: int) -> str:
    """'↗ right-up' for label 1, and so on."""
    return f"{ARROWS[label]} {NAMES[label]}"


def image_spatial_shape(layer) -> tuple[int, int]:
    """(H, W) of an Image layer: of its frames for a video (T, H, W[, C]) or a stack."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)
    return shape[-3:-1] if layer.rgb else shape[-2:]


def current_index(viewer, layer) -> int:
    """Index along axis 0 of ``layer`` at the viewer's current position."""
    return leading_index(viewer, layer)[0]


def current_image(viewer, layer) -> tuple[np.ndarray, int | None]:
    """The image an Image layer shows: itself, or for a video (T, H, W[, C]) the current frame
    (and its index; None for a single image). A result stack of the plugin's (frames on their
    own axis, :mod:`._layout`) gives the frame on screen."""
    data = layer.data[0] if layer.multiscale else layer.data
    frame = None
    if layer.ndim > 2:
        index = leading_index(viewer, layer)
        frame, data = index[0], data[index]
    return np.asarray(data), frame


def spatial_transform(layer) -> dict[str, tuple[float, ...]]:
    """translate and scale of a layer's last two (y, x) axes, to align a 2-D layer with it."""
    return {
        "translate": tuple(float(v) for v in layer.translate[-2:]),
        "scale": tuple(float(v) for v in layer.scale[-2:]),
    }


#: The most height a dock insists on (px): four docks fit on a 1080-px screen, each scrolling
#: what does not fit, while one alone shows its whole form
DOCK_MIN_HEIGHT = 240


def scroll_body(widget: QWidget) -> QWidget:
    """Fill ``widget`` with a frameless scroll area and return the widget inside it, to lay the
    content out in: several docks then share a small screen (each scrolls) instead of
    overlapping. Call :func:`fit_scroll_body` once the content is laid out."""
    area = QScrollArea(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    body = QWidget()
    area.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return body


def fit_scroll_body(widget: QWidget) -> None:
    """Ask for the content's height, up to :data:`DOCK_MIN_HEIGHT`: a dock added beside others
    then still shows its first rows rather than a sliver."""
    area = widget.findChild(QScrollArea)
    area.setMinimumHeight(min(area.widget().sizeHint().height(), DOCK_MIN_HEIGHT))


def weights_field(role: str):
    """A magicgui file field for a ``role`` weights file, empty by default, whose placeholder
    says what an empty field uses (:func:`napari_afb.weights.placeholder`)."""
    from magicgui.widgets import FileEdit

    from .weights import placeholder

    edit = FileEdit(mode="r", filter="*.safetensors", nullable=True)
    edit.line_edit.native.setPlaceholderText(placeholder(role))
    return edit


def device_combo() -> QComboBox:
    """A combo box of the devices this machine has (auto first)."""
    from . import engine

    combo = QComboBox()
    combo.addItems(engine.available_devices())
    return combo


class CancelOnClose:
    """Mixin for a dock widget that runs one job at a time in ``self._worker`` (None when idle),
    with ``run()``, ``cancel()`` and a ``status`` label. Its one button toggles Run / Cancel
    (:meth:`_on_run_clicked`); :meth:`_start_run`, :meth:`_cancel_run` and :meth:`_end_run`
    switch the dock into the running state and back; :meth:`_fail` shows a message in the
    status line and as a notification, and closing the widget cancels its run: napari's close
    button takes the widget out of its dock (its parent becomes None) without a close event, so
    both are watched. ``closed`` is True from then on: a run that ends later adds nothing."""

    closed = False
    _had_parent = False
    _worker = None
    _activity = None  # a napari progress in the activity dock, closed when the run ends

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _on_run_clicked(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.run()

    def _start_run(self, worker, message: str, *, total: int = 0, button=None):
        """Start ``worker`` (its ``returned`` already connected): what a generator job yields
        goes to ``_on_progress``, its errors to ``_on_errored``, its end to ``_on_finished``.
        ``button`` (``run_button`` by default) becomes Cancel, ``_inputs`` are disabled, the
        bar counts to ``total`` from 0 (busy while ``total`` is 0) and ``message`` shows."""
        if hasattr(worker, "yielded"):
            worker.yielded.connect(self._on_progress)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        (button or self.run_button).setText("Cancel")
        for widget in self._inputs:
            widget.setEnabled(False)
        self.progress.setRange(0, total)
        if total:
            self.progress.setValue(0)
        self.status.setText(message)
        worker.start()
        return worker

    def _cancel_run(self, message: str, button=None) -> None:
        """Ask the running job to stop (``self._cancel``): ``button`` (``run_button`` by
        default) reads 'Cancelling...', disabled, and ``message`` shows."""
        if self.running:
            self._cancel.set()
            button = button or self.run_button
            button.setEnabled(False)
            button.setText("Cancelling...")
            self.status.setText(message)

    def _end_run(self, buttons: dict) -> None:
        """The job has finished: the activity dock's entry closes, ``buttons`` ({button: its
        idle text}) and ``_inputs`` come back, and the gate decides on Run again."""
        self._worker = None
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        for button, text in buttons.items():
            button.setText(text)
            button.setEnabled(True)
        for widget in self._inputs:
            widget.setEnabled(True)
        self.gate.update()

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(message)
        show_error(message)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            docked = self.parent() is not None
            if self._had_parent and not docked:
                self._closing()
            elif docked:
                self.closed = False
            self._had_parent = docked
        return super().event(event)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self._closing()
        super().closeEvent(event)

    def _closing(self) -> None:
        self.closed = True
        self.cancel()


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of some types, kept in sync with the layer list, plus
    fixed extra entries ``(text, value)`` after them. :meth:`current` returns the selected
    layer, an extra's value, or None. ``changed`` fires when the selection changes."""

    changed = Signal()

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layer_types: tuple[type, ...],
        extras: Sequence[tuple[str, Any]] = (),
        parent: QWidget | None = None,
        prefer: Callable[[Any], bool] | None = None,
        fallback: Any = None,
    ):
        """``prefer(layer)``: the layers to pick by default, the newest first (others only
        when none is preferred, or the extra entry whose value is ``fallback`` when given),
        when a preferred layer is added, and when the user selects one in the layer list;
        None: the top layer, and the selection is left alone."""
        super().__init__(parent)
        self._viewer = viewer
        self._types = layer_types
        self._extras = list(extras)
        self._prefer = prefer
        self._fallback = fallback
        self._entries: list[tuple[str, Any, Any]] = []  # (text, layer or None, extra value)
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self.refresh)
        events.moved.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        if prefer is not None:
            viewer.layers.selection.events.active.connect(self._on_active)
        self.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.refresh()

    def _preferred(self, layer) -> bool:
        return isinstance(layer, self._types) and self._prefer is not None and self._prefer(layer)

    def _on_inserted(self, event) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()
        if self._preferred(event.value):  # the newest of what this combo is for
            self.select_layer(event.value)

    def _on_active(self, event) -> None:
        if self._preferred(event.value):  # follow the user's selection in the layer list
            self.select_layer(event.value)

    def select_layer(self, layer) -> bool:
        """Select this layer's entry; False when it has none."""
        for k, (_, entry, _) in enumerate(self._entries):
            if entry is layer:
                self.setCurrentIndex(k)
                return True
        return False

    def refresh(self, event=None) -> None:
        """Rebuild the entries (top layer first), keeping the selection (a renamed layer too)."""
        i = self.currentIndex()
        before = self._entries[i] if 0 <= i < len(self._entries) else None
        layers = [ly for ly in reversed(self._viewer.layers) if isinstance(ly, self._types)]
        self._entries = [(ly.name, ly, None) for ly in layers]
        self._entries += [(text, None, value) for text, value in self._extras]
        index = 0
        if self._prefer is not None:  # by default, the newest preferred layer
            preferred = [k for k, e in enumerate(self._entries) if self._preferred(e[1])]
            fallback = [
                k
                for k, (_, layer, value) in enumerate(self._entries)
                if layer is None and self._fallback is not None and value == self._fallback
            ]
            index = (preferred or fallback or [0])[0]
        for k, (text, layer, _) in enumerate(self._entries):
            if before is not None and (
                layer is before[1] if before[1] is not None else text == before[0]
            ):
                index = k
                break
        self.blockSignals(True)
        try:
            self.clear()
            self.addItems([text for text, _, _ in self._entries])
            self.setCurrentIndex(index if self._entries else -1)
        finally:
            self.blockSignals(False)
        after = self._entries[index] if self._entries else None
        if (before[1:] if before else None) != (after[1:] if after else None):
            self.changed.emit()

    def current(self) -> Any:
        """The selected layer (or extra value), or None when nothing is selected."""
        i = self.currentIndex()
        if not 0 <= i < len(self._entries):
            return None
        _, layer, value = self._entries[i]
        if layer is None:
            return value
        return layer if layer in self._viewer.layers else None

    def select_value(self, value: Any) -> bool:
        """Select the extra entry with this value; False when there is none."""
        for k, (_, layer, extra) in enumerate(self._entries):
            if layer is None and extra == value:
                self.setCurrentIndex(k)
                return True
        return False

    def select(self, text: str) -> bool:
        """Select the entry with this text; False when there is none."""
        i = self.findText(text)
        if i >= 0:
            self.setCurrentIndex(i)
        return i >= 0


def _button_style(label: int) -> str:
    r, g, b, a = COLORS[label]
    if a == 0:
        return "QPushButton:checked { border: 2px solid #ffffff; }"
    text = "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#ffffff"
    rgb = f"rgb({int(r * 255)}, {int(g * 255)}, {int(b * 255)})"
    return (
        f"QPushButton {{ background-color: {rgb}; color: {text}; padding: 1px 4px; "
        f"border: 2px solid {rgb}; border-radius: 3px; }} "
        f"QPushButton:checked {{ border: 2px solid #ffffff; font-weight: bold; }}"
    )


class GuidanceWidget(QWidget):
    """Paint motion guidance: one Labels layer per image, labels 0-4 in the paper's colours."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Image, Labels

        self.viewer = napari_viewer
        self.label = 1  # the direction the buttons and tools apply
        self._connected: Any = None  # the guidance layer whose events we follow

        self.image_combo = LayerCombo(napari_viewer, (Image,))
        self.guidance_combo = LayerCombo(napari_viewer, (Labels,))
        self.new_button = QPushButton("New guidance layer")
        self.new_button.setToolTip(
            "Create (or select) the Labels layer '<image> guidance', aligned with the image: "
            "this is what the decomposer reads"
        )
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Guidance", self.guidance_combo)

        # Direction buttons, laid out like the directions they stand for.
        self.direction_buttons: dict[int, QPushButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(True)
        grid = QGridLayout()
        places = {2: (0, 0), 1: (0, 1), 3: (1, 0), 4: (1, 1)}
        for label in range(len(NAMES)):
            text = direction_text(label) + (" (erase)" if label == 0 else "")
            button = QPushButton(text)
            button.setCheckable(True)
            button.setStyleSheet(_button_style(label))
            button.setToolTip(f"Paint label {label}: motion {NAMES[label]}")
            button.clicked.connect(lambda _=False, lab=label: self.set_label(lab))
            group.addButton(button, label)
            self.direction_buttons[label] = button
            row, col = places.get(label, (2, 0))
            grid.addWidget(button, row, col, 1, 1 if label else 2)
        self.direction_buttons[self.label].setChecked(True)
        directions = QGroupBox("Direction of motion (what the brush paints)")
        directions.setLayout(grid)

        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(1, 1000)
        self.brush_spin.setValue(10)
        modes = QHBoxLayout()
        self.mode_buttons: dict[str, QPushButton] = {}
        for mode, text in (("paint", "Paint"), ("fill", "Fill"), ("erase", "Erase")):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            modes.addWidget(button)
            self.mode_buttons[mode] = button
        brush = QFormLayout()
        brush.addRow("Brush size", self.brush_spin)
        brush.addRow("Tool", modes)

        self.regions_button = QPushButton("Draw regions")
        self.regions_button.setToolTip(
            "Add (or select) the Shapes layer '<image> regions': draw polygons, rectangles or "
            "lasso outlines over parts that move the same way"
        )
        self.apply_button = QPushButton()
        self.fill_all_button = QPushButton()
        regions = QVBoxLayout()
        regions.addWidget(self.regions_button)
        regions.addWidget(self.apply_button)
        regions.addWidget(self.fill_all_button)
        regions_box = QGroupBox("Whole regions at once")
        regions_box.setLayout(regions)

        self.status = QLabel("Pick an image, then click 'New guidance layer'.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(scroll_body(self))
        layout.addLayout(form)
        layout.addWidget(self.new_button)
        layout.addWidget(directions)
        layout.addLayout(brush)
        layout.addWidget(regions_box)
        layout.addWidget(self.status)
        layout.addStretch(1)
        fit_scroll_body(self)

        self.new_button.clicked.connect(self.new_guidance_layer)
        self.regions_button.clicked.connect(self.regions_layer)
        self.apply_button.clicked.connect(self.apply_to_regions)
        self.fill_all_button.clicked.connect(self.fill_all)
        self.brush_spin.valueChanged.connect(self._on_brush_spin)
        self.image_combo.changed.connect(self._on_image_changed)
        self.guidance_combo.changed.connect(self._follow_guidance_layer)
        napari_viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._on_image_changed()
        self._update_texts()

    # -- which layers ----------------------------------------------------------------------

    def image_layer(self):
        return self.image_combo.current()

    def guidance_layer(self):
        return self.guidance_combo.current()

    def _names(self) -> tuple[str, str] | None:
        image = self.image_layer()
        return (f"{image.name} guidance", f"{image.name} regions") if image else None

    def _on_image_changed(self) -> None:
        names = self._names()
        if names:
            self.guidance_combo.select(names[0])
        self._follow_guidance_layer()

    def _on_layer_inserted(self, event) -> None:
        names = self._names()
        if names and event.value.name == names[0]:
            self.guidance_combo.refresh()  # this callback may run before the combo's own
            self.guidance_combo.select(names[0])

    def _follow_guidance_layer(self) -> None:
        """Keep the direction buttons and brush size in sync with the guidance layer."""
        layer = self.guidance_layer()
        if layer is self._connected:
            return
        if self._connected is not None:
            self._connected.events.selected_label.disconnect(self._on_layer_label)
            self._connected.events.brush_size.disconnect(self._on_layer_brush)
        self._connected = layer
        if layer is not None:
            layer.events.selected_label.connect(self._on_layer_label)
            layer.events.brush_size.connect(self._on_layer_brush)
            self._on_layer_brush()

    def _on_layer_label(self, event=None) -> None:
        label = int(self._connected.selected_label)
        if label in self.direction_buttons and label != self.label:
            self.label = label
            self.direction_buttons[label].setChecked(True)
            self._update_texts()

    def _on_layer_brush(self, event=None) -> None:
        size = int(self._connected.brush_size)
        if size != self.brush_spin.value():
            self.brush_spin.setValue(size)

    def _on_brush_spin(self, value: int) -> None:
        layer = self.guidance_layer()
        if layer is not None and int(layer.brush_size) != value:
            layer.brush_size = value

    def _update_texts(self) -> None:
        d = direction_text(self.label)
        self.apply_button.setText(f"Apply {d} to regions")
        self.fill_all_button.setText(f"Fill whole layer with {d}")

    def _say(self, text: str) -> None:
        self.status.setText(text)

    # -- actions ---------------------------------------------------------------------------

    def new_guidance_layer(self):
        """Create (or select) '<image> guidance': (H, W) uint8 zeros aligned with the image."""
        from napari.layers import Labels

        image = self.image_layer()
        if image is None:
            self._say("Open or select an image layer first.")
            return None
        name, _ = self._names()
        h, w = image_spatial_shape(image)
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(existing, Labels):
            layer = existing
            note = f"Selected the existing '{name}'."
            if tuple(layer.data.shape[-2:]) != (h, w):
                note += f" Its size {layer.data.shape[-2:]} is not the image's ({h}, {w})."
        else:
            kwargs = guidance_layer_kwargs(name if existing is None else f"{name} (labels)")
            layer = self.viewer.add_labels(
                np.zeros((h, w), dtype=np.uint8), **kwargs, **spatial_transform(image)
            )
            note = f"Created '{layer.name}' ({h} x {w}). Pick a direction and paint."
        self.guidance_combo.select(layer.name)
        self._activate(layer, "paint")
        self._say(note)
        return layer

    def _require_guidance(self):
        layer = self.guidance_layer()
        if layer is None:
            self._say("Click 'New guidance layer' first.")
        return layer

    def _activate(self, layer, mode: str | None = None) -> None:
        self.viewer.layers.selection.active = layer
        layer.selected_label = self.label
        layer.brush_size = self.brush_spin.value()
        if mode is not None:
            layer.mode = mode

    def set_label(self, label: int) -> None:
        """Pick the direction to paint (0 paints 'static', i.e. erases)."""
        self.label = int(label)
        self.direction_buttons[self.label].setChecked(True)
        self._update_texts()
        layer = self.guidance_layer()
        if layer is not None:
            keep = layer.mode if str(layer.mode) in ("paint", "fill") else "paint"
            self._activate(layer, keep)

    def set_mode(self, mode: str) -> None:
        """Paint, fill (napari fills the connected region of one label) or erase."""
        layer = self._require_guidance()
        if layer is not None:
            self._activate(layer, mode)

    def regions_layer(self):
        """Create (or select) '<image> regions', a Shapes layer aligned with the image."""
        from napari.layers import Shapes

        image = self.image_layer()
        if image is None:
            self._say("Open or select an image layer first.")
            return None
        _, name = self._names()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if not isinstance(layer, Shapes):
            layer = self.viewer.add_shapes(
                name=name if layer is None else f"{name} (shapes)",
                ndim=2,
                face_color=[1.0, 1.0, 1.0, 0.15],
                edge_color=[1.0, 1.0, 1.0, 0.9],
                edge_width=max(1.0, min(image_spatial_shape(image)) / 300),
                **spatial_transform(image),
            )
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        self._say(
            f"Draw regions in '{layer.name}' (click corners, double-click to close; rectangle "
            f"and lasso are in the layer controls), then click 'Apply'."
        )
        return layer

    def apply_to_regions(self) -> int:
        """Set every pixel inside the region shapes to the selected direction, then remove the
        regions layer ('Draw regions' makes a new one). One undo step on the guidance layer
        (Ctrl+Z). Returns the pixels changed."""
        from napari.layers import Shapes

        layer = self._require_guidance()
        if layer is None:
            return 0
        names = self._names()
        shapes = self.viewer.layers[names[1]] if names and names[1] in self.viewer.layers else None
        if not isinstance(shapes, Shapes) or shapes.nshapes == 0:
            self._say("Click 'Draw regions' and draw at least one shape first.")
            return 0
        if layer.data.ndim != 2:
            self._say(f"'{layer.name}' is not a 2-D map; regions apply to 2-D guidance only.")
            return 0
        if not (
            np.allclose(shapes.translate[-2:], layer.translate[-2:])
            and np.allclose(shapes.scale[-2:], layer.scale[-2:])
        ):
            self._say(f"'{shapes.name}' and '{layer.name}' are not aligned (translate/scale).")
            return 0
        mask = shapes.to_masks(mask_shape=layer.data.shape).any(axis=0)
        changed = int(np.count_nonzero(mask & (np.asarray(layer.data) != self.label)))
        self._set_pixels(layer, mask)
        n = shapes.nshapes
        self.viewer.layers.remove(shapes)  # its work is done: no empty layer (or grid cell) left
        self._activate(layer)
        self._say(
            f"Set {changed} px to {direction_text(self.label)} from {n} region(s). "
            f"Ctrl+Z on '{layer.name}' undoes it."
        )
        return changed

    def fill_all(self) -> int:
        """Set the whole guidance layer to the selected direction (e.g. for camera shake)."""
        layer = self._require_guidance()
        if layer is None:
            return 0
        mask = np.asarray(layer.data) != self.label
        self._set_pixels(layer, mask)
        self._say(f"Filled '{layer.name}' with {direction_text(self.label)}.")
        return int(mask.sum())

    def _set_pixels(self, layer, mask: np.ndarray) -> None:
        # data_setitem records the change in the layer's undo history.
        layer.data_setitem(np.nonzero(mask), self.label)
