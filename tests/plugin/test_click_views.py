"""Clicks in the views other than the axial 2D one: a coronal or sagittal 2D view (napari's dims order
rolled) and the 3D view, where another scan may lie in front of the labels' CT or behind it."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.io.volume import Volume
from lnq_napari.plugin._case import add_case, nodes_layer_data
from lnq_napari.plugin.app import dock_widgets

pytestmark = pytest.mark.gui


def _predicted(viewer, qtbot, phantom_files, stand_in):
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    widgets = dock_widgets(viewer)
    segment = widgets["Segment"]
    segment.predictor_factory = lambda model, device: stand_in
    assert segment.run() is not None
    qtbot.waitUntil(lambda: segment.worker is None, timeout=30000)
    return widgets


@pytest.mark.parametrize("order, across", [((1, 0, 2), 1), ((2, 0, 1), 2)], ids=["coronal", "sagittal"])
def test_a_click_on_a_ring_in_a_coronal_or_sagittal_view_takes_the_ring_under_the_cursor(
    make_napari_viewer, qtbot, phantom_files, stand_in, autosave_dir, order, across
):
    """In a coronal view the ring lookup kept the axial rule (same axial slice +-1, near in y and x):
    a click on a ring 1.75 slices (7 mm, inside its 8 mm radius) above its centre missed it, and a click 3
    coronal slices away, where no ring is drawn, took it."""
    viewer = make_napari_viewer()
    widgets = _predicted(viewer, qtbot, phantom_files, stand_in)
    tool, suggestions = widgets["Correct"].tool, viewer.layers["suggestions"]
    viewer.dims.order = order
    shown = list(viewer.dims.displayed)
    assert len(shown) == 2 and across not in shown
    n = len(suggestions.data)
    ring = np.asarray(suggestions.data[0], dtype=float)
    off_slice = ring.copy()
    off_slice[across] += 3  # another coronal (sagittal) slice: no ring drawn there
    assert tool.click(suggestions.data_to_world(off_slice), "off", dims_displayed=shown) == ""
    assert len(suggestions.data) == n
    on_ring = ring.copy()
    on_ring[0] += 1.75 if ring[0] + 2 < viewer.layers["nodes"].data.shape[0] else -1.75  # 7 of 4 mm voxels
    said = tool.click(suggestions.data_to_world(on_ring), "off", dims_displayed=shown)
    assert said.startswith("accepted suggestion"), said
    assert len(suggestions.data) == n - 1


def test_a_3d_click_is_refused_only_where_another_scan_lies_in_front_of_the_labels_ct(make_napari_viewer):
    """The 3D cover check had no depth: a second scan behind the labels' CT, seen through nothing, refused
    a 3D click on a node in front of it."""
    shape = (8, 20, 24)
    hu = np.full(shape, -100, np.int16)
    case = Volume(hu, (1.0, 1.0, 5.0), (0.0, 0.0, 0.0))
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 6:14, 8:16] = 1
    viewer = make_napari_viewer()
    correct = dock_widgets(viewer)["Correct"]
    ct, nodes = add_case(viewer, None, nodes_layer_data(case.with_array(labels)))
    ct = viewer.add_image(hu, name="one-ct", scale=nodes.scale, translate=nodes.translate)
    viewer.layers.move(viewer.layers.index(ct), 0)
    other = viewer.add_image(np.full(shape, 40, np.int16), name="other", scale=nodes.scale,
                             translate=nodes.translate)
    viewer.dims.ndisplay = 3
    depth = shape[0] * float(nodes.scale[0])
    ray = np.array([1.0, 0.0, 0.0])  # looking along +z, from below the first slice
    where = np.asarray(nodes.data_to_world((-3, 10, 12)), dtype=float)

    def remove() -> str:
        viewer.layers.selection.active = nodes
        return correct.tool.click(where, "remove", dims_displayed=(0, 1, 2), view_direction=ray)

    other.translate = np.asarray(nodes.translate) + np.array([depth + 50.0, 0.0, 0.0])  # behind the CT
    assert remove().startswith("removed node")
    nodes.data = labels.copy()
    other.translate = np.asarray(nodes.translate) - np.array([depth + 50.0, 0.0, 0.0])  # in front of it
    said = remove()
    assert "'other' is drawn over 'one-ct'" in said and (np.asarray(nodes.data) == 1).any(), said


@pytest.mark.parametrize("spacing, said", [((0.0007, 0.0007, 0.003), "finer than any CT's"),
                                           ((0.7, 0.7, 200.0), "more than any body")],
                         ids=["metres read as mm", "slices of 20 cm"])
def test_a_click_on_a_grid_of_wrong_spacing_is_refused_and_says_so(make_napari_viewer, tmp_path, autosave_dir,
                                                                   spacing, said):
    """The node layer took clicks on a grid in metres read as mm: Shift+click said "no node-like tissue"
    (the node searched for was 1000 times too large), Ctrl+click removed a node measured in nonsense mm."""
    from lnq_napari.io.readers import write_volume

    shape = (20, 60, 60)
    hu = np.full(shape, -100, np.int16)
    hu[6:14, 20:40, 20:40] = 40
    seg = np.zeros(shape, np.uint8)
    seg[8:12, 22:30, 22:30] = 1
    ct_path = write_volume(tmp_path / "case-ct.nrrd", Volume(hu, spacing))
    seg_path = write_volume(tmp_path / "case-seg.nrrd", Volume(seg, spacing))
    viewer = make_napari_viewer()
    tool = dock_widgets(viewer)["Correct"].tool
    _, nodes = viewer.open([ct_path, seg_path], plugin="lnq-napari")
    before = np.asarray(nodes.data).copy()
    for where, action in (((10, 30, 34), "add"), ((10, 25, 25), "remove"), ((10, 30, 34), "mark")):
        message = tool.click(nodes.data_to_world(where), action)
        assert message.startswith("the grid of 'case-seg'") and said in message, message
    assert np.array_equal(np.asarray(nodes.data), before)


@pytest.mark.parametrize("order", [(1, 0, 2), (2, 0, 1)], ids=["coronal", "sagittal"])
def test_a_coronal_or_sagittal_view_shows_the_head_up(make_napari_viewer, qtbot, tmp_path, order):
    """napari draws a view's first axis downwards: a coronal view of a CT (z from foot to head) stood the
    patient on their head. An axial view keeps anterior up."""
    from lnq_napari.io.readers import write_volume

    shape = (30, 40, 40)
    hu = np.full(shape, -1000, np.int16)
    hu[20:, 5:35, 5:35] = 1000  # bright head end (superior: high z)
    hu[:, 30:, :] = 0  # a grey back (posterior: high y), bright nowhere
    path = write_volume(tmp_path / "case-ct.nrrd", Volume(hu, (1.0, 1.0, 1.0)))
    viewer = make_napari_viewer(show=True)
    dock_widgets(viewer)
    viewer.open(path, plugin="lnq-napari")

    def bright_rows() -> np.ndarray:
        viewer.reset_view()
        qtbot.wait(100)
        shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].mean(axis=-1)
        rows = np.flatnonzero((shot > 200).sum(axis=1) > 5)
        return rows / shot.shape[0]

    viewer.dims.order = order
    bright = bright_rows()
    assert bright.size and bright.mean() < 0.5, bright  # the head end in the upper half
    viewer.dims.order = (0, 1, 2)
    viewer.dims.set_point(0, 25)
    grey = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].mean(axis=-1)
    middle = grey[:, grey.shape[1] // 2]
    body = np.flatnonzero(middle > 200)
    assert body.size and body.mean() / grey.shape[0] < 0.5  # axial: the front up, the grey back below


def test_the_3d_view_after_a_coronal_view_is_not_a_mirror_image(make_napari_viewer):
    """A coronal view turned the camera's vertical axis up and left its depth: the 3D view after it was
    left-handed, a mirror image in which the patient's sides swapped once rotated."""
    from napari.components.camera import Handedness

    from lnq_napari.plugin._anatomy import head_up_views

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 8, 8), np.int16))
    head_up_views(viewer)
    for order in ((1, 0, 2), (2, 0, 1), (0, 1, 2)):
        viewer.dims.ndisplay = 2
        viewer.dims.order = order
        viewer.dims.ndisplay = 3
        assert viewer.camera.handedness == Handedness.RIGHT, (order, viewer.camera.orientation)


def test_a_users_own_2d_orientation_stays_until_the_view_turns_between_z_and_another_axis(
    make_napari_viewer,
):
    """The plugin set the vertical axis again on every dims change: a user's flipped axial view went back
    to napari's downward axis after one look at 3D."""
    from lnq_napari.plugin._anatomy import head_up_views

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 8, 8), np.int16))
    head_up_views(viewer)
    viewer.camera.orientation2d = ("up", "right")  # the user's own flip of the axial view
    viewer.dims.ndisplay = 3
    viewer.dims.ndisplay = 2
    viewer.dims.order = (0, 2, 1)  # y and x swapped: still axial
    assert tuple(map(str, viewer.camera.orientation2d)) == ("up", "right")
    viewer.dims.order = (1, 0, 2)  # coronal: z becomes vertical, the head goes up
    assert str(viewer.camera.orientation2d[0]) == "up"
    viewer.camera.orientation2d = ("down", "left")  # the user's own choice in coronal
    viewer.dims.order = (2, 0, 1)  # sagittal: z stays vertical
    assert tuple(map(str, viewer.camera.orientation2d)) == ("down", "left")
    viewer.dims.order = (0, 1, 2)  # axial again: napari's downward axis
    assert str(viewer.camera.orientation2d[0]) == "down"


def test_a_click_near_a_ring_is_measured_in_mm_on_an_anisotropic_grid():
    """The hit radius was 4 voxels along each shown axis: in a coronal view of a 5 x 0.7 x 0.7 mm CT a
    click 19 mm above a ring took it, one 3.5 mm beside it did not; the ring is drawn as a circle."""
    from lnq_napari.plugin._session import point_near

    spacing = (5.0, 0.7, 0.7)
    ring = np.array([[20.0, 100.0, 100.0]])
    coronal = (0, 2)

    def click(dz_mm: float, dx_mm: float, rings: np.ndarray = ring) -> int | None:
        at = ring[0] + np.array([dz_mm, 0.0, dx_mm]) / spacing
        return point_near(rings, at, plane=coronal, spacing_zyx=spacing)

    assert click(19.0, 0.0) is None  # 3.8 voxels, 19 mm: far above the ring
    assert click(0.0, 2.1) == 0 and click(1.0, 1.4) == 0
    two = np.array([[21.0, 100.0, 100.0], [20.0, 100.0, 103.0]])  # 5 mm above, 2.1 mm beside the click
    assert click(0.0, 0.0, two) == 1  # the nearer in mm, not in voxels


def test_the_slice_slider_is_named_by_its_axis(make_napari_viewer, phantom_files):
    """napari named the world axes of a case "-3", "-2", "-1": the slice slider of an axial view read
    "-3"."""
    viewer = make_napari_viewer()
    viewer.open([str(phantom_files.ct), str(phantom_files.seg)], plugin="lnq-napari")
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")
    viewer.dims.order = (1, 0, 2)  # coronal: the slider moves along y
    assert viewer.dims.axis_labels[viewer.dims.not_displayed[0]] == "y"
