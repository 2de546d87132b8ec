"""Crash autosave of a node layer, off the GUI thread: at once after a quiet spell, then at most every
``interval_ms`` while edits go on (the last edit is always written). Only the timing lives here; the
file and its folder are :mod:`lnq_napari.workspace.autosave`'s."""

from __future__ import annotations

import time
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QCoreApplication, QTimer

from lnq_napari.io.atomic import cannot_write_line, is_full
from lnq_napari.workspace.autosave import (
    AutosaveSession,
    AutosaveTarget,
    autosave_target,
    moved_note,
    read_only_note,
    remove_ended,
    review_fields,
    write_autosave,
)

MAX_RETRY_MS = 30_000  # the longest wait between retries of a failing autosave


class Autosaver:
    """Writes ``<autosave dir>/<case>.session-<id>.autosave.seg.nrrd`` atomically after edits (throttled):
    this viewer session's own file (:class:`AutosaveSession`), never another window's."""

    def __init__(self, session, interval_ms: int = 2000) -> None:
        self.session = session
        self.files = AutosaveSession()
        self.last_path: Path | None = None
        self.writes = 0
        self.last_error: Exception | None = None
        self._worker = None
        self._pending = False
        self._stopped = False
        self._aside = False  # set aside: over once the edits pending are written
        self._restored: Path | None = None  # the ended autosave its labels were restored from
        self._restored_as = None  # (labels, marked and rejected) as restored, until they differ
        self._closing: bool | None = None  # closing: with its files removed (True) or kept (False)
        self._told_moved = False  # the user was told the workspace is gone and where the edits go instead
        self._told_read_only = False  # ... that it cannot be written, and where the edits go instead
        self._told_error = ""  # the failure last said (said again only once it changes or a write works)
        self._watchers: list[weakref.WeakMethod] = []  # told after each write or failure (held weakly)
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._interval_ms = interval_ms
        self._timer.timeout.connect(self._on_timeout)
        session.listeners.append(self.schedule)

    @property
    def path(self) -> Path:
        return self.files.path(self._where().folder, self.session.case)

    def _where(self) -> AutosaveTarget:
        """Where the next write goes (:func:`autosave_target`, decided once per write: its folder and its
        header's fields agree), telling the user once each time the workspace goes from where it was
        opened, or cannot be written (the edits then go to the folder a case without one autosaves to)."""
        where = autosave_target(self.session.source, self.session.workspace, self.session.workspace_id)
        told = (where.moved and not self._told_moved) or (where.read_only and not self._told_read_only)
        if told:  # each said once: a workspace read-only first, then moved, is told it moved too
            from napari.utils.notifications import show_warning

            note = moved_note if where.moved else read_only_note
            show_warning(note(self.session.workspace, self.session.case, where.folder))
        self._told_moved, self._told_read_only = where.moved, where.read_only
        return where

    def watch(self, callback, owner) -> None:
        """Call the bound method ``callback`` after each write or failure until the QObject ``owner``
        (its widget) is destroyed (its labels are gone before its Python object)."""
        if any(w() == callback for w in self._watchers):
            return
        watcher, me = weakref.WeakMethod(callback), weakref.ref(self)
        self._watchers.append(watcher)
        owner.destroyed.connect(lambda *_: me() is not None and me()._unwatch(watcher))

    def _unwatch(self, watcher: weakref.WeakMethod) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def _tell(self) -> None:
        self._watchers = [w for w in self._watchers if w() is not None]
        for watcher in list(self._watchers):
            callback = watcher()
            if callback is not None:
                callback()

    def stop(self) -> None:
        """No more writes: the case closes with nothing unsaved (a write still pending would be taken,
        the next time the case opens, for edits never saved). Its autosave files go (all they hold was
        saved) once no write runs."""
        self.stop_writing()
        self._closing = True if self._closing is None else self._closing
        self._close_files()

    def set_aside(self) -> None:
        """The session's autosave is over (its node layer left the viewer, the viewer closed): once the
        edits pending are written, no more writes; its files are kept with their locks given back when it
        holds unsaved edits (offered as a crash's are), else they go."""
        if self._stopped:
            return
        self._aside = True
        self._end_aside()

    def _end_aside(self) -> None:
        if self._aside and not self._pending and self._worker is None:
            self.stop_writing()
            self._closing = not self.session.unsaved  # nothing unsaved: its files go, as on stop()
            self._close_files()

    def restored_from(self, path: Path, review: dict | None = None) -> None:
        """The session's labels were restored from the ended autosave ``path`` (with its ``review``
        fields, marked and rejected): not copied into this session's own file while the labels, marks
        and rejections are still those (deleting ``path`` then drops them), and ``path`` removed once this
        session's file holds them (never two files offering the same edits)."""
        self._restored = Path(path)
        self._restored_as = (np.array(self.session.nodes.data, copy=True), dict(review or {}))
        self._pending = False
        self._timer.stop()

    def _holds_restored_only(self) -> bool:
        """Whether the session still holds only what was restored (:meth:`restored_from`); once it
        differs it is written as any edit is."""
        if self._restored_as is None:
            return False
        labels, review = self._restored_as
        same = np.array_equal(self.session.nodes.data, labels) and all(
            value == (self.session.marks() if key == "marked" else self.session.rejections())
            for key, value in review.items())
        if not same:
            self._restored_as = None
        return same

    def stop_writing(self) -> None:
        """No more writes (the files stay as they are)."""
        self._timer.stop()
        self._pending, self._stopped = False, True
        if self.schedule in self.session.listeners:
            self.session.listeners.remove(self.schedule)

    def schedule(self) -> None:
        """Note an edit: write as soon as Qt is back (napari tells of a paint outside ``block_history``,
        a polygon, before it writes the data: a copy taken at once missed the edit) if the last write is
        older than the interval, else at its end. Nothing once stopped (a Save that ends after its case
        closed)."""
        if self._stopped:
            return
        self._pending = True
        if not self._timer.isActive():
            QTimer.singleShot(0, self._on_timeout)
            self._timer.start()

    def _on_timeout(self) -> None:
        if self._pending and self._holds_restored_only():  # the restored file holds them: no copy
            self._pending = False
        if self._pending and not self.session.unsaved:  # nothing to keep: suggestions shown, all undone
            self._pending = False  # (an autosave of the opened labels was offered later as unsaved edits)
            if self.last_error is not None:  # saved meanwhile: no failure left to say, nor to back off
                self._cleared()
        if self._pending:
            try:  # a Qt slot: an error here is said once, never a traceback; the edits stay pending and
                self._save_in_background()
            except Exception as exc:
                self._failed(exc)  # are tried again at each timeout (a share back, space freed)
            self._timer.start()
        self._end_aside()

    def _snapshot(self):
        return self.session.labels_volume().with_array(np.array(self.session.nodes.data, copy=True))

    def _extra(self, where: AutosaveTarget) -> dict:
        return {"lnq_edits": self.session.edits, "lnq_model_version": self.session.model_version or "",
                **where.fields(),  # the workspace, by path and identity, and whether it is gone from there
                "lnq_parent": self.session.parent_version or "",  # the version these edits are made on
                **review_fields(self.session.marks(), self.session.rejections()),
                **{f"lnq_{flag}": "True" for flag in self.session.lost_flags}}  # lost: kept so on restore

    def _save_in_background(self) -> None:
        from napari.qt.threading import create_worker

        if self._worker is not None:  # a write is running: the next timeout retries
            return
        where = self._where()
        labels, extra = self._snapshot(), self._extra(where)
        self._pending = False
        connect = {"returned": self._written, "errored": self._failed, "finished": self._done}
        worker = create_worker(
            self._write,
            labels,
            where.folder,
            self.session.case,
            extra,
            _connect=connect,
            _start_thread=False,
        )
        self._worker = worker
        worker.start()

    def _written(self, path: Path) -> None:
        self.last_path = Path(path)
        self.writes += 1
        if self._restored is not None and self._restored != self.last_path:  # its edits are in this one
            remove_ended(self._restored)
            self._restored = None
        self._cleared()

    def _cleared(self) -> None:
        """No failure stands: the next one is said, writes go at the interval again."""
        self.last_error = None
        self._told_error = ""
        self._timer.setInterval(self._interval_ms)
        self._tell()

    def _failed(self, exc: Exception) -> None:
        from napari.utils.notifications import show_warning

        self.last_error = exc
        self._pending = not self._stopped  # the edits are not written: tried again at the next timeout
        why = cannot_write_line(exc, "it is tried again") if is_full(exc) else exc  # where, what to do
        message = f"lnq-napari autosave failed: {why}"
        if message != self._told_error:  # one failure retried at every timeout: said once, not every 2 s
            show_warning(message)
        self._told_error = message
        # each failure in a row doubles the wait, to 30 s: a retry copies the labels on the GUI thread
        self._timer.setInterval(min(2 * self._timer.interval(), max(self._interval_ms, MAX_RETRY_MS)))
        self._tell()

    def _write(self, labels, folder: Path, case: str, extra: dict) -> Path:
        """This session's autosave of ``case`` in ``folder`` (re)written, in whatever thread calls it."""
        return self.files.write(labels, folder, case, extra, writer=write_autosave)

    def _close_files(self) -> None:
        """Once closing and no write runs: the session's locks go, and its autosave files when all they
        hold was saved (:meth:`stop`), not when set aside (:meth:`set_aside`)."""
        if self._closing is not None and self._worker is None:
            note = self.files.close(remove=self._closing)
            if note:  # said in one line, never a traceback through opening the next case
                from napari.utils.notifications import show_warning

                show_warning(note)

    def _done(self) -> None:
        self._worker = None
        self._close_files()
        self._end_aside()
        if self._pending and not self._timer.isActive():
            if self.last_error is not None:  # failed: tried again after the interval, not at once (a loop)
                self._timer.start()
            else:
                self._on_timeout()

    def flush(self) -> Path | None:
        """Write now, in this thread, unless the last write holds the edits; returns the autosave path
        (a failed write raises: never the path of an older autosave)."""
        deadline = time.monotonic() + 60.0
        while self._worker is not None and time.monotonic() < deadline:  # let a running write finish first
            QCoreApplication.processEvents()  # (it may fail: then the edits are pending again)
            time.sleep(0.005)
        if not self._pending and self.last_error is None and self.last_path is not None:
            return self.last_path
        self._timer.stop()
        try:
            where = self._where()
            path = self._write(self._snapshot(), where.folder, self.session.case, self._extra(where))
        except Exception as exc:
            self.last_error, self._pending = exc, not self._stopped
            if self._pending:
                self._timer.start()  # tried again at the next timeout, as a failure in the worker is
            raise
        self._written(path)
        self._pending = False
        return self.last_path
