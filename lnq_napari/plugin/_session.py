"""One case under review: the node Labels layer, its CT, probabilities, suggestions and edits.

The session lives in the node layer's ``metadata[SESSION_KEY]``; widgets find it with
:func:`session_for` (no module-level state). Every edit goes through ``Labels.data_setitem`` inside
``block_history`` so napari's undo/redo (Ctrl+Z / Ctrl+Shift+Z) covers clicks like brush strokes; the
session's own history (:mod:`lnq_napari.plugin._history`) puts marks and accepted or rejected suggestions
in the same order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from lnq_napari.api import NodeResult
from lnq_napari.components import grown_by_one
from lnq_napari.errors import LNQError
from lnq_napari.interact import (
    NodeMark,
    Rejection,
    Suggestion,
    component_at,
    node_region_from_click,
    probable_region_at,
)
from lnq_napari.io.layout import case_name
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._autosave import Autosaver
from lnq_napari.plugin._history import EditHistory, Position, Step
from lnq_napari.plugin._layers import (
    COMPARE_ROLE,
    CT_ROLE,
    ROLE_KEY,
    SOURCE_KEY,
    is_ct_layer,
    layer_kwargs,
    layer_volume,
    same_layer,
    same_placement,
    unwrapped,
)
from lnq_napari.workspace.review_stats import CaseStats

SESSION_KEY = "lnq_session"
PROB_KEY = "lnq_probabilities"
MODEL_KEY = "lnq_model_version"
FOUND_KEY = "lnq_found"  # a node layer Find nodes made (show_prediction): the only kind it may remove
NODES_NAME = "nodes"
PREVIOUS_NAME = f"{NODES_NAME} (previous)"  # the node layer a new Find nodes replaced
SUGGESTIONS_NAME = "suggestions"
MARKS_NAME = "marked nodes"
WORKSPACE_KEY = "lnq_workspace"
WORKSPACE_ID_KEY = "lnq_workspace_id"  # the identity of that workspace (workspace.cases.workspace_id)
REJECTED_KEY = "lnq_rejected"  # the node layer's rejected suggestions (Rejection dicts)
MARKS_OWNER_KEY = "lnq_marks_session"  # the session whose edits the marks layer's own changes are
NO_CT = "no CT layer for this node layer; open the CT first (File > Open)"
OPENED_KEY = "lnq_opened"  # time.monotonic() when the CT layer was opened: the case's review clock starts
CASE_KEY = "lnq_case"  # the CT layer's case id in its workspace (a download's is not its folder's name)


@dataclasses.dataclass(frozen=True)
class SavePoint:
    """The edits a Save's snapshot holds (:meth:`NodeSession.save_point`)."""

    steps: Position  # the history's position
    outside_edits: int  # edits outside the history made by then


class NodeSession:
    """Edits of one node layer over one CT layer; tells listeners after every change."""

    def __init__(self, nodes, ct=None, workspace=None, autosave: bool = True) -> None:
        self.nodes = nodes
        self.ct_layer = ct
        self.workspace = workspace or (ct.metadata.get(WORKSPACE_KEY) if ct is not None else None)
        self.workspace_id = None if workspace or ct is None else ct.metadata.get(WORKSPACE_ID_KEY)  # None:
        # unknown (only whether a workspace is at that path tells whether it is gone)
        self.suggestions = None
        self.marks_layer = None  # the "marked nodes" Points layer, made by the first mark
        self._setting_marks = False  # the session itself changes the marks layer's points
        self.parent_version: str | None = None  # the workspace label version these labels were opened from
        self.parent_sha256: str | None = None  # its label file's sha256 (None: not known)
        self.lost_flags: dict[str, bool] = {}  # marks_lost: what Save records as lost
        self.edits = 0
        self._edited_outside_history = False  # marks moved with napari's tools: undo misses it
        self._outside_edits = 0  # times it was set: a Save's snapshot older than one leaves it set
        self.saving = None  # the worker saving this case (the Save widget's), while one runs
        self.listeners: list[Callable[[], None]] = []
        self.focus_listeners: list[Callable[[], None]] = []  # told when the current suggestion moves
        self.current_suggestion = -1  # the suggestion the review keys act on (-1: none yet)
        self._ct_cache: tuple[int, Volume] | None = None
        self.missing_ct = NO_CT  # why ct_layer is None, when it is
        nodes.metadata[SESSION_KEY] = self
        self.stats = CaseStats()  # time, accepted / rejected, clicks and keys since the case opened
        self.history = EditHistory(limit=_napari_private(nodes, "_history_limit", 100))  # as deep as napari
        self._adopt_labels_history()
        nodes.events.paint.connect(self._on_paint)
        nodes.events.data.connect(self._on_data)
        nodes.bind_key("Control-Z", lambda layer: self.undo(), overwrite=True)
        nodes.bind_key("Control-Shift-Z", lambda layer: self.redo(), overwrite=True)
        self.autosaver = Autosaver(self) if autosave else None
        if self.autosaver is not None and self.unsaved:  # strokes painted before the session
            self.autosaver.schedule()

    # --- what the case is -------------------------------------------------------------------------
    @property
    def probabilities(self) -> np.ndarray | None:
        prob = self.nodes.metadata.get(PROB_KEY)
        return None if prob is None or np.shape(prob) != self.nodes.data.shape else prob

    @property
    def model_version(self) -> str | None:
        return self.nodes.metadata.get(MODEL_KEY)

    @property
    def source(self) -> str | None:
        """The CT file (else the label file) this case came from."""
        for layer in (self.ct_layer, self.nodes):
            if layer is not None and layer.metadata.get(SOURCE_KEY):
                return layer.metadata[SOURCE_KEY]
        return None

    @property
    def case(self) -> str:
        if self.ct_layer is not None and self.ct_layer.metadata.get(CASE_KEY):
            return self.ct_layer.metadata[CASE_KEY]
        fallback = self.ct_layer.name if self.ct_layer is not None else self.nodes.name
        return case_name(self.source, fallback=case_name(fallback + ".nrrd"))

    def ct_volume(self) -> Volume:
        """The CT as a Volume (raises LNQError when there is none on the node layer's grid)."""
        if self.ct_layer is None:
            raise LNQError(self.missing_ct)
        data = self.ct_layer.data
        if self._ct_cache is None or self._ct_cache[0] != id(data):
            self._ct_cache = (id(data), layer_volume(self.ct_layer))
        return self._ct_cache[1]

    def labels_volume(self) -> Volume:
        """The node labels as a Volume on the CT grid (or the layer's own grid without a CT)."""
        if self.ct_layer is not None:
            return self.ct_volume().with_array(np.asarray(self.nodes.data))
        return layer_volume(self.nodes)

    def spacing_zyx(self) -> tuple[float, float, float]:
        """The voxel size (z, y, x) in mm of the labels' grid: a CT stored flipped or oblique is drawn
        through an affine, its layer's scale then (1, 1, 1), so edits sized in mm take the grid's."""
        return tuple(float(s) for s in self.labels_volume().spacing_zyx)

    # --- edits --------------------------------------------------------------------------------------
    def add_node_at(self, point_zyx: Sequence[float]) -> int:
        """Grow the node at a click and paint it with a new id; returns the id (0: nothing found)."""
        data = self.nodes.data
        box, local = node_region_from_click(self.ct_volume(), point_zyx, self.probabilities, labels=data)
        if not local.any():
            return 0
        new_id = int(np.max(data)) + 1
        self._paint(box, local, new_id)
        self.nodes.selected_label = new_id
        return new_id

    def remove_node_at(self, point_zyx: Sequence[float]) -> int:
        """Erase the connected node under a click; returns its id (0 on background)."""
        box, mask, value = component_at(self.nodes.data, point_zyx, spacing_zyx=self.spacing_zyx())
        if value:
            self._paint(box, mask, 0)
        return value

    def remove_node_id(self, node_id: int) -> int:
        """Erase every voxel of ``node_id`` (used for clicks in the 3D view); returns the id or 0."""
        if not node_id:
            return 0
        idx = np.nonzero(self.nodes.data == node_id)
        if idx[0].size == 0:
            return 0
        with self.nodes.block_history():
            self.nodes.data_setitem(idx, 0)
        return int(node_id)

    def _paint(self, box, local: np.ndarray, value: int) -> None:
        idx = tuple(i + s.start for i, s in zip(np.nonzero(local), box, strict=True))
        with self.nodes.block_history():  # one undo step; the commit emits ``paint``
            self.nodes.data_setitem(idx, value)

    def undo(self) -> None:
        """Undo the last paint, mark, accept or reject (nothing when there is none)."""
        if self.history.undo():
            self._after_history_step()

    def redo(self) -> None:
        if self.history.redo():
            self._after_history_step()

    def _after_history_step(self) -> None:
        """After an undo or redo: a step older than an edit made with napari's own tools leaves the case
        unsaved until Save (a redone mark came back beside the mark moved since, and the case said saved)."""
        if self.history.stale:
            self._set_edited_outside_history()
        self._changed()

    def _adopt_labels_history(self) -> None:
        """Take in the strokes napari's labels history holds from before this session (painted before the
        panel opened): Ctrl+Z and Ctrl+Shift+Z, the session's from now on, still undo and redo them, and
        they are unsaved edits. napari has no public view of its history; its lengths are read here."""
        def step() -> Step:
            return Step(self.nodes.undo, self.nodes.redo)

        self.history.adopt([step() for _ in _napari_private(self.nodes, "_undo_history", ())],
                           [step() for _ in _napari_private(self.nodes, "_redo_history", ())])

    def _on_paint(self, event=None) -> None:
        self.history.push(Step(self.nodes.undo, self.nodes.redo))  # napari's labels history holds it
        self._changed()

    def _on_data(self, event=None) -> None:
        """The labels replaced as a whole (``layer.data = ...``, as from napari's console): an edit napari's
        labels history does not hold."""
        self._changed_outside_history()

    def _review_state(self) -> tuple:
        """What accepting or rejecting a suggestion changes besides the labels."""
        layer = self.suggestions
        points = None if layer is None else (np.array(layer.data, copy=True), layer.features.copy())
        return (points, self.rejections(), self.current_suggestion, self.stats.accepted, self.stats.rejected)

    def _set_review_state(self, state: tuple) -> None:
        points, rejected, current, accepted, rejected_count = state
        if points is not None and self.suggestions is not None:
            self.suggestions.data = points[0]
            self.suggestions.features = points[1]
        self.nodes.metadata[REJECTED_KEY] = list(rejected)
        self.current_suggestion = current
        self.stats.accepted, self.stats.rejected = accepted, rejected_count

    def _review_step(self, since: Step | None, before: tuple) -> None:
        """One step for a suggestion accepted or rejected: its paint (pushed since ``since`` was the last
        step) and the review state from ``before`` to now."""
        after, painted = self._review_state(), self.history.top() is not since

        def undo() -> None:
            if painted:
                self.nodes.undo()
            self._set_review_state(before)

        def redo() -> None:
            if painted:
                self.nodes.redo()
            self._set_review_state(after)

        self.history.replace_since(since, Step(undo, redo))

    def _changed(self) -> None:
        self.edits += 1
        self.notify()

    def _changed_outside_history(self) -> None:
        self._set_edited_outside_history()
        self.history.outside_edit()
        self._changed()

    def _set_edited_outside_history(self) -> None:
        self._edited_outside_history = True
        self._outside_edits += 1

    @property
    def unsaved(self) -> bool:
        """Whether the case differs from its last Save (or from the labels as opened): undoing every
        edit since brings it back to saved."""
        return self._edited_outside_history or not self.history.at_clean()

    def save_point(self) -> SavePoint:
        """Where the edits stand now: what a Save that snapshots the case now holds."""
        return SavePoint(self.history.position(), self._outside_edits)

    def mark_saved(self, at: SavePoint | None = None, version: str | None = None,
                   sha256: str | None = None) -> None:
        """The labels, marks and rejections as they were at ``at`` (default: now) were saved, as the
        workspace label ``version`` when given (the next Save's parent; its label file's ``sha256``).
        Edits made since (while the Save ran in the background) stay unsaved, and are autosaved again on
        top of the new version."""
        at = at or self.save_point()
        if at.outside_edits == self._outside_edits:
            self._edited_outside_history = False
        self.history.mark_clean(at.steps)
        if self.workspace and version:
            self.parent_version, self.parent_sha256 = version, sha256
        if self.unsaved and self.autosaver is not None:  # its last write named the version before
            self.autosaver.schedule()

    def mark_unsaved(self) -> None:
        """The labels hold edits that were never saved (restored from an autosave)."""
        self._set_edited_outside_history()

    def wait_for_save(self, timeout_s: float = 120.0) -> bool:
        """Let a Save of this case running in a worker end (Qt events are handled meanwhile: its result
        arrives through them); False when it still runs after ``timeout_s``."""
        from qtpy.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        while self.saving is not None and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return self.saving is None

    def notify(self) -> None:
        """Tell listeners (table, autosave, suggestion list) that the case changed."""
        for listener in list(self.listeners):
            listener()

    # --- suggestions --------------------------------------------------------------------------------
    def suggestion_points(self) -> np.ndarray:
        if self.suggestions is None or len(self.suggestions.data) == 0:
            return np.zeros((0, 3))
        return np.asarray(self.suggestions.data)

    def suggestion_near(self, point_zyx: Sequence[float], radius_vox: float = 4.0,
                        plane: Sequence[int] = (1, 2)) -> int | None:
        """Index of the suggestion within ``radius_vox`` x-voxels (in mm: the drawn ring) in the view's
        ``plane`` (data axes shown; the same slice +-1 across it) of a click, or None."""
        return point_near(self.suggestion_points(), point_zyx, radius_vox, plane, self.spacing_zyx())

    def extend_node_at(self, point_zyx: Sequence[float]) -> int:
        """Grow the tissue at a click and paint it with the id of the node it touches (a new id when it
        touches none); returns that id (0: nothing found). Completes a node outlined only in part."""
        data = self.nodes.data
        box, local = node_region_from_click(self.ct_volume(), point_zyx, self.probabilities, labels=data)
        if not local.any():
            return 0
        touching = np.asarray(data[box])[grown_by_one(local) & ~local]
        touching = touching[touching > 0]
        node_id = int(np.bincount(touching).argmax()) if touching.size else int(np.max(data)) + 1
        self._paint(box, local, node_id)
        self.nodes.selected_label = node_id
        return node_id

    def accept_suggestion(self, index: int) -> int:
        """Add the node at suggestion ``index`` (an "outline" suggestion extends the node it completes)
        and drop the suggestion; returns the node's id (0: none)."""
        since, before = self.history.top(), self._review_state()
        point = self.suggestion_points()[index]
        feats = self.suggestions.features
        kind = feats["kind"].iloc[index] if "kind" in feats and len(feats) > index else "unsure"
        node_id = self.extend_node_at(point) if kind == "outline" else self.add_node_at(point)
        if not node_id and self.probabilities is not None:  # tissue outside the node HU band: trust the model
            box, local = probable_region_at(self.probabilities, point, self.spacing_zyx(),
                                            labels=self.nodes.data)
            if local.any():
                node_id = int(np.max(self.nodes.data)) + 1
                self._paint(box, local, node_id)
        self.stats.accepted += bool(node_id)  # a suggestion on no tissue is dropped, not accepted
        self._drop_suggestion(index)
        self._review_step(since, before)
        return node_id

    def reject_suggestion(self, index: int) -> None:
        """Drop suggestion ``index`` and remember it as rejected (``nodes.metadata['lnq_rejected']``: the
        :class:`~lnq_napari.interact.Rejection` dicts that Save keeps with the correction)."""
        since, before = self.history.top(), self._review_state()
        point = self.suggestion_points()[index]
        feats = self.suggestions.features
        known = "volume_mm3" in feats and len(feats) > index
        volume = float(feats["volume_mm3"].iloc[index]) if known else 0.0
        self.nodes.metadata.setdefault(REJECTED_KEY, []).append(Rejection.of(point, volume).to_dict())
        self.stats.rejected += 1
        self._drop_suggestion(index)
        self._review_step(since, before)
        self._changed()

    def rejections(self) -> list[dict]:
        """The suggestions rejected on this node layer, as :class:`~lnq_napari.interact.Rejection` dicts."""
        return list(self.nodes.metadata.get(REJECTED_KEY, []))

    def mark_node_at(self, viewer, point_zyx: Sequence[float], plane: Sequence[int] = (1, 2)) -> bool:
        """Mark "a node here, outline unknown" at a click (a cross on the "marked nodes" Points layer, kept
        with the correction on Save); a click on a mark takes it back. Returns True when a mark was
        added, False when one was taken back."""
        layer = self.marks_layer
        if layer is None or layer not in viewer.layers:
            active = viewer.layers.selection.active
            layer = show_marks(viewer, self.ct_volume(), like=self.nodes)
            self.watch_marks(viewer, layer)
            viewer.layers.selection.active = active  # the node layer stays the one the keys act on
        pts = np.asarray(layer.data, dtype=float).reshape(-1, 3)
        hit = point_near(pts, point_zyx, plane=plane, spacing_zyx=self.spacing_zyx())
        point = np.round(np.asarray(point_zyx, dtype=float)) if hit is None else pts[hit]
        add, take = (lambda: self._mark(point, True)), (lambda: self._mark(point, False))
        (add if hit is None else take)()
        self.history.push(Step(take, add) if hit is None else Step(add, take))  # this mark, not the others
        self._changed()
        return hit is None

    def _mark(self, point: np.ndarray, present: bool) -> None:
        """Put the mark at ``point`` on the marks layer, or take it off (the others stay as they are,
        moved or added with napari's Points tools meanwhile)."""
        pts = np.asarray(self.marks_layer.data, dtype=float).reshape(-1, 3)
        same = np.flatnonzero(np.all(pts == point, axis=1))
        if present:
            pts = np.vstack([pts, point[None]])
        elif same.size:
            pts = np.delete(pts, same[-1], axis=0)
        self._setting_marks = True
        try:
            self.marks_layer.data = pts
        finally:
            self._setting_marks = False

    def watch_marks(self, viewer, layer) -> None:
        """Make ``layer`` this case's "marked nodes" layer; a mark moved or deleted with napari's own
        Points tools is an edit of this session (unsaved until Save), as a click's mark is, and no longer
        of the session that had the layer before (a node layer Find nodes replaced); so is deleting the
        layer (its marks are no longer saved)."""
        if layer.metadata.get(MARKS_OWNER_KEY) is not self:
            layer.metadata[MARKS_OWNER_KEY] = self
            layer.events.data.connect(self._on_marks_data)
            viewer.layers.events.removed.connect(self._on_layer_removed)
        self.marks_layer = layer

    def release(self) -> None:
        """The case closes with nothing unsaved (another opens in its place): no more autosaves, and its
        marks layer leaving the viewer is no edit (it was taken as the user deleting the marks, an autosave
        without them followed, and reopening the case offered it as unsaved edits: the marks were lost)."""
        self.marks_layer = None
        if self.autosaver is not None:
            self.autosaver.stop()

    def _on_nodes_removed(self, event=None) -> None:
        """The node layer left the viewer (deleted to set its edits aside, the viewer cleared): its
        autosave, written now, is over, and offered when the case opens again, in this window or another."""
        if getattr(event, "value", None) is not self.nodes:
            return
        emitter = getattr(getattr(event, "source", None), "events", None)
        if emitter is not None:  # the link ends with the layer: no handler per case opened piles up
            emitter.removed.disconnect(self._on_nodes_removed)
        if self.autosaver is not None:
            self.autosaver.set_aside()

    def _on_layer_removed(self, event=None) -> None:
        if self.marks_layer is not None and getattr(event, "value", None) is self.marks_layer:
            self.marks_layer = None
            self._changed_outside_history()

    def _on_marks_data(self, event=None) -> None:
        layer = self.marks_layer
        if self._setting_marks or layer is None or layer.metadata.get(MARKS_OWNER_KEY) is not self:
            return
        if str(getattr(event, "action", "changed")) in ("added", "removed", "changed"):  # not the -ing ones
            self._changed_outside_history()

    def marks(self) -> list[dict]:
        """The marked nodes of this case, as :class:`~lnq_napari.interact.NodeMark` dicts (the points of
        the "marked nodes" layer: napari's own Points tools move and delete them too)."""
        if self.marks_layer is None:
            return []
        return [NodeMark.at(p).to_dict() for p in np.asarray(self.marks_layer.data).reshape(-1, 3)]

    def _drop_suggestion(self, index: int) -> None:
        self.suggestions.selected_data = {int(index)}
        self.suggestions.remove_selected()
        if self.current_suggestion > index:  # the current one stays current; at ``index`` comes the next
            self.current_suggestion -= 1
        self.current_suggestion = min(self.current_suggestion, len(self.suggestion_points()) - 1)
        self.notify()

    def focus_suggestion(self, index: int) -> int:
        """Make suggestion ``index`` the current one (clamped; -1 when there is none) and tell the
        focus listeners; returns the index."""
        n = len(self.suggestion_points())
        self.current_suggestion = min(max(int(index), 0), n - 1) if n else -1
        for listener in list(self.focus_listeners):
            listener()
        return self.current_suggestion


def point_near(points: np.ndarray, point_zyx: Sequence[float], radius_vox: float = 4.0,
               plane: Sequence[int] = (1, 2), spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> int | None:
    """Index of the point of ``points`` (n x 3, z y x voxels) nearest a click (in mm, on a grid of
    ``spacing_zyx``) within ``radius_vox`` x-voxels in mm (napari draws a point's size in units of its
    layer's last axis: the ring's radius) in the view's ``plane`` (the two data axes shown: (1, 2) axial,
    (0, 2) coronal, (0, 1) sagittal) and on the same slice +-1 across it, or None: what a click on a
    suggestion ring or a mark hits. In voxels a coronal click on a 5 x 0.7 mm grid took a ring 19 mm above
    it but not one 3.5 mm beside it."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    p = np.asarray(point_zyx, dtype=float)
    mm = np.asarray(spacing_zyx, dtype=float)
    a, b = (int(ax) for ax in plane)
    (across,) = {0, 1, 2} - {a, b}
    in_plane = np.hypot((pts[:, a] - p[a]) * mm[a], (pts[:, b] - p[b]) * mm[b])
    near = (np.abs(pts[:, across] - p[across]) <= 1.0) & (in_plane <= radius_vox * mm[2])
    if not near.any():
        return None
    d = np.linalg.norm((pts - p) * mm, axis=1)
    d[~near] = np.inf
    return int(np.argmin(d))


def find_ct_layer(viewer, labels):
    """The CT Image layer the ``labels`` layer is drawn on: same shape and same placement in the world
    (:func:`~lnq_napari.plugin._layers.same_placement`; an image of the same shape elsewhere, such as a
    flipped copy, is another scan; the region outline and a probability map Find nodes drew on it are no
    CT; :func:`~lnq_napari.plugin._layers.is_ct_layer`), nor a Compare view; of several, one of the
    labels' case first, then role ``ct``. None when no image qualifies."""
    def case_of(layer) -> str:
        return case_name(layer.metadata.get(SOURCE_KEY), fallback=case_name(f"{layer.name}.nrrd"))

    images = [ly for ly in viewer.layers if is_ct_layer(ly, views=False) and same_placement(ly, labels)]
    images.sort(key=lambda ly: (case_of(ly) != case_of(labels), ly.metadata.get(ROLE_KEY) != CT_ROLE))
    return images[0] if images else None


def missing_ct_reason(viewer, labels) -> str:
    """Why ``labels`` has no CT, in words a user acts on."""
    images = [ly for ly in viewer.layers if is_ct_layer(ly)]
    if not images:  # the region outline or a probability map left: no CT at all
        return NO_CT
    shape = "x".join(str(n) for n in np.shape(labels.data)[::-1])
    return (f"no open CT lies on the grid of {labels.name!r} ({shape} voxels): open the labels together "
            "with their CT (File > Open, the CT first), or make the labels layer with napari's New Labels "
            "while the CT is selected")


def session_for(viewer, layer=None, create: bool = True) -> NodeSession | None:
    """The session of ``layer`` (default: the active Labels layer, else "nodes", else the first Labels)."""
    from napari.layers import Labels

    if layer is not None and layer.metadata.get(ROLE_KEY) == COMPARE_ROLE:
        return None  # the comparison's view: saving it as a case's labels would store another scan's nodes
    if layer is None:
        labels = [ly for ly in viewer.layers
                  if isinstance(ly, Labels) and ly.metadata.get(ROLE_KEY) != COMPARE_ROLE]
        active = viewer.layers.selection.active
        with_session = [ly for ly in labels if SESSION_KEY in ly.metadata]
        if active in labels:
            layer = active
        elif with_session:
            layer = with_session[-1]
        else:
            named = [ly for ly in labels if ly.name == NODES_NAME]
            layer = (named or labels or [None])[0]
    if layer is None:
        return None
    session = layer.metadata.get(SESSION_KEY)
    if session is None and create:
        session = NodeSession(layer, find_ct_layer(viewer, layer))
        viewer.layers.events.removed.connect(session._on_nodes_removed)
    if session is not None and session.ct_layer is not None and (
            session.ct_layer not in viewer.layers or not same_placement(session.ct_layer, layer)):
        session.ct_layer = None  # its CT was closed, or moved apart from the labels: pair again (or none)
        session._ct_cache = None
    if session is not None and session.ct_layer is None:  # the CT may have been opened after the labels
        session.ct_layer = find_ct_layer(viewer, layer)
        session.missing_ct = missing_ct_reason(viewer, layer)
        if session.ct_layer is not None and session.workspace is None:
            session.workspace = session.ct_layer.metadata.get(WORKSPACE_KEY)
            session.workspace_id = session.ct_layer.metadata.get(WORKSPACE_ID_KEY)
    return session


def case_session(viewer, session: NodeSession) -> NodeSession | None:
    """The session of the layer holding ``session``'s case's labels when ``session`` is another layer over
    that case (one opened with File > Open, such as another reviewer's version): the layer opened from a
    workspace version (Review), or last saved as one, of the same workspace and case; None when
    ``session`` is that layer or the model's nodes (Find nodes), or the case has none open."""
    from napari.layers import Labels

    if (session.parent_version is not None or session.workspace is None
            or session.nodes.metadata.get(FOUND_KEY)):
        return None  # the case's own, or the model's nodes Find nodes put over it (the earlier kept aside)
    for layer in viewer.layers:
        other = layer.metadata.get(SESSION_KEY) if isinstance(layer, Labels) else None
        if (other is not None and other is not session and other.parent_version is not None
                and not layer.name.startswith(PREVIOUS_NAME)
                and other.workspace == session.workspace and other.case == session.case):
            return other
    return None


def _napari_private(layer, name: str, default):
    """napari's private attribute ``name`` of ``layer`` (``default`` when it has none), read on the layer
    itself: through the proxy napari hands the widgets of its Plugins menu each read warned (a
    FutureWarning toast in the viewer, three at a case's first node layer)."""
    return getattr(unwrapped(layer), name, default)


def holds_edits(layer) -> bool:
    """True when ``layer`` holds edits not saved: its session's, or, with no session (a layer painted with
    the Segment tab docked alone), any step in napari's undo history."""
    session = layer.metadata.get(SESSION_KEY)
    if session is not None:
        return session.unsaved
    return bool(_napari_private(layer, "_undo_history", ()))


def model_nodes(layer) -> bool:
    """Whether ``layer`` holds the model's nodes as it found them: a node layer Find nodes made
    (:data:`FOUND_KEY`) no one has edited since (a reader's once edited, saved or not)."""
    if not layer.metadata.get(FOUND_KEY):
        return False
    session = layer.metadata.get(SESSION_KEY)
    if session is not None:
        return session.edits == 0
    return not _napari_private(layer, "_undo_history", ())


def droppable(viewer, layer) -> bool:
    """The one rule for what Find nodes may remove: a node layer it made itself (:data:`FOUND_KEY`; never
    labels opened from a file or a workspace version, nor one painted by hand) that holds no edits not
    saved, is not the active layer and is not mid-stroke (napari tells of a brush stroke's paint only when
    the mouse is released)."""
    active = viewer.layers.selection.active
    mid_stroke = (_napari_private(layer, "_block_history", False)
                  or bool(_napari_private(layer, "_staged_history", ())))
    return (bool(layer.metadata.get(FOUND_KEY)) and not holds_edits(layer) and not mid_stroke
            and not same_layer(active, layer))


def drop_unedited(viewer, name: str) -> None:
    """Remove the layers named ``name`` (napari's "name [1]" too) that :func:`droppable` allows (nothing
    of the user's is lost)."""
    for layer in [ly for ly in viewer.layers if ly.name == name or ly.name.startswith(f"{name} [")]:
        if droppable(viewer, layer):
            viewer.layers.remove(layer)


def show_prediction(viewer, ct_layer, result: NodeResult) -> NodeSession:
    """Put :func:`lnq_napari.api.find_nodes`' result on screen: a "nodes" Labels layer (one id per node)
    and the "suggestions" Points layer."""
    ct = layer_volume(ct_layer)
    prob = np.asarray(result.probabilities.array, dtype=np.float32)
    meta = {PROB_KEY: prob, MODEL_KEY: result.model_version, FOUND_KEY: True}
    kwargs = layer_kwargs(ct, NODES_NAME, role="labels", like=ct_layer, **meta)
    stats = None
    if NODES_NAME in viewer.layers:  # keep the earlier node layer (and its edits), hidden and renamed
        drop_unedited(viewer, PREVIOUS_NAME)  # one kept, not one more per run (each held its probabilities)
        previous = viewer.layers[NODES_NAME]
        previous.name, previous.visible = PREVIOUS_NAME, False
        stats = getattr(previous.metadata.get(SESSION_KEY), "stats", None)  # the case's clock runs on
    nodes = viewer.add_labels(np.asarray(result.mask.array), opacity=0.5, **kwargs)
    nodes.metadata[SOURCE_KEY] = ct_layer.metadata.get(SOURCE_KEY)
    session = session_for(viewer, nodes)  # widgets may have made it when the layer appeared
    session.ct_layer = ct_layer
    opened = ct_layer.metadata.get(OPENED_KEY)
    session.stats = stats or (CaseStats(started=opened) if opened is not None else session.stats)
    session.suggestions = show_suggestions(viewer, ct, result.suggestions, like=ct_layer)
    if MARKS_NAME in viewer.layers:  # kept on
        session.watch_marks(viewer, viewer.layers[MARKS_NAME])
    viewer.layers.selection.active = nodes
    session.notify()
    return session


def attach_suggestions(viewer, session: NodeSession, result: NodeResult) -> int:
    """Show ``result``'s suggestions beside the labels the session opened with, which stay as they are
    (a case opened from the review queue): the model's probabilities go on the node layer for accepting
    them; a suggestion at a voxel the labels already hold or inside a rejection the labels were saved with
    is left out. Returns how many are shown."""
    ct = session.ct_volume()
    spacing = np.asarray(ct.spacing_zyx, dtype=float)
    rejected = [Rejection.from_dict(r) for r in session.rejections()]
    labels = session.nodes.data

    def kept(s: Suggestion) -> bool:
        if labels[tuple(int(c) for c in s.centre_zyx)] > 0:
            return False
        return all(np.linalg.norm((np.asarray(s.centre_zyx) - r.centre_zyx) * spacing) > r.radius_mm
                   for r in rejected)

    shown = [dataclasses.replace(s, rank=k) for k, s in enumerate(filter(kept, result.suggestions), start=1)]
    session.nodes.metadata[PROB_KEY] = np.asarray(result.probabilities.array, dtype=np.float32)
    active = viewer.layers.selection.active
    session.suggestions = show_suggestions(viewer, ct, shown, like=session.ct_layer)
    session.current_suggestion = -1
    viewer.layers.selection.active = active
    session.notify()
    return len(shown)


def show_marks(viewer, ct: Volume, like=None):
    """An empty "marked nodes" Points layer (magenta crosses) on ``ct``'s grid, drawn as the layer
    ``like`` (the node layer) is."""
    return viewer.add_points(
        np.zeros((0, 3)), size=10, symbol="cross", face_color="magenta", border_color="magenta",
        out_of_slice_display=False, **layer_kwargs(ct, MARKS_NAME, role="marks", like=like),
    )


def show_suggestions(viewer, ct: Volume, suggestions: list[Suggestion], like=None):
    """A Points layer of ranked suggestions (features: rank, kind, score, max_prob, volume_mm3, reason,
    text; ``reason`` says what a candidate the model is sure of is, e.g. small, below the size floor),
    drawn as the layer ``like`` (the CT) is."""
    import pandas as pd

    if SUGGESTIONS_NAME in viewer.layers:
        viewer.layers.remove(SUGGESTIONS_NAME)
    pts = np.array([s.centre_zyx for s in suggestions], dtype=float).reshape(-1, 3)
    features = pd.DataFrame({
        "rank": [s.rank for s in suggestions], "kind": [s.kind for s in suggestions],
        "score": [s.score for s in suggestions], "max_prob": [s.max_prob for s in suggestions],
        "volume_mm3": [s.volume_mm3 for s in suggestions], "reason": [s.reason for s in suggestions],
        "text": [s.text for s in suggestions],
    })
    kwargs = layer_kwargs(ct, SUGGESTIONS_NAME, role="suggestions", like=like)
    return viewer.add_points(
        pts,
        features=features,
        size=8,
        border_color="yellow",
        face_color="transparent",
        symbol="ring",
        text={"string": "{rank}", "color": "yellow", "size": 10, "anchor": "upper_left"},
        out_of_slice_display=False,
        **kwargs,
    )
