"""Patch sampling augmentation: enhanced known background shown unenhanced."""

from __future__ import annotations

import numpy as np

from lnq_napari.preprocess import DEFAULT_PREPROCESSING, normalize
from lnq_napari.training.sampler import Unenhance


def _patch():
    """Fat, an enhanced vessel (250 HU, known background only in part), a node (40 HU) and two blobs."""
    hu = np.full((8, 32, 32), -100.0, dtype=np.float32)
    states = np.full(hu.shape, -1, dtype=np.int8)
    hu[:, 4:10, 4:28] = 250.0
    states[:, 4:10, 4:20] = 0  # the HU rule marked only part of the vessel
    hu[:, 20:27, 10:17] = 40.0
    states[:, 20:27, 10:17] = 1
    hu[:, 28:31, 28:31] = 120.0  # brighter than a node, not enhanced: stays unknown
    hu[:, 12:16, 24:30] = 200.0  # an enhanced structure the HU rule left unknown
    return normalize(hu, DEFAULT_PREPROCESSING), states


def _hu(image):
    return image * DEFAULT_PREPROCESSING["hu_scale"] + DEFAULT_PREPROCESSING["hu_center"]


def test_unenhance_maps_enhanced_background_to_blood_and_keeps_the_rest():
    image, states = _patch()
    aug = Unenhance.from_hu(1.0, DEFAULT_PREPROCESSING, bright_hu=230.0)
    image_out, states_out = aug(image, states, np.random.default_rng(0))
    out = _hu(image_out)
    for structure in (np.s_[:, 4:10, 4:28], np.s_[:, 12:16, 24:30]):  # known and unknown parts alike
        assert 29.0 <= out[structure].min() and out[structure].max() <= 56.0
        assert (states_out[structure] == 0).all()  # shown unenhanced, and known background
    assert np.allclose(out[:, 20:27, 10:17], 40.0, atol=0.01)  # the node is untouched
    assert (states_out[:, 20:27, 10:17] == 1).all()
    assert np.allclose(out[:, 28:31, 28:31], 120.0, atol=0.01)  # not enhanced: unchanged, still unknown
    assert (states_out[:, 28:31, 28:31] == -1).all()
    assert np.allclose(out[:, 17:19, :], -100.0, atol=0.01)  # fat is the fixed point
    original = _patch()
    assert np.array_equal(image, original[0]) and np.array_equal(states, original[1])  # inputs kept


def test_unenhance_off_or_nothing_enhanced_leaves_the_patch():
    image, states = _patch()
    rng = np.random.default_rng(0)
    off = Unenhance.from_hu(0.0, DEFAULT_PREPROCESSING, 230.0)(image, states, rng)
    assert off[0] is image and off[1] is states
    plain = np.where(image > 0.5, 0.0, image).astype(np.float32)  # nothing above 137 HU
    on = Unenhance.from_hu(1.0, DEFAULT_PREPROCESSING, 230.0)(plain, states, rng)
    assert on[0] is plain and on[1] is states
