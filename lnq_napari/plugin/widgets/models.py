"""The models section of the Review widget: a workspace's model versions, the rule's verdict and figures,
an Activate button (the user decides) and a small plot of the figures over fine-tuning rounds.

Thin: the versions come from :func:`lnq_napari.api.list_models`, the choice goes to
:func:`lnq_napari.api.activate_model` (``decided_by="user"``, journalled with the version it replaces).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.workspace.registry import ModelSummary

COLUMNS = ("version", "parent", "active", "verdict")


class ModelsPanel(QWidget):
    """Model versions of the workspace ``root()`` returns (None: no workspace chosen yet).

    ``active_changed`` carries the newly active version's model (:attr:`ModelSummary.model`; None: the
    bundled model) whenever a refresh finds another version active than the last one did (an Activate, a
    fine-tune the rule activated, another workspace chosen). The panel refreshes itself when the
    workspace's registry changes on disk (a fine-tune or Activate in another window or on the command
    line), checked every :data:`FOLLOW_MS`.
    """

    active_changed = Signal(object)

    def __init__(self, root: Callable[[], Path | None]) -> None:
        super().__init__()
        self.root = root
        self.models: list[ModelSummary] = []
        self._active: str | None = None
        self._registry: tuple[Path | None, tuple | None] = (None, None)  # the file read and its stamp
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFixedHeight(106)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.activate_button = QPushButton("Activate")
        self.activate_button.setToolTip("predict and fine-tune with the selected version from now on "
                                        "(bundled: back to the bundled model); written to the journal")
        self.activate_button.clicked.connect(self.activate_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh())
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.plot = RoundsPlot()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Models"))
        layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.activate_button)
        row.addWidget(self.refresh_button)
        layout.addLayout(row)
        layout.addWidget(self.details)
        layout.addWidget(self.plot)
        self._follow_timer = QTimer(self)
        self._follow_timer.setInterval(FOLLOW_MS)
        self._follow_timer.timeout.connect(self.follow_registry)
        self._follow_timer.start()

    def refresh(self, select: str | None = None) -> list[ModelSummary]:
        """Read the versions again; select ``select`` (default: the newest version)."""
        root = self.root()
        registry = api.registry_file(root) if root is not None else None
        self._registry = (registry, _stamp(registry))
        try:
            self.models = api.list_models(root) if root is not None else []
        except LNQError as exc:
            self.models = []
            self.details.setText(str(exc))
        else:
            self._follow_active()
        if root is None:  # not a workspace (any more): no details of the last one's versions
            self.details.setText("")
        self.table.setRowCount(len(self.models))
        for i, m in enumerate(self.models):
            for j, text in enumerate((m.version, m.parent or "", "*" if m.active else "", m.verdict)):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.plot.show_rounds(self.models)
        names = [m.version for m in self.models]
        if names:
            self.table.selectRow(names.index(select) if select in names else len(names) - 1)
        return self.models

    def follow_registry(self) -> bool:
        """Refresh when the registry changed on disk since the last refresh; the user's selection stays
        unless it was the newest version (then the newest is selected). True when it refreshed."""
        registry, stamp = self._registry
        if registry is None:  # not a workspace when last read: it may have become one since
            if self.root() is None:
                return False
            self.refresh()
            return True
        if _stamp(registry) == stamp:
            return False
        chosen = self.selected()
        newest = chosen is not None and self.models and chosen.version == self.models[-1].version
        self.refresh(select=None if chosen is None or newest else chosen.version)
        return True

    def _follow_active(self) -> None:
        active = next((m for m in self.models if m.active), None)
        now = None if active is None or active.version == "bundled" else active.model
        if now != self._active:
            self._active = now
            self.active_changed.emit(now)

    def selected(self) -> ModelSummary | None:
        rows = self.table.selectionModel().selectedRows()
        return self.models[rows[0].row()] if rows and rows[0].row() < len(self.models) else None

    def activate_selected(self) -> ModelSummary | None:
        """Activate the selected version for the user; returns its summary (None when nothing changed)."""
        chosen, root = self.selected(), self.root()
        if chosen is None or root is None:
            self.details.setText("choose a workspace and a model version first")
            return None
        try:
            active = api.activate_model(root, chosen.version, decided_by="user")
        except LNQError as exc:
            self.details.setText(str(exc))
            return None
        self.refresh(select=active.version)
        self._show_selected()  # its figures afresh: an earlier activation's line is not kept before them
        self.details.setText(f"{active.activation()}. {self.details.text()}")
        return active

    def _show_selected(self) -> None:
        m = self.selected()
        if m is not None:
            self.details.setText("  ".join(t for t in (m.missing(), m.before_after(), m.reason) if t))


class RoundsPlot(QWidget):
    """Dice and false nodes per case of each fine-tuned version (dots) and of its parent on the same
    held-out cases (rings), one column per version in the order they were made."""

    def __init__(self) -> None:
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 1.7), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setFixedHeight(150)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.rounds: list[str] = []

    def show_rounds(self, models: list[ModelSummary]) -> None:
        rounds = [m for m in models if m.dice is not None or m.false_nodes is not None]
        self.rounds = [m.version for m in rounds]
        self.figure.clear()
        if not rounds:
            empty = "no fine-tune yet: each version's Dice\nand false nodes per case show here"
            self.figure.text(0.5, 0.5, empty, ha="center", va="center", fontsize=8, color="gray")
            self.canvas.draw_idle()
            return
        axes = self.figure.subplots(1, 2)
        x = range(len(rounds))
        for ax, name, title in zip(axes, ("dice", "false_nodes"), ("Dice", "false nodes")):  # per case
            ax.plot(x, [_nan(getattr(m, name)) for m in rounds], "o-", color="tab:blue", ms=4,
                    label="version")
            ax.plot(x, [_nan(getattr(m, f"{name}_parent")) for m in rounds], "o", mfc="none",
                    color="tab:gray", ms=5, label="its parent")
            ax.set_title(title, fontsize=8)
            _y_range(ax, name, [_nan(getattr(m, n)) for m in rounds for n in (name, f"{name}_parent")])
            named = _named_rounds(len(rounds))
            ax.set_xticks(named, [_short(self.rounds[k]) for k in named], fontsize=7)
            ax.tick_params(labelsize=7)
        self.figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
                           fontsize=7, frameon=False)
        self.canvas.draw_idle()


#: The least Dice range a plot spans: 0.9566 and 0.9568 over the whole axis read as a clear drop.
DICE_SPAN = 0.05


def _y_range(ax, name: str, values: list[float]) -> None:
    """Dice over at least :data:`DICE_SPAN` (within 0..1); false nodes per case from 0 (never below)."""
    finite = [v for v in values if math.isfinite(v)]
    if name != "dice":
        ax.set_ylim(bottom=0.0)
        return
    if finite and max(finite) - min(finite) < DICE_SPAN:
        middle = min(max((max(finite) + min(finite)) / 2, DICE_SPAN / 2), 1 - DICE_SPAN / 2)
        ax.set_ylim(middle - DICE_SPAN / 2, middle + DICE_SPAN / 2)


#: Named versions lie at least this share of an axis apart (the narrowest panel holds four short ids).
NAMED_APART = 1 / 3


def _named_rounds(n: int) -> list[int]:
    """Which of ``n`` rounds are named on the axis: evenly spaced ones at least :data:`NAMED_APART` of the
    axis apart (all of them up to four), counted back from the newest, which is always named."""
    step = max(1, math.ceil((n - 1) * NAMED_APART - 1e-9))
    return list(range(n - 1, -1, -step))[::-1]


def _short(version: str) -> str:
    """A version id without the zeros that pad its number (m003 -> m3), to fit under the plot."""
    return re.sub(r"(?<=\D)0+(?=\d)", "", version)


#: How often (ms) the panel looks whether the registry changed on disk.
FOLLOW_MS = 1000


def _stamp(path: Path | None) -> tuple | None:
    """What tells a rewritten file from the last one read (None: no such file)."""
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return None if info is None else (info.st_ino, info.st_mtime_ns, info.st_size)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
