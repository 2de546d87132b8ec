"""Whose scan is it, and when: the DICOM PatientID and StudyDate of a CT, when the file or its header says."""

from __future__ import annotations

from pathlib import Path

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
    """The patient id from ``volume.meta`` or, for a DICOM file or folder, its first slices; None if none."""
    value = header_value(volume.meta, PATIENT_KEYS)
    if value:
        return value
    if source is None:
        return None
    path = Path(source)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files[:5]:
        found = _dicom_patient(file)
        if found:
            return found
    return None


def _dicom_patient(path: Path) -> str | None:
    import SimpleITK as sitk

    if path.suffix.lower() not in ("", ".dcm", ".ima", ".dicom"):
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.HasMetaDataKey("0010|0020"):
        return reader.GetMetaData("0010|0020").strip() or None
    return None
