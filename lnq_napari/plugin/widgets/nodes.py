"""Nodes: the node table (volume, axes, ≥10 mm flag) that follows every edit; row -> centre; CSV export.

Each id cell has the node's colour on the canvas; a header click sorts by that column (numbers as
numbers); "≥10 mm only" hides the smaller nodes, but not those cut by the image edge. The figures of a
node cut by the image edge end in "+" (a lower bound; which edge in the cell's tooltip).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lnq_napari import api
from lnq_napari.plugin.widgets._common import SessionTracker, cell_text, export_table, widen_opened_cts
from lnq_napari.quantify import (
    CUT_MARK,
    CUT_WORDS,
    NodeRow,
    cut_text,
    marked_cell,
    may_be_enlarged,
    short_axis_text,
    summarize_nodes,
    write_csv,
)

COLUMNS = [  # (NodeRow field, header, format or function); short headers keep the table narrow, tooltips
    # say more; what a reader of nodes looks for first (RECIST: the short axis, >= 10 mm) in the narrow
    # panel's view
    ("id", "id", "{:d}"),
    ("short_axis_mm", "short", short_axis_text),  # rounded down: "10.0" only beside "yes"
    ("ge_10mm", "≥10", "{}"),
    ("long_axis_mm", "long", "{:.1f}"),
    ("volume_cm3", "cm3", "{:.2f}"),
    ("mean_hu", "HU", "{:.0f}"),
    ("side", "side", "{}"),
]
HEADER_TIPS = {
    "id": "node id: its colour on the canvas", "volume_cm3": "volume (cm3)", "long_axis_mm": "long axis (mm)",
    "short_axis_mm": "short axis (mm)", "ge_10mm": "short axis ≥10 mm", "mean_hu": "mean HU",
    "side": "side of the midline: R right, L left, mid on it",
}
#: The side column's cells in short (the word in the cell's tooltip): "midline" alone made the column as wide
#: as two others, and the panel's last columns lay behind the horizontal scrollbar.
SIDE_SHORT = {"right": "R", "left": "L", "midline": "mid"}


SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the value a column sorts by
ID_ROLE = Qt.ItemDataRole.UserRole + 2  # the node id of a row (rows move when sorted)


class SortItem(QTableWidgetItem):
    """A table cell that sorts by its raw value (numbers as numbers; None first)."""

    def __lt__(self, other) -> bool:
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if a is None or b is None:
            return a is None and b is not None
        try:
            return float(a) < float(b)
        except (TypeError, ValueError):
            return str(a) < str(b)


class CompactHeader(QHeaderView):
    """A horizontal header whose sections leave room for the sort arrow only where it is drawn, and there
    only the arrow's own width: Qt left the header's height + margin (24 px) beside every column's name
    (seven columns 390 px in a 245 px table; sorted by "short", still 1 px too wide)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setSectionsClickable(True)
        self.setHighlightSections(True)
        self.setStyleSheet("QHeaderView::section { padding: 2px 0px; }")  # napari's 2px each side: 28 px

    def arrow_room(self) -> int:
        """The width the sort arrow takes beside the sorted column's name (the arrow and a 2 px gap)."""
        return self.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMarkSize, None, self) + 2

    def sectionSizeFromContents(self, logical_index: int) -> QSize:
        size = super().sectionSizeFromContents(logical_index)
        if self.isSortIndicatorShown():
            margin = self.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMargin, None, self)
            arrow = self.arrow_room() if logical_index == self.sortIndicatorSection() else 0
            size.setWidth(max(size.width() - size.height() - margin + arrow, 1))  # Qt's room for the arrow
        return size


class CompactCells(QStyledItemDelegate):
    """Cells whose text sits ``CELL_MARGIN`` px from the column's edges, not Qt's 3 px: with a vertical
    scrollbar (30+ rows) and a 5-character cell ("-1000" HU, "73.08" cm3) the side column lay behind the
    horizontal scrollbar. Painted as Qt paints them, in a rect wider by the margin saved and clipped to
    the cell (its colour stays inside; the text is not elided)."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        style = parent.style()
        self.saved = max(style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, parent) + 1
                         - CELL_MARGIN, 0)  # Qt's text margin (each side) less the one kept

    def sizeHint(self, option, index) -> QSize:
        size = super().sizeHint(option, index)
        size.setWidth(size.width() - 2 * self.saved)
        return size

    def paint(self, painter, option, index) -> None:
        painter.save()
        painter.setClipRect(option.rect)
        wider = type(option)(option)
        wider.rect = option.rect.adjusted(-self.saved, 0, self.saved, 0)
        super().paint(painter, wider, index)
        painter.restore()


CELL_MARGIN = 1  # px between a cell's text and its column's edges


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
        widen_opened_cts(napari_viewer)  # File > Open of a CT beside this tab alone
        self.rows: list[NodeRow] = []
        self._worker, self._pending = None, False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        for c, (key, _, _) in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(c).setToolTip(HEADER_TIPS[key])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        # each column as wide as its widest cell: at the default width the id column took twice its room and
        # ">=10" (the column a reader looks for), HU and side lay behind the horizontal scrollbar
        header = CompactHeader(self.table)
        self.table.setHorizontalHeader(header)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(24)
        self.table.setItemDelegate(CompactCells(self.table))
        self.table.setMinimumHeight(220)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.large_only = QCheckBox("≥10 mm only")
        self.large_only.setToolTip(f"show only nodes with a short axis of 10 mm or more, and those "
                                   f"{CUT_WORDS} (their '{CUT_MARK}': the whole node may reach 10 mm)")
        self.large_only.toggled.connect(lambda checked: self._apply_filter())
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        export = QPushButton("Export CSV")
        export.clicked.connect(self._export_dialog)
        layout = QVBoxLayout(self)
        layout.addWidget(self.large_only)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(export)
        layout.addLayout(row)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.refresh)
        self._followed = None  # the node layer whose selected label the table follows
        self.tracker = SessionTracker(napari_viewer, self, self._changed)
        me = weakref.ref(self)  # held weakly: the widget's own signal must not keep it alive
        self.destroyed.connect(lambda *_: (widget := me()) is not None and widget._follow_label_of(None))
        self._changed()

    def _changed(self) -> None:
        """An edit or another node layer: measure again (soon), and follow the layer's selected label."""
        self._follow_label_of(self.tracker.session.nodes if self.tracker.session is not None else None)
        self._timer.start()

    def _follow_label_of(self, layer) -> None:
        """Highlight the rows of ``layer``'s selected label from now on (None: of no layer; a closed
        widget, whose table is gone, follows none)."""
        if layer is not self._followed:
            if self._followed is not None:
                self._followed.events.selected_label.disconnect(self._show_selected_label)
            if layer is not None:
                layer.events.selected_label.connect(self._show_selected_label)
            self._followed = layer

    def _show_selected_label(self, event=None) -> None:
        """Highlight the row of the node selected on the layer (e.g. by the J / K keys), without moving."""
        node = int(self._followed.selected_label) if self._followed is not None else 0
        rows = [r for r in range(self.table.rowCount()) if self.node_id(r) == node]
        self.table.blockSignals(True)
        if rows:
            self.table.selectRow(rows[0])
            self.table.scrollToItem(self.table.item(rows[0], 0))
        else:
            self.table.clearSelection()
        self.table.blockSignals(False)

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
        session = self.tracker.session
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)  # rows go in as measured, then the chosen sort applies
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (key, _, fmt) in enumerate(COLUMNS):
                value = getattr(row, key)
                # "8.4+" beside "no": the flag may be wrong (a column of its own would push the panel's
                # last columns behind the scrollbar)
                text, cut = marked_cell(row, key, cell_text(value, fmt))
                item = SortItem(text)
                if key == "side" and value in SIDE_SHORT:
                    item.setText(SIDE_SHORT[value])
                    item.setToolTip(str(value))
                cut = cut or (cut_text(row.cut_by_edge) if key == "ge_10mm" else "")
                if cut:
                    item.setToolTip(cut)
                item.setData(SORT_ROLE, value)
                item.setData(ID_ROLE, row.id)
                self.table.setItem(r, c, item)
            if session is not None:
                self._colour(self.table.item(r, 0), node_colour(session.nodes, row.id))
        self.table.setSortingEnabled(True)
        self._apply_filter()
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        self.summary.setText(summarize_nodes(rows).text())

    @staticmethod
    def _colour(item: QTableWidgetItem, rgba) -> None:
        r, g, b = (int(round(255 * float(v))) for v in rgba[:3])
        item.setBackground(QColor(r, g, b))
        item.setForeground(QColor("black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"))

    def _apply_filter(self) -> None:
        """Hide the rows of nodes under 10 mm when "≥10 mm only" is on; a node cut by the image edge stays
        (measured on what is visible: its "no" may be wrong)."""
        large = {row.id for row in self.rows if may_be_enlarged(row)}
        for r in range(self.table.rowCount()):
            hide = self.large_only.isChecked() and self.node_id(r) not in large
            self.table.setRowHidden(r, hide)

    def node_id(self, table_row: int) -> int | None:
        """The node id shown in ``table_row`` (rows follow the sort, not the measurement order)."""
        item = self.table.item(table_row, 0)
        return None if item is None else item.data(ID_ROLE)

    def visible_ids(self) -> list[int]:
        """Node ids of the shown rows, top to bottom."""
        return [self.node_id(r) for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def _row_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            ids = [row.id for row in self.rows]
            self.go_to(ids.index(self.node_id(min(rows))))

    def go_to(self, row: int) -> None:
        """Centre the viewer on the node of ``self.rows[row]``."""
        session = self.tracker.session
        node = self.rows[row]
        index = session.labels_volume().physical_to_index(np.array([node.centroid_mm]))[0]
        centre_on(self.viewer, session.nodes.data_to_world(index))
        session.nodes.selected_label = node.id

    def export_csv(self, path: str | Path) -> Path:
        """Write the table as :func:`lnq_napari.quantify.write_csv` does for ``measure --csv``."""
        return write_csv(self.rows, path)

    def _export_dialog(self) -> None:
        export_table(self, "Export node table", "nodes.csv", self.export_csv, self.summary.setText)


def node_colour(layer, node_id: int) -> np.ndarray:
    """The RGBA (0-1) the Labels ``layer`` draws ``node_id`` with on the canvas."""
    return np.asarray(layer.get_color(int(node_id)), dtype=float)
