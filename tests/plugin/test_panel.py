"""The lnq-napari panel on a real viewer: one narrow dock (the canvas keeps >= 60 % of a 1600 x 1000
window, measured from Qt geometry), a short model name with the full version in the tooltip, node table
colours as drawn on the canvas, sorting by any column and the >= 10 mm filter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget

from lnq_napari.model.names import short_model_name
from lnq_napari.plugin._layers import ROLE_KEY
from lnq_napari.plugin.app import view
from lnq_napari.plugin.widgets.nodes import CELL_MARGIN, COLUMNS

pytestmark = pytest.mark.gui

TUNES = [f"ft-2026112{i}-1529-356336d7" for i in range(5)]
LONG_VERSION = "+".join(["lnq-unet-20261127-1053-356336d7", *TUNES])


class LongNamed:
    """TEST DOUBLE: the stand-in predictor under a model version as long as a fine-tuned model's."""

    def __init__(self, stand_in) -> None:
        self.stand_in, self.config = stand_in, stand_in.config

    def predict(self, ct, progress=None, cancel=None):
        return dataclasses.replace(self.stand_in.predict(ct, progress, cancel), model_version=LONG_VERSION)


@pytest.fixture
def reviewed(qtbot, phantom_files, stand_in, autosave_dir):
    viewer = view(ct=phantom_files.ct)
    viewer.window._qt_window.resize(1600, 1000)
    panel = viewer.window.dock_widgets["lnq-napari"]
    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: LongNamed(stand_in)
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    nodes = viewer.layers["nodes"]
    table = panel.widgets["Nodes"]
    n_nodes = len(np.unique(nodes.data[nodes.data > 0]))
    qtbot.waitUntil(lambda: table.table.rowCount() == n_nodes, timeout=20000)
    yield viewer, panel
    viewer.close()


def test_the_canvas_keeps_60_percent_of_the_window(reviewed, qtbot):
    viewer, panel = reviewed
    for name in ("Segment", "Correct", "Nodes", "Review", "Save"):  # whichever tab is in front
        panel.show_tab(name)
        qtbot.wait(50)
        window, canvas = viewer.window._qt_window, viewer.window._qt_viewer.canvas.native
        assert (window.width(), window.height()) == (1600, 1000)
        assert canvas.width() >= 0.6 * window.width(), (name, canvas.width())
        assert canvas.isVisible() and canvas.height() >= 0.8 * window.height()
    dock_names = [d for d in viewer.window.dock_widgets]
    assert dock_names == ["lnq-napari"]  # one dock, not five


def test_at_its_narrowest_every_tab_fits_without_scrolling_sideways(reviewed, qtbot):
    """Dragged to its minimum width, no tab's rows are cut off (the Review tab's were at 200 px)."""
    from qtpy.QtWidgets import QScrollArea

    from lnq_napari.plugin.panel import MIN_WIDTH

    viewer, panel = reviewed
    dock = panel.parent()
    dock.setMinimumWidth(MIN_WIDTH)
    dock.setMaximumWidth(MIN_WIDTH)
    for name in ("Segment", "Correct", "Nodes", "Review", "Save"):
        panel.show_tab(name)
        qtbot.wait(100)
        page = panel.tabs.currentWidget()
        assert isinstance(page, QScrollArea)
        assert page.horizontalScrollBar().maximum() == 0, (name, page.horizontalScrollBar().maximum())
    bar = panel.tabs.tabBar()  # every tab's name in view, none behind the scroll arrows
    assert bar.tabRect(bar.count() - 1).right() <= panel.tabs.width(), [bar.tabRect(i)
                                                                         for i in range(bar.count())]


def test_short_model_name_with_the_full_version_in_the_tooltip(reviewed):
    viewer, panel = reviewed
    status = panel.widgets["Segment"].status
    assert status.text().endswith(f"model {short_model_name(LONG_VERSION)}")
    assert LONG_VERSION not in status.text()
    assert LONG_VERSION in status.toolTip()
    assert viewer.layers["nodes"].metadata["lnq_model_version"] == LONG_VERSION  # provenance keeps it whole


def test_table_colours_are_the_canvas_colours(reviewed, qtbot):
    viewer, panel = reviewed
    nodes, table = viewer.layers["nodes"], panel.widgets["Nodes"]
    viewer.layers[0].visible = False  # the node alone, fully opaque: its pixels are its label colour
    nodes.opacity = 1.0
    panel.show_tab("Nodes")
    for r in range(table.table.rowCount()):
        node_id = table.node_id(r)
        colour = table.table.item(r, 0).background().color()
        table.table.selectRow(r)  # centres the view on the node and selects it
        viewer.camera.zoom = 8.0
        qtbot.wait(100)
        shot = viewer.screenshot(canvas_only=True, flash=False)
        centre = shot[shot.shape[0] // 2, shot.shape[1] // 2, :3].astype(int)
        assert nodes.selected_label == node_id
        assert np.abs(centre - [colour.red(), colour.green(), colour.blue()]).max() <= 3, (node_id, centre)


def test_sort_by_any_column_and_show_only_large_nodes(reviewed, qtbot):
    viewer, panel = reviewed
    nodes, widget = viewer.layers["nodes"], panel.widgets["Nodes"]
    table, rows = widget.table, {row.id: row for row in widget.rows}
    panel.show_tab("Nodes")
    header = table.horizontalHeader()
    for c, (key, _, _) in enumerate(COLUMNS):
        x = header.sectionViewportPosition(c) + header.sectionSize(c) // 2
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=_point(x, header.height() // 2))
        values = [getattr(rows[widget.node_id(r)], key) for r in range(table.rowCount())]
        order = header.sortIndicatorOrder()
        assert values == sorted(values, reverse=order == Qt.SortOrder.DescendingOrder), key
    # a row click after sorting still goes to the node in that row
    table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    table.selectRow(0)
    largest = max(rows.values(), key=lambda row: row.volume_cm3)
    assert nodes.selected_label == largest.id

    large = sorted(i for i, row in rows.items() if row.ge_10mm or row.cut_by_edge)  # cut: may reach it
    small = sorted(i for i, row in rows.items() if i not in large)
    assert large and small  # the phantom has both (else the filter would show nothing)
    widget.large_only.setChecked(True)
    assert sorted(widget.visible_ids()) == large
    widget.large_only.setChecked(False)
    assert sorted(widget.visible_ids()) == sorted(rows)


def _point(x: int, y: int):
    from qtpy.QtCore import QPoint

    return QPoint(int(x), int(y))


SPARE_PX = 3  # the header's room to spare in the viewport: another font or DPI must not tip it over


def _many_nodes(viewer, qtbot, widget, n: int, hu: int = 40) -> None:
    """Replace the case's nodes by ``n`` small blocks (soft tissue, 40 HU, or ``hu``): enough rows for the
    vertical scrollbar, which takes the table's viewport from 244 to 231 px."""
    ct = next(ly for ly in viewer.layers if ly.metadata.get(ROLE_KEY) == "ct")
    ct.data = np.full(ct.data.shape, hu, ct.data.dtype)
    nodes = viewer.layers["nodes"]
    data, blocks = np.zeros(nodes.data.shape, nodes.data.dtype), []
    for z in range(2, data.shape[0] - 4, 8):
        for y in range(5, data.shape[1] - 10, 22):
            blocks += [(z, y, x) for x in range(5, data.shape[2] - 10, 22)]
    assert len(blocks) >= n
    for k, (z, y, x) in enumerate(blocks[:n], start=1):
        size = 12 if k == 3 else 4  # one node >= 10 mm
        data[z:z + 3, y:y + size, x:x + size] = k
    nodes.data = data
    qtbot.waitUntil(lambda: widget._worker is None and len(widget.rows) == n, timeout=60000)
    qtbot.wait(100)


@pytest.mark.parametrize(("n_nodes", "hu"), [(None, None), (30, 40), (30, -100)])
def test_every_node_table_column_is_in_view_in_the_docked_panel(reviewed, qtbot, n_nodes, hu):
    """At the panel's width the table's cm3, HU and side columns lay behind the horizontal scrollbar: Qt
    kept room for the sort arrow beside every column's name, and then, beside the sorted one, more than the
    arrow takes (sorted by "short", 1 px too wide). In any sort order, with the case's 9 nodes or with 30
    (a vertical scrollbar), all columns stay in view, and the sorted column's name keeps its arrow beside
    it (not over it). With 30 rows of fat-density nodes ("-100" HU), sorted by "short", the side column
    lay behind the scrollbar: Qt kept 3 px beside each cell's text, now 1 px, and no text is cut."""
    from qtpy.QtWidgets import QStyle

    viewer, panel = reviewed
    nodes = panel.show_tab("Nodes")
    if n_nodes:
        _many_nodes(viewer, qtbot, nodes, n_nodes, hu)
    table, header = nodes.table, nodes.table.horizontalHeader()
    assert table.rowCount() == (n_nodes or 9)
    assert table.verticalScrollBar().isVisible() == bool(n_nodes)
    arrow = header.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMarkSize, None, header)
    names = [table.horizontalHeaderItem(c).text() for c in range(len(COLUMNS))]
    for column in range(len(COLUMNS)):
        for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
            table.sortByColumn(column, order)
            qtbot.wait(50)
            widths = [header.sectionSize(c) for c in range(len(COLUMNS))]
            longest = [max((table.item(r, c).text() for r in range(table.rowCount())), key=len)
                       for c in range(len(COLUMNS))]
            said = (names[column], order.name, widths, table.viewport().width(), longest)
            assert header.length() + SPARE_PX <= table.viewport().width(), said
            assert table.horizontalScrollBar().maximum() == 0, said
            for c, name in enumerate(names):  # every name whole; the sorted one beside its arrow
                need = header.fontMetrics().horizontalAdvance(name) + (arrow if c == column else 0)
                assert widths[c] >= need, (name, need, said)
                cells = [table.item(r, c).text() for r in range(table.rowCount())]
                text = max(table.fontMetrics().horizontalAdvance(t) for t in cells)
                assert widths[c] >= text + 2 * CELL_MARGIN, (name, text, said)  # every cell's text whole
    sides = {"R": "right", "L": "left", "mid": "midline"}
    side = [key for key, _, _ in COLUMNS].index("side")
    for r in range(table.rowCount()):  # a short side in the cell, the word in its tooltip
        item = table.item(r, side)
        assert sides[item.text()] == item.toolTip()


def test_a_switch_to_3d_shows_the_wait_cursor_until_the_case_is_drawn(reviewed, qtbot):
    """With software rendering a full-size case took 5-15 s to show in 3D: the arrow cursor meanwhile, the
    window frozen."""
    from qtpy.QtWidgets import QApplication

    viewer, panel = reviewed
    drawn = []  # the cursor shape at each drawing of the canvas
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    scene.events.draw.connect(lambda event: drawn.append(
        QApplication.overrideCursor() and QApplication.overrideCursor().shape()))
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: bool(drawn) and QApplication.overrideCursor() is None, timeout=60000)
    assert drawn[0] == Qt.CursorShape.WaitCursor
    viewer.dims.ndisplay = 2
    qtbot.waitUntil(lambda: QApplication.overrideCursor() is None, timeout=60000)
    assert viewer.dims.ndisplay == 2


def test_a_viewer_closed_right_after_a_switch_to_3d_leaves_no_wait_cursor_and_no_error(
        qtbot, phantom_files, autosave_dir, monkeypatch):
    """A script doing ``viewer.dims.ndisplay = 3; viewer.close()``: the drawing after the switch found the
    window gone ('Window' object has no attribute '_qt_window', a traceback)."""
    import sys

    from qtpy.QtWidgets import QApplication

    errors = []
    monkeypatch.setattr(sys, "excepthook", lambda *error: errors.append(error))
    viewer = view(ct=phantom_files.ct, seg=phantom_files.seg)
    viewer.dims.ndisplay = 3
    assert QApplication.overrideCursor() is not None
    viewer.close()
    qtbot.waitUntil(lambda: QApplication.overrideCursor() is None, timeout=10000)
    qtbot.wait(100)
    assert errors == []


def test_the_panel_from_the_plugins_menu_brings_the_keys(make_napari_viewer, qtbot, phantom_files, stand_in,
                                                        autosave_dir):
    """Plugins > lnq-napari > Panel (npe2): the same panel; the review keys work with it."""
    from lnq_napari.plugin._case import add_case, read_case
    from lnq_napari.plugin._session import OPENED_KEY
    from lnq_napari.plugin.panel import LNQPanel

    viewer = make_napari_viewer()
    ct_layer, _ = add_case(viewer, *read_case(phantom_files.ct))
    _, panel = viewer.window.add_plugin_dock_widget("lnq-napari", "Panel")
    assert isinstance(panel, LNQPanel) and list(panel.widgets) == ["Segment", "Correct", "Nodes", "Review",
                                                                   "Save"]
    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    session = viewer.layers["nodes"].metadata["lnq_session"]
    assert session.stats.started == ct_layer.metadata[OPENED_KEY]  # the clock runs from the CT's opening
    qtbot.keyClick(viewer.window._qt_viewer, Qt.Key.Key_N)
    assert session.current_suggestion == 0 and session.stats.keys == 1


def test_the_panel_from_the_plugins_menu_has_its_whole_title_in_view(make_napari_viewer, qtbot):
    """Its dock was titled "lnq-napari panel (lnq-napari)" (napari adds the plugin's name): cut at the
    panel's width, its end out of view."""
    from npe2 import PluginManager

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    widgets = PluginManager.instance().get_manifest("lnq-napari").contributions.widgets
    name = next(w.display_name for w in widgets if w.command == "lnq-napari.panel")
    dock, _ = viewer.window.add_plugin_dock_widget("lnq-napari", name)
    qtbot.waitUntil(dock.isVisible, timeout=5000)
    qtbot.wait(100)
    bar = dock.title
    title = bar.title
    assert title.isVisible() and title.width() >= title.sizeHint().width()  # the room its text needs
    assert title.geometry().right() < bar.width() and bar.width() <= dock.width()

def _find_nodes(viewer, stand_in, qtbot) -> int:
    """Open the panel from the Plugins menu and Find nodes with ``stand_in``; returns how many suggestion
    rows the panel's Correct tab lists."""
    _, panel = viewer.window.add_plugin_dock_widget("lnq-napari", "Panel")
    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    return panel.widgets["Correct"].suggestion_list.count()


def test_a_closed_panel_stops_listening_and_the_reopened_one_lists_every_suggestion(
        make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir):
    """Close the panel with its dock's x, open it again from the Plugins menu, Find nodes again: the closed
    widgets hear nothing (one of them raised RuntimeError and the new suggestion list stayed empty)."""
    import gc
    import sys
    import traceback

    from lnq_napari.plugin._case import add_case, read_case

    viewer = make_napari_viewer()
    add_case(viewer, *read_case(phantom_files.ct))
    errors = []
    hook, sys.excepthook = sys.excepthook, lambda *exc: errors.append(exc)
    try:
        assert _find_nodes(viewer, stand_in, qtbot) == len(viewer.layers["suggestions"].data) > 0
        dock = viewer.window._qt_window.findChild(QDockWidget, "Panel (lnq-napari)")
        dock.title.close_button.click()  # napari lets the panel go: nothing else holds it
        del dock
        gc.collect()
        qtbot.wait(200)
        assert _find_nodes(viewer, stand_in, qtbot) == len(viewer.layers["suggestions"].data) > 0
        viewer.layers["nodes"].paint((10, 80, 80), new_label=9)  # an edit: every listener hears it
        qtbot.wait(50)
        viewer.layers.remove(viewer.layers[0])  # the CT closed: the Segment tabs' status goes with it
        qtbot.wait(50)
    finally:
        sys.excepthook = hook
    assert not errors, "".join(traceback.format_exception(*errors[0]))



def test_save_follows_the_workspace_chosen_in_review(make_napari_viewer, tmp_path):
    """Save kept the panel's first workspace after Review switched to another: a case opened by File > Open
    was saved into the old one (refused there as "on different grids", or saved into the wrong one)."""
    from lnq_napari.phantom import write_dataset
    from lnq_napari.plugin.panel import LNQPanel
    from lnq_napari.workspace import Workspace

    write_dataset(tmp_path / "data", 1, seed=3, shape=(8, 32, 32), spacing=(4.0, 4.0, 6.0))
    first, second = (Workspace.init(tmp_path / name, tmp_path / "data") for name in ("ws1", "ws2"))
    panel = LNQPanel(make_napari_viewer(), workspace=first)
    review, save = panel.widgets["Review"], panel.widgets["Save"]
    review.form.workspace.value = second.root
    assert save.workspace == second.root
    review.form.workspace.value = tmp_path / "data"  # not a workspace: saved beside the case
    assert save.workspace is None
