"""export-nnunet: an nnU-Net v2 raw dataset from LNQ data or a workspace (label values, ignore counts equal
to our label states, exact geometry, resampled segs, atomicity, one-line errors), the nnU-Net model
folder checks, and nnU-Net's own integrity check on the export when nnunetv2 is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.cli import main
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.readers import read_labels, read_volume, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.nnunet_folder import open_model
from lnq_napari.nnunet.export import LABELS, export_dataset, nnunet_labels
from lnq_napari.training.corrections import correction_states
from lnq_napari.training.labels import label_states

SHAPE, SPACING = (16, 48, 48), (1.5, 1.5, 3.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from lnq_napari.phantom import write_dataset

    out = tmp_path_factory.mktemp("lnq")
    write_dataset(out, 2, seed=11, shape=SHAPE, spacing=SPACING)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data):
    raw = tmp_path_factory.mktemp("raw")
    return export_dataset(raw, 501, data=data, workers=1)


def _sitk(path: Path):
    import SimpleITK as sitk

    return sitk.ReadImage(str(path))


def test_export_layout_and_dataset_json(exported, data):
    folder = exported.folder
    assert folder.name == "Dataset501_LNQ"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "lymph_node": 1, "ignore": 2}
    assert meta["file_ending"] == ".nrrd"
    cases = sorted(p.name[: -len("-ct.nrrd")] for p in data.glob("*-ct.nrrd"))
    assert meta["numTraining"] == len(cases) == len(exported.cases)
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{c}_0000.nrrd" for c in cases]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nrrd" for c in cases]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_labels_equal_our_label_states_and_geometry_is_exact(exported, data):
    import SimpleITK as sitk

    for case in exported.cases:
        ct = read_volume(data / f"{case.case_id}-ct.nrrd")
        states = label_states(ct, read_labels(data / f"{case.case_id}-seg.nrrd", reference=ct))
        image = _sitk(exported.folder / "imagesTr" / f"{case.case_id}_0000.nrrd")
        label = _sitk(exported.folder / "labelsTr" / f"{case.case_id}.nrrd")
        for img in (image, label):  # exactly the CT's grid, as nnU-Net's SimpleITKIO reads it
            assert img.GetSpacing() == ct.spacing
            assert img.GetOrigin() == ct.origin
            assert img.GetDirection() == ct.direction
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ct.array)
        lab = sitk.GetArrayFromImage(label)
        assert set(np.unique(lab)) <= {0, 1, 2}
        assert np.count_nonzero(lab == 1) == np.count_nonzero(states == 1) > 0
        assert np.count_nonzero(lab == 0) == np.count_nonzero(states == 0) > 0
        assert np.count_nonzero(lab == 2) == np.count_nonzero(states == -1) > 0
        assert case.counts == tuple(int(np.count_nonzero(lab == v)) for v in (0, 1, 2))


def test_a_cropped_seg_is_pasted_onto_its_ct_not_dropped(tmp_path, data):
    src = tmp_path / "src"
    src.mkdir()
    case = sorted(data.glob("*-ct.nrrd"))[0].name[: -len("-ct.nrrd")]
    shutil.copy(data / f"{case}-ct.nrrd", src / f"{case}-ct.nrrd")
    ct = read_volume(src / f"{case}-ct.nrrd")
    seg = read_labels(data / f"{case}-seg.nrrd")
    # LNQ's first release: the seg cropped to a sub-box (another origin and size)
    z0, y0, x0 = 2, 4, 6
    cropped = np.ascontiguousarray(seg.array[z0:, y0:, x0:])
    origin = tuple(ct.index_to_physical(np.array([[z0, y0, x0]]))[0])
    write_volume(src / f"{case}-seg.nrrd", Volume(cropped, seg.spacing, origin, seg.direction))
    result = export_dataset(tmp_path / "raw", 7, data=src, workers=1)
    assert not result.cases[0].resampled  # a box of the CT's grid: pasted exactly, nothing resampled
    assert json.loads(result.dataset_json.read_text())["lnq_napari"]["resampled_segs"] == []
    lab = _sitk(result.folder / "labelsTr" / f"{case}.nrrd")
    assert lab.GetSize() == ct.size_xyz
    import SimpleITK as sitk

    expected = np.zeros(ct.shape, np.uint8)
    expected[z0:, y0:, x0:] = cropped
    assert np.count_nonzero(sitk.GetArrayFromImage(lab) == 1) == np.count_nonzero(expected) > 0


def test_workspace_export_uses_the_correction_rules(tmp_path, data):
    from lnq_napari.interact import NodeMark, Rejection, spot_mask
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", data)
    case, other = ws.case_ids()[:2]
    ct = ws.read_ct(case)
    original = ws.latest_labels(case, "original")
    pred = original.array.copy()
    pred[1:3, 2:6, 2:6] = 1  # a false node the reviewer removes
    ws.add_label_version(case, original.with_array(pred), "prediction", model_version="m001")
    full = read_labels(ws.full_path(case), reference=ct)
    plain = correction_states(ct, full, original.with_array(pred))
    off_node = np.argwhere((plain == -1) & ~np.isin(np.arange(plain.shape[0]), [1, 2])[:, None, None])
    rejection, mark = Rejection(tuple(off_node[0]), 4.0), NodeMark.at(off_node[-1], radius_mm=8.0)
    ws.add_label_version(case, full, "correction", model_version="m001", edits=4,
                         rejected=[rejection.to_dict()], marked=[mark.to_dict()])
    result = export_dataset(tmp_path / "raw", 12, workspace=ws.root, name="LNQws", workers=1)
    kinds = {c.case_id: c.kind for c in result.cases}
    assert kinds == {case: "correction", other: "original"}
    expected = nnunet_labels(correction_states(
        ct, full, original.with_array(pred), rejected=spot_mask([rejection], ct.shape, ct.spacing_zyx),
        marks=[mark]))
    import SimpleITK as sitk

    got = sitk.GetArrayFromImage(_sitk(result.folder / "labelsTr" / f"{case}.nrrd"))
    np.testing.assert_array_equal(got, expected)
    assert got[rejection.centre_zyx] == LABELS["background"] and got[mark.centre_zyx] == LABELS["lymph_node"]
    assert not np.array_equal(got, nnunet_labels(plain))
    assert np.all(got[1:3, 2:6, 2:6][full.array[1:3, 2:6, 2:6] == 0] == LABELS["background"])
    octs = ws.read_ct(other)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(_sitk(result.folder / "labelsTr" / f"{other}.nrrd")),
        nnunet_labels(label_states(octs, ws.latest_labels(other, "original"))))


def test_parallel_export_writes_the_same_labels(tmp_path, data, exported):
    import SimpleITK as sitk

    result = export_dataset(tmp_path / "raw", 501, data=data, workers=2)
    assert [c.counts for c in result.cases] == [c.counts for c in exported.cases]
    for case in exported.cases:
        a = sitk.GetArrayFromImage(_sitk(result.folder / "labelsTr" / f"{case.case_id}.nrrd"))
        b = sitk.GetArrayFromImage(_sitk(exported.folder / "labelsTr" / f"{case.case_id}.nrrd"))
        np.testing.assert_array_equal(a, b)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, data, monkeypatch):
    raw = tmp_path / "raw"
    (raw / "Dataset501_Other").mkdir(parents=True)
    (raw / "Dataset502_LNQ").mkdir()
    (raw / "Dataset502_LNQ" / "x.txt").write_text("x")
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    bad = [
        (dict(dataset_id=501), "already in use"),
        (dict(dataset_id=502), "is not empty"),
        (dict(dataset_id=0), "1 to 999"),
        (dict(dataset_id=1000), "1 to 999"),
        (dict(dataset_id=503, name="a b"), r"^the dataset name 'a b' .*; --name on the command line\)$"),
        (dict(dataset_id=0), r"^the dataset id 0 .*; --dataset-id on the command line\)$"),
        (dict(dataset_id=507, workers=0), r"^workers must be .* \(--workers on the command line\)$"),
    ]
    for kwargs, words in bad:
        with pytest.raises(LNQError, match=words):
            export_dataset(raw, data=data, **{"name": "LNQ", **kwargs})
    with pytest.raises(LNQError, match=r"^give exactly one of data .* \(--data and --workspace on the"):
        export_dataset(raw, 504)
    with pytest.raises(LNQError, match="is an nnU-Net dataset itself; give the folder that holds"):
        export_dataset(raw / "Dataset501_Other", 506, data=data)  # it was nested inside that dataset
    results = tmp_path / "results"
    (results / "Dataset505_Trained").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_results", str(results))
    with pytest.raises(LNQError, match="already in use"):
        export_dataset(raw, 505, data=data)
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before


def test_a_workspace_given_as_data_is_named(tmp_path, data):
    """A review workspace given to --data: it said "no *-ct.nrrd files with a matching *-seg file in ws"
    (the user's CTs are in it); now that it is a workspace and to give it as --workspace."""
    from lnq_napari.workspace import Workspace

    Workspace.init(tmp_path / "ws", data)
    said = r"ws is a review workspace, not a data folder; give it as --workspace "
    with pytest.raises(LNQError, match=said):
        export_dataset(tmp_path / "raw", 7, data=tmp_path / "ws")
    assert not (tmp_path / "raw").exists()


def test_a_workspace_case_whose_ct_is_gone_is_named(tmp_path, data):
    """It said only '<path> does not exist; check the path' (which case, what to do?)."""
    from lnq_napari.workspace import Workspace

    copy = Path(shutil.copytree(data, tmp_path / "data"))
    ws = Workspace.init(tmp_path / "ws", copy)
    gone = ws.case_ids()[1]
    ws.ct_path(gone).unlink()
    with pytest.raises(LNQError, match=f"the CT of case {gone} is gone from .*put it back"):
        export_dataset(tmp_path / "raw", 7, workspace=ws)
    assert not (tmp_path / "raw" / "Dataset007_LNQ").exists()


def test_a_failed_or_cancelled_export_leaves_no_dataset(tmp_path, data):
    src = tmp_path / "src"
    shutil.copytree(data, src)
    broken = sorted(src.glob("*-ct.nrrd"))[-1]
    broken.write_bytes(broken.read_bytes()[:400])  # truncated: the second case fails
    raw = tmp_path / "raw"
    with pytest.raises(LNQError, match=r"^case lnq2023-train-\d+: .*truncated"):
        export_dataset(raw, 9, data=src, workers=1)
    assert not raw.exists()  # made by the export, taken away with it (an empty folder stayed)
    raw.mkdir()
    with pytest.raises(Cancelled):
        export_dataset(raw, 9, data=data, workers=1, cancel=lambda: True)
    assert list(raw.iterdir()) == []  # the user's folder stays
    stale = raw / ".Dataset009_LNQ.partial-dead"  # left by a killed export: removed by the next one
    (stale / "imagesTr").mkdir(parents=True)
    export_dataset(raw, 9, data=data, workers=1)
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset009_LNQ"]


def test_cli_export_nnunet(tmp_path, data, capsys):
    assert main(["export-nnunet", "--data", str(data), "--out", str(tmp_path), "--dataset-id", "33",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Dataset033_LNQ: 2 cases;" in out and "nnUNetv2_plan_and_preprocess -d 33" in out
    assert "resampled" not in out and "corrected" not in out  # "0 segs resampled", "0 corrected" of --data
    assert main(["export-nnunet", "--data", str(data), "--out", str(tmp_path), "--dataset-id", "33"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not empty" in err


def test_model_folder_checks_need_no_nnunet(tmp_path):
    from lnq_napari.model import bundled_model_path

    with pytest.raises(LNQError, match="does not exist"):
        open_model(tmp_path / "nope")
    with pytest.raises(LNQError, match="not an nnU-Net trained model folder"):
        open_model(f"nnunet:{bundled_model_path()}")
    folder = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (folder / name).write_text("{}")
    with pytest.raises(LNQError, match="no fold_"):
        open_model(folder)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"a")
    (folder / "fold_2").mkdir()
    (folder / "fold_2" / "checkpoint_final.pth").write_bytes(b"b")
    with pytest.raises(LNQError, match=r"lacks fold\(s\) 1 .*it has fold\(s\) 0, 2"):
        open_model(folder, folds=[0, 1])
    both, one = open_model(f"nnunet:{folder}"), open_model(folder, folds=[0])
    assert both.folds == ("0", "2") and one.folds == ("0",)
    assert both.version.startswith("nnunet:Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres@")
    assert both.version != one.version
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"retrained")
    assert open_model(folder, folds=[0]).version != one.version
    for damaged in ("{bad", "[1]"):  # nnU-Net's loader failed on it and the message blamed the checkpoint
        (folder / "plans.json").write_text(damaged)
        with pytest.raises(LNQError, match=r"plans.json cannot be read .*copy it again"):
            open_model(folder)


@pytest.mark.slow
def test_nnunet_integrity_check_passes_on_the_export(exported):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(exported.folder), num_processes=1)  # raises on any problem


def test_a_one_process_nnunet_pool_runs_in_this_process(monkeypatch):
    """nnU-Net's fingerprint extraction and preprocessing spawned a worker process even for one (it
    imported torch and nnU-Net afresh, seconds): with one process their pool is a thread here (the
    session's tiny nnU-Net model, ``conftest.nnunet_model``, is planned with process pools refused)."""
    pytest.importorskip("nnunetv2")
    import importlib
    import multiprocessing
    import os

    from lnq_napari.nnunet.pools import POOL_MODULES, one_process_here

    def refused(*args, **kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(multiprocessing, "get_context", refused)
    modules = [importlib.import_module(name) for name in POOL_MODULES]
    with one_process_here(1):
        for module in modules:  # used as nnU-Net uses it
            with module.multiprocessing.get_context("spawn").Pool(1) as pool:
                assert pool.starmap_async(os.getpid, [()]).get() == [os.getpid()]
                assert all(worker.is_alive() for worker in pool._pool)
    assert all(module.multiprocessing is multiprocessing for module in modules)  # put back
    with one_process_here(2):  # more processes: nnU-Net's own pools
        assert all(module.multiprocessing is multiprocessing for module in modules)


def test_cli_finetune_nnunet_refuses_a_workspace_without_corrections(tmp_path, data, capsys):
    from lnq_napari.workspace import Workspace

    Workspace.init(tmp_path / "ws", data)
    assert main(["finetune-nnunet", "--workspace", str(tmp_path / "ws"), "--model", "nnunet:/nowhere",
                 "--work", str(tmp_path / "work"), "--dataset-id", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no corrected cases" in err
    assert not (tmp_path / "work").exists()


def test_cases_left_out_of_an_export_are_named_and_no_foreground_warns(tmp_path, data, capsys):
    """A CT without labels and labels without their CT were dropped without a word; an export whose
    labels held no node at all was accepted silently."""
    src = tmp_path / "src"
    src.mkdir()
    first, second = sorted(p.name[: -len("-ct.nrrd")] for p in data.glob("*-ct.nrrd"))
    shutil.copy(data / f"{first}-ct.nrrd", src / f"{first}-ct.nrrd")  # no labels
    shutil.copy(data / f"{first}-seg.nrrd", src / "lnq2023-train-0099-seg.nrrd")  # no CT
    shutil.copy(data / f"{second}-ct.nrrd", src / f"{second}-ct.nrrd")
    seg = read_labels(data / f"{second}-seg.nrrd")
    write_volume(src / f"{second}-seg.nrrd", seg.with_array(np.zeros(seg.shape, np.uint8)))
    with pytest.warns(UserWarning, match="no lymph-node voxel in 1 case"):
        result = export_dataset(tmp_path / "raw", 8, data=src, workers=1)
    assert sorted(result.skipped) == [first, "lnq2023-train-0099-seg.nrrd (no CT)"]
    assert [c.case_id for c in result.cases] == [second]
    assert main(["export-nnunet", "--data", str(src), "--out", str(tmp_path / "raw2"), "--dataset-id", "9",
                 "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert f"left out (no labels, or labels without their CT): {first}, lnq2023-train-0099-seg.nrrd (no CT)" \
        in captured.out
    assert "no lymph-node voxel" in captured.err and "Traceback" not in captured.err


def test_a_correction_whose_file_is_damaged_is_warned_of_not_exported_silently(tmp_path, data):
    """A correction's label file cut short by hand: fine-tune warned, export-nnunet (and next) took the
    case by its original labels without a word."""
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", data)
    case = ws.case_ids()[0]
    saved = ws.add_label_version(case, read_labels(ws.full_path(case), reference=ws.read_ct(case)),
                                 "correction")
    path = ws.label_path(case, saved)
    path.write_bytes(path.read_bytes()[:500])
    lost = f"case {case}: the file of correction {saved} .* is gone or damaged; exported without it"
    with pytest.warns(UserWarning, match=lost):
        result = export_dataset(tmp_path / "raw", 13, workspace=ws.root, workers=1)
    assert {c.case_id: c.kind for c in result.cases}[case] == "original"


def test_each_warning_of_reading_the_data_folder_is_said_once(tmp_path):
    """export-nnunet read its data folder twice (the labelled cases, then all of them), so each warning of
    the read (a SEG of no CT series there, series too deep) was printed twice."""
    import warnings

    import pydicom

    from lnq_napari.io.dicom_seg import write_dicom_seg
    from lnq_napari.nnunet.export import jobs_from_data

    series = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"
    root = tmp_path / "data"
    shutil.copytree(series, root / "P1" / "2-CT")
    ct = read_volume(series)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    write_dicom_seg(root / "P1" / "3-SEG" / "1-1.dcm", labels, series)
    stray = write_dicom_seg(root / "P2" / "3-SEG" / "1-1.dcm", labels, series)
    ds = pydicom.dcmread(stray)
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = pydicom.uid.generate_uid()  # a series not here
    ds.save_as(stray)
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        jobs, skipped = jobs_from_data(root)
    assert [job.case_id for job in jobs] == ["P1_2-CT"] and skipped == []
    left = [str(w.message) for w in heard if "references no CT series found here" in str(w.message)]
    assert len(left) == 1 and str(stray) in left[0]
