"""The case table of a workspace: ``workspace.json`` (format, identity, data folder, case id -> its files).

The on-disk format is unchanged since format version 1 (``id`` was added; a file without it still
reads, :func:`workspace_id`): ``cases`` maps a case id to
``{"ct", "seg", "full", "nodes"}`` absolute paths (None where a file is missing), plus ``patient`` and
``timepoint`` once the case is grouped (:meth:`CaseTable.set_time_point`).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.format_version import check_format_version
from lnq_napari.io.layout import CaseFiles
from lnq_napari.workspace.files import now

FORMAT = "lnq-napari-workspace"
FORMAT_VERSION = 1
META_FILE = "workspace.json"


def new_meta(data: str | Path, root: str | Path) -> dict:
    """The ``workspace.json`` content of a new workspace at ``root`` over the data folder ``data``
    (``root`` is kept: moved together with its data, the workspace finds the files where they went)."""
    cases = {c.case_id: _entry(c) for c in find_cases(data)}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "id": uuid.uuid4().hex, "created": now(),
            "data": str(Path(data).resolve()), "root": str(Path(root).resolve()), "cases": cases}


def _entry(case: CaseFiles) -> dict[str, str | None]:
    return {role: str(p) if (p := getattr(case, role)) is not None else None
            for role in ("ct", "seg", "full", "nodes")}


def workspace_id(meta: dict) -> str:
    """The identity of the workspace whose ``workspace.json`` holds ``meta``: its ``id`` (random, made at
    init; a copy of the folder shares it) and its stamp, ``<created>@<root>`` (the time and the folder it
    was made in, which it keeps wherever it moves and which two workspaces share only when made in one
    folder within one second), as ``<id>|<stamp>``; the stamp alone for a workspace made before the id
    field or whose file lost it (a hand edit, a tool dropping keys). Compare with :func:`same_id`."""
    stamp = f"{meta.get('created', '')}@{meta.get('root', '')}"
    found = meta.get("id")
    return f"{found}|{stamp}" if isinstance(found, str) and found else stamp


def _id_parts(identity: str) -> tuple[str, str]:
    """``(id, stamp)`` of a :func:`workspace_id`: ``<id>|<stamp>``, or the stamp alone (id "") for a
    workspace without the id field (a ``|`` in its stamp's folder is no id: the id holds no ``@``)."""
    head, sep, tail = identity.partition("|")
    return (head, tail) if sep and "@" not in head else ("", identity)


def same_id(one: str, other: str) -> bool:
    """Whether two identities (:func:`workspace_id`) are one workspace's: by the id where both have one,
    else by the stamp (a workspace whose file lost its id is still the one opened)."""
    (one_id, one_stamp), (other_id, other_stamp) = _id_parts(one), _id_parts(other)
    if one_id and other_id:
        return one_id == other_id
    return bool(one_stamp) and one_stamp == other_stamp


_SEEN: dict[str, tuple[tuple, str | None]] = {}  # META_FILE path -> (its stat, the id it held)
RACY_NS = 2 * 10**9  # a file changed this close to its reading may change again with the same stat


def id_at(folder: str | Path) -> str | None:
    """The identity (:func:`workspace_id`) of the lnq-napari workspace at ``folder`` now; None when there is
    none (no ``workspace.json``, or one of another program). OSError when it cannot be read (no
    permission, a stale network share), ValueError when it is damaged. Read again only once changed
    (its stat, the change time included, which a copy keeping times cannot set; git's racy rule: a file
    read within 2 s of its last change is read again, a file system that keeps whole seconds gives a
    rewrite in that second the same stat)."""
    path = os.path.join(folder, META_FILE)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)  # ctime: utime cannot set it
        if (seen := _SEEN.get(path)) is not None and seen[0] == key:
            return seen[1]
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None
    found = workspace_id(meta) if isinstance(meta, dict) and meta.get("format") == FORMAT else None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
        _SEEN[path] = (key, found)
    return found


def is_workspace(folder: str | Path) -> bool:
    """Whether ``folder`` holds a lnq-napari workspace (a ``workspace.json`` of its format), for opening
    and for making one. One that cannot be read now counts (opening it says what is wrong); a damaged one
    only when its text names lnq-napari's format (another program's, such as JSON with comments, does
    not make every folder below it "inside a workspace")."""
    path = os.path.join(folder, META_FILE)
    try:
        return id_at(folder) is not None
    except ValueError:
        try:
            with open(path, "rb") as f:
                return FORMAT.encode() in f.read()
        except OSError:
            return True
    except OSError:
        return os.path.isfile(path)


def workspace_gone(folder: str | Path | None, wid: str | None) -> bool:
    """Whether the workspace opened from ``folder`` (identity ``wid``) is no longer there: moved, renamed or
    deleted, or another workspace made or moved in its place: the one test of it for Save, autosave and
    recovery. False for no ``folder``, and when it cannot be told (its ``workspace.json`` cannot be read
    now, or is damaged): writes there then fail and say why. Without ``wid`` (unknown), only whether a
    workspace is there."""
    if not folder:
        return False
    try:
        found = id_at(folder)
    except (OSError, ValueError):
        return False
    return found is None or (wid is not None and not same_id(found, wid))


def written_for(recorded: str | Path | None, recorded_id: str, folder: str | Path, wid: str) -> bool:
    """Whether what was written for the workspace at ``recorded`` (identity ``recorded_id``) belongs to the
    workspace at ``folder`` (identity ``wid``): one identity, and the same folder or one that workspace has
    left (moved, renamed; or another workspace made there since). A copy of the folder shares the
    identity: what was written for its original, still where it was, is not the copy's."""
    if not same_id(recorded_id, wid):
        return False
    if not recorded or Path(recorded).resolve() == Path(folder).resolve():
        return True
    return workspace_gone(recorded, recorded_id)


def check_still_there(folder: str | Path, wid: str | None) -> None:
    """LNQError when :func:`workspace_gone`: a write made the folders again at the old path (an empty
    shell, or another workspace's), and what was saved there was missing from the workspace."""
    if workspace_gone(folder, wid):
        raise gone_error(folder)


def check_same(folder: str | Path, meta: dict, wid: str | None) -> None:
    """:func:`check_still_there` on the ``workspace.json`` just read from ``folder`` (``meta``, under the
    workspace's lock, before writing it back): LNQError when it is another workspace's."""
    if wid is not None and not same_id(workspace_id(meta), wid):
        raise gone_error(folder)


class WorkspaceGone(LNQError):
    """A write refused: the workspace opened from :attr:`folder` is gone from there."""

    def __init__(self, message: str, folder: str | Path | None = None) -> None:
        super().__init__(message)
        self.folder = Path(folder) if folder is not None else None


def gone_error(folder: str | Path) -> WorkspaceGone:
    """The one-line error for a write to the workspace opened from ``folder`` once it is gone from there."""
    return WorkspaceGone(f"the workspace {folder} is gone from there (moved, renamed or deleted while open, "
                         "or another workspace is there now); nothing was saved: open it where it is now and "
                         "save again", folder)


def read_meta(root: str | Path) -> dict:
    """The ``workspace.json`` of ``root``; LNQError when ``root`` is not a workspace."""
    path = Path(root) / META_FILE
    if not Path(root).exists():
        raise LNQError(f"the workspace {root} does not exist; check the path, or create one with "
                       "`lnq-napari workspace init PATH --data DIR`")
    if not path.is_file():
        raise LNQError(f"{root} is not a lnq-napari workspace (no {META_FILE}); "
                       "create one with `lnq-napari workspace init PATH --data DIR`")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LNQError(f"{path} is unreadable ({exc}); restore it from a backup") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LNQError(f"{path} is not a lnq-napari workspace file; choose another folder")
    check_format_version(meta.get("format_version", 1), path, "workspace", FORMAT_VERSION,
                         "restore the file from a backup, or correct the value",
                         " to open the workspace, so that nothing in it is changed by an older version")
    return meta


def write_meta(root: str | Path, meta: dict) -> None:
    atomic_write_text(Path(root) / META_FILE, json.dumps(meta, indent=1))


@dataclass(frozen=True)
class TimePoint:
    """A case as one scan of a patient: ``timepoint`` sorts the patient's scans (an ISO date such as
    2024-03-01 or a label such as t0, t1 that sorts the same way)."""

    case: str
    patient: str
    timepoint: str


class CaseTable:
    """Case ids and their files, as ``workspace.json`` lists them."""

    def __init__(self, cases: dict[str, dict], where: str | Path, created_at: str | None = None) -> None:
        self._cases = cases
        self.where = Path(where)
        self.created_at = Path(created_at) if created_at else None  # the workspace's folder at init

    def ids(self) -> list[str]:
        return sorted(self._cases)

    def entry(self, case: str) -> dict:
        """The files of ``case``; LNQError when it is not in the table."""
        try:
            return self._cases[case]
        except KeyError:
            known = self.ids()
            shown = ", ".join(known[:5]) + (f" ... ({len(known)} cases)" if len(known) > 5 else "")
            raise LNQError(f"case {case!r} is not in workspace {self.where}; its cases: {shown or 'none'}") \
                from None

    def ct_path(self, case: str) -> Path:
        return self._located(self.entry(case)["ct"])

    def seg_path(self, case: str) -> Path | None:
        found = self.entry(case).get("seg")
        return self._located(found) if found else None

    def full_path(self, case: str) -> Path | None:
        found = self.entry(case).get("full")
        return self._located(found) if found else None

    def _located(self, recorded: str) -> Path:
        """A file as ``workspace.json`` records it, or, when the workspace was moved together with its data
        (the file is gone from there but lies at the same place relative to the workspace), where it is."""
        path = Path(recorded)
        if path.exists() or self.created_at is None:
            return path
        try:
            moved = Path(os.path.normpath(self.where.resolve() / os.path.relpath(path, self.created_at)))
        except ValueError:  # another drive (Windows)
            return path
        return moved if moved.exists() else path

    def set_time_point(self, point: TimePoint) -> None:
        """Group ``point.case`` under its patient and time point (the table in memory; the caller saves)."""
        if not point.patient.strip() or not point.timepoint.strip():
            raise LNQError(f"case {point.case}: a patient and a time point are both needed, e.g. "
                           "P001,2024-03-01")
        check_timepoint(point.case, point.timepoint.strip())
        entry = self.entry(point.case)
        entry["patient"], entry["timepoint"] = point.patient.strip(), point.timepoint.strip()

    def check_time_points(self) -> None:
        """LNQError when two cases are one patient's scan at one time point (which is baseline then?), or
        when a patient's time points cannot be put in time order: written in different forms (2024-09-01
        and 20240601 sort by their first number) or as words (post sorts before pre)."""
        seen: dict[tuple[str, str], str] = {}
        forms: dict[str, dict[str, str]] = {}
        for point in self.time_points():
            other = seen.setdefault((point.patient, point.timepoint), point.case)
            if other != point.case:
                raise LNQError(f"cases {other} and {point.case} are both patient {point.patient} at "
                               f"{point.timepoint}; give each scan its own time point")
            forms.setdefault(point.patient, {}).setdefault(timepoint_form(point.timepoint), point.timepoint)
        for patient, found in forms.items():
            if len(found) > 1:
                raise LNQError(f"patient {patient}'s time points are written in different forms "
                               f"({', '.join(found.values())}), which do not sort in time order; write them "
                               "all as YYYY-MM-DD dates or all as t0, t1, ...")
            if "word" in found and sum(p.patient == patient for p in self.time_points()) > 1:
                raise LNQError(f"patient {patient}'s time points ({found['word']}, ...) carry no number or "
                               "date, so they sort as text, not in time; write them as t0, t1, ... or as "
                               "YYYY-MM-DD dates")

    def time_points(self, patient: str | None = None) -> list[TimePoint]:
        """The grouped cases (of ``patient``, or all), by patient and then time point."""
        points = [TimePoint(case, e["patient"], e["timepoint"]) for case, e in self._cases.items()
                  if e.get("patient") and (patient is None or e["patient"] == patient)]
        return sorted(points, key=lambda t: (t.patient, timepoint_order(t.timepoint), t.case))


def timepoint_order(timepoint: str) -> tuple:
    """The sort key of a time point: its numbers as numbers (t2 before t10; an ISO date 2024-03-01 or a
    DICOM date 20240301 in time order)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", timepoint) if part)


def check_timepoint(case: str, timepoint: str) -> None:
    """LNQError for a time point that would sort out of time order: a date written day or month first
    (05/01/2024), or an ISO-looking date that is none (2024-13-45)."""
    if re.fullmatch(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}", timepoint):
        raise LNQError(f"case {case}: time point {timepoint!r} is a date written day or month first, which "
                       "does not sort in time order; write it as YYYY-MM-DD (ISO)")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{8}", timepoint):  # ISO, or DICOM's YYYYMMDD
        try:
            digits = timepoint.replace("-", "")
            date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        except ValueError:
            raise LNQError(f"case {case}: time point {timepoint!r} is not a date; write it as "
                           "YYYY-MM-DD") from None


def timepoint_form(timepoint: str) -> str:
    """What a time point is written as: "ISO date", "DICOM date" (YYYYMMDD), "numbered" (t0, visit 2) or
    "word" (no number: pre, post, which sort as text, not in time)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", timepoint):
        return "ISO date"
    if re.fullmatch(r"\d{8}", timepoint):
        return "DICOM date"
    return "numbered" if re.search(r"\d", timepoint) else "word"
