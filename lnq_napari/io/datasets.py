"""The cases of a data folder and the CTs of a path, whatever they hold: LNQ-layout files
(``<case>-ct.nrrd`` with ``<case>-seg.nrrd``, or plainly named images) and DICOM (a CT series or an
enhanced CT in the folder itself, and the series folders below it: a TCIA download of patient / study /
series folders with DICOM SEGs beside the CT series, CD exports), side by side in one folder too. Every
reader of a ``--data`` folder, and ``predict``, asks here."""

from __future__ import annotations

from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_seg import ct_series_inputs, dicom_cases
from lnq_napari.io.layout import (
    CaseFiles,
    case_name,
    cd_root,
    ct_inputs,
    folder_case,
    layout_cases,
    scan_cases,
)
from lnq_napari.io.readers import dicom_source


def find_cases(folder: str | Path, require: str | None = None, what: str = "--data") -> list[CaseFiles]:
    """The cases of ``folder``: its CT image files with their labels
    (:func:`~lnq_napari.io.layout.layout_cases`), then the DICOM CT series in it and below it with the
    SEGs that reference them (:func:`~lnq_napari.io.dicom_seg.dicom_cases`). ``require="seg"`` keeps the
    cases with labels; LNQError when none is left, or when two cases would share one id."""
    path = cd_root(Path(folder).expanduser())  # a CD's DICOMDIR: the CD
    if not path.is_dir():
        return scan_cases(path, require, what)  # says what the path is
    images = layout_cases(path)
    dicom = dicom_cases(path, images=bool(images))
    _one_case_per_id(path, [(c.case_id, c.ct) for c in images + dicom])
    found = [c for c in images + dicom if require is None or getattr(c, require) is not None]
    if found:
        return found
    if dicom and not images:
        raise LNQError(f"no CT series of {path} has a DICOM SEG that references it; {what} needs labelled "
                       "cases: keep each SEG series beside its CT series")
    return scan_cases(path, require, what)  # says which files are missing


def find_cts(inputs: str | Path) -> list[tuple[str, Path]]:
    """``(case_id, path)`` of each CT ``inputs`` names: a CT file, or a folder's CT image files
    (:func:`~lnq_napari.io.layout.ct_inputs`) and DICOM CTs: its own series and each series folder below
    it (:func:`~lnq_napari.io.dicom_seg.ct_series_inputs`). One slice of a classic series names its
    series' folder, as napari does: its case is the series'. LNQError when two CTs would share one id."""
    path = cd_root(Path(inputs).expanduser())
    images = ct_inputs(inputs)
    if not path.is_dir():
        return [(case_name(dicom_source(p), fallback=case) if p.is_file() else case, p) for case, p in images]
    found = images + ct_series_inputs(folder_case(path), path, images=bool(images))
    return _one_case_per_id(path, found)


def _one_case_per_id(folder: Path, cases: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """``cases`` as they are; LNQError when two share an id (``a-ct.nrrd`` beside a series folder ``a``):
    their outputs would overwrite each other."""
    seen: dict[str, Path] = {}
    for case, path in cases:
        if case in seen:
            raise LNQError(f"{folder} holds two CTs that give the case name {case!r} ({seen[case]}, {path}); "
                           "rename one of them")
        seen[case] = path
    return cases
