"""plugin.app.view: a viewer with the case loaded and the widgets docked; screenshots of the review screen.

Screenshots go to the test's tmp folder; set LNQ_UPDATE_SCREENSHOTS=1 to refresh docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.plugin.app import open_viewer, view
from lnq_napari.plugin.widgets.nodes import centre_on

pytestmark = pytest.mark.gui
DOCS = Path(__file__).parents[2] / "docs" / "screenshots"


def _screenshot(viewer, path: Path) -> np.ndarray:
    viewer.window.screenshot(str(path), canvas_only=False)
    if os.environ.get("LNQ_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)
    from imageio.v3 import imread

    return imread(path)


def test_view_loads_case_docks_widgets_and_reviews(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir, tmp_path
):
    # view() is open_viewer() on a new napari.Viewer; napari's fixture makes that viewer (test isolation)
    viewer = open_viewer(ct=phantom_files.ct, seg=phantom_files.seg, viewer=make_napari_viewer(show=True))
    viewer.window._qt_window.resize(1500, 950)
    widgets = viewer.window.dock_widgets["lnq-napari"].widgets
    assert set(widgets) == {"Segment", "Correct", "Nodes", "Review", "Save"}
    assert [ly._type_string for ly in viewer.layers] == ["image", "labels"]
    assert viewer.layers["nodes"].metadata["lnq_session"].ct_layer is viewer.layers[0]

    segment = widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    assert "nodes (previous)" in viewer.layers and not viewer.layers["nodes (previous)"].visible
    nodes = viewer.layers["nodes"]
    qtbot.waitUntil(lambda: widgets["Nodes"].table.rowCount() == int(nodes.data.max()), timeout=20000)
    widgets["Correct"].set_mode("add")
    # show the slice of the top suggestion, with its ring
    suggestions = viewer.layers["suggestions"]
    centre_on(viewer, suggestions.data_to_world(suggestions.data[0]))
    viewer.camera.zoom = 2.0
    qtbot.wait(300)
    shot = _screenshot(viewer, tmp_path / "review.png")
    assert shot.shape[0] >= 800 and shot.shape[1] >= 1400
    assert shot[..., :3].std() > 20  # not a blank window

    viewer.dims.ndisplay = 3
    viewer.layers[0].visible = False  # the CT's MIP would hide the nodes
    nodes.opacity = 1.0
    viewer.camera.angles = (0.0, -30.0, 80.0)
    qtbot.wait(300)
    shot3d = _screenshot(viewer, tmp_path / "review-3d.png")
    assert shot3d[..., :3].std() > 20


def test_view_with_workspace_saves_versions_and_autosaves_there(
    make_napari_viewer, qtbot, phantom_files, tmp_path, monkeypatch, save_and_wait
):
    from lnq_napari.workspace import Workspace

    monkeypatch.delenv("LNQ_NAPARI_AUTOSAVE_DIR", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    for src in (phantom_files.ct, phantom_files.seg):
        (data / src.name).write_bytes(src.read_bytes())
    ws = Workspace.init(tmp_path / "ws", data)
    case = "lnq2023-train-0003"
    before = [v["version"] for v in ws.versions(case)]
    viewer = open_viewer(ct=ws.ct_path(case), seg=data / phantom_files.seg.name, workspace=ws.root,
                         viewer=make_napari_viewer(show=True))
    widgets = viewer.window.dock_widgets["lnq-napari"].widgets
    nodes = viewer.layers["nodes"]
    session = nodes.metadata["lnq_session"]
    victim = np.argwhere(nodes.data > 0)[0]
    assert widgets["Correct"].tool.click(nodes.data_to_world(victim), "remove").startswith("removed node")
    assert session.autosaver.flush().parent.parent == ws.root / "autosave"  # a folder per user
    path = save_and_wait(widgets["Save"])
    after = Workspace.open(ws.root).versions(case)
    assert len(after) == len(before) + 1 and after[-1]["source"] == "correction"
    assert after[-1]["edits"] == session.edits >= 1 and path.exists()
    assert path.parent == ws.root / "labels" / case


def test_view_fails_fast_on_bad_paths(tmp_path, monkeypatch):
    import napari

    from lnq_napari.errors import LNQError

    opened = []
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: opened.append(1))
    with pytest.raises(LNQError, match="does not exist"):
        view(ct=tmp_path / "missing-ct.nrrd")
    assert opened == []  # no window flashed before the error


def test_the_demo_window_finds_nodes_and_suggestions_on_its_case(make_napari_viewer, qtbot, phantom_files,
                                                                 autosave_dir, tmp_path, monkeypatch):
    """With a display the main job opened napari on its saved mask alone: the suggestions it had just
    printed and the mediastinum region were not there."""
    import torch

    from lnq_napari import cli
    from tests.plugin.test_widgets import _tiny_model

    torch.set_num_threads(1)
    opened = {}
    monkeypatch.setattr("lnq_napari.api.has_display", lambda: True)
    monkeypatch.setattr("lnq_napari.api.demo", lambda ct, out, model, progress: {"ct": str(ct), "nodes": 0,
                                                                              "segmentation": "x-seg.nrrd"})
    monkeypatch.setattr("lnq_napari.plugin.app.view", lambda *a, **k: opened.update(args=a, kwargs=k))
    assert cli.main(["demo", str(phantom_files.ct)]) == 0
    assert opened["kwargs"]["find_nodes"] and "seg" not in opened["kwargs"]  # found there, all of it
    viewer = open_viewer(ct=phantom_files.ct, model=_tiny_model(tmp_path / "tiny"),
                         viewer=make_napari_viewer(), find_nodes=True)
    segment = viewer.window.dock_widgets["lnq-napari"].widgets["Segment"]
    assert segment.worker is not None  # started by the opening itself
    qtbot.waitUntil(lambda: segment.worker is None, timeout=120000)
    assert {"nodes", "suggestions"} <= {ly.name for ly in viewer.layers}, segment.status.text()
