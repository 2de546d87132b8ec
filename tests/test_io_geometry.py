"""Grid checks and aligning label grids onto the CT grid."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lnq_napari.errors import LNQError
from lnq_napari.io import GridWarning, Volume, align_to, check_same_grid, read_labels, write_seg_nrrd
from lnq_napari.io.geometry import nrrd_geometry, overlap_fraction
from lnq_napari.io.volume import check_grid


@pytest.fixture()
def oblique_ct() -> Volume:
    """A small CT on an oblique grid with a flipped axis (determinant -1)."""
    direction = Rotation.from_euler("xyz", [10, -25, 40], degrees=True).as_matrix() * np.array([1, -1, 1])
    rng = np.random.default_rng(1)
    return Volume(rng.integers(-1000, 400, (12, 10, 9)).astype(np.int16), (0.8, 0.9, 3.0),
                  (-120.5, 30.25, -400.0), direction.ravel())


def node_mask(shape) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[3:9, 2:7, 2:6] = 1
    mask[5, 8, 7] = 1
    return mask


def test_check_same_grid(oblique_ct):
    check_same_grid(oblique_ct, oblique_ct.with_array(node_mask(oblique_ct.shape)))
    shifted = Volume(oblique_ct.array, oblique_ct.spacing, np.add(oblique_ct.origin, [0, 0, 2.0]),
                     oblique_ct.direction)
    with pytest.raises(LNQError, match="origin"):
        check_same_grid(oblique_ct, shifted)
    fewer = Volume(oblique_ct.array[2:], oblique_ct.spacing, oblique_ct.origin, oblique_ct.direction)
    with pytest.raises(LNQError, match="size"):
        check_same_grid(oblique_ct, fewer)


def test_same_grid_is_unchanged_and_float_noise_snaps_to_the_reference(oblique_ct):
    labels = oblique_ct.with_array(node_mask(oblique_ct.shape))
    assert align_to(oblique_ct, labels) is labels
    noisy = Volume(labels.array, np.add(labels.spacing, 3e-6), np.add(labels.origin, -2e-5),
                   np.add(labels.direction, 1e-7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snapped = align_to(oblique_ct, noisy)
    assert snapped.array is noisy.array
    assert (snapped.spacing, snapped.origin, snapped.direction) == (
        oblique_ct.spacing, oblique_ct.origin, oblique_ct.direction)


def test_seg_with_fewer_slices_is_pasted_in_place_without_a_warning(oblique_ct, tmp_path):
    """A box of the CT's grid (LNQ's first-release segs with fewer slices, 3D Slicer's segmentations
    saved cropped to their segments) is exact: it was resampled with a warning that alarmed for nothing."""
    full = node_mask(oblique_ct.shape)
    first = 2  # the seg starts two slices later and stops four slices early (LNQ first-release quirk)
    part = full[first:-4]
    origin = oblique_ct.index_to_physical(np.array([[first, 0, 0]]))[0]
    labels = Volume(part, oblique_ct.spacing, origin, oblique_ct.direction)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aligned = align_to(oblique_ct, labels)
    expected = np.zeros_like(full)
    expected[first:-4] = part
    np.testing.assert_array_equal(aligned.array, expected)
    assert aligned.array.dtype == np.uint8
    assert (aligned.spacing, aligned.origin, aligned.direction) == (
        oblique_ct.spacing, oblique_ct.origin, oblique_ct.direction)

    path = write_seg_nrrd(tmp_path / "short.seg.nrrd", labels)  # the same through the reader
    read = read_labels(path, reference=oblique_ct)
    np.testing.assert_array_equal(read.array, expected)
    crop = Volume(full[first:, 3:, :-5], oblique_ct.spacing,  # cropped on three sides, reaching beyond
                  oblique_ct.index_to_physical(np.array([[first, 3, 0]]))[0], oblique_ct.direction)
    expected = np.zeros_like(full)
    expected[first:, 3:, :-5] = full[first:, 3:, :-5]
    np.testing.assert_array_equal(align_to(oblique_ct, crop).array, expected)
    beyond = Volume(np.ones((4, 4, 4), np.uint8), oblique_ct.spacing,
                    oblique_ct.index_to_physical(np.array([[-2, 0, 0]]))[0], oblique_ct.direction)
    with pytest.warns(GridWarning, match="32 labelled voxels of the labels lie outside the CT"):
        assert int(align_to(oblique_ct, beyond).array.sum()) == 32


def test_a_cropped_seg_stored_in_another_axis_order_is_pasted_without_a_warning(oblique_ct):
    """A box of the CT's grid stored flipped and transposed (the same lattice points) was resampled with a
    warning that it had been; it is pasted in place, exact, without one."""
    full = node_mask(oblique_ct.shape)
    box = (slice(2, -4), slice(3, None), slice(None, -5))
    part = full[box]
    ijk = part.transpose(2, 1, 0)[::-1, :, ::-1].transpose(1, 0, 2)  # file axes: y, -x, -z
    d, s = oblique_ct.direction_matrix, np.asarray(oblique_ct.spacing)
    steps = np.stack([d[:, 1] * s[1], -d[:, 0] * s[0], -d[:, 2] * s[2]], axis=1)
    last = [2 + part.shape[0] - 1, 3, part.shape[2] - 1]  # z, y, x index of the stored first voxel
    stored = Volume(np.ascontiguousarray(ijk.transpose(2, 1, 0)), tuple(np.linalg.norm(steps, axis=0)),
                    tuple(oblique_ct.index_to_physical(np.array([last]))[0]),
                    tuple((steps / np.linalg.norm(steps, axis=0)).ravel()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aligned = align_to(oblique_ct, stored)
    expected = np.zeros_like(full)
    expected[box] = part
    np.testing.assert_array_equal(aligned.array, expected)
    assert aligned.same_grid(oblique_ct, tol=1e-12)


def test_labels_saved_without_geometry_take_the_ct_s_grid_with_a_warning(oblique_ct):
    """Labels exported as a bare array (1 mm at origin 0) with the CT's size were resampled by their
    meaningless place: nodes landed in air."""
    full = node_mask(oblique_ct.shape)
    with pytest.warns(GridWarning, match="carry no geometry .* read on the CT's grid"):
        aligned = align_to(oblique_ct, Volume(full))
    np.testing.assert_array_equal(aligned.array, full)
    assert aligned.origin == oblique_ct.origin


def test_seg_stored_with_a_flipped_axis_aligns_exactly(oblique_ct):
    full = node_mask(oblique_ct.shape)
    nx = oblique_ct.shape[2]
    direction = oblique_ct.direction_matrix.copy()
    direction[:, 0] *= -1  # x runs the other way; origin moves to the last column
    origin = oblique_ct.index_to_physical(np.array([[0, 0, nx - 1]]))[0]
    labels = Volume(full[:, :, ::-1].copy(), oblique_ct.spacing, origin, direction.ravel())
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)  # the same voxels: put in place, nothing resampled
        aligned = align_to(oblique_ct, labels)
    np.testing.assert_array_equal(aligned.array, full)
    assert aligned.same_grid(oblique_ct, tol=0.0)


def _stored_otherwise(volume: Volume, order: tuple[int, int, int], signs: tuple[int, int, int]) -> Volume:
    """``volume``'s voxels stored with its (x, y, z) axes in ``order`` and flipped where ``signs`` is -1."""
    ijk = np.asarray(volume.array).transpose(2, 1, 0)
    ijk = ijk[tuple(slice(None, None, s) for s in signs)].transpose(order)
    steps = volume.direction_matrix * np.asarray(volume.spacing)[None, :] * np.asarray(signs)[None, :]
    corner = [0 if s > 0 else n - 1 for s, n in zip(signs, volume.size_xyz)]
    origin = volume.index_to_physical(np.asarray(corner[::-1], dtype=float))[0]
    steps = steps[:, list(order)]
    spacing = np.linalg.norm(steps, axis=0)
    return Volume(np.ascontiguousarray(ijk.transpose(2, 1, 0)), tuple(spacing), tuple(origin),
                  tuple((steps / spacing).ravel()))


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (0, 2, 1)])
@pytest.mark.parametrize("signs", [(1, 1, 1), (-1, -1, 1), (1, -1, -1)])
def test_the_same_voxels_in_another_order_are_put_back_exactly(oblique_ct, order, signs):
    from lnq_napari.io.geometry import reordered_onto

    other = _stored_otherwise(oblique_ct, order, signs)
    back = reordered_onto(oblique_ct, other)
    if order == (0, 1, 2) and signs == (1, 1, 1):
        assert other.same_grid(oblique_ct)
    np.testing.assert_array_equal(back.array, oblique_ct.array)
    assert back.same_grid(oblique_ct, tol=0.0)
    shifted = Volume(other.array, other.spacing, tuple(np.add(other.origin, 0.4)), other.direction)
    assert reordered_onto(oblique_ct, shifted) is None  # other points: resampled by align_to, not here
    finer = Volume(other.array, tuple(np.multiply(other.spacing, 0.5)), other.origin, other.direction)
    assert reordered_onto(oblique_ct, finer) is None


def test_finer_seg_grid_is_resampled_by_nearest_neighbour():
    ct = Volume(np.zeros((4, 6, 6), np.int16), (2.0, 2.0, 4.0), (0.0, 0.0, 0.0))
    fine = np.zeros((8, 12, 12), np.uint8)
    fine[2:6, 4:8, 4:8] = 1  # 1x1x2 mm voxels; CT centres map to fine indices k + 0.25: no rounding ties
    labels = Volume(fine, (1.0, 1.0, 2.0), (-0.25, -0.25, -0.5))
    with pytest.warns(GridWarning):
        aligned = align_to(ct, labels)
    assert set(np.unique(aligned.array)) == {0, 1}
    expected = np.zeros(ct.shape, np.uint8)
    expected[1:3, 2:4, 2:4] = 1  # CT voxel centres at 4, 6 mm (x, y) and 4, 8 mm (z) fall in the box
    np.testing.assert_array_equal(aligned.array, expected)


def test_seg_elsewhere_raises(oblique_ct):
    labels = oblique_ct.with_array(node_mask(oblique_ct.shape))
    far = Volume(labels.array, labels.spacing, np.add(labels.origin, [0, 0, 500.0]), labels.direction)
    assert overlap_fraction(oblique_ct, far) == 0.0
    with pytest.raises(LNQError, match="does not cover the CT.*same case"):
        align_to(oblique_ct, far)


def test_partly_outside_reports_dropped_voxels(oblique_ct):
    full = node_mask(oblique_ct.shape)
    shift = 5  # the seg grid starts 5 slices below the CT: its first slices lie outside
    origin = oblique_ct.index_to_physical(np.array([[-shift, 0, 0]]))[0]
    labels = Volume(full, oblique_ct.spacing, origin, oblique_ct.direction)
    with pytest.warns(GridWarning, match="lie outside the CT and were dropped"):
        aligned = align_to(oblique_ct, labels)
    expected = np.zeros_like(full)
    expected[: full.shape[0] - shift] = full[shift:]
    np.testing.assert_array_equal(aligned.array, expected)
    assert 0 < overlap_fraction(oblique_ct, labels) < 1


def test_nrrd_geometry_from_header_variants():
    steps = np.array([[0.0, -0.7, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, -2.5]])  # rows: steps of axes i, j, k
    header = {"dimension": 3, "space": "right-anterior-superior", "space directions": steps,
              "space origin": np.array([1.0, 2.0, 3.0])}
    spacing, origin, direction = nrrd_geometry(header)
    assert spacing == pytest.approx((0.7, 0.9, 2.5))
    assert origin == (-1.0, -2.0, 3.0)
    expected = (steps * np.array([-1, -1, 1])).T / np.array([0.7, 0.9, 2.5])[None, :]
    np.testing.assert_allclose(np.reshape(direction, (3, 3)), expected)
    layered = {"dimension": 4, "space": "left-posterior-superior",
               "kinds": ["list", "domain", "domain", "domain"],
               "space directions": np.vstack([[np.nan] * 3, steps])}
    assert nrrd_geometry(layered)[0] == pytest.approx((0.7, 0.9, 2.5))
    zero = nrrd_geometry({"dimension": 3, "space": "LPS", "space directions": np.diag([1.0, 0.0, 1.0])})
    with pytest.raises(LNQError, match="spacing"):  # refused where every reader's grid is checked
        check_grid(*zero)
    with pytest.raises(LNQError, match="not a 3D patient space"):
        nrrd_geometry({"dimension": 3, "space": "right-anterior-superior-time", "space directions": steps})


def test_one_grid_check_names_what_differs_and_the_fix(oblique_ct):
    from lnq_napari.metrics import dice

    shifted = Volume(oblique_ct.array, oblique_ct.spacing, tuple(o + 0.01 for o in oblique_ct.origin),
                     oblique_ct.direction)
    assert oblique_ct.grid_differences(shifted)[0].startswith("origin")
    assert oblique_ct.same_grid(shifted, tol=0.02) and not oblique_ct.same_grid(shifted)
    expected = "prediction and the ground truth are on different grids .origin.*resample the prediction"
    with pytest.raises(LNQError, match=expected):
        dice(shifted, oblique_ct)


def test_a_volume_built_on_lists_holds_their_array_and_refuses_what_is_not_one():
    """``Volume(list_of_lists)`` kept the list: api.find_nodes crashed with AttributeError (no .shape)."""
    values = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    volume = Volume(values.tolist(), spacing=(0.5, 0.5, 2.0))
    assert isinstance(volume.array, np.ndarray) and volume.shape == (2, 3, 4)
    np.testing.assert_array_equal(volume.array, values)
    with pytest.raises(LNQError, match="a Volume's array is a list of unequal lengths; pass a numpy array"):
        Volume([[[1, 2], [3]]])
    with pytest.raises(LNQError, match="a Volume's array is a list of <U1, not numbers"):
        Volume([[["a"]]])


def test_itk_nrrd_of_a_4d_image_of_one_time_point_reads_as_its_mha_does(oblique_ct, tmp_path):
    """SimpleITK writes a 4D image of one time point as an NRRD in a 4D space (``space dimension: 4``):
    it was refused ("lives in a 4D space") where its MHA and NIfTI read as the 3D volume. Two time points
    stay refused."""
    import SimpleITK as sitk

    from lnq_napari.io import read_volume

    image = sitk.JoinSeries(oblique_ct.to_sitk())
    for suffix in (".nrrd", ".mha"):
        sitk.WriteImage(image, str(tmp_path / f"ct{suffix}"))
    assert "space dimension: 4" in (tmp_path / "ct.nrrd").read_bytes().decode("latin-1")
    for suffix in (".nrrd", ".mha"):
        volume = read_volume(tmp_path / f"ct{suffix}")
        np.testing.assert_array_equal(volume.array, oblique_ct.array)
        assert volume.same_grid(oblique_ct, tol=1e-6)
    sitk.WriteImage(sitk.JoinSeries([oblique_ct.to_sitk()] * 2), str(tmp_path / "two.nrrd"))
    with pytest.raises(LNQError, match="must be 3D"):
        read_volume(tmp_path / "two.nrrd")


def test_an_nrrd_with_a_time_axis_of_one_point_and_spacings_only_reads_as_its_volume(tmp_path):
    """``kinds: space space space time`` with ``spacings`` (no space directions): the time axis was taken
    for a fourth axis in space ("has 4 spatial axes")."""
    from lnq_napari.io import read_volume

    array = (np.arange(60).reshape(3, 4, 5) - 30).astype("<i2")
    header = (b"NRRD0004\ntype: short\ndimension: 4\nsizes: 5 4 3 1\nspacings: 0.7 0.8 2.5 1\n"
              b"kinds: space space space time\nendian: little\nencoding: raw\n\n")
    (tmp_path / "ct.nrrd").write_bytes(header + array.tobytes())
    volume = read_volume(tmp_path / "ct.nrrd")
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == (0.7, 0.8, 2.5)


@pytest.mark.parametrize("kinds", ["space space space time", "domain domain domain time"])
def test_an_nrrd_of_two_time_points_is_refused_as_a_time_series_not_read_as_layers(tmp_path, kinds):
    """A time axis counted as no axis in space for any length: two time points read as a CT were called
    "4D (2 layers/components)" with advice for 3D Slicer segmentations, and as labels silently merged into
    one label map. Only a time axis of one point is dropped; ITK's 4D NRRD of two points says so too."""
    import SimpleITK as sitk

    from lnq_napari.io import read_volume

    first = np.zeros((3, 4, 5), np.uint8)
    first[0, 0, 0] = 1
    second = np.zeros_like(first)
    second[2, 3, 4] = 1
    header = (f"NRRD0004\ntype: unsigned char\ndimension: 4\nsizes: 5 4 3 2\nspacings: 0.7 0.8 2.5 1\n"
              f"kinds: {kinds}\nencoding: raw\n\n").encode()
    (tmp_path / "case-seg.nrrd").write_bytes(header + np.stack([first, second]).tobytes())
    message = r"^case-seg\.nrrd holds 2 time points \(a 4D time series\); a CT or label volume must be 3D"
    for read in (read_volume, read_labels):
        with pytest.raises(LNQError, match=message):
            read(tmp_path / "case-seg.nrrd")
    image = sitk.GetImageFromArray(first)
    sitk.WriteImage(sitk.JoinSeries([image] * 2), str(tmp_path / "two.nrrd"))
    with pytest.raises(LNQError, match=r"^two\.nrrd holds 2 time points"):
        read_volume(tmp_path / "two.nrrd")


def test_a_4d_nrrd_of_one_time_point_with_a_time_unit_reads_in_its_space_units(tmp_path):
    """ITK's 4D NRRD of one time point naming its units (``space units: "cm" "cm" "cm" "s"``): the 4th
    unit, of time, was refused as no length; the three of space scale the grid."""
    from lnq_napari.io import read_volume

    array = (np.arange(60).reshape(3, 4, 5) - 30).astype("<i2")
    header = (b"NRRD0004\ntype: short\ndimension: 4\nspace dimension: 4\nsizes: 5 4 3 1\n"
              b"space directions: (0.07,0,0,0) (0,0.08,0,0) (0,0,0.25,0) (0,0,0,1)\n"
              b"space units: \"cm\" \"cm\" \"cm\" \"s\"\nspace origin: (1,2,3,0)\n"
              b"endian: little\nencoding: raw\n\n")
    (tmp_path / "ct.nrrd").write_bytes(header + array.tobytes())
    volume = read_volume(tmp_path / "ct.nrrd")
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, (0.7, 0.8, 2.5))
    np.testing.assert_allclose(volume.origin, (10.0, 20.0, 30.0))


@pytest.mark.parametrize("points", [1, 2])
def test_a_slicer_volume_sequence_of_two_time_points_is_a_time_series_not_layers(tmp_path, points):
    """3D Slicer's volume sequence (``.seq.nrrd``) keeps its time points on a ``list`` axis labelled
    ``time``: two were silently merged as layers when read as labels, and as a CT called "a 3D Slicer
    segmentation with layers". An axis labelled time is a time axis, dropped only at one point."""
    from lnq_napari.io import read_volume

    array = np.zeros((points, 3, 4, 5), np.uint8)  # t z y x
    array[0, 0, 0, 0] = array[-1, 2, 3, 4] = 1
    header = (f"NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\n"
              f"sizes: 5 4 3 {points}\nspace directions: (0.7,0,0) (0,0.8,0) (0,0,2.5) none\n"
              f'kinds: domain domain domain list\nlabels: "" "" "" "time"\nencoding: raw\n'
              f"space origin: (0,0,0)\nDataNodeClassName:=vtkMRMLScalarVolumeNode\n\n").encode()
    (tmp_path / "c-seg.seq.nrrd").write_bytes(header + array.tobytes())
    for read in (read_volume, read_labels):
        if points == 1:
            assert read(tmp_path / "c-seg.seq.nrrd").shape == (3, 4, 5)
            continue
        with pytest.raises(LNQError, match=r"^c-seg\.seq\.nrrd holds 2 time points \(a 4D time series\)"):
            read(tmp_path / "c-seg.seq.nrrd")
