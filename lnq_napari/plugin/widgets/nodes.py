"""Nodes: the node table (volume, axes, >= 10 mm flag) that follows every edit; row -> centre; CSV export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lnq_napari import api
from lnq_napari.plugin.widgets._common import SessionTracker
from lnq_napari.quantify import NodeRow, summarize_nodes, write_csv

COLUMNS = [
    ("id", "id", "{:d}"),
    ("volume_cm3", "cm3", "{:.2f}"),
    ("long_axis_mm", "long mm", "{:.1f}"),
    ("short_axis_mm", "short mm", "{:.1f}"),
    ("ge_10mm", ">=10mm", "{}"),
    ("mean_hu", "HU", "{:.0f}"),
    ("side", "side", "{}"),
]


def centre_on(viewer, world_zyx) -> None:
    """Move the slider to and centre the camera on a world point (z, y, x)."""
    world = [float(v) for v in world_zyx]
    viewer.dims.set_point(range(len(world)), world)
    viewer.camera.center = tuple(world[d] for d in viewer.dims.displayed)


class NodesWidget(QWidget):
    """Table of :func:`lnq_napari.api.node_table` rows for the current node layer (as ``measure``)."""

    def __init__(self, napari_viewer, delay_ms: int = 250) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.rows: list[NodeRow] = []
        self._worker, self._pending = None, False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(220)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.summary = QLabel("")
        export = QPushButton("Export CSV")
        export.clicked.connect(self._export_dialog)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(export)
        layout.addLayout(row)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.refresh)
        self.tracker = SessionTracker(napari_viewer, self._timer.start)
        self._timer.start()

    def refresh(self) -> None:
        """Measure the current node layer in a worker thread, then fill the table."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            self._pending = True
            return
        session = self.tracker.session
        if session is None:
            self._fill([])
            return
        labels = session.labels_volume()
        labels = labels.with_array(np.array(labels.array, copy=True))  # edits may go on meanwhile
        ct = session.ct_volume() if session.ct_layer is not None else None
        connect = {"returned": self._fill, "errored": self._failed, "finished": self._done}
        self._worker = create_worker(api.node_table, labels, ct, _connect=connect, _start_thread=False)
        self._worker.start()

    def _done(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self._timer.start()

    def _failed(self, exc: Exception) -> None:
        self.summary.setText(f"could not measure: {exc}")

    def _fill(self, rows: list[NodeRow]) -> None:
        self.rows = rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _, fmt) in enumerate(COLUMNS):
                value = getattr(row, key)
                self.table.setItem(r, c, QTableWidgetItem("" if value is None else fmt.format(value)))
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        s = summarize_nodes(rows)
        self.summary.setText(
            f"{s['n_nodes']} nodes, {s['n_ge_10mm']} >= 10 mm, {s['total_volume_cm3']:.1f} cm3"
        )

    def _row_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.go_to(min(rows))

    def go_to(self, row: int) -> None:
        """Centre the viewer on the node of table row ``row``."""
        session = self.tracker.session
        node = self.rows[row]
        index = session.labels_volume().physical_to_index(np.array([node.centroid_mm]))[0]
        centre_on(self.viewer, session.nodes.data_to_world(index))
        session.nodes.selected_label = node.id

    def export_csv(self, path: str | Path) -> Path:
        """Write the table as :func:`lnq_napari.quantify.write_csv` does for ``measure --csv``."""
        return write_csv(self.rows, path)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export node table", "nodes.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)
            self.summary.setText(f"saved {Path(path).name}")
