"""Export LNQ-layout data or a review workspace as an nnU-Net v2 raw dataset (``DatasetNNN_NAME``).

The layout is the one nnU-Net's ``dataset_format.md`` specifies: ``imagesTr/<case>_0000.nrrd``,
``labelsTr/<case>.nrrd`` on the image's exact grid, and ``dataset.json`` with ``channel_names
{"0": "CT"}``, ``labels {"background": 0, "lymph_node": 1, "ignore": 2}``, ``numTraining`` and
``file_ending``. Labels follow the trainer's label-state rules (:func:`~lnq_napari.training.labels.
label_states`: annotated node 1, what the CT itself rules out 0, the rest unknown -> nnU-Net's ``ignore``
2); a workspace's corrected cases follow the correction rules (:func:`~lnq_napari.training.corrections.
correction_states`), its other cases their original labels. A seg on a box of its CT's grid (LNQ's
first release) is pasted onto the CT grid, one on another grid resampled onto it, never dropped.

Atomic: the dataset is written to a hidden ``.DatasetNNN_NAME.partial-*`` folder beside the target and
renamed at the end. nnU-Net finds datasets by the ``DatasetNNN_`` prefix, so a killed export leaves
nothing it would accept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.atomic import check_output_folder
from lnq_napari.io.layout import ct_files, split_name
from lnq_napari.processes import broken_pool_said, process_pool, usable_workers

if TYPE_CHECKING:
    from lnq_napari.interact import NodeMark, Rejection

LABELS = {"background": 0, "lymph_node": 1, "ignore": 2}
FILE_ENDING = ".nrrd"
CHANNEL = "_0000"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DATASET = re.compile(r"^Dataset\d{3}_")
Progress = Callable[[float, str], None] | None


@dataclass(frozen=True)
class ExportJob:
    """One case to export: its CT, its label file and which rules turn the labels into nnU-Net labels.

    ``kind``: "original" (partial labels, :func:`label_states`) or "correction" (a reviewer's corrected
    mask, :func:`correction_states` with ``prediction`` the mask it was corrected from, the balls of the
    ``rejected`` suggestions and the ``marks`` of nodes with an unknown outline; ``dense``: the
    correction is complete, every other voxel is background).
    """

    case_id: str
    ct: str
    labels: str
    kind: str = "original"
    prediction: str | None = None
    dense: bool = False
    rejected: tuple[Rejection, ...] = ()
    marks: tuple[NodeMark, ...] = ()


@dataclass(frozen=True)
class ExportedCase:
    """What one case became: voxels labelled background (0), lymph node (1) and ignore (2)."""

    case_id: str
    kind: str
    counts: tuple[int, int, int]
    resampled: bool  # the seg was on another grid and was resampled onto the CT grid


@dataclass
class ExportResult:
    """The written dataset: its folder (``<raw>/DatasetNNN_NAME``), dataset.json and the cases."""

    folder: Path
    dataset_json: Path
    cases: list[ExportedCase] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # workspace cases with no labels to export

    @property
    def counts(self) -> tuple[int, int, int]:
        """Voxels labelled 0, 1 and 2 over all cases."""
        return tuple(int(sum(c.counts[k] for c in self.cases)) for k in range(3))


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset501_LNQ``: nnU-Net's folder name of a dataset (LNQError for a bad id or name)."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise LNQError(f"the dataset id {dataset_id!r} is not a number from 1 to 999 (nnU-Net uses three "
                       "digits; --dataset-id on the command line)")
    if not _NAME.match(str(name)):
        raise LNQError(f"the dataset name {name!r} must be letters, digits, '_' or '-' (it becomes Dataset"
                       f"{dataset_id:03d}_<name>; --name on the command line)")
    return f"Dataset{dataset_id:03d}_{name}"


def check_target(raw: Path, dataset_id: int, name: str) -> Path:
    """The dataset folder to create under ``raw``; LNQError when it is not empty or the id is in use.

    The id is in use when ``raw`` holds another ``DatasetNNN_*`` folder, or when nnU-Net's preprocessed
    or results folder (``nnUNet_preprocessed``, ``nnUNet_results``) holds one of that id at all.
    """
    folder = dataset_folder_name(dataset_id, name)
    raw = check_output_folder(raw, "the output folder", "nnU-Net's raw datasets (nnUNet_raw)")
    if _DATASET.match(raw.name) or (raw / "dataset.json").is_file():  # a dataset inside another one
        raise LNQError(f"the output folder {raw} is an nnU-Net dataset itself; give the folder that holds "
                       f"the datasets (nnUNet_raw, e.g. {raw.parent}; --out on the command line)")
    target = raw / folder
    if target.is_dir() and any(target.iterdir()):
        raise LNQError(f"export folder {target} is not empty; remove it or choose another --dataset-id")
    if target.exists() and not target.is_dir():
        raise LNQError(f"{target} is a file; remove it or choose another --dataset-id")
    prefix = f"Dataset{dataset_id:03d}_"
    for root, what in _dataset_roots(raw):
        if not root.is_dir():
            continue
        for other in sorted(root.iterdir()):
            if other.is_dir() and other.name.startswith(prefix) and not (what == "raw" and other == target):
                raise LNQError(f"dataset id {dataset_id} is already in use ({other}); choose another "
                               "--dataset-id")
    return target


def _dataset_roots(raw: Path) -> list[tuple[Path, str]]:
    """Where nnU-Net looks up dataset ids: ``raw`` and its preprocessed and results folders (environment)."""
    return [(raw, "raw")] + [(Path(os.environ[v]), v) for v in ("nnUNet_preprocessed", "nnUNet_results")
                             if os.environ.get(v)]


def used_dataset_ids(*roots: str | Path) -> set[int]:
    """The dataset ids of the ``DatasetNNN_*`` folders under ``roots`` (those that exist)."""
    return {int(p.name[7:10]) for root in map(Path, roots) if root.is_dir() for p in root.iterdir()
            if _DATASET.match(p.name)}


def free_dataset_id(raw: str | Path, *others: str | Path) -> int:
    """The lowest dataset id (1 to 999) no ``DatasetNNN_*`` folder uses under ``raw``, nnU-Net's own
    preprocessed and results folders (environment) or ``others``; LNQError when all are taken."""
    roots = [root for root, _ in _dataset_roots(Path(raw).expanduser())] + [Path(o) for o in others]
    used = used_dataset_ids(*roots)
    free = next((n for n in range(1, 1000) if n not in used), None)
    if free is None:
        raise LNQError(f"every nnU-Net dataset id (1-999) is in use under {raw}; give --dataset-id or "
                       "another work folder")
    return free


def jobs_from_data(data: str | Path) -> tuple[list[ExportJob], list[str]]:
    """One job per case of a data folder (:func:`~lnq_napari.io.datasets.find_cases`) with labels, and
    what is left out: the cases without labels and the label files without a CT ("<file> (no CT)")."""
    from lnq_napari.io.datasets import find_cases
    from lnq_napari.workspace.cases import is_workspace

    if is_workspace(Path(data).expanduser()):  # said "no *-ct.nrrd files ... in ws"
        raise LNQError(f"{data} is a review workspace, not a data folder; give it as --workspace {data} (its "
                       "cases with their corrections)")
    try:
        everything = find_cases(data)  # read once: each of its warnings said once
    except LNQError:
        _labelled_cases(data)  # what --data needs, when that is what is wrong
        raise
    cases = [c for c in everything if c.seg is not None] or _labelled_cases(data)
    skipped = [c.case_id for c in everything if c.seg is None]
    folder = Path(data).expanduser()
    if folder.is_dir():
        known = {c.case_id for c in everything}
        skipped += [f"{path.name} (no CT)" for case, path in _labels_by_case(folder).items()
                    if case not in known]
    return [ExportJob(c.case_id, str(c.ct), str(c.seg)) for c in cases], skipped


def _labelled_cases(data: str | Path) -> list:
    """The labelled cases of ``data`` (:func:`~lnq_napari.io.datasets.find_cases` ``require="seg"``), read
    again without its warnings (said by the first read): its LNQError when there are none."""
    from lnq_napari.io.datasets import find_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return find_cases(data, require="seg")


def _labels_by_case(folder: Path) -> dict[str, Path]:
    """``<case>-seg.*`` files of ``folder`` by case (none when two name one case: not ours to judge)."""
    try:
        return {split_name(path).case: path for path in ct_files(folder, role="seg")}
    except LNQError:
        return {}


def jobs_from_workspace(workspace, dense: bool | None = None,
                        exclude: Collection[str] = ()) -> tuple[list[ExportJob], list[str]]:
    """Jobs of a workspace: each corrected case with its latest correction (and the prediction it was
    corrected from), every other case with its original labels. Returns ``(jobs, skipped cases)``.

    ``dense`` None: the fine-tune default (:class:`~lnq_napari.model.config.FinetuneConfig`).
    ``exclude``: cases left out altogether (a fine-tune's held-out validation cases).
    """
    from lnq_napari.finetuning.reviewed import marks_of, prediction_parent, rejections_of
    from lnq_napari.model.config import FinetuneConfig
    from lnq_napari.workspace import Workspace
    from lnq_napari.workspace.labels import marks_lost

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    dense = FinetuneConfig().dense_truth if dense is None else bool(dense)
    ws.warn_lost_corrections("exported")
    jobs, skipped = [], []
    for case in ws.case_ids():
        if case in exclude:
            continue
        ct = str(ws.existing_ct_path(case))  # before anything is exported
        correction = ws.latest_version(case, "correction")
        if correction is not None:
            pred = None if marks_lost(correction) else prediction_parent(ws, case, correction)  # nothing
            # removed is known background when the marks that may have kept a node there are lost
            jobs.append(ExportJob(case, ct, str(ws.label_path(case, correction["version"])), "correction",
                                  None if pred is None else str(ws.label_path(case, pred["version"])), dense,
                                  rejections_of(correction), marks_of(correction)))
            continue
        original = ws.latest_version(case, "original")
        if original is None:
            skipped.append(case)
            continue
        jobs.append(ExportJob(case, ct, str(ws.label_path(case, original["version"]))))
    return jobs, skipped


def nnunet_labels(states: np.ndarray) -> np.ndarray:
    """uint8 nnU-Net labels of label states: node 1 -> 1, background 0 -> 0, unknown -1 -> ignore 2."""
    from lnq_napari.training.labels import BACKGROUND, NODE

    out = np.full(states.shape, LABELS["ignore"], dtype=np.uint8)
    out[states == BACKGROUND] = LABELS["background"]
    out[states == NODE] = LABELS["lymph_node"]
    return out


def job_states(job: ExportJob, ct) -> tuple[np.ndarray, bool]:
    """The label states of one job on the CT grid, and whether its seg had to be resampled."""
    from lnq_napari.heard import collected_warnings
    from lnq_napari.interact import spot_mask
    from lnq_napari.io.geometry import GridWarning
    from lnq_napari.io.readers import read_labels
    from lnq_napari.training.corrections import correction_states
    from lnq_napari.training.labels import label_states, naive_states

    with collected_warnings() as caught:  # a worker thread's or process's own
        labels = read_labels(job.labels, reference=ct)
        prediction = None if job.prediction is None else read_labels(job.prediction, reference=ct)
    resampled = any(issubclass(w.category, GridWarning) for w in caught)
    if job.kind == "correction":
        rejected = spot_mask(job.rejected, ct.shape, ct.spacing_zyx) if job.rejected else None
        states = naive_states(labels) if job.dense else correction_states(
            ct, labels, prediction, rejected=rejected, marks=job.marks)
    elif job.kind == "original":
        states = label_states(ct, labels)
    else:
        raise ValueError(f"unknown export kind {job.kind!r}")
    return states, resampled


def export_case(job: ExportJob, folder: str | Path) -> ExportedCase:
    """Write one case's image and labels into the (temporary) dataset ``folder``."""
    from lnq_napari.ct_scale import check_ct_values
    from lnq_napari.io.readers import read_volume, write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.preprocess import check_ct_extent

    folder = Path(folder)
    try:  # a folder holds hundreds of cases: the one at fault is named
        ct = read_volume(job.ct)
        check_ct_values(np.asarray(ct.array))
        check_ct_extent(ct)  # a header's metres or micrometres for mm values: refused as train refuses it
        states, resampled = job_states(job, ct)
    except LNQError as exc:
        raise LNQError(f"case {job.case_id}: {exc}") from exc
    labels = nnunet_labels(states)
    image = Volume(np.asarray(ct.array), ct.spacing, ct.origin, ct.direction)
    write_volume(folder / "imagesTr" / f"{job.case_id}{CHANNEL}{FILE_ENDING}", image)
    write_volume(folder / "labelsTr" / f"{job.case_id}{FILE_ENDING}", image.with_array(labels))
    counts = np.bincount(labels.ravel(), minlength=3)[:3]
    return ExportedCase(job.case_id, job.kind, tuple(int(c) for c in counts), resampled)


def dataset_json(name: str, cases: list[ExportedCase], source: str) -> dict:
    """nnU-Net's dataset.json of the export (lnq-napari's provenance under its own key)."""
    import lnq_napari

    return {
        "name": name,
        "description": "Mediastinal lymph nodes in chest CT with partial labels, exported by lnq-napari: "
                       "label 2 (ignore) marks voxels neither annotated nor ruled out by the anatomy",
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "lnq_napari": {
            "version": lnq_napari.__version__, "source": source,
            "cases": {c.case_id: c.kind for c in cases},
            "resampled_segs": [c.case_id for c in cases if c.resampled],
        },
    }


def _run_jobs(jobs: list[ExportJob], folder: Path, workers: int, progress: Progress,
              cancel: Callable[[], bool] | None) -> list[ExportedCase]:
    """Export the jobs, ``workers`` processes at a time; results in the jobs' order."""
    done: dict[str, ExportedCase] = {}

    def report(case: ExportedCase) -> None:
        done[case.case_id] = case
        if progress:
            progress(len(done) / len(jobs), f"{case.case_id} ({case.kind})")
        if cancel is not None and cancel():
            raise Cancelled("export cancelled")

    if usable_workers(workers) <= 1:
        for job in jobs:
            report(export_case(job, folder))
    else:
        from concurrent.futures import as_completed

        with broken_pool_said(), process_pool(workers) as pool:
            futures = [pool.submit(export_case, job, folder) for job in jobs]
            try:
                for future in as_completed(futures):
                    report(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return [done[job.case_id] for job in jobs]


def export_dataset(
    out: str | Path, dataset_id: int, *, data: str | Path | None = None, workspace=None,
    name: str = "LNQ", workers: int | None = None, dense: bool | None = None, exclude: Collection[str] = (),
    progress: Progress = None, cancel: Callable[[], bool] | None = None,
) -> ExportResult:
    """Write ``<out>/DatasetNNN_<name>`` from an LNQ-layout folder (``data``) or a ``workspace`` (without
    the cases in ``exclude``).

    ``workers``: processes (default up to 4, one per CPU). Nothing is left under ``out`` but the finished
    dataset: on an error or Cancel the partial folder is removed (after a kill it stays hidden as
    ``.DatasetNNN_<name>.partial-*``, which the next export of that dataset removes).
    """
    if (data is None) == (workspace is None):
        raise LNQError("give exactly one of data (an LNQ-layout folder) and workspace (--data and "
                       "--workspace on the command line)")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or workers < 1):
        raise LNQError(f"workers must be a whole number of at least 1 (got {workers!r}); give none for up to "
                       "4, one per CPU (--workers on the command line)")
    target = check_target(Path(out), dataset_id, name)
    if data is not None:
        (jobs, skipped), source = jobs_from_data(data), str(Path(data).expanduser().resolve())
    else:
        jobs, skipped = jobs_from_workspace(workspace, dense=dense, exclude=set(exclude))
        source = f"workspace {Path(getattr(workspace, 'root', workspace)).expanduser().resolve()}"
        if not jobs:
            raise LNQError(f"the workspace {workspace} has no labelled cases to export")
    ids = [j.case_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise LNQError("two cases share a case id; give each CT its own <case>-ct.nrrd name")
    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    workers = max(1, min(workers, len(jobs)))
    made = not target.parent.exists()  # taken away again if the export fails, when nothing else is in it
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        cases = _run_jobs(jobs, tmp, workers, progress, cancel)
        if not sum(c.counts[1] for c in cases):  # nnU-Net would learn "no node" from it
            warnings.warn(f"the export holds no lymph-node voxel in {len(cases)} case(s): check that the "
                          "labels mark the nodes with 1 (or any value but 0)", UserWarning, stacklevel=2)
        (tmp / "dataset.json").write_text(json.dumps(dataset_json(name, cases, source), indent=2) + "\n")
        if target.is_dir():  # an empty folder: replaced
            target.rmdir()
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not any(target.parent.iterdir()):
            target.parent.rmdir()
        raise
    return ExportResult(target, target / "dataset.json", cases, skipped)
