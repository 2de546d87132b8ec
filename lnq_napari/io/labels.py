"""Label maps: the one check of label values, and label arrays to a node mask.

A label map holds 0 for background and positive integers for nodes (any integer type, bool, or a float
type holding whole numbers). Anything else (a probability map, NaN, negative values, strings) is refused
with a message that says what the file holds and how to fix it.
"""

from __future__ import annotations

import numpy as np

from lnq_napari.errors import LNQError


def check_label_values(array: np.ndarray, name: str = "labels") -> None:
    """Raise LNQError unless ``array`` holds non-negative whole numbers (bool, int, or integral floats)."""
    if array.dtype == bool:
        return
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise LNQError(f"{name} holds NaN or infinite values; a label map must hold 0 (background) and "
                           "1 (node): set those voxels to 0 and save it as uint8")
        if np.any(array != np.round(array)):
            example = array[array != np.round(array)].flat[0]
            raise LNQError(f"{name} holds non-integer values (e.g. {_shown(example)}): it looks like a "
                           "probability map, not a label map; threshold it (e.g. > 0.5) and save it as uint8")
    elif array.dtype.kind not in "iu":
        raise LNQError(f"{name} has voxel type {array.dtype}; a label map must be integer (uint8 0/1)")
    if array.size and array.min() < 0:
        looks = ": it looks like a CT (air is about -1000 HU), not a label map" if array.min() <= -500 else ""
        raise LNQError(f"{name} holds negative values (min {array.min()}){looks}; a label map must hold 0 "
                       "(background) and positive values (node)")


def _shown(value: np.floating) -> str:
    """``value`` in 3 significant digits, or, where those read as a whole number, in as many as its type
    needs (a float32 0.99999 as "0.99999", not "1"; 1234.5 as "1234.5", not "1.23e+03")."""
    short = f"{float(value):.3g}"
    return str(value) if float(short).is_integer() else short


def label_mask(array: np.ndarray, name: str = "labels", value: int | None = None) -> np.ndarray:
    """uint8 {0,1} from a label array: non-zero (or ``== value``) -> 1.

    Refuses negative values and floats with non-integer values (probability maps).
    """
    check_label_values(array, name)
    mask = array != 0 if value is None else array == value
    return mask.view(np.uint8)  # 0/1 as uint8 without a second full-size copy


MASK_MAX = 255  # the largest id a mask stored as float holds (0/1, 0/255, a few node ids); a CT goes higher
MAX_LABEL_VALUES = 64  # more distinct values than this: an image, not a label map
MAX_SEAM_FRACTION = 0.25  # of side-by-side labelled voxels, the most that may differ: nodes are solid blobs


def looks_like_label_map(array: np.ndarray) -> bool:
    """Whether the values of a file with no label name read as a label map: bool; or non-negative whole
    values (a float's in every voxel, at most :data:`MASK_MAX`: a mask as MONAI writes one), at most
    :data:`MAX_LABEL_VALUES` of them, 0 (the background) among them, in solid blobs (at most
    :data:`MAX_SEAM_FRACTION` of the side-by-side non-zero voxel pairs, along every axis, differ: a map and
    its transpose read alike). A CT, a probability map, or a distance map or an 8-bit image of whole values
    (their values change between most neighbours) do not. An integer array is judged on 8 slices spread
    through it (with the slice after each, for the pairs across slices); a float one on all (fractions may
    lie between those)."""
    if array.dtype == bool:
        return True
    if array.dtype.kind not in "iuf" or array.size == 0 or array.ndim == 0:
        return False
    if array.ndim == 1:
        array = array[None]
    is_float = array.dtype.kind == "f"
    step = 1 if is_float else max(1, array.shape[0] // 8)
    seen: set = set()
    seams = pairs = 0
    for index in range(0, array.shape[0], step):  # one slice (and the next) at a time: no full-size copy
        plane = np.asarray(array[index])
        if plane.size == 0:
            continue
        lowest, highest = plane.min(), plane.max()  # NaN: both NaN, the tests below fail
        if not lowest >= 0 or (is_float and not highest <= MASK_MAX):
            return False
        if is_float and not np.array_equal(plane, np.round(plane)):
            return False  # fractions: a probability map
        seen.update(np.unique(plane).tolist())
        if len(seen) > MAX_LABEL_VALUES:
            return False
        sides = _side_by_side(plane)
        if index + 1 < array.shape[0]:
            sides.append((plane, np.asarray(array[index + 1])))  # across slices
        for one, other in sides:
            both = (one != 0) & (other != 0)
            pairs += int(both.sum())
            seams += int((both & (one != other)).sum())
    return 0 in seen and seams <= MAX_SEAM_FRACTION * pairs  # no background: a CT of a few values (a phantom)


def _side_by_side(plane: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The voxels of ``plane`` and their next neighbours, as views, along each of its axes."""
    whole = (slice(None),) * plane.ndim
    return [(plane[whole[:axis] + (slice(None, -1),)], plane[whole[:axis] + (slice(1, None),)])
            for axis in range(plane.ndim)]
