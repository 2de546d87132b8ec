"""Whose scan is it, and when: the DICOM PatientID and StudyDate of a CT, when the file or its header says."""

from __future__ import annotations

from pathlib import Path

from lnq_napari.io.dicom_headers import read_header
from lnq_napari.io.nrrd_header import custom_fields
from lnq_napari.io.volume import Volume

#: Header keys that may hold the patient id (DICOM tag, NRRD custom fields as 3D Slicer or users write them).
PATIENT_KEYS = ("0010|0020", "PatientID", "patient_id", "DICOM.PatientID")
#: Header keys that may hold the study date (DICOM StudyDate, YYYYMMDD).
STUDY_DATE_KEYS = ("0008|0020", "StudyDate", "study_date", "DICOM.StudyDate")


def header_value(meta: dict, keys: tuple[str, ...]) -> str | None:
    """The first non-empty value of ``keys`` in a header's fields, stripped; None if none."""
    for key in keys:
        value = str(meta.get(key, "")).strip()
        if value:
            return value
    return None


def patient_id(volume: Volume, source: str | Path | None = None) -> str | None:
    """The patient id from ``volume.meta`` or else from ``source``'s own header (:func:`source_fields`);
    None if none."""
    value = header_value(volume.meta, PATIENT_KEYS)
    if value or source is None:
        return value
    return header_value(source_fields(source), PATIENT_KEYS)


def source_fields(source: str | Path) -> dict[str, str]:
    """The identity fields a CT file or DICOM folder carries: an NRRD header's custom fields (3D Slicer's
    ``DICOM.PatientID``), else the PatientID and StudyDate of its first DICOM slices; empty when none."""
    path = Path(source)
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        import nrrd

        try:
            return custom_fields(nrrd.read_header(str(path)))
        except (OSError, nrrd.NRRDError):
            return {}
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files[:5]:
        found = _dicom_fields(file)
        if found:
            return found
    return {}


def _dicom_fields(path: Path) -> dict[str, str]:
    """The PatientID and StudyDate of a DICOM file's header (:func:`.dicom_headers.read_header`: with its
    preamble or without), as ITK keys; empty when it is no DICOM or gives neither."""
    if path.suffix.lower() not in ("", ".dcm", ".ima", ".dicom"):
        return {}
    try:
        header = read_header(path, stop_before_pixels=True, specific_tags=["PatientID", "StudyDate"])
    except Exception:  # not DICOM
        return {}
    found = {PATIENT_KEYS[0]: header.get("PatientID"), STUDY_DATE_KEYS[0]: header.get("StudyDate")}
    return {tag: str(value).strip() for tag, value in found.items() if value is not None}
