"""Rebuild the provenance (``vNNN.json``) of label files whose own is missing or damaged, from the label
file's header (:meth:`LabelStore.unrecorded`).

A version's header holds its provenance, one ``lnq_<field>`` line each (source, parent, edits, model
version, time, case, version and the caller's own fields), but not the lists kept only in the JSON (the
reviewer's ``marked`` nodes and ``rejected`` suggestions): those are taken, entry by entry as they read,
from a damaged ``vNNN.json`` of this version that still reads as JSON, else the marks are recorded as
lost (``marks_lost``: a fine-tune then takes nothing the reviewer removed as background).
The number is kept; a damaged ``vNNN.json`` is kept aside as ``vNNN.json.damaged`` before it is replaced
(atomically), a missing one is made without replacing anything. A file a save may still be writing
(:data:`~lnq_napari.io.atomic.STALE_SECONDS`), one whose provenance cannot be read (a permission problem),
one whose header or labels cannot be read (a torn leftover), one whose header names another case or version
or that lies on another grid than the case's CT (copied here), those of a case whose CT cannot be read (put
it back) and those of a case folder that cannot be written are left alone with a line saying why; nothing
is deleted.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.interact import NodeMark, Rejection, read_spots
from lnq_napari.io.atomic import (
    CANNOT_WRITE,
    STALE_SECONDS,
    access_error,
    atomic_write,
    flushed,
    place_new,
    temp_beside,
    write_error,
)
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.geometry import check_same_grid
from lnq_napari.io.labels import check_label_values
from lnq_napari.io.readers import read_labels
from lnq_napari.io.segfile import ascii_text
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.files import now
from lnq_napari.workspace.labels import (
    LOST_FLAGS,
    REVIEWER_SOURCES,
    SOURCES,
    LabelStore,
    Unrecorded,
    lost_flags,
)

_LISTS = ("marked", "rejected")  # kept only in the JSON
_FROM_HEADER = ("version", "case", "source", "model_version", "time", "edits", "parent")
_NOT_EXTRA = frozenset({*_FROM_HEADER, *_LISTS, *LOST_FLAGS, "file", "bytes", "sha256",
                        "repaired"})
DAMAGED_SUFFIX = ".damaged"
#: Why a provenance that cannot be read is left alone: whole, perhaps, but not ours to read or replace.
PERMISSION_PROBLEM = "a permission problem, not damage (saved by another account?)"


@dataclass(frozen=True)
class Repair:
    """What repair did (or, in a dry run, would do) with one label file: ``repaired`` (its ``vNNN.json``
    written) or not, and ``note``, one line: what could not be recovered, or why it was left alone and what
    to do. ``version`` is empty for a case folder that cannot be written (``path``; the note names its
    versions left alone)."""

    case: str
    version: str
    path: Path
    repaired: bool
    note: str

    def line(self) -> str:
        return f"{self.case} {self.version}: {self.note}" if self.version else f"{self.case}: {self.note}"


def repair_store(store: LabelStore, older_than: float = STALE_SECONDS,
                 ct_grid: Callable[[], Volume] | None = None, dry_run: bool = False,
                 ct_path: Path | None = None) -> list[Repair]:
    """Rebuild the ``vNNN.json`` of each label file of ``store`` whose own is missing or damaged (changed
    ``older_than`` seconds ago or earlier); one :class:`Repair` per such file, those a save may still be
    writing included (left alone). ``ct_grid``: the grid of the case's CT (a label file on another grid
    is left alone; so are all when the CT, at ``ct_path``, cannot be read). ``dry_run``: what would be
    done, nothing written. A case folder that cannot be written gives one :class:`Repair` (``version``
    empty) naming the versions left alone. The caller holds the workspace's lock (unless ``dry_run``), so
    no save commits meanwhile."""
    found = store.unrecorded(older_than)
    stale = {u.path for u in found}
    out = [Repair(store.case, u.side.stem, u.path, False, "a save may still be writing it (changed within "
                  f"{older_than / 60:.0f} minutes); left alone: run repair again later")
           for u in store.unrecorded(older_than=0) if u.path not in stale]
    planned = [plan_repair(store, u, ct_grid, ct_path) for u in found]
    out += [p.repair for p in planned if not p.rebuildable]
    todo = [p for p in planned if p.rebuildable]
    check = access_error if dry_run else write_error  # a dry run writes nothing
    exc = check(store.folder) if todo else None
    if exc is not None:
        names = ", ".join(p.repair.version for p in todo)
        out.append(Repair(store.case, "", store.folder, False,
                          f"its folder {store.folder} cannot be written ({exc.strerror}); {names} left "
                          "alone: make the folder writable and run repair again"))
        todo = []
    if dry_run:
        return sorted(out + [replace(p.repair, note=p.would) for p in todo], key=lambda r: r.version)
    out += [_commit(p) for p in todo]
    return sorted(out, key=lambda r: r.version)


@dataclass(frozen=True)
class RepairPlan:
    """What repair would do with one label file: ``prov`` to write into ``side`` (None: left alone), the
    :class:`Repair` once done (or left alone) and, for one to rebuild, the line of a dry run (``would``);
    for one left alone, ``why`` and what to do (``fix``), which its note joins."""

    repair: Repair
    side: Path
    prov: dict | None = None
    would: str = ""
    why: str = ""
    fix: str = ""

    @property
    def rebuildable(self) -> bool:
        """Whether repair would rebuild its provenance (else it is left alone)."""
        return self.prov is not None


def plan_repair(store: LabelStore, found: Unrecorded, ct_grid: Callable[[], Volume] | None = None,
                ct_path: Path | None = None) -> RepairPlan:
    """What repair would do with the unrecorded label file ``found`` (nothing written): the provenance to
    write, or why it is left alone and what to do. ``ct_grid``: the grid of the case's CT, read from
    ``ct_path`` (a CT that cannot be read leaves the file alone, said as the CT's problem)."""
    version, path, side = found.side.stem, found.path, found.side
    quoted = shlex.quote(str(path))

    def refused(why: str, fix: str, alone: str = "left alone: ") -> RepairPlan:
        return RepairPlan(Repair(store.case, version, path, False, f"{why}; {alone}{fix}"), side, why=why,
                          fix=fix)

    if found.kind == "unreadable":  # whole, perhaps, but not ours to read or replace
        return refused(f"{side.name} {found.why}: {PERMISSION_PROBLEM}",
                       f"have its owner make it readable (chmod a+r {shlex.quote(str(side))})")
    try:
        header = _header(path)
    except Exception as exc:  # noqa: BLE001 - a torn header says nothing: named, never deleted
        return refused(f"{path.name}'s header cannot be read ({_short(exc)}): a torn leftover, nothing to "
                       "rebuild from", f"delete {quoted} if it is not wanted (repair never deletes)", "")
    source = header.get("lnq_source")
    try:
        labels = read_labels(path)
        check_label_values(np.asarray(labels.array), str(path))
    except Exception as exc:  # noqa: BLE001 - labels cut short (an old version's killed save), say
        says = f", though its header says {source}" if source in SOURCES else ""
        return refused(f"{path.name} cannot be read ({_short(exc)}){says}: a torn leftover",
                       f"delete {quoted} if it is not wanted (repair never deletes)", "")
    if source not in SOURCES:
        return refused(f"{path.name}'s header names no label source (lnq_source): not a file lnq-napari "
                       "saved", f"move {quoted} out of {store.folder} or delete it if it is not wanted", "")
    here = (ascii_text(store.case), version)  # the header's text is ASCII
    named = (header.get("lnq_case", here[0]), header.get("lnq_version", version))
    copied = "copied from another case?" if named == here else f"its header names {named[0]} {named[1]}"
    if ct_grid is not None:
        try:  # the CT's own failure (a data drive not mounted) says nothing of the label file
            grid = ct_grid()
        except (LNQError, OSError) as exc:
            gone = ct_path is not None and not os.path.exists(ct_path)
            why = "it is not there: a data drive not mounted, or the file moved?" if gone else _short(exc)
            return refused(f"the case's CT{f' {ct_path}' if ct_path is not None else ''} cannot be read "
                           f"({why}), so {path.name} cannot be checked against it",
                           "put it back and run repair again")
        try:
            check_same_grid(grid, labels, what=f"{path.name} and the CT of {store.case}",
                            fix=f"not labels of this CT ({copied})")
        except LNQError as exc:
            return refused(str(exc), f"move {quoted} out of {store.folder}, or delete it if it is not wanted")
    if named != here:  # the same grid: another time point's labels, or another version of this case
        return refused(f"its header names {named[0]} {named[1]}: copied here from there?",
                       f"move {quoted} out of {store.folder}, or open it in napari on this case's CT and "
                       "Save to import it as a new version")
    prov, lost = _provenance(store, path, version, header, _damaged(side))
    lost_text = "; not recoverable: " + ", ".join(lost) if lost else "; nothing lost"
    model = prov["model_version"] or "none"
    text = (f"from the header of {path.name} ({source}, parent {prov['parent'] or 'none'}, edits "
            f"{prov['edits']}, model {model}){lost_text}")
    return RepairPlan(Repair(store.case, version, path, True, f"{version}.json rebuilt {text}"), side, prov,
                      f"{version}.json would be rebuilt {text}")


def _commit(plan: RepairPlan) -> Repair:
    """``plan`` carried out: its provenance written, with the label file's bytes and sha256 as they are now
    (a folder or file that cannot be written: left alone, said)."""
    repair = plan.repair
    try:
        stat = repair.path.stat()
        prov = {**plan.prov, "bytes": stat.st_size, "sha256": sha256_file(repair.path), "repaired": now()}
        written = _write(plan.side, prov)
    except OSError as exc:
        if exc.errno not in CANNOT_WRITE:
            raise
        return replace(repair, repaired=False,
                       note=f"{plan.side.name} cannot be written ({exc.strerror}); left alone: make "
                            f"{repair.path.parent} writable (or free some space) and run repair again")
    if not written:
        return replace(repair, repaired=False,
                       note=f"{plan.side.name} appeared while it was repaired (written by another program?); "
                            "left alone: run repair again")
    return repair


def _header(path: Path) -> dict[str, str]:
    import nrrd

    return {str(k): str(v) for k, v in nrrd.read_header(str(path)).items()}


def _short(exc: Exception) -> str:
    """What went wrong, short: the first clause of the reader's message (not its advice), on one line."""
    text = str(getattr(exc, "strerror", None) or exc or type(exc).__name__).split("; ")[0]
    return " ".join(text.split())[:160]


def _damaged(side: Path) -> dict:
    """What a damaged ``vNNN.json`` still holds as a JSON object ({} when missing, empty, torn or other)."""
    try:
        old = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def _provenance(store: LabelStore, path: Path, version: str, header: dict[str, str],
                old: dict) -> tuple[dict, list[str]]:
    """The provenance of ``path`` rebuilt from its ``header`` (and the lists of the damaged JSON ``old``),
    and what could not be recovered, in words."""
    lost: list[str] = []
    field = {key: header[f"lnq_{key}"] for key in _FROM_HEADER if f"lnq_{key}" in header}
    time = field.get("time")
    if not time:
        stamp = _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc)
        time = stamp.isoformat(timespec="seconds")
        lost.append("its time (the file's modification time instead)")
    try:
        edits = int(field["edits"])
    except (KeyError, ValueError):
        edits = 0
        lost.append("its number of edits (0 instead)")
    prov = {"version": version, "case": store.case, "source": header["lnq_source"],
            "model_version": field.get("model_version"), "time": time, "edits": edits,
            "parent": field.get("parent"), "file": path.name}
    prov.update({key[4:]: value for key, value in header.items()
                 if key.startswith("lnq_") and key[4:] not in _NOT_EXTRA})
    if prov["source"] in REVIEWER_SOURCES:  # the lists a reviewer's save keeps in the JSON only
        prov.update(lost_flags(header), **lost_flags(old))  # a loss recorded before stays recorded
        lost += _lists(prov, old, version)
    return prov, lost


def _lists(prov: dict, old: dict, version: str) -> list[str]:
    """The reviewer's lists (``marked``, ``rejected``) the damaged JSON ``old`` still holds, checked entry by
    entry, into ``prov``; a list that is lost (no JSON left, another version's JSON, an entry that does not
    read) is said; lost marks are recorded (``marks_lost``: a fine-tune then does not take what the
    reviewer removed as background, since a lost mark may have kept a node there). What was lost, in
    words."""
    lost = []
    if not old or old.get("version", version) != version:
        whose = "" if not old else f" (its damaged {version}.json is {old.get('version')}'s)"
        prov.update(marks_lost=True)
        return [f"its marked nodes and rejected suggestions, if it had any (kept only in {version}.json)"
                f"{whose}: recorded as lost, so a fine-tune takes nothing it removed as background"]
    for key, kind in (("marked", NodeMark), ("rejected", Rejection)):
        items = old.get(key)
        if items is None:
            continue
        kept, bad = read_spots(kind, items)
        if kept:
            prov[key] = [spot.to_dict() for spot in kept]
        if bad:
            if key == "marked":
                prov["marks_lost"] = True
            lost.append(f"{bad} of its {key} entries (they do not read as centre_zyx and radius_mm)"
                        + (": recorded as lost marks" if key == "marked" else ""))
    return lost


def _write(side: Path, prov: dict) -> bool:
    """``prov`` into ``side``: made anew when missing (False, nothing written, when a file was made there
    meanwhile), else atomically replacing the damaged one, kept aside first as ``<side>.damaged`` when it
    held anything."""
    text = json.dumps(prov, indent=1, default=str)
    if not os.path.lexists(side):
        tmp = temp_beside(side)
        try:
            tmp.write_text(text)
            flushed(tmp)
            place_new(tmp, side)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True
    if side.stat().st_size:
        _keep_aside(side)
    with atomic_write(side) as tmp:
        tmp.write_text(text)
    return True


def _keep_aside(side: Path) -> Path:
    """A copy of the damaged ``side`` as ``<side>.damaged`` (``.damaged.2`` ... when taken): the user's
    file is never lost."""
    data = side.read_bytes()
    for n in range(1, 1000):
        aside = side.with_name(side.name + DAMAGED_SUFFIX + (f".{n}" if n > 1 else ""))
        tmp = temp_beside(aside)
        try:
            tmp.write_bytes(data)
            flushed(tmp)
            place_new(tmp, aside)
            return aside
        except FileExistsError:
            continue
        finally:
            tmp.unlink(missing_ok=True)
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(side) + DAMAGED_SUFFIX)
