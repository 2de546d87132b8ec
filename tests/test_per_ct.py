"""Per-CT work kept in a block: a CT predicted again there reuses its preprocessing and region (once
per content, not per object), each caller gets its own region, and nothing is kept outside a block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lnq_napari import per_ct
from lnq_napari.inference import Predictor
from lnq_napari.io.volume import Volume, volumes_digest
from lnq_napari.phantom import make_case
from lnq_napari.preprocess import PreprocessingConfig

PREP = PreprocessingConfig()

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ct() -> Volume:
    return make_case(5, shape=(12, 40, 40), spacing=(6.0, 6.0, 6.0)).ct  # a whole chest: a region


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
    """How often the region and the preprocessing were computed."""
    counted = {"region": 0, "prepare": 0}
    region, prepare = per_ct.mediastinum_region, per_ct.prepare

    def counting_region(*args, **kwargs):
        counted["region"] += 1
        return region(*args, **kwargs)

    def counting_prepare(*args, **kwargs):
        counted["prepare"] += 1
        return prepare(*args, **kwargs)

    monkeypatch.setattr(per_ct, "mediastinum_region", counting_region)
    monkeypatch.setattr(per_ct, "prepare", counting_prepare)
    return counted


def _copy(ct: Volume) -> Volume:
    return Volume(ct.array.copy(), ct.spacing, ct.origin, ct.direction)


def test_a_ct_predicted_again_in_a_block_is_prepared_once_and_predicts_the_same(ct, calls):
    predictor = Predictor(None, "cpu")
    outside = predictor.predict(ct)
    assert calls == {"region": 1, "prepare": 1}
    with per_ct.kept_per_ct():
        first = predictor.predict(ct)
        again = predictor.predict(_copy(ct))  # another object, the same voxels and grid
    assert calls == {"region": 2, "prepare": 2}
    for got in (first, again):
        assert np.array_equal(got.probabilities.array, outside.probabilities.array)
        assert np.array_equal(got.mask.array, outside.mask.array)
        assert np.array_equal(got.region, outside.region)
    predictor.predict(ct)  # the block is over: nothing kept
    assert calls == {"region": 3, "prepare": 3}


def test_another_ct_or_margin_is_computed_anew(ct, calls):
    moved = Volume(ct.array, ct.spacing, (ct.origin[0] + 1.0, *ct.origin[1:]), ct.direction)
    changed = _copy(ct)
    changed.array[0, 0, 0] += 1
    with per_ct.kept_per_ct():
        for volume in (ct, moved, changed, ct):
            per_ct.region_of(volume, 10.0)
        per_ct.region_of(ct, 5.0)
    assert calls["region"] == 4
    assert len({volumes_digest(v) for v in (ct, moved, changed)}) == 3
    retyped = ct.with_array(np.asarray(ct.array).view(np.uint16))  # the same bytes read as another type
    assert volumes_digest(retyped) != volumes_digest(ct)


def test_each_caller_gets_its_own_region_and_the_kept_image_is_read_only(ct):
    with per_ct.kept_per_ct():
        first = per_ct.region_of(ct, 10.0)
        expected = first.copy()
        first[:] = ~first
        second = per_ct.region_of(ct, 10.0)
        prepared = per_ct.prepared_ct(ct, PREP)
        assert per_ct.prepared_ct(ct, PREP) is prepared
    assert second.dtype == bool and second.shape == ct.shape
    assert np.array_equal(second, expected) and expected.any() and not expected.all()
    with pytest.raises(ValueError):
        prepared.image[0, 0, 0] = 1.0


def test_a_stored_region_is_read_by_a_later_block_and_never_across_code_or_damage(ct, calls, tmp_path,
                                                                                   monkeypatch):
    from lnq_napari.workspace.cache import Cache

    store = Cache(tmp_path / "cache")
    with per_ct.kept_per_ct(store):
        drawn = per_ct.region_of(ct, 10.0)
    assert calls["region"] == 1 and len(list(store.folder.glob("region-*.npz"))) == 1
    with per_ct.kept_per_ct(store):  # a later run (another process): read, not drawn
        assert np.array_equal(per_ct.region_of(ct, 10.0), drawn)
    assert calls["region"] == 1
    (saved,) = store.folder.glob("region-*.npz")
    saved.write_bytes(b"damaged")
    with per_ct.kept_per_ct(store):
        assert np.array_equal(per_ct.region_of(ct, 10.0), drawn)
    assert calls["region"] == 2
    monkeypatch.setattr(per_ct, "region_code", lambda: "othercode")  # drawn by other code: drawn again
    with per_ct.kept_per_ct(store):
        per_ct.region_of(ct, 10.0)
    assert calls["region"] == 3 and len(list(store.folder.glob("region-*.npz"))) == 2


def test_a_store_that_cannot_be_written_costs_only_the_saving(ct, tmp_path):
    class Full:
        def read_mask(self, name):
            return None

        def write_mask(self, name, mask):
            raise OSError(28, "No space left on device")

    with per_ct.kept_per_ct(Full()):
        region = per_ct.region_of(ct, 10.0)
    assert np.array_equal(region, per_ct.region_of(ct, 10.0))


def test_only_the_latest_cts_are_held_in_memory(ct, calls):
    copies = [Volume(ct.array, ct.spacing, (float(k), 0.0, 0.0), ct.direction)
              for k in range(per_ct.KEPT + 1)]
    with per_ct.kept_per_ct():
        for volume in copies:
            per_ct.prepared_ct(volume, PREP)
            per_ct.region_of(volume, 10.0)
        per_ct.prepared_ct(copies[-1], PREP)  # kept
        per_ct.region_of(copies[-1], 10.0)
        assert calls == {"prepare": len(copies), "region": len(copies)}
        per_ct.prepared_ct(copies[0], PREP)  # the oldest was let go
        per_ct.region_of(copies[0], 10.0)
        assert calls == {"prepare": len(copies) + 1, "region": len(copies) + 1}
