"""A CT or label file whose header gives its voxels in metres (a NIfTI's ``xyzt_units``, an NRRD's ``space
units``) for values meant in mm spans metres: ``measure`` and ``evaluate`` refuse it in one line, as
``find_nodes`` does, instead of node volumes of cubic metres and ASSD in metres."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import LNQError
from lnq_napari.io.geometry import GridWarning

SHAPE = (10, 24, 24)  # z, y, x
STEP = 4.0  # the header's number per voxel: mm meant, metres said


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    ct = np.full(SHAPE, -1000, np.int16)
    ct[1:9, 4:20, 4:20] = 40
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:6, 8:12, 8:12] = 1
    return ct, labels


def _nifti(path, array, unit: str):
    import nibabel as nib

    affine = np.diag([-STEP, -STEP, STEP, 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
    image.header.set_xyzt_units(xyz=unit)
    nib.save(image, str(path))
    return path


def _nrrd(path, array, unit: str):
    import nrrd

    header = {"space": "left-posterior-superior", "space directions": np.eye(3) * STEP,
              "space origin": np.zeros(3), "space units": [unit] * 3, "kinds": ["domain"] * 3,
              "encoding": "gzip"}
    nrrd.write(str(path), np.ascontiguousarray(array), header, index_order="C")
    return path


@pytest.fixture(params=["nifti", "nrrd"])
def files(request, tmp_path):
    write, suffix, units = {"nifti": (_nifti, ".nii.gz", ("mm", "meter")),
                            "nrrd": (_nrrd, ".nrrd", ("mm", "m"))}[request.param]
    ct, labels = _arrays()
    made = {}
    for unit, name in zip(units, ("mm", "m")):
        made[name] = (write(tmp_path / f"case-{name}-ct{suffix}", ct, unit),
                      write(tmp_path / f"case-{name}-seg{suffix}", labels, unit))
    return made


def test_labels_in_mm_are_measured(files):
    ct, seg = files["mm"]
    rows, _ = api.measure(seg, ct)
    assert [r.volume_mm3 for r in rows] == [pytest.approx(3 * 4 * 4 * STEP ** 3)]


def test_measure_refuses_a_grid_in_metres(files):
    ct, seg = files["m"]
    with pytest.raises(LNQError, match=r"the CT spans \d+ mm .* more than any body"):
        api.measure(seg, ct)
    with pytest.raises(LNQError, match=rf"the label file {seg.name} spans \d+ mm .* more than any body"):
        api.measure(seg)


def test_metres_labels_on_a_ct_in_mm_are_put_on_the_ct_grid(files):
    """With a CT the labels are measured on its grid (checked): labels in metres are resampled onto it,
    warned of, and give no node of cubic metres."""
    ct, seg = files["mm"][0], files["m"][1]
    with pytest.warns(GridWarning):
        rows, _ = api.measure(seg, ct)
    assert all(r.volume_mm3 <= np.prod(SHAPE) * STEP ** 3 for r in rows)


def test_labels_without_geometry_on_a_long_ct_are_measured(tmp_path):
    """Labels saved without geometry (1 mm voxels at origin 0) with the CT's size are read on the CT's
    grid: a whole-body CT of thin slices is more slices than any body is mm long, which the labels' own
    1 mm grid is not to be judged by."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    shape = (3200, 8, 8)  # 1.6 m of 0.5 mm slices; 3.2 m of the labels' 1 mm
    hu = np.full(shape, -1000, np.int16)
    hu[:, 2:6, 2:6] = 40
    labels = np.zeros(shape, np.uint8)
    labels[1000:1020, 3:5, 3:5] = 1
    ct = write_volume(tmp_path / "ct.nrrd", Volume(hu, (0.8, 0.8, 0.5), (-3.0, -3.0, -800.0)))
    seg = write_volume(tmp_path / "seg.nii.gz", Volume(labels, (1.0, 1.0, 1.0)))
    with pytest.warns(GridWarning, match="carry no geometry"):
        rows, _ = api.measure(seg, ct)
    assert [r.voxels for r in rows] == [int(labels.sum())]
    assert rows[0].volume_mm3 == pytest.approx(labels.sum() * 0.8 * 0.8 * 0.5)


def test_evaluate_refuses_truth_in_metres(files):
    seg = files["m"][1]
    with pytest.raises(LNQError, match=rf"the ground truth {seg.name} spans \d+ mm .* more than any body"):
        api.evaluate(seg, seg)


def test_cli_measure_says_one_line_and_writes_nothing(files, tmp_path, capsys):
    ct, seg = files["m"]
    out = tmp_path / "nodes.csv"
    code = main(["measure", str(seg), "--ct", str(ct), "--csv", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1 and "more than any body" in err and "Traceback" not in err


def test_compare_refuses_a_ct_in_metres(files):
    """compare measured nodes of cubic metres (volumes of 3e9 mm3, a RECIST verdict) without a word."""
    ct, seg = files["m"]
    mm_ct, mm_seg = files["mm"]
    with pytest.raises(LNQError, match=r"the follow-up CT spans \d+ mm .* more than any body"):
        api.compare(mm_ct, ct, baseline_seg=mm_seg, followup_seg=seg)
