"""DICOM SEG in and out on the repository's real 3-slice CT series (tests/data/dcmqi/ct-3slice).

Oracles independent of lnq-napari's own geometry code: highdicom maps SEG frames to the CT's SOP
instances (``get_pixels_by_source_instance``), and David Clunie's ``dciodvfy`` (Debian dicom3tools,
in .ci/apt-packages.txt) checks a written SEG against the DICOM standard.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import LNQError
from lnq_napari.inference import Prediction
from lnq_napari.io import GridWarning, Volume, read_labels, read_volume, write_volume
from lnq_napari.io.dicom_seg import short_version, write_dicom_seg
from lnq_napari.io.node_names import named_like_node
from lnq_napari.io.readers import read_raw

DATA = Path(__file__).parent / "data" / "dcmqi"
SERIES = DATA / "ct-3slice"
VERSION = "lnq-unet-20261127-1053-356336d7" + "+ft-20261127-1102-356336d7" * 4  # longer than 64


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_volume(SERIES)


@pytest.fixture(scope="module")
def liver(ct) -> Volume:
    """A real label map on the series' grid (dcmqi's liver and spine, values 1..3): a node mask stand-in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        return read_labels(DATA / "liver_spine_seg.nrrd", reference=ct)


def study(tmp_path: Path) -> Path:
    """A TCIA-like study folder: the CT series in ``1-CT/``; SEGs go into a sibling series folder."""
    shutil.copytree(SERIES, tmp_path / "study" / "1-CT")
    return tmp_path / "study"


def ct_files_in_z_order(ct: Volume) -> list[pydicom.Dataset]:
    files = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(SERIES.glob("*.dcm"))]
    return sorted(files, key=lambda d: ct.physical_to_index([float(v) for v in d.ImagePositionPatient])[0, 0])


def highdicom_mask(path: Path, ct: Volume, segment: int = 1) -> np.ndarray:
    """The SEG's segment on the CT slices as highdicom maps them (by SOP instance, not by geometry)."""
    seg = hd.seg.segread(path)
    uids = [str(d.SOPInstanceUID) for d in ct_files_in_z_order(ct)]
    return np.asarray(seg.get_pixels_by_source_instance(uids, segment_numbers=[segment],
                                                        combine_segments=True)).astype(np.uint8)


def test_round_trip_exact_and_highdicom_agrees(tmp_path, ct, liver):
    root = study(tmp_path)
    out = write_dicom_seg(root / "2-SEG" / "1-1.dcm", liver, root / "1-CT", model_version=VERSION)
    expected = (liver.array != 0).astype(np.uint8)
    assert 0 < expected.sum() < expected.size
    back = read_labels(root / "2-SEG")  # the SEG series folder: its CT found beside it
    np.testing.assert_array_equal(back.array, expected)
    assert (back.spacing, back.origin, back.direction) == (ct.spacing, ct.origin, ct.direction)
    assert back.meta["selected_segments"] == ["lymph node"]
    np.testing.assert_array_equal(highdicom_mask(out, ct), expected)
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, expected)  # the file, CT given
    raw = read_raw(out)  # what read_volume and the napari reader see
    np.testing.assert_array_equal(raw.array, expected)


def test_a_seg_saved_without_the_preamble_reads_as_written(tmp_path, ct, liver):
    """A SEG re-saved without the 128-byte preamble (an older archive's export): the tree took it for a SEG
    (its kind is read by force) but reading it said it was damaged; read now as written, with the command
    that wrote it."""
    from lnq_napari.io.provenance import writer

    root = study(tmp_path)
    out = write_dicom_seg(root / "2-SEG" / "1-1.dcm", liver, root / "1-CT", command="predict")
    ds = pydicom.dcmread(out)
    del ds.file_meta
    ds.preamble = None
    bare = root / "2-SEG" / "00000001"
    pydicom.dcmwrite(bare, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    out.unlink()
    expected = (liver.array != 0).astype(np.uint8)
    np.testing.assert_array_equal(read_labels(root / "2-SEG").array, expected)
    np.testing.assert_array_equal(read_labels(bare, reference=ct).array, expected)
    assert writer(bare) == "predict"


def test_a_seg_of_an_enhanced_ct_lands_on_its_frames(tmp_path, ct, liver, enhanced_ct):
    """An Enhanced CT (one multi-frame file, frames stored out of order): its SEG (it was refused as "no
    DICOM CT slices") references its frames and reads back onto the CT's grid as written."""
    folder = enhanced_ct(tmp_path / "study" / "1-CT", order=[2, 0, 1])
    enhanced = read_volume(folder)
    np.testing.assert_allclose(enhanced.origin, ct.origin, atol=1e-6)
    labels = liver.with_array(liver.array, dicom_series_uid=enhanced.meta["dicom_series_uid"])
    out = write_dicom_seg(tmp_path / "study" / "2-SEG" / "1-1.dcm", labels, folder, model_version=VERSION)
    expected = (liver.array != 0).astype(np.uint8)
    np.testing.assert_array_equal(read_labels(out, reference=enhanced).array, expected)
    np.testing.assert_array_equal(read_labels(tmp_path / "study" / "2-SEG").array, expected)  # CT beside


def test_a_seg_of_an_enhanced_ct_with_planes_given_per_frame(tmp_path, ct, liver, enhanced_ct):
    """Pixel spacing and orientation in each frame's functional groups (the standard allows it): read,
    but the SEG was refused ("'Dataset' object has no attribute 'PixelMeasuresSequence'")."""
    import copy

    folder = enhanced_ct(tmp_path / "study" / "1-CT", order=[2, 0, 1])
    ds = pydicom.dcmread(folder / "IM0000.dcm")
    shared = ds.SharedFunctionalGroupsSequence[0]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        frame.PixelMeasuresSequence = copy.deepcopy(shared.PixelMeasuresSequence)
        frame.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
    del shared.PixelMeasuresSequence, shared.PlaneOrientationSequence
    ds.save_as(folder / "IM0000.dcm")
    enhanced = read_volume(folder)
    labels = liver.with_array(liver.array, dicom_series_uid=enhanced.meta["dicom_series_uid"])
    out = write_dicom_seg(tmp_path / "study" / "2-SEG" / "1-1.dcm", labels, folder, model_version=VERSION)
    expected = (liver.array != 0).astype(np.uint8)
    np.testing.assert_array_equal(read_labels(out, reference=enhanced).array, expected)
    by_frame = hd.seg.segread(out).get_pixels_by_source_frame(  # highdicom maps each frame to its source
        str(ds.SOPInstanceUID), source_frame_numbers=[1, 2, 3], segment_numbers=[1], combine_segments=True)
    z = [int(round(enhanced.physical_to_index([float(v) for v in f.PlanePositionSequence[0]
                                               .ImagePositionPatient])[0, 0]))
         for f in ds.PerFrameFunctionalGroupsSequence]
    np.testing.assert_array_equal(np.asarray(by_frame) > 0, expected[z] > 0)


def test_seg_among_its_ct_slices_or_a_level_down(tmp_path, ct, liver):
    flat = tmp_path / "flat"
    shutil.copytree(SERIES, flat)
    out = write_dicom_seg(flat / "seg.dcm", liver, flat)
    np.testing.assert_array_equal(read_labels(out).array, liver.array != 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SEG beside its CT is no other CT to warn about
        assert read_volume(flat).same_grid(ct)  # the folder is still the CT
    nested = tmp_path / "patient"  # <patient>/<study>/<series>/ with the SEG in a sibling study
    shutil.copytree(SERIES, nested / "study-a" / "ct")
    seg = write_dicom_seg(nested / "seg" / "seg.dcm", liver, nested / "study-a" / "ct")
    np.testing.assert_array_equal(read_labels(seg).array, liver.array != 0)



def test_a_seg_loose_above_its_series_folder_finds_its_ct_below(tmp_path, ct, liver):
    """``predict DATA -o DATA --format dicom-seg`` writes ``<case>-seg.dcm`` beside DATA's patient / study /
    series folders: opened on its own (read_labels, napari, measure) it was refused, its CT "not in DATA/
    or the folders beside it"."""
    data = tmp_path / "data"
    shutil.copytree(SERIES, data / "P0" / "ST" / "1-CT")  # a series it does not reference, found first
    series = shutil.move(other_series(tmp_path), data / "P1" / "ST" / "2-CT")
    seg = write_dicom_seg(data / "P1_ST_2-CT-seg.dcm", liver, series)
    back = read_labels(seg)
    np.testing.assert_array_equal(back.array, liver.array != 0)
    assert (back.spacing, back.origin, back.direction) == (ct.spacing, ct.origin, ct.direction)

def test_ct_grid_found_from_two_slices_equals_the_full_read(tmp_path):
    """Without a CT given, the SEG's grid comes from the series' first and last slices; it must be the grid
    read_volume gives the whole series, bit for bit, also when the gaps differ a little (< 1 %)."""
    template = pydicom.dcmread(next(SERIES.glob("*.dcm")))
    folder = tmp_path / "study" / "ct"
    folder.mkdir(parents=True)
    for k, z in enumerate([-40.0, -38.75, -37.5, -36.2531, -35.0, -33.75]):
        template.SOPInstanceUID = pydicom.uid.generate_uid()
        template.InstanceNumber, template.ImagePositionPatient = k + 1, [-235.2, -226.8, z]
        template.save_as(folder / f"{k}.dcm")
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 100:140, 200:260] = 1
    out = write_dicom_seg(tmp_path / "study" / "seg" / "seg.dcm", ct.with_array(mask), folder)
    back = read_labels(out)
    assert (back.shape, back.spacing, back.origin, back.direction) == (ct.shape, ct.spacing, ct.origin,
                                                                        ct.direction)
    np.testing.assert_array_equal(back.array, mask)


def test_a_seg_beside_a_damaged_ct_series_is_refused_not_placed_on_a_made_up_grid(tmp_path):
    """The SEG's grid comes from the series' two ends, which stand for the stack only when every slice is
    there once: a slice lost or doubled after the SEG was written is refused as a read of the CT refuses
    it (it was resampled onto 5 slices at 1.25 x 4/5 mm, with a warning blaming the grids)."""
    template = pydicom.dcmread(next(SERIES.glob("*.dcm")))
    folder = tmp_path / "study" / "ct"
    folder.mkdir(parents=True)
    for k in range(6):
        template.SOPInstanceUID = pydicom.uid.generate_uid()
        template.InstanceNumber, template.ImagePositionPatient = k + 1, [-235.2, -226.8, -40.0 + 1.25 * k]
        template.save_as(folder / f"{k}.dcm")
    ct = read_volume(folder)
    mask = np.zeros(ct.shape, np.uint8)
    mask[2:5, 100:140, 200:260] = 1
    out = write_dicom_seg(tmp_path / "study" / "seg" / "seg.dcm", ct.with_array(mask), folder)
    lost = pydicom.dcmread(folder / "2.dcm")
    (folder / "2.dcm").unlink()
    with pytest.raises(LNQError, match="DICOM slices in ct are unevenly spaced"):
        read_labels(out)
    lost.SOPInstanceUID = pydicom.uid.generate_uid()
    lost.ImagePositionPatient = [-235.2, -226.8, -40.0 + 1.25 * 3]  # back, but at slice 3's position
    lost.save_as(folder / "2.dcm")
    with pytest.raises(LNQError, match="DICOM series in ct has two slices at one position"):
        read_labels(out)


def test_a_seg_of_an_anonymised_series_is_written(tmp_path, ct, liver):
    """Anonymisers often remove patient and study attributes outright; the SEG carries them empty (DICOM
    Type 2) instead of failing with a reason that blamed the slices."""
    from lnq_napari.io.dicom_seg import ANONYMISED_TYPE2

    folder = tmp_path / "study" / "ct"
    shutil.copytree(SERIES, folder)
    for file in folder.glob("*.dcm"):
        ds = pydicom.dcmread(file)
        for keyword in ANONYMISED_TYPE2:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(file)
    out = write_dicom_seg(tmp_path / "study" / "seg" / "seg.dcm", liver, folder)
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, liver.array != 0)
    written = pydicom.dcmread(out, stop_before_pixels=True)
    assert (written.PatientID, written.StudyID, written.AccessionNumber) == ("", "", "")


def test_a_series_without_a_frame_of_reference_is_named_as_the_reason(tmp_path, liver):
    """highdicom's refusal was passed on with advice to check that the slices are complete images."""
    folder = tmp_path / "ct"
    shutil.copytree(SERIES, folder)
    for file in folder.glob("*.dcm"):
        ds = pydicom.dcmread(file)
        del ds.FrameOfReferenceUID
        ds.save_as(file)
    out = tmp_path / "seg.dcm"
    with pytest.raises(LNQError, match=r"slices without a Frame of Reference UID \(0020,0052\)"):
        write_dicom_seg(out, liver, folder)
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]


def test_reads_a_seg_written_by_dcmqi(tmp_path, ct):
    """An independent writer: dcmqi's SEG of the repository's liver/spine label map (tests/data/dicom-seg)."""
    path = Path(__file__).parent / "data" / "dicom-seg" / "liver_spine_dcmqi.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        spine = read_labels(DATA / "liver_spine_seg.nrrd", reference=ct, segment=2).array
        either = read_labels(DATA / "liver_spine_seg.nrrd", reference=ct).array
    node = read_labels(path, reference=ct)  # the segment coded and named as a lymph node
    assert node.meta["selected_segments"] == ["lymph node 7"]
    np.testing.assert_array_equal(node.array, spine)
    shutil.copytree(SERIES, tmp_path / "ct")
    shutil.copy(path, tmp_path / "ct" / "seg.dcm")
    liver = read_labels(tmp_path / "ct" / "seg.dcm", segment="Liver")  # the CT found beside it
    assert (liver.spacing, liver.origin, liver.direction) == (ct.spacing, ct.origin, ct.direction)
    assert liver.array.sum() > 0 and not np.any(liver.array & node.array)
    np.testing.assert_array_equal(liver.array | node.array, either)


@pytest.mark.skipif(shutil.which("segimage2itkimage") is None, reason="dcmqi (pip: dcmqi) not installed")
def test_dcmqi_reads_our_seg_as_we_do(tmp_path, ct, liver):
    """dcmqi (3D Slicer's SEG converter) reads a written SEG onto the same voxels and codes."""
    import json

    out = write_dicom_seg(tmp_path / "seg.dcm", liver, SERIES, model_version=VERSION)
    subprocess.run(["segimage2itkimage", "--inputDICOM", str(out), "--outputDirectory", str(tmp_path),
                    "--outputType", "nrrd"], check=True, capture_output=True, timeout=120)
    theirs = read_volume(tmp_path / "1.nrrd")  # cropped to the frames the SEG holds: here all three
    assert theirs.same_grid(ct)
    np.testing.assert_array_equal(theirs.array, liver.array != 0)
    (attributes,) = json.loads((tmp_path / "meta.json").read_text())["segmentAttributes"][0]
    assert attributes["SegmentedPropertyTypeCodeSequence"]["CodeValue"] == "59441001"
    assert attributes["SegmentAlgorithmType"] == "AUTOMATIC"


def test_written_seg_codes_references_and_algorithm(tmp_path, ct, liver):
    root = study(tmp_path)
    out = write_dicom_seg(root / "2-SEG" / "seg.dcm", liver, root / "1-CT", model_version=VERSION, edits=3)
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "BINARY" and ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.meta["dicom_series_uid"]
    assert ds.FrameOfReferenceUID == ct.meta["dicom_frame_of_reference"]
    assert ds.StudyInstanceUID == pydicom.dcmread(next(SERIES.glob("*.dcm"))).StudyInstanceUID
    (segment,) = ds.SegmentSequence
    assert segment.SegmentLabel == "lymph node"
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    kind = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == ("91723000", "SCT")
    assert (kind.CodeValue, kind.CodingSchemeDesignator) == ("59441001", "SCT")
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC" and segment.SegmentAlgorithmName == "lnq-napari"
    algorithm = hd.seg.segread(out).get_segment_description(1).algorithm_identification
    assert algorithm[0].AlgorithmVersion == short_version(VERSION) and len(short_version(VERSION)) <= 64
    assert VERSION in algorithm[0].AlgorithmParameters  # the whole version, where 64 characters do not fit
    assert short_version(VERSION) != short_version(VERSION + "x")


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["nodes", "empty", "manual"])
def test_dciodvfy_finds_no_errors(tmp_path, ct, liver, kind):
    root = study(tmp_path)
    labels = liver.with_array(np.zeros(liver.shape, np.uint8)) if kind == "empty" else liver
    version = None if kind == "manual" else VERSION
    out = write_dicom_seg(root / "2-SEG" / "seg.dcm", labels, root / "1-CT", model_version=version)
    report = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, timeout=120)
    text = report.stdout + report.stderr
    assert "Segmentation" in text  # it recognised the IOD
    errors = [line for line in text.splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_sparse_and_empty_seg_land_on_their_slices(tmp_path, ct):
    root = study(tmp_path)
    for z in (0, 2):
        mask = np.zeros(ct.shape, np.uint8)
        mask[z, 100:140, 300:330] = 1
        out = write_dicom_seg(root / "2-SEG" / "seg.dcm", ct.with_array(mask), root / "1-CT")
        assert int(pydicom.dcmread(out).NumberOfFrames) == 1  # empty frames left out
        np.testing.assert_array_equal(read_labels(out, reference=ct).array, mask)
    empty = write_dicom_seg(root / "2-SEG" / "seg.dcm", ct.with_array(np.zeros(ct.shape, np.uint8)),
                            root / "1-CT")
    assert read_labels(empty, reference=ct).array.sum() == 0


def test_coarser_seg_is_resampled_onto_the_ct_grid(tmp_path, ct):
    """A SEG drawn on a 2x coarser in-plane grid (half a fine pixel in): nearest neighbour gives each
    coarse pixel's 2 x 2 fine pixels, with a GridWarning."""
    coarse = np.zeros((3, 256, 256), np.uint8)
    coarse[1, 40:60, 100:130] = 1
    coarse[2, 200:210, 10:20] = 1
    sources = ct_files_in_z_order(ct)
    step = np.asarray(ct.spacing[:2])
    shift = np.array([0.5 * step[0], 0.5 * step[1], 0.0])
    positions = [hd.PlanePositionSequence("PATIENT", list(np.asarray(d.ImagePositionPatient, float) + shift))
                 for d in sources]
    measures = hd.PixelMeasuresSequence(pixel_spacing=[2 * step[1], 2 * step[0]], slice_thickness=1.0,
                                        spacing_between_slices=1.0)
    for d in sources:
        if not d.get("SpecificCharacterSet"):
            del d.SpecificCharacterSet
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=coarse, segmentation_type="BINARY",
        segment_descriptions=[segment_description(1, "Lymph node 4R")], series_instance_uid=hd.UID(),
        series_number=5, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        pixel_measures=measures, plane_positions=positions,
        plane_orientation=hd.PlaneOrientationSequence("PATIENT", [1, 0, 0, 0, 1, 0]))
    path = tmp_path / "coarse.dcm"
    seg.save_as(path)
    with pytest.warns(GridWarning, match="resampled onto the CT grid"):
        back = read_labels(path, reference=ct)
    np.testing.assert_array_equal(back.array, np.kron(coarse, np.ones((1, 2, 2), np.uint8)))


def test_seg_cropped_in_plane_is_placed_without_resampling(tmp_path, ct):
    """Frames smaller than the CT slices, starting a whole number of pixels in: placed, not resampled."""
    crop = np.zeros((3, 100, 120), np.uint8)
    crop[1, 10:40, 20:70] = 1
    sources = ct_files_in_z_order(ct)
    for d in sources:
        if not d.get("SpecificCharacterSet"):
            del d.SpecificCharacterSet
    offset = np.array([60 * ct.spacing[0], 50 * ct.spacing[1], 0.0])  # 60 columns, 50 rows in
    positions = [hd.PlanePositionSequence("PATIENT", list(np.asarray(d.ImagePositionPatient, float) + offset))
                 for d in sources]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=crop, segmentation_type="BINARY",
        segment_descriptions=[segment_description(1, "node")], series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", plane_positions=positions,
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=[ct.spacing[1], ct.spacing[0]],
                                                slice_thickness=1.0),
        plane_orientation=hd.PlaneOrientationSequence("PATIENT", [1, 0, 0, 0, 1, 0]))
    seg.save_as(tmp_path / "crop.dcm")
    expected = np.zeros(ct.shape, np.uint8)
    expected[1, 60:90, 80:130] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)
        np.testing.assert_array_equal(read_labels(tmp_path / "crop.dcm", reference=ct).array, expected)


def segment_description(number: int, label: str, code=codes.SCT.LymphNode) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=code, algorithm_type="MANUAL")


def write_segments(path: Path, ct: Volume, labels: list[tuple[str, object]], masks: np.ndarray,
                   kind: str = "BINARY") -> Path:
    """A SEG written by highdicom directly: segment k+1 = ``masks == k+1`` (BINARY, LABELMAP), or the
    probabilities ``masks`` of one segment (FRACTIONAL)."""
    sources = ct_files_in_z_order(ct)
    for d in sources:
        if not d.get("SpecificCharacterSet"):
            del d.SpecificCharacterSet
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=masks, segmentation_type=kind,
        segment_descriptions=[segment_description(k + 1, *named) for k, named in enumerate(labels)],
        series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(path)
    return path


def test_segments_are_chosen_by_code_label_or_number(tmp_path, ct):
    masks = np.zeros(ct.shape, np.uint8)
    masks[0, 10:50, 10:50] = 1
    masks[1, 200:220, 200:230] = 2
    masks[2, 300:310, 300:320] = 3
    heart, aorta = ("Heart", codes.SCT.Heart), ("Aorta", codes.SCT.Aorta)
    path = write_segments(tmp_path / "three.dcm", ct, [heart, ("LN", codes.SCT.LymphNode), aorta], masks)
    assert read_labels(path, reference=ct).meta["selected_segments"] == ["LN"]  # coded as a lymph node
    np.testing.assert_array_equal(read_labels(path, reference=ct).array, masks == 2)
    np.testing.assert_array_equal(read_labels(path, reference=ct, segment="heart").array, masks == 1)
    np.testing.assert_array_equal(read_labels(path, reference=ct, segment=3).array, masks == 3)
    with pytest.raises(LNQError, match="has no segment 'spleen'; its segments are: 'Heart'"):
        read_labels(path, reference=ct, segment="spleen")
    no_node = write_segments(tmp_path / "two.dcm", ct, [heart, aorta],
                             np.where(masks == 3, 2, np.where(masks == 1, 1, 0)).astype(np.uint8))
    with pytest.warns(UserWarning, match="no segment is coded or named as a lymph node; using all 2"):
        both = read_labels(no_node, reference=ct)
    np.testing.assert_array_equal(both.array, (masks == 1) | (masks == 3))


def test_touching_node_segments_are_measured_as_two_nodes(tmp_path, ct):
    """Two lymph-node segments that touch: two nodes in ``measure`` (the union joined them into one)."""
    masks = np.zeros(ct.shape, np.uint8)
    masks[1, 100:140, 100:130] = 1
    masks[1, 100:140, 130:160] = 2  # shares an edge with segment 1
    path = write_segments(tmp_path / "pair.dcm", ct, [("node a", codes.SCT.LymphNode),
                                                      ("node b", codes.SCT.LymphNode)], masks)
    rows, summary = api.measure(path, ct=SERIES)
    assert summary.n_nodes == 2 and sorted(r.voxels for r in rows) == [1200, 1200]
    np.testing.assert_array_equal(read_labels(path, reference=ct).array, masks > 0)


def test_fractional_and_labelmap_segs(tmp_path, ct):
    probability = np.zeros(ct.shape, np.float32)
    probability[1, 100:150, 100:150] = 0.8
    probability[1, 120:130, 300:330] = 0.3  # below one half: not a node
    path = write_segments(tmp_path / "fractional.dcm", ct, [("lymph node", codes.SCT.LymphNode)], probability,
                          kind="FRACTIONAL")
    np.testing.assert_array_equal(read_labels(path, reference=ct).array, probability >= 0.5)
    masks = np.zeros(ct.shape, np.uint8)
    masks[0, 10:50, 10:50] = 1
    masks[2, 200:220, 200:230] = 2
    path = write_segments(tmp_path / "labelmap.dcm", ct, [("Heart", codes.SCT.Heart),
                                                          ("lymph nodes", codes.SCT.LymphNode)], masks,
                          kind="LABELMAP")
    np.testing.assert_array_equal(read_labels(path, reference=ct).array, masks == 2)
    np.testing.assert_array_equal(read_labels(path, reference=ct, segment=1).array, masks == 1)


def other_series(tmp_path: Path) -> Path:
    """The same slices under another Series Instance UID (another reconstruction of the study)."""
    folder = tmp_path / "other"
    folder.mkdir()
    uid = pydicom.uid.generate_uid()
    for f in SERIES.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.save_as(folder / f.name)
    return folder


def test_seg_of_another_series_or_without_its_ct_is_refused(tmp_path, ct, liver):
    root = study(tmp_path)
    out = write_dicom_seg(root / "2-SEG" / "seg.dcm", liver, root / "1-CT")
    shutil.rmtree(root / "1-CT")
    missing = "is not in 2-SEG/, the folders beside it or the series folders below it"
    with pytest.raises(LNQError, match=missing):
        read_labels(out)
    other = read_volume(other_series(root))  # now beside the SEG, but another series
    with pytest.raises(LNQError, match=missing):
        read_labels(out)
    with pytest.raises(LNQError, match="drawn on CT series .*, but the CT given is series"):
        read_labels(out, reference=other)
    moved = other.with_array(np.zeros(other.shape, np.uint8))
    moved.origin = (5000.0, 0.0, 0.0)
    with pytest.raises(LNQError, match="do not overlap the CT"):
        read_labels(out, reference=moved)  # no DICOM UIDs to compare: geometry decides


@pytest.mark.parametrize("flips", [(False, True, False), (True, True, True)])
def test_labels_on_a_copy_of_the_series_stored_in_another_axis_order_are_written(tmp_path, ct, liver, flips):
    """Labels drawn on the series converted to a NIfTI (dcm2niix flips its rows) or an NRRD in another axis
    order, exported to that series: refused as "orientation differs" though the points are the series'."""
    stored = sitk.Flip(liver.to_sitk(), list(flips))  # the same points, axes flipped (x, y, z)
    stored = sitk.PermuteAxes(stored, [1, 0, 2])  # and rows first
    labels = Volume.from_sitk(stored)
    assert labels.direction != ct.direction
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, SERIES)
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, (liver.array != 0).astype(np.uint8))
    np.testing.assert_array_equal(highdicom_mask(out, ct), (liver.array != 0).astype(np.uint8))


def test_writing_needs_the_dicom_ct_and_its_grid(tmp_path, ct, liver):
    nrrd_ct = write_volume(tmp_path / "case-ct.nrrd", ct)
    with pytest.raises(LNQError, match="is not DICOM; save as .seg.nrrd instead"):
        write_dicom_seg(tmp_path / "seg.dcm", liver, nrrd_ct)
    shifted = Volume(liver.array, liver.spacing, (0.0, 0.0, 0.0), liver.direction)
    with pytest.raises(LNQError, match="not on the grid of the CT series"):
        write_dicom_seg(tmp_path / "seg.dcm", shifted, SERIES)
    with pytest.raises(LNQError, match="not on the grid of the CT series"):
        write_dicom_seg(tmp_path / "seg.dcm", Volume(liver.array[:2], liver.spacing, liver.origin), SERIES)
    with pytest.raises(LNQError, match="seg.nrrd names another image format; a DICOM SEG is written as"):
        write_dicom_seg(tmp_path / "seg.nrrd", liver, SERIES)
    assert not list(tmp_path.glob("*.dcm")) and not list(tmp_path.glob(".*"))  # nothing half-written
    assert not (tmp_path / "seg.nrrd").exists()


def test_a_seg_marked_a_prediction_of_a_command_that_writes_none_is_a_value_error(tmp_path, liver):
    """``command`` names the command whose prediction the SEG is: another was a bare KeyError."""
    with pytest.raises(ValueError, match=r"command='demo': a SEG is marked a prediction of 'predict' only"):
        write_dicom_seg(tmp_path / "seg.dcm", liver, SERIES, command="demo")
    assert not list(tmp_path.iterdir())


def test_a_seg_under_a_file_is_refused_before_writing(tmp_path, liver):
    blocker = tmp_path / "results"
    blocker.write_text("mine")
    with pytest.raises(LNQError, match="which is a file"):
        write_dicom_seg(blocker / "nodes.dcm", liver, SERIES)
    assert blocker.read_text() == "mine"


def test_malformed_segs_give_one_line(tmp_path, ct, liver):
    good = write_dicom_seg(tmp_path / "good.dcm", liver, SERIES)
    data = good.read_bytes()
    cases = {"truncated.dcm": data[: len(data) // 2], "header-only.dcm": data[:700],
             "garbage.dcm": data[:132] + bytes(range(256)) * 8}
    ds = pydicom.dcmread(good)
    ds.NumberOfFrames = 100000
    ds.save_as(tmp_path / "frames.dcm")
    ds = pydicom.dcmread(good)
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(tmp_path / "no-planes.dcm")
    ds = pydicom.dcmread(good)
    ds.SegmentSequence = []
    ds.save_as(tmp_path / "no-segments.dcm")
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    for name in [*cases, "frames.dcm", "no-planes.dcm", "no-segments.dcm"]:
        with pytest.raises(LNQError) as info:
            read_labels(tmp_path / name, reference=ct)
        assert "\n" not in str(info.value) and len(str(info.value)) < 400, name


def test_random_byte_damage_gives_lnqerror_or_a_mask(tmp_path, ct, liver):
    """Fuzz: 40 copies of a SEG with bytes overwritten at random; each reads or refuses in one line."""
    data = bytearray(write_dicom_seg(tmp_path / "good.dcm", liver, SERIES).read_bytes())
    rng = random.Random(16)
    refused = 0
    for k in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            at = rng.randrange(132, min(len(damaged), 6000))  # the header: where damage matters
            damaged[at] = rng.randrange(256)
        path = tmp_path / f"fuzz{k}.dcm"
        path.write_bytes(bytes(damaged))
        try:
            mask = read_labels(path, reference=ct).array
        except LNQError as exc:
            refused += 1
            assert "\n" not in str(exc)
        else:
            assert mask.shape == ct.shape and mask.dtype == np.uint8
    assert refused > 0


def test_measure_reads_a_seg_with_its_ct(tmp_path, ct, liver, capsys):
    root = study(tmp_path)
    out = write_dicom_seg(root / "2-SEG" / "seg.dcm", liver, root / "1-CT")
    rows, summary = api.measure(out, ct=root / "1-CT")
    assert summary.n_nodes >= 1 and sum(r.voxels for r in rows) == int((liver.array != 0).sum())
    assert main(["measure", str(out)]) == 0  # CT found beside it
    shutil.rmtree(root / "1-CT")
    assert main(["measure", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not in 2-SEG/" in err[0]


class _Stub:
    """A Predictor stand-in: no model is loaded."""

    def __init__(self, *args, **kwargs) -> None:
        pass


def test_predict_format_dicom_seg(tmp_path, ct, liver, monkeypatch, capsys):
    ids = liver.with_array(liver.array.astype(np.int32))
    monkeypatch.setattr(api, "Predictor", _Stub)
    monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
        None, Prediction(ids, ids, VERSION)))
    (written,) = api.predict(SERIES, tmp_path / "out", format="dicom-seg")
    assert written.name == "ct-3slice-seg.dcm"
    np.testing.assert_array_equal(read_labels(written, reference=ct).array, liver.array != 0)
    assert pydicom.dcmread(written).SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    nrrd_ct = write_volume(tmp_path / "case-ct.nrrd", ct)
    assert main(["predict", str(nrrd_ct), "-o", str(tmp_path / "none"), "--format", "dicom-seg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case-ct.nrrd is not DICOM; use the nrrd format" in err[0]
    assert not (tmp_path / "none").exists()
    assert main(["predict", str(written), "-o", str(tmp_path / "none")]) == 2
    assert "is a DICOM SEG (a segmentation), not a CT" in capsys.readouterr().err


def test_predict_over_a_tcia_tree_predicts_each_ct_series_and_skips_the_segs(tmp_path, ct, liver, monkeypatch,
                                                                              capsys):
    """A download laid out patient / study / series: every CT series below the root is predicted (case
    ids from the path below it), the SEG series beside them are left out; a tree without a CT is one line."""
    ids = liver.with_array(liver.array.astype(np.int32))
    monkeypatch.setattr(api, "Predictor", _Stub)
    monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
        None, Prediction(ids, ids, VERSION)))
    root = tmp_path / "CT Lymph Nodes"
    for patient in ("MED_001", "MED_002"):
        shutil.copytree(SERIES, root / patient / "study 1" / "2-CT")
    (root / "MED_001" / "study 1" / "2-CT" / "notes.txt").write_text("not a slice")
    seg_folder = root / "MED_001" / "study 1" / "3-Segmentation"
    seg_folder.mkdir()
    write_dicom_seg(seg_folder / "1-1.dcm", liver, SERIES)
    written = api.predict(root, tmp_path / "out")
    assert [w.name for w in written] == ["MED_001_study 1_2-CT-seg.nrrd", "MED_002_study 1_2-CT-seg.nrrd"]
    np.testing.assert_array_equal(read_labels(written[0], reference=ct).array, liver.array != 0)
    empty = tmp_path / "empty" / "a" / "b"
    empty.mkdir(parents=True)
    (empty / "readme.txt").write_text("no images")
    assert main(["predict", str(tmp_path / "empty"), "-o", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no CT: no *-ct.nrrd files, images or DICOM series" in err[0]
    assert not (tmp_path / "none").exists()


def test_workspace_export_of_a_case_converted_from_dicom(tmp_path, ct, liver, capsys):
    """A TCIA series converted to an LNQ-layout case: its label version goes back out as a DICOM SEG of
    that series (``workspace export --ct``), with the version's provenance, and is journaled."""
    case = "lnq2023-train-0001"
    write_volume(tmp_path / "data" / f"{case}-ct.nrrd", ct)
    partial = liver.with_array((liver.array == 2).astype(np.uint8))
    write_volume(tmp_path / "data" / f"{case}-seg.nrrd", partial)
    ws = api.init_workspace(tmp_path / "ws", data=tmp_path / "data")
    saved = api.save_labels(liver, case, workspace=tmp_path / "ws", model_version=VERSION, edits=4)
    out = tmp_path / "out" / "case-seg.dcm"
    assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(out), "--ct", str(SERIES)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, liver.array != 0)
    assert pydicom.dcmread(out).SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    (line,) = ws.journal("export")
    assert line["case"] == case and line["version"] == saved.version and line["format"] == "dicom-seg"
    assert line["series"] == ct.meta["dicom_series_uid"]  # the series the SEG references
    assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(tmp_path / "x.dcm")]) == 2
    err = capsys.readouterr().err
    assert "is not DICOM" in err and "give its folder (--ct" in err
    assert not (tmp_path / "x.dcm").exists()
    other = tmp_path / "other"  # another reconstruction (or patient) on the same grid: not this case's CT
    shutil.copytree(SERIES, other)
    series = pydicom.uid.generate_uid()
    for file in other.glob("*.dcm"):
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, pydicom.uid.generate_uid()
        ds.save_as(file)
    assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(tmp_path / "y.dcm"), "--ct",
                 str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"drawn on CT series {ct.meta['dicom_series_uid']}, which is not in" in err[0]
    assert not (tmp_path / "y.dcm").exists() and len(ws.journal("export")) == 1


def test_workspace_export_from_a_read_only_workspace_writes_the_seg_and_says_it_is_not_journaled(
        tmp_path, ct, liver, capsys, monkeypatch):
    """`workspace export` only reads the workspace, but journals the export: on a read-only copy it wrote
    the SEG, then failed (exit 2, "cannot write <ws>/.lnq.lock") with the SEG left there. Now the SEG is
    written, exit 0, and a warning says the journal misses the line."""
    import errno

    from lnq_napari.workspace import lock as lock_module

    case = "lnq2023-train-0001"
    write_volume(tmp_path / "data" / f"{case}-ct.nrrd", ct)
    partial = liver.with_array((liver.array == 2).astype(np.uint8))
    write_volume(tmp_path / "data" / f"{case}-seg.nrrd", partial)
    ws = api.init_workspace(tmp_path / "ws", data=tmp_path / "data")
    journal = ws.journal_path.read_bytes()

    class ReadOnlyLock:  # a read-only mount: the lock file cannot be opened for writing
        def __init__(self, path, **kwargs) -> None:
            self.path = path

        def acquire(self, *args, **kwargs) -> None:
            raise OSError(errno.EROFS, "Read-only file system", self.path)

    monkeypatch.setattr(lock_module, "_LOCKS", {})
    monkeypatch.setattr(lock_module, "FileLock", ReadOnlyLock)
    out = tmp_path / "out" / "case-seg.dcm"
    assert main(["workspace", "export", str(ws.root), case, "-o", str(out), "--ct", str(SERIES)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "Traceback" not in captured.err
    assert captured.err.strip() == (f"lnq-napari: warning: {out} is written, but the export is not in the "
                                    f"journal of {ws.root}: it cannot be written (Read-only file system)")
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, liver.array == 2)
    assert ws.journal_path.read_bytes() == journal


@pytest.mark.parametrize("code", ["EFBIG", "ENAMETOOLONG"])
def test_a_journal_line_that_cannot_be_written_after_the_seg_is_only_a_warning(tmp_path, ct, liver, capsys,
                                                                                monkeypatch, code):
    """The export's journal catch judged errors by the lock's five errnos, the command line by eight: a
    journal over the file size limit (EFBIG) or a name too long turned a written SEG into exit 2."""
    import errno
    import os

    from lnq_napari.workspace import Workspace

    case = "lnq2023-train-0001"
    write_volume(tmp_path / "data" / f"{case}-ct.nrrd", ct)
    partial = liver.with_array((liver.array == 2).astype(np.uint8))
    write_volume(tmp_path / "data" / f"{case}-seg.nrrd", partial)
    ws = api.init_workspace(tmp_path / "ws", data=tmp_path / "data")
    number = getattr(errno, code)

    def log(self, action, **fields):
        raise OSError(number, os.strerror(number), str(self.journal_path))

    monkeypatch.setattr(Workspace, "log", log)
    out = tmp_path / "out" / "case-seg.dcm"
    assert main(["workspace", "export", str(ws.root), case, "-o", str(out), "--ct", str(SERIES)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert captured.err.strip() == (f"lnq-napari: warning: {out} is written, but the export is not in the "
                                    f"journal of {ws.root}: it cannot be written ({os.strerror(number)})")
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, liver.array == 2)


def test_a_workspace_over_a_tcia_download_reads_its_series_and_segs(tmp_path, ct, liver, capsys):
    """``workspace init --data`` on patient / study / series folders: each CT series is a case, read in
    place; the SEG that references it becomes its v001; a SEG of no series here is left out with a warning;
    a label version goes back out as a SEG of its series without --ct."""
    root = tmp_path / "download"
    first, second = root / "MED_001" / "study" / "2-CT", root / "MED_002" / "study" / "2-CT"
    shutil.copytree(SERIES, first)
    shutil.copytree(SERIES, second)
    for file in second.glob("*.dcm"):  # another patient's series: other UIDs
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.2", pydicom.uid.generate_uid()
        ds.save_as(file)
    seg = root / "MED_001" / "study" / "3-Segmentation" / "1-1.dcm"
    seg.parent.mkdir()
    write_dicom_seg(seg, liver, SERIES)
    stray = tmp_path / "elsewhere.dcm"  # a SEG of a series not in the download
    write_dicom_seg(stray, liver, SERIES)
    orphan = root / "MED_002" / "study" / "4-Segmentation"
    orphan.mkdir()
    ds = pydicom.dcmread(stray)
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4.5"
    ds.save_as(orphan / "1-1.dcm")
    with pytest.warns(UserWarning, match="4-Segmentation/1-1.dcm is left out .*references no CT series"):
        ws = api.init_workspace(tmp_path / "ws", data=root)
    assert ws.case_ids() == ["MED_001_study_2-CT", "MED_002_study_2-CT"]
    case = "MED_001_study_2-CT"
    assert ws.ct_path(case) == first.resolve() and ws.seg_path(case) == seg.resolve()
    np.testing.assert_array_equal(ws.read_labels(case, "v001").array, liver.array != 0)
    assert ws.latest_version("MED_002_study_2-CT", "original") is None
    out = tmp_path / "out.dcm"
    assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(out)]) == 0
    np.testing.assert_array_equal(read_labels(out, reference=ct).array, liver.array != 0)
    assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(out)]) == 0  # ours: again
    capsys.readouterr()
    # a CT slice, the download's own SEG, the workspace's file: never written over (a slice was, and the
    # series read as one slice fewer; workspace.json was, and the workspace was gone)
    with pytest.raises(api.LNQError, match="is a folder; give the DICOM SEG a file name"):  # said as such
        api.export_dicom_seg(tmp_path, workspace=tmp_path / "ws", case=case)
    elsewhere = tmp_path / "elsewhere-ct.dcm"  # a DICOM file of someone else's
    shutil.copy(next(first.glob("*.dcm")), elsewhere)
    with pytest.raises(api.LNQError, match="elsewhere-ct.dcm already exists and is not a DICOM SEG"):
        api.export_dicom_seg(elsewhere, workspace=tmp_path / "ws", case=case)
    for theirs in (next(first.glob("*.dcm")), seg, tmp_path / "ws" / "workspace.json"):
        before = theirs.read_bytes()
        assert main(["workspace", "export", str(tmp_path / "ws"), case, "-o", str(theirs)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("is a file of the workspace or of its cases' data" in err[0]
                                  or "already exists and is not a DICOM SEG lnq-napari wrote" in err[0])
        assert theirs.read_bytes() == before


def test_export_from_a_workspace_needs_a_dicom_ct(tmp_path):
    small = np.zeros((4, 16, 16), np.int16)
    write_volume(tmp_path / "data" / "lnq2023-train-0001-ct.nrrd", Volume(small))
    write_volume(tmp_path / "data" / "lnq2023-train-0001-seg.nrrd", Volume(np.ones(small.shape, np.uint8)))
    case = api.init_workspace(tmp_path / "ws", data=tmp_path / "data").case_ids()[0]
    with pytest.raises(LNQError, match="is not DICOM"):
        api.export_dicom_seg(tmp_path / "x.dcm", workspace=tmp_path / "ws", case=case)
    with pytest.raises(LNQError, match="needs labels and their DICOM CT"):
        api.export_dicom_seg(tmp_path / "x.dcm")


def test_napari_reader_opens_a_seg_series_folder(tmp_path, ct, liver):
    """The npe2 reader needs no DICOM SEG code of its own: read_volume and read_labels take the SEG."""
    from lnq_napari.plugin._reader import napari_get_reader

    root = study(tmp_path)
    write_dicom_seg(root / "2-SEG" / "1-1.dcm", liver, root / "1-CT")
    reader = napari_get_reader(str(root / "2-SEG"))
    ((data, kwargs, kind),) = reader(str(root / "2-SEG"))
    assert kind == "labels" and data.shape == ct.shape
    np.testing.assert_array_equal(data > 0, liver.array != 0)
    assert kwargs["scale"] == tuple(ct.spacing[::-1]) and kwargs["translate"] == tuple(ct.origin[::-1])


def test_a_seg_series_folder_holding_an_older_seg_below_stays_a_seg_series(tmp_path, ct, liver):
    """``2-SEG/1-1.dcm`` with an older SEG in ``2-SEG/prev/``: any DICOM below made 2-SEG a folder of SEGs
    loose beside series folders, and read_volume and the napari reader refused it."""
    from lnq_napari.io.datasets import find_cases
    from lnq_napari.plugin._reader import napari_get_reader

    root = study(tmp_path)
    older = liver.with_array(np.zeros(ct.shape, np.uint8))
    older.array[1, 40:60, 40:60] = 1
    seg = write_dicom_seg(root / "2-SEG" / "1-1.dcm", liver, root / "1-CT")
    write_dicom_seg(root / "2-SEG" / "prev" / "1-1.dcm", older, root / "1-CT")
    np.testing.assert_array_equal(read_volume(root / "2-SEG").array > 0, liver.array != 0)
    ((data, _, kind),) = napari_get_reader(str(root / "2-SEG"))(str(root / "2-SEG"))
    assert kind == "labels" and np.array_equal(data > 0, liver.array != 0)
    with pytest.warns(UserWarning, match=r"prev/1-1\.dcm is left out: a second SEG of 1-CT"):
        (case,) = find_cases(root)
    assert case.seg == seg.resolve()


def test_measure_reads_the_series_a_seg_was_drawn_on_from_a_folder_of_several(tmp_path):
    """A folder holding the SEG's series and a larger one (a lung-kernel reconstruction): measure read the
    larger and refused ("drawn on CT series X, but the CT given is series Y")."""
    folder = tmp_path / "study"
    shutil.copytree(SERIES, folder)
    uid = pydicom.uid.generate_uid()
    files = sorted(SERIES.glob("*.dcm"))
    for k, z in enumerate(np.arange(-20.0, 20.0, 2.5)):  # a larger series of the same scan
        ds = pydicom.dcmread(files[0])
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + z]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"lung-{k:03d}.dcm")
    with pytest.warns(UserWarning, match="holds 2 DICOM CT series; reading the largest"):
        assert read_volume(folder).meta["dicom_series_uid"] == uid  # the largest, as before
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 200:230, 200:230] = 1
    seg = write_dicom_seg(tmp_path / "nodes.seg.dcm", labels, SERIES)
    rows, summary = api.measure(seg, folder)
    assert summary.n_nodes == 1 and rows[0].voxels == 900


def test_evaluate_scores_a_predicted_dicom_seg_on_the_truth_s_grid_and_pairs_seg_files_by_case(tmp_path):
    """predict --format dicom-seg wrote <case>-seg.dcm: evaluate refused a folder of them ("holds no label
    files") and a single one whose CT series was not beside it."""
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 200:230, 200:230] = 1
    preds, truth = tmp_path / "pred", tmp_path / "truth"
    seg = write_dicom_seg(preds / "c1-seg.dcm", labels, SERIES)  # its CT series elsewhere
    write_volume(truth / "c1-full.nrrd", labels)
    for pred, gt in ((seg, truth / "c1-full.nrrd"), (preds, truth)):
        (row,) = api.evaluate(pred, gt).cases
        assert row.case == "c1" and row.scores.dice == pytest.approx(1.0)


def test_a_seg_our_model_made_keeps_its_model_version_through_a_workspace_and_its_export(tmp_path):
    """predict's SEG (AUTOMATIC, lnq-napari and its model) was imported as hand-drawn (no model version)
    and `workspace export` wrote it as a MANUAL segment: a PACS showed the model's output as a reader's."""
    root = tmp_path / "data" / "P1"
    shutil.copytree(SERIES, root / "2-CT")
    ct = read_volume(SERIES)
    labels = ct.with_array(np.zeros(ct.shape, np.uint8))
    labels.array[1, 200:230, 200:230] = 1
    (root / "3-SEG").mkdir()
    write_dicom_seg(root / "3-SEG" / "1-1.dcm", labels, SERIES, model_version="m007-" + "x" * 80)
    ws = api.init_workspace(tmp_path / "ws", data=tmp_path / "data")
    (case,) = ws.case_ids()
    assert ws.version_info(case, "v001")["model_version"] == "m007-" + "x" * 80  # whole, not cut to 64
    out = api.export_dicom_seg(tmp_path / "out.seg.dcm", workspace=ws.root, case=case)
    item = pydicom.dcmread(out).SegmentSequence[0]
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "lnq-napari"
    write_dicom_seg(root / "3-SEG" / "1-1.dcm", labels, SERIES, model_version="m007", edits=3)  # edited
    edited = api.init_workspace(tmp_path / "ws3", data=tmp_path / "data")
    out = api.export_dicom_seg(tmp_path / "edited.seg.dcm", workspace=edited.root, case=case)
    assert pydicom.dcmread(out).SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # not AUTOMATIC
    write_dicom_seg(root / "3-SEG" / "1-1.dcm", labels, SERIES)  # drawn by hand: MANUAL, as before
    hand = api.init_workspace(tmp_path / "ws2", data=tmp_path / "data")
    assert hand.version_info(case, "v001")["model_version"] is None


def test_slice_positions_stored_to_a_tenth_of_a_mm_are_one_even_stack(tmp_path):
    """1.25 mm slices whose positions an export rounded to 0.1 mm (gaps 1.2 / 1.3 mm) were refused as
    unevenly spaced; a slice missing still is."""
    template = pydicom.dcmread(next(SERIES.glob("*.dcm")))
    folder = tmp_path / "ct"
    folder.mkdir()
    for k in range(8):
        template.SOPInstanceUID = pydicom.uid.generate_uid()
        template.InstanceNumber = k + 1
        template.ImagePositionPatient = [-235.2, -226.8, round(-40.0 + 1.25 * k, 1)]
        template.save_as(folder / f"{k}.dcm")
    ct = read_volume(folder)
    assert ct.shape[0] == 8 and ct.spacing[2] == pytest.approx(1.25, abs=0.02)
    (folder / "4.dcm").unlink()
    with pytest.raises(LNQError, match="unevenly spaced"):
        read_volume(folder)


def test_a_folder_holding_two_patients_series_is_refused(tmp_path):
    """A flat export of two patients read one of them (by series size, or at random when equal) under the
    folder's name."""
    folder = tmp_path / "export"
    shutil.copytree(SERIES, folder)
    uid = pydicom.uid.generate_uid()
    for k, file in enumerate(sorted(SERIES.glob("*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.PatientID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "OTHER-7", uid, pydicom.uid.generate_uid()
        ds.save_as(folder / f"other-{k}.dcm")
    with pytest.raises(LNQError, match="holds the DICOM series of 2 patients .*OTHER-7.*a folder of its own"):
        read_volume(folder)


def test_a_seg_of_a_folder_of_two_patients_series_is_refused_as_its_read_is(tmp_path, liver):
    """Labels that do not say their series, given a flat folder of two patients' series on one grid, which
    a read refuses: the SEG writer chose a series by a rule of its own (the first of the largest) and
    referenced the other patient's series without a word; it takes the read's choice, so the read's
    refusal stands and no SEG is written."""
    folder = tmp_path / "export"
    shutil.copytree(SERIES, folder)
    uid = pydicom.uid.generate_uid()
    for k, file in enumerate(sorted(SERIES.glob("*.dcm"))):
        ds = pydicom.dcmread(file)
        ds.PatientID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "OTHER-7", uid, pydicom.uid.generate_uid()
        ds.save_as(folder / f"0-other-{k}.dcm")  # listed first
    plain = liver.with_array(liver.array)  # no dicom_series_uid
    with pytest.raises(LNQError, match="holds the DICOM series of 2 patients .*OTHER-7.*a folder of its own"):
        write_dicom_seg(tmp_path / "s.dcm", plain, folder)
    assert not (tmp_path / "s.dcm").exists()


def test_a_seg_of_a_download_of_several_series_names_which_it_needs(tmp_path, ct, liver):
    """Labels that do not say their series, given a download of two patients' series: the SEG referenced
    the first series found below (another patient's, on the same grid)."""
    for patient in ("A", "B"):
        uid = pydicom.uid.generate_uid()
        (tmp_path / "download" / patient / "SE").mkdir(parents=True)
        for f in sorted(SERIES.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID, ds.PatientID = uid, patient
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(tmp_path / "download" / patient / "SE" / f.name)
    plain = liver.with_array(liver.array)  # no dicom_series_uid
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it.*point to that"):
        write_dicom_seg(tmp_path / "s.dcm", plain, tmp_path / "download")
    chosen = read_volume(tmp_path / "download" / "B" / "SE")
    out = write_dicom_seg(tmp_path / "s.dcm", liver.with_array(liver.array, **chosen.meta),
                          tmp_path / "download")  # the labels say which: that one
    referenced = hd.seg.segread(out).ReferencedSeriesSequence[0].SeriesInstanceUID
    assert referenced == chosen.meta["dicom_series_uid"]


@pytest.mark.parametrize(("label", "node"), [
    ("Lymph node", True), ("mediastinal nodes", True), ("LN 4R", True), ("LN7", True), ("ln_10L", True),
    ("Mediastinal LNs", True), ("aorta", False), ("LNQ scratch", False), ("kiln", False),
    ("lung nodule", False),
])
def test_a_segment_label_says_node_by_word_or_the_ln_abbreviation(label, node):
    """A DICOM SEG segment labelled "LN 4R" (no code) was no node: with an aorta segment beside it, both
    were read as nodes."""
    assert named_like_node(label) is node


def test_a_seg_finds_its_ct_series_whose_notes_sort_before_its_slices(tmp_path, liver):
    """The files of a series folder looked at for its Series UID were its first three, notes included:
    with notes sorted before the slices, a SEG beside it referenced "no CT series found here" and the
    case lost its labels. Files named as notes are never looked at as DICOM, by any question."""
    from lnq_napari.io.datasets import find_cases

    root = tmp_path / "download"
    series = root / "MED_001" / "study" / "2-CT"
    shutil.copytree(SERIES, series)
    for name in ("00a.txt", "00b.txt", "00c.json", "00d.xml"):
        (series / name).write_text("not a slice")
    assert sorted(p.name for p in series.iterdir())[3] == "00d.xml"  # the notes sort first
    (root / "MED_001" / "study" / "3-Segmentation").mkdir()
    write_dicom_seg(root / "MED_001" / "study" / "3-Segmentation" / "1-1.dcm", liver, SERIES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "left out" warning
        (case,) = find_cases(root)
    assert case.case_id == "MED_001_study_2-CT" and case.seg is not None
    labels = read_labels(case.seg, reference=read_volume(series))
    np.testing.assert_array_equal(labels.array, liver.array != 0)


def test_a_damaged_file_beside_a_seg_of_several_node_segments_is_named_once(tmp_path, ct, monkeypatch):
    """``read_segment_masks`` became a generator: the ``one_scan`` block its decorator opened closed before
    its body ran, and ``read_node_ids`` (its labels, then each segment's mask) looked through the SEG's
    folder twice, naming a damaged file beside the SEG twice."""
    from lnq_napari.io import dicom_tree
    from lnq_napari.io.readers import read_segment_masks
    from lnq_napari.quantify import read_node_ids

    masks = np.zeros(ct.shape, np.uint8)
    masks[1, 100:140, 100:130] = 1
    masks[1, 100:140, 130:160] = 2
    folder = study(tmp_path) / "2-SEG"
    folder.mkdir()
    write_segments(folder / "1.dcm", ct, [("node a", codes.SCT.LymphNode), ("node b", codes.SCT.LymphNode)],
                   masks)
    (folder / "bad.dcm").write_bytes(b"not DICOM at all" * 8)
    scanned, within = [], []
    scan, find = dicom_tree._scan_seg_files, dicom_tree.seg_file
    monkeypatch.setattr(dicom_tree, "_scan_seg_files", lambda f, *a: scanned.append(f) or scan(f, *a))
    monkeypatch.setattr(dicom_tree, "seg_file",
                        lambda *a: within.append(dicom_tree._SCANNED.get() is not None) or find(*a))
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        ids = read_node_ids(folder)
    assert [str(w.message) for w in heard if "is skipped" in str(w.message)] == [
        f"{folder / 'bad.dcm'} is skipped: it cannot be read as DICOM (damaged, or cut short); copy it again "
        "or move it away"]
    assert scanned == [folder] and len(np.unique(ids.array[ids.array > 0])) == 2
    within.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [int(m.sum()) for m in read_segment_masks(folder, ids.meta["segment_keys"])] == [1200, 1200]
    assert within == [True]  # the generator's body runs in its own block
