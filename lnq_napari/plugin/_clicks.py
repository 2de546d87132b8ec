"""Mouse clicks on the viewer -> session edits. Shift+click adds a node, Ctrl+click removes one,
Alt+click marks a node whose outline no click finds ("node here, outline unknown") or takes a mark back.

A plain click acts by the tool's mode ("add", "remove", "mark" or "off"); a click on a suggestion ring
accepts it. Drags (panning, painting) are left alone, and nothing happens while a layer is in a paint mode.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.interact import peak_along_ray
from lnq_napari.plugin._layers import is_ct_layer, same_scan
from lnq_napari.plugin._session import session_for
from lnq_napari.preprocess import check_ct_extent

MODES = ("off", "add", "remove", "mark")


class ClickTool:
    """A viewer mouse callback with a mode; ``report(message)`` receives what each click did."""

    def __init__(self, viewer, report: Callable[[str], None] | None = None) -> None:
        self.viewer = viewer
        self.mode = "off"
        self.report = report or (lambda message: None)
        viewer.mouse_drag_callbacks.append(self.on_mouse)
        # the first click should not pay for importing the watershed code
        threading.Thread(target=importlib.import_module, args=("skimage.segmentation",), daemon=True).start()

    def detach(self) -> None:
        if self.on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self.on_mouse)

    def action_for(self, modifiers) -> str:
        names = {str(getattr(m, "name", m)) for m in modifiers}
        if "Shift" in names:
            return "add"
        if "Alt" in names:
            return "mark"
        if "Control" in names or "Meta" in names:
            return "remove"
        return self.mode

    def on_mouse(self, viewer, event):
        """Generator callback: act on release when the mouse did not move (a click, not a drag)."""
        active = viewer.layers.selection.active
        if getattr(active, "mode", "pan_zoom") not in ("pan_zoom", "transform"):
            return
        action = self.action_for(event.modifiers)
        position, dims_displayed = event.position, list(event.dims_displayed)
        view_direction = event.view_direction
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.click(position, action, dims_displayed, view_direction)

    def click(self, world_position, action: str, dims_displayed=(1, 2), view_direction=None) -> str:
        """Apply ``action`` at a world position; returns (and reports) what happened."""
        try:
            return self._click(world_position, action, list(dims_displayed), view_direction)
        except LNQError as exc:  # e.g. no CT under the node layer: say so in the widget
            return self._say(str(exc))

    def _click(self, world_position, action: str, dims_displayed, view_direction) -> str:
        session = session_for(self.viewer, create=True)
        if session is None:
            return (
                self._say("no node layer: run Segment or open a label file first") if action != "off" else ""
            )
        covered = ct_drawn_over(self.viewer, session, world_position, dims_displayed, view_direction)
        if covered and action != "off":
            return self._say(covered)
        if action != "off":  # a grid in metres read as mm: a click would grow a node of one voxel, or none
            check_ct_extent(session.labels_volume(), f"the grid of {session.nodes.name!r}")
        point = np.asarray(session.nodes.world_to_data(world_position), dtype=float)
        inside = np.all((point > -0.5) & (point < np.asarray(session.nodes.data.shape) - 0.5))
        if len(dims_displayed) == 3:
            session.stats.clicks += action != "off"
            return self._click_3d(session, world_position, action, dims_displayed, view_direction)
        plane = shown_axes(session.nodes, dims_displayed, len(world_position))
        has_rings = inside and session.suggestions is not None
        hit = session.suggestion_near(point, plane=plane) if has_rings else None
        on_ring = hit is not None and action in ("add", "off") and session.suggestions.visible
        session.stats.clicks += action != "off" or on_ring
        if on_ring:
            node = session.accept_suggestion(hit)
            return self._say(
                f"accepted suggestion as node {node}" if node else "suggestion had no node; dropped"
            )
        if action == "off" or not inside:
            return ""
        if action == "add":
            node = session.add_node_at(point)
            return self._say(f"added node {node}" if node else "no node-like tissue at the click")
        if action == "mark":
            added = session.mark_node_at(self.viewer, point, plane)
            return self._say("marked a node here, outline unknown" if added else "mark taken back")
        node = session.remove_node_at(point)
        return self._say(f"removed node {node}" if node else "no node at the click")

    def _click_3d(self, session, world_position, action, dims_displayed, view_direction) -> str:
        if action == "mark":
            return self._say("mark nodes in the 2D view")
        if action == "add":
            return self._add_along_ray(session, world_position, dims_displayed, view_direction)
        if action != "remove":
            return ""
        value = session.nodes.get_value(
            world_position, view_direction=view_direction, dims_displayed=dims_displayed, world=True
        )
        node = session.remove_node_id(int(value or 0))
        return self._say(f"removed node {node}" if node else "no node along the click")

    def _add_along_ray(self, session, world_position, dims_displayed, view_direction) -> str:
        """3D add: the node is where the model's probability peaks along the clicked ray."""
        prob = session.probabilities
        start, end = session.nodes.get_ray_intersections(
            world_position, view_direction, dims_displayed, world=True
        )
        if prob is None or start is None or end is None:
            return self._say("adding in 3D needs a prediction; without one, add the node in the 2D view")
        point = peak_along_ray(prob, start, end, labels=session.nodes.data)
        if point is None:
            return self._say("no node-like tissue along the click; add it in the 2D view")
        node = session.add_node_at(point)
        return self._say(f"added node {node}" if node else "no node-like tissue along the click")

    def _say(self, message: str) -> str:
        self.report(message)
        return message


def shown_axes(layer, dims_displayed, ndim_world: int) -> tuple[int, int]:
    """The two data axes of the 3D ``layer`` that a 2D view shows (napari's world dims, the leading ones
    beyond the layer's dims dropped): (1, 2) axial, (0, 2) coronal, (0, 1) sagittal; axial if unclear."""
    offset = ndim_world - layer.ndim
    axes = sorted(int(d) - offset for d in dims_displayed if 0 <= int(d) - offset < layer.ndim)
    return (axes[0], axes[1]) if len(axes) == 2 and layer.ndim == 3 else (1, 2)


COVER_OPACITY = 0.5  # an image drawn at least this opaque over the CT hides it


def ct_drawn_over(viewer, session, world_position, dims_displayed=(1, 2), view_direction=None) -> str:
    """A line when another scan is drawn over the CT of ``session``'s labels where the user clicked (a
    second case opened on top, by any reader): a click would edit those labels from the CT under it, not
    from the one on screen; "" otherwise (a see-through or hidden image, one elsewhere, the same CT opened
    twice, a probability map or the region outline)."""
    ct = session.ct_layer
    if ct is None or ct not in viewer.layers:
        return ""
    above = [ly for ly in list(viewer.layers)[viewer.layers.index(ct) + 1:]
             if hides(ly, ct, world_position, dims_displayed, view_direction)]
    if not above:
        return ""
    return (f"{above[-1].name!r} is drawn over {ct.name!r}, the CT of {session.nodes.name!r}: Find nodes on "
            f"it (or open its labels) to edit its nodes, or hide it to edit {session.nodes.name!r}")


def hides(layer, ct, world_position, dims_displayed=(1, 2), view_direction=None) -> bool:
    """Whether ``layer``, drawn above the CT layer ``ct``, hides it at the click: a visible image that may
    be a CT (:func:`~lnq_napari.plugin._layers.is_ct_layer`), at least :data:`COVER_OPACITY` opaque,
    holding the clicked point (in 3D: met by the clicked ray), and another scan than ``ct``."""
    if not is_ct_layer(layer) or not layer.visible or layer.opacity < COVER_OPACITY:
        return False
    if len(dims_displayed) == 3 and view_direction is not None:
        own = ray_depths(layer, world_position, view_direction, dims_displayed)
        under = ray_depths(ct, world_position, view_direction, dims_displayed)
        held = own is not None and under is not None and own[0] < under[1]  # in front of the CT's far side
    else:
        point = np.asarray(layer.world_to_data(world_position), dtype=float)[-layer.ndim:]
        shape = np.asarray(layer.level_shapes[0][: layer.ndim], dtype=float)
        held = bool(np.all((point > -0.5) & (point < shape - 0.5)))
    return held and not same_scan(layer, ct)


def ray_depths(layer, world_position, view_direction, dims_displayed) -> tuple[float, float] | None:
    """Where the clicked ray of the 3D view enters and leaves ``layer``'s volume, as distances along the
    view direction (world units, growing away from the camera); None when the ray misses it."""
    start, end = layer.get_ray_intersections(world_position, view_direction, dims_displayed, world=True)
    if start is None or end is None:
        return None
    points = [np.asarray(layer.data_to_world(p), dtype=float) for p in (start, end)]
    n = len(points[0])  # the layer's world dims: the trailing ones of the viewer's
    direction = np.asarray(view_direction, dtype=float)[-n:]
    origin = np.asarray(world_position, dtype=float)[-n:]
    depths = [float(np.dot(p - origin, direction)) for p in points]
    return min(depths), max(depths)
