"""What a DICOM tree holds: which files are DICOM and of what kind (a SEG, a CT image, another image, an
object without pixels), which SEG a path names, which folders are CT series (a series folder, a CD's or a
TCIA download's folders below a root) and where a SEG's CT series may lie. Read by :mod:`.dicom_seg` (a
SEG's CT series, a tree's cases), :mod:`.dicom_series` and :mod:`.datasets`."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lnq_napari.errors import LNQError
from lnq_napari.heard import collected_warnings
from lnq_napari.io.dicom_headers import (
    HEAD_BYTES,
    SEG_SOP_CLASSES,
    SLICE_TAGS,
    bare_cut_short,
    bare_sop_class,
    is_ct_image,
    is_ct_modality,
    is_localizer_volume,
    read_header,
    series_slices,
)
from lnq_napari.io.layout import IMAGE_SUFFIXES, holds_dicomdir, is_dicomdir
from lnq_napari.io.raw_image import itk_quiet

T = TypeVar("T")
DICOM_SUFFIXES = (".dcm", ".ima")  # what DICOM files are named, when they are named at all
#: Names that say a file is no DICOM (notes, thumbnails, reports a series folder holds beside its slices,
#: CT files of ours): never looked at as DICOM (:func:`_maybe_dicom`).
NOT_DICOM_SUFFIXES = (".txt", ".json", ".xml", ".jpg", ".jpeg", ".png", ".pdf", ".html", ".htm", ".csv",
                      ".md", ".ini", ".log", *IMAGE_SUFFIXES)
MAX_FOLDER_FILES = 8  # a folder with at most this many files may be a SEG series folder (TCIA: one file)
MAX_SEARCH_FOLDERS = 200  # folders looked at for the CT series beside a SEG
SAMPLED_FILES = 3  # files of each folder beside the SEG whose series is read


def is_dicom_path(path: str | Path) -> bool:
    """True for a folder (a DICOM series is one) or a DICOM file (:func:`_dicom_file`: a .dcm/.ima file, one
    with the DICOM magic, or a dataset written without the preamble)."""
    path = Path(path)
    return path.is_dir() or _dicom_file(path)


def has_dicom_magic(path: str | Path) -> bool:
    """True for a DICOM Part 10 file ('DICM' at byte 128), whatever its name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


#: The header elements that tell the files of a folder apart (:func:`_dicom_kind`), and place a localizer
#: (:func:`_not_a_ct_image`).
KIND_TAGS = ["SOPClassUID", "Modality", "Rows", *SLICE_TAGS, "SeriesInstanceUID", "ImageOrientationPatient"]


def _dicom_kind(path: Path) -> str | None:
    """What the file ``path`` is, from its header (:func:`_kind_and_header`)."""
    return _kind_and_header(path)[0]


def _kind_and_header(path: Path) -> tuple[str | None, object]:
    """What the file ``path`` is, from its header (:data:`KIND_TAGS`, None where it has none): "seg" (a
    DICOM SEG), "ct" (a CT image: :func:`.dicom_headers.is_ct_image`), "image" (another image: a scout, a
    dose screen, an MR or PET slice), "other" (an object without pixels: a structured report, key objects, a
    presentation state, a PDF), "unreadable" (DICOM by its name or mark, its header unreadable or cut short;
    or a bare dataset cut short before its SOP class: :func:`.dicom_headers.bare_cut_short`) or None (no
    DICOM: a note)."""
    import pydicom

    if not _dicom_file(path):
        return ("unreadable" if bare_cut_short(path) else None), None
    try:
        with collected_warnings():  # dropped: pydicom's notes on garbage ("Expected implicit VR ...")
            header = read_header(path, force=True, stop_before_pixels=True, specific_tags=KIND_TAGS)
            sop_class = str(header.get("SOPClassUID", "") or "")  # converted (and warned of) when asked for
    except Exception:  # garbage after a DICOM name or preamble
        return "unreadable", None
    if sop_class in SEG_SOP_CLASSES:
        return "seg", header
    if "Rows" not in header:  # no pixels, or a header cut short: the standard names each image "... Image"
        name = pydicom.uid.UID_dictionary.get(sop_class, (sop_class,))[0]  # UID("1.") would warn
        pixelless = sop_class and "Image" not in name and not _cut_image_class(sop_class)
        return ("other" if pixelless else "unreadable"), header
    return ("ct" if is_ct_image(header) else "image"), header


def _cut_image_class(sop_class: str) -> bool:
    """Whether a SOP Class UID no standard class is, is the start of a standard image class's UID ("1.",
    "1.2.840.10008.5.1.4.1.1"): the file was cut within it, not an object without pixels of a class of its
    own (a vendor's private class is no such start)."""
    from pydicom.uid import UID_dictionary

    if sop_class in UID_dictionary:
        return False
    return any(uid.startswith(sop_class) and "Image" in entry[0] for uid, entry in UID_dictionary.items())


def seg_file(path: str | Path, segs: list[Path] | None = None) -> Path | None:
    """The DICOM SEG file ``path`` names: the file itself, or the one SEG in a SEG series folder (at most
    :data:`MAX_FOLDER_FILES` files, its :func:`_seg_files`: ``segs`` when known); None for anything else
    (a CT series, another image, a folder whose SEGs lie loose beside series folders: :func:`loose_segs`).
    LNQError for a folder holding several SEG files."""
    path = Path(path)
    if path.is_file():
        return path if _dicom_kind(path) == "seg" else None
    if len(candidate_files(path)) > MAX_FOLDER_FILES:
        return None  # a CT series folder
    segs = _seg_files(path) if segs is None else segs
    if loose_segs(path, segs):
        return None
    if len(segs) > 1:
        raise LNQError(f"{path} holds {len(segs)} DICOM SEG files ({', '.join(f.name for f in segs[:3])}); "
                       "point to one of them")
    return segs[0] if segs else None


#: Each folder's :func:`_seg_files` while a :func:`one_scan` block runs (None: none runs).
_SCANNED: ContextVar[dict[Path, list[Path]] | None] = ContextVar("lnq_scanned_seg_folders", default=None)


@contextlib.contextmanager
def one_scan() -> Iterator[None]:
    """Within this block (one read, one walk of a data folder; also a decorator) each folder's SEG files
    are looked for once (:func:`_seg_files`), however many questions the read asks of the folder: a
    damaged file beside them is named once. The next block looks again (files may have changed); a read of
    a folder's every file is kept longer, while none of its files changed (:func:`_unless_changed`)."""
    if _SCANNED.get() is not None:  # within an outer block: its scans hold
        yield
        return
    token = _SCANNED.set({})
    try:
        yield
    finally:
        _SCANNED.reset(token)


def _seg_files(folder: Path) -> list[Path]:
    """The DICOM SEG files of ``folder`` when it holds no image (:func:`_dicom_kind`: a structured report,
    key objects or a presentation state a viewer saved beside the SEGs are no image); else []. A file that
    cannot be read beside them is named in a warning and skipped. Headers are read until an image turns up
    (a CT series: its first file). Read once in a :func:`one_scan` block."""
    scanned = _SCANNED.get()
    key = folder.resolve()
    if scanned is not None and key in scanned:
        return list(scanned[key])
    segs = _scan_seg_files(folder)
    if scanned is not None:
        scanned[key] = segs
    return list(segs)


def _scan_seg_files(folder: Path, among_images: bool = False) -> list[Path]:
    """:func:`_seg_files` read from the folder; ``among_images``: its SEG files whatever else it holds
    (:func:`segs_among_slices`: only the files whose first bytes may name a SEG's class are read)."""
    segs, unreadable = [], []
    for f in candidate_files(folder):
        kind = _dicom_kind(f) if not among_images or _may_be_seg(f) else "image"
        if kind == "seg":
            segs.append(f)
        elif kind == "unreadable":
            unreadable.append(f)
        elif kind in ("ct", "image") and not among_images:
            return []
    for f in unreadable if segs else []:
        warnings.warn(f"{f} is skipped: it cannot be read as DICOM (damaged, or cut short); copy it again or "
                      "move it away", UserWarning, stacklevel=3)
    return segs


#: What was read of each folder's files (by question), with the folder's files then (:func:`_fingerprint`);
#: the folders read last, at most :data:`KEPT_FOLDERS` of them.
_READ_WHOLE: OrderedDict[tuple[str, str], tuple[tuple, object]] = OrderedDict()
KEPT_FOLDERS = 256  # a data folder's series folders, read again and again by a long-running review
SETTLED_NS = 2_000_000_000  # a file changed this long before a look is kept: a coarse clock (FAT: 2 s)


def forget_scans() -> None:
    """Drop every kept read of a folder's files (:func:`_unless_changed`): the next read looks again."""
    _READ_WHOLE.clear()


def _fingerprint(folder: Path) -> tuple[tuple, int]:
    """``(entries, newest)``: each entry of ``folder`` as ``(name, size, modification time)`` (a file
    rewritten in place, or copied in with its old folder time kept, changes its own), and the newest of
    those times and the folder's (a stat of each entry: cheap next to reading each header)."""
    with os.scandir(folder) as listing:
        entries = []
        for entry in listing:
            try:
                info = entry.stat()
            except OSError:  # vanished while listed
                continue
            entries.append((entry.name, info.st_size, info.st_mtime_ns))
    newest = max([os.stat(folder).st_mtime_ns] + [e[2] for e in entries])
    return tuple(sorted(entries)), newest


def _unless_changed(question: str, folder: Path, read: Callable[[], T]) -> T:
    """``read()`` of ``folder``'s files, or what it gave the last time when none of its files has changed
    since (:func:`_fingerprint`: one added, removed, renamed or rewritten; one changed within
    :data:`SETTLED_NS` of the read is read again): each data read of a review read every slice."""
    try:
        stamp, newest = _fingerprint(folder)
    except OSError:
        return read()
    key = (question, os.path.abspath(folder))
    if (kept := _READ_WHOLE.get(key)) is not None and kept[0] == stamp:
        _READ_WHOLE.move_to_end(key)
        return kept[1]  # type: ignore[return-value]
    found = read()
    if time.time_ns() - newest > SETTLED_NS:  # else a file changed within the clock's step may not show
        _READ_WHOLE[key] = (stamp, found)
        _READ_WHOLE.move_to_end(key)
        while len(_READ_WHOLE) > KEPT_FOLDERS:
            _READ_WHOLE.popitem(last=False)
    return found


def segs_among_slices(folder: Path) -> list[Path]:
    """The DICOM SEG files of a folder holding images (a study exported into one folder, a SEG saved into
    its CT's folder; a folder of SEGs alone: :func:`_seg_files`): the files whose first bytes may name a
    SEG's SOP class (:func:`_may_be_seg`), their headers read; again only once the folder has changed
    (:func:`_unless_changed`)."""
    return list(_unless_changed("segs", folder, lambda: _scan_seg_files(folder, among_images=True)))


#: A SOP Class UID in a file's first bytes (its file meta's, or a bare dataset's SOP Class UID).
_SOP_CLASS_IN_HEAD = re.compile(rb"1\.2\.840\.10008\.5\.1\.4\.1\.1\.[0-9.]*")
SNIFFED_BYTES = 1024  # a Part 10 file's meta (its SOP class) lies in its first few hundred bytes


def _may_be_seg(path: Path) -> bool:
    """Whether ``path`` may be a DICOM SEG: a storage SOP class in its first :data:`SNIFFED_BYTES` is
    one of :data:`.dicom_headers.SEG_SOP_CLASSES`, or none is there (its header must be read). A CT
    folder's slices are told from a SEG without reading their headers."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFFED_BYTES)
    except OSError:
        return False
    named = {m.group().rstrip(b".").decode() for m in _SOP_CLASS_IN_HEAD.finditer(head)
             if m.end() < len(head)}  # one cut by the end of the bytes read may be any class
    return not named or bool(named & set(SEG_SOP_CLASSES))


def candidate_files(folder: Path) -> list[Path]:
    """:func:`_maybe_dicom`'s files of ``folder``, all of them: those that may be DICOM."""
    return list(_maybe_dicom(folder))


def unlisted_files(folder: Path, listed: Iterable[str]) -> list[Path]:
    """The files of ``folder`` that may be DICOM (:func:`_maybe_dicom`) and are none of ``listed`` (paths:
    the files GDCM put in a series): slices it could not parse (cut short, damaged, Float Pixel Data)."""
    names = {Path(f).name for f in listed}
    return [f for f in _maybe_dicom(folder) if f.name not in names]


def _maybe_dicom(folder: Path) -> Iterator[Path]:
    """The files of ``folder`` that may be DICOM, sorted, as they are asked for: hidden ones (macOS's
    ``._`` files beside copied DICOM), a DICOMDIR (the index of a CD's folders below, not a series) and
    files named as no DICOM is (:data:`NOT_DICOM_SUFFIXES`: a series folder may hold notes and thumbnails
    sorted before its slices) left out. The one rule for which files of a folder are looked at."""
    return (f for f in _listing(folder) if not f.name.startswith(".")
            and not f.name.lower().endswith(NOT_DICOM_SUFFIXES) and f.is_file() and not is_dicomdir(f))


def ct_series_inputs(case_id: str, path: Path) -> list[tuple[str, Path]]:
    """``[(case_id, path)]`` for a CT file or a folder holding DICOM files; for a folder holding only
    folders (a TCIA download: patient / study / series) or SEGs beside them (:func:`loose_segs`), each
    folder below it that holds DICOM files and is not a SEG series, its case id the path below ``path``
    joined with ``_``. LNQError when there is none, or when a series folder has CT series folders below it
    (:func:`refuse_series_below`)."""
    path = Path(path)
    if not path.is_dir():
        return [(case_id, path)]
    found, segs = dicom_folders(path, case_id)
    if not found and segs and segs[0].parent == path:  # a SEG series folder: not a CT, says predict
        return [(case_id, path)]
    if not found:
        raise LNQError(f"{path} holds no CT: no *-ct.nrrd files, images or DICOM series in it or in the "
                       "folders below it; point to a CT file, a folder of them or a DICOM series folder")
    return found


def refuse_split_series(folders: list[Path]) -> None:
    """LNQError naming the first DICOM series of ``folders`` split over folders (:func:`split_series`)."""
    for message in split_series(folders).values():
        raise LNQError(message)


def split_series(folders: list[Path]) -> dict[Path, str]:
    """Each of the series ``folders`` that holds part of a DICOM series an export split over folders
    (:func:`split_parts`) -> the one-line message naming the parts (of its first such series)."""
    return {folder: next(iter(messages.values())) for folder, messages in split_parts(folders).items()}


def split_parts(folders: list[Path]) -> dict[Path, dict[str, str]]:
    """Each of the series ``folders`` that holds part of a DICOM series an export split over folders (a CD
    or PACS export's subfolders of N files, every other slice, half the scan), each part of which would be
    read as a CT of its own -> that series' Series Instance UID -> the one-line message naming the parts
    (a folder may hold a complete series beside a part of another). Candidates share a Series Instance
    UID (none: no candidate), Patient ID, Study and Frame of Reference UID and the slice geometry
    (orientation, pixel spacing, rows and columns, slice thickness) in the first files of each folder
    (:func:`_sampled_series`: cheap on a tree of hundreds of folders); a pair of them is a split only when
    their files hold no SOP Instance UID and no slice position in common (:func:`_split_pair`): a copy
    under other file names, or two acquisitions of one series at the same positions, are none."""
    groups: dict[tuple[str, ...], dict[Path, _Part]] = {}
    for folder in folders if len(folders) > 1 else []:
        for key, sampled in _sampled_series(folder).items():
            groups.setdefault(key, {})[folder] = sampled
    found: dict[Path, dict[str, str]] = {}
    for key, sampled in groups.items():
        group, read = list(sampled), {}
        pairs = [(f, g) for k, f in enumerate(group) for g in group[k + 1:]]
        parted = {f for a, b in pairs if _split_pair(a, b, key, sampled, read) for f in (a, b)}
        split = [f for f in group if f in parted]
        if split:
            named = ", ".join(str(f) for f in split[:-1]) + f" and {split[-1]}"
            message = (f"the folders {named} hold slices of one DICOM series (Series Instance UID {key[0]}): "
                       "an export split it over folders; move its slices into one folder")
            for folder in split:
                found.setdefault(folder, {})[key[0]] = message
    return found


#: The header elements that place a file in a series: its key in :func:`_sampled_series`.
_SERIES_KEY = ["SeriesInstanceUID", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"]
#: The header elements of a slice's geometry, also in that key: one Series Instance UID a scanner gave a
#: thin and a thick reconstruction, or an axial and a coronal one, is two volumes, not one split.
_GEOMETRY = ["ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SliceThickness"]
#: What :func:`_part_files` reads of each file.
_PART_TAGS = [*_SERIES_KEY, *_GEOMETRY, "SOPInstanceUID", "ImagePositionPatient"]


@dataclass
class _Part:
    """A folder's files of one series (:func:`_part_files`), or the first few of them."""

    sops: set[str] = field(default_factory=set)  # their SOP Instance UIDs
    positions: set[tuple[float, ...]] = field(default_factory=set)  # their Image Position (Patient), 0.01 mm

    def meets(self, other: _Part) -> bool:
        """Whether the two parts share a SOP Instance UID or a slice position."""
        return bool(self.sops & other.sops or self.positions & other.positions)

    def add(self, entries: Iterable[tuple[str, tuple]], apart_from: _Part | None = None) -> bool:
        """Adds ``(SOP Instance UID, slice position or ())`` entries, read as they are asked for; False at
        the first one whose UID or position ``apart_from`` holds (no more is read)."""
        for sop, position in entries:
            if apart_from is not None and (sop in apart_from.sops or position in apart_from.positions):
                return False
            self.sops.add(sop)
            if position:
                self.positions.add(position)
        return True


def _sampled_series(folder: Path) -> dict[tuple[str, ...], _Part]:
    """The series keys (Series Instance UID, Patient ID, Study and Frame of Reference UID, geometry:
    :func:`_series_key`) of the first :data:`SAMPLED_FILES` files of ``folder`` (files that are not DICOM,
    or of an empty Series Instance UID, left out), each with the part of it those files hold."""
    found: dict[tuple[str, ...], _Part] = {}
    for key, sop, position in _file_entries(itertools.islice(_maybe_dicom(folder), SAMPLED_FILES)):
        found.setdefault(key, _Part()).add([(sop, position)])
    return found


def _file_entries(files: Iterator[Path] | list[Path]) -> Iterator[tuple[tuple[str, ...], str, tuple]]:
    """``(series key, SOP Instance UID, slice position or ())`` of each DICOM file of ``files`` with a
    Series Instance UID, read from its header as it is asked for. A file without Image Position (Patient)
    (an enhanced CT keeps it per frame, a secondary capture has none) has no position."""
    for child in files:
        try:
            ds = read_header(child, stop_before_pixels=True, specific_tags=_PART_TAGS)
        except Exception:  # not DICOM
            continue
        key = _series_key(ds)
        if not key[0]:
            continue
        position: tuple = ()
        with contextlib.suppress(TypeError, ValueError):
            position = tuple(round(float(v), 2) for v in ds.get("ImagePositionPatient") or ())
        yield key, str(ds.get("SOPInstanceUID", "") or ""), position


def _series_key(ds: object) -> tuple[str, ...]:
    """A header's series key: :data:`_SERIES_KEY`, then :data:`_GEOMETRY` (numbers to 0.001, so that
    values written with other digits compare equal)."""
    from pydicom.multival import MultiValue

    key = [str(ds.get(tag, "") or "").strip() for tag in _SERIES_KEY]
    for tag in _GEOMETRY:
        value = ds.get(tag, "")
        values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
        try:
            key.append(" ".join(f"{float(v):.3f}" for v in values if str(v).strip()))
        except (TypeError, ValueError):
            key.append(str(value).strip())
    return tuple(key)


def _part_files(folder: Path, key: tuple[str, ...]) -> Iterator[tuple[str, tuple]]:
    """``(SOP Instance UID, slice position or ())`` of each file of ``folder`` in the series ``key``
    (:func:`_sampled_series`), read as they are asked for."""
    entries = _file_entries(candidate_files(folder))
    return ((sop, position) for found, sop, position in entries if found == key)


def _split_pair(a: Path, b: Path, key: tuple[str, ...], sampled: dict[Path, _Part],
                read: dict[Path, _Part]) -> bool:
    """Whether two folders' parts of the series ``key`` are slices of one volume split apart: both have
    slice positions, and no SOP Instance UID (a copy) and no position (two volumes) is shared. Their first
    files (``sampled``) are looked at first (a copy under the same names: no more is read); then every
    file of ``a`` and those of ``b`` until one is shared. A folder read to its end is kept in ``read``:
    each part of a series split over many folders is read once, not once per pair."""
    if sampled[a].meets(sampled[b]):
        return False
    whole = _whole_part(a, key, read)
    if not whole.positions:  # no slice positions (an enhanced CT): never a split
        return False
    if b not in read:
        other = _Part()
        if not other.add(_part_files(b, key), apart_from=whole):
            return False
        read[b] = other
    return bool(read[b].positions) and not whole.meets(read[b])


def _whole_part(folder: Path, key: tuple[str, ...], read: dict[Path, _Part]) -> _Part:
    """Every file of ``folder`` in the series ``key`` (:func:`_part_files`), read once into ``read``."""
    if folder not in read:
        read[folder] = _Part()
        read[folder].add(_part_files(folder, key))
    return read[folder]


#: How deep below a data folder series folders are looked for (TCIA: collection / patient / study / series).
SERIES_DEPTH = 4
LOOK_BELOW = 256  # folders File > Open looks into for a CT series below the one it is given


def dicom_folders(path: Path, case_id: str) -> tuple[list[tuple[str, Path]], list[Path]]:
    """One walk of ``path`` and the folders below it (down to :data:`SERIES_DEPTH`, hidden folders and
    links left out: a home folder given by mistake is not walked to its end): the CT series folders as
    ``(case id, folder)`` (``path`` itself is ``case_id``, the others the path below it joined with ``_``)
    and the DICOM SEG files of the SEG series folders (each of a folder below ``path``). Below a CD's root
    (it holds a ``DICOMDIR``) the ids start with ``case_id``: every CD names its folders
    PT000000/ST000000/SE000000, and two CDs' predictions in one output folder overwrote each other. SEG
    files loose in a folder beside series folders below it (:func:`loose_segs`, ``path`` or one below it)
    are SEGs of those, listed last: a SEG ``predict -o`` wrote among a data set's folders does not come
    before the data set's SEG series."""
    series, segs, loose, level, holding = [], [], [], [path], set()
    root = [case_id] if holds_dicomdir(path) else []
    for depth in range(SERIES_DEPTH + 1):
        for folder in sorted(level):
            if not _holds_dicom(folder):
                continue
            holding.add(folder)
            here = _seg_files(folder)  # read once for each question below
            if beside := loose_segs(folder, here):  # no series folder: the walk goes on below it
                loose += beside
            elif depth and here:  # each SEG of a folder below (predict DATA -o DATA/preds wrote several)
                segs += here
            elif not depth and (seg := seg_file(folder, here)) is not None:  # given: one SEG, or refused
                segs.append(seg)
            elif depth == 0 or not _not_a_ct_image(folder):  # a scout or dose report beside the CT: no case
                parts = [*root, *folder.relative_to(path).parts]
                series.append((case_id if depth == 0 else "_".join(parts), folder))
            else:  # a SEG saved among a scout's files labels the CT it references (left out without a word)
                segs += segs_among_slices(folder)
        if depth == 0 and (series or segs):
            if series:
                refuse_series_below(path)
            break  # a series folder: nothing below it is another case
        level = _subfolders(level)
    else:
        _warn_deeper(path, level, holding)
    named: dict[str, Path] = {}
    for case, folder in series:
        if case in named:
            raise LNQError(f"the series folders {named[case]} and {folder} both give the case name {case!r} "
                           "(folder names joined with '_'); rename one of the folders")
        named[case] = folder
    return sorted(series, key=lambda item: item[1]), segs + loose


def _warn_deeper(path: Path, level: list[Path], holding: set[Path]) -> None:
    """A warning naming the folders of ``level`` (:data:`SERIES_DEPTH` + 1 below ``path``, the first
    :data:`LOOK_BELOW`) that hold DICOM below no folder of ``holding`` (those held DICOM on the walk): a
    patient's CD copied into ``data/P3/cd`` (its series 5 below) was left out without a word."""
    deeper = [f for f in itertools.islice(level, LOOK_BELOW)
              if not holding.intersection(f.parents) and _holds_dicom(f)]
    if deeper:
        named = ", ".join(str(f.relative_to(path)) for f in deeper[:3]) + (" ..." if len(deeper) > 3 else "")
        warnings.warn(f"{len(deeper)} folder{'s' if len(deeper) > 1 else ''} holding DICOM lie"
                      f"{'' if len(deeper) > 1 else 's'} more than {SERIES_DEPTH} folders below {path} "
                      f"({named}) and {'are' if len(deeper) > 1 else 'is'} left out; give a folder nearer "
                      "them (a patient's, a CD's root)", UserWarning, stacklevel=3)


def loose_segs(folder: Path, segs: list[Path] | None = None) -> list[Path]:
    """The DICOM SEG files of ``folder`` (its :func:`_seg_files`: ``segs`` when known) when it holds no
    image and a folder below it holds a CT series (:func:`_dicom_below`): ``predict DATA -o
    DATA --format dicom-seg`` writes ``<case>-seg.dcm`` beside DATA's series folders, and DATA is still the
    root of those (it was read as a SEG series, its cases lost). Else [] (a SEG series folder beside a
    ``notes/`` or ``__MACOSX/`` folder stays one)."""
    if not _subfolders([folder]):
        return []
    segs = _seg_files(folder) if segs is None else segs
    return segs if segs and _dicom_below(folder) else []


def _dicom_below(folder: Path) -> bool:
    """Whether one of the first :data:`LOOK_BELOW` folders below ``folder`` holds a CT series (a CD or a
    download of one patient: a few folders; a home or project folder is not walked to its end each time
    napari asks whether it can open it): a SEG series folder holding an older SEG in ``prev/`` stays one."""
    return any(_ct_series(f) for f in itertools.islice(_folders_below(folder), LOOK_BELOW))


def ct_folders_below(folder: Path) -> Iterator[Path]:
    """The folders below ``folder`` (down to :data:`SERIES_DEPTH`, level by level, hidden ones and links
    left out) that hold DICOM with a CT image (:func:`_not_a_ct_image`), found as they are asked for."""
    return (f for f in _folders_below(folder) if _ct_series(f))


def _ct_series(folder: Path) -> bool:
    return _holds_dicom(folder) and not _not_a_ct_image(folder)


def _folders_below(folder: Path) -> Iterator[Path]:
    """The folders below ``folder`` down to :data:`SERIES_DEPTH`, level by level, each level listed when
    the one above has been given out."""
    level = [folder]
    for _ in range(SERIES_DEPTH):
        level = _subfolders(level)
        yield from level


def _subfolders(folders: list[Path]) -> list[Path]:
    """The folders in ``folders``, sorted, hidden ones and links left out (no stat of each file: a series
    folder holds hundreds)."""
    found = []
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                found += sorted(folder / e.name for e in entries
                                if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
        except OSError:  # no permission, vanished
            continue
    return found


def refuse_series_below(folder: Path) -> None:
    """LNQError when ``folder``, read as one series folder, holds a DICOM CT of its own and CT series
    folders lie below it (an enhanced CT beside CD exports): which of them are cases cannot be told, and
    the ones below were left out without a word. Predictions, label versions or a scout below it are no
    CT series: the folder is its one case."""
    below = list(ct_folders_below(folder))
    if not below or _not_a_ct_image(folder):
        return
    own = sum(1 for f in candidate_files(folder) if _dicom_file(f))
    tops = sorted({f.relative_to(folder).parts[0] for f in below})
    named = ", ".join(tops[:3]) + (" ..." if len(tops) > 3 else "")
    raise LNQError(f"{folder} holds a DICOM CT of its own ({own} file{'s' if own != 1 else ''}) and DICOM CT "
                   f"series folders below it ({named}); give each folder on its own, or move the loose files "
                   "into a folder of their own")


def is_dicom_folder(path: str | Path) -> bool:
    """Whether napari's File > Open reads ``path`` as a DICOM CT, as ``view --ct`` reads it: a folder of
    DICOM files (:func:`_holds_dicom`: named by their UIDs, or bare datasets without the preamble, beside
    notes, thumbnails or CT files of ours), a CD's root (it holds a ``DICOMDIR``), or a folder with CT
    series folders below it (:func:`ct_folders_below`: a CD copied without its DICOMDIR, a TCIA download's
    patient / study / series): the reader reads the one series below, or says in one line that there are
    several (give the folder to ``predict``), as it does for a CD's root."""
    path = Path(path)
    return path.is_dir() and (holds_dicomdir(path) or _holds_dicom(path) or _dicom_below(path))


def _holds_dicom(folder: Path, look_at: int = 4) -> bool:
    """Whether one of the first few files of ``folder`` that may be DICOM (:func:`_maybe_dicom`) is: the
    one rule for a series folder, of the walk of a tree (:func:`dicom_folders`) and of File > Open
    (:func:`is_dicom_folder`)."""
    return any(_dicom_file(f) for f in itertools.islice(_maybe_dicom(folder), look_at))


def _dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file: by name or magic, else a dataset written without the 128-byte
    preamble (:func:`.dicom_headers.bare_start`: older exports, a bare implicit-VR dataset with no
    extension) that has a SOP Class UID in its first bytes (:func:`.dicom_headers.bare_sop_class`: a large
    GIPL or raw volume that only starts like one is not walked to its end). The file is opened once."""
    if Path(path).name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            return head[128:132] == b"DICM" or bool(bare_sop_class(head, handle))
    except OSError:
        return False


def _not_a_ct_image(folder: Path) -> bool:
    """Whether ``folder`` plainly holds no CT volume: no DICOM file of it is a CT image other than a
    localizer (:func:`_dicom_kind`: a dose report SR, a presentation state, a scout alone), unless a series
    of CT slices all marked LOCALIZER forms a volume (:func:`.dicom_headers.is_localizer_volume`: some
    exports mark a whole CT so); files that cannot be read left aside unless nothing else is DICOM (the
    reader says what is wrong). Files are read until a CT image turns up, so a scout or a SEG sorted before
    a study's slices (a flat export, a prediction saved into the series folder) does not hide them."""
    kinds, localizers = set(), {}
    for path in candidate_files(folder):
        kind, header = _kind_and_header(path)
        if kind == "ct":
            return False
        kinds.add(kind)
        if kind == "image" and is_ct_modality(header):  # a CT's localizer: a scout, or a CT marked so
            localizers.setdefault(str(header.get("SeriesInstanceUID", "")), []).append(header)
    if any(is_localizer_volume(series_slices(headers, headers)) for headers in localizers.values()):
        return False
    return "unreadable" not in kinds or bool(kinds - {"unreadable", None})


def _listing(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; none when it cannot be listed (no permission, vanished)."""
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def series_in(folder: Path, every_file: bool) -> tuple[str, ...]:
    """The DICOM series UIDs in ``folder``: of every file (GDCM, header only), or of its first few files
    (a series folder holds one series; reading them all in every folder beside a SEG would be slow)."""

    if every_file:
        return _unless_changed("series", folder, lambda: _series_of_every_file(folder))
    found = []
    for child in list(itertools.islice(_maybe_dicom(folder), SAMPLED_FILES)):
        try:
            ds = read_header(child, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            found.append(str(ds.SeriesInstanceUID))
        except Exception:  # not DICOM, no series UID
            continue
    return tuple(found)


def _series_of_every_file(folder: Path) -> tuple[str, ...]:
    """The DICOM series UIDs of every file of ``folder`` (GDCM, header only)."""
    import SimpleITK as sitk

    if not _holds_dicom(folder):  # GDCM would print a warning of its own for each such folder
        return ()
    try:
        with itk_quiet():
            return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return ()


def candidate_folders(path: Path) -> list[Path]:
    """Where a SEG's CT series may be: the SEG's folder, then the folders beside it and their
    subfolders (TCIA: <patient>/<study>/<series>/, the SEG a series beside the CT)."""
    home = path.parent
    found = [home]
    for child in _listing(home.parent) if home.parent != home else []:
        if len(found) >= MAX_SEARCH_FOLDERS:
            break
        if child.is_dir() and child != home and not child.name.startswith("."):
            found.append(child)
            found.extend([c for c in _listing(child) if c.is_dir()][:MAX_SEARCH_FOLDERS])
    return found[:MAX_SEARCH_FOLDERS]
