"""2D views as a radiologist reads them: napari draws a view's first axis downwards, so with the dims order
rolled to a coronal or sagittal view the patient stood on their head (the plugin's world is LPS mm, z from
foot to head). The head goes up there; an axial view keeps anterior up (y, posterior, downwards)."""

from __future__ import annotations

import weakref

_FOLLOWED: weakref.WeakSet = weakref.WeakSet()  # viewers whose 2D views already follow the anatomy


def head_up_views(viewer) -> None:
    """From now on, turn ``viewer``'s 2D view head up whenever its vertical axis is z (coronal, sagittal)
    and back to napari's downward axis otherwise (axial); once per viewer, for its life."""
    if viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    ref = weakref.ref(viewer)

    def follow(event=None) -> None:
        if (shown := ref()) is not None:
            orient_2d(shown)

    viewer.dims.events.order.connect(follow)
    viewer.dims.events.ndisplay.connect(follow)
    follow()


def orient_2d(viewer) -> None:
    """Head up in a 2D view whose vertical axis is the world's z (the third axis from the last), else the
    vertical axis downwards as napari draws it; the horizontal direction stays as it is."""
    dims, camera = viewer.dims, viewer.camera
    if dims.ndisplay != 2 or dims.ndim < 3:
        return
    vertical = dims.displayed[0]
    wanted = "up" if vertical == dims.ndim - 3 else "down"
    if str(camera.orientation2d[0]) != wanted:
        camera.orientation2d = (wanted, camera.orientation2d[1])
