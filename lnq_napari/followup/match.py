"""One-to-one matching of the nodes of two registered scans: overlap first, centroid distance second.

The follow-up's labels are put on the baseline grid through the registration; each pair of nodes gets
a cost ``1 - Dice + distance / DISTANCE_SCALE_MM`` (distance between the baseline centroid carried into
the follow-up and the follow-up centroid); pairs that neither overlap nor lie within reach of each other
are never matched. The assignment with the least total cost wins (Hungarian method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnq_napari.followup.register import Registration
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import NodeRow

#: Distance (mm) that costs as much as no overlap at all.
DISTANCE_SCALE_MM = 10.0
#: Nodes that do not overlap are matched only within this distance (mm)...
MAX_DISTANCE_MM = 10.0
#: ...or within this share of the larger node's long axis, whichever is more.
REACH_LONG_AXIS = 0.5


@dataclass(frozen=True)
class Pair:
    """A matched pair: node ids as in each scan's table, their overlap and distance after registration."""

    baseline_id: int
    followup_id: int
    dice: float
    distance_mm: float


def node_box(array: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The index box (z, y, x) around the non-zero voxels of ``array``; None when there are none."""
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(np.asarray(array).any(axis=others))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def sub_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The part of ``volume`` inside ``box``, on its own (shifted) grid."""
    lo = np.array([[b.start for b in box]], dtype=float)
    origin = tuple(float(v) for v in volume.index_to_physical(lo)[0])
    array = np.ascontiguousarray(np.asarray(volume.array)[box])
    return Volume(array, volume.spacing, origin, volume.direction)


def overlap_counts(baseline: Volume, followup: Volume, registration: Registration
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(baseline ids, follow-up ids, Dice matrix) of two labels images holding one id per node.

    Only the box around the baseline's nodes is resampled (overlap needs a baseline node); a follow-up
    node's size on the baseline grid is its voxel count times the ratio of the voxel volumes.
    """
    b_box, f_box = node_box(baseline.array), node_box(followup.array)
    if b_box is None or f_box is None:
        b_ids = np.unique(np.asarray(baseline.array)[b_box]) if b_box else np.zeros(0, np.int64)
        f_ids = np.unique(np.asarray(followup.array)[f_box]) if f_box else np.zeros(0, np.int64)
        b_ids, f_ids = b_ids[b_ids != 0].astype(np.int64), f_ids[f_ids != 0].astype(np.int64)
        return b_ids, f_ids, np.zeros((len(b_ids), len(f_ids)))
    before = sub_volume(baseline, b_box)
    moving = sub_volume(followup, f_box)
    b_ids, f_ids = np.unique(np.asarray(before.array)), np.unique(np.asarray(moving.array))
    b_ids, f_ids = b_ids[b_ids != 0].astype(np.int64), f_ids[f_ids != 0].astype(np.int64)
    moving = moving.with_array(np.asarray(moving.array).astype(np.int32))
    after = np.asarray(registration.resample(moving, before, labels=True).array).astype(np.int64)
    b_arr = np.asarray(before.array).astype(np.int64)
    b_index = np.zeros(int(b_ids.max()) + 1, dtype=np.int64)
    b_index[b_ids] = np.arange(1, len(b_ids) + 1)
    f_index = np.zeros(max(int(f_ids.max()), int(after.max(initial=0))) + 1, dtype=np.int64)
    f_index[f_ids] = np.arange(1, len(f_ids) + 1)
    bi, fi = b_index[b_arr], f_index[after]
    both = (bi > 0) & (fi > 0)
    nb, nf = len(b_ids), len(f_ids)
    joint = np.bincount(bi[both] * (nf + 1) + fi[both], minlength=(nb + 1) * (nf + 1)).reshape(nb + 1, nf + 1)
    size_b = np.bincount(bi.ravel(), minlength=nb + 1)[1:]
    f_counts = np.bincount(f_index[np.asarray(moving.array).astype(np.int64)].ravel(), minlength=nf + 1)[1:]
    size_f = f_counts * float(np.prod(followup.spacing)) / float(np.prod(baseline.spacing))
    total = size_b[:, None] + size_f[None, :]
    dice = np.where(total > 0, 2.0 * joint[1:, 1:] / np.maximum(total, 1e-9), 0.0)
    return b_ids, f_ids, np.minimum(dice, 1.0)


def match_nodes(baseline: Volume, followup: Volume, baseline_rows: list[NodeRow],
                followup_rows: list[NodeRow], registration: Registration,
                overlap: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> list[Pair]:
    """The one-to-one matching of ``baseline_rows`` to ``followup_rows`` (see the module docstring).

    ``baseline`` and ``followup`` hold one id per node, the ids of the rows
    (:func:`lnq_napari.followup.compare.id_labels`); ``overlap``: their :func:`overlap_counts` when
    already computed.
    """
    from scipy.optimize import linear_sum_assignment

    if not baseline_rows or not followup_rows:
        return []
    b_ids, f_ids, dice_ids = overlap or overlap_counts(baseline, followup, registration)
    b_index = {int(i): k for k, i in enumerate(b_ids)}
    f_index = {int(i): k for k, i in enumerate(f_ids)}
    dice = np.array([[dice_ids[b_index[b.id], f_index[f.id]] for f in followup_rows] for b in baseline_rows])
    carried = registration.to_followup(np.array([b.centroid_mm for b in baseline_rows]))
    f_xyz = np.array([f.centroid_mm for f in followup_rows])
    distance = np.linalg.norm(carried[:, None, :] - f_xyz[None, :, :], axis=-1)
    long_axis = np.maximum.outer([b.long_axis_mm for b in baseline_rows],
                                 [f.long_axis_mm for f in followup_rows])
    allowed = (dice > 0) | (distance <= np.maximum(MAX_DISTANCE_MM, REACH_LONG_AXIS * long_axis))
    cost = 1.0 - dice + distance / DISTANCE_SCALE_MM
    cost = np.where(allowed, cost, cost.max() + 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [Pair(baseline_rows[i].id, followup_rows[j].id, float(dice[i, j]), float(distance[i, j]))
            for i, j in zip(rows, cols) if allowed[i, j]]


def fragments(overlap: tuple[np.ndarray, np.ndarray, np.ndarray], pairs: list[Pair]
              ) -> tuple[dict[int, int], dict[int, int]]:
    """Unmatched nodes that overlap (``overlap``: :func:`overlap_counts` of the two scans), after
    registration, a node of the other scan matched to another one: pieces of one node a segmentation
    split (a slice left out, a thin neck). ``({baseline id: the matched baseline id it belongs with},
    {follow-up id: the matched follow-up id})``."""
    b_ids, f_ids, dice = overlap
    partner_of_b = {p.baseline_id: p.followup_id for p in pairs}
    partner_of_f = {p.followup_id: p.baseline_id for p in pairs}
    join_b, join_f = {}, {}
    for i, b in enumerate(int(v) for v in b_ids):
        for j, f in enumerate(int(v) for v in f_ids):
            if dice[i, j] <= 0:
                continue
            if f not in partner_of_f and b in partner_of_b and partner_of_b[b] != f:
                join_f.setdefault(f, partner_of_b[b])  # an unmatched follow-up piece of a matched node
            if b not in partner_of_b and f in partner_of_f and partner_of_f[f] != b:
                join_b.setdefault(b, partner_of_f[f])
    return join_b, join_f
