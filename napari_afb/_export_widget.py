"""Dock widget: save an image layer of frames as an animated GIF, an MP4 video or a TIFF stack.

Thin by design: it collects the choices, asks before replacing a file, and runs
:func:`napari_afb.export.export_frames` in a napari ``thread_worker`` so a long video never
freezes the viewer. The worker touches no Qt or napari object; results come back as signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
)

from ._dock import Persist, RunGate, fit_dock_width, reset_button
from ._layout import is_result, squeeze_leading
from .export import FORMATS, check_folder, write_frames

if TYPE_CHECKING:
    import napari

EXTENSION = {"GIF": ".gif", "MP4": ".mp4", "TIFF": ".tif"}


def _confirm_overwrite(parent, path: Path) -> bool:
    """Ask whether to replace the existing ``path`` (Yes/No, No by default)."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        parent,
        "Replace file?",
        f"{path.name} already exists in {path.parent}.\nDo you want to replace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def _fps_of(layer) -> float:
    fps = (getattr(layer, "metadata", None) or {}).get("fps")
    try:
        return float(fps) if fps and float(fps) > 0 else 10.0
    except (TypeError, ValueError):
        return 10.0


class ExportWidget(Container):
    """Export frames: layer, format, frame rate, bounce (GIF), output file, Export."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._viewer = napari_viewer
        self._syncing = False
        self.worker = None  # the running export, if any (tests and callers may wait on it)
        self._layer = ComboBox(label="frames", choices=self._frame_layers)
        self._format = ComboBox(label="format", choices=list(EXTENSION), value="GIF")
        self._fps = FloatSpinBox(label="fps", value=10.0, min=0.1, max=240.0, step=1.0)
        self._bounce = CheckBox(text="bounce (play forward, then back)", value=False)
        self._path = FileEdit(
            label="save as", mode="w", nullable=True, filter="*.gif *.mp4 *.tif *.tiff"
        )
        self._button = PushButton(text="Export")
        self._status = Label(value="")
        super().__init__(
            widgets=[
                self._layer,
                self._format,
                self._fps,
                self._bounce,
                self._path,
                self._button,
                self._status,
            ],
        )  # (napari docks the inner widget: a magicgui scroll area would be dropped)
        self._status.native.setWordWrap(True)
        self.persist = Persist("export")
        for key, widget in [
            ("format", self._format),
            ("fps", self._fps),
            ("bounce", self._bounce),
            ("path", self._path),
        ]:
            self.persist.bind(key, widget)
        self.reset_button = reset_button(self.persist, lambda: self._on_format(self._format.value))
        self.native.layout().addWidget(self.reset_button)
        fit_dock_width(self.native)
        self.gate = RunGate(
            self._button.native,
            self._reason,
            status=self._status,
            busy=lambda: self.worker is not None and not self._button.enabled,
        )
        self._layer.changed.connect(self._on_layer)
        self._format.changed.connect(self._on_format)
        self._path.changed.connect(self._on_path)
        self._button.changed.connect(self._export)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._layer.reset_choices)
        events.inserted.connect(self._on_inserted)
        self._viewer.layers.selection.events.active.connect(self._on_active)
        self._layer.reset_choices()
        results = [layer for _, layer in self._frame_layers() if is_result(layer)]
        if results:  # the newest result, not the video it came from
            self._layer.value = results[-1]
        self._on_layer(self._layer.value)
        for event in (events.inserted, events.removed):
            event.connect(self.gate.update)
        self._layer.changed.connect(self.gate.update)
        self._path.changed.connect(self.gate.update)
        self.gate.update()

    def _reason(self) -> str:
        """Why Export cannot start now ('' when it can)."""
        if self._layer.value is None:
            return "Add or select an image layer of frames (time on the first axis)."
        if self._path.value is None:
            return "Choose a file to save to."
        return ""

    def _done(self) -> None:
        self._button.enabled = True
        self.gate.update()

    def _on_inserted(self, event) -> None:
        if is_result(event.value):  # a new result: the one to export
            self._layer.reset_choices()
            self._layer.value = event.value

    def _on_active(self, event) -> None:
        layer = event.value
        if any(layer is choice for _, choice in self._frame_layers()):
            self._layer.value = layer  # follow the user's selection in the layer list

    # -- choices ---------------------------------------------------------------------------

    def _frame_layers(self, _widget=None) -> list[tuple[str, object]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.ndim >= 3
        ]

    def _on_layer(self, layer) -> None:
        fps = (getattr(layer, "metadata", None) or {}).get("fps") if layer is not None else None
        if fps:  # the layer's own rate; else the last one chosen (kept between sessions)
            self._fps.value = _fps_of(layer)

    def _on_format(self, fmt: str) -> None:
        self._bounce.enabled = fmt == "GIF"
        path = self._path.value
        if path is not None and Path(path).expanduser().is_dir():
            return  # a folder: the file inside it is named at export time
        if path is not None and not self._syncing and FORMATS.get(path.suffix.lower()) != fmt:
            self._syncing = True
            try:
                self._path.value = _with_format(path, fmt)
            finally:
                self._syncing = False

    def _on_path(self, path) -> None:
        fmt = FORMATS.get(Path(path).suffix.lower()) if path is not None else None
        if fmt is not None and fmt != self._format.value and not self._syncing:
            self._syncing = True
            try:
                self._format.value = fmt
            finally:
                self._syncing = False
            self._bounce.enabled = fmt == "GIF"

    # -- export ----------------------------------------------------------------------------

    def _export(self) -> None:
        layer = self._layer.value
        if layer is None:
            self._status.value = "Add or select an image layer of frames (time on the first axis)."
            return
        if self._path.value is None:
            self._status.value = "Choose a file to save to."
            return
        fmt = self._format.value
        chosen = Path(self._path.value).expanduser()
        if chosen.is_dir():  # a folder: a file named after the layer, inside it
            path = chosen / _file_name(layer.name, fmt)
        else:
            path = _with_format(chosen, fmt)
        if path.is_dir():
            self._status.value = f"{path} is a folder; choose a file name."
            return
        try:
            check_folder(path)  # a missing folder is refused, never created
        except OSError as exc:
            self._failed(exc)
            return
        exists = path.exists()
        if exists and not _confirm_overwrite(self.native, path):
            self._status.value = f"Not exported: kept the existing {path.name}."
            return
        data = squeeze_leading(layer.data[0] if layer.multiscale else layer.data, layer.rgb)
        shape = tuple(data.shape)
        bounce = bool(self._bounce.value) and fmt == "GIF"
        note = ""
        if fmt == "MP4" and (shape[1] % 2 or shape[2] % 2):
            note = " (padded to an even size by repeating the edge)"

        from napari.qt.threading import create_worker

        self._button.enabled = False
        self._status.value = f"Exporting {shape[0]} frames as {fmt}..."
        self.worker = create_worker(
            write_frames,
            data,
            path,
            fps=float(self._fps.value),
            overwrite=exists,
            bounce=bounce,
            _connect={
                "returned": lambda done: self._saved(done, shape[0], note),
                "errored": self._failed,
                "finished": self._done,
            },
        )

    def _saved(self, done, n: int, note: str = "") -> None:
        codec = f" ({done.codec} at {done.fps:g} fps)" if done.format == "MP4" else ""
        self._status.value = f"Saved {n} frames to {done.path}{codec}{note}."

    def _failed(self, exc: Exception) -> None:
        """Say why an export failed (naming the user's file) in the status line and in a
        napari notification."""
        from napari.utils.notifications import show_error

        message = f"Export failed: {exc}"
        self._status.value = message
        show_error(message)


def _file_name(layer_name: str, fmt: str) -> str:
    """A file name for a layer: its name with path separators and odd characters replaced."""
    stem = "".join(c if c.isalnum() or c in " ._-" else "_" for c in layer_name).strip(" .")
    return (stem or "frames") + EXTENSION[fmt]


def _with_format(path: Path, fmt: str) -> Path:
    """``path`` with the extension of ``fmt`` (kept when it already is one of fmt's)."""
    if FORMATS.get(path.suffix.lower()) == fmt:
        return path
    if path.suffix.lower() in FORMATS:
        return path.with_suffix(EXTENSION[fmt])
    return path.with_name(path.name + EXTENSION[fmt])
