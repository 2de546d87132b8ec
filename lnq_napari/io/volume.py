"""`Volume`: a 3D array (z, y, x) with the physical grid it lives on, and the check of a read grid."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.errors import LNQError

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
GRID_TOL = 1e-4  # mm (and direction cosines): differences below this are float noise, not another grid
ORTHO_TOL = 1e-3  # |D^T D - I| above this: the axes are not perpendicular unit vectors
SPACING_RANGE = (1e-4, 1e4)  # mm: a voxel outside 0.1 micrometre .. 10 m is a damaged header, not a scan
ORIGIN_LIMIT = 1e7  # mm (10 km)


def plain_image(image):
    """A SimpleITK LabelMap (as BinaryImageToLabelMap gives) as its label image, another image as it is:
    GetArrayFromImage on a LabelMap aborts the whole process (a C++ exception nothing catches)."""
    import SimpleITK as sitk

    if image.GetPixelID() in (sitk.sitkLabelUInt8, sitk.sitkLabelUInt16, sitk.sitkLabelUInt32,
                              sitk.sitkLabelUInt64):
        return sitk.LabelMapToLabel(image)
    return image


def _as_array(values) -> np.ndarray:
    """``values`` (nested lists of numbers) as a numpy array; LNQError when they are not one."""
    fix = "pass a numpy array (z, y, x), or nested lists of numbers of equal lengths"
    try:
        array = np.asarray(values)
    except ValueError:  # ragged lists
        raise LNQError(f"a Volume's array is a {type(values).__name__} of unequal lengths; {fix}") from None
    if array.dtype.kind not in "biuf":
        raise LNQError(f"a Volume's array is a {type(values).__name__} of {array.dtype}, not numbers; {fix}")
    return array


@dataclass
class Volume:
    """A 3D image and its grid.

    ``array`` is indexed (z, y, x). ``spacing`` and ``origin`` are in ITK order (x, y, z), in mm,
    LPS patient coordinates. ``direction`` is the 3x3 ITK direction matrix flattened row-major
    (column j is the patient-space direction of array axis x, y, z for j = 0, 1, 2).
    ``meta`` holds free-form header fields worth keeping (e.g. Slicer segment keys).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (hasattr(self.array, "shape") and hasattr(self.array, "dtype")):  # a list: its numpy array
            self.array = _as_array(self.array)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = tuple(float(d) for d in np.asarray(self.direction, dtype=float).ravel())

    def __repr__(self) -> str:  # the voxels' summary, not the voxels (a notebook cell's last line)
        spacing = ", ".join(f"{s:g}" for s in self.spacing)
        origin = ", ".join(f"{o:g}" for o in self.origin)
        return (f"Volume(shape (z, y, x) {self.shape}, {np.asarray(self.array).dtype}, spacing ({spacing}) "
                f"mm, origin ({origin}) mm, {len(self.meta)} meta field{'s' if len(self.meta) != 1 else ''})")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape[::-1])

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return tuple(self.spacing[::-1])

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def with_array(self, array: np.ndarray, **meta) -> Volume:
        """A new Volume on the same grid holding ``array``."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {array.shape} does not match grid {self.shape}")
        return Volume(array, self.spacing, self.origin, self.direction, dict(meta))

    def index_to_physical(self, zyx: np.ndarray) -> np.ndarray:
        """Map (N, 3) continuous (z, y, x) indices to (N, 3) LPS points (x, y, z) in mm."""
        ijk = np.asarray(zyx, dtype=float).reshape(-1, 3)[:, ::-1]
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction_matrix.T

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map (N, 3) LPS points (x, y, z) to (N, 3) continuous (z, y, x) indices."""
        p = np.asarray(xyz, dtype=float).reshape(-1, 3) - np.asarray(self.origin)
        ijk = (p @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing)
        return ijk[:, ::-1]

    def to_sitk(self):
        """The SimpleITK image of this volume (imports SimpleITK lazily); an array SimpleITK has no type for
        (big-endian, as nibabel's ``dataobj`` of a big-endian NIfTI gives; float16) in the nearest it has."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(sitk_compatible(np.asarray(self.array))))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image, meta: dict | None = None) -> Volume:
        import SimpleITK as sitk

        image = plain_image(image)
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        return cls(
            sitk.GetArrayFromImage(image),
            image.GetSpacing(),
            image.GetOrigin(),
            image.GetDirection(),
            dict(meta or {}),
        )

    def grid_differences(self, other: Volume, tol: float = GRID_TOL) -> list[str]:
        """How the two grids differ (size, spacing, origin, direction beyond ``tol``); empty when equal."""
        diffs = []
        if self.shape != other.shape:
            diffs.append(f"size {self.size_xyz} vs {other.size_xyz}")
        for what, mine, theirs, digits in (("spacing", self.spacing, other.spacing, 5),
                                           ("origin", self.origin, other.origin, 4)):
            if not np.allclose(mine, theirs, atol=tol, rtol=0):
                a, b = np.round(mine, digits).tolist(), np.round(theirs, digits).tolist()
                diffs.append(f"{what} {a} vs {b}")
        if not np.allclose(self.direction, other.direction, atol=tol, rtol=0):
            diffs.append("direction differs")
        return diffs

    def same_grid(self, other: Volume, tol: float = GRID_TOL) -> bool:
        """True when both volumes share size, spacing, origin and direction (within ``tol``)."""
        return not self.grid_differences(other, tol)


def native_order(array: np.ndarray) -> np.ndarray:
    """``array`` in native byte order (SimpleITK and torch need it); as it is (no copy) when it is."""
    if array.dtype.byteorder not in ("=", "|"):
        return array.astype(array.dtype.newbyteorder("="))
    return array


def sitk_compatible(array: np.ndarray) -> np.ndarray:
    """``array`` in a type SimpleITK has: native byte order, float16 as float32; else as it is (no copy)."""
    array = native_order(array)
    return array.astype(np.float32) if array.dtype == np.float16 else array


def grid_only(volume: Volume) -> Volume:
    """``volume``'s grid without its voxels (a read-only zero array that takes no memory): for grid checks."""
    return volume.with_array(np.broadcast_to(np.zeros((), np.uint8), volume.shape))


def volumes_digest(*volumes: Volume) -> str:
    """Hex sha256 of the volumes' grids, voxel types and voxels, in order: the same for the same images
    whatever objects hold them (and not for the same bytes read as another type)."""
    digest = hashlib.sha256()
    for vol in volumes:
        grid = (vol.shape, vol.spacing, vol.origin, vol.direction, np.asarray(vol.array).dtype.str)
        digest.update(repr(grid).encode())
        digest.update(memoryview(np.ascontiguousarray(vol.array)).cast("B"))
    return digest.hexdigest()


def _lengths(matrix: np.ndarray) -> np.ndarray:
    """The length of each column (each axis's direction vector) of a 3x3 direction matrix."""
    return np.linalg.norm(matrix, axis=0)


def unit_steps(spacing, direction) -> tuple[tuple, tuple]:
    """``(spacing, direction)`` with any length of the direction's columns moved into the spacing: a file
    whose direction holds the voxel size (an MHA ``TransformMatrix`` of 0.8, 0.8, 2.5 with spacing 1) places
    its voxels where ITK and 3D Slicer do (origin + direction @ (spacing * index)) with unit axes; as
    given when the columns are not finite and non-zero."""
    spacing = np.asarray(spacing, dtype=float).ravel()
    direction = np.asarray(direction, dtype=float).ravel()
    if spacing.size != 3 or direction.size != 9 or not np.all(np.isfinite(direction)):
        return tuple(spacing), tuple(direction)
    matrix = direction.reshape(3, 3)
    norms = _lengths(matrix)
    if np.all(norms > 0) and np.abs(norms - 1.0).max() > GRID_TOL:
        return tuple(spacing * norms), tuple((matrix / norms[None, :]).ravel())
    return tuple(spacing), tuple(direction)


def check_grid(spacing, origin, direction, name: str = "image") -> None:
    """LNQError unless a grid read from a file is usable: three finite spacings in :data:`SPACING_RANGE`,
    a finite origin and a finite orthonormal 3x3 direction. Every reader's common path calls it (NRRD,
    NIfTI, MHA, DICOM)."""
    spacing = np.asarray(spacing, dtype=float).ravel()
    origin = np.asarray(origin, dtype=float).ravel()
    direction = np.asarray(direction, dtype=float).ravel()
    fix = "fix the header (e.g. re-export the image from 3D Slicer) or re-download it"
    low, high = SPACING_RANGE
    if spacing.size != 3 or not np.all(np.isfinite(spacing)) or np.any((spacing < low) | (spacing > high)):
        shown = ", ".join(f"{s:g}" for s in spacing)
        raise LNQError(f"{name} has voxel spacing ({shown}) mm; each must be a finite number between {low:g} "
                       f"and {high:g}: {fix}")
    if origin.size != 3 or not np.all(np.isfinite(origin)) or np.abs(origin).max() > ORIGIN_LIMIT:
        raise LNQError(f"{name} has an origin that is not three finite numbers of at most "
                       f"{ORIGIN_LIMIT:g} mm; {fix}")
    if direction.size != 9 or not np.all(np.isfinite(direction)):
        raise LNQError(f"{name} has a direction matrix that is not 3x3 finite numbers; {fix}")
    matrix = direction.reshape(3, 3)
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise LNQError(f"{name} has a singular direction matrix (its axes are not independent); {fix}")
    norms = _lengths(matrix)
    unit = matrix / np.where(norms > 0, norms, 1.0)[None, :]
    if np.abs(norms - 1.0).max() > ORTHO_TOL and np.abs(unit.T @ unit - np.eye(3)).max() <= ORTHO_TOL:
        lengths = ", ".join(f"{n:g}" for n in norms)
        raise LNQError(f"{name} has direction vectors of length {lengths}, not 1: divide each direction "
                       "column by its length and multiply that axis's spacing by it")
    if np.abs(matrix.T @ matrix - np.eye(3)).max() > ORTHO_TOL:
        raise LNQError(f"{name} has a non-orthogonal (sheared) direction matrix, which lnq-napari does not "
                       f"support; resample the image onto an orthogonal grid, or {fix}")
