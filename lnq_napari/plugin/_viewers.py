"""The napari viewers the plugin has met: napari lists no open viewers in its public API (only
``napari.current_viewer()``), and npe2 tells a reader no viewer. A viewer is remembered when it is current
as the reader runs, or when the lnq-napari panel docks on it; one closed and collected drops out. napari's
private ``Viewer._instances`` adds the viewers it knows (one a script opened a CT into while another was
current) where it still exists."""

from __future__ import annotations

import weakref

_MET: weakref.WeakSet = weakref.WeakSet()


def remember(viewer) -> None:
    """Remember ``viewer`` (None: nothing) as one the plugin has met."""
    if viewer is not None:
        _MET.add(viewer)


def remember_current() -> None:
    """Remember napari's current viewer, if any (the one a File > Open reads into, as a rule)."""
    import napari

    remember(napari.current_viewer())


def open_viewers() -> list:
    """napari's current viewer first (remembered from now on), then the other viewers met, still open."""
    import napari

    current = napari.current_viewer()
    remember(current)
    known = dict.fromkeys([*list(_MET), *_napari_s_viewers()])  # both lists, each viewer once, in order
    others = [v for v in known if v is not current and _is_open(v)]
    return [v for v in (current, *others) if v is not None]


def _napari_s_viewers() -> list:
    """The viewers in napari's private ``Viewer._instances`` (napari 0.9 keeps it for ``close_all``); none
    where a napari has no such list or it is not one."""
    import napari

    try:
        return list(getattr(napari.Viewer, "_instances", ()))
    except TypeError:
        return []


def _is_open(viewer) -> bool:
    """Whether ``viewer``'s window was not closed (a closed viewer lingers until collected)."""
    window = getattr(viewer, "window", None)
    return window is not None and getattr(window, "_qt_window", None) is not None
