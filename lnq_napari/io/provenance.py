"""Which lnq-napari command wrote a file: the marks its commands leave in the label files they write (an
NRRD header field, a DICOM SEG's Manufacturer and Content Label) and reading them back."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lnq_napari.io.dicom_headers import read_header

#: The Manufacturer (and algorithm name) of the DICOM SEGs lnq-napari writes.
ALGORITHM_NAME = "lnq-napari"
#: The Content Label (0070,0080) that marks a SEG an lnq-napari command wrote as a model's prediction, not
#: labels (read back by :func:`written_by_us`): a Type 1 code string of the SEG
#: instance, which a PACS keeps as it is and a viewer does not offer to rename, unlike the Series
#: Description (free text, renamed in a PACS, removed by de-identification's basic profile).
PREDICTION_CONTENT = {"predict": "LNQ_PREDICT"}
#: The NRRD header field that marks a file an lnq-napari command wrote (its value names the command).
CREATED_BY = "lnq_created_by"
#: The commands whose label files are a model's prediction: each may write over the other's.
PREDICTIONS = ("predict", "demo")
#: The command a DICOM SEG of lnq-napari's without a command's mark was written by: the export of labels
#: (napari's Save, ``workspace export``), a reviewed result; so too a prediction SEG written before
#: predictions were marked (which cannot be told from one).
EXPORT = "workspace export"


def created_by(command: str) -> dict[str, str]:
    """The header field that marks a file as written by ``lnq-napari COMMAND``."""
    return {CREATED_BY: f"lnq-napari {command}"}


def written_by_us(path: Path, commands: Iterable[str] = ()) -> bool:
    """Whether the existing file ``path`` is one an lnq-napari command wrote (``commands``: one of those):
    an NRRD whose header holds :data:`CREATED_BY`, or a DICOM SEG (any name: DICOM files often have no
    extension) whose manufacturer is lnq-napari's ``ALGORITHM_NAME`` (:func:`writer`)."""
    commands = tuple(commands)
    command = writer(path)
    return command is not None and (not commands or command in commands)


def writer(path: Path) -> str | None:
    """The lnq-napari command that wrote the file ``path``: an NRRD's :data:`CREATED_BY`; a DICOM SEG's
    Content Label (:data:`PREDICTION_CONTENT`), else :data:`EXPORT`. None when
    none did, or the file cannot be read as NRRD or DICOM."""
    try:
        if path.name.lower().endswith((".nrrd", ".nhdr")):
            import nrrd

            said = str(nrrd.read_header(str(path)).get(CREATED_BY, ""))
            return said.removeprefix("lnq-napari ") if said.startswith("lnq-napari ") else None
        header = read_header(path, stop_before_pixels=True, specific_tags=["Manufacturer", "ContentLabel"])
    except Exception:  # unreadable, not NRRD or DICOM: not a file we wrote
        return None
    return seg_writer(header)


def seg_writer(header) -> str | None:
    """The lnq-napari command that wrote a DICOM file whose header (pydicom) is ``header``: by its Content
    Label, else :data:`EXPORT`; None when lnq-napari did not write it."""
    if str(header.get("Manufacturer", "")) != ALGORITHM_NAME:
        return None
    label = str(header.get("ContentLabel", ""))
    return next((command for command, mark in PREDICTION_CONTENT.items() if mark == label), EXPORT)
