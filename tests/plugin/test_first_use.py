"""What a first-time user trips over in napari: the CT a second File > Open brings is the one Find nodes
runs on, the CT's contrast slider reaches a lung window, no warnings from the panel docked by the
Plugins menu."""

from __future__ import annotations

import shutil

import pytest

from lnq_napari.plugin.app import dock_widgets

pytestmark = pytest.mark.gui


def test_find_nodes_runs_on_the_ct_opened_last(make_napari_viewer, phantom_files, tmp_path):
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    first = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    assert segment.form.ct.value is first
    other = shutil.copy(phantom_files.ct, tmp_path / "patient2-ct.nrrd")
    second = viewer.open(str(other), plugin="lnq-napari")[0]
    assert segment.form.ct.value is second  # the case just opened, not the one opened before
    viewer.layers.remove(second)
    assert segment.form.ct.value is first


def test_the_ct_opens_in_the_mediastinal_window_and_its_slider_reaches_a_lung_window(
    make_napari_viewer, phantom_files
):
    import numpy as np

    from lnq_napari.plugin._layers import CT_CONTRAST
    from lnq_napari.plugin.app import open_viewer

    data = np.asarray(phantom_files.case.ct.array)
    by_view = open_viewer(ct=phantom_files.ct, viewer=make_napari_viewer()).layers[0]  # lnq-napari view
    viewer = make_napari_viewer()
    dock_widgets(viewer)
    by_menu = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]  # File > Open beside the panel
    for layer in (by_view, by_menu):
        assert tuple(layer.contrast_limits) == CT_CONTRAST
        low, high = layer.contrast_limits_range
        assert low <= data.min() < -900 and high >= data.max()
        layer.contrast_limits = (-1350, 150)  # a lung window, as the slider is dragged
        assert tuple(layer.contrast_limits) == (-1350, 150)


def test_the_panel_from_the_plugins_menu_reviews_without_warnings(make_napari_viewer, qtbot, phantom_files,
                                                                  stand_in, autosave_dir, save_and_wait,
                                                                  tmp_path):
    """napari hands a Plugins-menu widget a proxy of the viewer that warns on private reads: each became
    a FutureWarning toast in the viewer (three at a case's first node layer)."""
    import warnings

    import numpy as np

    # copies: Save writes lnq-labels/ beside the CT (the shared case's folder must keep no versions)
    ct, seg = (shutil.copy(path, tmp_path) for path in (phantom_files.ct, phantom_files.seg))
    viewer = make_napari_viewer()
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        _, panel = viewer.window.add_plugin_dock_widget("lnq-napari", "Panel")
        viewer.open(str(ct), plugin="lnq-napari")
        viewer.open(str(seg), plugin="lnq-napari")  # the case's labels: a node layer
        segment = panel.widgets["Segment"]
        segment.predictor_factory = lambda model, device: stand_in
        segment.run()
        qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
        nodes = viewer.layers["nodes"]
        instances = np.asarray(phantom_files.case.instances.array)
        missed = np.argwhere(instances == stand_in.missed).mean(0).round()
        world = nodes.data_to_world(missed)
        viewer.dims.set_point(0, world[0])
        assert panel.widgets["Correct"].tool.click(world, "add").startswith("added node")
        assert save_and_wait(panel.widgets["Save"]) is not None
    private = [str(w.message) for w in heard if "Private attribute access" in str(w.message)]
    assert private == []


def test_find_nodes_again_keeps_one_earlier_node_layer_unless_it_holds_unsaved_edits(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir
):
    """Each Find nodes kept the one before as another hidden "nodes (previous) [n]" layer, each with the
    CT's probabilities: re-running piled up layers and memory."""
    import numpy as np

    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")

    def find() -> list[str]:
        segment.run()
        qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
        return [ly.name for ly in viewer.layers if ly.name.startswith("nodes")]

    find()
    assert find() == ["nodes (previous)", "nodes"]
    assert find() == ["nodes (previous)", "nodes"]
    nodes = viewer.layers["nodes"]
    nodes.paint(np.array(nodes.data.shape) // 2, int(nodes.data.max()) + 1)  # an edit not saved
    assert nodes.metadata["lnq_session"].unsaved
    assert find() == ["nodes (previous)", "nodes"]  # the unedited one went, the edited one stays
    edited = viewer.layers["nodes (previous)"]
    assert edited is nodes and not edited.visible
    assert find() == ["nodes (previous)", "nodes (previous) [1]", "nodes"]  # edits are never dropped
    assert find() == ["nodes (previous)", "nodes (previous) [1]", "nodes"]


def test_opening_a_folder_of_cases_says_what_to_open_instead(make_napari_viewer, phantom_files, tmp_path):
    """File > Open of the folder ``lnq-napari phantom OUT`` writes: napari said only that the reader
    "refused the file"."""
    from lnq_napari.errors import LNQError
    from lnq_napari.plugin._reader import napari_get_reader

    viewer = make_napari_viewer()
    folder = phantom_files.ct.parent
    with pytest.raises(LNQError, match=r"folder of 1 CT file .*-ct\.nrrd.*workspace init W --data"):
        viewer.open(str(folder), plugin="lnq-napari")
    assert len(viewer.layers) == 0
    assert napari_get_reader(str(tmp_path)) is None  # an empty folder: not ours to speak of
    labels_only = tmp_path / "labels"
    labels_only.mkdir()
    shutil.copy(phantom_files.seg, labels_only)
    assert napari_get_reader(str(labels_only)) is None


def test_compare_tells_apart_two_scans_whose_names_differ_at_the_end(make_napari_viewer, qtbot,
                                                                     phantom_files):
    """In the narrow dock both CT choosers showed "phantom-followup-000" of ...-t0-ct and ...-t1-ct."""
    from lnq_napari.plugin.widgets import CompareWidget

    viewer = make_napari_viewer()
    data = phantom_files.case.ct.array
    for tag in ("t0", "t1"):
        viewer.add_image(data, name=f"phantom-followup-0001-{tag}-ct")
    widget = CompareWidget(viewer)
    base, follow = widget.combos["baseline_ct"], widget.combos["followup_ct"]
    for combo in (base, follow):
        combo.setFixedWidth(150)
        combo.show()
    qtbot.waitExposed(follow)
    assert (base.currentText(), follow.currentText()) == ("phantom-followup-0001-t0-ct",
                                                          "phantom-followup-0001-t1-ct")
    assert follow.toolTip() == "phantom-followup-0001-t1-ct"  # the whole name
    shown = [combo.grab().toImage() for combo in (base, follow)]
    assert shown[0] != shown[1]  # what is drawn differs too: the end of the names is kept


def test_what_a_review_key_did_stays_in_view_after_the_slice_moved(make_napari_viewer, qtbot, phantom_files,
                                                                   stand_in, autosave_dir):
    """J centres the next node on its slice; with the pointer on the image napari then puts the cursor's
    coordinates in the status bar, over "node 1 (1 of n)" (seen in a 1600 x 1000 window under Xvfb): the
    key seemed to say nothing. The Correct tab, beside the keys table, says it too."""
    import numpy as np
    from qtpy.QtCore import Qt

    from lnq_napari.plugin.app import open_viewer

    viewer = open_viewer(ct=phantom_files.ct, viewer=make_napari_viewer(show=True))
    panel = viewer.window.dock_widgets["lnq-napari"]
    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    nodes = viewer.layers["nodes"]
    nodes.selected_label = 0
    ids = sorted(int(i) for i in np.unique(nodes.data[nodes.data > 0]))
    viewer.mouse_over_canvas = True  # as when one reviews: the pointer rests on the image
    qtbot.keyClick(viewer.window._qt_viewer, Qt.Key.Key_J)
    qtbot.wait(500)  # napari's status update for the moved slice comes from a thread
    assert panel.widgets["Correct"].status.text() == f"node {ids[0]} (1 of {len(ids)})"


def test_the_segment_status_of_one_ct_goes_when_another_is_opened(make_napari_viewer, qtbot, phantom_files,
                                                                   stand_in, autosave_dir, tmp_path):
    """After File > Open of a second CT, "n nodes, m suggestions" of the first stayed under Find nodes."""
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    first = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    assert " nodes, " in segment.status.text() and segment.progress.value() == 100
    segment.form.ct.value = first  # the same CT chosen again: its result still stands
    assert " nodes, " in segment.status.text()
    viewer.open(str(shutil.copy(phantom_files.ct, tmp_path / "patient2-ct.nrrd")), plugin="lnq-napari")
    assert segment.status.text() == "" and segment.progress.value() == 0


def _find(segment, qtbot, viewer) -> list[str]:
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    return [ly.name for ly in viewer.layers if ly.name.startswith("nodes")]


def test_find_nodes_keeps_a_node_layer_painted_by_hand_with_the_segment_tab_alone(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir
):
    """With Segment docked alone (Plugins menu) a "nodes" layer painted by hand has no session: the second
    Find nodes took it for unedited and removed it."""
    import numpy as np

    from lnq_napari.plugin.widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    segment.predictor_factory = lambda model, device: stand_in
    ct = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    mine = viewer.add_labels(np.zeros(ct.data.shape, np.uint8), name="nodes", scale=ct.scale,
                             translate=ct.translate)
    mine.paint((10, 50, 50), 7)
    _find(segment, qtbot, viewer)
    _find(segment, qtbot, viewer)
    assert mine in viewer.layers and int(mine.data[10, 50, 50]) == 7


def test_find_nodes_never_removes_labels_opened_from_a_file(make_napari_viewer, qtbot, phantom_files,
                                                            stand_in, autosave_dir):
    """``lnq-napari view CT --seg LABELS`` (or a workspace version) opens the labels as "nodes": two Find
    nodes later they had left the viewer without a word."""
    from lnq_napari.plugin.app import open_viewer

    viewer = open_viewer(ct=phantom_files.ct, seg=phantom_files.seg, viewer=make_napari_viewer())
    segment = viewer.window.dock_widgets["lnq-napari"].widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    opened = viewer.layers["nodes"]
    assert not opened.metadata["lnq_session"].unsaved
    _find(segment, qtbot, viewer)
    assert _find(segment, qtbot, viewer) == ["nodes (previous)", "nodes (previous) [1]", "nodes"]
    assert _find(segment, qtbot, viewer) == ["nodes (previous)", "nodes (previous) [1]", "nodes"]
    assert viewer.layers["nodes (previous)"] is opened


def test_find_nodes_keeps_the_earlier_node_layer_selected_or_mid_stroke(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir
):
    """napari tells of a brush stroke's paint when the mouse is released: Find nodes (a key, or a result
    arriving) mid-stroke removed the earlier node layer being painted; the layer selected went too."""
    import numpy as np

    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    _find(segment, qtbot, viewer)
    _find(segment, qtbot, viewer)
    selected = viewer.layers["nodes (previous)"]
    viewer.layers.selection.active = selected
    assert _find(segment, qtbot, viewer) == ["nodes (previous)", "nodes (previous) [1]", "nodes"]
    assert viewer.layers["nodes (previous)"] is selected
    painting = viewer.layers["nodes (previous) [1]"]
    painting._begin_stroke()  # the mouse pressed: the stroke's paint is staged, not yet told
    painting.paint(np.array(painting.data.shape) // 2, 77)
    assert not painting.metadata["lnq_session"].unsaved
    _find(segment, qtbot, viewer)
    assert painting in viewer.layers and selected not in viewer.layers  # selected no more: it may go
    painting._commit_stroke()  # the mouse released
    assert painting.metadata["lnq_session"].unsaved
    assert int(painting.data[tuple(np.array(painting.data.shape) // 2)]) == 77


def test_a_probability_map_opened_after_the_ct_is_shown_over_0_to_1_and_never_taken_for_the_ct(
    make_napari_viewer, phantom_files, tmp_path
):
    """``predict --probabilities`` writes ``<case>-prob.nrrd``: File > Open of it gave an Image of role
    "ct" (the mediastinal window, -160..240, over values 0..1), and Segment switched to it as the CT."""
    import numpy as np

    from lnq_napari.io.readers import write_volume

    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    ct = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    volume = phantom_files.case.ct
    rng = np.random.default_rng(0)
    prob = write_volume(tmp_path / "lnq2023-train-0003-prob.nrrd",
                        volume.with_array(rng.random(volume.array.shape, dtype=np.float32)))
    layer = viewer.open(str(prob), plugin="lnq-napari")[0]
    assert segment.form.ct.value is ct
    assert layer.metadata["lnq_role"] == "prob" and tuple(layer.contrast_limits) == (0.0, 1.0)


def test_the_ct_contrast_slider_spans_finite_hu_from_air_up(make_napari_viewer, qtbot, phantom_files):
    """A float CT holding inf made the slider's range infinite (napari's contrast control raised
    OverflowError in a shown viewer); int16 padding at -32768 made it 34000 HU wide, a window hard to
    drag."""
    import numpy as np

    from lnq_napari.plugin._case import add_layers
    from lnq_napari.plugin._reader import ct_layer_data

    volume = phantom_files.case.ct
    data = np.asarray(volume.array)
    viewer = make_napari_viewer(show=True)
    with_inf = data.astype(np.float32)
    with_inf[0, 0, 0], with_inf[0, 0, 1], with_inf[0, 0, 2] = np.inf, -np.inf, np.nan
    padded = data.astype(np.int16)
    padded[0] = -32768
    for array, lowest in ((with_inf, max(float(data.min()), -1024.0)), (padded, -1024.0)):
        (layer,) = add_layers(viewer, [ct_layer_data(volume.with_array(array), name=str(array.dtype))])
        qtbot.wait(50)  # the shown viewer's contrast control takes the range
        assert tuple(layer.contrast_limits_range) == (lowest, float(data.max()))
        assert lowest < -900


def test_nodes_found_for_a_ct_no_longer_chosen_say_which_ct_they_are_of(make_napari_viewer, qtbot,
                                                                        phantom_files, stand_in,
                                                                        autosave_dir, tmp_path):
    """File > Open of a second CT while Find nodes ran on the first: the first's "n nodes, m suggestions"
    arrived under Find nodes with the second chosen, as if they were its nodes."""
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    stand_in.delay = 1.0
    segment.predictor_factory = lambda model, device: stand_in
    first = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    segment.run()
    other = shutil.copy(phantom_files.ct, tmp_path / "patient2-ct.nrrd")
    second = viewer.open(str(other), plugin="lnq-napari")[0]
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    assert segment.form.ct.value is second
    assert segment.status.text().startswith(f"{first.name}: ") and " nodes, " in segment.status.text()
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    assert not segment.status.text().startswith(f"{first.name}: ")
    assert segment.status.text().split("\n")[0].endswith(" suggestions")


def test_a_folder_of_ct_files_with_a_readme_and_ds_store_is_no_dicom_series(make_napari_viewer, phantom_files,
                                                                            tmp_path):
    """A suffixless file beside the CT files (macOS's .DS_Store, a README) made the folder a DICOM series:
    File > Open said "no DICOM files" instead of what to open."""
    from lnq_napari.errors import LNQError

    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(phantom_files.ct, folder)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(100))
    (folder / "README").write_text("LNQ cases\n")
    viewer = make_napari_viewer()
    with pytest.raises(LNQError, match=r"folder of 1 CT file .*workspace init W --data"):
        viewer.open(str(folder), plugin="lnq-napari")
    assert len(viewer.layers) == 0


def test_the_folder_named_in_the_command_to_run_is_quoted(make_napari_viewer, phantom_files, tmp_path):
    """The message about a folder of CT files named it unquoted: "--data /data/LNQ cases" run as given
    took "/data/LNQ" as the data folder."""
    from lnq_napari.errors import LNQError

    folder = tmp_path / "LNQ cases"
    folder.mkdir()
    shutil.copy(phantom_files.ct, folder)
    viewer = make_napari_viewer()
    with pytest.raises(LNQError) as raised:
        viewer.open(str(folder), plugin="lnq-napari")
    assert f"--data '{folder}', then" in str(raised.value)


def test_opening_a_workspace_folder_says_how_to_review_it(make_napari_viewer, phantom_files, tmp_path):
    """File > Open of a workspace folder gave napari's "no reader" message; it says how to review it."""
    from lnq_napari.errors import LNQError
    from lnq_napari.plugin._reader import napari_get_reader
    from lnq_napari.workspace import Workspace

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(phantom_files.ct, data)
    workspace = Workspace.init(tmp_path / "my ws", data)
    assert napari_get_reader(str(workspace.root)) is not None
    viewer = make_napari_viewer()
    with pytest.raises(LNQError) as raised:
        viewer.open(str(workspace.root), plugin="lnq-napari")
    assert str(raised.value).endswith(
        f"is a lnq-napari workspace: review its cases with lnq-napari view --workspace '{workspace.root}'")
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("name", ["CorrectWidget", "NodesWidget", "SaveWidget", "ReviewWidget",
                                  "CompareWidget"])
def test_the_ct_slider_reaches_a_lung_window_with_any_one_tab_docked(make_napari_viewer, phantom_files, name):
    """Only the Segment tab (and ``lnq-napari view``) widened a CT's contrast slider: File > Open beside
    the Correct or Save tab alone (Plugins menu) left it capped at the mediastinal window."""
    from lnq_napari.plugin import widgets

    viewer = make_napari_viewer()
    viewer.window.add_dock_widget(getattr(widgets, name)(viewer))
    layer = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    assert layer.contrast_limits_range[0] < -900


def test_closing_one_tab_leaves_the_ct_slider_widened_for_the_others(make_napari_viewer, phantom_files,
                                                                      qtbot):
    """Each tab tied the one widening hook to its own life: napari keeps one connection of a callback
    connected twice, so closing any tab ended the widening for every tab still docked."""
    from lnq_napari.plugin import widgets

    viewer = make_napari_viewer()
    correct, save = widgets.CorrectWidget(viewer), widgets.SaveWidget(viewer)
    viewer.window.add_dock_widget(save)
    with qtbot.waitSignal(correct.destroyed, timeout=5000):
        correct.deleteLater()
    layer = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    assert layer.contrast_limits_range[0] < -900
