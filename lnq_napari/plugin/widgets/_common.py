"""Helpers shared by the widgets: worker, progress and status parts, a layer chooser, session tracking."""

from __future__ import annotations

import atexit
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)

from lnq_napari.plugin._layers import CT_ROLE, ROLE_KEY, widen_contrast_range
from lnq_napari.plugin._session import session_for
from lnq_napari.workspace.lock import TIMEOUT_S as LOCK_TIMEOUT_S


class ProgressSignal(QObject):
    """``changed(fraction, message)``: emitted from a worker thread, delivered on the GUI thread."""

    changed = Signal(float, str)


#: Seconds the interpreter's exit waits for jobs it cancelled: a job thread still running while Python
#: tears Qt down crashes the process (closing napari during a prediction ended in a segmentation fault).
EXIT_WAIT_S = 30
_JOB_CANCELS: weakref.WeakSet = weakref.WeakSet()  # every worker widget's cancel flag in this process
SAVES_RUNNING: set[int] = set()  # ids of the Saves writing now (a Save is never cancelled)


def _stop_jobs_at_exit() -> None:
    """Cancel every running job and wait (at most :data:`EXIT_WAIT_S`) for napari's worker threads; while
    a Save still writes, as long as it may wait for the workspace lock on top (its labels are not lost)."""
    from qtpy.QtCore import QThreadPool

    for cancel in list(_JOB_CANCELS):
        cancel.set()
    pool = QThreadPool.globalInstance()
    if not pool.waitForDone(int(EXIT_WAIT_S * 1000)) and SAVES_RUNNING:
        pool.waitForDone(int(LOCK_TIMEOUT_S * 1000))


def wait_for_jobs_at_exit() -> None:
    """Have the interpreter's exit wait for napari's worker threads (:func:`_stop_jobs_at_exit`); once,
    registered late, so that it runs before napari's own exit handlers."""
    atexit.unregister(_stop_jobs_at_exit)
    atexit.register(_stop_jobs_at_exit)


def closing_flag(widget: QWidget) -> threading.Event:
    """A flag set when ``widget`` goes (the viewer closed) or the interpreter exits: pass its ``is_set`` as
    a job's ``cancel``, so the job stops instead of running into Qt's teardown."""
    flag = threading.Event()
    wait_for_jobs_at_exit()
    _JOB_CANCELS.add(flag)
    widget.destroyed.connect(lambda *_, flag=flag: flag.set())
    return flag


class WorkerWidget(QWidget):
    """A dock widget that runs one job at a time in a worker: Cancel button, progress bar, status line
    and a progress signal the worker may emit from its thread. Its job is cancelled when the widget goes
    (the viewer closed) and, before the interpreter exits, waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.worker, self._cancel = None, closing_flag(self)  # Cancel sets it too
        self._closed = closing_flag(self)  # the widget went: its background jobs besides ``worker`` stop too
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


def cell_text(value: object, fmt: str | Callable[[object], str]) -> str:
    """A table cell's text: "" for None, "yes"/"no" for a flag, else ``fmt`` (a format string or a function,
    as :func:`~lnq_napari.quantify.short_axis_text`) applied to the value."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return fmt(value) if callable(fmt) else fmt.format(value)


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


def export_table(parent: QWidget, title: str, default_name: str, write: Callable[[str], object],
                 say: Callable[[str], None]) -> None:
    """Ask for a CSV path and ``write(path)`` there; ``say`` gets "saved NAME" or, when the file cannot be
    written (a read-only folder, a full disk), one line saying so (no traceback dialog, nothing half-written:
    the table writers write atomically)."""
    path, _ = QFileDialog.getSaveFileName(parent, title, default_name, "CSV (*.csv)")
    if not path:
        return
    try:
        write(path)
    except OSError as exc:
        say(f"could not save {Path(path).name}: {exc.strerror or exc}; choose a folder you can write to")
        return
    say(f"saved {Path(path).name}")


def compact(widget: QWidget) -> None:
    """Let a dock widget take only the height it needs (the node table gets the rest)."""
    widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)


@contextmanager
def busy(label: QLabel, text: str) -> Iterator[None]:
    """Say ``text`` in ``label`` (painted at once) and show the wait cursor while the GUI thread works on
    something that takes seconds (a full-size case opening: 2-3 s on two cores without a word before). An
    error passing through puts the label's text back (it said "opening <case> ..." for good)."""
    before = label.text()
    label.setText(text)
    label.repaint()
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    except BaseException:
        label.setText(before)
        raise
    finally:
        QApplication.restoreOverrideCursor()


def while_alive(widget: QObject, emitter, callback: Callable) -> None:
    """Connect ``callback`` to the napari event ``emitter`` until ``widget`` is destroyed: a closed dock
    widget's Qt parts are gone, and a viewer event reaching them raised RuntimeError (after the panel was
    closed and opened again, the next Find nodes failed half-way)."""
    emitter.connect(callback)
    # a method is held weakly (as napari's events hold it): the widget's own signal must not keep it alive
    held = weakref.WeakMethod(callback) if inspect.ismethod(callback) else (lambda: callback)
    widget.destroyed.connect(lambda *_: _disconnect(emitter, held()))


def _disconnect(emitter, callback: Callable | None) -> None:
    if callback is not None:
        emitter.disconnect(callback)


def widen_opened_cts(viewer) -> None:
    """From now on, a CT layer opened in ``viewer`` (File > Open, Open Sample) gets a contrast slider
    spanning its HU (:func:`~lnq_napari.plugin._layers.widen_contrast_range`; napari's reader tuples cannot
    set the slider's range). One connection per viewer, whichever tabs call it (napari keeps one of a
    callback connected twice), kept for the viewer's life: tied to a tab, closing that tab ended it for
    every other one."""
    viewer.layers.events.inserted.connect(_widen_ct)


def _widen_ct(event) -> None:
    layer = getattr(event, "value", None)
    if layer is not None and layer.metadata.get(ROLE_KEY) == CT_ROLE and hasattr(layer, "contrast_limits"):
        widen_contrast_range(layer)


class MiddleElidedCombo(QComboBox):
    """A combo box that cuts a long current text in the middle, not at its end: layer names that differ
    only at the end (``...-t0-ct``, ``...-t1-ct``) stay told apart in a narrow dock; the full text is the
    tooltip."""

    def __init__(self) -> None:
        super().__init__()
        self.currentTextChanged.connect(self.setToolTip)

    def paintEvent(self, event) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        option.currentText = self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideMiddle,
                                                            field.width())
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


def layer_choice(viewer, layer_type, prefer_role: str | None = None, accept=None, **kwargs) -> ComboBox:
    """A magicgui ComboBox of the viewer's layers of one type (``prefer_role`` first, only those the
    predicate ``accept`` takes when given), kept in sync with the layer list; its value is the chosen
    layer (None when there is none). A layer of ``prefer_role`` opened later becomes the choice: the case
    just opened (File > Open of a second CT kept the first chosen, and Find nodes ran on the case no
    longer looked at)."""
    def choices(widget=None) -> list[tuple[str, object]]:
        layers = [ly for ly in viewer.layers
                  if isinstance(ly, layer_type) and (accept is None or accept(ly))]
        layers.sort(key=lambda ly: ly.metadata.get(ROLE_KEY) != prefer_role)
        return [(ly.name, ly) for ly in layers]

    combo = ComboBox(choices=choices, **kwargs)

    def inserted(event=None) -> None:
        combo.reset_choices()
        layer = getattr(event, "value", None)
        if isinstance(layer, layer_type) and prefer_role and layer.metadata.get(ROLE_KEY) == prefer_role:
            combo.value = layer

    while_alive(combo.native, viewer.layers.events.inserted, inserted)
    for emitter in (viewer.layers.events.removed, viewer.layers.events.reordered):
        while_alive(combo.native, emitter, lambda event=None: combo.reset_choices())
    return combo


def _leave(tracker: SessionTracker | None) -> None:
    """Stop ``tracker`` hearing its current session (its next edit must not reach a closed widget)."""
    if tracker is not None:
        tracker._follow(None)


class SessionTracker:
    """Follows the viewer's current node session and calls ``on_change`` after each of its edits
    (and ``on_focus``, when given, when its current suggestion moves), for as long as ``owner`` (the
    widget the callbacks belong to) lives."""

    def __init__(
        self, viewer, owner: QWidget, on_change: Callable[[], None],
        on_focus: Callable[[], None] | None = None,
    ) -> None:
        self.viewer, self.on_change, self.on_focus, self.session = viewer, on_change, on_focus, None
        for emitter in (viewer.layers.events.inserted, viewer.layers.events.removed,
                        viewer.layers.selection.events.active):
            while_alive(owner, emitter, self.update)
        me = weakref.ref(self)  # held weakly: the owner's own signal must not keep it (and the owner) alive
        owner.destroyed.connect(lambda *_: _leave(me()))
        self.update(notify=False)

    def update(self, event=None, notify: bool = True) -> None:
        session = session_for(self.viewer, create=True)
        if session is self.session:
            return
        self._follow(session)
        if notify:
            self.on_change()

    def _follow(self, session) -> None:
        if self.session is not None and self.on_change in self.session.listeners:
            self.session.listeners.remove(self.on_change)
        if self.session is not None and self.on_focus in self.session.focus_listeners:
            self.session.focus_listeners.remove(self.on_focus)
        self.session = session
        if session is not None:
            session.listeners.append(self.on_change)
            if self.on_focus is not None:
                session.focus_listeners.append(self.on_focus)
