"""A CT whose spacing is in metres read as mm (0.003 for 3 mm voxels), and a slab thinner than the
registration's coarse grid: compare says so in one line instead of SimpleITK's BinShrink traceback."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume

SHAPE = (10, 24, 24)  # z, y, x


def _ct(spacing: tuple[float, float, float]) -> Volume:
    rng = np.random.default_rng(0)
    hu = np.full(SHAPE, -1000, np.int16)
    hu[1:9, 4:20, 4:20] = 40 + rng.integers(-30, 30, (8, 16, 16))
    return Volume(hu, spacing)


def _labels(ct: Volume) -> Volume:
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:6, 8:12, 8:12] = 1
    return Volume(labels, ct.spacing, ct.origin, ct.direction)


def test_compare_refuses_a_ct_in_metres_in_one_line():
    mm, metres = _ct((3.0, 3.0, 10.0)), _ct((0.003, 0.003, 0.01))
    with pytest.raises(LNQError, match=r"the follow-up CT has voxels of 0\.003 mm along its [yx] axis, finer "
                                       r"than any CT's: its spacing is in another unit \(values in metres"):
        api.compare(mm, metres, _labels(mm), _labels(metres))


def test_measure_refuses_a_ct_in_metres():
    metres = _ct((0.003, 0.003, 0.01))
    with pytest.raises(LNQError, match="finer than any CT's"):
        api.measure(_labels(metres), metres)


def test_a_ct_of_fine_but_real_voxels_is_measured():
    fine = _ct((0.2, 0.2, 0.5))
    rows, _ = api.measure(_labels(fine), fine)
    assert [r.voxels for r in rows] == [3 * 4 * 4]


def test_chest_of_a_slab_thinner_than_the_coarse_grid():
    """Two slices of 1 mm: the coarse copy keeps one slice (BinShrink by 3 raised 'InputImage is too
    small')."""
    from lnq_napari.followup.register import COARSE_MM, chest_of

    hu = np.asarray(_ct((1.0, 1.0, 1.0)).array)[:2]
    chest = chest_of(Volume(hu, (1.0, 1.0, 1.0)))
    ny, nx = SHAPE[1] // int(COARSE_MM), SHAPE[2] // int(COARSE_MM)
    assert chest.image.GetSize() == (nx, ny, 1)
    assert chest.lungs.shape == chest.chest.shape == (1, ny, nx)
