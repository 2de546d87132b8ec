"""The lnq-napari panel: Segment, Correct, Nodes, Review and Save as tabs of one narrow dock; the Correct
tab also lists the review keys as bound now. The canvas keeps most of the window.

Each tab holds the same widget that can be docked alone (Plugins > lnq-napari > Segment, ...);
``panel.widgets`` gives them by name.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from lnq_napari.plugin._anatomy import head_up_views
from lnq_napari.plugin._drawing import wait_cursor_while_drawing
from lnq_napari.plugin._viewers import remember
from lnq_napari.plugin.keys import key_rows, register_review_keys
from lnq_napari.plugin.widgets import CorrectWidget, NodesWidget, ReviewWidget, SaveWidget, SegmentWidget
from lnq_napari.plugin.widgets._common import while_alive

#: The panel's width (px): a 1600 px window leaves the canvas >= 60 % beside napari's layer list.
PANEL_WIDTH = 270
#: The narrowest the panel may be dragged (px): every tab's rows still fit (at 200 the Review tab's
#: buttons, models table and plot were cut off).
MIN_WIDTH = 250
NAME = "lnq-napari"


class LNQPanel(QWidget):
    """One dock with a tab per job; ``widgets`` maps "Segment", "Correct", "Nodes", "Review", "Save"
    to the widgets inside."""

    def __init__(self, napari_viewer, model: str | None = None, workspace=None) -> None:
        super().__init__()
        register_review_keys()
        self.viewer = napari_viewer
        remember(napari_viewer)  # its CTs: where labels a reader opens look for the CT they belong to
        head_up_views(napari_viewer)  # a coronal or sagittal view with the head up
        self.widgets: dict[str, QWidget] = {
            "Segment": SegmentWidget(napari_viewer, model=starting_model(model, workspace)),
            "Correct": CorrectWidget(napari_viewer),
            "Nodes": NodesWidget(napari_viewer),
            "Review": ReviewWidget(napari_viewer, workspace=workspace),
            "Save": SaveWidget(napari_viewer, workspace=workspace),
        }
        if model is None:  # the Segment tab follows the workspace's active version (Activate, fine-tune)
            self.widgets["Review"].models.active_changed.connect(self.widgets["Segment"].follow_model)
        review, save = self.widgets["Review"], self.widgets["Save"]
        # Save follows the workspace chosen in Review (it kept the panel's first one: a case opened by File >
        # Open after a switch was saved into the old workspace)
        review.form.workspace.changed.connect(
            lambda *_: setattr(save, "workspace", review.workspace_or_none()))
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabBar().setStyleSheet("QTabBar::tab { padding: 3px 4px; margin: 0px; min-width: 0px; }")
        self.keys = KeysTable()
        for name, widget in self.widgets.items():
            # a tab may grow in height: wrapped lines need more of it in a narrow panel
            widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
            if name == "Correct":  # the keys where one reviews
                page = _stacked(widget, self.keys)
            elif name == "Nodes":  # the table takes the height
                page = widget
            else:  # the form at the top, the room below it empty
                page = _stacked(widget, stretch=True)
            self.tabs.addTab(_scrolled(page), name)
        wait_cursor_while_drawing(napari_viewer, self)  # a 2D/3D switch: seconds on software rendering
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(MIN_WIDTH)

    def sizeHint(self) -> QSize:
        return QSize(PANEL_WIDTH, super().sizeHint().height())

    def show_tab(self, name: str) -> QWidget:
        """Bring tab ``name`` to the front; returns its widget."""
        self.tabs.setCurrentIndex(list(self.widgets).index(name))
        return self.widgets[name]


class KeysTable(QWidget):
    """The review keys as napari has them bound now (it follows remapping in the preferences)."""

    def __init__(self) -> None:
        from napari.utils.action_manager import action_manager

        super().__init__()
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["key", "action"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        note = QLabel("Keys act when the canvas has the focus (click the image once). Remap them in "
                      "File > Preferences > Shortcuts, group \"Viewer key bindings\".")
        note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Review keys"))
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        self.table.setMinimumHeight(200)
        self.refresh()
        while_alive(self, action_manager.events.shortcut_changed, self._changed)

    def _changed(self, event=None) -> None:
        self.refresh()

    def refresh(self) -> list[tuple[str, str]]:
        rows = key_rows()
        self.table.setRowCount(len(rows))
        for r, (keys, description) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            item = QTableWidgetItem(description)
            item.setToolTip(description)
            self.table.setItem(r, 1, item)
        self.table.resizeRowsToContents()
        return rows


def _stacked(*widgets: QWidget, stretch: bool = False) -> QWidget:
    """The widgets one above the other in a plain page (``stretch``: empty room below them)."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    if stretch:
        layout.addStretch(1)
    return page


def _scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area, so a tall or wide tab never widens the panel."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    return area


def starting_model(model: str | None, workspace) -> str | None:
    """The Segment tab's model: the one given, else the workspace's active version (as Review ranks
    with it; an nnU-Net version too, with its options), else None (the bundled model)."""
    if model is not None or workspace is None:
        return model
    from lnq_napari.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    return None if ws.active_model() is None else str(ws.prediction_model()[0])


def dock_panel(viewer, model: str | None = None, workspace=None) -> LNQPanel:
    """Dock the panel on the right at :data:`PANEL_WIDTH`; returns it."""
    panel = LNQPanel(viewer, model=model, workspace=workspace)
    dock = viewer.window.add_dock_widget(panel, name=NAME, area="right")
    viewer.window._qt_window.resizeDocks([dock], [PANEL_WIDTH], Qt.Orientation.Horizontal)
    return panel
