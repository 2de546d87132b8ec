"""Review: a workspace's queue of cases worth reviewing next (open one in a click), fine-tuning, and
the workspace's model versions (:class:`~lnq_napari.plugin.widgets.models.ModelsPanel`: verdicts,
figures over rounds, Activate).

The form (workspace folder, strategy, number of cases, iterations, folds) is magicgui. Both long jobs run in
napari thread workers with a progress bar and Cancel; the widget only forwards to
:func:`lnq_napari.api.next_cases` and :func:`lnq_napari.api.finetune`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout

from lnq_napari import api
from lnq_napari.active import STRATEGIES, RankedCase
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.finetuning import FinetuneConfig, FinetuneResult
from lnq_napari.heard import collected_warnings, texts
from lnq_napari.model.names import short_model_name
from lnq_napari.plugin._case import add_case, ct_grid, nodes_layer_data, read_case, resumed
from lnq_napari.plugin._layers import ROLE_KEY
from lnq_napari.plugin._session import NODES_NAME, SESSION_KEY, attach_suggestions, session_for
from lnq_napari.plugin.widgets._common import WorkerWidget, busy, compact, widen_opened_cts
from lnq_napari.plugin.widgets.models import ModelsPanel
from lnq_napari.wording import count
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.recovery import edits_open_elsewhere, remove_saved_autosaves, unsaved_edits
from lnq_napari.workspace.registry import NNUNET, is_nnunet_version, shown_parent
from lnq_napari.workspace.review_stats import REVIEW_ACTION, summarize

#: The status line after Cancel: our fine-tune resumes, an nnU-Net fine-tune (api.finetune refuses
#: ``resume`` for it) is run again.
CANCELLED = {"rank": "cancelled",
             "finetune": "cancelled (`lnq-napari finetune --resume` continues a cancelled fine-tune)",
             NNUNET: "cancelled (an nnU-Net fine-tune does not resume: Fine-tune again starts it over; "
                     "`lnq-napari finetune` without --resume)"}


class ReviewWidget(WorkerWidget):
    """Workspace folder -> ranked review queue, Open case, Fine-tune (progress, Cancel)."""

    def __init__(self, napari_viewer, workspace=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        widen_opened_cts(napari_viewer)  # File > Open of a CT beside this tab alone
        self.rows: list[RankedCase] = []
        self.suggesting = None  # the thread worker finding the opened case's suggestions
        self._predictor: tuple[str | Path, object] | None = None  # (model, loaded predictor)
        self._predicting = threading.Lock()  # one prediction at a time (a case opened while one runs)
        self._sessions: list[str] = []  # the autosave sessions of the cases this tab opened (its window's)
        self.form = Container(widgets=[
            FileEdit(name="workspace", label="workspace", mode="d", nullable=True,
                     value=getattr(workspace, "root", workspace),
                     tooltip="workspace folder (lnq-napari workspace init)"),
            ComboBox(name="strategy", label="strategy", choices=tuple(STRATEGIES), value="uncertainty"),
            SpinBox(name="n", label="cases", min=1, max=100, value=5),
        ])
        self.form.margins = (0, 0, 0, 0)
        self.form.workspace.line_edit.native.setPlaceholderText("lnq-napari workspace init makes one")
        self.form.workspace.choose_btn.text = "..."  # narrow, for the panel
        self.form.workspace.choose_btn.tooltip = "choose a workspace folder"
        self.rank_button = QPushButton("Rank cases")
        self.rank_button.clicked.connect(self.rank)
        self.queue = QListWidget()
        self.queue.setMaximumHeight(110)
        self.queue.itemDoubleClicked.connect(lambda item: self.open_selected())
        self.open_button = QPushButton("Open case")
        self.open_button.clicked.connect(self.open_selected)
        self.iterations = SpinBox(label="iterations", min=1, max=100000, value=200,
                                  tooltip="fine-tuning iterations")
        self.folds = SpinBox(label="folds", min=1, max=5, value=FinetuneConfig().folds,
                             tooltip="1: hold out a fifth of the corrected cases to judge the new version; "
                                     "k >= 2: cross-fit, every new corrected case judged by one of k models "
                                     "trained without it (k + 1 trainings; worth it on a GPU)")
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(self.finetune)
        self.stats = QLabel("")
        self.stats.setWordWrap(True)
        self.stats.setToolTip("time since the case was opened, suggestions accepted / rejected, mouse "
                              "clicks and review keys; each Save writes them to the workspace journal")
        self._cancelled = CANCELLED["rank"]
        self._journal_stamp: tuple | None = None
        self._summary = ""
        self._stats_ws = None  # (folder, its Workspace or None) for the statistics timer
        self._stats_timer = QTimer(self)
        self._stats_timer.setInterval(1000)
        self._stats_timer.timeout.connect(self.refresh_stats)
        self._stats_timer.start()

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.rank_button)
        layout.addWidget(self.queue)
        layout.addWidget(self.open_button)
        tuning = Container(widgets=[self.iterations, self.folds])  # one per row: the panel stays narrow
        tuning.margins = (0, 0, 0, 0)
        layout.addWidget(tuning.native)
        row = QHBoxLayout()
        row.addWidget(self.finetune_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.stats)
        self.models = ModelsPanel(self.workspace_or_none)
        self.models.active_changed.connect(self._show_active)
        layout.addWidget(self.models)
        self.form.workspace.changed.connect(lambda value=None: self._workspace_changed())
        self.models.refresh()
        self.refresh_stats()
        compact(self)

    def _workspace_changed(self) -> None:
        """Another workspace: its models, and no queue ranked in the last one (Open case opened a case of
        this name from the new workspace by the old ranking)."""
        self.rows = []
        self.queue.clear()
        self.models.refresh()

    def workspace(self) -> Workspace:
        """The open :class:`~lnq_napari.workspace.Workspace` (LNQError when the folder is not one)."""
        folder = self.form.workspace.value
        if folder is None:
            raise LNQError("choose a workspace folder first (`lnq-napari workspace init` makes one)")
        return Workspace.open(folder)

    def workspace_or_none(self) -> Path | None:
        """The workspace folder, or None when none is chosen or it is not a workspace."""
        try:
            return self.workspace().root
        except LNQError:
            return None

    def _root(self) -> Path | None:
        """The workspace folder, or None (and why, in the status line) when there is none."""
        try:
            return self.workspace().root
        except LNQError as exc:
            self.status.setText(str(exc))
            return None

    # --- long jobs in a worker ----------------------------------------------------------------------
    def _start(self, body, on_done, saying: str, cancelled: str = CANCELLED["rank"]):
        from napari.qt.threading import create_worker

        if self.worker is not None:
            return self.worker
        self._cancel.clear()
        self._cancelled = cancelled  # the status line if Cancel stops this job
        connect = {"returned": on_done, "errored": self._failed, "finished": self._finished}
        self.worker = create_worker(body, _connect=connect, _start_thread=False)
        for button in (self.rank_button, self.finetune_button):  # Open case stays, as a double-click does
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(saying)
        self.worker.start()
        return self.worker

    def rank(self):
        """Rank the workspace's uncorrected cases; returns the worker (None when nothing ran)."""
        root = self._root()
        if root is None:
            return None
        strategy, n = self.form.strategy.value, self.form.n.value
        emit = self._signals.changed.emit
        cancel = self._cancel.is_set

        def progress(fraction: float, message: str = "") -> None:
            if cancel():
                raise Cancelled("ranking cancelled")
            emit(fraction, message)

        def body() -> tuple[list[dict], list[str]]:
            with collected_warnings() as heard:  # a case left out of the ranking: in the status
                try:
                    rows = api.next_cases(root, n=n, strategy=strategy, progress=progress)
                except LNQError as exc:  # no case ranked: the warnings say why, in the same line
                    raise LNQError("; ".join([str(exc), *texts(heard)])) from None
            return rows, texts(heard)

        return self._start(body, lambda done: self._show_queue(*done), "ranking cases ...")

    def finetune(self):
        """Fine-tune the workspace's active model on its corrections; returns the worker."""
        root = self._root()
        if root is None:
            return None
        iterations, config = self.iterations.value, FinetuneConfig(folds=self.folds.value)
        nnunet = is_nnunet_version(Workspace.open(root).active_model())  # as api.finetune routes

        def body() -> tuple[FinetuneResult, list[str]]:
            with collected_warnings() as heard:  # an interrupted fine-tune discarded ...: in the status
                result = api.finetune(root, config=config, iterations=iterations,
                                      progress=self._signals.changed.emit, cancel=self._cancel.is_set)
            return result, texts(heard)

        return self._start(body, lambda done: self._show_finetune(*done), "fine-tuning ...",
                           CANCELLED[NNUNET if nnunet else "finetune"])

    # --- results on the GUI thread ------------------------------------------------------------------
    def _show_queue(self, rows: list[RankedCase], notes: list[str] = ()) -> None:
        self.rows = rows
        self.queue.clear()
        for r in rows:
            text = (f"{r.rank}. {r.case}  score {r.score:.3f}, {r.uncertain_nodes} unsure of "
                    f"{count(r.predicted_nodes, 'node')}, {r.incomplete_nodes} "
                    f"{'outline' if r.incomplete_nodes == 1 else 'outlines'} incomplete")
            self.queue.addItem(text)
            self.queue.item(self.queue.count() - 1).setToolTip(text)  # the panel cuts it
        if rows:
            self.queue.setCurrentRow(0)
        self.progress.setValue(100)
        said = [f"{len(rows)} case{'s' if len(rows) != 1 else ''} to review, best first"] if rows else []
        self.status.setText("; ".join([*said, *notes]) or "nothing left to review")

    def _show_finetune(self, result: FinetuneResult, notes: list[str] = ()) -> None:
        self.progress.setValue(100)
        self.models.refresh(select=result.new_version)  # its before/after figures, verdict, the plot
        state = "activated" if result.activated else "kept the previous model"
        # one line: the rule's reason, often 14 lines, is in the versions' details below (said twice, it
        # pushed the table, Activate and the plot out of view)
        self.status.setText("\n".join([f"{result.new_version}: {state} (the rule's figures and reason: "
                                       "below)", *(f"note: {note}" for note in notes)]))

    def _show_active(self, _folder=None) -> None:
        """The status line follows an activation (here, by the rule, or in another window)."""
        active = next((m.version for m in self.models.models if m.active), None)
        if active is not None and not self.status.text().startswith(f"{active}: activated"):
            self.status.setText(f"{active} is the active model: it predicts and is fine-tuned next")

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self.status.setText(self._cancelled)
        else:
            self.status.setText(f"failed: {exc}")

    def _finished(self) -> None:
        self.worker = None
        for button in (self.rank_button, self.finetune_button):  # Open case stays, as a double-click does
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # --- open a case --------------------------------------------------------------------------------
    def open_selected(self) -> Path | None:
        """Open the selected queue case; returns its CT path (None when nothing was opened)."""
        index = self.queue.currentRow()
        if not 0 <= index < len(self.rows):
            self.status.setText("rank the cases, then pick one")
            return None
        return self.open_case(self.rows[index].case)

    def open_case(self, case: str) -> Path | None:
        """Replace the viewer's case with ``case`` from the workspace: its CT and newest labels
        (correction, else prediction, else the original). Refuses while the open case has unsaved edits;
        a Save still running (Save, then at once the next case) is waited for. Seconds on a full-size CT:
        "opening ..." and the wait cursor show meanwhile."""
        with busy(self.status, f"opening {case} ..."):
            return self._open_case(case)

    def _open_case(self, case: str) -> Path | None:
        try:
            ws = self.workspace()
            sessions = [(ly.name, s) for ly in list(self.viewer.layers)
                        if (s := ly.metadata.get(SESSION_KEY)) is not None]
            saving = [name for name, s in sessions if not s.wait_for_save()]
            if saving:
                raise LNQError(f"{saving[0]!r} is still being saved (the workspace may be busy in another "
                               "window): open the case once the Save widget says saved")
            unsaved = [name for name, s in sessions if s.unsaved]
            if unsaved:
                raise LNQError(f"{unsaved[0]!r} has unsaved edits: select it and Save them, or delete the "
                               "layer to set them aside (autosaved: they come back when the case opens)")
            prov = ws.preferred_version(case, ("correction", "prediction"))
            seg = ws.label_path(case, prov["version"]) if prov else ws.seg_path(case)
            ct_data, seg_data = read_case(ws.ct_path(case), seg)
            own = (*self._sessions, *(s.autosaver.files.id for _, s in sessions if s.autosaver is not None))
            shown_labels, reference = None if seg_data is None else seg_data[0], ct_grid(ct_data)
            restored = unsaved_edits(ws, case, seg, shown_labels, prov, reference=reference, own=own)
            elsewhere = edits_open_elsewhere(ws, case, seg, shown_labels, prov, reference=reference, own=own)
            opened = prov or ws.latest_version(case, "original")  # on screen: the next Save's parent
            if restored:  # made on the version the autosave names, with the marks and rejections autosaved
                opened = restored.opened(opened)
            lost = resumed(opened).note if opened else ""  # what cannot be resumed, before layers go
        except LNQError as exc:
            self.status.setText(str(exc))
            return None
        closing = [ly for ly in self.viewer.layers if ly.metadata.get(ROLE_KEY) is not None]
        for layer in closing:
            if (session := layer.metadata.get(SESSION_KEY)) is not None:
                session.release()
        for layer in closing:
            self.viewer.layers.remove(layer)
        remove_saved_autosaves(ws, case, seg, shown_labels, prov, reference=reference, own=own)  # leftovers
        shown = nodes_layer_data(restored.labels, source=restored.path) if restored else seg_data
        _, nodes = add_case(self.viewer, ct_data, shown, workspace=ws, opened=opened, case=case)
        cases = [r.case for r in self.rows]
        if case in cases:
            self.queue.setCurrentRow(cases.index(case))
        said = f"opened {case}" + (f" ({prov['source']} {prov['version']})" if prov else "")
        if nodes is not None and (saver := getattr(nodes.metadata.get(SESSION_KEY), "autosaver", None)):
            self._sessions.append(saver.files.id)  # its own: set aside (its layer deleted), never another's
        if restored:
            session = nodes.metadata[SESSION_KEY]
            session.mark_unsaved()  # until Save: the guard keeps them
            if session.autosaver is not None:  # kept in that file until an edit, then in this session's
                session.autosaver.restored_from(restored.path, {"marked": restored.marked,
                                                                 "rejected": restored.rejected})
            said += (f" with the unsaved edits autosaved in {restored.path}: Save keeps them; to drop them, "
                     "delete that file before editing, delete the node layer and open the case again")
            base = restored.base
            if base is not None and prov is not None and base["version"] != prov["version"]:
                said += (f" (they were made on {base['version']}; {prov['source']} {prov['version']} "
                         "was saved since: Save puts them on top)")
            said += f"; {restored.others_note()}" if restored.others else ""
        said += f"; {lost}" if lost else ""
        said += f"\nnote: {elsewhere}" if elsewhere else ""
        self.status.setText(said)
        if nodes is not None:
            self._find_suggestions(ws, nodes, said)
        return ws.ct_path(case)

    def _find_suggestions(self, ws: Workspace, nodes, said: str) -> None:
        """Predict the opened case with the workspace's model in a thread worker and show its suggestions
        beside the opened labels (:func:`~lnq_napari.plugin._session.attach_suggestions`); the labels stay
        editable meanwhile, and a case opened before it ends drops its result."""
        from napari.qt.threading import create_worker

        session = nodes.metadata[SESSION_KEY]
        try:
            ct = session.ct_volume()
            path, version = ws.prediction_model()
        except LNQError:
            return
        worker = None

        def stale() -> bool:  # the widget went, or another case opened
            return self._closed.is_set() or self.suggesting is not worker

        def body() -> api.NodeResult:
            with self._predicting, collected_warnings():  # the node table's warnings: the suggestions are
                # what this is for (the case's own warnings come with Find nodes)
                if self._predictor is None or self._predictor[0] != path:  # ids repeat across workspaces
                    self._predictor = (path, api.load_predictor(path))
                return api.find_nodes(ct, self._predictor[1], cancel=stale)

        def done(result: api.NodeResult) -> None:
            if stale() or nodes not in self.viewer.layers or nodes.name != NODES_NAME or \
                    nodes.metadata.get(SESSION_KEY) is not session:  # closed, or Find nodes put it aside
                return
            n = attach_suggestions(self.viewer, session, result)
            model = short_model_name(shown_parent(version))  # as the Models table names it: "bundled"
            self.status.setText(f"{said}; {n} suggestion{'s' if n != 1 else ''} of model {model}"
                                + (": N / Shift+N step through them, A accepts, R rejects" if n else ""))

        def failed(exc: Exception) -> None:
            if not isinstance(exc, Cancelled) and self.suggesting is worker:
                self.status.setText(f"{said}; no suggestions ({exc})")

        def finished() -> None:
            if self.suggesting is worker:
                self.suggesting = None

        worker = create_worker(body, _connect={"returned": done, "errored": failed, "finished": finished},
                               _start_thread=False)
        self.suggesting = worker
        self.status.setText(f"{said}; finding suggestions ...")
        worker.start()

    def open_next(self) -> Path | None:
        """Open the queue case after the one on screen (the selected one when the case on screen is not
        in the queue); refused while the open case has unsaved edits."""
        if not self.rows:
            self.status.setText("rank the cases first (Rank cases)")
            return None
        session = session_for(self.viewer, create=False)
        cases = [r.case for r in self.rows]
        current = session.case if session is not None else None
        index = cases.index(current) + 1 if current in cases else max(self.queue.currentRow(), 0)
        if index >= len(cases):
            self.status.setText("end of the review queue: Rank cases again for more")
            return None
        return self.open_case(cases[index])

    # --- statistics -------------------------------------------------------------------------------
    def refresh_stats(self) -> str:
        """Show the open case's review figures and the workspace's saved reviews (from the journal)."""
        session = session_for(self.viewer, create=False)
        case = f"this case: {session.stats.text()}" if session is not None else "no case open"
        folder = self.form.workspace.value
        if self._stats_ws is None or self._stats_ws[0] != folder:  # opened once per folder, not every second
            try:
                self._stats_ws = (folder, self.workspace())
            except LNQError:  # not (yet) a workspace: tried again next time
                self._stats_ws = None
        ws = self._stats_ws[1] if self._stats_ws is not None else None
        journal = ws.journal_path if ws is not None else None
        stamp = (str(journal), journal.stat().st_mtime_ns) if journal and journal.exists() else None
        if stamp != self._journal_stamp:  # read the journal again only when it changed
            self._journal_stamp = stamp
            self._summary = summarize(ws.journal(REVIEW_ACTION)).text() if stamp else ""
        text = case + (f"\nworkspace: {self._summary}" if self._summary else "")
        self.stats.setText(text)
        return text
