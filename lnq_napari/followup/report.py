"""The result of comparing two scans: one row per node, RECIST and volume summaries, registration quality."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lnq_napari.followup.recist import RecistSummary
from lnq_napari.followup.register import Registration
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import CUT_FIGURES, NodeRow

#: "beyond the other scan": a node with no partner whose place lies outside the other scan's field of
#: view, so whether it vanished or is new cannot be told (not evaluable; left out of RECIST).
BEYOND = "beyond the other scan"
#: A baseline node that coalesced with another into one follow-up node (its ``followup_id``); RECIST
#: measures the coalesced node once, for the highest-ranked baseline node of the group (the others 0 mm).
MERGED = "merged"
#: A follow-up node split off the baseline node ``baseline_id`` (matched to another follow-up node):
#: RECIST credits that node its largest fragment's short axis; volume adds the fragments.
SPLIT = "split off"
STATUSES = ("matched", "new", "vanished", BEYOND, MERGED, SPLIT)
#: ``ChangeRow.relation`` of every row of a coalescence (the merged nodes and their partner's pair) and
#: of a split (the fragments and their node's pair): the pair's change is not the node's own.
COALESCED = "coalesced"
SPLIT_NODE = "split"


@dataclass(frozen=True)
class ChangeRow:
    """One node across the two scans. Ids are those of each scan's node table; None where absent."""

    baseline_id: int | None
    followup_id: int | None
    status: str  # matched, new, vanished, beyond the other scan, merged or split off
    volume_baseline_cm3: float | None
    volume_followup_cm3: float | None
    volume_change_pct: float | None
    short_axis_baseline_mm: float | None
    short_axis_followup_mm: float | None
    short_axis_change_mm: float | None
    long_axis_baseline_mm: float | None
    long_axis_followup_mm: float | None
    long_axis_change_mm: float | None
    centroid_baseline_mm: tuple[float, float, float] | None  # LPS, in the baseline scan
    centroid_followup_mm: tuple[float, float, float] | None  # LPS, in the follow-up scan
    distance_mm: float | None  # matched: baseline centroid carried into the follow-up vs its centroid
    dice: float | None  # matched: overlap after registration
    # baseline role: target, non-target, normal, or a normal node grown new (or equivocal new); follow-up
    # only: new lesion, equivocal new lesion, new, fragment; beyond the other scan: not evaluable, or a new
    # lesion where the baseline did not scan
    recist: str
    relation: str = ""  # COALESCED or SPLIT_NODE for the rows of a coalescence or a split; else ""
    # the follow-up short axis RECIST credits to the baseline node (see RecistSummary.credited_mm): the
    # target rows sum to the summary's follow-up sum; None on follow-up only and not evaluable rows
    recist_followup_short_axis_mm: float | None = None
    #: the image edges that cut each scan's node (:func:`~lnq_napari.quantify.cut_by_edge`): its figures
    #: there are lower bounds; () when whole or absent
    cut_by_edge_baseline: tuple[str, ...] = ()
    cut_by_edge_followup: tuple[str, ...] = ()
    #: the edges that cut a follow-up node ``recist_followup_short_axis_mm`` is taken from
    #: (:attr:`~lnq_napari.followup.recist.RecistSummary.credited_cut`): a fragment's, a coalesced node's
    cut_by_edge_credited: tuple[str, ...] = ()

    @classmethod
    def of(cls, before: NodeRow | None, after: NodeRow | None, recist_role: str,
           distance: float | None = None, dice: float | None = None) -> ChangeRow:
        """The row of a matched pair (both given), a vanished (``after`` None) or a new node."""
        status = "matched" if before and after else ("vanished" if before else "new")

        def get(row, name):
            return None if row is None else getattr(row, name)

        def diff(name):
            return None if status != "matched" else getattr(after, name) - getattr(before, name)

        change = None
        if status == "matched" and before.volume_cm3 > 0:
            change = 100.0 * (after.volume_cm3 - before.volume_cm3) / before.volume_cm3
        return cls(get(before, "id"), get(after, "id"), status, get(before, "volume_cm3"),
                   get(after, "volume_cm3"), change, get(before, "short_axis_mm"),
                   get(after, "short_axis_mm"), diff("short_axis_mm"), get(before, "long_axis_mm"),
                   get(after, "long_axis_mm"), diff("long_axis_mm"), get(before, "centroid_mm"),
                   get(after, "centroid_mm"), distance, dice, recist_role,
                   cut_by_edge_baseline=get(before, "cut_by_edge") or (),
                   cut_by_edge_followup=get(after, "cut_by_edge") or ())

    def to_dict(self) -> dict:
        """The row as the CSV and the CLI table spell it (centroids as three columns each)."""
        out = {}
        for name in CSV_COLUMNS:
            if name.startswith("centroid_"):
                continue
            value = getattr(self, name)
            out[name] = " ".join(value) if name.startswith("cut_by_edge_") else value
        for when in ("baseline", "followup"):
            xyz = getattr(self, f"centroid_{when}_mm")
            for axis, value in zip("xyz", xyz or (None, None, None)):
                out[f"centroid_{when}_{axis}"] = value
        return out


#: The change table's cells whose figure is a lower bound when the image edge cuts that scan's node
#: (:data:`~lnq_napari.quantify.CUT_FIGURES` of each scan; the short axis RECIST credits), and the
#: :class:`ChangeRow` field naming its edges.
CUT_CELLS = {**{f"{name}_{scan}_{unit}": f"cut_by_edge_{scan}" for scan in ("baseline", "followup")
                for name, unit in (figure.rsplit("_", 1) for figure in CUT_FIGURES)},
             "recist_followup_short_axis_mm": "cut_by_edge_credited"}


CSV_COLUMNS = [
    "baseline_id", "followup_id", "status", "volume_baseline_cm3", "volume_followup_cm3", "volume_change_pct",
    "short_axis_baseline_mm", "short_axis_followup_mm", "short_axis_change_mm", "long_axis_baseline_mm",
    "long_axis_followup_mm", "long_axis_change_mm", "distance_mm", "dice", "recist", "relation",
    "recist_followup_short_axis_mm", "cut_by_edge_baseline", "cut_by_edge_followup", "cut_by_edge_credited",
    "centroid_baseline_x", "centroid_baseline_y", "centroid_baseline_z",
    "centroid_followup_x", "centroid_followup_y", "centroid_followup_z",
]


@dataclass(frozen=True)
class RegistrationQuality:
    """How well the scans were aligned: time, lungs' overlap, and the matched nodes' residual distance."""

    stage: str
    seconds: float
    lung_dice: float
    mean_distance_mm: float | None  # matched nodes (not those merged or split), after registration; or None
    poor: bool
    message: str  # empty when not poor


@dataclass(frozen=True)
class VolumeSummary:
    """All nodes of both scans: totals and how many grew, shrank, appeared or vanished."""

    baseline_total_cm3: float
    followup_total_cm3: float
    change_pct: float | None
    n_matched: int
    n_new: int
    n_vanished: int
    n_grown: int  # matched (not merged or split), volume up by GROWN_PCT or more
    n_shrunk: int  # matched (not merged or split), volume down by GROWN_PCT or more
    n_merged: int = 0  # baseline nodes that coalesced with another
    n_split: int = 0  # follow-up nodes split off a matched node

    def pieces(self) -> str:
        """", N merged, M split off" where nodes coalesced or split between the scans; else nothing."""
        said = [f"{n} {what}" for n, what in ((self.n_merged, "merged"), (self.n_split, "split off")) if n]
        return "".join(f", {s}" for s in said)


@dataclass
class CompareResult:
    """Everything :func:`lnq_napari.api.compare` finds; what the CLI prints and the Compare panel shows."""

    rows: list[ChangeRow]
    recist: RecistSummary
    volume: VolumeSummary
    quality: RegistrationQuality
    baseline_nodes: list[NodeRow]
    followup_nodes: list[NodeRow]
    baseline_labels: Volume  # the node ids of the baseline table, on the baseline grid
    followup_labels: Volume  # the node ids of the follow-up table, on the follow-up grid
    registration: Registration
    warnings: list[str] = field(default_factory=list)
    sources: tuple[str, str] = ("", "")  # where each scan's nodes came from (a SEG, a version, a model)
    #: {baseline piece id: the baseline id it was joined into and measured with} (a segmentation's pieces
    #: of one node that a follow-up node overlaps both of)
    baseline_join: dict[int, int] = field(default_factory=dict)

    def __repr__(self) -> str:  # a summary; the rows are in ``rows`` (a notebook cell's last line)
        counts = {status: sum(r.status == status for r in self.rows) for status in dict.fromkeys(
            r.status for r in self.rows)}
        shown = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no node"
        return (f"CompareResult({shown}; RECIST {self.recist.overall}; "
                f"{len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''})")

    def labels_by_row(self) -> tuple[np.ndarray, np.ndarray]:
        """Both scans' nodes on the baseline grid, each numbered by its table row (1-based): a matched
        pair shares its number, hence its colour in a viewer."""
        before = np.asarray(self.baseline_labels.array)
        after = np.asarray(self.registration.resample(self.followup_labels, self.baseline_labels,
                                                      labels=True).array)
        ids = [(row.baseline_id or 0, row.followup_id or 0) for row in self.rows]  # nodes off the grid too
        to_row_before = np.zeros(max([int(before.max(initial=0))] + [b for b, _ in ids]) + 1, dtype=np.int32)
        to_row_after = np.zeros(max([int(after.max(initial=0))] + [f for _, f in ids]) + 1, dtype=np.int32)
        for k, row in enumerate(self.rows, start=1):
            if row.baseline_id is not None and row.status != SPLIT:  # its baseline node has its own row
                to_row_before[row.baseline_id] = k
            if row.followup_id is not None and row.status != MERGED:  # as has its follow-up node
                to_row_after[row.followup_id] = k
        return to_row_before[before], to_row_after[after]

    def row_for(self, baseline_id: int | None = None, followup_id: int | None = None) -> ChangeRow | None:
        """The row holding a node of either scan."""
        for row in self.rows:
            if (baseline_id is not None and row.baseline_id == baseline_id) or (
                    followup_id is not None and row.followup_id == followup_id):
                return row
        return None


def write_csv(rows: list[ChangeRow], path: str | Path) -> Path:
    """The change table as CSV, written atomically; returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(r.to_dict() for r in rows)
    return path
