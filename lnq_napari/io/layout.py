"""File layout of cases: image suffixes, case ids and roles from file names, scanning and pairing folders.

LNQ2023 names a case's files ``<case>-ct.nrrd``, ``<case>-seg.nrrd``; the phantom adds ``-full.nrrd``
(complete truth) and ``-nodes.json``; predictions are ``<case>-pred`` or ``<case>-seg``. This module is
the one place that knows these names: every reader of folders (training, workspace, predict, evaluate,
the napari reader, benchmarks) asks it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from lnq_napari.errors import LNQError

# Longest first, so ".seg.nrrd" wins over ".nrrd" and ".nii.gz" over ".gz".
AUTOSAVE_SUFFIX = ".autosave.seg.nrrd"  # a napari session's crash autosave: <case>[.session-<id>]<this>
SESSION_TAIL = r"\.session-[0-9a-f]{12}"  # between the case and AUTOSAVE_SUFFIX (AutosaveSession.id)
_SESSION_STEM = re.compile(SESSION_TAIL + "$")
IMAGE_SUFFIXES = (AUTOSAVE_SUFFIX, ".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")
LABEL_ROLES = ("seg", "full", "pred", "label", "labels", "mask", "nodes", "truth", "gt")
ROLES = ("ct", "prob", *LABEL_ROLES)
_ROLE_TAIL = re.compile(r"[-_.](" + "|".join(ROLES) + r")$", re.IGNORECASE)
_VERSION_TAIL = re.compile(r"\.v\d{3,}$")
_BARE_VERSION = re.compile(r"^v\d{3,}$")  # a label store's file: <case>/vNNN.seg.nrrd
CT_ROLE_SUFFIXES = tuple(f"-ct{s}" for s in (".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd"))
# A case's label files, in the order a scan takes them: any format the readers read, a DICOM SEG too.
LABEL_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd", ".dcm")
#: 3D Slicer's name for the segmentation of the volume ``<case>.nrrd``: ``<case>.seg.nrrd``.
SLICER_SEG_SUFFIX = ".seg.nrrd"


@dataclass(frozen=True)
class NameParts:
    """A file name taken apart: ``lnq2023-train-0001-seg.v002.seg.nrrd`` -> case, role "seg", suffix."""

    case: str
    role: str  # "ct", "seg", "full", "pred", ... or "" when the name has no role tail
    suffix: str  # the image suffix, "" when the name has none (a DICOM folder, say)


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case in an LNQ-layout folder."""

    case_id: str
    ct: Path
    seg: Path | None = None  # partial labels as distributed
    full: Path | None = None  # complete truth (phantom only)
    nodes: Path | None = None  # node list with truth (phantom only)


def is_dicomdir(path: str | Path) -> bool:
    """Whether ``path`` is a CD's DICOM index file (``DICOMDIR``; ``dicomdir`` where Linux mounts a plain
    ISO 9660 CD in lower case)."""
    path = Path(path)
    return path.name.upper() == "DICOMDIR" and path.is_file()


def cd_root(path: str | Path) -> Path:
    """A CD's DICOMDIR stands for the CD's root folder (the series below it); any other path for itself."""
    path = Path(path)
    return path.parent if is_dicomdir(path) else path


def holds_dicomdir(folder: str | Path) -> bool:
    """Whether ``folder`` is a CD's root: it holds a ``DICOMDIR`` (``dicomdir`` on a CD mounted in lower
    case). Two file checks, no listing: it is asked of every folder above a series."""
    return any((Path(folder) / name).is_file() for name in ("DICOMDIR", "dicomdir"))


def image_suffix(name: str | Path) -> str:
    """The image suffix of a file name (``.seg.nrrd``, ``.nii.gz``, ...), "" when it has none we read."""
    lower = Path(name).name.lower()
    return next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), "")


def is_image_file(path: str | Path) -> bool:
    """True for a file name with one of :data:`IMAGE_SUFFIXES`."""
    return bool(image_suffix(path))


def autosave_case(stem: str) -> str:
    """The case of an autosave file's name without :data:`AUTOSAVE_SUFFIX`: ``stem`` less its
    ``.session-<id>`` (one of the name before sessions is the case itself)."""
    return _SESSION_STEM.sub("", stem)


def split_name(path: str | Path) -> NameParts:
    """Case id, role and suffix of an image, label, prediction, version or autosave file name."""
    name = Path(path).name
    suffix = image_suffix(name)
    stem = _VERSION_TAIL.sub("", name[: len(name) - len(suffix)])
    if suffix == AUTOSAVE_SUFFIX:  # a viewer session's autosave: the case without its session
        stem = autosave_case(stem)
    if _BARE_VERSION.match(stem) and Path(path).parent.name:
        return NameParts(Path(path).parent.name, "seg", suffix)
    segmentation = suffix in (".seg.nrrd", AUTOSAVE_SUFFIX)
    match = _ROLE_TAIL.search(stem)
    if match and match.start() > 0:  # 3D Slicer names a segmentation of the volume "p1-ct" p1-ct.seg.nrrd
        role = match.group(1).lower()
        return NameParts(stem[: match.start()], "seg" if segmentation and role == "ct" else role, suffix)
    if segmentation:
        return NameParts(stem, "seg", suffix)
    return NameParts(stem, "", suffix)


def label_name(path: str | Path) -> NameParts:
    """:func:`split_name` of a label file, a DICOM SEG named ``<case>-seg.dcm`` or ``<case>.seg.dcm`` too
    (``.dcm`` is no image suffix elsewhere: a series folder's slices are no cases)."""
    name = Path(path).name
    if name.lower().endswith(".dcm"):
        parts = split_name(Path(path).with_name(name[: -len(".dcm")] + ".nrrd"))
        return NameParts(parts.case, parts.role, ".dcm")
    return split_name(path)


_TRAINING_LABEL = re.compile(r"^lnq2023-train-\d+[-_]seg$", re.IGNORECASE)


def is_partial_label(path: str | Path) -> bool:
    """Whether ``path`` is an LNQ2023 training label file as distributed (``lnq2023-train-NNNN-seg`` with an
    image suffix or ``.dcm``): those mark only some of a case's nodes (1.46 on average, 9 in a fully
    annotated case); so is 3D Slicer's save of that file (``-seg.seg.nrrd``). Validation and test labels, the
    phantom's ``-full``, and a saved version, autosave or Slicer segmentation named after the training case's
    CT (``-ct.seg.nrrd``: a reader's correction) are complete."""
    name = Path(path).name
    suffix = ".dcm" if name.lower().endswith(".dcm") else image_suffix(name)
    return bool(suffix) and bool(_TRAINING_LABEL.match(name[: len(name) - len(suffix)]))


#: How many folders up from a series a CD's root is looked for (a CD: root / patient / study / series).
CD_DEPTH = 3


def _cd_case(path: Path) -> str | None:
    """The case id of a series (or a file of it) on a CD: the CD root's name and the folders below it,
    joined with ``_`` (:func:`holds_dicomdir`, up to :data:`CD_DEPTH` folders up); None off a CD."""
    path = Path(path).absolute()
    cd = next((f for f in path.parents[:CD_DEPTH] if holds_dicomdir(f)), None)
    return None if cd is None else "_".join([cd.name, *path.relative_to(cd).parts])


def folder_case(folder: str | Path) -> str:
    """The case id of a DICOM folder given as such (a series, a download's root): its own name (``.`` too),
    a series on a CD named from the CD's root (:func:`_cd_case`)."""
    return _cd_case(folder) or Path(folder).resolve().name


def case_name(source: str | Path | None, fallback: str = "case") -> str:
    """The case id of an image, label, prediction, version or autosave file name (a DICOM file's too:
    ``a-ct.dcm`` is ``a``); a series on a CD is named from the CD's root, as a CD's series are when the
    CD is given (``CD1_PT000000_ST000000_SE000000``: every CD names its folders alike)."""
    if not source:
        return fallback
    path = cd_root(source)
    return _cd_case(path) or label_name(path).case or fallback


def looks_like_label_name(path: str | Path) -> bool:
    """True when the name marks a label file (``.seg.nrrd``, or a -seg/-full/-mask/... role)."""
    return split_name(path).role in LABEL_ROLES


def sibling_names(folder: Path, case: str, role: str, suffixes: tuple[str, ...] = (".nrrd",)) -> list[Path]:
    """The names :func:`sibling` looks for, in its order: ``<folder>/<case>-<role><suffix>`` per suffix; a
    case's labels (``role="seg"``) also as 3D Slicer names a volume's segmentation
    (:func:`slicer_seg_names`)."""
    names = [folder / f"{case}-{role}{suffix}" for suffix in suffixes]
    return names + [folder / n for n in slicer_seg_names(case)] if role == "seg" else names


def slicer_seg_names(case: str) -> tuple[str, ...]:
    """The names 3D Slicer gives a segmentation of the case's CT (named after its volume: ``<case>.nrrd`` or
    ``<case>-ct.nrrd``)."""
    return f"{case}{SLICER_SEG_SUFFIX}", f"{case}-ct{SLICER_SEG_SUFFIX}"


def sibling(folder: Path, case: str, role: str, suffixes: tuple[str, ...] = (".nrrd",),
            beside: list[LeftBeside] | None = None) -> Path | None:
    """The first of :func:`sibling_names` that exists and :func:`takes_as_labels`, else None. Labels
    (``role="seg"``) taken before 3D Slicer saves of them beside (:func:`slicer_saves`) are noted in
    ``beside`` with them (:func:`warn_left_beside`), unless ``predict`` or ``demo`` wrote the file taken: the
    Slicer save is then the labels (:func:`_over_slicer_saves`)."""
    for path in sibling_names(folder, case, role, suffixes):
        if path.is_file() and takes_as_labels(path, case):
            return _over_slicer_saves(path, case, beside, True) if role == "seg" else path
    return None


def takes_as_labels(path: Path, case: str, quiet: bool = False) -> bool:
    """Whether the label file ``path`` counts as ``case``'s labels. 3D Slicer names any segmentation of
    ``<case>.nrrd`` ``<case>.seg.nrrd`` (lungs, organs; :func:`slicer_seg_names`): such a file counts only
    when one of its segments is named or coded like a lymph node, or named generically (``Segment_1``), else
    it is named in a warning (none when ``quiet``) and left out; any other label file counts."""
    return path.name not in slicer_seg_names(case) or _holds_nodes(path, case, quiet)


#: How much later (seconds) a file must have been written to be named newer than another (files copied or
#: written together differ by less).
NEWER_BY_S = 1.0


@dataclass(frozen=True)
class LeftBeside:
    """A case's label file taken (``p1-seg.nrrd``) and the 3D Slicer saves of its labels left out beside it
    (:func:`slicer_saves`)."""

    taken: Path
    left: tuple[Path, ...]

    def newer(self) -> tuple[Path, ...]:
        """The files left out that were written after the one taken (:data:`NEWER_BY_S` or more)."""
        return tuple(p for p in self.left if _mtime(p) >= _mtime(self.taken) + NEWER_BY_S)


def slicer_saves(case: str, taken: Path) -> tuple[str, ...]:
    """The names 3D Slicer may have saved ``case``'s labels under beside ``taken``, a label file named
    otherwise: a segmentation of the CT (:func:`slicer_seg_names`), and ``taken`` itself loaded into Slicer
    and saved (``p1-seg.nrrd`` -> ``p1-seg.seg.nrrd``). None beside a Slicer-named segmentation of the CT."""
    if taken.name in slicer_seg_names(case):
        return ()
    suffix = image_suffix(taken.name)
    if not suffix or suffix.endswith(SLICER_SEG_SUFFIX):  # a segmentation already (an autosave, a version)
        return slicer_seg_names(case)
    return (*slicer_seg_names(case), taken.name[: len(taken.name) - len(suffix)] + SLICER_SEG_SUFFIX)


def _over_slicer_saves(taken: Path, case: str, beside: list[LeftBeside] | None,
                       yield_prediction: bool) -> Path:
    """``taken``, the file chosen as ``case``'s labels, or a 3D Slicer save of its labels beside it
    (:func:`slicer_saves`) that :func:`takes_as_labels`: that one when ``yield_prediction`` and ``predict``
    or ``demo`` wrote ``taken`` (the user reviewed the prediction in Slicer), else they are noted in
    ``beside``. A header is read only where both files exist."""
    saves = tuple(p for n in slicer_saves(case, taken) if (p := taken.with_name(n)) != taken and p.is_file()
                  and takes_as_labels(p, case, quiet=True))
    if not saves:
        return taken
    if yield_prediction and _predicted(taken):
        return saves[0]
    if beside is not None:
        beside.append(LeftBeside(taken, saves))
    return taken


def _predicted(path: Path) -> bool:
    """Whether ``lnq-napari predict`` (or ``demo``) wrote the label file ``path``."""
    from lnq_napari.io.provenance import PREDICTIONS, written_by_us

    return written_by_us(path, PREDICTIONS)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def warn_left_beside(folder: Path, beside: list[LeftBeside]) -> None:
    """One warning line for ``folder`` naming the 3D Slicer saves of labels left out beside the label files
    taken (a case's ``p1.seg.nrrd`` beside ``p1-seg.nrrd``): their count, two examples (newer ones first),
    and how many are newer than the file taken (corrected labels saved in Slicer, not used)."""
    if not beside:
        return
    newer = [b for b in beside if b.newer()]
    shown = (newer + [b for b in beside if not b.newer()])[:2]
    named = "; ".join(", ".join(p.name + (" (newer)" if p in b.newer() else "") for p in b.left)
                      + f" beside {b.taken.name}" for b in shown) + (" ..." if len(beside) > 2 else "")
    said = f"{folder}: {len(beside)} case(s) have 3D Slicer segmentations left out beside the label file " \
           f"taken ({named})"
    if newer:
        said += f"; in {len(newer)} case(s) the Slicer file is newer than the file taken (labels corrected " \
                "in Slicer?) and is not used"
    warnings.warn(said + "; move the file that is not the case's node labels out of the folder", UserWarning,
                  stacklevel=2)


def _holds_nodes(path: Path, case: str, quiet: bool = False) -> bool:
    """Whether Slicer's ``<case>.seg.nrrd`` segments nodes; warns naming its segments when it does not (and
    not ``quiet``)."""
    from lnq_napari.io.segfile import node_segment_names

    try:
        nodes, names = node_segment_names(path)
    except Exception:  # unreadable here: the reader says what is wrong with it when it is read
        return True
    if not nodes and not quiet:
        warnings.warn(f"{path.name} is not taken as {case}'s labels: none of its segments ("
                      f"{', '.join(repr(n) for n in names)}) is named or coded like a lymph node; name the "
                      "node segments 'lymph node' in 3D Slicer", UserWarning, stacklevel=3)
    return nodes


def sibling_ct(label_path: str | Path) -> Path | None:
    """The case's CT beside a label file (``<case>-ct.*`` next to ``<case>-seg.*``), else None."""
    path = Path(label_path)
    case = split_name(path).case
    if not case:
        return None
    for suffix in CT_ROLE_SUFFIXES:
        ct = path.with_name(case + suffix)
        if ct.is_file() and ct != path:
            return ct
    return None


_CASE_FORMS = ("<case>-ct.nrrd files (.nii.gz, .mha too), CTs named plainly (patient1.nii.gz) "
              "with <case>-seg files, or DICOM CT series folders")


def scan_cases(folder: str | Path, require: str | None = None, what: str = "--data") -> list[CaseFiles]:
    """The cases of an LNQ-layout folder, sorted by id: each ``<case>-ct.*`` (when there is none, each
    image named without a role, ``patient1.nrrd``) with its siblings (``patient1-seg.nrrd``).

    ``require="seg"`` (or "full") keeps only cases that have that file. Raises LNQError when the
    folder is missing or holds no such case.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise LNQError(f"{what} folder {folder} {state}; give a folder of cases: {_CASE_FORMS}")
    cases: dict[str, CaseFiles] = {}
    beside: list[LeftBeside] = []
    others: list[LeftBeside] = []
    for path in folder_cts(folder):
        parts = split_name(path)
        case = parts.case
        seg = sibling(folder, case, "seg", (parts.suffix, *LABEL_SUFFIXES), beside)
        cases[case] = CaseFiles(
            case_id=case, ct=path.resolve(), seg=_resolved(seg),
            full=_resolved(sibling(folder, case, "full", (parts.suffix, *LABEL_SUFFIXES))),
            nodes=_resolved(sibling(folder, case, "nodes", (".json",))),
        )
        if seg is not None and (left := _other_seg_files(folder, case, seg)):
            others.append(LeftBeside(seg, left))
    warn_left_beside(folder, beside)
    _warn_other_seg_files(folder, others)
    found = [c for c in cases.values() if require is None or getattr(c, require) is not None]
    if not found:
        needs = f" with a matching *-{require} file" if require else ""
        raise LNQError(f"no CT files{needs} in {folder}; point {what} at a folder of cases: {_CASE_FORMS}")
    return found


def _other_seg_files(folder: Path, case: str, taken: Path) -> tuple[Path, ...]:
    """The other ``<case>-seg.*`` label files beside ``taken`` (``p1-seg.nrrd`` beside ``p1-seg.nii.gz``),
    3D Slicer saves left to :func:`slicer_saves` and predictions a Slicer save was taken over left out."""
    slicer = set(slicer_saves(case, taken))
    return tuple(p for p in sibling_names(folder, case, "seg", LABEL_SUFFIXES)
                 if p.name != taken.name and p.name not in slicer and p.is_file() and not _predicted(p))


def _warn_other_seg_files(folder: Path, others: list[LeftBeside]) -> None:
    """One warning line for ``folder`` naming the cases with more than one ``<case>-seg.*`` file: the one
    taken and those left out (two examples, newer ones marked)."""
    if not others:
        return
    named = "; ".join(", ".join(p.name + (" (newer)" if p in b.newer() else "") for p in b.left)
                      + f" left out, {b.taken.name} taken" for b in others[:2])
    named += " ..." if len(others) > 2 else ""
    warnings.warn(f"{folder}: {len(others)} case(s) have more than one label file ({named}); move the file "
                  "that is not the case's node labels out of the folder", UserWarning, stacklevel=2)


def folder_cts(folder: Path) -> list[Path]:
    """The CTs of a folder: its ``<case>-ct.*`` files, else its images named without a role; images named
    without a role beside ``-ct`` files are left out with a warning naming them (they were left out
    without a word)."""
    cts = ct_files(folder)
    if not cts:
        return ct_files(folder, role="")
    plain = _role_images(folder, "")  # not checked for two of a case: they are not used
    if plain:
        named = ", ".join(p.name for p in plain[:3]) + (" ..." if len(plain) > 3 else "")
        warnings.warn(f"{folder}: {len(plain)} image(s) without -ct in the name left out beside its *-ct "
                      f"files ({named}); name them <case>-ct.nrrd to use them too", UserWarning, stacklevel=1)
    return cts


def _role_images(folder: Path, role: str) -> list[Path]:
    """The image files of ``folder`` whose name has ``role`` (``""``: none), sorted."""
    return [path for path in sorted(folder.iterdir())
            if (parts := split_name(path)).role == role and parts.suffix and path.is_file()]


def image_names(folder: Path) -> list[str]:
    """The names of ``folder``'s image files not named as labels (:func:`is_image_file`,
    :func:`looks_like_label_name`), sorted: the CT files a person sees there, whatever their role."""
    return sorted(p.name for p in folder.iterdir() if is_image_file(p) and not looks_like_label_name(p))


def ct_files(folder: Path, role: str = "ct") -> list[Path]:
    """The ``<case>-ct.*`` files of a folder (``role=""``: images named without a role, ``patient1.nii.gz``),
    sorted; LNQError when two hold one case (``a-ct.nrrd`` and ``a-ct.mha``: which one is meant cannot be
    told, and their outputs would overwrite each other)."""
    found: dict[str, Path] = {}
    for path in _role_images(folder, role):
        parts = split_name(path)
        if parts.case in found:
            raise LNQError(f"{folder} holds two CTs of case {parts.case} ({found[parts.case].name}, "
                           f"{path.name}); keep one of them there")
        found[parts.case] = path
    return list(found.values())


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def ct_inputs(inputs: str | Path) -> list[tuple[str, Path]]:
    """``(case_id, path)`` of each CT: a file, a DICOM folder, or a folder of ``*-ct.*`` files (else of
    images named without a role: ``patient1.nrrd``, ``patient2.nii.gz``)."""
    path = Path(inputs).expanduser()
    if not path.exists():
        raise LNQError(f"{path} does not exist; give a CT file, a DICOM folder or a folder of *-ct.nrrd")
    path = cd_root(path)  # a CD's index: the export folder holding it
    if path.is_dir():
        cts = folder_cts(path)
        if cts:
            return [(split_name(p).case, p) for p in cts]
        return [(folder_case(path), path)]  # a DICOM series folder (read_volume says so if it is not)
    name = path.name
    if name.lower().endswith(".dcm"):  # an enhanced multi-frame CT, named as its SEG would be paired
        return [(label_name(path).case or name[: -len(".dcm")], path)]
    return [(case_name(path, fallback=name), path)]


# Which label file of a case a folder of predictions or of ground truth offers first.
_PREFERENCE = {"gt": ("full", "seg", "", "pred"), "pred": ("pred", "", "seg")}


#: How an error names the files of each ``role`` of :func:`label_files_by_case` (to the API and the
#: command line alike: no flag).
ROLE_WORDS = {"pred": "the prediction", "gt": "the ground truth"}


def label_files_by_case(path: str | Path, role: str) -> dict[str, Path]:
    """Case id -> the preferred label file of each case in a folder (or the single file).

    ``role`` is "pred" (``-pred`` wins over a bare name over ``-seg``) or "gt" (``-full``, complete
    truth, wins over ``-seg``). A file in a folder counts as its case's as :func:`takes_as_labels` says (a
    Slicer-named segmentation of lungs alone does not, and then no file of a lower rank does either: the
    case has none), and ``-seg`` wins over a Slicer save, as for a data folder's cases (:func:`sibling`;
    for "gt" a ``-seg`` prediction gives way to it).
    """
    path = Path(path)
    if not path.exists():
        raise LNQError(f"{ROLE_WORDS[role]} {path} does not exist; give a label file or a folder of them")
    if path.is_file():
        return {label_name(path).case: path}
    ranked: dict[str, list[tuple[int, bool, Path]]] = {}
    for file in sorted(path.iterdir()):
        parts = label_name(file)
        if not parts.suffix or not file.is_file() or parts.role not in _PREFERENCE[role]:
            continue
        rank = _PREFERENCE[role].index(parts.role)
        ranked.setdefault(parts.case, []).append((rank, file.name in slicer_seg_names(parts.case), file))
    if not ranked:
        raise LNQError(f"{ROLE_WORDS[role]} folder {path} holds no label files (.nrrd, .nii.gz, .mha, DICOM "
                       "SEG .dcm); check the path")
    chosen: dict[str, Path] = {}
    beside: list[LeftBeside] = []
    for case, files in ranked.items():
        taken = _first_taken(case, [file for *_, file in sorted(files)])
        if taken is not None:
            chosen[case] = _over_slicer_saves(taken, case, beside, role == "gt") \
                if label_name(taken).role == "seg" else taken
    warn_left_beside(path, beside)
    return chosen


def _first_taken(case: str, files: list[Path]) -> Path | None:
    """The first of ``files`` (best first) that :func:`takes_as_labels`. A Slicer-named segmentation left out
    lets no file of a lower rank in, only the other Slicer name: ``p1.nrrd`` (the CT, as often as not) or
    ``p1-pred.nrrd`` would be taken for the truth in its place."""
    rejected = False
    for file in files:
        slicer = file.name in slicer_seg_names(case)
        if (slicer or not rejected) and takes_as_labels(file, case):
            return file
        rejected = rejected or slicer
    return None
