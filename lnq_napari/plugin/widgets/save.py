"""Save: the corrected nodes as a new label version with provenance (:func:`lnq_napari.api.save_labels`)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from lnq_napari import api
from lnq_napari.components import node_numbers
from lnq_napari.errors import LNQError
from lnq_napari.heard import collected_warnings, texts
from lnq_napari.io.dicom_seg import is_dicom_path
from lnq_napari.plugin._layers import SOURCE_KEY, unplaced_note
from lnq_napari.plugin.widgets._common import SessionTracker, compact, folder_row
from lnq_napari.workspace import LABELS_FOLDER, Workspace
from lnq_napari.workspace.review_stats import log_review


class SaveWidget(QWidget):
    """Saves a new version into the case's workspace, else under ``<folder>/<case>/``; never overwrites.
    When the CT came from a DICOM series, a DICOM SEG referencing it is written beside the version."""

    def __init__(self, napari_viewer, workspace=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.workspace = workspace
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(f"{LABELS_FOLDER}/ beside the case file")
        self.save_button = QPushButton("Save new version")
        self.save_button.clicked.connect(self.save)
        self.status = QLabel("")
        self.status.setWordWrap(True)
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
        if session is None:
            self.status.setText("no node layer")
        elif session.autosaver is not None and session.autosaver.last_path is not None:
            self.status.setText(f"{session.edits} edits; autosaved to {session.autosaver.last_path}")
        else:
            self.status.setText(f"{session.edits} edits")

    def save(self) -> Path | None:
        """Save the current node layer as a new version; returns the file (None when nothing was saved)."""
        session = self.tracker.session
        if session is None:
            self.status.setText("no node layer to save")
            return None
        data = session.nodes.data
        # the version these labels were opened from (or last saved as) in the workspace they came from
        parent = {"parent": session.parent_version} if session.workspace and session.parent_version else {}
        try:
            with collected_warnings() as heard:  # shown in the status line, not a popup
                saved = api.save_labels(
                    session.labels_volume(), session.case, workspace=self._workspace_root(session),
                    folder=self.target_folder(), model_version=session.model_version, edits=session.edits,
                    origin=str(Path(session.source).resolve()) if session.source else session.nodes.name,
                    layer=session.nodes.name,
                    nodes=int(node_numbers(data)[1].size),  # counted as the Nodes table counts them
                    **({"rejected": rejected} if (rejected := session.rejections()) else {}),
                    **({"marked": marked} if (marked := session.marks()) else {}), **parent,
                )
        except LNQError as exc:
            self.status.setText(f"not saved: {exc}")
            return None
        session.mark_saved()
        if session.workspace:
            session.parent_version = saved.version
        message = f"saved {saved.version} to {saved.path}"
        ct_source = session.ct_layer.metadata.get(SOURCE_KEY) if session.ct_layer is not None else None
        if ct_source and is_dicom_path(ct_source):
            seg = Path(saved.path).with_name(Path(saved.path).name.split(".")[0] + ".seg.dcm")
            try:
                api.export_dicom_seg(seg, session.labels_volume(), ct_source,
                                     model_version=session.model_version, edits=session.edits)
                message += f" and DICOM SEG {seg.name}"
            except LNQError as exc:
                message += f"; no DICOM SEG: {exc}"
        root = self._workspace_root(session)
        if root is not None:  # the time and the decisions this case took, for the Review panel
            log_review(Workspace.open(root), session.case, session.stats, saved.version, session.edits)
        for warning in texts(heard):
            message += f"\nnote: {warning}"
        if session.ct_layer is not None and (note := unplaced_note(session.ct_layer)):
            message += f"\n{note}"
        self.status.setText(message)
        return saved.path
