"""The napari node table and the command line agree: the same nodes (one connectivity rule), the same rows."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt

from lnq_napari.cli import main
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.names import short_model_name
from lnq_napari.plugin.app import dock_widgets
from lnq_napari.plugin.widgets import NodesWidget
from lnq_napari.plugin.widgets.nodes import COLUMNS, SORT_ROLE
from lnq_napari.quantify import ENLARGED_MM, NodeRow, reaches

pytestmark = pytest.mark.gui


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_same_rows(table: list[NodeRow], written: list[dict]) -> None:
    """The widget's rows equal the rows ``lnq-napari measure --csv`` wrote, column by column."""
    assert len(table) == len(written)
    for row, line in zip(table, written, strict=True):
        for key, value in row.to_dict().items():
            if isinstance(value, bool) or isinstance(value, str):
                assert line[key] == str(value), key
            else:
                assert float(line[key]) == pytest.approx(value, rel=1e-9, abs=1e-9), key


def _wait_for_rows(qtbot, widget: NodesWidget, n: int | None = None) -> None:
    """Until the widget's measuring worker has filled the table (with ``n`` rows when given)."""
    def filled() -> bool:
        return widget._worker is None and bool(widget.rows) and (n is None or len(widget.rows) == n)

    qtbot.waitUntil(filled, timeout=60000)


def test_nodes_touching_at_a_corner_are_one_node_in_napari_and_in_measure(
    make_napari_viewer, qtbot, tmp_path, autosave_dir
):
    spacing = (0.8, 0.8, 2.5)
    mask = np.zeros((8, 20, 20), np.uint8)
    mask[1:4, 2:6, 2:6] = 1
    mask[4:6, 6:9, 6:9] = 1  # touches the first block only at a corner: the same node
    mask[2:5, 12:16, 12:16] = 1
    hu = np.where(mask > 0, 40, -100).astype(np.int16) + np.arange(20, dtype=np.int16)  # fat, nodes
    ct = write_volume(tmp_path / "corner-ct.nrrd", Volume(hu, spacing))
    seg = write_volume(tmp_path / "corner-seg.nrrd", Volume(mask, spacing))

    viewer = make_napari_viewer()
    viewer.open(str(ct), plugin="lnq-napari")
    (labels,) = viewer.open(str(seg), plugin="lnq-napari")
    assert int(labels.data.max()) == 2  # the reader gives the corner-touching blocks one id
    table = NodesWidget(viewer)
    _wait_for_rows(qtbot, table)

    assert main(["measure", str(seg), "--ct", str(ct), "--csv", str(tmp_path / "nodes.csv")]) == 0
    written = _csv_rows(tmp_path / "nodes.csv")
    assert [r.voxels for r in table.rows] == [48 + 18, 48] and len(written) == 2
    assert all(r.mean_hu is not None for r in table.rows)  # measured with the CT, as `measure --ct`
    _assert_same_rows(table.rows, written)


def test_segment_widget_and_predict_then_measure_give_the_same_table(
    make_napari_viewer, qtbot, phantom_files, tmp_path, autosave_dir
):
    import torch

    torch.set_num_threads(2)
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    widgets = dock_widgets(viewer)
    segment = widgets["Segment"]
    segment.form.device.value = "cpu"  # the bundled model, as `lnq-napari predict` uses by default
    assert segment.run() is not None
    qtbot.waitUntil(lambda: segment.worker is None, timeout=600000)
    version = viewer.layers["nodes"].metadata["lnq_model_version"]  # in full; the status shows its alias
    assert segment.status.text().endswith(short_model_name(version)) and version in segment.status.toolTip()
    n_nodes = int(viewer.layers["nodes"].data.max())
    assert n_nodes >= 1 and segment.status.text().startswith(f"{n_nodes} nodes")
    _wait_for_rows(qtbot, widgets["Nodes"], n_nodes)

    out = tmp_path / "predicted"
    assert main(["predict", str(phantom_files.ct), "-o", str(out), "--device", "cpu"]) == 0
    seg = out / f"{phantom_files.case.case_id}-seg.nrrd"
    csv_path = tmp_path / "nodes.csv"
    assert main(["measure", str(seg), "--ct", str(phantom_files.ct), "--csv", str(csv_path)]) == 0
    _assert_same_rows(widgets["Nodes"].rows, _csv_rows(csv_path))


def test_a_class_map_gives_each_node_a_row_in_napari_and_in_measure_and_its_id_on_the_canvas(
    make_napari_viewer, qtbot, tmp_path, autosave_dir
):
    """A label map with class values (class 1 on two nodes): ``measure`` gave one row for both nodes (one
    volume, a centre between them), napari a row each. Both list the same nodes, under ids of their own:
    ``measure`` reads the classes (class 1's second node gets 3), the reader a mask (1..3 in raster
    order). In napari each node has its id on the canvas and in the table, and a row's click centres on
    its node and selects the id painted there. A node painted during editing with another node's id was
    one row with it; it is a row of its own (a new id, not on the canvas until painted with it) that
    centres on it."""
    spacing = (0.8, 0.8, 2.5)
    classes = np.zeros((8, 30, 30), np.uint8)
    classes[1:4, 2:6, 2:6] = 1
    classes[2:5, 20:23, 20:23] = 1  # a second node of class 1, apart from the first
    classes[4:7, 2:6, 22:26] = 2
    hu = np.where(classes > 0, 40, -100).astype(np.int16)
    ct = write_volume(tmp_path / "classes-ct.nrrd", Volume(hu, spacing))
    seg = write_volume(tmp_path / "classes-seg.nrrd", Volume(classes, spacing))

    viewer = make_napari_viewer()
    viewer.open(str(ct), plugin="lnq-napari")
    (labels,) = viewer.open(str(seg), plugin="lnq-napari")
    assert np.unique(labels.data).tolist() == [0, 1, 2, 3] and np.array_equal(labels.data > 0, classes > 0)
    table = NodesWidget(viewer)
    _wait_for_rows(qtbot, table, 3)
    assert main(["measure", str(seg), "--ct", str(ct), "--csv", str(tmp_path / "nodes.csv")]) == 0
    written = _csv_rows(tmp_path / "nodes.csv")
    centres = [(int(w["voxels"]), *(float(w[f"centroid_{a}"]) for a in "xyz")) for w in written]
    assert sorted((r.voxels, *r.centroid_mm) for r in table.rows) == pytest.approx(sorted(centres))
    measured = {round(float(w["centroid_z"]), 3): int(w["id"]) for w in written}
    assert {r.id: measured[round(r.centroid_mm[2], 3)] for r in table.rows} == {1: 1, 2: 3, 3: 2}
    grid = Volume(labels.data, spacing)
    for k, row in enumerate(table.rows):
        table.go_to(k)
        centre = tuple(np.round(grid.physical_to_index(np.array([row.centroid_mm]))[0]).astype(int))
        assert labels.selected_label == row.id == labels.data[centre]
        assert viewer.dims.current_step[0] == centre[0]  # the node's slice shown

    labels.data_setitem(tuple(np.array(v) for v in ([6, 6], [26, 27], [4, 4])), 2)  # node 2's id, elsewhere
    labels.events.paint()
    _wait_for_rows(qtbot, table, 4)
    (new,) = [r for r in table.rows if r.id not in (1, 2, 3)]
    table.go_to(table.rows.index(new))
    assert labels.selected_label == new.id == 4
    assert viewer.dims.current_step[0] == 6
    np.testing.assert_allclose(viewer.dims.point, labels.data_to_world((6, 26.5, 4)), atol=0.8)  # a voxel


def _row(nid: int, short: float) -> NodeRow:
    return NodeRow(id=nid, voxels=10, volume_mm3=500.0, volume_cm3=0.5, centroid_mm=(0.0, 0.0, 0.0),
                   long_axis_mm=20.0, short_axis_mm=short, principal_axes_mm=(20.0, short, short),
                   ge_10mm=reaches(short, ENLARGED_MM), side="right")


def test_a_9_96_mm_node_shows_9_9_and_no_not_10_0(make_napari_viewer):
    """The table shows a short axis rounded down to 0.1 mm: "10.0" only beside the >= 10 mm flag; sorting
    keeps the measured value."""
    table = NodesWidget(make_napari_viewer())
    table._fill([_row(1, 9.96), _row(2, 10.0 - 2e-15), _row(3, 15.04)])
    short, flag = (next(c for c, (key, _, _) in enumerate(COLUMNS) if key == k) for k in ("short_axis_mm",
                                                                                            "ge_10mm"))
    table.table.sortItems(0, Qt.SortOrder.AscendingOrder)
    cells = [(table.table.item(r, short).text(), table.table.item(r, flag).text()) for r in range(3)]
    assert cells == [("9.9", "no"), ("10.0", "yes"), ("15.0", "yes")]
    assert table.table.item(0, short).data(SORT_ROLE) == 9.96  # full precision to sort by


def test_the_figures_of_a_node_cut_by_the_image_edge_end_in_a_plus(make_napari_viewer):
    """A node cut by the image edge: "+" after its short and long axes and volume (lower bounds), the
    edges in those cells' tooltips; a whole node's figures as before; sorting keeps the measured value."""
    import dataclasses

    table = NodesWidget(make_napari_viewer())
    table._fill([_row(1, 9.96), dataclasses.replace(_row(2, 8.4), cut_by_edge=("inferior",))])
    table.table.sortItems(0, Qt.SortOrder.AscendingOrder)
    column = {key: c for c, (key, _, _) in enumerate(COLUMNS)}
    cells = [[table.table.item(r, column[k]).text() for k in ("short_axis_mm", "ge_10mm", "long_axis_mm",
                                                              "volume_cm3")] for r in range(2)]
    assert cells == [["9.9", "no", "20.0", "0.50"], ["8.4+", "no", "20.0+", "0.50+"]]
    assert "cut by the image edge (inferior)" in table.table.item(1, column["ge_10mm"]).toolTip()
    assert table.table.item(0, column["short_axis_mm"]).toolTip() == ""
    assert table.table.item(1, column["short_axis_mm"]).data(SORT_ROLE) == 8.4
    assert "1 cut by the image edge" in table.summary.text()


def test_the_10_mm_filter_keeps_nodes_cut_by_the_image_edge(make_napari_viewer):
    """"≥10 mm only" hides a whole 8.4 mm node but not a cut one: its whole short axis may reach 10 mm."""
    import dataclasses

    table = NodesWidget(make_napari_viewer())
    table._fill([_row(1, 15.0), _row(2, 8.4), dataclasses.replace(_row(3, 8.4), cut_by_edge=("inferior",))])
    table.large_only.setChecked(True)
    assert sorted(table.visible_ids()) == [1, 3]
    table.large_only.setChecked(False)
    assert sorted(table.visible_ids()) == [1, 2, 3]
