"""Label files written into a folder the user names never replace a file of the user's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.inference import Prediction
from lnq_napari.io.outputs import check_not_users
from lnq_napari.io.provenance import ALGORITHM_NAME, PREDICTIONS, created_by, written_by_us
from lnq_napari.io.readers import read_labels, read_volume, write_volume
from lnq_napari.io.segfile import write_seg_nrrd
from lnq_napari.io.volume import Volume

SHAPE = (6, 20, 20)
SERIES = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"  # a DICOM CT series of 3 slices


def _labels() -> Volume:
    array = np.zeros(SHAPE, np.uint8)
    array[2:4, 5:10, 5:10] = 1
    return Volume(array, (0.8, 0.8, 3.0), (0.0, 0.0, 0.0))


def _dicom(path, manufacturer: str):
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Manufacturer = manufacturer
    ds.save_as(path, enforce_file_format=True)
    return path


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_only_files_an_lnq_napari_command_wrote_count_as_ours(tmp_path):
    ours = write_seg_nrrd(tmp_path / "a-seg.nrrd", _labels(), extra=created_by("predict"))
    users = write_seg_nrrd(tmp_path / "b-seg.nrrd", _labels(), extra={"lnq_model_version": "m001"})
    junk = tmp_path / "c-seg.nrrd"
    junk.write_bytes(b"not a NRRD at all")
    assert written_by_us(ours) and not written_by_us(users) and not written_by_us(junk)
    assert written_by_us(_dicom(tmp_path / "d-seg.dcm", ALGORITHM_NAME))
    assert not written_by_us(_dicom(tmp_path / "e-seg.dcm", "Slicer"))
    check_not_users([ours, tmp_path / "new-seg.nrrd"], "--output", ("predict",))  # ours, absent: written
    with pytest.raises(api.LNQError, match=r"--output .* already holds b-seg.nrrd, which lnq-napari predict "
                                           "did not write"):
        check_not_users([ours, users], "--output", ("predict",))
    with pytest.raises(api.LNQError, match="a-seg.nrrd, which lnq-napari phantom did not write"):
        check_not_users([ours], "output", ("phantom",))  # another command's file is not this one's to replace
    demo = write_seg_nrrd(tmp_path / "f-seg.nrrd", _labels(), extra=created_by("demo"))
    check_not_users([demo], "--output", PREDICTIONS)  # a prediction of demo's: predict writes over it
    bare = _dicom(tmp_path / "g-seg", ALGORITHM_NAME)  # a DICOM SEG named without .dcm
    assert written_by_us(bare) and not written_by_us(_dicom(tmp_path / "h-seg", "Slicer"))


def test_phantom_keeps_a_download_and_a_prediction_keeps_the_phantoms_labels(tmp_path, capsys):
    """`phantom DIR` wrote its cases over an LNQ download's CT and labels of the same names; `predict DIR
    -o DIR` may not write over the phantom's partial labels either. A phantom folder is written again."""
    from lnq_napari.phantom import write_dataset

    data = tmp_path / "lnq"
    data.mkdir()
    ct = write_volume(data / "lnq2023-train-0001-ct.nrrd", Volume(np.full(SHAPE, -100, np.int16),
                                                                 (0.8, 0.8, 3.0)))
    before = _md5(ct)
    assert main(["phantom", str(data), "--cases", "1"]) == 2
    assert "already holds lnq2023-train-0001-ct.nrrd, which lnq-napari phantom did not write" in \
        capsys.readouterr().err
    assert _md5(ct) == before and sorted(p.name for p in data.iterdir()) == [ct.name]
    small = dict(shape=(8, 48, 48), spacing=(3.0, 3.0, 6.0))
    made = write_dataset(tmp_path / "ph", 1, **small)
    assert write_dataset(tmp_path / "ph", 1, **small) == made  # its own files: written again
    seg = tmp_path / "ph" / "lnq2023-train-0001-seg.nrrd"
    with pytest.raises(api.LNQError, match="which lnq-napari predict did not write"):
        check_not_users([seg], "--output", PREDICTIONS)


def test_the_follow_up_phantom_marks_its_files_and_keeps_a_users(tmp_path):
    """The follow-up phantom wrote its files unmarked (a prediction into its folder could not tell them
    from a user's) and over any file of the same name."""
    from lnq_napari.phantom.followup import write_followup

    small = dict(shape=(16, 64, 64), spacing=(2.0, 2.0, 4.0))
    t0, t1 = write_followup(tmp_path / "pair", seed=1, **small)
    files = sorted((tmp_path / "pair").glob("*.nrrd"))
    assert len(files) == 6 and all(written_by_us(f, ("phantom",)) for f in files)
    assert write_followup(tmp_path / "pair", seed=1, **small) == (t0, t1)  # its own files: written again
    user = tmp_path / "user"
    seg = write_seg_nrrd(user / "phantom-followup-0001-t1-seg.nrrd", _labels())
    before = _md5(seg)
    with pytest.raises(api.LNQError, match="which lnq-napari phantom did not write"):
        write_followup(user, seed=1, **small)
    assert _md5(seg) == before and sorted(p.name for p in user.iterdir()) == [seg.name]


def test_predict_into_the_data_folder_keeps_the_users_labels(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    ct = write_volume(data / "lnq2023-train-0001-ct.nrrd", _labels().with_array(np.full(SHAPE, 40, np.int16)))
    seg = write_seg_nrrd(data / "lnq2023-train-0001-seg.nrrd", _labels())  # the user's partial labels
    before = _md5(seg)
    predicted = _labels().with_array(np.zeros(SHAPE, np.uint8))
    monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
        None, Prediction(predicted, predicted, "m001")))
    for argv in (["predict", str(data), "-o", str(data)], ["demo", str(ct), "--out", str(data)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds lnq2023-train-0001-seg.nrrd, which lnq-napari " in err[0]
        assert f"lnq-napari {argv[0]} did not write" in err[0]
        assert _md5(seg) == before
    out = tmp_path / "out"
    for _ in range(2):  # a second run writes over its own output
        (written,) = api.predict(data, out)
        assert written_by_us(written) and not read_labels(written).array.any()


def test_predict_into_the_data_folder_does_not_shadow_slicer_named_labels(tmp_path, monkeypatch, capsys):
    """`predict DATA -o DATA` beside ``patient1.seg.nrrd`` (3D Slicer's name for the user's labels) wrote
    ``patient1-seg.nrrd``, which the folder's label lookup then took first: the user's labels ignored."""
    from lnq_napari.io.layout import scan_cases

    data = tmp_path / "data"
    write_volume(data / "patient1.nrrd", _labels().with_array(np.full(SHAPE, 40, np.int16)))
    seg = write_seg_nrrd(data / "patient1.seg.nrrd", _labels())  # the user's labels, as Slicer names them
    predicted = _labels().with_array(np.zeros(SHAPE, np.uint8))
    monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
        None, Prediction(predicted, predicted, "m001")))
    assert main(["predict", str(data), "-o", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds patient1.seg.nrrd, labels lnq-napari predict did not write" in err[0]
    assert "patient1-seg.nrrd would be read as that case's labels" in err[0]
    assert not (data / "patient1-seg.nrrd").exists() and scan_cases(data)[0].seg == seg.resolve()


def test_a_damaged_ct_in_a_batch_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    """A folder of three CTs, the second truncated: the first and third are predicted, then one line says
    so and names the second (the batch stopped at it, leaving the third unpredicted)."""
    data = tmp_path / "data"
    ct = _labels().with_array(np.full(SHAPE, 40, np.int16))
    cts = [write_volume(data / f"lnq2023-val-000{k}-ct.nrrd", ct) for k in (1, 2, 3)]
    cts[1].write_bytes(cts[1].read_bytes()[: cts[1].stat().st_size // 2])
    predicted = _labels().with_array(np.zeros(SHAPE, np.uint8))
    monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
        None, Prediction(predicted, predicted, "m001")))
    out = tmp_path / "out"
    assert main(["predict", str(data), "-o", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("predict:")]
    assert len(err) == 1 and "predicted 2 of 3 CTs" in err[0] and "lnq2023-val-0002" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["lnq2023-val-0001-seg.nrrd", "lnq2023-val-0003-seg.nrrd"]


def test_a_table_is_written_over_only_a_table_the_command_wrote(tmp_path, capsys):
    """`measure --csv W/models/registry.json` and `evaluate --json W/workspace.json` wrote their table over
    the workspace's own files (the workspace was then unreadable), `--csv <case>-nodes.json` over the
    phantom's truth: an existing file is written over only when it begins as the command's table."""
    labels = write_volume(tmp_path / "case-seg.nrrd", _labels())
    theirs = tmp_path / "workspace.json"
    theirs.write_text('{"format": 1}\n')
    before = _md5(theirs)
    for argv in (["measure", str(labels), "--csv", str(theirs)],
                 ["evaluate", "--pred", str(labels), "--gt", str(labels), "--json", str(theirs)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "already exists and is not a table this command wrote" in err
        assert _md5(theirs) == before
    table, scores = tmp_path / "nodes.csv", tmp_path / "scores.json"
    for argv in (["measure", str(labels), "--csv", str(table)],
                 ["evaluate", "--pred", str(labels), "--gt", str(labels), "--json", str(scores)]):
        assert main(argv) == 0 and main(argv) == 0  # its own table: written again
    assert main(["evaluate", "--pred", str(labels), "--gt", str(labels), "--json", str(table)]) == 2
    capsys.readouterr()
    (tmp_path / "empty.csv").write_text("")  # nothing in it to lose
    assert main(["measure", str(labels), "--csv", str(tmp_path / "empty.csv")]) == 0


def test_predict_writes_masks_without_suggestions_and_names_each_case_s_warnings(tmp_path, monkeypatch):
    """predict computed suggestions and a node table it threw away (1.1 GB and seconds more on a 650-slice
    CT); in a batch the second CT's warning was swallowed (once per place) and none said whose."""
    from types import SimpleNamespace

    from lnq_napari.model.config import InferenceConfig

    def no_suggestions(*args, **kwargs):
        raise AssertionError("predict needs no suggestions")

    monkeypatch.setattr(api, "suggest_candidates", no_suggestions)
    monkeypatch.setattr(api, "node_table", no_suggestions)

    class Thin:  # a loaded predictor: load_predictor returns it as it is
        config = SimpleNamespace(inference=InferenceConfig())

        def predict(self, ct, progress=None, cancel=None, **kwargs):
            mask = ct.with_array(np.zeros(ct.shape, np.uint8))
            return Prediction(mask, mask, "m001")

    data = tmp_path / "data"
    hu = np.full(SHAPE, -1000, np.int16)
    hu[:, 5:15, 5:15] = 40
    thin = _labels().with_array(hu)  # thinner than 30 mm along an axis: warned
    for k in (1, 2):
        write_volume(data / f"lnq2023-val-000{k}-ct.nrrd", thin)
    reported = []
    with pytest.warns(UserWarning) as heard:
        written = api.predict(data, tmp_path / "out", model=Thin(),
                              progress=lambda f, m="": reported.append(f))
    assert len(written) == 2
    assert reported[-1] == 1.0  # the bar ends at 100 % (it stopped at 90)
    said = [str(w.message) for w in heard if "spans only" in str(w.message)]
    assert [s.split(":")[0] for s in said] == ["lnq2023-val-0001", "lnq2023-val-0002"]


def test_a_dicom_seg_is_a_prediction_by_its_content_label(tmp_path):
    """Any DICOM SEG lnq-napari wrote counted as every command's: napari's Save export (a reviewed result)
    as predict's. The Content Label says predict's; a SEG of ours without it is the export's."""
    export = ("workspace export",)
    predicted, saved = _dicom(tmp_path / "a-seg.dcm", ALGORITHM_NAME), _dicom(tmp_path / "b", ALGORITHM_NAME)
    ds = pydicom.dcmread(predicted)
    ds.ContentLabel = "LNQ_PREDICT"  # the mark as written to disk: SEGs already stored carry it
    ds.save_as(predicted)
    theirs = _dicom(tmp_path / "c-seg.dcm", "Slicer")
    assert written_by_us(predicted, PREDICTIONS) and not written_by_us(predicted, export)
    assert written_by_us(saved, export) and not written_by_us(saved, PREDICTIONS)
    assert written_by_us(predicted) and written_by_us(saved) and not written_by_us(theirs)
    assert not written_by_us(theirs, PREDICTIONS) and not written_by_us(theirs, export)


def test_predict_writes_over_its_own_seg_but_not_a_reviewed_one(tmp_path, fixed_prediction):
    """``predict --format dicom-seg`` wrote over any SEG lnq-napari wrote: a reviewed result napari's Save
    exported as well as its own earlier prediction."""
    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    model = fixed_prediction(mask)
    out = tmp_path / "out"
    for _ in range(2):  # the second run writes over the first's SEG
        (written,) = api.predict(SERIES, out, model=model, format="dicom-seg")
    assert written_by_us(written, PREDICTIONS)
    api.export_dicom_seg(written, mask, SERIES, model_version="m001")  # reviewed: napari's Save writes it
    before = _md5(written)
    with pytest.raises(api.LNQError, match=r"already holds ct-3slice-seg.dcm, a DICOM SEG napari's Save or "
                                           r"workspace export wrote \(reviewed labels, or a prediction"):
        api.predict(SERIES, out, model=model, format="dicom-seg")
    assert _md5(written) == before
