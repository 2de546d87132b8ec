"""Patch sampling augmentation: enhanced known background shown unenhanced."""

from __future__ import annotations

import numpy as np

from lnq_napari.preprocess import PreprocessingConfig, normalize
from lnq_napari.training.sampler import Unenhance

PREP = PreprocessingConfig()


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
    return normalize(hu, PREP), states


def _hu(image):
    return image * PREP.hu_scale + PREP.hu_center


def test_unenhance_maps_enhanced_background_to_blood_and_keeps_the_rest():
    image, states = _patch()
    aug = Unenhance.from_hu(1.0, PREP, bright_hu=230.0)
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
    off = Unenhance.from_hu(0.0, PREP, 230.0)(image, states, rng)
    assert off[0] is image and off[1] is states
    plain = np.where(image > 0.5, 0.0, image).astype(np.float32)  # nothing above 137 HU
    on = Unenhance.from_hu(1.0, PREP, 230.0)(plain, states, rng)
    assert on[0] is plain and on[1] is states


def _sources(rng):
    from lnq_napari.training.sampler import PatchSource

    states = np.full((40, 120, 120), -1, np.int8)
    states[5:10, 10:20, 10:20] = 1  # nodes far from the focus
    focus = np.zeros(states.shape, bool)
    focus[30:33, 100:104, 100:104] = True  # what the reviewer edited
    image = np.zeros(states.shape, np.float32)
    return [PatchSource.build("a", image, states, rng, focus=focus),
            PatchSource.build("b", image, states, rng)]


def test_focus_fraction_centres_patches_on_focus_voxels():
    from lnq_napari.training.sampler import PatchSampler

    rng = np.random.default_rng(0)
    sources = _sources(rng)
    assert len(sources[0].focus_voxels) == 48 and sources[1].focus_voxels is None
    patch = (8, 32, 32)
    always = PatchSampler(sources, patch, fg_fraction=1.0, pad=0.0, rng=rng, focus_fraction=1.0)
    centres = [always._center(always.everything) for _ in range(200)]
    assert all(i == 0 for i, _ in centres)
    zyx = np.array([c for _, c in centres])
    shift = np.array(patch) // 4
    assert (zyx >= np.array([30, 100, 100]) - shift).all() and (zyx <= np.array([32, 103, 103]) + shift).all()

    never = PatchSampler(sources, patch, fg_fraction=1.0, pad=0.0, rng=rng, focus_fraction=0.0)
    zyx = np.array([never._center(never.everything)[1] for _ in range(200)])
    near_focus = (np.abs(zyx - np.array([31, 101, 101])) <= shift).all(axis=1)
    assert near_focus.mean() == 0  # node-centred draws, far from the focus
    half = PatchSampler(sources, patch, fg_fraction=0.5, pad=0.0, rng=rng, focus_fraction=0.5)
    zyx = np.array([half._center(half.everything)[1] for _ in range(2000)])
    lo, hi = np.array([30, 100, 100]) - shift, np.array([32, 103, 103]) + shift
    in_reach = ((zyx >= lo) & (zyx <= hi)).all(axis=1)
    assert 0.2 < in_reach.mean() < 0.3  # half of the node-centred half went to the focus
