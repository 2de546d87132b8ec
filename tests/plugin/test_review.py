"""The Review widget on a real viewer: rank a workspace, open a case, guard unsaved edits, save into the
workspace, fine-tune with progress, cancel; the models section: verdicts, Activate, roll back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.plugin.widgets import ReviewWidget
from lnq_napari.plugin.widgets.review import CANCELLED

pytestmark = pytest.mark.gui

SHAPE, SPACING = (16, 48, 48), (6.0, 6.0, 8.0)
TINY = {
    "architecture": {"kwargs": {"features": [4, 8, 16, 32]}},
    "preprocessing": {"target_spacing": [6.0, 6.0, 8.0]},
    "inference": {"patch_size": [8, 32, 32], "min_component_mm3": 0.0},
    "train": {"patch_size": [8, 32, 32], "batch_size": 1, "warmup": 1},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import torch

    from lnq_napari.phantom import write_dataset
    from lnq_napari.training.trainer import load_training_cases, train_model
    from lnq_napari.workspace import Workspace

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("review")
    write_dataset(root / "data", 3, seed=8, shape=SHAPE, spacing=SPACING)
    model = train_model(load_training_cases(root / "data", workers=1)[:1], root / "tiny", iterations=2,
                        device="cpu", config=TINY)
    ws = Workspace.init(root / "ws", root / "data")
    ws.activate(ws.register_model(model, parent=None))
    return ws


def _wait(qtbot, widget, timeout=120000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_rank_open_save_and_finetune(make_napari_viewer, qtbot, workspace, autosave_dir, save_and_wait):
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer, workspace=workspace)
    review.form.strategy.value = "uncertainty"
    review.form.n.value = 3
    assert review.rank() is not None
    _wait(qtbot, review)
    assert [r.case for r in review.rows] and review.queue.count() == len(review.rows) == 3
    assert sorted(r.case for r in review.rows) == workspace.case_ids()
    scores = [r.score for r in review.rows]
    assert scores == sorted(scores, reverse=True) and review.progress.value() == 100
    assert review.queue.item(0).toolTip() == review.queue.item(0).text()  # the whole row, cut in the panel

    # one click opens the top case: its CT and its stored prediction as the editable node layer
    first = review.rows[0].case
    assert review.open_selected() == workspace.ct_path(first)
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    assert str(session.workspace) == str(workspace.root) and session.case == first
    assert nodes.data.shape == SHAPE

    # an unsaved edit blocks opening the next case; nothing is lost
    nodes.data_setitem((np.array([8]), np.array([24]), np.array([24])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert session.edits > 0
    second = review.rows[1].case
    assert review.open_case(second) is None and "unsaved edits" in review.status.text()
    assert viewer.layers["nodes"] is nodes

    # Save writes a correction into the workspace; then the next case opens in place of this one
    from lnq_napari.plugin.widgets import SaveWidget

    saved = save_and_wait(SaveWidget(viewer))
    assert saved is not None and saved.is_relative_to(workspace.root)
    assert workspace.corrected_cases() == [first]
    assert review.open_case(second) == workspace.ct_path(second)
    assert [ly.name for ly in viewer.layers].count("nodes") == 1
    assert viewer.layers["nodes"].metadata["lnq_session"].case == second

    # fine-tune from the widget: progress, a registered version, the activation decision shown
    before = len(workspace.models())
    review.iterations.value = 2
    assert review.finetune() is not None
    assert not review.finetune_button.isEnabled() and review.cancel_button.isEnabled()
    assert review.open_button.isEnabled()  # as a double-click on the queue and Shift+Enter open cases
    _wait(qtbot, review)
    assert len(workspace.models()) == before + 1 and review.progress.value() == 100
    assert ("activated" in review.status.text()) or ("kept the previous model" in review.status.text())
    assert review.finetune_button.isEnabled()


class UnsurePredictor:
    """TEST DOUBLE: a model unsure of a 3 x 5 x 5 voxel blob at each of ``centres`` (z, y, x)."""

    def __init__(self, centres) -> None:
        from lnq_napari.model.config import ModelConfig

        self.config, self.centres = ModelConfig(), centres
        self.config.inference.mediastinum_margin_mm = None

    def predict(self, ct, progress=None, cancel=None, region=True):
        from lnq_napari.inference import Prediction

        prob = np.zeros(ct.shape, np.float32)
        for k, (z, y, x) in enumerate(self.centres):
            prob[z - 1: z + 2, y - 2: y + 3, x - 2: x + 3] = 0.3 + 0.05 * k
        return Prediction(ct.with_array(prob), ct.with_array(np.zeros(ct.shape, np.uint8)), "unsure-0", None)


def test_a_case_opened_from_the_queue_shows_its_suggestions_beside_its_labels(
        make_napari_viewer, qtbot, workspace, monkeypatch, tmp_path):
    """The queue promised "2 unsure of 8 nodes" but an opened case had no suggestions: N and A answered
    "no suggestion left". Now the workspace's model predicts it in the background and its suggestions
    show beside the labels opened, which stay as they are (a suggestion on a labelled voxel is left out)."""
    from lnq_napari import api
    from lnq_napari.io.readers import read_labels
    from lnq_napari.workspace import Workspace

    workspace = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")  # no other test's labels
    case = workspace.case_ids()[-1]
    labelled = tuple(int(c) for c in np.argwhere(read_labels(workspace.seg_path(case)).array > 0)[0])
    free = [(4, 8, 8), (11, 38, 38)]
    assert all(read_labels(workspace.seg_path(case)).array[c] == 0 for c in free)
    fake = UnsurePredictor([*free, labelled])
    loaded = []
    monkeypatch.setattr(api, "load_predictor", lambda model, *a, **k: model if model is fake else (
        loaded.append(model) or fake))

    viewer = make_napari_viewer()
    review = ReviewWidget(viewer, workspace=workspace)
    assert review.open_case(case) == workspace.ct_path(case)
    nodes = viewer.layers["nodes"]
    opened = np.array(nodes.data, copy=True)
    assert "finding suggestions" in review.status.text()
    qtbot.waitUntil(lambda: review.suggesting is None, timeout=60000)
    assert loaded == [workspace.prediction_model()[0]]  # the workspace's model
    shown = viewer.layers["suggestions"]
    assert sorted(tuple(p) for p in np.asarray(shown.data, dtype=int)) == sorted(free)
    assert sorted(shown.features["rank"]) == [1, 2]
    session = nodes.metadata["lnq_session"]
    assert np.array_equal(nodes.data, opened) and session.edits == 0  # the labels as opened
    assert session.probabilities is not None and session.probabilities.shape == opened.shape
    # the model as the Models table below names it ("bundled"), not its cache key "bundled-<hash>"
    assert "2 suggestions of model bundled: N" in review.status.text(), review.status.text()
    assert viewer.layers.selection.active is nodes  # still the layer the brush paints

    # a case opened before the suggestions arrive drops them: the next case gets its own
    other = workspace.case_ids()[0]
    assert review.open_case(case) is not None and review.open_case(other) is not None
    qtbot.waitUntil(lambda: review.suggesting is None, timeout=60000)
    assert viewer.layers["nodes"].metadata["lnq_session"].case == other
    assert "suggestions of model" in review.status.text() and other in review.status.text()


def test_opening_a_case_says_so_and_shows_the_wait_cursor_while_it_reads(make_napari_viewer, qtbot, workspace,
                                                                          monkeypatch):
    """A full-size case took 2-3 s of the GUI thread to open (read, old layers out, new in) while the
    status line still spoke of the last case and the cursor was an arrow: the click looked lost."""
    from qtpy.QtWidgets import QApplication

    from lnq_napari.plugin.widgets import review as review_module

    seen = []
    real = review_module.read_case

    def reading(*args, **kwargs):
        cursor = QApplication.overrideCursor()
        seen.append((review.status.text(), None if cursor is None else cursor.shape()))
        return real(*args, **kwargs)

    monkeypatch.setattr(review_module, "read_case", reading)
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer, workspace=workspace)
    case = workspace.case_ids()[0]
    assert review.open_case(case) == workspace.ct_path(case)
    from qtpy.QtCore import Qt

    assert seen == [(f"opening {case} ...", Qt.CursorShape.WaitCursor)]
    assert QApplication.overrideCursor() is None and f"opened {case}" in review.status.text()
    qtbot.waitUntil(lambda: review.suggesting is None, timeout=60000)
    missing = "no-such-case"  # a refusal also gives the cursor back and says why
    assert review.open_case(missing) is None and QApplication.overrideCursor() is None
    assert review.status.text() != f"opening {missing} ..."

    def failing(*args, **kwargs):  # an error no refusal expects (a damaged file, a disk gone)
        raise OSError("disk gone")

    monkeypatch.setattr(review_module, "read_case", failing)
    said = review.status.text()
    with pytest.raises(OSError):
        review.open_case(case)
    assert QApplication.overrideCursor() is None  # the cursor is given back ...
    assert review.status.text() == said  # ... and the line no longer says "opening <case> ..." for good


def test_cancel_a_fine_tune_and_a_missing_workspace(make_napari_viewer, qtbot, workspace, tmp_path):
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer)
    assert review.rank() is None and "workspace" in review.status.text()
    review.form.workspace.value = tmp_path / "nope"
    assert review.finetune() is None and review.worker is None
    review.form.workspace.value = workspace.root
    if not workspace.corrected_cases():  # fine-tuning needs one correction
        from lnq_napari.io.readers import read_labels

        case = workspace.case_ids()[0]
        labels = read_labels(workspace.seg_path(case), reference=workspace.read_ct(case))
        workspace.add_label_version(case, labels, "correction", edits=1)
    review.iterations.value = 5000
    before = len(workspace.models())
    review.finetune()
    qtbot.waitUntil(lambda: review.progress.value() > 0, timeout=60000)
    review.cancel()
    _wait(qtbot, review)
    assert review.status.text() == CANCELLED["finetune"] and len(workspace.models()) == before
    assert "--resume" in review.status.text()  # our fine-tune continues where it stopped
    review.iterations.value = 2  # Fine-tune again starts afresh and says so (it was lost in the thread)
    assert review.finetune() is not None
    _wait(qtbot, review)
    assert "\nnote: an interrupted fine-tune was discarded: this one starts afresh" in review.status.text()


def test_cancel_of_an_nnunet_finetune_says_run_it_again(make_napari_viewer, qtbot, workspace, monkeypatch):
    """With an nnU-Net version active api.finetune refuses --resume: Cancel says to fine-tune again (the
    nnU-Net fine-tune stood in for by one that waits for Cancel)."""
    import time

    from lnq_napari import api
    from lnq_napari.errors import Cancelled
    from lnq_napari.workspace import Workspace

    calls = []

    def finetune(root, config, iterations, progress, cancel):
        calls.append((root, config.folds))
        while not cancel():
            time.sleep(0.01)
        raise Cancelled("nnU-Net training cancelled")

    monkeypatch.setattr(Workspace, "active_model", lambda self: {"id": "m009", "kind": "nnunet"})
    monkeypatch.setattr(api, "finetune", finetune)
    review = ReviewWidget(make_napari_viewer(), workspace=workspace)
    review.folds.value = 2  # forwarded as the fine-tune's cross-fitting setting
    review.finetune()
    review.cancel()
    _wait(qtbot, review)
    assert calls == [(workspace.root, 2)] and review.status.text() == CANCELLED["nnunet"]
    assert "--resume`" not in review.status.text() and "again" in review.status.text()


def test_models_section_activates_for_the_user_and_rolls_back(make_napari_viewer, qtbot, workspace, tmp_path):
    """The models table lists the versions with the rule's verdict; Activate makes the selected one
    active with a journal line saying the user decided; a half-written version is refused."""
    first = workspace.models()[0]["id"]
    figures = {"candidate_dice": 0.82, "parent_dice": 0.64, "candidate_recall": 0.95, "parent_recall": 0.7,
               "candidate_false_nodes": 0.4, "parent_false_nodes": 0.3}
    refused = workspace.register_model(
        workspace.model_path(first), parent=first, training_cases=["a", "b"],
        metrics={"reason": "refuse (false nodes vs parent +0.10/case): ...", "figures": figures,
                 "activate": False})
    viewer = make_napari_viewer()
    review = ReviewWidget(viewer, workspace=workspace)
    panel = review.models
    versions = [panel.table.item(i, 0).text() for i in range(panel.table.rowCount())]
    assert versions == ["bundled"] + [m["id"] for m in workspace.models()]
    row = versions.index(refused)
    assert [panel.table.item(row, j).text() for j in range(4)] == [refused, first, "", "refuse"]
    assert panel.selected().version == refused  # the newest is selected, its figures shown
    assert "Dice 0.640 -> 0.820" in panel.details.text() and "refuse (false nodes" in panel.details.text()
    assert refused in panel.plot.rounds

    previous = workspace.active_model()["id"]
    panel.table.selectRow(row)
    qtbot.mouseClick(panel.activate_button, _left())
    assert workspace.active_model()["id"] == refused
    assert panel.table.item(row, 2).text() == "*" and f"(was {previous})" in panel.details.text()
    assert review.status.text().startswith(f"{refused} is the active model")  # not a stale verdict
    line = workspace.journal("activate")[-1]
    assert (line["version"], line["previous"], line["decided_by"]) == (refused, previous, "user")
    qtbot.mouseClick(panel.activate_button, _left())  # again: it said "(was <itself>)" and journaled it
    assert panel.details.text().startswith(f"{refused} is already the active model; nothing changed")
    assert "(was " not in panel.details.text()  # the first activation's line is not kept before it
    assert workspace.journal("activate")[-1] == line

    # a half-written version: refused in the panel, nothing changed
    broken = workspace.register_model(workspace.model_path(first), parent=first)
    (workspace.model_path(broken) / "weights.safetensors").write_bytes(b"")
    panel.refresh(select=broken)
    registry = workspace.registry.file.read_bytes()
    assert panel.activate_selected() is None and "half-written" in panel.details.text()
    assert workspace.registry.file.read_bytes() == registry

    # a version whose folder was moved or deleted: listed with the others, its folder named in one line
    moved = workspace.register_model(workspace.model_path(first), parent=first)
    shutil.rmtree(workspace.model_path(moved))
    panel.refresh(select=moved)
    listed = [panel.table.item(i, 0).text() for i in range(panel.table.rowCount())]
    assert listed[-3:] == [refused, broken, moved]
    assert f"{moved}: its model folder {workspace.model_path(moved)} is missing (moved or deleted)" in \
        panel.details.text()
    assert panel.activate_selected() is None and "missing (moved or deleted)" in panel.details.text()

    # back to the bundled model, then to the version that was active before this test
    panel.refresh(select="bundled")
    assert panel.activate_selected().version == "bundled" and workspace.active_model() is None
    assert review.status.text().startswith("bundled is the active model")
    shot = tmp_path / "review-models.png"
    panel.refresh(select=refused)
    viewer.window.add_dock_widget(review, name="Review", area="right")
    viewer.window._qt_window.resize(1200, 1100)
    qtbot.wait(200)
    review.grab().save(str(shot))
    assert shot.stat().st_size > 0
    workspace.activate(previous, decided_by="user")


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_the_segment_tab_starts_with_the_workspace_active_model(make_napari_viewer, workspace):
    """Review ranks with the workspace's active version: the Segment tab predicts with it too, unless a
    model was given; with no version active it shows the bundled model (an empty field)."""
    from pathlib import Path

    from lnq_napari.plugin.panel import LNQPanel

    before = workspace.active_model()
    first = workspace.models()[0]["id"]
    viewer = make_napari_viewer()
    try:
        workspace.activate(first, decided_by="user")
        panels = [LNQPanel(viewer, workspace=workspace),
                  LNQPanel(viewer, model=str(workspace.root), workspace=workspace)]
        workspace.activate("bundled", decided_by="user")
        panels.append(LNQPanel(viewer, workspace=workspace.root))
        models = [panel.widgets["Segment"].form.model.value for panel in panels]
        assert Path(models[0]) == workspace.model_path(first)
        assert Path(models[1]) == workspace.root and models[2] is None
    finally:
        workspace.activate(before["id"] if before else "bundled", decided_by="user")


def test_the_segment_tab_follows_an_activation_unless_the_user_chose_a_model(make_napari_viewer, workspace):
    from pathlib import Path

    from lnq_napari import api
    from lnq_napari.plugin.panel import LNQPanel

    before = workspace.active_model()
    first = workspace.models()[0]["id"]
    viewer = make_napari_viewer()
    try:
        api.activate_model(workspace.root, "bundled")
        following = LNQPanel(viewer, workspace=workspace)
        given = LNQPanel(viewer, model=str(workspace.root), workspace=workspace)
        segment, models = following.widgets["Segment"], following.widgets["Review"].models
        assert segment.form.model.value is None
        models.table.selectRow([m.version for m in models.models].index(first))
        models.activate_selected()
        assert Path(segment.form.model.value) == workspace.model_path(first)
        assert Path(given.widgets["Segment"].form.model.value) == workspace.root  # given: kept
        api.activate_model(workspace.root, "bundled")  # another process (the CLI) rolls back
        models.refresh()
        assert segment.form.model.value is None
        segment.form.model.value = workspace.root  # the user's own choice now
        api.activate_model(workspace.root, first)
        models.refresh()
        assert Path(segment.form.model.value) == workspace.root
    finally:
        workspace.activate(before["id"] if before else "bundled", decided_by="user")


def test_the_segment_tab_follows_an_nnunet_version_with_its_options(make_napari_viewer, tmp_path):
    """FileEdit's setter made ``nnunet:<folder>?options`` a path below the working folder: the Segment tab
    could not predict, and followed no later activation."""
    from lnq_napari.plugin.widgets.segment import SegmentWidget

    segment = SegmentWidget(make_napari_viewer())
    version = f"nnunet:{tmp_path / 'models' / 'm001' / 'T__P__3d_fullres'}?folds=0&mirroring=off"
    segment.follow_model(version)
    assert str(segment.form.model.value) == version
    segment.follow_model(str(tmp_path / "models" / "m002"))
    assert segment.form.model.value == tmp_path / "models" / "m002"
    segment.follow_model(None)
    assert segment.form.model.value is None


def test_the_models_panel_follows_what_another_process_writes(make_napari_viewer, qtbot, workspace):
    """A version registered or activated elsewhere (the CLI, a second napari window) shows in the panel
    and reaches the Segment tab without Refresh; the user's selection stays."""
    from lnq_napari import api
    from lnq_napari.plugin.panel import LNQPanel

    before = workspace.active_model()
    first = workspace.models()[0]["id"]
    panel = LNQPanel(make_napari_viewer(), workspace=workspace)
    models, segment = panel.widgets["Review"].models, panel.widgets["Segment"]
    try:
        api.activate_model(workspace.root, "bundled")  # another process rolls back
        qtbot.waitUntil(lambda: [m.version for m in models.models if m.active] == ["bundled"], timeout=5000)
        assert segment.form.model.value is None
        models.table.selectRow(0)  # the user looks at the bundled model
        made = workspace.register_model(workspace.model_path(first), parent=first)  # a CLI fine-tune
        qtbot.waitUntil(lambda: made in [models.table.item(i, 0).text()
                                         for i in range(models.table.rowCount())], timeout=5000)
        assert models.selected().version == "bundled"
        assert not models.follow_registry()  # read once per change
    finally:
        workspace.activate(before["id"] if before else "bundled", decided_by="user")


def test_the_models_panel_follows_a_folder_that_becomes_a_workspace(make_napari_viewer, qtbot, workspace,
                                                                     tmp_path):
    """A workspace folder typed before `workspace init` made it: the table stayed empty for good."""
    from lnq_napari.workspace import Workspace

    review = ReviewWidget(make_napari_viewer(), workspace=workspace)
    later = tmp_path / "later"
    review.models.table.selectRow(0)
    qtbot.waitUntil(lambda: review.models.details.text() != "", timeout=5000)  # the bundled model, described
    review.form.workspace.value = later
    assert review.models.models == [] and review.models.details.text() == ""  # not the last one's words
    Workspace.init(later, workspace.root.parent / "data")  # another process, say
    qtbot.waitUntil(lambda: [m.version for m in review.models.models] == ["bundled"], timeout=5000)


def _first_case_docked(make_napari_viewer, workspace):
    """A viewer with every widget docked and the workspace's last case opened from Review: (viewer,
    widgets, the id of another case)."""
    from lnq_napari.plugin.app import dock_widgets

    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=workspace)
    first = workspace.case_ids()[-1]
    assert widgets["Review"].open_case(first) == workspace.ct_path(first)
    return viewer, widgets, workspace.case_ids()[0]


def test_widgets_docked_before_a_case_opens_save_what_the_user_edits(make_napari_viewer, workspace,
                                                                      autosave_dir, save_and_wait):
    """In the app every widget is docked before Review opens a case: Save must save the session the
    edits go to, so that the next case opens (it answered 'unsaved edits' after a Save)."""
    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, save = widgets["Review"], widgets["Save"]
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    assert save.tracker.session is session and widgets["Correct"].tracker.session is session
    assert str(session.workspace) == str(workspace.root) and session.ct_layer is viewer.layers[0]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert save_and_wait(save) is not None and not session.unsaved and session.edits > 0
    assert review.open_case(second) == workspace.ct_path(second), review.status.text()
    assert viewer.layers["nodes"].metadata["lnq_session"].case == second


def test_edits_undone_back_to_the_saved_labels_are_not_unsaved(make_napari_viewer, workspace, autosave_dir,
                                                               save_and_wait):
    """Undoing every edit since the case opened (or since its Save) left it "unsaved": the next case was
    refused until the user saved a copy of what was already saved."""
    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, save = widgets["Review"], widgets["Save"]
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    opened = np.array(nodes.data, copy=True)

    def paint(z: int) -> None:
        with nodes.block_history():  # one undo step, as a click or a brush stroke
            nodes.data_setitem((np.array([z]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)

    paint(8)
    assert session.unsaved
    session.undo()
    assert np.array_equal(nodes.data, opened) and not session.unsaved
    session.redo()
    assert session.unsaved and review.open_case(second) is None and "unsaved edits" in review.status.text()
    assert save_and_wait(save) is not None and not session.unsaved
    paint(9)
    session.undo()  # back to what was saved, not to what was opened
    assert not session.unsaved
    session.undo()
    assert np.array_equal(nodes.data, opened) and session.unsaved
    session.redo()
    assert review.open_case(second) == workspace.ct_path(second), review.status.text()


class _HeldSave:
    """``api.save_labels`` held in the Save worker until ``release`` is set (a save that takes a while: a
    full-size case, a workspace locked by another window); ``threads``: where each call ran."""

    def __init__(self, monkeypatch) -> None:
        import threading

        from lnq_napari import api

        self.release, self.threads, real = threading.Event(), [], api.save_labels

        def held(*args, **kwargs):
            self.threads.append(threading.current_thread())
            assert self.release.wait(20), "the held save was never released"
            return real(*args, **kwargs)

        monkeypatch.setattr(api, "save_labels", held)


def _paint(nodes, z: int) -> None:
    with nodes.block_history():  # one undo step, as a click or a brush stroke
        nodes.data_setitem((np.array([z]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)


def test_edits_made_while_a_save_runs_stay_unsaved_and_are_saved_next_time(
        make_napari_viewer, qtbot, workspace, autosave_dir, monkeypatch, save_and_wait):
    """Save writes in a worker from a snapshot taken when it is pressed: the viewer takes edits meanwhile,
    a second press starts nothing, and only the snapshot's state is marked saved."""
    import json
    import threading

    from lnq_napari.workspace.autosave import autosave_parent

    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, save = widgets["Review"], widgets["Save"]
    qtbot.waitUntil(lambda: review.suggesting is None, timeout=30000)  # its suggestions would redo the status
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    _paint(nodes, 8)
    snapshot, held = np.array(nodes.data, copy=True), _HeldSave(monkeypatch)
    with qtbot.waitSignal(save.saved, timeout=30000) as ended:
        worker = save.save()
        assert worker is not None and session.saving is worker
        assert not save.save_button.isEnabled() and save.status.text() == "saving ..."
        assert save.save() is None  # a second press (a key, another panel) starts no second save
        _paint(nodes, 9)  # the viewer takes edits while it runs
        assert save.status.text() == "saving ..."
        held.release.set()
    v1 = ended.args[0]
    assert len(held.threads) == 1 and held.threads[0] is not threading.main_thread()
    assert save.save_button.isEnabled() and save.status.text().startswith("saved v")
    version = v1.name.split(".")[0]
    assert np.array_equal(workspace.read_labels(session.case, version).array, (snapshot > 0).astype(np.uint8))
    assert session.unsaved and session.parent_version == version  # the edit made meanwhile is not saved
    assert review.open_case(second) is None and "unsaved edits" in review.status.text()
    session.undo()  # back to the snapshot: saved
    assert not session.unsaved
    session.redo()
    assert session.unsaved
    path = session.autosaver.path  # autosaved again, on top of the version saved
    qtbot.waitUntil(lambda: path.exists() and autosave_parent(path) == version, timeout=20000)
    held.release.set()
    v2 = save_and_wait(save)
    newer = v2.name.split(".")[0]
    assert np.array_equal(workspace.read_labels(session.case, newer).array, (nodes.data > 0).astype(np.uint8))
    assert json.loads(v2.with_name(f"{newer}.json").read_text())["parent"] == version
    assert not session.unsaved and review.open_case(second) == workspace.ct_path(second)


def test_a_save_that_fails_in_its_worker_says_why_and_marks_nothing_saved(
        make_napari_viewer, qtbot, workspace, autosave_dir, monkeypatch, save_and_wait):
    import threading

    from lnq_napari import api
    from lnq_napari.errors import LNQError

    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    save = widgets["Save"]
    qtbot.waitUntil(lambda: widgets["Review"].suggesting is None, timeout=30000)  # they redo the status
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    _paint(nodes, 8)
    parent, versions, journal = session.parent_version, workspace.versions(session.case), workspace.journal()
    threads = []

    def failing(error: Exception):
        def save_labels(*args, **kwargs):
            threads.append(threading.current_thread())
            raise error
        return save_labels

    monkeypatch.setattr(api, "save_labels", failing(LNQError("the disk is full; free some space")))
    assert save_and_wait(save) is None
    assert save.status.text() == "not saved: the disk is full; free some space"
    assert threads[-1] is not threading.main_thread() and save.save_button.isEnabled()
    monkeypatch.setattr(api, "save_labels", failing(ValueError("an unexpected bug")))  # said too, not lost
    assert save_and_wait(save) is None and save.status.text() == "not saved: ValueError: an unexpected bug"
    assert session.unsaved and session.parent_version == parent and session.saving is None
    assert workspace.versions(session.case) == versions and workspace.journal() == journal  # no review line
    assert widgets["Review"].open_case(second) is None and "unsaved edits" in widgets["Review"].status.text()


def test_the_next_case_opened_while_a_save_runs_waits_for_it(make_napari_viewer, workspace, autosave_dir,
                                                            monkeypatch):
    """Save, then at once the next case (Shift+S, Shift+Enter): the case opens once the save ends (it was
    refused as unsaved while the save ran)."""
    from qtpy.QtCore import QTimer

    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, save = widgets["Review"], widgets["Save"]
    nodes = viewer.layers["nodes"]
    session, first = nodes.metadata["lnq_session"], nodes.metadata["lnq_session"].case
    _paint(nodes, 8)
    before, held = len(workspace.versions(first)), _HeldSave(monkeypatch)
    assert save.save() is not None
    QTimer.singleShot(300, held.release.set)  # the save ends while the case waits for it
    assert review.open_case(second) == workspace.ct_path(second), review.status.text()
    assert len(workspace.versions(first)) == before + 1 and not session.unsaved and session.saving is None
    assert viewer.layers["nodes"].metadata["lnq_session"].case == second


def test_closing_the_viewer_while_a_save_runs_keeps_the_save(make_napari_viewer, qtbot, workspace,
                                                             autosave_dir, monkeypatch):
    viewer, widgets, _ = _first_case_docked(make_napari_viewer, workspace)
    nodes = viewer.layers["nodes"]
    case = nodes.metadata["lnq_session"].case
    session = nodes.metadata["lnq_session"]
    _paint(nodes, 8)
    before, reviews = len(workspace.versions(case)), len(workspace.journal("review"))
    held = _HeldSave(monkeypatch)
    assert widgets["Save"].save() is not None
    viewer.close()  # the widgets go while the save runs
    held.release.set()
    qtbot.waitUntil(lambda: session.saving is None, timeout=30000)  # no error in its callbacks either
    assert len(workspace.versions(case)) == before + 1 and len(workspace.journal("review")) == reviews + 1
    saved = workspace.latest_labels(case, "correction").array
    assert np.array_equal(saved, (nodes.data > 0).astype(np.uint8))


def test_a_case_is_saved_into_the_workspace_it_was_opened_from(make_napari_viewer, workspace, tmp_path,
                                                                autosave_dir, save_and_wait):
    """The panel made for one workspace, the Review field pointed at another over the same data: Save
    wrote the case's labels (and its review line) into the panel's workspace."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    other = Workspace.init(tmp_path / "other", workspace.root.parent / "data")
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=other)
    review, save = widgets["Review"], widgets["Save"]
    review.form.workspace.value = workspace.root
    case = workspace.case_ids()[0]
    before = {w.root: len(w.label_store(case).versions()) for w in (workspace, other)}
    assert review.open_case(case) == workspace.ct_path(case), review.status.text()
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    saved = save_and_wait(save)
    assert saved is not None and Path(saved).is_relative_to(workspace.root)
    assert len(workspace.label_store(case).versions()) == before[workspace.root] + 1
    assert len(other.label_store(case).versions()) == before[other.root]


def test_rounds_plot_spans_enough_dice_and_counts_false_nodes_from_zero(qtbot):
    """One round at Dice 0.9566 beside its parent's 0.9568 filled the whole axis (a clear drop to the eye)
    and the false-node axis ran below 0."""
    from lnq_napari.plugin.widgets.models import DICE_SPAN, RoundsPlot
    from lnq_napari.workspace.registry import ModelSummary

    plot = RoundsPlot()
    qtbot.addWidget(plot)
    for dice in (0.9566, 0.999, 0.01):  # near 1 and near 0 the span stays within 0..1
        plot.show_rounds([ModelSummary("m001", None, "", False, 5, "", dice=dice, dice_parent=dice + 0.0002,
                                       false_nodes=0.0, false_nodes_parent=0.0)])
        dice_axes, nodes_axes = plot.figure.axes[:2]
        low, high = dice_axes.get_ylim()
        assert high - low >= DICE_SPAN - 1e-9 and 0.0 <= low < dice < high <= 1.0
        assert nodes_axes.get_ylim()[0] == 0.0


@pytest.mark.parametrize("n", [1, 4, 9, 30])
def test_rounds_plot_labels_stay_apart_however_many_versions(qtbot, n):
    """From four versions on, the version ids under the plot ran into each other (a 150 px plot in a
    250 px panel): every label drawn keeps its own room, the newest version is always named."""
    from lnq_napari.plugin.widgets.models import RoundsPlot
    from lnq_napari.workspace.registry import ModelSummary

    plot = RoundsPlot()
    qtbot.addWidget(plot)
    plot.resize(250, 150)  # the panel's narrowest
    plot.show()
    qtbot.waitExposed(plot)
    models = [ModelSummary(f"m{k + 1:03d}", None, "", False, 5, "", dice=0.8 + k / 100, dice_parent=0.8,
                           false_nodes=1.0, false_nodes_parent=1.0) for k in range(n)]
    plot.show_rounds(models)
    plot.canvas.draw()
    renderer = plot.figure.canvas.get_renderer()
    for ax in plot.figure.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert labels and labels[-1].get_text().endswith(str(n))
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        assert all(a.x1 + 2 < b.x0 for a, b in zip(boxes, boxes[1:])), [t.get_text() for t in labels]
        assert min(n, 3) <= len(labels) <= 4  # as many as fit


def test_a_reopened_correction_keeps_its_marks_rejections_and_parent_through_the_next_save(
        make_napari_viewer, workspace, tmp_path, autosave_dir, save_and_wait):
    """Saved from a case opened by Review, a correction named the newest version at save time its parent
    (a prediction stored meanwhile by another process, one the reviewer never saw) and no model version;
    a reopened correction lost its marked nodes and rejected suggestions on the next Save."""
    from lnq_napari.interact import NodeMark, Rejection
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    base = ws.read_labels(case, ws.latest_version(case)["version"])
    predicted = ws.add_label_version(case, base, "prediction", model_version="m001")
    mark, rejection = NodeMark.at((8, 30, 30)).to_dict(), Rejection.of((8, 10, 10), 500.0).to_dict()
    corrected = ws.add_label_version(case, base, "correction", model_version="m001", parent=predicted,
                                     marked=[mark], rejected=[rejection])
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    assert widgets["Review"].open_case(case) == ws.ct_path(case)
    session = viewer.layers["nodes"].metadata["lnq_session"]
    assert session.marks() == [mark] and session.rejections() == [rejection]
    ws.add_label_version(case, base, "prediction", model_version="m002")  # another process, meanwhile
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert save_and_wait(widgets["Save"]) is not None
    info = ws.latest_version(case, "correction")
    assert (info["parent"], info["model_version"]) == (corrected, "m001")
    assert info["marked"] == [mark] and info["rejected"] == [rejection]
    nodes.data_setitem((np.array([8]), np.array([22]), np.array([22])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert save_and_wait(widgets["Save"]) is not None
    assert ws.latest_version(case, "correction")["parent"] == info["version"]  # the chain goes on


def test_edits_autosaved_before_a_crash_come_back_when_the_case_opens_again(make_napari_viewer, workspace,
                                                                            tmp_path, autosave_dir, crash):
    """Opening a case after a crash loaded its newest version without a word, and the first edit rewrote
    the autosave that held the unsaved ones."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    first, second = ws.case_ids()[:2]
    viewer = make_napari_viewer()
    review = dock_widgets(viewer, workspace=ws)["Review"]
    assert review.open_case(first) is not None
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    edited = nodes.data.copy()
    session = nodes.metadata["lnq_session"]
    assert session.mark_node_at(viewer, (8, 30, 30))
    marks = session.marks()
    assert session.autosaver.flush() is not None
    crash(session)  # the edits never saved
    viewer.layers.clear()

    again = make_napari_viewer()
    review = dock_widgets(again, workspace=ws)["Review"]
    assert review.open_case(first) is not None
    assert "with the unsaved edits autosaved in" in review.status.text()
    restored = again.layers["nodes"]
    assert np.array_equal(restored.data > 0, edited > 0)
    assert restored.metadata["lnq_session"].marks() == marks  # the marks autosaved with them
    assert review.open_case(second) is None and "unsaved edits" in review.status.text()
    assert again.layers["nodes"] is restored


def test_edits_autosaved_after_the_workspace_moved_go_beside_the_data_and_come_back_from_its_new_place(
        make_napari_viewer, workspace, tmp_path, monkeypatch):
    """Renamed while a case was open, the workspace got its autosave at the old path (its folders made
    again there, an empty shell), and the edits were missing wherever it went."""
    import shutil

    import napari.utils.notifications

    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    monkeypatch.delenv("LNQ_NAPARI_AUTOSAVE_DIR", raising=False)
    told = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", told.append)
    data = shutil.copytree(workspace.root.parent / "data", tmp_path / "data")  # the edits go in there
    ws = Workspace.init(tmp_path / "ws", data)
    case = ws.case_ids()[0]
    viewer = make_napari_viewer()
    review = dock_widgets(viewer, workspace=ws)["Review"]
    assert review.open_case(case) is not None
    ws.root.rename(tmp_path / "moved")
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    edited = nodes.data.copy()
    session = nodes.metadata["lnq_session"]
    path = session.autosaver.flush()
    assert not (tmp_path / "ws").exists() and path.is_relative_to(data)
    nodes.data_setitem((np.array([8]), np.array([22]), np.array([22])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    edited = nodes.data.copy()
    assert session.autosaver.flush() == path
    assert len(told) == 1 and "is gone from there" in told[0] and str(path.parent) in told[0]  # told once
    viewer.layers.clear()

    again = make_napari_viewer()
    review = dock_widgets(again, workspace=Workspace.open(tmp_path / "moved"))["Review"]
    assert review.open_case(case) is not None
    assert "with the unsaved edits autosaved in" in review.status.text()
    assert np.array_equal(again.layers["nodes"].data > 0, edited > 0)


def test_another_workspace_drops_the_queue_ranked_in_the_last(make_napari_viewer, qtbot, workspace, tmp_path):
    from lnq_napari.workspace import Workspace

    other = Workspace.init(tmp_path / "other", workspace.root.parent / "data")
    review = ReviewWidget(make_napari_viewer(), workspace=workspace)
    assert review.rank() is not None
    _wait(qtbot, review)
    assert review.rows and review.queue.count() == len(review.rows)
    review.form.workspace.value = other.root
    assert review.rows == [] and review.queue.count() == 0
    assert review.open_next() is None and "rank the cases first" in review.status.text()


def test_a_case_opened_from_its_original_labels_saves_with_them_as_parent(make_napari_viewer, workspace,
                                                                          tmp_path, autosave_dir,
                                                                          save_and_wait):
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    original = ws.latest_version(case)
    assert original["source"] == "original"
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    assert widgets["Review"].open_case(case) is not None
    ws.add_label_version(case, ws.read_labels(case, original["version"]), "prediction", model_version="m9")
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert save_and_wait(widgets["Save"]) is not None
    assert ws.latest_version(case, "correction")["parent"] == original["version"]


def test_a_correction_opens_before_a_prediction_stored_above_it_while_it_was_written(
        make_napari_viewer, workspace, tmp_path):
    """A prediction `next` stored while a reviewer's correction was being written took the higher number,
    and the case opened with the raw prediction, not the reviewer's work."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    base = ws.read_labels(case, ws.latest_version(case)["version"])
    corrected = np.zeros_like(np.asarray(base.array))
    corrected[6:10, 20:26, 20:26] = 1
    correction = ws.add_label_version(case, base.with_array(corrected), "correction")
    ws.add_label_version(case, base, "prediction", model_version="m001")  # numbered above it
    viewer = make_napari_viewer()
    review = dock_widgets(viewer, workspace=ws)["Review"]
    assert review.open_case(case) is not None
    assert f"(correction {correction})" in review.status.text()
    assert np.array_equal(viewer.layers["nodes"].data > 0, corrected > 0)


def _edit_and_crash(viewer, review, case):
    """Open ``case``, paint a voxel, write the autosave, close the layers (a crash); the edited labels."""
    assert review.open_case(case) is not None
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    edited = nodes.data.copy()
    assert nodes.metadata["lnq_session"].autosaver.flush() is not None
    return edited


def test_autosaved_edits_come_back_after_another_process_saved_a_newer_version(
        make_napari_viewer, workspace, tmp_path, autosave_dir, save_and_wait):
    """Edits autosaved before a crash were not offered once `next` (or a second reviewer) had stored a
    newer version of the case: the first edit after opening overwrote them."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    original = ws.latest_version(case)["version"]
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    edited = _edit_and_crash(viewer, widgets["Review"], case)
    viewer.layers.clear()
    newer = ws.add_label_version(case, ws.read_labels(case, original), "prediction", model_version="m9")
    assert widgets["Review"].open_case(case) is not None
    said = widgets["Review"].status.text()
    assert "with the unsaved edits autosaved in" in said and f"prediction {newer} was saved since" in said
    assert np.array_equal(viewer.layers["nodes"].data > 0, edited > 0)
    assert save_and_wait(widgets["Save"]) is not None
    assert ws.latest_version(case, "correction")["parent"] == original  # made on what the reviewer saw


def test_autosaved_edits_that_were_saved_are_not_offered_after_another_reviewers_save(
        make_napari_viewer, workspace, tmp_path, autosave_dir, save_and_wait):
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    _edit_and_crash(viewer, widgets["Review"], case)
    saved = save_and_wait(widgets["Save"])
    assert saved is not None
    viewer.layers.clear()
    mine = ws.latest_version(case, "correction")
    theirs = ws.add_label_version(case, ws.read_labels(case, mine["version"]).with_array(
        np.zeros_like(np.asarray(ws.read_labels(case, mine["version"]).array))), "correction")
    assert widgets["Review"].open_case(case) is not None
    said = widgets["Review"].status.text()
    assert said.startswith(f"opened {case} (correction {theirs})") and "unsaved edits" not in said


def test_rank_with_every_uncorrected_ct_damaged_says_why(make_napari_viewer, qtbot, workspace, tmp_path):
    """The status said "the warnings say why" and showed none (they were collected, then dropped)."""
    import shutil

    from lnq_napari.workspace import Workspace

    data = Path(shutil.copytree(workspace.root.parent / "data", tmp_path / "data"))  # the shared one stays
    damaged = Workspace.init(tmp_path / "ws", data)
    for case in damaged.case_ids():
        damaged.ct_path(case).write_bytes(b"NRRD0004\ndamaged")
    review = ReviewWidget(make_napari_viewer(), workspace=damaged)
    assert review.rank() is not None
    _wait(qtbot, review)
    text = review.status.text()
    assert "no case ranked" in text and "left out of the ranking" in text


def test_rank_leaves_out_a_ct_not_in_hu_by_name_and_ranks_the_rest(make_napari_viewer, qtbot, workspace,
                                                                    tmp_path):
    """One CT of stored values (HU + 1024) stopped the whole ranking with an error naming no case."""
    import shutil

    from lnq_napari.io.readers import read_volume, write_volume
    from lnq_napari.workspace import Workspace

    data = Path(shutil.copytree(workspace.root.parent / "data", tmp_path / "data"))  # the shared one stays
    ws = Workspace.init(tmp_path / "ws", data)
    ws.activate(ws.adopt_model(workspace.active_model()["path"]))  # the tiny model: fast
    bad, *rest = ws.case_ids()
    ct = read_volume(ws.ct_path(bad))
    write_volume(ws.ct_path(bad), ct.with_array((np.asarray(ct.array, np.int32) + 1024).astype(np.int16)))
    review = ReviewWidget(make_napari_viewer(), workspace=ws)
    assert review.rank() is not None
    _wait(qtbot, review)
    assert sorted(r.case for r in review.rows) == sorted(rest)
    assert f"{bad} left out of the ranking" in review.status.text()


def test_a_saved_mark_survives_opening_another_case_and_coming_back(make_napari_viewer, qtbot, workspace,
                                                                    autosave_dir, save_and_wait):
    """Opening the next case removed the marks layer, which the closing case took for the user deleting its
    marks: it autosaved without them, and reopening offered that autosave as unsaved edits (mark gone)."""
    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, save = widgets["Review"], widgets["Save"]
    first = workspace.case_ids()[-1]
    session = viewer.layers["nodes"].metadata["lnq_session"]
    assert session.mark_node_at(viewer, (8, 30, 30))
    marks = session.marks()
    assert save_and_wait(save) is not None and not session.unsaved
    assert review.open_case(second) == workspace.ct_path(second), review.status.text()
    qtbot.wait(1500)  # any autosave of the closed case would be written by now
    assert review.open_case(first) == workspace.ct_path(first), review.status.text()
    again = viewer.layers["nodes"].metadata["lnq_session"]
    assert again.marks() == marks and not again.unsaved and "autosaved" not in review.status.text()


def test_opening_a_case_writes_no_autosave_until_an_edit(make_napari_viewer, qtbot, workspace, autosave_dir):
    """The suggestions' arrival autosaved the opened labels: after a roll-back the rolled-back model's
    prediction came back as "unsaved edits" (and a Save stored it as a reader's correction)."""
    viewer, widgets, _ = _first_case_docked(make_napari_viewer, workspace)
    review = widgets["Review"]
    qtbot.waitUntil(lambda: review.suggesting is None, timeout=60000)
    qtbot.wait(500)
    assert not list(autosave_dir.glob("*.autosave.seg.nrrd"))
    nodes = viewer.layers["nodes"]
    with nodes.block_history():
        nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    qtbot.waitUntil(lambda: bool(list(autosave_dir.glob("*.autosave.seg.nrrd"))), timeout=10000)


def test_an_autosave_of_another_workspace_is_not_offered(make_napari_viewer, qtbot, workspace, tmp_path,
                                                         autosave_dir):
    """One $LNQ_NAPARI_AUTOSAVE_DIR for every workspace: workspace B's case opened with the edits
    autosaved for the same case name in workspace A."""
    from lnq_napari.workspace import Workspace

    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    first = workspace.case_ids()[-1]
    nodes = viewer.layers["nodes"]
    with nodes.block_history():
        nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    qtbot.waitUntil(lambda: bool(list(autosave_dir.glob(f"{first}.*autosave.seg.nrrd"))), timeout=10000)
    other = Workspace.init(tmp_path / "other", workspace.root.parent / "data")
    review = ReviewWidget(make_napari_viewer(), workspace=other)
    assert review.open_case(first) == other.ct_path(first), review.status.text()
    assert "autosaved" not in review.status.text()


def test_a_case_of_a_dicom_download_is_saved_under_its_workspace_id(make_napari_viewer, tmp_path,
                                                                    autosave_dir, save_and_wait):
    """A download's case id is its path below the data folder (MED_001_study_2-CT), not its series
    folder's name (2-CT): Save of a case opened from the queue said "case '2-CT' is not in workspace", and
    the queue stayed stuck on its unsaved edits."""
    import shutil

    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    series = Path(__file__).parents[1] / "data" / "dcmqi" / "ct-3slice"
    shutil.copytree(series, tmp_path / "download" / "MED_001" / "study" / "2-CT")
    ws = Workspace.init(tmp_path / "ws", tmp_path / "download")
    (case,) = ws.case_ids()
    assert case == "MED_001_study_2-CT"
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    assert widgets["Review"].open_case(case) == ws.ct_path(case), widgets["Review"].status.text()
    (ct,) = viewer.layers  # no labels of its own: the reviewer draws a new layer on the CT
    mask = np.zeros(ct.data.shape, np.int32)
    mask[1, 10:20, 10:20] = 1
    viewer.add_labels(mask, name="nodes", scale=ct.scale, translate=ct.translate)
    save = widgets["Save"]
    saved = save_and_wait(save)
    assert saved is not None, save.status.text()
    assert Path(saved).is_relative_to(ws.root) and ws.latest_version(case, "correction") is not None


def _edited_first_case(make_napari_viewer, qtbot, workspace):
    """The first case docked, its suggestions in, one slice painted: ``(Save widget, node session)``."""
    viewer, widgets, _ = _first_case_docked(make_napari_viewer, workspace)
    qtbot.waitUntil(lambda: widgets["Review"].suggesting is None, timeout=30000)
    _paint(viewer.layers["nodes"], 8)
    return widgets["Save"], viewer.layers["nodes"].metadata["lnq_session"]


@pytest.mark.parametrize("where", ["dicom_seg", "log_review"])
def test_an_error_after_the_version_is_written_leaves_it_saved(make_napari_viewer, qtbot, workspace,
                                                                 autosave_dir, monkeypatch, save_and_wait,
                                                                 where):
    """The version is written, then its DICOM SEG (a disk full) or its journal line fails with another
    error than LNQError: Save said "not saved", left the session unsaved on the old parent (a second
    Save forked the versions)."""
    from lnq_napari import api
    from lnq_napari.plugin.widgets import save as save_module

    save, session = _edited_first_case(make_napari_viewer, qtbot, workspace)
    before = len(workspace.versions(session.case))

    error = OSError(28, "No space left on device") if where == "dicom_seg" else ValueError("not JSON")

    def fails(*args, **kwargs):
        raise error

    if where == "dicom_seg":
        monkeypatch.setattr(save_module, "is_dicom_path", lambda path: True)
        monkeypatch.setattr(api, "export_dicom_seg", fails)
    else:
        monkeypatch.setattr(save_module, "log_review", fails)
    path = save_and_wait(save)
    after = workspace.versions(session.case)
    assert len(after) == before + 1 and path is not None
    assert save.status.text().startswith(f"saved {after[-1]['version']}")
    assert str(error) in save.status.text()
    assert not session.unsaved and session.parent_version == after[-1]["version"]


def test_closing_another_viewer_while_a_save_runs_leaves_it_saved(make_napari_viewer, qtbot, workspace,
                                                                  autosave_dir, monkeypatch):
    """napari registers a worker with the current viewer's window, which cancels it when closed: the
    version was written, yet Save said "not saved" (a second viewer in a notebook)."""
    save, session = _edited_first_case(make_napari_viewer, qtbot, workspace)
    other = make_napari_viewer()
    before = len(workspace.versions(session.case))
    held = _HeldSave(monkeypatch)
    with qtbot.waitSignal(save.saved, timeout=30000) as ended:
        assert save.save() is not None
        other.close()
        held.release.set()
    assert len(workspace.versions(session.case)) == before + 1
    assert ended.args[0] is not None and not session.unsaved


def test_the_review_time_journaled_ends_when_save_is_pressed(make_napari_viewer, qtbot, workspace,
                                                             autosave_dir, monkeypatch):
    """The journal's time per case counted the wait for the workspace lock after Save was pressed."""
    save, session = _edited_first_case(make_napari_viewer, qtbot, workspace)
    held = _HeldSave(monkeypatch)
    with qtbot.waitSignal(save.saved, timeout=30000):
        assert save.save() is not None
        at_press = session.stats.seconds()
        qtbot.wait(2000)  # the save held (as by another process's lock)
        held.release.set()
    assert workspace.journal("review")[-1]["seconds"] < at_press + 1.0


def test_the_viewer_s_autosave_names_its_workspace_by_an_absolute_path(tmp_path, monkeypatch):
    """A workspace opened by a relative path was recorded so: read from another folder (one shared
    $LNQ_NAPARI_AUTOSAVE_DIR), the autosave was taken for another workspace's and its edits not offered."""
    from lnq_napari.workspace.autosave import autosave_target

    monkeypatch.chdir(tmp_path)
    assert autosave_target(None, "ws", None).fields()["lnq_workspace"] == str(tmp_path / "ws")
    assert autosave_target(None, None).fields()["lnq_workspace"] == ""


def _open_and_paint(make_napari_viewer, ws, case, move):
    """Open ``case`` from ``ws`` in a viewer, ``move()`` the workspace, paint one voxel; the session."""
    from lnq_napari.plugin.app import dock_widgets

    viewer = make_napari_viewer()
    review = dock_widgets(viewer, workspace=ws)["Review"]
    assert review.open_case(case) is not None
    move()
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    return viewer, nodes.metadata["lnq_session"]


def _offered(make_napari_viewer, ws, case) -> bool:
    """Whether opening ``case`` from ``ws`` in a new viewer offers unsaved edits."""
    from lnq_napari.plugin.app import dock_widgets

    review = dock_widgets(make_napari_viewer(), workspace=ws)["Review"]
    assert review.open_case(case) is not None
    return "with the unsaved edits autosaved in" in review.status.text()


@pytest.fixture
def own_data(workspace, tmp_path, monkeypatch):
    """A copy of the data (autosaves of a workspace gone from its path go in there), no shared autosave."""
    import shutil

    monkeypatch.delenv("LNQ_NAPARI_AUTOSAVE_DIR", raising=False)
    return shutil.copytree(workspace.root.parent / "data", tmp_path / "data")


def test_edits_autosaved_after_the_workspace_moved_are_not_offered_to_another_workspace_of_the_case(
        make_napari_viewer, own_data, tmp_path):
    """Workspace A renamed while its case was open: another workspace over the same data opening that case
    was offered A's edits (A's old path was empty, and that was all that was asked)."""
    from lnq_napari.workspace import Workspace

    ws, other = Workspace.init(tmp_path / "ws", own_data), Workspace.init(tmp_path / "other", own_data)
    case = ws.case_ids()[0]
    viewer, session = _open_and_paint(make_napari_viewer, ws, case,
                                      lambda: ws.root.rename(tmp_path / "moved"))
    assert session.autosaver.flush().is_relative_to(own_data)
    viewer.layers.clear()
    assert not _offered(make_napari_viewer, other, case)
    assert _offered(make_napari_viewer, Workspace.open(tmp_path / "moved"), case)


def test_edits_autosaved_after_the_workspace_moved_come_back_once_it_is_moved_back(
        make_napari_viewer, own_data, tmp_path):
    """Renamed while its case was open and renamed back: the edits autosaved meanwhile were never offered
    (the old path held a workspace again: they were taken for another's)."""
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", own_data)
    case = ws.case_ids()[0]
    viewer, session = _open_and_paint(make_napari_viewer, ws, case,
                                      lambda: ws.root.rename(tmp_path / "moved"))
    session.autosaver.flush()
    (tmp_path / "moved").rename(ws.root)
    viewer.layers.clear()
    assert _offered(make_napari_viewer, Workspace.open(ws.root), case)


def test_a_workspace_moved_back_and_moved_again_while_its_case_is_open_is_told_again(
        make_napari_viewer, own_data, tmp_path, monkeypatch):
    """The user was told once per case that the edits go elsewhere: moved back, they went into the
    workspace again, and moved once more, nothing was said."""
    import napari.utils.notifications

    from lnq_napari.workspace import Workspace

    told = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", told.append)
    ws = Workspace.init(tmp_path / "ws", own_data)
    viewer, session = _open_and_paint(make_napari_viewer, ws, ws.case_ids()[0],
                                      lambda: ws.root.rename(tmp_path / "moved"))
    session.autosaver.flush()
    (tmp_path / "moved").rename(ws.root)
    session.autosaver.schedule()
    assert session.autosaver.flush().is_relative_to(ws.root)  # back: into the workspace again
    ws.root.rename(tmp_path / "moved")
    session.autosaver.schedule()
    assert not session.autosaver.flush().is_relative_to(ws.root)
    assert len(told) == 2 and all("is gone from there" in t for t in told)


def test_a_case_open_when_its_workspace_moved_and_another_was_made_there_autosaves_and_saves_not_into_it(
        make_napari_viewer, own_data, tmp_path, save_and_wait):
    """Renamed while its case was open and a new workspace made at its old path: the case's autosaves and
    its Save went into the new workspace."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", own_data)
    case = ws.case_ids()[0]

    def replace():
        ws.root.rename(tmp_path / "moved")
        Workspace.init(ws.root, own_data)

    viewer, session = _open_and_paint(make_napari_viewer, ws, case, replace)
    assert not session.autosaver.flush().is_relative_to(ws.root)
    save = dock_widgets(viewer, workspace=ws)["Save"]
    assert save_and_wait(save) is None and "is gone from there" in save.status.text()
    assert [v["version"] for v in Workspace.open(ws.root).versions(case)] == ["v001"]
    viewer.layers.clear()
    assert not _offered(make_napari_viewer, Workspace.open(ws.root), case)
    assert _offered(make_napari_viewer, Workspace.open(tmp_path / "moved"), case)


def test_a_save_while_another_workspace_is_made_at_the_path_after_save_is_pressed_saves_not_into_it(
        make_napari_viewer, own_data, tmp_path, save_and_wait, monkeypatch):
    """The Save widget checked the workspace's identity, then ``save_labels`` opened the path afresh: a
    workspace renamed and another made at its path in between took the version."""
    import lnq_napari.plugin.widgets.save as module
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", own_data)
    case, real = ws.case_ids()[0], module.node_numbers

    def replaced_first(*args, **kwargs):  # counting the nodes to save: after any check in the widget
        monkeypatch.setattr(module, "node_numbers", real)
        ws.root.rename(tmp_path / "moved")
        Workspace.init(ws.root, own_data)
        return real(*args, **kwargs)

    viewer, session = _open_and_paint(make_napari_viewer, ws, case, lambda: None)
    monkeypatch.setattr(module, "node_numbers", replaced_first)
    save = dock_widgets(viewer, workspace=ws)["Save"]
    assert save_and_wait(save) is None and "is gone from there" in save.status.text()
    assert [v["version"] for v in Workspace.open(ws.root).versions(case)] == ["v001"]
    assert [e["action"] for e in Workspace.open(ws.root).journal()] == ["init"]
    session.autosaver.schedule()  # an autosave ends after the refusal (under load it did at random)
    assert not session.autosaver.flush().is_relative_to(ws.root)  # the edits kept aside, for the moved one
    said = save.status.text()  # why the Save was refused stays, above where the edits are now
    assert said.startswith("not saved: ") and "is gone from there" in said and "autosaved to" in said
    viewer.layers.clear()
    assert not _offered(make_napari_viewer, Workspace.open(ws.root), case)
    assert _offered(make_napari_viewer, Workspace.open(tmp_path / "moved"), case)


def test_a_save_refused_as_the_workspace_was_gone_is_not_said_once_it_is_back_and_autosaved_into(
        make_napari_viewer, own_data, tmp_path, save_and_wait):
    """Moved, Save refused, moved back: an autosave into it ended and the status read "not saved: the
    workspace ... is gone from there" above "autosaved to <the workspace>/autosave/..."."""
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", own_data)
    viewer, session = _open_and_paint(make_napari_viewer, ws, ws.case_ids()[0], lambda: None)
    assert session.autosaver.flush().is_relative_to(ws.root)
    ws.root.rename(tmp_path / "moved")
    save = dock_widgets(viewer, workspace=ws)["Save"]
    assert save_and_wait(save) is None and "is gone from there" in save.status.text()
    (tmp_path / "moved").rename(ws.root)
    session.notify()  # back, but no autosave went into it since (the last one went before it moved)
    assert save.status.text().startswith("not saved: ")
    session.autosaver.schedule()
    assert session.autosaver.flush().is_relative_to(ws.root)
    assert "gone" not in save.status.text() and "autosaved to" in save.status.text()
    assert save_and_wait(save) is not None


def test_an_autosave_when_the_workspace_cannot_be_read_is_said_without_a_traceback(
        make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch):
    """A stale network share (ESTALE) under the workspace: the autosave timer raised at every edit. It is
    taken for still there: the write goes to its autosave folder (a failure there is said in one line)."""
    import errno
    import os

    import napari.utils.notifications

    from lnq_napari.workspace import Workspace

    told = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", told.append)
    ws = Workspace.init(tmp_path / "ws", own_data)
    real = os.stat

    def stale(path, *args, **kwargs):
        if str(path).startswith(str(ws.root)):
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *args, **kwargs)

    viewer, session = _open_and_paint(make_napari_viewer, ws, ws.case_ids()[0], lambda: None)
    session.autosaver._pending = True
    with monkeypatch.context() as share:  # stale while the timer's slot runs (other panels read it too)
        share.setattr(os, "stat", stale)
        session.autosaver._on_timeout()  # what the Qt timer calls
    qtbot.waitUntil(lambda: session.autosaver._worker is None, timeout=20000)
    assert session.autosaver.last_error is None and session.autosaver.last_path.is_relative_to(ws.root)
    assert not told


def _autosaving(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch, interval_ms: int):
    """A workspace case opened, painted and autosaved, its autosave timer at ``interval_ms``, the warnings
    napari would show collected: (viewer, session, the workspace, the warnings)."""
    import napari.utils.notifications

    from lnq_napari.workspace import Workspace

    told = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", told.append)
    ws = Workspace.init(tmp_path / "ws", own_data)
    viewer, session = _open_and_paint(make_napari_viewer, ws, ws.case_ids()[0], lambda: None)
    saver = session.autosaver
    qtbot.waitUntil(lambda: saver._worker is None and not saver._pending, timeout=20000)
    saver._timer.setInterval(interval_ms)
    return viewer, session, ws, told


def test_an_autosave_that_keeps_failing_is_said_once_and_the_edits_are_written_once_it_works(
        make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch):
    """One failing autosave (a share gone, no permission) repeated its warning at every timeout, every 2 s,
    after a single edit."""
    import lnq_napari.plugin._autosave as autosaver

    viewer, session, ws, told = _autosaving(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch, 50)
    real = autosaver.autosave_target

    def failing(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere")

    monkeypatch.setattr(autosaver, "autosave_target", failing)
    writes = session.autosaver.writes
    _paint_one_more(viewer)
    qtbot.wait(600)  # a dozen timeouts, each trying again
    assert [t for t in told if "autosave failed" in t] == \
        ["lnq-napari autosave failed: [Errno 13] Permission denied: '/somewhere'"]
    monkeypatch.setattr(autosaver, "autosave_target", real)  # the share is back: the edit is kept
    qtbot.waitUntil(lambda: session.autosaver.writes > writes, timeout=5000)


def test_an_autosave_on_a_full_disk_names_the_folder_and_says_to_free_space(
        make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch):
    """A full disk was said as "autosave failed: [Errno 28] No space left on device": not where, nor what
    to do (the write itself names no file; atomic_write now adds it)."""
    import lnq_napari.plugin._autosave as autosaver

    viewer, session, ws, told = _autosaving(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch, 50)
    target = ws.root / "autosave" / "case.autosave.seg.nrrd"

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(autosaver, "write_autosave", full)
    _paint_one_more(viewer)
    qtbot.waitUntil(lambda: any("autosave failed" in t for t in told), timeout=5000)
    (said,) = {t for t in told if "autosave failed" in t}
    assert f"the disk of {target.parent} is full" in said and "free space there" in said, said


def _failing_autosave(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch):
    """A workspace case painted and autosaved, then its autosaves failing (disk full) at a 100 ms interval:
    (viewer, session, the workspace, the interval each failed try waited)."""
    import lnq_napari.plugin._autosave as autosaver

    viewer, session, ws, _ = _autosaving(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch, 100)
    saver = session.autosaver
    calls = []

    def full(*args, **kwargs):
        calls.append(saver._timer.interval())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autosaver, "write_autosave", full)
    monkeypatch.setattr(autosaver, "MAX_RETRY_MS", 400)  # waits no longer than the base 2 s between tries
    return viewer, session, ws, calls


def _paint_one_more(viewer) -> None:
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([9]), np.array([21]), np.array([21])), int(nodes.data.max()) + 1)
    nodes.events.paint()


def test_a_failed_background_autosave_is_tried_again_and_never_said_or_flushed_as_written(
        make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch):
    """A write that failed in the worker (disk full) was not tried again until the next edit: the Save panel
    said "autosaved to" the older file and flush() returned that file without writing the edit."""
    import lnq_napari.plugin._autosave as autosaver
    from lnq_napari.plugin.widgets.save import SaveWidget
    from lnq_napari.workspace.autosave import autosave_fields

    real = autosaver.write_autosave
    viewer, session, _, calls = _failing_autosave(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch)
    saver, save = session.autosaver, SaveWidget(viewer)
    writes = saver.writes
    _paint_one_more(viewer)
    # tried again, no new edit needed (read between tries: while one runs, the edit is the worker's)
    qtbot.waitUntil(lambda: len(calls) >= 3 and saver._worker is None, timeout=5000)
    assert len(calls) < 20  # at the interval, not in a loop
    assert saver._pending and "autosaved to" not in save.status.text()
    assert "autosave failed" in save.status.text()
    with pytest.raises(OSError):  # not the older autosave's path
        saver.flush()
    monkeypatch.setattr(autosaver, "write_autosave", real)  # space freed: the edit is written unasked
    qtbot.waitUntil(lambda: saver.writes > writes, timeout=10000)
    assert saver.last_error is None and not saver._pending
    assert autosave_fields(saver.flush())["lnq_edits"] == str(session.edits)


def test_a_failing_autosave_waits_longer_each_time_and_is_not_said_failed_once_the_edits_are_saved(
        make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch, save_and_wait):
    """A failing autosave was tried every 2 s for as long as it failed (each try copies the labels on the
    GUI thread), and after a Save the panel went on saying the autosave failed: a second Save invited."""
    from lnq_napari.plugin.widgets.save import SaveWidget

    viewer, session, ws, calls = _failing_autosave(make_napari_viewer, own_data, tmp_path, qtbot, monkeypatch)
    saver, save = session.autosaver, SaveWidget(viewer, workspace=ws)
    _paint_one_more(viewer)
    qtbot.waitUntil(lambda: len(calls) >= 3, timeout=5000)
    assert calls[2] > calls[1] > calls[0]  # each failure in a row waits longer
    save_and_wait(save)
    qtbot.waitUntil(lambda: saver.last_error is None, timeout=10000)  # the next timeout finds nothing unsaved
    save._show_state()
    assert "autosave failed" not in save.status.text() and not saver._pending
    assert saver._timer.interval() == saver._interval_ms


def test_a_read_only_workspace_that_then_moves_is_told_both(make_napari_viewer, own_data, tmp_path,
                                                            monkeypatch):
    """One "told once" flag for read-only and moved: a workspace first read-only, then moved, never got
    the warning that it is gone (and where its edits go now)."""
    import napari.utils.notifications

    import lnq_napari.workspace.autosave as autosave
    from lnq_napari.workspace import Workspace

    told = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", told.append)
    ws = Workspace.init(tmp_path / "ws", own_data)
    monkeypatch.setattr(autosave, "_writable", lambda folders: False)  # a read-only mount
    viewer, session = _open_and_paint(make_napari_viewer, ws, ws.case_ids()[0], lambda: None)
    session.autosaver.flush()
    session.autosaver.flush()
    assert [t for t in told if "cannot be written" in t] and not [t for t in told if "is gone" in t]
    ws.root.rename(tmp_path / "moved")
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([9]), np.array([21]), np.array([21])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    session.autosaver.flush()
    assert len([t for t in told if "is gone from there" in t]) == 1
    assert len([t for t in told if "cannot be written" in t]) == 1


def test_a_correction_whose_marks_were_lost_in_a_repair_says_so_and_its_next_save_keeps_them_lost(
        make_napari_viewer, workspace, tmp_path, autosave_dir, save_and_wait):
    """Opened in napari, a repaired correction (``marks_lost``) said nothing and its next Save recorded no
    loss: the fine-tune took what the reviewer had removed as background again."""
    from lnq_napari.interact import NodeMark
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    base = ws.read_labels(case, ws.latest_version(case)["version"])
    predicted = ws.add_label_version(case, base, "prediction", model_version="m001")
    ws.add_label_version(case, base, "correction", model_version="m001", parent=predicted, marks_lost=True)
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    assert widgets["Review"].open_case(case) == ws.ct_path(case)
    assert "the marks of this correction were lost in a repair: mark the nodes again" in \
        widgets["Review"].status.text()
    session = viewer.layers["nodes"].metadata["lnq_session"]
    assert session.mark_node_at(viewer, (8, 30, 30))  # marked again: kept, the old marks still unknown
    assert save_and_wait(widgets["Save"]) is not None
    info = ws.latest_version(case, "correction")
    assert info["marked"] == [NodeMark.at((8, 30, 30)).to_dict()]
    assert info["marks_lost"] is True


def test_a_hand_edited_mark_that_does_not_read_is_dropped_in_one_line_and_recorded_as_lost(
        make_napari_viewer, workspace, tmp_path, autosave_dir, save_and_wait, crash):
    """A ``marked`` entry edited by hand raised a ValueError traceback after the old case's layers were
    gone; the marks layer was never made and the next Save dropped the good marks too, recording nothing."""
    from lnq_napari.interact import NodeMark
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    case = ws.case_ids()[0]
    base = ws.read_labels(case, ws.latest_version(case)["version"])
    predicted = ws.add_label_version(case, base, "prediction", model_version="m001")
    good = NodeMark.at((8, 30, 30)).to_dict()
    bad = {"centre_zyx": [8, 30], "radius_mm": -1}
    corrected = ws.add_label_version(case, base, "correction", model_version="m001", parent=predicted,
                                     marked=[good, bad])
    viewer = make_napari_viewer()
    widgets = dock_widgets(viewer, workspace=ws)
    assert widgets["Review"].open_case(case) == ws.ct_path(case)
    said = widgets["Review"].status.text()
    assert f"1 entry of marked nodes in {corrected}.json cannot be read" in said and "\n" not in said, said
    session = viewer.layers["nodes"].metadata["lnq_session"]
    assert session.marks() == [good]
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    assert session.autosaver.flush() is not None
    crash(session)  # the edits come back from the autosave, the loss with them
    viewer.layers.clear()

    again = make_napari_viewer()
    widgets = dock_widgets(again, workspace=ws)
    assert widgets["Review"].open_case(case) is not None
    assert "with the unsaved edits autosaved in" in widgets["Review"].status.text()
    assert save_and_wait(widgets["Save"]) is not None
    info = ws.latest_version(case, "correction")
    assert info["parent"] == corrected and info["marked"] == [good] and info["marks_lost"] is True


def test_edits_set_aside_by_deleting_the_layer_come_back_in_the_same_window(
        make_napari_viewer, qtbot, workspace, autosave_dir):
    """Deleting the node layer sets its unsaved edits aside (the status says they come back when the case
    opens): its autosave is over then, offered in this window, never said to be another window's."""
    viewer, widgets, _ = _first_case_docked(make_napari_viewer, workspace)
    review, case = widgets["Review"], workspace.case_ids()[-1]
    nodes = viewer.layers["nodes"]
    at = tuple(int(k) for k in np.argwhere(nodes.data == 0)[0])  # (other tests save this case's labels)
    nodes.data_setitem(tuple(np.array([k]) for k in at), int(nodes.data.max()) + 1)
    nodes.events.paint()
    path = nodes.metadata["lnq_session"].autosaver.flush()
    viewer.layers.remove(nodes)
    assert review.open_case(case) == workspace.ct_path(case)
    said = review.status.text()
    assert f"with the unsaved edits autosaved in {path}" in said and "another window" not in said, said
    assert viewer.layers["nodes"].data[at] > 0


def test_a_case_closed_with_its_edits_saved_leaves_no_autosave(make_napari_viewer, qtbot, workspace,
                                                              autosave_dir, save_and_wait):
    """Each viewer session autosaves to its own file: one closed with nothing unsaved removes it (all it
    holds was saved), so that files do not pile up one per session."""
    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([8]), np.array([20]), np.array([20])), int(nodes.data.max()) + 1)
    nodes.events.paint()
    path = nodes.metadata["lnq_session"].autosaver.flush()
    assert path.is_file() and save_and_wait(widgets["Save"]) is not None
    assert widgets["Review"].open_case(second) == workspace.ct_path(second)
    qtbot.wait(500)
    assert not path.exists() and not list(autosave_dir.glob(f"{path.name}*"))


def _paint_unlabelled(viewer) -> None:
    """Paint a voxel no node holds yet (the module's workspace keeps what earlier tests saved)."""
    nodes = viewer.layers["nodes"]
    z, y, x = (int(i[0]) for i in np.nonzero(nodes.data[8:9] == 0))
    nodes.data_setitem((np.array([8 + z]), np.array([y]), np.array([x])), int(nodes.data.max()) + 1)
    nodes.events.paint()


def test_a_session_closed_any_way_with_nothing_unsaved_leaves_no_autosave(
        make_napari_viewer, qtbot, workspace, tmp_path, autosave_dir, save_and_wait):
    """Edit, Save, then delete the node layer or close the viewer: the session's autosave and lock go
    (they piled up two a session, and a saved leftover hid an older crash's edits). A workspace of its
    own: a case with marks is edited by the viewer's closing (its marks layer goes first)."""
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", workspace.root.parent / "data")
    for close in ("layer", "viewer"):
        viewer, widgets, _ = _first_case_docked(make_napari_viewer, ws)
        _paint_unlabelled(viewer)
        path = viewer.layers["nodes"].metadata["lnq_session"].autosaver.flush()
        assert path.is_file() and save_and_wait(widgets["Save"]) is not None
        if close == "layer":
            viewer.layers.remove(viewer.layers["nodes"])
        else:
            viewer.close()
        qtbot.wait(300)
        assert not list(autosave_dir.glob(f"{path.name}*")), close


def test_a_crash_s_autosave_and_stray_locks_go_once_its_edits_are_saved(
        make_napari_viewer, qtbot, workspace, autosave_dir, crash, save_and_wait):
    """The crash's file, restored and Saved, is removed when the case opens again; so is a lock file left
    without its autosave."""
    viewer, widgets, second = _first_case_docked(make_napari_viewer, workspace)
    review, first = widgets["Review"], workspace.case_ids()[-1]
    _paint_unlabelled(viewer)
    session = viewer.layers["nodes"].metadata["lnq_session"]
    crashed = session.autosaver.flush()
    crash(session)
    viewer.layers.clear()
    assert review.open_case(first) is not None and str(crashed) in review.status.text()
    assert save_and_wait(widgets["Save"]) is not None
    stray = autosave_dir / f"{first}.session-0123456789ab.autosave.seg.nrrd.lock"
    stray.write_text("")
    assert review.open_case(second) is not None and review.open_case(first) is not None
    qtbot.wait(300)
    assert "unsaved edits" not in review.status.text()
    assert not crashed.exists() and not stray.exists()
    assert not [p for p in autosave_dir.iterdir() if p.name.startswith(f"{first}.")]
