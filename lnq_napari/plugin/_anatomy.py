"""2D views as a radiologist reads them: napari draws a view's first axis downwards, so with the dims order
rolled to a coronal or sagittal view the patient stood on their head (the plugin's world is LPS mm, z from
foot to head). The head goes up there; an axial view keeps anterior up (y, posterior, downwards).

The view is turned only when its vertical axis changes between z and another axis, so an orientation the
user chose stays; the camera's depth turns with its vertical axis, so the 3D view stays right-handed (a
turned vertical axis alone mirrored the 3D view: the patient's sides swapped once rotated)."""

from __future__ import annotations

import weakref

_FOLLOWED: weakref.WeakSet = weakref.WeakSet()  # viewers whose 2D views already follow the anatomy
_FLIP = {"up": "down", "down": "up", "towards": "away", "away": "towards"}


def head_up_views(viewer) -> None:
    """From now on, turn ``viewer``'s 2D view head up when its vertical axis becomes z (coronal, sagittal)
    and back to napari's downward axis when it stops being z (axial); once per viewer, for its life."""
    if viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    ref = weakref.ref(viewer)
    last = [None]  # whether z was the vertical axis when the view was last turned (None: never)

    def follow(event=None) -> None:
        if (shown := ref()) is None or (z_up := vertical_is_z(shown)) is None or z_up == last[0]:
            return
        last[0] = z_up
        turn_vertical(shown, "up" if z_up else "down")

    viewer.dims.events.order.connect(follow)
    viewer.dims.events.ndisplay.connect(follow)
    follow()


def vertical_is_z(viewer) -> bool | None:
    """Whether the vertical axis of ``viewer``'s 2D view is the world's z (the third axis from the last);
    None in 3D or with fewer than three axes."""
    dims = viewer.dims
    if dims.ndisplay != 2 or dims.ndim < 3:
        return None
    return dims.displayed[0] == dims.ndim - 3


def turn_vertical(viewer, wanted: str) -> None:
    """Point the camera's vertical axis ``wanted`` ('up' or 'down'), turning its depth with it so the
    camera's handedness (napari's 3D mirror) stays as it was; the horizontal direction stays."""
    camera = viewer.camera
    depth, vertical, horizontal = (str(axis) for axis in camera.orientation)
    if vertical != wanted:
        camera.orientation = (_FLIP[depth], wanted, horizontal)
