"""Tests of the synthetic chest CT phantom (small grids, fast)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lnq_napari import api, cli
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import read_volume
from lnq_napari.phantom import canvas as C
from lnq_napari.phantom import case_seed, make_case, write_dataset

SHAPE = (24, 96, 96)
SPACING = (4.0, 4.0, 10.0)


@pytest.fixture(scope="module")
def case():
    return make_case(1, shape=SHAPE, spacing=SPACING)


def _with_classes(seed, shape, spacing):
    """A case plus the internal tissue-class map it was painted from."""
    from lnq_napari.phantom import case as case_mod

    seen = {}
    orig = case_mod.finish

    def spy(cv, *args):
        seen["cls"] = cv.cls.copy()
        return orig(cv, *args)

    case_mod.finish = spy
    try:
        c = make_case(seed, shape=shape, spacing=spacing)
    finally:
        case_mod.finish = orig
    return c, seen["cls"]


@pytest.fixture(scope="module")
def fine():
    """A finer grid (with contrast) where node interiors are several voxels deep, and its class map."""
    return _with_classes(7, (40, 160, 160), (2.2, 2.2, 5.0))


@pytest.fixture(scope="module")
def fine_case(fine):
    return fine[0]


def test_same_seed_same_arrays(case):
    again = make_case(1, shape=SHAPE, spacing=SPACING)
    assert np.array_equal(case.ct.array, again.ct.array)
    assert np.array_equal(case.full.array, again.full.array)
    assert np.array_equal(case.partial.array, again.partial.array)
    assert case.nodes == again.nodes
    assert case.ct.origin == again.ct.origin


def test_different_seeds_differ(case):
    other = make_case(2, shape=SHAPE, spacing=SPACING)
    assert not np.array_equal(case.ct.array, other.ct.array)
    assert case.ct.origin != other.ct.origin


def test_types_and_geometry(case):
    assert case.ct.array.dtype == np.int16 and case.ct.shape == SHAPE
    assert case.full.array.dtype == np.uint8 and case.partial.array.dtype == np.uint8
    for vol in (case.ct, case.full, case.partial):
        assert vol.spacing == SPACING
        assert vol.origin == case.ct.origin
        assert vol.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert set(np.unique(case.full.array)) <= {0, 1}
    # scanner-like origin: x, y near minus half the field of view
    assert case.ct.origin[0] == pytest.approx(-(SHAPE[2] - 1) * SPACING[0] / 2, abs=30)
    assert case.ct.origin[1] == pytest.approx(-(SHAPE[1] - 1) * SPACING[1] / 2, abs=50)


def test_partial_subset_of_full_and_labelled_counts():
    counts = []
    for seed in range(4):
        c = make_case(seed, shape=SHAPE, spacing=SPACING)
        assert np.all(c.partial.array <= c.full.array)
        labelled = [n for n in c.nodes if n["labelled"]]
        assert all(n["target"] for n in labelled)
        assert 1 <= len(labelled) <= 3
        n_targets = sum(n["target"] for n in c.nodes)
        assert 3 <= n_targets <= 12
        counts.append(len(labelled))
        # the partial mask is exactly the labelled nodes
        ids = {n["id"] for n in labelled}
        assert np.array_equal(c.partial.array == 1, np.isin(c.instances.array, list(ids)))
    assert min(counts) == 1


def test_full_components_are_target_nodes(case):
    inst = case.instances.array
    by_id = {n["id"]: n for n in case.nodes}
    comps, n = ndimage.label(case.full.array)
    assert n >= 1
    for k in range(1, n + 1):
        ids = set(np.unique(inst[comps == k]).tolist())
        assert ids and all(by_id[i]["target"] for i in ids)
    targets = {n["id"] for n in case.nodes if n["target"] and n["n_voxels"] > 0}
    assert targets == set(np.unique(inst[case.full.array == 1]).tolist())


def test_sub_cm_nodes_not_in_full_and_sizes(case):
    small = [n for n in case.nodes if not n["target"]]
    assert small, "expected sub-centimetre distractors"
    for n in small:
        assert n["diameter_max_mm"] <= 8.0
        assert not np.any(case.full.array[case.instances.array == n["id"]])
    for n in case.nodes:
        if n["target"]:
            assert n["diameter_min_mm"] >= 10.0


def test_node_hu_in_range(fine_case):
    ct, inst = fine_case.ct.array, fine_case.instances.array
    checked = 0
    for n in fine_case.nodes:
        if not n["target"]:
            continue
        core = ndimage.binary_erosion(inst == n["id"], iterations=1)
        if core.sum() < 5:
            continue
        assert 20 <= ct[core].mean() <= 80, n
        checked += 1
    assert checked >= 2


def test_nodes_sit_in_fat_not_in_vessels(fine):
    c, cls = fine
    node_vox = c.instances.array > 0
    assert node_vox.any()
    assert np.all(np.isin(cls[node_vox], (C.NODE, C.SMALL_NODE)))
    # every node is surrounded by mediastinal fat, or touches a vessel / airway / lung
    ring = ndimage.binary_dilation(node_vox, iterations=1) & ~node_vox
    allowed = (
        C.ARTERY,
        C.VEIN,
        C.HEART,
        C.BLOOD,
        C.AIRWAY_WALL,
        C.ESOPHAGUS,
        C.LUNG,
        C.MED_FAT,
        C.NODE,
        C.SMALL_NODE,
        C.LUNG_VESSEL,
    )
    assert np.isin(cls[ring], allowed).mean() > 0.95
    assert (cls[ring] == C.MED_FAT).mean() > 0.5
    touching = [n for n in c.nodes if n["touches_vessel"]]
    assert touching and len(touching) < len(c.nodes)
    # a node flagged as touching has vessel voxels next to it; most others do not
    vessel = np.isin(cls, (C.ARTERY, C.VEIN))
    near = {
        n["id"]: bool(np.any(vessel & ndimage.binary_dilation(c.instances.array == n["id"], iterations=2)))
        for n in c.nodes
        if n["n_voxels"] > 0
    }
    flagged = [near[n["id"]] for n in touching if n["id"] in near]
    assert np.mean(flagged) > 0.5


def test_contrast_and_tissue_hu(fine):
    c, cls = fine
    ct = c.ct.array

    def core_mean(k):
        core = ndimage.binary_erosion(cls == k, iterations=1)
        return float(ct[core].mean())

    assert c.ct.meta["contrast"] is True
    assert 130 <= core_mean(C.ARTERY) <= 320
    assert -950 <= core_mean(C.LUNG) <= -750
    assert -130 <= core_mean(C.MED_FAT) <= -50
    assert core_mean(C.BONE) >= 300
    # noise: 10-20 HU in homogeneous fat (with some texture-free tolerance)
    core = ndimage.binary_erosion(cls == C.FAT, iterations=2)
    assert 6 <= ct[core].std() <= 25
    plain, plain_cls = _with_classes(2, (40, 160, 160), (2.2, 2.2, 5.0))
    assert plain.ct.meta["contrast"] is False
    core = ndimage.binary_erosion(plain_cls == C.ARTERY, iterations=1)
    assert 20 <= plain.ct.array[core].mean() <= 60  # soft-tissue vessels: as dense as nodes


def test_labelled_counts_follow_lnq():
    from lnq_napari.phantom.case import choose_labelled

    rng = np.random.default_rng(0)
    counts = np.array([len(choose_labelled(rng, list(range(1, 9)))) for _ in range(4000)])
    assert counts.min() == 1 and counts.max() == 3
    assert abs(counts.mean() - 1.46) < 0.05
    assert abs((counts == 1).mean() - 0.63) < 0.03
    assert choose_labelled(rng, []) == set()
    assert len(choose_labelled(rng, [4])) == 1


def test_node_json_fields(case):
    keys = {"id", "center_xyz_mm", "radii_mm", "diameter_min_mm", "target", "labelled", "touches_vessel"}
    for n in case.nodes:
        assert keys <= set(n)
        # the centre is a physical LPS point inside the scanned volume
        idx = case.ct.physical_to_index(np.array(n["center_xyz_mm"]))[0]
        assert np.all(idx >= -0.5) and np.all(idx <= np.array(case.ct.shape) - 0.5)
        if n["n_voxels"]:
            zyx = np.argwhere(case.instances.array == n["id"]).mean(0)
            assert np.linalg.norm((zyx - idx) * np.array(SPACING[::-1])) < max(n["radii_mm"]) + 6


def test_default_grid_is_lnq_like():
    from lnq_napari.phantom.case import default_grid

    for seed in range(20):
        shape, spacing = default_grid(np.random.default_rng(seed))
        assert shape[1:] == (512, 512)
        assert 0.59 <= spacing[0] <= 1.53 and spacing[0] == spacing[1]
        assert 1.0 <= spacing[2] <= 5.0
        assert 240 <= shape[0] * spacing[2] <= 360


def test_bad_seed_raises(tmp_path):
    with pytest.raises(LNQError):
        make_case(-1, shape=SHAPE, spacing=SPACING)
    with pytest.raises(LNQError):
        write_dataset(tmp_path / "x", 1, seed=-3, shape=SHAPE, spacing=SPACING)
    assert not (tmp_path / "x").exists()


def test_bad_grid_raises():
    with pytest.raises(LNQError):
        make_case(0, shape=(0, 10, 10))
    with pytest.raises(LNQError):
        make_case(0, shape=(10, 10, 10), spacing=(1.0, -1.0, 1.0))


def test_write_dataset_layout_and_readback(tmp_path):
    calls = []
    paths = write_dataset(
        tmp_path / "ds", 2, seed=5, shape=SHAPE, spacing=SPACING, progress=lambda f, m: calls.append(f)
    )
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)
    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    expected = sorted(
        f"lnq2023-train-{i:04d}-{k}"
        for i in (1, 2)
        for k in ("ct.nrrd", "seg.nrrd", "full.nrrd", "nodes.json")
    )
    assert names == expected
    assert [p.name for p in paths] == ["lnq2023-train-0001-ct.nrrd", "lnq2023-train-0002-ct.nrrd"]
    ref = make_case(case_seed(5, 1), shape=SHAPE, spacing=SPACING)
    ct = sitk.ReadImage(str(paths[1]))
    assert ct.GetPixelID() == sitk.sitkInt16
    assert ct.GetSpacing() == pytest.approx(ref.ct.spacing, abs=1e-9)
    assert ct.GetOrigin() == pytest.approx(ref.ct.origin, abs=1e-9)
    assert np.array_equal(sitk.GetArrayFromImage(ct), ref.ct.array)
    seg = sitk.ReadImage(str(tmp_path / "ds" / "lnq2023-train-0002-seg.nrrd"))
    assert seg.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(seg), ref.partial.array)
    full = sitk.ReadImage(str(tmp_path / "ds" / "lnq2023-train-0002-full.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(full), ref.full.array)
    header = (tmp_path / "ds" / "lnq2023-train-0002-ct.nrrd").read_bytes()[:1000]
    assert b"encoding: gzip" in header and b"left-posterior-superior" in header
    info = json.loads((tmp_path / "ds" / "lnq2023-train-0002-nodes.json").read_text())
    assert info["nodes"] == json.loads(json.dumps(ref.nodes))
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.startswith(".")]


def test_write_dataset_cancel_and_bad_grid(tmp_path):
    from lnq_napari.errors import Cancelled

    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # stop before the second case

    with pytest.raises(Cancelled):
        write_dataset(tmp_path / "c", 3, shape=SHAPE, spacing=SPACING, cancel=cancel)
    assert sorted(p.name for p in (tmp_path / "c").glob("*-ct.nrrd")) == ["lnq2023-train-0001-ct.nrrd"]
    with pytest.raises(LNQError):
        write_dataset(tmp_path / "g", 1, shape=(0, 5, 5))
    assert not (tmp_path / "g").exists()


def test_make_phantom_bad_arguments(tmp_path):
    for cases in (0, 99999999999999999999):  # the huge count ran out of memory listing its cases
        with pytest.raises(LNQError, match="number of cases must be a whole number from 1 to 10000"):
            api.make_phantom(tmp_path / "x", cases=cases)
    assert not (tmp_path / "x").exists()
    with pytest.raises(LNQError, match="output is empty; give a folder"):
        api.make_phantom("", cases=1)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(LNQError):
        api.make_phantom(afile, cases=1)


def test_cli_phantom(tmp_path, capsys, monkeypatch):
    from lnq_napari.phantom import dataset

    real = dataset.make_case
    monkeypatch.setattr(
        dataset,
        "make_case",
        lambda s, shape=None, spacing=None, case_id=None, site="default": real(
            s, shape=SHAPE, spacing=SPACING, case_id=case_id, site=site
        ),
    )
    assert cli.main(["phantom", str(tmp_path / "out"), "--cases", "1", "--seed", "3"]) == 0
    assert (tmp_path / "out" / "lnq2023-train-0001-ct.nrrd").exists()
    capsys.readouterr()
    assert cli.main(["phantom", str(tmp_path / "bad"), "--cases", "0"]) != 0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # the rest is the progress bar
    assert len(errors) == 1 and "Traceback" not in err and "cases" in errors[0]


def test_write_dataset_in_processes_writes_the_same_cases(tmp_path):
    serial = write_dataset(tmp_path / "s", 3, seed=5, shape=SHAPE, spacing=SPACING)
    parallel = write_dataset(tmp_path / "p", 3, seed=5, shape=SHAPE, spacing=SPACING, workers=2)
    assert [p.name for p in parallel] == [p.name for p in serial]
    for a, b in zip(serial, parallel):
        for suffix in ("-ct.nrrd", "-seg.nrrd", "-full.nrrd"):
            ia = sitk.GetArrayFromImage(sitk.ReadImage(str(a).replace("-ct.nrrd", suffix)))
            ib = sitk.GetArrayFromImage(sitk.ReadImage(str(b).replace("-ct.nrrd", suffix)))
            assert np.array_equal(ia, ib)
        assert json.loads(a.with_name(a.name.replace("-ct.nrrd", "-nodes.json")).read_text()) == json.loads(
            b.with_name(b.name.replace("-ct.nrrd", "-nodes.json")).read_text())


def test_make_phantom_and_the_cli_take_the_cases_grid(tmp_path, capsys):
    """Small quick cases from a notebook or a terminal (both drew LNQ-size 512 x 512 scans only)."""
    ct = api.make_phantom(tmp_path / "api", cases=1, shape=SHAPE, spacing=SPACING)[0]
    volume = read_volume(ct)
    assert volume.shape == SHAPE and volume.spacing == pytest.approx(SPACING)
    args = ["phantom", str(tmp_path / "cli"), "--cases", "1", "--shape", *map(str, SHAPE),
            "--spacing", *map(str, SPACING)]
    assert cli.main(args) == 0
    again = read_volume(tmp_path / "cli" / ct.name)
    assert again.shape == SHAPE and np.array_equal(again.array, volume.array)
    with pytest.raises(LNQError, match="must be three positive integers"):
        api.make_phantom(tmp_path / "bad", cases=1, shape=(0, 8, 8))


@pytest.mark.parametrize(("grid", "said"), [
    (["--shape", "1", "1", "1"], "--shape 1 1 1 covers at most 5 x 5 x 10 mm, too small for the phantom's "
     "chest (at least 250 mm across and 100 mm along z); without --spacing, give at least 50 pixels across"),
    (["--shape", "4", "16", "16"], "--shape 4 16 16 covers at most 80 x 80 x 40 mm, too small"),
    (["--shape", "40", "160", "160", "--spacing", "1", "1", "2"], "--shape 40 160 160 --spacing 1 1 2 covers "
     "160 x 160 x 80 mm, too small for the phantom's chest"),
    (["--shape", "40", "160", "160", "--spacing", "0.01", "0.01", "0.01"],  # took all memory
     "--spacing 0.01 0.01 0.01 is finer than the 0.3 mm a phantom case may have; give e.g. --spacing 2 2 5"),
    (["--shape", "40", "160", "160", "--spacing", "50", "50", "50"], "--spacing 50 50 50 is outside what a "
     "phantom case may have: pixels (X, Y) 0.3-5 mm and slices (Z) 0.5-10 mm"),
    (["--spacing", "0.4", "0.4", "2"], "--spacing 0.4 0.4 2 alone gives 512 x 512 pixels, 205 mm across"),
    (["--shape", "5000", "5000", "5000"],  # ran out of memory after creating the folder
     "--shape 5000 5000 5000 is 125000 million voxels, more than the 262 million a phantom case may have"),
])
def test_a_phantom_grid_that_cannot_hold_the_chest_is_refused_before_anything_is_written(
        tmp_path, capsys, grid, said):
    """A tiny grid wrote cases of 0 nodes, a fine one or a huge one ran out of memory (an empty folder
    left): one line naming the option, the range and what to give, and no folder."""
    assert cli.main(["phantom", str(tmp_path / "out"), "--cases", "1", *grid]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert said in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(LNQError, match=re.escape(said)):
        api.make_phantom(tmp_path / "api", cases=1, **_grid(grid))
    assert not (tmp_path / "api").exists()


def _grid(argv: list[str]) -> dict:
    """``--shape``/``--spacing`` arguments as make_phantom's keywords."""
    out = {}
    for i, arg in enumerate(argv):
        if arg in ("--shape", "--spacing"):
            out[arg[2:]] = tuple((int if arg == "--shape" else float)(v) for v in argv[i + 1:i + 4])
    return out


def test_a_shape_alone_gets_a_chest_size_field_of_view():
    """``--shape 40 160 160`` alone drew 0.6-1.5 mm pixels (a 512-pixel scan's): 13 cm across, the chest
    cut. Now its spacing gives an LNQ-like field of view: 307-778 mm across, 250-330 mm long."""
    from lnq_napari.phantom.case import default_grid

    for seed in range(20):
        shape, spacing = default_grid(np.random.default_rng(seed), shape=(40, 160, 160))
        assert shape == (40, 160, 160) and spacing[0] == spacing[1]
        assert 307 <= 160 * spacing[0] <= 778 and 250 <= 40 * spacing[2] <= 330
    _, spacing = default_grid(np.random.default_rng(0), shape=(12, 60, 60))  # kept within the ranges
    assert spacing[0] == 5.0 and spacing[2] == 10.0
    assert default_grid(np.random.default_rng(3)) == default_grid(np.random.default_rng(3))  # LNQ-like kept
