"""Label files the commands write into a folder the user names: marked as lnq-napari's, and never
written over a file of the user's (``predict DATA -o DATA`` would otherwise replace the partial labels
``<case>-seg.nrrd`` with the model's mask)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import check_folder_writable, file_above
from lnq_napari.io.dicom_seg import SegFile
from lnq_napari.io.layout import LABEL_SUFFIXES, is_image_file, sibling_names
from lnq_napari.io.provenance import EXPORT, seg_writer, writer

#: What comes first among several DICOM SEGs of one case (:func:`label_rank`'s order).
LABEL_RANKS = ("reviewed labels napari's Save or workspace export wrote", "a SEG lnq-napari did not write",
               "an lnq-napari SEG of unedited model output")


def label_rank(seg: SegFile) -> tuple[int, str]:
    """Where the parsed DICOM SEG ``seg`` comes among several of one case, and why (:data:`LABEL_RANKS`):
    an unmarked lnq-napari SEG (:data:`EXPORT`) with a segment drawn or edited by hand holds a user's
    reviewed labels and comes first; then a SEG lnq-napari did not write (3D Slicer's, a data set's); last
    an unmarked lnq-napari SEG whose segments are all the model's unedited output: what ``predict`` wrote
    before predictions were marked, or the export of a prediction confirmed unedited, which cannot be told
    apart."""
    if seg_writer(seg.dataset) != EXPORT:
        return 1, LABEL_RANKS[1]
    unedited = all(s.model_version is not None and not s.edited for s in seg.segments)
    return (2, LABEL_RANKS[2]) if unedited else (0, LABEL_RANKS[0])


def check_not_users(paths: Iterable[Path], flag: str, commands: tuple[str, ...], *,
                    what: str | None = None) -> None:
    """LNQError in one line when one of ``paths`` exists and is not a file one of ``lnq-napari COMMANDS``
    wrote (a user's labels, or a phantom's, whose partial labels a prediction may not replace; a SEG of
    reviewed labels is named as such): checked before anything is computed or written, so nothing is lost
    or half-written. With ``what`` (``"a DICOM SEG"``), each path is a file named on its own: a folder
    there is left to the writer, and the line asks for another file name."""
    for path in paths:
        wrote = writer(path) if path.is_file() else None
        if not path.exists() or wrote in commands or (what and not path.is_file()):
            continue
        if what:
            raise LNQError(f"{path} already exists and is not {what} lnq-napari wrote (a file of yours, or a "
                           f"data set's?); it is left as it is: write {what} under another file name, or "
                           "move that file away")
        whose = (f"which lnq-napari {commands[0]} did not write (labels of yours, or a data set's?)"
                 if wrote != EXPORT else "a DICOM SEG napari's Save or workspace export wrote (reviewed "
                 "labels, or a prediction written before predictions were marked)")
        raise LNQError(f"{flag} {path.parent} already holds {path.name}, {whose}; it is left as it is: give "
                       "another output folder, or move that file away")


def check_prediction_targets(targets: dict[str, Path], flag: str, commands: tuple[str, ...]) -> None:
    """LNQError in one line, before anything is computed or written, when a case's prediction
    (``targets``: case id -> the file to write) would replace a file none of ``lnq-napari COMMANDS`` wrote
    (:func:`check_not_users`) or be read in place of the case's labels beside it
    (:func:`_check_not_shadowed`)."""
    check_not_users(targets.values(), flag, commands)
    _check_not_shadowed(targets, flag, commands)


def _check_not_shadowed(targets: dict[str, Path], flag: str, commands: tuple[str, ...]) -> None:
    """LNQError in one line when a case's prediction (``targets``: case id -> the file to write) would lie
    beside other labels of that case that none of ``lnq-napari COMMANDS`` wrote (``patient1.seg.nrrd`` of
    3D Slicer's): read from that folder, the prediction would then be taken for the case's labels and the
    user's left out. Checked before anything is computed or written."""
    for case, target in targets.items():
        for other in sibling_names(target.parent, case, "seg", LABEL_SUFFIXES):
            if other != target and other.is_file() and writer(other) not in commands:
                raise LNQError(f"{flag} {target.parent} holds {other.name}, labels lnq-napari {commands[0]} "
                               f"did not write (yours, or a data set's?); the prediction {target.name} would "
                               "be read as that case's labels in their place: give another output folder")


def check_table_path(path: str | Path | None, flag: str, example: str,
                     inputs: Iterable[object] = (), starts: str = "") -> Path | None:
    """``path`` as the file a table (CSV, JSON) is written to; LNQError in one line, before anything is
    computed, when it is a folder, names an image or label file (a table is never written over one),
    is one of the command's ``inputs`` (paths; anything else, a Volume say, is passed over), lies under a
    file, or is an existing file that does not begin with ``starts`` (what the command's table begins
    with: one it wrote before is written over, a workspace's or the user's file is not), or its folder
    cannot be written. None stays None."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_dir():
        raise LNQError(f"{flag} {path} is a folder; give a file name such as {example}")
    if is_image_file(path) or path.name.lower().endswith(".dcm"):
        raise LNQError(f"{flag} {path} names an image or label file; give a file name such as {example}")
    for given in inputs:
        if isinstance(given, (str, Path)) and same_file(path, given):
            raise LNQError(f"{flag} {path} is one of this command's inputs; give another file name such as "
                           f"{example}")
    blocker = file_above(path)
    if blocker is not None:
        raise LNQError(f"{flag} {path} lies under {blocker}, which is a file; give a file in a folder")
    if path.is_file() and path.stat().st_size and not _begins(path, starts):
        raise LNQError(f"{flag} {path} already exists and is not a table this command wrote (a file of "
                       f"yours or of a workspace?); it is left as it is: give another file name such as "
                       f"{example}")
    # where the table's temp file goes, before the work (compare registers the scans first)
    check_folder_writable(path.parent, flag, f"the table (e.g. {example})", shown=path)
    return path


def _begins(path: Path, text: str) -> bool:
    """Whether the file ``path`` begins with ``text``."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(text.encode())) == text.encode()
    except OSError:
        return False


def same_file(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are paths (str or PathLike, ``~`` expanded) of one existing file or folder;
    False for anything else (a Volume, a missing path)."""
    if not (isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike))):
        return False
    try:
        return os.path.samefile(os.path.expanduser(a), os.path.expanduser(b))
    except (OSError, ValueError):  # one is missing: said where it is read
        return False
