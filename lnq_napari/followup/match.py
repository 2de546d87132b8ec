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
from lnq_napari.quantify import NodeRow, node_ids

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


def overlap_counts(baseline: Volume, followup: Volume, registration: Registration
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(baseline ids, follow-up ids, Dice matrix, follow-up voxels per node on the baseline grid)."""
    b_compact, b_ids = node_ids(baseline)
    f_compact, f_ids = node_ids(followup)
    moved = registration.resample(followup.with_array(f_compact), baseline, labels=True)
    f_on_b = np.asarray(moved.array)
    nb, nf = len(b_ids), len(f_ids)
    both = (b_compact > 0) & (f_on_b > 0)
    joint = np.bincount(b_compact[both].astype(np.int64) * (nf + 1) + f_on_b[both].astype(np.int64),
                        minlength=(nb + 1) * (nf + 1)).reshape(nb + 1, nf + 1)[1:, 1:]
    size_b = np.bincount(b_compact.ravel(), minlength=nb + 1)[1:]
    size_f = np.bincount(f_on_b.ravel().astype(np.int64), minlength=nf + 1)[1:]
    total = size_b[:, None] + size_f[None, :]
    dice = np.where(total > 0, 2.0 * joint / np.maximum(total, 1), 0.0)
    return b_ids, f_ids, dice, size_f


def match_nodes(baseline: Volume, followup: Volume, baseline_rows: list[NodeRow],
                followup_rows: list[NodeRow], registration: Registration) -> list[Pair]:
    """The one-to-one matching of ``baseline_rows`` to ``followup_rows`` (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment

    if not baseline_rows or not followup_rows:
        return []
    b_ids, f_ids, dice_ids, _ = overlap_counts(baseline, followup, registration)
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
