"""Small helpers shared by the widgets (layer choosers, session tracking)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QWidget,
)


class ProgressSignal(QObject):
    """``changed(fraction, message)``: emitted from a worker thread, delivered on the GUI thread."""

    changed = Signal(float, str)


class WorkerWidget(QWidget):
    """A dock widget that runs one job at a time in a worker: Cancel button, progress bar, status line
    and a progress signal the worker may emit from its thread."""

    def __init__(self) -> None:
        super().__init__()
        self.worker, self._cancel = None, threading.Event()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._signals = ProgressSignal()
        self._signals.changed.connect(self._show_progress)

    def cancel(self) -> None:
        self._cancel.set()
        self.status.setText("cancelling ...")

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        if message:
            self.status.setText(message)


def folder_row(label: str, edit: QLineEdit, title: str) -> QHBoxLayout:
    """A row ``label [edit] [...]`` whose button picks a folder into ``edit``."""
    browse = QPushButton("...")
    browse.setMaximumWidth(30)

    def pick() -> None:
        folder = QFileDialog.getExistingDirectory(edit, title)
        if folder:
            edit.setText(folder)

    browse.clicked.connect(pick)
    row = QHBoxLayout()
    row.addWidget(QLabel(label))
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return row


def compact(widget: QWidget) -> None:
    """Let a dock widget take only the height it needs (the node table gets the rest)."""
    widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one type, kept in sync with the layer list."""

    def __init__(self, viewer, layer_type, prefer_role: str | None = None) -> None:
        super().__init__()
        self.viewer, self.layer_type, self.prefer_role = viewer, layer_type, prefer_role
        for emitter in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.reordered,
        ):
            emitter.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        current = self.currentText()
        layers = [ly for ly in self.viewer.layers if isinstance(ly, self.layer_type)]
        if self.prefer_role:
            layers.sort(key=lambda ly: ly.metadata.get("lnq_role") != self.prefer_role)
        self.blockSignals(True)
        self.clear()
        self.addItems([ly.name for ly in layers])
        if current in [ly.name for ly in layers]:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self):
        name = self.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None


class SessionTracker:
    """Follows the viewer's current node session and calls ``on_change`` after each of its edits."""

    def __init__(self, viewer, on_change: Callable[[], None]) -> None:
        self.viewer, self.on_change, self.session = viewer, on_change, None
        viewer.layers.events.inserted.connect(self.update)
        viewer.layers.events.removed.connect(self.update)
        viewer.layers.selection.events.active.connect(self.update)
        self.update(notify=False)

    def update(self, event=None, notify: bool = True) -> None:
        from lnq_napari.plugin._session import session_for

        session = session_for(self.viewer, create=True)
        if session is self.session:
            return
        if self.session is not None and self.on_change in self.session.listeners:
            self.session.listeners.remove(self.on_change)
        self.session = session
        if session is not None:
            session.listeners.append(self.on_change)
        if notify:
            self.on_change()
