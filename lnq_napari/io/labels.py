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
