"""Simulated reviewer: clicks missed nodes and removes false ones through the interact functions."""

from __future__ import annotations

import numpy as np

from lnq_napari.metrics import evaluate_case
from lnq_napari.phantom import make_case
from lnq_napari.simulate import simulate_review


def test_review_fixes_missed_and_false_nodes():
    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    pred = case.partial.array.copy()
    pred[5:8, 10:14, 10:14] = 1  # a false node far from any truth
    prediction = case.partial.with_array(pred)
    before = evaluate_case(prediction, case.full)
    corrected, stats = simulate_review(case.ct, prediction, case.full, completion_clicks=0, undo_below=0)
    after = evaluate_case(corrected, case.full)
    assert stats["false"] == 1 and stats["removed"] == 1
    assert stats["missed"] == before.nodes_gt - before.nodes_hit > 0
    assert stats["edits"] == stats["missed"] + 1
    assert after.fp_nodes == 0 and after.recall > before.recall
    assert after.dice > before.dice + 0.2
    assert corrected.array[5:8, 10:14, 10:14].sum() == 0
    np.testing.assert_array_equal(corrected.array[case.partial.array > 0], 1)  # kept nodes stay


def test_leaky_component_is_removed_and_its_node_reclicked():
    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    full = case.full.array > 0
    z = int(np.argwhere(full)[0][0])
    pred = full.astype(np.uint8)
    pred[max(z - 3, 0): z + 3] = np.where(case.ct.array[max(z - 3, 0): z + 3] > -300, 1, 0)  # body-wide leak
    corrected, stats = simulate_review(case.ct, case.ct.with_array(pred), case.full, undo_below=0)
    assert stats["leaky"] >= 1 and stats["added"] >= 1
    assert corrected.array.sum() < pred.sum() / 2
    before = evaluate_case(case.ct.with_array(pred), case.full).dice
    assert evaluate_case(corrected, case.full).dice > before


def test_half_found_node_is_completed_with_a_click_in_its_missing_part():
    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    full = case.full.array > 0
    from scipy import ndimage

    comp, _ = ndimage.label(full, structure=np.ones((3, 3, 3), bool))
    largest = np.argmax(np.bincount(comp.ravel())[1:]) + 1
    node = comp == largest
    cut = int(np.median(np.argwhere(node)[:, 2]))
    pred = full.copy()
    pred[:, :, cut:] &= ~node[:, :, cut:]  # the model found only one half of this node
    prediction = case.ct.with_array(pred.astype(np.uint8))

    corrected, stats = simulate_review(case.ct, prediction, case.full)
    covered = (corrected.array[node] > 0).mean()
    assert (pred[node]).mean() < 0.75 <= covered
    assert stats["partial"] == 1 and stats["completed"] >= 1 and stats["missed"] == 0
    assert stats["edits"] == stats["completed"]
    assert evaluate_case(corrected, case.full).dice > evaluate_case(prediction, case.full).dice
    np.testing.assert_array_equal(corrected.array[pred], 1)  # what was there stays

    unchanged, stats_off = simulate_review(case.ct, prediction, case.full, completion_clicks=0)
    np.testing.assert_array_equal(unchanged.array, prediction.array)
    assert stats_off["edits"] == 0


def test_a_click_that_spills_off_the_node_is_undone():
    from lnq_napari.io.volume import Volume

    shape = (20, 48, 48)
    z, y, x = np.indices(shape)
    blob = ((z - 10) * 2.0) ** 2 + (y - 24.0) ** 2 + (x - 24.0) ** 2 < 12.0**2  # one 50-HU structure
    hu = np.where(blob, 50.0, -100.0) + np.random.default_rng(0).normal(0, 5, shape)
    ct = Volume(hu.astype(np.int16), spacing=(1.0, 1.0, 2.0))
    truth = np.zeros(shape, np.uint8)
    truth[9:12, 22:27, 22:27] = 1  # the node is a small part of what a click grows
    empty = ct.with_array(np.zeros(shape, np.uint8))
    corrected, stats = simulate_review(ct, empty, ct.with_array(truth), completion_clicks=0)
    assert stats["missed"] == 1 and stats["undone"] == 1 and stats["added"] == 0
    assert stats["edits"] == 3 and stats["marked"] == 1  # the click, its undo and the "node here" mark
    assert corrected.array.sum() == 0 and truth[stats["marks"][0].centre_zyx]
    kept, stats = simulate_review(ct, empty, ct.with_array(truth), completion_clicks=0, undo_below=0)
    assert stats["added"] == 1 and kept.array.sum() > 10 * truth.sum()  # without the undo it spills


def _suggestion(kind, centre, volume_mm3):
    from lnq_napari.interact import Suggestion

    return Suggestion(kind=kind, centre_zyx=centre, centre_mm=(0.0, 0.0, 0.0), score=1.0, max_prob=0.4,
                      mean_prob=0.3, uncertain=True, voxels=10, volume_mm3=volume_mm3)


def test_review_rejects_the_suggestions_on_no_node_and_only_those():
    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    full = np.asarray(case.full.array) > 0
    on_node = tuple(int(v) for v in np.argwhere(full)[0])
    z, y, x = np.nonzero(~full)
    far = next((int(a), int(b), int(c)) for a, b, c in zip(z, y, x)
               if np.abs(np.argwhere(full) - (a, b, c)).max(axis=1).min() > 8)
    shown = [_suggestion("unsure", far, 500.0), _suggestion("unsure", on_node, 500.0),
             _suggestion("outline", far, 500.0)]
    corrected, stats = simulate_review(case.ct, case.full, case.full, suggestions=shown)
    (rejection,) = stats["rejections"]
    assert rejection.centre_zyx == far and stats["rejected"] == 1
    assert stats["edits"] == 1  # the prediction was perfect: the rejection is the only click
    box, ball = rejection.ball(full.shape, case.ct.spacing_zyx)
    assert not full[box][ball].any()
    np.testing.assert_array_equal(corrected.array, case.full.array)
    _, capped = simulate_review(case.ct, case.full, case.full, suggestions=shown, max_clicks=0)
    assert capped["rejected"] == 0


def test_a_missed_node_no_click_can_outline_is_marked_and_only_then():
    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    full = np.asarray(case.full.array) > 0
    empty = case.full.with_array(np.zeros_like(case.full.array))
    _, clicked = simulate_review(case.ct, empty, case.full, completion_clicks=0, undo_below=0)
    assert clicked["added"] == clicked["missed"] > 0 and clicked["marked"] == 0 and not clicked["marks"]
    flat = case.ct.with_array(np.full(case.ct.shape, -1000.0, np.float32))  # air: no click grows a node
    corrected, stats = simulate_review(flat, empty, case.full, completion_clicks=0)
    assert stats["added"] == 0 and stats["marked"] == stats["missed"] == clicked["missed"]
    assert stats["edits"] == 2 * stats["missed"]  # the click, then the mark
    assert all(full[m.centre_zyx] for m in stats["marks"]) and not corrected.array.any()
    _, unmarked = simulate_review(flat, empty, case.full, completion_clicks=0, mark_missed=False)
    assert unmarked["marked"] == 0 and unmarked["edits"] == stats["missed"]


def test_provenance_keeps_the_marks_and_rejections_a_save_would():
    """A simulated review saved with :func:`provenance` records what napari's Save records: the clicks,
    the rejected suggestions and the marked nodes (notebook 02 dropped the marks, so the fine-tune taught
    those nodes as background)."""
    from lnq_napari.interact import NodeMark
    from lnq_napari.simulate import provenance

    case = make_case(3, shape=(40, 96, 96), spacing=(3.2, 3.2, 6.0))
    flat = case.ct.with_array(np.full(case.ct.shape, -1000.0, np.float32))
    empty = case.full.with_array(np.zeros_like(case.full.array))
    _, stats = simulate_review(flat, empty, case.full, completion_clicks=0)
    saved = provenance(stats)
    assert saved["edits"] == stats["edits"] and "rejected" not in saved
    assert [NodeMark.from_dict(m) for m in saved["marked"]] == stats["marks"]
    _, nothing = simulate_review(case.ct, case.full, case.full)
    assert provenance(nothing) == {"edits": 0}


def test_the_brush_erases_an_outline_spill_and_leaves_the_node():
    """With ``brush_mm`` the reviewer erases what a kept node's outline spills beyond the truth node
    (farther than ``brush_mm``), one stroke per node; without it the spill stays, as with clicks only."""
    from lnq_napari.components import label_components, within_mm

    case = make_case(3, shape=(48, 128, 128), spacing=(1.6, 1.6, 4.0))  # 1.6 mm: the brush's 2 mm is a voxel
    full = case.full.array > 0
    nodes, n = label_components(full)
    assert n >= 2
    pred = full.copy()
    spill = np.roll(nodes == 1, 5, axis=2) & ~full  # one node's outline runs 8 mm on to one side
    pred |= spill
    prediction = case.full.with_array(pred.astype(np.uint8))
    clicked, plain = simulate_review(case.ct, prediction, case.full)
    assert plain["trimmed"] == 0 and (clicked.array[spill] == 1).all()
    brushed, stats = simulate_review(case.ct, prediction, case.full, brush_mm=2.0)
    far = spill & ~within_mm(full, case.ct.spacing_zyx, 2.0)
    assert stats["trimmed"] == 1 and stats["edits"] == plain["edits"] + 1
    assert far.any() and not brushed.array[far].any()  # the spill beyond the brush's reach is gone
    assert (brushed.array[full] == 1).all()  # every truth voxel stays, the other nodes untouched
    assert (spill & ~far).any() and brushed.array[spill & ~far].all()  # within 2 mm the brush leaves it
