"""The one label-value check: what a label map may hold."""

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.labels import check_label_values, label_mask


@pytest.mark.parametrize(("array", "message"), [
    (np.array([0.0, 0.4, 1.0]), "non-integer values"),
    (np.array([0.0, np.nan]), "NaN or infinite values.*set those voxels to 0"),
    (np.array([0, -1], dtype=np.int16), r"negative values \(min -1\); a label map"),
    (np.array([40, -1024], dtype=np.int16), "it looks like a CT .* not a label map"),  # a CT given as labels
    (np.array(["a", "b"]), "voxel type"),
])
def test_bad_label_values_are_refused_with_the_reason(array, message):
    with pytest.raises(LNQError, match=message):
        check_label_values(array, "seg.nrrd")


def test_label_mask_accepts_ids_bools_and_whole_floats():
    assert label_mask(np.array([0, 3, 7], dtype=np.uint16)).tolist() == [0, 1, 1]
    assert label_mask(np.array([0, 3, 7]), value=3).tolist() == [0, 1, 0]
    assert label_mask(np.array([False, True])).dtype == np.uint8
    assert label_mask(np.array([0.0, 2.0])).tolist() == [0, 1]


def test_label_maps_by_content_are_solid_blobs_of_few_whole_non_negative_values():
    from lnq_napari.io.labels import looks_like_label_map

    blobs = np.zeros((4, 20, 20), np.uint8)
    blobs[1:3, 2:8, 2:8], blobs[1:3, 2:8, 8:12] = 1, 2  # two nodes side by side
    assert looks_like_label_map(blobs) and looks_like_label_map(blobs.astype(np.float32))
    assert looks_like_label_map(blobs > 0) and looks_like_label_map(np.zeros((3, 4, 4), np.float32))
    ramp = np.broadcast_to(np.arange(20, dtype=np.uint8), (4, 20, 20))  # values change at every step
    assert not looks_like_label_map(ramp) and not looks_like_label_map(ramp.astype(np.float32))
    assert not looks_like_label_map(blobs.astype(np.float32) * 0.5)  # fractions: probabilities
    assert not looks_like_label_map(blobs.astype(np.int16) - 1)  # negative
    assert not looks_like_label_map(blobs.astype(np.float32) * 300)  # beyond a float mask's ids
    assert looks_like_label_map(blobs.astype(np.int16) * 300)  # integer ids may be large
    many = np.arange(4 * 20 * 20).reshape(4, 20, 20) // 4  # 400 values in blobs of 4
    assert not looks_like_label_map(many.astype(np.int32))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_label_map_and_its_transposes_read_alike(dtype):
    """The seam rule counted neighbours along x only: touching one-voxel-wide vessels running along y
    read as an image, the same map with y and x swapped as a label map."""
    from itertools import permutations

    from lnq_napari.io.labels import looks_like_label_map

    vessels = np.zeros((12, 30, 30), dtype)
    vessels[:, :, 10], vessels[:, :, 11], vessels[:, :, 20], vessels[:, :, 21] = 1, 2, 3, 4
    ramp = np.broadcast_to(np.arange(30, dtype=dtype), (12, 30, 30)) % 16  # an image: changes along x
    for array in (vessels, ramp):
        answers = {looks_like_label_map(np.ascontiguousarray(array.transpose(axes)))
                   for axes in permutations(range(3))}
        assert len(answers) == 1, answers
    assert looks_like_label_map(vessels)


def test_a_few_valued_image_with_no_background_is_no_label_map(small_chest):
    """A noise-free CT in stored values (air 24, tissue 1064: three values in solid blobs) read as a label
    map: a label map's background is 0."""
    from lnq_napari.io.labels import looks_like_label_map

    stored = (small_chest() + 1024).astype(np.uint16)
    assert not looks_like_label_map(stored)
    assert looks_like_label_map(np.where(stored > 1000, stored, 0).astype(np.uint16))  # with a background
