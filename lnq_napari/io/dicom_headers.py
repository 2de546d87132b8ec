"""What a DICOM header says of its file: a CT image, a localizer, one of its series' slices. One rule for
:mod:`.readers` (reading a series) and :mod:`.dicom_seg` (finding files, writing a SEG for a series)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

#: Enhanced CT and Legacy Converted Enhanced CT: positions and rescale in functional groups, not per file.
ENHANCED_CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2")
#: CT Image Storage and the enhanced ones: the images of a CT (a PET, a dose screen, a SEG are none).
CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", *ENHANCED_CT_SOP_CLASSES)
#: The header elements :func:`series_slices` reads.
SLICE_TAGS = ["SOPInstanceUID", "ImageType", "ImagePositionPatient"]

Item = TypeVar("Item")


def is_localizer(header) -> bool:
    """Whether a DICOM header's Image Type says it is a localizer (a scout, topogram or survey)."""
    kinds = header.get("ImageType") or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return "LOCALIZER" in [str(k).strip().upper() for k in kinds]


def _position(header) -> tuple:
    """A header's Image Position (Patient) rounded to 0.001 mm (() when it has none or it is unreadable)."""
    try:
        return tuple(round(float(v), 3) for v in header.get("ImagePositionPatient") or ())
    except (TypeError, ValueError):
        return ()


def is_ct_image(header) -> bool:
    """Whether a DICOM header is a CT image (a volume's slice or an enhanced CT): its SOP class a CT one and
    no localizer (a PET, a dose screen stored as Secondary Capture with Modality CT, a SEG are none); a
    header without a SOP class by its Modality (CT, or none given)."""
    if is_localizer(header):
        return False
    sop_class = str(header.get("SOPClassUID", "") or "").strip()
    if sop_class:
        return sop_class in CT_SOP_CLASSES
    return str(header.get("Modality", "") or "CT").strip().upper() == "CT"


def series_slices(items: Sequence[Item], headers: Sequence) -> list[Item]:
    """Of a series' ``items`` (files or headers, in order) with each one's header (None: unreadable), its
    slices: a localizer (scout) filed in the series and a second copy of one image (same SOP Instance UID
    at the same position: a file copied twice) left out; unreadable ones kept (the series reader names
    what is wrong). Slices at other positions sharing a UID (a faulty exporter or anonymiser) are kept.
    A series of localizers only keeps them (a scout alone is read as what it is)."""
    kept, localizers, seen = [], [], set()
    for item, header in zip(items, headers, strict=True):
        if header is None:
            kept.append(item)
            continue
        instance = str(header.get("SOPInstanceUID", "")).strip()
        copy = (instance, _position(header))
        if instance and copy in seen:
            continue
        seen.add(copy)
        (localizers if is_localizer(header) else kept).append(item)
    return kept if kept else localizers
