"""Label states of a reviewer-corrected case, and the voxels the reviewer changed.

The corrected mask follows the partial-label rules of :func:`~lnq_napari.training.labels.label_states`
(its nodes are 1, what the CT rules out is 0, the rest unknown), without the ring of known background;
on top of that, what the reviewer took away from the prediction (components removed as false, and what
was erased from a kept node farther than :data:`GROWN_LENIENCE_MM` from every node: a spill) and the
balls of the suggestions the reviewer rejected become known background (0), and each "node here,
outline unknown" mark (:class:`~lnq_napari.interact.NodeMark`) makes its ball unknown (-1) around a
core of node (1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lnq_napari.components import bounding_box, label_components, within_mm
from lnq_napari.errors import LNQError
from lnq_napari.interact import NodeMark, spot_mask
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import StatesConfig
from lnq_napari.training.labels import BACKGROUND, NODE, UNKNOWN, label_states

#: A node the reviewer grew or added is a lower bound of the node (a click grows it only until the
#: reviewer stops): up to this many mm beyond it may still be node. The held-out surface Dice does not
#: count a model's outline there against it (:mod:`lnq_napari.activation`); voxels the reviewer took away
#: from a kept node this near any corrected node are not taught as background (:func:`correction_states`).
GROWN_LENIENCE_MM = 5.0


def correction_states(
    ct: Volume, correction: Volume, prediction: Volume | None = None, options: StatesConfig | None = None,
    rejected: np.ndarray | None = None, background: np.ndarray | None = None,
    marks: Sequence[NodeMark] = (), marks_lost: bool = False,
) -> np.ndarray:
    """int8 states of a corrected case: label_states of the correction, plus what the reviewer took away
    from ``prediction`` and ``rejected`` (bool, the balls of the rejected suggestions:
    :func:`lnq_napari.interact.spot_mask`) outside the corrected nodes as 0; the balls of ``marks``
    outside the corrected nodes -1, their cores 1. ``background``: the CT's
    :func:`~lnq_napari.training.labels.ct_background` when at hand.

    What the reviewer took away: each predicted component that holds no corrected voxel (removed as
    false), and the predicted voxels erased from a kept component farther than :data:`GROWN_LENIENCE_MM`
    from every corrected node (a spill into a vessel). Nearer they stay unknown: a node removed whole for
    leaking and clicked again has a lower bound for an outline, a gap erased between two touching nodes
    keeps them apart, a correction made on other labels than the prediction differs from it at the edges.

    Unlike an original annotation, a correction gets no ring of known background around its nodes: the
    outline of a node the reviewer kept is the model's own, and where the model stopped short the ring
    would mark node tissue as background (teaching it to stop short again).

    ``marks_lost``: the reviewer's marks are lost (a provenance rebuilt without them): a predicted node
    removed and marked "node here, outline unknown" cannot be told from one removed as false, so nothing
    taken away from ``prediction`` is taught as background (it stays unknown).
    """
    states = label_states(ct, correction, ring_mm=0.0, options=options, background=background)
    corrected = np.asarray(correction.array) > 0
    if prediction is not None and not marks_lost:
        predicted = np.asarray(prediction.array) > 0
        if predicted.shape != corrected.shape:
            raise LNQError(f"prediction {predicted.shape} and correction {corrected.shape} differ in grid; "
                           "re-predict the case before fine-tuning")
        states[_components(predicted, corrected, touching=False)] = BACKGROUND  # removed as false
        erased = predicted & ~corrected  # and from kept nodes, away from every node
        if erased.any():
            states[erased & ~within_mm(corrected, ct.spacing_zyx, GROWN_LENIENCE_MM)] = BACKGROUND
    if rejected is not None:
        states[rejected & ~corrected] = BACKGROUND
    if marks:
        states[spot_mask(marks, corrected.shape, ct.spacing_zyx) & ~corrected] = UNKNOWN
        states[spot_mask(marks, corrected.shape, ct.spacing_zyx, part="core")] = NODE
    states[corrected] = NODE
    return states


def edited_voxels(prediction: Volume, correction: Volume) -> np.ndarray | None:
    """Bool mask of the voxels a reviewer changed (added or removed), or None when nothing changed."""
    before, after = np.asarray(prediction.array) > 0, np.asarray(correction.array) > 0
    if before.shape != after.shape:
        return None
    edited = before != after
    return edited if edited.any() else None


def grown_nodes(correction: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The correction's nodes (components) holding a voxel the prediction lacks: the nodes the reviewer
    added or grew. A click grows a node only until the reviewer stops, so their outlines are lower
    bounds of the node; the nodes left as predicted (or only trimmed) are not among them."""
    return _components(np.asarray(correction) > 0, ~(np.asarray(prediction) > 0), touching=True)


def unconfirmed_components(prediction: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The components of ``prediction`` (bool) that touch no voxel of ``nodes`` (bool, the reviewer's
    nodes): on a reviewed case, places the model calls a node and the reviewer did not."""
    return _components(prediction, nodes, touching=False)


def _components(mask: np.ndarray, other: np.ndarray, touching: bool) -> np.ndarray:
    """bool: the components of ``mask`` that hold a voxel of ``other`` (``touching``) or that hold none;
    found in the components' box with a table by component id (the same as over the whole grid)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return out
    comp, n = label_components(mask[box])
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.unique(comp[np.asarray(other, bool)[box] & (comp > 0)])] = True
    chosen = hit if touching else ~hit
    chosen[0] = False
    out[box] = chosen[comp]
    return out
