"""Review ranking: uncertainty scores from probability maps, strategies, workspace scoring and cache."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import numpy as np
import pytest

from lnq_napari import active
from lnq_napari.active import CaseScore, RankedCase, get_strategy, ranked_rows, score_probabilities
from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume


def _scores() -> dict[str, CaseScore]:
    return {
        "a": CaseScore("a", score=0.5, uncertain_nodes=3, disagreement=0.1),
        "b": CaseScore("b", score=2.0, uncertain_nodes=0, disagreement=0.0),
        "c": CaseScore("c", score=1.0, uncertain_nodes=1, disagreement=0.4),
        "d": CaseScore("d", score=1.0, uncertain_nodes=2, disagreement=None),
    }


def test_strategies_rank_hand_built_scores():
    scores = _scores()
    assert get_strategy("uncertainty").rank(scores, 3) == ["b", "d", "c"]
    assert get_strategy("disagreement").rank(scores, 4) == ["c", "a", "b", "d"]
    assert get_strategy("nodes").rank(scores, 2) == ["a", "d"]
    assert get_strategy("uncertainty").rank(scores, 0) == []
    r1 = get_strategy("random", seed=1).rank(scores, 4)
    assert sorted(r1) == ["a", "b", "c", "d"]
    assert get_strategy("random", seed=1).rank(scores, 4) == r1  # seeded
    assert {tuple(get_strategy("random", seed=s).rank(scores, 4)) for s in range(6)} != {tuple(r1)}
    with pytest.raises(LNQError, match="unknown strategy"):
        get_strategy("loudest")


def test_ranked_rows_have_cli_columns():
    rows = ranked_rows(_scores(), get_strategy("uncertainty"), 2)
    assert [r.rank for r in rows] == [1, 2] and all(isinstance(r, RankedCase) for r in rows)
    assert rows[0].case == "b" and rows[0].score == 2.0 and rows[0].uncertain_nodes == 0
    assert list(rows[0].to_dict()) == ["rank", "case", "score", "uncertain_nodes", "predicted_nodes",
                                       "incomplete_nodes", "disagreement", "model_version", "nodes"]
    with pytest.raises(FrozenInstanceError):
        rows[0].score = 3.0  # type: ignore[misc]


def _prob(peaks: list[float]) -> Volume:
    """Cubes of 4^3 voxels with the given peak probabilities, on a 1x1x2 mm grid."""
    p = np.zeros((8, 8, 8 * len(peaks) + 2), np.float32)
    for i, peak in enumerate(peaks):
        p[2:6, 2:6, 8 * i + 2: 8 * i + 6] = peak
    return Volume(p, spacing=(1.0, 1.0, 2.0))


def test_confident_map_scores_lower_than_unsure_map():
    sure = score_probabilities("s", _prob([0.99, 0.98]))
    unsure = score_probabilities("u", _prob([0.99, 0.45, 0.3]))
    assert sure.uncertain_nodes == 0 and sure.predicted_nodes == 2
    assert unsure.uncertain_nodes == 2 and unsure.predicted_nodes == 1
    assert unsure.score > sure.score
    assert len(unsure.nodes) == 2 and all(0.2 <= n["peak"] < 0.8 for n in unsure.nodes)
    # entropy volume: 2 cubes of 64 voxels x 2 mm3 in the uncertain band
    assert unsure.uncertain_cm3 == pytest.approx(2 * 64 * 2 / 1000)
    empty = score_probabilities("e", _prob([]))
    assert empty.score == 0 and empty.nodes == []
    assert CaseScore.from_dict(unsure.to_dict()) == unsure


def test_the_nodes_a_case_is_ranked_with_are_those_of_its_post_processed_mask():
    """The Review queue said "2 unsure of 13 nodes" for a case that opened with the 10 nodes left after
    post-processing (region, size floor, confident core): it counted the probability map's blobs."""
    prob = _prob([0.99, 0.98, 0.9])
    kept = (np.asarray(prob.array) >= 0.95).astype(np.uint8)  # post-processing dropped the 0.9 blob
    assert score_probabilities("c", prob).predicted_nodes == 3
    assert score_probabilities("c", prob, mask=prob.with_array(kept)).predicted_nodes == 2


def test_node_scores_measure_each_component():
    p = np.zeros((10, 12, 14), np.float32)
    p[1:3, 2:5, 3:5] = 0.6  # 2 x 3 x 2 voxels, one at 0.9
    p[2, 4, 4] = 0.9
    p[6:9, 8:10, 10:13] = 0.3  # 3 x 2 x 3, flat
    rows = active.node_scores(Volume(p, spacing=(2.0, 1.0, 0.5)))
    assert [(r["id"], r["voxels"]) for r in rows] == [(1, 12), (2, 18)]
    first, second = rows
    assert first["peak"] == pytest.approx(0.9) and first["mean"] == pytest.approx((11 * 0.6 + 0.9) / 12)
    assert first["centre_zyx"] == [1.5, 3.0, 3.5] and first["volume_mm3"] == pytest.approx(12.0)
    assert second["peak"] == pytest.approx(0.3) and second["centre_zyx"] == [7.0, 8.5, 11.0]
    assert not first["uncertain"] and second["uncertain"] and second["uncertainty"] == pytest.approx(0.6)
    assert active.node_scores(Volume(np.zeros((4, 4, 4), np.float32))) == []


def test_mask_disagreement():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    assert active.mask_disagreement([a, a]) == 0.0
    assert active.mask_disagreement([a, ~a]) == 1.0
    assert active.mask_disagreement([np.zeros_like(a)] * 2) == 0.0


@dataclass
class _Prediction:
    probabilities: Volume
    mask: Volume
    model_version: str = "fake"


class _FakePredictor:
    """Probability = a per-case constant inside a cube, shifted by x-flips so TTA disagrees."""

    def __init__(self, peaks: dict[int, float]) -> None:
        self.peaks = peaks
        self.calls = 0

    def predict(self, ct, progress=None, cancel=None):
        self.calls += 1
        peak = self.peaks[int(ct.array[0, 0, 0])]
        p = np.zeros(ct.shape, np.float32)
        p[1:4, 1:4, 1:4] = peak
        prob = ct.with_array(p)
        return _Prediction(prob, ct.with_array((p >= 0.5).astype(np.uint8)))


def _workspace(tmp_path, peaks: dict[int, float]):
    """A workspace of one 6^3 CT per peak, each holding its peak's key as its value everywhere."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.workspace import Workspace

    data = tmp_path / "data"
    for i in peaks:
        write_volume(data / f"lnq2023-train-{i:04d}-ct.nrrd", Volume(np.full((6, 6, 6), i, np.int16)))
    return Workspace.init(tmp_path / "ws", data), data


def test_score_workspace_ranks_caches_and_stores_predictions(tmp_path):
    peaks = {0: 0.95, 1: 0.5, 2: 0.3}
    ws, _ = _workspace(tmp_path, peaks)
    predictor = _FakePredictor(peaks)
    seen = []
    scores = active.score_workspace(ws, predictor, "m001", progress=lambda f, m: seen.append(f))
    assert predictor.calls == 3 and seen[-1] == 1.0
    ranked = get_strategy("uncertainty").rank(scores, 2)
    assert ranked == ["lnq2023-train-0001", "lnq2023-train-0002"]
    assert ws.latest_version("lnq2023-train-0001", "prediction")["model_version"] == "m001"
    again = active.score_workspace(ws, predictor, "m001")  # cached: no new predictions
    assert predictor.calls == 3 and again == scores
    # flips: disagreement needs extra passes (the cached entries have none yet)
    flipped = active.score_workspace(ws, predictor, "m001", flips=[(2,)])
    assert predictor.calls == 9 and all(s.disagreement is not None for s in flipped.values())
    assert [v["source"] for v in ws.versions("lnq2023-train-0000")] == ["prediction"]  # stored once
    # corrected cases leave the queue
    ws.add_label_version("lnq2023-train-0001", ws.latest_labels("lnq2023-train-0001"), "correction")
    assert "lnq2023-train-0001" not in active.score_workspace(ws, predictor, "m001")


def _node_in_fat():
    """A 50-HU ball of radius 8 mm in fat (-100 HU) with noise, on a 1 x 1 x 2 mm grid."""
    shape, spacing = (20, 48, 48), (2.0, 1.0, 1.0)
    z, y, x = np.indices(shape)
    ball = ((z - 10) * 2.0) ** 2 + (y - 24.0) ** 2 + (x - 24.0) ** 2 < 8.0**2
    hu = np.where(ball, 50.0, -100.0) + np.random.default_rng(0).normal(0, 8, shape)
    return Volume(hu.astype(np.int16), spacing=spacing[::-1]), ball


def test_half_outlined_node_is_flagged_incomplete_and_raises_the_score():
    ct, ball = _node_in_fat()
    half = ball.copy()
    half[:, :, 24:] = False
    rows = active.incomplete_outlines(ct, ct.with_array(half.astype(np.uint8)))
    assert len(rows) == 1 and rows[0]["incomplete"]
    assert 0.7 < rows[0]["ratio"] < 1.5  # the other half of the node, give or take its rim
    assert rows[0]["outside_mm3"] == pytest.approx(rows[0]["ratio"] * rows[0]["volume_mm3"])
    click = tuple(int(c) for c in rows[0]["click_zyx"])
    assert ball[click] and not half[click]  # in the node's missing half
    assert active.incomplete_outlines(ct, ct.with_array(ball.astype(np.uint8))) == []

    base = score_probabilities("c", _prob([0.99]))
    before = base.score
    scored = active.add_outlines(base, rows)
    assert scored.incomplete_nodes == 1 and scored.outline_cm3 == pytest.approx(rows[0]["outside_mm3"] / 1000)
    assert scored.score == pytest.approx(before + scored.outline_cm3)
    assert scored.nodes[-1]["incomplete"] and CaseScore.from_dict(scored.to_dict()) == scored


def test_outline_suggestions_rank_with_unsure_candidates():
    from dataclasses import replace

    from lnq_napari.interact import rank_suggestions

    ct, ball = _node_in_fat()
    half = ball.copy()
    half[:, :, 24:] = False
    prob = ct.with_array(np.where(half, 0.9, 0.0).astype(np.float32))
    rows = active.outline_suggestions(ct, ct.with_array(half.astype(np.uint8)), prob)
    assert len(rows) == 1 and rows[0].kind == "outline" and rows[0].max_prob == 0.0
    assert ball[rows[0].centre_zyx] and not half[rows[0].centre_zyx]
    assert rows[0].text.startswith("outline incomplete? +")
    unsure = replace(rows[0], kind="unsure", score=1.0)
    ranked = rank_suggestions([unsure, *rows])
    assert [r.rank for r in ranked] == [1, 2] and ranked[0].kind == "outline"  # ~8 mm of tissue > 1


def test_a_case_corrected_while_it_is_predicted_gets_no_prediction_on_top(tmp_path):
    """A reviewer saved a correction while ``next`` predicted that case: the prediction was stored after
    it (the newest version, what Open case showed) and the case stayed in the queue."""
    peaks = {0: 0.95, 1: 0.5}
    ws, _ = _workspace(tmp_path, peaks)

    class SavedMeanwhile(_FakePredictor):
        def predict(self, ct, progress=None, cancel=None):
            if int(ct.array[0, 0, 0]) == 1:  # the reviewer saves this case while it is predicted
                ws.add_label_version("lnq2023-train-0001", ct.with_array(np.zeros(ct.shape, np.uint8)),
                                     "correction")
            return super().predict(ct, progress, cancel)

    scores = active.score_workspace(ws, SavedMeanwhile(peaks), "m001")
    assert list(scores) == ["lnq2023-train-0000"]
    assert [v["source"] for v in ws.versions("lnq2023-train-0001")] == ["correction"]
    assert ws.latest_version("lnq2023-train-0000", "prediction")["model_version"] == "m001"


def test_a_case_whose_ct_is_gone_is_left_out_with_a_warning_and_the_rest_ranked(tmp_path):
    peaks = {0: 0.95, 1: 0.5, 2: 0.3}
    ws, data = _workspace(tmp_path, peaks)
    (data / "lnq2023-train-0001-ct.nrrd").unlink()
    with pytest.warns(UserWarning, match="case lnq2023-train-0001 is gone .* left out of the ranking"):
        scores = active.score_workspace(ws, _FakePredictor(peaks), "m001")
    assert sorted(scores) == ["lnq2023-train-0000", "lnq2023-train-0002"]


def test_when_no_case_could_be_ranked_next_says_why_and_fails(tmp_path, capsys):
    """`next` said "every case of the workspace has a correction" (exit 0) when the uncorrected cases'
    CTs could not be read."""
    from lnq_napari.cli import main

    ws, data = _workspace(tmp_path, {0: 0.95})
    (data / "lnq2023-train-0000-ct.nrrd").write_bytes(b"NRRD0004\ndamaged")
    assert main(["next", "--workspace", str(ws.root)]) != 0
    err = capsys.readouterr().err
    assert "no case ranked: the 1 case without a correction could not be read" in err
    assert "Traceback" not in err


class _NotHuFor(_FakePredictor):
    """Refuses the CT whose value is ``bad``, as the real predictor refuses a CT not in HU."""

    def __init__(self, peaks: dict[int, float], bad: int) -> None:
        super().__init__(peaks)
        self.bad = bad

    def predict(self, ct, progress=None, cancel=None):
        from lnq_napari.ct_scale import NOT_HU

        if int(ct.array[0, 0, 0]) == self.bad:
            raise LNQError(NOT_HU)
        return super().predict(ct, progress, cancel)


def test_a_case_that_cannot_be_predicted_is_named_and_the_rest_ranked(tmp_path):
    """One CT not in HU stopped the whole ranking with an error that did not name the case."""
    peaks = {0: 0.95, 1: 0.5, 2: 0.3}
    ws, _ = _workspace(tmp_path, peaks)
    with pytest.warns(UserWarning, match="Hounsfield units.*; lnq2023-train-0001 left out of the ranking"):
        scores = active.score_workspace(ws, _NotHuFor(peaks, 1), "m001")
    assert sorted(scores) == ["lnq2023-train-0000", "lnq2023-train-0002"]


def test_next_ranks_the_cases_it_can_predict_and_names_the_others(tmp_path, capsys, monkeypatch):
    from lnq_napari import api
    from lnq_napari.cli import main

    peaks = {0: 0.95, 1: 0.5}
    ws, _ = _workspace(tmp_path, peaks)
    monkeypatch.setattr(api, "load_predictor", lambda path: _NotHuFor(peaks, 1))
    assert main(["next", "--workspace", str(ws.root)]) == 0
    out, err = capsys.readouterr()
    assert "lnq2023-train-0000" in out and "lnq2023-train-0001" not in out
    assert "lnq2023-train-0001 left out of the ranking" in err and "Traceback" not in err
    ws_one, _ = _workspace(tmp_path / "one", {1: 0.5})  # no case could be ranked: a non-zero exit
    assert main(["next", "--workspace", str(ws_one.root)]) != 0
    err = capsys.readouterr().err
    assert "lnq2023-train-0001 left out of the ranking" in err and "no case ranked" in err


def test_next_on_a_workspace_it_cannot_write_says_so_before_predicting(tmp_path, capsys, monkeypatch):
    """`next` on a read-only workspace predicted every case, then failed at the first write ("cannot write
    ..."): it stores each case's prediction there, so it checks first and says what to do."""
    import errno
    import tempfile

    from lnq_napari import api
    from lnq_napari.cli import main

    peaks = {0: 0.95, 1: 0.5}
    ws, _ = _workspace(tmp_path, peaks)
    predictor = _FakePredictor(peaks)
    monkeypatch.setattr(api, "load_predictor", lambda path: predictor)
    make = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # as a read-only mount (chmod does not stop root)
        if dir is not None and Path(dir).resolve().is_relative_to(ws.root.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    before = {c: ws.versions(c) for c in ws.case_ids()}
    assert main(["next", "--workspace", str(ws.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"the workspace {ws.root} is read-only (Read-only file system)" in err
    assert "make it writable" in err
    assert predictor.calls == 0 and {c: ws.versions(c) for c in ws.case_ids()} == before
    monkeypatch.setattr(tempfile, "mkstemp", make)  # writable again: it ranks
    assert main(["next", "--workspace", str(ws.root)]) == 0 and predictor.calls == 2


def test_probability_blobs_are_numbered_in_lps_order_as_node_ids_are():
    """node_scores numbered its blobs in stored raster order: a feet-first copy of one map gave each blob
    another id. Numbered as node ids are (LPS order), each blob keeps its id."""
    from lnq_napari.active import node_scores

    p = np.zeros((10, 12, 12), np.float32)
    p[1:3, 8:10, 2:4] = 0.9  # lowest slice: id 1 in LPS order
    p[6:8, 2:4, 8:10] = 0.4
    lps = Volume(p, (0.7, 0.7, 2.5), (0.0, 0.0, 0.0))
    feet_first = Volume(p[::-1].copy(), (0.7, 0.7, 2.5), (0.0, 0.0, 22.5), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    ids = {row["id"]: row["peak"] for row in node_scores(lps)}
    assert ids == {row["id"]: row["peak"] for row in node_scores(feet_first)}
    assert ids[1] == pytest.approx(0.9)
