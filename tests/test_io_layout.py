"""Case ids, roles and folder scanning: the one place that knows LNQ file names."""

import warnings
from pathlib import Path

import nrrd
import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.layout import (
    case_name,
    ct_inputs,
    is_partial_label,
    label_files_by_case,
    label_name,
    looks_like_label_name,
    scan_cases,
    sibling_ct,
    split_name,
)


@pytest.mark.parametrize(("name", "case", "role", "suffix"), [
    ("lnq2023-train-0001-ct.nrrd", "lnq2023-train-0001", "ct", ".nrrd"),
    ("lnq2023-train-0001-seg.nrrd", "lnq2023-train-0001", "seg", ".nrrd"),
    ("lnq2023-val-0003-full.nii.gz", "lnq2023-val-0003", "full", ".nii.gz"),
    ("case7-seg.v012.seg.nrrd", "case7", "seg", ".seg.nrrd"),
    ("case7.autosave.seg.nrrd", "case7", "seg", ".autosave.seg.nrrd"),
    ("lnq2023-train-0001.session-0123456789ab.autosave.seg.nrrd", "lnq2023-train-0001", "seg",
     ".autosave.seg.nrrd"),
    ("p.session-x.autosave.seg.nrrd", "p.session-x", "seg", ".autosave.seg.nrrd"),
    ("patient_mask.mha", "patient", "mask", ".mha"),
    ("chest.nhdr", "chest", "", ".nhdr"),
    ("DICOM", "DICOM", "", ""),
    ("labels/lnq2023-train-0004/v003.seg.nrrd", "lnq2023-train-0004", "seg", ".seg.nrrd"),
])
def test_split_name(name, case, role, suffix):
    parts = split_name(name)
    assert (parts.case, parts.role, parts.suffix) == (case, role, suffix)


def test_case_name_falls_back_for_empty_names():
    assert case_name(None) == "case"
    assert case_name("-seg.nrrd", fallback="x") == "-seg"  # a role needs a case before it
    assert looks_like_label_name("a-full.nrrd") and not looks_like_label_name("a-ct.nrrd")


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_scan_cases_pairs_siblings_and_requires(tmp_path):
    _touch(tmp_path, "a-ct.nrrd", "a-seg.nrrd", "a-full.nrrd", "a-nodes.json", "b-ct.nii.gz", "b-seg.nii.gz",
           "c-ct.nrrd", "notes.txt", "d-ct.nrrd", "d-seg.dcm", "e-ct.nrrd", "e-seg.nii.gz", "e-full.mha")
    cases = scan_cases(tmp_path)
    assert [c.case_id for c in cases] == ["a", "b", "c", "d", "e"]
    a, b, c, d, e = cases
    assert a.full is not None and a.nodes is not None and a.seg.name == "a-seg.nrrd"
    assert b.seg.name == "b-seg.nii.gz" and b.full is None
    assert c.seg is None
    # labels in another format than the CT's (a DICOM SEG, NIfTI) are the case's too, never left behind
    assert (d.seg.name, e.seg.name, e.full.name) == ("d-seg.dcm", "e-seg.nii.gz", "e-full.mha")
    assert [c.case_id for c in scan_cases(tmp_path, require="seg")] == ["a", "b", "d", "e"]
    assert [c.case_id for c in scan_cases(tmp_path, require="full")] == ["a", "e"]
    plain = tmp_path / "plain"  # no *-ct files: images named without a role are the CTs
    plain.mkdir()
    _touch(plain, "patient1.nrrd", "patient1-seg.nrrd", "patient2.nii.gz")
    assert [(c.case_id, c.ct.name, c.seg and c.seg.name) for c in scan_cases(plain)] == [
        ("patient1", "patient1.nrrd", "patient1-seg.nrrd"), ("patient2", "patient2.nii.gz", None)]


def test_a_ct_s_labels_named_as_3d_slicer_saves_them_are_its_labels(tmp_path):
    """``patient1.nrrd`` with ``patient1.seg.nrrd`` (3D Slicer's default names): the workspace, train and
    export-nnunet took the case as unlabelled, the user's segmentation left out without a word."""
    _touch(tmp_path, "patient1.nrrd", "patient1.seg.nrrd", "patient2.nrrd", "patient2-seg.nrrd",
           "patient2.seg.nrrd", "patient3.nrrd", "patient3.autosave.seg.nrrd")
    with pytest.warns(UserWarning, match=r"1 case\(s\) have 3D Slicer segmentations left out beside the "
                                         r"label file taken \(patient2.seg.nrrd beside patient2-seg.nrrd\)"):
        cases = scan_cases(tmp_path)
    assert [(c.case_id, c.seg and c.seg.name) for c in cases] == [
        ("patient1", "patient1.seg.nrrd"), ("patient2", "patient2-seg.nrrd"), ("patient3", None)]
    named = tmp_path / "named"  # LNQ names: a-ct.nrrd with a.seg.nrrd
    named.mkdir()
    _touch(named, "a-ct.nrrd", "a.seg.nrrd")
    assert [(c.case_id, c.seg.name) for c in scan_cases(named, require="seg")] == [("a", "a.seg.nrrd")]
    after_volume = tmp_path / "after_volume"  # Slicer names the segmentation after the volume "b-ct"
    after_volume.mkdir()
    _touch(after_volume, "b-ct.nrrd", "b-ct.seg.nrrd")  # was "holds two CTs of case b: keep one of them"
    assert [(c.case_id, c.ct.name, c.seg.name) for c in scan_cases(after_volume)] == [
        ("b", "b-ct.nrrd", "b-ct.seg.nrrd")]


def test_scan_cases_errors_name_the_problem(tmp_path):
    with pytest.raises(LNQError, match="does not exist"):
        scan_cases(tmp_path / "missing")
    _touch(tmp_path, "a-ct.nrrd")
    with pytest.raises(LNQError, match="matching \\*-seg"):
        scan_cases(tmp_path, require="seg")
    with pytest.raises(LNQError, match="a-ct.nrrd is a file, not a folder; give a folder of"):
        scan_cases(tmp_path / "a-ct.nrrd")
    _touch(tmp_path, "a-ct.mha")  # two CTs of one case: which is meant cannot be told
    for scan in (scan_cases, ct_inputs):
        with pytest.raises(LNQError, match=r"holds two CTs of case a \(a-ct.mha, a-ct.nrrd\); keep one"):
            scan(tmp_path)


def test_ct_inputs_file_folder_and_dicom_folder(tmp_path):
    _touch(tmp_path, "a-ct.nrrd", "a-seg.nrrd", "b-ct.mha", "notes.nrrd")
    assert ct_inputs(tmp_path) == [("a", tmp_path / "a-ct.nrrd"), ("b", tmp_path / "b-ct.mha")]
    plain = tmp_path / "plain"  # CTs named without a role (and their -seg files beside them)
    plain.mkdir()
    _touch(plain, "patient1.nrrd", "patient1-seg.nrrd", "patient2.nii.gz", "readme.txt")
    assert ct_inputs(plain) == [("patient1", plain / "patient1.nrrd"),
                                ("patient2", plain / "patient2.nii.gz")]
    assert ct_inputs(tmp_path / "a-ct.nrrd") == [("a", tmp_path / "a-ct.nrrd")]
    dicom = tmp_path / "series1"
    dicom.mkdir()
    _touch(dicom, "001.dcm")
    assert ct_inputs(dicom) == [("series1", dicom)]
    assert ct_inputs(dicom / "001.dcm") == [("001", dicom / "001.dcm")]
    _touch(tmp_path, "c-ct.dcm")  # one file holding the whole CT: named as its c-seg.dcm is paired
    assert ct_inputs(tmp_path / "c-ct.dcm") == [("c", tmp_path / "c-ct.dcm")]
    assert label_name(tmp_path / "c-seg.dcm").case == "c"
    with pytest.raises(LNQError, match="does not exist"):
        ct_inputs(tmp_path / "nope.nrrd")


def test_label_files_prefer_truth_and_predictions(tmp_path):
    _touch(tmp_path, "a-seg.nrrd", "a-full.nrrd", "b-seg.nrrd", "a-pred.nrrd", "a-ct.nrrd")
    b_seg = tmp_path / "b-seg.nrrd"
    assert label_files_by_case(tmp_path, "gt") == {"a": tmp_path / "a-full.nrrd", "b": b_seg}
    assert label_files_by_case(tmp_path, "pred") == {"a": tmp_path / "a-pred.nrrd", "b": b_seg}


def test_sibling_ct(tmp_path):
    _touch(tmp_path, "a-ct.nii.gz", "a-seg.nrrd")
    assert sibling_ct(tmp_path / "a-seg.nrrd") == tmp_path / "a-ct.nii.gz"
    assert sibling_ct(tmp_path / "z-seg.nrrd") is None


def test_images_named_without_a_role_beside_ct_files_are_left_out_with_a_warning(tmp_path):
    """A folder with ``b-ct.nrrd`` and ``a.nrrd``: predict, scans and workspaces took only the -ct file and
    said nothing of the other CT."""
    from lnq_napari.io.layout import ct_inputs

    for name in ("b-ct.nrrd", "a.nrrd", "b-seg.nrrd", "b-prob.nrrd"):
        (tmp_path / name).write_bytes(b"x")
    left_out = r"1 image\(s\) without -ct in the name left out beside its \*-ct files \(a\.nrrd\); name them"
    for found in (lambda: [c for c, _ in ct_inputs(tmp_path)],
                  lambda: [c.case_id for c in scan_cases(tmp_path)]):
        with pytest.warns(UserWarning, match=left_out):
            assert found() == ["b"]
    (tmp_path / "a.mha").write_bytes(b"x")  # two images of one case left out: no "two CTs" error
    with pytest.warns(UserWarning, match=r"2 image\(s\) without -ct"):
        assert [c for c, _ in ct_inputs(tmp_path)] == ["b"]
    (tmp_path / "a.nrrd").unlink()
    (tmp_path / "a.mha").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [c for c, _ in ct_inputs(tmp_path)] == ["b"]


def test_a_slicer_segmentation_of_other_structures_is_not_taken_for_node_labels(tmp_path):
    """3D Slicer names any segmentation ``<case>.seg.nrrd``: one of the lungs alone was taken as the case's
    node labels without a word (a review); it is left out, named in a warning, as one of nodes is taken."""
    from lnq_napari.io.segfile import write_seg_nrrd
    from lnq_napari.io.volume import Volume

    mask = Volume(np.pad(np.ones((2, 3, 3), np.uint8), 2), (1.0, 1.0, 1.0))
    _touch(tmp_path, "p1.nrrd", "p2.nrrd", "p3.nrrd")
    for case, name in (("p1", "Lung"), ("p2", "LN 4R"), ("p3", "Segment_1")):  # no terminology code
        path = write_seg_nrrd(tmp_path / f"{case}.seg.nrrd", mask, name=name)
        array, header = nrrd.read(str(path))
        nrrd.write(str(path), array, {k: v for k, v in header.items() if k != "Segment0_Tags"})
    with pytest.warns(UserWarning, match=r"p1.seg.nrrd is not taken as p1's labels: none of its segments "
                                         r"\('Lung'\) is named or coded like a lymph node"):
        cases = scan_cases(tmp_path)
    assert [(c.case_id, c.seg and c.seg.name) for c in cases] == [  # Slicer's default name: what it was
        ("p1", None), ("p2", "p2.seg.nrrd"), ("p3", "p3.seg.nrrd")]


def _slicer_seg(path: Path, name: str) -> Path:
    """A one-segment 3D Slicer segmentation named ``name``, without a terminology code."""
    from lnq_napari.io.segfile import write_seg_nrrd
    from lnq_napari.io.volume import Volume

    write_seg_nrrd(path, Volume(np.pad(np.ones((2, 3, 3), np.uint8), 2), (1.0, 1.0, 1.0)), name=name)
    array, header = nrrd.read(str(path))
    nrrd.write(str(path), array, {k: v for k, v in header.items() if k != "Segment0_Tags"})
    return path


@pytest.mark.parametrize("name", ["1", "label_1", "Label 1", "mask", "prediction", "nnUNet", "Segment_1",
                                  "seg 2"])
def test_a_slicer_segmentation_with_a_generic_segment_name_is_taken(tmp_path, name):
    """Only ``Segment_1`` of the generic names was taken: one called ``1``, ``mask`` or ``nnUNet`` (a label
    map or a model's output loaded in Slicer) was left out as named after something else."""
    seg = _slicer_seg(tmp_path / "p1.seg.nrrd", name)
    _touch(tmp_path, "p1.nrrd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [c.seg for c in scan_cases(tmp_path)] == [seg.resolve()]
        assert label_files_by_case(tmp_path, "gt") == {"p1": seg}


def test_a_ground_truth_folder_takes_slicer_segmentations_as_a_data_folder_does(tmp_path):
    """`evaluate --gt FOLDER` took ``p1.seg.nrrd`` holding a lung alone as p1's truth: the node-name check
    covered only a data folder's cases."""
    _slicer_seg(tmp_path / "p1.seg.nrrd", "Lung")
    p2 = _slicer_seg(tmp_path / "p2-ct.seg.nrrd", "LN 4R")
    _slicer_seg(tmp_path / "p3-ct.seg.nrrd", "Lung")
    _touch(tmp_path, "p3-full.nrrd")  # complete truth wins: the lung is not read, nor named
    with pytest.warns(UserWarning) as record:
        assert label_files_by_case(tmp_path, "gt") == {"p2": p2, "p3": tmp_path / "p3-full.nrrd"}
    assert [str(w.message).split(":")[0] for w in record] == ["p1.seg.nrrd is not taken as p1's labels"]
    assert label_files_by_case(tmp_path / "p1.seg.nrrd", "gt") == {"p1": tmp_path / "p1.seg.nrrd"}  # named


def test_a_seg_file_beside_a_slicer_named_one_wins_with_a_warning_naming_both(tmp_path):
    """``p1-seg.nrrd`` beside ``p1.seg.nrrd`` (or ``p1-ct.seg.nrrd``) was taken without a word; a ground-truth
    folder took ``p1-ct.seg.nrrd`` instead (it sorts first)."""
    _touch(tmp_path, "a-ct.nrrd", "a-seg.nrrd", "a.seg.nrrd", "b-ct.nrrd", "b-seg.nrrd", "b-ct.seg.nrrd",
           "c-ct.nrrd", "c.seg.nrrd", "d-ct.nrrd", "d-seg.nrrd")
    expected = {"a": tmp_path / "a-seg.nrrd", "b": tmp_path / "b-seg.nrrd", "c": tmp_path / "c.seg.nrrd",
                "d": tmp_path / "d-seg.nrrd"}
    for found in (lambda: {c.case_id: c.seg for c in scan_cases(tmp_path.resolve())},
                  lambda: label_files_by_case(tmp_path.resolve(), "gt")):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert found() == {k: v.resolve() for k, v in expected.items()}
        assert [str(w.message) for w in record] == [  # one line for the folder
            f"{tmp_path.resolve()}: 2 case(s) have 3D Slicer segmentations left out beside the label file "
            "taken (a.seg.nrrd beside a-seg.nrrd; b-ct.seg.nrrd beside b-seg.nrrd); move the file that is "
            "not the case's node labels out of the folder"]


def test_a_ground_truth_folder_s_slicer_file_left_out_lets_no_lower_ranked_file_in(tmp_path):
    """A lung-only Slicer segmentation left out, the lookup fell through to the bare name (the CT) or to
    ``-pred``; the other Slicer name of the case still counts."""
    _touch(tmp_path, "p1-ct.nrrd", "p1-pred.nrrd", "p2.nrrd")
    _slicer_seg(tmp_path / "p1-ct.seg.nrrd", "Lung")
    _slicer_seg(tmp_path / "p2.seg.nrrd", "Lung")
    _slicer_seg(tmp_path / "p3.seg.nrrd", "Lung")
    p3 = _slicer_seg(tmp_path / "p3-ct.seg.nrrd", "LN 7")
    with pytest.warns(UserWarning, match="is not taken as"):
        assert label_files_by_case(tmp_path, "gt") == {"p3": p3}


def test_slicer_files_beside_the_labels_taken_are_named_in_one_line_for_the_folder(tmp_path):
    """Each case warned on its own line (30 lines for 30 cases), a lung-only Slicer file too, which is not a
    case's labels and was never a candidate."""
    for i in range(30):
        _touch(tmp_path, f"c{i:02d}-ct.nrrd", f"c{i:02d}-seg.nrrd", f"c{i:02d}.seg.nrrd")
    _touch(tmp_path, "lung-ct.nrrd", "lung-seg.nrrd")
    _slicer_seg(tmp_path / "lung.seg.nrrd", "Lung")
    for found in (lambda: scan_cases(tmp_path), lambda: label_files_by_case(tmp_path, "gt")):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert len(found()) == 31
        assert [str(w.message) for w in record] == [
            f"{tmp_path}: 30 case(s) have 3D Slicer segmentations left out beside the label file taken "
            "(c00.seg.nrrd beside c00-seg.nrrd; c01.seg.nrrd beside c01-seg.nrrd ...); move the file that is "
            "not the case's node labels out of the folder"]


def test_slicer_s_save_of_the_labels_file_beside_it_is_named_newer_when_it_is(tmp_path):
    """3D Slicer saves a segmentation loaded from ``p1-seg.nrrd`` as ``p1-seg.seg.nrrd``: the user's
    corrections were left out without a word. ``p1-seg.nrrd`` stays the labels; the warning says the other
    is newer."""
    import os

    _touch(tmp_path, "p1-ct.nrrd", "p1-seg.nrrd", "p2-ct.nrrd", "p2-seg.nrrd", "p2-seg.seg.nrrd")
    corrected = _slicer_seg(tmp_path / "p1-seg.seg.nrrd", "Segment_1")
    os.utime(tmp_path / "p1-seg.nrrd", (1_700_000_000, 1_700_000_000))
    os.utime(corrected, (1_700_000_600, 1_700_000_600))
    for found in (lambda: {c.case_id: c.seg.name for c in scan_cases(tmp_path)},
                  lambda: {k: v.name for k, v in label_files_by_case(tmp_path, "gt").items()}):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert found() == {"p1": "p1-seg.nrrd", "p2": "p2-seg.nrrd"}
        assert [str(w.message) for w in record] == [
            f"{tmp_path}: 2 case(s) have 3D Slicer segmentations left out beside the label file taken "
            "(p1-seg.seg.nrrd (newer) beside p1-seg.nrrd; p2-seg.seg.nrrd beside p2-seg.nrrd); in 1 "
            "case(s) the Slicer file is newer than the file taken (labels corrected in Slicer?) and is not "
            "used; move the file that is not the case's node labels out of the folder"]


@pytest.mark.parametrize(("name", "partial"), [
    ("lnq2023-train-0001-seg.nrrd", True), ("LNQ2023-TRAIN-0001_SEG.nii.gz", True),
    ("lnq2023-train-0001-seg.mha", True), ("lnq2023-train-0001-seg.dcm", True),
    ("lnq2023-train-0001-full.nrrd", False), ("lnq2023-val-0001-seg.nrrd", False),
    # a label store's or workspace's saved version of a training case: a reviewer's (complete) correction
    ("labels/lnq2023-train-0001/v001.seg.nrrd", False), ("ws/labels/lnq2023-train-0001/v002.seg.nrrd", False),
    ("lnq2023-train-0001-seg.v002.seg.nrrd", False), ("lnq2023-train-0001.autosave.seg.nrrd", False),
    ("lnq2023-train-0001-ct.seg.nrrd", False),  # 3D Slicer's segmentation of the CT: the reader's own
    ("lnq2023-train-0001-seg.seg.nrrd", True),  # Slicer's save of the distributed label: still partial
])
def test_only_lnq_s_own_training_label_files_are_partial(name, partial):
    """The partial-label warning fired on every saved version of a training case (its case read from the
    folder), which are exactly the corrections that complete the label."""
    assert is_partial_label(name) is partial


def test_a_missing_or_empty_data_folder_names_every_form_a_case_may_take(tmp_path):
    """A missing or CT-less --data folder was told to hold ``lnq2023-*-ct.nrrd`` / ``*-ct.nrrd`` files only,
    though plainly named CTs (``patient1.nii.gz``) and DICOM series folders are cases too."""
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty", "notes.txt")
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(LNQError) as caught:
            scan_cases(folder)
        said = str(caught.value)
        assert "lnq2023-" not in said and "\n" not in said
        assert "patient1.nii.gz" in said and "DICOM CT series" in said


def test_a_case_with_two_label_files_names_the_one_left_out(tmp_path):
    """``patient1-seg.nii.gz`` and ``patient1-seg.nrrd`` beside ``patient1.nii.gz``: one was taken as the
    case's labels and the other left out without a word (labels converted and corrected in another format
    silently not used)."""
    _touch(tmp_path, "patient1.nii.gz", "patient1-seg.nii.gz", "patient1-seg.nrrd", "patient2.nii.gz",
           "patient2-seg.nii.gz")
    with pytest.warns(UserWarning) as caught:
        (one, two) = scan_cases(tmp_path)
    said = [str(w.message) for w in caught if "more than one label file" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path}: 1 case(s)")
    taken, left = Path(one.seg).name, {"patient1-seg.nii.gz", "patient1-seg.nrrd"} - {Path(one.seg).name}
    assert f"{left.pop()} left out, {taken} taken" in said[0] and "patient2" not in said[0]
    assert Path(two.seg).name == "patient2-seg.nii.gz"
