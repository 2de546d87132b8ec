"""Whether the slices of a DICOM series form one evenly spaced, untilted stack (a slice missing or doubled,
orientations that differ, gantry tilt), from their positions and orientations as written
(:class:`SliceTags`): the tolerances allow for the decimals a scanner or export writes them with."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lnq_napari.errors import LNQError

#: How far (mm) a slice may lie beside the line through the first slice along the slices' normal: more is a
#: tilted stack (gantry tilt), which a volume of orthogonal axes would misplace. Positions and orientations
#: written with few decimals widen it by what their rounding can shift a slice (:func:`check_stack`).
MAX_SLICE_DRIFT_MM = 1.0


class SliceTags(NamedTuple):
    """Each slice's Image Position and Image Orientation (Patient) as float arrays (None where missing or
    unreadable), and the rounding step they are written to (:func:`written_step`): of each position
    coordinate (x y z) and of the orientation's components."""

    positions: list
    orientations: list
    position_step: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation_step: float = 0.0


def written_step(texts: Iterable[str], whole: float) -> float:
    """The rounding step the decimal numbers ``texts`` (one coordinate over a series' slices) are written to:
    10 ** -d for the most decimals d any of them has ('-123.45': 0.01; '-250.0' beside it does not make it
    coarser), ``whole`` when all are whole numbers, 0 (exact) when one is in exponent notation or none is
    given."""
    decimals = -1
    for text in texts:
        text = text.strip().lower()
        if "e" in text:
            return 0.0
        decimals = max(decimals, len(text.partition(".")[2]))
    return 0.0 if decimals < 0 else 10.0 ** -decimals if decimals else whole


def _numbers(texts: list[str] | None) -> np.ndarray | None:
    try:
        return None if texts is None else np.asarray([float(v) for v in texts], dtype=float)
    except ValueError:
        return None


def _rounded(text: str) -> bool:
    """Whether an orientation component as written may be rounded: not exactly 0 or +-1, or written with 2
    or more decimals ('1.00', '-0.00': a writer of fixed decimals pads with zeros, which state its rounding;
    '-1.0', '0.0', '1' are how pydicom writes an exact axial orientation, and say nothing of the others'
    decimals)."""
    try:
        exact = abs(float(text)) in (0.0, 1.0)
    except ValueError:
        return True
    return not exact or len(text.strip().partition(".")[2]) >= 2


def _tags(positions: list[list[str] | None], orientations: list[list[str] | None]) -> SliceTags:
    """:class:`SliceTags` of each slice's position and orientation values as written (None: missing); the
    orientation's step from its components that may be rounded (:func:`_rounded`)."""
    coordinates = [[p[i] for p in positions if p is not None and len(p) == 3] for i in range(3)]
    components = [v for o in orientations if o is not None for v in o if _rounded(v)]
    steps = tuple(written_step(c, whole=1.0) for c in coordinates)
    return SliceTags([_numbers(p) for p in positions], [_numbers(o) for o in orientations], steps,
                     written_step(components, whole=0.0))


def slice_tags(has: Callable[[int, str], bool], get: Callable[[int, str], str], count: int) -> SliceTags:
    """The :class:`SliceTags` of a series read by ITK, from ``has(index, tag)`` / ``get(index, tag)`` (its
    meta data dictionaries) over ``count`` slices."""
    def texts(index: int, tag: str) -> list[str] | None:
        return get(index, tag).split("\\") if has(index, tag) else None

    return _tags([texts(i, "0020|0032") for i in range(count)], [texts(i, "0020|0037") for i in range(count)])


def header_slice_tags(files: list[str], headers: list) -> SliceTags:
    """:func:`slice_tags` of a series' files from their pydicom headers (read once, for this and the other
    checks); LNQError for a file whose header cannot be read."""
    from pydicom.multival import MultiValue

    def texts(header, keyword: str) -> list[str] | None:
        values = header.get(keyword)
        if values is None:
            return None
        return [str(v) for v in (values if isinstance(values, MultiValue | list | tuple) else [values])]

    for file, header in zip(files, headers, strict=True):
        if header is None:
            raise LNQError(f"cannot read {Path(file).name} as DICOM; the file is truncated or damaged: "
                           "re-export or re-download the series")
    return _tags([texts(h, "ImagePositionPatient") for h in headers],
                 [texts(h, "ImageOrientationPatient") for h in headers])


#: The most (radians) an orientation's rounding may turn the normal by in the tilt check, however coarsely
#: it is written: the worst case of 2 decimals (:func:`rounding_turn` of a step of 0.01 for a normal
#: along a cube diagonal, 0.005 * sqrt(6): 0.70 degrees; an axial orientation 0.41 degrees). Written
#: coarser (1 decimal), a consistent stack may be refused; a drift beyond 1 mm + that turn times the
#: stack's extent always is.
MAX_ROUNDED_TURN = 0.005 * float(np.sqrt(6.0))
#: At most this share of the slice spacing is put down to rounding: a missing slice doubles a gap.
MAX_ROUNDED_GAP_SHARE = 0.3


def rounding_turn(normal: np.ndarray, step: float) -> float:
    """How far (radians, to first order) rounding an orientation's rows r and columns c to ``step`` (each
    component off by at most half of it) can turn the unit ``normal`` of their plane: r's error along the
    normal tilts it about c, c's about r, each by up to step / 2 * |normal|_1; together sqrt(2) times."""
    return step / 2 * float(np.abs(normal).sum()) * float(np.sqrt(2.0))


def check_stack(tags: SliceTags, name: str) -> None:
    """LNQError when the slices of a series (:class:`SliceTags`) are not one evenly spaced stack: a slice
    missing, two at one position, orientations that differ (SimpleITK would silently average the spacing),
    or a tilted stack (:func:`check_not_tilted`). Gaps may differ by 1 % of the spacing, 0.1 mm, or what
    rounding the positions to their written decimals makes them alternate by (0.1 mm steps along an oblique
    normal: up to 0.14 mm); the drift beside the stack by what rounding positions and orientation can shift
    a slice, the orientation's share (:func:`rounding_turn`) at most :data:`MAX_ROUNDED_TURN` (0.7 degrees:
    6.1 mm over 500 mm)."""
    positions, orientations = tags.positions, tags.orientations
    fix = "re-export the complete series (one acquisition, every slice) from the PACS or scanner"
    placeless = sum(p is None or p.size != 3 for p in positions)
    if len(positions) >= 2 and placeless:
        raise LNQError(f"{placeless} of the {len(positions)} DICOM slices in {name} lack their position "
                       f"(Image Position (Patient)), so the slices cannot be placed; {fix}")
    unoriented = sum(o is None or o.size != 6 for o in orientations)
    if 0 < unoriented < len(orientations):
        raise LNQError(f"{unoriented} of the {len(orientations)} DICOM slices in {name} lack their "
                       f"orientation (Image Orientation (Patient)), so they cannot be checked as one "
                       f"stack; {fix}")
    check_finite(orientations, name)
    if len(positions) < 3 or unoriented:
        return  # nothing to compare (the grid check still applies)
    if any(o is None or o.size != 6 or not np.allclose(o, orientations[0], atol=SAME_ORIENTATION)
           for o in orientations):
        raise LNQError(f"the DICOM slices in {name} do not share one orientation (mixed series); {fix}")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    normal = normal / (np.linalg.norm(normal) or 1.0)  # rounded rows and columns: not quite unit length
    stack, step = np.asarray(positions), np.asarray(tags.position_step, dtype=float)
    extent = float(np.ptp(stack @ normal))
    turn = min(rounding_turn(normal, tags.orientation_step), MAX_ROUNDED_TURN)
    rounding = float(np.linalg.norm(step)) + turn * extent
    check_not_tilted(stack, normal, name, max(MAX_SLICE_DRIFT_MM, rounding))
    gaps = np.diff(np.sort(stack @ normal))
    if gaps.min() < 1e-3:
        raise LNQError(f"the DICOM series in {name} has two slices at one position (duplicated or mixed "
                       f"slices); {fix}")
    median = float(np.median(gaps))
    rounded = min(float(np.abs(normal) @ step), MAX_ROUNDED_GAP_SHARE * median)  # floor/ceil per coordinate
    if gaps.max() - gaps.min() > max(0.1, 0.01 * median, rounded) + 1e-6:
        raise LNQError(f"the DICOM slices in {name} are unevenly spaced (gaps {gaps.min():.3g} to "
                       f"{gaps.max():.3g} mm): a slice is missing or the series mixes acquisitions; {fix}")


def check_finite(orientations: list, name: str) -> None:
    """LNQError when a slice's orientation (Image Orientation (Patient), None where missing) holds NaN or
    infinity (a damaged header): no axes can be made of it (it gave a numpy traceback, or "nan degrees off
    perpendicular"; 3 slices or more were called a mixed series)."""
    for orientation in orientations:
        if orientation is not None and not np.all(np.isfinite(orientation)):
            written = "\\".join(f"{v:g}" for v in orientation)
            raise LNQError(f"the orientation of the DICOM slices in {name} (Image Orientation (Patient)) is "
                           f"not six finite numbers ({written}), so the slices cannot be placed; re-export "
                           "the series")


def check_not_tilted(positions: np.ndarray, normal: np.ndarray, name: str,
                     allowed: float = MAX_SLICE_DRIFT_MM) -> None:
    """LNQError when the slice positions drift sideways along the stack by more than ``allowed`` mm (a
    gantry-tilted acquisition): read as a volume, its far slices would lie that far from where the scanner
    put them."""
    offsets = positions - positions[0]
    sideways = offsets - np.outer(offsets @ normal, normal)
    drift = float(np.linalg.norm(sideways, axis=1).max())
    if drift > allowed:
        along = float(np.ptp(offsets @ normal))
        angle = float(np.degrees(np.arctan2(drift, along))) if along > 0 else 90.0
        raise LNQError(f"the DICOM series in {name} is tilted (gantry tilt about {angle:.1f} degrees: its "
                       f"slices drift {drift:.1f} mm sideways along the stack), which a volume would "
                       "misplace; resample it to an untilted stack first (dcm2niix or 3D Slicer correct "
                       "gantry tilt)")


#: How far (per unit length, about radians) the direction a series was read with may lie from its written
#: orientation's rows and columns (each normalised): ITK turns rows and columns at most 1e-3 off
#: perpendicular into perpendicular axes (moving each by up to that); 2e-3 misplaces a point 500 mm away by
#: 1 mm. Beyond it, GDCM gave up on the orientation (rows and columns further off perpendicular: written to
#: 2 decimals, a double-oblique one is) and read the series with the axial axes instead.
MAX_DIRECTION_CHANGE = 2e-3
#: The most any component of a written orientation may lie off the nearest perpendicular unit rows and
#: columns (:func:`orthonormal`) and be read as those: what writing it to 2 decimals does, rounded or cut
#: (0.99 for 0.99995). An orientation written coarser is held to this too; one further off is sheared.
MAX_ROUNDED_COMPONENT = 0.01
#: How far (each component) ITK's axes may lie from the nearest perpendicular axes of a written orientation
#: and be taken as those: further, ITK made them perpendicular its own way (it keeps the columns and turns
#: the rows, for rows and columns 1e-4 to 1e-3 off perpendicular, however many decimals they are written
#: to), which a SEG's frames, carrying the orientation as written, are not placed on
#: (:func:`written_direction`). Well within :data:`ON_GRID_AXES`, so what is read a SEG can be written for.
SAME_AXES = 1e-6
#: How far (each component) a SEG frame's rows and columns (or their nearest perpendicular axes) may lie
#: from a grid's and be on that grid (dicom_seg reading and writing frames).
ON_GRID_AXES = 1e-4
#: How far (each component) the orientations of a series' slices may differ and be one orientation.
SAME_ORIENTATION = 1e-3
#: How far off perpendicular (cosine, or off unit length) ITK reads rows and columns as written, turning
#: them perpendicular; also the least rounding allowed an orientation written to 3 decimals or more.
ITK_OFF_PERPENDICULAR = 1e-3


def orthonormal(orientation: np.ndarray) -> tuple[np.ndarray, float]:
    """The perpendicular unit rows and columns nearest a written orientation's six values (the polar factor
    of its 3 x 2 matrix), as six values, and the most any written component lies off them."""
    written = np.asarray(orientation, dtype=float).reshape(2, 3).T
    u, _, vt = np.linalg.svd(written, full_matrices=False)
    nearest = u @ vt
    return nearest.T.ravel(), float(np.abs(written - nearest).max())


def written_direction(direction: Sequence[float], tags: SliceTags, name: str) -> np.ndarray | None:
    """None when the direction a series was read with (ITK's, row-major 3 x 3) is its first slice's
    orientation (:class:`SliceTags`; none written: nothing to compare); else the 3 x 3 direction (columns:
    rows, columns, their normal) of that orientation made orthonormal (:func:`orthonormal`): GDCM reads an
    orientation whose rows and columns are more than about 1e-3 off perpendicular (0.99 / 0.01, or a
    double-oblique one, written to 2 decimals) with the axial axes, with no word, a double-oblique CT's far
    slices then hundreds of mm from where the scanner put them. LNQError when a component lies further off
    than the step it is written to, at most :data:`MAX_ROUNDED_COMPONENT` (sheared rows and columns, which
    no volume holds)."""
    written = tags.orientations[0] if tags.orientations else None
    if written is None or written.size != 6:
        return None
    check_finite(tags.orientations, name)
    row, column = written[:3], written[3:]
    if not np.linalg.norm(row) or not np.linalg.norm(column):
        return None  # no orientation: the grid check names it
    axes = np.asarray(direction, dtype=float).reshape(3, 3)[:, :2].T
    unit = np.stack([row / np.linalg.norm(row), column / np.linalg.norm(column)])
    nearest, off = orthonormal(written)
    same = float(np.linalg.norm(axes - unit, axis=1).max()) <= MAX_DIRECTION_CHANGE
    if same and float(np.abs(axes - nearest.reshape(2, 3)).max()) <= SAME_AXES:
        return None
    allowed = min(max(tags.orientation_step, ITK_OFF_PERPENDICULAR), MAX_ROUNDED_COMPONENT)
    if off > allowed + 1e-9:
        cosine = abs(float(unit[0] @ unit[1]))
        degrees = float(np.degrees(np.arcsin(min(cosine, 1.0))))
        why = (f"written to {_decimals(tags.orientation_step)}: too coarsely to place the CT (2 decimals are "
               "read on the nearest perpendicular axes)" if tags.orientation_step > MAX_ROUNDED_COMPONENT else
               f"more than rounding it to {_decimals(allowed)} explains (sheared, or written too coarsely to "
               "place the CT)")
        raise LNQError(f"the orientation of the DICOM slices in {name} (Image Orientation (Patient)) has "
                       f"rows and columns {degrees:.1f} degrees off perpendicular (cosine {cosine:.4f}), "
                       f"{why}; re-export the series with its orientation in full precision")
    row, column = nearest[:3], nearest[3:]
    return np.stack([row, column, np.cross(row, column)], axis=1)


def _decimals(step: float) -> str:
    """'2 decimals' for a step of 0.01."""
    count = round(-np.log10(step))
    return f"{count} decimal{'s' if count != 1 else ''}"


def placed_stack(direction: np.ndarray, positions: list) -> tuple[np.ndarray, tuple[float, ...], float]:
    """Of slices at ``positions`` (in the order read) stacked along ``direction``'s third column
    (:func:`written_direction`): the order that stacks them along it, the first one's position and the
    spacing between them (0 for one slice)."""
    stack = np.asarray(positions, dtype=float)
    along = stack @ direction[:, 2]
    order = np.argsort(along, kind="stable")
    spacing = float(along[order[-1]] - along[order[0]]) / (len(order) - 1) if len(order) > 1 else 0.0
    return order, tuple(float(v) for v in stack[order[0]]), spacing
