"""Keyboard-first review on a real viewer: key events on the canvas go through napari's keymap to the
lnq-napari actions. A whole case is reviewed without the mouse: every suggestion, accept or reject, save,
then the next case of the queue. The actions are napari's (listed in the shortcut preferences, remappable)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from lnq_napari.active import RankedCase
from lnq_napari.plugin.app import open_viewer
from lnq_napari.plugin.keys import REVIEW_KEYS, key_rows

pytestmark = pytest.mark.gui

SHIFT = Qt.KeyboardModifier.ShiftModifier
FIRST, SECOND = "lnq2023-train-0003", "lnq2023-train-0004"


@pytest.fixture
def workspace(tmp_path, phantom_files):
    """A workspace of two phantom cases with partial labels."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.phantom import make_case
    from lnq_napari.workspace import Workspace

    data = tmp_path / "data"
    data.mkdir()
    for src in (phantom_files.ct, phantom_files.seg):
        (data / src.name).write_bytes(src.read_bytes())
    other = make_case(4, shape=(24, 96, 96), spacing=(2.0, 2.0, 4.0), case_id=SECOND)
    write_volume(data / f"{SECOND}-ct.nrrd", other.ct)
    write_volume(data / f"{SECOND}-seg.nrrd", other.partial)
    return Workspace.init(tmp_path / "ws", data)


def _press(qtbot, viewer, key, modifier=Qt.KeyboardModifier.NoModifier) -> str:
    """A key press on the canvas (as a user types it), then what the action reported."""
    qtbot.keyClick(viewer.window._qt_viewer, key, modifier)
    return viewer.status


def _world_centre(viewer) -> np.ndarray:
    return np.array([viewer.dims.point[0], *viewer.camera.center[-2:]])


def test_a_case_reviewed_with_keys_only(make_napari_viewer, qtbot, workspace, stand_in, autosave_dir):
    viewer = make_napari_viewer()
    open_viewer(ct=workspace.ct_path(FIRST), seg=workspace.seg_path(FIRST), workspace=workspace.root,
                viewer=viewer)
    panel = viewer.window.dock_widgets["lnq-napari"]
    segment, review = panel.widgets["Segment"], panel.widgets["Review"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    review._show_queue([  # the ranked queue (ranking itself is tested in test_review)
        RankedCase(rank=1, case=FIRST, score=0.9, uncertain_nodes=1, predicted_nodes=5),
        RankedCase(rank=2, case=SECOND, score=0.5, uncertain_nodes=0, predicted_nodes=3),
    ])
    nodes, points = viewer.layers["nodes"], viewer.layers["suggestions"]
    session = nodes.metadata["lnq_session"]
    n_suggestions = len(points.data)
    assert n_suggestions >= 2 and session.current_suggestion == -1

    # N goes to the first suggestion and centres the view on it; Shift+N back, N again
    assert _press(qtbot, viewer, Qt.Key.Key_N).startswith(f"1/{n_suggestions}")
    assert _world_centre(viewer) == pytest.approx(points.data_to_world(points.data[0]), abs=1e-3)
    assert panel.widgets["Correct"].suggestion_list.currentRow() == 0
    _press(qtbot, viewer, Qt.Key.Key_N)
    assert session.current_suggestion == 1
    assert _world_centre(viewer) == pytest.approx(points.data_to_world(points.data[1]), abs=1e-3)
    _press(qtbot, viewer, Qt.Key.Key_N, SHIFT)
    assert session.current_suggestion == 0

    # accept the first, reject the others: each decision moves to the next one, centred
    before = int((nodes.data > 0).sum())
    assert _press(qtbot, viewer, Qt.Key.Key_A).startswith("accepted: node")
    assert int((nodes.data > 0).sum()) > before  # a node added (or an incomplete outline completed)
    assert len(points.data) == n_suggestions - 1 and session.current_suggestion == 0
    assert _world_centre(viewer) == pytest.approx(points.data_to_world(points.data[0]), abs=1e-3)
    while len(points.data):
        left = len(points.data)
        noun = "suggestion" if left == 2 else "suggestions"
        assert _press(qtbot, viewer, Qt.Key.Key_R) == f"rejected; {left - 1} {noun} left"
    assert _press(qtbot, viewer, Qt.Key.Key_A) == "no suggestion left"
    assert (session.stats.accepted, session.stats.rejected) == (1, n_suggestions - 1)
    assert len(nodes.metadata["lnq_rejected"]) == n_suggestions - 1

    # J / K: the nodes by id, each centred and selected (in the node table too)
    ids = sorted(int(i) for i in np.unique(nodes.data[nodes.data > 0]))
    table = panel.widgets["Nodes"]
    qtbot.waitUntil(lambda: sorted(table.visible_ids()) == ids, timeout=20000)
    nodes.selected_label = 0
    assert _press(qtbot, viewer, Qt.Key.Key_J) == f"node {ids[0]} (1 of {len(ids)})"
    assert [table.node_id(i.row()) for i in table.table.selectionModel().selectedRows()] == [ids[0]]
    centre = nodes.data_to_world(np.argwhere(nodes.data == ids[0]).mean(axis=0))
    assert _world_centre(viewer)[1:] == pytest.approx(centre[1:], abs=1e-3)
    assert abs(_world_centre(viewer)[0] - centre[0]) <= abs(nodes.scale[0]) / 2  # the slice through it
    assert nodes.selected_label == ids[0]
    _press(qtbot, viewer, Qt.Key.Key_J)
    assert nodes.selected_label == ids[1]
    _press(qtbot, viewer, Qt.Key.Key_K)
    _press(qtbot, viewer, Qt.Key.Key_K)  # wraps round to the last node
    assert nodes.selected_label == ids[-1]

    # T hides and shows the nodes
    _press(qtbot, viewer, Qt.Key.Key_T)
    assert not nodes.visible
    _press(qtbot, viewer, Qt.Key.Key_T)
    assert nodes.visible

    # a mouse click counts as a click (here an add in the air beside the body: nothing found)
    corner = nodes.data_to_world(np.array([nodes.data.shape[0] // 2, 1, 1]))
    assert panel.widgets["Correct"].tool.click(corner, "add") == "no node-like tissue at the click"
    shown = review.refresh_stats()
    assert f"1 accepted, {n_suggestions - 1} rejected, 1 click" in shown and shown.startswith("this case: ")

    # the next case is refused while the edits are unsaved; Shift+S saves; then Shift+Enter opens it
    assert "unsaved edits" in _press(qtbot, viewer, Qt.Key.Key_Return, SHIFT)
    assert viewer.layers["nodes"] is nodes
    assert _press(qtbot, viewer, Qt.Key.Key_S, SHIFT) == "saving ..."  # in a worker thread
    qtbot.waitUntil(lambda: viewer.status.startswith("saved v"), timeout=60000)  # then what Save says
    assert workspace.corrected_cases() == [FIRST]
    (line,) = workspace.journal("review")
    assert (line["case"], line["accepted"], line["rejected"]) == (FIRST, 1, n_suggestions - 1)
    assert line["keys"] >= n_suggestions + 8 and line["clicks"] == 1 and line["seconds"] > 0
    assert line["version"] == workspace.latest_version(FIRST, "correction")["version"]
    qtbot.waitUntil(lambda: "1 case reviewed" in review.refresh_stats(), timeout=5000)

    assert _press(qtbot, viewer, Qt.Key.Key_Return, SHIFT).startswith(f"opened {SECOND}")
    assert viewer.layers["nodes"].metadata["lnq_session"].case == SECOND
    assert review.queue.currentRow() == 1
    assert "this case: 0 s" in review.refresh_stats() or "this case: 1 s" in review.refresh_stats()
    assert _press(qtbot, viewer, Qt.Key.Key_Return, SHIFT).startswith("end of the review queue")


def test_review_keys_are_napari_actions_listed_and_remappable(make_napari_viewer, qtbot, phantom_files,
                                                             stand_in, autosave_dir):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager

    viewer = make_napari_viewer()
    open_viewer(ct=phantom_files.ct, viewer=viewer)
    panel = viewer.window.dock_widgets["lnq-napari"]
    editor = ShortcutEditor()
    listed = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    assert {k.name for k in REVIEW_KEYS} <= set(listed)  # in Preferences > Shortcuts, Viewer key bindings
    shown = [panel.keys.table.item(r, 0).text() for r in range(panel.keys.table.rowCount())]
    assert shown == [keys for keys, _ in key_rows()] and len(shown) == len(REVIEW_KEYS)

    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    points = viewer.layers["suggestions"]
    n = len(points.data)
    name = "lnq-napari:reject_suggestion"
    default = action_manager.unbind_shortcut(name)
    try:
        action_manager.bind_shortcut(name, "Shift-X")  # what the preferences dialog does on an edit
        row = [k.name for k in REVIEW_KEYS].index(name)
        assert panel.keys.table.item(row, 0).text() != shown[row]  # the panel follows the remap
        _press(qtbot, viewer, Qt.Key.Key_R)
        assert len(points.data) == n  # R does nothing now
        _press(qtbot, viewer, Qt.Key.Key_X, SHIFT)
        assert len(points.data) == n - 1
    finally:
        action_manager.unbind_shortcut(name)
        for shortcut in default:
            action_manager.bind_shortcut(name, shortcut)
    assert panel.keys.table.item(row, 0).text() == shown[row]
