"""Challenge scoring against an independent numpy/scipy formulation of the same definitions."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from lnq_napari import metrics
from lnq_napari.errors import LNQError
from lnq_napari.io.json_text import strict_json
from lnq_napari.io.volume import Volume

SPACING = (0.7, 0.9, 2.5)  # x, y, z in mm: anisotropic like LNQ2023
SHAPE = (14, 28, 30)  # z, y, x


def vol(array, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None) -> Volume:
    kwargs = {"direction": direction} if direction is not None else {}
    return Volume(np.asarray(array), spacing, origin, **kwargs)


def random_mask(rng: np.random.Generator, shape=SHAPE, level: float = 0.6) -> np.ndarray:
    """Blobby random shapes (smoothed noise above a threshold), some touching the border."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(1.0, 2.0, 2.0))
    return (field > level * field.std()).astype(np.uint8)


def ball(shape, centre_zyx, radius_mm, spacing=SPACING) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=float)
    cz, cy, cx = centre_zyx
    d2 = ((x - cx) * spacing[0]) ** 2 + ((y - cy) * spacing[1]) ** 2 + ((z - cz) * spacing[2]) ** 2
    return (d2 <= radius_mm**2).astype(np.uint8)


# ----------------------------------------------------------- independent reference
def ref_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour outside the object; the image border is not background."""
    face = ndimage.generate_binary_structure(3, 1)
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, structure=face, border_value=1)


def ref_directed(a: np.ndarray, b: np.ndarray, spacing=SPACING) -> np.ndarray:
    """Distance (mm) of each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    to_b = ndimage.distance_transform_edt(~ref_surface(b), sampling=spacing[::-1])
    return to_b[ref_surface(a)]


def ref_assd(pred, gt, spacing=SPACING) -> float:
    return 0.5 * ref_directed(pred, gt, spacing).mean() + 0.5 * ref_directed(gt, pred, spacing).mean()


def ref_dice(pred, gt) -> float:
    p, g = pred == 1, gt == 1
    return 2.0 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))


# ----------------------------------------------------------- Dice and ASSD
@pytest.mark.parametrize("seed", range(6))
def test_dice_and_assd_match_independent_formulation(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_mask(rng), random_mask(rng)
    assert gt.any() and pred.any() and (gt & pred).any()
    assert metrics.dice(vol(pred), vol(gt)) == pytest.approx(ref_dice(pred, gt), abs=1e-6)
    assert metrics.assd(vol(pred), vol(gt)) == pytest.approx(ref_assd(pred, gt), abs=1e-4)


@pytest.mark.parametrize("touch_border", [False, True])
def test_small_nodes_in_a_large_volume_match_independent_formulation(touch_border):
    """The scorer crops to the nodes' bounding box; results must equal those on the full images."""
    shape = (20, 64, 64)
    gt = ball(shape, (10, 30, 30), 6.0) | ball(shape, (12, 45, 20), 4.0)
    pred = ball(shape, (11, 31, 28), 5.5)
    if touch_border:
        pred[0:3, 60:64, 0:5] = 1  # a false positive cut by the image border
    assert metrics.dice(vol(pred), vol(gt)) == pytest.approx(ref_dice(pred, gt), abs=1e-6)
    assert metrics.assd(vol(pred), vol(gt)) == pytest.approx(ref_assd(pred, gt), abs=1e-4)


def test_assd_is_mean_of_directed_means_not_pooled_mean():
    gt = ball(SHAPE, (7, 14, 9), 7.0)  # a big node ...
    pred = ball(SHAPE, (7, 14, 9), 2.0)  # ... found as a small one, plus a large false positive
    pred[4:10, 20:27, 20:29] = 1
    to_gt, to_pred = ref_directed(pred, gt), ref_directed(gt, pred)
    mean_of_means = 0.5 * to_gt.mean() + 0.5 * to_pred.mean()
    pooled = np.concatenate([to_gt, to_pred]).mean()  # what MONAI and medpy 0.5 report
    ours = metrics.assd(vol(pred), vol(gt))
    assert to_gt.size != to_pred.size
    assert ours == pytest.approx(mean_of_means, abs=1e-4)
    assert abs(ours - pooled) > 0.1

    d_pred, d_gt = metrics.directed_surface_distances(vol(pred), vol(gt))
    np.testing.assert_allclose(np.sort(d_pred), np.sort(to_gt), atol=1e-4)
    np.testing.assert_allclose(np.sort(d_gt), np.sort(to_pred), atol=1e-4)


def test_identical_masks_score_one_and_zero():
    mask = random_mask(np.random.default_rng(11))
    assert metrics.dice(vol(mask), vol(mask)) == pytest.approx(1.0, abs=1e-12)
    assert metrics.assd(vol(mask), vol(mask)) == pytest.approx(0.0, abs=1e-4)


def test_empty_prediction_scores_zero_dice_and_nan_assd():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    empty = np.zeros(SHAPE, np.uint8)
    assert metrics.dice(vol(empty), vol(gt)) == 0.0
    assert math.isnan(metrics.assd(vol(empty), vol(gt)))
    row = metrics.evaluate_case(vol(empty), vol(gt))
    assert row.dice == 0.0 and math.isnan(row.assd_mm)
    assert row.nodes_hit == 0 and row.fp_nodes == 0


def test_prediction_labelled_255_scores_zero_like_the_challenge():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    assert metrics.dice(vol(gt * 255), vol(gt)) == 0.0
    assert metrics.dice(vol(gt * 2), vol(gt)) == 0.0
    # the challenge's contours see any non-zero label, so its ASSD stays that of the shape
    assert metrics.assd(vol(gt * 255), vol(gt)) == pytest.approx(0.0, abs=1e-4)
    assert "255" in metrics.prediction_problem(vol(gt * 255))
    assert metrics.prediction_problem(vol(gt)) is None
    assert metrics.prediction_problem(vol(gt.astype(bool))) is None


def test_float_probability_map_truncates_to_empty():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    probabilities = gt.astype(np.float32) * 0.9
    assert metrics.dice(vol(probabilities), vol(gt)) == 0.0
    assert "float" in metrics.prediction_problem(vol(probabilities))
    assert metrics.dice(vol(gt.astype(np.float32)), vol(gt)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "change",
    [
        {"origin": (0.0, 0.0, 0.01)},
        {"spacing": (0.7, 0.9, 2.0)},
        {"direction": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)},
    ],
)
def test_grid_mismatch_raises(change):
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    pred = Volume(gt.copy(), change.get("spacing", SPACING), change.get("origin", (0.0, 0.0, 0.0)),
                  change.get("direction", (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))
    for func in (metrics.dice, metrics.assd, metrics.node_detection, metrics.evaluate_case):
        with pytest.raises(LNQError, match="resample"):
            func(pred, vol(gt))


def test_shape_mismatch_raises_and_tiny_origin_shift_is_accepted():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    with pytest.raises(LNQError, match="grid"):
        metrics.dice(vol(gt[:-1]), vol(gt))
    shifted = vol(gt, origin=(5e-5, 0.0, 0.0))  # SimpleITK alone would refuse this
    assert metrics.dice(shifted, vol(gt)) == pytest.approx(1.0)


def test_oblique_direction_keeps_distances_in_mm():
    rng = np.random.default_rng(3)
    gt, pred = random_mask(rng), random_mask(rng)
    c, s = math.cos(0.4), math.sin(0.4)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    args = {"origin": (-120.0, 30.0, 7.5), "direction": direction}
    assert metrics.assd(vol(pred, **args), vol(gt, **args)) == pytest.approx(ref_assd(pred, gt), abs=1e-4)


# ----------------------------------------------------------- node detection
def test_node_detection_counts_hits_and_false_positives():
    shape = (20, 60, 60)
    gt = np.zeros(shape, np.uint8)
    for centre in [(10, 12, 12), (10, 12, 45), (10, 45, 28)]:  # three nodes of 12 mm
        gt |= ball(shape, centre, 6.0)
    gt |= ball(shape, (4, 50, 52), 2.0)  # a 4 mm node, under the 10 mm target size
    pred = np.zeros(shape, np.uint8)
    pred |= ball(shape, (10, 12, 12), 3.0)  # under-segmented, still found
    pred |= ball(shape, (10, 45, 28), 7.0)
    pred |= ball(shape, (4, 50, 52), 2.0)  # the small node: neither hit-counted nor false positive
    pred[15:18, 28:31, 5:8] = 1  # one false positive
    pred[2, 2, 2] = 1  # a second one, a single voxel
    result = metrics.node_detection(vol(pred), vol(gt))
    assert result == metrics.NodeDetection(n_gt=3, n_hit=2, recall=pytest.approx(2 / 3), n_pred=5, fp=2)

    every = metrics.node_detection(vol(pred), vol(gt), min_diameter_mm=0.0)
    assert (every.n_gt, every.n_hit, every.fp) == (4, 3, 2)

    row = metrics.evaluate_case(vol(pred), vol(gt))
    assert (row.nodes_gt, row.nodes_hit, row.fp_nodes, row.nodes_pred) == (3, 2, 2, 5)
    assert row.dice == pytest.approx(ref_dice(pred, gt), abs=1e-6)


def test_node_detection_uses_26_connectivity():
    gt = np.zeros((6, 40, 40), np.uint8)
    gt[1:5, 5:15, 5:15] = 1
    gt[1:5, 15:25, 15:25] = 1  # touches the first only at an edge: one node with 26-connectivity
    pred = np.zeros_like(gt)
    pred[2, 20, 20] = 1
    result = metrics.node_detection(vol(pred), vol(gt), min_diameter_mm=0.0)
    assert (result.n_gt, result.n_hit, result.recall) == (1, 1, 1.0)


def test_no_gt_nodes_gives_nan_recall():
    pred = np.zeros(SHAPE, np.uint8)
    pred[3:5, 3:5, 3:5] = 1
    result = metrics.node_detection(vol(pred), vol(np.zeros(SHAPE, np.uint8)))
    assert result.n_gt == 0 and math.isnan(result.recall) and result.fp == 1


# ----------------------------------------------------------- summary
def test_summarize_excludes_empty_predictions_from_assd_and_pools_recall():
    rows = [
        metrics.CaseScores(dice=0.8, assd_mm=2.0, nodes_gt=1, nodes_hit=1, recall=1.0, fp_nodes=0,
                           nodes_pred=1),
        metrics.CaseScores(dice=0.6, assd_mm=4.0, nodes_gt=9, nodes_hit=3, recall=1 / 3, fp_nodes=3,
                           nodes_pred=6),
        metrics.CaseScores(dice=0.0, assd_mm=math.nan, nodes_gt=2, nodes_hit=0, recall=0.0, fp_nodes=0,
                           nodes_pred=0),
    ]
    s = metrics.summarize(rows)
    assert s.n_cases == 3 and s.n_empty == 1
    assert s.dice_mean == pytest.approx(np.mean([0.8, 0.6, 0.0]))
    assert s.dice_median == pytest.approx(0.6)
    assert s.assd_mean == pytest.approx(3.0) and s.assd_median == pytest.approx(3.0)
    assert s.assd_median_worst == pytest.approx(4.0)  # median of 2, 4, 115.3
    assert s.recall == pytest.approx(4 / 12)  # pooled over nodes, not the mean of 1, 1/3, 0
    assert s.recall != pytest.approx(np.mean([r.recall for r in rows]))
    assert s.fp_per_case == pytest.approx(1.0)

    rows[0] = dataclasses.replace(rows[0], assd_mm=math.nan)
    assert metrics.summarize(rows).assd_median_worst == pytest.approx(metrics.WORST_ASSD_MM)


def test_summarize_of_nothing_is_nan_not_an_error():
    s = metrics.summarize([])
    assert s.n_cases == 0 and math.isnan(s.dice_mean) and math.isnan(s.recall)



# ----------------------------------------------------------- typed figures
def test_figures_are_frozen_types_and_a_figure_not_asked_for_is_none():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    pred = ball(SHAPE, (7, 14, 16), 6.0)
    row = metrics.evaluate_case(vol(pred), vol(gt))
    assert isinstance(row, metrics.CaseScores) and row.surface_dice is None and row.false_volume_ml is None
    assert isinstance(metrics.node_detection(vol(pred), vol(gt)), metrics.NodeDetection)
    assert isinstance(metrics.summarize([row]), metrics.ScoreSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.dice = 1.0
    # not measured is left out of the row written, as rows always were; measured but undefined is NaN
    assert list(row.to_dict()) == ["dice", "assd_mm", "nodes_gt", "nodes_hit", "recall", "fp_nodes",
                                   "nodes_pred"]
    both_empty = metrics.evaluate_case(vol(np.zeros(SHAPE, np.uint8)), vol(np.zeros(SHAPE, np.uint8)),
                                       surface_tolerance_mm=2.0)
    assert math.isnan(both_empty.surface_dice) and "surface_dice" in both_empty.to_dict()


def test_scores_read_back_from_json_as_written_by_older_versions():
    """An ``evaluate --json`` row on disk: its files beside the figures, NaN written as null, no optional
    figure; and a row with surface Dice and false volume that round-trips through standard JSON."""
    old = json.loads('{"case": "lnq2023-0001", "pred": "p.nrrd", "gt": "g.nrrd", "dice": 0.0, '
                     '"assd_mm": null, "nodes_gt": 2, "nodes_hit": 0, "recall": 0.0, "fp_nodes": 1, '
                     '"nodes_pred": 1}')
    scores = metrics.CaseScores.from_dict(old)
    assert scores.dice == 0.0 and math.isnan(scores.assd_mm) and scores.fp_nodes == 1
    assert scores.surface_dice is None and scores.false_volume_ml is None
    assert metrics.summarize([scores]).n_empty == 1
    full = metrics.CaseScores(0.7, 1.5, 3, 2, 2 / 3, 1, 3, surface_dice=math.nan, false_volume_ml=0.25)
    back = metrics.CaseScores.from_dict(json.loads(strict_json(full.to_dict())))  # NaN as null
    assert math.isnan(back.surface_dice) and dataclasses.replace(back, surface_dice=0.5) == \
        dataclasses.replace(full, surface_dice=0.5)
    with pytest.raises(ValueError, match="fp_nodes"):
        metrics.CaseScores.from_dict({k: v for k, v in old.items() if k != "fp_nodes"})


def test_surface_dice_counts_both_surfaces_within_the_tolerance():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    grown = ball(SHAPE, (7, 14, 15), 7.5)  # the outline 1.5 mm further out: inside 2 mm, outside 1 mm
    to_gt, to_pred = ref_directed(grown, gt), ref_directed(gt, grown)
    for tol in (1.0, 2.0):
        within = np.count_nonzero(to_gt <= tol) + np.count_nonzero(to_pred <= tol)
        expected = within / (to_gt.size + to_pred.size)
        assert metrics.surface_dice(vol(grown), vol(gt), tol) == pytest.approx(expected, abs=1e-6)
    assert metrics.surface_dice(vol(grown), vol(gt), 2.0) > metrics.dice(vol(grown), vol(gt)) + 0.1
    assert metrics.surface_dice(vol(grown), vol(gt), 0.5) < 0.5


def test_surface_dice_is_lenient_only_beyond_grown_nodes_and_only_up_to_the_lenience():
    gt = ball(SHAPE, (7, 14, 15), 5.0)
    bigger = ball(SHAPE, (7, 14, 15), 8.0)  # reaches 3 mm beyond the node: outside a 1 mm tolerance
    smaller = ball(SHAPE, (7, 14, 15), 2.0)  # stops 3 mm short of it
    grown = gt.astype(bool)
    strict = metrics.surface_dice(vol(bigger), vol(gt), 1.0)
    assert strict < 0.6
    assert metrics.surface_dice(vol(bigger), vol(gt), 1.0, grown=grown, lenience_mm=4.0) == 1.0
    partly = metrics.surface_dice(vol(bigger), vol(gt), 1.0, grown=grown, lenience_mm=2.0)
    assert strict < partly < 1.0  # its own outline lies 3 mm out, beyond a 2 mm lenience
    # a node the reviewer left as predicted, or a prediction short of a grown node: no lenience
    nothing_grown = np.zeros(SHAPE, bool)
    assert metrics.surface_dice(vol(bigger), vol(gt), 1.0, grown=nothing_grown, lenience_mm=4.0) == strict
    assert metrics.surface_dice(vol(smaller), vol(gt), 1.0, grown=grown, lenience_mm=4.0) == \
        metrics.surface_dice(vol(smaller), vol(gt), 1.0)
    row = metrics.evaluate_case(vol(bigger), vol(gt), 0.0, surface_tolerance_mm=1.0, grown=grown,
                                lenience_mm=4.0)
    assert row.surface_dice == 1.0 and row.dice < 0.5  # volumetric Dice is not lenient


def test_surface_dice_of_empty_masks():
    gt = ball(SHAPE, (7, 14, 15), 6.0)
    empty = np.zeros(SHAPE, np.uint8)
    assert metrics.surface_dice(vol(empty), vol(gt)) == 0.0
    assert math.isnan(metrics.surface_dice(vol(empty), vol(empty)))


def test_known_voxel_dice_counts_only_voxels_of_known_state():
    from lnq_napari.metrics import known_voxel_dice

    states = np.full((6, 10, 10), -1, np.int8)
    states[:, :, :5] = 0  # known background
    states[2:4, 6:8, 6:8] = 1  # a node
    node = states == 1
    assert known_voxel_dice(node, states) == 1.0
    fuller = node.copy()
    fuller[1:5, 5:9, 5:9] = True  # grows into unknown voxels only: neither right nor wrong
    assert known_voxel_dice(fuller, states) == 1.0
    bolder = node.copy()
    bolder[2:4, 6:8, 0:2] = True  # 8 voxels on known background
    assert known_voxel_dice(bolder, states) == pytest.approx(2 * 8 / (16 + 8))
    assert known_voxel_dice(np.zeros_like(node), states) == 0.0
    assert np.isnan(known_voxel_dice(np.zeros_like(node), np.where(node, -1, states)))
    with pytest.raises(ValueError, match="differ in shape"):
        known_voxel_dice(node[:3], states)



def test_a_marked_node_counts_as_a_node_found_by_any_voxel_its_outline_unjudged():
    from lnq_napari.interact import NodeMark, spot_mask

    spacing, shape = (2.0, 1.0, 1.0), (16, 48, 48)
    gt = np.zeros(shape, np.uint8)
    gt[6:10, 8:18, 8:18] = 1  # an outlined node
    mark = NodeMark.at((8, 34, 34), radius_mm=6.0)
    marked = spot_mask([mark], shape, spacing)
    pred = gt.copy()
    pred[7:9, 30:40, 30:40] = 1  # a guess at the marked node, its outline unknown
    truth, guessed, missed = (Volume(a, spacing=spacing) for a in (gt, pred, gt.copy()))
    with_mark = metrics.evaluate_case(guessed, truth, surface_tolerance_mm=2.0, marked=marked)
    plain = metrics.evaluate_case(guessed, truth, surface_tolerance_mm=2.0)
    assert (plain.nodes_hit, plain.nodes_gt, plain.fp_nodes) == (1, 1, 1)
    assert (with_mark.nodes_hit, with_mark.nodes_gt, with_mark.fp_nodes) == (2, 2, 0)
    assert with_mark.dice == with_mark.surface_dice == 1.0 > plain.dice
    assert with_mark.nodes_pred == plain.nodes_pred == 2
    unfound = metrics.evaluate_case(missed, truth, marked=marked)
    assert (unfound.nodes_hit, unfound.nodes_gt, unfound.recall) == (1, 2, 0.5)
    on_node = spot_mask([NodeMark.at((8, 12, 12), radius_mm=6.0)], shape, spacing)  # outlined: no extra node
    assert metrics.evaluate_case(guessed, truth, marked=on_node) == metrics.evaluate_case(guessed, truth)


def test_false_volume_counts_what_is_painted_beyond_the_distance_of_every_node():
    gt = ball(SHAPE, (7, 14, 15), 5.0)
    pred = ball(SHAPE, (7, 14, 15), 12.0).astype(bool)  # the node and 7 mm all round it
    far = pred & (gt == 0)
    near = ndimage.distance_transform_edt(gt == 0, sampling=SPACING[::-1]) <= 5.0  # independent
    voxel_ml = float(np.prod(SPACING)) / 1000.0
    expected = np.count_nonzero(pred & ~near) * voxel_ml
    assert 0 < expected < np.count_nonzero(far) * voxel_ml  # part of the rim lies within 5 mm
    assert metrics.false_volume_ml(vol(pred.astype(np.uint8)), vol(gt), 5.0) == pytest.approx(expected)
    assert metrics.false_volume_ml(vol(gt), vol(gt), 5.0) == 0.0
    row = metrics.evaluate_case(vol(pred.astype(np.uint8)), vol(gt), 0.0, false_volume_beyond_mm=5.0)
    assert row.false_volume_ml == pytest.approx(expected)
    assert row.fp_nodes == 0  # one component touching the node: no false node, yet volume painted
    assert metrics.evaluate_case(vol(gt), vol(gt)).false_volume_ml is None  # not asked for
    empty = np.zeros(SHAPE, np.uint8)  # a correction without nodes: all that is painted is false
    assert metrics.false_volume_ml(vol(gt), vol(empty), 5.0) == pytest.approx(np.count_nonzero(gt) * voxel_ml)


def test_one_figure_format_for_the_summary_line_and_the_cli_tables():
    """The summary line and ``evaluate``'s table formatted floats with two copies of one rule."""
    from lnq_napari import cli

    for value, shown in ((0.812345, "0.8123"), (-3.6e-15, "0"), (float("nan"), "nan"),
                         (12345.6, "1.235e+04")):
        assert metrics.figure(value) == cli._fmt(value) == shown
    assert cli._fmt(3) == "3" and cli._fmt("lnq2023-train-0001") == "lnq2023-train-0001"
