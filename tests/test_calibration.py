"""Post-processing calibration on synthetic probability maps: nodes p=0.9, false blobs p=0.6.

The threshold fits run without the peak rule (``min_peak=0``: the blobs have no confident core and the
rule alone would drop them); the last test checks the rule is applied as prediction applies it."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.calibration import CalibrationCase, fit_postprocessing
from lnq_napari.inference import postprocess
from lnq_napari.io.volume import Volume
from lnq_napari.metrics import evaluate_case

SPACING_ZYX = (2.0, 1.0, 1.0)
SHAPE = (24, 64, 64)


def ball(centre_zyx, radius_mm) -> np.ndarray:
    z, y, x = np.indices(SHAPE, dtype=float)
    d2 = sum(((c - k) * s) ** 2 for c, k, s in zip((z, y, x), centre_zyx, SPACING_ZYX))
    return d2 <= radius_mm**2


def case(case_id, nodes, blobs, weak=(), bright=(), halo_mm=2.0) -> CalibrationCase:
    """Truth = ``nodes`` (p 0.9 inside, p 0.4 in a halo around) and ``weak`` nodes (p 0.55); false
    ``blobs`` of p 0.6 and ``bright`` components of p 0.9 at 300 HU (a vessel, not a node)."""
    prob = np.full(SHAPE, 0.02, dtype=np.float32)
    hu = np.full(SHAPE, 20.0, dtype=np.float32)
    truth = np.zeros(SHAPE, dtype=np.uint8)
    for centre, r in nodes:
        prob[ball(centre, r + halo_mm) & (prob < 0.4)] = 0.4
    for centre, r in nodes:
        prob[ball(centre, r)] = 0.9
        truth[ball(centre, r)] = 1
    for centre, r in weak:
        prob[ball(centre, r)] = 0.55
        truth[ball(centre, r)] = 1
    for centre, r in blobs:
        prob[ball(centre, r)] = 0.6
    for centre, r in bright:
        prob[ball(centre, r)] = 0.9
        hu[ball(centre, r)] = 300.0
    return CalibrationCase(case_id, prob, hu, SPACING_ZYX, truth)


NODES = [((8, 16, 16), 7.0), ((14, 44, 40), 8.0)]
BLOBS = [((16, 16, 48), 6.5), ((6, 50, 14), 6.0)]  # ~900-1150 mm3: too big for the size grid to drop


def test_threshold_removes_false_blobs_and_keeps_the_nodes():
    cases = [case("a", NODES, BLOBS), case("b", NODES[:1], BLOBS[:1])]
    fit = fit_postprocessing(cases, parent_fp_per_case=None, current_threshold=0.5,
                             current_min_component_mm3=0.0, min_peak=0.0)
    assert fit.current.false_nodes == pytest.approx(1.5)
    assert fit.threshold == pytest.approx(0.65)  # the lowest above the blobs: nearest the current 0.5
    assert fit.chosen.false_nodes == 0 and fit.chosen.recall == 1.0
    assert fit.chosen.dice == pytest.approx(1.0) and fit.current.dice < 0.9
    assert fit.reason.startswith("chose threshold 0.65, min component 0 mm3: Dice 1.000")


def test_current_setting_is_kept_when_nothing_beats_it():
    fit = fit_postprocessing([case("a", NODES, [])], parent_fp_per_case=0.0, current_threshold=0.5,
                             current_min_component_mm3=300.0)
    assert (fit.threshold, fit.min_component_mm3) == (0.5, 300.0)
    assert fit.chosen is fit.current and fit.reason.startswith("kept threshold 0.5")


def test_false_node_limit_outranks_dice():
    """Weak true nodes (p 0.55) sit below false blobs (p 0.6): catching them raises Dice and false nodes."""
    weak = [((18, 28, 28), 9.0)]
    cases = [case("a", NODES, BLOBS[:1], weak=weak), case("b", NODES, BLOBS[1:], weak=weak)]
    free = fit_postprocessing(cases, parent_fp_per_case=None, current_min_component_mm3=0.0, min_peak=0.0)
    assert free.threshold <= 0.55 and free.chosen.false_nodes == 1.0 and free.chosen.recall == 1.0
    limited = fit_postprocessing(cases, parent_fp_per_case=0.0, current_min_component_mm3=0.0, min_peak=0.0)
    assert limited.fp_limit == pytest.approx(0.2)
    assert limited.threshold >= 0.65 and limited.chosen.false_nodes == 0.0
    assert limited.chosen.dice < free.chosen.dice and limited.chosen.recall < 1.0
    assert "false nodes <= 0.20/case" in limited.reason


def test_no_setting_within_the_limit_keeps_the_fewest_false_nodes():
    stubborn = case("a", NODES, BLOBS[:1])
    stubborn.probabilities[ball(*BLOBS[0])] = 0.95  # as confident as the nodes: every setting keeps it
    fit = fit_postprocessing([stubborn], parent_fp_per_case=0.0)
    assert fit.chosen.false_nodes == 1.0 and "no setting meets it" in fit.reason


@pytest.mark.parametrize(("min_peak", "false_nodes"), [(0.0, 2), (0.8, 0)])
def test_figures_agree_with_the_metrics_module(min_peak, false_nodes):
    c = case("a", NODES, BLOBS + [((20, 56, 56), 2.5)], bright=[((4, 40, 56), 6.0)])
    fit = fit_postprocessing([c], parent_fp_per_case=None, thresholds=(0.5,), min_sizes_mm3=(0.0,),
                             current_threshold=0.5, current_min_component_mm3=200.0, max_mean_hu=100.0,
                             min_peak=min_peak)
    mask = postprocess(prob=c.probabilities, spacing_zyx=SPACING_ZYX, threshold=0.5, min_component_mm3=200.0,
                       hu=c.hu, max_mean_hu=100.0, min_peak=min_peak)
    volume = Volume(mask, SPACING_ZYX[::-1], (0.0, 0.0, 0.0))
    row = evaluate_case(volume, volume.with_array(c.truth))
    got = fit.current.cases[0]
    assert got.dice == pytest.approx(row.dice)
    assert (got.nodes_hit, got.nodes_gt) == (row.nodes_hit, row.nodes_gt) == (2, 2)
    assert got.false_nodes == row.fp_nodes
    # without the peak rule the two large blobs (p 0.6); the small one and the bright one are dropped
    assert got.false_nodes == false_nodes
