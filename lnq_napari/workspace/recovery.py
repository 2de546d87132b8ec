"""Edits a crash or a closed window left in a case's autosave and never saved: whether a case has any
when it opens, and what they are (labels, marks, rejections, the version they were made on).

The first edit after opening rewrites the autosave, so what it holds must be offered then or is lost.
An autosave a live session of another window or process writes is never offered (its edits are still
being made there): :func:`edits_open_elsewhere` says so instead.
No Qt here: the plugin shows the labels and resumes the session.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import read_node_ids
from lnq_napari.workspace.autosave import (
    autosave_of_another_workspace,
    autosave_parent,
    ended_autosaves,
    live_autosaves,
    open_elsewhere_note,
    read_review_fields,
    remove_ended,
    stray_locks,
)
from lnq_napari.workspace.labels import lost_flags
from lnq_napari.workspace.workspace import Workspace


@dataclass(frozen=True)
class RecoveredEdits:
    """Unsaved edits found in a case's autosave."""

    path: Path  # the autosave file
    labels: Volume  # its labels, one id per node, on the reference grid
    marked: list[dict]  # the marked nodes autosaved with them (NodeMark dicts)
    rejected: list[dict]  # the rejected suggestions autosaved with them (Rejection dicts)
    base: dict | None  # provenance of the label version they were made on; None when unknown or gone
    lost: tuple[str, ...] = ()  # the LOST_FLAGS the edited session held (marks it could not resume)
    others: tuple[Path, ...] = ()  # older autosaves of other ended sessions that hold unsaved edits too

    def others_note(self) -> str:
        """One clause naming the other ended sessions' autosaves with unsaved edits ("" when none): they
        are offered once these edits are saved (or their file deleted)."""
        if not self.others:
            return ""
        names = ", ".join(str(p) for p in self.others)
        return (f"{len(self.others)} other autosave(s) of this case hold unsaved edits too ({names}): "
                "each is offered when the case opens again once these are saved")

    def review_fields(self) -> dict[str, list]:
        """``{"marked": [...], "rejected": [...]}``, as a version's provenance keeps them (and the lost
        flags the session held, ``marks_lost``: True)."""
        return {"marked": self.marked, "rejected": self.rejected, **dict.fromkeys(self.lost, True)}

    def opened(self, shown: dict | None) -> dict:
        """The provenance the restored edits go on from (the next Save's parent): the version they were
        made on, else ``shown`` (the version on screen), with the autosaved marks and rejections."""
        return {**(self.base or shown or {"version": None}), **self.review_fields()}


def unsaved_edits(ws: Workspace, case: str, seg: Path | None, shown: np.ndarray | None,
                  prov: dict | None, reference: Volume | None = None,
                  own: tuple[str, ...] = ()) -> RecoveredEdits | None:
    """The edits ``case`` left in an autosave and never saved, which the first edit after opening would
    overwrite; None when there are none.

    ``seg`` is the label file opened (its labels ``shown`` on the ``reference`` grid, its provenance
    ``prov``; None for each when there is none). An autosave counts when it is newer than ``seg`` with
    other labels, marks or rejections, or, when another process saved a version since, when it is newer
    than the version it was made on and no correction saved from that version holds it. Only an
    autosave whose session is over counts (a crash, a closed window, or one of the sessions ``own``, the
    asking window's). Every such autosave is looked at, newest first: the newest holding unsaved edits
    is offered, naming the others that hold some too (a saved leftover never hides an older crash's).
    Raises LNQError when a label file cannot be read.
    """
    found = [e for path in ended_autosaves(case, ws.ct_path(case), ws.root, ws.id, own)
             if (e := _edits_in(path, ws, case, seg, shown, prov, reference)) is not None]
    if not found:
        return None
    return replace(found[0], others=tuple(e.path for e in found[1:]))


def remove_saved_autosaves(ws: Workspace, case: str, seg: Path | None, shown: np.ndarray | None,
                           prov: dict | None, reference: Volume | None = None,
                           own: tuple[str, ...] = ()) -> list[Path]:
    """Remove the autosaves of ``case`` (of this workspace) whose session is over and which hold no
    unsaved edits (a saved version holds them, or they are never offered: :func:`unsaved_edits`), and
    lock files left without their autosave; each under its lock taken at once. Returns the autosaves
    removed. Never raises: one that cannot be read or removed stays."""
    removed = []
    for path in ended_autosaves(case, ws.ct_path(case), ws.root, ws.id, own):
        try:
            if autosave_of_another_workspace(path, ws.root, ws.id) or \
                    _edits_in(path, ws, case, seg, shown, prov, reference) is not None or \
                    not _held(path, ws, case, shown, prov, reference):
                continue
        except (LNQError, OSError, ValueError):
            continue
        if remove_ended(path):
            removed.append(path)
    for path in stray_locks(case, ws.ct_path(case), ws.root):
        remove_ended(path)
    return removed


def _held(path: Path, ws: Workspace, case: str, shown: np.ndarray | None, prov: dict | None,
          reference: Volume | None) -> bool:
    """Whether the labels, marks and rejections the autosave ``path`` holds are on screen (``shown``,
    ``prov``) or in a saved version of ``case``: only then may it go (one never offered, as one older than
    a saved version whose parent is unknown, is kept: a user may still open it by hand)."""
    written = path.stat().st_mtime_ns
    labels = read_node_ids(path, reference=reference)
    fields = read_review_fields({k: v for k, v in labels.meta.items() if isinstance(v, str)})
    mine = np.asarray(labels.array) > 0
    if _holds(mine, fields, shown, prov):
        return True
    # only a version saved after the autosave was written can hold its edits: the others are not read
    later = [v for v in reversed(ws.versions(case))
             if (f := ws.label_path(case, v["version"])).exists() and f.stat().st_mtime_ns >= written]
    return any(_holds(mine, fields, read_node_ids(ws.label_path(case, v["version"]), reference=reference)
                      .array, v) for v in later)


def _holds(mine: np.ndarray, fields: dict, other: np.ndarray | None, info: dict | None) -> bool:
    """Whether ``other`` (labels) and ``info`` (a provenance) hold an autosave's labels (``mine``, as a
    mask), marks and rejections (``fields``)."""
    return other is not None and np.array_equal(mine, np.asarray(other) > 0) \
        and all(fields[k] == list((info or {}).get(k) or []) for k in fields)


def edits_open_elsewhere(ws: Workspace, case: str, seg: Path | None, shown: np.ndarray | None,
                         prov: dict | None, reference: Volume | None = None,
                         own: tuple[str, ...] = ()) -> str:
    """One line when ``case`` is open with unsaved edits in another window or process (a live session
    not among ``own`` autosaves edits :func:`unsaved_edits` would offer were it over), naming who and
    where; "" when it is not. Raises LNQError when a label file cannot be read."""
    for path, who in live_autosaves(case, ws.ct_path(case), ws.root, ws.id, own):
        if _edits_in(path, ws, case, seg, shown, prov, reference) is not None:
            return open_elsewhere_note(case, path, who)
    return ""


def _edits_in(path: Path, ws: Workspace, case: str, seg: Path | None, shown: np.ndarray | None,
              prov: dict | None, reference: Volume | None) -> RecoveredEdits | None:
    """The unsaved edits the autosave ``path`` holds (:func:`unsaved_edits`), None when none."""
    if autosave_of_another_workspace(path, ws.root, ws.id):
        return None
    based = autosave_parent(path)
    try:
        base = ws.version_info(case, based) if based else None
    except LNQError:  # a version of another workspace, or gone
        base = None

    def older_than(labels: Path | None) -> bool:
        return labels is not None and Path(labels).exists() and \
            path.stat().st_mtime_ns <= Path(labels).stat().st_mtime_ns

    saved_from_base = []  # the corrections Saved from the version the edits were made on
    if older_than(seg):
        if base is None or older_than(ws.label_path(case, base["version"])):
            return None
        on_screen = (prov or {}).get("version")
        saved_from_base = [v for v in ws.versions(case) if v.get("parent") == base["version"]
                           and v["source"] == "correction" and v["version"] != on_screen]
    labels = read_node_ids(path, reference=reference)
    fields = read_review_fields({k: v for k, v in labels.meta.items() if isinstance(v, str)})

    mine = np.asarray(labels.array) > 0
    if _holds(mine, fields, shown, prov) or any(
            _holds(mine, fields, read_node_ids(ws.label_path(case, v["version"]), reference=reference).array,
                   v) for v in saved_from_base):
        return None
    lost = tuple(lost_flags(labels.meta))
    return RecoveredEdits(path, labels, fields["marked"], fields["rejected"], base, lost)
