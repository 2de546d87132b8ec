"""One case into a viewer: read its CT and labels as layer data, then add the layers and the node session."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.interact import NodeMark, Rejection, read_spots, unreadable_entries
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._layers import CT_ROLE, ROLE_KEY, SOURCE_KEY, volume_from, widen_contrast_range
from lnq_napari.plugin._reader import labels_layer_data, read_layer
from lnq_napari.plugin._session import (
    CASE_KEY,
    MODEL_KEY,
    NODES_NAME,
    OPENED_KEY,
    REJECTED_KEY,
    WORKSPACE_ID_KEY,
    WORKSPACE_KEY,
    session_for,
    show_marks,
)
from lnq_napari.quantify import read_node_ids
from lnq_napari.workspace.labels import lost_flags, marks_lost

LOST_MARKS_NOTE = "the marks of this correction were lost in a repair: mark the nodes again"


def add_layers(viewer, layer_data: list[tuple]) -> list:
    """Add reader-style ``(data, kwargs, type)`` tuples to ``viewer``; returns the layers (a CT's contrast
    slider spans its HU)."""
    layers = [getattr(viewer, f"add_{kind}")(data, **kwargs) for data, kwargs, kind in layer_data]
    for layer in layers:
        if layer.metadata.get(ROLE_KEY) == CT_ROLE:
            widen_contrast_range(layer)
    return layers


def read_case(ct=None, seg=None) -> tuple:
    """Reader-style layer data ``(ct_data, seg_data)`` of a CT and its labels (either may be None).

    The labels are put on the CT grid. Raises LNQError on a bad file before anything reaches a viewer.
    """
    ct_data = read_layer(ct) if ct is not None else None
    if ct_data is not None and ct_data[2] != "image":
        raise LNQError(f"{Path(ct).name} looks like a label file; pass the CT first and labels with --seg")
    return ct_data, None if seg is None else read_labels_data(seg, ct_data)


def read_labels_data(seg, ct_data=None) -> tuple:
    """Reader-style layer data of the labels ``seg`` as the "nodes" layer, on the grid of ``ct_data``
    (:func:`read_case`'s, when given)."""
    return nodes_layer_data(read_node_ids(seg, reference=ct_grid(ct_data)), source=seg)


def ct_grid(ct_data=None) -> Volume | None:
    """The CT of :func:`read_case`'s ``ct_data`` as a Volume (the grid labels are read onto); None when
    not given."""
    return volume_from(ct_data[0], ct_data[1]["metadata"]) if ct_data is not None else None


def nodes_layer_data(labels: Volume, source=None) -> tuple:
    """Reader-style layer data of ``labels`` (one id per node) as the "nodes" layer."""
    return labels_layer_data(labels, name=NODES_NAME, source=source)


def add_case(viewer, ct_data=None, seg_data=None, workspace=None, opened: dict | None = None,
             case: str | None = None) -> tuple:
    """Add :func:`read_case` data to ``viewer``: the CT and the editable "nodes" layer with its session.

    ``workspace`` (a Workspace) makes Save and autosave of this case write there, as ``case`` (else the
    workspace's case of that CT; a download's case id is not its series folder's name). ``opened``: the
    provenance of the workspace label version ``seg_data`` holds: the next Save's parent, its model
    version, and a correction's marked nodes and rejected suggestions, which a Save of the reopened case
    keeps. Returns ``(ct_layer, nodes_layer)``, either None when not given.
    """
    ct_layer = nodes = None
    if ct_data is not None:
        (ct_layer,) = add_layers(viewer, [ct_data])
        ct_layer.metadata[OPENED_KEY] = time.monotonic()  # the review clock of this case starts now
        if workspace is not None:
            ct_layer.metadata[WORKSPACE_KEY] = str(workspace.root)
            ct_layer.metadata[WORKSPACE_ID_KEY] = workspace.id
            source = ct_layer.metadata.get(SOURCE_KEY)
            case = case or (workspace.case_of(source) if source else None)
            if case:
                ct_layer.metadata[CASE_KEY] = case
    if seg_data is not None:
        (nodes,) = add_layers(viewer, [seg_data])
        session = session_for(viewer, nodes)  # the one widgets made when the layer appeared, if they did
        session.ct_layer = ct_layer
        if workspace is not None:
            session.workspace, session.workspace_id = str(workspace.root), workspace.id
        if opened is not None:
            _resume(viewer, session, opened)
    return ct_layer, nodes


@dataclass(frozen=True)
class Resumed:
    """What a Save of a reopened label version keeps of its provenance (:func:`resumed`)."""

    marks: list[NodeMark]  # its marked nodes that read
    rejected: list[dict]  # its rejected suggestions that read, as a provenance keeps them
    lost: dict[str, bool]  # the LOST_FLAGS its next Save records (carried, or entries dropped now)
    note: str  # one line for the status: what was lost and what to do; "" when nothing


def resumed(opened: dict) -> Resumed:
    """The marks and rejections of the label version ``opened`` (its provenance) that read; an entry that
    does not (edited by hand) is dropped and counted as lost, never an error."""
    marks, bad_marks = read_spots(NodeMark, opened.get("marked") or [])
    rejections, bad_rejected = read_spots(Rejection, opened.get("rejected") or [])
    rejected = [r.to_dict() for r in rejections]
    lost = {"marks_lost": True} if marks_lost(opened) else {}
    notes = [LOST_MARKS_NOTE] if lost_flags(opened) else []
    where = f"{opened['version']}.json" if opened.get("version") else "the autosave"
    if bad_marks:
        notes.append(f"{unreadable_entries(bad_marks, 'marked nodes', where)}: dropped and recorded as lost "
                     "marks; mark those nodes again")
    if bad_rejected:
        notes.append(f"{unreadable_entries(bad_rejected, 'rejected suggestions', where)}: dropped")
    return Resumed(marks, rejected, lost, "; ".join(dict.fromkeys(notes)))


def _resume(viewer, session, opened: dict) -> None:
    """Carry a label version's provenance onto the session that edits it (see :func:`add_case`): the
    entries that read (:func:`resumed`), and what was lost, which its next Save records."""
    found = resumed(opened)
    session.parent_version = opened.get("version")
    session.parent_sha256 = opened.get("sha256")  # which version of that id: a folder made afresh reuses it
    session.lost_flags = dict(found.lost)
    session.nodes.metadata[MODEL_KEY] = opened.get("model_version")
    session.nodes.metadata[REJECTED_KEY] = list(found.rejected)
    if found.marks:
        active = viewer.layers.selection.active
        layer = show_marks(viewer, session.labels_volume(), like=session.nodes)
        layer.data = np.asarray([m.centre_zyx for m in found.marks], dtype=float).reshape(-1, 3)
        session.watch_marks(viewer, layer)
        viewer.layers.selection.active = active
