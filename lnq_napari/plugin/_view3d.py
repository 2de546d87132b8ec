"""Layers drawn only in the 2D view: the mediastinum region's per-slice outlines stacked into a cyan cage
in 3D that hid the nodes and the anatomy inside it."""

from __future__ import annotations

import weakref

from lnq_napari.plugin._layers import unwrapped

HIDDEN_KEY = "lnq_hidden_in_3d"  # layer metadata: hidden by the 3D view (shown again back in 2D)


def in_2d_only(viewer, layer) -> None:
    """Hide ``layer`` while ``viewer`` shows 3D and show it again back in 2D, unless the user changed its
    visibility meanwhile (a hide or show made by hand, in 2D or in 3D, is kept); the link ends when the
    layer is removed."""
    ref = weakref.ref(unwrapped(layer))  # a Plugins-menu widget's layer is a proxy that dies at once
    switching = [False]  # True while ``follow`` itself sets the visibility (not the user)

    def follow(event=None) -> None:
        shown = ref()
        if shown is None or shown not in viewer.layers:
            _unlink()
            return
        if viewer.dims.ndisplay == 3 and shown.visible:
            _show(shown, False)
            shown.metadata[HIDDEN_KEY] = True
        elif viewer.dims.ndisplay == 2 and shown.metadata.pop(HIDDEN_KEY, False):
            _show(shown, True)

    def _show(shown, visible: bool) -> None:
        switching[0] = True
        try:
            shown.visible = visible
        finally:
            switching[0] = False

    def by_hand(event=None) -> None:
        if not switching[0] and (shown := ref()) is not None:
            shown.metadata.pop(HIDDEN_KEY, None)  # the user's choice from now on: 2D leaves it as it is

    def removed(event) -> None:
        if unwrapped(event.value) is ref() or ref() is None:
            _unlink()

    def _unlink() -> None:
        viewer.dims.events.ndisplay.disconnect(follow)
        viewer.layers.events.removed.disconnect(removed)
        if (shown := ref()) is not None:
            shown.events.visible.disconnect(by_hand)

    viewer.dims.events.ndisplay.connect(follow)
    viewer.layers.events.removed.connect(removed)
    unwrapped(layer).events.visible.connect(by_hand)
    follow()
