"""Preprocessing: HU checks and scaling, resampling to the model grid and back onto the CT's exact grid."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.preprocess import PreprocessingConfig, normalize, pad_value, prepare, to_ct_grid

OBLIQUE_FLIP = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_normalize_window():
    prep = PreprocessingConfig()
    out = normalize(np.array([-3000, 50, 3000]), prep)
    assert out.dtype == np.float32
    assert out[1] == 0.0 and out[0] == pad_value(prep) and out[2] > 0


def test_prepare_resamples_to_target_spacing_and_back_to_exact_grid(small_chest):
    hu = small_chest()
    ct = Volume(hu, spacing=(3.0, 3.0, 5.0), origin=(-117.3, 12.25, -903.7), direction=OBLIQUE_FLIP)
    blob = np.zeros(hu.shape, np.uint8)
    zz, yy, xx = np.indices(hu.shape)
    blob[((zz - 10) * 5) ** 2 + ((yy - 32) * 3) ** 2 + ((xx - 40) * 3) ** 2 < 15**2] = 1
    prep = PreprocessingConfig(target_spacing=[2.0, 2.0, 4.0])
    p = prepare(ct, prep, labels=blob)
    assert p.image.dtype == np.float32 and p.labels.dtype == np.int8
    assert p.image.shape == p.labels.shape
    assert tuple(p.grid.GetSpacing()) == (2.0, 2.0, 4.0)
    # the blob's volume is kept by the resampling
    vol_ct = blob.sum() * 45.0
    vol_model = (p.labels == 1).sum() * 16.0
    assert abs(vol_model - vol_ct) / vol_ct < 0.15
    back = to_ct_grid(p.labels.astype(np.float32), p, ct, linear=True) >= 0.5
    assert back.shape == ct.shape
    inter = (back & (blob > 0)).sum()
    assert 2 * inter / (back.sum() + blob.sum()) > 0.9


def test_labels_prepared_on_an_image_prepared_before_match_one_pass(small_chest):
    hu = small_chest()
    ct = Volume(hu, spacing=(3.0, 3.0, 5.0), origin=(-117.3, 12.25, -903.7), direction=OBLIQUE_FLIP)
    labels = (np.random.default_rng(1).random(hu.shape) > 0.7).astype(np.int8)
    prep = PreprocessingConfig(target_spacing=[2.0, 2.0, 4.0])
    once, image = prepare(ct, prep, labels=labels), prepare(ct, prep)
    again = prepare(ct, prep, labels=labels, image=image)
    assert image.labels is None and again.image is image.image and again.roi_index == once.roi_index
    assert np.array_equal(again.image, once.image) and np.array_equal(again.labels, once.labels)


def test_a_ct_of_stored_values_not_hu_is_refused_before_the_model_runs(small_chest):
    """HU + 1024 (a DICOM's stored values with the rescale intercept left out) has no value below 0: the
    network saw a CT of bone and metal (a warning, then garbage nodes and exit 0 after 85 s); the error
    says what to do. A CT in HU passes; measure only warns (its mean HU reads 1024 high)."""
    hu = small_chest()
    stored = Volume((hu.astype(np.int32) + 1024).astype(np.uint16), (1.5, 1.5, 3.0))
    _refused_before_the_model_measure_warns(stored, "not in Hounsfield units .* rescale intercept")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(Volume(hu, (1.5, 1.5, 3.0)))


def test_an_8_bit_windowed_ct_is_called_a_windowed_export_not_told_to_apply_an_intercept(small_chest):
    """A CT windowed to 0..255 (uint8) was told to apply the rescale intercept, which cannot bring its HU
    back: it is an 8-bit export, and the original CT in HU is needed."""
    from lnq_napari.errors import LNQError

    hu = small_chest()
    hu = hu + np.random.default_rng(0).normal(0, 20, hu.shape)  # a scan's noise: hundreds of values
    windowed = np.clip((hu + 160.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)  # level 40, width 400
    with pytest.raises(LNQError, match="8-bit windowed export .* use the original CT in HU") as err:
        prepare(Volume(windowed, (1.5, 1.5, 3.0)))
    assert "intercept (usually" not in str(err.value)


def test_stored_values_with_a_negative_padding_are_refused_too(small_chest):
    """Stored values with the scanner's padding (-2000 around the scan circle) hold values below 0, so
    the first test passed them silently (0 nodes and a 'no lungs' warning that blamed the CT's content);
    HU with the usual -3024 padding is not warned about."""
    hu = small_chest().astype(np.int32)
    corner = np.zeros(hu.shape, bool)
    corner[:, :4, :] = True  # outside the scan circle
    stored = np.where(corner, -2000, hu + 1024).astype(np.int16)
    with pytest.raises(LNQError, match="not in Hounsfield units .* rescale intercept"):
        prepare(Volume(stored, (1.5, 1.5, 3.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(Volume(np.where(corner, -3024, hu).astype(np.int16), (1.5, 1.5, 3.0)))


def test_a_ct_1024_below_hu_is_refused_before_the_model_runs(small_chest):
    """HU with the rescale intercept applied a second time (air near -2000, soft tissue near -1000): the
    network saw no soft tissue and found nothing, and the only word was 'no lungs found' (the chest CT of
    slicerio: 0 nodes in 4 s). Refused saying so; measure warns. HU with a -2000 padding around the scan
    circle (as many voxels near -2000) passes."""
    hu = small_chest().astype(np.int32)
    low = Volume((hu - 1024).astype(np.int16), (1.5, 1.5, 3.0))
    _refused_before_the_model_measure_warns(low, "1024 below Hounsfield units .* applied twice; add 1024")
    circle = np.zeros(hu.shape, bool)
    circle[:, : hu.shape[1] // 3, :] = True  # a third of the CT outside the scan circle
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(Volume(np.where(circle, -2000, hu).astype(np.int16), (1.5, 1.5, 3.0)))


def test_a_label_map_given_as_the_ct_is_refused_before_any_work(small_chest):
    """A 0/1 node mask passed as the CT ran the model (12 s on a phantom) and found no node, with only the
    stored-values warning; a label map holds a handful of values, a CT hundreds."""
    from lnq_napari import api
    from lnq_napari.errors import LNQError

    nodes = np.zeros((20, 64, 80), np.uint8)
    nodes[8:12, 30:36, 38:44] = 1
    for labels in (nodes, nodes.astype(np.int16) * 7):
        volume = Volume(labels, (0.8, 0.8, 3.0))
        with pytest.raises(LNQError, match=r"holds only 2 distinct value\(s\) .* looks like a label map"):
            prepare(volume)
        with pytest.raises(LNQError, match="looks like a label map"):
            api.find_nodes(volume, model="/nonexistent")  # refused before the model is looked for
    stored = (small_chest() + 1024).astype(np.uint16)  # a CT in stored values: said as such, not a label map
    with pytest.raises(LNQError, match="not in Hounsfield units"):
        prepare(Volume(stored, (0.8, 0.8, 3.0)))


def test_a_ct_with_nan_voxels_is_refused_in_one_line(small_chest):
    """A CT with 0.1 % NaN voxels was predicted without a word (3 nodes of 8) and trained on until the loss
    diverged ("train again with a lower lr")."""
    from lnq_napari.errors import LNQError

    hu = small_chest().astype(np.float32)
    hu[10, 30, 40:43] = np.nan
    hu[11, 30, 40] = np.inf
    with pytest.raises(LNQError, match=r"the CT holds 4 NaN or infinite voxel\(s\); fill them"):
        prepare(Volume(hu, (0.8, 0.8, 3.0)))


def _refused_before_the_model_measure_warns(ct: Volume, match: str) -> None:
    """``ct`` is refused by ``prepare`` and ``find_nodes`` (before the model is looked for) with a message
    matching ``match``; ``measure`` only warns with it."""
    from lnq_napari import api
    from lnq_napari.errors import LNQError

    with pytest.raises(LNQError, match=match):
        prepare(ct)
    with pytest.raises(LNQError, match=match):
        api.find_nodes(ct, model="/nonexistent")
    with pytest.warns(UserWarning, match=match):
        api.measure(ct.with_array(np.zeros(ct.shape, np.uint8)), ct)
