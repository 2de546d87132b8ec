"""The Workspace: one folder tying cases, label versions, journal, model registry and cache together.

Layout of a workspace folder ``W``::

    W/workspace.json                 cases: id -> ct, seg (original partial labels), full (phantom truth)
    W/labels/<case>/vNNN.seg.nrrd    one file per label version (never overwritten)
    W/labels/<case>/vNNN.json        its provenance; a label file without one is ignored (crash leftover)
    W/journal.jsonl                  append-only, one JSON object per action
    W/models/registry.json           model versions (id, path, parent, training cases, metrics, active)
    W/models/<version>/              weights.safetensors + config.json
    W/cache/                         derived data (review scores per model version); safe to delete
    W/autosave/                      crash autosaves of cases opened from the workspace

Crash safety: every file is written to a temp file and renamed. Processes share a workspace safely: label
numbers are taken by exclusive create, and the registry, journal and cache are changed under the
workspace's cross-process lock (:mod:`lnq_napari.workspace.lock`). A label version is committed by its
provenance file, written after the label file and before the journal line, so a process killed at any
moment loses at most the version in flight; one killed between the commit and the line has the line
written by the next save, or opening or journal read that finds the lock free
(:mod:`lnq_napari.workspace.save_lines`). The journal tolerates a torn last line. Each job lives in its
own module (cases, labels, journal, save lines, registry, cache); this class only opens, creates and
delegates.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shlex
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import (
    check_folder_writable,
    check_output_folder,
    remove_stale_temps,
    staging_folder,
    write_error,
)
from lnq_napari.io.dicom_series import dicom_source
from lnq_napari.io.dicom_tree import series_in
from lnq_napari.io.geometry import box_within, check_same_grid, pasted_box, reordered_onto
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.io.volume import Volume, grid_only
from lnq_napari.model import bundled_model_path
from lnq_napari.model.nnunet_folder import NnunetModelSpec, model_spec
from lnq_napari.workspace.cache import Cache
from lnq_napari.workspace.cases import (
    CaseTable,
    TimePoint,
    check_same,
    check_still_there,
    gone_error,
    is_workspace,
    new_meta,
    read_meta,
    workspace_gone,
    workspace_id,
    write_meta,
)
from lnq_napari.workspace.journal import Journal
from lnq_napari.workspace.labels import FolderReplaced, LabelStore, Unrecorded, check_source
from lnq_napari.workspace.lock import RunLock, WorkspaceLock, not_writable
from lnq_napari.workspace.registry import (
    PENDING,
    REGISTRY_FILE,
    ModelRegistry,
    ModelSummary,
    check_outside_model,
    model_kind,
)
from lnq_napari.workspace.repair import PERMISSION_PROBLEM, Repair, plan_repair, repair_store
from lnq_napari.workspace.save_lines import SaveLines

LABELS_DIR, JOURNAL_FILE, MODELS_DIR, CACHE_DIR = "labels", "journal.jsonl", "models", "cache"
#: The staging folders :meth:`Workspace.init` builds in (``.<name>.init-<8 random characters>``); one left
#: by a killed init is removed by a later init in the same folder once it is stale.
STAGING_NAME = re.compile(r"^\..+\.init-[a-z0-9_]{8}$")


class Workspace:
    """A workspace folder. Create with :meth:`init`, open with :meth:`open`."""

    def __init__(self, root: Path, meta: dict) -> None:
        self.root = Path(root)
        self.meta = meta
        self.id = workspace_id(meta)  # which workspace this is, wherever it moves (cases.workspace_id)
        self.cases = CaseTable(meta["cases"], self.root, meta.get("root"))
        self.registry = ModelRegistry(self.root / MODELS_DIR, self.root)
        self.cache = Cache(self.root / CACHE_DIR)
        self._journal = Journal(self.root / JOURNAL_FILE)
        self._saves = SaveLines(self.root, self.root / LABELS_DIR, self._journal)
        self._lock = WorkspaceLock(self.root)  # across threads and processes; reentrant
        self._ct_grids: dict[str, Volume] = {}  # case -> its CT's grid (no voxels), read once

    def __repr__(self) -> str:  # a notebook cell's last line: where, how many cases, which model predicts
        try:
            active = (self.registry.active() or {}).get("id", "bundled")
        except (LNQError, OSError, ValueError):  # a damaged registry: the repr still shows the folder
            active = "unreadable"
        n = len(self.case_ids())
        return f"Workspace({str(self.root)!r}, {n} case{'s' if n != 1 else ''}, active model {active})"

    # ------------------------------------------------------------ create / open
    @classmethod
    def open(cls, path: str | Path, expected_id: str | None = None) -> Workspace:
        """Open an existing workspace (and write the journal line a killed save left missing, unless
        another program holds the lock: then a later writer does); LNQError when ``path`` is not one.

        ``expected_id``: the identity (:func:`~lnq_napari.workspace.cases.workspace_id`) of the workspace
        opened from ``path`` before (a case open in the viewer); the one 'is gone from there' LNQError
        when that workspace is no longer there (moved away, another workspace made at the path since)."""
        try:
            meta = read_meta(path)
        except LNQError:
            if expected_id is not None and workspace_gone(path, expected_id):
                raise gone_error(path) from None
            raise
        check_same(path, meta, expected_id)
        ws = cls(Path(path), meta)
        ws._recover_save_line()
        return ws

    @classmethod
    def init(
        cls, path: str | Path, data: str | Path, progress: Callable[[float, str], None] | None = None
    ) -> Workspace:
        """Create a workspace over ``data``; original partial labels become version v001 of each case.

        Built in a hidden sibling folder and renamed into place, so a crash leaves nothing half made;
        such a folder a killed init left is removed here once stale (unchanged for ``STALE_SECONDS``; a
        build touches its folder at every case, so another init still running is never taken for one).
        """
        check_output_folder(path, "the workspace path", "the workspace", probe=False)  # a file in the way, ""
        root = Path(path)
        _check_new_root(root)
        target = _real_root(root)  # a symlink (to an empty folder, or one to make): made where it points
        _check_not_inside_workspace(root, target)
        check_folder_writable(target.parent, "the workspace path", "the workspace", shown=root)  # staging
        meta = new_meta(data, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, pattern=STAGING_NAME)
        staging = staging_folder(target.parent, f".{target.name}.init-")
        try:
            cls._build(staging, meta, progress)
            try:
                with contextlib.suppress(FileNotFoundError):  # a second init took it away meanwhile
                    target.rmdir()
                os.replace(staging, target)
            except OSError as exc:  # another program (a second `workspace init`) filled it meanwhile
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise LNQError(f"{root} was filled by another program while the workspace was made (a "
                               "second `workspace init`?); open the workspace there, or choose a new "
                               "folder") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if progress:
            progress(1.0, f"{len(meta['cases'])} cases")
        return cls(root, meta)

    @classmethod
    def _build(cls, folder: Path, meta: dict, progress: Callable[[float, str], None] | None) -> None:
        write_meta(folder, meta)
        ws = cls(folder, meta)
        ws.registry.create()
        with_seg = [c for c in ws.case_ids() if ws.seg_path(c)]
        for i, case in enumerate(with_seg):
            if progress:
                progress(i / len(with_seg), f"importing labels of {case}")
            ws._import_original(case)
            os.utime(folder)  # still being built: never stale to another init in the same folder
        ws.log("init", data=meta["data"], cases=len(meta["cases"]), with_labels=len(with_seg))

    def _import_original(self, case: str) -> str:
        try:  # the data folder holds hundreds of cases: the one at fault is named
            labels = read_labels(self.seg_path(case), reference=self.read_ct(case))
        except LNQError as exc:
            raise LNQError(f"case {case}: {exc}") from exc
        made_by = labels.meta.get("model_version")  # a SEG our model made: exported as it came (AUTOMATIC,
        edits = int(bool(labels.meta.get("model_edited")))  # or SEMIAUTOMATIC when a reader edited it)
        return self.add_label_version(case, labels, "original", model_version=made_by, edits=edits, log=False)

    # ------------------------------------------------------------ cases
    def case_ids(self) -> list[str]:
        return self.cases.ids()

    def ct_path(self, case: str) -> Path:
        return self.cases.ct_path(case)

    def case_of(self, ct: str | Path) -> str | None:
        """The case whose CT is ``ct`` (its file or DICOM folder; a slice of the series, a CD's DICOMDIR),
        or None: a CT opened from a download is its case by path, not by its folder's name."""
        target = dicom_source(ct).resolve()
        return next((c for c in self.case_ids() if self.ct_path(c).resolve() == target), None)

    def seg_path(self, case: str) -> Path | None:
        return self.cases.seg_path(case)

    def full_path(self, case: str) -> Path | None:
        """Complete truth (phantom only). For benchmarks; fine-tuning never reads it."""
        return self.cases.full_path(case)

    def group_cases(self, points: list[TimePoint]) -> None:
        """Record which patient and time point each case is (``workspace.json``, atomically, under the
        lock; every case checked before anything is written); journaled as ``group``."""
        self._check_present()  # not into another workspace made at its path since
        with self._lock:
            meta = read_meta(self.root)  # another process may have changed it
            check_same(self.root, meta, self.id)  # or made another workspace there since the check above
            table = CaseTable(meta["cases"], self.root, meta.get("root"))
            twice = sorted(case for case, n in Counter(p.case for p in points).items() if n > 1)
            if twice:
                raise LNQError(f"case {twice[0]} is listed more than once; give each case one row")
            for point in points:
                table.set_time_point(point)
            table.check_time_points()
            write_meta(self.root, meta)
            self.meta, self.cases = meta, table
            self.log("group", cases=len(points), patients=len({p.patient for p in points}))

    def time_points(self, patient: str | None = None) -> list[TimePoint]:
        """The grouped cases (of ``patient``, or all), by patient and time point, as ``workspace.json``
        says now (another process may have grouped them since this one opened the workspace)."""
        return CaseTable(read_meta(self.root)["cases"], self.root).time_points(patient)

    def existing_ct_path(self, case: str) -> Path:
        """``case``'s CT file; LNQError naming the case and what to do when it is gone."""
        path = self.ct_path(case)
        if not path.exists():
            raise LNQError(f"the CT of case {case} is gone from {path}; put it back (or, for a moved data "
                           "folder, move the workspace with it), or make a new workspace over the data")
        return path

    def read_ct(self, case: str) -> Volume:
        ct = read_volume(self.existing_ct_path(case))
        self._ct_grids[case] = grid_only(ct)
        return ct

    def ct_grid(self, case: str) -> Volume:
        """The grid of ``case``'s CT (read once per workspace object; its voxels are not kept)."""
        if case not in self._ct_grids:
            self.read_ct(case)
        return self._ct_grids[case]

    def series_note(self, case: str, labels: Volume) -> str:
        """For a refusal of ``labels`` off ``case``'s CT grid: when the case's CT folder holds several DICOM
        series, a clause saying the labels may lie on another of them (an lnq-napari before the axial
        series was preferred read the largest, a reformat included); "" otherwise or on the CT's grid."""
        path = self.existing_ct_path(case)
        if labels.same_grid(self.ct_grid(case)) or not path.is_dir() or len(series_in(path, True)) < 2:
            return ""
        return (f" ({path.name} holds {len(series_in(path, True))} DICOM series and its CT is read from one: "
                "labels saved when an earlier lnq-napari read another, such as a larger coronal or sagittal "
                "reformat, lie on that one's grid)")

    def onto_ct_grid(self, case: str, labels: Volume) -> Volume:
        """``labels`` stored on ``case``'s CT grid when they sample its very points in another axis order or
        direction (a copy saved RAS-flipped or z-first: transposed and flipped, nothing resampled), or a
        box lying wholly inside it (labels cropped: pasted in place, zeros around); else as given
        (:meth:`add_label_version` refuses another grid). LNQError, saying how many, when such a box has
        labelled voxels beyond the CT: never a voxel dropped."""
        grid = self.ct_grid(case)
        if labels.same_grid(grid):
            return labels
        reordered = reordered_onto(grid, labels)
        if reordered is not None:
            return reordered
        pasted = pasted_box(grid, labels)
        if pasted is not None and pasted[1]:
            total = int((labels.array != 0).sum())
            raise LNQError(f"the labels to save for {case} are a box of its CT's grid reaching past its "
                           f"edge, with {pasted[1]} of their {total} labelled voxels beyond the CT; nothing "
                           "is saved: draw the labels on this case's CT, or remove the voxels beyond it")
        if pasted is None or not box_within(grid, labels):
            return labels  # a box reaching past the CT (two axes swapped under the same header): refused
        return pasted[0]

    # ------------------------------------------------------------ label versions
    def label_store(self, case: str) -> LabelStore:
        """The label versions of ``case``; LNQError when the case is not in the workspace."""
        self.cases.entry(case)
        return LabelStore(self.root / LABELS_DIR, case, make_root=False)  # never a moved one's again

    def versions(self, case: str) -> list[dict]:
        """Committed label versions of ``case`` (provenance dicts), oldest first.

        A label file without provenance, or whose size does not match it, is skipped.
        """
        return self.label_store(case).versions()

    def add_label_version(
        self, case: str, labels: Volume, source: str, model_version: str | None = None, edits: int = 0,
        parent: str | None = None, log: bool = True, **fields,
    ) -> str:
        """Store ``labels`` as a new version of ``case``; returns its id (``"v002"``).

        ``source`` is one of original, prediction, correction, autosave. ``parent`` defaults to the
        latest committed version. Extra keyword fields are kept in the provenance.
        """
        check_source(source)
        self._check_present()
        store = self.label_store(case)
        labels = self.onto_ct_grid(case, labels)
        check_same_grid(self.ct_grid(case), labels, what=f"the labels to save for {case} and its CT",
                        fix="save labels drawn on this case's CT, or resample them onto it (io.align_to)"
                        + self.series_note(case, labels))
        # the number is taken by exclusive create: no lock held while the label file is written; the
        # commit and its journal line are one step under the lock
        try:
            saved = store.add(labels, source, model_version=model_version, edits=edits, parent=parent,
                              committing=self._committing if log else None, **fields)
        except (FolderReplaced, FileNotFoundError) as exc:  # its folder moved away, or another put there
            if isinstance(exc, FolderReplaced) or workspace_gone(self.root, self.id):
                raise gone_error(self.root) from exc
            raise
        return saved.version

    @contextlib.contextmanager
    def _committing(self, prov: dict) -> Iterator[None]:
        """Around a label version's commit (:meth:`SaveLines.committing`), under the lock: first the check
        that this is still the workspace opened (moved away, or another made at its path, while the label
        file was written: refused, and the uncommitted version removed)."""
        with self._lock:
            self._check_present()
            with self._saves.committing(prov):
                yield

    def latest_version(self, case: str, source: str | tuple[str, ...] | None = None) -> dict | None:
        """Provenance of the newest version (optionally of a given source), or None."""
        return self.label_store(case).latest(source)

    def preferred_version(self, case: str, sources: tuple[str, ...]) -> dict | None:
        """Provenance of the newest version of the first of ``sources`` the case has (a reviewer's
        correction before any prediction: a prediction stored while a correction was written took a
        higher number, and must not hide it; of predictions, the active model's first), or None."""
        for source in sources:
            found = (self._latest_prediction(case) if source == "prediction"
                     else self.latest_version(case, source))
            if found is not None:
                return found
        return None

    def _latest_prediction(self, case: str) -> dict | None:
        """The newest prediction of the model the workspace predicts with now, else the newest of any (a
        rolled-back version's prediction is not what the reviewer should correct while one of the active
        model's is there)."""
        try:
            key = self.prediction_model()[1]
        except LNQError:
            key = None
        mine = [v for v in self.versions(case)
                if v["source"] == "prediction" and v.get("model_version") == key]
        return mine[-1] if mine else self.latest_version(case, "prediction")

    def version_info(self, case: str, version: str) -> dict:
        return self.label_store(case).info(version)

    def label_path(self, case: str, version: str) -> Path:
        """The file of one label version."""
        return self.label_store(case).path(version)

    def read_labels(self, case: str, version: str) -> Volume:
        """The label volume of one version."""
        return self.label_store(case).read(version)

    def latest_labels(self, case: str, source: str | tuple[str, ...] | None = None) -> Volume | None:
        """The newest label volume (optionally of a given source), or None when there is none."""
        prov = self.latest_version(case, source)
        return None if prov is None else self.read_labels(case, prov["version"])

    def corrected_cases(self) -> list[str]:
        """Cases with at least one correction."""
        return [c for c in self.case_ids() if self.latest_version(c, "correction") is not None]

    def warn_lost_corrections(self, done: str) -> None:
        """A warning for each correction whose label file is gone or damaged (deleted or changed by hand:
        :meth:`LabelStore.lost`), or whose provenance is (:meth:`LabelStore.unrecorded`: a label file
        whose header does not say it is another source), which the work ``done`` ("fine-tuned") goes on
        without: only one newer than the correction the work takes (a later intact correction replaces
        an older lost one)."""
        for case in self.case_ids():
            store = self.label_store(case)
            lost = [prov for prov in store.lost() if prov.get("source") == "correction"]
            unrecorded = [u for u in store.unrecorded() if u.source in (None, "correction")]
            used = _version_number(store.latest("correction")) if lost or unrecorded else -1
            for prov in lost:
                if _version_number(prov) > used:
                    warnings.warn(f"case {case}: the file of correction {prov.get('version')} "
                                  f"({prov['file']}) is gone or damaged; {done} without it (restore the file "
                                  "to use it)", UserWarning, stacklevel=3)
            for found in unrecorded:
                if _version_number({"version": found.side.stem}) > used:
                    warnings.warn(self._unrecorded_line(case, found, done), UserWarning, stacklevel=3)

    def _unrecorded_line(self, case: str, found: Unrecorded, done: str) -> str:
        """The warning of a label file that is no version (:meth:`LabelStore.unrecorded`) and its fix: repair
        when it can rebuild the provenance (:func:`~lnq_napari.workspace.repair.plan_repair`, nothing
        written), else why not and what to do."""
        what, side = "correction" if found.source else "label file", found.side.name
        said = (f"case {case}: the {what} {found.path} is not a saved version, since its provenance {side} "
                f"{found.why}; {done} without it")
        plan = plan_repair(self.label_store(case), found, lambda: self.ct_grid(case), self.ct_path(case))
        if found.kind == "unreadable":  # another account's file: not damage, nothing to restore
            return f"{said} ({side} is {PERMISSION_PROBLEM}: {plan.fix})"
        if not plan.rebuildable:  # torn, another case's: repair would leave it alone
            return f"{said} ({plan.why}; {plan.fix}; or restore it and {side} from a backup)"
        repair = f"lnq-napari workspace repair {shlex.quote(str(self.root))}"
        unwanted = f"; delete {shlex.quote(str(found.path))} if it is not wanted"
        return (f"{said} (restore {side} from a backup, or run {repair} to rebuild it from the file's "
                f"header{unwanted})")

    def repair_labels(self, case: str | None = None, dry_run: bool = False) -> list[Repair]:
        """Rebuild the ``vNNN.json`` of each label file (of ``case``, or of every case) whose own is missing
        or damaged from the file's header (:func:`~lnq_napari.workspace.repair.repair_store`), case by case
        under the workspace's lock, each case journaled as it is done; one
        :class:`~lnq_napari.workspace.repair.Repair` per such file (those left alone say why; a case folder
        that cannot be written is one, left alone). ``dry_run``: what would be done, nothing written (a
        read-only workspace too). Nothing to repair writes nothing; else LNQError in one line, nothing
        done, when the workspace's own folder (lock, journal) cannot be written."""
        stores = [self.label_store(c) for c in ([case] if case is not None else self.case_ids())]
        todo = [s for s in stores if s.unrecorded(older_than=0)]
        if todo and not dry_run:
            self.check_writable("repair writes the label versions' provenance there")  # lock, journal
        done: list[Repair] = []
        for store in todo:
            grid, where = functools.partial(self.ct_grid, store.case), self.ct_path(store.case)
            if dry_run:
                done += repair_store(store, ct_grid=grid, dry_run=True, ct_path=where)
                continue
            with self._lock:  # one case at a time: a save waits for one case's files at most
                self._check_present()
                found = repair_store(store, ct_grid=grid, ct_path=where)
                fixed = [f"{r.case}/{r.version}" for r in found if r.repaired]
                if fixed:
                    self.log("repair", versions=fixed)
            done += found
        return done

    # ------------------------------------------------------------ journal
    @property
    def journal_path(self) -> Path:
        return self._journal.path

    def log(self, action: str, **fields) -> dict:
        """Append one action to the journal (flushed and fsynced); returns the entry."""
        self._check_present()
        return self._journal.append(action, **fields)

    def _check_present(self) -> None:
        """LNQError when the workspace is no longer where it was opened (:func:`check_still_there`)."""
        check_still_there(self.root, self.id)

    def check_writable(self, why: str, *folders: Path) -> None:
        """LNQError in one line, before any work, when the workspace cannot be written (read-only, no
        permission, full disk): its root (lock, journal) and the ``folders`` of it the command writes (those
        that are there; one still to make is made in the root). ``why`` says what the command stores there;
        the message names a folder that fails when it is not the root. One gone from its path says so."""
        self._check_present()
        for folder in (self.root, *(f for f in folders if f.is_dir())):
            exc = write_error(folder)
            if exc is not None:
                raise not_writable(self.root, exc, why, part=None if folder == self.root else folder)

    @property
    def labels_dir(self) -> Path:
        return self.root / LABELS_DIR

    def journal(self, action: str | None = None) -> list[dict]:
        """Journal entries, oldest first (optionally of one action). Torn lines are skipped; a save killed
        before its line has it written first."""
        self._recover_save_line()
        return self._journal.entries(action)

    def _recover_save_line(self) -> None:
        """:meth:`SaveLines.recover`, never waiting and never failing: a workspace locked or not writable
        now keeps the line for a later writer."""
        with contextlib.suppress(OSError, LNQError):
            self._saves.recover()

    # ------------------------------------------------------------ models
    @property
    def models_dir(self) -> Path:
        return self.registry.folder

    @staticmethod
    def pending_plan_file(root: str | Path) -> Path:
        """Where the plan of a fine-tune that runs or was interrupted lies in the workspace at ``root`` (read
        without opening the workspace)."""
        return Path(root) / MODELS_DIR / PENDING

    @property
    def pending_plan_path(self) -> Path:
        """:meth:`pending_plan_file` of this workspace."""
        return self.pending_plan_file(self.root)

    def models(self) -> list[dict]:
        """Registered model versions, oldest first."""
        return self.registry.entries()

    def next_model_version(self) -> str:
        return self.registry.next_version()

    def register_model(
        self, path: str | Path, parent: str | None = None, training_cases: list[str] | None = None,
        metrics: dict | None = None, version: str | None = None, copy: bool = True, **fields,
    ) -> str:
        """Add a model folder to the registry (copied under ``models/<version>`` unless already there).

        The new version is not active; call :meth:`activate`. Returns the version id. The copy is made
        without the lock (:meth:`ModelRegistry.register`), so no save waits for it.
        """
        self._check_present()
        if copy:  # before a copy of up to GBs that would fail at its first file
            self.check_writable("registering a model copies its folder there", self.models_dir)
        entry = self.registry.register(path, parent=parent, training_cases=training_cases,
                                       metrics=metrics, version=version, copy=copy, **fields)
        self.log("register_model", version=entry["id"], parent=parent,
                 training_cases=len(entry["training_cases"]), metrics=entry["metrics"],
                 **({"options": entry["options"]} if entry.get("options") else {}))
        return entry["id"]

    def adopt_model(self, model: str | Path) -> str:
        """The version registered from the model files in ``model`` (a folder, or ``nnunet:<folder>
        [?options]``) with the same options (each file's sha256 equal), else the folder copied in and
        registered now with its options as the root of a lineage of its own (a model the user trained
        elsewhere: ours or nnU-Net's). Not activated. A folder in this workspace's ``models/`` is the
        version it holds (:meth:`ModelRegistry.version_of`: other options than its own are refused)."""
        spec = model_spec(model)
        folder = spec.folder.expanduser().resolve()
        if folder.is_relative_to(self.models_dir.resolve()):
            return self.registry.version_of(str(model))
        version = self.registry.find(folder, spec.options)
        if version is not None:
            return version
        check_outside_model(folder, f"model folder {folder}", spec.options)  # before anything is written
        return self.register_model(folder, source=str(folder), options=spec.options)

    def version_or_adopted(self, name: str) -> str:
        """The version ``name`` means (:meth:`ModelRegistry.version_of`: the bundled model's own folder
        is ``bundled``), or a model folder from outside any workspace adopted (:meth:`adopt_model`); a
        version folder of another workspace is refused by the lookup (a slip, most likely)."""
        folder = model_spec(name).folder
        bundled = folder.is_dir() and folder.resolve() == bundled_model_path().resolve()  # its row, no copy
        outside = folder.is_dir() and not folder.resolve().is_relative_to(self.root.resolve())
        in_a_workspace = any((p / REGISTRY_FILE).is_file() for p in folder.resolve().parents[:3])
        known = self.registry.known()
        if outside and name.strip() and not (bundled or in_a_workspace) and name not in known:
            if model_kind(folder):
                return self.adopt_model(name)
            raise LNQError(f"{folder} is not a model folder (no config.json, nor nnU-Net's plans.json and "
                           f"dataset.json); activate one of {', '.join(known)}, or a trained model folder")
        if name not in known and not folder.exists() and (name.startswith("nnunet:") or os.sep in name):
            raise LNQError(f"model folder {folder} does not exist; activate one of {', '.join(known)}, or a "
                           "trained model folder")
        return self.registry.version_of(name)

    def model_info(self, version: str) -> dict:
        return self.registry.info(version)

    def model_path(self, version: str) -> Path:
        return self.registry.path(version)

    def model(self, version: str) -> Path | NnunetModelSpec:
        """What ``version`` predicts with (:meth:`ModelRegistry.model`): our model's folder, an nnU-Net
        version's folder with the options it was given."""
        return self.registry.model(version)

    def activate(self, version: str, reason: str = "", decided_by: str = "rule") -> dict:
        """Make ``version`` the active model (the one predictions and fine-tuning start from);
        ``"bundled"`` rolls back to the bundled model. Returns the journal entry.

        The model folder is checked first (:meth:`ModelRegistry.check`), and that the workspace is still
        the one opened at its path (as a Save checks); on an LNQError nothing changes.
        The journal line says who decided (``decided_by``: "rule" or "user"), why, and which version was
        active before, so that every roll-back is visible.
        """
        self._check_models_writable()
        with self._lock:  # refused when the folder is gone (the lock never makes it)
            self._check_present()  # not into another workspace made at its path since it was opened
            previous = self.registry.activate(version)
            return self.log("activate", version=version, previous=previous, decided_by=decided_by,
                            reason=reason)

    def check_activation(self, version: str) -> None:
        """LNQError when :meth:`activate` would refuse ``version`` (``models/`` cannot be written, its folder
        is missing or its files changed since registration): what activating the active version checks."""
        self._check_models_writable()
        self.registry.check(version)

    def _check_models_writable(self) -> None:
        self.check_writable("activating a model records it in the registry there", self.models_dir)

    def running_finetune(self) -> RunLock:
        """``with ws.running_finetune(): ...`` for the whole of a fine-tune: LNQError (within a moment) when
        another one runs in this workspace (:class:`~lnq_napari.workspace.lock.RunLock`)."""
        return RunLock(self.root)

    def locked(self) -> WorkspaceLock:
        """The workspace's lock (reentrant, across threads and processes): ``with ws.locked(): ...`` makes
        a check and the change it decides one step no other program can come between."""
        return self._lock

    def model_summaries(self) -> list[ModelSummary]:
        """The bundled model, then every registered version (oldest first), as the user sees them."""
        return self.registry.summaries()

    def active_model(self) -> dict | None:
        """The active model's registry entry (with an absolute ``path``), or None: use the bundled one."""
        return self.registry.active()

    def prediction_model(self) -> tuple[Path | NnunetModelSpec, str]:
        """``(model, version key)`` to predict with: the active model (:meth:`model`), else the bundled
        one.

        The bundled model's key is ``bundled-<hash of its files>`` so caches follow a new release.
        """
        return self.registry.prediction_model()

    # ------------------------------------------------------------ cache
    def cache_path(self, name: str) -> Path:
        return self.cache.path(name)

    def read_cache(self, name: str) -> dict:
        return self.cache.read(name)

    def update_cache(self, name: str, entries: dict) -> dict:
        """Merge ``entries`` into cache file ``name`` under the workspace lock (safe across processes)."""
        self._check_present()
        return self.cache.update(name, entries)


def _version_number(prov: dict | None) -> int:
    """The number of a label version's provenance (``"v002"`` -> 2); -1 for none, a huge number for one
    edited by hand beyond reading (never taken for an older one)."""
    if prov is None:
        return -1
    match = re.fullmatch(r"v(\d+)", str(prov.get("version")))
    return int(match.group(1)) if match else sys.maxsize


def _real_root(root: Path) -> Path:
    """``root`` with its symlinks resolved (the folder a new workspace is renamed into: renaming onto a
    symlink failed, and a dangling one in its path made ``mkdir`` fail); LNQError for a symlink loop."""
    try:
        real = root.resolve()
        with contextlib.suppress(FileNotFoundError):  # a parent still to make
            os.stat(real.parent)  # Python 3.13 resolves a loop without a word: stat says ELOOP
        return real
    except (OSError, RuntimeError) as exc:
        raise LNQError(f"{root} cannot be followed to a folder ({exc}); give a folder path without a "
                       "symlink loop") from exc


def _check_not_inside_workspace(root: Path, target: Path) -> None:
    """LNQError when the folder ``root`` (``target``, its symlinks resolved) lies inside a workspace: its
    files would be taken for the outer one's (cases, labels, a moved workspace's autosaves)."""
    outer = next((p for p in target.parents if is_workspace(p)), None)
    if outer is not None:
        raise LNQError(f"{root} is inside the workspace {outer}, and a workspace cannot hold another; "
                       "choose a folder outside it")


def _check_new_root(root: Path) -> None:
    """LNQError unless ``root`` is free for a new workspace (missing, or an empty folder)."""
    if is_workspace(root):
        raise LNQError(f"workspace {root} already exists; open it, or choose a new folder")
    if root.exists() and any(root.iterdir()):
        raise LNQError(f"{root} exists and is not empty; choose a new folder for the workspace")
