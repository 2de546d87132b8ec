"""The lnq-napari viewer: a napari window with the given case loaded and the widgets docked.

``lnq-napari view``, ``lnq-napari demo`` and notebooks open it with :func:`view`.
"""

from __future__ import annotations

from lnq_napari.plugin._case import add_case, read_case
from lnq_napari.plugin.panel import dock_panel
from lnq_napari.workspace import Workspace


def view(ct=None, seg=None, model=None, workspace=None, block: bool = False, find_nodes: bool = False):
    """Open a napari viewer with the lnq-napari panel docked; returns the viewer.

    ``ct`` opens as a windowed CT layer, ``seg`` as the editable "nodes" layer (put on the CT grid),
    ``model`` pre-fills the Segment widget, ``workspace`` makes Save and autosave write there;
    ``find_nodes`` starts the Segment widget's Find nodes on the CT (nodes, suggestions, region).
    With ``block`` the Qt event loop runs until the window closes. LNQError without a display (Qt would
    abort the process: a Jupyter kernel on a server died).
    """
    import napari

    from lnq_napari.api import require_display

    require_display()
    viewer = open_viewer(ct=ct, seg=seg, model=model, workspace=workspace, find_nodes=find_nodes)
    if block:
        napari.run()
    return viewer


def dock_widgets(viewer, model: str | None = None, workspace: Workspace | None = None) -> dict:
    """Dock the lnq-napari panel (Segment, Correct, Nodes, Review, Save as tabs, the review keys) on the
    right; returns its widgets by name."""
    return dock_panel(viewer, model=model, workspace=workspace).widgets


def open_viewer(ct=None, seg=None, model=None, workspace=None, viewer=None, show: bool = True,
                find_nodes: bool = False):
    """A napari viewer with ``ct`` (and ``seg`` as the node layer) opened and all widgets docked;
    ``find_nodes``: Find nodes started on the CT (in its worker; the window stays responsive).

    Files are read before any window opens, so a bad path fails fast with an LNQError.
    """
    import napari

    ws = Workspace.open(workspace) if workspace is not None else None
    ct_data, seg_data = read_case(ct, seg)
    viewer = viewer or napari.Viewer(title="lnq-napari", show=show)
    add_case(viewer, ct_data, seg_data, workspace=ws)
    widgets = dock_widgets(viewer, model=model, workspace=ws)  # viewer.window.dock_widgets["lnq-napari"]
    if find_nodes and ct is not None:
        widgets["Segment"].run()
    return viewer
