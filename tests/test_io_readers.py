"""read_volume / read_labels / write_volume on real files and random grids."""

from __future__ import annotations

import gzip
import shutil
import tempfile
import warnings
from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from lnq_napari.errors import LNQError
from lnq_napari.io import Volume, read_labels, read_volume, write_volume
from lnq_napari.io.layout import ct_inputs
from lnq_napari.io.readers import read_grid
from lnq_napari.io.volume import check_grid

DATA = Path(__file__).parent / "data"
PYNRRD = DATA / "pynrrd"
DICOM = DATA / "dcmqi" / "ct-3slice"


def sitk_volume(path: Path) -> Volume:
    """The independent oracle: SimpleITK's own reading of a file."""
    return Volume.from_sitk(sitk.ReadImage(str(path)))


def assert_same_geometry(a: Volume, b: Volume, tol: float = 1e-9) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol, rtol=0)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol, rtol=0)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol, rtol=0)


@pytest.fixture(scope="module")
def ball() -> Volume:
    return sitk_volume(PYNRRD / "BallBinary30x30x30.nrrd")


@pytest.mark.parametrize("name", [
    "BallBinary30x30x30.nrrd",
    "BallBinary30x30x30.nhdr",
    "BallBinary30x30x30_gz.nrrd",
    "BallBinary30x30x30_bz2.nrrd",
    "BallBinary30x30x30_gz_lineskip.nrrd",
    "BallBinary30x30x30_gz_byteskip_minus_one.nrrd",
    "BallBinary30x30x30_byteskip_minus_one.nhdr",
    "BallBinary30x30x30_byteskip_minus_one_nifti.nhdr",
    "BallBinary30x30x30.nii.gz",
])
def test_pynrrd_variants_read_the_same_ball(name, ball):
    volume = read_volume(PYNRRD / name)
    assert volume.shape == (30, 30, 30)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, ball.array)
    assert_same_geometry(volume, ball)
    assert 0 < np.count_nonzero(volume.array) < volume.array.size


def test_custom_fields_are_kept_in_meta(tmp_path, ball):
    head, _, data = (PYNRRD / "BallBinary30x30x30.nrrd").read_bytes().partition(b"\n\n")
    custom = [line for line in (PYNRRD / "test_customFields.nrrd").read_text().splitlines() if ":=" in line]
    path = tmp_path / "ball_custom.nrrd"
    path.write_bytes(head + b"\n" + "\n".join(custom).encode() + b"\n\n" + data)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, ball.array)
    assert volume.meta["int"] == "24"
    assert volume.meta["string"] == "This is a long string of information that is important."
    assert volume.meta["double matrix"] == "(1.2,0.3,0) (0,1.5,0) (0,-0.55,1.6)"
    assert "sizes" not in volume.meta and "space directions" not in volume.meta


@pytest.mark.parametrize(("name", "message"), [
    ("test1d_ascii.nrrd", "is 1D; a CT or label volume must be 3D"),
    ("test2d_ascii.nrrd", "is 2D; a CT or label volume must be 3D"),
    ("test_customFields.nrrd", "is 1D"),
    ("BallBinary30x30x30_byteskip_minus_five.nhdr", "byteskip"),
    ("BallBinary30x30x30_nifti.nhdr", "cannot read"),  # gzip NIfTI read as raw data: wrong size
])
def test_unusable_real_files_raise(name, message):
    with pytest.raises(LNQError, match=message):
        read_volume(PYNRRD / name)


def test_missing_file_and_missing_detached_data(tmp_path):
    with pytest.raises(LNQError, match="does not exist"):
        read_volume(tmp_path / "nope.nrrd")
    shutil.copy(PYNRRD / "BallBinary30x30x30.nhdr", tmp_path)
    with pytest.raises(LNQError, match="BallBinary30x30x30.raw"):
        read_volume(tmp_path / "BallBinary30x30x30.nhdr")


@pytest.mark.parametrize("name", ["BallBinary30x30x30.nrrd", "BallBinary30x30x30_gz.nrrd",
                                  "BallBinary30x30x30_bz2.nrrd"])
def test_truncated_nrrd_raises(tmp_path, name):
    data = (PYNRRD / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LNQError, match="truncated"):
        read_volume(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_truncated_sitk_files_raise(tmp_path, suffix, ball):
    path = write_volume(tmp_path / f"ball{suffix}", ball)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LNQError, match="truncated"):
        read_volume(path)


def test_text_files_and_unknown_formats_raise(tmp_path):
    (tmp_path / "notes.nrrd").write_text("these are my notes, not an image\n")
    with pytest.raises(LNQError, match="not an NRRD"):
        read_volume(tmp_path / "notes.nrrd")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(LNQError, match="not a supported image"):
        read_volume(tmp_path / "notes.txt")
    (tmp_path / "binary.nrrd").write_bytes(gzip.compress(b"\x00\xff" * 100))
    with pytest.raises(LNQError, match="cannot read"):
        read_volume(tmp_path / "binary.nrrd")


def test_folder_without_dicom_raises(tmp_path):
    with pytest.raises(LNQError, match="without a DICOM series"):
        read_volume(tmp_path)
    shutil.copy(PYNRRD / "BallBinary30x30x30.nrrd", tmp_path)
    with pytest.raises(LNQError, match="without a DICOM series"):
        read_volume(tmp_path)


def test_dicom_series_folder():
    volume = read_volume(DICOM)
    assert volume.shape == (3, 512, 512)
    assert volume.array.dtype == np.int16
    # Independent oracle: the slices' own position and pixel-spacing tags.
    positions, pixel_spacing = [], None
    for f in sorted(DICOM.glob("*.dcm")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        reader.ReadImageInformation()
        positions.append([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        pixel_spacing = [float(v) for v in reader.GetMetaData("0028|0030").split("\\")]
    z = sorted(p[2] for p in positions)
    np.testing.assert_allclose(volume.spacing, [pixel_spacing[1], pixel_spacing[0], z[1] - z[0]], atol=1e-5)
    np.testing.assert_allclose(volume.spacing[2], 1.0, atol=1e-5)  # slice distance, not the 1.25 mm thickness
    np.testing.assert_allclose(volume.origin, [positions[0][0], positions[0][1], z[0]], atol=1e-5)
    np.testing.assert_allclose(volume.direction, np.eye(3).ravel(), atol=1e-9)
    assert volume.array.min() <= -1000 and volume.array.max() >= 1000  # air and bone in HU


def _stack(folder: Path, positions, mutate=None) -> Path:
    """The first slice of the test series written at each of ``positions`` (a new series); ``mutate(ds,
    k)`` changes slice k's header before it is written."""
    import pydicom

    template = pydicom.dcmread(sorted(DICOM.glob("*.dcm"))[0])
    template.SeriesInstanceUID = pydicom.uid.generate_uid()
    folder.mkdir(parents=True)
    for k, position in enumerate(positions):
        ds = pydicom.dcmread(sorted(DICOM.glob("*.dcm"))[0]) if mutate else template
        ds.SeriesInstanceUID = template.SeriesInstanceUID
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        if position is None:
            ds.pop("ImagePositionPatient", None)
        else:
            ds.ImagePositionPatient = list(position)
        if mutate:
            mutate(ds, k)
        ds.save_as(folder / f"{k}.dcm")
    return folder


STRAIGHT = [(-235.2, -226.8, -40.0 + 5.0 * k) for k in range(6)]


@pytest.mark.parametrize(("change", "message"), [
    (lambda ds, k: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"), "MONOCHROME1 .* inverted"),
    (lambda ds, k: k in (2, 3) and ds.pop("RescaleIntercept"), "2 of the 6 .* lack their rescale intercept"),
    (lambda ds, k: k == 0 and ds.pop("RescaleIntercept"), "1 of the 6 DICOM slices .* rescale intercept"),
    (lambda ds, k: k == 0 and ds.pop("ImageOrientationPatient"), "1 of the 6 DICOM slices .* lack their "
                                                                 "orientation"),
    (lambda ds, k: k == 4 and setattr(ds, "PixelSpacing", [0.9, 0.9]), "do not share one pixel spacing"),
])
def test_slices_that_would_not_read_as_one_hu_volume_are_refused(tmp_path, change, message):
    """MONOCHROME1 read as inverted HU (air +999); a slice without its rescale intercept read 1024 HU too
    high (the first one: the whole volume as unsigned, negative HU wrapped); the first slice without its
    orientation skipped every slice check; a slice of another pixel spacing was ignored. All silent."""
    with pytest.raises(LNQError, match=message):
        read_volume(_stack(tmp_path / "series", STRAIGHT, change))


def test_a_series_without_pixel_spacing_is_read_at_1_mm_with_a_warning(tmp_path):
    series = _stack(tmp_path / "series", STRAIGHT, lambda ds, k: ds.pop("PixelSpacing"))
    with pytest.warns(UserWarning, match="give no pixel spacing; taken as 1 x 1 mm"):
        volume = read_volume(series)
    assert volume.spacing[:2] == (1.0, 1.0)


def test_a_gantry_tilted_series_is_refused_and_a_straight_one_read(tmp_path):
    """A 15 degree tilt moves each 5 mm slice 1.34 mm in y: read as a volume of orthogonal axes the last of
    8 slices lay 9 mm from where the scanner put it (silently). Position rounding is no tilt."""
    tilt = np.tan(np.radians(15.0))
    tilted = _stack(tmp_path / "tilted", [(-235.2, -226.8 + tilt * 5.0 * k, -40.0 + 5.0 * k)
                                          for k in range(8)])
    with pytest.raises(LNQError, match=r"tilted \(gantry tilt about 15.0 degrees: its slices drift 9.4 mm"):
        read_volume(tilted)
    rounded = _stack(tmp_path / "rounded", [(-235.2 + 0.004 * (k % 2), -226.8, -40.0 + 5.0 * k)
                                            for k in range(8)])
    assert read_volume(rounded).shape == (8, 512, 512)


def test_slices_without_a_position_are_refused(tmp_path):
    """Without Image Position (Patient) the slices were read out of order at a made-up spacing (one slice
    without it) or at 1 mm from the origin (none with it)."""
    one = _stack(tmp_path / "one", [(-235.2, -226.8, -40.0 + 5.0 * k) if k != 3 else None for k in range(6)])
    with pytest.raises(LNQError, match="1 of the 6 DICOM slices in one lack their position"):
        read_volume(one)
    with pytest.raises(LNQError, match="6 of the 6 DICOM slices in none lack their position"):
        read_volume(_stack(tmp_path / "none", [None] * 6))


def test_single_dicom_file_reads_its_series():
    volume = read_volume(DICOM / "02.dcm")
    np.testing.assert_array_equal(volume.array, read_volume(DICOM).array)


def test_real_chest_ct_matches_simpleitk():
    path = Path(slicerio.get_testdata_file("CTChest4.nrrd"))
    volume = read_volume(path)
    oracle = sitk_volume(path)
    assert volume.shape == (34, 128, 128)
    assert volume.array.dtype == np.int32
    np.testing.assert_array_equal(volume.array, oracle.array)
    assert_same_geometry(volume, oracle, tol=1e-9)
    assert volume.direction[0] < 0 and volume.direction[4] < 0  # stored with flipped x and y


def _write_header_variant(path: Path, header: dict, array: np.ndarray) -> None:
    nrrd.write(str(path), array, header, index_order="C")


SPACE_FLIPS = {"right-anterior-superior": [-1, -1, 1], "left-anterior-superior": [1, -1, 1],
               "left-posterior-superior": [1, 1, 1], None: [1, 1, 1]}


@pytest.mark.parametrize("space", list(SPACE_FLIPS))
def test_nrrd_spaces_match_simpleitk(tmp_path, space):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 100, (4, 5, 6)).astype(np.int16)
    rotation = Rotation.random(random_state=7).as_matrix() * np.array([0.7, 1.3, 2.9])[None, :]
    header = {"space directions": rotation.T, "space origin": np.array([12.5, -40.25, 103.0]),
              "kinds": ["domain"] * 3}
    if space is None:
        header["space dimension"] = 3
    else:
        header["space"] = space
    path = tmp_path / "variant.nrrd"
    _write_header_variant(path, header, array)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, array)
    assert_same_geometry(volume, sitk_volume(path), tol=1e-9)
    np.testing.assert_allclose(volume.spacing, [0.7, 1.3, 2.9], atol=1e-9)
    expected_origin = np.array([12.5, -40.25, 103.0]) * SPACE_FLIPS[space]
    np.testing.assert_allclose(volume.origin, expected_origin, atol=1e-12)


def test_nrrd_with_spacings_only(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "spacings.nrrd"
    _write_header_variant(path, {"spacings": [0.5, 0.75, 2.5]}, array)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == (0.5, 0.75, 2.5)
    assert_same_geometry(volume, sitk_volume(path))


@pytest.mark.parametrize(("unit", "mm"), [("cm", 10.0), ("m", 1000.0), ("um", 1e-3), ("mm", 1.0),
                                          ("???", 1.0)])  # Teem's unknown unit: mm, as every reader takes it
def test_nrrd_space_units_are_converted_to_mm_and_kept_by_a_round_trip(tmp_path, unit, mm):
    """'space units' other than mm were ignored: a CT in cm read 10x too small (spacing and origin)."""
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    steps, place = np.array([0.8, 0.7, 3.0]), np.array([10.0, -20.0, 300.0])  # in mm
    path = tmp_path / "units.nrrd"
    nrrd.write(str(path), array, {"space": "left-posterior-superior", "space directions": np.diag(steps / mm),
                                  "space origin": place / mm, "space units": [unit] * 3})
    volume = read_volume(path)
    np.testing.assert_allclose(volume.spacing, steps)
    np.testing.assert_allclose(volume.origin, place)
    again = read_volume(write_volume(tmp_path / "again.nrrd", volume))
    assert_same_geometry(again, volume, tol=1e-9)
    spacings = tmp_path / "spacings.nrrd"
    nrrd.write(str(spacings), array, {"spacings": steps / mm, "units": [unit] * 3})
    np.testing.assert_allclose(read_volume(spacings).spacing, steps)


def test_nrrd_units_named_fewer_times_than_axes_hold_for_every_axis(tmp_path):
    """A 'units' or 'space units' field with one entry (or an empty one) raised IndexError or was refused
    as no length (a review); one unit named fewer times than the axes holds for all of them."""
    array = np.zeros((2, 3, 4), np.int16)
    for name, header in (("one.nrrd", {"spacings": [0.1, 0.1, 0.3], "units": ["cm"]}),
                         ("space.nrrd", {"space": "left-posterior-superior", "space units": ["cm"],
                                         "space directions": np.diag([0.1, 0.1, 0.3])})):
        nrrd.write(str(tmp_path / name), array, header)
        np.testing.assert_allclose(read_volume(tmp_path / name).spacing, (1.0, 1.0, 3.0))
    nrrd.write(str(tmp_path / "mixed.nrrd"), array, {"spacings": [0.1, 0.1, 0.3], "units": ["cm", "mm"]})
    with pytest.raises(LNQError, match="mixed.nrrd gives 2 units .* for 3 axes"):
        read_volume(tmp_path / "mixed.nrrd")


def test_nrrd_in_an_unknown_unit_is_refused(tmp_path):
    path = tmp_path / "furlong.nrrd"
    nrrd.write(str(path), np.zeros((2, 3, 4), np.int16), {"space": "left-posterior-superior",
                                                           "space directions": np.eye(3),
                                                           "space units": ["furlong"] * 3})
    with pytest.raises(LNQError, match="furlong.nrrd gives its geometry in unit.* furlong .*re-save it"):
        read_volume(path)


def test_nrrd_without_spacing_or_with_a_nan_origin_is_read_with_a_warning(tmp_path):
    """No spacing at all: 1 mm, said (node sizes depend on it); a NaN origin: 0, said; a spacing given:
    no warning."""
    import warnings

    array = np.zeros((2, 3, 4), dtype=np.int16)
    bare, nan_origin = tmp_path / "bare.nrrd", tmp_path / "nan-origin.nrrd"
    _write_header_variant(bare, {}, array)
    _write_header_variant(nan_origin, {"space": "left-posterior-superior", "space directions": np.eye(3),
                                       "space origin": np.array([np.nan, 0.0, 0.0])}, array)
    with pytest.warns(UserWarning, match="bare.nrrd gives no voxel spacing .* taken as 1 x 1 x 1 mm"):
        assert read_volume(bare).spacing == (1.0, 1.0, 1.0)
    with pytest.warns(UserWarning, match="nan-origin.nrrd has a damaged space origin"):
        assert read_volume(nan_origin).origin == (0.0, 0.0, 0.0)
    _write_header_variant(bare, {"spacings": [0.5, 0.75, 2.5]}, array)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_volume(bare)


def test_a_4d_ct_with_one_component_is_its_3d_volume(tmp_path):
    """A 4D NRRD or MHA with a single component or time point (size-1 extra axis) was refused as 4D."""
    import SimpleITK as sitk

    hu = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 30  # z, y, x
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.5, 0, 0], [0, 1.5, 0], [0, 0, 3.0]]),
              "space origin": np.array([1.0, 2.0, 3.0])}
    path = tmp_path / "one.nrrd"
    _write_header_variant(path, header, np.moveaxis(hu[np.newaxis], 0, -1))
    ct = read_volume(path)
    assert ct.shape == (3, 4, 5) and ct.spacing == (1.5, 1.5, 3.0) and ct.origin == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(ct.array, hu)
    image = sitk.JoinSeries([sitk.GetImageFromArray(hu)])  # x, y, z, t with one time point
    sitk.WriteImage(image, str(tmp_path / "one.mha"))
    np.testing.assert_array_equal(read_volume(tmp_path / "one.mha").array, hu)


@pytest.mark.parametrize(("kind", "components"), [("RGB-color", 3), ("RGBA-color", 4)])
def test_a_colour_nrrd_is_called_a_colour_image(tmp_path, kind, components):
    """An RGB NRRD was refused as '4D ... (a 3D Slicer segmentation with layers is a label file ...)'."""
    header = {"space": "left-posterior-superior", "kinds": [kind, "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.5, 0, 0], [0, 1.5, 0], [0, 0, 3.0]])}
    path = tmp_path / "colour.nrrd"
    _write_header_variant(path, header, np.zeros((5, 4, 3, components), np.uint8))
    with pytest.raises(LNQError, match=f"has {components} values per voxel .a colour image") as err:
        read_volume(path)
    assert "segmentation" not in str(err.value)


def test_4d_nrrd_with_list_axis_is_refused_for_ct_but_read_as_layers_for_labels(tmp_path):
    layers = np.zeros((2, 3, 4, 5), dtype=np.uint8)  # (layer, z, y, x)
    layers[0, 1, 1, 1] = 1
    layers[1, 2, 3, 4] = 1
    data = np.moveaxis(layers, 0, -1)  # C order of header axes (list, x, y, z)
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.5, 0, 0], [0, 1.5, 0], [0, 0, 3.0]]),
              "space origin": np.array([1.0, 2.0, 3.0])}
    path = tmp_path / "layers.nrrd"
    _write_header_variant(path, header, data)
    with pytest.raises(LNQError, match="4D"):
        read_volume(path)
    labels = read_labels(path)
    assert labels.shape == (3, 4, 5)
    assert labels.spacing == (1.5, 1.5, 3.0) and labels.origin == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(np.argwhere(labels.array), [[1, 1, 1], [2, 3, 4]])


def test_labels_values_are_mapped_or_refused(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[0, 0, 0], array[1, 1, 1], array[2, 2, 2] = 1, 2, 255
    path = write_volume(tmp_path / "multi.nrrd", Volume(array, (1, 1, 2)))
    labels = read_labels(path)
    assert labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.array, (array != 0).astype(np.uint8))
    np.testing.assert_array_equal(read_labels(path, segment=2).array, (array == 2).astype(np.uint8))
    with pytest.raises(LNQError, match="no named segments"):
        read_labels(path, segment="lymph node")

    prob = write_volume(tmp_path / "prob.nii.gz", Volume(np.full((2, 3, 4), 0.3, dtype=np.float32)))
    with pytest.raises(LNQError, match="probability map"):
        read_labels(prob)
    neg = write_volume(tmp_path / "neg.mha", Volume(-np.ones((2, 3, 4), dtype=np.int16)))
    with pytest.raises(LNQError, match="negative"):
        read_labels(neg)
    whole = write_volume(tmp_path / "whole.nii.gz", Volume(np.array([[[0.0, 1.0, 2.0]]], dtype=np.float32)))
    np.testing.assert_array_equal(read_labels(whole).array, [[[0, 1, 1]]])


def test_dcmqi_labels_align_onto_the_dicom_series():
    ct = read_volume(DICOM)
    for name in ["liver_spine_seg.nrrd", "heart_seg.nrrd"]:
        raw = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "dcmqi" / name)))
        assert set(np.unique(raw)) - {0} <= {1, 2, 3}
        labels = read_labels(DATA / "dcmqi" / name, reference=ct)
        assert (labels.spacing, labels.origin, labels.direction) == (ct.spacing, ct.origin, ct.direction)
        np.testing.assert_array_equal(labels.array, (raw != 0).astype(np.uint8))


# --- round trips on random grids -------------------------------------------------------------------------

def random_direction(seed: int, flips: tuple[bool, bool, bool]) -> np.ndarray:
    rotation = Rotation.random(random_state=seed).as_matrix()
    return rotation * np.where(flips, -1.0, 1.0)[None, :]  # flipping columns: determinant -1 or +1


@st.composite
def volumes(draw, dtype=None):
    shape = tuple(draw(st.integers(1, 6)) for _ in range(3))
    dtype = dtype or draw(st.sampled_from([np.int16, np.uint8, np.float32, np.int32]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    array = (rng.normal(0, 300, shape) if np.dtype(dtype).kind == "f" else rng.integers(0, 120, shape))
    spacing = tuple(draw(st.floats(0.3, 6.0)) for _ in range(3))
    origin = tuple(draw(st.floats(-400.0, 400.0)) for _ in range(3))
    flips = tuple(draw(st.booleans()) for _ in range(3))
    direction = random_direction(seed, flips)
    return Volume(array.astype(dtype), spacing, origin, direction.ravel())


TOLERANCE = {".nrrd": 1e-9, ".mha": 1e-9, ".nii.gz": 1e-4}  # NIfTI stores float32 geometry


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
@settings(max_examples=20, deadline=None)
@given(volume=volumes())
def test_round_trip_random_grids(suffix, volume):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_volume(Path(tmp) / f"v{suffix}", volume)
        back = read_volume(path)
        np.testing.assert_array_equal(back.array, volume.array)
        assert back.array.dtype == volume.array.dtype
        assert_same_geometry(back, volume, tol=TOLERANCE[suffix])
        # SimpleITK reads the same grid from what we wrote (NRRD: our header writer vs ITK's reader).
        assert_same_geometry(sitk_volume(path), volume, tol=TOLERANCE[suffix])
        assert list(Path(tmp).iterdir()) == [path]  # no temp files left


def test_write_volume_keeps_meta_and_refuses_unknown_suffix(tmp_path):
    volume = Volume(np.ones((2, 2, 2), dtype=np.int16), meta={"source": "scanner 3", "count": 4})
    back = read_volume(write_volume(tmp_path / "a.nrrd", volume))
    assert back.meta == {"source": "scanner 3"}  # non-string values are not header fields
    with pytest.raises(LNQError, match="cannot write"):
        write_volume(tmp_path / "a.png", volume)
    assert not (tmp_path / "a.png").exists()


def test_multi_member_gzip_nifti_is_not_mistaken_for_truncated(tmp_path, ball):
    plain = write_volume(tmp_path / "ball.nii", ball).read_bytes()
    half = len(plain) // 2
    path = tmp_path / "two_members.nii.gz"  # what `cat a.gz b.gz` or some pipelines produce
    path.write_bytes(gzip.compress(plain[:half]) + gzip.compress(plain[half:]))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, ball.array)


def test_big_endian_nrrd(tmp_path):
    array = (np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30).astype(">i2")
    path = tmp_path / "big.nrrd"
    nrrd.write(str(path), array, {"space": "left-posterior-superior", "endian": "big"}, index_order="C")
    assert b"endian: big" in path.read_bytes()[:400]
    volume = read_volume(path)
    assert volume.array.dtype == np.int16 and volume.array.dtype.isnative
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(volume.to_sitk()), array)


@pytest.mark.parametrize("dtype", [">i2", ">f4", np.float16])
def test_a_volume_of_an_array_simpleitk_has_no_type_for_goes_to_simpleitk(tmp_path, dtype):
    """A Volume built in Jupyter on nibabel's ``dataobj`` of a big-endian NIfTI (or a float16 array):
    find_nodes, measure, evaluate and write_volume(.mha) stopped with SimpleITK's TypeError "dtype: >i2
    is not supported"."""
    array = (np.arange(60).reshape(3, 4, 5) - 30).astype(dtype)
    volume = Volume(array, (0.7, 0.8, 2.5), (1.0, 2.0, 3.0))
    image = volume.to_sitk()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)
    assert image.GetSpacing() == (0.7, 0.8, 2.5)
    back = read_volume(write_volume(tmp_path / "v.mha", volume))
    np.testing.assert_array_equal(back.array, array)
    assert back.array.dtype.isnative


def test_dicom_files_without_extension(tmp_path):
    for i, f in enumerate(sorted(DICOM.glob("*.dcm"))):
        shutil.copy(f, tmp_path / f"IM{i:04d}")
    np.testing.assert_array_equal(read_volume(tmp_path / "IM0001").array, read_volume(DICOM).array)
    np.testing.assert_array_equal(read_volume(tmp_path).array, read_volume(DICOM).array)


@pytest.mark.parametrize("field", ["centerings", "centers"])
@pytest.mark.parametrize("centerings", [None, ["cell"] * 3, ["node"] * 3, ["node", "cell", "node"]])
def test_axis_mins_place_the_first_voxel_as_itk_and_slicer_do(tmp_path, centerings, field):
    """An NRRD without space directions places its grid by 'axis mins': the edge of the first voxel's
    cell unless the axis is node-centred (NRRD's default centring is cell). It was read as the centre
    always, so a predicted mask sat half a voxel (1.5 mm along 3 mm slices) off the CT in 3D Slicer. The
    field's other name, 'centers' (which pynrrd leaves a string), was ignored: node-centred axes read as
    cell-centred, half a voxel off ITK's grid."""
    header = {"spacings": [0.8, 0.9, 2.5], "axis mins": [-10.0, 20.0, -300.0], "encoding": "raw"}
    path = tmp_path / "mins.nrrd"
    nrrd.write(str(path), np.zeros((6, 5, 4), np.int16), header)
    if centerings:  # written by hand: pynrrd writes 'centerings' only
        line = f"encoding: raw\n{field}: {' '.join(centerings)}\n".encode()
        path.write_bytes(path.read_bytes().replace(b"encoding: raw\n", line))
    np.testing.assert_allclose(read_volume(path).origin, sitk.ReadImage(str(path)).GetOrigin(), atol=1e-9)
    kinds = centerings or ["cell"] * 3
    half = [0.0 if kinds[a] == "node" else s / 2 for a, s in enumerate(header["spacings"])]
    np.testing.assert_allclose(read_volume(path).origin, np.add(header["axis mins"], half))


def test_a_nifti_whose_sform_and_pixdim_disagree_is_read_by_its_sform(tmp_path, capfd):
    """sform set (0.9 x 0.9 x 3 mm), qform off and pixdim left at 1: ITK read 1 x 1 x 1 mm with its own
    multi-line warning; the sform gives the grid, as the NIfTI standard and nibabel read it, with one
    warning line; its grid alone (read_grid: a label file's CT in napari) was ITK's 1 mm grid, and is now the
    same grid. A consistent file reads the same, without a warning."""
    import struct

    voxels = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    volume = Volume(voxels, (0.9, 0.9, 3.0), (-10.0, 20.0, 30.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    good = write_volume(tmp_path / "good.nii", volume)
    data = bytearray(good.read_bytes())
    struct.pack_into("<3f", data, 80, 1.0, 1.0, 1.0)  # pixdim[1:4]
    struct.pack_into("<h", data, 252, 0)  # qform_code: unknown
    struct.pack_into("<h", data, 254, 1)  # sform_code: scanner
    bad = tmp_path / "bad.nii"
    bad.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = read_volume(good)
    differs = r"give different grids \(spacing\); read by the sform \(spacing 0.9"  # not the origin
    with pytest.warns(UserWarning, match=differs):
        again = read_volume(bad)
    assert "WARNING" not in capfd.readouterr().err  # no ITK lines
    grid = read_grid(bad)  # a label file's CT in napari: placed on the grid read_volume gives
    assert grid is not None and grid.same_grid(again), (grid, again)
    assert "WARNING" not in capfd.readouterr().err
    for a in (read, again):
        np.testing.assert_allclose(a.spacing, volume.spacing, rtol=1e-6)
        np.testing.assert_allclose(a.origin, volume.origin, atol=1e-4)
        np.testing.assert_allclose(a.direction, volume.direction, atol=1e-6)
        np.testing.assert_array_equal(a.array, volume.array)


@pytest.mark.parametrize("code, mm", [(1, 1000.0), (3, 1e-3)])  # metres, micrometres
def test_a_nifti_in_metres_or_micrometres_is_read_in_mm(tmp_path, code, mm):
    """A NIfTI whose xyzt_units are metres or micrometres: SimpleITK reads its qform in mm, but the sform
    check took the sform's numbers as mm (a 0.9 mm voxel read as 0.0009 mm, or 900 mm) and warned the two
    disagree. Both read in mm now, with no warning."""
    import struct

    voxels = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    volume = Volume(voxels, (0.9, 0.8, 3.0), (-10.0, 20.0, 30.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    data = bytearray(write_volume(tmp_path / "mm.nii", volume).read_bytes())
    assert struct.unpack_from("<2h", data, 252) != (0, 0) and struct.unpack_from("<h", data, 254)[0] > 0
    for offset, count in ((80, 3), (268, 3), (280, 12)):  # pixdim[1:4], qoffset, srow: in the new unit
        values = struct.unpack_from(f"<{count}f", data, offset)
        struct.pack_into(f"<{count}f", data, offset, *(v / mm for v in values))
    data[123] = (data[123] & ~0x07) | code  # xyzt_units: the space unit
    path = tmp_path / "scaled.nii"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = read_volume(path)
    np.testing.assert_allclose(read.spacing, volume.spacing, rtol=1e-5)
    np.testing.assert_allclose(read.origin, volume.origin, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(read.direction, volume.direction, atol=1e-6)
    np.testing.assert_array_equal(read.array, volume.array)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nan_and_infinite_voxels_of_a_float_nifti_read_as_stored(tmp_path, suffix):
    """SimpleITK's NIfTI reader sets NaN and infinite voxels to 0 without a word: a NaN border around a
    resampled CT read as water, where the same CT as NRRD or MHA kept its NaN and was refused by the CT's
    value check. A float NIfTI now reads its non-finite voxels as stored, as NRRD and MHA do."""
    from lnq_napari.ct_scale import check_ct_values

    array = np.random.default_rng(0).uniform(-1000, 1000, (6, 7, 8)).astype(np.float32)
    array[1, 2, 3], array[5, 6, 7], array[0, 0, 0] = np.nan, -np.inf, np.inf
    volume = Volume(array, (0.8, 0.7, 2.5), (-10.0, 20.0, 30.0))
    for name in ("ct" + suffix, "ct.nrrd"):
        read = read_volume(write_volume(tmp_path / name, volume))
        np.testing.assert_array_equal(read.array, array)  # NaN where NaN
        with pytest.raises(LNQError, match="3 NaN or infinite"):
            check_ct_values(read.array)
    filled = volume.with_array(np.nan_to_num(array))
    finite = read_volume(write_volume(tmp_path / ("finite" + suffix), filled))
    np.testing.assert_array_equal(finite.array, filled.array)


def test_a_file_named_as_another_format_says_what_it_holds(tmp_path):
    """A NIfTI named .nrrd or .nii (gzip-compressed), an NRRD named .nii.gz or .mha or without a suffix, a
    zip archive: each was called truncated or damaged ("re-download it"), or not a supported image; now the
    error says what the file holds and the name to give it. An uncompressed NIfTI named .nii.gz, which
    SimpleITK reads, was refused as damaged (not gzip): it reads."""
    import zipfile

    volume = Volume(np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8), (0.8, 0.7, 2.5), (1.0, 2.0, 3.0))
    names = ("a.nii", "b.nii.gz", "c.nrrd")
    nii, niigz, nrrd_file = (write_volume(tmp_path / name, volume) for name in names)
    (tmp_path / "plain.nii.gz").write_bytes(nii.read_bytes())
    np.testing.assert_array_equal(read_volume(tmp_path / "plain.nii.gz").array, volume.array)
    for source, name, says in ((niigz, "x.nrrd", "a gzip-compressed NIfTI image.*end in .nii.gz"),
                               (niigz, "x.nii", "a gzip-compressed NIfTI image.*end in .nii.gz"),
                               (nii, "y.mha", "an uncompressed NIfTI image.*end in .nii"),
                               (nrrd_file, "z.nii.gz", "an NRRD image.*end in .nrrd"),
                               (nrrd_file, "z.mha", "an NRRD image.*end in .nrrd"),
                               (nrrd_file, "noext", "an NRRD image.*end in .nrrd")):
        (tmp_path / name).write_bytes(source.read_bytes())
        with pytest.raises(LNQError, match=f"{name} holds {says}"):
            read_volume(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "ct.zip", "w") as archive:
        archive.write(nrrd_file, "c.nrrd")
    with pytest.raises(LNQError, match="ct.zip is a zip archive; unzip it"):
        read_volume(tmp_path / "ct.zip")


def test_two_series_in_one_folder_are_named_by_description_and_kernel(tmp_path):
    """Two reconstructions of one scan in one folder: the warning said only the UID of the one read;
    it names both (description and kernel) and how to read the other."""
    def soft(ds, k):
        ds.SeriesDescription, ds.ConvolutionKernel = "soft tissue", "B30f"

    def lung(ds, k):
        ds.SeriesDescription, ds.ConvolutionKernel = "lung", "B70f"
        ds.SeriesInstanceUID = "1.2.3.4.5.6.7"

    folder = _stack(tmp_path / "both", STRAIGHT, soft)
    _stack(tmp_path / "lung", STRAIGHT[:4], lung)
    for file in (tmp_path / "lung").iterdir():
        file.rename(folder / f"lung-{file.name}")
    with pytest.warns(UserWarning, match="reading the largest, 'soft tissue B30f' .*not 'lung B70f' "
                                         r"\(4\): to read another"):
        assert read_volume(folder).shape[0] == 6


def test_a_nifti_2_file_is_named_as_such_not_as_damaged(tmp_path):
    """SimpleITK here cannot read NIfTI-2: the message blamed the file ("truncated, damaged")."""
    nib = pytest.importorskip("nibabel")

    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti2Image(np.zeros((8, 8, 4), np.int16), np.diag([0.8, 0.8, 3.0, 1.0])), str(path))
    try:
        ct = read_volume(path)
    except LNQError as exc:
        assert "is a NIfTI-2 file" in str(exc) and "damaged" not in str(exc)
    else:  # a SimpleITK that reads NIfTI-2
        assert ct.shape == (4, 8, 8) and ct.spacing == pytest.approx((0.8, 0.8, 3.0))


def test_labels_resampled_onto_a_ct_are_named_in_the_warning(tmp_path):
    """workspace init over hundreds of cases warned "the labels grid differs ..." without saying whose."""
    from lnq_napari.io import GridWarning

    ct = Volume(np.zeros((6, 20, 20), np.int16), (1.0, 1.0, 2.0))
    labels = Volume(np.ones((5, 18, 18), np.uint8), (1.1, 1.1, 2.0))
    path = write_volume(tmp_path / "case-0007-seg.nrrd", labels)
    with pytest.warns(GridWarning, match="the labels case-0007-seg.nrrd grid differs"):
        read_labels(path, reference=ct)


def test_a_nifti_without_qform_or_sform_is_read_with_a_warning(tmp_path):
    """Both codes 0 (no placement): read at origin 0 without a word, then labels from elsewhere missed it."""
    import struct

    good = write_volume(tmp_path / "good.nii", Volume(np.zeros((4, 5, 6), np.int16), (0.9, 0.9, 3.0),
                                                      (-10.0, 20.0, 30.0)))
    data = bytearray(good.read_bytes())
    struct.pack_into("<2h", data, 252, 0, 0)  # qform_code, sform_code: unknown
    bare = tmp_path / "bare.nii"
    bare.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="sets neither a qform nor an sform: its place in space is unknown"):
        assert read_volume(bare).shape == (4, 5, 6)




def test_a_cd_export_reads_from_its_root_and_its_dicomdir(tmp_path, cd_export):
    """`predict CD/` read the series below a DICOMDIR, but `measure --ct CD/`, `compare` and read_volume
    said "CD is a folder without a DICOM series", and `predict CD/DICOMDIR` (the file viewers ask for)
    said the same of CD: the one CT series of a CD is read from the root or its DICOMDIR."""
    root = cd_export(tmp_path / "CD")
    expected = read_volume(DICOM).array
    np.testing.assert_array_equal(read_volume(root).array, expected)
    np.testing.assert_array_equal(read_volume(root / "DICOMDIR").array, expected)
    assert [p.resolve() for _, p in ct_inputs(root / "DICOMDIR")] == [root.resolve()]
    from lnq_napari.io.datasets import find_cts  # every CD names its folders alike: its root's name first

    assert [case for case, _ in find_cts(root)] == ["CD_PT000000_ST000000_SE000000"]
    from lnq_napari.io.datasets import find_cases  # workspace init --data CD/DICOMDIR: the CD's cases

    assert [c.case_id for c in find_cases(root / "DICOMDIR")] == ["CD_PT000000_ST000000_SE000000"]
    series = root / "PT000000" / "ST000000" / "SE000000"  # a CD's series given itself: named so too
    assert [case for case, _ in find_cts(series)] == ["CD_PT000000_ST000000_SE000000"]
    assert [case for case, _ in find_cts(sorted(series.iterdir())[0])] == ["CD_PT000000_ST000000_SE000000"]
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):  # as Linux mounts a plain ISO CD
        path.rename(path.with_name(path.name.lower()))
    assert [case for case, _ in find_cts(root)] == ["CD_pt000000_st000000_se000000"]
    np.testing.assert_array_equal(read_volume(root / "dicomdir").array, expected)


def test_a_folder_of_several_series_folders_says_so_for_one_ct(tmp_path, cd_export):
    """Two series below the root: not "a folder without a DICOM series" but which ones, and what to do."""
    root = cd_export(tmp_path / "CD", series=2)
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it .*point to one "
                                       r"series folder"):
        read_volume(root)


def test_a_folder_holding_predicted_segs_beside_its_series_folders_reads_as_their_root(tmp_path, cd_export,
                                                                                       fixed_prediction):
    """After ``predict DATA -o DATA --format dicom-seg`` read_volume, read_labels and the napari reader
    took DATA for a SEG series: "... is a DICOM SEG of CT series ..., which is not in DATA/", or "holds 2
    DICOM SEG files". DATA is the root of its series folders, as before the SEGs were written."""
    from lnq_napari import api
    from lnq_napari.io.dicom_tree import seg_file

    ct = read_volume(DICOM)
    mask = ct.with_array(np.zeros(ct.shape, np.uint8))
    model = fixed_prediction(mask)
    data = tmp_path / "data"
    shutil.copytree(DICOM, data / "patient1")
    cd = cd_export(tmp_path / "CD", series=2)
    for root in (data, cd):
        api.predict(root, root, model=model, format="dicom-seg")
        assert seg_file(root) is None
    np.testing.assert_array_equal(read_volume(data).array, ct.array)
    with pytest.raises(LNQError, match=r"holds 2 DICOM CT series in the folders below it"):
        read_volume(cd)


def test_an_enhanced_ct_reads_as_its_classic_series(tmp_path, enhanced_ct):
    """One multi-frame Enhanced CT file (frames stored out of order, rescale in the functional groups)
    reads with the classic series' HU, spacing, origin and direction (it was refused)."""
    classic = read_volume(DICOM)
    for how in ("folder", "file"):
        folder = enhanced_ct(tmp_path / how, order=[2, 0, 1])
        got = read_volume(folder if how == "folder" else folder / "IM0000.dcm")
        np.testing.assert_array_equal(got.array, classic.array)
        assert got.array.dtype == np.int16
        np.testing.assert_allclose(got.spacing_zyx, classic.spacing_zyx, atol=1e-6)
        np.testing.assert_allclose(got.origin, classic.origin, atol=1e-6)
        np.testing.assert_allclose(got.direction, classic.direction, atol=1e-9)
        assert got.meta["dicom_series_uid"]


def test_an_enhanced_ct_with_a_gap_or_split_over_files_is_refused_in_one_line(tmp_path, enhanced_ct):
    """Frames unevenly spaced (one missing) cannot be placed on one grid; frames split over several
    enhanced files are not read as if each were the CT."""
    import pydicom

    first = [float(v) for v in pydicom.dcmread(sorted(DICOM.glob("*.dcm"))[0]).ImagePositionPatient]
    gap = [[first[0], first[1], first[2] + dz] for dz in (0.0, 1.0, 2.0, 4.0)]
    with pytest.raises(LNQError, match=r"do not form one evenly spaced volume.*dcm2niix"):
        read_volume(enhanced_ct(tmp_path / "gap", order=[0, 1, 2, 2], positions=gap))
    with pytest.raises(LNQError, match=r"enhanced \(multi-frame\) DICOM CT split over 3 files"):
        read_volume(enhanced_ct(tmp_path / "split", order=[0, 1, 2], frames_per_file=1))
    cut = enhanced_ct(tmp_path / "cut", order=[0, 1, 2])  # its grid reads; its pixels do not (they were
    ds = pydicom.dcmread(cut / "IM0000.dcm")  # said to be unevenly spaced)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(cut / "IM0000.dcm")
    with pytest.raises(LNQError, match=r"the pixel data of its enhanced .* cannot be decoded"):
        read_volume(cut)


def test_per_slice_rescale_and_compressed_syntaxes_read_the_same_hu(tmp_path):
    """Guards what the probe found right: each slice's own rescale slope / intercept is applied, and RLE
    Lossless, JPEG-LS Lossless, Deflated, Implicit VR and Big Endian series read the same HU."""
    import pydicom
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ImplicitVRLittleEndian,
        RLELossless,
    )

    expected = read_volume(DICOM).array
    variants = ["rescale", "rle", "deflate", "implicit", "bigendian"]
    for name in variants:
        folder = tmp_path / name
        folder.mkdir()
        for k, f in enumerate(sorted(DICOM.glob("*.dcm"))):
            ds = pydicom.dcmread(f)
            if name == "rescale" and k == 1:  # slope 2 on one slice: same HU (even values only)
                hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                ds.RescaleIntercept, ds.RescaleSlope = -2048, 2
                ds.PixelData = ((hu - (-2048)) // 2).astype(ds.pixel_array.dtype).tobytes()
                expected_slice = ((hu + 2048) // 2) * 2 - 2048
            if name == "rle":
                ds.compress(RLELossless)
            if name == "bigendian":
                ds.PixelData = ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder(">")).tobytes()
                ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
                dcmwrite(folder / f.name, ds, implicit_vr=False, little_endian=False, force_encoding=True)
                continue
            if name in ("deflate", "implicit"):
                ds.file_meta.TransferSyntaxUID = {"deflate": DeflatedExplicitVRLittleEndian,
                                                  "implicit": ImplicitVRLittleEndian}[name]
            ds.save_as(folder / f.name)
        got = read_volume(folder).array
        if name == "rescale":
            np.testing.assert_array_equal(got[1], expected_slice)
            np.testing.assert_array_equal(got[[0, 2]], expected[[0, 2]])
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_an_enhanced_ct_is_the_largest_series_beside_a_scout_or_its_seg(tmp_path, enhanced_ct):
    """"The largest series" of a folder counted files: a 2-image scout, or the CT's own DICOM SEG on a tie,
    beat a one-file enhanced CT of 3 frames (the SEG was then read as a CT and refused as uneven)."""
    import pydicom

    from lnq_napari.io.dicom_seg import write_dicom_seg

    folder = enhanced_ct(tmp_path / "flat", order=[0, 1, 2])
    ct = read_volume(folder)
    uid = pydicom.uid.generate_uid()
    for k, src in enumerate(sorted(DICOM.glob("*.dcm"))[:2]):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID, ds.ImageType = uid, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"SC{k}.dcm")
    mask = np.zeros(ct.shape, np.uint8)
    mask[1, 100:140, 200:260] = 1
    write_dicom_seg(folder / "a-seg.dcm", ct.with_array(mask, dicom_series_uid=ct.meta["dicom_series_uid"]),
                    folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "holds 3 DICOM series; reading the largest"
        got = read_volume(folder)
    np.testing.assert_array_equal(got.array, ct.array)


def test_an_rt_structure_set_is_no_ct_even_beside_its_slices(tmp_path):
    """A file that is no image (an RT structure set, a dose report) opened as the CT beside it, named
    after itself; alone, it was "a folder without a DICOM series"."""
    import pydicom

    folder = tmp_path / "mixed"
    shutil.copytree(DICOM, folder)
    ds = pydicom.dcmread(sorted(DICOM.glob("*.dcm"))[0], stop_before_pixels=True)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT struct
    ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", pydicom.uid.generate_uid()
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        ds.pop(tag, None)
    ds.save_as(folder / "rtstruct.dcm")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(folder / "rtstruct.dcm", alone)
    for path in (folder / "rtstruct.dcm", alone / "rtstruct.dcm"):
        with pytest.raises(LNQError, match=r"rtstruct.dcm is no image of a CT series \(modality RTSTRUCT\)"):
            read_volume(path)
    assert read_volume(folder).shape[0] == 3  # the folder is still its CT


def test_an_mhd_whose_data_file_name_starts_with_list_is_read(tmp_path):
    """Only the word LIST (a file per slice) is refused: ``listing.raw`` is one data file."""
    np.arange(60, dtype="<i2").reshape(3, 4, 5).tofile(tmp_path / "listing.raw")
    (tmp_path / "ct.mhd").write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\n"
                                     "BinaryDataByteOrderMSB = False\nElementSpacing = 1 1 2\n"
                                     "DimSize = 5 4 3\nElementType = MET_SHORT\n"
                                     "ElementDataFile = listing.raw\n")
    assert read_volume(tmp_path / "ct.mhd").array.ravel().tolist() == list(range(60))


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_a_detached_header_whose_data_file_name_has_a_space_is_read(tmp_path, suffix):
    """ITK and 3D Slicer save ``CT chest.nhdr`` with ``data file: CT chest.raw.gz`` (``CT chest.mhd``:
    ``ElementDataFile = CT chest.raw``): the .nhdr was refused as spreading its data over several files,
    the .mhd as naming a data file not in its folder."""
    array = (np.arange(60).reshape(3, 4, 5) - 30).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / f"CT chest{suffix}"), True)
    assert len(list(tmp_path.iterdir())) == 2  # the header and its data file, named with the space
    volume = read_volume(tmp_path / f"CT chest{suffix}")
    np.testing.assert_array_equal(volume.array, array)
    assert (volume.spacing, volume.origin) == ((0.7, 0.8, 2.5), (1.0, 2.0, 3.0))


@pytest.mark.parametrize("data_file", ["LIST", "LIST\nslice0.raw\nslice1.raw\nslice2.raw",
                                       "list 2\nslice0.raw\nslice1.raw\nslice2.raw",
                                       "slice%d.raw 0 2 1", "slice%d.raw 0 2 1 2"])
def test_a_nhdr_with_a_file_per_slice_is_refused_saying_so(tmp_path, data_file):
    """Teem's two forms of a NRRD spread over several files: ``LIST`` and a ``%`` pattern with min, max,
    step (and the sub-dimension). A LIST names its files on the lines after it, where pynrrd failed: it
    was refused as a damaged file."""
    for k in range(3):
        np.zeros((4, 5), "<i2").tofile(tmp_path / f"slice{k}.raw")
    (tmp_path / "ct.nhdr").write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 5 4 3\nendian: little\n"
                                      f"encoding: raw\ndata file: {data_file}\n")
    with pytest.raises(LNQError, match=r"^ct\.nhdr spreads its data over several files .*re-save the image "
                                       r"as a single \.nrrd"):
        read_volume(tmp_path / "ct.nhdr")


@pytest.mark.parametrize("data_file", ["LIST\nslice0.raw\nslice1.raw\nslice2.raw", "slice%d.raw 0 2 1"])
def test_an_mhd_with_a_file_per_slice_is_refused_saying_so(tmp_path, data_file):
    """MetaImage keeps a volume's slices in several files (``ElementDataFile = LIST`` or a pattern); the
    files lie beside the header, yet the error said the data file was "not a file in its folder" and to
    keep the .mhd and its .raw in one folder."""
    for k in range(3):
        np.zeros((4, 5), "<i2").tofile(tmp_path / f"slice{k}.raw")
    header = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              "ElementSpacing = 1 1 2\nDimSize = 5 4 3\nElementType = MET_SHORT\n"
              f"ElementDataFile = {data_file}\n")
    (tmp_path / "ct.mhd").write_text(header)
    with pytest.raises(LNQError, match=r"^ct\.mhd spreads its data over several files .*re-save the image "
                                       r"as a single \.mha or \.nrrd"):
        read_volume(tmp_path / "ct.mhd")


def test_an_nrrd_in_an_encoding_pynrrd_does_not_read_is_named_not_called_damaged(tmp_path):
    """Teem's ``encoding: hex`` (and ``zrl``): the file was called truncated or damaged."""
    array = (np.arange(60).reshape(3, 4, 5) - 30).astype("<i2")
    (tmp_path / "ct.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 5 4 3\nendian: little\n"
                                       b"encoding: hex\n\n" + array.tobytes().hex().encode())
    with pytest.raises(LNQError, match=r"^ct\.nrrd stores its voxels in NRRD encoding 'hex', which "
                                       r"lnq-napari cannot read; re-save it raw or gzip-compressed"):
        read_volume(tmp_path / "ct.nrrd")


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_the_grid_of_a_4d_file_of_one_time_point_is_its_volumes(tmp_path, suffix):
    """A 4D file of one time point reads as its 3D volume; its grid alone (read_grid: a label file's CT in
    napari) was None for an MHA, so labels beside it were not put on the CT's grid."""
    volume = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), (0.7, 0.8, 2.5), (-10.0, 20.0, -300.0),
                    (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    path = tmp_path / f"t4{suffix}"
    sitk.WriteImage(sitk.JoinSeries(volume.to_sitk()), str(path))
    grid = read_grid(path)
    assert grid is not None and grid.same_grid(read_volume(path), tol=1e-9)
    assert grid.same_grid(volume)


def test_an_mha_whose_direction_holds_the_voxel_size_reads_where_itk_places_it(tmp_path):
    """An MHA whose TransformMatrix holds the voxel size (0.8, 0.8, 2.5 with spacing 1) was refused as a
    sheared grid; its voxels lie where ITK and 3D Slicer place them, so it reads with that size as its
    spacing and unit axes. A Volume given so is refused saying what the lengths are."""
    array = np.zeros((4, 5, 6), np.uint8)
    array[1:3, 2:4, 1:5] = 1
    (tmp_path / "ct.raw").write_bytes(array.tobytes())
    (tmp_path / "ct.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 6 5 4\n"
                                     "ElementType = MET_UCHAR\nElementSpacing = 1 1 1\n"
                                     "TransformMatrix = 0 0.8 0 -0.8 0 0 0 0 2.5\n"
                                     "Offset = 1 2 3\nElementDataFile = ct.raw\n")
    volume = read_volume(tmp_path / "ct.mhd")
    np.testing.assert_allclose(volume.spacing, (0.8, 0.8, 2.5))
    np.testing.assert_allclose(volume.direction, (0, -1, 0, 1, 0, 0, 0, 0, 1), atol=1e-12)  # MetaIO: columns
    image = sitk.ReadImage(str(tmp_path / "ct.mhd"))
    corner = (5, 4, 3)
    np.testing.assert_allclose(volume.index_to_physical(np.array(corner[::-1]))[0],
                               image.TransformIndexToPhysicalPoint(corner), atol=1e-9)
    assert read_grid(tmp_path / "ct.mhd").same_grid(volume, tol=1e-9)
    with pytest.raises(LNQError, match=r"direction vectors of length 0\.8, 0\.8, 2\.5, not 1: divide each"):
        check_grid((1, 1, 1), (0, 0, 0), (0.8, 0, 0, 0, 0.8, 0, 0, 0, 2.5), "the labels")
