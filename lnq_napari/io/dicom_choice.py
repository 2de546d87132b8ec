"""Which of several CT series in a folder :func:`.dicom_series.read_dicom` reads, and the warning saying so:
the largest axial one (a coronal or sagittal reformat beside an axial volume is not the scan:
:func:`largest_series`), unless it is a sharp (lung or bone kernel) reconstruction and a series that is not
stands in for it as clearly the same scan, reconstructed differently (:func:`soft_stand_in`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lnq_napari.io.dicom_headers import (
    VOLUME_SLICES,
    convolution_kernel,
    frame_count,
    is_projection,
    read_header,
    reconstruction_sharpness,
    volume_stack,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: How :func:`choice_text` names a sharp reconstruction.
SHARP_NAME = "sharp (lung or bone kernel) reconstruction"
#: A series whose slice normal lies more than this many degrees from the foot-head axis is a reformat.
MAX_AXIAL_DEGREES = 45.0
#: A stand-in covers at least this share of the largest series' extent along the slice normal.
MIN_COVERAGE = 0.9
#: A stand-in's slice normal lies within this many degrees of the largest series' one.
MAX_TILT_DEGREES = 1.0
#: A stand-in's slices are at most this far apart (mm), and at most :data:`MAX_SPACING_RATIO` times the
#: largest series' spacing.
MAX_SPACING_MM, MAX_SPACING_RATIO = 5.0, 3.0


@dataclass(frozen=True)
class SeriesLook:
    """What a series' first slice (no scout) says of it: its name in a warning (description and kernel,
    quoted, or "series"), its sharpness (True sharp, False a soft kernel, None not known:
    :func:`.dicom_headers.reconstruction_sharpness`) and whether it is a projection (MIP, average ...)."""

    name: str = "series"
    sharpness: bool | None = None
    projection: bool = False


def series_look(file: str) -> SeriesLook:
    """The :class:`SeriesLook` of a series from one of its slice files (the defaults when unreadable)."""
    try:
        header = read_header(file, stop_before_pixels=True, specific_tags=[
            "ConvolutionKernel", "SeriesDescription", "ImageType", "SharedFunctionalGroupsSequence"])
    except Exception:  # the series is read next, and refused there when damaged
        return SeriesLook()
    kernel, description = convolution_kernel(header), str(header.get("SeriesDescription", "") or "").strip()
    text = " ".join(t for t in (description, kernel) if t)
    return SeriesLook(f"'{text}'" if text else "series", reconstruction_sharpness(kernel, description),
                      is_projection(header))


def largest_series(pool: Sequence[str], slices: dict[str, tuple[list[str], list[Dataset | None]]],
                   images: dict[str, int]) -> tuple[str, frozenset[str]]:
    """Of a folder's CT series (``pool``; the slices of those compared in ``slices``:
    :func:`.dicom_series._series_slices`), the largest (ties: the first by Series Instance UID) and the
    coronal or sagittal reformats (:func:`is_reformat`) passed over for it. A reformat is passed over only
    where an axial series forms a volume: beside a fragment of a few slices or a bolus-tracking series (its
    images at one position), the reformat is the scan."""
    reformats = frozenset(o for o in pool if o in slices and is_reformat(slices[o][1]))
    if not any(o not in reformats and o in slices and _forms_volume(slices[o][1]) for o in pool):
        reformats = frozenset()
    return max(sorted(set(pool) - reformats), key=images.__getitem__), reformats


def is_reformat(headers: Sequence) -> bool:
    """Whether a series' slices (their headers, :func:`.dicom_headers.series_slices`) form a volume whose
    normal lies more than :data:`MAX_AXIAL_DEGREES` from the foot-head axis: a coronal or sagittal reformat
    a PACS exports beside a chest CT's axial series (classic slices, or one enhanced file)."""
    normal = _normal(headers)
    return normal is not None and float(np.degrees(np.arccos(min(abs(float(normal[2])), 1.0)))) > \
        MAX_AXIAL_DEGREES


def _forms_volume(headers: Sequence) -> bool:
    """Whether a series' slices (their headers) form a volume: classic slices stacked
    (:func:`.dicom_headers.volume_stack`), or one enhanced file of :data:`.dicom_headers.VOLUME_SLICES`
    frames or more."""
    if len(headers) == 1:
        return frame_count(headers[0]) >= VOLUME_SLICES
    return volume_stack(headers) is not None


def _normal(headers: Sequence) -> np.ndarray | None:
    """The slice normal (unit length) of a series' slices that form a volume (:func:`_forms_volume`):
    classic slices' from their stack, an enhanced file's from its shared Plane Orientation (header only);
    None when not told."""
    if len(headers) != 1:
        stack = volume_stack(headers)
        return None if stack is None else stack[0]
    if not _forms_volume(headers):
        return None
    try:
        shared = headers[0].SharedFunctionalGroupsSequence[0]
        orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None  # per frame, or not given: not told here (the reader checks the frames)
    if len(orientation) != 6:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def _span(along: np.ndarray) -> tuple[float, float, float]:
    """Of slice positions along a normal: the extent they cover (half a gap beyond each end) and the gap."""
    along = np.sort(along)
    gap = float(np.median(np.diff(along)))
    return float(along[0] - gap / 2), float(along[-1] + gap / 2), gap


def stands_in(headers: Sequence, largest: Sequence, look: SeriesLook) -> bool:
    """Whether a series (its slice headers, :class:`SeriesLook`) is clearly the largest series' scan
    reconstructed otherwise: not sharp, no projection, a volume whose normal lies within
    :data:`MAX_TILT_DEGREES`, covering :data:`MIN_COVERAGE` of the largest one's extent, at most
    :data:`MAX_SPACING_MM` and :data:`MAX_SPACING_RATIO` times its spacing."""
    ours, theirs = volume_stack(headers), volume_stack(largest)
    if look.sharpness or look.projection or ours is None or theirs is None:
        return False
    cosine = abs(float(np.dot(ours[0], theirs[0])))
    if np.degrees(np.arccos(min(cosine, 1.0))) > MAX_TILT_DEGREES:
        return False
    low, high, gap = _span(ours[1] @ ours[0])
    their_low, their_high, their_gap = _span(theirs[1] @ theirs[0])
    if gap > MAX_SPACING_MM or gap > MAX_SPACING_RATIO * their_gap:
        return False
    overlap = min(high, their_high) - max(low, their_low)
    return overlap >= MIN_COVERAGE * (their_high - their_low)


def soft_stand_in(largest: str, pool: list[str], slices: dict[str, tuple[list[str], list[Dataset | None]]],
                  looks: dict[str, SeriesLook], images: dict[str, int]) -> str | None:
    """Of a folder's CT series (``pool``; each one's :func:`.dicom_series._series_slices` in ``slices``),
    the largest (ties: the first by Series Instance UID) that :func:`stands_in` for the largest series when
    that one is sharp; None when it is not, or none does."""
    if largest not in looks or not looks[largest].sharpness or largest not in slices:
        return None
    found = [o for o in pool if o != largest and o in slices
             and stands_in(slices[o][1], slices[largest][1], looks[o])]
    return max(sorted(found), key=images.get) if found else None


def choice_text(sid: str, largest: str, pool: list[str], looks: dict[str, SeriesLook], images: dict[str, int],
                reformats: frozenset[str] = frozenset()) -> str:
    """What :func:`.dicom_series.read_dicom`'s warning says of the series read of several: which and why,
    then the others by name and slice count (``reformats``, :func:`is_reformat`, larger than the series
    read, said to be one: the read one is then the largest axial series)."""
    read = f"{looks[sid].name} ({images[sid]} slices, series {sid}"
    passed = {o for o in reformats if images[o] > images[sid]} if sid not in reformats else set()
    looks = {o: SeriesLook(f"{look.name}, a coronal or sagittal reformat", look.sharpness, look.projection)
             if o in passed else look for o, look in looks.items()}
    if sid != largest:
        kernel = "not a lung or bone kernel" if looks[sid].sharpness is False else "kernel unknown"
        what = "the largest, " if images[largest] > images[sid] else ""
        text = (f"reading {read}; {kernel}) rather than {what}{looks[largest].name} "
                f"({images[largest]}), a {SHARP_NAME}, which the model reads poorly")
        rest = [o for o in pool if o not in (sid, largest)]
        return text + ("; not " + "; ".join(f"{looks[o].name} ({images[o]})" for o in rest) if rest else "")
    rivals = [o for o in pool if o not in reformats] if sid not in reformats else pool  # chosen among
    tie = " (of equal size, the first by Series Instance UID)" \
        if sum(images[o] == images[sid] for o in rivals) > 1 else ""
    tie += " axial series" if passed else ""
    if all(looks[o].sharpness for o in pool):
        why = f"; every series a {SHARP_NAME}, which the model reads poorly"
    elif looks[sid].sharpness:
        why = (f"; a {SHARP_NAME}, which the model reads poorly, no soft volume beside it covers the same "
               "scan at 5 mm or finer")
    else:
        why = ""
    others = "; ".join(f"{looks[o].name} ({images[o]})" for o in pool if o != sid)
    return f"reading the largest{tie}, {read}{why}), not {others}"
