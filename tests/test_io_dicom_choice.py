"""Which series of a folder is read is told from headers alone: finding a folder's cases reads no pixels."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_io_dicom_series import hu, series

from lnq_napari.io import dicom_series, read_volume
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.dicom_headers import VOLUME_SLICES
from lnq_napari.io.dicom_seg import write_dicom_seg


def _two_reconstructions(folder: Path, labelled: str) -> dict[str, str]:
    """A soft and a lung reconstruction of one scan in ``folder`` and a SEG drawn on the ``labelled`` one
    beside them; each series' UID by name."""
    values = hu(VOLUME_SLICES)
    uids = {name: series(folder, values, name, ConvolutionKernel=kernel)
            for name, kernel in (("soft", "B31f"), ("lung", "B70f"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct = read_volume(folder / f"{labelled}-000.dcm")
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[2, 3:8, 3:8] = 1
    write_dicom_seg(folder / "nodes.dcm", labels, folder, series_uid=uids[labelled])
    return uids


@pytest.mark.parametrize("labelled", ["soft", "lung"])
def test_finding_the_cases_of_two_reconstructions_reads_no_pixels(tmp_path, monkeypatch, labelled):
    """A case folder holding a soft and a lung reconstruction and a SEG: to learn which series the folder
    reads (and so whether the SEG's series is it), find_cases read the folder's CT whole, pixels included,
    then the case was read again. The choice is now made from headers: no slice is decoded, and the case
    still reads the series its SEG was drawn on."""
    uids = _two_reconstructions(tmp_path / "case1", labelled)
    decoded = []
    execute, enhanced = dicom_series._execute_series, dicom_series._read_enhanced
    monkeypatch.setattr(dicom_series, "_execute_series",
                        lambda reader, folder: decoded.append(folder) or execute(reader, folder))
    monkeypatch.setattr(dicom_series, "_read_enhanced", lambda file, name, pixels=True:
                        (pixels and decoded.append(file)) or enhanced(file, name, pixels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (case,) = find_cases(tmp_path)
    assert decoded == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_volume(case.ct).meta["dicom_series_uid"] == uids[labelled]
    assert len(decoded) == 1


def _coronal_reformat(folder: Path, images: int) -> None:
    """A coronal reformat of ``images`` slices 1 mm apart front to back (a PACS's "COR MPR") in ``folder``."""
    series(folder, hu(images, 8, 20, seed=7), "cor", ImageOrientationPatient=[1, 0, 0, 0, 0, -1],
           SeriesDescription="COR MPR", ImageType=["DERIVED", "SECONDARY", "MPR"])
    for k, file in enumerate(sorted(folder.glob("cor-*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.ImagePositionPatient = [-100.0, -120.0 + k, -30.0]
        ds.save_as(file, enforce_file_format=True)


def test_a_coronal_reformat_with_more_images_than_the_axial_ct_is_not_read_for_it(tmp_path):
    """A PACS export of a study: the axial CT (5 mm) and a coronal reformat with more images. The folder
    read the reformat, the largest series, as the CT (a volume of 8 rows along the body's axis); it now
    reads the axial series, and its warning names the reformat as one; alone, the reformat is read."""
    values = hu(VOLUME_SLICES)
    axial = series(tmp_path, values, "ax")
    _coronal_reformat(tmp_path, 4 * VOLUME_SLICES)
    said = (rf"reading the largest axial series, series \({VOLUME_SLICES} slices, series [0-9.]+\), not "
            rf"'COR MPR', a coronal or sagittal reformat \({4 * VOLUME_SLICES}\)")
    with pytest.warns(UserWarning, match=said):
        ct = read_volume(tmp_path)
    assert ct.meta["dicom_series_uid"] == axial
    np.testing.assert_array_equal(ct.array, values)
    np.testing.assert_allclose(ct.direction, np.eye(3).ravel(), atol=1e-9)
    for file in tmp_path.glob("ax-*.dcm"):  # the reformat alone: read, on its own grid
        file.unlink()
    assert read_volume(tmp_path).shape == (4 * VOLUME_SLICES, 8, 20)


def test_a_split_series_of_two_reconstructions_is_refused_when_the_seg_is_on_the_lung_one(tmp_path):
    """Two reconstructions an export split over two folders (each holding half of each), a SEG drawn on the
    lung half in one: that case's CT was a file of the lung series (the folder reads the soft one), which
    the split check passed over (it looked at folders only), so half the scan trained as a whole case
    without a word; it is refused as a split part with labels, as a folder case is."""
    from lnq_napari.errors import LNQError

    values, half = hu(2 * VOLUME_SLICES), VOLUME_SLICES
    soft, lung = "1.2.3.1", "1.2.3.2"
    for part, rows in (("a", slice(0, half)), ("b", slice(half, None))):
        folder = tmp_path / "P1" / part
        for name, uid, kernel in (("soft", soft, "B31f"), ("lung", lung, "B70f")):
            series(folder, values[rows], name, SeriesInstanceUID=uid, ConvolutionKernel=kernel)
        for file in folder.glob("*.dcm"):  # the second half lies above the first
            ds = pydicom.dcmread(file)
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2],
                                       float(ds.ImagePositionPatient[2]) + (2.5 * half if part == "b" else 0)]
            ds.save_as(file, enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct = read_volume(tmp_path / "P1" / "a" / "lung-000.dcm")
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[2, 3:8, 3:8] = 1
    write_dicom_seg(tmp_path / "P1" / "a" / "nodes.dcm", labels, tmp_path / "P1" / "a", series_uid=lung)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LNQError, match=r"^nodes\.dcm labels part of a DICOM series split over folders: "):
            find_cases(tmp_path)


@pytest.mark.parametrize("name", ["00-enhanced.dcm", "zz-enhanced.dcm"])
def test_an_enhanced_copy_sharing_the_series_uid_of_its_classic_slices_is_left_out(tmp_path, name):
    """An enhanced (multi-frame) file converted from the classic slices beside it, keeping their Series
    Instance UID: the folder was refused, as "an enhanced CT split over 9 files" (sorted first) or with ITK's
    "Size mismatch!" cut mid-path (sorted last); the classic slices are now read, the copy left out."""
    values = hu(VOLUME_SLICES)
    uid = series(tmp_path, values)
    _enhanced_copy(tmp_path, uid, name)
    ct = read_volume(tmp_path)
    assert ct.meta["dicom_series_uid"] == uid
    np.testing.assert_array_equal(ct.array, values)


def _enhanced_copy(folder: Path, uid: str, name: str, prefix: str = "ct") -> None:
    """An enhanced (multi-frame) file ``name`` converted from the slices ``<prefix>-*.dcm`` in ``folder``,
    keeping their Series Instance UID ``uid``."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    slices = [pydicom.dcmread(file) for file in sorted(folder.glob(f"{prefix}-*.dcm"))]
    LegacyConvertedEnhancedCTImage(slices, series_instance_uid=uid, series_number=2,
                                   sop_instance_uid=pydicom.uid.generate_uid(),
                                   instance_number=1).save_as(folder / name)


@pytest.mark.parametrize("name", ["00-enhanced.dcm", "zz-enhanced.dcm"])
def test_an_enhanced_copy_does_not_count_its_series_images_again(tmp_path, name):
    """A series of 8 slices with an enhanced copy of them beside it, and a soft series of 20: sorted first,
    the copy's frame count was taken for every slice (8 x 8 = 64 images), so the folder read the 8 slices
    and said they were 64; the series' images are counted over the files kept, whatever their order."""
    small = series(tmp_path, hu(VOLUME_SLICES), ConvolutionKernel="B31f")
    _enhanced_copy(tmp_path, small, name)
    large = series(tmp_path, hu(20, seed=5), "b", ConvolutionKernel="B31f")
    said = rf"reading the largest, 'B31f' \(20 slices.*, not 'B31f' \({VOLUME_SLICES}\):"
    with pytest.warns(UserWarning, match=said):
        choice = dicom_series.choose_series(tmp_path)
    assert choice.series_uid == large
    assert choice.images[small] == VOLUME_SLICES


@pytest.mark.parametrize("other", ["fragment", "bolus"])
def test_a_coronal_reformat_is_read_beside_an_axial_series_that_is_no_volume(tmp_path, other):
    """A coronal reformat, the only volume, beside an axial fragment of 5 slices or a bolus-tracking series
    (10 images at one position): the reformat was passed over for them, so the fragment was read as the CT,
    or the folder refused for two slices at one position; the reformat is read, as before reformats were
    told apart."""
    _coronal_reformat(tmp_path, 4 * VOLUME_SLICES)
    if other == "fragment":
        series(tmp_path, hu(5, 8, 20, seed=3), "ax", SeriesDescription="bolus")
    else:
        series(tmp_path, hu(10, seed=4), "ax", gap=0.0, SeriesDescription="Monitoring")
    with pytest.warns(UserWarning, match=rf"reading the largest, 'COR MPR' \({4 * VOLUME_SLICES} slices"):
        ct = read_volume(tmp_path)
    assert ct.shape == (4 * VOLUME_SLICES, 8, 20)


def test_an_enhanced_coronal_reformat_is_not_read_for_the_axial_ct(tmp_path):
    """An axial CT beside a coronal reformat with more images saved as one enhanced (multi-frame) file: the
    reformat was read as the CT (its orientation lies in its functional groups, not in a slice header); the
    axial series is read, the reformat named as one."""
    values = hu(VOLUME_SLICES)
    axial = series(tmp_path, values, "ax")
    _coronal_reformat(tmp_path / "mpr", 4 * VOLUME_SLICES)
    _enhanced_copy(tmp_path / "mpr", pydicom.uid.generate_uid(), "zz-cor.dcm", prefix="cor")
    (tmp_path / "mpr" / "zz-cor.dcm").rename(tmp_path / "zz-cor.dcm")
    shutil.rmtree(tmp_path / "mpr")
    said = rf"'COR MPR[^']*', a coronal or sagittal reformat \({4 * VOLUME_SLICES}\)"
    with pytest.warns(UserWarning, match=said):
        ct = read_volume(tmp_path)
    assert ct.meta["dicom_series_uid"] == axial
    np.testing.assert_array_equal(ct.array, values)


def test_a_complete_series_beside_part_of_a_split_one_is_a_case(tmp_path):
    """A case folder holding a complete lung series, its SEG, and the first half of a soft series an export
    split over two folders: the folder was refused as a part of the split series, though it reads the
    complete lung series its labels were drawn on; it is a case, the other half left out with a warning."""
    values, half = hu(2 * VOLUME_SLICES), VOLUME_SLICES
    for part, rows in (("a", slice(0, half)), ("b", slice(half, None))):
        folder = tmp_path / "P1" / part
        series(folder, values[rows], "0soft", SeriesInstanceUID="1.2.3.1", ConvolutionKernel="B31f")
        for file in folder.glob("0soft-*.dcm"):  # listed first, so the split check samples it
            ds = pydicom.dcmread(file)
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2],
                                       float(ds.ImagePositionPatient[2]) + (2.5 * half if part == "b" else 0)]
            ds.save_as(file, enforce_file_format=True)
    case = tmp_path / "P1" / "a"
    lung = series(case, values, "lung", ConvolutionKernel="B70f")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct = read_volume(case / "lung-000.dcm")
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[2, 3:8, 3:8] = 1
    write_dicom_seg(case / "nodes.dcm", labels, case, series_uid=lung)
    with pytest.warns(UserWarning, match=r"1 DICOM series folder\(s\) left out as parts .* \(P1/b\)"):
        (found,) = find_cases(tmp_path)
    assert found.ct == case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_volume(found.ct).meta["dicom_series_uid"] == lung
