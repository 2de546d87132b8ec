"""A CT stored flipped (feet first: z decreasing) is drawn through an affine, its layer scale (1, 1, 1):
edits sized in mm must take the grid's spacing, not the layer's scale."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.interact import Suggestion
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._case import add_case, nodes_layer_data
from lnq_napari.plugin._reader import ct_layer_data
from lnq_napari.plugin._session import NO_CT, PROB_KEY, session_for, show_suggestions

pytestmark = pytest.mark.gui

SPACING = (1.0, 1.0, 5.0)  # x, y, z mm: thick slices, as a routine chest CT's
FEET_FIRST = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _accepted_on(viewer, direction) -> np.ndarray:
    """The voxels a suggestion's acceptance paints where the model saw a 100 mm long structure of
    probability 0.5 in lung HU (no node-like tissue: the model's region is taken), on a CT of ``direction``;
    as physical z (mm) of each painted voxel."""
    shape = (20, 24, 24)
    ct = Volume(np.full(shape, -800, dtype=np.int16), SPACING, (0.0, 0.0, 0.0), direction)
    prob = np.zeros(shape, dtype=np.float32)
    prob[:, 10:14, 10:14] = 0.5
    ct_layer, nodes = add_case(viewer, ct_layer_data(ct), nodes_layer_data(ct.with_array(np.zeros(shape,
                                                                                                      np.uint8))))
    session = session_for(viewer, nodes)
    session.nodes.metadata[PROB_KEY] = prob
    centre = (10, 12, 12)
    suggestion = Suggestion("bright", centre, (12.0, 12.0, 0.0), 1.0, 0.5, 0.5, True, 320, 1600.0)
    session.suggestions = show_suggestions(viewer, ct, [suggestion], like=ct_layer)
    assert session.accept_suggestion(0)
    z_index = np.nonzero(nodes.data)[0]
    return np.asarray([nodes.data_to_world((z, 12, 12))[0] for z in z_index]) - nodes.data_to_world(centre)[0]


def test_an_accepted_suggestion_on_a_feet_first_ct_stays_within_the_growth_ball_in_mm(make_napari_viewer):
    viewer = make_napari_viewer()
    head_first = _accepted_on(viewer, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    viewer.layers.clear()
    feet_first = _accepted_on(viewer, FEET_FIRST)
    assert np.abs(head_first).max() <= 25.0  # the model's region, cut at 25 mm from the click
    assert np.abs(feet_first).max() <= 25.0  # 25 slices (125 mm) when the layer's scale was taken for mm
    assert feet_first.size == head_first.size


def test_labels_made_in_napari_on_a_feet_first_ct_are_written_where_they_are_drawn(make_napari_viewer,
                                                                                   tmp_path):
    """napari's New Labels on a CT drawn through an affine copies its transform, not lnq-napari's grid:
    File > Save with the lnq-napari writer wrote them at the layer's scale and translate (1 mm voxels at
    the origin), 20 cm away from the anatomy they were painted on."""
    from lnq_napari.io.readers import read_volume, write_volume

    shape = (8, 20, 24)
    array = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    path = write_volume(tmp_path / "case-ct.nrrd", Volume(array, (0.7, 0.8, 5.0), (-20.0, 30.0, -250.0),
                                                          FEET_FIRST))
    viewer = make_napari_viewer()
    (ct,) = viewer.open(path, plugin="lnq-napari")
    assert ct._type_string == "image"
    labels = viewer.add_labels(np.zeros(shape, dtype=np.uint8), scale=ct.scale, translate=ct.translate,
                               affine=ct.affine)  # as napari's New Labels makes it on the CT
    painted = (2, 5, 7)
    labels.data_setitem(tuple(np.array([i]) for i in painted), 1)
    viewer.layers.selection.active = labels
    (written,) = viewer.layers.save(str(tmp_path / "drawn.seg.nrrd"), selected=True, plugin="lnq-napari")
    saved = read_volume(written)
    index = tuple(int(i) for i in np.argwhere(np.asarray(saved.array) > 0)[0])
    physical = np.asarray(saved.origin) + saved.direction_matrix @ (np.asarray(saved.spacing) * index[::-1])
    assert np.allclose(physical[::-1], labels.data_to_world(painted), atol=1e-3)


def test_find_nodes_never_takes_the_region_outline_or_a_probability_map_for_the_ct(make_napari_viewer,
                                                                                    tmp_path):
    """The CT deleted, the CT choice fell to the region outline Find nodes drew (or a probability map
    opened beside): Find nodes ran on it and failed with "looks like a label map" (or found nodes in a
    probability map); it now says to open a CT."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.plugin.widgets.segment import show_region

    shape = (8, 20, 24)
    hu = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    ct_path = write_volume(tmp_path / "case-ct.nrrd", Volume(hu, SPACING, (0.0, 0.0, 0.0), FEET_FIRST))
    prob = np.random.default_rng(1).random(shape).astype(np.float32)
    prob_path = write_volume(tmp_path / "case-prob.nrrd", Volume(prob, SPACING, (0.0, 0.0, 0.0), FEET_FIRST))
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    (ct,) = viewer.open(ct_path, plugin="lnq-napari")
    viewer.open(prob_path, plugin="lnq-napari")
    show_region(viewer, Volume(np.ones(shape, np.uint8), SPACING, (0.0, 0.0, 0.0), FEET_FIRST), like=ct)
    assert len([ly for ly in viewer.layers if ly._type_string == "image"]) == 3
    assert segment.form.ct.value is ct
    viewer.layers.remove(ct)
    assert segment.form.ct.value is None
    assert segment.run() is None and segment.status.text().startswith("open a CT first")


def test_with_the_ct_deleted_a_click_never_grows_a_node_on_the_region_outline(make_napari_viewer, tmp_path):
    """The CT deleted after Find nodes, the node layer paired with the region outline on its grid as its
    CT: Shift+click grew a node on the 0/1 outline ("added node") and Save stored it as the case's."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.plugin.app import dock_widgets
    from lnq_napari.plugin.widgets.segment import show_region

    shape = (8, 20, 24)
    hu = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    grid = Volume(hu, SPACING, (0.0, 0.0, 0.0), FEET_FIRST)
    viewer = make_napari_viewer()
    correct = dock_widgets(viewer)["Correct"]
    (ct,) = viewer.open(write_volume(tmp_path / "case-ct.nrrd", grid), plugin="lnq-napari")
    region = np.zeros(shape, np.uint8)
    region[:, 4:16, 4:20] = 1
    show_region(viewer, grid.with_array(region), like=ct)
    (_, nodes) = add_case(viewer, None, nodes_layer_data(grid.with_array(np.zeros(shape, np.uint8))))
    assert session_for(viewer, nodes).ct_layer is ct
    viewer.layers.remove(ct)
    said = correct.tool.click(nodes.data_to_world((4, 4, 10)), "add")
    assert not np.asarray(nodes.data).any()
    assert said == NO_CT  # not "no open CT lies on the grid of 'nodes'": none is open


def test_a_click_never_edits_labels_from_a_ct_hidden_under_another_case(make_napari_viewer, tmp_path):
    """A second case's CT opened on top of the first (File > Open, same grid): the first case's node layer
    was still the one clicks edit, grown from the first CT under the one on screen."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.plugin.app import dock_widgets

    shape = (8, 20, 24)
    hu = np.full(shape, -100, np.int16)  # fat
    hu[2:6, 6:14, 8:16] = 40  # a node in the first case only
    first = Volume(hu, SPACING, (0.0, 0.0, 0.0), FEET_FIRST)
    viewer = make_napari_viewer()
    correct = dock_widgets(viewer)["Correct"]
    (ct,) = viewer.open(write_volume(tmp_path / "one-ct.nrrd", first), plugin="lnq-napari")
    (_, nodes) = add_case(viewer, None, nodes_layer_data(first.with_array(np.zeros(shape, np.uint8))))
    second = first.with_array(np.full(shape, -100, np.int16))
    (other,) = viewer.open(write_volume(tmp_path / "two-ct.nrrd", second), plugin="lnq-napari")
    viewer.layers.selection.active = nodes
    said = correct.tool.click(nodes.data_to_world((4, 10, 12)), "add")
    assert not np.asarray(nodes.data).any()
    assert "'two-ct' is drawn over 'one-ct'" in said, said
    other.visible = False
    assert correct.tool.click(nodes.data_to_world((4, 10, 12)), "add").startswith("added node")


def test_a_click_is_refused_only_where_another_opaque_scan_hides_the_labels_ct(make_napari_viewer, tmp_path):
    """The cover check refused a click when the same CT was opened twice, or another CT lay see-through
    or metres away; and it missed a scan opened by another reader (no lnq-napari role) drawn over the CT:
    a node grew from the hidden CT where the user saw a flat image."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.plugin._reader import prob_layer_data
    from lnq_napari.plugin.app import dock_widgets

    shape = (8, 20, 24)
    hu = np.full(shape, -100, np.int16)  # fat
    hu[2:6, 6:14, 8:16] = 40  # a node
    case = Volume(hu, SPACING, (0.0, 0.0, 0.0), FEET_FIRST)
    path = write_volume(tmp_path / "one-ct.nrrd", case)
    viewer = make_napari_viewer()
    correct = dock_widgets(viewer)["Correct"]
    (ct,) = viewer.open(path, plugin="lnq-napari")
    (_, nodes) = add_case(viewer, None, nodes_layer_data(case.with_array(np.zeros(shape, np.uint8))))
    where = nodes.data_to_world((4, 10, 12))

    def add_then_undo() -> str:
        viewer.layers.selection.active = nodes
        said = correct.tool.click(where, "add")
        grown = np.asarray(nodes.data).any()
        nodes.data = np.zeros(shape, np.uint8)
        return said if grown else f"nothing grown: {said}"

    (twice,) = viewer.open(path, plugin="lnq-napari")  # the same CT again, on top
    assert add_then_undo().startswith("added node")
    viewer.layers.remove(twice)
    prob, kwargs, _ = prob_layer_data(case.with_array(np.ones(shape, np.float32)))
    viewer.add_image(prob, **kwargs)  # an overlay the model drew: the CT shows through
    assert add_then_undo().startswith("added node")
    flat = viewer.add_image(np.full(shape, 40, np.int16), name="flat", affine=ct.affine.affine_matrix,
                            scale=ct.scale, translate=ct.translate)  # another reader's scan: no role
    said = add_then_undo()
    assert said.startswith("nothing grown") and "'flat' is drawn over 'one-ct'" in said, said
    flat.opacity = 0.3  # see-through: the CT shows
    assert add_then_undo().startswith("added node")
    flat.opacity = 1.0
    flat.translate = np.asarray(flat.translate) + np.array([0.0, 0.0, 5000.0])  # covers nothing clicked
    assert add_then_undo().startswith("added node")


def test_a_multiscale_labels_layer_saves_its_full_resolution_where_napari_draws_it(make_napari_viewer,
                                                                                     tmp_path):
    """File > Save of a multiscale Labels layer wrote its coarsest level on the full-resolution grid:
    half the size, the labels at the wrong place."""
    from lnq_napari.io.readers import read_volume

    full = np.zeros((8, 8, 8), np.uint8)
    full[6, 1, 2] = 1
    viewer = make_napari_viewer()
    labels = viewer.add_labels([full, full[::2, ::2, ::2]], multiscale=True, scale=(5.0, 2.0, 1.0),
                               translate=(10.0, 0.0, -3.0))
    viewer.layers.selection.active = labels
    (written,) = viewer.layers.save(str(tmp_path / "pyramid.seg.nrrd"), selected=True, plugin="lnq-napari")
    saved = read_volume(written)
    assert saved.shape == full.shape and np.allclose(saved.spacing, (1.0, 2.0, 5.0))
    index = tuple(int(i) for i in np.argwhere(np.asarray(saved.array) > 0)[0])
    physical = np.asarray(saved.origin) + saved.direction_matrix @ (np.asarray(saved.spacing) * index[::-1])
    assert np.allclose(physical[::-1], labels.data_to_world((6, 1, 2)), atol=1e-3)
