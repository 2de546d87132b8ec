"""A data folder's cases: LNQ-layout files as the layout scan finds them, else the DICOM CT series at or
below the folder with the SEGs that reference them; training reads either; the CTs a path names."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io import read_labels, read_volume, write_volume
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.dicom_seg import write_dicom_seg
from lnq_napari.io.layout import scan_cases
from lnq_napari.training.trainer import load_training_cases

SERIES = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"


def test_an_lnq_layout_folder_reads_as_the_layout_scan_says(tmp_path):
    ct = read_volume(SERIES)
    write_volume(tmp_path / "a-ct.nrrd", ct)
    write_volume(tmp_path / "a-seg.nrrd", ct.with_array(np.zeros(ct.shape, np.uint8)))
    write_volume(tmp_path / "b-ct.nrrd", ct)
    assert find_cases(tmp_path) == scan_cases(tmp_path)
    assert [c.case_id for c in find_cases(tmp_path, require="seg")] == ["a"]


def test_a_dicom_download_gives_its_labelled_series_to_training(tmp_path):
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "P1" / "2-CT")
    with pytest.raises(LNQError, match="no CT series of .* has labels: a DICOM SEG that references it"):
        find_cases(root, require="seg", what="training data")
    (root / "P1" / "3-SEG").mkdir()
    write_dicom_seg(root / "P1" / "3-SEG" / "1-1.dcm", labels, SERIES)
    (case,) = find_cases(root, require="seg")
    assert case.case_id == "P1_2-CT" and case.ct == (root / "P1" / "2-CT").resolve()
    np.testing.assert_array_equal(read_labels(case.seg, reference=ct).array, labels.array)
    (loaded,) = load_training_cases(root, naive=True, workers=1)
    assert loaded.case_id == "P1_2-CT" and int((loaded.states == 1).sum()) == int(labels.array.sum())


def test_dicom_series_folders_take_the_label_files_named_after_them(tmp_path):
    """DICOM CT series folders with 3D Slicer label files named after them (``patient1-seg.nrrd`` beside the
    series folder ``patient1``), as plainly named CTs take theirs: the labels were silently left out
    (``workspace init`` made unlabelled cases, ``export-nnunet`` and ``train`` said no case had labels)."""
    from lnq_napari.workspace import Workspace

    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "data"
    for name in ("patient1", "patient2"):
        shutil.copytree(SERIES, root / name)
    write_volume(root / "patient1-seg.nrrd", labels)
    cases = find_cases(root)
    assert [(c.case_id, c.seg) for c in cases] == [("patient1", (root / "patient1-seg.nrrd").resolve()),
                                                    ("patient2", None)]
    (case,) = find_cases(root, require="seg")
    np.testing.assert_array_equal(read_labels(case.seg, reference=ct).array, labels.array)
    nested = tmp_path / "download" / "P1"  # a series folder below a patient's: labels beside it
    shutil.copytree(SERIES, nested / "2-CT")
    write_volume(nested / "2-CT-seg.nrrd", labels)
    (case,) = find_cases(tmp_path / "download", require="seg")
    assert case.seg == (nested / "2-CT-seg.nrrd").resolve()
    ws = Workspace.init(tmp_path / "ws", root)
    assert ws.seg_path("patient1") == (root / "patient1-seg.nrrd").resolve()
    np.testing.assert_array_equal(ws.latest_labels("patient1").array, labels.array)
    assert ws.latest_labels("patient2") is None


def test_a_prediction_written_into_the_data_folder_is_not_a_case_s_labels(tmp_path):
    """``predict DIR --out DIR`` writes ``<case>-seg.nrrd`` beside each CT: the scan took those predictions
    for labels (a workspace kept them as the original, training learned from them as truth)."""
    from lnq_napari.io.provenance import created_by

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    plain, dicom = tmp_path / "plain", tmp_path / "dicom"
    for name in ("patient1", "patient2"):
        write_volume(plain / f"{name}.nrrd", ct)
        shutil.copytree(SERIES, dicom / name)
    for folder in (plain, dicom):
        write_volume(folder / "patient1-seg.nrrd", mask.with_array(mask.array, **created_by("predict")))
        write_volume(folder / "patient2-seg.nrrd", mask.with_array(mask.array, **created_by("phantom")))
        with pytest.warns(UserWarning, match=r"1 label file\(s\) written by lnq-napari predict left out as "
                                             r"predictions, not labels \(patient1-seg\.nrrd\)"):
            cases = find_cases(folder)
        assert [(c.case_id, c.seg and c.seg.name) for c in cases] == [("patient1", None),
                                                                       ("patient2", "patient2-seg.nrrd")]
        (folder / "patient2-seg.nrrd").unlink()
        with pytest.warns(UserWarning), pytest.raises(LNQError, match="lnq-napari predictions, not labels"):
            find_cases(folder, require="seg")


def test_the_user_s_slicer_labels_win_over_a_prediction_written_into_the_data_folder(tmp_path):
    """``predict DATA -o DATA`` wrote ``p1-seg.nrrd``; the user's reviewed labels saved by 3D Slicer after it
    (``p1-ct.seg.nrrd``, or ``p1-seg.seg.nrrd``: the prediction loaded and saved) were left out behind the
    prediction, the case had no labels, and two warnings contradicted each other."""
    import nrrd

    from lnq_napari.io.provenance import created_by
    from lnq_napari.io.segfile import write_seg_nrrd

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    write_volume(tmp_path / "p1-ct.nrrd", ct)
    write_volume(tmp_path / "p2-ct.nrrd", ct)
    for case in ("p1", "p2"):
        write_seg_nrrd(tmp_path / f"{case}-seg.nrrd", mask, extra=created_by("predict"))
    for path, name in ((tmp_path / "p1-ct.seg.nrrd", "LN 4R"), (tmp_path / "p2-seg.seg.nrrd", "lymph node")):
        write_seg_nrrd(path, mask, name=name)
        array, header = nrrd.read(str(path))  # as Slicer saves it: no mark of lnq-napari's
        nrrd.write(str(path), array, {k: v for k, v in header.items() if k not in ("Segment0_Tags",
                                                                                  "lnq_created_by")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cases = find_cases(tmp_path)
    assert [(c.case_id, c.seg and c.seg.name) for c in cases] == [("p1", "p1-ct.seg.nrrd"),
                                                                   ("p2", "p2-seg.seg.nrrd")]


def test_the_cts_of_a_path_file_folder_or_dicom_tree(tmp_path):
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    plain = tmp_path / "plain"
    write_volume(plain / "patient1.nrrd", ct)
    assert find_cts(plain) == [("patient1", plain / "patient1.nrrd")]
    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "P1" / "study" / "2-CT")
    (root / "P1" / "study" / "3-SEG").mkdir()
    write_dicom_seg(root / "P1" / "study" / "3-SEG" / "1-1.dcm", ct.with_array(np.zeros(ct.shape, np.uint8)),
                    SERIES)
    assert find_cts(root) == [("P1_study_2-CT", root / "P1" / "study" / "2-CT")]
    assert find_cts(SERIES) == [("ct-3slice", SERIES)]
    one = sorted(SERIES.glob("*.dcm"))[0]  # one slice names its series (napari names it so too)
    assert find_cts(one) == [("ct-3slice", one)]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LNQError, match="holds no CT"):
        find_cts(empty)


def test_dicom_series_folders_beside_ct_files_are_named_not_left_out_without_a_word(tmp_path):
    """``data/patient1.nrrd`` with the DICOM series folder ``data/patient2``: predict and workspace init
    took patient1 alone and said nothing of patient2."""
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    write_volume(tmp_path / "patient1.nrrd", ct)
    write_volume(tmp_path / "patient1-seg.nrrd", ct.with_array(np.zeros(ct.shape, np.uint8)))
    shutil.copytree(SERIES, tmp_path / "patient2")
    left_out = r"1 DICOM CT series folder\(s\) below it left out beside its CT files \(patient2\); give them"
    with pytest.warns(UserWarning, match=left_out):
        assert find_cts(tmp_path) == [("patient1", tmp_path / "patient1.nrrd")]
    with pytest.warns(UserWarning, match=left_out):
        assert [c.case_id for c in find_cases(tmp_path)] == ["patient1"]
    shutil.rmtree(tmp_path / "patient2")  # label versions or SEGs below the data are no CT series
    write_dicom_seg(tmp_path / "preds" / "patient1-seg.dcm", ct.with_array(np.zeros(ct.shape, np.uint8)),
                    SERIES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_cts(tmp_path) == [("patient1", tmp_path / "patient1.nrrd")]
        assert find_cts(tmp_path / "patient1.nrrd") == [("patient1", tmp_path / "patient1.nrrd")]


def _copy_series(src: Path, dest: Path, **tags) -> Path:
    """``src``'s slices in ``dest`` as another series, each header changed by ``tags``."""
    import pydicom

    dest.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    for k, file in enumerate(sorted(src.glob("*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(dest / f"{k}.dcm")
    return dest


def test_a_scout_a_dose_report_and_a_dicomdir_are_no_ct_cases(tmp_path, monkeypatch):
    """A TCIA-style download holds a scout and a dose report beside the CT: each was a case (predict
    exited 2 on the scout, workspace init added the report); a CD's DICOMDIR at the root made the root
    read as one series (refused); ``predict .`` inside a series folder named its case ''."""
    from lnq_napari.io.datasets import find_cts

    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "P1" / "study" / "2-CT")
    _copy_series(SERIES, root / "P1" / "study" / "1-LOC", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    _copy_series(SERIES, root / "P1" / "study" / "9-SR", Modality="SR",
                 SOPClassUID="1.2.840.10008.5.1.4.1.1.88.67")  # X-Ray Radiation Dose SR
    assert find_cts(root) == [("P1_study_2-CT", root / "P1" / "study" / "2-CT")]
    assert [c.case_id for c in find_cases(root)] == ["P1_study_2-CT"]
    shutil.copy(sorted(SERIES.glob("*.dcm"))[0], root / "DICOMDIR")  # any DICOM file at the root
    assert find_cts(root) == [("download_P1_study_2-CT", root / "P1" / "study" / "2-CT")]  # a CD: named by it
    monkeypatch.chdir(root / "P1" / "study" / "2-CT")
    assert find_cts(".") == [("download_P1_study_2-CT", Path("."))]  # on the CD: named from its root


def test_a_series_folder_whose_first_file_is_a_scout_or_a_seg_is_still_a_case(tmp_path):
    """The tree scan judged a folder by its first file: a study exported flat (the scout sorted first)
    or a CT folder a prediction's SEG was saved into was left out without a word."""
    import pydicom

    from lnq_napari.io.datasets import find_cts

    root = tmp_path / "download"
    flat = root / "P1" / "study"
    shutil.copytree(SERIES, flat)
    scout = pydicom.dcmread(sorted(SERIES.glob("*.dcm"))[0])
    scout.SeriesInstanceUID, scout.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(flat / "0000-scout.dcm")  # sorts before the slices
    other = shutil.copytree(SERIES, root / "P2" / "2-CT")
    ct = read_volume(SERIES)
    write_dicom_seg(other / "0-seg.dcm", ct.with_array(np.zeros(ct.shape, np.uint8)), SERIES)
    assert find_cts(root) == [("P1_study", flat), ("P2_2-CT", other)]


def test_two_series_folders_that_give_one_case_name_are_refused(tmp_path):
    """``A_B/C`` and ``A/B_C`` both became case ``A_B_C``: predict wrote one's result over the other's and
    workspace init kept one of them."""
    from lnq_napari.io.datasets import find_cts

    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "A_B" / "C")
    shutil.copytree(SERIES, root / "A" / "B_C")
    with pytest.raises(LNQError, match="both give the case name 'A_B_C'.*rename one of the folders"):
        find_cts(root)


def test_a_series_written_without_the_dicom_preamble_is_found_in_a_tree(tmp_path):
    """Older exports write bare implicit-VR datasets (no 128-byte preamble, no 'DICM', no extension): the
    folder given alone was taken for a series, but a tree holding it gave no case ("holds no CT"). Found in
    a tree as given alone, and read as the CT (GDCM reads such files; they were refused)."""
    import pydicom

    from lnq_napari.io.datasets import find_cts

    series = tmp_path / "tree" / "P1" / "S1"
    series.mkdir(parents=True)
    for k, file in enumerate(sorted(SERIES.glob("*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.preamble = None
        del ds.file_meta
        pydicom.dcmwrite(series / f"{k + 1:05d}", ds, implicit_vr=True, little_endian=True,
                         enforce_file_format=False)
    (series.parent / "notes").write_bytes(b"\x08\x00 not DICOM at all")  # a file that only starts alike
    assert find_cts(tmp_path / "tree") == [("P1_S1", series)]
    np.testing.assert_array_equal(read_volume(series).array, read_volume(SERIES).array)


@pytest.mark.parametrize(("notes", "by_uid"), [
    (["1_README.txt", "2_info.json", "3_meta.xml", "4_thumb.jpg", "5_report.pdf"], False),
    (["0001.jpg", "0002.jpeg", "0003.png", "0004.jpg", "0005.jpg"], True),  # before slices named 1.2.840...
])
def test_a_series_folder_with_notes_or_thumbnails_sorted_first_is_found_in_a_tree(tmp_path, notes, by_uid):
    """Whether a folder holds DICOM was told from its first 4 files: a series folder whose notes or
    thumbnails sort before its slices gave no case in a tree ("holds no CT"), though ``view --ct`` read it.
    Files named as no DICOM is are not counted."""
    import pydicom

    from lnq_napari.io.datasets import find_cts

    series = tmp_path / "tree" / "P1" / "S1"
    series.mkdir(parents=True)
    for k, file in enumerate(sorted(SERIES.glob("*.dcm"))):
        uid = str(pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID)
        (series / (uid if by_uid else f"IM{k + 1:04d}.dcm")).write_bytes(file.read_bytes())
    assert sorted(p.name for p in series.iterdir())[0] > notes[-1]  # the notes sort first
    for name in notes:
        (series / name).write_bytes(b"\xff\xd8\xff\xe0 not DICOM")
    assert find_cts(tmp_path / "tree") == [("P1_S1", series)]
    assert find_cts(series) == [("S1", series)]
    assert read_volume(series).shape[0] == 3


def test_a_series_folder_with_ct_series_folders_below_it_is_refused(tmp_path, enhanced_ct, cd_export):
    """A data folder holding an enhanced CT (or a series' slices) beside CD exports was read as one series
    folder: the CDs were left out without a word. Refused in one line naming them; a series folder with
    predictions, saved label versions or a scout below it is still its one case."""
    from lnq_napari.io.datasets import find_cts

    data = enhanced_ct(tmp_path / "data", order=[0, 1, 2])
    cd_export(data / "CD1")
    cd_export(data / "CD2")
    slices = shutil.copytree(SERIES, tmp_path / "slices")
    shutil.copytree(SERIES, slices / "P1" / "2-CT")
    for root, own, below in ((data, "1 file", "CD1, CD2"), (slices, "3 files", "P1")):
        said = (rf"{re.escape(str(root))} holds a DICOM CT of its own \({own}\) and DICOM CT series folders "
                rf"below it \({below}\); give each folder on its own, or move the loose files into a folder "
                "of their own$")
        for find in (find_cts, find_cases, read_volume):  # read_volume: napari's File > Open, view, measure
            with pytest.raises(LNQError, match=said):
                find(root)
    series = shutil.copytree(SERIES, tmp_path / "series")
    ct = read_volume(SERIES)
    empty = ct.with_array(np.zeros(ct.shape, np.uint8))
    for name in ("preds/a-seg.dcm", "preds/b-seg.dcm", "lnq-labels/series/v001.seg.dcm",
                 "lnq-labels/series/v002.seg.dcm"):
        (series / name).parent.mkdir(parents=True, exist_ok=True)
        write_dicom_seg(series / name, empty, SERIES)
    _copy_series(SERIES, series / "scout", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert find_cts(series) == [("series", series)]
    assert [(c.case_id, c.ct, c.seg) for c in find_cases(series)] == [("series", series.resolve(), None)]
    assert read_volume(series).shape == ct.shape


def test_a_series_folder_given_as_dot_or_on_a_cd_gets_the_case_id_find_cts_gives(tmp_path, monkeypatch,
                                                                                  cd_export):
    from lnq_napari.io.datasets import find_cts

    series = tmp_path / "2-CT"
    shutil.copytree(SERIES, series)
    monkeypatch.chdir(series)  # `workspace init W --data .` in the series folder: its case id was ""
    assert [c.case_id for c in find_cases(".")] == [case for case, _ in find_cts(".")] == ["2-CT"]
    on_cd = next((cd_export(tmp_path / "CD1")).rglob("SE000000"))
    assert [c.case_id for c in find_cases(on_cd)] == [case for case, _ in find_cts(on_cd)] == [
        "CD1_PT000000_ST000000_SE000000"]


def test_a_prediction_seg_in_a_dicom_data_folder_is_not_a_case_s_labels(tmp_path, fixed_prediction):
    """``predict DIR --format dicom-seg --out DIR`` (or its SEG stored beside the CT series, as a PACS gives
    it back) became the case's labels (a workspace's original, training and evaluation truth): only NRRD
    predictions were told apart. A SEG napari's Save exported (a reviewed result) is still labels, also
    where a prediction of the same series sorts before it."""
    import warnings

    from lnq_napari import api
    from lnq_napari.workspace import Workspace

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    series = shutil.copytree(SERIES, tmp_path / "patient1")
    (predicted,) = api.predict(series, series, model=fixed_prediction(mask), format="dicom-seg")  # into it
    assert predicted == series / "patient1-seg.dcm"
    said = r"1 label file\(s\) written by lnq-napari predict left out as predictions, not labels \({}\)"
    with pytest.warns(UserWarning, match=said.format(r"patient1-seg\.dcm")):
        assert [(c.case_id, c.seg) for c in find_cases(series)] == [("patient1", None)]
    root = tmp_path / "download"  # patient / series folders: the prediction a SEG series beside the CT
    shutil.copytree(SERIES, root / "P1" / "2-CT")
    (root / "P1" / "3-SEG").mkdir()
    shutil.copy(predicted, root / "P1" / "3-SEG" / "1-1.dcm")
    with pytest.warns(UserWarning, match=said.format(r"1-1\.dcm")):
        assert [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_2-CT", None)]
    with pytest.warns(UserWarning, match=said.format(r"1-1\.dcm")):
        ws = Workspace.init(tmp_path / "ws", root)
    assert ws.seg_path("P1_2-CT") is None and ws.latest_labels("P1_2-CT") is None
    beside = (root / "P1" / "3-SEG" / "1-1.dcm").rename(root / "P1" / "2-CT-seg.dcm")  # named after it too
    with pytest.warns(UserWarning, match=said.format(r"2-CT-seg\.dcm")):  # met twice, named once
        assert [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_2-CT", None)]
    beside.rename(root / "P1" / "3-SEG" / "1-1.dcm")
    (root / "P1" / "4-SEG").mkdir()
    reviewed = api.export_dicom_seg(root / "P1" / "4-SEG" / "1-1.dcm", mask, SERIES, model_version="m001")
    with pytest.warns(UserWarning, match=said.format(r"1-1\.dcm")) as heard:
        (case,) = find_cases(root, require="seg")
    assert case.seg == reviewed.resolve() and not any("second SEG" in str(w.message) for w in heard)
    api.export_dicom_seg(predicted, mask, series, model_version="m001")  # napari's Save over the prediction
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (case,) = find_cases(series, require="seg")
    assert case.seg == predicted.resolve()
    np.testing.assert_array_equal(read_labels(case.seg, reference=ct).array, mask.array)


def test_predict_into_a_folder_of_series_folders_keeps_its_cases(tmp_path, fixed_prediction):
    """``predict DATA --format dicom-seg --out DATA`` writes ``<case>-seg.dcm`` beside DATA's series
    folders: DATA was then read as a SEG series (its cases lost: "no *-ct.nrrd files", or "holds 2 DICOM
    SEG files") and predicted again as one. Now its cases are read, the predictions left out of them."""
    from lnq_napari import api

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    model = fixed_prediction(mask)
    data = tmp_path / "data"
    shutil.copytree(SERIES, data / "patient1")
    _copy_series(SERIES, data / "patient2")
    for _ in range(2):  # the second run writes over the first's SEGs
        written = api.predict(data, data, model=model, format="dicom-seg")
    assert written == [data / "patient1-seg.dcm", data / "patient2-seg.dcm"]
    with pytest.warns(UserWarning, match=r"2 label file\(s\) written by lnq-napari predict left out as "
                                         r"predictions, not labels \(patient1-seg\.dcm, patient2-seg\.dcm\)"):
        cases = find_cases(data)
    assert [(c.case_id, c.ct, c.seg) for c in cases] == [("patient1", (data / "patient1").resolve(), None),
                                                          ("patient2", (data / "patient2").resolve(), None)]
    api.export_dicom_seg(written[1], mask, data / "patient2", model_version="m001")  # napari's Save over it
    with pytest.warns(UserWarning, match=r"1 label file\(s\) .* \(patient1-seg\.dcm\)"):
        (case,) = find_cases(data, require="seg")
    assert (case.case_id, case.seg) == ("patient2", written[1].resolve())


def test_predict_into_a_subfolder_of_the_data_keeps_its_cases(tmp_path, fixed_prediction):
    """``predict DATA -o DATA/preds --format dicom-seg`` of two cases: DATA was unreadable ("DATA/preds
    holds 2 DICOM SEG files ...; point to one of them"). A folder of SEGs below DATA gives each of them;
    given itself, it is still refused."""
    from lnq_napari import api
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    data = tmp_path / "data"
    shutil.copytree(SERIES, data / "patient1")
    _copy_series(SERIES, data / "patient2")
    written = api.predict(data, data / "preds", model=fixed_prediction(mask), format="dicom-seg")
    assert written == [data / "preds" / "patient1-seg.dcm", data / "preds" / "patient2-seg.dcm"]
    assert find_cts(data) == [("patient1", data / "patient1"), ("patient2", data / "patient2")]
    with pytest.warns(UserWarning, match=r"2 label file\(s\) written by lnq-napari predict left out"):
        cases = find_cases(data)
    assert [(c.case_id, c.seg) for c in cases] == [("patient1", None), ("patient2", None)]
    api.export_dicom_seg(written[1], mask, data / "patient2", model_version="m001", edits=2)  # reviewed
    with pytest.warns(UserWarning, match=r"1 label file\(s\) .* \(patient1-seg\.dcm\)"):
        (case,) = find_cases(data, require="seg")
    assert (case.case_id, case.seg) == ("patient2", written[1].resolve())
    with pytest.raises(LNQError, match=r"preds holds 2 DICOM SEG files .*; point to one of them"):
        read_volume(data / "preds")


def test_a_folder_of_many_segs_below_the_data_gives_them_all(tmp_path):
    """Nine SEGs in a folder below the data (``predict DATA -o DATA/labels`` of nine cases, reviewed and
    exported there): more files than a SEG series folder holds, it was passed over as a folder without a
    CT image, its SEGs silently unread ("no CT series ... has labels")."""
    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    data = tmp_path / "data"
    series = shutil.copytree(SERIES, data / "patient1")
    labels = [write_dicom_seg(_mkdir(data / "labels") / "a0.dcm", mask, series)]
    labels += [shutil.copy(labels[0], data / "labels" / f"a{k}.dcm") for k in range(1, 9)]
    for k in range(9):  # macOS's AppleDouble files of a copy: hidden, no DICOM
        (data / "labels" / f"._a{k}.dcm").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    with pytest.warns(UserWarning, match=r"a8\.dcm is left out: a second SEG of patient1"):
        (case,) = find_cases(data, require="seg")
    assert case.seg == labels[0].resolve()
    np.testing.assert_array_equal(read_labels(case.seg, reference=ct).array, mask.array)


def test_a_seg_series_folder_beside_a_folder_without_dicom_stays_a_seg(tmp_path, fixed_prediction):
    """A SEG series folder holding a ``notes/`` or ``__MACOSX/`` folder was taken for the root of series
    folders with SEGs loose beside them: predict said it "holds no CT", not that it is a SEG."""
    from lnq_napari import api
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    empty = ct.with_array(np.zeros(ct.shape, np.uint8))
    seg = tmp_path / "3-SEG"
    for folder in ("notes", "__MACOSX"):
        (seg / folder).mkdir(parents=True)
    (seg / "notes" / "readme.txt").write_text("drawn by reader 1")
    (seg / "__MACOSX" / "._1-1.dcm").write_bytes(b"\x00\x05\x16\x07")
    write_dicom_seg(seg / "1-1.dcm", empty, SERIES)
    assert find_cts(seg) == [("3-SEG", seg)]
    with pytest.raises(LNQError, match=r"3-SEG is a DICOM SEG \(a segmentation\), not a CT"):
        api.predict(seg, tmp_path / "out", model=fixed_prediction(empty), format="dicom-seg")


def _download_with_its_seg(tmp_path: Path):
    """A TCIA-like download (P1/ST/2-CT) whose SEG series P1/ST/4-SEG the data set's readers drew in 3D
    Slicer: the CT, that SEG's labels, other labels on the CT, the download, the series and the SEG."""
    import pydicom

    ct = read_volume(SERIES)
    truth, other = ct.with_array(np.zeros(ct.shape, np.uint8)), ct.with_array(np.zeros(ct.shape, np.uint8))
    truth.array[1, 40:60, 40:60], other.array[0, 0:5, 0:5] = 1, 1
    root = tmp_path / "download"
    series = shutil.copytree(SERIES, root / "P1" / "ST" / "2-CT")
    theirs = write_dicom_seg(_mkdir(root / "P1" / "ST" / "4-SEG") / "1-1.dcm", truth, series)
    ds = pydicom.dcmread(theirs)
    ds.Manufacturer = "3D Slicer"
    ds.save_as(theirs)
    return ct, truth, other, root, series, theirs


def test_a_data_set_s_seg_is_its_labels_beside_an_unmarked_seg_of_lnq_napari_s(tmp_path):
    """A SEG ``predict -o DATA`` wrote before predictions were marked (read as an export: labels), loose
    beside the series folders or in a SEG series folder that sorts first, took the case's labels from the
    data set's own SEG series, which was left out as "a second SEG": training learned the model's output."""
    ct, truth, old, root, series, theirs = _download_with_its_seg(tmp_path)
    said = (r" is left out: a second SEG of P1_ST_2-CT, whose labels are .*4-SEG/1-1\.dcm \(a SEG lnq-napari "
            r"did not write, before an lnq-napari SEG of unedited model output\); move that SEG away "
            r"to use this one")
    for ours in (root / "P1_ST_2-CT-seg.dcm", _mkdir(root / "P1" / "ST" / "3-SEG") / "1-1.dcm"):
        write_dicom_seg(ours, old, series, model_version="m001")  # as predict wrote it before the mark
        with pytest.warns(UserWarning, match=re.escape(str(ours)) + said):
            (case,) = find_cases(root, require="seg")
        assert case.seg == theirs.resolve()
        np.testing.assert_array_equal(read_labels(case.seg, reference=ct).array, truth.array)
        ours.unlink()
    shutil.copy(theirs, root / "P1_ST_2-CT-seg.dcm")  # not lnq-napari's either: the SEG series comes first
    with pytest.warns(UserWarning, match=r"P1_ST_2-CT-seg\.dcm is left out: a second SEG of P1_ST_2-CT, "
                                         r"whose labels are .*4-SEG/1-1\.dcm \(found first\)"):
        (case,) = find_cases(root, require="seg")
    assert case.seg == theirs.resolve()


def test_a_reviewed_export_is_a_case_s_labels_before_a_data_set_s_seg(tmp_path):
    """A SEG napari's Save or ``workspace export`` wrote with a MANUAL or SEMIAUTOMATIC segment (a user's
    reviewed labels), loose at the root, gave way to the data set's SEG series of the case as "lnq-napari
    wrote it"; an all-AUTOMATIC one (a prediction before the mark, or an unedited export) still does."""
    ct, truth, reviewed, root, series, theirs = _download_with_its_seg(tmp_path)
    export = root / "P1_ST_2-CT-seg.dcm"
    for made, kept in (({}, export), ({"model_version": "m003", "edits": 7}, export),
                       ({"model_version": "m003"}, theirs)):
        write_dicom_seg(export, reviewed, series, **made)
        left = theirs if kept == export else export
        said = re.escape(f"{left} is left out: a second SEG of P1_ST_2-CT, whose labels are {kept.resolve()}")
        with pytest.warns(UserWarning, match=said + r" \(.*\); move that SEG away to use this one"):
            (case,) = find_cases(root, require="seg")
        assert case.seg == kept.resolve(), made


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_segs_predicted_into_a_patient_s_folder_are_loose_there_too(tmp_path, fixed_prediction):
    """``predict DATA/P1 -o DATA/P1 --format dicom-seg`` writes P1's SEGs beside its study folder: SEGs
    loose beside series folders were told apart at the root only, so P1 became a SEG series folder of
    DATA and find_cts, find_cases and ``predict DATA`` said "DATA/P1 holds 2 DICOM SEG files"."""
    from lnq_napari import api
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    model = fixed_prediction(mask)
    data = tmp_path / "data"
    for series in ("P1/ST/SE1", "P1/ST/SE2", "P2/ST/SE1"):
        _copy_series(SERIES, data / series)
    assert api.predict(data / "P1", data / "P1", model=model, format="dicom-seg") == [
        data / "P1" / "ST_SE1-seg.dcm", data / "P1" / "ST_SE2-seg.dcm"]
    cases = ["P1_ST_SE1", "P1_ST_SE2", "P2_ST_SE1"]
    assert [case for case, _ in find_cts(data)] == cases
    with pytest.warns(UserWarning, match=r"2 label file\(s\) written by lnq-napari predict left out"):
        assert [(c.case_id, c.seg) for c in find_cases(data)] == [(case, None) for case in cases]
    written = api.predict(data, data, model=model, format="dicom-seg")
    assert written == [data / f"{case}-seg.dcm" for case in cases]


def test_a_dicom_data_folder_whose_only_segs_are_predictions_says_so(tmp_path, fixed_prediction):
    """Every SEG of a DICOM data folder a prediction: "no CT series ... has labels ...; keep each SEG series
    beside its CT series" sent the user to move SEGs that were where they belong. Now it says, as for
    NRRD predictions, that they are predictions."""
    from lnq_napari import api

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    data = tmp_path / "data"
    shutil.copytree(SERIES, data / "patient1")
    api.predict(data, data, model=fixed_prediction(mask), format="dicom-seg")
    said = (r"the only DICOM SEGs and \*-seg files of the CT series in .*data are lnq-napari predictions, "
            r"not labels; training data needs labelled cases: move the predictions out of the folder")
    with pytest.warns(UserWarning, match=r"1 label file\(s\) written by lnq-napari predict left out"), \
            pytest.raises(LNQError, match=said):
        find_cases(data, require="seg", what="training data")


#: DICOM objects without pixels a viewer or PACS saves beside a series: (SOP Class UID, Modality).
NON_IMAGE = {"report": ("1.2.840.10008.5.1.4.1.1.88.11", "SR"),
             "key-objects": ("1.2.840.10008.5.1.4.1.1.88.59", "KO"),
             "presentation": ("1.2.840.10008.5.1.4.1.1.11.1", "PR")}


def _non_image(path: Path, kind: str) -> Path:
    """A DICOM object of ``kind`` (:data:`NON_IMAGE`) without pixels, of the study of :data:`SERIES`."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    ct = pydicom.dcmread(sorted(SERIES.glob("*.dcm"))[0], stop_before_pixels=True)
    ds = Dataset()
    ds.SOPClassUID, ds.Modality = NON_IMAGE[kind]
    ds.SOPInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.PatientID, ds.StudyInstanceUID = ct.PatientID, ct.StudyInstanceUID
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_a_report_key_objects_or_presentation_state_beside_segs_leaves_them_segs(tmp_path):
    """A structured report, key object selection or presentation state a viewer saved into a SEG series
    folder (or beside the SEGs loose above series folders, or among many SEGs) made the folder's SEGs no
    SEGs ("all files are SEG"): left out without a word, the SEG series read as a CT, or the data folder
    taken for one CT case. A CT series folder holding one stays a CT series."""
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    for kind in NON_IMAGE:
        root = tmp_path / kind
        series = shutil.copytree(SERIES, root / "P1" / "ST" / "2-CT")
        _non_image(series / "zz-note.dcm", kind)
        seg = write_dicom_seg(_mkdir(root / "P1" / "ST" / "3-SEG") / "1-1.dcm", mask, series)
        _non_image(seg.parent / "2-1.dcm", kind)
        back = read_labels(seg.parent)
        assert back.same_grid(ct), kind
        np.testing.assert_array_equal(back.array, mask.array)
        assert find_cts(root) == [("P1_ST_2-CT", series)]
        (case,) = find_cases(root, require="seg")
        assert (case.case_id, case.seg) == ("P1_ST_2-CT", seg.resolve())
        many = _mkdir(root / "labels")  # more SEGs than a series folder holds
        for k in range(9):
            shutil.copy(seg, many / f"a{k}.dcm")
        shutil.rmtree(seg.parent)
        _non_image(many / "b.dcm", kind)
        with pytest.warns(UserWarning, match=r"a8\.dcm is left out: a second SEG of P1_ST_2-CT"):
            (case,) = find_cases(root, require="seg")
        assert case.seg == (many / "a0.dcm").resolve(), kind
        loose = shutil.move(many / "a0.dcm", root / "P1_ST_2-CT-seg.dcm")  # beside the series folders
        _non_image(root / "b.dcm", kind)
        shutil.rmtree(many)
        assert find_cts(root) == [("P1_ST_2-CT", series)]
        assert [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_ST_2-CT", loose.resolve())], kind


def test_an_unreadable_file_beside_segs_is_skipped_with_a_warning(tmp_path):
    """A damaged ``.dcm`` (garbage, or a file cut short in copying) in a SEG series folder, among many SEGs
    or beside SEGs loose above series folders made the folder a CT series: the SEGs were left out, the
    data folder refused as "a DICOM CT of its own". The file is skipped, named in a warning."""
    from lnq_napari.io.datasets import find_cts

    ct = read_volume(SERIES)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    series = shutil.copytree(SERIES, root / "P1" / "ST" / "2-CT")
    seg = write_dicom_seg(_mkdir(root / "P1" / "ST" / "3-SEG") / "1-1.dcm", mask, series)
    damaged = {"bad.dcm": b"not DICOM at all" * 8, "cut.dcm": (series / sorted(
        f.name for f in series.iterdir())[0]).read_bytes()[:1000]}  # a CT slice cut inside its header

    def damage(folder: Path) -> list[str]:
        """The damaged files written into ``folder``, as the warnings name them."""
        for name, content in damaged.items():
            (folder / name).write_bytes(content)
        return [f"{folder / name} is skipped: it cannot be read as DICOM (damaged, or cut short); copy it "
                "again or move it away" for name in sorted(damaged)]

    def skipped(heard) -> list[str]:
        return sorted(str(w.message) for w in heard if " is skipped: " in str(w.message))

    warned = damage(seg.parent)
    with pytest.warns(UserWarning) as heard:
        np.testing.assert_array_equal(read_labels(seg.parent).array, mask.array)
    assert skipped(heard) == warned  # each file once
    assert find_cts(root) == [("P1_ST_2-CT", series)]
    with pytest.warns(UserWarning) as heard:
        assert [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_ST_2-CT", seg.resolve())]
    assert skipped(heard) == warned
    many = _mkdir(root / "labels")  # more SEGs than a series folder holds
    for k in range(9):
        shutil.copy(seg, many / f"a{k}.dcm")
    shutil.rmtree(seg.parent)
    warned = damage(many)
    with pytest.warns(UserWarning) as heard:
        (case,) = find_cases(root, require="seg")
    assert case.seg == (many / "a0.dcm").resolve() and skipped(heard) == warned
    loose = shutil.move(many / "a0.dcm", root / "P1_ST_2-CT-seg.dcm")  # beside the series folders
    shutil.rmtree(many)
    warned = damage(root)
    with pytest.warns(UserWarning) as heard:
        assert [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_ST_2-CT", loose.resolve())]
    assert skipped(heard) == warned
    with pytest.warns(UserWarning) as heard:  # predict's walk: each file named once too
        assert find_cts(root) == [("P1_ST_2-CT", series)]
    assert skipped(heard) == warned
    for name in damaged:  # nothing in it can be read: one line
        (_mkdir(tmp_path / f"only-{name}") / name).write_bytes(damaged[name])
        with pytest.raises(LNQError, match=r"^[^\n]*$"):
            read_labels(tmp_path / f"only-{name}")


def test_a_damaged_file_beside_loose_segs_is_named_once_per_read(tmp_path):
    """``read_volume(DATA)`` of a data folder holding a loose ``<case>-seg.dcm``, a damaged ``bad.dcm`` and
    series folders named ``bad.dcm`` three times (the SEG test, the loose-SEG test and the walk below each
    looked at DATA again), and pydicom's parser notes on the garbage ("Expected implicit VR ...") came
    with it. Each read, walk or listing of cases names it once, and nothing else is heard."""
    import warnings

    from lnq_napari.io.datasets import find_cts

    root = tmp_path / "data"
    series = shutil.copytree(SERIES, root / "P1" / "ST" / "2-CT")
    ct = read_volume(series)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    mask.array[1, 40:60, 40:60] = 1
    loose = write_dicom_seg(root / "P1_ST_2-CT-seg.dcm", mask, series)
    (root / "bad.dcm").write_bytes(b"not DICOM at all" * 8)
    named = f"{root / 'bad.dcm'} is skipped: it cannot be read as DICOM (damaged, or cut short); copy it " \
        "again or move it away"
    reads = {"read_volume": lambda: np.array_equal(read_volume(root).array, ct.array),
             "find_cts": lambda: find_cts(root) == [("P1_ST_2-CT", series)],
             "find_cases": lambda: [(c.case_id, c.seg) for c in find_cases(root)] == [("P1_ST_2-CT",
                                                                                       loose.resolve())]}
    for what, read in reads.items():
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            assert read(), what
        assert [str(w.message) for w in heard] == [named], what


def test_a_series_split_over_folders_is_refused_as_data_not_read_as_two_cases(tmp_path):
    """A training / evaluation data folder whose one series an export split over two folders read as two
    cases (each every other slice, the labels of neither); predict and read refused it already."""
    from test_io_dicom_series import hu, series

    series(tmp_path / "data" / "a", hu(8))
    (tmp_path / "data" / "b").mkdir()
    for file in sorted((tmp_path / "data" / "a").glob("*.dcm"))[1::2]:
        file.rename(tmp_path / "data" / "b" / file.name)
    with pytest.raises(LNQError, match=r"^the folders \S+a and \S+b hold slices of one DICOM series .* move "
                                       r"its slices into one folder$"):
        find_cases(tmp_path / "data")
    shutil.copytree(tmp_path / "data" / "b", tmp_path / "data" / "a", dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "data" / "b")
    assert [c.case_id for c in find_cases(tmp_path / "data")] == ["a"]


def test_the_parts_of_a_split_series_are_left_out_of_the_cases_unless_they_have_labels(tmp_path):
    """A data folder of labelled cases beside one series an export split over two folders (no labels): the
    whole data set was refused (train, workspace init, export), though the parts would not be used. They
    are left out with one warning naming them, as other unusable cases are; a part with labels (drawn on
    half a CT, or on the whole one and read with half) is still refused."""
    from test_io_dicom_series import hu, series

    root = tmp_path / "data"
    series(root / "a", hu(8))
    (root / "b").mkdir()
    for file in sorted((root / "a").glob("*.dcm"))[1::2]:
        file.rename(root / "b" / file.name)
    series(root / "c", hu(6, seed=1))
    ct = read_volume(root / "c")
    write_volume(root / "c-seg.nrrd", ct.with_array(np.zeros(ct.shape, np.uint8)))
    for require in (None, "seg"):
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            assert [c.case_id for c in find_cases(root, require=require)] == ["c"]
        assert [str(w.message) for w in heard] == [
            f"{root}: 2 DICOM series folder(s) left out as parts of a series an export split over folders "
            "(a, b); move each series' slices into one folder"]
    write_volume(root / "b-seg.nrrd", ct.with_array(np.zeros(ct.shape, np.uint8)))
    with pytest.raises(LNQError, match=r"^b-seg.nrrd labels part of a DICOM series split over folders: the "
                                       r"folders \S+a and \S+b hold slices of one DICOM series .* move its "
                                       r"slices into one folder$"):
        find_cases(root)


def test_a_data_folder_of_split_series_alone_names_every_one_of_them(tmp_path):
    """Every case a part of one of two split series: the refusal named the first series only, the
    second was found on the next run."""
    from test_io_dicom_series import hu, series

    root = tmp_path / "data"
    for first, second, seed in (("a", "b", 0), ("c", "d", 1)):
        series(root / first, hu(6, seed=seed))
        (root / second).mkdir()
        for file in sorted((root / first).glob("*.dcm"))[1::2]:
            file.rename(root / second / file.name)
    with pytest.raises(LNQError, match=r"^the folders \S+a and \S+b hold slices of one DICOM series .* move "
                                       r"its slices into one folder \(and 1 more series split so\)$"):
        find_cases(root)


def test_file_open_looks_for_a_series_below_only_in_the_first_folders(tmp_path):
    """A folder with a CT series folder below it is a DICOM folder for File > Open (a CD copied without
    its DICOMDIR), but napari asks of every folder it is given: a series found only past
    :data:`LOOK_BELOW` folders (a home or project folder) is not walked to."""
    from lnq_napari.io.dicom_tree import LOOK_BELOW, is_dicom_folder

    near, far = tmp_path / "near", tmp_path / "far"
    shutil.copytree(SERIES, near / "a" / "series")
    for i in range(LOOK_BELOW):
        (far / f"a{i:04d}").mkdir(parents=True)
    shutil.copytree(SERIES, far / "z-series")  # the folder after the first LOOK_BELOW
    assert is_dicom_folder(near)
    assert not is_dicom_folder(far)
    (far / "a0000").rmdir()  # now the last of them
    assert is_dicom_folder(far)


def test_series_deeper_than_the_walk_are_named_not_left_out_without_a_word(tmp_path):
    """A patient's CD copied into ``data/P3/cd`` (its series 5 folders down) beside a download's series 3
    down: predict and workspace init read P1 alone and said nothing of P3."""
    from lnq_napari.io.datasets import find_cts

    root = tmp_path / "data"
    shutil.copytree(SERIES, root / "P1" / "study" / "2-CT")
    shutil.copytree(SERIES, root / "P3" / "cd" / "PT000000" / "ST000000" / "SE000000")
    shutil.copy(sorted(SERIES.glob("*.dcm"))[0], root / "P3" / "cd" / "DICOMDIR")
    deep = r"1 folder holding DICOM lies more than 4 folders below .*data " \
        r"\(P3/cd/PT000000/ST000000/SE000000\) and is left out"
    with pytest.warns(UserWarning, match=deep):
        assert find_cts(root) == [("P1_study_2-CT", root / "P1" / "study" / "2-CT")]
    with pytest.warns(UserWarning, match=deep):
        assert [c.case_id for c in find_cases(root, what="--data")] == ["P1_study_2-CT"]
    with warnings.catch_warnings():  # found from nearer: no word
        warnings.simplefilter("error")
        assert [path for _, path in find_cts(root / "P3")] == [root / "P3" / "cd" / "PT000000" / "ST000000" /
                                                               "SE000000"]
    shutil.copytree(SERIES, root / "P1" / "study" / "2-CT" / "a" / "b" / "c")  # below a series folder:
    with warnings.catch_warnings():  # reading it says so (a series folder with series below it)
        warnings.simplefilter("error")
        assert [path for _, path in find_cts(root / "P1")] == [root / "P1" / "study" / "2-CT"]


@pytest.mark.parametrize("prefix", ["other-", "0-other-"])
def test_a_case_whose_seg_references_another_series_of_its_folder_is_read_on_that_series(tmp_path, prefix):
    """A series folder holding two reconstructions, its SEG drawn on the one not read by default (the
    other sorts first): workspace init and training refused the whole data set ('seg.dcm was drawn on CT
    series ..., but the CT given is series ...'), though the SEG says which series it belongs to. Named
    so that the other's files come first (``0-other-``), the SEG was left out, 'it references no CT series
    found here' (the few files sampled of each folder were all the other's)."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    folder = tmp_path / "download" / "P1" / "2-CT"
    shutil.copytree(SERIES, folder)
    other = _copy_series(SERIES, tmp_path / "other", SeriesInstanceUID="1.2.3.4")  # read first (by UID)
    other_values = read_volume(other).array
    for file in other.iterdir():
        shutil.move(file, folder / f"{prefix}{file.name}")
    with pytest.warns(UserWarning, match="holds 2 DICOM"):
        assert np.array_equal(read_volume(folder).array, other_values)
    write_dicom_seg(tmp_path / "download" / "P1" / "3-SEG" / "1-1.dcm", labels, SERIES)
    (case,) = find_cases(tmp_path / "download", require="seg")
    assert case.case_id == "P1_2-CT"
    read = read_volume(case.ct)
    assert read.meta["dicom_series_uid"] == ct.meta["dicom_series_uid"]
    np.testing.assert_array_equal(read.array, ct.array)
    np.testing.assert_array_equal(read_labels(case.seg, reference=read).array, labels.array)
    (loaded,) = load_training_cases(tmp_path / "download", naive=True, workers=1)
    assert int((loaded.states == 1).sum()) == int(labels.array.sum())


def test_a_seg_filed_among_its_ct_s_slices_is_the_case_s_labels(tmp_path):
    """A study exported into one folder (a PACS's flat export: the CT's slices and its SEG side by side), or
    a SEG saved into its CT's folder: measure found the CT, but workspace init and training took the case as
    unlabelled without a word (only SEG series folders were looked for)."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "P1")
    write_dicom_seg(root / "P1" / "zz-seg.dcm", labels, SERIES)
    (case,) = find_cases(root, require="seg")
    assert case.case_id == "P1" and case.seg == (root / "P1" / "zz-seg.dcm").resolve()
    assert case.ct == (root / "P1").resolve()  # the folder: the SEG is no other CT series there
    np.testing.assert_array_equal(read_labels(case.seg, reference=read_volume(case.ct)).array, labels.array)


def _scout_in(folder: Path, name: str = "0000-scout.dcm") -> None:
    """A scout (a slice of :data:`SERIES` as a series of its own, marked LOCALIZER) saved into ``folder``."""
    import pydicom

    scout = pydicom.dcmread(sorted(SERIES.glob("*.dcm"))[0])
    scout.SeriesInstanceUID, scout.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(folder / name)


def test_a_folder_of_two_patients_is_refused_though_a_seg_labels_one_of_them(tmp_path):
    """A series folder holding two patients' series, a SEG of one beside it: the case's CT became a slice
    file of the SEG's series, so the refusal of a folder of two patients was skipped and training went on
    with one patient's labels under the folder's case id."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    folder = tmp_path / "download" / "P1" / "2-CT"
    shutil.copytree(SERIES, folder)
    other = _copy_series(SERIES, tmp_path / "other", PatientID="OTHER-PATIENT")
    write_dicom_seg(tmp_path / "download" / "P1" / "3-SEG" / "1-1.dcm", labels, other)
    for file in other.iterdir():
        shutil.move(file, folder / f"0-other-{file.name}")  # sorts first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LNQError, match=r"holds the DICOM series of 2 patients"):
            for case in find_cases(tmp_path / "download", require="seg"):
                read_volume(case.ct)
        with pytest.raises(LNQError, match=r"holds the DICOM series of 2 patients"):
            load_training_cases(tmp_path / "download", naive=True, workers=1)


def test_a_labelled_case_beside_a_scout_is_its_folder_and_a_split_series_is_still_refused(tmp_path):
    """A scout in a labelled case's series folder made the case's CT one slice file (workspace.json recorded
    it), so the folder's checks were skipped: a series split over two folders, its SEG listing only the
    slices it labels, was taken as a labelled case of half the CT."""
    import pydicom

    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1:, 40:60, 40:60] = 1
    root = tmp_path / "download"
    folder = shutil.copytree(SERIES, root / "P1" / "2-CT")
    _scout_in(folder)
    write_dicom_seg(root / "P1" / "3-SEG" / "1-1.dcm", labels, SERIES)
    (case,) = find_cases(root, require="seg")
    assert case.ct == folder.resolve()
    files = sorted(SERIES.glob("*.dcm"))
    seg = pydicom.dcmread(root / "P1" / "3-SEG" / "1-1.dcm")  # lists only the slices it labels
    listed = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence = listed[1:]
    seg.save_as(root / "P1" / "3-SEG" / "1-1.dcm")
    for part, kept in (("2-CT-a", files[:1]), ("2-CT-b", files[1:])):
        (root / "P1" / part).mkdir()
        for file in kept:
            shutil.copy(file, root / "P1" / part / file.name)
    _scout_in(root / "P1" / "2-CT-b")
    shutil.rmtree(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LNQError, match=r"labels part of a DICOM series split over folders"):
            find_cases(root, require="seg")


def test_two_segs_of_two_series_of_one_folder_are_not_called_two_segs_of_one_case(tmp_path):
    """A flat export of two CT series and a SEG of each: the second SEG was left out as 'a second SEG of P1
    ...; move that SEG away to use this one', though moving the first away would not make it label the
    series the case is read with; the warning names the other series and what to do."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    folder = shutil.copytree(SERIES, tmp_path / "download" / "P1")
    other = _copy_series(SERIES, tmp_path / "other", SeriesDescription="thin")
    write_dicom_seg(folder / "zz-seg1.dcm", labels, SERIES)
    write_dicom_seg(folder / "zz-seg2.dcm", labels, other)
    for file in other.iterdir():
        shutil.move(file, folder / f"b-{file.name}")
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        (case,) = find_cases(tmp_path / "download", require="seg")
    said = [str(w.message) for w in heard if "zz-seg" in str(w.message)]
    (left,) = {"zz-seg1.dcm", "zz-seg2.dcm"} - {case.seg.name}
    assert len(said) == 1 and said[0].startswith(str(folder / left)) and "second SEG" not in said[0], said
    assert "labels another series" in said[0] and "give each series a folder of its own" in said[0]
    assert case.seg.name in said[0]


def test_a_seg_of_a_series_not_here_is_refused_in_one_line_without_itk_s_warnings(tmp_path, capfd):
    """A SEG of an absent series saved beside other patients' folders: before the one-line refusal, ITK
    printed a 'No Series were found' warning for each folder beside it that holds no DICOM of its own."""
    ct = read_volume(SERIES)
    other = _copy_series(SERIES, tmp_path / "absent")  # the SEG's series, not in the data
    seg = write_dicom_seg(tmp_path / "data" / "P1" / "seg.dcm", ct.with_array(np.ones(ct.shape, np.uint8)),
                          other)
    for patient in ("P2", "P3"):
        shutil.copytree(SERIES, tmp_path / "data" / patient / "study" / "2-CT")
    capfd.readouterr()
    with pytest.raises(LNQError, match="which is not in P1/"):
        read_labels(seg)
    assert "No Series were found" not in capfd.readouterr().err


def test_finding_cases_scans_no_series_folder_whole_for_other_series(tmp_path, monkeypatch):
    """Each read of a data folder (workspace init, training, every review) ran a GDCM scan of every slice
    of each unlabelled series folder (for a SEG among its slices), and of each labelled one holding a scout:
    about twice the old time, on every read. A SEG among slices is still found."""
    import SimpleITK as sitk

    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    _scout_in(shutil.copytree(SERIES, root / "P1" / "study" / "2-CT"))
    write_dicom_seg(root / "P1" / "study" / "3-SEG" / "1-1.dcm", labels, SERIES)
    other = _copy_series(SERIES, root / "P2" / "study" / "2-CT")
    scans = []
    scan = sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs",
                        staticmethod(lambda folder, *a: scans.append(folder) or scan(folder, *a)))
    cases = find_cases(root)
    assert scans == []
    assert [(c.case_id, c.ct, c.seg is not None) for c in cases] == [
        ("P1_study_2-CT", (root / "P1" / "study" / "2-CT").resolve(), True),
        ("P2_study_2-CT", (root / "P2" / "study" / "2-CT").resolve(), False)]
    write_dicom_seg(tmp_path / "zz-seg.dcm", labels, other)
    shutil.move(tmp_path / "zz-seg.dcm", other / "zz-seg.dcm")  # among its slices
    assert [c.seg for c in find_cases(root)][1] == (other / "zz-seg.dcm").resolve()


def test_a_seg_saved_among_a_scout_s_files_labels_the_ct_it_references(tmp_path):
    """A SEG saved into the folder of the study's scout (a folder that is no case): training and workspace
    init took its CT as unlabelled without a word."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    shutil.copytree(SERIES, root / "P1" / "ct")
    (root / "P1" / "scout").mkdir()
    _scout_in(root / "P1" / "scout")
    write_dicom_seg(root / "P1" / "scout" / "zz-seg.dcm", labels, SERIES)
    (case,) = find_cases(root, require="seg")
    assert (case.case_id, case.ct) == ("P1_ct", (root / "P1" / "ct").resolve())
    assert case.seg == (root / "P1" / "scout" / "zz-seg.dcm").resolve()
    np.testing.assert_array_equal(read_labels(case.seg, reference=read_volume(case.ct)).array, labels.array)


def _settled(folder: Path, seconds: float = 10) -> Path:
    """``folder`` and its files as if copied ``seconds`` ago (a data folder a review reads again)."""
    import os

    for path in [*folder.iterdir(), folder]:
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))
    return folder


def test_an_unchanged_series_folder_is_not_looked_through_again_for_a_seg(tmp_path, monkeypatch):
    """A review reads its data folder again and again: each read looked through every slice of each
    unlabelled series folder for a SEG among them. Once the folder is unchanged since the last look, it
    is not; a SEG saved into it since is found."""

    import SimpleITK as sitk

    from lnq_napari.io import dicom_tree

    root = tmp_path / "download"
    folder = _settled(_copy_series(SERIES, root / "P1" / "study" / "2-CT"))
    assert [c.seg for c in find_cases(root)] == [None]
    looked, scans = [], []
    sniff, scan = getattr(dicom_tree, "_may_be_seg", None), sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(dicom_tree, "_may_be_seg", lambda f: looked.append(f) or sniff(f), raising=False)
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs",
                        staticmethod(lambda path, *a: scans.append(path) or scan(path, *a)))
    assert [c.seg for c in find_cases(root)] == [None]
    assert (looked, scans) == ([], [])
    ct = read_volume(folder)
    write_dicom_seg(tmp_path / "zz-seg.dcm", ct.with_array(np.ones(ct.shape, np.uint8)), folder)
    shutil.move(tmp_path / "zz-seg.dcm", folder / "zz-seg.dcm")  # the folder changes
    assert [c.seg for c in find_cases(root)] == [(folder / "zz-seg.dcm").resolve()]


def test_a_damaged_file_beside_a_seg_among_slices_is_named(tmp_path):
    """A SEG among its CT's slices beside a file that cannot be read: the file was skipped without a word
    (as it is named beside a SEG series' files), so a SEG cut short there was not missed knowingly."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    folder = shutil.copytree(SERIES, tmp_path / "download" / "P1")
    write_dicom_seg(folder / "zz-seg.dcm", labels, SERIES)
    (folder / "zz-seg2.dcm").write_bytes(b"\0" * 64)  # cut short while copied
    with pytest.warns(UserWarning, match=r"zz-seg2.dcm is skipped: it cannot be read as DICOM"):
        (case,) = find_cases(tmp_path / "download", require="seg")
    assert case.seg == (folder / "zz-seg.dcm").resolve()


def test_a_stray_seg_does_not_make_each_read_scan_every_series_folder(tmp_path, monkeypatch):
    """One SEG of a series not in the data made each read of the data folder run a GDCM scan of every
    file of every series folder (about 2.5 times the old time, on every read of a review); an unchanged
    folder is not scanned again."""

    import pydicom
    import SimpleITK as sitk

    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    root = tmp_path / "download"
    folder = shutil.copytree(SERIES, root / "P1" / "2-CT")
    write_dicom_seg(root / "P1" / "3-SEG" / "1-1.dcm", labels, SERIES)
    stray = write_dicom_seg(root / "P2" / "3-SEG" / "1-1.dcm", labels, SERIES)
    ds = pydicom.dcmread(stray)
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = pydicom.uid.generate_uid()  # a series not here
    ds.save_as(stray)
    _settled(folder)
    with pytest.warns(UserWarning, match="references no CT series found here"):
        find_cases(root)
    scans = []
    scan = sitk.ImageSeriesReader.GetGDCMSeriesIDs
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs",
                        staticmethod(lambda path, *a: scans.append(path) or scan(path, *a)))
    with pytest.warns(UserWarning, match="references no CT series found here"):
        (case,) = find_cases(root)
    assert case.seg == (root / "P1" / "3-SEG" / "1-1.dcm").resolve() and scans == []


def test_a_series_rewritten_in_place_is_read_again_though_its_folder_time_is_unchanged(tmp_path):
    """A series re-exported under the same file names (or an updated copy brought in by ``rsync -a``, which
    sets the folder's time back): the kept read of the folder, keyed on its time alone, still gave the old
    series, so in the same process its redrawn SEG was 'left out' and the case taken as unlabelled."""
    import os

    import pydicom

    root = tmp_path / "download"
    folder = root / "P1" / "ct"
    folder.mkdir(parents=True)

    def export(prefix: str) -> str:
        uid = pydicom.uid.generate_uid()
        for k, file in enumerate(sorted(SERIES.glob("*.dcm"))):
            ds = pydicom.dcmread(file)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
            ds.save_as(folder / f"{prefix}-{k}.dcm")
        return uid

    def draw(uid: str) -> Path:
        ct = read_volume(folder, series_uid=uid)
        labels = ct.with_array(np.zeros(ct.shape, np.uint8))
        labels.array[1, 40:60, 40:60] = 1
        (root / "P1" / "seg" / "1.dcm").unlink(missing_ok=True)
        return write_dicom_seg(root / "P1" / "seg" / "1.dcm", labels, folder, series_uid=uid)

    export("a")
    draw(export("b"))
    _settled(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (case,) = find_cases(root)
    assert case.seg is not None
    stamp = os.stat(folder).st_mtime_ns
    redrawn = export("b")  # the same names, another series
    os.utime(folder, ns=(os.stat(folder).st_atime_ns, stamp))  # the folder's time as copied
    seg = draw(redrawn)
    assert os.stat(folder).st_mtime_ns == stamp
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (case,) = find_cases(root)
    assert case.seg == Path(seg).resolve()
    with warnings.catch_warnings():  # the folder holds two series: reading it says so
        warnings.simplefilter("ignore")
        assert read_volume(case.ct).meta["dicom_series_uid"] == redrawn


def test_a_big_endian_seg_of_the_series_not_read_by_default_is_read_on_its_series(tmp_path):
    """A SEG saved big-endian (retired, still legal) in a folder of two reconstructions: its referenced
    images were counted as the bytes of their sequence (about 100 a slice), so the folder seemed to be
    mostly the SEG's series and the case was read on the other one."""
    import pydicom
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRBigEndian

    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 40:60, 40:60] = 1
    folder = shutil.copytree(SERIES, tmp_path / "download" / "P1" / "2-CT")
    other = _copy_series(SERIES, tmp_path / "other", SeriesInstanceUID="1.2.3.4")  # read first (by UID)
    for file in other.iterdir():
        shutil.move(file, folder / f"other-{file.name}")
    seg = write_dicom_seg(tmp_path / "le.dcm", labels, SERIES)
    ds = pydicom.dcmread(seg)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    (tmp_path / "download" / "P1" / "3-SEG").mkdir()
    dcmwrite(tmp_path / "download" / "P1" / "3-SEG" / "1-1.dcm", ds, implicit_vr=False, little_endian=False,
             force_encoding=True)
    (case,) = find_cases(tmp_path / "download", require="seg")
    assert not pydicom.dcmread(case.seg).is_little_endian
    assert read_volume(case.ct).meta["dicom_series_uid"] == ct.meta["dicom_series_uid"]
