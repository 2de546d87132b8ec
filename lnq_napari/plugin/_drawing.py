"""Feedback while napari draws the case after a 2D/3D switch: with software rendering (no graphics card) a
full-size CT took 5-15 s to show in 3D with the arrow cursor, the window frozen.

Only the wait cursor: a line of text in the viewer's window is painted with the canvas, i.e. after the
drawing (painted before it, in the switch's handler, the case was drawn twice: 5.6 s became 16 s)."""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QWidget

from lnq_napari.plugin.widgets._common import while_alive


def wait_cursor_while_drawing(viewer, owner: QWidget) -> None:
    """From a switch of ``viewer`` between 2D and 3D until its first drawing ends: the wait cursor; for as
    long as ``owner`` lives."""
    drawing = [False]

    def switched(event=None) -> None:
        if drawing[0] or len(viewer.layers) == 0:
            return
        drawing[0] = True
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        QTimer.singleShot(0, drawn)  # after napari's own handlers of the switch

    def drawn() -> None:
        try:  # the drawing, at once and here (else Qt may do it after the cursor is back)
            window = getattr(viewer.window, "_qt_window", None)  # gone: the viewer was closed meanwhile
            if window is not None:
                window.repaint()
        except RuntimeError:  # the Qt window was deleted meanwhile
            pass
        finally:
            drawing[0] = False
            QApplication.restoreOverrideCursor()

    while_alive(owner, viewer.dims.events.ndisplay, switched)
