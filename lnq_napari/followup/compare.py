"""Compare the nodes of a baseline and a follow-up scan: register, measure, match, summarise."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.followup import report
from lnq_napari.followup.match import fragments, match_nodes, node_box, overlap_counts, sub_volume
from lnq_napari.followup.nadir import ScanCredits, nadir_of, seen_equivocal
from lnq_napari.followup.recist import (
    NEW_LESION_MM,
    PD_ABSOLUTE_MM,
    UNEQUIVOCAL_NEW_MM,
    recist,
    select_targets,
)
from lnq_napari.followup.register import Registration, register
from lnq_napari.followup.report import ChangeRow, CompareResult, RegistrationQuality, VolumeSummary
from lnq_napari.io.geometry import align_to, reordered_onto
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import measure_ids, node_ids, reaches, short_axis_text

#: Mean distance (mm) between matched nodes after registration above which the alignment is poor.
POOR_DISTANCE_MM = 8.0
#: Lungs' Dice after registration under which the alignment is poor.
POOR_LUNG_DICE = 0.75
#: A matched node "grew" or "shrank" when its volume changed by at least this much (%).
GROWN_PCT = 20.0
#: Pieces of one node that a segmentation split (a slice left out, a thin neck) lie within this many
#: voxel steps (of the scan's largest spacing) or :data:`PIECE_GAP_MM`, whichever is more, of each other;
#: farther apart they are two nodes (two that coalesced in the other scan, or one that split there).
PIECE_GAP_STEPS = 2.0
PIECE_GAP_MM = 5.0


#: The RECIST role of a matched normal baseline node (under 10 mm) that reached 10 mm at follow-up
#: unequivocally (:func:`~lnq_napari.followup.recist.unequivocal`), and of one within measurement noise.
GROWN_NEW = "new lesion (normal at baseline)"
GROWN_EQUIVOCAL = "equivocal new lesion (normal at baseline): confirm at the next scan"
#: The RECIST role of an unmatched follow-up node: equivocal, and where the baseline did not scan.
NEW_EQUIVOCAL = "equivocal new lesion: confirm at the next scan"
NEW_UNSCANNED = "new lesion (where the baseline did not scan)"


class RegistrationWarning(UserWarning):
    """The follow-up is poorly aligned to the baseline: check the matching by eye."""


#: A SEG this close (mm, and in direction) to a CT's grid, in any axis order, was drawn on that CT.
SAME_GRID_MM = 0.01


def _drawn_on(seg: Volume, ct: Volume) -> bool:
    """Whether ``seg`` samples ``ct``'s grid (within :data:`SAME_GRID_MM`, any axis order or direction)."""
    return seg.same_grid(ct, tol=SAME_GRID_MM) or \
        reordered_onto(ct, seg, tol=SAME_GRID_MM, origin_tol=SAME_GRID_MM) is not None


def seg_on_ct(seg: Volume, ct: Volume, other: Volume, which: str) -> Volume:
    """``seg`` on its own CT's grid (``which``: "baseline" or "follow-up"), as ``measure`` puts labels on
    a CT (:func:`~lnq_napari.io.geometry.align_to`: float noise kept, another axis order reordered, an
    overlapping grid resampled with a warning); LNQError when it was drawn on the other CT's grid and not
    on its own (the files look swapped; a flipped copy or float noise included) or does not overlap its
    CT at all."""
    if not _drawn_on(seg, ct) and _drawn_on(seg, other):
        raise LNQError(f"the {which} SEG is on the other CT's grid: the files look swapped; give each CT "
                       "the SEG drawn on it")
    return align_to(ct, seg, what=f"{which} SEG")


def id_labels(labels: Volume) -> Volume:
    """``labels`` as one id per node, the ids the node table uses (:func:`~lnq_napari.quantify.node_ids`).

    Works in the box around the nodes, so a big scan with a few nodes stays quick."""
    out = np.zeros(labels.shape, dtype=np.int32)
    box = node_box(labels.array)
    if box is not None:
        compact, ids = node_ids(sub_volume(labels, box))
        out[box] = np.concatenate([[0], ids]).astype(np.int32)[compact]
    return labels.with_array(out)


def compare_nodes(baseline_ct: Volume, baseline_seg: Volume, followup_ct: Volume, followup_seg: Volume,
                  organ: str = "nodes", affine: bool = True,
                  progress: Callable[[float, str], None] | None = None,
                  registration: Registration | None = None,
                  nadir_sum_mm: float | None = None, nadir_scans: Sequence[ScanCredits] = ()
                  ) -> CompareResult:
    """Register the follow-up to the baseline, match their nodes and summarise the changes.

    Each segmentation is put on its own CT's grid (:func:`seg_on_ct`); measurements come from each
    scan's own grid.
    ``registration`` (from an earlier result of the same two CTs) skips the registration: after an
    edit of either scan's nodes only measuring and matching run again.
    Warns (:class:`RegistrationWarning`) when the matched nodes lie far apart after registration.
    ``nadir_sum_mm``: the targets' smallest sum at a scan between (RECIST measures PD from it);
    ``nadir_scans``: the scans between's credits to the baseline nodes (:mod:`~lnq_napari.followup.nadir`):
    the nadir is the smallest sum of this comparison's targets over them, each measured as here.
    """
    step = progress or (lambda fraction, message="": None)
    baseline_seg = seg_on_ct(baseline_seg, baseline_ct, followup_ct, "baseline")
    followup_seg = seg_on_ct(followup_seg, followup_ct, baseline_ct, "follow-up")
    if registration is None:
        step(0.0, "registering")
        registration = register(baseline_ct, followup_ct, affine=affine)
    step(0.6, "measuring nodes")
    before = id_labels(baseline_seg)
    after = id_labels(followup_seg)
    b_rows, f_rows = measure_ids(before, baseline_ct), measure_ids(after, followup_ct)
    step(0.8, "matching nodes")
    overlap = overlap_counts(before, after, registration)  # once: the matching and its pieces read it
    pairs = match_nodes(before, after, b_rows, f_rows, registration, overlap)
    join_b, join_f = fragments(overlap, pairs)
    far_b = {b: w for b, w in join_b.items() if not _near(before, b, w)}  # coalesced at follow-up
    far_f = {f: w for f, w in join_f.items() if not _near(after, f, w)}  # split at follow-up
    join_b = {b: w for b, w in join_b.items() if b not in far_b}
    join_f = {f: w for f, w in join_f.items() if f not in far_f}
    if join_b or join_f:  # a node split in two is one node: measured whole, matched once, never "new"
        before, after = _joined(before, join_b), _joined(after, join_f)
        b_rows, f_rows = measure_ids(before, baseline_ct), measure_ids(after, followup_ct)
        pairs = match_nodes(before, after, b_rows, f_rows, registration)
    partner_b = {p.baseline_id: p.followup_id for p in pairs}
    partner_f = {p.followup_id: p.baseline_id for p in pairs}
    merged = {b: partner_b[w] for b, w in far_b.items() if b not in partner_b and w in partner_b}
    split = {f: partner_f[w] for f, w in far_f.items() if f not in partner_f and w in partner_f}
    beyond_b, beyond_f = _beyond(b_rows, f_rows, pairs, registration, baseline_ct, followup_ct,
                                 set(merged), set(split))
    pieces_of = {t.id: [t.id, *(p for p, w in join_b.items() if w == t.id)]  # the same targets at each scan
                 for t in select_targets(b_rows, organ)}
    found, unusable = nadir_of(nadir_scans, pieces_of)
    if found is not None and (nadir_sum_mm is None or found[0] < nadir_sum_mm):
        nadir_sum_mm, nadir_scan = found
    else:
        nadir_scan = ""
    large = [r for r in f_rows if nadir_scans and reaches(r.short_axis_mm, NEW_LESION_MM)]  # seen before?
    seen = seen_equivocal(nadir_scans, dict(zip(
        [r.id for r in large], registration.to_baseline([r.centroid_mm for r in large]) if large else ())))
    summary = recist(b_rows, f_rows, partner_b, organ=organ, pieces=split, merged=merged,
                     unassessed=beyond_b,  # targets chosen at baseline
                     nadir_sum_mm=nadir_sum_mm, unscanned=beyond_f,
                     confirmed={i: label for i, (label, _) in seen.items()})
    if summary.nadir_sum_mm is not None:
        summary = dataclasses.replace(summary, nadir_scan=nadir_scan)
    by_base = {p.baseline_id: p for p in pairs}
    # pairs whose partner coalesced or split: one node measured against a conglomerate or a fragment
    grouped = {p.baseline_id: report.COALESCED if p.followup_id in merged.values() else report.SPLIT_NODE
               for p in pairs if p.followup_id in merged.values() or p.baseline_id in split.values()}

    def credit(baseline_id: int) -> dict:  # what RECIST credits the node, and whether that is a lower bound
        return {"recist_followup_short_axis_mm": summary.credited_mm.get(baseline_id),
                "cut_by_edge_credited": summary.credited_cut.get(baseline_id, ())}

    f_by_id = {r.id: r for r in f_rows}
    rows: list[ChangeRow] = []
    for row in b_rows:
        role = ("target" if row.id in summary.targets else
                "non-target" if row.id in summary.non_targets else "normal")
        pair = by_base.get(row.id)
        if row.id in merged:  # RECIST: the coalesced node is measured once, for one node of the group
            rows.append(dataclasses.replace(ChangeRow.of(row, None, role), status=report.MERGED,
                                            followup_id=merged[row.id], relation=report.COALESCED,
                                            **credit(row.id)))
        elif pair is None:
            rows.append(_beyond_row(dataclasses.replace(ChangeRow.of(row, None, role), **credit(row.id)),
                                    row.id in beyond_b, role))
        else:
            grew = next((f for f, b in summary.grown_from.items() if b == row.id), None)
            if grew is not None:  # grown past 10 mm (its largest part): new, or equivocal
                role = GROWN_NEW if grew in summary.new_lesions else GROWN_EQUIVOCAL
                role += _confirmed(summary, grew)
            rows.append(dataclasses.replace(
                ChangeRow.of(row, f_by_id[pair.followup_id], role, pair.distance_mm, pair.dice),
                relation=grouped.get(row.id, ""), **credit(row.id)))
    for row in f_rows:
        if row.id in split:  # RECIST: its node is credited its largest fragment; no new lesion
            role = "fragment" if row.id not in summary.grown_from else "fragment, " + (
                GROWN_NEW if row.id in summary.new_lesions else GROWN_EQUIVOCAL)  # its node's largest
            rows.append(dataclasses.replace(ChangeRow.of(None, row, role), status=report.SPLIT,
                                            baseline_id=split[row.id], relation=report.SPLIT_NODE))
        elif row.id not in partner_f:
            role = ("new lesion" + _confirmed(summary, row.id) if row.id in summary.new_lesions else
                    NEW_EQUIVOCAL if row.id in summary.equivocal_new else "new")
            said = _beyond_row(ChangeRow.of(None, row, role), row.id in beyond_f)
            rows.append(dataclasses.replace(said, recist=NEW_UNSCANNED) if row.id in summary.unscanned_new
                        else said)
    quality = _quality(registration, [p for p in pairs if p.baseline_id not in grouped])
    notes = []
    if baseline_ct.same_grid(followup_ct) and np.array_equal(baseline_ct.array, followup_ct.array):
        if np.array_equal(np.asarray(baseline_seg.array) > 0, np.asarray(followup_seg.array) > 0):
            said = "every node is unchanged by construction"
        else:
            said = "the changes are between the two SEGs (two readings of one scan), not over time"
        note = ("the baseline and follow-up CT are the same scan (one grid, every voxel alike): "
                f"{said}; check that the follow-up is the later scan")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    for scan, joined in (("baseline", join_b), ("follow-up", join_f)):
        if joined:  # said, since the table's ids are no longer all the segmentation's
            pieces = ", ".join(f"{k} (into {v})" for k, v in sorted(joined.items()))
            note = (f"{scan} node(s) {pieces} overlap one node of the other scan with the node they join: "
                    "measured as one node")
            warnings.warn(note, UserWarning, stacklevel=2)
            notes.append(note)
    if merged or split:
        said = [f"baseline node {b} merged into follow-up node {f} with baseline node {partner_f[f]}"
                for b, f in sorted(merged.items())]
        said += [f"follow-up node {f} split from baseline node {b} beside follow-up node {partner_b[b]}"
                 for f, b in sorted(split.items())]
        rules = ([] if not merged else ["counts a coalesced node once, for its highest-ranked baseline node "
                                        "(the others 0 mm)"]) + (
            [] if not split else ["credits a split node its largest fragment's short axis (volume adds "
                                  "the fragments)"])
        note = "; ".join(said) + ": RECIST " + " and ".join(rules)
        by_diameter = "PD" if summary.new_lesions else summary.target_response
        credited = {*merged, *split.values(), *(partner_f[f] for f in merged.values())}  # a target's credit
        if set(summary.targets) & credited and by_diameter != summary.volume_response:  # moved with them
            note += (f"; the targets read {by_diameter} by short axis but {summary.volume_response} by "
                     "volume, which counts all the tissue: look at the nodes before trusting either")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    voxel = float(max(followup_ct.spacing[:2]))  # in-plane: a short axis is measured axially

    def named(ids) -> str:  # "7 (16.0 mm, baseline node 3 9.2 mm, +6.8 mm)", "7 (12.0 mm, no baseline node)"
        def one(f: int) -> str:  # sizes as the table shows them (rounded down, short_axis_text)
            size = f_by_id[f].short_axis_mm
            b = summary.grown_from.get(f)
            near = [f"{UNEQUIVOCAL_NEW_MM:.0f} mm"] if abs(size - UNEQUIVOCAL_NEW_MM) < voxel else []
            if b is None:
                was = "no baseline node"
            elif f in merged.values():  # growth of which node? (recist: only 15 mm makes it unequivocal)
                was = "coalesced from baseline nodes " + ", ".join(
                    map(str, sorted({partner_f[f], *(k for k, v in merged.items() if v == f)})))
            else:
                before = next(r.short_axis_mm for r in b_rows if r.id == b)
                was = f"baseline node {b} {short_axis_text(before)} mm, +{short_axis_text(size - before)} mm"
                near += [f"+{PD_ABSOLUTE_MM:.0f} mm"] if abs(size - before - PD_ABSOLUTE_MM) < voxel else []
            bound = f"; within one in-plane voxel ({voxel:.1f} mm) of {' and '.join(near)}: check by eye" \
                if near else ""
            return f"{f} ({short_axis_text(size)} mm, {was}{bound})"
        return ", ".join(one(f) for f in ids if f in f_by_id)

    unmatched_new = [f for f in summary.new_lesions if f not in summary.grown_from
                     and f not in summary.confirmed_new and f not in summary.unscanned_new]
    if unmatched_new:  # a PD resting on a node with no baseline partner: said, as a grown one is
        note = (f"follow-up node(s) {named(unmatched_new)} are new, 15 mm or more with no baseline node: new "
                "lesion(s) by RECIST 1.1, overall PD")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    grown_new = [f for f in summary.grown_normal
                 if f in summary.new_lesions and f not in summary.confirmed_new]
    if grown_new:  # a small node's growth turning the response PD: said
        note = (f"follow-up node(s) {named(grown_new)} grew from a normal baseline node (under 10 mm) to "
                "15 mm or by 5 mm or more: new lesion(s) by RECIST 1.1, overall PD")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if summary.equivocal_new:  # RECIST 1.1 4.3.2 and EORTC's FAQ: confirm at the next scan
        grew = any(f in summary.grown_from for f in summary.equivocal_new)
        if summary.overall == "PD":  # PD from elsewhere: the node changes nothing now
            verdict = "equivocal, not needed for this PD (overall PD)"
        else:
            verdict = (f"not counted as PD (overall {summary.overall}); confirm at the next scan, PD then "
                       "dated to this one")
        if "CR" in (summary.target_response, summary.non_target_response) and summary.overall != "PD":
            verdict += "; a node of 10 mm or more keeps the response from CR"
        note = (f"equivocal new lesion(s): follow-up node(s) {named(summary.equivocal_new)} reached 10 mm "
                "but stay under 15 mm" + (" and did not grow by 5 mm from their normal baseline node (a "
                                          "change within measurement noise is no proof)" if grew else "")
                + f": {verdict}")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if summary.confirmed_new:  # RECIST 1.1 4.3.2: an equivocal new lesion confirmed, PD dated back
        first = min(summary.confirmed_new.values(), key=[s.label for s in nadir_scans].index)
        note = (f"follow-up node(s) {named(summary.confirmed_new)} lie where a scan between already showed "
                "an equivocal new node (" + "; ".join(
                    f"node {f}: {label}, its centre {seen[f][1]:.1f} mm away once both are carried to the "
                    "baseline" for f, label in summary.confirmed_new.items())
                + f"): still 10 mm or more, so confirmed (RECIST 1.1 4.3.2): new lesion(s), overall PD, "
                f"dated to {first}; check by eye that it is the same node")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if summary.nadir_sum_mm is not None:  # PD measured from a scan between: said, with the change from it
        r = summary
        change = f" ({r.nadir_change()} from it)" if r.nadir_change() else ""
        note = (f"RECIST measures progression from the targets' smallest sum on study: "
                f"{r.nadir_sum_mm:.1f} mm at {r.nadir_scan or 'a scan between'}, below the baseline's "
                f"{r.baseline_sum_mm:.1f} mm; this scan's {r.followup_sum_mm:.1f} mm{change} reads "
                f"{r.target_response}")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if unusable:
        note = (f"scan(s) {', '.join(unusable)} between do not assess every target (one lies beyond the "
                "field of view): no nadir from them")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if beyond_b or beyond_f:  # a shorter scan (another field of view) is no response
        note = (f"{len(beyond_b)} baseline and {len(beyond_f)} follow-up node(s) lie beyond the other scan's "
                "field of view: not evaluable, so not counted as vanished or new"
                + (" unless 10 mm or more where the baseline did not scan" if beyond_f else ""))
        unseen = summary.unassessed_targets
        if unseen:  # RECIST 1.1: a target not assessed leaves the response NE, unless the rest shows PD
            note += (f"; baseline target(s) {', '.join(map(str, sorted(unseen)))} not assessed at follow-up: "
                     f"RECIST target response {summary.target_response}" + (
                         "" if summary.target_response == "PD" else " (not all targets assessed; PD only "
                         "when the assessed ones alone grow enough)"))
        if summary.unassessed_non_targets:
            note += (f"; non-target(s) {', '.join(map(str, summary.unassessed_non_targets))} not assessed "
                     f"(non-targets not all evaluated: {summary.non_target_response})")
        if not (unseen or summary.unassessed_non_targets or summary.unscanned_new):
            note += " nor in RECIST"
        if summary.unscanned_new:  # RECIST 1.1 4.3.2
            note += (f"; follow-up node(s) {', '.join(map(str, summary.unscanned_new))} (short axis >= 10 "
                     "mm) lie where the baseline did not scan: new lesion(s) by RECIST 1.1 (a lesion in a "
                     "place not scanned at baseline is new), overall PD; check the two fields of view")
            small = [f for f in summary.unscanned_new
                     if not reaches(f_by_id[f].short_axis_mm, UNEQUIVOCAL_NEW_MM)]
            if small:  # RECIST is literal there; a 10-15 mm node is often a normal one the baseline missed
                note += (f"; node(s) {named(small)} are under 15 mm: a normal-sized node just beyond the "
                         "baseline's field of view is often no disease, so look at it before calling PD")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if summary.cut_note():  # a lower bound read as a size: the response may be another
        note = (f"RECIST {summary.overall} {summary.cut_note()}: their short axes and volumes are lower "
                "bounds; check those nodes before trusting the response")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    if quality.poor:
        warnings.warn(quality.message, RegistrationWarning, stacklevel=2)
        notes.append(quality.message)
    if b_rows and f_rows and not pairs:  # swapped SEGs on one grid, or a failed registration
        note = (f"no node matched: all {len(b_rows)} baseline node(s) vanished and all {len(f_rows)} "
                "follow-up node(s) are new; check that each SEG belongs to its CT (swapped files?) and the "
                "registration before trusting the response")
        warnings.warn(note, UserWarning, stacklevel=2)
        notes.append(note)
    for scan, found in (("baseline", b_rows), ("follow-up", f_rows)):
        if not found:  # CR or PD from an empty segmentation is the file's word, not the patient's
            note = (f"the {scan} segmentation holds no node, so every node of the other scan counts as "
                    "vanished or new: check that it is the right file before trusting the response")
            warnings.warn(note, UserWarning, stacklevel=2)
            notes.append(note)
    step(1.0, f"{len(pairs)} matched, {sum(r.status == 'new' for r in rows)} new, "
              f"{sum(r.status == 'vanished' for r in rows)} vanished")
    return CompareResult(rows, summary, _volumes(rows, set(grouped)), quality, b_rows, f_rows, before, after,
                         registration, notes, baseline_join=join_b)


def _confirmed(summary, node: int) -> str:
    """", equivocal at <scan>, confirmed" for a new lesion an earlier scan showed as equivocal; else ""."""
    label = summary.confirmed_new.get(node)
    return "" if label is None else f" (equivocal at {label}, confirmed)"


def _joined(labels: Volume, join: dict[int, int]) -> Volume:
    """``labels`` with each id of ``join`` relabelled as the id it joins."""
    if not join:
        return labels
    array = np.asarray(labels.array)
    lut = np.arange(int(array.max(initial=0)) + 1, dtype=np.int32)
    for piece, whole in join.items():
        lut[piece] = whole
    return labels.with_array(lut[array])


def _near(labels: Volume, piece: int, whole: int) -> bool:
    """Whether node ``piece`` lies within :data:`PIECE_GAP_STEPS` voxel steps (or :data:`PIECE_GAP_MM`)
    of node ``whole`` in ``labels``: pieces of one node a segmentation split, not two nodes."""
    from scipy import ndimage

    array = np.asarray(labels.array)
    box = node_box(np.isin(array, (piece, whole)))
    if box is None:
        return False
    gap = max(PIECE_GAP_STEPS * max(labels.spacing), PIECE_GAP_MM)
    reach = [int(np.ceil(gap / s)) + 1 for s in labels.spacing_zyx]
    box = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(box, reach, array.shape))
    part = array[box]
    if not (part == whole).any() or not (part == piece).any():
        return False
    distance = ndimage.distance_transform_edt(part != whole, sampling=labels.spacing_zyx)
    return bool(distance[part == piece].min() <= gap + 1e-6)


def _inside(volume: Volume, xyz: np.ndarray) -> np.ndarray:
    """Whether each point (N, 3; LPS mm) lies within ``volume``'s grid."""
    index = volume.physical_to_index(xyz)
    return np.all((index >= -0.5) & (index <= np.asarray(volume.shape) - 0.5), axis=1)


def _beyond(b_rows, f_rows, pairs, registration: Registration, baseline_ct: Volume,
            followup_ct: Volume, merged: set[int] = frozenset(), split: set[int] = frozenset()
            ) -> tuple[set[int], set[int]]:
    """Ids of the unmatched baseline nodes whose centre lies outside the follow-up scan once carried
    there, and of the unmatched follow-up nodes outside the baseline scan (``merged`` baseline and
    ``split`` follow-up nodes have their partner)."""
    matched_b = {p.baseline_id for p in pairs} | set(merged)
    matched_f = {p.followup_id for p in pairs} | set(split)
    lone_b = [r for r in b_rows if r.id not in matched_b]
    lone_f = [r for r in f_rows if r.id not in matched_f]
    out_b = ~_inside(followup_ct, registration.to_followup([r.centroid_mm for r in lone_b])) if lone_b else []
    out_f = ~_inside(baseline_ct, registration.to_baseline([r.centroid_mm for r in lone_f])) if lone_f else []
    return ({r.id for r, out in zip(lone_b, out_b) if out}, {r.id for r, out in zip(lone_f, out_f) if out})


def _beyond_row(row: ChangeRow, beyond: bool, role: str = "normal") -> ChangeRow:
    """``row`` as not evaluable when ``beyond``; a target or non-target says which (RECIST counts it)."""
    said = f"{role}, not evaluable" if role in ("target", "non-target") else "not evaluable"
    return dataclasses.replace(row, status=report.BEYOND, recist=said,
                               recist_followup_short_axis_mm=None) if beyond else row


def _quality(registration, pairs) -> RegistrationQuality:
    mean = float(np.mean([p.distance_mm for p in pairs])) if pairs else None
    problems = []
    if mean is not None and mean > POOR_DISTANCE_MM:
        problems.append(f"matched nodes lie {mean:.1f} mm apart on average after registration")
    if registration.lung_dice < POOR_LUNG_DICE:
        problems.append(f"the lungs overlap only {registration.lung_dice:.0%} after registration")
    message = ""
    if problems:
        message = ("registration looks poor (" + "; ".join(problems) + "): check the matched nodes by eye, "
                   "and that each SEG belongs to its scan, before trusting the changes")
    return RegistrationQuality(registration.stage, registration.seconds, registration.lung_dice, mean,
                               bool(problems), message)


def _volumes(rows: list[ChangeRow], grouped: set[int] = frozenset()) -> VolumeSummary:
    """Totals and counts; a pair of ``grouped`` (baseline ids: a node that coalesced with another or split)
    is matched but neither grew nor shrank on its own (its change leaves out the other node or fragment)."""
    base = float(sum(r.volume_baseline_cm3 or 0.0 for r in rows))
    follow = float(sum(r.volume_followup_cm3 or 0.0 for r in rows))
    changes = [r.volume_change_pct for r in rows
               if r.volume_change_pct is not None and r.baseline_id not in grouped]
    return VolumeSummary(
        baseline_total_cm3=base, followup_total_cm3=follow,
        change_pct=100.0 * (follow - base) / base if base > 0 else None,
        n_matched=sum(r.status == "matched" for r in rows), n_new=sum(r.status == "new" for r in rows),
        n_vanished=sum(r.status == "vanished" for r in rows),
        n_grown=sum(c >= GROWN_PCT for c in changes), n_shrunk=sum(c <= -GROWN_PCT for c in changes),
        n_merged=sum(r.status == report.MERGED for r in rows),
        n_split=sum(r.status == report.SPLIT for r in rows),
    )
