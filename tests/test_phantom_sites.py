"""Tests of the phantom sites: each CT source is a valid case with complete truth and its own shift."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lnq_napari import cli
from lnq_napari.components import label_components
from lnq_napari.errors import LNQError
from lnq_napari.phantom import SITES, Site, get_site, make_case, write_dataset
from lnq_napari.phantom import canvas as C
from lnq_napari.phantom import case as case_mod
from lnq_napari.phantom.case import average_slices

SHAPE = (24, 96, 96)
SPACING = (4.0, 4.0, 10.0)
FINE = ((40, 160, 160), (2.2, 2.2, 5.0))  # node and vessel interiors several voxels deep

# sha256 of make_case(3, shape=(20, 80, 80), spacing=(4.5, 4.5, 10.0)) computed on the phantom before
# sites existed: the default site must stay exactly that phantom (see _digest)
DEFAULT_SHA256 = "2e982860660b80f980f3ba997add366c171408881689885c260d2ff9466dc33f"


def _digest(case) -> str:
    h = hashlib.sha256()
    for a in (case.ct.array, case.full.array, case.partial.array, case.instances.array):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps(case.nodes, sort_keys=True).encode())
    h.update(repr((case.ct.spacing, case.ct.origin)).encode())
    return h.hexdigest()


def _painted(seed: int, site: str, shape=FINE[0], spacing=FINE[1]):
    """A case plus what `finish` saw: class map, HU before finishing, anatomy, canvas, thin HU after."""
    seen = {}
    orig = case_mod.finish

    def spy(cv, a, rng, s):
        seen.update(cls=cv.cls.copy(), hu=cv.hu.copy(), anatomy=a, canvas=cv)
        out = orig(cv, a, rng, s)
        seen["finished"] = out.copy()
        return out

    case_mod.finish = spy
    try:
        case = make_case(seed, shape=shape, spacing=spacing, site=site)
    finally:
        case_mod.finish = orig
    return case, seen


def _flat(seen) -> np.ndarray:
    """Voxels whose painted HU is constant over 3 x 5 x 5 neighbours, outside lung and air."""
    hu0 = seen["hu"]
    same = ndimage.maximum_filter(hu0, size=(3, 5, 5)) == ndimage.minimum_filter(hu0, size=(3, 5, 5))
    return same & (seen["cls"] != C.LUNG) & (hu0 > -950)


# ---------------------------------------------------------------- registry and default
def test_default_site_is_exactly_the_old_phantom():
    assert _digest(make_case(3, shape=(20, 80, 80), spacing=(4.5, 4.5, 10.0))) == DEFAULT_SHA256
    named = make_case(3, shape=(20, 80, 80), spacing=(4.5, 4.5, 10.0), site="default")
    assert _digest(named) == DEFAULT_SHA256


def test_registry_has_the_named_shifts():
    assert {"default", "noncontrast", "lowdose", "thick", "habitus", "nodes", "scanner"} <= set(SITES)
    for name, site in SITES.items():
        assert site.name == name and site.summary
        assert get_site(name) is site and get_site(site) is site
    with pytest.raises(dataclasses.FrozenInstanceError):
        SITES["default"].noise_scale = 2.0
    with pytest.raises(LNQError, match="noncontrast"):
        get_site("bogus")
    with pytest.raises(LNQError):
        make_case(0, shape=SHAPE, spacing=SPACING, site="bogus")


@pytest.mark.parametrize("name", list(SITES))
def test_every_site_makes_a_valid_case_with_complete_truth(name):
    case = make_case(5, shape=SHAPE, spacing=SPACING, site=name)
    assert case.ct.array.dtype == np.int16 and case.ct.meta["lnq_site"] == name
    assert case.ct.shape == case.full.shape == case.partial.shape == case.instances.shape
    for vol in (case.full, case.partial, case.instances):
        assert vol.spacing == case.ct.spacing and vol.origin == case.ct.origin
    inst = case.instances.array
    targets = [n["id"] for n in case.nodes if n["target"] and n["n_voxels"]]
    labelled = [n["id"] for n in case.nodes if n["labelled"]]
    assert targets and labelled and set(labelled) <= set(targets)
    for n in case.nodes:  # the node list describes the instance map exactly
        assert int((inst == n["id"]).sum()) == n["n_voxels"]
    assert np.array_equal(case.full.array, np.isin(inst, targets).astype(np.uint8))
    assert np.array_equal(case.partial.array, np.isin(inst, labelled).astype(np.uint8))
    assert set(np.unique(inst)) <= {0} | {n["id"] for n in case.nodes}


# ---------------------------------------------------------------- each site's defining property
def test_noncontrast_great_vessels_are_as_dense_as_nodes():
    for name, far in (("default", True), ("noncontrast", False)):
        case, seen = _painted(7, name)  # seed 7 draws an enhanced default case
        vessels = ndimage.binary_erosion(np.isin(seen["cls"], (C.ARTERY, C.VEIN)))
        nodes = ndimage.binary_erosion(case.full.array > 0)
        gap = abs(case.ct.array[vessels].mean() - case.ct.array[nodes].mean())
        assert (gap > 100) if far else (gap < 20), (name, gap)
        assert case.ct.meta["contrast"] is far


def test_lowdose_noise_is_much_higher_with_a_sharp_kernel():
    std, corr = {}, {}
    for name in ("default", "lowdose"):
        case, seen = _painted(7, name)
        flat = _flat(seen)
        assert flat.sum() > 1000
        noise = case.ct.array - seen["hu"]
        std[name] = float(noise[flat].std())
        # a sharp kernel: neighbouring voxels' noise is less alike than after the default smoothing
        both = flat[:, :, 1:] & flat[:, :, :-1]
        corr[name] = np.corrcoef(noise[:, :, 1:][both], noise[:, :, :-1][both])[0, 1]
    assert std["lowdose"] >= 2.5 * std["default"], std
    assert corr["lowdose"] < corr["default"] - 0.1, corr


def test_thick_slices_are_5mm_averages_of_thin_slices():
    case, seen = _painted(3, "thick", shape=(40, 128, 128), spacing=(3.0, 3.0, 2.0))
    assert case.ct.spacing[2] == 5.0 and case.ct.shape == (40, 128, 128)
    thin = seen["finished"]
    assert thin.shape == (160, 128, 128)  # drawn at 1.25 mm
    average = np.clip(np.rint(thin.reshape(40, 4, 128, 128).mean(1)), -1024, 3071)
    assert np.array_equal(case.ct.array, average)

    # partial volume: more voxels between lung and soft tissue than nearest sampling would give
    def mixed(a):
        return ((a > -600) & (a < -250)).mean()

    assert mixed(case.ct.array) > 1.3 * mixed(thin[1::4])
    assert case_mod.default_grid(np.random.default_rng(0), site=SITES["thick"])[1][2] == 5.0


def test_average_slices_keeps_a_node_where_it_fills_half_a_voxel():
    hu = np.arange(8, dtype=np.float32).reshape(8, 1, 1) * np.ones((1, 2, 2), np.float32)
    inst = np.zeros((8, 2, 2), np.uint16)
    inst[1:4] = 1  # fills slice 0 of the thick grid three quarters, slice 1 one quarter
    inst[6:8, 0, 0] = 2  # half of slice 1 at one voxel
    thick, out, boxes = average_slices(
        hu, inst, {1: (slice(1, 4), slice(0, 2), slice(0, 2)), 2: (slice(6, 8), slice(0, 1), slice(0, 1))}, 4
    )
    assert thick[:, 0, 0].tolist() == [1.5, 5.5]
    assert out[:, 0, 0].tolist() == [1, 2] and out[:, 1, 1].tolist() == [1, 0]
    assert boxes[1][0] == slice(0, 1) and boxes[2][0] == slice(1, 2)


def _mediastinum_width(seen) -> float:
    """Median left-right gap (mm) between the lungs in front of the trachea, 0-40 mm above the carina."""
    cv, a = seen["canvas"], seen["anatomy"]
    lung = seen["cls"] == C.LUNG
    gaps = []
    for z in np.nonzero((cv.w >= 0) & (cv.w <= 40))[0]:
        for y in np.nonzero((cv.v >= a.v_trachea - 60) & (cv.v <= a.v_trachea))[0]:
            right = np.nonzero(lung[z, y] & (cv.u < 0))[0]
            left = np.nonzero(lung[z, y] & (cv.u > 0))[0]
            if len(left) and len(right):
                gaps.append(cv.u[left[0]] - cv.u[right[-1]])
    return float(np.median(gaps))


def test_habitus_has_a_narrower_mediastinum_and_less_fat():
    width, fat = {}, {}
    for name in ("default", "habitus"):
        w, f = [], []
        for seed in range(3):
            _, seen = _painted(seed, name, shape=(40, 128, 128), spacing=(3.0, 3.0, 7.5))
            w.append(_mediastinum_width(seen))
            body = ~np.isin(seen["cls"], (C.AIR, C.TABLE))
            f.append((np.isin(seen["cls"], (C.FAT, C.MED_FAT)) & body).sum() / body.sum())
        width[name], fat[name] = np.mean(w), np.mean(f)
    assert width["habitus"] <= 0.85 * width["default"], width  # at least 15 % narrower
    assert fat["habitus"] <= 0.7 * fat["default"], fat  # at least 30 % less fat in the body


def test_nodes_site_has_conglomerates_necrosis_calcification_and_low_contrast():
    found = {}
    for name in ("default", "nodes"):
        clusters = calcified = necrotic = 0
        contrast = []
        for seed in range(3):
            case, seen = _painted(seed, name)
            ct, inst, full = case.ct.array, case.instances.array, case.full.array
            targets = {n["id"] for n in case.nodes if n["target"]}
            lab, n = label_components(full)
            clusters += sum(
                len(set(np.unique(inst[lab == k]).tolist()) & targets) > 1 for k in range(1, n + 1)
            )
            calcified += int((ct[inst > 0] > 300).sum())
            inner = ndimage.binary_erosion(full > 0)
            necrotic += int((ct[inner] < 0).sum())
            fat = ndimage.binary_erosion(seen["cls"] == C.MED_FAT, iterations=2)
            contrast.append(np.median(ct[inner]) - np.median(ct[fat]))
        found[name] = (clusters, calcified, necrotic, float(np.mean(contrast)))
    (c0, k0, n0, h0), (c1, k1, n1, h1) = found["default"], found["nodes"]
    assert c0 == 0 and c1 >= 1, found  # conglomerates: one truth component, several nodes
    assert k0 == 0 and k1 > 0, found  # calcified voxels inside nodes
    assert n1 >= 5 * n0 + 20, found  # necrotic (below 0 HU) voxels inside nodes
    assert h1 <= h0 - 40, found  # node-to-fat contrast at least 40 HU lower


def test_scanner_shifts_hu_and_widens_the_field_of_view():
    case, seen = _painted(7, "scanner")
    assert case.ct.spacing == pytest.approx((2.2 * 1.3, 2.2 * 1.3, 5.0))
    assert np.median((case.ct.array - seen["hu"])[_flat(seen)]) == pytest.approx(-30.0, abs=3.0)


# ---------------------------------------------------------------- files and command line
def test_write_dataset_records_the_site(tmp_path):
    paths = write_dataset(tmp_path / "ds", 1, seed=2, shape=SHAPE, spacing=SPACING, site="thick")
    info = json.loads((tmp_path / "ds" / "lnq2023-train-0001-nodes.json").read_text())
    assert info["site"] == "thick" and info["spacing"][2] == 5.0
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(paths[0]))
    reader.ReadImageInformation()
    assert reader.GetMetaData("lnq_site") == "thick"
    with pytest.raises(LNQError, match="lowdose"):
        write_dataset(tmp_path / "bad", 1, site="bogus")
    assert not (tmp_path / "bad").exists()


def test_cli_bogus_site_is_one_line_naming_the_sites(tmp_path, capsys):
    assert cli.main(["phantom", str(tmp_path / "out"), "--site", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0] and all(name in err[0] for name in SITES)
    assert not (tmp_path / "out").exists()


def test_cli_help_lists_the_sites(capsys):
    with pytest.raises(SystemExit):
        cli.main(["phantom", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in SITES)


def test_site_is_a_typed_frozen_dataclass():
    fields = {f.name: f.type for f in dataclasses.fields(Site)}
    assert {"noise_scale", "slice_mm", "contrast", "mediastinum_width", "necrotic"} <= set(fields)
    assert dataclasses.is_dataclass(Site) and Site.__dataclass_params__.frozen
