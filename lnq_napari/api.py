"""One function per job. The CLI, the napari widgets and the notebooks all call these.

:func:`find_nodes` is the prediction pipeline (predict, one id per node, suggestions, node table)
behind ``predict``, ``demo``, the Segment widget and the sample data; :func:`node_table` is the node
table behind ``measure`` and the Nodes widget. Heavy imports (torch, SimpleITK, matplotlib) happen
inside the functions or the modules' own functions, so importing this module stays cheap. Viewer code
lives in :mod:`lnq_napari.plugin` (``lnq_napari.plugin.app.view``); this module never imports it.
"""

from __future__ import annotations

import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lnq_napari import active, metrics
from lnq_napari.active import RankedCase
from lnq_napari.components import label_nodes, touching_ids
from lnq_napari.ct_scale import check_ct_values, scale_problem, warn_if_not_hu
from lnq_napari.errors import Cancelled, LNQError, kind_of
from lnq_napari.figures import overlay_figure
from lnq_napari.finetuning import FinetuneConfig, FinetuneResult, finetune_workspace
from lnq_napari.finetuning.plan import InterruptedFinetune
from lnq_napari.finetuning.plan import interrupted_finetune as plan_of_interrupted
from lnq_napari.followup import CompareResult, compare_nodes
from lnq_napari.followup import write_csv as write_changes_csv
from lnq_napari.followup.compare import seg_on_ct
from lnq_napari.followup.identity import (
    PATIENT_KEYS,
    STUDY_DATE_KEYS,
    header_value,
    patient_id,
    source_fields,
)
from lnq_napari.followup.nadir import ScanCredits, scan_credits
from lnq_napari.followup.recist import PATHOLOGICAL_MM, check_organ
from lnq_napari.followup.register import Registration
from lnq_napari.followup.report import CSV_COLUMNS as CHANGE_COLUMNS
from lnq_napari.heard import collected_warnings
from lnq_napari.inference import Prediction, Predictor
from lnq_napari.interact import MERGE_MM, Suggestion, rank_suggestions, suggest_candidates
from lnq_napari.io import dicom_seg, dicom_tree, segfile
from lnq_napari.io.atomic import CANNOT_WRITE, atomic_write_text, check_output_folder, is_full, space_advice
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.datasets import find_cts
from lnq_napari.io.geometry import GridWarning, SliceThicknessWarning, align_to, reordered_onto
from lnq_napari.io.json_text import strict_json
from lnq_napari.io.labels import check_label_values, label_mask
from lnq_napari.io.layout import case_name, is_partial_label, label_files_by_case, label_name
from lnq_napari.io.outputs import check_not_users, check_prediction_targets, check_table_path, same_file
from lnq_napari.io.provenance import EXPORT, PREDICTIONS, created_by, writer
from lnq_napari.io.raw_image import from_sitk_image
from lnq_napari.io.readers import read_ct_of, read_labels, read_raw, read_volume, write_volume
from lnq_napari.io.volume import Volume, check_grid
from lnq_napari.model.config import REGION_MARGIN_MM, InferenceConfig
from lnq_napari.model.names import short_model_name
from lnq_napari.model.nnunet_folder import model_spec
from lnq_napari.nnunet.select import check_model as check_model  # the CLI's early check of --model
from lnq_napari.nnunet.select import load_predictor, model_version_of
from lnq_napari.phantom import make_case, write_dataset
from lnq_napari.phantom.case import check_requested_grid
from lnq_napari.preprocess import check_ct_extent
from lnq_napari.quantify import (
    CSV_COLUMNS,
    MAX_IDS,
    OVERLAPPING_SEGMENTS,
    NodeRow,
    NodeSummary,
    OverlapWarning,
    measure_ids,
    measure_nodes,
    measure_segments,
    reaches,
    read_node_ids,
    summarize_nodes,
    write_csv,
)
from lnq_napari.training.trainer import load_training_cases, train_model
from lnq_napari.workspace import LabelStore, Repair, SavedLabels, TimePoint, Workspace
from lnq_napari.workspace.cases import gone_error, same_id
from lnq_napari.workspace.lock import NotWritable
from lnq_napari.workspace.registry import ModelSummary, check_outside_model, model_kind
from lnq_napari.workspace.saved_since import saved_since_note

if TYPE_CHECKING:
    from lnq_napari.nnunet.finetune import NnUNetFinetune

DEMO_SEED = 7

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


@dataclass
class NodeResult:
    """The nodes :func:`find_nodes` found in one CT, on the CT's grid."""

    mask: Volume  # int32, one id per node, 0 background
    probabilities: Volume  # float32 node probability
    model_version: str
    suggestions: list[Suggestion]  # ranked, best first
    nodes: list[NodeRow]  # the node table; ``id`` as in ``mask``
    region: Volume | None = None  # uint8 0/1: the mediastinum region nodes and suggestions keep to

    def __repr__(self) -> str:  # a summary; the parts are its fields (a notebook cell's last line)
        s = summarize_nodes(self.nodes)
        cut = f", {s.cut_words()}" if s.n_cut else ""
        return (f"NodeResult({s.n_nodes} node{'s' if s.n_nodes != 1 else ''} ({s.n_ge_10mm} >= 10 mm{cut}), "
                f"{len(self.suggestions)} suggestion{'s' if len(self.suggestions) != 1 else ''}, "
                f"model {short_model_name(self.model_version)}, on {self.mask!r})")

    def binary_mask(self) -> Volume:
        """The nodes as a uint8 0/1 mask (what the challenge scores)."""
        return self.mask.with_array((np.asarray(self.mask.array) > 0).astype(np.uint8))


@dataclass(frozen=True)
class ScoredCase:
    """One case of :func:`evaluate`: its id, the prediction and ground-truth files (``""`` for a Volume) and
    its :class:`~lnq_napari.metrics.CaseScores`."""

    case: str
    pred: str
    gt: str
    scores: metrics.CaseScores

    def to_dict(self) -> dict[str, str | float | int]:
        """The row as written to JSON or printed: the files, then the scores."""
        return {"case": self.case, "pred": self.pred, "gt": self.gt, **self.scores.to_dict()}


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns: each case's :class:`ScoredCase` and the
    :class:`~lnq_napari.metrics.ScoreSummary` over them."""

    cases: tuple[ScoredCase, ...]
    summary: metrics.ScoreSummary

    def __repr__(self) -> str:  # the summary line ``evaluate`` prints; the rows are in ``cases``
        return f"Evaluation({self.summary.text()})"

    def to_dict(self) -> dict[str, list | dict]:
        """``{"cases": [row per case], "summary": {...}}``, as ``evaluate --json`` writes it."""
        return {"cases": [case.to_dict() for case in self.cases], "summary": self.summary.to_dict()}


def make_phantom(
    out: str | Path, cases: int = 4, seed: int = 0, site: str = "default", progress: Progress = None,
    shape: tuple[int, int, int] | None = None, spacing: tuple[float, float, float] | None = None,
) -> list[Path]:
    """Write a synthetic LNQ-layout data set (ct, partial seg, full truth, nodes JSON) to ``out``; returns
    the CT paths.

    ``site`` names the CT source to imitate (`lnq_napari.phantom.SITES`; "default": the training phantom).
    ``shape`` (z, y, x) and ``spacing`` (x, y, z) mm: every case's grid (e.g. ``(40, 160, 160)`` and
    ``(2, 2, 5)`` for quick cases); None: LNQ-like, drawn per case (512 x 512 in-plane). A shape alone gets
    the spacing of an LNQ-like chest-size field of view, drawn per case (307-778 mm across over its smaller
    in-plane size, 250-330 mm over its slices; pixels 0.3-5 mm, slices 0.5-10 mm). LNQError, before
    anything is written, for pixels or slices outside those ranges, a grid under 250 mm across or 100 mm
    along z (too small for the chest and its nodes) or over 262 million voxels.
    """
    check_requested_grid(shape, spacing)
    return write_dataset(out, cases, seed=seed, site=site, progress=progress, shape=shape, spacing=spacing)


def evaluate(pred: str | Path | Volume | NodeResult, gt: str | Path | Volume,
             json_path: str | Path | None = None) -> Evaluation:
    """Challenge Dice/ASSD and node detection for files or folders paired by case id, or a Volume (or
    SimpleITK image) and a file or Volume: one case, named after the file's case id as the CLI names it
    (two Volumes: ``"case"``); a :func:`find_nodes` result is scored as its 0/1 ``binary_mask()``.

    Returns an :class:`Evaluation` (``.to_dict()``: ``{"cases": [row per case], "summary": {...}}``, as
    ``json_path`` gets it). Folders are paired by case id
    (:func:`lnq_napari.io.layout.label_files_by_case`: in a ground-truth folder ``*-full``, complete
    truth, wins over ``*-seg``). The prediction must lie on the ground truth's grid, as in the
    challenge. Predictions the challenge would mis-score (labels other than 0/1, float maps) give a
    warning; one with negative values (a CT?) is refused.
    """
    if isinstance(pred, NodeResult):  # its mask holds one id per node: the challenge scores label 1 only
        pred = pred.binary_mask()
    pred, gt = _from_sitk(pred, "the prediction", True), _from_sitk(gt, "the ground truth", True)
    if isinstance(pred, Volume) or isinstance(gt, Volume):
        one = (_one_case(pred, "the prediction"), _one_case(gt, "the ground truth"))
        files = [side for side in one[::-1] if isinstance(side, Path)]  # named as the CLI names the file's
        pairs = [((label_name(files[0]).case if files else "") or "case", *one)]
    else:
        pairs = _pairs(Path(_path(pred, "the prediction")), Path(_path(gt, "the ground truth")))
    check_table_path(json_path, "the JSON file", "scores.json", (pred, gt), starts='{\n  "cases": [')
    _warn_partial([truth for _, _, truth in pairs if isinstance(truth, Path) and is_partial_label(truth)],
                  len(pairs))
    rows = tuple(_score_case(case, pred_path, gt_path) for case, pred_path, gt_path in pairs)
    result = Evaluation(rows, metrics.summarize([row.scores for row in rows]))
    if json_path is not None:
        _write_json(result.to_dict(), json_path)
    return result


def _warn_partial(partial: list[Path], n_cases: int) -> None:
    """One warning when ground-truth files are LNQ training labels: the nodes they leave out count as the
    prediction's false nodes and lower its Dice (a prediction finding 6 of 6 nodes scored Dice 0.25 and 7
    false nodes against a training label marking one)."""
    if not partial:
        return
    if n_cases == 1:
        said = f"the ground truth {partial[0].name} is an LNQ training label, which marks"
    else:
        more = ", ..." if len(partial) > 1 else ""
        files = f"the {n_cases}" if len(partial) == n_cases else f"{len(partial)} of the {n_cases}"
        said = f"{files} ground-truth files ({partial[0].name}{more}) are LNQ training labels, which mark"
    warnings.warn(f"{said} only some nodes: a node found that it leaves out counts as a false node and "
                  "lowers the Dice; score against complete labels (the phantom's -full, LNQ validation or "
                  "test labels)", UserWarning, stacklevel=3)


def _pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """``(case, prediction file, ground-truth file)`` of two files, or of folders paired by case id."""
    preds, gts = label_files_by_case(pred, "pred"), label_files_by_case(gt, "gt")
    if pred.is_file() and gt.is_file():
        return [(label_name(gt).case, pred, gt)]  # named: scoring a file against itself is a check
    if pred.is_file() or gt.is_file():  # one file against a folder: only that case
        only = next(iter(preds if pred.is_file() else gts))
        preds = {k: v for k, v in preds.items() if k == only}
        gts = {k: v for k, v in gts.items() if k == only}
    unpaired = []
    for what, cases in (("ground truth", set(preds) - set(gts)), ("prediction", set(gts) - set(preds))):
        if cases:
            names = sorted(cases)
            unpaired.append(f"no {what} for {', '.join(names[:5])}" + (" ..." if len(names) > 5 else ""))
    if unpaired:
        raise LNQError(f"unpaired cases: {'; '.join(unpaired)}; name files <case>-pred.nrrd and "
                       "<case>-full.nrrd or <case>-seg.nrrd, or point at matching files")
    return _distinct([(case, preds[case], gts[case]) for case in sorted(gts)])


def _distinct(pairs: list[tuple[str, Path, Path]]) -> list[tuple[str, Path, Path]]:
    """``pairs`` of a folder; LNQError in one line when a case's prediction and ground truth are one file
    (``--pred D --gt D`` where a case's only label file is taken as both): it would score a perfect Dice."""
    for case, pred, gt in pairs:
        if pred.resolve() == gt.resolve():
            raise LNQError(f"{case}: the prediction and the ground truth are the same file {gt}; give the "
                           "predictions and the labels as separate files or folders")
    return pairs


def _one_case(value, what: str) -> Path | Volume:
    """One side of a one-case :func:`evaluate` beside a Volume: a Volume (grid checked) or a label file."""
    if isinstance(value, (str, Path)):
        if not Path(value).is_file():
            raise LNQError(f"{what} {value} is not a file; beside a Volume give a label file or a Volume")
        return Path(value)
    return _volume(value, what, labels=True)


def _score_case(case: str, pred: Path | Volume, gt: Path | Volume) -> ScoredCase:
    """One case's row of :func:`evaluate` (a warning when the prediction would be mis-scored). The truth is
    read as :func:`read_labels` reads a file, a Volume too (every non-zero voxel a node; a CT refused); a
    prediction file as the challenge reads it (its label 1), but a 3D Slicer segmentation or DICOM SEG as
    its node segments (they are named)."""
    truth = gt.with_array(label_mask(np.asarray(gt.array), "the ground truth"), **gt.meta) \
        if isinstance(gt, Volume) else read_labels(gt)
    check_ct_extent(truth, f"{case}: the ground truth{'' if isinstance(gt, Volume) else ' ' + gt.name}")
    prediction = pred if isinstance(pred, Volume) else _read_seg(pred, truth, scored=True)  # a SEG: on it
    reordered = None if prediction.same_grid(truth) else reordered_onto(truth, prediction)
    if reordered is not None:  # the same voxels stored in another axis order or direction
        prediction = reordered
    if np.asarray(prediction.array).min(initial=0) < 0:
        name = "" if isinstance(pred, Volume) else f" {pred.name}"
        raise LNQError(f"{case}: the prediction{name} holds negative values, so it is no label mask (a CT?); "
                       "give the predicted label file")
    problem = metrics.prediction_problem(prediction)
    if problem:
        name = "" if isinstance(pred, Volume) else f" {pred.name}"
        warnings.warn(f"{case}: the prediction{name} {problem}", UserWarning, stacklevel=3)
    try:
        scores = metrics.evaluate_case(prediction, truth)
    except LNQError as exc:
        raise LNQError(f"{case}: {exc}") from exc
    def named(path: Path | Volume) -> str:
        return "" if isinstance(path, Volume) else str(path)

    return ScoredCase(case, named(pred), named(gt), scores)


def _write_json(result: dict, path: str | Path) -> None:
    """Write ``result`` as standard JSON atomically (NaN as null)."""
    try:
        atomic_write_text(path, strict_json(result) + "\n")
    except OSError as exc:
        raise LNQError(f"cannot write {path} ({exc.strerror or exc}); choose another path") from exc


def node_table(labels: Volume | NodeResult, ct: Volume | None = None) -> list[NodeRow]:
    """One row per node of ``labels`` (the connected blobs of each value:
    :func:`~lnq_napari.quantify.node_ids`); with ``ct`` (same grid) each row has its mean HU and the CT's
    edges that cut it (without, none: a label file may be cropped to its nodes). The Nodes
    widget and ``measure`` both use it (``measure`` also reads files). A :func:`find_nodes` result is taken
    as its ``mask``, here and wherever labels are taken."""
    labels = _labels(labels, "the labels")
    check_ct_extent(labels, "the labels")  # a grid in metres would give nodes of cubic metres
    return measure_nodes(labels, None if ct is None else _volume(ct, "the CT"))


def measure(
    seg: str | Path | Volume | NodeResult, ct: str | Path | Volume | None = None,
    csv_path: str | Path | None = None,
) -> tuple[list[NodeRow], NodeSummary]:
    """Node table of a label file (or a labels Volume, a SimpleITK image, a :func:`find_nodes` result).
    Returns ``(rows, summary)``.

    A node is a connected blob of one value: each value is the id of its first blob (raster order, in LPS
    axis order whatever the file's), and
    each further blob of a value (a 0/1 mask's, a class map's 1 and 2, a brush colour painted on several
    nodes) gets a new id above the largest; a 3D Slicer
    ``.seg.nrrd`` or DICOM SEG gives
    its lymph-node segment(s), each segment's nodes apart from the others' (touching or not; overlapping,
    each node whole, and the summary's total volume the node tissue, a shared voxel once). With
    ``ct`` the labels are put on the CT grid (nearest neighbour, with a warning when they differ),
    each node gets its mean HU, and a node the CT's edge cuts is flagged (``cut_by_edge`` names those
    edges: its axes and volume are lower bounds); without it none is. ``csv_path`` gets the table
    atomically.
    """
    check_table_path(csv_path, "the CSV file", "nodes.csv", (seg, ct), starts=",".join(CSV_COLUMNS[:3]))
    volume = None if ct is None else _ct_volume(ct, seg, "the CT")
    if volume is not None:
        check_ct_extent(volume)  # a spacing in another unit: nodes of cubic metres, their mean HU
    with warnings.catch_warnings():  # shared voxels: measured below in each of their segments' nodes
        warnings.simplefilter("ignore", OverlapWarning)
        labels = _read_seg(seg, volume) if isinstance(seg, (str, Path)) else _labels(seg, "the labels")
    read = labels  # on the file's own grid (a DICOM SEG's: the CT's)
    if volume is None:  # with a CT they are measured on its grid, checked above (a file saved without
        # geometry, 1 mm at origin 0, is the CT's size in voxels: its own grid may span metres)
        check_ct_extent(labels,
                        f"the label file {Path(seg).name}" if isinstance(seg, (str, Path)) else "the labels")
    else:
        labels = align_to(volume, labels)
    if volume is not None:  # once the files are known to fit: an error stays the only line
        warn_if_not_hu(np.asarray(volume.array))  # a label file given as the CT: mean HU would read 1
    overlapping = isinstance(seg, (str, Path)) and bool(labels.meta.get(OVERLAPPING_SEGMENTS))
    rows = measure_segments(seg, read, volume) if overlapping else node_table(labels, volume)
    if csv_path is not None:
        try:
            write_csv(rows, csv_path, mean_hu=volume is not None)  # its columns whether or not nodes
        except OSError as exc:
            raise LNQError(f"cannot write {csv_path} ({exc.strerror or exc}); choose another path") from exc
    return rows, summarize_nodes(rows, labels if overlapping else None)  # shared voxels once in the total


def compare(
    baseline: str | Path | Volume, followup: str | Path | Volume,
    baseline_seg: str | Path | Volume | NodeResult | None = None,
    followup_seg: str | Path | Volume | NodeResult | None = None,
    csv_path: str | Path | None = None, model: str | Path | Predictor | None = None, device: str = "auto",
    organ: str = "nodes", progress: Progress = None, cancel: Cancel = None,
    registration: Registration | None = None, seg_by_model: tuple[bool, bool] = (False, False),
    nadir_sum_mm: float | None = None, nadir_scans: Sequence[ScanCredits] = (),
) -> CompareResult:
    """Which nodes grew, shrank, appeared or vanished between a baseline and a follow-up CT.

    Each scan's nodes come from its SEG (put on that CT's grid as :func:`measure` does) or, when none is
    given, from the model (:func:`find_nodes`). The follow-up is registered to the baseline, nodes are
    matched one to one and each gets a row (volumes, axes and their change); RECIST 1.1 and volumetric
    summaries follow (:mod:`lnq_napari.followup`). ``csv_path`` gets the change table atomically. Differing
    DICOM PatientIDs and a poor registration warn; scans that do not overlap, a CT whose values are not HU
    (:func:`~lnq_napari.ct_scale.check_ct_values`) and one spanning metres (its spacing in another unit:
    :func:`~lnq_napari.preprocess.check_ct_extent`) raise LNQError, as does a ``model`` given with both SEGs
    (it would predict nothing). ``registration`` (an earlier result's, same CTs) is reused: after an edit only
    measuring and matching run again. A SEG may be a :func:`find_nodes` result (its nodes the model's).
    ``seg_by_model``: whether each given SEG is the model's stored prediction rather than a reader's; one
    scan's nodes a reader's and the other's the model's warns. ``nadir_sum_mm``: the baseline targets'
    smallest sum at a scan between (RECIST measures PD from it); ``nadir_scans``: scans between's credits to
    the baseline nodes (:func:`~lnq_napari.followup.nadir.scan_credits`), summed over this comparison's
    targets for the nadir.
    """
    check_table_path(csv_path, "the CSV file", "changes.csv",
                     (baseline, followup, baseline_seg, followup_seg), starts=",".join(CHANGE_COLUMNS[:3]))
    check_organ(organ)
    if model is not None and model_if_needed(model, baseline_seg, followup_seg) is None:
        raise LNQError("a model predicts the nodes of a scan given without its SEG, but both scans have one; "
                       "leave out the model (--model on the command line), or a SEG to have that scan's "
                       "nodes predicted")
    if same_file(baseline_seg, followup_seg) and not same_file(baseline, followup):
        raise LNQError(f"the baseline and follow-up SEGs are the same file ({baseline_seg}); give each CT "
                       "the SEG drawn on it")
    step = progress or (lambda fraction, message="": None)
    cts = [_ct_volume(ct, seg, f"the {which} CT") for ct, seg, which in (
        (baseline, baseline_seg, "baseline"), (followup, followup_seg, "follow-up"))]
    for ct, which in zip(cts, ("baseline", "follow-up")):  # the lungs, hence the registration, need HU
        check_ct_extent(ct, f"the {which} CT")  # a spacing in another unit: nodes of cubic metres
        try:
            check_ct_values(np.asarray(ct.array))
        except LNQError as exc:  # not "the scans do not overlap": another exporter's stored values
            raise LNQError(str(exc).replace("the CT", f"the {which} CT", 1)) from None
    notes = []
    sources = [src if isinstance(src, (str, os.PathLike)) else None for src in (baseline, followup)]  # a file
    ids = [patient_id(ct, src) for ct, src in zip(cts, sources)]
    if ids[0] and ids[1] and ids[0] != ids[1]:
        notes.append(f"the scans belong to different patients (PatientID {ids[0]} vs {ids[1]}); "
                     "comparing them anyway")
        warnings.warn(notes[-1], UserWarning, stacklevel=2)
    segs = [None if seg is None else _read_seg(seg, ct) if isinstance(seg, (str, Path))
            else _labels(seg, f"the {which} segmentation", read=True)
            for seg, ct, which in zip((baseline_seg, followup_seg), cts, ("baseline", "follow-up"))]
    for k, which in ((0, "baseline"), (1, "follow-up")):  # before any slow prediction
        if segs[k] is not None:
            with collected_warnings() as heard:  # a resampled SEG: said in the result too
                segs[k] = seg_on_ct(segs[k], cts[k], cts[1 - k], which)
            for said in heard:
                if issubclass(said.category, GridWarning):
                    notes.append(str(said.message))
                warnings.warn(said.message, said.category, stacklevel=2)
    origins = [f"SEG {Path(seg).name}" if isinstance(seg, (str, Path)) else
               f"predicted by model {short_model_name(seg.model_version)}" if isinstance(seg, NodeResult) else
               "the labels given" for seg in (baseline_seg, followup_seg)]
    predictor = None
    for k, ct in enumerate(cts):
        if segs[k] is None:
            predictor = predictor or load_predictor(model, device=device)
            part = (0.4 * k, 0.4 * k + 0.4)
            found = find_nodes(ct, predictor, cancel=cancel, progress=lambda f, m="", p=part: step(
                p[0] + f * (p[1] - p[0]), m))
            segs[k], origins[k] = found.mask, f"predicted by model {short_model_name(found.model_version)}"
    _check(cancel)
    by_model = [seg is None or isinstance(seg, NodeResult) or flag  # a find_nodes result: the model's
                for seg, flag in zip((baseline_seg, followup_seg), seg_by_model)]
    if by_model[0] != by_model[1]:  # a reader's selection against all the model finds
        reader = "follow-up" if by_model[0] else "baseline"
        notes.append(f"only the {reader} scan's nodes are a reader's; the other's nodes are the model's: a "
                     "node one of them leaves out (a reader may mark only some nodes, the model reports "
                     "nodes >= 10 mm) reads as new or vanished; give both scans a reader's nodes, or "
                     "neither, to compare like with like")
        warnings.warn(notes[-1], UserWarning, stacklevel=2)
    result = compare_nodes(cts[0], segs[0], cts[1], segs[1], organ=organ,
                           progress=lambda f, m="": step(0.8 + 0.2 * f, m), registration=registration,
                           nadir_sum_mm=nadir_sum_mm, nadir_scans=nadir_scans)
    result.warnings[:0] = notes
    result.sources = (origins[0], origins[1])
    if csv_path is not None:
        try:
            write_changes_csv(result.rows, csv_path)
        except OSError as exc:
            raise LNQError(f"cannot write {csv_path} ({exc.strerror or exc}); choose another path") from exc
    return result


def group_cases(workspace: str | Path | Workspace, csv_path: str | Path | None = None) -> list[TimePoint]:
    """Record which patient and time point each listed case is: a CSV with the columns ``case``,
    ``patient`` and ``timepoint`` (an ISO date, or a label that sorts like t0, t1), or, without one, the
    DICOM PatientID and StudyDate that the cases' NRRD CT headers carry (3D Slicer writes them as
    ``DICOM.PatientID``). Every row is checked before anything is written; returns the rows."""
    import csv

    ws = _open(workspace)
    if csv_path is None:
        points = _header_time_points(ws)
        ws.group_cases(points)
        return points
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # Excel's "CSV UTF-8" too
            reader = csv.DictReader(handle)
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]  # "case, patient"
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LNQError(f"cannot read {csv_path} ({exc}); give a CSV file with the columns "
                       "case,patient,timepoint") from exc
    missing = {"case", "patient", "timepoint"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise LNQError(f"{csv_path} needs a header row case,patient,timepoint and one row per case"
                       + (f" (missing: {', '.join(sorted(missing))})" if rows else ""))
    points = [TimePoint(*((r[k] or "").strip() for k in ("case", "patient", "timepoint")))  # " P1 " too
              for r in rows]
    ws.group_cases(points)
    return points


def _header_time_points(ws: Workspace) -> list[TimePoint]:
    """The cases whose CT header (NRRD fields, or the DICOM series' own) names both the patient and the
    study date."""
    points = []
    for case in ws.case_ids():
        fields = source_fields(ws.ct_path(case))
        patient, date = header_value(fields, PATIENT_KEYS), header_value(fields, STUDY_DATE_KEYS)
        if patient and date:
            points.append(TimePoint(case, patient, date))
    if not points:
        raise LNQError(f"no CT header in {ws.root} names both its patient and study date (a DICOM series' "
                       "PatientID and StudyDate, or DICOM.PatientID and DICOM.StudyDate in an NRRD header); "
                       "give a CSV with the columns case,patient,timepoint")
    return points


def first_and_last_scans(workspace: str | Path | Workspace, patient: str) -> tuple[TimePoint, TimePoint]:
    """A workspace patient's first and last grouped scans (what :func:`compare_time_points` compares)."""
    ws = _open(workspace)
    points = ws.time_points(patient)
    if len(points) < 2:
        known = sorted({t.patient for t in ws.time_points()})
        raise LNQError(f"patient {patient!r} has {'one grouped scan' if points else 'no grouped scans'} in "
                       f"{ws.root}; two are needed"
                       + (f" (grouped patients: {', '.join(known)})" if known else
                          "; group cases first with `lnq-napari workspace group W CSV`"))
    return points[0], points[-1]


def model_if_needed(model: str | Path | Predictor | None, *segs: object) -> str | Path | Predictor | None:
    """``model`` when a scan has no nodes of its own to compare (a SEG of ``segs`` is None), else None:
    :func:`compare` refuses a model given with both SEGs."""
    return model if any(seg is None for seg in segs) else None


def compare_time_points(
    workspace: str | Path | Workspace, patient: str, csv_path: str | Path | None = None,
    model: str | Path | Predictor | None = None, device: str = "auto", progress: Progress = None,
    cancel: Cancel = None,
) -> CompareResult:
    """:func:`compare` of a workspace patient's first and last time points. Each scan's nodes are its
    newest correction, else autosave, else prediction (an original partial annotation marks only some
    nodes), else the model's. Scans between are compared with the first too: RECIST 1.1 measures
    progression from the nadir, the smallest sum of the same targets on study
    (:mod:`lnq_napari.followup.nadir`; said in a warning when below the baseline's; a scan between that
    cannot be compared or is poorly registered is said too), a new node >= 10 mm within
    :data:`~lnq_napari.followup.match.MAX_DISTANCE_MM` of an equivocal new node at a scan between (both
    carried to the first) is confirmed (RECIST 1.1 4.3.2: PD, dated to that scan, said), and a scan between
    that read PD, PR or CR is named (each compared with the first; not a best overall response)."""
    ws = _open(workspace)
    points = ws.time_points(patient)
    if len(points) < 2:
        first_and_last_scans(ws, patient)  # its one-line error
    first, last = points[0], points[-1]
    step = progress or (lambda fraction, message="": None)
    share = len(points) - 1  # one comparison each: the scans between, then the last

    def nodes_of(point):
        found = ws.preferred_version(point.case, ("correction", "autosave", "prediction"))
        return found, None if found is None else ws.read_labels(point.case, found["version"])

    first_found, first_seg = nodes_of(first)
    scans, responses, notes = [], [], []
    for k, point in enumerate(points[1:-1]):
        found, seg = nodes_of(point)
        label = f"{point.case} ({point.timepoint})"
        by_model = (first_found is not None and first_found["source"] == "prediction",
                    found is not None and found["source"] == "prediction")
        try:
            with warnings.catch_warnings():  # its own warnings belong to its own comparison
                warnings.simplefilter("ignore")
                between = compare(ws.ct_path(first.case), ws.ct_path(point.case), first_seg, seg,
                                  model=model_if_needed(model, first_seg, seg), device=device,
                                  cancel=cancel, seg_by_model=by_model,
                                  progress=lambda f, m="", k=k: step((k + f) / share, m))
        except LNQError as exc:
            notes.append(f"scan {label} between the two could not be compared ({exc}): RECIST measures PD "
                         "from the smallest sum on study, which it may hold")
            warnings.warn(notes[-1], UserWarning, stacklevel=2)
            continue
        if between.quality.poor:  # its sums may pair the wrong nodes
            notes.append(f"scan {label} between the two is poorly registered to the first, so its sum is not "
                         "taken as the nadir RECIST measures PD from; check it by eye")
            warnings.warn(notes[-1], UserWarning, stacklevel=2)
            continue
        scans.append(scan_credits(between, label))
        responses.append((label, between.recist.overall))
    last_found, last_seg = nodes_of(last)
    by_model = tuple(p is not None and p["source"] == "prediction" for p in (first_found, last_found))
    result = compare(ws.ct_path(first.case), ws.ct_path(last.case), first_seg, last_seg, csv_path=csv_path,
                     model=model_if_needed(model, first_seg, last_seg), device=device, cancel=cancel,
                     seg_by_model=by_model, nadir_scans=scans,
                     progress=lambda f, m="": step((share - 1 + f) / share, m))
    said = _earlier_responses(responses, result, f"{points[-2].case} ({points[-2].timepoint})")
    if said:
        notes.append(said)
        warnings.warn(said, UserWarning, stacklevel=2)
    result.warnings[:0] = notes
    result.sources = tuple(f"{t.case} {p['source']} {p['version']}" if p else f"{t.case} {origin}"
                           for t, p, origin in zip((first, last), (first_found, last_found), result.sources))
    return result


def _earlier_responses(responses: list[tuple[str, str]], result: CompareResult, previous: str) -> str:
    """A warning naming the scans between that read PD, PR or CR (each compared with the first), and what
    RECIST makes of them for the last scan (``previous``: the scan just before it); "" when none did. Not
    a best overall response: that needs the trial's confirmation rules."""
    named = [(label, overall) for label, overall in responses if overall in ("PD", "PR", "CR")]
    if not named:
        return ""
    r = result.recist
    said = (f"scan(s) between read {', '.join(f'{label} {overall}' for label, overall in named)} (each "
            f"compared with the first); the last reads {r.overall}")
    if any(overall == "PD" for _, overall in named):
        said += ("; RECIST 1.1: progression at an earlier scan ends the response (best overall response "
                 "stops at the first PD), whatever the last reads")
    back = [t for t in r.targets if reaches(r.credited_mm.get(t, 0.0), PATHOLOGICAL_MM)]
    label, overall = responses[-1]
    if overall == "CR" and label == previous and back and r.overall != "PD":  # the assessment before
        said += (f"; target node(s) {', '.join(map(str, back))} are 10 mm or more again after the CR at "
                 f"{label}: EORTC (RECIST FAQ 'Abnormal lymph node') counts a reappearance after a "
                 "definitive (confirmed) CR as PD, else PR may fit both scans")
    if any(overall == "PR" for _, overall in named) and r.overall == "SD":
        said += ("; EORTC (RECIST 1.1 clarifications): a confirmed PR continues until the criteria for PD "
                 "are met, so this SD is a continuing PR if that PR was confirmed")
    return said


def _read_seg(seg: str | Path, ct: Volume | None = None, scored: bool = False) -> Volume:
    """A label file as ``measure`` and ``compare`` read it: a DICOM SEG on ``ct`` (else on its CT series
    beside it), a 3D Slicer segmentation as its node segment(s) (several: each segment's nodes kept
    apart, :func:`~lnq_napari.quantify.read_node_ids`), any other label map as it is. ``scored``: as
    ``evaluate`` reads a prediction: a segmentation's node segments as one 0/1 mask, any other file's
    voxels unchecked (the challenge's reading, warned of by the caller)."""
    read_segments = read_labels if scored else read_node_ids
    if dicom_tree.seg_file(seg) is not None:
        return read_segments(seg, reference=ct)
    raw = read_raw(seg)
    if raw.layered or segfile.is_slicer_segmentation(raw.meta):
        return read_segments(seg)
    if not scored:
        check_label_values(raw.array, Path(seg).name)  # a CT given as the labels is named as such
    return raw.volume()


#: How often ``train`` writes its checkpoint (``--resume`` continues from the last one).
TRAIN_CHECKPOINT_EVERY = 100


def train(
    data: str | Path, out: str | Path, iterations: int = 2000, device: str = "auto", seed: int = 0,
    resume: bool = False, naive: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> Path:
    """Train a model on a data folder with partial labels (LNQ layout, or DICOM CT series with their SEGs:
    :func:`~lnq_napari.io.datasets.find_cases`); returns the model folder."""
    folder = check_output_folder(out, "the output folder", "the model")
    held = [n for n in ("config.json", "weights.safetensors", "train_state") if (folder / n).exists()]
    if held and not resume:  # a 2-iteration run replaced a trained model (the bundled one, even)
        raise LNQError(f"the output folder {folder} already holds a model or its training "
                       f"({', '.join(held)}); it is left as it is: give a new folder, or resume that "
                       "training (--resume on the command line)")
    cases = load_training_cases(data, naive=naive)
    config = {"naive": bool(naive), "inference": {"mediastinum_margin_mm": REGION_MARGIN_MM}}  # as bundled
    return train_model(cases, out, iterations, device=device, seed=seed, config=config,
                       resume=resume, progress=progress, cancel=cancel,
                       checkpoint_every=TRAIN_CHECKPOINT_EVERY)


def export_nnunet(
    out: str | Path, dataset_id: int, data: str | Path | None = None, workspace: str | Path | None = None,
    name: str = "LNQ", workers: int | None = None, progress: Progress = None, cancel: Cancel = None,
):
    """Write an nnU-Net v2 raw dataset ``<out>/DatasetNNN_<name>`` from LNQ-layout ``data`` or a
    ``workspace`` (its corrections by the correction rules, other cases by their original labels);
    returns :class:`~lnq_napari.nnunet.export.ExportResult`. See :mod:`lnq_napari.nnunet.export`."""
    from lnq_napari.nnunet.export import export_dataset

    return export_dataset(out, dataset_id, data=data, workspace=workspace, name=name, workers=workers,
                          progress=progress, cancel=cancel)


def finetune_nnunet(
    workspace: str | Path, model: str | Path | None = None, work: str | Path | None = None,
    dataset_id: int | None = None, iterations: int = 250, epochs: int = 1,
    device: str = "auto", progress: Progress = None, cancel: Cancel = None,
    config: FinetuneConfig | None = None,
):
    """Fine-tune the nnU-Net model ``model`` (default: the workspace's active nnU-Net version) on the
    workspace's corrections (other cases replayed) through nnU-Net's own trainer from its weights; the
    result is registered and activated when the activation rule says so. Returns
    :class:`~lnq_napari.nnunet.finetune.NnUNetFinetune`. See :mod:`lnq_napari.nnunet.finetune`."""
    from lnq_napari.nnunet.finetune import finetune_nnunet as run

    return run(workspace, model, work, dataset_id, iterations=iterations, epochs=epochs,
               device=device, progress=progress, cancel=cancel, config=config)


def find_nodes(
    ct: Volume | str | Path, model: str | Path | Predictor | None = None, device: str = "auto",
    progress: Progress = None, cancel: Cancel = None, region: bool = True,
    max_suggestions: int | None = None,
) -> NodeResult:
    """The prediction pipeline: predict ``ct`` (a Volume, a SimpleITK image, or a CT file or DICOM series
    folder), give each node its id, rank suggestions, measure nodes.

    ``model`` is a model folder (None: the bundled model; ``nnunet:<folder>`` or an nnU-Net trained model
    folder: :class:`~lnq_napari.nnunet.backend.NnUNetPredictor`), a workspace (its active model), an entry
    of :func:`list_models`, or a loaded predictor, kept across calls (``device`` is then not used). When
    the model's ``mediastinum_margin_mm`` is set, nodes and suggestions keep to the mediastinum region (the
    lungs' hull grown by it); ``region=False`` turns that off for this call. Suggestions are the regions
    the model is unsure of ("unsure"), regions it is sure of that post-processing left out ("small",
    "bright", "dropped", saying why), and nodes whose outline looks incomplete ("outline"); fragments of
    one node are merged, the rest ranked
    together and cut to ``max_suggestions`` (None: the model's ``max_suggestions``).
    """
    if max_suggestions is not None and (isinstance(max_suggestions, bool) or not isinstance(
            max_suggestions, numbers.Integral) or max_suggestions < 0):
        raise LNQError(f"max_suggestions must be a whole number >= 0, or None for the model's own (got "
                       f"{max_suggestions!r})")
    ct = _volume(ct, "the CT", read=True)
    predictor, prediction = _predicted(ct, model, device, progress, cancel, region)
    return nodes_of_prediction(ct, prediction, predictor.config.inference, max_suggestions, progress=progress,
                               cancel=cancel)


def _predicted(ct: Volume, model, device: str, progress: Progress, cancel: Cancel,
               region: bool = True) -> tuple[Predictor, Prediction]:
    """``ct`` checked and predicted (post-processed mask and probabilities): :func:`find_nodes` without
    the node ids, suggestions and table, which `predict` does not write."""
    _check_ct(ct)
    off_scale = scale_problem(ct)  # a wrong slope or intercept: predicted, with a warning
    if off_scale:
        warnings.warn(off_scale, UserWarning, stacklevel=3)
    extent = min(n * float(sp) for n, sp in zip(ct.shape, ct.spacing_zyx))
    if extent < THIN_SLAB_MM:
        warnings.warn(f"the CT spans only {extent:.0f} mm along one axis: the model judges nodes in their 3D "
                      "context and finds few or none in a slab this thin; give the whole series",
                      UserWarning, stacklevel=3)
    predictor = load_predictor(model, device=device)
    inf = predictor.config.inference
    step = progress or (lambda fraction, message="": None)
    off = {} if region or inf.mediastinum_margin_mm is None else {"region": False}
    prediction = predictor.predict(ct, progress=lambda f, m="": step(0.9 * f, m), cancel=cancel, **off)
    _check(cancel)
    return predictor, prediction


def _check_ct(ct: Volume) -> None:
    """LNQError when ``ct`` is no CT to find nodes in (a mask, a single slice, label values, no body)."""
    if np.asarray(ct.array).dtype == bool:
        raise LNQError("the CT holds True/False values (a mask?); a CT holds numbers in Hounsfield units: "
                       "pass the CT volume")
    if min(ct.shape) < 2:
        raise LNQError(f"the CT is {' x '.join(map(str, ct.shape))} voxels (z, y, x): lnq-napari finds nodes "
                       "in chest CT volumes, not in a single slice; give the whole series")
    check_ct_values(np.asarray(ct.array))  # before the model loads (nnU-Net's too)
    check_ct_extent(ct)  # before the model loads


#: A CT thinner than this (mm) along an axis is a slab: predicted, with a warning (a 9 mm slab through
#: two large phantom nodes gave a peak probability of 1e-5).
THIN_SLAB_MM = 30.0


def nodes_of_prediction(
    ct: Volume, prediction: Prediction, inference: InferenceConfig, max_suggestions: int | None = None,
    progress: Progress = None, cancel: Cancel = None,
) -> NodeResult:
    """:func:`find_nodes` after the prediction: node ids, ranked suggestions (``inference`` gives the
    threshold, size floor, brightness rule and the cap), the node table."""
    inf = inference
    step = progress or (lambda fraction, message="": None)
    step(0.9, "suggestions")
    mask, prob = prediction.mask, prediction.probabilities
    # one id per node, shared by outlines and the table, numbered in LPS order (whatever the file's)
    labels = mask.with_array(label_nodes(np.asarray(mask.array), grid=mask))
    n_nodes = int(np.asarray(labels.array).max(initial=0))
    if n_nodes > MAX_IDS:
        raise LNQError(f"the model predicted {n_nodes} separate nodes in {prediction.model_version}'s mask: "
                       "noise, not nodes; check the model (an nnU-Net model takes a size floor: "
                       "nnunet:<folder>?min_component_mm3=300)")
    inside = getattr(prediction, "region", None)
    cap = inf.max_suggestions if max_suggestions is None else max_suggestions
    rows = suggest_candidates(prob, mask, high=float(inf.threshold), hu=np.asarray(ct.array),
                              max_mean_hu=inf.max_mean_hu, region=inside,
                              size_floor_mm3=float(inf.min_component_mm3), max_candidates=cap,
                              min_peak=float(inf.min_peak))
    rows += [s for s in active.outline_suggestions(ct, labels, prob)
             if inside is None or inside[s.centre_zyx]]
    suggestions = rank_suggestions(rows, cap, ct.spacing_zyx, merge_mm=2 * MERGE_MM)
    _check(cancel)
    step(0.95, "node table")
    nodes = measure_ids(labels, ct)  # its ids are the nodes: not numbered again
    step(1.0, f"{len(nodes)} nodes, {len(suggestions)} suggestions")
    shown = None if inside is None else ct.with_array(inside.astype(np.uint8))
    return NodeResult(labels, prob, prediction.model_version, suggestions, nodes, shown)


def _check(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("prediction cancelled")


PREDICT_FORMATS = ("nrrd", "dicom-seg")


def predict(
    inputs: str | Path, out: str | Path, model: str | Path | None = None, device: str = "auto",
    probabilities: bool = False, progress: Progress = None, cancel: Cancel = None, format: str = "nrrd",
) -> list[Path]:
    """Predict node masks for a CT (file, DICOM folder, folder of CTs, or a folder of DICOM series folders:
    each CT series below it); returns written files.

    Per CT: ``<case>-seg.nrrd`` (uint8 {0,1} on the CT grid, Slicer keys, model version in the header),
    or with ``format="dicom-seg"`` ``<case>-seg.dcm``, a DICOM SEG referencing the CT series (DICOM CTs
    only: :func:`export_dicom_seg`), marked a prediction in its Content Label; with ``probabilities``
    also ``<case>-prob.nrrd`` (float32). A CT of a batch that cannot be read or predicted does not stop
    the others: every other CT is predicted, then LNQError says how many were and names the first that
    was not, with the others that failed for the same reason (the parts of a DICOM series an export split
    over folders each fail so, named together: :func:`.io.dicom_tree.split_series`).
    """
    if not isinstance(inputs, (str, os.PathLike)):  # a Volume raised pathlib's TypeError
        raise LNQError(f"predict reads CT files or folders and writes label files (got {kind_of(inputs)}); "
                       "for a CT in memory use find_nodes(ct), then save_labels(result, case, folder=...)")
    if format not in PREDICT_FORMATS:
        raise LNQError(f"unknown output format {format!r}; use one of {', '.join(PREDICT_FORMATS)}")
    out = check_output_folder(out, "the output folder", "the predictions")
    items = find_cts(inputs)
    segs = [p for _, p in items if dicom_tree.is_dicom_path(p) and dicom_tree.seg_file(p) is not None]
    if segs:
        raise LNQError(f"{segs[0].name} is a DICOM SEG (a segmentation), not a CT; give the CT series folder "
                       "it was drawn on")
    not_dicom = [p for _, p in items if not dicom_tree.is_dicom_path(p)] if format == "dicom-seg" else []
    if not_dicom:
        raise LNQError(f"the dicom-seg format writes a SEG that references the DICOM CT series, and "
                       f"{not_dicom[0].name} is not DICOM; use the nrrd format for such CTs")
    suffix = "-seg.dcm" if format == "dicom-seg" else "-seg.nrrd"
    targets = {case_id: out / f"{case_id}{suffix}" for case_id, _ in items}
    check_prediction_targets(targets, "the output folder", PREDICTIONS)
    predictor = load_predictor(model, device=device)
    split = dicom_tree.split_series([p for _, p in items if p.is_dir()])
    written: list[Path] = []
    failed: dict[str, list[str]] = {}  # why -> the CTs it stopped (a split series' parts: one reason)
    for k, (case_id, path) in enumerate(items):
        def step(fraction: float, message: str, k: int = k, case_id: str = case_id) -> None:
            if progress:
                progress((k + fraction) / len(items), f"{case_id}: {message}")

        one_slice = False  # refused as one: its thickness taken as 1 mm is no news
        try:
            with collected_warnings() as heard:  # in a batch, each said with its case
                if path in split:  # a part of a series: read alone, it is a CT of half the slices
                    raise LNQError(split[path])
                ct = read_volume(path)
                one_slice = min(ct.shape) < 2
                series_uid = ct.meta.get("dicom_series_uid")
                _, result = _predicted(ct, predictor, device, step, cancel)
                # only these are written: the CT, its region and the probabilities not asked for go first
                mask, version = result.mask, result.model_version
                kept = result.probabilities if probabilities else None
                del ct, result
        except LNQError as exc:  # a damaged CT in a batch: the others are still predicted
            if len(items) == 1:
                raise
            failed.setdefault(str(exc), []).append(case_id)
            continue
        finally:
            for said in heard:
                if one_slice and issubclass(said.category, SliceThicknessWarning):
                    continue
                prefix = f"{case_id}: " if len(items) > 1 else ""
                warnings.warn(f"{prefix}{said.message}", said.category, stacklevel=2)
        if format == "dicom-seg":
            written.append(dicom_seg.write_dicom_seg(targets[case_id], mask, path,
                                                     model_version=version, series_uid=series_uid,
                                                     command="predict"))
        else:
            extra = {"lnq_model_version": version, "lnq_source": Path(path).name, **created_by("predict")}
            written.append(segfile.write_seg_nrrd(targets[case_id], mask, extra=extra))
        if kept is not None:
            written.append(write_volume(out / f"{case_id}-prob.nrrd", kept))
        step(1.0, "written")
    if failed:
        (why, cases), left = next(iter(failed.items())), sum(len(c) for c in failed.values())
        named = ", ".join(cases[:-1]) + f" and {cases[-1]}" if len(cases) > 1 else cases[0]
        more = f" (and {left - len(cases)} more)" if left > len(cases) else ""
        raise LNQError(f"predicted {len(items) - left} of {len(items)} CTs into {out}; not {named}: "
                       f"{why}{more}")
    return written


def demo(ct=None, out: str | Path = "lnq-demo", model=None, progress: Progress = None) -> dict:
    """The main job: find the nodes, measure, evaluate (phantom) and save pictures. Returns a report.

    With no ``ct`` a built-in phantom case is made and scored against its complete truth. Results go to
    ``out``: the CT (phantom only), ``<case>-seg.nrrd``, ``<case>-nodes.csv``, ``<case>-overlay.png`` and
    ``report.json``. It opens no window (``lnq-napari demo`` then opens napari on the case). Labels of the
    user's in ``out`` that the prediction would write over or be read in place of (3D Slicer's
    ``<case>.seg.nrrd``) are an LNQError, before anything is computed or written; its own earlier results
    are written over.
    """
    out = check_output_folder(out, "the output folder", "the results")
    step = progress or (lambda fraction, message="": None)
    truth = None
    if ct is None:
        step(0.0, "making a phantom case")
        case = make_case(DEMO_SEED, case_id="lnq2023-demo-0001")
        volume, truth, name = case.ct, case.full, case.case_id
    else:
        volume, name = read_volume(ct), case_name(ct)
    # its own first
    check_prediction_targets({name: out / f"{name}-seg.nrrd"}, "the output folder", PREDICTIONS[::-1])
    if truth is None:
        _check_ct(volume)  # before the results folder is made: a refused CT leaves nothing behind
    predictor = load_predictor(model, device="auto")
    out.mkdir(parents=True, exist_ok=True)
    ct_path = Path(ct) if truth is None else write_volume(out / f"{name}-ct.nrrd", volume)
    if truth is not None:
        write_volume(out / f"{name}-full.nrrd", truth)

    started = time.perf_counter()
    result = find_nodes(volume, predictor, progress=lambda f, m="": step(0.1 + 0.8 * f, m))
    seconds = time.perf_counter() - started
    seg_path = segfile.write_seg_nrrd(out / f"{name}-seg.nrrd", result.mask, extra={
        "lnq_source": "prediction", "lnq_model_version": result.model_version, **created_by("demo")})
    write_csv(result.nodes, out / f"{name}-nodes.csv", mean_hu=True)  # its columns with or without nodes
    summary = summarize_nodes(result.nodes)
    report = {
        "case": name, "ct": str(ct_path), "segmentation": str(seg_path), "model": result.model_version,
        "predict_seconds": round(seconds, 2), "nodes": summary.n_nodes, "nodes_ge_10mm": summary.n_ge_10mm,
        "nodes_cut_by_edge": summary.n_cut,  # their figures lower bounds (the CSV names the edges)
        "total_volume_cm3": round(summary.total_volume_cm3, 3),
    }
    if truth is not None:
        scores = metrics.evaluate_case(result.binary_mask(), truth)
        report.update({f"truth_{k}": v for k, v in scores.to_dict().items()})
    figure = overlay_figure(volume, result.mask, out / f"{name}-overlay.png", truth=truth,
                            title=f"{name}: {summary.n_nodes} nodes predicted")
    report["picture"] = str(figure)
    atomic_write_text(out / "report.json", strict_json(report) + "\n")
    step(1.0, "done")
    return report


def has_display() -> bool:
    """True when a window can open (an X or Wayland display, or macOS / Windows)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin", "win32")


def require_display() -> None:
    """LNQError unless napari can open a window (Qt aborts the process without one: a Jupyter kernel on a
    server died); Qt's offscreen platform counts as one."""
    if not has_display() and os.environ.get("QT_QPA_PLATFORM", "") != "offscreen":
        raise LNQError("no display to open napari on (DISPLAY is not set): run it where a screen is, through "
                       "ssh -X or xvfb-run, or use predict / demo --headless for files and pictures")


def init_workspace(path: str | Path, data: str | Path, model: str | Path | None = None) -> Workspace:
    """Create a review workspace over a data folder; returns the :class:`~lnq_napari.workspace.Workspace`.

    ``model``: a model folder to start from instead of the bundled model (one you trained: ours, or
    nnU-Net's as ``nnunet:<folder>[?options]``, which its predictions then use), registered and activated
    (journaled as the user's choice). It is checked before the workspace is made."""
    spec = None if model is None else model_spec(model)
    if spec is not None and (not spec.folder.is_dir() or model_kind(spec.folder) is None):
        raise LNQError(f"the model {model} is not a model folder (no config.json, nor nnU-Net's plans.json "
                       "and dataset.json); give a trained model folder, or none for the bundled model "
                       "(--model on the command line)")
    if spec is not None:
        check_outside_model(spec.folder.resolve(), f"the model {model}", spec.options)
    ws = Workspace.init(path, data)
    if model is not None:
        ws.activate(ws.adopt_model(model), reason="the model the workspace was made with", decided_by="user")
    return ws


def next_cases(workspace: str | Path | Workspace, n: int = 5, strategy: str = "uncertainty",
               progress: Progress = None) -> list[RankedCase]:
    """The ``n`` cases most worth reviewing next, ranked.

    One :class:`~lnq_napari.active.RankedCase` per case, best first. Uses the workspace's active model
    (the bundled one when none is registered); per-case scores are cached in the workspace by model
    version, and each case's predicted mask is stored as a ``prediction`` label version. Corrected cases
    are skipped; empty when every case has a correction, LNQError when no case without one could
    be read and predicted (each one left out is named in a warning).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise LNQError(f"the number of cases to rank must be a positive integer, got {n!r}; use e.g. -n 5")
    ws = _open(workspace)
    chosen = active.get_strategy(strategy)
    corrected = set(ws.corrected_cases())
    # never models/; the folders of the cases to predict: once they are known (score_workspace)
    ws.check_writable(active.RANKING_WRITES, ws.labels_dir, ws.cache.folder)
    ws.warn_lost_corrections("ranked")
    model_path, key = ws.prediction_model()
    flips = [(2,)] if chosen.needs_flips else []
    predictor = active.LazyPredictor(lambda: load_predictor(model_path))
    cases = None
    if strategy == "random":  # needs no scores: predict only the drawn cases
        pool = {c: active.CaseScore(c, 0.0) for c in ws.case_ids() if c not in corrected}
        cases = chosen.rank(pool, n)
    scores = active.score_workspace(ws, predictor, key, cases=cases, flips=flips, progress=progress)
    rows = active.ranked_rows(scores, chosen, n)
    left = len(ws.case_ids()) - len(set(ws.corrected_cases()))
    if not rows and left > 0:  # not "nothing left to review"
        cases = f"{left} case{'s' if left != 1 else ''}"
        raise LNQError(f"no case ranked: the {cases} without a correction could not be read or predicted "
                       "(the warnings say why)")
    ws.log("next", strategy=strategy, model_version=key, cases=[r.case for r in rows])
    return rows


def finetune(
    workspace: str | Path, config: FinetuneConfig | dict | None = None, device: str = "auto",
    resume: bool = False, progress: Progress = None, cancel: Cancel = None, iterations: int | None = None,
) -> FinetuneResult | NnUNetFinetune:
    """Fine-tune the active model on the workspace's corrections as ``config`` says (a
    :class:`~lnq_napari.model.config.FinetuneConfig` or a dict of its settings; None: its defaults);
    ``iterations`` overrides ``config.iterations``.

    See :func:`lnq_napari.finetuning.finetune_workspace`: the new version is registered with the
    active model as parent and activated only when the activation rule says so. When the active model
    is an nnU-Net version, :func:`finetune_nnunet` runs instead (work folder ``<workspace>/nnunet``, a
    free dataset id, ``config.iterations`` nnU-Net iterations; of ``config`` only ``val_fraction``,
    ``dense_truth`` and the forgetting check's ``forgetting_data``, ``forgetting_cases`` and
    ``fallback_steps`` apply besides) and returns its :class:`~lnq_napari.nnunet.finetune.NnUNetFinetune`.
    """
    from lnq_napari.workspace.registry import is_nnunet_version

    if resume and (iterations is not None or config is not None):
        raise LNQError("resume continues the interrupted fine-tune with the settings it started with; give "
                       "no iterations or config with it, or start afresh without resume (--resume, "
                       "--iterations and --set on the command line)")
    config = _finetune_config(config)
    if iterations is not None:
        config = config.replace(iterations=iterations)
    ws = _open(workspace)
    if is_nnunet_version(ws.active_model()):
        if resume:
            raise LNQError("resume continues lnq-napari fine-tunes only; the active model is an nnU-Net "
                           "one: fine-tune again without resume (--resume on the command line)")
        return finetune_nnunet(ws, iterations=config.iterations, device=device, progress=progress,
                               cancel=cancel, config=config)
    return finetune_workspace(ws, config=config, device=device, resume=resume, progress=progress,
                              cancel=cancel)


def _finetune_config(config) -> FinetuneConfig:
    """``config`` as a :class:`FinetuneConfig` (None: the defaults; a dict: its settings, checked); else an
    LNQError saying what to pass (a dict reached the trainer as an AttributeError)."""
    if config is None:
        return FinetuneConfig()
    if isinstance(config, FinetuneConfig):
        return config
    if isinstance(config, dict):
        unknown = sorted(str(k) for k in config if k not in FinetuneConfig.setting_names())
        if unknown:
            raise LNQError(f"unknown fine-tune setting {', '.join(unknown)}; use one of "
                           f"{', '.join(FinetuneConfig.setting_names())}")
        return FinetuneConfig(**config)
    raise LNQError(f"the fine-tune config must be a FinetuneConfig or a dict of its settings (got "
                   f"{kind_of(config)}); e.g. FinetuneConfig(iterations=50)")


def list_models(workspace: str | Path | Workspace) -> list[ModelSummary]:
    """The workspace's models: the bundled one, then each registered version, oldest first, with its
    parent, whether it is active, its training cases and the activation rule's verdict and figures."""
    ws = _open(workspace)
    return ws.model_summaries()


def interrupted_finetune(workspace: str | Path | Workspace) -> InterruptedFinetune | None:
    """The workspace's fine-tune that stopped before its end (``finetune --resume`` continues it; a plain
    run discards it), None when there is none or one runs now."""
    return plan_of_interrupted(_open(workspace))


def pending_finetune(workspace: str | Path) -> bool:
    """Whether a fine-tune's plan lies in ``workspace`` (running, interrupted or finished before its clean-up:
    ``finetune --resume`` has something to read), without opening the workspace: cheap enough for a Ctrl-C
    handler. Unlike :func:`interrupted_finetune`, a finished plan counts."""
    return Workspace.pending_plan_file(workspace).is_file()


def registry_file(workspace: str | Path | Workspace) -> Path | None:
    """The file that changes whenever a version is registered or activated in ``workspace`` (None when it
    is not a workspace): a view that watches it stays current with other windows and the CLI."""
    try:
        return _open(workspace).registry.file
    except LNQError:
        return None


def activate_model(
    workspace: str | Path | Workspace, version: str | ModelSummary, decided_by: str = "user",
    reason: str = "",
) -> ModelSummary:
    """Make ``version`` the workspace's active model and journal who decided; returns its summary.

    ``version`` is a registered id (or its :func:`list_models` entry), ``"bundled"`` (roll back to the
    bundled model), a model folder of
    this workspace, or a model folder from elsewhere (one you trained: ours, or nnU-Net's as
    ``nnunet:<folder>[?options]``, kept with its options), copied in and registered as the root of its own
    lineage (:meth:`~lnq_napari.workspace.Workspace.adopt_model`). LNQError, with nothing changed, for an
    unknown version, a half-written model folder (files missing, unreadable or not matching their sha256),
    options given with one of our models, or other options than a version folder of this workspace was
    registered with. A version that is already active stays so, with no journal line (checked all
    the same: refused where activating it would be). The summary's ``replaced`` names the version it
    replaced, None when nothing changed (``activation()`` says so in one sentence).
    """
    ws = _open(workspace)
    if isinstance(version, ModelSummary):  # was read as its repr: "version 'ModelSummary(...)' unknown"
        version = _own_entry(ws, version)
    chosen = ws.version_or_adopted(str(version).strip())  # " m002" as copy-paste gives it
    with ws.locked():  # the check and the change as one step
        was = (ws.active_model() or {}).get("id", "bundled")
        if chosen != was:
            ws.activate(chosen, reason=reason, decided_by=decided_by)
        else:  # already active: nothing to journal, but refused as an activation would be
            ws.check_activation(chosen)
    summary = next(m for m in ws.model_summaries() if m.version == chosen)
    return replace(summary, replaced=was if chosen != was else None)


def _own_entry(ws: Workspace, entry: ModelSummary) -> str:
    """The version a :func:`list_models` entry names when it is one of ``ws``'s; LNQError when it came
    from another workspace (this one's version of that id is another model)."""
    try:
        own = ws.model_path(entry.version)
    except LNQError:
        own = None
    if own is None or Path(own).resolve() != Path(entry.path).resolve():
        raise LNQError(f"the list_models entry {entry.version} is the model at {entry.path}, not a version "
                       f"of the workspace {ws.root}; pass an entry of list_models of this workspace, or the "
                       "entry's path to copy that model in")
    return entry.version


def repair_workspace(workspace: str | Path | Workspace, case: str | None = None,
                     dry_run: bool = False) -> list[Repair]:
    """Rebuild the provenance (``vNNN.json``) of each label file of ``workspace`` (of ``case``, or of every
    case) whose own is missing or damaged from the file's header, keeping its number, parent, edits, model
    version and time; one :class:`~lnq_napari.workspace.repair.Repair` per such file, whose ``line()`` says
    what could not be recovered (a reviewer's marks and rejections are kept only in the JSON: recorded as
    lost) or why it was left alone (a save may still be writing it; the JSON cannot be read, a permission
    problem; the label file is torn: delete it if it is not wanted, repair never does; its header names
    another case or version, or its grid is not the case's CT's: copied there; its case folder cannot be
    written). ``dry_run``: what would be done, nothing written. LNQError, nothing done, when there is
    something to repair and the workspace cannot be written."""
    return _open(workspace).repair_labels(case, dry_run=dry_run)


def _open(workspace: str | Path | Workspace, expected_id: str | None = None) -> Workspace:
    """``workspace`` as an open :class:`~lnq_napari.workspace.Workspace` (a path is opened); with
    ``expected_id``, LNQError when it is not that workspace (:meth:`Workspace.open`)."""
    if not isinstance(workspace, Workspace):
        if not isinstance(workspace, (str, os.PathLike)):  # list_models(3) raised pathlib's TypeError
            raise LNQError(f"the workspace must be a folder path or an open Workspace (got "
                           f"{kind_of(workspace)}); create one with api.init_workspace(PATH, DATA)")
        return Workspace.open(workspace, expected_id)
    if expected_id is not None and not same_id(workspace.id, expected_id):
        raise gone_error(workspace.root)
    return workspace


def _path(value, what: str) -> str | Path:
    """``value`` when it is a file or folder path, else an LNQError saying what to pass."""
    if isinstance(value, (str, Path)):
        return value
    raise LNQError(f"{what} must be a file or folder path or an lnq_napari Volume (got {kind_of(value)}); a "
                   "SimpleITK image is taken as it is, an array as Volume(array, spacing, origin, direction)")


def _ct_volume(ct, seg, what: str) -> Volume:
    """The CT ``ct`` (a Volume or a path) for the labels ``seg``: of a DICOM folder holding several series,
    the one a DICOM SEG ``seg`` was drawn on (:func:`~lnq_napari.io.readers.read_ct_of`)."""
    if isinstance(ct, (str, Path)) and isinstance(seg, (str, Path)):
        return read_ct_of(ct, seg)
    return _volume(ct, what, read=True)


def _from_sitk(value, what: str, labels: bool = False):
    """A 3D scalar SimpleITK image as a Volume (its grid kept; LNQError for a 2D or vector one, said of
    ``labels`` or a CT); any other ``value`` as it is. SimpleITK is not imported for that: an image is
    known by its type's module."""
    if kind_of(value) == "SimpleITK.Image":
        return from_sitk_image(value, what, labels=labels).volume()
    return value


def _labels(value, what: str, read: bool = False) -> Volume:
    """:func:`_volume` of labels; a :func:`find_nodes` result as its ``mask`` (one id per node), as
    :func:`evaluate` takes it (as its 0/1 mask)."""
    return _volume(value.mask if isinstance(value, NodeResult) else value, what, read=read, labels=True)


def _volume(value, what: str, read: bool = False, labels: bool = False) -> Volume:
    """``value`` when it is a Volume (a SimpleITK image: as one); with ``read``, a path is read as one;
    anything else is an LNQError saying what to pass (an array alone has no spacing or position)."""
    value = _from_sitk(value, what, labels)
    if isinstance(value, Volume):
        if np.ndim(value.array) != 3:
            raise LNQError(f"{what} holds a {np.ndim(value.array)}D array (shape {np.shape(value.array)}); a "
                           "CT or label volume is 3D (z, y, x): stack the slices into one volume")
        if np.size(value.array) == 0:  # reached numpy's "zero-size array to reduction" ValueError
            raise LNQError(f"{what}: no voxels (shape {np.shape(value.array)}); pass a volume of at least "
                           "one voxel")
        check_grid(value.spacing, value.origin, value.direction, what)  # as every file reader checks
        return value
    if read and isinstance(value, (str, Path)):
        return read_volume(value)
    hint = "or a file path " if read else ""
    raise LNQError(f"{what} must be an lnq_napari Volume {hint}(got {kind_of(value)}): read files with "
                   "lnq_napari.io.read_volume / read_labels (a SimpleITK image is taken as it is), or wrap "
                   "an array as Volume(array, spacing, origin, direction), since an array alone has no voxel "
                   "size or position")


def save_labels(
    labels: Volume | NodeResult, case: str, *, workspace: str | Path | None = None,
    folder: str | Path | None = None,
    source: str = "correction", model_version: str | None = None, edits: int = 0,
    expected_id: str | None = None, **provenance,
) -> SavedLabels:
    """Store ``labels`` as a new version of ``case``; never overwrites anything.

    With ``workspace`` the version goes into it (with a journal line) and ``folder`` is not used;
    without, into the label store ``<folder>/<case>/`` (the same ``vNNN.seg.nrrd`` + ``vNNN.json``
    layout). ``expected_id``: the identity of the workspace the labels were opened from
    (``Workspace.id``); when another workspace is at its path now, or none, nothing is saved (LNQError).
    Extra keyword fields are kept in the provenance. ``labels`` may be a :func:`find_nodes` result (its
    ``mask``; its ``model_version`` when none is given). Such a result saved in a workspace with
    ``source="prediction"`` is recorded under the key the workspace finds its active model's predictions
    by (``m002``, ``bundled-<hash>``); another model's result is an LNQError there.
    """
    predicted_by = labels.model_version if isinstance(labels, NodeResult) else None
    if model_version is None:
        model_version = predicted_by
    labels = _labels(labels, "the labels to save")
    if workspace is not None:
        ws = _open(workspace, expected_id)
        if case in ws.case_ids():  # the same points stored otherwise: on the CT's grid (else refused there)
            labels = ws.onto_ct_grid(case, labels)
        if source == "prediction" and predicted_by is not None and model_version == predicted_by:
            model_version = _prediction_key(ws, predicted_by)
        try:
            version = ws.add_label_version(case, labels, source, model_version=model_version, edits=edits,
                                           **provenance)
        except OSError as exc:
            why = exc.strerror or exc
            fix = f"{space_advice(exc)}, then save again" if is_full(exc) else (
                "make it writable, or save into a folder you can write to")
            raise LNQError(f"cannot save the labels of {case} in the workspace {ws.root} ({why}); {fix}") \
                from exc
        info = ws.version_info(case, version)
        saved = SavedLabels(case, version, ws.label_store(case).folder / info["file"], info.get("sha256"))
        _warn_saved_since(ws, saved, provenance.get("parent"), labels, provenance.get("parent_sha256"))
    elif folder is None:
        raise LNQError(f"nowhere to save the labels of {case}; pass a workspace or a folder")
    else:
        try:
            saved = LabelStore(folder, case).add(labels, source, model_version=model_version, edits=edits,
                                                 **provenance)
        except OSError as exc:
            fix = f"{space_advice(exc)}, then save again" if is_full(exc) else (
                "choose a folder you can write to")
            raise LNQError(f"cannot save the labels of {case} in {folder} ({exc.strerror or exc}); {fix}") \
                from exc
    _warn_touching(saved, labels)
    return saved


def _warn_saved_since(ws: Workspace, saved: SavedLabels, parent: str | None, labels: Volume,
                      parent_sha256: str | None = None) -> None:
    """A warning when another reviewer's correction of the case, saved after ``parent`` (the version these
    labels were made on; ``parent_sha256``: its label file's, when known), is not held by ``saved`` or is
    newer and does not hold it; or when ``parent`` is gone, replaced or damaged
    (:func:`~lnq_napari.workspace.saved_since.saved_since_note`). ``saved`` is committed: a check that
    fails is said in the warning, never raised."""
    if not parent:
        return
    try:
        note = saved_since_note(ws.label_store(saved.case), saved, parent, labels, parent_sha256)
    except (OSError, LNQError) as exc:
        note = (f"{saved.case}: {saved.version} is saved; whether another reviewer saved this case since "
                f"{parent} could not be checked ({getattr(exc, 'strerror', None) or exc})")
    if note:
        warnings.warn(note, UserWarning, stacklevel=3)


def _prediction_key(ws: Workspace, predicted_by: str) -> str:
    """The key ``ws`` stores and finds its active model's predictions by (``bundled-<hash>``, ``m002``),
    for a :func:`find_nodes` result of that model (its own long version never matched one, so ranking
    stored another); LNQError, nothing saved, for another model's result."""
    model, key = ws.prediction_model()
    if model_version_of(model) != predicted_by:
        raise LNQError(f"these nodes were predicted by model {short_model_name(predicted_by)}, not the "
                       f"workspace's active model {key}: a workspace's predictions are its active model's; "
                       "save them as a correction (source=\"correction\"), or predict with model=workspace")
    return key


def _warn_touching(saved: SavedLabels, labels: Volume) -> None:
    """A warning when node ids the label map kept apart touch: one node in the saved 0/1 mask."""
    groups = touching_ids(labels.array)
    if groups:
        named = "; ".join(" and ".join(str(i) for i in group) for group in groups[:5])
        warnings.warn(f"{saved.case} {saved.version}: nodes {named} touch, so the saved version (one 0/1 "
                      "mask, the LNQ format) holds them as one node; leave a voxel between nodes to keep "
                      "them apart", UserWarning, stacklevel=2)


def _check_not_reviewed_elsewhere(ws: Workspace, target: Path, out: str | Path, case: str) -> None:
    """LNQError in one line when ``target`` holds a SEG of reviewed labels (:data:`EXPORT`) that this
    workspace keeps nowhere: neither, byte for byte, an export it journaled, nor (an export journaled
    without its sha256, or one a read-only workspace could not journal) a SEG whose labels are a stored
    version of ``case`` or of the case an earlier export to ``target`` was of (napari's Save of a viewer
    without a workspace, another workspace's export, or one changed since: its labels may be kept nowhere
    else). A copy of this workspace's own label version, or a prediction's SEG, is written over."""
    if not target.is_file() or writer(target) != EXPORT:
        return
    exports = ws.journal("export")
    digest = sha256_file(target)  # byte for byte an export of this workspace's, wherever it was written
    if any(line.get("sha256") == digest for line in exports):
        return
    cases = {case} | {line["case"] for line in exports if "sha256" not in line and line.get("case")
                      and same_file(target, Path(str(line.get("file", ""))))}
    if any(_seg_is_stored_version(ws, target, c) for c in sorted(cases)):
        return
    raise LNQError(f"{out} already holds a DICOM SEG of reviewed labels that this workspace did not "
                   "export (napari's Save, another workspace's export, or changed since); it is left as it "
                   "is: write the SEG under another file name, or move that file away")


def _seg_is_stored_version(ws: Workspace, seg: Path, case: str) -> bool:
    """Whether the labels of the DICOM SEG ``seg``, on ``case``'s CT, are those of one of its stored label
    versions (as 0/1 masks): writing over it loses nothing."""
    if case not in ws.case_ids():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mask = np.asarray(read_labels(seg, reference=ws.read_ct(case)).array) > 0
            for info in reversed(ws.versions(case)):
                stored = ws.read_labels(case, info["version"])
                if stored.array.shape == mask.shape and np.array_equal(np.asarray(stored.array) > 0, mask):
                    return True
    except (LNQError, OSError, ValueError):  # not readable on this case's CT: not one of its versions
        return False
    return False


def export_dicom_seg(
    out: str | Path, labels: Volume | NodeResult | None = None, ct: str | Path | None = None, *,
    workspace: str | Path | None = None, case: str | None = None, version: str | None = None,
    model_version: str | None = None, edits: int = 0,
) -> Path:
    """Write a DICOM SEG ``out`` (BINARY, one "lymph node" segment, SNOMED CT coded) that references the
    DICOM CT series it was drawn on, for 3D Slicer, OHIF or a PACS; returns ``out``.

    Either ``labels`` on the grid of the DICOM CT ``ct`` (a series folder or one of its files), with the
    ``model_version`` that predicted them (None: drawn by hand; a :func:`find_nodes` result's own by
    default) and the number of ``edits``; or a
    ``workspace`` ``case``: its label ``version`` (default the newest) with that version's provenance,
    journaled as ``export``; its CT is ``ct`` (the DICOM series the case's CT file was converted from)
    or the case's CT. LNQError when the CT is not DICOM or the grids differ, or when ``out`` exists and is
    not a SEG lnq-napari wrote.
    """
    # a CT slice, a SEG of the user's or a workspace's file is never written over (an export's or a
    # prediction's is: reviewed labels replace it); a folder is named as such by the writer
    check_not_users([Path(out).expanduser()], "", (EXPORT, *PREDICTIONS), what="a DICOM SEG")
    if workspace is None:
        if labels is None or ct is None:
            raise LNQError("export_dicom_seg needs labels and their DICOM CT, or a workspace and a case")
        if isinstance(labels, NodeResult) and model_version is None:  # the model that found them
            model_version = labels.model_version
        return dicom_seg.write_dicom_seg(out, _labels(labels, "the labels"), ct, model_version=model_version,
                                         edits=edits)
    if case is None:
        raise LNQError("export_dicom_seg with a workspace needs the case to export")
    ws = _open(workspace)
    target = Path(out).expanduser().resolve()
    inputs = [ws.root.resolve(), *(Path(p).resolve() for c in ws.case_ids() for p in (ws.ct_path(c),
                                                                                      ws.seg_path(c)) if p)]
    if any(target == p or p in target.parents for p in inputs):  # the workspace's own files and its data
        raise LNQError(f"{out} is a file of the workspace or of its cases' data (a CT series, a SEG it was "
                       "made from); give the SEG a file name outside them")
    _check_not_reviewed_elsewhere(ws, target, out, case)
    info = ws.version_info(case, version) if version else ws.latest_version(case)
    if info is None:
        raise LNQError(f"{case} has no label version to export; save one first")
    if ct is None and not dicom_tree.is_dicom_path(ws.ct_path(case)):
        raise LNQError(f"{case}'s CT {ws.ct_path(case).name} is not DICOM; a DICOM SEG references the DICOM "
                       "series the case was converted from: give its folder (--ct on the command line)")
    series = ws.read_ct(case).meta.get("dicom_series_uid")  # recorded when converted: the SEG's series
    labels = ws.read_labels(case, info["version"])
    try:
        path = dicom_seg.write_dicom_seg(out, labels, ct or ws.ct_path(case), series_uid=series,
                                         model_version=info.get("model_version"),
                                         edits=int(info.get("edits", 0)))
    except LNQError as exc:  # a version saved on another series of the case's folder: said so
        raise LNQError(f"{exc}{'' if ct else ws.series_note(case, labels)}") from None
    try:  # the SEG is whole: a workspace that cannot be written (a read-only copy) only misses the line
        ws.log("export", case=case, version=info["version"], file=str(path), format="dicom-seg",
               series=series, sha256=sha256_file(path))
    except (NotWritable, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in CANNOT_WRITE:
            raise
        warnings.warn(f"{path} is written, but the export is not in the journal of {ws.root}: it cannot be "
                      f"written ({exc.strerror})", UserWarning, stacklevel=2)
    return path
