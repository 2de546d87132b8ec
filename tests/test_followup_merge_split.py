"""Nodes that coalesce or split between the scans, on small phantoms with an identity registration."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from lnq_napari.followup.compare import compare_nodes
from lnq_napari.followup.register import Registration
from lnq_napari.followup.report import write_csv
from lnq_napari.io.volume import Volume

SHAPE = (40, 120, 160)
SPACING = (1.0, 1.0, 2.0)  # x y z
ZZ, YY, XX = np.indices(SHAPE)
CT = Volume(np.zeros(SHAPE, np.int16), SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
CT2 = CT.with_array(np.ones(SHAPE, np.int16))  # another scan on the same grid
IDENTITY = Registration(sitk.Euler3DTransform(), "rigid", 0.0, 0.95, 1.0, (0.0, 0.0, 0.0))


def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    x, y, z = centre
    dx, dy, dz = XX * SPACING[0] - x, YY * SPACING[1] - y, ZZ * SPACING[2] - z
    return dx ** 2 + dy ** 2 + dz ** 2 <= radius ** 2


def compare(base: np.ndarray, follow: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_nodes(CT, CT.with_array(base), CT2, CT2.with_array(follow), registration=IDENTITY)


def conglomerate() -> np.ndarray:
    """One follow-up mass (short axis ~27 mm) whose bulk sits at x = 85 mm, bridged to x = 55 mm."""
    follow = np.zeros(SHAPE, np.uint8)
    follow[ball((85, 60, 40), 13)] = 1
    follow[ball((55, 60, 40), 4)] = 1
    follow[(np.abs(YY - 60) <= 2) & (np.abs(ZZ * 2 - 40) <= 4) & (XX >= 55) & (XX <= 85)] = 1
    return follow


@pytest.mark.parametrize(("radius", "role"), [(10, "target"), (6, "non-target")])
def test_a_target_or_non_target_merged_into_a_normal_nodes_partner_is_not_a_response(radius, role):
    """Baseline: a target (21 mm) or non-target (13 mm) and a 9 mm normal node; at follow-up one mass
    matched to the normal node. The merged node read 0 mm: CR while the disease grew to a 27 mm mass."""
    base = np.zeros(SHAPE, np.uint8)
    base[ball((50, 60, 40), radius)] = 1
    base[ball((85, 60, 40), 4)] = 1
    result = compare(base, conglomerate())
    roles = sorted((r.status, r.recist, r.relation) for r in result.rows)
    assert roles == sorted([("merged", role, "coalesced"), ("matched", "normal", "coalesced")])
    summary = result.recist
    said = next(w for w in result.warnings if "merged into follow-up node" in w)
    assert "by volume" not in said  # short axis and volume agree: nothing more to say
    if role == "target":
        assert summary.followup_sum_mm > summary.baseline_sum_mm
        assert (summary.target_response, summary.overall, summary.volume_response) == ("PD", "PD", "PD")
    else:
        assert (summary.non_target_response, summary.overall) == ("non-CR/non-PD", "non-CR/non-PD")


def split_in_two() -> tuple[np.ndarray, np.ndarray]:
    """A 25 mm node and, at follow-up, two 17 mm fragments of it 26 mm apart."""
    base = np.zeros(SHAPE, np.uint8)
    base[ball((70, 60, 40), 12)] = 1
    follow = np.zeros(SHAPE, np.uint8)
    follow[ball((58, 60, 40), 8)] = 1
    follow[ball((84, 60, 40), 8)] = 1
    return base, follow


def test_a_node_split_in_two_is_no_poor_registration_and_did_not_shrink():
    """A 25 mm node split into two 17 mm fragments: the pair's distance (node to one fragment) read as a
    poor registration, and the pair counted as shrunk. RECIST credits the node its largest fragment (a
    node is judged by its own short axis; fragments add for non-nodal lesions only): 25 -> 17 mm, PR,
    while the volume adds both fragments."""
    result = compare(*split_in_two())
    assert sorted(r.status for r in result.rows) == ["matched", "split off"]
    assert not result.quality.poor and result.quality.mean_distance_mm is None
    assert result.volume.n_shrunk == 0 and result.volume.n_split == 1
    matched = next(r for r in result.rows if r.status == "matched")
    assert (matched.recist, matched.relation) == ("target", "split")
    fragments = [r.short_axis_followup_mm for r in result.rows]
    assert result.recist.followup_sum_mm == pytest.approx(max(fragments))
    assert result.recist.target_response == "PR" and result.recist.volume_response == "SD"
    said = next(w for w in result.warnings if "split from baseline node" in w)
    assert "read PR by short axis but SD by volume" in said  # the categories disagree: said
    assert result.recist.volume_followup_cm3 == pytest.approx(sum(r.volume_followup_cm3 for r in result.rows))


def test_a_split_beside_a_target_is_not_blamed_for_the_targets_categories():
    """The clause that the targets read one category by short axis and another by volume named a merge or
    split that touched no target: here the target only grew along one axis (short axis the same, volume
    doubled) while a small normal node beside it split."""
    base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((40, 40, 40), 10)] = 1  # a 20 mm target
    base[ball((115, 90, 40), 4.5)] = 1  # a normal node, which splits in two
    target = (((XX * SPACING[0] - 40) / 20) ** 2 + ((YY * SPACING[1] - 40) / 10) ** 2
              + ((ZZ * SPACING[2] - 40) / 10) ** 2) <= 1
    follow[target] = 1
    follow[ball((108, 90, 40), 3)] = 1
    follow[ball((122, 90, 40), 3)] = 1
    result = compare(base, follow)
    assert "split off" in [r.status for r in result.rows]
    assert result.recist.target_response != result.recist.volume_response
    said = next(w for w in result.warnings if "split from baseline node" in w)
    assert "by short axis but" not in said


@pytest.mark.parametrize("case", ["merge", "split"])
def test_the_csv_target_rows_add_up_to_the_recist_follow_up_sum(case, tmp_path):
    """The CSV's rows did not add up to RECIST: a merged target's row had no follow-up value and its
    partner's role read "normal + merged". Each baseline node's row now carries the short axis RECIST
    credits to it, and ``recist`` is the bare role."""
    if case == "merge":
        base = np.zeros(SHAPE, np.uint8)
        base[ball((50, 60, 40), 10)] = 1
        base[ball((85, 60, 40), 4)] = 1
        result = compare(base, conglomerate())
    else:
        result = compare(*split_in_two())
    path = write_csv(result.rows, tmp_path / "change.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["recist"] for r in rows} <= {"target", "non-target", "normal", "fragment"}
    targets = [float(r["recist_followup_short_axis_mm"]) for r in rows if r["recist"] == "target"]
    assert targets and sum(targets) == pytest.approx(result.recist.followup_sum_mm)
    assert result.recist.followup_sum_mm > 0


def test_two_segs_on_one_ct_are_said_to_be_two_readings_not_unchanged_nodes():
    """One CT as both scans with two readers' SEGs: the warning said every node was unchanged."""
    first = np.zeros(SHAPE, np.uint8)
    first[ball((70, 60, 40), 12)] = 1
    second = np.zeros(SHAPE, np.uint8)
    second[ball((70, 60, 40), 10)] = 1
    with pytest.warns(UserWarning, match="the baseline and follow-up CT are the same scan") as heard:
        compare_nodes(CT, CT.with_array(first), CT, CT.with_array(second), registration=IDENTITY)
    said = " | ".join(str(w.message) for w in heard)
    assert "two readings of one scan" in said and "unchanged by construction" not in said
    with pytest.warns(UserWarning, match="unchanged by construction"):
        compare_nodes(CT, CT.with_array(first), CT, CT.with_array(first), registration=IDENTITY)


def test_a_normal_node_crossing_10_mm_by_a_sub_voxel_step_is_equivocal_not_pd():
    """A 9.85 mm normal node grown by 0.1 mm of radius to 11 mm beside a stable target read overall PD.
    EORTC FAQ "New lymph node lesions": under 15 mm and the only sign, confirm at the next assessment."""
    from lnq_napari.followup.compare import GROWN_EQUIVOCAL

    base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((100, 60, 40), 12)] = follow[ball((100, 60, 40), 12)] = 1
    base[ball((40, 60, 40), 4.9)] = 1
    follow[ball((40, 60, 40), 5.0)] = 1
    result = compare(base, follow)
    small = result.row_for(baseline_id=next(r.id for r in result.baseline_nodes if r.short_axis_mm < 10))
    assert small.short_axis_followup_mm >= 10.0 and small.recist == GROWN_EQUIVOCAL
    assert (result.recist.overall, result.recist.new_lesions) == ("SD", ())
    said = [n for n in result.warnings if "equivocal new lesion" in n]
    assert len(said) == 1 and f"node(s) {small.followup_id} (" in said[0] and "(overall SD)" in said[0]
    assert not any("overall PD" in n for n in result.warnings)  # the warnings agree with the response


def test_a_normal_node_that_split_is_one_new_lesion_at_most_and_its_rows_say_so(tmp_path):
    """A 9 mm normal node split into two 12 mm fragments counted two new lesions ("new lesions 2"), its
    rows "normal" and "fragment"; one of 9.2 mm and 13 mm read PD with no row saying why."""
    from lnq_napari.followup.compare import GROWN_EQUIVOCAL, GROWN_NEW

    def ellipsoid(centre, axes):
        return sum(((g * s - c) / a) ** 2 for g, s, c, a in zip((XX, YY, ZZ), SPACING, centre, axes)) <= 1

    for radii, expected in (((6.0, 6.0), GROWN_EQUIVOCAL), ((4.4, 9.0), GROWN_NEW)):
        base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
        base[ball((120, 60, 40), 12)] = follow[ball((120, 60, 40), 12)] = 1  # a target, unchanged
        base[ellipsoid((50, 60, 40), (18, 4.2, 4.2))] = 1  # normal, short axis ~8 mm
        for x, radius in zip((36, 64), radii):
            follow[ball((x, 60, 40), radius)] = 1
        result = compare(base, follow)
        r = result.recist
        normal = next(n.id for n in result.baseline_nodes if n.short_axis_mm < 10)
        assert list(r.grown_from.values()) == [normal]  # once, by its largest fragment
        assert len(r.new_lesions) + len(r.equivocal_new) == 1
        assert result.row_for(baseline_id=normal).recist == expected  # the baseline node's row says it
        (grown,) = r.grown_normal
        assert expected in result.row_for(followup_id=grown).recist
        assert (r.overall == "PD") == (expected == GROWN_NEW)
        path = write_csv(result.rows, tmp_path / "changes.csv")
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert sum(row["recist"] == expected for row in rows) == 1  # the baseline node's row, once
        said = [n for n in result.warnings if f"baseline node {normal} " in n and "new lesion" in n]
        assert len(said) == 1 and said[0].count(f"baseline node {normal} ") == 1


def test_the_nadir_sums_the_last_comparisons_targets_at_each_scan_between():
    """A target whose baseline SEG left out one slice: the comparison with a scan between did not join its
    two pieces (targets: the two halves, one "vanished"), so its 15 mm sum was taken as the nadir and the
    last scan, where the pieces are joined, read PD; with the node whole there the nadir is ~36 mm: SD."""
    from lnq_napari.followup.nadir import scan_credits

    def run(base, follow, **kwargs):
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            result = compare_nodes(CT, CT.with_array(base), CT2, CT2.with_array(follow),
                                   registration=IDENTITY, **kwargs)
        return result, [str(w.message) for w in heard]

    base = np.zeros(SHAPE, np.uint8)
    base[ball((100, 60, 40), 12)] = 1
    base[ZZ == 20] = 0  # a slice left out of target 1: two pieces of one node
    base[ball((40, 60, 40), 10)] = 1  # target 2
    between = np.zeros(SHAPE, np.uint8)  # node 1 shrank, in its upper half
    between[ball((100, 60, 48), 7)] = 1
    between[ball((40, 60, 40), 10)] = 1
    last = np.zeros(SHAPE, np.uint8)
    last[ball((100, 60, 40), 9)] = 1
    last[ball((40, 60, 40), 10)] = 1
    whole = base.copy()
    whole[ball((100, 60, 40), 12)] = 1
    truth = run(whole, between)[0].recist.followup_sum_mm  # the same targets, the node measured whole
    result, heard = run(base, last, nadir_scans=[scan_credits(run(base, between)[0], "s1 (t1)")])
    r = result.recist
    assert r.nadir_sum_mm == pytest.approx(truth, abs=0.5) and r.nadir_scan == "s1 (t1)"
    assert (r.target_response, r.overall) == ("SD", "SD")
    said = [n for n in heard if "smallest sum on study" in n]
    assert said == [n for n in result.warnings if "smallest sum on study" in n] and len(said) == 1
    assert f"{r.nadir_sum_mm:.1f} mm at s1 (t1)" in said[0] and "% from it) reads SD" in said[0]


def test_non_targets_not_assessed_are_named_when_a_target_is_not_either():
    """A target and a non-target beyond a follow-up that stops short: only the target was named."""
    base = np.zeros(SHAPE, np.uint8)
    base[ball((40, 60, 40), 10)] = 1  # a target, seen at follow-up
    base[ball((110, 60, 40), 12)] = 1  # a target beyond it
    base[ball((140, 60, 40), 6)] = 1  # a non-target (12 mm) beyond it
    follow = np.zeros(SHAPE, np.uint8)
    follow[ball((40, 60, 40), 10)] = 1
    short = Volume(np.ones((40, 120, 80), np.int16), SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_nodes(CT, CT.with_array(base), short, short.with_array(follow[:, :, :80].copy()),
                               registration=IDENTITY)
    r = result.recist
    assert r.unassessed_targets and r.unassessed_non_targets
    note = next(n for n in result.warnings if "beyond the other scan's field of view" in n)
    assert "not assessed at follow-up" in note
    assert f"non-target(s) {', '.join(map(str, r.unassessed_non_targets))} not assessed" in note


def _short_axes(monkeypatch, sizes: dict[tuple[int, int], float]) -> None:
    """Set the short axis of the node at x (mm, rounded) of the baseline (0) or follow-up (1) scan."""
    import dataclasses

    from lnq_napari.followup import compare as compare_module

    measured = compare_module.measure_ids

    def patched(labels, ct):
        scan = int(ct.array.flat[0])
        rows = measured(labels, ct)
        size = {r.id: sizes.get((scan, round(r.centroid_mm[0])), r.short_axis_mm) for r in rows}
        return [dataclasses.replace(r, short_axis_mm=size[r.id]) for r in rows]
    monkeypatch.setattr(compare_module, "measure_ids", patched)


def _said(result, words: str) -> list[str]:
    return [n for n in result.warnings if words in n]


def test_the_new_lesion_warnings_show_sizes_as_the_table_does_and_name_a_node_near_the_bound(monkeypatch):
    """14.96 mm read "15.0 mm ... stay under 15 mm" and 9.04 -> 14.0 mm an apparent +5.0; a PD resting
    on one new node (16 or 15.3 mm, no baseline partner) was said nowhere; a node within a voxel of 15 mm or
    of +5 mm was not named as such."""
    base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((100, 60, 40), 12)] = follow[ball((100, 60, 40), 12)] = 1
    follow[ball((40, 60, 40), 7)] = 1
    _short_axes(monkeypatch, {(1, 40): 14.96})
    said = _said(compare(base, follow), "equivocal new lesion(s)")
    assert len(said) == 1
    assert "(14.9 mm, no baseline node; within one in-plane voxel (1.0 mm) of 15 mm" in said[0]
    assert "did not grow" not in said[0]  # no baseline node: no growth spoken of
    grown = base.copy()
    grown[ball((40, 60, 40), 4.5)] = 1
    _short_axes(monkeypatch, {(0, 40): 9.04, (1, 40): 14.0})
    said = _said(compare(grown, follow), "equivocal new lesion(s)")
    assert len(said) == 1
    assert "(14.0 mm, baseline node 2 9.0 mm, +4.9 mm; within one in-plane voxel" in said[0]
    for size, near in ((16.5, False), (15.3, True)):
        _short_axes(monkeypatch, {(1, 40): size})
        result = compare(base, follow)
        said = _said(result, "with no baseline node: new lesion(s) by RECIST 1.1, overall PD")
        assert result.recist.overall == "PD" and len(said) == 1 and f"({size:.1f} mm, " in said[0]
        assert ("within one in-plane voxel" in said[0]) == near


def test_an_equivocal_node_beside_a_pd_from_the_targets_is_not_needed_for_it(monkeypatch):
    base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((100, 60, 40), 10)] = 1
    follow[ball((100, 60, 40), 14)] = follow[ball((40, 60, 40), 7)] = 1
    _short_axes(monkeypatch, {(1, 40): 13.0})
    result = compare(base, follow)
    said = _said(result, "equivocal new lesion(s)")
    assert result.recist.target_response == "PD" and len(said) == 1
    assert "not needed for this PD" in said[0] and "confirm at the next scan" not in said[0]


def test_a_normal_sized_node_where_the_baseline_did_not_scan_is_named_with_its_size(monkeypatch):
    """A 12 mm node beyond the baseline's field of view read PD (RECIST 1.1 4.3.2, literal) with no word
    that a node of 10-15 mm there is often a normal one the shorter baseline missed."""
    short = Volume(np.zeros((20, *SHAPE[1:]), np.int16), SPACING, (0.0, 0.0, 0.0), CT.direction)
    base, follow = np.zeros((20, *SHAPE[1:]), np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((100, 60, 20), 12)[:20]] = follow[ball((100, 60, 20), 12)] = 1
    follow[ball((40, 60, 60), 7)] = 1
    _short_axes(monkeypatch, {(1, 40): 12.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_nodes(short, short.with_array(base), CT2, CT2.with_array(follow),
                               registration=IDENTITY)
    said = _said(result, "where the baseline did not scan")
    assert result.recist.unscanned_new == (2,) and result.recist.overall == "PD" and len(said) == 1
    assert "node(s) 2 (12.0 mm, no baseline node) are under 15 mm" in said[0]


def test_normal_nodes_coalesced_past_10_mm_are_named_coalesced_not_grown():
    """Two 8 mm normal nodes coalesced into one 13 mm mass read PD as one node grown by 5 mm."""
    base, follow = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    base[ball((135, 60, 40), 10)] = follow[ball((135, 60, 40), 10)] = 1
    base[ball((85, 60, 40), 4)] = base[ball((55, 60, 40), 4)] = 1
    follow[ball((85, 60, 40), 6.6)] = follow[ball((55, 60, 40), 4)] = 1
    follow[(np.abs(YY - 60) <= 2) & (np.abs(ZZ * 2 - 40) <= 4) & (XX >= 55) & (XX <= 85)] = 1
    result = compare(base, follow)
    r = result.recist
    assert len(r.equivocal_new) == 1 and r.overall == "SD" and r.new_lesions == ()
    said = _said(result, "equivocal new lesion(s)")
    assert len(said) == 1 and "coalesced from baseline nodes 2, 3" in said[0]
