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
