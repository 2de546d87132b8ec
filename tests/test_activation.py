"""The activation rule on the issue's scenarios, and cross-validation folds."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, decide_activation


def figures(dice, hits, fp, gt=3, prefix="case"):
    """One model's per-case figures; ``gt`` GT nodes per case; surface Dice equal to ``dice``."""
    return [CaseFigures(f"{prefix}{i}", d, h, gt, f, d) for i, (d, h, f) in enumerate(zip(dice, hits, fp))]


# The shifted site: the parent misses a third of the nodes; the fine-tune finds them, Dice
# rises from ~0.6 to ~0.85, and it adds false nodes on 2 of 6 cases (0.17 -> 0.67 per case).
PARENT = figures([0.55, 0.60, 0.65, 0.58, 0.62, 0.60], [2] * 6, [0, 0, 1, 0, 0, 0])
ADAPTED = figures([0.84, 0.86, 0.85, 0.88, 0.83, 0.62], [3, 3, 3, 3, 3, 2], [1, 2, 1, 0, 0, 0])


def test_adapted_model_is_activated_with_its_figures_in_the_reason():
    verdict = decide_activation(ADAPTED, PARENT)
    assert verdict.activate
    assert verdict.reason.startswith("activate: vs parent: surface Dice +0.213 [90% CI +0.1")
    assert "recall +0.28" in verdict.reason and "false nodes per case +0.50" in verdict.reason
    assert "6 held-out cases" in verdict.reason and "\n" not in verdict.reason
    f = verdict.figures
    assert f["surface_dice_vs_parent_low"] > 0.1 and f["recall_vs_parent_low"] > 0
    assert f["false_nodes_vs_parent"] == pytest.approx(0.5)
    assert f["parent_false_nodes"] == pytest.approx(1 / 6)
    assert f["candidate_false_nodes"] == pytest.approx(4 / 6)
    assert f["candidate_recall"] == pytest.approx(17 / 18)


def test_charging_every_false_node_refuses_the_adapted_model():
    """Why found nodes pay for false ones: without the credit the issue's good model is refused."""
    verdict = decide_activation(ADAPTED, PARENT, rule=ActivationRule(hit_credit=0.0))
    assert not verdict.activate
    assert verdict.reason.startswith("refuse (false nodes vs parent +0.50/case")


def test_in_distribution_fine_tune_that_only_adds_false_nodes_is_refused():
    parent = figures([0.86, 0.84, 0.88, 0.85, 0.87, 0.83], [3] * 6, [0, 0, 1, 0, 0, 0])
    noisier = figures([0.86, 0.85, 0.87, 0.85, 0.87, 0.83], [3] * 6, [1, 2, 1, 0, 0, 0])
    verdict = decide_activation(noisier, parent)
    assert not verdict.activate
    assert "false nodes vs parent +0.50/case net of nodes found" in verdict.reason
    assert verdict.figures["surface_dice_vs_parent_low"] > -0.02  # Dice alone would have passed


def test_false_nodes_are_judged_by_their_estimate_not_their_bound():
    """Ten held-out cases, outlines clearly better, one extra false node: the bound of the false-node
    difference is far above the margin (no round has the cases to bring it under), the estimate is not."""
    parent = figures([0.80] * 10, [3] * 10, [1] * 10)
    better = figures([0.84] * 10, [3] * 10, [2] + [1] * 9)
    verdict = decide_activation(better, parent)
    assert verdict.activate and verdict.figures["net_false_nodes_vs_parent_high"] > 0.2
    assert verdict.figures["net_false_nodes_vs_parent"] == pytest.approx(0.1)
    bolder = figures([0.84] * 10, [3] * 10, [2, 2, 2] + [1] * 7)
    refused = decide_activation(bolder, parent)
    assert not refused.activate and "false nodes vs parent +0.30/case net of nodes found, +0.21 with 4 " \
        "prior cases of no change (margin +0.2)" in refused.reason


def test_one_extra_false_node_on_few_cases_is_weighed_against_prior_cases_of_no_change():
    """Under six held-out cases one extra false node is a mean far over the margin that says almost
    nothing; with four prior cases of no change it passes, two extra do not, and without the prior
    (``fp_prior_cases=0``) the one is refused as before."""
    parent = figures([0.80] * 3, [3] * 3, [1] * 3)
    one_more = figures([0.82] * 3, [3] * 3, [2, 1, 1])
    verdict = decide_activation(one_more, parent)
    assert verdict.activate and "judged +0.14" in verdict.reason
    assert verdict.figures["net_false_nodes_vs_parent"] == pytest.approx(1 / 3)
    assert verdict.figures["net_false_nodes_vs_parent_judged"] == pytest.approx(1 / 7)
    assert not decide_activation(one_more, parent, rule=ActivationRule(fp_prior_cases=0)).activate
    two_more = decide_activation(figures([0.82] * 3, [3] * 3, [2, 2, 1]), parent)
    assert not two_more.activate and "+0.67/case net of nodes found, +0.29 with 4" in two_more.reason
    alone = decide_activation(figures([0.82], [3], [2]), figures([0.80], [3], [1]))
    assert alone.activate and alone.figures["net_false_nodes_vs_parent_judged"] == pytest.approx(0.2)


def test_small_losses_cannot_add_up_against_the_original():
    original = figures([0.80, 0.82, 0.78, 0.81, 0.79, 0.80], [3] * 6, [0] * 6)
    parent = figures([d - 0.015 for d in (0.80, 0.82, 0.78, 0.81, 0.79, 0.80)], [3] * 6, [0] * 6)
    candidate = figures([d - s for d, s in zip((0.785, 0.805, 0.765, 0.795, 0.775, 0.785),
                                               (0.014, 0.016, 0.015, 0.013, 0.017, 0.015))], [3] * 6, [0] * 6)
    assert decide_activation(parent, original).activate  # each step alone is within the margin
    assert decide_activation(candidate, parent).activate
    verdict = decide_activation(candidate, parent, original)
    assert not verdict.activate
    head = verdict.reason.split(":")[0]
    assert "surface Dice vs original -0.030" in head and "Dice vs parent" not in head
    assert verdict.figures["surface_dice_vs_original"] == pytest.approx(-0.03)


def _check(candidate_dice, original_dice):
    """Forgetting-check figures on as many cases of the original's own data."""
    def own(dice):
        return tuple(figures(dice, [3] * 4, [0] * 4, prefix="own"))

    return ForgettingFigures("4 default-site phantoms", own(candidate_dice), own(original_dice))


def test_an_adapted_model_that_forgets_the_original_s_own_data_is_refused():
    """The issue's adapted model rises at the user's site; if its median Dice on the original's own
    data falls more than 0.9 points below the original's it is refused, and the reason says where."""
    own = [0.94, 0.95, 0.93, 0.96]
    forgot = decide_activation(ADAPTED, PARENT, forgetting=_check([0.92, 0.93, 0.90, 0.95], own))
    assert not forgot.activate
    assert forgot.reason.startswith("refuse (median Dice on the original's own data -0.020 vs original "
                                    "(margin -0.009)): vs parent: surface Dice +0.213")
    assert "forgetting check on 4 default-site phantoms: median Dice 0.925 vs original 0.945 (-0.020)" \
        in forgot.reason
    assert forgot.figures["forgetting_dice_vs_original"] == pytest.approx(-0.02)
    assert forgot.figures["forgetting_cases"] == 4.0
    kept = decide_activation(ADAPTED, PARENT, forgetting=_check([0.94, 0.94, 0.93, 0.95], own))
    assert kept.activate and kept.figures["forgetting_candidate_dice"] == pytest.approx(0.94)
    assert kept.reason.startswith("activate: ") and "(-0.005)" in kept.reason
    # the check never rescues a version the held-out cases refuse
    noisier = figures([0.6] * 6, [2] * 6, [2] * 6)
    assert not decide_activation(noisier, PARENT, forgetting=_check(own, own)).activate


def test_a_check_stopped_early_is_judged_on_its_best_case_and_says_so():
    """Two of four cases predicted: the median the candidate could still reach (Dice 1 on the others)
    decides, and the reason says it is a bound on how many cases."""
    own = [0.94, 0.95, 0.93, 0.96]
    full = _check([0.90, 0.91, 0.80, 0.99], own)
    stopped = ForgettingFigures(full.source, full.candidate[:2], full.original)
    assert stopped.stopped_early and not full.stopped_early
    assert stopped.medians() == (pytest.approx(0.955), pytest.approx(0.945))  # [0.90, 0.91, 1, 1]
    assert decide_activation(ADAPTED, PARENT, forgetting=stopped).activate  # it could still pass
    low = ForgettingFigures(full.source, tuple(figures([0.80, 0.85, 0.70], [3] * 3, [0] * 3, prefix="own")),
                            full.original)
    refused = decide_activation(ADAPTED, PARENT, forgetting=low)
    assert not refused.activate and refused.figures["forgetting_cases"] == 4.0
    assert refused.reason.startswith("refuse (median Dice on the original's own data at most -0.120 vs "
                                     "original (margin -0.009; 3 of 4 cases predicted))")
    assert "median Dice at most 0.825 vs original 0.945 (at most -0.120; 3 of 4 cases predicted)" \
        in refused.reason


def test_forgetting_check_figures_must_cover_the_same_cases():
    check = ForgettingFigures("x", tuple(figures([0.9], [3], [0], prefix="a")),
                              tuple(figures([0.9], [3], [0], prefix="b")))
    with pytest.raises(ValueError, match="same cases"):
        decide_activation(ADAPTED, PARENT, forgetting=check)


def test_same_seed_same_verdict_whatever_the_case_order():
    rule = ActivationRule(seed=7)
    first = decide_activation(ADAPTED, PARENT, rule=rule)
    shuffled = ADAPTED[:]
    random.Random(1).shuffle(shuffled)
    again = decide_activation(shuffled, PARENT[::-1], rule=rule)
    assert again == first
    other = decide_activation(ADAPTED, PARENT, rule=ActivationRule(seed=8))
    assert other.activate == first.activate
    assert other.figures["surface_dice_vs_parent"] == first.figures["surface_dice_vs_parent"]


def test_one_case_is_thin_evidence_decided_on_point_estimates_by_the_margins():
    parent = figures([0.60], [2], [0])
    better = decide_activation(figures([0.80], [3], [0]), parent)
    assert better.activate and "thin evidence" in better.reason and "CI" not in better.reason
    within = decide_activation(figures([0.595], [2], [0]), parent)  # 0.005 below: within the margin
    assert within.activate and "surface Dice -0.005" in within.reason
    worse = decide_activation(figures([0.50], [2], [0]), parent)  # -0.10 / (1 + 2 prior cases): -0.033
    assert not worse.activate and "surface Dice vs parent -0.100, -0.033 with 2 prior cases of no change " \
        "(margin -0.02)" in worse.reason


def test_under_five_cases_the_worst_case_does_not_decide():
    """A bootstrap over two cases has the worse case as its bound; below ``min_cases`` the rule judges
    the mean instead: one case 0.03 worse and one 0.04 better is a gain, not a refusal."""
    parent = figures([0.80, 0.80], [3] * 2, [0] * 2)
    mixed = figures([0.77, 0.84], [3] * 2, [0] * 2)
    verdict = decide_activation(mixed, parent)
    assert verdict.activate and "thin evidence" in verdict.reason
    booted = decide_activation(mixed, parent, rule=ActivationRule(min_cases=2))
    assert not booted.activate and "bound -0.030" in booted.reason
    assert "thin evidence" not in decide_activation(ADAPTED[:5], PARENT[:5]).reason


def test_surface_dice_on_thin_evidence_can_be_weighed_against_prior_cases_of_no_change():
    """With ``dice_prior_cases`` (2 by default; 0: the plain mean) one case 0.03 worse is judged as
    -0.03 / (1 + 4) with 4 and passes, against the parent and the original alike; three cases 0.05 worse are
    -0.15 / 7 and are refused; from ``min_cases`` cases on the bound decides as before."""
    prior = ActivationRule(dice_prior_cases=4)
    parent, worse = figures([0.60], [2], [0]), figures([0.57], [2], [0])
    plain = decide_activation(worse, parent, rule=ActivationRule(dice_prior_cases=0))
    assert not plain.activate and "surface Dice vs parent -0.030, bound -0.030 (margin -0.02)" in plain.reason
    assert "surface_dice_vs_parent_judged" not in plain.figures
    default = decide_activation(worse, parent)  # -0.03 / (1 + 2)
    assert default.activate and default.figures["surface_dice_vs_parent_judged"] == pytest.approx(-0.01)
    one = decide_activation(worse, parent, rule=prior)
    assert one.activate and "surface Dice -0.030 (judged -0.006)" in one.reason
    assert one.figures["surface_dice_vs_parent_judged"] == pytest.approx(-0.006)
    against_original = decide_activation(worse, worse, parent, rule=prior)
    assert against_original.activate
    assert against_original.figures["surface_dice_vs_original_judged"] == pytest.approx(-0.006)
    three = decide_activation(figures([0.75] * 3, [3] * 3, [0] * 3), figures([0.80] * 3, [3] * 3, [0] * 3),
                              rule=prior)
    assert not three.activate and "surface Dice vs parent -0.050, -0.021 with 4 prior cases of no change " \
        "(margin -0.02)" in three.reason
    two = decide_activation(figures([0.75] * 2, [3] * 2, [0] * 2), figures([0.80] * 2, [3] * 2, [0] * 2),
                            rule=prior)
    assert two.activate and two.figures["surface_dice_vs_parent_judged"] == pytest.approx(-0.1 / 6)
    five = [figures([0.75] * 5, [3] * 5, [0] * 5), figures([0.80] * 5, [3] * 5, [0] * 5)]
    assert decide_activation(*five, rule=prior) == decide_activation(*five)


def test_no_case_refuses_and_says_so():
    verdict = decide_activation([], [])
    assert not verdict.activate and "no held-out corrected case" in verdict.reason


def test_undefined_dice_is_left_out_of_the_dice_difference():
    empty = CaseFigures("empty", math.nan, 0, 0, 0, math.nan)
    with_empty = decide_activation([*ADAPTED, empty], [*PARENT, empty])
    assert with_empty.activate
    assert with_empty.figures["surface_dice_vs_parent"] == pytest.approx(decide_activation(ADAPTED, PARENT)
                                                                 .figures["surface_dice_vs_parent"])
    assert with_empty.figures["n_cases"] == 7
    undefined = CaseFigures("case5", math.nan, 0, 3, 0, math.nan)
    only_candidate_empty = decide_activation([*ADAPTED[:5], undefined], PARENT)
    assert math.isfinite(only_candidate_empty.figures["surface_dice_vs_parent"])
    nothing_defined = decide_activation([empty], [empty])
    assert not nothing_defined.activate and "no case with a defined surface Dice" in nothing_defined.reason


def test_figures_must_cover_the_same_cases():
    with pytest.raises(ValueError, match="same held-out cases"):
        decide_activation(ADAPTED[:5], PARENT)


def test_outlines_are_judged_by_surface_dice_not_volumetric_dice():
    """Against click corrections (the parent's outlines kept) volumetric Dice leans to the parent; the
    rule reads surface Dice, and reports both."""
    parent = [CaseFigures(f"case{i}", 0.95, 3, 3, 0, 0.94) for i in range(4)]
    candidate = [CaseFigures(f"case{i}", 0.88, 3, 3, 0, 0.95) for i in range(4)]
    verdict = decide_activation(candidate, parent)
    assert verdict.activate
    assert verdict.figures["candidate_dice"] == pytest.approx(0.88)
    assert verdict.figures["surface_dice_vs_parent"] == pytest.approx(0.01)
    worse = [CaseFigures(f"case{i}", 0.96, 3, 3, 0, 0.90) for i in range(4)]
    assert not decide_activation(worse, parent).activate


def test_recall_on_corrections_without_nodes_reads_undefined_not_nan():
    """Every held-out correction empty (the reviewer found no node): recall has no case to stand on."""
    empty = [CaseFigures(f"case{i}", math.nan, 0, 0, fp, math.nan) for i, fp in enumerate([1, 0, 1])]
    fewer = [CaseFigures(f"case{i}", math.nan, 0, 0, 0, math.nan) for i in range(3)]
    verdict = decide_activation(fewer, empty)
    assert "recall undefined" in verdict.reason and "nan" not in verdict.reason


def test_a_runaway_blob_over_every_node_is_refused_on_the_volume_it_paints():
    """A parent that finds nothing, a candidate whose one blob covers most of the CT: every node found, no
    false node (the blob touches them all), surface Dice a little above the parent's 0; the volume it
    paints where no node is refuses it, and the reason says how much."""
    nothing = [CaseFigures(f"case{i}", 0.0, 0, 3, 0, 0.0, 0.0) for i in range(6)]
    blob = [CaseFigures(f"case{i}", 0.02, 3, 3, 0, 0.03, 2500.0) for i in range(6)]
    verdict = decide_activation(blob, nothing)
    assert not verdict.activate
    assert "volume painted where no node is vs parent +2500.0 mL/case (margin +20)" in verdict.reason
    assert verdict.figures["false_volume_ml_vs_parent"] == pytest.approx(2500.0)
    assert verdict.figures["candidate_false_volume_ml"] == pytest.approx(2500.0)
    assert decide_activation(blob, nothing, rule=ActivationRule(false_volume_margin_ml=1e6)).activate


def test_false_volume_is_judged_where_both_models_have_it():
    """Figures kept from before the volume was measured (NaN) leave it out; a few mL more (a false node or
    outlines grown) is for the false-node and outline margins, not this one."""
    adapted = [dataclasses.replace(f, false_volume_ml=3.0) for f in ADAPTED]
    parent = [dataclasses.replace(f, false_volume_ml=1.0) for f in PARENT]
    verdict = decide_activation(adapted, parent)
    assert verdict.activate and "volume where no node is +2.0 mL/case" in verdict.reason
    unmeasured = decide_activation(adapted, PARENT)
    assert unmeasured.activate and "volume where no node" not in unmeasured.reason
    assert math.isnan(unmeasured.figures["false_volume_ml_vs_parent"])


def test_the_surface_dice_prior_refuses_at_the_margin_itself():
    """One case 0.06 worse is judged -0.06 / 3, the margin itself: refused as the plain mean is at it, not
    decided by float noise (-0.01999... passed)."""
    verdict = decide_activation(figures([0.54], [2], [0]), figures([0.60], [2], [0]))
    assert not verdict.activate and "-0.020 with 2 prior cases of no change" in verdict.reason
    assert decide_activation(figures([0.545], [2], [0]), figures([0.60], [2], [0])).activate
