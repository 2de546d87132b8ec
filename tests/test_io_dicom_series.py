"""Classic DICOM CT series as hospitals export them: other series beside the CT, localizers, copies."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from lnq_napari.errors import LNQError
from lnq_napari.io import read_labels, read_volume
from lnq_napari.io.dicom_headers import VOLUME_SLICES
from lnq_napari.io.dicom_seg import write_dicom_seg
from lnq_napari.io.volume import Volume

STUDY, FRAME = generate_uid(), generate_uid()
ORIGIN, SPACING, GAP = (-100.0, -120.0, -50.0), (0.7, 0.8), 2.5  # PixelSpacing is (row, column) spacing
SCOUT = {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "ImageOrientationPatient": [1, 0, 0, 0, 0, -1]}


def hu(slices: int = 8, rows: int = 24, columns: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, (slices, rows, columns)).astype(np.int16)


def series(folder: Path, values: np.ndarray, name: str = "ct", stored: np.ndarray | None = None,
           gap: float = GAP, **tags) -> str:
    """``values`` (HU, z y x) written as a classic CT series of axial slices ``gap`` mm apart from
    ``ORIGIN`` (files ``<name>-<k>.dcm``), ``tags`` set on every slice; its Series Instance UID.
    ``stored``: the pixels as stored instead (their dtype's bytes, ``values`` giving the shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = tags.pop("SeriesInstanceUID", generate_uid())
    for k, plane in enumerate(values):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", STUDY, uid
        ds.FrameOfReferenceUID, ds.Modality, ds.InstanceNumber = FRAME, "CT", k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + gap * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = list(SPACING), gap
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (plane.astype(np.int16) + 1024).astype(np.int16).tobytes() if stored is None \
            else stored[k].tobytes()
        for key, value in tags.items():
            setattr(ds, key, value)
        _padding_vr(ds)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{name}-{k:03d}.dcm", enforce_file_format=True)
    return uid


def _padding_vr(ds: Dataset) -> None:
    """The VR of ``ds``' pixel padding tags (US or SS) by its Pixel Representation, as explicit VR needs."""
    for tag in (0x00280120, 0x00280121):
        if tag in ds:
            ds[tag].VR = "SS" if ds.PixelRepresentation else "US"


def assert_is_the_ct(volume, values: np.ndarray) -> None:
    np.testing.assert_array_equal(volume.array, values)
    np.testing.assert_allclose(volume.spacing, (SPACING[1], SPACING[0], GAP), atol=1e-6)
    np.testing.assert_allclose(volume.origin, ORIGIN, atol=1e-6)
    np.testing.assert_allclose(volume.direction, np.eye(3).ravel(), atol=1e-9)


def test_a_pet_ct_folder_reads_the_ct_even_when_the_pet_has_more_slices(tmp_path):
    """A PET/CT study exported into one folder: the PET (more, thinner slices, per-slice float slopes)
    was "the largest series" and read as the CT, in Bq/ml (with only a warning naming it)."""
    ct = hu()
    series(tmp_path, ct, SeriesDescription="CT AC")
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path, pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128",
           SeriesDescription="PET AC", RescaleIntercept=0, RescaleSlope=0.37)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PET beside the CT leaves no doubt which series is the CT
        assert_is_the_ct(read_volume(tmp_path), ct)


def test_a_scout_or_a_dose_screen_beside_the_ct_is_no_other_ct_to_warn_about(tmp_path):
    """Nearly every export holds a scout (and a dose screen) beside the CT: each read warned "holds 3 DICOM
    series; reading the largest ..., not series (1); series (1)" (a warning per case in a batch)."""
    ct = hu()
    series(tmp_path, ct)
    scout = hu(1, 30, 16, seed=2)
    series(tmp_path, scout, "scout", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
           ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    series(tmp_path, hu(1, seed=3), "dose", SOPClassUID="1.2.840.10008.5.1.4.1.1.7",
           ImageType=["DERIVED", "SECONDARY", "OTHER"], SeriesDescription="Dose Report")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_is_the_ct(read_volume(tmp_path), ct)
    series(tmp_path, hu(5), "lung", SeriesDescription="lung")  # another CT: which one is read is said
    with pytest.warns(UserWarning, match=r"reading the largest, series \(8 slices.*not 'lung' \(5\): to"):
        assert_is_the_ct(read_volume(tmp_path), ct)


def test_a_dose_screen_or_a_pet_without_modality_in_its_own_folder_is_no_ct_case(tmp_path):
    """The folder walk judged a CT image by its Modality (none given: CT), the reader by its SOP class: a
    dose screen (Secondary Capture, Modality CT) or a PET without Modality in a series folder of its own
    became a CT case for find_cts (predict) and a data folder's cases. One rule now (is_ct_image)."""
    from lnq_napari.io.datasets import find_cases, find_cts

    root = tmp_path / "data"
    ct = hu()
    series(root / "P1" / "ST" / "1-CT", ct)
    series(root / "P1" / "ST" / "2-Dose", hu(1, seed=3), "dose", SOPClassUID="1.2.840.10008.5.1.4.1.1.7",
           ImageType=["DERIVED", "SECONDARY", "OTHER"], SeriesDescription="Dose Report")
    pet = root / "P1" / "ST" / "3-PET"
    series(pet, hu(12, 16, 16, seed=1), "pet", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    for file in pet.iterdir():
        ds = pydicom.dcmread(file)
        del ds.Modality
        ds.save_as(file)
    assert find_cts(root) == [("P1_ST_1-CT", root / "P1" / "ST" / "1-CT")]
    assert [c.case_id for c in find_cases(root)] == ["P1_ST_1-CT"]
    nameless = tmp_path / "nameless"  # a CT without Modality is still one (its SOP class says so)
    series(nameless / "P2" / "1-CT", ct)
    for file in (nameless / "P2" / "1-CT").iterdir():
        ds = pydicom.dcmread(file)
        del ds.Modality
        ds.save_as(file)
    assert find_cts(nameless) == [("P2_1-CT", nameless / "P2" / "1-CT")]
    assert_is_the_ct(read_volume(nameless), ct)


def test_the_warning_naming_the_ct_series_read_counts_its_slices_as_read(tmp_path):
    """A scout filed in the CT series and a copied slice file made "holds 3 DICOM series; reading the
    largest, series (10 slices ...)": the scout and the copy counted as slices, the dose screen as a series
    though not named. The CT series are counted, each by the slices read."""
    ct = hu()
    uid = series(tmp_path, ct)
    series(tmp_path, hu(1, 30, 16, seed=2), "a-scout", SeriesInstanceUID=uid,
           ImagePositionPatient=[-200, 0, -300], **SCOUT)
    shutil.copy(tmp_path / "ct-003.dcm", tmp_path / "ct-003 (1).dcm")
    series(tmp_path, hu(1, seed=3), "dose", SOPClassUID="1.2.840.10008.5.1.4.1.1.7", SeriesDescription="Dose")
    series(tmp_path, hu(5), "lung", SeriesDescription="lung")
    with pytest.warns(UserWarning, match=r"holds 2 DICOM CT series; reading the largest, series \(8 slices, "
                      r"series [0-9.]+\), not 'lung' \(5\): to"):
        assert_is_the_ct(read_volume(tmp_path), ct)


@pytest.mark.parametrize("lung_first", [True, False])
def test_a_soft_tissue_reconstruction_of_equal_size_is_read_rather_than_the_lung_one(tmp_path, lung_first):
    """A lung (sharp) and a soft-tissue reconstruction of one scan, of equal slice count, in one folder: which
    one was read fell to the series' order, and the model, trained on soft-tissue images, read the noisy
    lung one as often as not. The soft-tissue one is read, whatever the Series Instance UIDs."""
    ct, lung = hu(10), hu(10, seed=5)
    uids = ("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2")
    lung_uid, soft_uid = uids if lung_first else uids[::-1]
    series(tmp_path, lung, "lung", SeriesInstanceUID=lung_uid, SeriesDescription="Thorax 1.25",
           ConvolutionKernel="LUNG")
    series(tmp_path, ct, "soft", SeriesInstanceUID=soft_uid, SeriesDescription="Thorax 1.25",
           ConvolutionKernel="STANDARD")
    with pytest.warns(UserWarning, match=r"reading (the largest \(of equal size, the first by Series "
                      r"Instance UID\), )?'Thorax 1.25 STANDARD' \(10 slices, series [0-9.]+(; not a lung or "
                      r"bone kernel\) rather than 'Thorax 1.25 LUNG' \(10\), a sharp|\), not 'Thorax 1.25 "
                      r"LUNG' \(10\): to)"):
        got = read_volume(tmp_path)
    assert_is_the_ct(got, ct)
    assert got.meta["dicom_series_uid"] == soft_uid


def test_a_thin_lung_kernel_series_is_passed_over_for_a_thicker_soft_tissue_one(tmp_path):
    """The common export: a 1 mm lung-kernel series (B70f) and a 3 mm soft-tissue one (B30f) of one scan.
    The largest, the 1 mm lung one, was read (a warning naming the other), and the model found fewer nodes
    in its noise. The soft-tissue one is read, and the warning says why."""
    ct = hu(8)
    series(tmp_path, hu(24, seed=5), "lung", gap=1.0, SeriesDescription="Thorax 1.0",
           ConvolutionKernel="B70f")
    series(tmp_path, ct, "soft", gap=3.0, SeriesDescription="Thorax 3.0", ConvolutionKernel="B30f")
    with pytest.warns(UserWarning, match=r"holds 2 DICOM CT series; reading 'Thorax 3.0 B30f' \(8 slices, "
                      r".*; not a lung or bone kernel\) rather than the largest, 'Thorax 1.0 B70f' \(24\), a "
                      r"sharp \(lung or bone kernel\) reconstruction, which the model reads poorly: to"):
        got = read_volume(tmp_path)
    np.testing.assert_array_equal(got.array, ct)
    assert got.spacing[2] == pytest.approx(3.0)
    described = tmp_path / "described"  # no kernel given: the description says lung (Lunge, poumon ...)
    series(described, hu(24, seed=5), "lung", gap=1.0, SeriesDescription="Lunge 1.0")
    series(described, ct, "soft", gap=3.0, SeriesDescription="Weichteil 3.0")
    with pytest.warns(UserWarning, match=r"reading 'Weichteil 3.0' \(8 slices, .*; kernel unknown\) rather "
                      r"than the largest, 'Lunge 1.0' \(24\), a sharp"):
        np.testing.assert_array_equal(read_volume(described).array, ct)


def test_of_sharp_reconstructions_only_the_largest_is_read_and_said_to_be_sharp(tmp_path):
    """Every series a sharp one (a lung and a bone kernel): the largest is read, as before, and the warning
    says that the model reads it poorly. A soft-tissue series of a few images (no volume) beside a lung one
    is not read instead of the CT."""
    ct = hu(12)
    series(tmp_path, ct, "lung", SeriesDescription="Lung", ConvolutionKernel="Bl57d")
    series(tmp_path, hu(9, seed=5), "bone", SeriesDescription="Bone", ConvolutionKernel="Br64d")
    with pytest.warns(UserWarning, match=r"reading the largest, 'Lung Bl57d' \(12 slices, series [0-9.]+; "
                      r"every series a sharp \(lung or bone kernel\) reconstruction, which the model reads "
                      r"poorly\), not 'Bone Br64d' \(9\): to"):
        assert_is_the_ct(read_volume(tmp_path), ct)
    few = tmp_path / "few"
    series(few, ct, "lung", ConvolutionKernel="B60f")
    series(few, hu(3, seed=5), "key", ConvolutionKernel="B30f")
    with pytest.warns(UserWarning, match=r"reading the largest, 'B60f' .*; a sharp \(lung or bone kernel\) "
                      r"reconstruction, which the model reads poorly, no soft volume beside it covers the "
                      r"same scan at 5 mm or finer\), not 'B30f' \(3\)"):
        assert_is_the_ct(read_volume(few), ct)
    coronal = tmp_path / "coronal"  # a soft-tissue coronal reformat is no stand-in for the axial CT
    series(coronal, ct, "lung", ConvolutionKernel="B60f")
    series(coronal, hu(9, seed=5), "cor", ConvolutionKernel="B30f", SeriesDescription="Cor 3.0",
           ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    for k, file in enumerate(sorted(coronal.glob("cor-*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1] + 3.0 * k, ORIGIN[2] + 30]
        ds.save_as(file)
    with pytest.warns(UserWarning, match=r"reading the largest, 'B60f' .*; a sharp .*not 'Cor 3.0 B30f' "
                      r"\(9\)"):
        assert_is_the_ct(read_volume(coronal), ct)


def test_series_of_unknown_kernels_read_the_largest_and_a_tie_goes_by_series_uid(tmp_path):
    """Kernels not known here (and none given) are not called soft: the largest is read, as before. Of two of
    equal size, the one read fell to the series' order without a word; it is the first by Series Instance
    UID, and the warning says so."""
    ct = hu(10)
    series(tmp_path, ct, "a", ConvolutionKernel="XY42")
    series(tmp_path, hu(8, seed=5), "b", ConvolutionKernel="FC30")
    with pytest.warns(UserWarning, match=r"reading the largest, 'XY42' \(10 slices, .*not 'FC30' \(8\)"):
        assert_is_the_ct(read_volume(tmp_path), ct)
    for first in (True, False):
        tie = tmp_path / f"tie{first}"
        uids = ("1.2.826.0.1.3680043.8.498.7", "1.2.826.0.1.3680043.8.498.8")
        series(tie, ct, "a", SeriesInstanceUID=uids[0 if first else 1])
        series(tie, hu(10, seed=5), "b", SeriesInstanceUID=uids[1 if first else 0])
        with pytest.warns(UserWarning, match=r"reading the largest \(of equal size, the first by Series "
                          r"Instance UID\), series \(10 slices, series 1.2.826.0.1.3680043.8.498.7\)"):
            got = read_volume(tie)
        assert got.meta["dicom_series_uid"] == uids[0]


@pytest.mark.parametrize(("kernel", "description", "sharp"), [
    ("B70f", "", True), ("B50f", "", True), ("Br64d", "", True), ("Bl57d", "", True), ("Hr68", "", True),
    ("I50f/3", "", True), ("Qr59/2", "", True), ("LUNG", "", True), ("BONEPLUS", "", True),
    ("EDGE", "", True), ("DETAIL", "", True), ("L", "", True), ("D", "", True), ("FC52", "", True),
    ("FC86", "", True), ("B_SHARP_C", "", True), ("", "Lungenfenster 1mm", True), ("", "POUMON", True),
    ("", "Knochen", True), ("", "bone 1.25", True),
    ("B30f", "", False), ("B45f", "", False), ("Br40d/3", "", False), ("I30f", "", False),
    ("Qr40", "", False), ("STANDARD", "", False), ("SOFT", "", False), ("B", "", False), ("C", "", False),
    ("FC08", "", False), ("FC18", "", False), ("", "", False), ("XY42", "", False), ("", "CHEST 3mm", False),
    ("B30f", "Lung staging", False), ("FC30", "Mediastinum", False),
    ("B70F", "", True), ("BL57D", "", True), ("I70f\\3", "", True), ("", "Lungs 1mm", True),
    ("", "CTA Lungenembolie", False), ("", "LungCARE 1mm", False), ("", "Boneremoval", False),
    ("YB", "Lung screening", False), ("CB", "CTA Lungenembolie", False)])
def test_sharp_reconstructions_are_told_by_kernel_then_description(kernel, description, sharp):
    """One rule for a sharp (lung or bone kernel) reconstruction: a known kernel decides, else the
    description; neither known counts as soft."""
    from lnq_napari.io.dicom_headers import reconstruction_sharpness

    assert (reconstruction_sharpness(kernel, description) is True) is sharp


def _lung_and(folder: Path, **soft) -> np.ndarray:
    """A 60-slice 1 mm lung-kernel (B70f) chest series in ``folder`` beside a soft-tissue (B30f) one of
    ``soft`` (``slices``, ``gap`` and tags; 20 slices 3 mm apart by default); the lung one's HU."""
    lung = hu(60, seed=1)
    series(folder, lung, "lung", gap=1.0, SeriesDescription="Thorax 1.0", ConvolutionKernel="B70f")
    tags = {"SeriesDescription": "Thorax 3.0", "ConvolutionKernel": "B30f", **soft}
    slices, gap = tags.pop("slices", 20), tags.pop("gap", 3.0)
    series(folder, hu(slices, seed=2), "soft", gap=gap, **tags)
    return lung


def _read_quietly(folder: Path):
    """read_volume of a folder of several series, its warning (which one is read) caught and returned."""
    with pytest.warns(UserWarning, match="holds [0-9]+ DICOM CT series") as caught:
        return read_volume(folder), str(caught[0].message)


def test_a_bolus_tracking_series_at_one_height_does_not_stand_in_for_the_lung_series(tmp_path):
    """A monitoring series (12 images of one slice position, B30f) beside a lung-kernel chest was taken for
    the soft-tissue reconstruction, and the folder failed to open (two slices at one position). A soft
    series stands in only when its slices form a volume."""
    lung = _lung_and(tmp_path, slices=12, gap=0.0, SeriesDescription="PreMonitoring")
    got, said = _read_quietly(tmp_path)
    np.testing.assert_array_equal(got.array, lung)
    assert "reading the largest, 'Thorax 1.0 B70f'" in said and "'PreMonitoring B30f' (12)" in said


@pytest.mark.parametrize(("slices", "start", "read_soft"), [(8, 0, False), (18, 9, False), (20, 0, True)])
def test_a_soft_series_covering_part_of_the_scan_does_not_stand_in_for_it(tmp_path, slices, start, read_soft):
    """A soft-tissue series of 8 slices 1 mm apart (a partial "Mediastinum" reformat) was read rather than
    the 60 mm lung-kernel chest. A soft series stands in only covering 90 % of the largest one's extent."""
    lung = _lung_and(tmp_path, slices=slices, gap=3.0 if slices != 8 else 1.0,
                     SeriesDescription="Mediastinum")
    if start:  # every slice moved up by ``start`` mm: of the lung one's 60 mm, the series covers 52
        for k, file in enumerate(sorted(tmp_path.glob("soft-*.dcm"))):
            ds = pydicom.dcmread(file)
            ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + start + 3.0 * k]
            ds.save_as(file)
    got, _ = _read_quietly(tmp_path)
    assert got.shape[0] == (slices if read_soft else 60)
    if not read_soft:
        np.testing.assert_array_equal(got.array, lung)


@pytest.mark.parametrize("tags", [
    {"ImageType": ["DERIVED", "SECONDARY", "MIP"]},
    {"ImageType": ["DERIVED", "SECONDARY", "AXIAL", "MAXIMUM"]},
    {"SeriesDescription": "Thorax MinIP 3mm"}, {"SeriesDescription": "Thorax Min IP"},
    {"SeriesDescription": "AVG 3.0"}, {"SeriesDescription": "Thorax thick slab"}])
def test_a_soft_projection_does_not_stand_in_for_the_lung_series(tmp_path, tags):
    """A soft-kernel MIP (or MinIP, average, thick slab) beside a lung-kernel chest was read as its
    soft-tissue reconstruction: no slice of the scan. A derived reformat still stands in."""
    lung = _lung_and(tmp_path, **tags)
    got, said = _read_quietly(tmp_path)
    np.testing.assert_array_equal(got.array, lung)
    assert "reading the largest" in said
    reformat = tmp_path / "reformat"
    _lung_and(reformat, ImageType=["DERIVED", "SECONDARY", "AXIAL"])
    assert _read_quietly(reformat)[0].shape[0] == 20


@pytest.mark.parametrize(("gap", "lung_gap", "read_soft"), [(10.0, 1.0, False), (4.0, 1.0, False),
                                                            (6.0, 2.5, False), (3.0, 1.0, True)])
def test_a_thick_soft_series_does_not_stand_in_for_a_thin_lung_one(tmp_path, gap, lung_gap, read_soft):
    """A 10 mm soft-tissue series was read rather than the 1 mm lung-kernel one: no small node survives such
    slices. A soft series stands in only at most 5 mm and 3 times the largest one's spacing apart."""
    lung = hu(60, seed=1)
    series(tmp_path, lung, "lung", gap=lung_gap, ConvolutionKernel="B70f")
    slices = max(VOLUME_SLICES, int(round(59 * lung_gap / gap)) + 1)
    series(tmp_path, hu(slices, seed=2), "soft", gap=gap, ConvolutionKernel="B30f")
    got, _ = _read_quietly(tmp_path)
    assert got.shape[0] == (slices if read_soft else 60)


def test_a_description_counts_only_for_a_series_without_a_kernel_and_unknown_is_not_called_soft(tmp_path):
    """A CT pulmonary angiogram (Philips CB, "CTA Lungenembolie") was taken for a lung reconstruction by its
    description, and a smaller series of an unknown kernel read instead, called soft-tissue. A kernel given
    keeps the description out; unknown kernels read the largest, not called soft."""
    cta = hu(40, seed=1)
    series(tmp_path, cta, "cta", gap=1.0, SeriesDescription="CTA Lungenembolie 1mm", ConvolutionKernel="CB")
    series(tmp_path, hu(10, seed=2), "thx", gap=4.0, SeriesDescription="Thorax 4mm", ConvolutionKernel="YD")
    got, said = _read_quietly(tmp_path)
    np.testing.assert_array_equal(got.array, cta)
    assert "reading the largest, 'CTA Lungenembolie 1mm CB'" in said and "soft" not in said


def test_a_scout_filed_first_in_the_soft_series_does_not_make_it_sharp(tmp_path):
    """A scout (kernel T80f) listed first in the soft-tissue series made that series sharp, and a soft MIP
    beside them was read. The series' own first slice tells its kernel and its name."""
    _lung_and(tmp_path)
    uid = pydicom.dcmread(tmp_path / "soft-000.dcm").SeriesInstanceUID
    series(tmp_path, hu(1, 30, 16, seed=3), "a-scout", SeriesInstanceUID=uid,
           ImagePositionPatient=[-200, 0, -300], SeriesDescription="Topogram", ConvolutionKernel="T80f",
           **SCOUT)
    got, said = _read_quietly(tmp_path)
    assert got.meta["dicom_series_uid"] == uid
    assert "reading 'Thorax 3.0 B30f' (20 slices" in said and "Topogram" not in said


def test_kernels_in_upper_case_are_told(tmp_path):
    """An export writing kernels in upper case (B70F, B30F) read the lung one, its kernel not known."""
    _lung_and(tmp_path, ConvolutionKernel="B30F")
    for file in tmp_path.glob("lung-*.dcm"):
        ds = pydicom.dcmread(file)
        ds.ConvolutionKernel = "B70F"
        ds.save_as(file)
    got, said = _read_quietly(tmp_path)
    assert got.shape[0] == 20 and "not a lung or bone kernel" in said


@pytest.mark.parametrize("tilt", [2e-3, 1e-2])
def test_a_soft_series_tilted_by_a_fraction_of_a_degree_stands_in(tmp_path, tilt):
    """Slice cosines rounded otherwise (0.002, half a degree apart) made a soft series another orientation,
    and the lung one was read. Orientations within a degree are one."""
    c = float(np.sqrt(1 - tilt**2))
    _lung_and(tmp_path, ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, c, -tilt])
    assert _read_quietly(tmp_path)[0].shape[0] == 20


def test_an_enhanced_cts_kernel_is_read_from_its_functional_groups():
    """An enhanced CT gives its kernel in the CT Reconstruction functional group, not at the top."""
    from lnq_napari.io.dicom_headers import convolution_kernel

    reconstruction, shared, ds = Dataset(), Dataset(), Dataset()
    reconstruction.ConvolutionKernel = ["Br64", "3"]
    shared.CTReconstructionSequence = [reconstruction]
    ds.SharedFunctionalGroupsSequence = [shared]
    assert convolution_kernel(ds) == "Br64/3"
    assert convolution_kernel(Dataset()) == ""


def test_the_series_uid_asked_for_is_read_even_when_it_is_not_a_ct(tmp_path):
    """series_uid (read_ct_of: the series a SEG was drawn on) still chooses, whatever the ranking."""
    series(tmp_path, hu())
    pet = np.random.default_rng(1).integers(0, 3000, (3, 16, 16)).astype(np.int16)
    uid = series(tmp_path, pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    assert read_volume(tmp_path, uid).shape == (3, 16, 16)


@pytest.mark.parametrize(("tags", "depth"), [({"SliceThickness": 5.0}, 5.0),
                                             ({"SliceThickness": 5.0, "SpacingBetweenSlices": 4.0}, 4.0),
                                             ({"SliceThickness": None}, 1.0)])
def test_a_series_of_one_slice_is_as_thick_as_its_slice(tmp_path, tags, depth):
    """ITK gives a series of one slice without Spacing Between Slices 1 mm along z: a 5 mm slice was placed,
    measured and saved five times too thin. Its Slice Thickness now gives z then, for its read and for the
    grid a DICOM SEG is placed on; a slice giving neither stays 1 mm, said in one warning."""
    from lnq_napari.io.dicom_series import dicom_grid

    uid = series(tmp_path, hu(1), **{k: v for k, v in tags.items() if v is not None})
    if tags.get("SliceThickness", 0) is None:
        ds = pydicom.dcmread(tmp_path / "ct-000.dcm")
        del ds.SliceThickness
        ds.save_as(tmp_path / "ct-000.dcm")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert read_volume(tmp_path).spacing[2] == pytest.approx(depth)
        assert dicom_grid(tmp_path, uid).spacing[2] == pytest.approx(depth)
    thin = [str(w.message) for w in said if "slice thickness" in str(w.message)]
    assert thin == ([] if tags.get("SliceThickness", 0) is not None else [  # once by each
        f"the one DICOM slice in {tmp_path.name} gives no slice thickness (Slice Thickness, Spacing Between "
        "Slices); taken as 1 mm, so its volume along z is wrong unless it is: re-export with it"] * 2)


def test_an_oblique_series_with_positions_written_to_a_tenth_of_a_millimetre_reads(tmp_path):
    """An oblique stack (rows and columns turned 30 degrees about x) whose export wrote positions to 0.1 mm:
    its gaps alternate by up to 0.14 mm along the normal, and it was refused as "unevenly spaced" (gaps
    2.42 to 2.56 mm). Read now, on the grid of its orientation."""
    values, turn = hu(VOLUME_SLICES), np.radians(30)
    column, normal = np.array([0.0, np.cos(turn), np.sin(turn)]), np.array([0.0, -np.sin(turn), np.cos(turn)])
    series(tmp_path, values, ImageOrientationPatient=[1.0, 0.0, 0.0, *column])
    origin = np.array([-100.04, -120.26, -50.31])
    for k in range(VOLUME_SLICES):
        ds = pydicom.dcmread(tmp_path / f"ct-{k:03d}.dcm")
        ds.ImagePositionPatient = [f"{v:.1f}" for v in origin + GAP * k * normal]
        ds.save_as(tmp_path / f"ct-{k:03d}.dcm")
    volume = read_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, values)
    assert volume.spacing[2] == pytest.approx(GAP, abs=0.02)
    np.testing.assert_allclose(volume.direction, np.stack([[1.0, 0.0, 0.0], column, normal], 1).ravel(),
                               atol=1e-6)


def test_slices_each_of_their_own_series_are_refused_not_read_as_one_slice(tmp_path):
    """An anonymiser that gave each file a Series Instance UID of its own: the folder read as its "largest"
    series, one slice, with a warning listing seven others (napari showed one slice; find-nodes then said
    "give the whole series"). Refused in one line saying why; a folder of one CT and a few one-image series
    beside it reads the CT."""
    series(tmp_path / "split", hu())
    for file in (tmp_path / "split").glob("*.dcm"):
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID = generate_uid()
        ds.save_as(file)
    with pytest.raises(LNQError, match=r"holds 8 DICOM CT series of one slice each .* keeping one Series "):
        read_volume(tmp_path / "split")
    ct = hu(seed=1)
    series(tmp_path / "ct", ct)
    for k in range(3):
        series(tmp_path / "ct", hu(1, seed=k), name=f"extra{k}")
    with pytest.warns(UserWarning, match="holds 4 DICOM CT series; reading the largest"):
        assert_is_the_ct(read_volume(tmp_path / "ct"), ct)


@pytest.mark.parametrize("size", [(30, 16), (24, 20)])
def test_a_scout_filed_in_the_ct_series_is_left_out(tmp_path, size):
    """A localizer sharing the CT's Series Instance UID (sorted first or last among the slices) was refused:
    "the DICOM slices ... differ in size" or, of the slices' size, "do not share one orientation"."""
    ct = hu()
    uid = series(tmp_path, ct)
    for name, position in (("a-scout", (-200.0, 0.0, -300.0)), ("z-scout", (0.0, -200.0, -300.0))):
        series(tmp_path, hu(1, *size, seed=2), name, SeriesInstanceUID=uid,
               ImagePositionPatient=list(position), ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
               ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    assert_is_the_ct(read_volume(tmp_path), ct)
    scout = tmp_path / "scout-only"
    series(scout, hu(1, *size, seed=2), ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert read_volume(scout).shape == (1, *size)  # alone, it is what is there (predict refuses a slice)


def test_a_scout_sorted_first_in_the_ct_series_does_not_hide_the_ct_from_the_choice(tmp_path):
    """The CT series was judged by its first file, here the scout (GDCM lists mixed orientations by file
    name): "no CT volume", so the larger PET beside it was read as the CT; alone, the CT took its frame of
    reference from the scout."""
    ct = hu()
    uid = series(tmp_path, ct)
    series(tmp_path, hu(1, 30, 16, seed=2), "a-scout", SeriesInstanceUID=uid,
           ImagePositionPatient=[-200, 0, -300], FrameOfReferenceUID=generate_uid(), **SCOUT)
    assert read_volume(tmp_path).meta["dicom_frame_of_reference"] == FRAME
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path, pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    assert_is_the_ct(read_volume(tmp_path), ct)


def _seg_round_trip(tmp_path: Path, folder: Path) -> None:
    """A box of labels on the CT in ``folder`` written as a DICOM SEG and read back the same, on that CT
    and on its CT found beside it."""
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", ct.with_array(mask), folder)
    np.testing.assert_array_equal(read_labels(seg, ct).array, mask)
    np.testing.assert_array_equal(read_labels(seg).array, mask)  # its CT found beside it


def test_a_seg_is_written_for_a_series_holding_a_scout_and_a_copied_slice(tmp_path):
    """Such a folder read fine, but writing a DICOM SEG for it (predict --format dicom-seg, Save as DICOM
    SEG) counted the scout and the copy as slices: "the labels are not on the grid ... (10 slices ...)"."""
    folder = tmp_path / "ct"
    uid = series(folder, hu())
    series(folder, hu(1, 30, 16, seed=2), "a-scout", SeriesInstanceUID=uid,
           ImagePositionPatient=[-200, 0, -300], **SCOUT)
    shutil.copy(folder / "ct-003.dcm", folder / "ct-003 (1).dcm")
    _seg_round_trip(tmp_path, folder)


def test_a_seg_is_written_for_the_ct_of_a_pet_ct_folder(tmp_path):
    """A PET/CT folder reads as its CT, but writing a SEG of it (predict --format dicom-seg) took the series
    with the most slices, the PET, and refused the CT's labels as "not on the grid" of the PET."""
    folder = tmp_path / "petct"
    series(folder, hu())
    series(folder, np.zeros((12, 16, 16), np.int16), "pet", Modality="PT", RescaleSlope=0.37,
           SOPClassUID="1.2.840.10008.5.1.4.1.1.128", RescaleIntercept=0)
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", ct.with_array(mask), folder)
    np.testing.assert_array_equal(read_labels(seg, ct).array, mask)


@pytest.mark.parametrize("lung_first", [True, False])
def test_a_seg_of_labels_without_dicom_uids_references_the_series_the_folder_reads(tmp_path, lung_first):
    """A lung and a soft-tissue reconstruction of one grid in one folder, which reads as the soft one; labels
    drawn on it and saved without its DICOM UIDs (a 3D Slicer .seg.nrrd, a NIfTI) written as a SEG of the
    folder referenced the series of the most slices, the first found on a tie: the lung one, so a viewer
    or PACS showed them on the other reconstruction without a word."""
    uids = ("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2")
    lung_uid, soft_uid = uids if lung_first else uids[::-1]
    series(tmp_path / "ct", hu(10, seed=5), "a-lung", SeriesInstanceUID=lung_uid, ConvolutionKernel="B70f")
    series(tmp_path / "ct", hu(10), "b-soft", SeriesInstanceUID=soft_uid, ConvolutionKernel="B30f")
    with pytest.warns(UserWarning, match="holds 2 DICOM CT series"):
        ct = read_volume(tmp_path / "ct")
    assert ct.meta["dicom_series_uid"] == soft_uid
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    drawn = Volume(mask, ct.spacing, ct.origin, ct.direction)  # no DICOM UIDs in its meta
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # which series the folder reads, said again
        seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", drawn, tmp_path / "ct")
    assert pydicom.dcmread(seg).ReferencedSeriesSequence[0].SeriesInstanceUID == soft_uid
    np.testing.assert_array_equal(read_labels(seg, ct).array, mask)


def test_a_seg_finds_its_series_beside_it_among_another_series_sorted_first(tmp_path):
    """A SEG beside a folder holding two reconstructions, drawn on the one whose files sort last: measure
    and napari said its CT series 'is not in seg/, the folders beside it ...' (of a folder beside it only
    the first 3 files were looked at, all of the other series)."""
    series(tmp_path / "ct", hu(10, seed=5), "a-lung", ConvolutionKernel="B70f")
    uid = series(tmp_path / "ct", hu(6), "b-thick", gap=2 * GAP, ConvolutionKernel="B30f")
    ct = read_volume(tmp_path / "ct", series_uid=uid)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", ct.with_array(mask), tmp_path / "ct", series_uid=uid)
    got = read_labels(seg)
    assert got.meta["dicom_referenced_series_uid"] == uid
    np.testing.assert_array_equal(got.array, mask)
    assert got.same_grid(ct)


def test_placing_a_seg_on_the_ct_beside_it_reads_each_slice_position_once(tmp_path, monkeypatch):
    """The grid of a SEG's CT (only its two end slices' pixels are read) read every slice's header twice:
    with pydicom for which files are slices, with SimpleITK for their positions. Once is enough."""
    import SimpleITK as sitk

    folder = tmp_path / "ct"
    series(folder, hu())
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", ct.with_array(mask), folder)
    reads: list[str] = []  # a CT slice's header read with its position
    dcmread, information = pydicom.dcmread, sitk.ImageFileReader.ReadImageInformation

    def counted_dcmread(file, *args, **kwargs):
        if "ImagePositionPatient" in (kwargs.get("specific_tags") or ["ImagePositionPatient"]):
            reads.append(Path(getattr(file, "name", file)).name)  # a path, or the file read_header opened
        return dcmread(file, *args, **kwargs)

    def counted_information(self):
        reads.append(Path(self.GetFileName()).name)
        return information(self)

    monkeypatch.setattr(pydicom, "dcmread", counted_dcmread)
    monkeypatch.setattr(sitk.ImageFileReader, "ReadImageInformation", counted_information)
    np.testing.assert_array_equal(read_labels(seg).array, mask)
    slices = sorted(f.name for f in folder.iterdir())
    assert sorted(r for r in reads if r in slices) == slices


def test_a_slice_file_copied_twice_is_read_once(tmp_path):
    """One image saved twice (``IM3`` and ``IM3 (1)``, the same SOP Instance UID) was refused as "two
    slices at one position"; two different images at one position still are."""
    ct = hu()
    series(tmp_path, ct)
    shutil.copy(tmp_path / "ct-003.dcm", tmp_path / "ct-003 (1).dcm")
    assert_is_the_ct(read_volume(tmp_path), ct)
    ds = pydicom.dcmread(tmp_path / "ct-003.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "ct-003 (1).dcm")
    with pytest.raises(LNQError, match="two slices at one position"):
        read_volume(tmp_path)


@pytest.mark.parametrize("shared", ["all", "ends", "neighbours"])
def test_slices_at_other_positions_sharing_a_sop_instance_uid_are_all_read(tmp_path, shared):
    """A faulty exporter or anonymiser gives different slices one SOP Instance UID: taken for copies of one
    file, every slice sharing it read as 1 slice, first and last as 7 of 8 (silently), neighbours refused as
    "a slice is missing". A copy is the same UID at the same position; a true copy is still read once."""
    ct = hu()
    if shared == "all":
        series(tmp_path, ct, SOPInstanceUID=generate_uid())
    else:
        series(tmp_path, ct)
        a, b = ("ct-000.dcm", "ct-007.dcm") if shared == "ends" else ("ct-003.dcm", "ct-004.dcm")
        ds, uid = pydicom.dcmread(tmp_path / b), pydicom.dcmread(tmp_path / a).SOPInstanceUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(tmp_path / b)
    assert_is_the_ct(read_volume(tmp_path), ct)
    shutil.copy(tmp_path / "ct-003.dcm", tmp_path / "ct-003 (1).dcm")
    assert_is_the_ct(read_volume(tmp_path), ct)


def test_a_first_slice_with_a_fractional_rescale_does_not_make_the_ct_float64(tmp_path):
    """The first slice rescaled by a slope of 0.5 (or an intercept of -1024.5) made SimpleITK read every
    voxel as float64: 8 bytes a voxel, 1.3 GB for a 600-slice CT, 4x the int16 of LNQ's files. Whole HU
    read as int16, others as float32."""
    ct = hu()
    half = tmp_path / "slope"
    series(half, ct)
    ds = pydicom.dcmread(half / "ct-000.dcm")
    ds.RescaleSlope, ds.PixelData = 0.5, ((ct[0] + 1024) * 2).astype(np.int16).tobytes()
    ds.save_as(half / "ct-000.dcm")
    got = read_volume(half)
    assert got.array.dtype == np.int16
    assert_is_the_ct(got, ct)
    shifted = tmp_path / "intercept"
    series(shifted, ct)
    _rescale_slice(shifted / "ct-000.dcm", ct[0], 1, -1024.5)
    _assert_read_as_float32(shifted, ct, 0, -0.5)


def test_a_later_slice_with_a_fractional_rescale_keeps_its_fractional_hu(tmp_path):
    """SimpleITK reads a series in the type its first slice's rescale gives: a later slice rescaled by 0.5
    and -1024.25 was rounded into the first slice's whole numbers, 0.75 HU off without a word."""
    ct = hu()
    series(tmp_path, ct)
    _rescale_slice(tmp_path / "ct-003.dcm", ct[3], 0.5, -1024.25)
    _assert_read_as_float32(tmp_path, ct, 3, -0.25)


def test_a_first_slice_read_unsigned_does_not_wrap_the_negative_hu_of_the_others(tmp_path):
    """Unsigned pixels with intercept 0 on the first slice (its HU all >= 0) and -1024 on the others:
    SimpleITK read the series as uint16, the others' air (-1000 HU) as +64536, without a word. Slices whose
    rescales differ read in float, whole HU then as int16."""
    ct = hu()
    stored = (ct.astype(np.int32) + 1024).astype(np.uint16)
    stored[0] = np.clip(ct[0], 0, None)
    series(tmp_path, ct, stored=stored, PixelRepresentation=0)
    ds = pydicom.dcmread(tmp_path / "ct-000.dcm")
    ds.RescaleIntercept = 0
    ds.save_as(tmp_path / "ct-000.dcm")
    expected = ct.copy()
    expected[0] = np.clip(ct[0], 0, None)
    got = read_volume(tmp_path)
    assert got.array.dtype == np.int16
    assert_is_the_ct(got, expected)


def _rescale_slice(file: Path, plane: np.ndarray, slope: float, intercept: float) -> None:
    """Rewrite the slice ``file`` with ``slope`` and ``intercept``, storing (``plane`` + 1024) / ``slope``: it
    reads back as the HU ``plane`` shifted by ``intercept`` + 1024."""
    ds = pydicom.dcmread(file)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = ((plane + 1024) / slope).astype(np.int16).tobytes()
    ds.save_as(file)


def _assert_read_as_float32(folder: Path, ct: np.ndarray, index: int, shift: float) -> None:
    """``folder`` reads as float32: ``ct`` with slice ``index`` shifted by ``shift`` HU."""
    got = read_volume(folder)
    assert got.array.dtype == np.float32
    expected = ct.astype(np.float32)
    expected[index] += shift
    assert_is_the_ct(got, expected)


def _scan_circle(shape: tuple[int, int, int]) -> np.ndarray:
    """bool (z y x): the voxels inside a scan circle filling each slice's width."""
    ys, xs = np.mgrid[: shape[1], : shape[2]]
    radius = min(shape[1:]) / 2 - 0.5
    inside = (ys - (shape[1] - 1) / 2) ** 2 + (xs - (shape[2] - 1) / 2) ** 2 <= radius**2
    return np.broadcast_to(inside, shape)


def _padded(ct: np.ndarray, padding: int, dtype) -> np.ndarray:
    """``ct`` (HU) stored with intercept -1024, ``padding`` (a stored value) outside the scan circle."""
    return np.where(_scan_circle(ct.shape), ct + 1024, padding).astype(dtype)


def test_unsigned_pixel_padding_outside_the_scan_circle_reads_below_any_measured_hu(tmp_path):
    """A GE CT of unsigned pixels pads the outside of its scan circle with 63536 (-2000 as 16 bits), read
    with intercept -1024 as +62512 HU: a bright ring around the body that wrecked the body, lungs and
    normalisation. Its Pixel Padding Value (or a Pixel Padding Range Limit) now reads as -3024 HU, as a
    scanner writes it, and the HU in view as they are."""
    ct, inside = hu(), _scan_circle(hu().shape)
    series(tmp_path / "value", ct, stored=_padded(ct, 63536, np.uint16), PixelRepresentation=0,
           PixelPaddingValue=63536)
    stored = _padded(ct, 63536, np.uint16)
    stored[:, 0, 0] = 65535  # inside the range as well
    series(tmp_path / "range", ct, stored=stored, PixelRepresentation=0, PixelPaddingValue=63536,
           PixelPaddingRangeLimit=65535)
    for folder in ("value", "range"):
        got = read_volume(tmp_path / folder)
        assert got.array.dtype == np.int16
        np.testing.assert_array_equal(got.array[inside], ct[inside])
        assert (got.array[~inside] == -3024).all()


def test_pixel_padding_of_an_enhanced_ct_reads_below_any_measured_hu(tmp_path):
    """An enhanced (multi-frame) CT converted from such a series keeps its Pixel Padding Value: it read as
    +62512 HU outside the scan circle (review), now -3024 as the classic series does."""
    ct, inside = hu(), _scan_circle(hu().shape)
    series(tmp_path / "classic", ct, stored=_padded(ct, 63536, np.uint16), PixelRepresentation=0,
           PixelPaddingValue=63536)
    _enhanced_of(tmp_path / "classic", tmp_path / "enhanced")
    got = read_volume(tmp_path / "enhanced").array
    np.testing.assert_array_equal(got[inside], ct[inside])
    assert (got[~inside] == -3024).all()


def _twelve_bit(ct: np.ndarray, padding: int | None, high_bits: bool) -> np.ndarray:
    """``ct`` (HU) stored unsigned in 12 of 16 bits with intercept -1024, ``padding`` outside the scan circle,
    with random bits set above Bits Stored on every voxel inside it when ``high_bits``."""
    stored = _padded(np.clip(ct, -1024, 3071), 0 if padding is None else padding, np.uint16)
    if high_bits:
        noise = np.random.default_rng(3).integers(0, 16, ct.shape).astype(np.uint16) << 12
        stored = np.where(_scan_circle(ct.shape), stored | noise, stored).astype(np.uint16)
    return stored


def _twelve_bit_series(folder: Path, ct: np.ndarray, padding: int | None, high_bits: bool) -> None:
    tags = {} if padding is None else {"PixelPaddingValue": padding}
    series(folder, ct, stored=_twelve_bit(ct, padding, high_bits), PixelRepresentation=0, BitsStored=12,
           HighBit=11, **tags)


def test_a_padding_beyond_bits_stored_reads_below_air_not_as_bone(tmp_path):
    """A 12-bit CT padded with 63536 (-2000 as 16 bits, beyond its Bits Stored): GDCM clears the unused high
    bits, as the standard says, so the padding read as 2096, +1072 HU: a ring of bone around the body. It is
    now found in the slices' pixels as written and reads as -3024 HU; the HU in view as they are."""
    ct, inside = hu(), _scan_circle(hu().shape)
    _twelve_bit_series(tmp_path, ct, 63536, high_bits=False)
    got = read_volume(tmp_path).array
    np.testing.assert_array_equal(got[inside], ct[inside])
    assert (got[~inside] == -3024).all()


def test_bits_set_above_bits_stored_of_an_enhanced_ct_are_ignored(tmp_path):
    """An enhanced CT of 12-bit pixels with bits set above Bits Stored (an overlay, garbage): the standard
    says to ignore them, and a classic series reads so (GDCM), but highdicom read every allocated bit:
    thousands of HU off. Its declared padding beyond Bits Stored still reads as -3024 HU."""
    ct, inside = hu(), _scan_circle(hu().shape)
    _twelve_bit_series(tmp_path / "classic", ct, 63536, high_bits=True)
    np.testing.assert_array_equal(read_volume(tmp_path / "classic").array, np.where(inside, ct, -3024))
    _enhanced_of(tmp_path / "classic", tmp_path / "enhanced")
    np.testing.assert_array_equal(read_volume(tmp_path / "enhanced").array, np.where(inside, ct, -3024))


def _enhanced_of(folder: Path, target: Path) -> None:
    """The classic series in ``folder`` converted to one enhanced CT file in ``target``."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    slices = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    target.mkdir()
    enhanced = LegacyConvertedEnhancedCTImage(slices, series_instance_uid=generate_uid(), series_number=2,
                                              sop_instance_uid=generate_uid(), instance_number=1)
    enhanced.save_as(target / "ct.dcm")


def test_a_signed_padding_beyond_bits_stored_reads_as_its_own_hu(tmp_path):
    """A signed 12-bit CT (intercept 0) padded with -3024, beyond 12 bits: with the high bits cleared it read
    +1072 HU (a ring of bone), classic (GDCM) and enhanced alike; it now reads as the -3024 HU it declares."""
    ct, inside = np.clip(hu(), -2048, 2047), _scan_circle(hu().shape)
    stored = np.where(inside, ct, -3024).astype(np.int16)
    series(tmp_path / "classic", ct, stored=stored, PixelRepresentation=1, BitsStored=12, HighBit=11,
           RescaleIntercept=0, PixelPaddingValue=-3024)
    _enhanced_of(tmp_path / "classic", tmp_path / "enhanced")
    for folder in ("classic", "enhanced"):
        np.testing.assert_array_equal(read_volume(tmp_path / folder).array, np.where(inside, ct, -3024))


def test_an_enhanced_12_bit_ct_without_high_bits_is_decoded_once(tmp_path, monkeypatch):
    """An enhanced CT of 12-bit pixels with nothing beyond Bits Stored was decoded a second time (as float64:
    3 times the time, 8 more bytes a voxel) to look for high bits; its HU already say there are none."""
    import highdicom

    ct = np.clip(hu(), -1024, 3071)
    _twelve_bit_series(tmp_path / "classic", ct, None, high_bits=False)
    _enhanced_of(tmp_path / "classic", tmp_path / "enhanced")
    calls = []
    get_volume = highdicom.Image.get_volume

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("dtype"))
        return get_volume(self, *args, **kwargs)

    monkeypatch.setattr(highdicom.Image, "get_volume", counted)
    np.testing.assert_array_equal(read_volume(tmp_path / "enhanced").array,
                                  np.where(_scan_circle(ct.shape), ct, -1024))
    assert len(calls) == 1


def test_pixel_padding_given_on_some_slices_marks_those_slices_only(tmp_path):
    """A slice without Pixel Padding Value keeps its values (the tag speaks of its own image), one with a
    rescale of its own has its padding found from its own stored values."""
    ct, inside = hu(), _scan_circle(hu().shape)
    series(tmp_path, ct, stored=_padded(ct, 63536, np.uint16), PixelRepresentation=0)
    air = np.where(inside[0], ct[0], -1024)
    for k in (2, 5):
        ds = pydicom.dcmread(tmp_path / f"ct-{k:03d}.dcm")
        ds.PixelPaddingValue = 63536
        _padding_vr(ds)
        ds.save_as(tmp_path / f"ct-{k:03d}.dcm")
    ds = pydicom.dcmread(tmp_path / "ct-000.dcm")  # no padding tag, air outside the circle
    ds.PixelData = (air + 1024).astype(np.uint16).tobytes()
    ds.save_as(tmp_path / "ct-000.dcm")
    ds = pydicom.dcmread(tmp_path / "ct-005.dcm")  # its own intercept
    ds.RescaleIntercept, ds.PixelData = -1000, _padded(ct[5:6] - 24, 63536, np.uint16).tobytes()
    ds.save_as(tmp_path / "ct-005.dcm")
    got = read_volume(tmp_path).array
    np.testing.assert_array_equal(got[0], air)
    for k in (2, 5):
        np.testing.assert_array_equal(got[k][inside[k]], ct[k][inside[k]])
        assert (got[k][~inside[k]] == -3024).all()


@pytest.mark.parametrize(("padding", "representation", "dtype", "outside"),
                         [(-2000, 1, np.int16, -3024), (0, 0, np.uint16, -1024), (0, 1, np.int16, -1024),
                          (1024, 1, np.int16, 0)])
def test_pixel_padding_within_the_ct_range_reads_as_stored(tmp_path, padding, representation, dtype, outside):
    """Signed -2000 reads as -3024 HU, already below anything measured; a padding of 0 (-1024 HU) looks
    like air, which genuine air clamped at the bottom of the range also holds: both read as stored (the
    anatomy finds air-like padding on its circle); a tag declaring water (0 HU) padding would punch every
    voxel of water in view: read as stored."""
    ct, inside = hu(), _scan_circle(hu().shape)
    series(tmp_path, ct, stored=_padded(ct, padding, dtype), PixelRepresentation=representation,
           PixelPaddingValue=padding)
    got = read_volume(tmp_path).array
    np.testing.assert_array_equal(got, np.where(inside, ct, outside))


def test_a_ct_whose_every_slice_says_localizer_is_read_rather_than_the_pet_beside_it(tmp_path):
    """Some exports mark every slice of a CT LOCALIZER: beside a PET (more slices), "no CT image" made the
    PET the series read, in Bq/ml, and a SEG of the CT's labels was written for the PET. A CT series whose
    slices form a volume is the CT; a scout (1 to 3 slices) still is not."""
    ct = hu()
    series(tmp_path, ct, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path, pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    with pytest.warns(UserWarning, match=r"slices are all marked LOCALIZER: read as the CT"):
        read = read_volume(tmp_path)
    assert_is_the_ct(read, ct)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 6:12, 4:9] = 1
    seg = write_dicom_seg(tmp_path / "seg" / "seg.dcm", read.with_array(mask), tmp_path)
    np.testing.assert_array_equal(read_labels(seg, read).array, mask)
    from lnq_napari.io.datasets import find_cts

    data = tmp_path / "data"  # a case for predict, in a data folder as well
    series(data / "P1" / "1-CT", ct, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    series(data / "P1" / "2-PET", pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    series(data / "P1" / "3-Scout", hu(1, 16, 16, seed=2), "scout", **SCOUT)
    assert find_cts(data) == [("P1_1-CT", data / "P1" / "1-CT")]
    scouts = tmp_path / "scouts"  # two scouts, frontal and lateral: no volume, so the PET is read
    series(scouts, hu(1, 16, 16, seed=2), "frontal", **SCOUT)
    series(scouts, hu(1, 16, 16, seed=3), "lateral", ImageType=SCOUT["ImageType"],
           ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    series(scouts, pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128",
           SeriesDescription="PET AC")
    with pytest.warns(UserWarning, match=r"holds no DICOM CT series; reading 'PET AC' \(modality PT\) as if"):
        assert read_volume(scouts).shape == pet.shape


def test_a_few_scouts_repeated_at_other_heights_are_no_volume(tmp_path):
    """Parallel scouts repeated at other table heights (fewer than 8) are no CT marked LOCALIZER (review:
    four of them made a case of a data folder that then failed to read, and beside a PET were read as the
    CT)."""
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path / "P2" / "1-Scout", hu(4), "scout", ImageType=SCOUT["ImageType"])
    for k, z in enumerate((0, 3, 5, 12)):
        ds = pydicom.dcmread(tmp_path / "P2" / "1-Scout" / f"scout-{k:03d}.dcm")
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + z]
        ds.save_as(tmp_path / "P2" / "1-Scout" / f"scout-{k:03d}.dcm")
    series(tmp_path / "P1" / "1-CT", hu())
    from lnq_napari.io.datasets import find_cts

    assert [case for case, _ in find_cts(tmp_path)] == ["P1_1-CT"]
    series(tmp_path / "P2" / "1-Scout", pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    with pytest.warns(UserWarning, match=r"holds no DICOM CT series; reading series \(modality PT\)"):
        assert read_volume(tmp_path / "P2" / "1-Scout").shape == pet.shape


def test_a_ct_marked_localizer_missing_a_slice_is_named_not_passed_over_for_the_pet(tmp_path):
    """A CT marked LOCALIZER throughout with a slice missing is still the CT: the reader says what is wrong
    with it (review: an even-spacing rule made the PET beside it the series read, and a data folder dropped
    the patient without a word)."""
    ct = hu(10)
    series(tmp_path / "P1" / "1-CT", ct, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    (tmp_path / "P1" / "1-CT" / "ct-004.dcm").unlink()
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path / "P1" / "1-CT", pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    with pytest.warns(UserWarning, match="marked LOCALIZER"):
        with pytest.raises(LNQError, match="unevenly spaced"):
            read_volume(tmp_path / "P1" / "1-CT")
    from lnq_napari.io.datasets import find_cts

    assert [case for case, _ in find_cts(tmp_path)] == ["P1_1-CT"]


def test_a_secondary_capture_of_modality_ct_reads_without_a_warning(tmp_path):
    """A series stored as Secondary Capture with Modality CT (as ITK writes one) is read as a CT, without
    the warning for a PET or MR (review: it said the CT was none)."""
    ct = hu()
    series(tmp_path, ct, SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_is_the_ct(read_volume(tmp_path), ct)


def test_a_pet_alone_is_read_with_a_warning_that_it_is_no_ct(tmp_path):
    """A PET (or MR) folder alone read silently as if it were a CT; a scout alone is read as what it is."""
    pet = np.random.default_rng(1).integers(0, 3000, (12, 16, 16)).astype(np.int16)
    series(tmp_path / "pet", pet, "pet", Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    with pytest.warns(UserWarning, match=r"holds no DICOM CT series; reading series \(modality PT\)"):
        assert read_volume(tmp_path / "pet").shape == pet.shape
    series(tmp_path / "scout", hu(1, 16, 16, seed=2), **SCOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_volume(tmp_path / "scout").shape == (1, 16, 16)


def test_slices_of_float_pixel_data_are_named_so_not_called_no_series(tmp_path):
    """Float Pixel Data (7FE0,0008) slices, which GDCM does not list: the folder was said to hold no DICOM
    series, a slice to be "no image of a CT series (modality CT)"."""
    _float_series(tmp_path / "ct", hu())
    for given in (tmp_path / "ct", sorted((tmp_path / "ct").glob("*.dcm"))[3]):
        with pytest.raises(LNQError, match=r"^ct-00\d\.dcm holds Float Pixel Data .* cannot read; re-export "
                                           r"the CT with integer pixels .* or convert it to NRRD or NIfTI$"):
            read_volume(given)


def _float_series(folder: Path, values: np.ndarray) -> None:
    """``values`` written as a CT series (:func:`series`) of Float Pixel Data, which GDCM does not list."""
    series(folder, values)
    for k, file in enumerate(sorted(folder.glob("ct-*.dcm"))):
        ds = pydicom.dcmread(file)
        for keyword in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept",
                        "RescaleSlope"):
            delattr(ds, keyword)
        ds.BitsAllocated, ds.FloatPixelData = 32, values[k].astype("<f4").tobytes()
        ds.save_as(file, enforce_file_format=True)


def test_a_scout_beside_float_pixel_data_slices_is_not_read_as_the_ct(tmp_path):
    """Float Pixel Data CT slices and one ordinary scout in a folder: the scout, the one series GDCM
    lists, was read as the CT (one slice) without a word; the Float Pixel Data slices are named instead."""
    _float_series(tmp_path / "ct", hu())
    series(tmp_path / "ct", hu(1), name="scout", **SCOUT)
    with pytest.raises(LNQError, match=r"^ct-00\d\.dcm holds Float Pixel Data .* cannot read; re-export "):
        read_volume(tmp_path / "ct")


def test_a_series_split_over_two_folders_is_refused_not_read_as_two_cts(tmp_path, fixed_prediction):
    """An export that put every other slice (or each half) of one series in a folder of its own: predict
    read each folder as a CT (twice the slice gap, half the nodes each) and wrote two predictions; opening
    the folder said it held 2 CT series. In a predict batch each part fails as an unreadable CT does, and
    the other CTs are predicted (the refusal stopped the batch before its first CT); the parts are named
    together, not the first one with "(and 1 more)" for the other."""
    from lnq_napari import api
    from lnq_napari.io.datasets import find_cts

    series(tmp_path / "scan" / "a", hu(16))
    (tmp_path / "scan" / "b").mkdir()
    for file in sorted((tmp_path / "scan" / "a").glob("*.dcm"))[1::2]:
        file.rename(tmp_path / "scan" / "b" / file.name)
    message = r"the folders .*a and .*b hold slices of one DICOM series .* move its slices into one folder"
    with pytest.raises(LNQError, match=f"^{message}$"):
        read_volume(tmp_path / "scan")
    series(tmp_path / "scan" / "c", hu(8, seed=1))
    other = read_volume(tmp_path / "scan" / "c")
    out, model = tmp_path / "out", fixed_prediction(other.with_array(np.zeros(other.shape, np.uint8)))
    with pytest.raises(LNQError, match=f"^predicted 1 of 3 CTs into .*; not a and b: {message}$"):
        api.predict(tmp_path / "scan", out, model=model)
    assert sorted(p.name for p in out.iterdir()) == ["c-seg.nrrd"]
    shutil.copytree(tmp_path / "scan" / "b", tmp_path / "scan" / "a", dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "scan" / "b")
    assert api.predict(tmp_path / "scan", out, model=model) == [out / "a-seg.nrrd", out / "c-seg.nrrd"]
    assert find_cts(tmp_path / "scan") == [("a", tmp_path / "scan" / "a"), ("c", tmp_path / "scan" / "c")]


def _copied_reversed(folder: Path, to: Path) -> None:
    """``folder``'s files copied into ``to`` under other names, in reversed order (IM0006 ... IM0001)."""
    to.mkdir(parents=True)
    files = sorted(folder.iterdir())
    for k, file in enumerate(files):
        shutil.copy(file, to / f"IM{len(files) - k:04d}")


@pytest.mark.parametrize("layout", ["copy", "empty uid", "fixed uid", "acquisitions"])
def test_series_of_one_uid_in_two_folders_are_no_split_unless_their_slices_interleave(tmp_path, layout):
    """Two folders of one Series Instance UID were refused as a split series: a copy under other file names,
    an empty UID (two patients), one fixed UID a converter wrote (two patients), two acquisitions of the
    series sorted into folders (same slice positions). Each is two CTs, as before the split check."""
    root = tmp_path / "root"
    if layout == "copy":
        series(root / "a", hu(6))
        _copied_reversed(root / "a", root / "b")
    elif layout in ("empty uid", "fixed uid"):
        uid = "" if layout == "empty uid" else "1.2.3.4"
        series(root / "a", hu(6), SeriesInstanceUID=uid, PatientID="A")
        series(root / "b", hu(6, seed=1), SeriesInstanceUID=uid, PatientID="B")
    else:
        uid = series(root / "a", hu(6), AcquisitionNumber=1)
        series(root / "b", hu(6, seed=1), SeriesInstanceUID=uid, AcquisitionNumber=2)
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it \(a, b\)"):
        read_volume(root)
    from lnq_napari.io.dicom_tree import split_series

    assert split_series([root / "a", root / "b"]) == {}


def test_a_series_an_export_split_into_subfolders_of_n_files_is_refused_in_one_line(tmp_path):
    """A CD export's subfolders of N files of one large series (each a slab of the scan): still refused,
    every part named; a folder beside them of another series is no part."""
    series(tmp_path / "scan" / "a", hu(12))
    files = sorted((tmp_path / "scan" / "a").glob("*.dcm"))
    for name, slab in (("b", slice(4, 8)), ("c", slice(8, 12))):
        (tmp_path / "scan" / name).mkdir()
        for file in files[slab]:
            file.rename(tmp_path / "scan" / name / file.name)
    series(tmp_path / "scan" / "d", hu(6))
    with pytest.raises(LNQError, match=r"^the folders \S+a, \S+b and \S+c hold slices of one DICOM series "
                                       r"\(Series Instance UID [\d.]+\): an export split it over folders; "
                                       r"move its slices into one folder$"):
        read_volume(tmp_path / "scan")
    from lnq_napari.io.dicom_tree import split_series

    parts = [tmp_path / "scan" / name for name in "abcd"]
    found = split_series(parts)
    assert sorted(found) == parts[:3] and len(set(found.values())) == 1


def test_a_copy_of_an_enhanced_ct_in_two_folders_is_two_cts_not_a_traceback(tmp_path, enhanced_ct):
    """Files of one series without Image Position (Patient) in two folders (an enhanced CT keeps it per
    frame): the split check asked each file for it and raised AttributeError (a traceback from predict,
    find_cases and read_volume of the parent). A folder without slice positions is never a split."""
    from lnq_napari.io.datasets import find_cases
    from lnq_napari.io.dicom_tree import split_series

    enhanced_ct(tmp_path / "e" / "a", [0, 1, 2])
    shutil.copytree(tmp_path / "e" / "a", tmp_path / "e" / "b")
    assert split_series([tmp_path / "e" / "a", tmp_path / "e" / "b"]) == {}
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it \(a, b\)"):
        read_volume(tmp_path / "e")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [c.case_id for c in find_cases(tmp_path / "e")] == ["a", "b"]


@pytest.mark.parametrize("second", ["thick", "coronal"])
def test_two_reconstructions_of_one_series_uid_are_two_cts_not_a_split(tmp_path, second):
    """One Series Instance UID a scanner gave a 1 mm and a 5 mm reconstruction (slices 0.3 mm apart), or
    an axial and a coronal one, each in a folder of its own: no slice position and no SOP Instance UID
    shared, so they were refused as one series split over folders. Other geometry is another volume."""
    from lnq_napari.io.dicom_tree import split_series

    uid = series(tmp_path / "r" / "a", hu(10), gap=1.0)
    tags = {"gap": 5.0} if second == "thick" else {"ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]}
    series(tmp_path / "r" / "b", hu(3, seed=1), SeriesInstanceUID=uid, **tags)
    for file in (tmp_path / "r" / "b").iterdir():
        ds = pydicom.dcmread(file)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + 0.3]
        ds.save_as(file)
    assert split_series([tmp_path / "r" / "a", tmp_path / "r" / "b"]) == {}
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it \(a, b\)"):
        read_volume(tmp_path / "r")


@pytest.mark.parametrize("names", ["same", "other"])
def test_the_split_check_stops_reading_a_copy_at_its_first_shared_file(tmp_path, monkeypatch, names):
    """A tree holding a backup copy of each series: the split check read every header of both folders
    (400 folders: 5 s on each predict, find_cases and read). A copy under the same names is told by the
    first files; under other names, the second folder is read up to its first file the first one holds."""
    from lnq_napari.io.dicom_tree import SAMPLED_FILES, split_series

    series(tmp_path / "t" / "a", hu(20))
    if names == "same":
        shutil.copytree(tmp_path / "t" / "a", tmp_path / "t" / "b")
    else:
        _copied_reversed(tmp_path / "t" / "a", tmp_path / "t" / "b")
    read, dcmread = [], pydicom.dcmread
    counted = lambda path, *a, **kw: read.append(path) or dcmread(path, *a, **kw)  # noqa: E731
    monkeypatch.setattr(pydicom, "dcmread", counted)
    assert split_series([tmp_path / "t" / "a", tmp_path / "t" / "b"]) == {}
    most = 2 * SAMPLED_FILES + (0 if names == "same" else 20 + 1)
    assert len(read) <= most


def test_the_split_check_reads_each_part_of_a_series_split_over_many_folders_once(tmp_path, monkeypatch):
    """A series an export split over 12 folders: each folder was read again for every pair it was in
    (50 folders: 6 s on each predict and find_cases); each part is now read whole once."""
    from lnq_napari.io.dicom_tree import SAMPLED_FILES, split_series

    series(tmp_path / "all", hu(36, rows=8, columns=8))
    parts = [tmp_path / "t" / f"p{k:02d}" for k in range(12)]
    for part in parts:
        part.mkdir(parents=True)
    for k, file in enumerate(sorted((tmp_path / "all").iterdir())):
        file.rename(parts[k % len(parts)] / file.name)
    read, dcmread = [], pydicom.dcmread
    counted = lambda path, *a, **kw: read.append(path) or dcmread(path, *a, **kw)  # noqa: E731
    monkeypatch.setattr(pydicom, "dcmread", counted)
    assert sorted(split_series(parts)) == parts
    assert len(read) <= 36 + len(parts) * SAMPLED_FILES


def _bare(file: Path, out: Path, implicit: bool = True, meta: bool = False) -> None:
    """``file`` re-saved as ``out`` without the 128-byte preamble and 'DICM' (older exports, some PACS): a
    bare dataset (implicit or explicit VR) from group 0008, or its file meta kept (``meta``) from 0002."""
    ds = pydicom.dcmread(file)
    ds.preamble = None
    if meta:
        out.write_bytes(file.read_bytes()[132:])
    else:
        del ds.file_meta
        pydicom.dcmwrite(out, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    if out != file:
        file.unlink()


@pytest.mark.parametrize(("implicit", "meta", "named"), [(True, False, False), (False, False, True),
                                                         (False, True, False)])
def test_a_series_without_the_dicom_preamble_reads_as_the_ct(tmp_path, implicit, meta, named):
    """Slices saved without the 128-byte preamble and 'DICM' (older exports: bare datasets, no extension;
    some PACS keep the file meta): GDCM reads them, but they were refused ("SimpleITK's reader needs" the
    preamble, which only ITK's choice of reader did; pydicom read no header of them). Now the CT, every
    HU and its grid; a SEG is placed on its grid and written for it, and one slice given alone is DICOM."""
    from lnq_napari.io.dicom_series import dicom_grid

    values = hu(VOLUME_SLICES)
    uid = series(tmp_path / "ct", values, RescaleSlope=1)
    for k, file in enumerate(sorted((tmp_path / "ct").iterdir())):
        _bare(file, tmp_path / "ct" / (f"ct-{k:03d}.dcm" if named else f"{k + 1:05d}"), implicit, meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no word of a series that is no CT
        volume = read_volume(tmp_path / "ct")
        assert_is_the_ct(volume, values)
        assert volume.meta["dicom_series_uid"] == uid
        grid = dicom_grid(tmp_path / "ct", uid)
        assert (grid.spacing, grid.origin, grid.direction) == \
            (volume.spacing, volume.origin, volume.direction)
        first = sorted((tmp_path / "ct").iterdir())[0]
        assert_is_the_ct(read_volume(first), values)  # a slice stands for its series
    mask = np.zeros(values.shape, np.uint8)
    mask[2:5, 4:9, 3:8] = 1
    seg = write_dicom_seg(tmp_path / "out" / "seg.dcm", volume.with_array(mask), tmp_path / "ct")
    np.testing.assert_array_equal(read_labels(seg).array, mask)


def test_a_scout_without_the_preamble_filed_in_the_series_is_left_out(tmp_path):
    """A scout saved without the preamble among the series' own slices (same Series Instance UID): its
    header was not read (pydicom needs the preamble unless forced), so it was not left out and the read
    failed on ITK's size mismatch."""
    values = hu(VOLUME_SLICES)
    uid = series(tmp_path / "ct", values)
    series(tmp_path / "scout", np.zeros((1, 30, 40), np.int16), SeriesInstanceUID=uid, **SCOUT)
    _bare(tmp_path / "scout" / "ct-000.dcm", tmp_path / "ct" / "aa-scout")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_is_the_ct(read_volume(tmp_path / "ct"), values)


def test_an_enhanced_ct_without_the_preamble_reads_as_its_slices(tmp_path, enhanced_ct):
    """An enhanced (multi-frame) CT saved without the preamble: highdicom's imread reads no such file, so
    its header "could not be read"; read now (by force, its transfer syntax the encoding read), frames in
    HU on the grid of its slices, and its grid alone as a SEG places it."""
    from lnq_napari.io.dicom_series import dicom_grid

    folder = enhanced_ct(tmp_path / "ct", order=[2, 0, 1])
    file = folder / "IM0000.dcm"
    uid = str(pydicom.dcmread(file).SeriesInstanceUID)
    _bare(file, folder / "00000001", implicit=False)
    volume, classic = read_volume(folder), read_volume(Path(__file__).parent / "data" / "dcmqi" / "ct-3slice")
    np.testing.assert_array_equal(volume.array, classic.array)
    np.testing.assert_allclose(volume.spacing + volume.origin, classic.spacing + classic.origin, atol=1e-4)
    grid = dicom_grid(folder, uid)
    np.testing.assert_allclose(grid.spacing + grid.origin, classic.spacing + classic.origin, atol=1e-4)


def test_the_grid_of_an_enhanced_ct_without_the_preamble_reads_no_pixel(tmp_path, enhanced_ct, monkeypatch):
    """The grid alone of an enhanced CT saved without the preamble (a SEG placed on it) read the whole file,
    every frame's pixels (hundreds of MB for a chest CT), for its geometry."""
    from lnq_napari.io import dicom_series

    folder = enhanced_ct(tmp_path / "ct", order=[2, 0, 1])
    uid = str(pydicom.dcmread(folder / "IM0000.dcm").SeriesInstanceUID)
    _bare(folder / "IM0000.dcm", folder / "00000001", implicit=False)
    whole: list[str] = []
    read_header = dicom_series.read_header

    def counted(path, *args, **kwargs):
        if not kwargs.get("stop_before_pixels"):
            whole.append(Path(path).name)
        return read_header(path, *args, **kwargs)

    monkeypatch.setattr(dicom_series, "read_header", counted)
    grid = dicom_series.dicom_grid(folder, uid)
    assert grid.shape == read_volume(folder).shape
    whole.clear()
    dicom_series.dicom_grid(folder, uid)
    assert whole == []


@pytest.mark.parametrize("cut", [0, 4, VOLUME_SLICES - 1])
def test_a_slice_cut_short_by_an_interrupted_copy_is_named(tmp_path, cut):
    """A slice file cut short (an interrupted copy or download; its header whole, its pixels not): GDCM
    leaves it out of the series, so a first or last slice cut short read silently as a CT one slice
    shorter, and one in the middle was refused as "a slice is missing". Now the file is named."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    file = tmp_path / "ct" / f"ct-{cut:03d}.dcm"
    file.write_bytes(file.read_bytes()[:-300])
    said = (rf"^1 DICOM image file in ct \(ct-{cut:03d}\.dcm\) cannot be read: cut short \(an "
            r"interrupted copy or download\), so the CT would lack that slice; copy or download the series "
            r"again$")
    with pytest.raises(LNQError, match=said):
        read_volume(tmp_path / "ct")


def test_a_folder_or_file_of_dicom_images_all_cut_short_says_so(tmp_path):
    """Every slice cut short (or an enhanced CT's one file): GDCM lists no series, and the folder was
    "a folder without a DICOM series", the file "no image of a CT series (modality CT)"."""
    series(tmp_path / "ct", hu(4))
    for file in (tmp_path / "ct").iterdir():
        file.write_bytes(file.read_bytes()[:-300])
    said = (r"^4 DICOM image files in ct \(ct-000\.dcm, ct-001\.dcm, ct-002\.dcm \.\.\.\) cannot be read: "
            r"cut short \(an interrupted copy or download\); copy or download the series again$")
    with pytest.raises(LNQError, match=said):
        read_volume(tmp_path / "ct")
    with pytest.raises(LNQError, match=r"^1 DICOM image file in ct \(ct-002\.dcm\) cannot be read: cut "):
        read_volume(tmp_path / "ct" / "ct-002.dcm")


def _big_endian(file: Path, out: Path) -> None:
    """``file`` re-saved as ``out``: a bare explicit-VR big-endian dataset (no preamble, no file meta), its
    first bytes ``00 08``; pydicom read no header of it unless forced."""
    import io

    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(file)
    kind = "u2" if ds.PixelRepresentation == 0 else "i2"
    ds.PixelData = np.frombuffer(ds.PixelData, "<" + kind).astype(">" + kind).tobytes()
    buffer = io.BytesIO()
    handle = DicomFileLike(buffer)
    handle.is_implicit_VR, handle.is_little_endian = False, False
    write_dataset(handle, Dataset(ds))
    out.write_bytes(buffer.getvalue())
    file.unlink()


def test_a_big_endian_series_without_the_preamble_reads_its_hu_with_every_check(tmp_path):
    """A series saved as bare explicit-VR big-endian datasets (first bytes 00 08): GDCM read it, pydicom
    read no header, so every header check was skipped without a word; slices whose rescale differed from the
    first one's (intercept 0, unsigned, then -1024) read their negative HU wrapped by 65536."""
    values = hu(VOLUME_SLICES)
    series(tmp_path / "ct", values)
    truth = values.astype(np.int32)
    for k, file in enumerate(sorted((tmp_path / "ct").iterdir())):
        if k < 3:  # stored as unsigned HU + 1024 with intercept 0: they read as HU + 1024
            ds = pydicom.dcmread(file)
            ds.PixelRepresentation, ds.RescaleIntercept = 0, 0
            ds.PixelData = (values[k].astype(np.int32) + 1024).astype("<u2").tobytes()
            ds.save_as(file, enforce_file_format=True)
            truth[k] += 1024
        _big_endian(file, tmp_path / "ct" / f"{k + 1:05d}")
    assert (tmp_path / "ct" / "00001").read_bytes()[:2] == b"\x00\x08"
    np.testing.assert_array_equal(read_volume(tmp_path / "ct").array, truth)


def test_a_listed_slice_whose_header_cannot_be_read_is_refused_not_read_unchecked(tmp_path, monkeypatch):
    """A slice GDCM lists whose header pydicom cannot read (an encoding it does not know, damage GDCM
    passes over) was read without the checks of the series' headers (scouts, copies, rescales read in
    float, padding): now it is named in one line."""
    from lnq_napari.io import dicom_series

    series(tmp_path / "ct", hu(VOLUME_SLICES))
    read_header = dicom_series.read_header

    def unreadable(path, *args, **kwargs):
        if Path(path).name == "ct-003.dcm" and "ImagePositionPatient" in (kwargs.get("specific_tags") or []):
            raise pydicom.errors.InvalidDicomError("no header")
        return read_header(path, *args, **kwargs)

    monkeypatch.setattr(dicom_series, "read_header", unreadable)
    with pytest.raises(LNQError, match=r"^the header of ct-003\.dcm in ct cannot be read, although it is "
                                       r"listed as a slice of the DICOM series .*; re-export the series"):
        read_volume(tmp_path / "ct")


def _cut_at(file: Path, keep: int | str) -> None:
    """``file`` cut to ``keep`` bytes, or just before the element ``keep`` names ("Rows"; "SeriesUID")."""
    data = file.read_bytes()
    marks = {"Rows": b"\x28\x00\x10\x00", "SeriesUID": b"\x20\x00\x0e\x00"}
    file.write_bytes(data[:data.find(marks[keep]) if isinstance(keep, str) else keep])


@pytest.mark.parametrize("cut", [0, VOLUME_SLICES - 1])
@pytest.mark.parametrize("keep", [0, 200, "SeriesUID", "Rows"])
def test_an_end_slice_empty_or_cut_within_its_header_is_named(tmp_path, cut, keep):
    """The first or last slice empty (an interrupted copy made the file, no byte came) or cut short within
    its header (before its series or its Rows): only a file whose header was whole was named, so the CT
    read silently one slice shorter."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    _cut_at(tmp_path / "ct" / f"ct-{cut:03d}.dcm", keep)
    what, said = ("file", "empty") if keep == 0 else ("DICOM image file", "cut short")
    with pytest.raises(LNQError, match=rf"^1 {what} in ct \(ct-{cut:03d}\.dcm\) cannot be read: {said} \(an "
                                       r"interrupted copy or download\), so the CT would lack that slice"):
        read_volume(tmp_path / "ct")


@pytest.mark.parametrize(("element", "within"), [(b"\x08\x00\x16\x00", 2), (b"\x08\x00\x16\x00", 12),
                                               (b"\x20\x00\x0e\x00", 10)])
def test_a_slice_without_the_preamble_cut_before_it_names_its_series_is_named(tmp_path, element, within):
    """The last slice of a series without the preamble (files named by number) cut within its SOP Class UID
    ("1." or a longer start of it) or its Series Instance UID: it was taken for no DICOM (no SOP class
    found), for an object without pixels (a SOP class "1."), or for a file of another series (its UID cut),
    and the CT read silently one slice shorter. It is named cut short."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    for k, file in enumerate(sorted((tmp_path / "ct").iterdir())):
        _bare(file, tmp_path / "ct" / f"{k:05d}")
    last = tmp_path / "ct" / f"{VOLUME_SLICES - 1:05d}"
    data = last.read_bytes()
    last.write_bytes(data[:data.find(element) + 8 + within])  # implicit VR: 8 bytes before the value
    with pytest.raises(LNQError, match=rf"^1 DICOM image file in ct \({last.name}\) cannot be read: cut "
                                       r"short \(an interrupted copy or download\), so the CT would lack"):
        read_volume(tmp_path / "ct")


def test_empty_slices_named_without_an_extension_or_cut_within_the_preamble_are_named_empty(tmp_path):
    """A slice named by number cut within its 128-byte preamble (zeros; some copies also allocate a file
    of zeros first) read as no DICOM: the CT one slice shorter. A folder of empty files named by number was
    "a folder without a DICOM series" (one named .dcm said "cut short"). Both are named empty."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    for k, file in enumerate(sorted((tmp_path / "ct").iterdir())):
        file.rename(tmp_path / "ct" / f"{k:05d}")
    (tmp_path / "ct" / "00000").write_bytes(bytes(100))
    with pytest.raises(LNQError, match=r"^1 file in ct \(00000\) cannot be read: empty \(an interrupted copy "
                                       r"or download\), so the CT would lack that slice"):
        read_volume(tmp_path / "ct")
    (tmp_path / "empty").mkdir()
    for name in ("00001", "00002", "IM3.dcm"):
        (tmp_path / "empty" / name).write_bytes(b"")
    with pytest.raises(LNQError, match=r"^3 files in empty \(00001, 00002, IM3\.dcm\) cannot be read: "
                                       r"empty \(an interrupted copy or download\); copy or download the "
                                       r"series again$"):
        read_volume(tmp_path / "empty")


@pytest.mark.parametrize(("name", "size"), [("mask.raw", 4096), ("VERSION", 4096), ("Thumbs.db", 0),
                                            ("_SUCCESS", 0), ("00000", 200)])
def test_a_file_of_zeros_that_cannot_be_a_slice_is_left_alone(tmp_path, name, size):
    """Any file of zeros (an empty mask's .raw beside its .mhd, a 4 KiB file of zeros) was named an empty
    slice, and the CT refused: only a file named as the slices are (ct-#.dcm here), empty or zeros, may be a
    slice no byte of which came."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    (tmp_path / "ct" / "mask.mhd").write_text("ObjectType = Image\nNDims = 3\nElementDataFile = mask.raw\n")
    (tmp_path / "ct" / name).write_bytes(bytes(size))
    assert read_volume(tmp_path / "ct").shape == (VOLUME_SLICES, 24, 20)


def _reoriented(folder: Path, orientation: list[str]) -> None:
    """The slices of ``folder`` (:func:`series`) given ``orientation`` as written, each placed ``GAP`` mm
    further along its normal (positions to 2 decimals): one stack of that orientation."""
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, column) / np.linalg.norm(np.cross(row, column))
    for k, file in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(file)
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = [f"{v:.2f}" for v in np.asarray(ORIGIN) + GAP * k * normal]
        ds.save_as(file)


@pytest.mark.parametrize("orientation", [
    ["0.87", "0.00", "-0.50", "0.25", "0.87", "0.43"],  # double oblique to 2 decimals: cosine 0.0025
    ["1.00", "0.01", "0.00", "0.00", "1.00", "0.00"],  # a turn of 0.3 degrees to 2 decimals: cosine 0.01
    ["1.00", "0.01", "0.00", "0.00", "-1.00", "0.00"],  # so, its normal downwards: stacked against z
    ["0.99", "0.01", "0.00", "-0.01", "0.99", "0.00"],  # cut to 2 decimals: rows and columns 0.99 long
    ["0.86", "0.00", "-0.49", "0.21", "0.90", "0.36"],  # a double oblique cut to 2 decimals: 0.0084 off
    ["0.866025", "0", "-0.5", "0.251299", "0.866024", "0.432263"],  # 0.0015 off: within ITK's 1e-3 a side
    ["1", "0", "0", "0.0009", "1", "0"],  # 0.0009 off: ITK turns them perpendicular
    ["0.866025", "0", "-0.5", "0.25", "0.866025", "0.433013"]])  # the double oblique one, 6 decimals
def test_an_orientation_written_to_2_decimals_reads_on_its_perpendicular_axes(tmp_path, orientation):
    """Rows and columns more than about 1e-3 off perpendicular (written to 2 decimals): GDCM read the series
    with the axial axes instead, with no word, a double-oblique CT's far slice 230 mm from where the scanner
    put it (and lnq-napari then refused it). Read and its grid taken (the SEG's), it lies on the nearest
    perpendicular axes: each slice where its position says, its HU in order; the grid's zeros stay a
    broadcast (no copy made to reorder them). Cut to 2 decimals (0.0084 off the nearest axes) it reads; in
    full precision, up to 1e-3 off them (as far as ITK itself turns an orientation) too."""
    from lnq_napari.io.dicom_series import dicom_grid

    ct = hu(VOLUME_SLICES)
    uid = series(tmp_path / "ct", ct)
    _reoriented(tmp_path / "ct", orientation)
    written = np.asarray(orientation, float).reshape(2, 3)
    positions = np.array([[float(v) for v in pydicom.dcmread(f).ImagePositionPatient]
                          for f in sorted((tmp_path / "ct").iterdir())])
    volume = read_volume(tmp_path / "ct")
    np.testing.assert_array_equal(volume.array, ct)
    grid = dicom_grid(tmp_path / "ct", uid)
    assert grid.array.strides == (0, 0, 0)  # its zeros take no memory, its slices reordered or not
    for placed in (volume, grid):
        axes = np.asarray(placed.direction).reshape(3, 3)
        np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-9)
        unit = written / np.linalg.norm(written, axis=1)[:, None]
        np.testing.assert_allclose(axes[:, :2].T, unit, atol=0.01)
        corners = placed.origin + np.arange(VOLUME_SLICES)[:, None] * placed.spacing[2] * axes[:, 2]
        np.testing.assert_allclose(corners, positions, atol=0.05)  # far slice: 17.5 mm away, 0.01 mm rounding


@pytest.mark.parametrize("orientation", [["0.87", "0.00", "-0.50", "0.25", "0.87", "0.43"],
                                         ["1.00", "0.01", "0.00", "0.00", "-1.00", "0.00"],
                                         ["-0.90", "-0.39", "-0.18", "-0.39", "0.92", "-0.04"],
                                         ["-0.296", "0.741", "-0.603", "-0.228", "-0.667", "-0.709"],
                                         ["1", "0", "0", "0.0005", "1", "0"]])
def test_a_seg_is_written_and_read_back_on_a_ct_whose_orientation_is_written_to_2_decimals(tmp_path,
                                                                                           orientation):
    """Such a CT read on its nearest perpendicular axes: a SEG written for it (its frames carry the CT's
    orientation as written) was refused ("orientation differs"), and read back it was "not two perpendicular
    unit vectors". Both lie on the axes the CT is read on. Rows and columns 6e-4 off perpendicular (the
    third; 1 in 6 double obliques written to 2 decimals), which GDCM reads and ITK turns perpendicular its
    own way (keeping the columns), were refused so too: read on the nearest perpendicular axes as well. So
    written to 3 decimals or more (the last two: 4.3e-4 and 5e-4 off; 3 in 6 double obliques written to 3
    decimals were refused)."""
    folder = tmp_path / "ct"
    series(folder, hu(VOLUME_SLICES))
    _reoriented(folder, orientation)
    _seg_round_trip(tmp_path, folder)


#: Why an orientation whose rows and columns are not perpendicular is refused.
SHEARED = r"more than rounding it to {} explains \(sheared, or written too coarsely to place the CT\)"
COARSE = (r"written to 1 decimal: too coarsely to place the CT \(2 decimals are read on the nearest "
          r"perpendicular axes\)")


@pytest.mark.parametrize(("orientation", "cosine", "why"), [
    (["1.00", "0.05", "0.00", "0.00", "1.00", "0.00"], "0.0499", SHEARED.format("2 decimals")),  # 2.9 degrees
    (["1", "0", "0", "0.010", "1", "0"], "0.0100", SHEARED.format("3 decimals")),  # 3 decimals, 0.01 off
    (["0.99", "-0.02", "-0.02", "0.00", "1.00", "0.03"], "0.0208", SHEARED.format("2 decimals")),  # 0.0103
    (["1.0", "0.1", "0.0", "0.0", "1.0", "0.0"], "0.0995", COARSE),  # 1 decimal: too coarse to place
    (["-0.8", "-0.5", "-0.4", "-0.6", "0.5", "0.6"], "0.0099", COARSE)])  # so, 0.016 off
def test_an_orientation_whose_rows_and_columns_are_not_perpendicular_is_refused(tmp_path, orientation, cosine,
                                                                                 why):
    """Rows and columns further off perpendicular than rounding the orientation to the decimals it is
    written with (2 or more) explains: no volume holds it; the read and the grid (the SEG's) are refused
    in one line. Written to 1 decimal, it is held to 2 decimals' rounding, and the line says it was written
    too coarsely (it said "more than rounding it to 2 decimals explains")."""
    from lnq_napari.io.dicom_series import dicom_grid

    uid = series(tmp_path / "ct", hu(VOLUME_SLICES))
    _reoriented(tmp_path / "ct", orientation)
    for read_it in (lambda: read_volume(tmp_path / "ct"), lambda: dicom_grid(tmp_path / "ct", uid)):
        with pytest.raises(LNQError, match=r"^the orientation of the DICOM slices in ct \(Image Orientation "
                                           r"\(Patient\)\) has rows and columns [\d.]+ degrees off "
                                           rf"perpendicular \(cosine {cosine}\), {why}; re-export the series "
                                           r"with its orientation in full precision$"):
            read_it()


@pytest.mark.parametrize("slices", [1, 2, VOLUME_SLICES])
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_an_orientation_that_is_no_number_is_refused_in_one_line(tmp_path, monkeypatch, slices, bad):
    """An orientation holding NaN (a damaged header) on a series of 1 or 2 slices gave a numpy traceback
    ("SVD did not converge"), one holding infinity was "nan degrees off perpendicular", 3 slices or more
    "a mixed series": the read and the grid (the SEG's) are refused in one line saying what is wrong."""
    from pydicom import config

    from lnq_napari.io.dicom_series import dicom_grid

    monkeypatch.setattr(config.settings, "writing_validation_mode", config.IGNORE)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.IGNORE)
    uid = series(tmp_path / "ct", hu(slices))
    for file in (tmp_path / "ct").iterdir():
        ds = pydicom.dcmread(file)
        ds["ImageOrientationPatient"] = pydicom.DataElement(0x00200037, "DS", f"{bad}\\0\\0\\0\\1\\0")
        ds.save_as(file)
    for read_it in (lambda: read_volume(tmp_path / "ct"), lambda: dicom_grid(tmp_path / "ct", uid)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no "invalid value" on the way
            with pytest.raises(LNQError, match=rf"^the orientation of the DICOM slices in ct \(Image "
                                               r"Orientation \(Patient\)\) is not six finite numbers "
                                               rf"\({bad}\\0\\0\\0\\1\\0\), so the slices "
                                               r"cannot be placed; re-export the series$"):
                read_it()


def _renamed(folder: Path, naming: str) -> Path:
    """The slices of ``folder`` (written by :func:`series`) renamed as exports name them: "uid" (each its
    SOP Instance UID, no suffix), "im" (IM000001 ..., as a DICOMDIR's IMAGES folder), "random" (8 random
    capitals and digits, no suffix, as a PACS export names them) or a suffix (".dicom"); the file of the top
    slice."""
    files, rng = sorted(folder.iterdir()), np.random.default_rng(7)
    for k, file in enumerate(files):
        name = {"uid": str(pydicom.dcmread(file, stop_before_pixels=True).SOPInstanceUID),
                "im": f"IM{k + 1:06d}",
                "random": "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 8))
                }.get(naming, file.stem + naming)
        files[k] = file.rename(folder / name)
    return files[-1]


def test_slices_named_by_random_ids_without_a_suffix_read_as_the_ct(tmp_path):
    """A PACS export's files named by 8 random capitals and digits (no .dcm) are found and read, as napari's
    File > Open takes the folder."""
    from lnq_napari.plugin._reader import is_supported

    series(tmp_path / "S0001", hu(VOLUME_SLICES))
    _renamed(tmp_path / "S0001", "random")
    assert all(re.fullmatch(r"[A-Z0-9]{8}", f.name) for f in (tmp_path / "S0001").iterdir())
    assert is_supported(tmp_path / "S0001")
    assert_is_the_ct(read_volume(tmp_path / "S0001"), hu(VOLUME_SLICES))


@pytest.mark.parametrize(("naming", "size"), [("uid", None), ("im", 4096), (".dicom", 0), (".dc3", 0),
                                              (".dcm", None), ("random", None), ("random", 0)])
def test_an_end_slice_of_zeros_named_as_the_slices_are_is_a_lost_slice(tmp_path, naming, size):
    """The top slice arrived as zeros (a copy that preallocated it, a crash; ``size`` None: of its own size)
    or empty, named as its series' slices are (by UID, IM000012, .dicom, .dc3, 8 random capitals and digits):
    a file of zeros over 131 bytes, or of a suffix other than none, .dcm or .ima, or of a random name (each
    its own shape), was taken for no slice, and the CT read silently one slice short."""
    folder = tmp_path / "IMAGES"
    series(folder, hu(VOLUME_SLICES))
    top = _renamed(folder, naming)
    top.write_bytes(bytes(top.stat().st_size if size is None else size))
    with pytest.raises(LNQError, match=rf"^1 file in IMAGES \({re.escape(top.name)}\) cannot be read: "
                                       r"empty \(an interrupted copy or download\), so the CT would lack"):
        read_volume(folder)


@pytest.mark.parametrize("naming", ["uid", "im"])
@pytest.mark.parametrize("name", ["LOCK", "_SUCCESS", "VERSION", "Thumbs.db", "LOCKFILE"])
def test_a_zero_byte_file_named_otherwise_beside_slices_without_a_suffix_is_left_alone(tmp_path, naming,
                                                                                         name):
    """A zero-byte LOCK, _SUCCESS or VERSION beside slices named by UID or IM000001 (no suffix, as theirs)
    was named an empty slice and the CT refused: it is not named as the slices are."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    _renamed(tmp_path / "ct", naming)
    (tmp_path / "ct" / name).write_bytes(b"")
    assert read_volume(tmp_path / "ct").shape == (VOLUME_SLICES, 24, 20)


def _random_names_with_letters_only(folder: Path, letters_only: list[int]) -> list[Path]:
    """The slices of ``folder`` (:func:`series`) named by 8 random capitals and digits, those at
    ``letters_only`` (in slice order) by 8 random capitals without a digit, as 7 % of random names are."""
    files, rng = sorted(folder.iterdir()), np.random.default_rng(11)
    for k, file in enumerate(files):
        while True:
            name = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 8))
            if name.isalpha() == (k in letters_only):
                break
        files[k] = file.rename(folder / name)
    return files


@pytest.mark.parametrize("name", ["LOCKFILE", "COMPLETE", "FINISHED"])
@pytest.mark.parametrize("letters_only", [[], [3], [0, 5]])
def test_a_zero_byte_word_file_beside_randomly_named_slices_is_left_alone(tmp_path, name, letters_only):
    """Slices named by 8 random capitals and digits, some of them (7 % of such names) without a digit: a
    zero-byte LOCKFILE or COMPLETE beside them was named as they are, taken for a lost slice and the series
    refused. An empty file so named may be a marker file; the series reads."""
    series(tmp_path / "S0001", hu(VOLUME_SLICES))
    _random_names_with_letters_only(tmp_path / "S0001", letters_only)
    (tmp_path / "S0001" / name).write_bytes(b"")
    assert_is_the_ct(read_volume(tmp_path / "S0001"), hu(VOLUME_SLICES))


@pytest.mark.parametrize("letters_only", [[VOLUME_SLICES - 1], [2, VOLUME_SLICES - 1]])
@pytest.mark.parametrize("size", [None, 0])
def test_a_zeroed_slice_beside_randomly_named_slices_is_a_lost_slice(tmp_path, letters_only, size):
    """The top slice of a series named by 8 random capitals and digits arrived as zeros of its own size
    (``size`` None, preallocated) or empty (0): its name holds a digit or not (7 % of random names hold
    none). Zeros of a slice's size are a lost slice whatever its name, an empty file when its name holds a
    digit (the one named LOCKFILE left alone, above); a name of letters only was missed when no other slice's
    name was of letters only, and the CT read one slice short without a word."""
    folder = tmp_path / "S0001"
    series(folder, hu(VOLUME_SLICES))
    files = _random_names_with_letters_only(folder, letters_only)
    top = files[-1] if size is None else files[0]  # empty: the bottom slice, whose name holds a digit
    top.write_bytes(bytes(top.stat().st_size if size is None else size))
    with pytest.raises(LNQError, match=rf"^1 file in S0001 \({top.name}\) cannot be read: empty \(an "
                                       r"interrupted copy or download\), so the CT would lack that slice"):
        read_volume(folder)


def test_a_cut_file_of_a_series_whose_uid_starts_this_ones_is_no_slice_of_it(tmp_path):
    """A file of the series <root>.1 cut after its (whole) Series Instance UID beside the CT <root>.12 was
    taken for a slice of the CT cut within its UID, and the CT refused; a slice of the CT cut within its UID
    (explicit VR, after the preamble) still is."""
    root = generate_uid()[:50]
    series(tmp_path / "ct", hu(VOLUME_SLICES), SeriesInstanceUID=f"{root}.12")
    series(tmp_path / "ct", hu(5), name="lung", SeriesInstanceUID=f"{root}.1")
    cut = tmp_path / "ct" / "lung-004.dcm"
    data = cut.read_bytes()
    start = data.find(b"\x20\x00\x0e\x00")
    cut.write_bytes(data[:start + 8 + int.from_bytes(data[start + 6:start + 8], "little")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the series read and the one beside it
        assert read_volume(tmp_path / "ct").shape == (VOLUME_SLICES, 24, 20)
    last = tmp_path / "ct" / f"ct-{VOLUME_SLICES - 1:03d}.dcm"
    data = last.read_bytes()
    last.write_bytes(data[:data.find(b"\x20\x00\x0e\x00") + 8 + len(root) + 2])  # '<root>.1' of '<root>.12'
    with pytest.raises(LNQError, match=rf"^1 DICOM image file in ct \({last.name}\) cannot be read: cut "
                                       r"short \(an interrupted copy or download\), so the CT would lack"):
        read_volume(tmp_path / "ct")


def _jpeg_slice(file: Path, damage: slice, fill: bytes, compressor: str = "JPEG") -> None:
    """``file`` re-saved JPEG lossless (GDCM's encoder; ``compressor`` "JPEG2000": JPEG 2000), the bytes
    ``damage`` of its codestream ``fill``."""
    import SimpleITK as sitk

    ds = pydicom.dcmread(file)
    scratch = file.with_suffix(".gdcm")
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(scratch))
    writer.SetImageIO("GDCMImageIO")
    writer.SetUseCompression(True)
    writer.SetCompressor(compressor)
    writer.Execute(sitk.GetImageFromArray(ds.pixel_array[None].astype(np.int16)))
    encoded = pydicom.dcmread(scratch)
    scratch.unlink()
    frame = bytearray(encoded.PixelData)
    frame[damage] = fill * len(frame[damage])
    ds.PixelData, ds.file_meta.TransferSyntaxUID = bytes(frame), encoded.file_meta.TransferSyntaxUID
    ds["PixelData"].VR = "OB"
    ds.save_as(file, enforce_file_format=True)


def test_a_damaged_jpeg_slice_is_refused_in_one_line(tmp_path):
    """A JPEG slice whose Huffman table is damaged: libjpeg (within GDCM) prints its own lines on stderr,
    which are left there (fd 2 is the whole process's: catching them swallowed other threads' output and
    crash traces); the read is refused in one line quoting ITK's last line, without its 'ITK ERROR:
    GDCMImageIO(0x...)' prefix, naming the damaged slice (it named none)."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    _jpeg_slice(tmp_path / "ct" / "ct-003.dcm", slice(40, 60), b"\xff")
    with pytest.raises(LNQError, match=r"^cannot read the DICOM series in .*ct: its slice ct-003\.dcm cannot "
                                       r"be decoded \((?!ITK ERROR)[^\n]+\); the file is damaged: copy or "
                                       r"re-export the series again$"):
        read_volume(tmp_path / "ct")


@pytest.mark.parametrize("cut", [0, 3, VOLUME_SLICES - 1])
def test_a_jpeg_2000_slice_cut_short_within_its_pixels_is_named(tmp_path, cut):
    """A JPEG 2000 slice cut short within its compressed pixels (an interrupted copy): pydicom left out
    the pixel element, with a warning on stderr, so the file looked like one without pixel data: a slice in
    the middle was refused as "unevenly spaced ... a slice is missing", an end one read a CT a slice short
    without a word. The file is named in one line, and nothing else is said."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    file = tmp_path / "ct" / f"ct-{cut:03d}.dcm"
    _jpeg_slice(file, slice(0, 0), b"", "JPEG2000")
    _cut_at(file, file.stat().st_size - 200)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(LNQError, match=rf"^1 DICOM image file in ct \(ct-{cut:03d}\.dcm\) cannot be "
                                           r"read: cut short \(an interrupted copy or download\), so the CT "
                                           r"would lack that slice; copy or download the series again$"):
            read_volume(tmp_path / "ct")
    assert [str(w.message) for w in said] == []


@pytest.mark.parametrize(("cut", "within"), [(VOLUME_SLICES - 1, 6), (VOLUME_SLICES - 1, 2), (0, 4), (3, 7)])
@pytest.mark.parametrize("compressor", [None, "JPEG2000"])
def test_a_slice_cut_within_its_pixel_elements_own_header_is_named(tmp_path, cut, within, compressor):
    """A slice cut ``within`` bytes into its Pixel Data element's header (its tag whole or part of it, its VR
    or length cut off): pydicom stops there with no word, so the file looked like one without pixel data:
    an end slice read a CT a slice short without a word, a middle one was refused as "unevenly spaced". The
    file is named in one line."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    file = tmp_path / "ct" / f"ct-{cut:03d}.dcm"
    if compressor:
        _jpeg_slice(file, slice(0, 0), b"", compressor)
    data = file.read_bytes()
    file.write_bytes(data[:data.rfind(b"\xe0\x7f\x10\x00") + within])
    with pytest.raises(LNQError, match=rf"^1 DICOM image file in ct \(ct-{cut:03d}\.dcm\) cannot be read: "
                                       r"cut short \(an interrupted copy or download\), so the CT would "
                                       r"lack that slice; copy or download the series again$"):
        read_volume(tmp_path / "ct")


def test_a_jpeg_slice_the_codec_complains_of_still_reads(tmp_path):
    """A JPEG slice with bytes zeroed within its codestream decodes (libjpeg says "Corrupt JPEG data" on
    stderr itself): the series reads."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    _jpeg_slice(tmp_path / "ct" / "ct-003.dcm", slice(-120, -20), b"\x00")
    assert read_volume(tmp_path / "ct").shape == (VOLUME_SLICES, 24, 20)


def test_a_dicom_read_leaves_stderr_to_other_threads(tmp_path, monkeypatch):
    """fd 2 stays the process's while a series is read: another thread's stderr was caught meanwhile (and
    quoted as the decoder's reason), and two overlapping reads left fd 2 on a deleted file."""
    import os

    import SimpleITK as sitk

    series(tmp_path / "ct", hu(VOLUME_SLICES))
    before, seen = os.fstat(2).st_ino, []
    execute = sitk.ImageSeriesReader.Execute

    def execute_and_look(self, *args):
        seen.append(os.fstat(2).st_ino)  # what fd 2 is while ITK decodes
        return execute(self, *args)

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", execute_and_look)
    read_volume(tmp_path / "ct")
    assert seen and set(seen) == {before}


def test_the_grid_of_a_series_with_a_slice_cut_short_is_refused_as_its_read_is(tmp_path):
    """The grid alone (a SEG placed without its CT) was built from GDCM's list, so a folder whose last
    slice was cut short gave a grid one slice shorter where reading the CT refused it."""
    from lnq_napari.io.dicom_series import dicom_grid

    uid = series(tmp_path / "ct", hu(VOLUME_SLICES))
    _cut_at(tmp_path / "ct" / f"ct-{VOLUME_SLICES - 1:03d}.dcm", -300)
    said = rf"^1 DICOM image file in ct \(ct-{VOLUME_SLICES - 1:03d}\.dcm\) cannot be read: cut short"
    with pytest.raises(LNQError, match=said):
        read_volume(tmp_path / "ct")
    with pytest.raises(LNQError, match=said):
        dicom_grid(tmp_path / "ct", uid)


def test_an_image_file_without_pixel_data_beside_the_series_is_not_called_cut_short(tmp_path):
    """A whole file of the series with Rows but no Pixel Data (a header-only or pixel-stripped copy): GDCM
    leaves it out, and it was called "cut short or damaged (an interrupted copy)", the CT refused. It is
    whole: the CT reads as before."""
    values = hu(VOLUME_SLICES)
    series(tmp_path / "ct", values)
    ds = pydicom.dcmread(tmp_path / "ct" / "ct-002.dcm")
    del ds.PixelData
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "ct" / "zz-header-only.dcm", enforce_file_format=True)
    assert_is_the_ct(read_volume(tmp_path / "ct"), values)


def test_a_slice_file_name_that_is_not_utf8_is_named_in_one_line(tmp_path):
    """A Latin-1 file name (an old CD, a Windows share) in a series folder: SimpleITK's series reader
    raised a TypeError traceback."""
    import os

    series(tmp_path / "ct", hu(VOLUME_SLICES))
    os.rename(tmp_path / "ct" / "ct-003.dcm", os.fsencode(tmp_path / "ct") + b"/ct-\xe9003.dcm")
    said = r"^the file name 'ct-\\xe9003\.dcm' in ct is not UTF-8 text, which the DICOM reader"
    with pytest.raises(LNQError, match=said):
        read_volume(tmp_path / "ct")


def test_a_large_file_starting_like_a_bare_dataset_is_not_parsed_whole(tmp_path, monkeypatch):
    """A raw volume whose first value is 8 (or 2), or a 512-wide GIPL (02 00 02 00), starts as a bare DICOM
    dataset does: it was parsed by force to its end to look for a SOP Class UID (about 0.2 s per MB) each
    time its format was asked. Its first element is checked, then only its first bytes are parsed."""
    import io

    from lnq_napari.io.dicom_tree import is_dicom_path
    from lnq_napari.io.readers import file_format

    files = {"zeros.raw": b"\x08\x00" + bytes(3_000_000),
             "ct.gipl": b"\x02\x00\x02\x00\x00\x14\x00\x01" + bytes(3_000_000)}
    parsed: list[int] = []
    dcmread = pydicom.dcmread

    def counted(source, *args, **kwargs):
        parsed.append(len(source.getbuffer()) if isinstance(source, io.BytesIO) else
                      Path(source if isinstance(source, (str, Path)) else source.name).stat().st_size)
        return dcmread(source, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counted)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert file_format(tmp_path / name) == "other" and not is_dicom_path(tmp_path / name)
    assert parsed and max(parsed) <= 65536, parsed  # the first bytes at most, not the 3 MB


def test_a_series_is_converted_from_the_readers_own_image_without_a_copy(tmp_path, monkeypatch):
    """The series reader kept the image in its pipeline, so turning it into an array made a deep copy of
    every voxel first (a 300-slice 16-bit CT read as int32: 315 MB more, about a second): the image
    converted is now the only one."""
    from lnq_napari.io import dicom_series

    seen, convert = [], dicom_series.from_sitk_image

    def look(image, name):
        seen.append(image.IsUnique())
        return convert(image, name)

    monkeypatch.setattr(dicom_series, "from_sitk_image", look)
    series(tmp_path / "ct", hu())
    volume = read_volume(tmp_path / "ct")
    assert seen == [True]
    assert_is_the_ct(volume, hu())
