"""Re-fitting the post-processing (threshold, minimum component size) of a model on corrected cases.

:func:`fit_postprocessing` grid-searches the threshold and the minimum component size applied by
:func:`lnq_napari.inference.postprocess` to maximise the mean Dice over the cases, keeping false nodes
per case within ``fp_margin`` of the parent's; ties (within ``dice_tolerance``) go to the setting
closest to the model's current one. Figures follow :func:`lnq_napari.metrics.evaluate_case` (challenge
Dice, 0 when either mask is empty; GT nodes smaller than ``min_diameter_mm`` are not counted; a false
node is a predicted component touching no truth), computed with numpy so one labelling per threshold
serves every size: a component dropped for its size is dropped whole, so filtering the components of
the mask at size 0 gives exactly the mask at any other size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lnq_napari.activation import CaseFigures
from lnq_napari.components import label_components
from lnq_napari.inference import postprocess
from lnq_napari.metrics import TARGET_DIAMETER_MM, counted_nodes
from lnq_napari.model.config import InferenceConfig

THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(11))  # 0.3 .. 0.8
MIN_SIZES_MM3 = (0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0)


@dataclass(frozen=True, eq=False)
class CalibrationCase:
    """One corrected case on the CT grid: the model's probabilities (float32), the CT in HU, the
    spacing (z, y, x mm), the corrected truth mask and, when the model uses one, its region mask."""

    case_id: str
    probabilities: np.ndarray
    hu: np.ndarray
    spacing_zyx: tuple[float, float, float]
    truth: np.ndarray
    region: np.ndarray | None = None


@dataclass(frozen=True)
class PostprocessingFigures:
    """Figures over the cases at one setting: mean Dice, pooled node recall, false nodes per case."""

    threshold: float
    min_component_mm3: float
    dice: float
    recall: float
    false_nodes: float
    cases: tuple[CaseFigures, ...]


@dataclass(frozen=True)
class PostprocessingFit:
    """The chosen setting, the figures there and at the current setting, and one line saying why."""

    threshold: float
    min_component_mm3: float
    chosen: PostprocessingFigures
    current: PostprocessingFigures
    fp_limit: float | None
    reason: str


@dataclass(frozen=True)
class _Truth:
    """A case's truth nodes: labels, which ones count (large enough) and the voxel count."""

    labels: np.ndarray
    counted: np.ndarray  # bool per label id (index 0 unused)
    voxels: int


@dataclass(frozen=True)
class _Components:
    """A case's post-processed components at one threshold, before the size filter."""

    sizes: np.ndarray  # voxels per component
    overlap: np.ndarray  # truth voxels inside each component
    pair_component: np.ndarray  # (component, counted truth node) pairs that touch
    pair_node: np.ndarray


def _cropped(case: CalibrationCase, lowest_threshold: float) -> CalibrationCase:
    """The case cut to the box of its truth and of the voxels any threshold keeps, plus one voxel: every
    component of either lies inside, so the figures are those of the whole grid, sooner."""
    used = (case.probabilities >= lowest_threshold) | (case.truth > 0)
    box = []
    for axis in range(3):
        hit = np.flatnonzero(used.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = (int(hit[0]) - 1, int(hit[-1]) + 2) if hit.size else (0, 1)
        box.append(slice(max(lo, 0), min(hi, used.shape[axis])))
    box = tuple(box)
    region = None if case.region is None else case.region[box]
    return CalibrationCase(case.case_id, case.probabilities[box], case.hu[box], case.spacing_zyx,
                           case.truth[box], region)


def _truth(case: CalibrationCase, min_diameter_mm: float) -> _Truth:
    labels, n = label_components(case.truth)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    counted = np.concatenate([[False], counted_nodes(sizes[1:], case.spacing_zyx, min_diameter_mm)])
    return _Truth(labels, counted, int(sizes[1:].sum()))


def _components(case: CalibrationCase, truth: _Truth, threshold: float,
                max_mean_hu: float | None, min_peak: float) -> _Components:
    """Label the mask that :func:`postprocess` keeps at ``threshold`` with no size filter."""
    extra = {} if case.region is None else {"region": case.region}
    mask = postprocess(prob=case.probabilities, spacing_zyx=case.spacing_zyx, threshold=threshold,
                       min_component_mm3=0.0, hu=case.hu, max_mean_hu=max_mean_hu, min_peak=min_peak,
                       **extra)
    labels, n = label_components(mask)
    inside = labels[truth.labels > 0]
    overlap = np.bincount(inside, minlength=n + 1)[1:]
    both = (labels > 0) & truth.counted[truth.labels]
    pairs = np.unique(np.stack([labels[both], truth.labels[both]]), axis=1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return _Components(sizes, overlap, pairs[0] - 1, pairs[1])


def _case_figures(case: CalibrationCase, truth: _Truth, comps: _Components, min_mm3: float) -> CaseFigures:
    """The case's figures once components under ``min_mm3`` are dropped."""
    kept = comps.sizes * float(np.prod(case.spacing_zyx)) >= min_mm3
    predicted = int(comps.sizes[kept].sum())
    if predicted == 0 or truth.voxels == 0:
        dice = 0.0  # as the challenge (and metrics.dice) score it
    else:
        dice = 2.0 * float(comps.overlap[kept].sum()) / (predicted + truth.voxels)
    hits = np.unique(comps.pair_node[kept[comps.pair_component]]).size
    false_nodes = int((kept & (comps.overlap == 0)).sum())
    return CaseFigures(case.case_id, dice, int(hits), int(truth.counted.sum()), false_nodes)


def _summary(threshold: float, min_mm3: float, cases: Sequence[CaseFigures]) -> PostprocessingFigures:
    gt = sum(c.nodes_gt for c in cases)
    recall = sum(c.nodes_hit for c in cases) / gt if gt else math.nan
    dices = [c.dice for c in cases if math.isfinite(c.dice)]
    return PostprocessingFigures(threshold, min_mm3, float(np.mean(dices)) if dices else math.nan, recall,
                                 float(np.mean([c.false_nodes for c in cases])), tuple(cases))


def _grid(cases: Sequence[CalibrationCase], thresholds: Sequence[float], min_sizes: Sequence[float],
          max_mean_hu: float | None, min_peak: float, min_diameter_mm: float) -> list[PostprocessingFigures]:
    """Figures at every (threshold, size) of the grid: one post-processing and labelling per threshold."""
    cases = [_cropped(case, min(thresholds)) for case in cases]
    truths = [_truth(case, min_diameter_mm) for case in cases]
    per_setting: dict[tuple[float, float], list[CaseFigures]] = {}
    for case, truth in zip(cases, truths):
        for t in thresholds:
            comps = _components(case, truth, t, max_mean_hu, min_peak)
            for m in min_sizes:
                per_setting.setdefault((t, m), []).append(_case_figures(case, truth, comps, m))
    return [_summary(t, m, figures) for (t, m), figures in per_setting.items()]


def _choose(grid: Sequence[PostprocessingFigures], fp_limit: float | None, current: tuple[float, float],
            spans: tuple[float, float], dice_tolerance: float) -> PostprocessingFigures:
    """Best mean Dice among the settings within ``fp_limit`` (none: the fewest false nodes), ties
    within ``dice_tolerance`` going to the setting nearest ``current`` (distances scaled by ``spans``)."""
    pool = [g for g in grid if fp_limit is None or g.false_nodes <= fp_limit + 1e-9]
    if not pool:
        fewest = min(g.false_nodes for g in grid)
        pool = [g for g in grid if g.false_nodes == fewest]
    best = max(g.dice if math.isfinite(g.dice) else -1.0 for g in pool)
    near = [g for g in pool if (g.dice if math.isfinite(g.dice) else -1.0) >= best - dice_tolerance]

    def distance(g: PostprocessingFigures) -> float:
        return (abs(g.threshold - current[0]) / spans[0] + abs(g.min_component_mm3 - current[1]) / spans[1])

    return min(near, key=lambda g: (distance(g), -g.dice))


def _reason(chosen: PostprocessingFigures, current: PostprocessingFigures, fp_limit: float | None) -> str:
    def words(g: PostprocessingFigures) -> str:
        return (f"threshold {g.threshold:g}, min component {g.min_component_mm3:g} mm3: Dice {g.dice:.3f}, "
                f"recall {g.recall:.2f}, false nodes {g.false_nodes:.2f}/case")

    limit = "no false-node limit" if fp_limit is None else f"false nodes <= {fp_limit:.2f}/case"
    if fp_limit is not None and chosen.false_nodes > fp_limit + 1e-9:
        limit += " (no setting meets it: fewest false nodes kept)"
    head = "kept" if chosen is current else "chose"
    return f"{head} {words(chosen)}; current {words(current)}; {limit}; {len(chosen.cases)} case(s)"


def fit_postprocessing(cases: Sequence[CalibrationCase], parent_fp_per_case: float | None,
                       thresholds: Sequence[float] = THRESHOLDS,
                       min_sizes_mm3: Sequence[float] = MIN_SIZES_MM3,
                       *, current_threshold: float = InferenceConfig.threshold,
                       current_min_component_mm3: float = InferenceConfig.min_component_mm3,
                       max_mean_hu: float | None = InferenceConfig.max_mean_hu,
                       min_peak: float = InferenceConfig.min_peak, fp_margin: float = 0.2,
                       dice_tolerance: float = 1e-3,
                       min_diameter_mm: float = TARGET_DIAMETER_MM) -> PostprocessingFit:
    """The threshold and minimum component size (mm3) that maximise the mean Dice on ``cases``
    with false nodes per case <= ``parent_fp_per_case + fp_margin`` (None: no limit). The current
    setting joins the grid; ``max_mean_hu`` and ``min_peak`` are the model's, applied as prediction
    applies them."""
    if not cases:
        raise ValueError("fit_postprocessing needs at least one corrected case")
    current = (float(current_threshold), float(current_min_component_mm3))
    ts = sorted({float(t) for t in thresholds} | {current[0]})
    ms = sorted({float(m) for m in min_sizes_mm3} | {current[1]})
    grid = _grid(cases, ts, ms, max_mean_hu, float(min_peak), min_diameter_mm)
    now = next(g for g in grid if (g.threshold, g.min_component_mm3) == current)
    fp_limit = None if parent_fp_per_case is None else float(parent_fp_per_case) + fp_margin
    spans = (max(ts[-1] - ts[0], 1e-6), max(ms[-1] - ms[0], 1e-6))
    chosen = _choose(grid, fp_limit, current, spans, dice_tolerance)
    return PostprocessingFit(chosen.threshold, chosen.min_component_mm3, chosen, now, fp_limit,
                             _reason(chosen, now, fp_limit))
