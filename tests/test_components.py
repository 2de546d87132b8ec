"""Connected components: 26-connectivity, and labelling inside the mask's box gives scipy's own ids; the
distance in mm around a mask, computed in its box, is the whole grid's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lnq_napari.components import (
    STRUCTURE,
    grown_by_one,
    label_components,
    label_nodes,
    node_numbers,
    touching_ids,
    within_mm,
)


def test_corner_neighbours_are_one_node_and_empty_masks_have_none():
    mask = np.zeros((6, 7, 8), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # touch by a corner only
    mask[4, 5, 6] = True
    labels, count = label_components(mask)
    assert count == 2 and labels[1, 1, 1] == labels[2, 2, 2] == 1 and labels[4, 5, 6] == 2
    empty, none = label_components(np.zeros((3, 4, 5), np.uint8))
    assert none == 0 and empty.shape == (3, 4, 5) and empty.dtype == np.int32 and not empty.any()


def test_same_ids_as_labelling_the_whole_volume():
    rng = np.random.default_rng(3)
    for _ in range(30):
        mask = np.zeros((20, 30, 40), bool)
        z, y, x = rng.integers(0, 15), rng.integers(0, 25), rng.integers(0, 35)
        mask[z : z + 5, y : y + 5, x : x + 5] = rng.random((5, 5, 5)) > rng.random()
        labels, count = label_components(mask)
        expected, n = ndimage.label(mask, structure=STRUCTURE)
        assert count == n and np.array_equal(labels, expected)


def test_within_mm_in_the_box_equals_the_distance_transform_of_the_whole_grid():
    rng = np.random.default_rng(5)
    for spacing in ((3.0, 0.7, 0.7), (1.0, 1.0, 1.0), (5.0, 2.5, 0.9)):
        for distance in (0.0, 1.5, 4.0, 12.0):
            mask = np.zeros((18, 30, 34), bool)
            z, y, x = rng.integers(0, 14), rng.integers(0, 26), rng.integers(0, 30)
            mask[z : z + 4, y : y + 4, x : x + 4] = rng.random((4, 4, 4)) > 0.6
            mask[z, y, x] = True
            whole = ndimage.distance_transform_edt(~mask, sampling=spacing) <= distance
            assert np.array_equal(within_mm(mask, spacing, distance), whole)
    assert not within_mm(np.zeros((4, 5, 6), bool), (1.0, 1.0, 1.0), 3.0).any()
    assert np.array_equal(within_mm(mask, (1.0, 1.0, 1.0), -2.0), mask)  # no growth below zero


def test_touching_ids_are_the_groups_a_binary_mask_joins():
    ids = np.zeros((6, 12, 12), np.int32)
    ids[1:3, 1:3, 1:3], ids[1:3, 3:5, 1:3] = 7, 8  # face to face
    ids[4, 6, 6], ids[5, 7, 7] = 4, 5  # corner to corner: 26-connected
    ids[1:3, 8:10, 8:10] = 2  # alone
    ids[0, 11, 0], ids[5, 0, 11] = 3, 3  # one id in two pieces: nothing merges
    assert sorted(touching_ids(ids)) == [(4, 5), (7, 8)]
    assert touching_ids(ids > 0) == [] and touching_ids(np.zeros((2, 2, 2))) == []
    ids[3, 10, 2], ids[3, 10, 3] = 7, 8  # the same two ids touching elsewhere too: named once
    assert sorted(touching_ids(ids.astype(np.float64))) == [(4, 5), (7, 8)]  # a float label map as well


def test_what_a_mask_touches_is_what_would_join_it_into_one_node():
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    touched = grown_by_one(mask)
    assert touched.sum() == 27  # faces, edges and corners, as label_components joins them
    corner = np.zeros_like(mask)
    corner[3, 3, 3] = True
    assert touched[corner].all() and label_components(mask | corner)[1] == 1


def test_a_node_is_a_blob_of_one_value():
    """A map of several values: each value is the id of its first blob (raster order), each further blob
    of a value gets a new id above the largest (a class map, a brush colour used twice); values that
    touch stay apart. The same rule holds for a map of one value: its blobs are v, v + 1, ... (a 0/1
    mask's 1..n)."""
    ids = np.zeros((6, 12, 12), np.uint16)
    ids[0:2, 0:2, 0:2] = 1  # class 1, first node
    ids[0:2, 0:2, 2:4] = 2  # class 2 touching it: apart
    ids[4:6, 9:11, 9:11] = 1  # class 1, a second node
    ids[3, 5, 5], ids[5, 0, 11] = 2, 2  # class 2, two more nodes (a corner apart from nothing)
    nodes = label_nodes(ids)
    assert nodes.dtype == np.int32 and np.array_equal(nodes > 0, ids > 0)
    assert nodes[0, 0, 0] == 1 and nodes[0, 0, 2] == 2  # each value's first blob keeps its id
    assert (nodes[4, 9, 9], nodes[3, 5, 5], nodes[5, 0, 11]) == (3, 4, 5)  # then new ids above the largest
    for value in (1, 7, 255):
        for mask in (np.where(ids == 1, value, 0), np.where(nodes == 1, value, 0)):  # two blobs, one
            blobs = label_components(mask)[0]
            expected = np.where(blobs > 0, blobs + value - 1, 0)
            assert np.array_equal(label_nodes(mask.astype(np.uint8)), expected)
    assert not label_nodes(np.zeros((2, 2, 2))).any()
    ids32 = label_nodes(ids)
    assert label_nodes(ids32) is ids32  # already one id per node: no full-size copy


def test_node_ids_that_do_not_fit_int32_are_kept():
    """uint32 id 3e9 came back as -1294967296; an int64 map holding 2**31 - 1 and a split value raised
    OverflowError. The ids stay exact, as int64 where they do not fit int32."""
    big = np.zeros((4, 4, 12), np.uint32)
    big[1:3, 1:3, 0:2], big[1:3, 1:3, 4:6] = 3_000_000_000, 1
    assert label_nodes(big).dtype == np.int64 and np.array_equal(label_nodes(big), big)
    top = np.zeros((4, 4, 12), np.int64)
    top[1:3, 1:3, 0:2], top[1:3, 1:3, 4:6], top[1:3, 1:3, 8:10] = 5, 2**31 - 1, 5
    assert np.unique(label_nodes(top)).tolist() == [0, 5, 2**31 - 1, 2**31]
    assert label_nodes(top)[1, 1, 8] == 2**31


@pytest.mark.parametrize("axes", [(0,), (1, 2), (0, 1, 2)])
def test_node_numbers_on_a_grid_follow_lps_order_without_a_reordered_copy(axes):
    """With the grid, blobs are numbered in LPS raster order (a value split in two: its LPS-first blob keeps
    the value, the other the id above the largest) though labelled in stored order: a flipped file's map
    is the LPS one flipped, C-ordered, and each node keeps its id."""
    from lnq_napari.io.volume import Volume

    lps = np.zeros((6, 7, 8), np.uint8)
    lps[0:2, 0:2, 0:2] = 3  # value 3's LPS-first blob
    lps[4:6, 5:7, 6:8] = 3  # its second blob: id 4
    lps[3, 3, 3] = 1
    lps[0, 6, 7] = 1
    expected, ids = node_numbers(lps)
    signs = [-1 if 2 - j in axes else 1 for j in range(3)]  # LPS x, y, z flipped with array axes 2, 1, 0
    grid = Volume(np.flip(lps, axes).copy(), (1, 1, 1), (0, 0, 0), tuple(np.diag(signs).ravel()))
    numbers, again = node_numbers(grid.array, grid=grid)
    np.testing.assert_array_equal(again, ids)
    np.testing.assert_array_equal(np.flip(numbers, axes), expected)
    assert numbers.flags.c_contiguous
    np.testing.assert_array_equal(np.flip(label_nodes(grid.array, grid=grid), axes), label_nodes(lps))


def _signed_permutations():
    import itertools

    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            matrix = np.zeros((3, 3))
            for column, (row, sign) in enumerate(zip(perm, signs)):
                matrix[row, column] = sign
            yield matrix


def test_node_numbers_on_any_stored_order_are_those_of_the_lps_copy():
    """Every signed axis order, small maps (an x of 4 voxels among them), several values, blobs touching
    and boxes overlapping: the numbers are those of the map put in LPS order, the input unchanged. The
    second pass negated in place with ``np.negative(out=, where=)``, which some numpy builds get wrong on
    16-byte strides: a node's voxel read 0 (dropped) or another node's negated id."""
    from lnq_napari.io.orientation import lps_view
    from lnq_napari.io.volume import Volume

    rng = np.random.default_rng(0)
    for shape in [(3, 2, 4), (4, 4, 4), (5, 3, 4), (2, 6, 7)]:
        for direction in _signed_permutations():
            values = rng.integers(1, 4, shape)
            array = np.where(rng.random(shape) < 0.35, values, 0).astype(np.int32)
            kept = array.copy()
            grid = Volume(array, (1.0, 0.8, 2.0), (0, 0, 0), tuple(direction.ravel()))
            expected, expected_ids = node_numbers(np.ascontiguousarray(lps_view(grid).array))
            numbers, ids = node_numbers(array, grid=grid)
            np.testing.assert_array_equal(ids, expected_ids)
            np.testing.assert_array_equal(np.asarray(lps_view(grid.with_array(numbers)).array), expected)
            np.testing.assert_array_equal(array, kept)
