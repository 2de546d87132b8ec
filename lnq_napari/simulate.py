"""A simulated reviewer for benchmarks and tests: corrects a prediction against complete truth.

It works only through the same click functions a person uses in napari
(:func:`lnq_napari.interact.node_from_click`, :func:`lnq_napari.interact.remove_node_at`): one
positive click at the centre of each truth node the prediction missed, one negative click inside each
predicted component that touches no truth node (or lies mostly off the truth), and a positive click
in the missing part of each node the prediction covers only partly (what a reader does when a node's
outline stops halfway; the click grows only into unlabelled voxels). Where the click for a missed
node grows nothing or leaks (and is undone), it marks the node "here, outline unknown"
(:class:`~lnq_napari.interact.NodeMark`), as a reader does who sees the node but cannot outline it
with a click. Given the suggestions the reader is shown, it rejects each one whose region (the ball of
its volume) holds no truth node. Given ``brush_mm``, it also erases with napari's brush, one stroke per
node, what a node's outline spills beyond the truth node (farther than ``brush_mm`` from it: a brush is
not voxel-exact), as a reader does who sees an outline run into a vessel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lnq_napari.components import label_components, within_mm
from lnq_napari.interact import (
    NodeMark,
    Rejection,
    Suggestion,
    interior_point,
    node_from_click,
    remove_node_at,
)
from lnq_napari.io.volume import Volume

__all__ = ["interior_point", "simulate_review"]


def _leaks(node: np.ndarray, truth: np.ndarray, undo_below: float, stats: dict) -> bool:
    """True (and one more undo counted) when under ``undo_below`` of a click's region lies on truth:
    the reviewer sees the growth spill into a vessel or muscle and undoes the click."""
    if node.any() and truth[node].mean() < undo_below:
        stats["undone"] += 1
        stats["edits"] += 1
        return True
    return False


def simulate_review(
    ct: Volume, prediction: Volume, truth: Volume, probabilities: Volume | None = None,
    max_clicks: int = 100, min_precision: float = 0.3, min_coverage: float = 0.75,
    completion_clicks: int = 2, undo_below: float = 0.3, suggestions: Sequence[Suggestion] = (),
    mark_missed: bool = True, brush_mm: float | None = None, min_spill_mm3: float = 50.0,
) -> tuple[Volume, dict]:
    """Correct ``prediction`` towards ``truth`` with clicks; returns ``(corrected mask, stats)``.

    A predicted component is removed when under ``min_precision`` of its voxels lie on truth (a false
    node, or one leaking far beyond the node: the reviewer then removes it and re-clicks the node).
    ``stats``: ``false`` (removed components touching no truth), ``leaky`` (removed components
    touching truth), ``removed`` (negative clicks that removed something), ``missed`` (truth nodes with
    no voxel left), ``added`` (positive clicks that added voxels), ``partial`` (truth nodes covered
    under ``min_coverage``: up to ``completion_clicks`` clicks each, at the centre of the uncovered
    part; 0 turns this off), ``completed`` (those clicks that added voxels), ``undone`` (clicks whose
    region lay under ``undo_below`` on truth, taken back with undo; 0 turns this off), ``edits`` (all
    clicks and undos), ``rejected`` (suggestions rejected, one click each; not "outline" ones),
    ``rejections`` (the :class:`~lnq_napari.interact.Rejection` of each, to save with the correction),
    ``marked`` (missed nodes whose click grew nothing or was undone, marked with one more click when
    ``mark_missed``) and ``marks`` (their :class:`~lnq_napari.interact.NodeMark` s, to save likewise),
    ``trimmed`` (brush strokes, with ``brush_mm``: a node on truth whose voxels farther than ``brush_mm``
    from the truth add up to ``min_spill_mm3`` has them erased; None: no brush).
    """
    labels = (np.asarray(prediction.array) > 0).astype(np.uint8)
    gt = np.asarray(truth.array) > 0
    prob = None if probabilities is None else np.asarray(probabilities.array, dtype=np.float32)
    stats = {"missed": 0, "added": 0, "partial": 0, "completed": 0, "false": 0, "leaky": 0, "removed": 0,
             "undone": 0, "edits": 0, "rejected": 0, "rejections": [], "marked": 0, "marks": [], "trimmed": 0}

    pred_comp, _ = label_components(labels)
    for i, sl in enumerate(ndimage.find_objects(pred_comp), start=1):
        if sl is None:
            continue
        on_truth = gt[sl][pred_comp[sl] == i]
        if on_truth.mean() >= min_precision:
            continue
        stats["false" if not on_truth.any() else "leaky"] += 1
        if stats["edits"] >= max_clicks:
            continue
        labels, removed = remove_node_at(labels, interior_point(pred_comp == i, ct))  # the whole node goes
        stats["edits"] += 1
        stats["removed"] += int(bool(removed))

    gt_comp, _ = label_components(gt)
    for i, sl in enumerate(ndimage.find_objects(gt_comp), start=1):
        if sl is None or (labels[sl][gt_comp[sl] == i] > 0).any() or stats["edits"] >= max_clicks:
            continue
        stats["missed"] += 1
        point = interior_point(gt_comp == i, ct)
        node = node_from_click(ct, point, probabilities=prob, labels=labels)
        stats["edits"] += 1
        if not _leaks(node, gt, undo_below, stats) and node.any():
            labels = np.where(node, np.uint8(1), labels)
            stats["added"] += 1
        elif mark_missed and stats["edits"] < max_clicks:
            stats["marks"].append(NodeMark.at(point))
            stats["marked"] += 1
            stats["edits"] += 1

    for i, sl in enumerate(ndimage.find_objects(gt_comp), start=1):
        if sl is None or not completion_clicks:
            continue
        truth_node = gt_comp[sl] == i
        if (labels[sl][truth_node] > 0).mean() >= min_coverage:
            continue
        stats["partial"] += 1
        for _ in range(completion_clicks):
            uncovered = truth_node & (labels[sl] == 0)
            if (labels[sl][truth_node] > 0).mean() >= min_coverage or not uncovered.any() \
                    or stats["edits"] >= max_clicks:
                break
            point = tuple(int(p + s.start) for p, s in zip(interior_point(uncovered, ct), sl))
            node = node_from_click(ct, point, probabilities=prob, labels=labels)
            stats["edits"] += 1
            if not node.any() or _leaks(node, gt, undo_below, stats):
                break
            labels = np.where(node, np.uint8(1), labels)
            stats["completed"] += 1
    if brush_mm is not None:
        labels = _brush_spill(labels, gt, truth.spacing_zyx, brush_mm, min_spill_mm3, max_clicks, stats)
    for suggestion in suggestions:
        if suggestion.kind == "outline" or stats["edits"] >= max_clicks:
            continue
        rejection = Rejection.of(suggestion.centre_zyx, suggestion.volume_mm3)
        ball = rejection.ball(gt.shape, truth.spacing_zyx)
        if ball is None or gt[ball[0]][ball[1]].any():
            continue  # on (or beside) a node: the clicks above took care of it
        stats["rejections"].append(rejection)
        stats["rejected"] += 1
        stats["edits"] += 1
    return prediction.with_array(labels.astype(np.uint8)), stats


def _brush_spill(labels: np.ndarray, gt: np.ndarray, spacing_zyx, brush_mm: float, min_spill_mm3: float,
                 max_edits: int, stats: dict) -> np.ndarray:
    """``labels`` with each node's spill (its voxels farther than ``brush_mm`` from ``gt``, on a node that
    touches ``gt``, at least ``min_spill_mm3`` of them) erased, one edit per node."""
    beyond = ~within_mm(gt, spacing_zyx, brush_mm)
    voxel_mm3 = float(np.prod(spacing_zyx))
    comp, _ = label_components(labels > 0)
    labels = labels.copy()
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None or stats["edits"] >= max_edits:
            continue
        node = comp[sl] == i
        spill = node & beyond[sl]
        if not gt[sl][node].any() or spill.sum() * voxel_mm3 < min_spill_mm3:
            continue
        labels[sl][spill] = 0
        stats["trimmed"] += 1
        stats["edits"] += 1
    return labels


def provenance(stats: dict) -> dict:
    """What a label version saved from a simulated review records beside its labels, as napari's Save
    records a reviewer's (``edits``; the ``rejected`` suggestions and the nodes ``marked`` without an
    outline, which the fine-tune reads: a marked node left out would be taught as background)."""
    saved = {"edits": int(stats["edits"])}
    if stats["rejections"]:
        saved["rejected"] = [r.to_dict() for r in stats["rejections"]]
    if stats["marks"]:
        saved["marked"] = [m.to_dict() for m in stats["marks"]]
    return saved
