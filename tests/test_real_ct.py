"""A real chest CT (slicerio's CTChest4: whole chest and upper abdomen, 3 x 3 x 10 mm) as a new user
opens it: lungs found (also on crops), a warning below the lungs, and with the bundled model and the
mediastinum region on: no node outside the region, suggestions within the cap, all on the exact grid.

The plain prediction of the same CT (``api.predict``) is tested in tests/test_inference.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lnq_napari import api
from lnq_napari.anatomy import mediastinum_region
from lnq_napari.components import label_components
from lnq_napari.inference import Predictor, postprocess
from lnq_napari.io.readers import read_volume
from lnq_napari.io.volume import Volume

torch.set_num_threads(2)
MARGIN_MM = 10.0  # the margin chosen on data (docs/model_card.md)


@pytest.fixture(scope="module")
def chest() -> Volume:
    import slicerio

    return read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))


def crop_z(ct: Volume, z0: int, z1: int | None) -> Volume:
    """Slices ``z0:z1`` (z index 0 is the lowest slice) on their own exact grid."""
    origin = ct.index_to_physical(np.array([[z0, 0, 0]], dtype=float))[0]
    return Volume(np.ascontiguousarray(ct.array[z0:z1]), ct.spacing, tuple(float(v) for v in origin),
                  ct.direction)


def _outside(mask: np.ndarray, region: np.ndarray) -> int:
    """Nodes of ``mask`` with most of their voxels outside ``region``."""
    lab, n = label_components(mask > 0)
    return sum(int(2 * region[lab == k].sum() < (lab == k).sum()) for k in range(1, n + 1))


def test_lungs_are_found_on_the_chest_and_on_crops_holding_part_of_them(chest):
    for ct in (chest, crop_z(chest, 17, None), crop_z(chest, 0, 13)):  # all, upper chest, lung bases
        region = mediastinum_region(ct, MARGIN_MM)
        assert 0.05 < region.mean() < 0.5  # the middle of the chest, not all or nothing
    region = mediastinum_region(chest, MARGIN_MM)
    centre = region[20, 60:68, 60:68]  # mid chest (z index 20 of 34), the middle of the slice
    assert centre.all() and not region[:5].any()  # upper abdomen: gas there is not lung


@pytest.mark.parametrize("centre_x, radius", [(64, 45), (50, 50), (78, 50)],
                         ids=["both-sides", "one-side", "other-side"])
def test_a_scan_circle_cutting_the_lungs_keeps_the_region(chest, centre_x, radius):
    """The chest in a smaller scan circle padded with its own padding (-3024), cutting one lung or both
    at the side, front and back in view: the lungs cut were taken for the air outside and the region held
    58-63 % of the whole CT's within the circle; now 99 %, and nothing more."""
    hu = np.array(chest.array)
    yy, xx = np.mgrid[: hu.shape[1], : hu.shape[2]]
    out = np.hypot(yy - 64, xx - centre_x) > radius
    hu[:, out] = -3024
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        region = mediastinum_region(chest.with_array(hu), MARGIN_MM)
    whole = mediastinum_region(chest, MARGIN_MM) & ~out
    assert (region & whole).sum() >= 0.95 * whole.sum()
    assert (region & ~whole & ~out).sum() <= 0.01 * whole.sum()


def test_a_crop_below_the_lungs_warns_and_is_not_restricted(chest):
    with pytest.warns(UserWarning, match="no lungs found"):
        region = mediastinum_region(crop_z(chest, 0, 7), MARGIN_MM)
    assert region.all()


@pytest.fixture(scope="module")
def found(chest):
    predictor = Predictor(None, device="cpu")
    predictor.config.inference.mediastinum_margin_mm = MARGIN_MM
    return predictor, api.find_nodes(chest, predictor)


def test_no_node_outside_the_region_and_suggestions_within_the_cap(chest, found):
    predictor, result = found
    assert result.region is not None
    region = np.asarray(result.region.array) > 0
    mask = np.asarray(result.mask.array)
    assert _outside(mask, region) == 0
    assert len(result.nodes) == int(mask.max())
    inf = predictor.config.inference
    unrestricted = postprocess(np.asarray(result.probabilities.array), chest.spacing_zyx, inf.threshold,
                               inf.min_component_mm3, hu=chest.array, max_mean_hu=inf.max_mean_hu)
    assert _outside(unrestricted, region) >= 1  # the bundled model does see something below the lungs
    assert len(result.suggestions) <= inf.max_suggestions == 10
    assert all(region[s.centre_zyx] for s in result.suggestions)


def test_prediction_lies_on_the_exact_grid(chest, found):
    _, result = found
    for volume in (result.mask, result.probabilities, result.region):
        assert volume.same_grid(chest) and volume.shape == chest.shape


def test_its_stored_values_with_its_padding_are_refused(chest):
    """CTChest4 + 1024 (the rescale intercept left out; its -3024 padding then reads -2000): the rim where
    the padding blends into the body passes through -1000, 0.24 % of the voxels, which the stored-values
    test took for the air of a CT in HU; the model ran and only 'no lungs found' was said."""
    from lnq_napari.ct_scale import check_ct_values
    from lnq_napari.errors import LNQError

    check_ct_values(chest.array)
    with pytest.raises(LNQError, match="not in Hounsfield units .* rescale intercept"):
        check_ct_values(chest.array.astype(np.int32) + 1024)


@pytest.mark.parametrize("box", [
    (slice(0, 34), slice(30, 100), slice(35, 95)),  # 213 x 183 mm: the lungs' bases cut at the sides
    (slice(0, 34), slice(41, 87), slice(41, 87)),  # 140 mm: both lungs cut below their apices
    (slice(0, 34), slice(43, 97), slice(37, 91)),  # 165 mm, 18 mm off the middle: cut by three edges
], ids=["213x183mm", "140mm", "165mm-off-middle"])
def test_a_view_inside_the_chest_still_leaves_out_the_abdomen_below_the_lungs(chest, box):
    """CTChest4 cropped in plane around the mediastinum, all its slices: the view lies inside the chest, so
    the lungs' hull is not drawn; the region was then the whole CT, the upper abdomen below the lungs too
    (213 x 183 mm: the bundled model's 2 nodes there, 40 mm below the lungs, were kept as nodes). It keeps
    what the whole CT's region keeps, and not the slices well below the lungs. At 140 mm the lungs, cut on
    both sides, were found on their top slices only, and the region lost the carina down to the diaphragm.
    At 165 mm 18 mm off the middle the lungs' air ran out at two corners below the apices, the view was not
    called inside the chest and the region, the apices' hull, kept 30 % of the whole CT's."""
    from lnq_napari.followup.match import sub_volume

    full = mediastinum_region(chest, MARGIN_MM)
    whole = full[box]
    with pytest.warns(UserWarning, match="the field of view lies inside the chest"):
        region = mediastinum_region(sub_volume(chest, box), MARGIN_MM)
    assert whole.any() and region[whole].all()  # nothing the whole CT's region keeps is lost
    lowest = int(np.argmax(full.any(axis=(1, 2))))  # the whole CT's region's lowest slice (slice 0: feet)
    assert lowest > 0 and not region[:lowest].any()  # nor reaches lower into the upper abdomen
    assert region[10:30].all()  # in plane no restriction: the lungs in view are not the mediastinum's bounds
