"""A CT whose spacing is in metres read as mm (0.003 for 3 mm voxels): compare and measure say so in one
line (compare crashed in SimpleITK's BinShrink with a traceback)."""

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
                                       r"than any CT's: its spacing is in another unit \(metres\?\)"):
        api.compare(mm, metres, _labels(mm), _labels(metres))


def test_measure_refuses_a_ct_in_metres():
    metres = _ct((0.003, 0.003, 0.01))
    with pytest.raises(LNQError, match="finer than any CT's"):
        api.measure(_labels(metres), metres)


def test_a_ct_of_fine_but_real_voxels_is_measured():
    fine = _ct((0.2, 0.2, 0.5))
    rows, _ = api.measure(_labels(fine), fine)
    assert [r.voxels for r in rows] == [3 * 4 * 4]

