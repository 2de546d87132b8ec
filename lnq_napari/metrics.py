"""Challenge scoring (LNQ2023, exactly as the organisers computed it) and per-node detection.

Dice and ASSD follow DESIGN.md §1 "Scoring": both images are cast to UInt8 on the ground-truth grid;
Dice is ``LabelOverlapMeasuresImageFilter`` for label 1; ASSD is the *mean of the two directed mean
surface distances* between ``sitk.LabelContour`` surfaces (face connectivity), with distances from
``Abs(SignedMaurerDistanceMap(contour, squaredDistance=False, useImageSpacing=True))`` in mm.
That is not the pooled mean over both distance sets that MONAI and medpy 0.5 report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lnq_napari.components import bounding_box, label_components, within_mm
from lnq_napari.io import geometry
from lnq_napari.io.volume import Volume

#: The ASSD the challenge ranking substituted for an empty prediction (the worst ASSD it saw).
WORST_ASSD_MM = 115.3


@dataclass(frozen=True)
class NodeDetection:
    """Per-node detection on one case (:func:`node_detection`): truth nodes counted (``n_gt``) and hit
    (``n_hit``), ``recall`` (NaN when no truth node counts), predicted components (``n_pred``) and false
    ones (``fp``)."""

    n_gt: int
    n_hit: int
    recall: float
    n_pred: int
    fp: int


@dataclass(frozen=True)
class CaseScores:
    """One case's figures (:func:`evaluate_case`): challenge ``dice`` and ``assd_mm`` (NaN when either mask
    is empty) and per-node detection. ``surface_dice`` and ``false_volume_ml`` are None when not asked
    for (not measured); a measured figure that is undefined (surface Dice of two empty masks) is NaN."""

    dice: float
    assd_mm: float
    nodes_gt: int
    nodes_hit: int
    recall: float
    fp_nodes: int
    nodes_pred: int
    surface_dice: float | None = None
    false_volume_ml: float | None = None

    def to_dict(self) -> dict[str, float | int]:
        """The row as written to JSON or a table: the figures not measured left out (as rows always were)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, row: Mapping) -> CaseScores:
        """From a row written by :meth:`to_dict` (or an older one: an ``evaluate --json`` row, a benchmark's),
        read back from JSON: null is NaN, a figure missing is not measured, other keys (``case``) are
        left out. ValueError names a required figure the row lacks."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.name not in row]
        if missing:
            raise ValueError(f"a case's scores lack {', '.join(missing)}: give a row of evaluate_case's "
                             "figures")
        return cls(**{k: math.nan if v is None else v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class ScoreSummary:
    """Figures over cases (:func:`summarize`): Dice mean and median; ASSD mean and median over non-empty
    predictions (``n_empty`` counts the others) and ``assd_median_worst`` with theirs at
    :data:`WORST_ASSD_MM`, as the challenge ranking did; truth nodes, hits and pooled ``recall``; false
    nodes per case. NaN where no case defines a figure."""

    n_cases: int
    dice_mean: float
    dice_median: float
    assd_mean: float
    assd_median: float
    n_empty: int
    assd_median_worst: float
    nodes_gt: int
    nodes_hit: int
    recall: float
    fp_per_case: float

    def to_dict(self) -> dict[str, float | int]:
        """The figures by name, as written to JSON or printed."""
        return dataclasses.asdict(self)

    def text(self) -> str:
        """The line ``evaluate`` prints under its table: ``"cases 3: Dice mean 0.81 median 0.84; ..."``."""
        f = figure
        return (f"cases {self.n_cases}: Dice mean {f(self.dice_mean)} median {f(self.dice_median)}; "
                f"ASSD mean {f(self.assd_mean)} median {f(self.assd_median)} mm; "
                f"node recall {f(self.recall)}; false-positive nodes per case {f(self.fp_per_case)}")


def figure(value: float) -> str:
    """A figure as the summary line and the CLI's tables show it: 4 significant digits, "nan" where
    undefined."""
    return "nan" if math.isnan(value) else f"{0.0 if abs(value) < 1e-9 else value:.4g}"  # no -3.6e-15


def _uint8(volume: Volume):
    """The volume as a SimpleITK UInt8 image (the challenge's cast: floats truncate, ints wrap)."""
    import SimpleITK as sitk

    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    image = volume.with_array(array).to_sitk()
    return sitk.Cast(image, sitk.sitkUInt8)


#: What to do when a prediction and its ground truth lie on different grids (scored voxel by voxel, as in
#: the challenge): a ground truth saved cropped is a common cause.
GRID_FIX = ("save both on the CT's grid: resample the prediction onto it, or save again uncropped a ground "
            "truth saved cropped to its extent (3D Slicer's 'crop to minimum extent')")


def _cast_pair(pred: Volume, gt: Volume, *masks: np.ndarray):
    """Check the grids, then both volumes as UInt8 SimpleITK images, cropped to where they matter.

    The crop is the bounding box of all non-zero voxels of either image plus one voxel (clipped at
    the image border), so Dice, the contours, the distances between them and the components are
    exactly those of the full images; it only saves time (distance maps are the costly part).
    ``masks`` (numpy arrays on the GT grid, z-y-x) come back cropped to the same box after the images.
    """
    import SimpleITK as sitk

    geometry.check_same_grid(pred, gt, what="the prediction and the ground truth",
                             fix=GRID_FIX)
    pred_img, gt_img = _uint8(pred), _uint8(gt)
    pred_img.CopyInformation(gt_img)  # within our 1e-4 mm tolerance; SimpleITK's own is tighter
    used = (sitk.GetArrayViewFromImage(pred_img) != 0) | (sitk.GetArrayViewFromImage(gt_img) != 0)
    box = []
    for axis in (2, 1, 0):  # SimpleITK indexes x, y, z
        hit = np.flatnonzero(np.any(used, axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = (hit[0] - 1, hit[-1] + 2) if hit.size else (0, 1)
        box.append(slice(max(int(lo), 0), min(int(hi), used.shape[axis])))
    box = tuple(box)
    return (pred_img[box], gt_img[box], *(np.asarray(m)[box[::-1]] for m in masks))


def prediction_problem(pred: Volume) -> str | None:
    """Why the challenge would mis-score ``pred`` (values other than 0/1, a float map), or None."""
    array = pred.array
    if np.all((array == 0) | (array == 1)):
        return None
    if array.dtype.kind == "f":
        return ("is a float map with values other than 0 and 1; the challenge casts it to UInt8 "
                "(truncation: values below 1 become background): threshold it to 0/1 first")
    extra = [int(v) for v in np.unique(array) if v not in (0, 1)]
    return (f"has label values {extra[:5]} besides 0/1; the challenge scores only label 1: relabel to 1 "
            "(a find_nodes mask holds one id per node: score its binary_mask())")


def _dice(pred_img, gt_img) -> float:
    import SimpleITK as sitk

    if not (sitk.GetArrayViewFromImage(pred_img) == 1).any():
        return 0.0
    if not (sitk.GetArrayViewFromImage(gt_img) == 1).any():
        return 0.0  # the challenge's filter returns 0 here too, after a warning
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(gt_img, pred_img)
    return float(overlap.GetDiceCoefficient(1))


def dice(pred: Volume, gt: Volume) -> float:
    """Challenge Dice for label 1 on the GT grid; 0.0 when either image has no voxel labelled 1."""
    return _dice(*_cast_pair(pred, gt))


def _surface_and_distance(image):
    """(surface mask as numpy bool, |distance to that surface| in mm) of a UInt8 image."""
    import SimpleITK as sitk

    contour = sitk.LabelContour(image)
    distance = sitk.Abs(sitk.SignedMaurerDistanceMap(contour, squaredDistance=False, useImageSpacing=True))
    return sitk.GetArrayFromImage(contour) != 0, sitk.GetArrayFromImage(distance)


def _directed(pred_img, gt_img) -> tuple[np.ndarray, np.ndarray]:
    pred_surface, pred_distance = _surface_and_distance(pred_img)
    gt_surface, gt_distance = _surface_and_distance(gt_img)
    if not pred_surface.any() or not gt_surface.any():
        return np.empty(0), np.empty(0)
    return gt_distance[pred_surface].astype(float), pred_distance[gt_surface].astype(float)


def directed_surface_distances(pred: Volume, gt: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) of each pred-surface voxel to the GT surface, and of each GT-surface voxel to
    the pred surface; both empty when either image is empty."""
    return _directed(*_cast_pair(pred, gt))


def _assd(to_gt: np.ndarray, to_pred: np.ndarray) -> float:
    if to_gt.size == 0 or to_pred.size == 0:
        return math.nan
    return float(0.5 * to_gt.mean() + 0.5 * to_pred.mean())


def assd(pred: Volume, gt: Volume) -> float:
    """Challenge ASSD in mm: 0.5 * mean(pred->GT) + 0.5 * mean(GT->pred); NaN if either is empty.

    As in the challenge, the surfaces are those of all non-zero voxels after the UInt8 cast.
    """
    return _assd(*_directed(*_cast_pair(pred, gt)))


def _surface_dice(pred_img, gt_img, to_gt: np.ndarray, to_pred: np.ndarray, tolerance_mm: float,
                  grown: np.ndarray | None = None, lenience_mm: float = 0.0) -> float:
    import SimpleITK as sitk

    pred, gt = (sitk.GetArrayViewFromImage(img) != 0 for img in (pred_img, gt_img))
    if not (pred.any() and gt.any()):
        return 0.0 if (pred.any() or gt.any()) else math.nan
    ok_pred, ok_gt = to_gt <= tolerance_mm, to_pred <= tolerance_mm
    if grown is not None and lenience_mm > 0 and grown.any():
        pred_surface, gt_surface = (sitk.GetArrayFromImage(sitk.LabelContour(img)) != 0
                                    for img in (pred_img, gt_img))
        near = within_mm(grown, gt_img.GetSpacing()[::-1], lenience_mm)
        ok_pred = ok_pred | (~gt[pred_surface] & near[pred_surface])  # beyond a grown node, close to it
        ok_gt = ok_gt | (grown[gt_surface] & pred[gt_surface])  # a grown node's outline inside pred
    return float((np.count_nonzero(ok_pred) + np.count_nonzero(ok_gt)) / (ok_pred.size + ok_gt.size))


def surface_dice(pred: Volume, gt: Volume, tolerance_mm: float = 2.0, grown: np.ndarray | None = None,
                 lenience_mm: float = 0.0) -> float:
    """Normalised surface Dice (Nikolov et al. 2021): the share of both surfaces (the challenge's
    contours) lying within ``tolerance_mm`` of the other; 0 when one image is empty, NaN when both are.

    Unlike volumetric Dice it does not count outline differences smaller than the tolerance: the right
    measure against a reviewer's correction, whose kept outlines are the model's own.

    ``grown`` (bool, on the GT grid): GT nodes whose outline is a lower bound, as those a reviewer
    grew or added with clicks (:func:`lnq_napari.training.corrections.grown_nodes`). With
    ``lenience_mm`` > 0 the prediction reaching beyond them by up to ``lenience_mm`` is not counted
    against it: its surface there counts as within, and so does their outline inside the prediction.
    """
    pred_img, gt_img, *cropped = _cast_pair(pred, gt, *([] if grown is None else [grown]))
    return _surface_dice(pred_img, gt_img, *_directed(pred_img, gt_img), tolerance_mm,
                         cropped[0] if cropped else None, lenience_mm)


TARGET_DIAMETER_MM = 10.0  # LNQ's target nodes: an equivalent-sphere diameter of at least 1 cm


def counted_nodes(voxels_per_node: np.ndarray, spacing, min_diameter_mm: float) -> np.ndarray:
    """Which truth nodes count (bool per node): equivalent-sphere diameter >= ``min_diameter_mm``."""
    diameters = np.cbrt(6.0 * np.asarray(voxels_per_node, float) * float(np.prod(spacing)) / math.pi)
    return diameters >= min_diameter_mm


def _node_detection(pred_img, gt_img, spacing, min_diameter_mm: float) -> NodeDetection:
    import SimpleITK as sitk

    pred_mask = sitk.GetArrayViewFromImage(pred_img) == 1
    gt_mask = sitk.GetArrayViewFromImage(gt_img) == 1
    gt_labels, n_gt_all = label_components(gt_mask)
    pred_labels, n_pred = label_components(pred_mask)
    sizes = np.bincount(gt_labels.ravel(), minlength=n_gt_all + 1)[1:]
    counted = np.arange(1, n_gt_all + 1)[counted_nodes(sizes, spacing, min_diameter_mm)]
    both = pred_mask & gt_mask
    n_hit = int(np.isin(counted, gt_labels[both]).sum())
    fp = int(n_pred) - np.unique(pred_labels[both]).size
    n_gt = int(counted.size)
    return NodeDetection(n_gt, n_hit, n_hit / n_gt if n_gt else math.nan, int(n_pred), int(fp))


def node_detection(pred: Volume, gt: Volume, min_diameter_mm: float = TARGET_DIAMETER_MM) -> NodeDetection:
    """Per-node detection: GT nodes and predicted nodes are 26-connected components of label 1.

    A GT node is *hit* when at least one predicted voxel overlaps it (any overlap: a node found
    but under-segmented is still found). A predicted component overlapping no GT node is a false
    positive. GT nodes whose equivalent-sphere diameter ``cbrt(6 V / pi)`` is below
    ``min_diameter_mm`` (the challenge's target is nodes over 1 cm) are left out of ``n_gt`` and
    ``n_hit``; predicted components touching them are not false positives. 0 keeps every node.
    Returns a :class:`NodeDetection`.
    """
    return _node_detection(*_cast_pair(pred, gt), gt.spacing, min_diameter_mm)


def _false_volume_ml(pred_img, gt_img, beyond_mm: float) -> float:
    import SimpleITK as sitk

    pred = sitk.GetArrayViewFromImage(pred_img) != 0
    near = within_mm(sitk.GetArrayViewFromImage(gt_img) != 0, gt_img.GetSpacing()[::-1], beyond_mm)
    return float(np.count_nonzero(pred & ~near) * np.prod(gt_img.GetSpacing()) / 1000.0)


def false_volume_ml(pred: Volume, gt: Volume, beyond_mm: float) -> float:
    """Predicted volume (mL) farther than ``beyond_mm`` from every truth voxel: what a prediction paints
    where no node is, however few components it makes (one blob over most of a CT is one false node at
    most, and none when it touches a node)."""
    return _false_volume_ml(*_cast_pair(pred, gt), beyond_mm)


def _marked_nodes(pred: np.ndarray, gt: np.ndarray, marked: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """``(pred without its components on a marked node, marked nodes, marked nodes found, components set
    aside)``. A marked node is a component of ``marked`` touching no ``gt`` voxel, found when a predicted
    voxel lies in it; its outline is unknown, so the predicted components on it (and on no ``gt``
    voxel) are set aside."""
    box = bounding_box(marked)
    if box is None:
        return pred, 0, 0, 0
    marks, n = label_components(marked[box])
    open_marks = np.setdiff1d(np.arange(1, n + 1), marks[gt[box]])
    if not open_marks.size:
        return pred, 0, 0, 0
    on_mark = np.isin(marks, open_marks)
    found = int(np.unique(marks[on_mark & pred[box]]).size)
    comp, _ = label_components(pred)
    touching = np.setdiff1d(np.unique(comp[box][on_mark]), np.unique(comp[gt]))
    touching = touching[touching > 0]
    kept = pred & ~np.isin(comp, touching) if touching.size else pred
    return kept, int(open_marks.size), found, int(touching.size)


def evaluate_case(pred: Volume, gt: Volume, min_diameter_mm: float = TARGET_DIAMETER_MM,
                  surface_tolerance_mm: float | None = None, grown: np.ndarray | None = None,
                  lenience_mm: float = 0.0, marked: np.ndarray | None = None,
                  false_volume_beyond_mm: float | None = None) -> CaseScores:
    """One case's :class:`CaseScores`: challenge Dice and ASSD, node detection (see :func:`node_detection`
    for ``min_diameter_mm``), ``surface_dice`` at ``surface_tolerance_mm`` when that is given (``grown``,
    ``lenience_mm``: see :func:`surface_dice`) and ``false_volume_ml`` beyond ``false_volume_beyond_mm``
    when that is (:func:`false_volume_ml`); each None when not asked for.

    ``marked`` (bool, on the GT grid): nodes a reviewer marked without an outline
    (:class:`lnq_napari.interact.NodeMark` balls). Each one touching no GT voxel counts as a node of any
    size, hit by any predicted voxel in it; predicted components on it (and on no GT node) are neither
    false nodes nor part of the outline figures."""
    n_marked = found = set_aside = 0
    if marked is not None and marked.any():
        geometry.check_same_grid(pred, gt, what="the prediction and the ground truth",
                                 fix=GRID_FIX)
        kept, n_marked, found, set_aside = _marked_nodes(
            np.asarray(pred.array) != 0, np.asarray(gt.array) != 0, np.asarray(marked, bool))
        pred = pred.with_array(kept.astype(np.uint8))
    pred_img, gt_img, *cropped = _cast_pair(pred, gt, *([] if grown is None else [grown]))
    nodes = _node_detection(pred_img, gt_img, gt.spacing, min_diameter_mm)
    if n_marked:
        n_gt, n_hit = nodes.n_gt + n_marked, nodes.n_hit + found
        nodes = dataclasses.replace(nodes, n_gt=n_gt, n_hit=n_hit, recall=n_hit / n_gt,
                                    n_pred=nodes.n_pred + set_aside)
    distances = _directed(pred_img, gt_img)  # the costly part: once for ASSD and surface Dice
    surface = None if surface_tolerance_mm is None else _surface_dice(
        pred_img, gt_img, *distances, surface_tolerance_mm, cropped[0] if cropped else None, lenience_mm)
    false_volume = None if false_volume_beyond_mm is None else _false_volume_ml(
        pred_img, gt_img, false_volume_beyond_mm)
    return CaseScores(_dice(pred_img, gt_img), _assd(*distances), nodes.n_gt, nodes.n_hit, nodes.recall,
                      nodes.fp, nodes.n_pred, surface, false_volume)


def known_voxel_dice(pred: np.ndarray, states: np.ndarray) -> float:
    """Dice of a predicted mask (bool) against partial label states on its grid (1 node, 0 known
    background, -1 unknown), counted only where the state is known: a predicted voxel of unknown state
    is neither right nor wrong. NaN when neither the nodes nor the known part of the prediction has a
    voxel."""
    pred, states = np.asarray(pred, bool), np.asarray(states)
    if pred.shape != states.shape:
        raise ValueError(f"prediction {pred.shape} and label states {states.shape} differ in shape")
    nodes = states == 1
    denominator = int((pred & (states >= 0)).sum()) + int(nodes.sum())
    return 2.0 * int((pred & nodes).sum()) / denominator if denominator else math.nan


def _finite(values) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    return array[np.isfinite(array)]


def _stat(func, values: np.ndarray) -> float:
    return float(func(values)) if values.size else math.nan


def summarize(rows: Sequence[CaseScores]) -> ScoreSummary:
    """Over cases: Dice mean/median; ASSD mean/median over non-empty predictions (``n_empty`` counts
    the NaN ones) and ``assd_median_worst`` with NaN -> 115.3 mm as the challenge ranking did;
    node ``recall`` pooled over all GT nodes; false-positive nodes per case (:class:`ScoreSummary`)."""
    dices = _finite(r.dice for r in rows)
    assds = np.asarray([float(r.assd_mm) for r in rows], dtype=float)
    finite = assds[np.isfinite(assds)]
    worst = np.where(np.isfinite(assds), assds, WORST_ASSD_MM)
    n_gt = sum(int(r.nodes_gt) for r in rows)
    n_hit = sum(int(r.nodes_hit) for r in rows)
    return ScoreSummary(
        n_cases=len(rows),
        dice_mean=_stat(np.mean, dices),
        dice_median=_stat(np.median, dices),
        assd_mean=_stat(np.mean, finite),
        assd_median=_stat(np.median, finite),
        n_empty=int(np.count_nonzero(~np.isfinite(assds))),
        assd_median_worst=_stat(np.median, worst),
        nodes_gt=n_gt,
        nodes_hit=n_hit,
        recall=n_hit / n_gt if n_gt else math.nan,
        fp_per_case=_stat(np.mean, np.asarray([float(r.fp_nodes) for r in rows])),
    )
