"""Rebuild the provenance (``vNNN.json``) of label files whose own is missing or damaged, from the label
file's header (:meth:`LabelStore.unrecorded`).

A version's header holds its provenance, one ``lnq_<field>`` line each (source, parent, edits, model
version, time, case, version and the caller's own fields), but not the lists kept only in the JSON (the
reviewer's ``marked`` nodes and ``rejected`` suggestions): those are taken from a damaged ``vNNN.json`` that
still reads as JSON, else said to be lost. The number is kept; a damaged ``vNNN.json`` is kept aside as
``vNNN.json.damaged`` before it is replaced (atomically), a missing one is made without replacing anything.
A file a save may still be writing (:data:`~lnq_napari.io.atomic.STALE_SECONDS`), one whose provenance
cannot be read (a permission problem), and one whose header or labels cannot be read (a torn leftover) are
left alone with a line saying why; nothing is deleted.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.io.atomic import STALE_SECONDS, atomic_write, flushed, place_new, temp_beside
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.labels import check_label_values
from lnq_napari.io.readers import read_labels
from lnq_napari.io.segfile import ascii_text
from lnq_napari.workspace.files import now
from lnq_napari.workspace.labels import SOURCES, LabelStore, Unrecorded

_LISTS = ("marked", "rejected")  # kept only in the JSON
_FROM_HEADER = ("version", "case", "source", "model_version", "time", "edits", "parent")
_NOT_EXTRA = frozenset({*_FROM_HEADER, *_LISTS, "file", "bytes", "sha256", "repaired"})
DAMAGED_SUFFIX = ".damaged"


@dataclass(frozen=True)
class Repair:
    """What repair did with one label file: ``repaired`` (its ``vNNN.json`` written) or not, and ``note``,
    one line: what could not be recovered, or why it was left alone and what to do."""

    case: str
    version: str
    path: Path
    repaired: bool
    note: str

    def line(self) -> str:
        return f"{self.case} {self.version}: {self.note}"


def repair_store(store: LabelStore, older_than: float = STALE_SECONDS) -> list[Repair]:
    """Rebuild the ``vNNN.json`` of each label file of ``store`` whose own is missing or damaged (changed
    ``older_than`` seconds ago or earlier); one :class:`Repair` per such file, those a save may still be
    writing included (left alone). The caller holds the workspace's lock, so no save commits meanwhile."""
    found = store.unrecorded(older_than)
    stale = {u.path for u in found}
    out = [Repair(store.case, u.side.stem, u.path, False, "a save may still be writing it (changed within "
                  f"{older_than / 60:.0f} minutes); left alone: run repair again later")
           for u in store.unrecorded(older_than=0) if u.path not in stale]
    out += [_repair(store, u) for u in found]
    return sorted(out, key=lambda r: r.version)


def _repair(store: LabelStore, found: Unrecorded) -> Repair:
    version, path, side = found.side.stem, found.path, found.side
    quoted = shlex.quote(str(path))

    def refused(note: str) -> Repair:
        return Repair(store.case, version, path, False, note)

    if found.why.startswith("cannot be read"):  # whole, perhaps, but not ours to read or replace
        return refused(f"{side.name} {found.why}: a permission problem (saved by another account?), not "
                       f"damage; left alone: have its owner make it readable (chmod a+r "
                       f"{shlex.quote(str(side))})")
    try:
        header = _header(path)
    except Exception as exc:  # noqa: BLE001 - a torn header says nothing: named, never deleted
        return refused(f"{path.name}'s header cannot be read ({_short(exc)}): a torn leftover, nothing to "
                       f"rebuild from; delete {quoted} if it is not wanted (repair never deletes)")
    source = header.get("lnq_source")
    try:
        check_label_values(np.asarray(read_labels(path).array), str(path))
    except Exception as exc:  # noqa: BLE001 - labels cut short (an old version's killed save), say
        says = f", though its header says {source}" if source in SOURCES else ""
        return refused(f"{path.name} cannot be read ({_short(exc)}){says}: a torn leftover; delete {quoted} "
                       "if it is not wanted (repair never deletes)")
    if source not in SOURCES:
        return refused(f"{path.name}'s header names no label source (lnq_source): not a file lnq-napari "
                       f"saved; move {quoted} out of {store.folder} or delete it if it is not wanted")
    prov, lost = _provenance(store, path, version, header, _damaged(side))
    if not _write(side, prov):
        return refused(f"{side.name} appeared while it was repaired (written by another program?); left "
                       "alone: run repair again")
    here = (ascii_text(store.case), version)  # the header's text is ASCII
    named = (header.get("lnq_case", here[0]), header.get("lnq_version", version))
    copied = f"; its header names {named[0]} {named[1]} (copied here?)" if named != here else ""
    lost_text = "; not recoverable: " + ", ".join(lost) if lost else "; nothing lost"
    model = prov["model_version"] or "none"
    return Repair(store.case, version, path, True,
                  f"{version}.json rebuilt from the header of {path.name} ({source}, parent "
                  f"{prov['parent'] or 'none'}, edits {prov['edits']}, model {model}){copied}{lost_text}")


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
    kept = {key: old[key] for key in _LISTS if isinstance(old.get(key), list)}
    prov.update(kept)
    if not old and prov["source"] in ("correction", "autosave"):  # a JSON that still reads holds them
        lost.append(f"its marked nodes and rejected suggestions, if it had any (kept only in {version}.json)")
    stat = path.stat()
    prov.update(bytes=stat.st_size, sha256=sha256_file(path), repaired=now())
    return prov, lost


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
