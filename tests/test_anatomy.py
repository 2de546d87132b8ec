"""The chest's anatomy on a coarse copy: the chest ROI and slice-by-slice hole filling (the mediastinum
region: test_region.py)."""

from __future__ import annotations

import numpy as np

from lnq_napari.anatomy import RoiConfig, _holes_filled, find_roi


def _chest(shape=(20, 64, 80)) -> np.ndarray:
    """Air outside, a soft-tissue body ellipse, two lungs, a node-like blob between them."""
    z, y, x = np.indices(shape)
    hu = np.full(shape, -1000, np.int16)
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (shape[1] * 0.42)) ** 2 + ((x - cx) / (shape[2] * 0.45)) ** 2 < 1
    hu[body] = 40
    for side in (-1, 1):
        dx = x - cx - side * shape[2] * 0.22
        lung = ((y - cy) / (shape[1] * 0.28)) ** 2 + (dx / (shape[2] * 0.15)) ** 2 < 1
        hu[lung & (z > 2) & (z < shape[0] - 3)] = -850
    return hu


def test_roi_covers_lungs_and_drops_outside_air():
    hu = _chest()
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
