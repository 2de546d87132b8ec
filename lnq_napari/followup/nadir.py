"""The nadir RECIST 1.1 measures progression from: the smallest sum of the same baseline targets on study.

A scan between the baseline and the last one is compared with the baseline on its own, and that comparison
may measure the baseline's nodes otherwise (a target whose segmentation left a slice out is joined into one
node only where a follow-up node overlaps both pieces), hence choose other targets. So each scan between
keeps what it credits every baseline node (:class:`ScanCredits`) and the last comparison sums it over its
own targets, each target judged by the largest of its pieces' credits, as a node is by its largest part
(RECIST 1.1: nodes are judged one by one by short axis). A scan that does not assess one of them (a piece
beyond its field of view) gives no nadir: its sum is not evaluable. Each also keeps where it showed an
equivocal new node (carried to the baseline): one still there at the last scan is confirmed (RECIST 1.1
4.3.2, :func:`seen_equivocal`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.followup.match import MAX_DISTANCE_MM
from lnq_napari.followup.report import BEYOND, CompareResult


@dataclass(frozen=True)
class ScanCredits:
    """What a scan between credits each baseline node, from its comparison with the baseline."""

    label: str  # the scan, as a warning names it: "case (timepoint)"
    credited_mm: dict[int, float]  # {baseline id of that comparison: the follow-up short axis it credits}
    join: dict[int, int] = field(default_factory=dict)  # {baseline piece id: the id it was measured with}
    unassessed: frozenset[int] = frozenset()  # baseline ids beyond that scan's field of view
    #: the centres (LPS mm, carried to the baseline) of that scan's equivocal new nodes
    equivocal_mm: tuple[tuple[float, float, float], ...] = ()


def scan_credits(result: CompareResult, label: str) -> ScanCredits:
    """A comparison of the baseline with a scan between, as :func:`nadir_of` reads it."""
    beyond = frozenset(r.baseline_id for r in result.rows if r.status == BEYOND and r.baseline_id is not None)
    shown = [r.centroid_mm for r in result.followup_nodes if r.id in result.recist.equivocal_new]
    at_baseline = result.registration.to_baseline(shown) if shown else ()
    return ScanCredits(label, dict(result.recist.credited_mm), dict(result.baseline_join), beyond,
                       tuple(tuple(float(v) for v in p) for p in at_baseline))


def seen_equivocal(scans: Sequence[ScanCredits], centres: Mapping[int, Sequence[float]]
                   ) -> dict[int, tuple[str, float]]:
    """{node id: (the first scan that showed an equivocal new node within :data:`MAX_DISTANCE_MM` of it,
    the distance mm)} for ``centres`` ({follow-up id: its centre carried to the baseline, LPS mm})."""
    seen: dict[int, tuple[str, float]] = {}
    for node, centre in centres.items():
        for scan in scans:
            near = [float(np.linalg.norm(np.subtract(p, centre))) for p in scan.equivocal_mm]
            if near and min(near) <= MAX_DISTANCE_MM:
                seen[node] = (scan.label, min(near))
                break
    return seen


def target_sum(scan: ScanCredits, pieces: Mapping[int, Sequence[int]]) -> float | None:
    """The sum of the targets' short axes at ``scan``: ``pieces`` maps each target (a baseline id of the
    last comparison) to the ids of the baseline pieces it was measured from (itself included); a target is
    credited its pieces' largest credit there. None when a piece is not assessed or unknown there."""
    total = 0.0
    for ids in pieces.values():
        there = {scan.join.get(i, i) for i in ids}
        if there & scan.unassessed or not there <= scan.credited_mm.keys():
            return None
        total += max(scan.credited_mm[i] for i in there)
    return total


def nadir_of(scans: Sequence[ScanCredits], pieces: Mapping[int, Sequence[int]]
             ) -> tuple[tuple[float, str] | None, list[str]]:
    """The smallest :func:`target_sum` over ``scans`` with the scan that gave it (None when none gives
    one), and the labels of the scans that could not (a target not assessed there)."""
    sums = [(target_sum(scan, pieces), scan.label) for scan in scans]
    found = [(s, label) for s, label in sums if s is not None]
    return (min(found) if found else None), [label for s, label in sums if s is None]
