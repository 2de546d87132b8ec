"""Save: the corrected nodes as a new label version with provenance (:func:`lnq_napari.api.save_labels`),
written in a worker thread from a snapshot taken when Save is pressed: the viewer stays responsive, and
edits made while it runs stay unsaved."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from lnq_napari import api
from lnq_napari.components import node_numbers
from lnq_napari.errors import LNQError
from lnq_napari.heard import collected_warnings, texts
from lnq_napari.io.dicom_tree import is_dicom_path
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._layers import SOURCE_KEY, unplaced_note
from lnq_napari.plugin._session import case_session
from lnq_napari.plugin.widgets._common import (
    SAVES_RUNNING,
    SessionTracker,
    compact,
    folder_row,
    wait_for_jobs_at_exit,
    widen_opened_cts,
)
from lnq_napari.wording import count
from lnq_napari.workspace import LABELS_FOLDER, Workspace
from lnq_napari.workspace.cases import WorkspaceGone
from lnq_napari.workspace.review_stats import CaseStats, log_review


@dataclasses.dataclass(frozen=True)
class SaveRequest:
    """What one Save writes, taken on the GUI thread when Save is pressed (edits go on meanwhile)."""

    labels: Volume  # a copy of the node layer's labels on the CT grid
    case: str
    workspace: Path | None  # the workspace to save into (then ``folder`` is not used)
    folder: Path
    provenance: dict  # model_version, edits, origin, layer, marked, rejected, parent: as save_labels takes
    ct_source: str | None = None  # the CT's file or DICOM series (a DICOM SEG is written beside a version)
    stats: CaseStats | None = None  # the case's review figures for the journal (with a workspace)
    pressed: float = dataclasses.field(default_factory=time.monotonic)  # the review's time ends here
    workspace_id: str | None = None  # which workspace that was when the case opened (None: not known)


def write_version(request: SaveRequest) -> tuple[api.SavedLabels, str, bool]:
    """The Save's work, off the GUI thread: the new version (its nodes counted as the Nodes table counts
    them), a DICOM SEG beside it when the CT is a DICOM series, the review's journal line. Returns the
    version, the status line and whether that line tells of a problem (a part not written, a warning).
    LNQError (and any other error) when the version was not saved."""
    # the workspace moved away, or another made at its path: refused where the save opens it
    with collected_warnings() as heard:  # shown in the status line, not a popup
        saved = api.save_labels(
            request.labels, request.case, workspace=request.workspace, folder=request.folder,
            expected_id=request.workspace_id, nodes=int(node_numbers(request.labels.array)[1].size),
            **request.provenance)
    message = f"saved {saved.version} to {saved.path}"  # saved: nothing after this decides otherwise
    clean = True
    if request.ct_source and is_dicom_path(request.ct_source):
        seg = Path(saved.path).with_name(Path(saved.path).name.split(".")[0] + ".seg.dcm")
        try:
            api.export_dicom_seg(seg, request.labels, request.ct_source,
                                 model_version=request.provenance.get("model_version"),
                                 edits=request.provenance.get("edits", 0))
            message += f" and DICOM SEG {seg.name}"
        except Exception as exc:  # any error (a disk full) here leaves the version saved
            message, clean = message + f"; no DICOM SEG: {_why(exc)}", False
    if request.workspace is not None and request.stats is not None:  # the time and the decisions this
        try:  # case took, for the Review panel (the version is saved: a failure here is only said)
            log_review(Workspace.open(request.workspace, request.workspace_id), request.case, request.stats,
                       saved.version, request.provenance.get("edits", 0), now=request.pressed)
        except Exception as exc:
            message, clean = message + f"; the review was not journaled: {_why(exc)}", False
    for warning in texts(heard):
        message, clean = message + f"\nnote: {warning}", False
    return saved, message, not clean


def _why(exc: Exception) -> str:
    """An error in a status line: an LNQError's own words, else its type and words."""
    return str(exc) if isinstance(exc, LNQError) else f"{type(exc).__name__}: {exc}"


class SaveWidget(QWidget):
    """Saves a new version into the case's workspace, else under ``<folder>/<case>/``; never overwrites.
    When the CT came from a DICOM series, a DICOM SEG referencing it is written beside the version.
    One save at a time, in a worker thread; :attr:`saved` tells when it ends."""

    #: A Save ended (on the GUI thread): the new version's file, or None when nothing was saved.
    saved = Signal(object)

    def __init__(self, napari_viewer, workspace=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        widen_opened_cts(napari_viewer)  # File > Open of a CT beside this tab alone
        self.workspace = workspace
        self.worker = None  # the save running, if any
        self._gone = threading.Event()  # the widget went (the viewer closed) while a save ran
        self.destroyed.connect(lambda *_, gone=self._gone: gone.set())
        wait_for_jobs_at_exit()  # a save still running when Python exits is waited for
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(f"{LABELS_FOLDER}/ beside the case file")
        self.save_button = QPushButton("Save new version")
        self.save_button.clicked.connect(self.save)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # the last Save's refusal or problem and the case it was about: kept above the edits' line until
        # the next Save or another case (an autosave ending seconds later overwrote why a Save was refused)
        self._kept: tuple[object, str] | None = None
        self._gone_from: tuple[Path, int] | None = None  # a refusal's workspace gone, the autosaves by then
        layout = QVBoxLayout(self)
        layout.addLayout(folder_row("folder", self.folder, "Save label versions in"))
        layout.addWidget(self.save_button)
        layout.addWidget(self.status)
        compact(self)
        self.tracker = SessionTracker(napari_viewer, self, self._show_state)
        self._show_state()

    def target_folder(self) -> Path:
        """The label folder used without a workspace: the one typed, else ``lnq-labels/`` beside the case."""
        session = self.tracker.session
        if self.folder.text().strip():
            return Path(self.folder.text().strip())
        if session is not None and session.source:
            return Path(session.source).parent / LABELS_FOLDER
        return Path.cwd() / LABELS_FOLDER

    def _workspace_root(self, session) -> Path | None:
        """The workspace the case was opened from, else the widget's, else None (a case opened from
        another workspace than the panel's was saved into the panel's: labels and review in the wrong
        workspace when two share the data's case names)."""
        if session.workspace is not None:
            return Path(session.workspace)
        return Path(getattr(self.workspace, "root", self.workspace)) if self.workspace is not None else None

    def _show_state(self) -> None:
        session = self.tracker.session
        if session is not None and session.autosaver is not None:
            session.autosaver.watch(self._show_state, self)  # its writes and failures end after the edit
        if self.worker is not None:  # "saving ..." until it ends
            return
        if self._kept is not None and (not self._still_about(session) or self._back(session)):
            self._kept = None  # about a case no longer the current, or a workspace back where it was
        kept = f"{self._kept[1]}\n" if self._kept is not None else ""
        self.status.setText(kept + self._state_line(session))

    def _still_about(self, session) -> bool:
        """Whether the kept line is about ``session``'s case: its own, or the case's node layer, still open,
        while another layer over it is selected (a version opened over the case as the note says)."""
        kept = self._kept[0] if self._kept is not None else None
        if kept is session:
            return True
        return (session is not None and kept is not None and kept.nodes in self.viewer.layers
                and kept.workspace == session.workspace and kept.case == session.case)

    def _back(self, session) -> bool:
        """Whether the workspace the kept refusal said was gone is back: an autosave since went into it
        (the autosave checks that it is that workspace)."""
        if self._gone_from is None or session.autosaver is None or session.autosaver.last_error is not None:
            return False
        folder, writes = self._gone_from
        last = session.autosaver.last_path
        return (session.autosaver.writes > writes and last is not None and last.is_file()
                and last.resolve().is_relative_to(folder.resolve()))

    @staticmethod
    def _state_line(session) -> str:
        """The current case's edits and where they are autosaved."""
        if session is None:
            return "no node layer"
        if session.autosaver is not None and session.autosaver.last_error is not None:  # not "autosaved"
            return (f"{count(session.edits, 'edit')}; autosave failed ({session.autosaver.last_error}): "
                    "tried again every few seconds; Save to keep them")
        if session.autosaver is not None and session.autosaver.last_path is not None:
            return f"{count(session.edits, 'edit')}; autosaved to {session.autosaver.last_path}"
        return count(session.edits, "edit")

    def request(self, session) -> SaveRequest:
        """What a Save of ``session`` now writes (a copy of its labels: edits may go on meanwhile)."""
        labels = session.labels_volume()
        # the version these labels were opened from (or last saved as) in the workspace they came from
        parent = {"parent": session.parent_version} if session.workspace and session.parent_version else {}
        if parent and session.parent_sha256:  # which version of that id: a folder made afresh reuses it
            parent["parent_sha256"] = session.parent_sha256
        root = self._workspace_root(session)
        return SaveRequest(
            labels.with_array(np.array(labels.array, copy=True)), session.case, root, self.target_folder(),
            {"model_version": session.model_version, "edits": session.edits,
             "origin": str(Path(session.source).resolve()) if session.source else session.nodes.name,
             "layer": session.nodes.name,
             **({"rejected": rejected} if (rejected := session.rejections()) else {}),
             **({"marked": marked} if (marked := session.marks()) else {}), **session.lost_flags,
             **parent},
            ct_source=session.ct_layer.metadata.get(SOURCE_KEY) if session.ct_layer is not None else None,
            stats=dataclasses.replace(session.stats) if root is not None else None,
            workspace_id=session.workspace_id if session.workspace is not None else
            getattr(self.workspace, "id", None),
        )

    def save(self):
        """Save the current node layer as a new version, in a worker thread; returns the worker (None when
        no save started: none to save, or one already running). :attr:`saved` tells the file when it
        ends; edits made meanwhile stay unsaved."""
        from napari.qt.threading import create_worker

        session = self.tracker.session
        if self.worker is not None or (session is not None and session.saving is not None):
            return None  # one at a time (the button is off; a key or another panel may still ask)
        if session is None:
            self._kept = self._gone_from = None
            self.status.setText("no node layer to save")
            self.saved.emit(None)
            return None
        owner = case_session(self.viewer, session)
        if owner is not None:  # another layer over the case selected (a version opened with File > Open):
            # saved, it became the case's newest correction, recorded as made on the case's version
            said = (f"not saved: the selected layer {session.nodes.name!r} is not {owner.case}'s labels; "
                    f"select {owner.nodes.name!r}, the layer that holds them, and Save again")
            kept = self._kept[1] if self._kept is not None and self._still_about(session) else ""
            self._kept = (session, said + (f"\n{kept}" if kept and not kept.startswith("not saved") else ""))
            self.status.setText(self._kept[1])
            self.saved.emit(None)
            return None
        self._kept = None  # the user acts on what the last Save said
        self._gone_from = None
        try:
            request, point = self.request(session), session.save_point()
        except LNQError as exc:  # labels that cannot be saved (not 3D, off the CT's grid)
            self._kept = (session, f"not saved: {exc}")
            self.status.setText(self._kept[1])
            self.saved.emit(None)
            return None
        note = unplaced_note(session.ct_layer) if session.ct_layer is not None else ""
        outcome: dict = {}
        gone = self._gone

        def work() -> None:  # the result is kept here, not handed to ``returned``: a worker napari
            SAVES_RUNNING.add(id(outcome))  # cancels (another viewer closing) skips that signal
            try:
                outcome["result"] = write_version(request)
            finally:
                SAVES_RUNNING.discard(id(outcome))

        def errored(exc: Exception) -> None:
            outcome["error"] = f"not saved: {_why(exc)}"
            if isinstance(exc, WorkspaceGone) and exc.folder is not None:
                outcome["gone"] = exc.folder

        def finished() -> None:
            session.saving = None
            path, problem = None, True
            if "result" in outcome:
                saved, message, problem = outcome["result"]
                # the snapshot's state, not the edits made since
                session.mark_saved(point, saved.version, saved.sha256)
                path, message = saved.path, message + (f"\n{note}" if note else "")
                problem = problem or bool(note)
            else:
                message = outcome.get("error", "not saved")
            if gone.is_set():  # the viewer closed: the version is written all the same
                return
            self.worker = None
            self.save_button.setEnabled(True)
            self._kept = (session, message) if problem else None
            writes = session.autosaver.writes if session.autosaver is not None else 0
            self._gone_from = (outcome["gone"], writes) if "gone" in outcome else None
            self.status.setText(message)
            self.saved.emit(path)

        worker = create_worker(work, _start_thread=False, _connect={"errored": errored, "finished": finished})
        self.worker = session.saving = worker
        self.save_button.setEnabled(False)
        self.status.setText("saving ...")
        worker.start()
        return worker
