"""Node measurements on shapes of known size, on anisotropic and oblique grids."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import cut_node, ellipse_section

from lnq_napari.errors import LNQError
from lnq_napari.io.orientation import lps_view
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import NodeRow, NodeSummary, measure_nodes, node_ids, summarize_nodes, write_csv

SPACING = (0.7, 0.9, 2.5)  # x, y, z mm
SHAPE = (24, 60, 60)  # z, y, x
IN_PLANE_VOXEL = max(SPACING[:2])


def ellipsoid(semi_axes_mm, angle=0.0, centre_zyx=(12, 30, 30), offset_mm=(0.0, 0.0, 0.0), shape=SHAPE):
    """Mask of a solid ellipsoid: semi-axes (a, b) in the axial plane rotated by ``angle``, c along z."""
    a, b, c = semi_axes_mm
    z, y, x = np.indices(shape, dtype=float)
    px = (x - centre_zyx[2]) * SPACING[0] + offset_mm[0]
    py = (y - centre_zyx[1]) * SPACING[1] + offset_mm[1]
    pz = (z - centre_zyx[0]) * SPACING[2] + offset_mm[2]
    u = px * math.cos(angle) + py * math.sin(angle)
    w = -px * math.sin(angle) + py * math.cos(angle)
    return ((u / a) ** 2 + (w / b) ** 2 + (pz / c) ** 2 <= 1.0).astype(np.uint8)


@pytest.mark.parametrize("radius", [5.0, 9.0])
def test_sphere_volume_and_axes(radius):
    mask = ellipsoid((radius, radius, radius), offset_mm=(0.2, -0.1, 0.4))
    (row,) = measure_nodes(Volume(mask, SPACING))
    assert row.voxels == int(mask.sum())
    assert row.volume_mm3 == pytest.approx(mask.sum() * np.prod(SPACING))
    assert row.volume_cm3 == pytest.approx(row.volume_mm3 / 1000)
    assert row.volume_mm3 == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.06)
    assert row.long_axis_mm == pytest.approx(2 * radius, abs=IN_PLANE_VOXEL)
    assert row.short_axis_mm == pytest.approx(2 * radius, abs=IN_PLANE_VOXEL)
    np.testing.assert_allclose(row.principal_axes_mm, [2 * radius] * 3, atol=SPACING[2] / 2)


@pytest.mark.parametrize("angle", [0.0, 0.5, 1.1])
def test_rotated_ellipsoid_axes(angle):
    mask = ellipsoid((12.0, 7.0, 9.0), angle=angle, offset_mm=(0.3, -0.2, 0.4))
    (row,) = measure_nodes(Volume(mask, SPACING))
    assert row.volume_mm3 == pytest.approx(4 / 3 * math.pi * 12 * 7 * 9, rel=0.03)
    assert row.long_axis_mm == pytest.approx(24.0, abs=IN_PLANE_VOXEL)
    assert row.short_axis_mm == pytest.approx(14.0, abs=IN_PLANE_VOXEL)
    assert row.ge_10mm is True
    np.testing.assert_allclose(row.principal_axes_mm, [24.0, 18.0, 14.0], atol=1.0)


@pytest.mark.parametrize("order", [(0, 2, 1), (2, 1, 0), (1, 0, 2)], ids=["coronal", "sagittal", "yx"])
def test_axes_are_measured_on_axial_planes_whatever_order_the_file_stores(order):
    """The same ellipsoid stored with its array axes permuted (direction and spacing permuted with
    them, so the same voxels in space): the same RECIST axes, volume and centroid."""
    import SimpleITK as sitk

    mask = ellipsoid((12.0, 7.0, 9.0), angle=0.5, offset_mm=(0.3, -0.2, 0.4))
    axial = Volume(mask, SPACING, origin=(10.0, -20.0, 30.0))
    stored = Volume.from_sitk(sitk.PermuteAxes(axial.to_sitk(), list(order)))
    assert stored.shape != axial.shape or order == (1, 0, 2)
    (want,), (got,) = measure_nodes(axial), measure_nodes(stored)
    assert got.long_axis_mm == pytest.approx(want.long_axis_mm, abs=1e-6)
    assert got.short_axis_mm == pytest.approx(want.short_axis_mm, abs=1e-6)
    assert got.long_axis_mm == pytest.approx(24.0, abs=IN_PLANE_VOXEL)
    assert got.volume_mm3 == pytest.approx(want.volume_mm3)
    np.testing.assert_allclose(got.centroid_mm, want.centroid_mm, atol=1e-6)


@pytest.mark.parametrize("stored", [lambda m: m[:, :, ::-1], lambda m: m[:, ::-1],
                                    lambda m: m.transpose(0, 2, 1)],
                         ids=["x-mirrored", "y-mirrored", "x-y-swapped"])
def test_a_mirrored_node_has_the_same_recist_axes(stored):
    """Longest chords of equal length (on one slice, or on two up to rounding) were taken in the order the
    voxels are stored: a mirrored copy's short axis was 0.26 mm shorter (1.3 mm on a phantom node)."""
    from lnq_napari.caliper import axial_axes

    mask = ellipsoid((7.0, 9.0, 6.0), angle=0.3)
    spacing = (SPACING[0], SPACING[0])
    assert axial_axes(stored(mask), spacing) == pytest.approx(axial_axes(mask, spacing), abs=1e-9)


@pytest.mark.parametrize("angle", [0.0, math.pi / 2])
def test_a_node_under_10_mm_across_is_not_read_as_enlarged(angle):
    """A 15 x 9.5 mm node on 0.7 mm pixels, lying along x or y: its short axis was the outline's width
    across the longest chord, which runs corner to corner of the flat tips and so is tilted: 10.25 mm,
    flagged >= 10 mm. A caliper drawn at right angles to the long axis measures 9.3 mm (the digitised
    outline is 9.1-9.8 mm across)."""
    spacing = (0.7, 0.7, 1.25)
    (row,) = measure_nodes(Volume(ellipse_section((7.5, 4.75), spacing, angle), spacing))
    assert row.long_axis_mm == pytest.approx(15.0, abs=0.5)
    assert row.short_axis_mm == pytest.approx(9.5, abs=0.35)
    assert row.ge_10mm is False


def test_a_node_cut_by_the_image_edge_is_measured_across_what_is_shown():
    """A disc of radius 8 mm whose centre is 2 pixels (1.2 mm) in from the image's edge: long axis the
    chord along the edge (about 16 mm), short axis the caliper from the edge to the far side of the disc
    (1.5 + 8 mm to the outline); the width of the outline across a long chord tilted by the cut's
    corners read 10.8 mm."""
    spacing = (0.6, 0.6, 5.0)
    mask = ellipse_section((8.0, 8.0), spacing, shape=(40, 40), centre_mm=(-10.8, 0.0))  # centre at x index 2
    assert mask[0, :, 0].any() and not mask[0, :, 2 + 14].any()
    (row,) = measure_nodes(Volume(mask, spacing))
    assert row.long_axis_mm == pytest.approx(2 * math.sqrt(8.0**2 - 1.2**2), abs=0.6)
    assert row.short_axis_mm == pytest.approx(1.5 + 8.0, abs=0.4)


@pytest.mark.parametrize("degrees", range(0, 91, 15))
@pytest.mark.parametrize("spacing", [(0.6, 0.6, 5.0), (0.7, 0.7, 1.25), (0.7, 0.9, 2.5)])
def test_rotated_node_short_axis_is_within_a_pixel(degrees, spacing):
    """A 15 x 10 mm node at any in-plane angle, thick or thin slices: both axes within one pixel, the
    short axis within 0.6 mm (the outline's width across the long axis, measured before, read longer)."""
    mask = ellipse_section((7.5, 5.0), spacing, math.radians(degrees), centre_mm=(0.13, -0.21))
    (row,) = measure_nodes(Volume(mask, spacing))
    pixel = math.hypot(spacing[0], spacing[1])
    assert abs(row.long_axis_mm - 15.0) <= pixel
    assert abs(row.short_axis_mm - 10.0) <= 0.6


def _shape(name: str) -> np.ndarray:
    y, x = np.indices((60, 60))
    if name == "L":  # arms 30 x 4 pixels
        return ((x >= 10) & (x < 40) & (y >= 36) & (y < 40)) | ((x >= 10) & (x < 14) & (y >= 10) & (y < 40))
    ring = (np.hypot(x - 30, y - 30) <= 20) & (np.hypot(x - 30, y - 30) >= 14)
    return ring & ~((x > 30) & (abs(y - 30) < 6))  # "C": a ring open on the right


def test_the_short_axis_of_an_l_shaped_node_ends_on_the_node_not_in_the_air():
    """An L of two 2.8 mm thick arms: the caliper across the long axis (tip to tip) ends on the node;
    on the outline's hull it spanned the air inside the L's bend: 16.3 mm, flagged >= 10 mm."""
    (row,) = measure_nodes(Volume(_shape("L")[None].astype(np.uint8), (0.7, 0.7, 2.0)))
    assert row.long_axis_mm == pytest.approx(math.hypot(30, 30) * 0.7, abs=0.7)
    assert 2.8 <= row.short_axis_mm <= 2.8 + 2 * 0.7 and row.ge_10mm is False
    turned = np.ascontiguousarray(_shape("L")[::-1].T)[None].astype(np.uint8)  # mirrored and transposed
    (turned,) = measure_nodes(Volume(turned, (0.7, 0.7, 2.0)))
    assert turned.short_axis_mm == pytest.approx(row.short_axis_mm, abs=1e-9)


def test_a_caliper_spans_the_hollow_it_crosses():
    """A C (a ring 28 mm across, 4.2 mm thick, open on the right): the caliper at right angles to the
    long axis crosses the hollow, from one side of the ring to the other (about 28 mm), as a caliper
    drawn on the image does."""
    (row,) = measure_nodes(Volume(_shape("C")[None].astype(np.uint8), (0.7, 0.7, 2.0)))
    assert row.short_axis_mm == pytest.approx(27.2, abs=0.7)


@pytest.mark.parametrize("spacing", [0.5, 0.625, 0.4, 0.25, 0.2, 0.1, 1.0])
def test_a_short_axis_of_exactly_10_mm_is_enlarged(spacing):
    """A cross: a 30 mm bar along x and a bar exactly 10 mm long (whole pixels) across it: short axis
    10.0 mm, which is >= 10 mm (no float rounding below the threshold)."""
    n = int(round(10.0 / spacing))
    mask = np.zeros((1, n + 4, 3 * n + 4), np.uint8)
    mask[0, 2 + n // 2, 2:2 + 3 * n] = 1
    mask[0, 2:2 + n, 2 + 3 * n // 2] = 1
    (row,) = measure_nodes(Volume(mask, (spacing, spacing, 2.0)))
    assert row.short_axis_mm == pytest.approx(10.0, abs=1e-9) and row.ge_10mm is True
    assert row.long_axis_mm == pytest.approx(30.0, abs=1e-9)


@pytest.mark.parametrize("pixels", [39])
def test_a_short_axis_of_10_mm_up_to_float_rounding_is_enlarged(pixels):
    """A cross whose bar is 39 pixels of 10/39 mm: 9.999999999999998 mm, which is 10 mm (TIE_MM)."""
    spacing = 10.0 / pixels
    mask = np.zeros((1, pixels + 4, 3 * pixels + 4), np.uint8)
    mask[0, 2 + pixels // 2, 2:2 + 3 * pixels] = 1
    mask[0, 2:2 + pixels, 2 + 3 * pixels // 2] = 1
    (row,) = measure_nodes(Volume(mask, (spacing, spacing, 2.0)))
    assert row.short_axis_mm == pytest.approx(10.0, abs=1e-9) and row.ge_10mm is True
    assert summarize_nodes([row]).n_ge_10mm == 1


@pytest.mark.parametrize(("length", "text"), [
    (9.96, "9.9"), (9.999, "9.9"), (10.0 - 2e-15, "10.0"), (10.0, "10.0"), (10.09, "10.0"),
    (14.99, "14.9"), (15.0 - 2e-15, "15.0"), (0.0, "0.0"), (0.52, "0.5"),
])
def test_a_short_axis_is_shown_rounded_down_so_10_0_means_enlarged(length, text):
    from lnq_napari.quantify import ENLARGED_MM, reaches, short_axis_text

    assert short_axis_text(length) == text
    assert (float(text) >= ENLARGED_MM) == reaches(length, ENLARGED_MM)


def test_axes_are_taken_on_the_slice_where_the_node_is_largest_not_its_middle_one():
    """A cone-like node widening from foot to head (largest on its top slice): the axes of its top
    slice, however the slices are stored (feet first too)."""
    spacing = (0.7, 0.7, 2.5)
    mask = np.zeros((14, 64, 64), np.uint8)
    for k in range(13):
        mask[k] = ellipse_section((3.0 + 0.625 * k, 0.6 * (3.0 + 0.625 * k)), spacing)[0]
    for stored in (mask, mask[::-1]):
        (row,) = measure_nodes(Volume(stored, spacing))
        assert row.long_axis_mm == pytest.approx(2 * 10.5, abs=math.hypot(*spacing[:2]))
        assert row.short_axis_mm == pytest.approx(2 * 10.5 * 0.6, abs=math.hypot(*spacing[:2]))


def test_a_node_with_a_necrotic_hole_keeps_its_outline_axes_and_loses_the_hole_s_volume():
    spacing = (0.7, 0.7, 1.25)
    solid = np.repeat(ellipse_section((8.0, 8.0), spacing), 3, axis=0)
    hollow = solid.copy()
    hollow *= 1 - ellipse_section((4.0, 4.0), spacing)  # the hole on every slice
    (full,), (holed,) = measure_nodes(Volume(solid, spacing)), measure_nodes(Volume(hollow, spacing))
    assert (holed.long_axis_mm, holed.short_axis_mm) == pytest.approx((full.long_axis_mm, full.short_axis_mm))
    assert holed.voxels == int(hollow.sum()) < full.voxels
    assert holed.volume_mm3 == pytest.approx(hollow.sum() * np.prod(spacing))


def test_small_node_is_not_enlarged():
    (row,) = measure_nodes(Volume(ellipsoid((8.0, 4.0, 6.0)), SPACING))
    assert row.short_axis_mm == pytest.approx(8.0, abs=IN_PLANE_VOXEL)
    assert row.ge_10mm is False


def test_centroid_in_patient_coordinates_with_oblique_direction():
    c, s = math.cos(0.3), math.sin(0.3)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])  # rotated, feet-first z
    origin = np.array([-150.0, 40.0, 300.0])
    mask = np.zeros((10, 20, 30), np.uint8)
    mask[2:5, 4:8, 10:16] = 1  # index centre (x, y, z) = (12.5, 5.5, 3.0)
    (row,) = measure_nodes(Volume(mask, SPACING, origin, direction.ravel()))
    expected = origin + direction @ (np.array([12.5, 5.5, 3.0]) * SPACING)
    np.testing.assert_allclose(row.centroid_mm, expected, atol=1e-9)
    assert row.long_axis_mm == pytest.approx(math.hypot(6 * 0.7, 4 * 0.9), abs=IN_PLANE_VOXEL)


def test_binary_mask_splits_into_26_connected_components():
    mask = np.zeros((8, 30, 30), np.uint8)
    mask[1:4, 2:6, 2:6] = 1
    mask[4:6, 6:9, 6:9] = 1  # touches the first at a corner: the same node
    mask[2:5, 20:25, 20:25] = 1
    rows = measure_nodes(Volume(mask, SPACING))
    assert [r.id for r in rows] == [1, 2]
    assert [r.voxels for r in rows] == [48 + 18, 75]


def test_label_ids_are_nodes_even_when_touching_and_a_value_on_two_blobs_is_two_nodes():
    """A value on separate blobs (a class map's 1, a brush colour used twice) was one node: one volume and
    one centroid between two nodes. Each blob is a node; the second gets an id above the largest."""
    labels = np.zeros((8, 30, 30), np.uint16)
    labels[1:4, 2:6, 2:6] = 3
    labels[1:4, 6:9, 2:6] = 5  # touches node 3 face to face
    labels[2:4, 20:22, 20:22] = 9
    labels[5:7, 25:27, 25:27] = 9  # two nodes of one value
    rows = measure_nodes(Volume(labels, SPACING))
    assert {r.id: r.voxels for r in rows} == {3: 48, 5: 36, 9: 8, 10: 8}
    assert rows[-1].centroid_mm == pytest.approx((25.5 * 0.7, 25.5 * 0.9, 5.5 * 2.5))  # the second blob's


def test_a_class_map_read_from_a_file_gives_each_node_a_row(tmp_path):
    """``measure`` of a file holding classes 1 and 2, class 1 on two nodes: three rows (class 1 was one
    row for both its nodes); class 1's second node gets the id above the largest."""
    from lnq_napari.api import measure
    from lnq_napari.io.readers import write_volume

    classes = np.zeros((8, 30, 30), np.uint8)
    classes[1:4, 2:6, 2:6] = 1
    classes[2:5, 20:23, 20:23] = 1
    classes[4:7, 2:6, 22:26] = 2
    rows, summary = measure(write_volume(tmp_path / "classes-seg.nrrd", Volume(classes, SPACING)))
    assert [(r.id, r.voxels) for r in rows] == [(1, 48), (2, 48), (3, 27)] and summary.n_nodes == 3


def test_a_single_value_keeps_its_id_as_several_values_do():
    """One rule however many values: a value is its first blob's id, a further blob gets the next free id
    (a napari layer left with label 3 alone was tabled as node 1, which the layer does not hold: its row
    selected and coloured another label)."""
    labels = np.zeros((8, 30, 30), np.uint8)
    labels[1:3, 1:3, 1:3] = 3
    assert [r.id for r in measure_nodes(Volume(labels, SPACING))] == [3]
    labels[5:7, 20:22, 20:22] = 3
    assert [(r.id, r.voxels) for r in measure_nodes(Volume(labels, SPACING))] == [(3, 8), (4, 8)]
    assert [r.id for r in measure_nodes(Volume((labels > 0).astype(np.uint8), SPACING))] == [1, 2]


def test_ids_above_int32_are_measured_as_they_are():
    """uint32 id 3e9 was measured as -1294967296; an int64 map with 2**31 - 1 and a split value raised
    OverflowError."""
    labels = np.zeros((10, 10, 30), np.uint32)
    labels[3:6, 3:6, 2:4], labels[3:6, 3:6, 10:12] = 3_000_000_000, 1
    assert [r.id for r in measure_nodes(Volume(labels, SPACING))] == [1, 3_000_000_000]
    labels = labels.astype(np.int64)
    labels[3:6, 3:6, 2:4], labels[3:6, 3:6, 20:22] = 5, 2**31 - 1
    labels[3:6, 3:6, 10:12] = 5
    assert [r.id for r in measure_nodes(Volume(labels, SPACING))] == [5, 2**31 - 1, 2**31]


def test_an_image_of_few_values_is_refused_before_its_blobs_are_measured():
    """A uint8 image (a probability map saved as 0..255: few values, each on many blobs) passed the
    distinct-values check and became thousands of nodes (1.5 M on a small image: ``measure`` did not
    finish). Its blobs are counted too, as they are found; a 0/1 mask is a mask however many blobs."""
    from lnq_napari.api import measure

    noise = np.random.default_rng(0).integers(0, 256, (16, 64, 64)).astype(np.uint8)
    with pytest.raises(LNQError, match="more than 1000 nodes .*looks like an image"):
        measure(Volume(noise, SPACING))
    speckle = (noise > 248).astype(np.uint8)
    assert node_ids(Volume(speckle, SPACING))[1].size > 1000


def test_a_map_of_several_values_is_labelled_in_each_value_s_box():
    """A map of several values whose nodes reach the grid's corners (its box the whole grid) was relabelled
    on full-size int64 and int32 copies: 3x the map on top of it, on every edit in the Nodes table. Each
    value is labelled in its own box; an int32 map numbered 1..k is its own numbering."""
    import tracemalloc

    ids = np.zeros((40, 64, 64), np.int32)
    for k, corner in enumerate([(0, 0, 0), (36, 60, 60), (0, 60, 0), (36, 0, 60)], start=1):
        ids[tuple(slice(c, c + 4) for c in corner)] = k
    ids[39, 30, 30] = 2  # a second blob of 2 (after its first in raster order)
    tracemalloc.start()
    try:
        numbers, found = node_ids(Volume(ids, SPACING))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.tolist() == [1, 2, 3, 4, 5] and numbers[39, 30, 30] == 5
    assert peak < 1.5 * ids.nbytes  # the numbering and a view's worth of temporaries


def test_mean_hu_and_side():
    shape = (6, 20, 60)
    labels = np.zeros(shape, np.uint8)
    labels[2:4, 8:12, 2:8] = 1  # low x: the patient's right in LPS
    labels[2:4, 8:12, 27:33] = 2  # centre
    labels[2:4, 8:12, 50:56] = 3  # high x: left
    ct = np.random.default_rng(0).normal(40, 20, shape).astype(np.int16)
    rows = measure_nodes(Volume(labels, SPACING, (-20.0, 0, 0)), Volume(ct, SPACING, (-20.0, 0, 0)))
    assert [r.side for r in rows] == ["right", "midline", "left"]
    for r in rows:
        assert r.mean_hu == pytest.approx(ct[labels == r.id].mean())
    assert measure_nodes(Volume(labels, SPACING))[0].mean_hu is None


def test_side_follows_the_patient_not_the_scan_centre():
    """A patient lying 40 mm off the scan's centre (or a field of view cropped to one side): a node on
    the patient's midline was 'right' (the grid's centre was the yardstick); with the CT it is judged
    against the body's centre. Without a CT the grid's centre stays the yardstick."""
    shape, spacing = (6, 40, 100), (1.0, 1.0, 2.0)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 5:35, 20:60] = 40  # the body: its centre at x index 39.5, the grid's at 49.5 (10 mm apart)
    labels = np.zeros(shape, np.uint8)
    labels[2:4, 18:22, 38:42] = 1  # on the patient's midline
    labels[2:4, 18:22, 22:26] = 2  # the patient's right
    grid = (spacing, (-50.0, 0.0, 0.0))
    rows = measure_nodes(Volume(labels, *grid), Volume(ct, *grid))
    assert [r.side for r in rows] == ["midline", "right"]
    assert [r.side for r in measure_nodes(Volume(labels, *grid))] == ["right", "right"]
    flipped = Volume(labels[:, :, ::-1].copy(), spacing, (49.0, 0.0, 0.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    ct_flipped = Volume(ct[:, :, ::-1].copy(), spacing, (49.0, 0.0, 0.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert [r.side for r in measure_nodes(flipped, ct_flipped)] == ["midline", "right"]  # same places


def test_side_is_judged_against_the_patient_not_the_table_under_them():
    """A patient lying 40 mm off the middle of a table that spans the image and touches their back: the
    table is part of the body there, and the body's mean x leant 13 mm towards the table's centre, so a
    node on the patient's midline read 'right'. Each body row's middle, by the median, is the patient's."""
    shape, spacing = (6, 60, 160), (1.0, 1.0, 2.0)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 5:45, 20:60] = 40  # the patient: middle at x index 39.5
    ct[:, 45:50, :] = 200  # the table, under and touching them: middle at 79.5
    labels = np.zeros(shape, np.uint8)
    labels[2:4, 20:24, 38:42] = 1  # on the patient's midline
    labels[2:4, 20:24, 50:54] = 2  # 12 mm to the patient's left
    grid = (spacing, (-80.0, 0.0, 0.0))
    assert [r.side for r in measure_nodes(Volume(labels, *grid), Volume(ct, *grid))] == ["midline", "left"]


def test_ct_on_another_grid_is_refused():
    labels = Volume(np.ones((4, 5, 6), np.uint8), SPACING)
    with pytest.raises(LNQError, match="grid"):
        measure_nodes(labels, Volume(np.zeros((4, 5, 7), np.int16), SPACING))


def test_empty_labels_give_no_rows():
    rows = measure_nodes(Volume(np.zeros((4, 5, 6), np.uint8), SPACING))
    assert rows == []
    assert summarize_nodes(rows) == NodeSummary(0, 0, 0.0)


@pytest.mark.parametrize(
    ("array", "match"),
    [(np.full((2, 3, 3), -1, np.int16), "negative"), (np.full((2, 3, 3), 0.4, np.float32), "non-integer")],
)
def test_invalid_label_values_are_refused(array, match):
    with pytest.raises(LNQError, match=match):
        measure_nodes(Volume(array, SPACING))


def test_an_image_given_as_labels_is_refused():
    ct = np.random.default_rng(1).integers(1, 3000, size=(6, 30, 30)).astype(np.int16)
    with pytest.raises(LNQError, match="not a label map"):
        measure_nodes(Volume(ct, SPACING))


def test_summary_and_csv(tmp_path):
    big = ellipsoid((6.0, 6.0, 6.0), centre_zyx=(12, 30, 12))
    mask = big | ellipsoid((3.0, 3.0, 4.0), centre_zyx=(12, 30, 48))
    rows = measure_nodes(Volume(mask, SPACING))
    summary = summarize_nodes(rows)
    assert summary.n_nodes == 2 and summary.n_ge_10mm == 1
    assert summary.total_volume_cm3 == pytest.approx(mask.sum() * np.prod(SPACING) / 1000)
    assert summary.text().startswith("2 nodes, 1 with short axis >= 10 mm, total volume ")

    path = write_csv(rows, tmp_path / "out" / "nodes.csv")
    with open(path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in table] == [1, 2]
    assert float(table[0]["principal_axis_1_mm"]) == pytest.approx(rows[0].principal_axes_mm[0])
    assert float(table[1]["long_axis_mm"]) == pytest.approx(rows[1].long_axis_mm)
    assert "mean_hu" not in table[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["nodes.csv"]


def test_csv_failure_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        bad = NodeRow(1, 1, 1.0, 0.001, (0.0, 0.0, 0.0), 1.0, 1.0, 3.0, False, "midline")  # axes not a tuple
        write_csv([bad], tmp_path / "nodes.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stored", ["RAS", "RPI", "SRA", "ILP"])
def test_the_midline_is_the_same_whichever_way_the_ct_is_stored(stored):
    """midline_x subsamples the CT (every 2nd voxel of 130): subsampled as stored, a copy stored right to
    left took the other voxels, its midline 0.7 mm off (0.3 mm on a phantom: a node near it 'midline' in
    one file and 'left' in the other). Subsampled in LPS order, each stored form gives the same midline."""
    import SimpleITK as sitk

    from lnq_napari.quantify import midline_x

    hu = np.full((6, 130, 130), -1000, np.int16)
    hu[:, 20:110, 11:111] = 40  # rows 100 voxels wide: every 2nd voxel from the one end or the other
    ct = Volume(hu, (0.7, 0.7, 5.0), (-45.0, -40.0, -300.0))
    other = Volume.from_sitk(sitk.DICOMOrient(ct.to_sitk(), stored))
    assert midline_x(other) == pytest.approx(midline_x(ct), abs=1e-9)
    back = lps_view(other)  # a view of the voxels in LPS order: the CT as first stored
    assert back.same_grid(ct, tol=1e-9) and np.array_equal(back.array, ct.array)


@pytest.mark.parametrize("stored", ["RAS", "LPI", "SRA", "ILP"])
def test_a_node_has_the_same_id_whichever_way_the_file_stores_the_voxels(stored):
    """Nodes were numbered in the raster order of the stored array: the same CT stored feet first or right
    to left numbered its nodes otherwise (node 1 the top one instead of the lowest). Numbered in LPS order,
    each node keeps its id, and each id its row."""
    import SimpleITK as sitk

    mask = np.zeros((12, 40, 40), np.uint8)
    for z, y, x in ((2, 10, 30), (2, 30, 8), (8, 20, 20), (9, 5, 5)):
        mask[z:z + 2, y:y + 4, x:x + 3] = 1
    labels = Volume(mask, (0.7, 0.8, 2.5), (-10.0, 20.0, -300.0))
    other = Volume.from_sitk(sitk.DICOMOrient(labels.to_sitk(), stored))
    rows = {r.id: r.centroid_mm for r in measure_nodes(labels)}
    again = {r.id: r.centroid_mm for r in measure_nodes(other)}
    assert sorted(again) == sorted(rows) == [1, 2, 3, 4]
    for node, centroid in rows.items():
        np.testing.assert_allclose(again[node], centroid, atol=1e-9)


def _ct(labels: Volume) -> Volume:
    """A CT of soft tissue on ``labels``' grid."""
    return labels.with_array(np.full(labels.shape, 40, np.int16))


def test_a_node_cut_by_the_image_edge_names_the_edge_and_a_whole_node_none():
    """A node reaching the first slice or the in-plane border (a cropped CT) is measured on what is
    visible: its row names the patient's side of each edge that cuts it; a whole node's names none."""
    from lnq_napari.quantify import cut_by_edge

    mask = np.zeros(SHAPE, np.uint8)
    mask[0:4, 20:30, 20:30] = 1  # first slice: inferior on an LPS grid (z runs to the head)
    mask[10:14, 20:30, 0:6] = 1  # x index 0: the patient's right
    mask[10:14, 50:60, 40:50] = 1  # last row in y: posterior
    mask[10:14, 5:15, 40:50] = 1  # whole
    rows = measure_nodes(Volume(mask, SPACING), _ct(Volume(mask, SPACING)))
    assert sorted(r.cut_by_edge for r in rows) == [(), ("inferior",), ("posterior",), ("right",)]
    ras = Volume(mask, SPACING, direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # x index 0 lies left
    assert sorted(r.cut_by_edge for r in measure_nodes(ras, _ct(ras))) == [
        (), ("anterior",), ("inferior",), ("left",)]
    corner = (slice(0, 24), slice(0, 3), slice(57, 60))  # several edges: in one order
    assert cut_by_edge(corner, Volume(mask, SPACING)) == ("superior", "inferior", "left", "anterior")


def test_a_cut_on_a_sagittal_stored_grid_names_the_patients_sides():
    """A grid stored sagittal (its columns not its rows: index x runs to the back, y to the feet, z to
    the left): each array edge names the side it lies on in the patient."""
    from lnq_napari.quantify import cut_by_edge

    direction = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # row-major: not symmetric
    grid = Volume(np.zeros((20, 30, 40), np.uint8), SPACING, (0.0, 0.0, 0.0), direction)
    step = grid.index_to_physical(np.eye(3))  # one voxel on along z, y, x: LPS +x, -z, +y
    np.testing.assert_allclose(step, [[2.5, 0, 0], [0, 0, -0.9], [0, 0.7, 0]], atol=1e-12)
    first = (slice(0, 3), slice(0, 3), slice(0, 3))  # index 0 of z: right; of y: superior; of x: anterior
    assert cut_by_edge(first, grid) == ("superior", "right", "anterior")
    last = (slice(17, 20), slice(27, 30), slice(37, 40))
    assert cut_by_edge(last, grid) == ("inferior", "left", "posterior")
    mask = np.zeros(grid.shape, np.uint8)
    mask[0:4, 10:20, 10:20] = 1  # first z index only: the patient's right
    labels = grid.with_array(mask)
    assert [r.cut_by_edge for r in measure_nodes(labels, _ct(labels))] == [("right",)]


def test_the_csv_names_the_cut_edges_and_the_summary_counts_the_cut_nodes(tmp_path):
    mask = np.zeros(SHAPE, np.uint8)
    mask[20:24, 20:30, 20:30] = 1  # last slice: superior
    mask[10:14, 5:15, 40:50] = 1
    rows = measure_nodes(Volume(mask, SPACING), _ct(Volume(mask, SPACING)))
    with open(write_csv(rows, tmp_path / "nodes.csv")) as handle:
        table = list(csv.DictReader(handle))
    assert [r["cut_by_edge"] for r in table] == ["", "superior"]
    text = summarize_nodes(rows).text()
    assert "1 cut by the image edge (+: measured on what is visible, a lower bound)" in text
    assert "cut" not in summarize_nodes(rows[:1]).text()


def test_a_node_result_shown_in_a_notebook_counts_the_cut_nodes():
    """``NodeResult``'s repr (a notebook cell's last line) counts the nodes cut by the image edge in the
    words of the node summary; nothing about cuts when none is."""
    from lnq_napari.api import NodeResult

    mask = np.zeros(SHAPE, np.uint8)
    mask[20:24, 20:30, 20:30] = 1  # last slice: superior
    mask[10:14, 5:15, 40:50] = 1
    labels = Volume(mask, SPACING)
    rows = measure_nodes(labels, _ct(labels))
    result = NodeResult(labels, labels.with_array(mask.astype(np.float32)), "m", [], rows)
    assert repr(result).startswith("NodeResult(2 nodes (0 >= 10 mm, 1 cut by the image edge), 0 suggestions")
    assert summarize_nodes(rows).cut_words() in summarize_nodes(rows).text()
    whole = NodeResult(labels, result.probabilities, "m", [], rows[:1])
    shown = repr(whole)
    assert shown.startswith("NodeResult(1 node (0 >= 10 mm), 0 suggestions") and "cut" not in shown


def test_measure_marks_the_figures_of_a_node_cut_by_the_image_edge(tmp_path, capsys):
    """``lnq-napari measure``: "+" after the figures of a cut node, and the edges in a column."""
    from lnq_napari.cli import main
    from lnq_napari.io.readers import write_volume

    mask = np.zeros(SHAPE, np.uint8)
    mask[0:4, 20:30, 20:30] = 1
    mask[10:14, 5:15, 40:50] = 1
    path = write_volume(tmp_path / "seg.nrrd", Volume(mask, SPACING))
    ct = write_volume(tmp_path / "ct.nrrd", _ct(Volume(mask, SPACING)))
    main(["measure", str(path), "--ct", str(ct)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "cut_by_edge"
    cut, whole = lines[1].split(), lines[2].split()
    assert cut[-1] == "inferior" and all(cut[k].endswith("+") for k in (2, 3, 4))  # volume, long, short
    assert not any(cell.endswith("+") for cell in whole)


def test_a_label_file_cropped_to_its_nodes_flags_no_node_without_a_ct(tmp_path, capsys):
    """3D Slicer's "crop to minimum extent" stores a SEG on its nodes' bounding box, so whole nodes reach
    its edges: only a CT's grid tells a cut, so without one no node is flagged (nor with it: they are
    whole in the CT)."""
    from lnq_napari import api
    from lnq_napari.cli import main
    from lnq_napari.io.readers import write_volume

    mask = np.zeros(SHAPE, np.uint8)
    mask[5:9, 10:20, 10:22] = 1
    mask[14:18, 35:45, 30:44] = 1
    ct = _ct(Volume(mask, SPACING, (-40.0, -30.0, -200.0)))
    box = tuple(slice(int(k.min()), int(k.max()) + 1) for k in np.nonzero(mask))
    origin = tuple(float(v) for v in ct.index_to_physical(np.array([[s.start for s in box]]))[0])
    cropped = Volume(np.ascontiguousarray(mask[box]), SPACING, origin)
    seg = write_volume(tmp_path / "seg-cropped.nrrd", cropped)
    ct_path = write_volume(tmp_path / "ct.nrrd", ct)
    assert [r.cut_by_edge for r in api.node_table(cropped)] == [(), ()]  # the Nodes tab without a CT layer
    for args in ([], ["--ct", str(ct_path)]):
        rows, summary = api.measure(seg, **({"ct": ct_path} if args else {}))
        assert [r.cut_by_edge for r in rows] == [(), ()] and summary.n_cut == 0
        main(["measure", str(seg), *args])
        out = capsys.readouterr().out
        assert "cut_by_edge" not in out and "+" not in out


def test_every_table_marks_the_figures_of_a_cut_node_and_keeps_it_under_large_only_by_one_rule():
    """``marked_cells`` (the CLI's tables) and ``marked_cell`` (the widgets') put "+" after the figures the
    image edge makes lower bounds, a node's (``NODE_CUT_CELLS``) or a compare row's (``CUT_CELLS``), the
    tooltip saying why; other and empty cells stay as they are. ``may_be_enlarged``: the "≥10 mm only"
    rule."""
    from lnq_napari.followup.report import CUT_CELLS, ChangeRow
    from lnq_napari.quantify import marked_cell, marked_cells, may_be_enlarged

    whole, cut = cut_node(1, 8.0), cut_node(2, 8.0, ("left",))
    texts = {"id": "2", "short_axis_mm": "8.0", "long_axis_mm": "20", "volume_cm3": "0.50", "ge_10mm": "no"}
    assert marked_cells(cut, texts) == {**texts, "short_axis_mm": "8.0+", "long_axis_mm": "20+",
                                        "volume_cm3": "0.50+"}
    assert marked_cells(whole, texts) == texts
    assert marked_cell(cut, "ge_10mm", "no") == ("no", "")
    text, tip = marked_cell(cut, "short_axis_mm", "8.0")
    assert text == "8.0+" and tip.startswith("cut by the image edge (left): measured on what is visible")
    row = ChangeRow.of(whole, cut, "normal")
    cells = {"short_axis_baseline_mm": "8", "short_axis_followup_mm": "8",
             "recist_followup_short_axis_mm": ""}
    assert marked_cells(row, cells, CUT_CELLS) == {**cells, "short_axis_followup_mm": "8+"}
    assert [may_be_enlarged(r) for r in (whole, cut, cut_node(3, 12.0))] == [False, True, True]



def test_a_node_summary_shows_its_text():
    """A notebook showed ``NodeSummary(n_nodes=8, ..., total_volume_cm3=38.220000000000006, n_cut=0)``."""
    shown = repr(NodeSummary(8, 6, 38.220000000000006, 1))
    assert shown == ("NodeSummary(8 nodes, 6 with short axis >= 10 mm, total volume 38.22 cm3; 1 cut by the "
                     "image edge (+: measured on what is visible, a lower bound))")
