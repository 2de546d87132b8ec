"""Label versions of one case in one folder: ``vNNN.seg.nrrd`` with its ``vNNN.json`` provenance.

A version is committed by its provenance file, written after the label file: a label file without one,
or whose size no longer matches it, is a crash leftover and is ignored. A number is allocated by
creating the ``vNNN.json`` placeholder exclusively (``O_CREAT | O_EXCL``), so it is never handed out
twice, not even to two processes saving at once; an empty (or torn) placeholder is never a version. A
label file whose provenance is missing, torn or edited beyond use (:meth:`LabelStore.unrecorded`) is no
version either, but is named to the user (never a save still in flight: :data:`STALE_SECONDS`); its
provenance can be rebuilt from its header (:mod:`lnq_napari.workspace.repair`).
A save never replaces or deletes a file it did not make: the label file is written under a temp name in
the case folder and hard-linked into place (never over a file); the provenance is written into the
placeholder's own inode, once it is checked to be still the one this save made (a folder moved away, or
another put at its path meanwhile, refuses the save); a refused save removes only its own files.
The same layout serves a workspace (``<workspace>/labels/<case>/``) and saves without one
(``<folder>/<case>/``, by default ``lnq-labels/`` beside the case).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Literal

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.interact import NodeMark, read_spots
from lnq_napari.io.atomic import STALE_SECONDS, flushed, place_new, remove_stale_temps, temp_beside
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.labels import check_label_values
from lnq_napari.io.readers import read_labels
from lnq_napari.io.segfile import write_seg_nrrd_into
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.files import now

SOURCES = ("original", "prediction", "correction", "autosave")
LABEL_SUFFIX = ".seg.nrrd"
LABELS_FOLDER = "lnq-labels"  # the label store beside a case saved without a workspace
_PROVENANCE = re.compile(r"^v(\d{3,})\.json$")
_NUMBERED = re.compile(r"^v(\d{3,})\.")
_LABEL_FILE = re.compile(r"^v(\d{3,})\.seg\.nrrd$")
_NOT_IN_HEADER = ("file", "bytes", "sha256", "rejected", "marked")  # lists: in the JSON only
#: Provenance fields the store sets itself (source, model_version, edits, parent are arguments).
_SET_BY_STORE = frozenset({"version", "case", "time", "file", "bytes", "sha256"})
_EXCLUSIVE = os.O_CREAT | os.O_EXCL | os.O_WRONLY  # fails when the file exists: a number is taken once
#: What a reviewer's save carries from its parent: the lists a repair could not recover (the old marks stay
#: unknown, whatever marks the reviewer adds after). Lost rejections are not recorded: a rejection only
#: teaches its ball as known background, so without it the ball stays unknown, which is safe.
LOST_FLAGS = ("marks_lost",)
REVIEWER_SOURCES = ("correction", "autosave")


def version_number(version: object) -> int | None:
    """The number of a version id (``"v012"`` -> 12); None when ``version`` names none."""
    match = _PROVENANCE.match(f"{version}.json")  # the one parser of a version id: its provenance's name
    return int(match.group(1)) if match else None


def lost_flags(fields: Mapping[str, object]) -> dict[str, bool]:
    """The :data:`LOST_FLAGS` set in ``fields``: a provenance (``marks_lost``: true) or a label file's header
    (``lnq_marks_lost``: ``"True"``); only those set, each True."""
    def set_(value: object) -> bool:
        return value is True or value == "True"

    return {flag: True for flag in LOST_FLAGS if set_(fields.get(flag)) or set_(fields.get(f"lnq_{flag}"))}



def marks_lost(provenance: Mapping[str, object]) -> bool:
    """Whether a reviewer's version lost its marks: flagged so (:func:`lost_flags`: rebuilt by ``workspace
    repair`` without them, or saved on top of one so) or an entry of its ``marked`` list does not read
    (edited by hand; napari, repair and the fine-tune drop it). No marks then is not "no node marked"."""
    return lost_flags(provenance).get("marks_lost", False) or read_spots(
        NodeMark, provenance.get("marked") or [])[1] > 0

@dataclass(frozen=True)
class SavedLabels:
    """A stored label version: its case, id (``"v002"``), file and the file's sha256 (None: not known)."""

    case: str
    version: str
    path: Path
    sha256: str | None = field(default=None, compare=False)  # not part of its identity


#: What is wrong with a label file's ``vNNN.json`` (:class:`Unrecorded`): missing, unreadable (a permission
#: problem), empty (a save's placeholder), torn (not JSON), or JSON that is not that version's provenance.
Problem = Literal["missing", "unreadable", "empty", "torn", "not_provenance"]


@dataclass(frozen=True)
class Unrecorded:
    """A label file of the store without a provenance to go with it: ``kind`` is what is wrong with its
    ``vNNN.json`` (``side``) and ``why`` says so, for display only; ``source`` is what the label file's
    header says it is (None: it cannot tell)."""

    path: Path
    side: Path
    why: str
    source: str | None
    kind: Problem


class LabelStore:
    """The label versions of ``case`` under ``<root>/<case>/``."""

    def __init__(self, root: str | Path, case: str, make_root: bool = True) -> None:
        name = str(case)
        if not name.strip() or name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
            raise LNQError(f"{name!r} cannot name a case: its labels live in a folder of that name under "
                           f"{root}; use the case id (such as lnq2023-train-0001), without / or \\")
        self.case = case
        self.folder = Path(root) / case
        self._make_root = make_root  # False: root's folder must be there (a workspace's, never made again)

    def versions(self) -> list[dict]:
        """Provenance of each committed version, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = _PROVENANCE.match(path.name)
            prov = self._committed(path) if match else None
            if prov is not None:
                found.append((int(match.group(1)), prov))
        return [prov for _, prov in sorted(found, key=lambda t: t[0])]

    def lost(self) -> list[dict]:
        """Provenance of each version whose label file is gone or not the size it was written with
        (deleted or damaged by hand): :meth:`versions` leaves them out."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.iterdir()):
            prov = _provenance(path)[0] if _PROVENANCE.match(path.name) else None
            if prov is not None and self._committed(path) is None:  # a torn or empty one: never committed
                out.append(prov)
        return out

    def unrecorded(self, older_than: float = STALE_SECONDS) -> list[Unrecorded]:
        """Label files (``vNNN.seg.nrrd``) whose ``vNNN.json`` is missing or holds no provenance of that
        version (deleted, torn or emptied by a crash, edited by hand): :meth:`versions` and :meth:`lost`
        leave them out. A save in flight is not one: its placeholder, empty or being filled, and its
        label file changed less than ``older_than`` seconds ago."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.iterdir()):
            match = _LABEL_FILE.match(path.name)
            if match is None or not path.is_file():
                continue
            side = path.with_name(f"v{match.group(1)}.json")
            prov, kind, why = _provenance(side)
            if kind is not None and not _may_be_saving(side, path, kind, older_than):
                out.append(Unrecorded(path, side, why, _header_source(path), kind))
        return out

    def latest(self, source: str | tuple[str, ...] | None = None) -> dict | None:
        """Provenance of the newest version (optionally of the given sources), or None."""
        sources = (source,) if isinstance(source, str) else source
        for prov in reversed(self.versions()):
            if sources is None or prov["source"] in sources:
                return prov
        return None

    def since(self, after: str) -> list[dict]:
        """Provenance of the committed versions numbered above ``after``, oldest first; only their
        ``vNNN.json`` are read, each once (a Save's check: a folder of hundreds of versions on a share)."""
        low = version_number(after)
        if low is None or not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = _PROVENANCE.match(path.name)
            if match and int(match.group(1)) > low and (prov := self._committed(path)) is not None:
                found.append((int(match.group(1)), prov))
        return [prov for _, prov in sorted(found, key=lambda t: t[0])]

    def committed(self, version: str) -> dict | None:
        """Provenance of one committed version, None when there is none (its files gone or damaged)."""
        name = f"{version}.json"
        return self._committed(self.folder / name) if _PROVENANCE.match(name) else None

    def info(self, version: str) -> dict:
        """Provenance of one committed version; LNQError when there is none."""
        name = f"{version}.json"
        prov = self._committed(self.folder / name) if _PROVENANCE.match(name) else None
        if prov is None:
            known = [v["version"] for v in self.versions()]
            raise LNQError(f"case {self.case!r} has no label version {version!r}; its versions: "
                           f"{', '.join(known[-8:]) or 'none'}")
        return prov

    def path(self, version: str) -> Path:
        """The label file of one committed version."""
        return self.folder / self.info(version)["file"]

    def read(self, version: str) -> Volume:
        """The label volume of one version; its meta names the version and source."""
        prov = self.info(version)
        volume = read_labels(self.folder / prov["file"])
        volume.meta = {**volume.meta, "lnq_version": version, "lnq_source": prov["source"]}
        return volume

    def add(
        self, labels: Volume, source: str, model_version: str | None = None, edits: int = 0,
        parent: str | None = None,
        committing: Callable[[dict], contextlib.AbstractContextManager] | None = None, **fields,
    ) -> SavedLabels:
        """Store ``labels`` as a new version; never overwrites.

        ``source`` is one of :data:`SOURCES`; ``parent`` defaults to the newest committed version.
        ``committing(provenance)``, when given, is entered around the commit (the provenance write): a
        workspace journals the version there (:class:`~lnq_napari.workspace.save_lines.SaveLines`).
        Extra keyword fields are kept in the provenance (and, one line each, in the file's header). A
        correction or autosave carries its parent's :data:`LOST_FLAGS` (unless ``fields`` sets them).
        """
        check_source(source)
        check_label_values(np.asarray(labels.array), f"the labels to save for {self.case}")  # before a number
        taken = sorted(set(fields) & _SET_BY_STORE)
        if taken:
            raise LNQError(f"provenance field{'s' if len(taken) > 1 else ''} {', '.join(taken)} "
                           f"{'are' if len(taken) > 1 else 'is'} set by the label store; give yours "
                           "another name (e.g. note=..., reviewer=...)")
        if parent is None:
            parent = (self.latest() or {}).get("version")
        if source in REVIEWER_SOURCES and parent is not None:
            fields = {**self._lost_flags(parent), **fields}
        version, mark = self._reserve()
        path = self.folder / f"{version}{LABEL_SUFFIX}"
        placeholder = self.folder / f"{version}.json"
        prov = {"version": version, "case": self.case, "source": source, "model_version": model_version,
                "time": now(), "edits": int(edits), "parent": parent, "file": path.name, **fields}
        tmp: Path | None = None
        written: tuple[int, int] | None = None  # the label file's device and inode, under either name
        try:
            try:  # in the case folder just made, never made again when it is gone
                tmp = temp_beside(path, LABEL_SUFFIX)
            except FileNotFoundError:
                raise self._replaced(prov) from None
            write_seg_nrrd_into(tmp, labels, name="lymph node", extra=_header(prov), named=path.name)
            stat = flushed(tmp)
            written = (stat.st_dev, stat.st_ino)
            prov["bytes"] = stat.st_size
            prov["sha256"] = sha256_file(tmp)
            with committing(prov) if committing else contextlib.nullcontext():
                self._commit(tmp, path, placeholder, mark, prov)
        except BaseException as exc:
            with contextlib.suppress(OSError):  # the save's own temp file; a name no one else uses
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
            if isinstance(exc, Exception) and self._committed(placeholder) is None:
                # refused labels, a full disk, the folder replaced: the number is given back (a kill keeps
                # it, unused); only files this save made go, by their inode
                with contextlib.suppress(OSError):
                    _unlink_if(path, written)
                with contextlib.suppress(OSError):
                    _unlink_if(placeholder, mark)
            raise
        remove_stale_temps(self.folder)
        return SavedLabels(self.case, version, path, prov["sha256"])

    def _lost_flags(self, parent: str) -> dict[str, bool]:
        """The :data:`LOST_FLAGS` the committed version ``parent`` holds (none when it is not one)."""
        name = f"{parent}.json"
        prov = self._committed(self.folder / name) if _PROVENANCE.match(name) else None
        return lost_flags(prov) if prov is not None else {}

    def _commit(self, tmp: Path, path: Path, placeholder: Path, mark: tuple[int, int], prov: dict) -> None:
        """Put the label file ``tmp`` in place as ``path`` and fill the placeholder with ``prov``, which
        commits the version; only while the placeholder at its path is still the one this save made
        (``mark``: device and inode), empty: else (the folder moved away, another put at its path) nothing
        is written and FolderReplaced is raised. Nothing is replaced: a file at ``path`` refuses it too."""
        try:
            fd = os.open(placeholder, os.O_WRONLY | getattr(os, "O_BINARY", 0))  # bytes as they are
        except FileNotFoundError:
            raise self._replaced(prov) from None
        try:
            found = os.fstat(fd)
            if (found.st_dev, found.st_ino) != mark or found.st_size:
                raise self._replaced(prov)
            try:
                place_new(tmp, path)  # the temp's random name, looked up in the folder at the path now
            except FileNotFoundError:
                raise self._replaced(prov) from None
            except FileExistsError:
                raise LNQError(f"{path} appeared while {self.case} {prov['version']} was saved (written by "
                               "another program?); nothing was saved: save again") from None
            data = json.dumps(prov, indent=1, default=str).encode()
            while data:  # into the placeholder's own inode, wherever its folder is now
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _replaced(self, prov: dict) -> FolderReplaced:
        return FolderReplaced(f"the label folder {self.folder} was moved or replaced while {self.case} "
                              f"{prov['version']} was saved; nothing was saved: save again where it is now")

    def _committed(self, path: Path) -> dict | None:
        prov = _provenance(path)[0]  # None: unreadable, torn, an empty placeholder, edited beyond use
        if prov is None:
            return None
        try:  # a label file removed meanwhile (by hand, by another tool) is no version, never an error
            st = (self.folder / prov["file"]).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return prov if S_ISREG(st.st_mode) and st.st_size == prov.get("bytes") else None

    def _reserve(self) -> tuple[str, tuple[int, int]]:
        """The next free version id, taken by creating its provenance placeholder exclusively, and the
        placeholder's device and inode (the commit checks it is still this one)."""
        if self._make_root:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.folder.parent.mkdir(exist_ok=True)  # below a root that is there: never one moved away
        self.folder.mkdir(exist_ok=True)
        number = self._highest_number() + 1
        while True:
            version = f"v{number:03d}"
            try:
                fd = os.open(self.folder / f"{version}.json", _EXCLUSIVE, 0o666)
            except FileExistsError:
                number += 1
                continue
            try:
                made = os.fstat(fd)
            finally:
                os.close(fd)
            return version, (made.st_dev, made.st_ino)

    def _highest_number(self) -> int:
        """The highest number any file of the folder carries (leftovers included), 0 when none."""
        numbers = (int(m.group(1)) for p in self.folder.iterdir() if (m := _NUMBERED.match(p.name)))
        return max(numbers, default=0)


class FolderReplaced(LNQError):
    """A save refused at its commit: its case folder is no longer at its path (moved away, or another put
    there); nothing of the save was left there."""


def _unlink_if(path: Path, mark: tuple[int, int] | None) -> None:
    """Remove ``path`` when it is the file ``mark`` (device, inode) names: one this save made, never
    another's put at the same path."""
    if mark is None:
        return
    try:
        found = os.stat(path)
        if (found.st_dev, found.st_ino) == mark:
            path.unlink()
    except FileNotFoundError:
        pass


def _provenance(path: Path) -> tuple[dict | None, Problem | None, str]:
    """The provenance ``vNNN.json`` holds, or None with what is wrong (its :data:`Problem` and in words):
    missing, unreadable, empty (a save's placeholder), not JSON (torn), or not the provenance of version
    ``vNNN`` (edited by hand: its version, source, file or size missing or of the wrong kind)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, "missing", "is missing"
    except (OSError, ValueError) as exc:
        return None, "unreadable", f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if not text.strip():
        return None, "empty", "is empty"
    try:
        prov = json.loads(text)
    except ValueError:
        return None, "torn", "is not valid JSON (torn?)"
    file = prov.get("file") if isinstance(prov, dict) else None
    if not (isinstance(prov, dict) and prov.get("version") == path.name[:-len(".json")]
            and isinstance(prov.get("source"), str) and prov["source"] in SOURCES
            and isinstance(file, str) and file and Path(file).name == file and file not in (".", "..")
            and type(prov.get("bytes")) is int):
        return None, "not_provenance", f"is not the provenance of {path.name[:-len('.json')]} (edited by " \
            "hand?)"
    return prov, None, ""


def _may_be_saving(side: Path, label: Path, kind: Problem, older_than: float) -> bool:
    """Whether ``label`` with the provenance ``side`` holding none (``kind``) may be a save in flight: its
    placeholder is there, empty or being filled, and it or the label file changed within ``older_than``
    seconds (a save takes its number by creating the placeholder first and fills it last; a provenance
    missing or whole but wrong is never one in flight; one that cannot be read may be another account's
    save, its placeholder made under a umask that keeps others out)."""
    if kind not in ("empty", "torn", "unreadable"):
        return False
    limit = time.time() - older_than
    try:
        return max(side.stat().st_mtime, label.stat().st_mtime) > limit
    except OSError:  # gone meanwhile: the save was refused, or finished
        return True


def _header_source(label: Path) -> str | None:
    """The source a label file's header names (``lnq_source``), None when it names none or is unreadable."""
    import nrrd

    try:
        source = nrrd.read_header(str(label)).get("lnq_source")
    except Exception:  # noqa: BLE001 - a damaged header tells nothing
        return None
    return source if source in SOURCES else None


def version_provenance(label_file: str | Path) -> dict | None:
    """The provenance of a label store's file (``<case>/vNNN.seg.nrrd``, or the ``vNNN.seg.dcm`` saved
    beside it for a DICOM CT), from its committed ``vNNN.json``; None for any other file."""
    path = Path(os.path.abspath(label_file))
    number = _NUMBERED.match(path.name)
    if number is None or not path.parent.name:
        return None
    store = LabelStore(path.parent.parent, path.parent.name)
    return store._committed(path.with_name(f"v{number.group(1)}.json"))


def check_source(source: str) -> None:
    """LNQError unless ``source`` is one of :data:`SOURCES`."""
    if source not in SOURCES:
        raise LNQError(f"label source {source!r} is unknown; use one of {', '.join(SOURCES)}")


def _header(prov: dict) -> dict[str, str]:
    """The provenance as one-line ``lnq_*`` header fields of the label file."""
    return {f"lnq_{key}": " ".join(str(value).splitlines()) for key, value in prov.items()
            if value is not None and key not in _NOT_IN_HEADER}
