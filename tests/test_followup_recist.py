"""RECIST 1.1 lymph-node rules and the volumetric category on hand-made node tables."""

from __future__ import annotations

import pytest

from lnq_napari.followup.recist import recist, select_targets
from lnq_napari.quantify import ENLARGED_MM, NodeRow, reaches


def node(nid: int, short: float, side: str = "right", volume: float | None = None) -> NodeRow:
    vol = volume if volume is not None else (short / 10.0) ** 3 * 0.52
    return NodeRow(id=nid, voxels=1, volume_mm3=vol * 1000, volume_cm3=vol, centroid_mm=(0.0, 0.0, 0.0),
                   long_axis_mm=short * 1.3, short_axis_mm=short, principal_axes_mm=(short, short, short),
                   ge_10mm=reaches(short, ENLARGED_MM), side=side)


def test_targets_are_the_largest_measurable_nodes_two_per_organ_five_in_all():
    rows = [node(1, 12.0), node(2, 30.0, "left"), node(3, 16.0, "right"), node(4, 20.0, "right"),
            node(5, 25.0, "left"), node(6, 18.0, "midline"), node(7, 17.0, "left"), node(8, 19.0, "midline")]
    assert [r.id for r in select_targets(rows)] == [2, 5]  # all nodes one organ: two targets
    by_side = [r.id for r in select_targets(rows, organ="side")]
    assert by_side == [2, 5, 4, 8, 6]  # five in all, two per side, the 12 mm node never
    assert select_targets([node(1, 14.9)]) == []


@pytest.mark.parametrize(("after", "expected"), [
    ({1: 9.0, 2: 8.0}, "CR"),  # every target under 10 mm
    ({1: 14.0, 2: 14.0}, "PR"),  # 40 -> 28 mm: -30 %
    ({1: 16.0, 2: 15.0}, "SD"),  # -22.5 %
    ({1: 24.0, 2: 24.0}, "PD"),  # +20 % and +8 mm
    ({1: 20.0}, "PR"),  # target 2 vanished: counts 0 mm
])
def test_target_response_from_the_sum_of_short_axes(after, expected):
    base = [node(1, 20.0), node(2, 20.0)]
    follow = [node(10 + k, s) for k, s in after.items()]
    summary = recist(base, follow, {k: 10 + k for k in after})
    assert summary.target_response == expected
    assert summary.baseline_sum_mm == pytest.approx(40.0)
    assert summary.followup_sum_mm == pytest.approx(sum(after.values()))


def test_progression_needs_five_millimetres_as_well_as_twenty_percent():
    small = recist([node(1, 15.0)], [node(2, 18.9)], {1: 2})  # +26 % but +3.9 mm
    assert small.target_response == "SD"
    assert recist([node(1, 15.0)], [node(2, 20.0)], {1: 2}).target_response == "PD"


def test_a_new_pathological_node_is_progression_a_small_one_is_not():
    base = [node(1, 20.0)]
    assert recist(base, [node(2, 20.0), node(3, 16.0)], {1: 2}).overall == "PD"
    small = recist(base, [node(2, 20.0), node(3, 11.0)], {1: 2})  # 10-15 mm: equivocal, confirm next scan
    assert (small.overall, small.new_lesions, small.equivocal_new) == ("SD", (), (3,))
    calm = recist(base, [node(2, 20.0), node(3, 8.0)], {1: 2})
    assert calm.overall == "SD" and calm.new_lesions == ()


def test_non_targets_and_no_targets():
    base = [node(1, 20.0), node(2, 12.0)]
    cr_targets = recist(base, [node(3, 5.0), node(4, 11.0)], {1: 3, 2: 4})
    assert (cr_targets.target_response, cr_targets.non_target_response, cr_targets.overall) == (
        "CR", "non-CR/non-PD", "PR")
    only_small = recist([node(1, 12.0)], [node(2, 9.0)], {1: 2})
    assert (only_small.target_response, only_small.overall) == ("NE", "CR")
    assert recist([], [], {}).overall == "NE"


def test_volumetric_category_uses_sphere_equivalent_thresholds():
    base = [node(1, 20.0, volume=10.0)]
    assert recist(base, [node(2, 19.0, volume=3.3)], {1: 2}).volume_response == "PR"  # -67 %
    assert recist(base, [node(2, 19.0, volume=4.0)], {1: 2}).volume_response == "SD"  # -60 %
    assert recist(base, [node(2, 21.0, volume=17.5)], {1: 2}).volume_response == "PD"  # +75 %
    assert recist(base, [node(2, 21.0, volume=17.5)], {1: 2}).volume_change_pct == pytest.approx(75.0)


def test_a_split_node_is_credited_its_largest_fragment_and_no_fragment_is_a_new_lesion():
    """A node split into two nodes at follow-up: the piece without a partner was a new lesion (PD). RECIST
    1.1 sums fragments for non-nodal lesions only; a node is judged by its own short axis: the largest
    fragment's. Volume adds the fragments (the tissue)."""
    base = [node(1, 20.0), node(2, 20.0)]
    follow = [node(11, 14.0), node(12, 20.0), node(13, 16.0)]  # 13: a fragment of node 1, larger than 11
    summary = recist(base, follow, {1: 11, 2: 12}, pieces={13: 1})
    assert summary.new_lesions == () and summary.overall == "SD"
    assert summary.followup_sum_mm == pytest.approx(36.0)  # 16 + 20, not 14 + 16 + 20
    assert summary.credited_mm == {1: 16.0, 2: 20.0}
    assert summary.volume_followup_cm3 == pytest.approx(sum(r.volume_cm3 for r in follow))


def test_a_target_split_into_fragments_under_10_mm_is_a_complete_response():
    """A 20 mm target split into two 6 mm fragments: every target node under 10 mm is CR, not 12 mm PR."""
    summary = recist([node(1, 20.0)], [node(11, 6.0), node(12, 6.0)], {1: 11}, pieces={12: 1})
    assert (summary.followup_sum_mm, summary.target_response, summary.overall) == (6.0, "CR", "CR")


def test_a_coalesced_node_is_measured_for_its_highest_ranked_baseline_node():
    """Two nodes coalesced at follow-up, matched to the smaller (normal) one: the target read 0 mm and
    CR while the disease grew. RECIST 1.1: the coalesced measure goes to one node of the group."""
    base = [node(1, 21.0), node(2, 9.0)]
    grown = recist(base, [node(11, 27.0)], {2: 11}, merged={1: 11})
    assert (grown.targets, grown.followup_sum_mm) == ((1,), 27.0)
    assert (grown.target_response, grown.overall) == ("PD", "PD")
    assert grown.volume_response == "PD"
    non_target = recist([node(1, 13.0), node(2, 9.0)], [node(11, 27.0)], {2: 11}, merged={1: 11})
    assert (non_target.non_target_response, non_target.overall) == ("non-CR/non-PD", "non-CR/non-PD")
    two_targets = recist([node(1, 21.0), node(2, 18.0)], [node(11, 27.0)], {2: 11}, merged={1: 11})
    assert two_targets.followup_sum_mm == 27.0  # once, not once per node of the group


def test_thresholds_allow_float_rounding_as_the_10_mm_flag_does():
    """A node measured 15 mm and 10 mm up to float rounding (a bar of 39 pixels of 10/39 mm reads
    9.999999999999998) is a target, a non-target and a new lesion, as its >= 10 mm flag says."""
    base = [node(1, 15.0 - 2e-15), node(2, 10.0 - 2e-15)]
    assert [r.id for r in select_targets(base)] == [1]
    followup = [node(1, 10.0 - 2e-15), node(2, 10.0 - 2e-15), node(3, 10.0 - 2e-15)]
    summary = recist(base, followup, {1: 1, 2: 2})
    assert summary.non_targets == (2,) and summary.equivocal_new == (3,)  # a new node, under 15 mm
    assert summary.target_response == "PR" and summary.non_target_response == "non-CR/non-PD"  # not CR


def test_a_target_the_follow_up_does_not_show_leaves_the_response_not_evaluable():
    """A target beyond the follow-up's field of view: targets were chosen among the nodes the follow-up
    shows, so a smaller node stood in for the largest and the response read SD (or PR, CR) from part of
    the targets. RECIST 1.1: targets are chosen at baseline; one not assessed is NE unless the rest is PD."""
    base = [node(1, 30.0), node(2, 20.0), node(3, 16.0), node(4, 12.0)]
    seen = recist(base, [node(12, 19.0), node(13, 16.0), node(14, 11.0)], {2: 12, 3: 13, 4: 14},
                  unassessed={1})
    assert seen.targets == (1, 2) and seen.unassessed_targets == (1,)  # node 3 never stands in
    assert (seen.target_response, seen.overall, seen.volume_response) == ("NE", "NE", "NE")
    assert seen.sum_change_pct is None and seen.volume_change_pct is None  # no change of part of them
    grown = recist(base, [node(12, 60.0)], {2: 12}, unassessed={1})  # 60 mm >= 50 * 1.2: PD whatever 1 is
    assert (grown.target_response, grown.overall) == ("PD", "PD")
    new = recist(base, [node(12, 19.0), node(20, 16.0)], {2: 12}, unassessed={1})
    assert new.overall == "PD"  # a new lesion is PD whatever is not assessed
    gone = recist([node(1, 20.0), node(2, 12.0)], [node(11, 5.0)], {1: 11}, unassessed={2})
    assert (gone.target_response, gone.non_target_response, gone.overall) == ("CR", "NE", "PR")
    assert gone.unassessed_non_targets == (2,)  # a non-target not evaluated: a target CR reads PR
    only = recist([node(2, 12.0)], [], {}, unassessed={2})
    assert (only.non_target_response, only.overall) == ("NE", "NE")


def test_progression_is_measured_from_the_nadir_partial_response_from_baseline():
    base, after = [node(1, 20.0), node(2, 20.0)], [node(11, 16.0), node(12, 16.0)]  # 40 -> 32 mm
    assert recist(base, after, {1: 11, 2: 12}).target_response == "SD"  # -20 % from baseline
    low = recist(base, after, {1: 11, 2: 12}, nadir_sum_mm=26.0)  # +23 % and +6 mm over the nadir
    assert (low.target_response, low.overall, low.nadir_sum_mm) == ("PD", "PD", 26.0)
    assert recist(base, after, {1: 11, 2: 12}, nadir_sum_mm=28.0).target_response == "SD"  # +14 %
    above = recist(base, [node(11, 13.0), node(12, 14.0)], {1: 11, 2: 12}, nadir_sum_mm=45.0)
    assert (above.target_response, above.nadir_sum_mm) == ("PR", None)  # a nadir above baseline is none


def test_a_normal_node_grown_to_10_mm_is_a_new_lesion_as_an_unsegmented_one_would_be():
    """A baseline node under 10 mm (normal) that reached 16 mm: matched, so never new, and the response read
    SD; had the baseline segmentation left the small node out it read PD. EORTC: a node that reaches 10 mm
    meets the criteria of a malignant node."""
    base = [node(1, 20.0), node(2, 7.0), node(3, 8.0)]
    grown = recist(base, [node(11, 20.0), node(12, 16.0), node(13, 9.0)], {1: 11, 2: 12, 3: 13})
    assert (grown.new_lesions, grown.grown_normal, grown.overall) == ((12,), (12,), "PD")
    left_out = recist(base[:1], [node(11, 20.0), node(12, 16.0)], {1: 11})
    assert left_out.new_lesions == (12,) and left_out.overall == grown.overall
    non_target = recist([node(1, 20.0), node(2, 12.0)], [node(11, 20.0), node(12, 16.0)], {1: 11, 2: 12})
    assert non_target.new_lesions == () and non_target.overall == "SD"  # a non-target is no new lesion


def test_a_response_that_counts_a_node_cut_by_the_image_edge_says_so():
    """A target cut at follow-up (measured on what is visible: a lower bound) and a cut new lesion are
    named; a cut node the response does not count (a normal one) is not."""
    import dataclasses

    baseline = [node(1, 20.0), node(2, 16.0), node(3, 6.0)]
    cut = ("superior",)
    followup = [dataclasses.replace(node(11, 12.0), cut_by_edge=cut), node(12, 15.0),
                dataclasses.replace(node(13, 4.0), cut_by_edge=cut),
                dataclasses.replace(node(14, 11.0), cut_by_edge=cut)]
    summary = recist(baseline, followup, {1: 11, 2: 12, 3: 13})
    assert summary.cut_baseline == () and summary.cut_followup == (11, 14)
    assert summary.cut_note() == ("rests on node(s) cut by the image edge: follow-up 11, 14 (measured on "
                                  "what is visible)")
    whole = recist(baseline, [node(11, 12.0), node(12, 15.0)], {1: 11, 2: 12})
    assert whole.cut_note() == ""
    cut_target = dataclasses.replace(baseline[0], cut_by_edge=("inferior",))
    base_cut = recist([cut_target], [node(11, 12.0)], {1: 11})
    assert base_cut.cut_baseline == (1,) and "baseline 1" in base_cut.cut_note()


def test_the_credited_short_axis_names_the_edges_that_cut_its_follow_up_nodes():
    """What RECIST credits a baseline node is a lower bound when a follow-up node it is taken from is cut:
    its own partner, a split fragment (even a smaller one: whole, it may be the largest) or the coalesced
    node it owns; a whole partner, or a coalesced node another owns (0 mm), credits no edge."""
    import dataclasses

    def cut(row, *sides):
        return dataclasses.replace(row, cut_by_edge=sides)

    base = [node(1, 20.0), node(2, 18.0), node(3, 16.0), node(4, 12.0), node(5, 8.0)]
    follow = [cut(node(11, 19.0), "left", "superior"), node(12, 17.0), cut(node(13, 6.0), "inferior"),
              cut(node(14, 15.0), "right")]
    summary = recist(base, follow, {1: 11, 2: 12, 3: 14}, pieces={13: 2}, merged={4: 14, 5: 14})
    assert summary.credited_mm == {1: 19.0, 2: 17.0, 3: 15.0, 4: 0.0, 5: 0.0}
    assert summary.credited_cut == {1: ("superior", "left"), 2: ("inferior",), 3: ("right",)}


def test_a_cut_non_target_is_named_in_the_note():
    """A non-target (10-15 mm, or a third node >= 15 mm) counts in the response: cut at baseline or at
    follow-up, it is named."""
    import dataclasses

    cut = ("left",)
    baseline = [node(1, 20.0), node(2, 16.0), dataclasses.replace(node(3, 12.0), cut_by_edge=cut)]
    followup = [node(11, 20.0), node(12, 16.0), dataclasses.replace(node(13, 12.0), cut_by_edge=cut)]
    summary = recist(baseline, followup, {1: 11, 2: 12, 3: 13})
    assert summary.non_targets == (3,)
    assert summary.cut_baseline == (3,) and summary.cut_followup == (13,)
    assert "baseline 3; follow-up 13" in summary.cut_note()


def test_a_cut_node_the_response_leaves_out_but_may_change_it_is_named():
    """A cut baseline node under 10 mm visible may be a target, an unmatched cut follow-up node under 10 mm
    visible may be a new lesion (PD): the note names both; a whole one or a matched normal one is not. A cut
    non-target (14 mm) counts: named once, as one the response rests on (it was named again as one that may
    be a target)."""
    import dataclasses

    cut = ("inferior",)
    baseline = [node(1, 20.0), dataclasses.replace(node(2, 14.0), cut_by_edge=cut),
                dataclasses.replace(node(3, 6.0), cut_by_edge=cut)]
    followup = [node(11, 20.0), node(12, 14.0), dataclasses.replace(node(13, 8.0), cut_by_edge=cut),
                node(14, 7.0)]
    summary = recist(baseline, followup, {1: 11, 2: 12})
    assert summary.overall == "SD" and summary.new_lesions == ()
    assert summary.cut_may_be_target == (3,) and summary.cut_may_be_new == (13,)
    assert summary.cut_note() == (
        "rests on node(s) cut by the image edge: baseline 2 (measured on what is visible), node(s) cut by "
        "the image edge may change it: baseline 3 (a target if 15 mm or more); follow-up 13 (a new lesion "
        "if 10 mm or more)")
    quiet = recist(baseline[:1], [node(11, 20.0), dataclasses.replace(node(13, 4.0), cut_by_edge=cut)],
                   {1: 11, 3: 13})
    assert quiet.cut_note() == ""  # 13 matched (normal), 1 a target


def test_a_change_row_carries_each_scans_cut_edges_into_the_csv(tmp_path):
    import csv
    import dataclasses

    from lnq_napari.followup.report import ChangeRow, write_csv

    before = dataclasses.replace(node(1, 20.0), cut_by_edge=("inferior", "right"))
    row = ChangeRow.of(before, node(11, 12.0), "target")
    assert row.cut_by_edge_baseline == ("inferior", "right") and row.cut_by_edge_followup == ()
    assert ChangeRow.of(None, node(11, 12.0), "new").cut_by_edge_baseline == ()
    with open(write_csv([row], tmp_path / "changes.csv")) as handle:
        (written,) = csv.DictReader(handle)
    assert written["cut_by_edge_baseline"] == "inferior right" and written["cut_by_edge_followup"] == ""


def test_a_normal_node_crossing_10_mm_by_noise_is_an_equivocal_new_lesion_not_pd():
    """9.9 -> 10.0 mm read PD at once. EORTC FAQ "New lymph node lesions": a node grown e.g. from 9 to
    11 mm, the only sign of progression, is evaluated at the next assessment, especially under 15 mm."""
    base, mapping = [node(1, 20.0), node(2, 9.9)], {1: 11, 2: 12}
    noise = recist(base, [node(11, 20.0), node(12, 10.0)], mapping)
    assert (noise.overall, noise.new_lesions, noise.equivocal_new) == ("SD", (), (12,))
    assert noise.grown_normal == (12,)
    for grown in (15.0, 14.9):  # 15 mm, or grown by 5 mm: unequivocal
        sure = recist(base, [node(11, 20.0), node(12, grown)], mapping)
        assert (sure.overall, sure.new_lesions, sure.equivocal_new) == ("PD", (12,), ())
    assert recist(base, [node(11, 20.0), node(12, 14.8)], mapping).overall == "SD"  # +4.9 mm


def test_a_normal_node_that_split_counts_once_by_its_largest_fragment():
    """A 9 mm normal node split into two fragments >= 10 mm counted two new lesions."""
    base = [node(1, 20.0), node(2, 9.0)]
    split = recist(base, [node(11, 20.0), node(12, 16.0), node(13, 17.0)], {1: 11, 2: 12}, pieces={13: 2})
    assert (split.new_lesions, split.grown_normal, split.grown_from) == ((13,), (13,), {13: 2})
    small = recist(base, [node(11, 20.0), node(12, 9.2), node(13, 13.0)], {1: 11, 2: 12}, pieces={13: 2})
    assert (small.equivocal_new, small.grown_from, small.overall) == ((13,), {13: 2}, "SD")


def test_a_node_where_the_baseline_did_not_scan_is_a_new_lesion():
    """RECIST 1.1 4.3.2: a lesion in an anatomical location not scanned at baseline is a new lesion."""
    base = [node(1, 20.0)]
    there = recist(base, [node(11, 20.0), node(15, 12.0), node(16, 8.0)], {1: 11}, unscanned={15, 16})
    assert (there.new_lesions, there.unscanned_new, there.overall) == ((15,), (15,), "PD")
    assert there.equivocal_new == () and there.cut_may_be_new == ()


def test_a_scan_between_that_does_not_assess_every_target_gives_no_nadir():
    """RECIST 1.1: a sum is evaluable only when every target is assessed; a partial sum is no nadir."""
    from lnq_napari.followup.nadir import ScanCredits, nadir_of

    pieces = {1: [1, 3], 2: [2]}  # target 1 measured from baseline pieces 1 and 3
    seen = ScanCredits("a (t1)", {1: 14.0, 2: 20.0, 3: 0.0})  # pieces apart there: the larger credit
    joined = ScanCredits("b (t2)", {1: 16.0, 2: 19.0}, join={3: 1})
    part = ScanCredits("c (t3)", {1: 2.0, 2: 3.0, 3: 1.0}, unassessed=frozenset({3}))
    assert nadir_of([seen, joined, part], pieces) == ((34.0, "a (t1)"), ["c (t3)"])
    assert nadir_of([part], pieces) == (None, ["c (t3)"])


def test_an_equivocal_new_node_keeps_the_response_from_complete():
    """RECIST 1.1 CR needs every node under 10 mm: a 12 mm equivocal new node beside targets under 10 mm
    read CR; it is "not PD", not absent (table 1: target CR with a non-CR non-target is PR)."""
    both = recist([node(1, 20.0)], [node(11, 5.0), node(12, 12.0)], {1: 11})
    assert both.equivocal_new == (12,) and both.target_response == "CR"
    assert (both.overall, both.volume_response) == ("PR", "PR")
    assert recist([node(1, 20.0), node(2, 12.0)], [node(11, 5.0), node(13, 4.0), node(12, 12.0)],
                  {1: 11, 2: 13}).overall == "PR"  # non-targets CR too
    none = recist([node(2, 12.0)], [node(13, 4.0), node(12, 12.0)], {2: 13})  # no targets
    assert (none.non_target_response, none.overall) == ("CR", "non-CR/non-PD")
    assert recist([node(1, 20.0)], [node(11, 5.0)], {1: 11}).overall == "CR"  # no such node: CR


def test_an_equivocal_node_an_earlier_scan_showed_is_confirmed_a_new_lesion():
    """RECIST 1.1 4.3.2: an equivocal new lesion still there at the next scan is PD, dated back."""
    base, after = [node(1, 20.0), node(2, 9.0)], [node(11, 20.0), node(12, 11.0), node(13, 12.0)]
    r = recist(base, after, {1: 11, 2: 12}, confirmed={12: "a (t1)", 13: "a (t1)", 11: "a (t1)"})
    assert (r.overall, r.new_lesions, r.equivocal_new) == ("PD", (12, 13), ())
    assert r.confirmed_new == {12: "a (t1)", 13: "a (t1)"}  # the matched target is no new lesion
    assert recist(base, after, {1: 11, 2: 12}).equivocal_new == (12, 13)


def test_normal_nodes_that_coalesced_are_no_growth_of_one():
    """8.0 + 7.9 mm normal nodes coalesced into a 13.5 mm conglomerate read PD as 8.0 -> 13.5 mm (+5.5)."""
    base = [node(1, 20.0), node(2, 8.0), node(3, 7.9)]
    both = recist(base, [node(11, 20.0), node(12, 13.5)], {1: 11, 2: 12}, merged={3: 12})
    assert (both.overall, both.new_lesions, both.equivocal_new) == ("SD", (), (12,))
    large = recist(base, [node(11, 20.0), node(12, 15.0)], {1: 11, 2: 12}, merged={3: 12})
    assert (large.overall, large.new_lesions) == ("PD", (12,))
    assert recist(base, [node(11, 20.0), node(12, 13.5)], {1: 11, 2: 12}).overall == "PD"  # one node: +5.5
