"""Two reviewers on one workspace, each in a real viewer: what the one who saves last is told."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def two_reviewers(make_napari_viewer, tmp_path):
    """A small phantom workspace with one case open in two viewers, one voxel painted in each: the workspace,
    the case and each viewer's docked widgets."""
    from lnq_napari.phantom import write_dataset
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    write_dataset(tmp_path / "data", 1, seed=8, shape=(16, 48, 48), spacing=(6.0, 6.0, 8.0))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    case = ws.case_ids()[0]
    reviewers = []
    for k in range(2):
        viewer = make_napari_viewer()
        widgets = dock_widgets(viewer, workspace=Workspace.open(ws.root))
        assert widgets["Review"].open_case(case) is not None
        nodes = viewer.layers["nodes"]
        at = (np.array([8]), np.array([10 + 20 * k]), np.array([10]))
        nodes.data_setitem(at, int(nodes.data.max()) + 1)
        nodes.events.paint()
        reviewers.append(widgets)
    return ws, case, reviewers


def test_the_reviewer_who_saves_over_another_s_save_is_told_and_both_are_kept(two_reviewers, save_and_wait):
    """The first reviewer's Save made the newest correction without the second's edits (saved meanwhile),
    and said only "saved v003": the case then opened, and a fine-tune trained, without them."""
    ws, case, (first, second) = two_reviewers
    opened = ws.version_info(case, "v001")["sha256"]  # which v001: a folder made afresh reuses the id
    assert first["Save"].tracker.session.parent_sha256 == opened
    theirs = save_and_wait(second["Save"])
    told = second["Save"].status.text()
    assert told.startswith("saved v002") and "note" not in told
    mine = save_and_wait(first["Save"])
    said = first["Save"].status.text()
    assert said.startswith(f"saved v003 to {mine}\nnote: {case}: correction v002 was saved by another "
                           "reviewer or process after v001")
    assert f"open {theirs} over the case" in said
    assert [(v["version"], v["parent"]) for v in ws.versions(case)] == [
        ("v001", None), ("v002", "v001"), ("v003", "v001")]  # both kept, each on what it was made on
    session = first["Save"].tracker.session
    nodes = session.nodes
    nodes.data_setitem((np.array([2]), np.array([40]), np.array([40])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    session.autosaver.schedule()
    assert session.autosaver.flush() is not None
    assert "was saved by another reviewer" in first["Save"].status.text()  # an autosave leaves it said
    assert save_and_wait(first["Save"]) is not None
    assert "another reviewer" not in first["Save"].status.text()  # saved on v003: nothing in between


def _open_and_paint(make_napari_viewer, ws, case: str, x: int):
    """A viewer with the Review widget open on ``case``, one voxel painted at x: (its widgets, session)."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=Workspace.open(ws.root))
    assert widgets["Review"].open_case(case) is not None
    nodes = viewer.layers["nodes"]
    _paint(nodes, x)
    return widgets, nodes.metadata["lnq_session"]


def _paint(nodes, x: int) -> None:
    nodes.data_setitem((np.array([8]), np.array([10]), np.array([x])), int(nodes.data.max()) + 1)
    nodes.events.paint()


def test_a_case_open_in_two_viewers_autosaves_each_apart_and_offers_neither_while_it_lives(
        make_napari_viewer, tmp_path, monkeypatch, crash):
    """One autosave per case: the second viewer opening the case was offered the first's live, unsaved
    edits as a crash's leftovers, each viewer's autosave then overwrote the other's, and after the first
    crashed its later edits were gone (the second's autosave in their place) and the second's offered."""
    from lnq_napari.io.readers import read_labels
    from lnq_napari.phantom import write_dataset
    from lnq_napari.workspace import Workspace

    monkeypatch.delenv("LNQ_NAPARI_AUTOSAVE_DIR", raising=False)  # the workspace's own folder, shared
    write_dataset(tmp_path / "data", 1, seed=8, shape=(16, 48, 48), spacing=(6.0, 6.0, 8.0))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    case = ws.case_ids()[0]
    first, mine = _open_and_paint(make_napari_viewer, ws, case, 10)
    a_path = mine.autosaver.flush()
    assert a_path is not None

    second = make_napari_viewer()
    from lnq_napari.plugin.app import dock_widgets

    review = dock_widgets(second, workspace=Workspace.open(ws.root))["Review"]
    assert review.open_case(case) is not None
    said = review.status.text()
    assert "with the unsaved edits autosaved" not in said  # not a crash's leftovers
    assert f"note: {case} is open with unsaved edits in another window or process (" in said, said
    assert str(a_path) in said
    theirs = second.layers["nodes"].metadata["lnq_session"]
    assert not theirs.unsaved and second.layers["nodes"].data[8, 10, 10] == 0
    _paint(second.layers["nodes"], 30)
    b_path = theirs.autosaver.flush()
    assert b_path != a_path
    _paint(mine.nodes, 20)  # the first goes on editing
    assert mine.autosaver.flush() == a_path
    a_saved, b_saved = read_labels(a_path).array, read_labels(b_path).array
    assert a_saved[8, 10, 10] and a_saved[8, 10, 20] and not a_saved[8, 10, 30]  # neither overwrote
    assert b_saved[8, 10, 30] and not b_saved[8, 10, 10] and not b_saved[8, 10, 20]

    crash(mine)  # the first viewer's process dies with its edits unsaved
    third = make_napari_viewer()
    review = dock_widgets(third, workspace=Workspace.open(ws.root))["Review"]
    assert review.open_case(case) is not None
    said = review.status.text()
    assert f"with the unsaved edits autosaved in {a_path}" in said, said  # the crashed one's, all of them
    restored = third.layers["nodes"].data
    assert restored[8, 10, 10] and restored[8, 10, 20] and not restored[8, 10, 30]
    assert str(b_path) in said and "open with unsaved edits in another window" in said  # the second lives


def test_the_note_s_instruction_works_and_save_never_stores_a_version_opened_over_the_case(
        two_reviewers, save_and_wait):
    """Doing what the note said (File > Open theirs, Save again) saved their layer, selected, as v004: the
    newest correction, theirs alone, recorded as made on the reviewer's v003, and the note went silent."""
    ws, case, (first, second) = two_reviewers
    theirs = save_and_wait(second["Save"])
    save_and_wait(first["Save"])
    widget = first["Save"]
    viewer, nodes = widget.viewer, widget.tracker.session.nodes
    mine = np.array(nodes.data, copy=True)
    (opened,) = viewer.open(str(theirs), plugin="lnq-napari")  # File > Open, as the note says
    assert viewer.layers.selection.active is opened
    assert "was saved by another reviewer" in widget.status.text()  # the note stays while it is open
    assert save_and_wait(widget) is None  # Save with their layer selected: refused, in one line
    said = widget.status.text()
    assert said.startswith(f"not saved: the selected layer {opened.name!r} is not {case}'s labels; select "
                           "'nodes', the layer that holds them, and Save again\n")
    assert "was saved by another reviewer" in said
    assert [v["version"] for v in ws.versions(case)] == ["v001", "v002", "v003"]
    np.testing.assert_array_equal(nodes.data, mine)  # the reviewer's edits are where they were
    missing = np.nonzero((np.asarray(opened.data) != 0) & (nodes.data == 0))  # redrawn in "nodes" by hand
    nodes.data_setitem(missing, int(nodes.data.max()) + 1)
    nodes.events.paint()
    viewer.layers.selection.active = nodes
    assert save_and_wait(widget) is not None
    assert widget.status.text().startswith("saved v004") and "another reviewer" not in widget.status.text()
    assert ws.version_info(case, "v004")["parent"] == "v003"  # both reviewers' nodes, on the reviewer's own
    assert widget.tracker.session.parent_sha256 == ws.version_info(case, "v004")["sha256"]


def test_the_model_s_nodes_found_over_an_opened_case_are_saved_not_refused(two_reviewers, save_and_wait):
    """Find nodes over a case Review opened keeps the opened layer aside as "nodes (previous)": the new
    "nodes" is the model's, not a version opened over the case, and its Save goes through."""
    from lnq_napari.api import NodeResult
    from lnq_napari.plugin._layers import layer_volume
    from lnq_napari.plugin._session import show_prediction

    ws, case, (first, _) = two_reviewers
    widget = first["Save"]
    session = widget.tracker.session
    ct = layer_volume(session.ct_layer)
    mask = ct.with_array(np.zeros(ct.array.shape, np.int32))
    mask.array[8, 20:24, 20:24] = 1
    show_prediction(widget.viewer, session.ct_layer, NodeResult(
        mask, ct.with_array(np.zeros(ct.array.shape, np.float32)), "test-model", [], []))
    assert widget.tracker.session is not session and "nodes (previous)" in widget.viewer.layers
    assert save_and_wait(widget) is not None, widget.status.text()
    assert widget.status.text().startswith("saved v002")
