"""The cases of a data folder and the CTs of a path, whatever they hold: LNQ-layout files
(``<case>-ct.nrrd`` with ``<case>-seg.nrrd``, or plainly named images) or DICOM (a CT series folder, or a
TCIA download of patient / study / series folders with DICOM SEGs beside the CT series). Every reader of
a ``--data`` folder, and ``predict``, asks here."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_seg import dicom_cases
from lnq_napari.io.dicom_series import choose_series, dicom_source
from lnq_napari.io.dicom_tree import ct_folders_below, ct_series_inputs, one_scan, split_parts
from lnq_napari.io.layout import (
    LABEL_SUFFIXES,
    CaseFiles,
    LeftBeside,
    case_name,
    cd_root,
    ct_files,
    ct_inputs,
    scan_cases,
    sibling,
    warn_left_beside,
)
from lnq_napari.io.outputs import label_rank
from lnq_napari.io.provenance import PREDICTIONS, written_by_us


@one_scan()
def find_cases(folder: str | Path, require: str | None = None, what: str = "--data") -> list[CaseFiles]:
    """The cases of ``folder`` sorted by id (:func:`~lnq_napari.io.layout.scan_cases`; a folder without CT
    image files but with DICOM at or below it: :func:`~lnq_napari.io.dicom_seg.dicom_cases`).
    A DICOM case without a SEG takes the label files named after it in ``folder``, as a plainly named CT
    does (``patient1-seg.nrrd`` beside the series folder ``patient1``, drawn in 3D Slicer, say).
    ``require="seg"`` keeps the cases with labels. The parts of a DICOM series an export split over folders
    (:func:`~lnq_napari.io.dicom_tree.split_series`: each part read as a CT of its own) are left out with a
    warning (:func:`_without_split_parts`). LNQError when no case is left, when a split part has labels, or
    when a DICOM series folder has CT series folders below it (which are cases cannot be told), or when
    ``folder`` is an empty path (it read as the current folder)."""
    if not str(folder).strip():
        raise LNQError(f"{what} is an empty path; give the folder of cases")
    path = cd_root(Path(folder).expanduser())  # a CD's DICOMDIR: the CD
    predictions = _Predictions()
    dicom = [] if not path.is_dir() or ct_files(path) or ct_files(path, role="") \
        else dicom_cases(path, labels=lambda seg: predictions.labels(seg) is not None, rank=label_rank)
    if not dicom:
        found = predictions.without(scan_cases(path, require, what))
        _warn_series_beside(path)
    else:
        beside: list[LeftBeside] = []
        found = predictions.without([_named_labels(path, c, beside) for c in dicom])
        warn_left_beside(path, beside)
        found = _without_split_parts(path, found)
    predictions.warn(path)
    found = [c for c in found if require is None or getattr(c, require) is not None]
    if not found and dicom and not predictions.left_out:
        raise LNQError(f"no CT series of {path} has labels: a DICOM SEG that references it, or a label file "
                       f"named after it (<series folder>-seg.nrrd); {what} needs labelled cases: keep each "
                       "SEG series beside its CT series")
    if not found:
        files = f"DICOM SEGs and *-{require} files of the CT series" if dicom else f"*-{require} files"
        raise LNQError(f"the only {files} in {path} are lnq-napari predictions, not labels; {what} needs "
                       "labelled cases: move the predictions out of the folder")
    return found


def _without_split_parts(folder: Path, cases: list[CaseFiles]) -> list[CaseFiles]:
    """``cases`` (DICOM) without the parts of a series an export split over folders
    (:func:`~lnq_napari.io.dicom_tree.split_series`), named in one warning, as a case that cannot be used is
    left out. LNQError when a part has labels (they were drawn on the whole CT, or on half of it: either
    way not that part's) or when no other case is left."""
    # a case's series folder: a file (the series of a folder of two reconstructions its SEG was drawn on)
    # is checked by its folder, as a folder case is
    folder_of = {case.ct: case.ct if case.ct.is_dir() else case.ct.parent for case in cases}
    parts = split_parts(list(dict.fromkeys(folder_of.values())))
    if not parts:
        return cases
    split = {case.ct: message for case in cases
             if (message := _split_read(case.ct, parts.get(folder_of[case.ct])))}  # the series it reads
    for case in cases:
        if case.ct in split and (labels := case.seg or case.full):
            raise LNQError(f"{Path(labels).name} labels part of a DICOM series split over folders: "
                           f"{split[case.ct]}")
    kept = [case for case in cases if case.ct not in split]
    if not kept:
        messages = list(dict.fromkeys(split.values()))  # one per split series
        more = f" (and {len(messages) - 1} more series split so)" if len(messages) > 1 else ""
        raise LNQError(f"{messages[0]}{more}")
    parts = [_below(folder, folder_of[case.ct]) for case in cases if case.ct in split]
    named = ", ".join(parts[:3]) + (" ..." if len(parts) > 3 else "")
    warnings.warn(f"{folder}: {len(parts)} DICOM series folder(s) left out as parts of a series an export "
                  f"split over folders ({named}); move each series' slices into one folder", UserWarning,
                  stacklevel=1)  # one place: shown once however often the folder is read
    return kept


def _split_read(ct: Path, messages: dict[str, str] | None) -> str | None:
    """Of a case's CT (a series folder, or a file of its series) whose folder holds parts of series split
    over folders (``messages``: Series Instance UID -> what to say), what to say when the series it reads is
    one of them (any, when which one it reads cannot be told); None when it reads a complete series beside
    them."""
    if not messages:
        return None
    try:
        with warnings.catch_warnings():  # which series it reads, and why: said when the case is read
            warnings.simplefilter("ignore")
            uid = choose_series(ct).series_uid
    except LNQError:
        return next(iter(messages.values()))
    return messages.get(uid)


def _below(folder: Path, path: Path) -> str:
    """``path`` as named below ``folder`` (whole when it is not below it)."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


class _Predictions:
    """The label files of a data folder that ``lnq-napari predict`` (or ``demo``) wrote, left out as they
    are met: a prediction written into the data folder (``predict DIR --out DIR``: an NRRD, or a DICOM SEG
    whose Content Label marks it, :func:`~lnq_napari.io.provenance.written_by_us`) is not a case's labels
    (it was trained on and judged against as truth, and a workspace kept it as the original)."""

    def __init__(self) -> None:
        self.left_out: dict[Path, None] = {}  # each once: a SEG beside its series is met twice

    def labels(self, path: Path | None) -> Path | None:
        """``path``, or None (noted) when it is a prediction."""
        if path is not None and written_by_us(path, PREDICTIONS):
            self.left_out[path.resolve()] = None
            return None
        return path

    def without(self, cases: list[CaseFiles]) -> list[CaseFiles]:
        """``cases`` with no label file that is a prediction."""
        return [replace(c, seg=self.labels(c.seg), full=self.labels(c.full)) for c in cases]

    def warn(self, folder: Path) -> None:
        """A warning naming the predictions left out of ``folder``, when there are any."""
        if not self.left_out:
            return
        paths = list(self.left_out)
        named = ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        warnings.warn(f"{folder}: {len(paths)} label file(s) written by lnq-napari predict left out "
                      f"as predictions, not labels ({named}); move them out of the data folder", UserWarning,
                      stacklevel=1)  # one place: shown once however often the folder is read


def _named_labels(folder: Path, case: CaseFiles, beside: list[LeftBeside]) -> CaseFiles:
    """``case`` (a DICOM CT series) with the label files named after it where it has no SEG
    (:func:`~lnq_napari.io.layout.sibling`, as a plainly named CT takes them): ``<series folder>-seg.*``
    beside its series folder (``P1/2-CT-seg.nrrd``), else ``<case>-seg.*`` in ``folder``
    (``P1_2-CT-seg.nrrd``); ``-full`` alike. 3D Slicer saves left out beside the labels go to ``beside``."""
    series = Path(case.ct)

    def named(role: str) -> Path | None:
        beside_series = sibling(series.parent, series.name, role, LABEL_SUFFIXES, beside) \
            if series.is_dir() else None
        return beside_series or sibling(folder, case.case_id, role, LABEL_SUFFIXES, beside)

    seg, full = case.seg or named("seg"), case.full or named("full")
    return replace(case, seg=seg and seg.resolve(), full=full and full.resolve())


@one_scan()
def find_cts(inputs: str | Path) -> list[tuple[str, Path]]:
    """``(case_id, path)`` of each CT ``inputs`` names: a CT file, a DICOM series folder, a folder of CT
    files (:func:`~lnq_napari.io.layout.ct_inputs`), or a folder of DICOM series folders
    (:func:`~lnq_napari.io.dicom_tree.ct_series_inputs`: each CT series below it). One slice of a classic
    series names its series' folder, as napari does: its case is the series'. A series split over folders
    is not refused here: predict fails each part (:func:`~lnq_napari.io.dicom_tree.split_series`) and
    reads the other CTs."""
    found = [item for case, path in ct_inputs(inputs) for item in ct_series_inputs(case, path)]
    folder = cd_root(Path(inputs).expanduser())
    if folder.is_dir() and all(path.is_file() for _, path in found):  # CT files of a folder: any series?
        _warn_series_beside(folder)
    return [(case_name(dicom_source(path), fallback=case) if path.is_file() else case, path)
            for case, path in found]


def _warn_series_beside(folder: Path) -> None:
    """A warning naming the DICOM CT series folders below ``folder`` when its CT files are its cases: the
    series were left out without a word (a folder of converted NRRDs and DICOM folders not yet converted)."""
    below = list(ct_folders_below(folder))
    if below:
        named = ", ".join(str(f.relative_to(folder)) for f in below[:3]) + (" ..." if len(below) > 3 else "")
        warnings.warn(f"{folder}: {len(below)} DICOM CT series folder(s) below it left out beside its CT "
                      f"files ({named}); give them on their own, or move the CT files into a folder of "
                      "their own", UserWarning, stacklevel=2)
