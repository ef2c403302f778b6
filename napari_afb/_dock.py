"""What every dock of the plugin shares: fitting napari's dock column, settings kept between
sessions (with a way back to the defaults), and a Run button greyed out with its reason.

* :func:`fit_dock_width` lets a dock squeeze to :data:`DOCK_WIDTH`: combo boxes stop sizing
  themselves to their longest entry or layer name (the popup still shows it whole), form rows
  put a field under its label when both do not fit, and the dock asks for no more than its
  content's minimum (plus the vertical scroll bar), so napari's column never needs a horizontal
  scroll bar.
* :class:`Persist` binds input widgets (Qt or magicgui) to keys of one QSettings file
  (``napari-afb/widgets``, an INI file in the user's configuration folder; tests point
  QSettings' user path at a temporary folder). :meth:`Persist.reset` is the way back.
* :class:`RunGate` keeps a Run button disabled, with the reason as its tooltip (and in the
  status line while that shows nothing newer), as long as an input is missing or invalid.
* :func:`run_controls` and :func:`lay_out_dock` build a run dock: its Run button, bar and
  status line, under its form, then 'Reset to defaults'.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._qt_guidance import fit_scroll_body, scroll_body

__all__ = [
    "DOCK_WIDTH",
    "Persist",
    "RunGate",
    "fit_dock_width",
    "fit_scroll_width",
    "lay_out_dock",
    "missing_file",
    "reset_button",
    "run_controls",
    "settings",
    "text_fits",
]

#: The narrowest dock column the docks are laid out for (px): napari's own layer controls take
#: about 320 px at its default window size, and the right-hand column is no wider.
DOCK_WIDTH = 300
#: Characters a combo box shows at its narrowest (its popup shows every entry whole)
COMBO_CHARS = 6


def settings() -> QSettings:
    """Where the docks keep their settings between sessions (an INI file in the user's
    configuration folder; tests point QSettings' user path elsewhere)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "napari-afb", "widgets")


# ---------------------------------------------------------------------------------------------
# Width


def _layouts(layout: QLayout):
    yield layout
    for i in range(layout.count()):
        child = layout.itemAt(i).layout()
        if child is not None:
            yield from _layouts(child)


def fit_dock_width(widget: QWidget) -> None:
    """Let ``widget`` (a dock, laid out) squeeze to :data:`DOCK_WIDTH` or less."""
    for combo in widget.findChildren(QComboBox):  # long entries must not widen the dock
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARS)
        view = combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)
        if not combo.toolTip():
            combo.currentTextChanged.connect(combo.setToolTip)  # a cut entry reads in full
            combo.setToolTip(combo.currentText())
    holders = [widget, *widget.findChildren(QWidget)]
    for holder in holders:
        if holder.layout() is None:
            continue
        for layout in _layouts(holder.layout()):
            if isinstance(layout, QFormLayout):
                layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
                layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    for label in widget.findChildren(QLabel):
        if len(label.text()) > 30:  # sentences wrap instead of widening the dock
            label.setWordWrap(True)
    fit_scroll_width(widget)


def fit_scroll_width(widget: QWidget) -> None:
    """Ask for the content's minimum width plus the vertical scroll bar, so the column widens
    rather than scrolling sideways (call again once napari's style sheet applies, e.g. in
    showEvent). The content is laid out to need less than :data:`DOCK_WIDTH`."""
    area = widget.findChild(QScrollArea)
    if area is not None and area.widget() is not None:
        bar = area.verticalScrollBar()
        bar = max(bar.sizeHint().width(), bar.width() if bar.isVisible() else 0) + 2
        area.setMinimumWidth(area.widget().minimumSizeHint().width() + bar)


def text_fits(button: QAbstractButton) -> bool:
    """Whether ``button`` shows its whole text (for tests and checks)."""
    from qtpy.QtGui import QFontMetrics

    text = button.text().replace("&", "")
    extra = 24 if isinstance(button, QCheckBox) else 4  # the box; the frame
    return QFontMetrics(button.font()).horizontalAdvance(text) + extra <= button.width()


# ---------------------------------------------------------------------------------------------
# Settings


def _getter_setter(widget) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
    """(get, set, changed signal) for a Qt or magicgui input widget."""
    if hasattr(widget, "changed") and hasattr(widget, "value") and not isinstance(widget, QWidget):
        # magicgui ValueWidget (FileEdit, ComboBox, SpinBox, CheckBox...)
        def get():
            value = widget.value
            return str(value) if isinstance(value, Path) else value

        def put(value):
            if value in (None, "") and getattr(widget, "_nullable", True):
                widget.value = None
            elif isinstance(widget.value, bool) or type(widget).__name__ == "CheckBox":
                widget.value = value in (True, "true", "True", 1, "1")
            elif type(widget).__name__ in ("SpinBox",):
                widget.value = int(value)
            elif type(widget).__name__ in ("FloatSpinBox",):
                widget.value = float(value)
            elif type(widget).__name__ == "ComboBox":
                choices = {str(c): c for c in widget.choices}
                if str(value) in choices:
                    widget.value = choices[str(value)]
            else:
                widget.value = value

        return get, put, widget.changed
    if isinstance(widget, QComboBox):

        def get():
            data = widget.currentData()
            return widget.currentText() if data is None else data

        def put(value):
            index = widget.findData(value)
            if index < 0:
                index = widget.findText(str(value))
            if index >= 0:
                widget.setCurrentIndex(index)

        return get, put, widget.currentIndexChanged
    if isinstance(widget, QDoubleSpinBox):
        return widget.value, lambda v: widget.setValue(float(v)), widget.valueChanged
    if isinstance(widget, QSpinBox):
        return widget.value, lambda v: widget.setValue(int(v)), widget.valueChanged
    if isinstance(widget, QCheckBox):
        return (
            widget.isChecked,
            lambda v: widget.setChecked(v in (True, "true", "True", 1, "1")),
            widget.toggled,
        )
    raise TypeError(f"cannot keep the value of a {type(widget).__name__}")


class Persist:
    """Keep input widgets' values under ``<group>/<key>`` between sessions.

    :meth:`bind` restores a stored value (a stored value the widget refuses leaves the default)
    and stores each change; :meth:`reset` puts every bound widget back to its value at binding
    time and forgets the stored ones."""

    def __init__(self, group: str):
        self.group = group
        self._bound: list[tuple[str, Callable, Callable, Any]] = []

    def bind(self, key: str, widget, default: Any = None) -> None:
        get, put, signal = _getter_setter(widget)
        default = get() if default is None else default
        full = f"{self.group}/{key}"
        stored = settings().value(full)
        if stored is not None:
            try:
                put(stored)
            except (TypeError, ValueError):
                settings().remove(full)
        self._bound.append((full, get, put, default))

        def store(*_):
            value = get()
            if value is None:
                settings().remove(full)
            else:
                settings().setValue(full, value)

        signal.connect(store)

    def reset(self) -> None:
        for _full, _, put, default in self._bound:
            put(default)
        store = settings()
        for full, *_ in self._bound:
            store.remove(full)


def reset_button(persist: Persist, after: Callable[[], None] | None = None) -> QPushButton:
    """A small 'Reset to defaults' button for ``persist``."""
    button = QPushButton("Reset to defaults")
    button.setToolTip("Put this dock's settings back to their defaults (they are kept otherwise)")

    def reset():
        persist.reset()
        if after is not None:
            after()

    button.clicked.connect(reset)
    return button


# ---------------------------------------------------------------------------------------------
# Run


class RunGate:
    """Keep ``button`` disabled while ``check()`` returns a reason (a sentence), with the reason
    as its tooltip and in ``status`` (a QLabel or magicgui Label) while the status line shows
    nothing newer. Call :meth:`update` when an input changes; ``busy()`` True leaves the button
    alone (a running job owns it)."""

    def __init__(self, button, check: Callable[[], str], *, status=None, busy=None, tip: str = ""):
        self.button, self.check, self.status = button, check, status
        self.busy = busy or (lambda: False)
        self.tip = tip
        self.reason = ""
        self._shown = ""
        self._idle = self._status_text()  # the dock's first prompt: a reason may replace it

    def _native(self):
        return getattr(self.button, "native", self.button)

    def _status_text(self) -> str:
        s = self.status
        return "" if s is None else (s.value if hasattr(s, "value") else s.text())

    def _set_status(self, text: str) -> None:
        s = self.status
        if s is None:
            return
        if hasattr(s, "value"):
            s.value = text
        else:
            s.setText(text)

    def update(self, *_) -> str:
        if self.busy():
            return self.reason
        try:
            reason = self.check() or ""
        except Exception as exc:  # noqa: BLE001 (a check must never break the dock)
            reason = str(exc)
        self.reason = reason
        native = self._native()
        native.setEnabled(not reason)
        native.setToolTip(reason or self.tip)
        now = self._status_text()
        if reason and now in ("", self._shown, self._idle):
            self._set_status(reason)
            self._shown = reason
        elif not reason and self._shown and now == self._shown:
            self._set_status(self._idle)
            self._shown = ""
        return reason

    def watch(self, *signals) -> None:
        """Check again whenever one of ``signals`` fires (an input or the layer list changed)."""
        for signal in signals:
            signal.connect(self.update)


def run_controls(text: str, prompt: str) -> tuple[QPushButton, QProgressBar, QLabel]:
    """A run dock's Run button reading ``text``, its bar (empty) and its status line, which
    reads ``prompt`` until there is more to say."""
    button = QPushButton(text)
    bar = QProgressBar()
    bar.setRange(0, 1)
    bar.setValue(0)
    status = QLabel(prompt)
    status.setWordWrap(True)
    return button, bar, status


def lay_out_dock(dock: QWidget, rows, group: str, bindings, after=None) -> None:
    """Lay a run dock out in a scroll body: ``rows`` (layouts and widgets), then its
    ``run_button``, ``progress`` and ``status``, then ``dock.reset_button`` for the settings
    ``dock.persist`` keeps under ``group`` (``bindings``: (key, widget) pairs, bound in that
    order); a reset then calls ``after`` (by default ``dock.gate.update``). Fits the dock to
    napari's column."""
    layout = QVBoxLayout(scroll_body(dock))
    for row in [*rows, dock.run_button, dock.progress, dock.status]:
        if isinstance(row, QLayout):
            layout.addLayout(row)
        else:
            layout.addWidget(row)
    dock.persist = Persist(group)
    for key, widget in bindings:
        dock.persist.bind(key, widget)
    dock.reset_button = reset_button(dock.persist, after or (lambda: dock.gate.update()))
    layout.addWidget(dock.reset_button)
    layout.addStretch(1)
    fit_dock_width(dock)
    fit_scroll_body(dock)


def missing_file(value, what: str) -> str:
    """A reason when a chosen file does not exist ('' when none is chosen or it exists)."""
    if value in (None, ""):
        return ""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        return f"The {what} file {path} was not found: pick another or clear the field."
    return ""
