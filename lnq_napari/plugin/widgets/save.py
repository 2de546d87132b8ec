"""Save: the corrected nodes as a new label version with provenance (header + JSON sidecar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from lnq_napari.plugin.widgets._common import SessionTracker, compact, folder_row


class SaveWidget(QWidget):
    """Writes ``<case>-seg.vNNN.seg.nrrd`` beside the case (or into the workspace); never overwrites."""

    def __init__(self, napari_viewer, workspace=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.workspace = workspace
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("beside the case file")
        self.save_button = QPushButton("Save new version")
        self.save_button.clicked.connect(self.save)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(folder_row("folder", self.folder, "Save label versions in"))
        layout.addWidget(self.save_button)
        layout.addWidget(self.status)
        compact(self)
        self.tracker = SessionTracker(napari_viewer, self._show_state)
        self._show_state()

    def target_folder(self) -> Path:
        session = self.tracker.session
        if self.folder.text().strip():
            return Path(self.folder.text().strip())
        if session is not None and session.source:
            return Path(session.source).parent
        return Path.cwd() / "lnq-labels"

    def _show_state(self) -> None:
        session = self.tracker.session
        if session is None:
            self.status.setText("no node layer")
        elif session.autosaver is not None and session.autosaver.last_path is not None:
            self.status.setText(f"{session.edits} edits; autosaved to {session.autosaver.last_path}")
        else:
            self.status.setText(f"{session.edits} edits")

    def save(self) -> Path | None:
        """Save the current node layer as a new version; returns the file (None without a node layer)."""
        from lnq_napari.plugin._storage import save_label_version

        session = self.tracker.session
        if session is None:
            self.status.setText("no node layer to save")
            return None
        provenance = {
            "source": session.source or session.nodes.name,
            "layer": session.nodes.name,
            "model_version": session.model_version,
            "edits": session.edits,
            "nodes": int(np.unique(session.nodes.data[session.nodes.data > 0]).size),
        }
        workspace = self.workspace
        if workspace is None and session.workspace is not None:  # a case opened from a workspace
            from lnq_napari.workspace import Workspace

            workspace = Workspace.open(session.workspace)
        path = save_label_version(
            session.labels_volume(), self.target_folder(), session.case, provenance, workspace=workspace
        )
        session.saved_edits = session.edits
        self.status.setText(f"saved {path}")
        return path
