"""The full review loop on a real viewer: open, predict (worker), click, undo/redo, table, autosave, save."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog

from lnq_napari.io.readers import read_labels
from lnq_napari.plugin.app import dock_widgets
from lnq_napari.plugin.widgets import SegmentWidget

pytestmark = pytest.mark.gui


def _centre_index(case, node_id: int) -> np.ndarray:
    return np.argwhere(np.asarray(case.instances.array) == node_id).mean(axis=0).round()


def _open_case(viewer, files):
    layers = viewer.open(str(files.ct), plugin="lnq-napari")
    return layers[0]


def _predict(qtbot, viewer, stand_in):
    widgets = dock_widgets(viewer)
    segment: SegmentWidget = widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    worker = segment.run()
    assert worker is not None
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    return widgets


@dataclass
class Predicted:
    """A viewer after the Segment widget ran the stand-in: its widgets and layers."""

    viewer: object
    widgets: dict
    nodes: object  # the "nodes" Labels layer
    suggestions: object  # the "suggestions" Points layer
    n_predicted: int

    @property
    def session(self):
        return self.nodes.metadata["lnq_session"]

    def wait_rows(self, qtbot, n: int) -> None:
        qtbot.waitUntil(lambda: self.widgets["Nodes"].table.rowCount() == n, timeout=20000)


@pytest.fixture
def predicted(make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir) -> Predicted:
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    nodes = viewer.layers["nodes"]
    return Predicted(viewer, widgets, nodes, viewer.layers["suggestions"], int(nodes.data.max()))


def _add_missed_node(p: Predicted, case, stand_in) -> int:
    """Shift+click the node the stand-in missed; returns the new node's id."""
    missed_world = p.nodes.data_to_world(_centre_index(case, stand_in.missed))
    p.viewer.dims.set_point(0, missed_world[0])
    assert p.widgets["Correct"].tool.click(missed_world, "add") == f"added node {p.n_predicted + 1}"
    return p.n_predicted + 1


def test_prediction_shows_nodes_suggestions_and_table(predicted, qtbot, phantom_files, stand_in):
    p, case = predicted, phantom_files.case
    assert stand_in.calls == 1 and p.widgets["Segment"].progress.value() == 100
    ct_layer = p.viewer.layers[0]
    assert p.nodes.scale == pytest.approx(ct_layer.scale)
    assert p.nodes.translate == pytest.approx(ct_layer.translate)
    inst = np.asarray(case.instances.array)
    assert p.n_predicted >= 1 and not p.nodes.data[inst == stand_in.missed].any()
    # the unsure node is the top "unsure" suggestion, listed in the Correct widget
    top_unsure = list(p.suggestions.features["kind"]).index("unsure")
    assert np.linalg.norm(p.suggestions.data[top_unsure] - _centre_index(case, stand_in.unsure)) < 2.0
    assert p.widgets["Correct"].suggestion_list.count() == len(p.suggestions.data)
    assert p.widgets["Correct"].suggestion_list.item(top_unsure).text().startswith(f"#{top_unsure + 1}  p=")
    p.wait_rows(qtbot, p.n_predicted)


def test_long_suggestion_lines_wrap_in_the_narrow_panel(predicted, qtbot):
    """A suggestion's line (a dropped candidate's reason, p, cm3) ran on behind a horizontal scroll bar."""
    p, correct = predicted, predicted.widgets["Correct"]
    features = p.suggestions.features.copy()
    features.loc[0, "text"] = "small, below the size floor (0.30 cm3): p=0.92  0.12 cm3"
    p.suggestions.features = features
    correct.refresh_suggestions()
    listed = correct.suggestion_list
    listed.resize(240, 120)  # the list's width in the docked panel
    listed.show()
    qtbot.waitUntil(lambda: listed.visualItemRect(listed.item(0)).height() > 0)
    assert listed.horizontalScrollBar().maximum() == 0
    assert all(listed.visualItemRect(listed.item(i)).right() <= listed.viewport().width()
               for i in range(listed.count()))
    assert listed.item(0).text().endswith("0.12 cm3")


def test_the_segment_status_goes_with_the_ct_it_speaks_of(predicted):
    """After the CT was closed and another opened, the status line still spoke of the old result."""
    segment = predicted.widgets["Segment"]
    assert segment.status.text().startswith(f"{predicted.n_predicted} nodes")
    predicted.viewer.layers.remove(predicted.nodes)  # not the CT: the result still stands
    assert segment.status.text().startswith(f"{predicted.n_predicted} nodes")
    predicted.viewer.layers.remove(predicted.viewer.layers[0])
    assert segment.status.text() == "" and segment.progress.value() == 0


def test_add_click_grows_the_missed_node_and_undo_redo_follow(predicted, qtbot, phantom_files, stand_in):
    p = predicted
    new_id = _add_missed_node(p, phantom_files.case, stand_in)
    truth = np.asarray(phantom_files.case.instances.array) == stand_in.missed
    added = p.nodes.data == new_id
    assert 2 * (added & truth).sum() / (added.sum() + truth.sum()) > 0.7
    p.wait_rows(qtbot, p.n_predicted + 1)
    # undo / redo through the layer's history (what Ctrl+Z / Ctrl+Shift+Z call)
    p.nodes.undo()
    assert not (p.nodes.data == new_id).any()
    p.nodes.redo()
    assert np.array_equal(p.nodes.data == new_id, added)
    p.session.undo()
    p.wait_rows(qtbot, p.n_predicted)
    p.session.redo()
    p.wait_rows(qtbot, p.n_predicted + 1)


def test_remove_click_removes_exactly_the_clicked_node(predicted):
    p = predicted
    p.widgets["Correct"].set_mode("remove")
    tool, before = p.widgets["Correct"].tool, p.nodes.data.copy()
    victim = int(before[before > 0][0])
    victim_world = p.nodes.data_to_world(np.argwhere(before == victim)[0])
    assert tool.click(victim_world, tool.mode) == f"removed node {victim}"
    assert np.array_equal(p.nodes.data != before, before == victim)
    p.nodes.undo()
    assert np.array_equal(p.nodes.data, before)


def _brush(layer, mouse_event, start, end, label: int = 77) -> None:
    """One brush stroke from ``start`` to ``end`` (data z, y, x on one slice) through napari's own mouse
    bindings, as a drag with the paint tool makes it."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    layer.mode, layer.selected_label, layer.brush_size = "paint", label, 3
    for kind, at, send in (("mouse_press", start, mouse_press_callbacks),
                           ("mouse_move", end, mouse_move_callbacks),
                           ("mouse_release", end, mouse_release_callbacks)):
        send(layer, ReadOnlyWrapper(mouse_event(
            type=kind, is_dragging=kind == "mouse_move", position=tuple(layer.data_to_world(at)),
            view_direction=None, dims_displayed=(1, 2), dims_point=(start[0], 0, 0))))
    layer.mode = "pan_zoom"


def _press(viewer, layer, key: str) -> None:
    """Press ``key`` over ``layer`` as napari dispatches it (layer keymap, then napari's own)."""
    viewer.layers.selection.active = layer
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


def _remove_click(p: Predicted, labels: np.ndarray) -> int:
    """Ctrl+click (remove) the first node of ``labels``; returns its id."""
    victim = int(labels[labels > 0][0])
    world = p.nodes.data_to_world(np.argwhere(labels == victim)[0])
    assert p.widgets["Correct"].tool.click(world, "remove") == f"removed node {victim}"
    return victim


def test_ctrl_z_takes_back_a_remove_click_then_the_brush_stroke_before_it(predicted, qtbot, MouseEvent):
    p = predicted
    before, z = p.nodes.data.copy(), p.nodes.data.shape[0] // 2
    _brush(p.nodes, MouseEvent, (z, 5, 5), (z, 5, 20))
    brushed = p.nodes.data.copy()
    assert (brushed == 77).any()
    victim = _remove_click(p, before)
    p.wait_rows(qtbot, p.n_predicted)  # one node gone, the stroke's 77 come
    _press(p.viewer, p.nodes, "Control-Z")
    assert np.array_equal(p.nodes.data, brushed)
    p.wait_rows(qtbot, p.n_predicted + 1)
    _press(p.viewer, p.nodes, "Control-Z")
    assert np.array_equal(p.nodes.data, before) and not p.session.unsaved
    _press(p.viewer, p.nodes, "Control-Shift-Z")
    _press(p.viewer, p.nodes, "Control-Shift-Z")
    assert not (p.nodes.data == victim).any() and np.array_equal(p.nodes.data == 77, brushed == 77)


def test_brush_strokes_painted_before_the_panel_opened_are_still_undone_by_ctrl_z(
        make_napari_viewer, qtbot, MouseEvent, phantom_files, autosave_dir):
    """The session takes Ctrl+Z over from napari when the panel opens: its history began empty, and the
    strokes napari held could no longer be undone (nor were they unsaved edits)."""
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    nodes = viewer.open(str(phantom_files.seg), plugin="lnq-napari")[0]
    opened, z = nodes.data.copy(), nodes.data.shape[0] // 2
    _brush(nodes, MouseEvent, (z, 5, 5), (z, 5, 20))
    _brush(nodes, MouseEvent, (z, 30, 5), (z, 30, 20), label=78)
    _press(viewer, nodes, "Control-Z")  # napari's own undo: the second stroke, to redo later
    brushed = nodes.data.copy()
    assert (brushed == 77).any() and not (brushed == 78).any()
    dock_widgets(viewer)
    session = nodes.metadata["lnq_session"]
    assert session.unsaved
    qtbot.waitUntil(lambda: session.autosaver.writes >= 1, timeout=20000)
    _press(viewer, nodes, "Control-Z")
    assert np.array_equal(nodes.data, opened) and not session.unsaved
    _press(viewer, nodes, "Control-Shift-Z")
    _press(viewer, nodes, "Control-Shift-Z")
    assert (nodes.data == 77).any() and (nodes.data == 78).any()


def test_a_click_on_a_ring_accepts_it_and_reject_drops_one(predicted, qtbot, phantom_files, stand_in):
    p, inst = predicted, np.asarray(phantom_files.case.instances.array)
    n_sugg = len(p.suggestions.data)
    top_unsure = list(p.suggestions.features["kind"]).index("unsure")
    ring_world = p.suggestions.data_to_world(p.suggestions.data[top_unsure])
    assert p.widgets["Correct"].tool.click(ring_world, "off").startswith("accepted suggestion as node")
    assert len(p.suggestions.data) == n_sugg - 1 and p.nodes.data[inst == stand_in.unsure].any()
    if len(p.suggestions.data):
        p.widgets["Correct"].reject(0)
        assert len(p.suggestions.data) == n_sugg - 2 and p.nodes.metadata["lnq_rejected"]
    p.wait_rows(qtbot, len(np.unique(p.nodes.data)) - 1)  # the table follows the edits


def test_a_suggestion_accepted_where_no_tissue_is_dropped_and_not_counted_as_accepted(predicted):
    p = predicted
    data = p.suggestions.data.copy()
    data[0] = [p.nodes.data.shape[0] // 2, 1, 1]  # moved with the Points tools into the air
    p.suggestions.data = data
    painted = p.nodes.data.copy()
    assert p.widgets["Correct"].accept(0) == 0
    assert len(p.suggestions.data) == len(data) - 1 and np.array_equal(p.nodes.data, painted)
    assert p.session.stats.accepted == 0


def test_undo_takes_back_the_last_action_marks_accepts_and_rejects_included(predicted, phantom_files,
                                                                             stand_in):
    """Ctrl+Z after a mark or a rejection undid the paint before it (napari's labels history only): the
    rejection stayed and was saved as "no node here"; after accepting, the suggestion stayed dropped."""
    p, inst = predicted, np.asarray(phantom_files.case.instances.array)
    session, correct = p.session, p.widgets["Correct"]
    victim = int(p.nodes.data[p.nodes.data > 0][0])
    assert session.remove_node_id(victim) == victim
    painted, points = p.nodes.data.copy(), p.suggestions.data.copy()
    correct.reject(0)
    assert len(p.suggestions.data) == len(points) - 1 and len(session.rejections()) == 1
    session.undo()  # the rejection, not the removal before it
    assert session.rejections() == [] and np.array_equal(p.suggestions.data, points)
    assert np.array_equal(p.nodes.data, painted) and session.stats.rejected == 0
    session.redo()
    assert len(session.rejections()) == 1 and len(p.suggestions.data) == len(points) - 1
    session.undo()
    top_unsure = list(p.suggestions.features["kind"]).index("unsure")
    node_id = session.accept_suggestion(top_unsure)  # its paint and its drop: one step
    assert node_id and p.nodes.data[inst == stand_in.unsure].any()
    session.undo()
    assert np.array_equal(p.nodes.data, painted) and np.array_equal(p.suggestions.data, points)
    assert list(p.suggestions.features["kind"]).index("unsure") == top_unsure and session.stats.accepted == 0
    centre = _centre_index(phantom_files.case, stand_in.missed)
    assert session.mark_node_at(p.viewer, centre) and len(session.marks()) == 1
    session.undo()
    assert session.marks() == [] and np.array_equal(p.nodes.data, painted)
    session.undo()  # the removal
    assert (p.nodes.data == victim).any()
    while session.history.done:
        session.undo()
    before = session.edits
    session.undo()  # nothing left to undo: no edit
    assert session.edits == before


def test_a_mark_deleted_with_napari_s_points_tools_is_an_unsaved_edit(predicted, qtbot, phantom_files,
                                                                       stand_in):
    p = predicted
    session = p.session
    assert session.mark_node_at(p.viewer, _centre_index(phantom_files.case, stand_in.missed))
    session.mark_saved()  # as after a Save
    assert not session.unsaved
    marks = p.viewer.layers["marked nodes"]
    marks.selected_data = {0}
    marks.remove_selected()
    assert session.marks() == [] and session.unsaved
    session.mark_saved()
    segment = p.widgets["Segment"]
    segment.run()  # Find nodes again: a new node layer takes the marks layer over
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    newer = p.viewer.layers["nodes"].metadata["lnq_session"]
    assert newer is not session and newer.marks_layer is marks
    marks.add([[3.0, 20.0, 20.0]])
    assert newer.unsaved and not session.unsaved  # not the hidden one's


def test_a_mark_moved_while_a_save_runs_stays_unsaved(predicted, phantom_files, stand_in):
    """A Save marks saved the state it snapshot (:meth:`save_point`), not a mark moved with napari's Points
    tools while it wrote (an edit its undo history does not hold)."""
    p = predicted
    session = p.session
    assert session.mark_node_at(p.viewer, _centre_index(phantom_files.case, stand_in.missed))
    point = session.save_point()  # Save pressed
    marks = p.viewer.layers["marked nodes"]
    marks.data = np.asarray(marks.data) + 2.0  # moved while it writes
    session.mark_saved(point)
    assert session.unsaved
    session.mark_saved(session.save_point())
    assert not session.unsaved


def test_a_mark_moved_with_napari_s_points_tools_cannot_be_redone_back_into_a_saved_case(
        predicted, phantom_files, stand_in):
    """Mark, Save, move the mark with napari's Points tools, Save, undo, redo: the redo put the old mark
    back beside the moved one while the case said saved, and the next case dropped it."""
    p = predicted
    session = p.session
    assert session.mark_node_at(p.viewer, _centre_index(phantom_files.case, stand_in.missed))
    session.mark_saved()
    marks = p.viewer.layers["marked nodes"]
    marks.data = np.asarray(marks.data) + 2.0  # moved with the Points tools
    saved = session.marks()
    session.mark_saved()
    session.undo()
    session.redo()
    assert session.marks() != saved and session.unsaved  # the guard keeps what the redo made
    session.mark_saved()
    session.undo()
    assert session.unsaved


def test_undoing_a_mark_takes_back_that_mark_only_and_a_deleted_marks_layer_saves_none(
        predicted, phantom_files, stand_in):
    """Undo of a click's mark put back the whole marks layer as it was before it, dropping marks added
    with napari's Points tools since (and redo did not bring them back); marks of a deleted marks layer
    were still saved."""
    p = predicted
    session = p.session
    centre = _centre_index(phantom_files.case, stand_in.missed)
    assert session.mark_node_at(p.viewer, centre)
    marks = p.viewer.layers["marked nodes"]
    marks.add([[3.0, 20.0, 20.0], [4.0, 30.0, 30.0]])  # napari's own Points tool
    session.undo()
    assert sorted(map(tuple, np.asarray(marks.data).tolist())) == [(3.0, 20.0, 20.0), (4.0, 30.0, 30.0)]
    session.redo()
    assert len(marks.data) == 3 and len(session.marks()) == 3
    edits = session.edits
    p.viewer.layers.remove(marks)
    assert session.marks() == [] and session.edits > edits  # not saved with the correction, unsaved


def test_a_paint_napari_reports_before_it_writes_reaches_the_autosave(predicted, qtbot, autosave_dir):
    """A polygon or ``Labels.paint`` outside ``block_history``: napari tells of the paint before it writes
    the voxels, and the autosave copied the labels at once: the first edit after opening was lost to a
    crash."""
    from lnq_napari.io.readers import read_labels as read

    p = predicted
    autosaver = p.session.autosaver
    qtbot.waitUntil(lambda: autosaver._worker is None and not autosaver._timer.isActive(), timeout=20000)
    writes = autosaver.writes  # a quiet spell: the next edit is written at once
    spot = (2, 5, 5)
    assert p.nodes.data[spot] == 0
    p.nodes.paint(spot, 7, refresh=True)
    qtbot.waitUntil(lambda: autosaver.writes > writes and autosaver._worker is None, timeout=20000)
    assert np.asarray(read(autosaver.last_path).array)[spot] == 1


def test_a_table_row_centres_the_viewer_and_the_table_exports(predicted, qtbot, tmp_path):
    p, table = predicted, predicted.widgets["Nodes"]
    p.wait_rows(qtbot, p.n_predicted)
    table.table.selectRow(0)
    row = table.rows[0]
    centre = p.nodes.world_to_data(p.viewer.dims.point)
    node_voxels = np.argwhere(p.nodes.data == row.id)
    assert node_voxels[:, 0].min() - 1 <= centre[0] <= node_voxels[:, 0].max() + 1
    assert p.nodes.selected_label == row.id
    csv = table.export_csv(tmp_path / "nodes.csv")
    assert len(csv.read_text().strip().splitlines()) == len(table.rows) + 1


def test_export_through_the_dialog_says_where_it_saved_or_why_it_could_not(predicted, qtbot, tmp_path,
                                                                          monkeypatch):
    p, table = predicted, predicted.widgets["Nodes"]
    p.wait_rows(qtbot, p.n_predicted)
    chosen = {"path": str(tmp_path / "table.csv")}
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (chosen["path"], "CSV (*.csv)"))
    table._export_dialog()
    assert table.summary.text() == "saved table.csv"
    assert len((tmp_path / "table.csv").read_text().splitlines()) == len(table.rows) + 1
    (tmp_path / "a file").write_text("not a folder")
    chosen["path"] = str(tmp_path / "a file" / "table.csv")  # the dialog lets one type a path
    table._export_dialog()
    assert table.summary.text().startswith("could not save table.csv: ")
    assert "choose a folder you can write to" in table.summary.text()
    assert (tmp_path / "a file").read_text() == "not a folder"


def test_autosave_is_throttled_atomic_and_on_the_ct_grid(
    predicted, qtbot, phantom_files, stand_in, autosave_dir
):
    p = predicted
    _add_missed_node(p, phantom_files.case, stand_in)
    autosaver = p.session.autosaver
    qtbot.waitUntil(lambda: autosaver.writes >= 1, timeout=20000)
    path = autosaver.flush()
    assert path.parent == autosave_dir  # the viewer session's own file of the case
    assert path.name == f"lnq2023-train-0003.session-{autosaver.files.id}.autosave.seg.nrrd"
    saved = read_labels(path)
    assert np.array_equal(saved.array, (p.nodes.data > 0).astype(np.uint8))
    assert saved.origin == pytest.approx(phantom_files.case.ct.origin)
    assert not [f for f in autosave_dir.iterdir() if ".tmp" in f.name]


def test_save_writes_new_versions_with_provenance(predicted, phantom_files, stand_in, save_and_wait):
    p = predicted
    _add_missed_node(p, phantom_files.case, stand_in)
    session = p.session
    # save: new versions in lnq-labels/<case>/ beside the case, provenance in header and sidecar,
    # original untouched
    original = phantom_files.seg.read_bytes()
    rejected_point = np.asarray(p.suggestions.data[0]).round().astype(int).tolist()
    rejected_volume = float(p.suggestions.features["volume_mm3"].iloc[0])
    p.widgets["Correct"].reject(0)  # kept with the correction: the fine-tune learns "no node here"
    v1 = save_and_wait(p.widgets["Save"])
    v2 = save_and_wait(p.widgets["Save"])
    assert (v1.name, v2.name) == ("v001.seg.nrrd", "v002.seg.nrrd")
    assert v1.parent == phantom_files.ct.parent / "lnq-labels" / "lnq2023-train-0003"
    assert phantom_files.seg.read_bytes() == original
    back = read_labels(v1)
    assert np.array_equal(back.array, (p.nodes.data > 0).astype(np.uint8))
    assert back.meta["lnq_model_version"] == "stand-in-0" and int(back.meta["lnq_edits"]) == session.edits
    sidecar = json.loads(v1.with_name("v001.json").read_text())
    assert sidecar["origin"] == str(phantom_files.ct) and sidecar["edits"] == session.edits > 0
    assert sidecar["source"] == "correction"
    (rejection,) = sidecar["rejected"]
    assert rejection["centre_zyx"] == rejected_point
    radius = min((6 * rejected_volume / np.pi) ** (1 / 3) / 2, 15.0)  # an equal-volume ball, at most 15 mm
    assert rejection["radius_mm"] == pytest.approx(radius, abs=0.01)
    assert "lnq_rejected" not in back.meta  # a list: in the sidecar only
    assert json.loads(v2.with_name("v002.json").read_text())["parent"] == "v001"
    assert "touch" not in p.widgets["Save"].status.text()
    node = int(np.max(p.nodes.data))  # a new id painted right against a node: one node once saved
    z, y, x = np.argwhere(p.nodes.data == node)[0]
    p.nodes.data[z, y - 2: y, x] = node + 1
    p.nodes.refresh()
    save_and_wait(p.widgets["Save"])
    said = p.widgets["Save"].status.text()
    assert said.startswith("saved v003") and f"nodes {node} and {node + 1} touch" in said
    ids = np.unique(p.nodes.data[p.nodes.data > 0]).size
    assert p.nodes.data[0, 0, 0] == 0
    p.nodes.data[0, 0, 0] = 1  # id 1 painted on a second blob: a node of its own (was not counted)
    p.nodes.refresh()
    save_and_wait(p.widgets["Save"])
    assert json.loads(v1.with_name("v004.json").read_text())["nodes"] == ids + 1


def test_cancel_stops_the_prediction(make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir):
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    stand_in.delay = 5.0
    segment = SegmentWidget(viewer, predictor_factory=lambda model, device: stand_in)
    segment.run()
    qtbot.waitUntil(lambda: segment.progress.value() > 0, timeout=20000)
    segment.cancel()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=20000)
    assert segment.status.text() == "cancelled" and "nodes" not in viewer.layers
    assert segment.run_button.isEnabled()


def test_nodes_found_after_their_ct_was_closed_are_dropped_not_put_on_the_next_case(
        make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir):
    """Find nodes, then another case opened before it ends: the result landed on the new case's CT as its
    active node layer, and Save stored it as that case's correction."""
    viewer = make_napari_viewer()
    first = _open_case(viewer, phantom_files)
    stand_in.delay = 3.0
    segment = SegmentWidget(viewer, predictor_factory=lambda model, device: stand_in)
    segment.run()
    qtbot.waitUntil(lambda: segment.progress.value() > 0, timeout=20000)
    viewer.layers.remove(first)  # as Review's Open case does before it adds the next case
    second = _open_case(viewer, phantom_files)
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    assert "nodes" not in viewer.layers and [ly.name for ly in viewer.layers] == [second.name]
    assert segment.status.text().startswith(f"{first.name} was closed before its nodes were found")
    assert segment.run_button.isEnabled()


class _FakeMouse:
    def __init__(self, position, modifiers=(), kind="mouse_press"):
        self.position, self.modifiers, self.type = position, modifiers, kind
        self.dims_displayed, self.view_direction = (1, 2), None


def _drive(tool, viewer, event, drag=False):
    gen = tool.on_mouse(viewer, event)
    try:
        next(gen)
    except StopIteration:  # the tool declined the event before waiting for the release
        return
    if drag:
        event.type = "mouse_move"
        next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def test_mouse_modifiers_add_and_remove(make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir):
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    tool, nodes = widgets["Correct"].tool, viewer.layers["nodes"]
    world = nodes.data_to_world(_centre_index(phantom_files.case, stand_in.missed))
    before = int(nodes.data.max())
    _drive(tool, viewer, _FakeMouse(world, ("Shift",)), drag=True)  # a drag is a pan: nothing happens
    assert int(nodes.data.max()) == before
    _drive(tool, viewer, _FakeMouse(world, ("Shift",)))
    assert int(nodes.data.max()) == before + 1
    _drive(tool, viewer, _FakeMouse(world, ("Control",)))
    assert not (nodes.data == before + 1).any()
    nodes.mode = "paint"  # painting: clicks belong to the brush
    _drive(tool, viewer, _FakeMouse(world, ("Shift",)))
    assert not (nodes.data == before + 1).any()

    # the brush is an edit like any other: counted, autosaved, undone by Ctrl+Z (our key binding)
    session = nodes.metadata["lnq_session"]
    edits = session.edits
    nodes.selected_label = 77
    nodes.paint(nodes.world_to_data(world), 77)
    assert (nodes.data == 77).any() and session.edits == edits + 1
    qtbot.waitUntil(lambda: session.autosaver.writes >= 1, timeout=20000)
    from app_model.types import KeyBinding

    nodes.keymap[KeyBinding.from_str("Ctrl+Z")](nodes)  # what napari calls on Ctrl+Z over this layer
    assert not (nodes.data == 77).any() and session.edits == edits + 2


def _tiny_model(folder) -> str:
    """An untrained, very small model folder in the project's checkpoint format."""
    from lnq_napari.model.checkpoint import save_checkpoint
    from lnq_napari.model.config import ModelConfig
    from lnq_napari.model.network import build_network

    cfg = ModelConfig(version="tiny-untrained")
    cfg.architecture.kwargs.update(features=[2, 4, 4, 4])
    cfg.inference.min_component_mm3 = 0.0
    net = build_network(cfg.architecture.name, cfg.architecture.kwargs)
    return str(save_checkpoint(folder, net.state_dict(), cfg))


def test_real_predictor_runs_in_the_worker(make_napari_viewer, qtbot, phantom_files, autosave_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    ct_layer = _open_case(viewer, phantom_files)
    segment = SegmentWidget(viewer, model=_tiny_model(tmp_path / "tiny"))
    segment.form.device.value = "cpu"
    seen = []
    segment._signals.changed.connect(lambda fraction, message: seen.append(fraction))
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=120000)
    assert "failed" not in segment.status.text(), segment.status.text()
    nodes = viewer.layers["nodes"]
    assert nodes.data.shape == ct_layer.data.shape and nodes.metadata["lnq_model_version"] == "tiny-untrained"
    assert nodes.metadata["lnq_probabilities"].shape == ct_layer.data.shape
    assert seen and max(seen) == pytest.approx(1.0) and segment.progress.value() == 100


def test_real_canvas_shift_click_and_ctrl_click(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir
):
    from lnq_napari.plugin.widgets.nodes import centre_on

    viewer = make_napari_viewer(show=True)
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    nodes = viewer.layers["nodes"]
    centre_on(viewer, nodes.data_to_world(_centre_index(phantom_files.case, stand_in.missed)))
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    centre = (canvas.size[0] // 2, canvas.size[1] // 2)
    before = int(nodes.data.max())

    def click(mods):
        canvas.events.mouse_press(pos=centre, modifiers=mods, button=0)
        canvas.events.mouse_release(pos=centre, modifiers=mods, button=0)
        qtbot.wait(20)

    click(("Shift",))
    assert int(nodes.data.max()) == before + 1, widgets["Correct"].status.text()
    click(("Control",))
    assert (
        not (nodes.data == before + 1).any()
        and widgets["Correct"].status.text() == f"removed node {before + 1}"
    )


def test_add_without_a_ct_says_what_to_do(make_napari_viewer, phantom_files, autosave_dir):
    from lnq_napari.plugin._clicks import ClickTool

    viewer = make_napari_viewer()
    (seg,) = viewer.open(str(phantom_files.seg), plugin="lnq-napari")
    tool = ClickTool(viewer)
    message = tool.click(seg.data_to_world(np.array(seg.data.shape) // 2), "add")
    assert message.startswith("no CT layer") and "open the CT" in message
    node = np.argwhere(seg.data > 0)[0]
    assert tool.click(seg.data_to_world(node), "remove").startswith("removed node")


def test_segment_warm_up_names_modules_that_import():
    import importlib

    from lnq_napari.plugin.widgets.segment import PREDICTION_MODULES

    for name in PREDICTION_MODULES:  # a wrong name would end the warm-up early and freeze the first run
        assert importlib.import_module(name) is not None


def test_add_click_in_the_3d_view_follows_the_ray_to_the_node(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir
):
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    viewer.dims.ndisplay = 3
    tool, nodes = widgets["Correct"].tool, viewer.layers["nodes"]
    inst = np.asarray(phantom_files.case.instances.array)
    before = int(nodes.data.max())
    centre = _centre_index(phantom_files.case, stand_in.unsure)  # probability 0.35, not in the mask
    # a ray along z through the node's centre, clicked from above the volume
    world = nodes.data_to_world(np.array([-5.0, centre[1], centre[2]]))
    message = tool.click(world, "add", dims_displayed=(0, 1, 2), view_direction=(1.0, 0.0, 0.0))
    assert message == f"added node {before + 1}"
    added, truth = nodes.data == before + 1, inst == stand_in.unsure
    assert 2 * (added & truth).sum() / (added.sum() + truth.sum()) > 0.7
    # a ray through air finds nothing and changes nothing
    snapshot = nodes.data.copy()
    corner = nodes.data_to_world(np.array([-5.0, 1.0, 1.0]))
    message = tool.click(corner, "add", dims_displayed=(0, 1, 2), view_direction=(1.0, 0.0, 0.0))
    assert message.startswith("no node-like tissue") and np.array_equal(nodes.data, snapshot)


def test_incomplete_outline_is_suggested_and_accepting_it_completes_the_node(
    make_napari_viewer, qtbot, phantom_files, halved_stand_in, autosave_dir
):
    from lnq_napari.plugin._session import session_for

    case, stand_in, halved = phantom_files.case, halved_stand_in, halved_stand_in.halved
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    suggestions = viewer.layers["suggestions"]
    kinds = list(suggestions.features["kind"])
    assert "unsure" in kinds
    own = np.asarray(case.instances.array) == halved
    on_node = [i for i, kind in enumerate(kinds)
               if kind == "outline" and own[tuple(int(v) for v in suggestions.data[i])]]
    assert len(on_node) == 1  # a ring on the node's missing half
    k = on_node[0]
    assert "outline incomplete?" in widgets["Correct"].suggestion_list.item(k).text()

    session = session_for(viewer)
    labels = viewer.layers["nodes"].data
    half_id = int(np.bincount(labels[own][labels[own] > 0]).argmax())
    n_ids = len(np.unique(labels)) - 1
    covered_before = (labels[own] > 0).mean()
    assert session.accept_suggestion(k) == half_id
    labels = viewer.layers["nodes"].data
    assert len(np.unique(labels)) - 1 == n_ids  # the node grew; no new node
    assert (labels[own] == half_id).mean() > max(0.85, covered_before + 0.3)
    assert len(suggestions.data) == len(kinds) - 1


def test_alt_click_marks_a_node_with_an_unknown_outline_and_save_keeps_it(
        make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir, save_and_wait):
    viewer = make_napari_viewer()
    _open_case(viewer, phantom_files)
    widgets = _predict(qtbot, viewer, stand_in)
    tool, nodes = widgets["Correct"].tool, viewer.layers["nodes"]
    centre = _centre_index(phantom_files.case, stand_in.missed)
    world = nodes.data_to_world(centre)
    viewer.dims.set_point(0, world[0])
    labels_before = nodes.data.copy()
    _drive(tool, viewer, _FakeMouse(world, ("Alt",)))
    marks = viewer.layers["marked nodes"]
    assert np.array_equal(marks.data, centre[None]) and np.array_equal(nodes.data, labels_before)
    session = nodes.metadata["lnq_session"]
    assert session.marks() == [{"centre_zyx": centre.astype(int).tolist(), "radius_mm": 10.0}]
    _drive(tool, viewer, _FakeMouse(world, ("Alt",)))  # again on the mark: taken back
    assert len(marks.data) == 0 and session.marks() == []
    widgets["Correct"].set_mode("mark")
    assert tool.click(world, "mark") == "marked a node here, outline unknown"
    saved = save_and_wait(widgets["Save"])
    sidecar = json.loads(saved.with_name(saved.name.split(".")[0] + ".json").read_text())
    assert sidecar["marked"] == session.marks() and len(sidecar["marked"]) == 1
    assert "lnq_marked" not in read_labels(saved).meta and "marked" not in read_labels(saved).meta


def test_closing_right_after_opening_waits_for_the_warm_up_imports(tmp_path):
    """The Segment widget imports torch in a background thread; a process that ends while that import
    runs waits for it (cut off, it printed a torch traceback when napari closed within seconds)."""
    import subprocess
    import sys

    script = tmp_path / "quick_exit.py"
    script.write_text(
        "import time\n"
        "from lnq_napari.plugin.widgets import segment\n"
        "def slow():\n"
        "    time.sleep(1.5)\n"
        "    print('warm-up finished', flush=True)\n"
        "segment._import_inference = slow\n"
        "from qtpy.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import napari\n"
        "viewer = napari.Viewer(show=False)\n"
        "segment.SegmentWidget(viewer)\n"
        "viewer.close()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warm-up finished" in done.stdout
    assert "Exception in thread" not in done.stderr


def test_labels_pair_with_the_ct_on_their_grid_not_an_image_of_the_same_shape(make_napari_viewer,
                                                                             phantom_files, tmp_path):
    """A z-flipped copy of the CT (same array shape, other place in space) opened first is not taken as
    the CT of the labels; labels on no open CT's grid say so when a click needs the CT."""
    from lnq_napari.io.readers import read_volume, write_volume
    from lnq_napari.plugin._session import session_for

    ct = read_volume(phantom_files.ct)
    d = np.asarray(ct.direction).reshape(3, 3) * np.array([1.0, 1.0, -1.0])[None, :]
    flipped = write_volume(tmp_path / "other-ct.nrrd", ct.with_array(np.asarray(ct.array)[::-1]))
    flipped_volume = read_volume(flipped)
    flipped_volume.direction = tuple(d.ravel())
    write_volume(flipped, flipped_volume)
    viewer = make_napari_viewer()
    other = viewer.open(str(flipped), plugin="lnq-napari")[0]
    own = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    labels = viewer.open(str(phantom_files.seg), plugin="lnq-napari")[0]
    assert other.data.shape == own.data.shape
    session = session_for(viewer, labels)
    assert session.ct_layer is own and session.case == "lnq2023-train-0003"
    viewer.layers.remove(own)  # its CT closed: the labels pair again, with the CT opened next
    assert session_for(viewer, labels).ct_layer is None
    reopened = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    assert session_for(viewer, labels).ct_layer is reopened
    loose = viewer.add_labels(np.zeros((10, 20, 30), np.uint8), name="drawn")
    with pytest.raises(Exception, match="no open CT lies on the grid of 'drawn' \\(30x20x10 voxels\\)"):
        session_for(viewer, loose).ct_volume()


def test_a_ct_without_a_grid_of_its_own_is_named_after_find_nodes_and_save(make_napari_viewer, qtbot,
                                                                            phantom_files, stand_in,
                                                                            autosave_dir, tmp_path,
                                                                            save_and_wait):
    """napari's built-in reader (or a bare array) gives 1 mm voxels at the origin: node volumes and the
    saved labels are then right only by chance, so Find nodes and Save say so; a CT the lnq-napari reader
    opened, or an array placed with its voxel size, says nothing."""
    from lnq_napari.io.readers import read_volume

    ct = read_volume(phantom_files.ct)
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer)
    segment = widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    widgets["Save"].folder.setText(str(tmp_path / "saved"))
    for name, kwargs, warned in (("bare", {}, True), ("placed", {"scale": ct.spacing[::-1]}, False)):
        layer = viewer.add_image(np.asarray(ct.array), name=name, **kwargs)
        segment.form.ct.value = layer
        segment.run()
        qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
        assert ("note: 'bare' has no voxel size or position" in segment.status.text()) is warned
        save_and_wait(widgets["Save"])
        assert ("lnq-napari reader" in widgets["Save"].status.text()) is warned
        assert widgets["Save"].status.text().startswith("saved v")
        viewer.layers.clear()


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 3)], ids=["slice", "rgb"])
def test_find_nodes_on_a_picture_says_it_needs_a_3d_ct(make_napari_viewer, shape):
    viewer = make_napari_viewer()
    picture = viewer.add_image(np.zeros(shape, np.uint8), rgb=len(shape) == 3, name="picture")
    segment: SegmentWidget = dock_widgets(viewer)["Segment"]
    segment.form.ct.value = picture
    assert segment.run() is None and segment.worker is None
    said = segment.status.text()
    assert said.startswith("this layer is 2D (" if len(shape) == 2 else "'picture' is a colour (RGB) picture")
    assert "lnq-napari works on 3D CT volumes" in said


def test_closing_napari_while_a_job_runs_cancels_it_and_exits_cleanly(tmp_path):
    """Quitting during Find nodes ended the process in a segmentation fault (the job's thread outlived
    Qt): closing the viewer cancels the job and the interpreter's exit waits for its thread."""
    import subprocess
    import sys

    script = tmp_path / "close_while_running.py"
    script.write_text(
        "import time\n"
        "import numpy as np\n"
        "from lnq_napari import api\n"
        "from lnq_napari.errors import Cancelled\n"
        "def slow(ct, predictor, progress=None, cancel=None, **kwargs):\n"
        "    for _ in range(600):\n"
        "        if cancel():\n"
        "            print('job cancelled', flush=True)\n"
        "            raise Cancelled('cancelled')\n"
        "        time.sleep(0.02)\n"
        "    print('job ran to the end', flush=True)\n"
        "api.find_nodes = slow\n"
        "from qtpy.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "import napari\n"
        "from lnq_napari.plugin.widgets import segment\n"
        "viewer = napari.Viewer(show=False)\n"
        "ct = viewer.add_image(np.zeros((8, 32, 32), np.int16), name='ct')\n"
        "widget = segment.SegmentWidget(viewer, predictor_factory=lambda model, device: object())\n"
        "widget.form.ct.value = ct\n"
        "assert widget.run() is not None\n"
        "start = time.time()\n"
        "while time.time() - start < 0.5:\n"
        "    app.processEvents()\n"
        "    time.sleep(0.01)\n"
        "viewer.close()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "job cancelled" in done.stdout and "ran to the end" not in done.stdout


def test_nodes_found_on_a_ct_flipped_in_napari_are_drawn_over_it_and_a_lone_flip_unpairs(
        make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir):
    """A CT the user flipped in napari (its layer's transform) got its nodes drawn by the file's grid: over
    the mirror-image anatomy. They are drawn as the CT is now; flipping the CT alone afterwards leaves the
    labels without a CT (a click there said "no node-like tissue": it read the mirrored place)."""
    from lnq_napari.plugin._layers import same_placement
    from lnq_napari.plugin._session import session_for

    viewer = make_napari_viewer()
    ct = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])  # head and feet swapped, as Layer > Transform would
    ct.affine = flip @ np.asarray(ct.affine.affine_matrix)
    segment: SegmentWidget = dock_widgets(viewer)["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    nodes = viewer.layers["nodes"]
    assert same_placement(nodes, ct)
    rings = viewer.layers["suggestions"]
    assert all(np.allclose(rings.data_to_world(p), ct.data_to_world(p)) for p in np.eye(3))
    assert session_for(viewer, nodes).ct_layer is ct
    ct.affine = flip @ np.asarray(ct.affine.affine_matrix)  # the CT alone flipped back
    assert session_for(viewer, nodes).ct_layer is None


@pytest.mark.parametrize("kind", ["2d", "rgb_ct"])
def test_labels_save_cannot_take_say_not_saved(make_napari_viewer, qtbot, tmp_path, autosave_dir, kind):
    """A 2D node layer, or an RGB "CT": the snapshot's error escaped the button (a napari error popup),
    the status kept its edit count and :attr:`SaveWidget.saved` never came (Shift+S waited on it)."""
    from lnq_napari.plugin.widgets import SaveWidget

    viewer = make_napari_viewer()
    if kind == "2d":
        viewer.add_labels(np.ones((20, 20), np.uint8), name="nodes")
    else:
        viewer.add_image(np.zeros((4, 20, 20, 3), np.uint8), rgb=True, name="ct")
        viewer.add_labels(np.ones((4, 20, 20), np.uint8), name="nodes")
    save = SaveWidget(viewer)
    save.folder.setText(str(tmp_path / "labels"))
    with qtbot.waitSignal(save.saved, timeout=10000) as ended:
        assert save.save() is None
    assert ended.args == [None] and save.status.text().startswith("not saved: ")
    assert not (tmp_path / "labels").exists()


def test_a_node_layer_s_session_stops_listening_when_its_layer_leaves(make_napari_viewer):
    """Each node layer's session listened for layer removals and never stopped: a handler per node layer
    ever opened piled up on the viewer's layer list."""
    from lnq_napari.plugin._session import session_for

    viewer = make_napari_viewer()
    removed = viewer.layers.events.removed
    before = len(removed.callbacks)
    layers = [viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name=f"nodes {i}") for i in range(3)]
    for layer in layers:
        assert session_for(viewer, layer) is not None
    assert len(removed.callbacks) == before + 3
    for layer in layers:
        viewer.layers.remove(layer)
    assert len(removed.callbacks) == before
