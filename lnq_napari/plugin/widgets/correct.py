"""Correct: click modes (add / remove / mark node), suggestions (accept / reject / go to), undo / redo."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from lnq_napari.plugin._clicks import MODES, ClickTool
from lnq_napari.plugin.widgets._common import SessionTracker, compact, widen_opened_cts
from lnq_napari.plugin.widgets.nodes import centre_on

HELP = "\n".join(
    (
        "Shift+click: add the node under the mouse",
        "Ctrl+click: remove it; click a yellow ring: accept it",
        "Alt+click: mark a node no click outlines (outline unknown); again: unmark",
        "Ctrl+Z / Ctrl+Shift+Z: undo / redo",
        "N / Shift+N: next / previous suggestion, A: accept, R: reject (the panel lists all keys)",
    )
)


class CorrectWidget(QWidget):
    """Thin controls over :class:`ClickTool` and the current :class:`NodeSession`."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        widen_opened_cts(napari_viewer)  # File > Open of a CT beside this tab alone
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tool = ClickTool(napari_viewer, report=self.status.setText)
        tool = self.tool
        self.destroyed.connect(lambda *_: tool.detach())  # a closed widget stops handling clicks

        modes = QGroupBox("plain click")
        modes.setToolTip("what a click without Shift, Ctrl or Alt does: pan, add a node, remove one, or "
                         "mark a node whose outline no click finds")
        self.mode_buttons = QButtonGroup(self)
        grid = QGridLayout(modes)  # two rows: the panel stays narrow
        for i, (mode, text) in enumerate(
            (("off", "pan"), ("add", "add"), ("remove", "remove"), ("mark", "mark"))
        ):
            button = QRadioButton(text)
            button.setChecked(mode == "off")
            self.mode_buttons.addButton(button, i)
            grid.addWidget(button, i // 2, i % 2)
        self.mode_buttons.idToggled.connect(self._mode_toggled)

        self.suggestion_list = QListWidget()
        self.suggestion_list.setMaximumHeight(120)
        self.suggestion_list.setWordWrap(True)  # long lines wrap in the narrow panel, not scroll sideways
        self.suggestion_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.suggestion_list.setResizeMode(QListWidget.ResizeMode.Adjust)  # wrapped again when resized
        self.suggestion_list.currentRowChanged.connect(self.go_to_suggestion)
        accept, reject = QPushButton("Accept"), QPushButton("Reject")
        accept.clicked.connect(lambda: self._clicked(self.accept))
        reject.clicked.connect(lambda: self._clicked(self.reject))
        undo, redo = QPushButton("Undo"), QPushButton("Redo")
        undo.clicked.connect(lambda: self._with_session(lambda s: s.undo()))
        redo.clicked.connect(lambda: self._with_session(lambda s: s.redo()))

        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(modes)
        hint = QLabel("suggestions (model unsure, outline may be incomplete), best first")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        layout.addWidget(self.suggestion_list)
        for pair in ((accept, reject), (undo, redo)):
            row = QHBoxLayout()
            row.addWidget(pair[0])
            row.addWidget(pair[1])
            layout.addLayout(row)
        layout.addWidget(help_label)
        layout.addWidget(self.status)
        compact(self)
        self.tracker = SessionTracker(napari_viewer, self, self.refresh_suggestions,
                                      on_focus=self._follow_focus)
        self.refresh_suggestions()

    def _mode_toggled(self, button_id: int, checked: bool) -> None:
        if checked:
            self.set_mode(MODES[button_id])

    def set_mode(self, mode: str) -> None:
        """Set what a plain click does: "off", "add", "remove" or "mark"."""
        self.tool.mode = mode
        button = self.mode_buttons.button(MODES.index(mode))
        if not button.isChecked():
            button.setChecked(True)

    def _with_session(self, action):
        session = self.tracker.session
        if session is None:
            self.status.setText("no node layer yet: run Segment or open a label file")
            return None
        return action(session)

    def refresh_suggestions(self) -> None:
        session = self.tracker.session
        self.suggestion_list.blockSignals(True)
        self.suggestion_list.clear()
        if session is not None and session.suggestions is not None:
            feats = session.suggestions.features
            for i in range(len(session.suggestions.data)):
                row = feats.iloc[i] if len(feats) > i and "text" in feats else None
                text = f"suggestion {i + 1}" if row is None else f"#{int(row['rank'])}  {row['text']}"
                self.suggestion_list.addItem(text)
            self.suggestion_list.setCurrentRow(session.current_suggestion)
        self.suggestion_list.blockSignals(False)

    def _follow_focus(self) -> None:
        """The review keys moved the current suggestion: select it in the list (no second centring)."""
        session = self.tracker.session
        self.suggestion_list.blockSignals(True)
        self.suggestion_list.setCurrentRow(session.current_suggestion if session is not None else -1)
        self.suggestion_list.blockSignals(False)

    def _clicked(self, action) -> None:
        """An Accept / Reject button click on the selected suggestion (counted as a click)."""
        session = self.tracker.session
        if session is not None:
            session.stats.clicks += 1
        action(self.suggestion_list.currentRow())

    def go_to_suggestion(self, index: int) -> None:
        session = self.tracker.session
        if session is None or index < 0 or index >= len(session.suggestion_points()):
            return
        session.current_suggestion = index
        centre_on(self.viewer, session.suggestions.data_to_world(session.suggestion_points()[index]))

    def accept(self, index: int) -> int:
        if index < 0:
            self.status.setText("pick a suggestion first")
            return 0
        node = self._with_session(lambda s: s.accept_suggestion(index)) or 0
        self.status.setText(
            f"accepted: node {node}" if node else "no node-like tissue there; suggestion dropped"
        )
        return node

    def reject(self, index: int) -> None:
        if index < 0:
            self.status.setText("pick a suggestion first")
            return
        self._with_session(lambda s: s.reject_suggestion(index))
        self.status.setText("suggestion rejected")
