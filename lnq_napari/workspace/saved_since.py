"""What a Save must tell about the case's other reviewers: a correction saved meanwhile that the new version
does not hold (two reviewers, two windows), or the version the labels were made on gone or damaged.

Checked after the new version is committed, against the versions numbered above its parent: those saved
after the parent, whatever their commit order (two saves close together take their numbers in one order
and may commit in the other, so one of the two always sees the other). A version whose nodes the other
already holds (a reviewer who approved the case as it was) needs no word.
"""

from __future__ import annotations

import shlex

import numpy as np

from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.labels import (
    LABEL_SUFFIX,
    REVIEWER_SOURCES,
    LabelStore,
    SavedLabels,
    version_number,
)

REPAIR = "lnq-napari workspace repair"


def saved_since_note(store: LabelStore, saved: SavedLabels, parent: str, labels: Volume,
                     parent_sha256: str | None = None) -> str | None:
    """The note for ``saved`` (``labels``, made on ``parent``) in ``store``, or None when there is nothing
    to say; ``parent_sha256``, when known, tells ``parent`` from another version saved under its id since
    (the folder deleted and saved afresh). Reads each version's provenance at most once (``parent``'s and
    those numbered above it)."""
    own, low = version_number(saved.version), version_number(parent)
    if own is None:
        return None
    if low is None or (low > own and not parent_sha256 and store.committed(parent) is None
                       and any(version_number(v["version"]) < own for v in store.versions())):
        # a parent given by hand (napari sends its sha256): beyond the case's versions, the folder not remade
        return (f"{saved.case}: {parent!r}, given as the version these labels were made on, is no version of "
                f"this case in {store.folder}; these labels are saved as {saved.version}: give as parent "
                "one of the case's versions there (vNNN), or none")
    if parent == saved.version:  # its number given to this one: the folder went, and all it held
        return _parent_missing(store, saved, parent, own, low, labels, damaged=False)
    base = store.committed(parent)
    if base is None:
        return _parent_missing(store, saved, parent, own, low, labels)
    if parent_sha256 and base.get("sha256") != parent_sha256:
        return _parent_replaced(store, saved, parent, labels)
    later = {p["version"]: p for p in store.since(parent)}
    others = [p for v, p in later.items() if v != saved.version and p["source"] in REVIEWER_SOURCES]
    ours = np.asarray(labels.array) != 0
    below = [p for p in others if version_number(p["version"]) < own and not _holds(ours, store, p)]
    above = [p for p in others if version_number(p["version"]) > own
             and not _descends(p, saved.version, own, later) and not _holds(ours, store, p, reverse=True)]
    case = saved.case
    if above:
        newest = above[-1]
        return (f"{case}: {_named(above)} {_was(above)} saved by another reviewer or process at the same "
                f"time as {saved.version} (made on {parent}); {newest['version']} is now the newest, the one "
                "the case opens with and a fine-tune takes, and does not hold these edits; both are kept: "
                f"{_how(store.folder / newest['file'])}")
    if below:
        return (f"{case}: {_named(below)} {_was(below)} saved by another reviewer or process after {parent}, "
                f"which these labels were made on, with nodes these lack; {saved.version}, now the newest, "
                f"is the one the case opens with and a fine-tune takes; both are kept: "
                f"{_how(store.folder / below[-1]['file'])}")
    return None


def _how(other: object) -> str:
    """How to put the other version's nodes into the case's labels, with the tools napari has."""
    return (f"to have the nodes of both, open {other} over the case (File > Open), redraw in the \"nodes\" "
            "layer the nodes it has and yours lack (napari cannot copy nodes between layers), then select "
            "\"nodes\" and Save again")


def _named(provs: list[dict]) -> str:
    return ", ".join(f"{p['source']} {p['version']}" for p in provs)


def _was(provs: list[dict]) -> str:
    return "was" if len(provs) == 1 else "were"


def _descends(prov: dict | None, version: str, number: int, later: dict[str, dict]) -> bool:
    """Whether ``prov`` was made on ``version`` (numbered ``number``), through its parents in ``later``."""
    while prov is not None:
        parent = prov.get("parent")
        if parent == version:
            return True
        if (version_number(parent) or 0) <= number:
            return False
        prov = later.get(parent)
    return False


def _holds(ours: np.ndarray, store: LabelStore, prov: dict, reverse: bool = False) -> bool:
    """Whether our nodes hold every node voxel of version ``prov`` (``reverse``: its nodes hold ours);
    False when its labels cannot be read or lie on another grid."""
    try:
        theirs = np.asarray(read_labels(store.folder / prov["file"]).array) != 0
    except Exception:  # noqa: BLE001 - unreadable now: said, never taken as held
        return False
    if theirs.shape != ours.shape:
        return False
    inner, outer = (ours, theirs) if reverse else (theirs, ours)
    return not np.any(inner & ~outer)


def _parent_replaced(store: LabelStore, saved: SavedLabels, parent: str, labels: Volume) -> str:
    """The note when the ``parent`` in the folder now is another version under its id: the one these were
    made on went (the folder deleted or moved away), and someone saved afresh since."""
    return (f"{saved.case}: {parent}, which these labels were made on, is gone from {store.folder} (deleted "
            f"or moved away while the case was open?); the {parent} there now is another save, not the one "
            f"these were made on; these labels are saved as {saved.version}"
            f"{_saved_there_since(store, saved, labels, 'v000')}")


def _saved_there_since(store: LabelStore, saved: SavedLabels, labels: Volume, after: str) -> str:
    """A clause naming the reviewer versions numbered above ``after`` (all newer than the labels' parent)
    whose nodes ``labels`` lack, with what to do; empty when there are none."""
    ours = np.asarray(labels.array) != 0
    others = [p for p in store.since(after) if p["version"] != saved.version
              and p["source"] in REVIEWER_SOURCES and not _holds(ours, store, p)]
    if not others:
        return ""
    have = "has" if len(others) == 1 else "have"
    return (f"; {_named(others)}, saved there since, {have} nodes these lack: "
            f"{_how(store.folder / others[-1]['file'])}")


def _parent_missing(store: LabelStore, saved: SavedLabels, parent: str, own: int, low: int, labels: Volume,
                    damaged: bool | None = None) -> str:
    """The note when ``parent`` is no committed version: damaged (its files there: repair), else gone
    (with the versions saved since whose nodes these lack: all of them when the folder was made afresh)."""
    case = saved.case
    if damaged is None:
        damaged = any((store.folder / f"{parent}{end}").exists() for end in (".json", LABEL_SUFFIX))
    if damaged:
        return (f"{case}: {parent}, which these labels were made on, is damaged in {store.folder} (its "
                f"provenance or its label file); these labels are saved as {saved.version}; run `{REPAIR} "
                f"{shlex.quote(str(store.folder.parent.parent))} {shlex.quote(case)}` to name what is wrong "
                "and rebuild what can be")
    afresh = own <= low  # the folder made again: every version there is newer than the one gone
    return (f"{case}: {parent}, which these labels were made on, is gone from {store.folder} (deleted or "
            f"moved away while the case was open?); these labels are saved there as {saved.version}"
            f"{', numbered afresh' if afresh else ''}"
            f"{_saved_there_since(store, saved, labels, 'v000' if afresh else parent)}")
