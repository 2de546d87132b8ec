"""Grids: NRRD header <-> (spacing, origin, direction), grid comparison, and label alignment.

Everything here works in ITK/LPS conventions (see :class:`lnq_napari.io.volume.Volume`).
"""

from __future__ import annotations

import warnings

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.orientation import first_voxel, permuted_view
from lnq_napari.io.volume import GRID_TOL, Volume

# Sign flips taking each NRRD 'space' into LPS. Spaces ITK treats as LPS-like map to no flip.
_SPACE_TO_LPS = {
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "las": (1.0, -1.0, 1.0),
    "scanner-xyz": (1.0, 1.0, 1.0),
    "3d-right-handed": (1.0, 1.0, 1.0),
    "3d-left-handed": (1.0, 1.0, 1.0),
}

COLOUR_KINDS = {"3-color", "rgb-color", "hsv-color", "xyz-color", "4-color", "rgba-color"}  # NRRD kinds
NON_SPATIAL_KINDS = {  # a time axis (of one point: nrrd_geometry refuses more) is none of the three in space
    "time", "list", "point", "vector", "covariant-vector", "normal", "stub", "scalar", "complex", "2-vector",
    "3-color", "rgb-color", "hsv-color", "xyz-color", "4-color", "rgba-color", "3-vector", "3-gradient",
    "3-normal", "4-vector", "quaternion", "2d-symmetric-matrix", "2d-masked-symmetric-matrix",
    "2d-matrix", "2d-masked-matrix", "3d-symmetric-matrix", "3d-masked-symmetric-matrix", "3d-matrix",
    "3d-masked-matrix",
}


class GridWarning(UserWarning):
    """Labels were resampled onto another grid."""


class SliceThicknessWarning(UserWarning):
    """A CT of one slice that gives no thickness was read as 1 mm thick (noise where it is then refused as
    a single slice)."""


def nrrd_space_flip(header: dict, name: str = "file") -> np.ndarray:
    """Per-axis signs that take the header's 'space' into LPS (no named space: taken as LPS)."""
    space = header.get("space")
    if space is None:
        dims = header.get("space dimension")
        if dims is not None and int(dims) != 3:
            raise LNQError(f"{name} lives in a {int(dims)}D space; a CT or label volume must be 3D")
        return np.ones(3)
    key = str(space).strip().lower()
    if key not in _SPACE_TO_LPS:
        raise LNQError(f"{name} uses NRRD space '{space}', which is not a 3D patient space; "
                       "re-save it in LPS or RAS (e.g. from 3D Slicer)")
    return np.asarray(_SPACE_TO_LPS[key])


#: Millimetres per length unit an NRRD header may name ('space units', 'units'); a unit not given ("", none,
#: or Teem's "???" for unknown): mm, as every reader takes it.
_MM_PER_UNIT = {"": 1.0, "???": 1.0, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0, "millimetre": 1.0,
                "millimetres": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3, "\u00b5m": 1e-3, "\u03bcm": 1e-3,
                "micron": 1e-3, "microns": 1e-3}


def nrrd_mm_per_unit(units, count: int, name: str = "file") -> np.ndarray:
    """Millimetres per unit of each of ``count`` NRRD unit strings (None: all mm); LNQError for a unit
    that is not a length this reader knows (mm, cm, m, um)."""
    names = [""] * count if units is None else [str(u).strip().lower() for u in units]
    unknown = sorted({u for u in names if u not in _MM_PER_UNIT})
    if unknown:
        raise LNQError(f"{name} gives its geometry in unit(s) {', '.join(unknown)} that are not a length in "
                       "mm, cm, m or um; re-save it in mm (e.g. from 3D Slicer)")
    if len(names) != count and len({_MM_PER_UNIT[u] for u in names}) > 1:
        raise LNQError(f"{name} gives {len(names)} units ({', '.join(names)}) for {count} axes; re-save it "
                       "with one unit per axis (e.g. from 3D Slicer)")
    if len(names) != count:  # one unit named fewer or more times than there are axes: it holds for all
        names = [names[0] if names else ""] * count
    return np.asarray([_MM_PER_UNIT[u] for u in names])


def _itk_time_axis(header: dict) -> int | None:
    """The time axis of ITK's NRRD of a 4D image (``space dimension: 4``, no named space): the one axis
    stepping along the 4th world axis alone, the others in the first three; None for any other header."""
    if header.get("space") is not None or int(header.get("space dimension") or 3) != 4 \
            or "space directions" not in header or int(header["dimension"]) != 4:
        return None
    sd = np.asarray(header["space directions"], dtype=float).reshape(4, -1)
    if sd.shape[1] != 4 or not np.all(np.isfinite(sd)):
        return None
    time = [a for a in range(4) if not np.any(sd[a, :3])]
    if len(time) != 1 or np.any(sd[[a for a in range(4) if a != time[0]], 3]):
        return None
    return time[0]


def _time_points(header: dict) -> int:
    """How many time points an NRRD holds: the size of its time axis (``kinds: ... time``, an axis
    labelled ``time``: 3D Slicer's volume sequence ``.seq.nrrd`` keeps its time points on a ``list`` axis
    so, or ITK's 4th world axis: :func:`_itk_time_axis`); 1 without one."""
    sizes = [int(size) for size in header.get("sizes", [])]
    kinds = [str(kind).lower() for kind in header.get("kinds") or []]
    labels = [str(label).strip().lower() for label in header.get("labels") or []]
    timed = [kinds[a:a + 1] == ["time"] or labels[a:a + 1] == ["time"] for a in range(len(sizes))]
    counts = [size for size, time in zip(sizes, timed, strict=True) if time]
    if (axis := _itk_time_axis(header)) is not None and axis < len(sizes):
        counts.append(sizes[axis])
    return max(counts, default=1)


def _in_3d_space(header: dict) -> dict:
    """``header``, or, for ITK's NRRD of a 4D image of one time point (:func:`_itk_time_axis` of size 1),
    the header of its 3D volume: that axis a list axis, the space, its origin and units 3D (the file's MHA
    and NIfTI read so)."""
    time = _itk_time_axis(header)
    if time is None or int(header["sizes"][time]) != 1:
        return header
    sd = np.asarray(header["space directions"], dtype=float).reshape(4, -1)
    three = dict(header, **{"space dimension": 3})
    three["space directions"] = np.where(np.arange(4)[:, None] == time, np.nan, sd[:, :3])
    if "space origin" in header:
        three["space origin"] = np.asarray(header["space origin"], dtype=float).reshape(-1)[:3]
    if header.get("space units") is not None:  # ITK writes the time axis's unit 4th ("s")
        three["space units"] = list(header["space units"])[:3]
    return three


def nrrd_spatial_axes(header: dict) -> list[int]:
    """Header-order indices of the spatial (domain) axes."""
    header = _in_3d_space(header)
    dim = int(header["dimension"])
    if "space directions" in header:
        sd = np.asarray(header["space directions"], dtype=float).reshape(dim, -1)
        return [i for i in range(dim) if np.all(np.isfinite(sd[i]))]
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * dim)]
    return [i for i in range(dim) if kinds[i] not in NON_SPATIAL_KINDS]


def nrrd_geometry(header: dict, name: str = "file") -> tuple[tuple, tuple, tuple]:
    """(spacing, origin, direction) in LPS of the three spatial axes of a pynrrd header; LNQError for a
    time series (a time axis of more than one point: a size-1 one is dropped)."""
    if (points := _time_points(header)) > 1:
        raise LNQError(f"{name} holds {points} time points (a 4D time series); a CT or label volume must be "
                       "3D: save one time point of it (e.g. in 3D Slicer)")
    header = _in_3d_space(header)
    flip = nrrd_space_flip(header, name)
    axes = nrrd_spatial_axes(header)
    if len(axes) != 3:
        raise LNQError(f"{name} has {len(axes)} spatial axes; a CT or label volume must be 3D")
    if "space directions" in header:
        dim = int(header["dimension"])
        sd = np.asarray(header["space directions"], dtype=float).reshape(dim, -1)[axes]
        if sd.shape[1] != 3:
            raise LNQError(f"{name} lives in a {sd.shape[1]}D space; a CT or label volume must be 3D")
        mm = nrrd_mm_per_unit(header.get("space units"), 3, name)  # per world axis: columns and origin
        vectors = sd * flip * mm  # row i: LPS step of spatial axis i, in mm
        spacing = np.linalg.norm(vectors, axis=1)  # zero, singular or sheared: volume.check_grid refuses
        direction = (vectors / np.where(spacing > 0, spacing, 1.0)[:, None]).T
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float).reshape(-1)
        if origin.size != 3 or not np.all(np.isfinite(origin)):
            warnings.warn(f"{name} has a damaged space origin ({header.get('space origin')}); taken as "
                          "0, 0, 0 (it only places the image in space)", UserWarning, stacklevel=3)
            origin = np.zeros(3)
        origin = origin * flip * mm
    else:
        # no 'spacings' field: 1 mm; a given NaN, inf, zero or negative spacing is refused by check_grid
        if "spacings" not in header:
            warnings.warn(f"{name} gives no voxel spacing (no 'space directions' or 'spacings' in its "
                          "header); taken as 1 x 1 x 1 mm, so node sizes and the model's view of the CT are "
                          "wrong unless it is: re-export the image with its spacing", UserWarning,
                          stacklevel=3)
        spacings = np.asarray(header.get("spacings", [1.0] * int(header["dimension"])), dtype=float)
        units = header.get("units")  # per axis, as spacings and axis mins
        per_axis = units is not None and len(units) == int(header["dimension"])
        mm = nrrd_mm_per_unit([units[a] for a in axes] if per_axis else units, len(axes), name)
        spacing = spacings[axes] * mm
        nan_list = [np.nan] * int(header["dimension"])
        mins = np.asarray(header.get("axis mins", header.get("axismins", nan_list)), dtype=float)[axes] * mm
        # a min is the edge of the first voxel's cell unless the axis is node-centred (NRRD's default
        # centring is cell, as Teem, ITK and 3D Slicer read it): the first voxel's centre is half a step in
        centerings = header.get("centerings", header.get("centers")) or []
        if isinstance(centerings, str):  # pynrrd lists 'centerings' but leaves 'centers' a string
            centerings = centerings.split()
        node = np.array([len(centerings) > a and str(centerings[a]).lower() == "node" for a in axes])
        origin = np.where(np.isfinite(mins), mins + np.where(node, 0.0, spacing / 2.0), 0.0)
        direction = np.eye(3)
    return tuple(spacing), tuple(origin), tuple(direction.ravel())


def nrrd_geometry_fields(volume: Volume) -> dict:
    """The pynrrd header fields ('space', 'space directions', 'space origin', 'kinds') of a grid."""
    steps = volume.direction_matrix * np.asarray(volume.spacing)[None, :]  # column j: step of axis j
    return {
        "space": "left-posterior-superior",
        "space directions": steps.T.copy(),
        "space origin": np.asarray(volume.origin, dtype=float),
        "space units": ["mm", "mm", "mm"],
        "kinds": ["domain", "domain", "domain"],
    }


def describe_grid(volume: Volume) -> str:
    """One-line summary of a grid (size x,y,z; spacing; origin)."""
    size = ",".join(str(n) for n in volume.size_xyz)
    spacing = ",".join(f"{s:.4g}" for s in volume.spacing)
    origin = ",".join(f"{o:.4g}" for o in volume.origin)
    return f"size {size}, spacing {spacing} mm, origin {origin} mm"


def check_same_grid(a: Volume, b: Volume, tol: float = GRID_TOL, what: str = "the two images",
                    fix: str = "resample one onto the other (io.align_to) or check the file pairing") -> None:
    """Raise LNQError when ``a`` and ``b`` differ in size, spacing, origin or direction."""
    diffs = a.grid_differences(b, tol)
    if diffs:
        raise LNQError(f"{what} are on different grids ({'; '.join(diffs)}); {fix}")


def _corners_zyx(shape: tuple[int, int, int]) -> np.ndarray:
    lo, hi = -0.5, np.asarray(shape, dtype=float) - 0.5
    return np.array([[z, y, x] for z in (lo, hi[0]) for y in (lo, hi[1]) for x in (lo, hi[2])])


def overlap_fraction(reference: Volume, other: Volume) -> float:
    """Fraction of ``other``'s voxel box (its corners' bounding box in ``reference`` index space)
    that falls inside ``reference``'s box; 0 when they do not overlap."""
    idx = reference.physical_to_index(other.index_to_physical(_corners_zyx(other.shape)))
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    ref_lo, ref_hi = np.full(3, -0.5), np.asarray(reference.shape, dtype=float) - 0.5
    inter = np.clip(np.minimum(hi, ref_hi) - np.maximum(lo, ref_lo), 0, None)
    size = np.maximum(hi - lo, 1e-12)
    return float(np.prod(inter / size))


def reordered_onto(reference: Volume, volume: Volume, tol: float = GRID_TOL,
                   origin_tol: float | None = None) -> Volume | None:
    """``volume`` on ``reference``'s grid when both sample the same points in space, stored in another
    axis order or direction (a RAS-flipped or sagittal-first copy of one image): its voxels transposed
    and flipped, nothing resampled. None when the grids sample different points. ``tol``: of the steps;
    ``origin_tol`` (mm, default ten times ``tol``: the far corner sums every step's rounding): of the
    first voxel's place."""
    if sorted(volume.shape) != sorted(reference.shape):
        return None
    match = _axis_match(reference, volume, tol)
    if match is None or any(volume.size_xyz[a] != reference.size_xyz[c] for c, a in enumerate(match[0])):
        return None
    origin_tol = tol * 10 if origin_tol is None else origin_tol
    if not np.allclose(volume.index_to_physical(match[2][::-1])[0], reference.origin, atol=origin_tol):
        return None
    return Volume(_transposed(volume, *match[:2]), reference.spacing, reference.origin,
                  reference.direction, dict(volume.meta))


def _axis_match(
    reference: Volume, volume: Volume, tol: float,
) -> tuple[list[int], list[int], np.ndarray] | None:
    """(for each of ``reference``'s axes (i, j, k), ``volume``'s axis with the same step, its sign, and
    ``volume``'s (i, j, k) index of the voxel that comes first in ``reference``'s order) when ``volume``'s
    steps are ``reference``'s, permuted and signed; None otherwise."""
    steps = volume.direction_matrix * np.asarray(volume.spacing)[None, :]  # column c: axis c's step (x, y, z)
    wanted = reference.direction_matrix * np.asarray(reference.spacing)[None, :]
    order, signs = [], []
    for c in range(3):
        match = [(a, sign) for a in range(3) for sign in (1, -1)
                 if np.allclose(sign * steps[:, a], wanted[:, c], atol=tol)]
        if len(match) != 1 or match[0][0] in order:
            return None
        order.append(match[0][0])
        signs.append(match[0][1])
    return order, signs, first_voxel(volume, order, signs)


def _transposed(volume: Volume, order: list[int], signs: list[int]) -> np.ndarray:
    """``volume``'s voxels in the axis order and direction :func:`_axis_match` found, C-ordered."""
    return np.ascontiguousarray(permuted_view(volume, order, signs))


def align_to(reference: Volume, labels: Volume, what: str = "labels") -> Volume:
    """``labels`` on ``reference``'s grid.

    Same grid: returned unchanged (with the reference's exact geometry when they differ by float
    noise only). The same points stored in another axis order or direction: transposed and flipped
    onto it (:func:`reordered_onto`, exact, no warning). A box of its grid (a segmentation saved cropped),
    stored in its axis order or another: pasted in place, exact, no warning. The CT's size without any
    geometry of their own (1 mm at origin 0): given the CT's grid with a :class:`GridWarning`. Overlapping
    but different grid: resampled by nearest neighbour with a :class:`GridWarning`. No overlap at all:
    LNQError.
    """
    if labels.same_grid(reference, tol=GRID_TOL):
        if (labels.spacing, labels.origin, labels.direction) == (reference.spacing, reference.origin,
                                                                 reference.direction):
            return labels
        return Volume(labels.array, reference.spacing, reference.origin, reference.direction,
                      dict(labels.meta))
    reordered = reordered_onto(reference, labels)
    if reordered is not None:
        return reordered
    if labels.shape == reference.shape and _no_geometry(labels) and not _no_geometry(reference):
        warnings.warn(f"the {what} carry no geometry (1 mm voxels at origin 0, as an array saved without its "
                      "image's) and have the CT's size: read on the CT's grid; save them with the CT's "
                      "geometry", GridWarning, stacklevel=2)
        return Volume(labels.array, reference.spacing, reference.origin, reference.direction,
                      dict(labels.meta))
    pasted = _pasted_onto(reference, labels, what)
    if pasted is None and (like := _axes_like(reference, labels)) is not None:  # a crop stored otherwise
        pasted = _pasted_onto(reference, like, what)
    if pasted is not None:
        return pasted
    if overlap_fraction(reference, labels) <= 0.0:
        raise LNQError(f"the {what} ({describe_grid(labels)}) do not overlap the CT "
                       f"({describe_grid(reference)}) at all: the seg does not cover the CT; "
                       "check that the seg and CT files belong to the same case")
    import SimpleITK as sitk

    resampled = sitk.Resample(labels.to_sitk(), reference.to_sitk(), sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0)
    array = sitk.GetArrayFromImage(resampled).astype(labels.array.dtype, copy=False)
    lost = _count_outside(reference, labels)
    diffs = "; ".join(labels.grid_differences(reference))
    message = (f"the {what} grid differs from the CT grid ({diffs}); "
               "resampled onto the CT grid (nearest neighbour)")
    if lost:
        message += f"; {lost} labelled voxels lie outside the CT and were dropped"
    warnings.warn(message, GridWarning, stacklevel=2)
    return Volume(array, reference.spacing, reference.origin, reference.direction, dict(labels.meta))


def _axes_like(reference: Volume, volume: Volume, tol: float = GRID_TOL) -> Volume | None:
    """``volume``'s voxels stored in ``reference``'s axis order and direction (transposed and flipped, its
    origin the new first voxel's place: nothing resampled) when its steps are ``reference``'s, permuted
    and signed; None otherwise or when it already is."""
    match = _axis_match(reference, volume, tol)
    if match is None or (match[0] == [0, 1, 2] and match[1] == [1, 1, 1]):
        return None
    return Volume(_transposed(volume, *match[:2]), reference.spacing,
                  tuple(volume.index_to_physical(match[2][::-1])[0]), reference.direction, dict(volume.meta))


def _no_geometry(volume: Volume) -> bool:
    """Whether ``volume`` has the geometry of an image saved without one: 1 mm, origin 0, no rotation."""
    return (np.allclose(volume.spacing, 1.0, atol=GRID_TOL) and np.allclose(volume.origin, 0.0, atol=GRID_TOL)
            and np.allclose(volume.direction_matrix, np.eye(3), atol=GRID_TOL))


def _pasted_onto(reference: Volume, labels: Volume, what: str) -> Volume | None:
    """``labels`` on ``reference``'s grid when they sample a box of it (the same spacing and direction,
    the origin on a voxel of it: a 3D Slicer segmentation saved cropped to its segments): pasted in place,
    nothing resampled; labelled voxels beyond the CT dropped with a warning. None for any other grid."""
    pasted = pasted_box(reference, labels)
    if pasted is None:
        return None
    out, lost = pasted
    if lost:
        warnings.warn(f"{lost} labelled voxels of the {what} lie outside the CT and were dropped",
                      GridWarning, stacklevel=3)
    return out


def _box_offset(reference: Volume, labels: Volume) -> np.ndarray | None:
    """The voxel index in ``reference`` of ``labels``' first voxel when they sample a box of its grid (the
    same spacing and direction, the origin on one of its voxels); None otherwise."""
    if not (np.allclose(labels.spacing, reference.spacing, atol=GRID_TOL, rtol=0)
            and np.allclose(labels.direction_matrix, reference.direction_matrix, atol=GRID_TOL)):
        return None
    start = reference.physical_to_index(np.asarray(labels.origin))[0]
    offset = np.round(start).astype(int)
    return offset if np.allclose(start, offset, atol=1e-3) else None


def box_within(reference: Volume, labels: Volume) -> bool:
    """Whether ``labels`` sample a box of ``reference``'s grid lying wholly inside it (a crop of it, as
    Slicer or napari saves one); False for one reaching past its edge, such as the same header over an
    array with two axes swapped."""
    offset = _box_offset(reference, labels)
    return offset is not None and bool(np.all(offset >= 0)
                                       and np.all(offset + np.asarray(labels.shape) <= reference.shape))


def pasted_box(reference: Volume, labels: Volume) -> tuple[Volume, int] | None:
    """``(labels pasted onto reference's grid, how many labelled voxels lay beyond it)`` when ``labels``
    sample a box of that grid (the same spacing and direction, the origin on one of its voxels: labels
    saved cropped), nothing resampled; None for any other grid, or a box that misses it."""
    offset = _box_offset(reference, labels)
    if offset is None:
        return None
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.asarray(labels.shape), np.asarray(reference.shape))
    if np.any(hi <= lo):
        return None  # no overlap: the caller says so
    out = np.zeros(reference.shape, dtype=labels.array.dtype)
    inside = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    source = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, offset))
    out[inside] = np.asarray(labels.array)[source]
    lost = int(np.count_nonzero(labels.array)) - int(np.count_nonzero(out[inside]))
    return Volume(out, reference.spacing, reference.origin, reference.direction, dict(labels.meta)), lost


def _count_outside(reference: Volume, labels: Volume) -> int:
    """How many non-zero voxels of ``labels`` have centres outside ``reference``'s box."""
    nz = np.argwhere(labels.array != 0)
    if nz.size == 0:
        return 0
    idx = reference.physical_to_index(labels.index_to_physical(nz))
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(reference.shape) - 0.5), axis=1)
    return int(np.count_nonzero(~inside))
