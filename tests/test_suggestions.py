"""Suggestions a reviewer will read: fragments of one node merged, sure candidates say what they are,
only inside the region, ranked and capped (``InferenceConfig.max_suggestions``), in find_nodes too."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.inference import Prediction
from lnq_napari.interact import Suggestion, rank_suggestions, suggest_candidates
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import InferenceConfig, ModelConfig

SPACING = (1.0, 1.0, 2.0)  # x, y, z mm


def _ball(shape, centre, radius_vox):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius_vox ** 2


def _suggest(prob, **kwargs):
    vol = Volume(prob, spacing=SPACING)
    return suggest_candidates(vol, vol.with_array((prob >= 0.5).astype(np.uint8) * 0), min_volume_mm3=10.0,
                              **kwargs)


def test_fragments_of_one_node_are_one_suggestion_and_distant_ones_are_two():
    prob = np.zeros((12, 60, 60), np.float32)
    prob[5:8, 20:26, 10:16] = 0.3
    prob[5:8, 20:26, 18:24] = 0.4  # 2 mm gap: the same node
    prob[5:8, 20:26, 45:51] = 0.3  # 21 mm away: another one
    rows = _suggest(prob)
    assert len(rows) == 2
    merged = rows[0]
    assert merged.voxels == 2 * 3 * 6 * 6 and merged.max_prob == pytest.approx(0.4)
    assert merged.centre_zyx == (6, 22, 20)  # centre of the fragment with the peak: a click lands on tissue
    assert len(_suggest(prob, merge_mm=0.0)) == 3


def test_a_region_touching_a_masked_node_only_at_a_corner_is_its_fringe_not_a_candidate():
    """Nodes are 26-connected: a region meeting a masked node at a corner joins it in every table, so it
    is that node's fringe (face-only touching suggested it as a node of its own)."""
    prob = np.zeros((16, 40, 40), np.float32)
    prob[5:8, 20:26, 10:16] = 0.9
    prob[8:11, 26:32, 16:22] = 0.3  # meets the node at one corner voxel
    vol = Volume(prob, spacing=SPACING)
    mask = vol.with_array((prob >= 0.5).astype(np.uint8))
    assert suggest_candidates(vol, mask, min_volume_mm3=10.0) == []
    prob[8:11, 27:33, 17:23], prob[8:11, 26, 16:22], prob[8:11, 26:32, 16] = 0.3, 0.0, 0.0  # a voxel apart
    assert len(suggest_candidates(vol, vol.with_array(mask.array), min_volume_mm3=10.0)) == 1


def test_candidates_the_model_is_sure_of_say_what_they_are():
    shape = (12, 60, 60)
    prob = np.zeros(shape, np.float32)
    hu = np.zeros(shape, np.float32)
    small = _ball(shape, (6, 15, 15), 2.5)
    prob[small] = 0.95  # sure, but below the size floor: post-processing dropped it
    core = _ball(shape, (6, 40, 40), 4)
    prob[_ball(shape, (6, 40, 40), 8)] = 0.3
    prob[core] = 0.9
    hu[core] = 150.0  # the core the model is sure of is bright; the whole region is not on average
    unsure = _ball(shape, (6, 15, 45), 4)
    prob[unsure] = 0.35
    rows = {r.kind: r for r in _suggest(prob, hu=hu, max_mean_hu=100.0, size_floor_mm3=300.0)}
    assert set(rows) == {"small", "bright", "unsure"}
    assert rows["small"].text.startswith("small, below the size floor (0.30 cm3): p=0.95")
    assert not rows["small"].uncertain and not rows["bright"].uncertain and rows["unsure"].uncertain
    assert rows["bright"].text.startswith("bright, mean 150 HU")
    assert rows["unsure"].text == f"p=0.35  {rows['unsure'].volume_mm3 / 1000:.2f} cm3"


def test_a_component_without_a_confident_core_is_an_unsure_candidate():
    """Post-processing drops a component whose peak stays below ``min_peak``; the reviewer still sees it."""
    shape = (12, 60, 60)
    prob = np.zeros(shape, np.float32)
    prob[_ball(shape, (6, 30, 30), 5)] = 0.7
    vol = Volume(prob, spacing=SPACING)
    empty = vol.with_array(np.zeros(shape, np.uint8))
    (row,) = suggest_candidates(vol, empty, high=0.5, min_volume_mm3=10.0, min_peak=0.8)
    assert row.kind == "unsure" and row.uncertain
    assert row.text.startswith("no confident core (peak below 0.8): p=0.70")
    (sure,) = suggest_candidates(vol, empty, high=0.5, min_volume_mm3=10.0, min_peak=0.6)
    assert sure.kind == "dropped" and not sure.uncertain


def test_candidates_mostly_outside_the_region_are_left_out():
    prob = np.zeros((12, 60, 60), np.float32)
    prob[5:8, 10:16, 10:16] = 0.3
    prob[5:8, 40:46, 40:46] = 0.3
    region = np.zeros(prob.shape, bool)
    region[:, :30, :30] = True
    rows = _suggest(prob, region=region)
    assert [r.centre_zyx for r in rows] == [(6, 12, 12)]


def _row(score: float, zyx=(0, 0, 0)) -> Suggestion:
    return Suggestion("unsure", zyx, (0.0, 0.0, 0.0), score, 0.3, 0.3, True, 10, 10.0)


def test_rank_caps_and_folds_near_duplicates_into_the_better_one():
    rows = [_row(1.0, (0, 0, 0)), _row(3.0, (0, 0, 30)), _row(2.0, (0, 0, 4))]
    assert [r.score for r in rank_suggestions(rows, 2)] == [3.0, 2.0]
    folded = rank_suggestions(rows, 10, spacing_zyx=(1.0, 1.0, 1.0), merge_mm=5.0)
    assert [(r.rank, r.score) for r in folded] == [(1, 3.0), (2, 2.0)]  # (0,0,0) lies 4 mm from (0,0,4)


class FakePredictor:
    """TEST DOUBLE: twelve unsure blobs; the region (when on) holds the left half of the volume."""

    def __init__(self, margin: float | None = 10.0) -> None:
        self.config = ModelConfig()
        self.config.inference.mediastinum_margin_mm = margin
        self.calls: list[dict] = []

    def predict(self, ct, progress=None, cancel=None, region=True):
        self.calls.append({"region": region})
        prob = np.zeros(ct.shape, np.float32)
        for k in range(12):
            y, x = 5 + 8 * (k % 6), 5 + 30 * (k // 6)
            prob[4:8, y: y + 5, x: x + 5] = 0.3 + 0.01 * k
        inside = None
        if region and self.config.inference.mediastinum_margin_mm is not None:
            inside = np.zeros(ct.shape, bool)
            inside[..., :30] = True
        mask = ct.with_array(np.zeros(ct.shape, np.uint8))
        return Prediction(ct.with_array(prob), mask, "fake-0", inside)


@pytest.fixture
def fake_ct() -> Volume:
    hu = np.zeros((12, 60, 60), np.int16)
    hu[:, :, :4] = -1000  # air at the edge: a CT in HU (stored values are refused)
    return Volume(hu, spacing=(2.0, 2.0, 3.0))


def test_find_nodes_keeps_suggestions_in_the_region_and_under_the_cap(fake_ct):
    predictor = FakePredictor()
    result = api.find_nodes(fake_ct, predictor)
    assert InferenceConfig().max_suggestions == 10
    assert len(result.suggestions) == 6 and all(s.centre_zyx[2] < 30 for s in result.suggestions)
    assert result.region is not None and result.region.same_grid(fake_ct)
    everywhere = api.find_nodes(fake_ct, predictor, region=False)
    assert predictor.calls[-1] == {"region": False} and everywhere.region is None
    assert len(everywhere.suggestions) == 10  # the model's cap
    assert [s.rank for s in everywhere.suggestions] == list(range(1, 11))
    assert len(api.find_nodes(fake_ct, predictor, region=False, max_suggestions=3).suggestions) == 3
    for bad in (-1, 2.5, True):  # -1 was taken as a cap, 2.5 too
        with pytest.raises(LNQError, match="max_suggestions must be a whole number >= 0"):
            api.find_nodes(fake_ct, predictor, max_suggestions=bad)


def test_find_nodes_does_not_ask_a_model_without_a_margin_to_turn_the_region_off(fake_ct):
    predictor = FakePredictor(margin=None)
    result = api.find_nodes(fake_ct, predictor, region=False)
    assert predictor.calls == [{"region": True}] and result.region is None


class SpeckledPredictor(FakePredictor):
    """TEST DOUBLE: a mask of isolated single voxels, like an untrained model's argmax."""

    def predict(self, ct, progress=None, cancel=None, region=True):
        out = super().predict(ct, progress, cancel, region)
        mask = np.zeros(ct.shape, np.uint8)
        mask[::2, ::2, ::2] = 1  # 6 x 30 x 30 = 5400 separate voxels
        return Prediction(out.probabilities, ct.with_array(mask), "speckled-0", None)


def test_find_nodes_refuses_a_speckled_mask_with_a_message_about_the_model(fake_ct):
    from lnq_napari.errors import LNQError

    with pytest.raises(LNQError, match="predicted 5400 separate nodes.*check the model"):
        api.find_nodes(fake_ct, SpeckledPredictor())


class NodesPredictor(FakePredictor):
    """TEST DOUBLE: its twelve blobs predicted as nodes (the mask holds them)."""

    def predict(self, ct, progress=None, cancel=None, region=True):
        out = super().predict(ct, progress, cancel, region)
        mask = (np.asarray(out.probabilities.array) > 0.25).astype(np.uint8)
        return Prediction(out.probabilities, ct.with_array(mask), "nodes-0", out.region)


def test_find_nodes_numbers_the_predicted_nodes_once(fake_ct, monkeypatch):
    """find_nodes numbered the mask's nodes, then the node table numbered its ids again (a pass over the
    CT-sized map per node): the rows are measured on the ids as found, the rows the table gives."""
    from lnq_napari import components, quantify

    calls = []

    def counted(labels, max_nodes=None, grid=None, real=components.node_numbers):
        calls.append(max_nodes)
        return real(labels, max_nodes, grid)

    monkeypatch.setattr(components, "node_numbers", counted)
    monkeypatch.setattr(quantify, "node_numbers", counted)
    result = api.find_nodes(fake_ct, NodesPredictor(), region=False)
    assert len(calls) == 1 and [r.id for r in result.nodes] == list(range(1, 13))
    assert result.nodes == api.node_table(result.mask, fake_ct)


def test_no_candidate_beside_the_nodes_gives_no_suggestion():
    """Every confident voxel already a node, or none at all: no suggestion (labelling the empty box of
    candidates raised "zero-size array", and Find nodes failed on such a CT)."""
    prob = np.zeros((8, 8, 8), np.float32)
    prob[2:4, 2:4, 2:4] = 0.9
    mask = (prob > 0.5).astype(np.uint8)
    for p in (prob, np.zeros_like(prob)):
        assert suggest_candidates(Volume(p, (1.0, 1.0, 1.0)), Volume(mask, (1.0, 1.0, 1.0))) == []
