"""Layers drawn only in the 2D view: the mediastinum region's per-slice outlines stacked into a cyan cage
in 3D that hid the nodes and the anatomy inside it."""

from __future__ import annotations

import weakref

from lnq_napari.plugin._layers import unwrapped

HIDDEN_KEY = "lnq_hidden_in_3d"  # layer metadata: hidden by the 3D view (shown again back in 2D)


def in_2d_only(viewer, layer) -> None:
    """Hide ``layer`` while ``viewer`` shows 3D and show it again back in 2D (unless the user hid it
    before the switch); the link ends when the layer is removed."""
    ref = weakref.ref(unwrapped(layer))  # a Plugins-menu widget's layer is a proxy that dies at once

    def follow(event=None) -> None:
        shown = ref()
        if shown is None or shown not in viewer.layers:
            _unlink()
            return
        if viewer.dims.ndisplay == 3 and shown.visible:
            shown.metadata[HIDDEN_KEY] = True
            shown.visible = False
        elif viewer.dims.ndisplay == 2 and shown.metadata.pop(HIDDEN_KEY, False):
            shown.visible = True

    def removed(event) -> None:
        if unwrapped(event.value) is ref() or ref() is None:
            _unlink()

    def _unlink() -> None:
        viewer.dims.events.ndisplay.disconnect(follow)
        viewer.layers.events.removed.disconnect(removed)

    viewer.dims.events.ndisplay.connect(follow)
    viewer.layers.events.removed.connect(removed)
    follow()
