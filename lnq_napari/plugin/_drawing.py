"""Feedback while napari draws the case after a 2D/3D switch: with software rendering (no graphics card) a
full-size CT took 7-15 s to show in 3D with the arrow cursor and no word, the window frozen."""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QLabel, QWidget

from lnq_napari.plugin.widgets._common import while_alive


def say_while_drawing(viewer, owner: QWidget, label: QLabel) -> None:
    """From a switch of ``viewer`` between 2D and 3D until its first drawing ends: the wait cursor, and
    ``label`` shown saying so (hidden again after); for as long as ``owner`` lives."""
    drawing = [False]

    def switched(event=None) -> None:
        if drawing[0] or len(viewer.layers) == 0:
            return
        drawing[0] = True
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        label.setText(f"drawing the case in {viewer.dims.ndisplay}D: seconds without a graphics card ...")
        label.show()
        label.repaint()
        QTimer.singleShot(0, drawn)  # after napari's own handlers of the switch

    def drawn() -> None:
        try:  # the drawing, at once and here (else Qt does it after the cursor is back)
            viewer.window._qt_window.repaint()
        except RuntimeError:  # the window was closed meanwhile
            pass
        finally:
            drawing[0] = False
            QApplication.restoreOverrideCursor()
            try:
                label.hide()
            except RuntimeError:  # the panel was closed meanwhile
                pass

    while_alive(owner, viewer.dims.events.ndisplay, switched)
