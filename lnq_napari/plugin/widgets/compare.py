"""Compare: a baseline and a follow-up scan of one patient, their nodes matched, the change table.

Pick each scan's CT layer and nodes layer (or let the model find the nodes) and press Compare
(:func:`lnq_napari.api.compare` in a worker). The follow-up CT and its nodes are then shown resampled
onto the baseline grid, so one cursor position is the same place in both; "side by side" puts the two
scans in a linked grid. Each row of the table is one node with the same colour in both scans; a click
goes to it. Edits of either nodes layer, and their undo and redo, re-measure and re-match (the
registration is kept).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lnq_napari import api
from lnq_napari.followup import CompareResult, write_csv
from lnq_napari.followup.report import CUT_CELLS
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._layers import (
    COMPARE_ROLE,
    CT_CONTRAST,
    ROLE_KEY,
    layer_kwargs,
    layer_volume,
    widen_contrast_range,
)
from lnq_napari.plugin._session import NodeSession, model_nodes, session_for
from lnq_napari.plugin.widgets._common import (
    MiddleElidedCombo,
    cell_text,
    closing_flag,
    export_table,
    while_alive,
    widen_opened_cts,
)
from lnq_napari.quantify import marked_cell, short_axis_text
from lnq_napari.wording import count

ROLE = COMPARE_ROLE
PREDICT = "(find with the model)"
FOLLOWUP_CT = "compare: follow-up CT"
BASELINE_NODES = "compare: baseline nodes"
FOLLOWUP_NODES = "compare: follow-up nodes"
COLUMNS = [
    ("", None, "{}"),  # the row's colour
    ("base id", "baseline_id", "{:d}"),
    ("fu id", "followup_id", "{:d}"),
    ("status", "status", "{}"),
    ("cm3 base", "volume_baseline_cm3", "{:.2f}"),
    ("cm3 fu", "volume_followup_cm3", "{:.2f}"),
    ("vol %", "volume_change_pct", "{:+.0f}"),
    ("short base", "short_axis_baseline_mm", short_axis_text),  # rounded down: 15.0 a target, 10.0 enlarged
    ("short fu", "short_axis_followup_mm", short_axis_text),
    ("short mm", "short_axis_change_mm", "{:+.1f}"),
    ("RECIST", "recist", "{}"),
    ("with", "relation", "{}"),  # coalesced or split: the pair's change is not the node's own
    ("RECIST fu", "recist_followup_short_axis_mm", short_axis_text),  # what RECIST credits the baseline node
]


class CompareWidget(QWidget):
    """Baseline vs follow-up: choose layers, Compare, browse the change table, export it."""

    def __init__(self, napari_viewer, delay_ms: int = 500) -> None:
        super().__init__()
        self.viewer = napari_viewer
        widen_opened_cts(napari_viewer)  # File > Open of a CT beside this tab alone
        self.model = None  # a model folder or loaded predictor for scans without nodes (None: bundled)
        self.result: CompareResult | None = None
        self.worker = None
        self._inputs: tuple = ()  # the CT layers the current result belongs to
        self._watched: list[NodeSession] = []  # sessions of the nodes layers: their changes re-run it
        me, watched = weakref.ref(self), self._watched

        def heard() -> None:  # the sessions hold the widget weakly: a closed one goes and compares no more
            widget = me()
            if widget is None:
                _stop_hearing(watched, heard)
            else:
                widget._on_edit()

        self._heard = heard
        self.destroyed.connect(lambda *_: _stop_hearing(watched, heard))  # its Qt part gone first
        self._closed = closing_flag(self)  # a comparison running when the viewer closes stops
        self._again = False
        self.combos = {key: MiddleElidedCombo() for key in ("baseline_ct", "baseline_nodes", "followup_ct",
                                                            "followup_nodes")}
        form = QFormLayout()
        for key, label in (("baseline_ct", "baseline CT"), ("baseline_nodes", "baseline nodes"),
                           ("followup_ct", "follow-up CT"), ("followup_nodes", "follow-up nodes")):
            form.addRow(label, self.combos[key])
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(lambda: self.run())
        self.follow_edits = QCheckBox("update on edits")
        self.follow_edits.setChecked(True)
        self.follow_edits.setToolTip("re-measure and re-match when either nodes layer is edited")
        self.side_by_side = QCheckBox("side by side")
        self.side_by_side.setToolTip("baseline and follow-up in a linked grid (same cursor position)")
        self.side_by_side.toggled.connect(self._arrange)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(200)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        export = QPushButton("Export CSV")
        export.clicked.connect(self._export_dialog)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.follow_edits)
        buttons.addWidget(self.side_by_side)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(export)
        layout.addLayout(bottom)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._edited)
        for emitter in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            while_alive(self, emitter, self.refresh_choices)
        self.refresh_choices()

    # ------------------------------------------------------------------ inputs
    def refresh_choices(self) -> None:
        """Fill the layer choosers (Image layers for CTs, Labels layers or the model for nodes)."""
        from napari.layers import Image, Labels

        ours = [ly for ly in self.viewer.layers if ly.metadata.get(ROLE_KEY) != ROLE]
        images = [ly.name for ly in ours if isinstance(ly, Image)]
        labels = [ly.name for ly in ours if isinstance(ly, Labels)]
        for key, names in (("baseline_ct", images), ("followup_ct", images),
                           ("baseline_nodes", [PREDICT, *labels]), ("followup_nodes", [PREDICT, *labels])):
            combo = self.combos[key]
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if images and self.combos["followup_ct"].currentText() == self.combos["baseline_ct"].currentText():
            self.combos["followup_ct"].setCurrentIndex(len(images) - 1)  # a guess: the later-opened scan

    def choose(self, baseline_ct: str, followup_ct: str, baseline_nodes: str | None = None,
               followup_nodes: str | None = None) -> None:
        """Pick layers by name (None: find the nodes with the model)."""
        for key, name in (("baseline_ct", baseline_ct), ("followup_ct", followup_ct),
                          ("baseline_nodes", baseline_nodes or PREDICT),
                          ("followup_nodes", followup_nodes or PREDICT)):
            self.combos[key].setCurrentText(name)

    def _layer(self, key: str):
        name = self.combos[key].currentText()
        return None if name in ("", PREDICT) or name not in self.viewer.layers else self.viewer.layers[name]

    # ------------------------------------------------------------------ running
    def run(self, reuse_registration: bool = False):
        """Compare the chosen scans in a worker; returns it (None when a choice is missing)."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            self._again = True
            return None
        cts = (self._layer("baseline_ct"), self._layer("followup_ct"))
        if None in cts or cts[0] is cts[1]:
            self.status.setText("choose two different CT layers: the baseline and the follow-up scan")
            return None
        nodes = (self._layer("baseline_nodes"), self._layer("followup_nodes"))
        volumes = [layer_volume(ly) for ly in cts]
        segs = [None if ly is None else _labels_copy(ly) for ly in nodes]
        registration = None
        if reuse_registration and self.result is not None and self._inputs == cts:
            registration = self.result.registration
        self._watch(nodes)
        self._inputs = cts
        self.compare_button.setEnabled(False)
        self.status.setText("comparing ..." if registration is None else "re-matching after an edit ...")
        self.worker = create_worker(
            api.compare, volumes[0], volumes[1], segs[0], segs[1],
            model=api.model_if_needed(self.model, *segs),
            registration=registration, cancel=self._closed.is_set,
            seg_by_model=tuple(ly is not None and model_nodes(ly) for ly in nodes),
            _connect={"returned": self._show, "errored": self._failed, "finished": self._done},
            _start_thread=False)
        self.worker.start()
        return self.worker

    def _done(self) -> None:
        self.worker = None
        self.compare_button.setEnabled(True)
        if self._again:
            self._again = False
            self._timer.start()

    def _failed(self, exc: Exception) -> None:
        """The error in the status line; the last comparison's table and summary go (they stood under it as
        if they were this run's)."""
        self.result = None
        self.table.setRowCount(0)
        self.summary.setText("")
        self.status.setText(f"could not compare: {exc}")

    def _watch(self, layers) -> None:
        """Hear every change of these nodes layers' labels: their sessions tell of each (a brush stroke, a
        click, Ctrl+Z and Ctrl+Shift+Z, which fire none of the layer's own events)."""
        _stop_hearing(self._watched, self._heard)
        self._watched.extend(dict.fromkeys(session_for(self.viewer, ly) for ly in layers if ly is not None))
        for session in self._watched:
            session.listeners.append(self._heard)

    def _on_edit(self) -> None:
        if self.follow_edits.isChecked() and self.result is not None:
            self._timer.start()

    def _edited(self) -> None:
        self.run(reuse_registration=True)

    # ------------------------------------------------------------------ showing
    def _show(self, result: CompareResult) -> None:
        new_registration = self.result is None or result.registration is not self.result.registration
        self.result = result
        grid = result.baseline_labels
        if new_registration or FOLLOWUP_CT not in self.viewer.layers:
            ct = layer_volume(self._inputs[1])
            moved = result.registration.resample(ct, grid, fill=-1024.0)
            self._put_image(FOLLOWUP_CT, moved)
        base, follow = result.labels_by_row()
        self._put_labels(BASELINE_NODES, grid.with_array(base))
        self._put_labels(FOLLOWUP_NODES, grid.with_array(follow))
        self._fill_table(result)
        self._arrange()
        notes = " ".join(result.warnings)
        self.status.setText(notes or f"registration {result.quality.stage}, {result.quality.seconds:.0f} s")

    def _replaced(self, name: str, default: bool) -> bool:
        """Remove the layer ``name`` of an earlier comparison (its grid may be another scan's: only its
        data replaced, it was drawn with the old voxel size); whether it was visible (``default``: none)."""
        if name not in self.viewer.layers:
            return default
        visible = bool(self.viewer.layers[name].visible)
        self.viewer.layers.remove(name)
        return visible

    def _put_image(self, name: str, volume: Volume) -> None:
        visible = self._replaced(name, False)
        kwargs = layer_kwargs(volume, name, ROLE)
        layer = self.viewer.add_image(volume.array, contrast_limits=CT_CONTRAST, colormap="gray",
                                      blending="additive", visible=visible, **kwargs)
        widen_contrast_range(layer)

    def _put_labels(self, name: str, volume: Volume) -> None:
        visible = self._replaced(name, True)
        layer = self.viewer.add_labels(volume.array, visible=visible, **layer_kwargs(volume, name, ROLE))
        layer.contour = 1
        layer.editable = False  # a view of the comparison (edits go to the scans' own node layers)

    def _fill_table(self, result: CompareResult) -> None:
        colours = self.viewer.layers[BASELINE_NODES]
        self.table.blockSignals(True)
        self.table.setRowCount(len(result.rows))
        for r, row in enumerate(result.rows):
            for c, (_, key, fmt) in enumerate(COLUMNS):
                value = None if key is None else getattr(row, key)
                text, cut = marked_cell(row, key, cell_text(value, fmt), CUT_CELLS)
                item = QTableWidgetItem(text)
                if cut:
                    item.setToolTip(cut)
                self.table.setItem(r, c, item)
            rgba = np.asarray(colours.get_color(r + 1), dtype=float)
            self.table.item(r, 0).setBackground(QColor(*(int(round(255 * v)) for v in rgba[:3])))
        self.table.resizeColumnsToContents()
        self.table.blockSignals(False)
        s, v, q = result.recist, result.volume, result.quality
        sums = f"{s.baseline_sum_mm:.1f} -> {s.followup_sum_mm:.1f} mm{s.nadir_note()}"
        total = "" if v.change_pct is None else f" ({v.change_pct:+.0f} %)"
        mean = "n/a" if q.mean_distance_mm is None else f"{q.mean_distance_mm:.1f} mm"
        self.summary.setText(
            f"RECIST 1.1: {s.overall} ({count(len(s.targets), 'target')}, {sums}; "
            f"{count(len(s.new_lesions), 'new lesion')}"
            f"{f', {len(s.equivocal_new)} equivocal' if s.equivocal_new else ''}); "
            f"by volume {s.volume_response}. {v.n_matched} matched, {v.n_new} new, "
            f"{v.n_vanished} vanished{v.pieces()}; "
            f"all nodes {v.baseline_total_cm3:.1f} -> {v.followup_total_cm3:.1f} cm3{total}. "
            f"Matched nodes {mean} apart after registration.")

    def _arrange(self) -> None:
        """Follow-up over the baseline (one view), or both scans side by side in a linked grid."""
        names = [FOLLOWUP_CT, BASELINE_NODES, FOLLOWUP_NODES]
        if any(n not in self.viewer.layers for n in names) or not self._inputs:
            return
        base_ct = self._inputs[0]
        layers = self.viewer.layers
        grid = self.side_by_side.isChecked()
        for layer in layers:  # the scans' own follow-up CT and nodes: shown by their compare layers
            if layer.metadata.get(ROLE_KEY) != ROLE and layer is not base_ct:
                layer.visible = False
        layers[FOLLOWUP_CT].visible = grid
        base_ct.visible = True
        if grid:  # two layers a cell, counted from the bottom: [baseline CT, nodes], [follow-up CT, nodes]
            order = [base_ct, layers[BASELINE_NODES], layers[FOLLOWUP_CT], layers[FOLLOWUP_NODES]]
            for position, layer in enumerate(order):
                layers.move(layers.index(layer), position)
            self.viewer.grid.stride = 2
            self.viewer.grid.shape = (1, 2)  # the hidden layers above wrap into the same two cells
        self.viewer.grid.enabled = grid
        self.viewer.reset_view()

    def _row_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.go_to(min(rows))

    def go_to(self, table_row: int) -> None:
        """Centre the viewer on the node of ``table_row`` (in whichever scan it is) and select it."""
        for name in (BASELINE_NODES, FOLLOWUP_NODES):
            layer = self.viewer.layers[name]
            where = np.argwhere(np.asarray(layer.data) == table_row + 1)
            if len(where):
                world = [float(v) for v in layer.data_to_world(where.mean(axis=0))]
                self.viewer.dims.set_point(range(len(world)), world)
                self.viewer.camera.center = tuple(world[d] for d in self.viewer.dims.displayed)
                for other in (BASELINE_NODES, FOLLOWUP_NODES):
                    self.viewer.layers[other].selected_label = table_row + 1
                return

    # ------------------------------------------------------------------ export
    def export_csv(self, path: str | Path) -> Path:
        """The change table as ``lnq-napari compare --csv`` writes it."""
        if self.result is None:
            raise ValueError("nothing compared yet")
        return write_csv(self.result.rows, path)

    def _export_dialog(self) -> None:
        if self.result is None:
            self.status.setText("compare two scans first")
            return
        export_table(self, "Export change table", "changes.csv", self.export_csv, self.status.setText)


def _stop_hearing(sessions: list[NodeSession], listener) -> None:
    """Take ``listener`` off ``sessions`` and empty the list."""
    for session in sessions:
        if listener in session.listeners:
            session.listeners.remove(listener)
    sessions.clear()


def _labels_copy(layer) -> Volume:
    volume = layer_volume(layer)
    return volume.with_array(np.array(volume.array, copy=True))  # edits may go on meanwhile
