"""The Compare panel on a real viewer: a phantom baseline and follow-up, matched colours, table, edits."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import cut_node
from qtpy.QtWidgets import QFileDialog

from lnq_napari.phantom.followup import Motion, make_followup
from lnq_napari.plugin._layers import CT_CONTRAST, layer_kwargs
from lnq_napari.plugin._session import session_for
from lnq_napari.plugin.widgets import compare as compare_widget
from lnq_napari.plugin.widgets._common import cell_text
from lnq_napari.plugin.widgets.compare import BASELINE_NODES, FOLLOWUP_CT, FOLLOWUP_NODES, CompareWidget

pytestmark = pytest.mark.gui


def truth_labels(case):
    inst = np.asarray(case.instances.array).astype(np.int32)
    return case.instances.with_array(np.where(np.asarray(case.full.array) > 0, inst, 0))


@pytest.fixture(scope="module")
def pair():
    motion = Motion(rotation_deg=(0.0, 1.0, 2.0), shift_mm=(6.0, -5.0, 9.0), breathing_mm=4.0)
    return make_followup(11, shape=(40, 128, 128), spacing=(2.6, 2.6, 6.0), scenario="mixed", motion=motion)


def _viewer_with(make_napari_viewer, pair):
    """A viewer with both scans' CT and truth nodes."""
    viewer = make_napari_viewer()
    for tag, case in (("baseline", pair.baseline), ("follow-up", pair.followup)):
        kwargs = layer_kwargs(case.ct, f"{tag} CT", "ct")
        viewer.add_image(case.ct.array, contrast_limits=CT_CONTRAST, **kwargs)
        nodes = truth_labels(case)
        viewer.add_labels(nodes.array, **layer_kwargs(nodes, f"{tag} nodes", "nodes"))
    return viewer


@pytest.fixture
def compared(make_napari_viewer, qtbot, pair, autosave_dir):
    viewer = _viewer_with(make_napari_viewer, pair)
    widget = CompareWidget(viewer, delay_ms=50)
    viewer.window.add_dock_widget(widget, name="Compare")
    widget.choose("baseline CT", "follow-up CT", "baseline nodes", "follow-up nodes")
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert widget.result is not None, widget.status.text()
    return viewer, widget


def test_matched_nodes_share_a_colour_and_the_table_holds_the_truth(compared, pair):
    viewer, widget = compared
    rows = widget.result.rows
    assert widget.table.rowCount() == len(rows)
    truth = {(c["baseline_id"], c["followup_id"]) for c in pair.truth["changes"] if c["status"] != "absent"}
    assert {(r.baseline_id, r.followup_id) for r in rows} == truth
    base, follow = viewer.layers[BASELINE_NODES], viewer.layers[FOLLOWUP_NODES]
    assert FOLLOWUP_CT in viewer.layers and viewer.layers[FOLLOWUP_CT].data.shape == pair.baseline.ct.shape
    for k, row in enumerate(rows, start=1):
        in_base, in_follow = bool((base.data == k).any()), bool((follow.data == k).any())
        assert (in_base, in_follow) == (row.baseline_id is not None, row.followup_id is not None)
        if row.status == "matched":
            assert np.allclose(base.get_color(k), follow.get_color(k))
            # resampled onto the baseline grid, the follow-up node lies over its baseline node
            assert ((base.data == k) & (follow.data == k)).any()
    assert "RECIST 1.1:" in widget.summary.text()


def test_a_row_click_goes_to_the_node_and_the_table_exports(compared, tmp_path, monkeypatch):
    viewer, widget = compared
    k = next(i for i, r in enumerate(widget.result.rows) if r.status != "matched")  # in one scan only
    widget.table.selectRow(k)
    layer = viewer.layers[BASELINE_NODES if widget.result.rows[k].status == "vanished" else FOLLOWUP_NODES]
    centre = layer.data_to_world(np.argwhere(layer.data == k + 1).mean(axis=0))
    assert abs(viewer.dims.point[0] - centre[0]) <= layer.scale[0]
    assert layer.selected_label == k + 1
    out = widget.export_csv(tmp_path / "changes.csv")
    with open(out) as handle:
        table = list(csv.DictReader(handle))
    assert [t["status"] for t in table] == [r.status for r in widget.result.rows]
    (tmp_path / "a file").write_text("not a folder")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "a file" / "changes.csv"), "CSV (*.csv)"))
    widget._export_dialog()  # a path under a file: one line in the status, no traceback
    assert widget.status.text().startswith("could not save changes.csv: ")


def test_an_edit_of_the_followup_nodes_updates_the_table(compared, qtbot):
    viewer, widget = compared
    matched = next(r for r in widget.result.rows if r.status == "matched")
    registration = widget.result.registration
    layer = viewer.layers["follow-up nodes"]
    data = np.array(layer.data)
    data[data == matched.followup_id] = 0  # the reader erases a node on the follow-up
    layer.data = data
    qtbot.waitUntil(lambda: widget.result.row_for(baseline_id=matched.baseline_id).status == "vanished",
                    timeout=60000)
    assert widget.result.registration is registration  # only measuring and matching ran again
    assert session_for(viewer, layer).unsaved  # labels replaced: an edit napari's history does not hold
    assert widget.table.rowCount() == len(widget.result.rows)


def test_a_brush_stroke_and_its_ctrl_z_both_update_the_comparison(compared, qtbot, MouseEvent):
    """Ctrl+Z (the review session's, as napari's own) fires neither the layer's paint nor its data event:
    the comparison stayed at the undone stroke."""
    from qtpy.QtCore import Qt

    from tests.plugin.test_widgets import _brush

    viewer, widget = compared
    layer, before = viewer.layers["follow-up nodes"], widget.result
    node = next(r for r in before.rows if r.status == "matched").followup_id
    voxels = np.argwhere(layer.data == node)
    z, y, x = voxels[len(voxels) // 2]
    layer.visible = True  # Compare hid it (its view shows it); napari paints on a shown layer only
    _brush(layer, MouseEvent, (z, y, x - 6), (z, y, x + 6), label=0)  # erase a line through the node
    qtbot.waitUntil(lambda: widget.result is not before and widget.worker is None, timeout=60000)
    erased = widget.result.volume.followup_total_cm3
    assert erased < before.volume.followup_total_cm3
    viewer.layers.selection.active = layer
    qtbot.keyClick(viewer.window._qt_viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: widget.result.volume.followup_total_cm3 != erased and widget.worker is None,
                    timeout=60000)
    assert widget.result.volume.followup_total_cm3 == pytest.approx(before.volume.followup_total_cm3)
    assert [r.status for r in widget.result.rows] == [r.status for r in before.rows]


def test_side_by_side_links_both_scans_in_a_grid(compared, tmp_path):
    viewer, widget = compared
    widget.side_by_side.setChecked(True)
    assert viewer.grid.enabled and viewer.layers[FOLLOWUP_CT].visible
    shot = viewer.screenshot(str(tmp_path / "compare.png"), canvas_only=True)
    assert shot.shape[0] > 0
    widget.side_by_side.setChecked(False)
    assert not viewer.grid.enabled


def test_a_closed_compare_widget_hears_no_more_edits_or_layers(make_napari_viewer, qtbot, pair, autosave_dir):
    """Closed with its dock's x, the widget goes: nothing of the viewer keeps it alive (the layer list's
    events held it, and it compared again after every edit of the nodes it followed), a new layer or an
    edit raises nothing, and the nodes' session tells it no more."""
    import gc
    import sys
    import weakref

    from qtpy.QtWidgets import QDockWidget

    viewer = _viewer_with(make_napari_viewer, pair)
    widget = CompareWidget(viewer, delay_ms=50)
    viewer.window.add_dock_widget(widget, name="Compare")
    widget._watch([viewer.layers["baseline nodes"]])  # as after a comparison with "follow edits"
    session = session_for(viewer, viewer.layers["baseline nodes"])
    listeners = list(session.listeners)
    errors = []
    hook, sys.excepthook = sys.excepthook, lambda *exc: errors.append(exc)
    try:
        dock = viewer.window._qt_window.findChild(QDockWidget, "Compare")
        dock.title.close_button.click()
        gone = weakref.ref(widget)
        del dock, widget
        gc.collect()
        assert gone() is None
        qtbot.wait(100)
        viewer.add_image(np.zeros((4, 8, 8), np.float32), name="another CT")
        viewer.layers["baseline nodes"].paint((1, 10, 10), new_label=3)
        qtbot.wait(100)
    finally:
        sys.excepthook = hook
    assert not errors, errors
    assert len(session.listeners) == len(listeners) - 1  # the closed widget's is gone


def test_the_comparison_is_a_view_not_a_case_to_save_or_edit(compared):
    """After Compare its follow-up nodes layer (on the baseline grid) was selected: Save stored it as the
    baseline case's labels, its edits were undone by the next re-match, and in one view the scan's own
    follow-up CT stayed on top of the baseline nodes."""
    viewer, widget = compared
    view = viewer.layers[FOLLOWUP_NODES]
    viewer.layers.selection.active = view
    assert session_for(viewer, view) is None
    chosen = session_for(viewer)
    assert chosen is None or chosen.nodes.metadata.get("lnq_role") != "compare"
    assert not view.editable and not viewer.layers[BASELINE_NODES].editable
    assert not widget.side_by_side.isChecked()
    assert not viewer.layers["follow-up CT"].visible and not viewer.layers["follow-up nodes"].visible


def test_a_second_comparison_on_another_grid_with_nodes_beyond_it(compared, qtbot, pair):
    """A baseline on a coarser grid that stops before some follow-up nodes: the panel raised IndexError
    (its colour table was sized by the nodes on the grid), and a second comparison was drawn with the
    first one's voxel size (only the layers' data replaced)."""
    from lnq_napari.io.volume import Volume

    viewer, widget = compared
    ct, nodes = pair.baseline.ct, truth_labels(pair.baseline)
    coarse = {"spacing": (ct.spacing[0], ct.spacing[1], 2 * ct.spacing[2]), "origin": ct.origin,
              "direction": ct.direction}
    short_ct = Volume(np.ascontiguousarray(ct.array[:24:2]), **coarse)
    short_nodes = Volume(np.ascontiguousarray(np.asarray(nodes.array)[:24:2]), **coarse)
    viewer.add_image(short_ct.array, **layer_kwargs(short_ct, "short CT", "ct"))
    viewer.add_labels(short_nodes.array, **layer_kwargs(short_nodes, "short nodes", "nodes"))
    widget.choose("short CT", "follow-up CT", "short nodes", "follow-up nodes")
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert widget.status.text() != "comparing ..." and widget.result.baseline_labels.shape == short_ct.shape
    assert any(row.baseline_id is None for row in widget.result.rows)  # follow-up nodes beyond the grid
    for name in (FOLLOWUP_CT, BASELINE_NODES, FOLLOWUP_NODES):
        layer = viewer.layers[name]
        assert layer.data.shape == short_ct.shape
        assert layer.scale == pytest.approx(viewer.layers["short CT"].scale)


def test_a_failed_comparison_leaves_no_table_of_the_last_one(compared, qtbot):
    """Nodes that do not overlap their CT: the error was shown above the last comparison's table and
    summary, as if they were this run's."""
    from lnq_napari.io.volume import Volume

    viewer, widget = compared
    assert widget.table.rowCount() > 0 and widget.summary.text()
    far = Volume(np.ones((4, 8, 8), np.uint8), origin=(5000.0, 5000.0, 5000.0))
    viewer.add_labels(far.array, **layer_kwargs(far, "far nodes", "nodes"))
    widget.choose("baseline CT", "follow-up CT", "far nodes", "follow-up nodes")
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert widget.status.text().startswith("could not compare: the baseline SEG")
    assert widget.result is None and widget.table.rowCount() == 0 and widget.summary.text() == ""


def test_a_find_nodes_layer_is_the_model_s_nodes_for_the_one_reader_warning(compared, qtbot):
    """The Compare panel passed every chosen layer as a reader's nodes: a Find nodes layer beside a reader's
    compared silently (and beside the model's own prediction of the other scan, it warned of a reader)."""
    from lnq_napari.plugin._session import FOUND_KEY

    viewer, widget = compared
    assert not any("a reader's" in w for w in widget.result.warnings)  # two readers' layers: like with like
    viewer.layers["baseline nodes"].metadata[FOUND_KEY] = True  # as Find nodes made it, not edited
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert any(w.startswith("only the follow-up scan's nodes are a reader's") for w in widget.result.warnings)


def test_a_comparison_running_when_the_widget_goes_is_cancelled(make_napari_viewer, qtbot, pair, autosave_dir,
                                                                monkeypatch):
    """The comparison (a registration and up to two predictions: minutes on a CPU) had no cancel: closing
    napari during one left it running into Qt's teardown, and the exit waited for it."""
    import threading

    from lnq_napari.errors import Cancelled
    from lnq_napari.plugin.widgets import compare as compare_module

    started, seen = threading.Event(), {}

    def slow_compare(*args, cancel=None, **kwargs):
        started.set()
        for _ in range(600):
            if cancel is not None and cancel():
                seen["cancelled"] = True
                raise Cancelled("cancelled")
            threading.Event().wait(0.05)
        raise AssertionError("the comparison was never told to stop")

    monkeypatch.setattr(compare_module.api, "compare", slow_compare)
    viewer = _viewer_with(make_napari_viewer, pair)
    widget = CompareWidget(viewer, delay_ms=50)
    widget.choose("baseline CT", "follow-up CT", "baseline nodes", "follow-up nodes")
    worker = widget.run()
    assert worker is not None and started.wait(10)
    with qtbot.waitSignal(worker.finished, timeout=20000):
        widget.close()
        widget.deleteLater()
    assert seen == {"cancelled": True}


def test_the_compare_table_rounds_short_axes_down_as_the_node_table_does():
    """14.96 mm is no target (RECIST: >= 15 mm), so the compare table must not show "15.0"."""
    formats = {key: fmt for _, key, fmt in compare_widget.COLUMNS}
    for key in ("short_axis_baseline_mm", "short_axis_followup_mm", "recist_followup_short_axis_mm"):
        shown = [cell_text(value, formats[key]) for value in (14.96, 9.96, 15.0 - 2e-15)]
        assert shown == ["14.9", "9.9", "15.0"], key


def test_the_compare_table_marks_the_figures_of_a_node_cut_by_the_image_edge(make_napari_viewer):
    """"+" after the volume and short axis of the scan whose node the image edge cuts; that the response
    rests on it is compare's warning, in the status line: the RECIST line does not repeat it."""
    from types import SimpleNamespace

    from lnq_napari.followup.recist import recist
    from lnq_napari.followup.report import ChangeRow, VolumeSummary

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 4, 4), np.int32), name=BASELINE_NODES)
    widget = CompareWidget(viewer)
    before, after = cut_node(1, 20.0), cut_node(11, 12.0, ("superior",))
    rows = [ChangeRow.of(before, after, "target")]
    summary = recist([before], [after], {1: 11})
    volume = VolumeSummary(0.5, 0.5, 0.0, 1, 0, 0, 0, 0)
    widget._fill_table(SimpleNamespace(rows=rows, recist=summary, volume=volume,
                                       quality=SimpleNamespace(mean_distance_mm=1.0)))
    column = {key: c for c, (_, key, _) in enumerate(compare_widget.COLUMNS)}
    text = {key: widget.table.item(0, column[key]).text() for key in (
        "volume_baseline_cm3", "volume_followup_cm3", "short_axis_baseline_mm", "short_axis_followup_mm")}
    assert text == {"volume_baseline_cm3": "0.50", "volume_followup_cm3": "0.50+",
                    "short_axis_baseline_mm": "20.0", "short_axis_followup_mm": "12.0+"}
    assert "superior" in widget.table.item(0, column["short_axis_followup_mm"]).toolTip()
    assert summary.cut_note() and "cut by the image edge" not in widget.summary.text()


def test_the_compare_table_marks_the_credited_short_axis_of_a_cut_node(make_napari_viewer):
    """"RECIST fu" (what enters the sum) ends in "+" when the follow-up node it is taken from is cut."""
    import dataclasses
    from types import SimpleNamespace

    from lnq_napari.followup.recist import recist
    from lnq_napari.followup.report import ChangeRow, VolumeSummary

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 4, 4), np.int32), name=BASELINE_NODES)
    widget = CompareWidget(viewer)
    pairs = [(cut_node(1, 20.0), cut_node(11, 12.0, ("superior",))), (cut_node(2, 16.0), cut_node(12, 15.0))]
    summary = recist([b for b, _ in pairs], [f for _, f in pairs], {1: 11, 2: 12})
    rows = [dataclasses.replace(ChangeRow.of(b, f, "target"), recist_followup_short_axis_mm=f.short_axis_mm,
                                cut_by_edge_credited=summary.credited_cut.get(b.id, ())) for b, f in pairs]
    volume = VolumeSummary(1.0, 1.0, 0.0, 2, 0, 0, 0, 0)
    widget._fill_table(SimpleNamespace(rows=rows, recist=summary, volume=volume,
                                       quality=SimpleNamespace(mean_distance_mm=1.0)))
    column = [key for _, key, _ in compare_widget.COLUMNS].index("recist_followup_short_axis_mm")
    assert [widget.table.item(r, column).text() for r in range(2)] == ["12.0+", "15.0"]
    assert "superior" in widget.table.item(0, column).toolTip()
