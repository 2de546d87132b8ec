"""The chest's anatomy on a coarse copy: the chest ROI and slice-by-slice hole filling (the mediastinum
region: test_region.py)."""

from __future__ import annotations

import numpy as np

from lnq_napari.anatomy import RoiConfig, _holes_filled, find_roi


def test_roi_covers_lungs_and_drops_outside_air(small_chest):
    hu = small_chest()
    roi = find_roi(hu, (5.0, 3.0, 3.0), RoiConfig())
    lungs = hu == -850
    inner = np.zeros_like(lungs)
    inner[roi] = True
    assert inner[lungs].all()
    assert roi[2].stop - roi[2].start < hu.shape[2]  # body margin air is cut off left-right


def test_roi_falls_back_to_whole_volume_without_body():
    hu = np.full((6, 10, 10), -1000, np.int16)
    roi = find_roi(hu, (5.0, 1.0, 1.0), RoiConfig())
    assert roi == (slice(0, 6), slice(0, 10), slice(0, 10))


def test_holes_are_filled_slice_by_slice_as_scipy_fills_each_slice():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    for _ in range(5):
        noise = ndimage.gaussian_filter(rng.normal(size=(6, 40, 50)), (0, 2, 2))
        mask = noise > 0.05  # rings, islands, holes and pockets open to a slice's edge
        expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        got = _holes_filled(mask, plane)
        assert np.array_equal(got, expected)
        assert (got & ~mask).any()  # some holes were there to fill
