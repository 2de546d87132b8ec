"""Label files the commands write into a folder the user names: marked as lnq-napari's, and never
written over a file of the user's (``predict DATA -o DATA`` would otherwise replace the partial labels
``<case>-seg.nrrd`` with the model's mask)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_seg import ALGORITHM_NAME

#: The NRRD header field that marks a file an lnq-napari command wrote (its value names the command).
CREATED_BY = "lnq_created_by"


def created_by(command: str) -> dict[str, str]:
    """The header field that marks a file as written by ``lnq-napari COMMAND``."""
    return {CREATED_BY: f"lnq-napari {command}"}


def written_by_us(path: Path) -> bool:
    """Whether the existing file ``path`` is one an lnq-napari command wrote: an NRRD whose header holds
    :data:`CREATED_BY`, or a DICOM SEG whose manufacturer is lnq-napari's ``ALGORITHM_NAME``."""
    name = path.name.lower()
    try:
        if name.endswith((".nrrd", ".nhdr")):
            import nrrd

            return str(nrrd.read_header(str(path)).get(CREATED_BY, "")).startswith("lnq-napari ")
        if name.endswith(".dcm"):
            import pydicom

            header = pydicom.dcmread(path, stop_before_pixels=True)
            return str(header.get("Manufacturer", "")) == ALGORITHM_NAME
    except Exception:  # unreadable, not the format its name says: not a file we wrote
        return False
    return False


def check_not_users(paths: Iterable[Path], flag: str) -> None:
    """LNQError in one line when one of ``paths`` exists and is not a file lnq-napari wrote (a user's
    labels, say): checked before anything is computed or written, so nothing is lost or half-written."""
    for path in paths:
        if path.exists() and not (path.is_file() and written_by_us(path)):
            raise LNQError(f"{flag} {path.parent} already holds {path.name}, which lnq-napari did not write "
                           "(labels of yours?); it is left as it is: give another output folder, or move "
                           "that file away")
