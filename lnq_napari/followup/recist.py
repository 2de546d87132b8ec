"""RECIST 1.1 for lymph nodes, and a volumetric summary beside it.

RECIST 1.1 (Eisenhauer et al. 2009; Schwartz et al. 2009 for nodes; EORTC questions and clarifications):
nodes are measured by their short axis. At baseline a node with short axis >= 15 mm is measurable and
may be a *target*; 10-15 mm is pathological but a *non-target*; under 10 mm is normal. At most two
targets per organ and five in all, the largest first; the EORTC clarification counts all lymph nodes as
one organ (``organ="nodes"``, the default; ``organ="side"`` counts right, left and midline apart).
Target response from the sum of the targets' short axes: CR when every target is under 10 mm; PD when
the sum grows by >= 20 % and >= 5 mm over the nadir (the smallest sum on study: the baseline's, or a scan's
between, ``nadir_sum_mm``); PR when it falls by >= 30 % from baseline; else SD. A new node of short
axis >= 10 mm, or a normal baseline node grown to 10 mm or more (EORTC: it meets the criteria of a malignant
node), is a new lesion (PD) only when unequivocal (RECIST 1.1 4.3.2): short axis >= 15 mm, or grown by
>= 5 mm (RECIST's absolute PD step) from its baseline short axis. Under both it is an *equivocal* new lesion
(EORTC FAQ "New lymph node lesions": a node grown e.g. from 9 to 11 mm, the only sign of progression,
"be evaluated at the next response assessment, especially when ... < 15 mm"): not PD, said, and PD dated
to this scan if the next confirms it; not absent either: CR needs every node under 10 mm, so beside it a
target CR reads PR overall, and no targets non-CR/non-PD. A node >= 10 mm where the baseline did not scan
is new (RECIST 1.1 4.3.2: "a lesion identified ... in an anatomical location that was not scanned at
baseline is considered a new lesion"). A normal node that split counts once (its largest fragment);
normal nodes that coalesced have no growth of one node (only 15 mm makes it unequivocal).
Non-targets are CR when all are under 10 mm, else non-CR/non-PD (unequivocal non-target progression is a
reader's call, not made here). A node not found at follow-up
counts 0 mm. Nodes that coalesced into one follow-up node: the coalesced node's measurement goes to the
highest-ranked baseline node of the group (target before non-target before normal, then the larger), the
others count 0 mm. A node that split is credited its
largest fragment's short axis: the fragment summing of RECIST 1.1 is written for non-nodal lesions, and
nodes are judged one by one by short axis (CR: every target node under 10 mm); the other fragments are no
new lesions. Volume adds all fragments (the tissue). A response that counts a node cut by the image edge
says so (:meth:`RecistSummary.cut_note`): that node's figures are lower bounds; so does one that a cut node
may change (a cut baseline node not a target may reach 15 mm; an unmatched cut follow-up node under 10 mm
may be a new lesion). Targets are chosen at baseline whatever the follow-up shows; a target the follow-up
does not assess (``unassessed``: its place lies beyond the follow-up's field of view) makes the target
response NE unless the assessed targets alone reach PD (RECIST 1.1, "missing assessments"); a non-target
not assessed makes the non-targets "not all evaluated" (NE unless one assessed is enlarged; a target CR
then reads PR overall).

Volumetric: the same thresholds carried to volume for a sphere (diameter -30 % = volume -65.7 %,
+20 % = +72.8 %), applied to the targets' total volume (from baseline; no nadir).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from lnq_napari.errors import LNQError
from lnq_napari.quantify import CUT_MEANS, CUT_WORDS, ENLARGED_MM, SIDE_ORDER, NodeRow, reaches

TARGET_MM = 15.0
#: the pathological node size: the one 10 mm of the node table's flag, CR and new lesions
PATHOLOGICAL_MM = ENLARGED_MM
MAX_PER_ORGAN = 2
MAX_TARGETS = 5
PR_CHANGE = -0.30
PD_CHANGE = 0.20
PD_ABSOLUTE_MM = 5.0
NEW_LESION_MM = PATHOLOGICAL_MM
#: a new node this large is an unequivocal new lesion (the measurable size, named apart from the target's)
UNEQUIVOCAL_NEW_MM = TARGET_MM
VOLUME_PR = 0.7 ** 3 - 1.0  # -65.7 %
VOLUME_PD = 1.2 ** 3 - 1.0  # +72.8 %
ORGANS: dict[str, Callable[[NodeRow], str]] = {
    "nodes": lambda row: "lymph nodes", "side": lambda row: row.side,
}
#: The response categories, in the words RECIST uses.
CATEGORIES = ("CR", "PR", "SD", "PD", "non-CR/non-PD", "NE")


@dataclass(frozen=True)
class RecistSummary:
    """RECIST 1.1 over the nodes of a baseline and a follow-up scan."""

    targets: tuple[int, ...]  # baseline node ids
    non_targets: tuple[int, ...]  # baseline node ids, pathological but not targets
    new_lesions: tuple[int, ...]  # follow-up node ids
    baseline_sum_mm: float
    followup_sum_mm: float
    sum_change_pct: float | None
    target_response: str  # CR, PR, SD, PD or NE (no target)
    non_target_response: str  # CR, non-CR/non-PD or NE (no non-target)
    overall: str
    volume_baseline_cm3: float  # the targets
    volume_followup_cm3: float
    volume_change_pct: float | None
    volume_response: str  # CR, PR, SD, PD or NE, by the volumetric thresholds
    #: {baseline node id: the follow-up short axis (mm) RECIST credits to it}: a coalesced node's on its
    #: owner (0 on the others), a split node's largest fragment, 0 when not found; the targets' sum is
    #: ``followup_sum_mm``
    credited_mm: dict[int, float] = field(default_factory=dict)
    #: {baseline node id: the image edges that cut a follow-up node its credit is taken from (the
    #: credit then a lower bound)}; absent when those nodes are whole
    credited_cut: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: the nodes the response counts (targets, non-targets, the follow-up nodes credited to them, new
    #: lesions) that the image edge cuts (:func:`~lnq_napari.quantify.cut_by_edge`): measured on what is
    #: visible, so the verdict rests on lower bounds; baseline and follow-up node ids
    cut_baseline: tuple[int, ...] = ()
    cut_followup: tuple[int, ...] = ()
    #: cut nodes that may change the response though it does not count them: baseline nodes neither targets
    #: nor non-targets (their whole short axis may reach 15 mm) and unmatched follow-up nodes under 10 mm
    #: (may be new lesions)
    cut_may_be_target: tuple[int, ...] = ()
    cut_may_be_new: tuple[int, ...] = ()
    #: targets and non-targets the follow-up does not assess (beyond its field of view): the target
    #: response is NE unless the assessed ones reach PD; the non-targets are "not all evaluated"
    unassessed_targets: tuple[int, ...] = ()
    unassessed_non_targets: tuple[int, ...] = ()
    #: follow-up nodes that a normal baseline node (under 10 mm) grew into (>= 10 mm; its largest part, one
    #: per baseline node), in ``new_lesions`` or ``equivocal_new``
    grown_normal: tuple[int, ...] = ()
    #: {follow-up id of ``grown_normal``: the baseline id of the normal node it grew from}
    grown_from: dict[int, int] = field(default_factory=dict)
    #: follow-up nodes >= 10 mm new or grown from a normal node but under 15 mm and grown by under 5 mm:
    #: equivocal new lesions (not PD; PD dated to this scan if the next scan confirms them)
    equivocal_new: tuple[int, ...] = ()
    #: follow-up nodes among ``new_lesions`` that lie where the baseline did not scan
    unscanned_new: tuple[int, ...] = ()
    #: the smallest sum of the targets' short axes on study before this scan when a scan between gave one
    #: below the baseline's (PD is measured from it); None when the baseline's sum is the nadir
    nadir_sum_mm: float | None = None
    #: the scan between that gave ``nadir_sum_mm`` ("case (timepoint)"), when known
    nadir_scan: str = ""
    #: {follow-up id among ``new_lesions``: the earlier scan that showed it as an equivocal new lesion}:
    #: confirmed (RECIST 1.1 4.3.2), PD dated to that scan
    confirmed_new: dict[int, str] = field(default_factory=dict)

    def nadir_change(self) -> str:
        """``"+24 %"``: the follow-up sum's change from ``nadir_sum_mm``; "" without a nadir or from 0 mm."""
        low = self.nadir_sum_mm
        return "" if low is None or low <= 0 else f"{100.0 * (self.followup_sum_mm - low) / low:+.0f} %"

    def nadir_note(self) -> str:
        """``"; nadir 41.0 mm (+24 %)"`` when PD is measured from a scan between's smaller sum; else ""."""
        if self.nadir_sum_mm is None:
            return ""
        change = self.nadir_change()
        return f"; nadir {self.nadir_sum_mm:.1f} mm{f' ({change})' if change else ''}"

    def cut_note(self) -> str:
        """``"rests on node(s) cut by the image edge: baseline 3; follow-up 5 (measured on what is
        visible)"``, then ``"node(s) cut by the image edge may change it: baseline 4 (a target if 15 mm or
        more); follow-up 9 (a new lesion if 10 mm or more)"``; "" when no cut node counts or may."""
        def listed(groups):
            return "; ".join(f"{scan} {', '.join(map(str, ids))}{why}" for scan, ids, why in groups if ids)

        rests = listed((("baseline", self.cut_baseline, ""), ("follow-up", self.cut_followup, "")))
        may = listed((("baseline", self.cut_may_be_target, " (a target if 15 mm or more)"),
                      ("follow-up", self.cut_may_be_new, " (a new lesion if 10 mm or more)")))
        return ", ".join(([f"rests on node(s) {CUT_WORDS}: {rests} ({CUT_MEANS})"] if rests else [])
                         + ([f"node(s) {CUT_WORDS} may change it: {may}"] if may else []))


def check_organ(organ: str) -> None:
    """LNQError unless ``organ`` names a way of grouping nodes into organs (:data:`ORGANS`)."""
    if organ not in ORGANS:
        raise LNQError(f"organ must be one of {', '.join(map(repr, ORGANS))} (got {organ!r}): 'nodes' "
                       "counts all lymph nodes as one organ (RECIST 1.1), 'side' counts right, left and "
                       "midline apart")


def select_targets(rows: Sequence[NodeRow], organ: str = "nodes") -> list[NodeRow]:
    """Baseline targets: short axis >= 15 mm, largest first, at most 2 per organ and 5 in all."""
    key = ORGANS[organ]
    chosen: list[NodeRow] = []
    per_organ: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: -r.short_axis_mm):
        if not reaches(row.short_axis_mm, TARGET_MM) or len(chosen) == MAX_TARGETS:
            break
        if per_organ.get(key(row), 0) < MAX_PER_ORGAN:
            per_organ[key(row)] = per_organ.get(key(row), 0) + 1
            chosen.append(row)
    return chosen


def _target_response(base: float, follow: float, all_small: bool, missing: bool = False,
                     nadir: float | None = None) -> str:
    """``missing``: a target not assessed: NE unless the assessed ones' sum alone reaches PD; ``nadir``: the
    smallest sum on study (PD grows from it), the baseline's when None."""
    low = base if nadir is None else min(base, nadir)
    if all_small and not missing:
        return "CR"
    if follow - low >= PD_ABSOLUTE_MM and follow >= low * (1.0 + PD_CHANGE):
        return "PD"
    if missing:
        return "NE"
    if follow <= base * (1.0 + PR_CHANGE):
        return "PR"
    return "SD"


def _overall(target: str, non_target: str, new: bool, has_targets: bool = False,
             non_target_missing: bool = False) -> str:
    """RECIST 1.1's tables 1 and 2; ``has_targets``: a target NE was not assessed (table 1: NE), not
    absent; ``non_target_missing``: non-targets not all evaluated (a target CR then reads PR)."""
    if new or target == "PD":
        return "PD"
    if target == "NE":
        if has_targets:
            return "NE"
        return {"CR": "CR", "non-CR/non-PD": "non-CR/non-PD"}.get(non_target, "NE")
    if target == "CR":
        return "CR" if non_target == "CR" or (non_target == "NE" and not non_target_missing) else "PR"
    return target


def with_equivocal(non_target: str, equivocal: bool) -> str:
    """The non-target response as the overall response reads it: an equivocal new node (short axis >= 10 mm,
    not PD) reads as a non-CR non-target, since RECIST 1.1 CR needs every node under 10 mm (a target CR
    then reads PR, no targets non-CR/non-PD); the one place of that rule."""
    return "non-CR/non-PD" if equivocal else non_target


def unequivocal(row: NodeRow, before: NodeRow | None = None) -> bool:
    """Whether a follow-up node >= 10 mm, new or grown from the normal baseline node ``before``, is an
    unequivocal new lesion: short axis >= 15 mm (EORTC FAQ: confirm "especially when ... < 15 mm"), or grown
    by >= 5 mm (RECIST's absolute PD step, beyond measurement noise) from ``before``'s short axis."""
    return reaches(row.short_axis_mm, UNEQUIVOCAL_NEW_MM) or (
        before is not None and reaches(row.short_axis_mm - before.short_axis_mm, PD_ABSOLUTE_MM))


def _change(base: float, follow: float) -> float | None:
    return 100.0 * (follow - base) / base if base > 0 else None


def _owners(baseline: Sequence[NodeRow], matches: dict[int, int], merged: dict[int, int],
            rank: Callable[[NodeRow], tuple]) -> dict[int, int]:
    """{follow-up id: the baseline id its measurement goes to}: of the baseline nodes matched or merged
    into one follow-up node, the highest by ``rank``."""
    by_id = {row.id: row for row in baseline}
    groups: dict[int, list[NodeRow]] = {}
    for b, f in [*matches.items(), *merged.items()]:
        if b in by_id:
            groups.setdefault(f, []).append(by_id[b])
    return {f: max(group, key=rank).id for f, group in groups.items()}


def recist(baseline: Sequence[NodeRow], followup: Sequence[NodeRow], matches: dict[int, int],
           organ: str = "nodes", pieces: dict[int, int] | None = None,
           merged: dict[int, int] | None = None, unassessed: Collection[int] = (),
           nadir_sum_mm: float | None = None, unscanned: Collection[int] = (),
           confirmed: Mapping[int, str] | None = None) -> RecistSummary:
    """RECIST 1.1 and the volumetric category; ``matches`` maps baseline ids to follow-up ids,
    ``pieces`` follow-up ids of fragments to the baseline id of the node they split from (the node is
    credited its largest fragment's short axis and all fragments' volume; no fragment is a new lesion),
    ``merged`` baseline ids of nodes that coalesced to the follow-up id of the coalesced node (matched
    to another baseline node): its measure goes to the highest-ranked node of the group, target before
    non-target before normal, then the larger; the others count 0 mm. ``unassessed``: baseline ids the
    follow-up does not show (beyond its field of view): still chosen as targets, not counted 0 mm, and a
    target among them makes the target response NE unless the others reach PD. ``nadir_sum_mm``: the
    targets' smallest sum at a scan between (of these targets), PD measured from it when below baseline.
    ``unscanned``: follow-up ids (in ``followup``) that lie where the baseline did not scan: new lesions
    when >= 10 mm, else not counted. ``confirmed``: {follow-up id: the earlier scan that already showed an
    equivocal new node there}: a new or grown node >= 10 mm among them is confirmed, a new lesion (RECIST
    1.1 4.3.2: PD dated to that scan)."""
    after = {row.id: row for row in followup}
    pieces = pieces or {}
    targets = select_targets(baseline, organ)
    target_ids = {row.id for row in targets}
    non_targets = [r for r in baseline
                   if reaches(r.short_axis_mm, PATHOLOGICAL_MM) and r.id not in target_ids]
    non_target_ids = {row.id for row in non_targets}
    owner = _owners(baseline, matches, merged or {}, lambda r: (
        r.id in target_ids, r.id in non_target_ids, r.short_axis_mm, r.volume_cm3, -r.id))
    piece_owner = {f: owner.get(matches.get(b, -1), b) for f, b in pieces.items()}

    def parts(row: NodeRow) -> list[NodeRow]:
        ids = [f for f, b in [*owner.items(), *piece_owner.items()] if b == row.id]
        return [after[i] for i in ids if i in after]

    def short(row: NodeRow) -> float:  # a node is judged by short axis: its largest fragment
        return float(max((p.short_axis_mm for p in parts(row)), default=0.0))

    def edges(row: NodeRow) -> tuple[str, ...]:  # any cut part may be the largest whole
        return tuple(side for side in SIDE_ORDER if any(side in p.cut_by_edge for p in parts(row)))

    def volume(row: NodeRow) -> float:
        return float(sum(p.volume_cm3 for p in parts(row)))

    unscanned = set(unscanned)
    matched = set(matches.values()) | set(pieces) | unscanned
    # a normal node (under 10 mm) that reaches 10 mm has met the criteria of a malignant node (EORTC), as
    # one the baseline segmentation left out; judged as a node is, by its largest part: one per node
    grown_from: dict[int, int] = {}
    for r in baseline:
        largest = max(parts(r), key=lambda p: p.short_axis_mm, default=None)
        if r.id not in target_ids and r.id not in non_target_ids and largest is not None \
                and reaches(largest.short_axis_mm, NEW_LESION_MM):
            grown_from[largest.id] = r.id
    by_id = {r.id: r for r in baseline}
    candidates = [r for r in followup if (r.id not in matched or r.id in grown_from)
                  and reaches(r.short_axis_mm, NEW_LESION_MM)]
    confirmed = dict(confirmed or {})
    coalesced = set((merged or {}).values())  # several nodes grown into one: no growth of one node
    sure = {c.id for c in candidates if c.id in confirmed or unequivocal(
        c, None if c.id in coalesced else by_id.get(grown_from.get(c.id, -1)))}
    new = tuple(r.id for r in followup if r.id in sure  # RECIST 1.1 4.3.2: where the baseline did not scan
                or r.id in unscanned and reaches(r.short_axis_mm, NEW_LESION_MM))
    equivocal = tuple(r.id for r in candidates if r.id not in new)
    unassessed = set(unassessed)
    missing = tuple(r.id for r in targets if r.id in unassessed)
    missing_non = tuple(r.id for r in non_targets if r.id in unassessed)
    base_sum = float(sum(r.short_axis_mm for r in targets))
    follow_sum = float(sum(short(r) for r in targets))  # a target not assessed has no part: 0 mm
    all_small = not any(reaches(short(r), PATHOLOGICAL_MM) for r in targets)
    nadir = nadir_sum_mm if nadir_sum_mm is not None and targets and nadir_sum_mm < base_sum else None
    target = _target_response(base_sum, follow_sum, all_small, bool(missing), nadir) if targets else "NE"
    if non_targets:
        enlarged = any(reaches(short(r), PATHOLOGICAL_MM) for r in non_targets)
        non_target = "non-CR/non-PD" if enlarged else "NE" if missing_non else "CR"
    else:
        non_target = "NE"
    base_vol = float(sum(r.volume_cm3 for r in targets))
    follow_vol = float(sum(volume(r) for r in targets))
    volume_change = _change(base_vol, follow_vol)
    if not targets:
        by_volume = "NE"
    elif all_small and not missing:
        by_volume = "CR"
    elif follow_vol >= base_vol * (1.0 + VOLUME_PD):
        by_volume = "PD"
    elif missing:
        by_volume = "NE"
    elif follow_vol <= base_vol * (1.0 + VOLUME_PR):
        by_volume = "PR"
    else:
        by_volume = "SD"
    if by_volume == "CR" and equivocal:  # every node under 10 mm is CR's condition (:func:`with_equivocal`)
        by_volume = _overall(by_volume, with_equivocal(non_target, True), False)
    counted = [*targets, *non_targets]
    cut_followup = {p.id for r in counted for p in parts(r) if p.cut_by_edge}
    cut_followup |= {r.id for r in followup if (r.id in new or r.id in equivocal) and r.cut_by_edge}
    return RecistSummary(
        targets=tuple(r.id for r in targets), non_targets=tuple(r.id for r in non_targets), new_lesions=new,
        baseline_sum_mm=base_sum, followup_sum_mm=follow_sum,  # a change of part of the targets is none
        sum_change_pct=None if target == "NE" else _change(base_sum, follow_sum),
        target_response=target, non_target_response=non_target,
        overall=_overall(target, with_equivocal(non_target, bool(equivocal)), bool(new), bool(targets),
                         bool(missing_non)),
        volume_baseline_cm3=base_vol, volume_followup_cm3=follow_vol,
        volume_change_pct=None if by_volume == "NE" else volume_change,
        volume_response="PD" if new else by_volume, credited_mm={r.id: short(r) for r in baseline},
        credited_cut={r.id: edges(r) for r in baseline if edges(r)},
        cut_baseline=tuple(sorted(r.id for r in counted if r.cut_by_edge)),
        cut_followup=tuple(sorted(cut_followup)),
        cut_may_be_target=tuple(sorted(r.id for r in baseline if r.cut_by_edge and r.id not in target_ids
                                       and r.id not in non_target_ids)),  # a cut non-target: in cut_baseline
        cut_may_be_new=tuple(sorted(r.id for r in followup if r.cut_by_edge and r.id not in matched
                                    and r.id not in new and r.id not in equivocal)),
        unassessed_targets=missing, unassessed_non_targets=missing_non, nadir_sum_mm=nadir,
        grown_normal=tuple(sorted(grown_from)), grown_from=grown_from, equivocal_new=equivocal,
        unscanned_new=tuple(i for i in new if i in unscanned),
        confirmed_new={i: confirmed[i] for i in new if i in confirmed and i not in unscanned},
    )
