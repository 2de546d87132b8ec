"""Fine-tuning from corrections: label states, split, registration, the activation rule, resume.

(Label states of corrections live in training.corrections; the orchestration in lnq_napari.finetuning.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.finetuning import (
    FinetuneResult,
    ValidationMetrics,
    finetune_workspace,
    not_worse,
    split_cases,
)
from lnq_napari.io.volume import Volume
from lnq_napari.training.corrections import correction_states, edited_voxels
from lnq_napari.training.labels import BACKGROUND, NODE

SHAPE, SPACING = (16, 48, 48), (6.0, 6.0, 8.0)
TINY = {
    "architecture": {"kwargs": {"features": [4, 8, 16, 32]}},
    "preprocessing": {"target_spacing": [6.0, 6.0, 8.0]},
    "inference": {"patch_size": [8, 32, 32]},
    "train": {"patch_size": [8, 32, 32], "batch_size": 1, "warmup": 1},
}


@pytest.fixture(scope="module")
def torch_threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, torch_threads):
    from lnq_napari.phantom import write_dataset

    out = tmp_path_factory.mktemp("data")
    write_dataset(out, 4, seed=5, shape=SHAPE, spacing=SPACING)
    return out


@pytest.fixture(scope="module")
def parent_model(tmp_path_factory, dataset):
    from lnq_napari.training.trainer import load_training_cases, train_model

    cases = load_training_cases(dataset)[:1]
    out = tmp_path_factory.mktemp("m") / "parent"
    return train_model(cases, out, iterations=2, device="cpu", config=TINY)


@dataclass
class _Prediction:
    probabilities: Volume
    mask: Volume
    model_version: str = "fake"


class _TruthPredictor:
    """Predicts a fixed mask per CT (keyed by origin): the correction (perfect) or nothing (bad)."""

    def __init__(self, masks: dict) -> None:
        self.masks = masks

    def predict(self, ct, progress=None, cancel=None):
        mask = self.masks.get(ct.origin, np.zeros(ct.shape, np.uint8))
        return _Prediction(ct.with_array(mask.astype(np.float32)), ct.with_array(mask.astype(np.uint8)))


def _workspace(tmp_path, dataset, parent_model, n_corrected: int = 3):
    from lnq_napari.io.readers import read_labels
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", dataset)
    ws.activate(ws.register_model(parent_model, parent=None))
    truth = {}
    for case in ws.case_ids()[:n_corrected]:
        ct = ws.read_ct(case)
        original = ws.latest_labels(case, "original")
        pred = original.array.copy()
        pred[2:4, 20:24, 20:24] = 1  # a false node the reviewer removes
        ws.add_label_version(case, original.with_array(pred), "prediction", model_version="m001")
        full = read_labels(ws.full_path(case), reference=ct)
        ws.add_label_version(case, full, "correction", model_version="m001", edits=3)
        truth[ct.origin] = full.array
    return ws, truth


def _weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path / "weights.safetensors"))


def test_correction_states_mark_removed_and_added_nodes():
    from lnq_napari.phantom import make_case

    case = make_case(2, shape=SHAPE, spacing=SPACING)
    prediction = np.zeros(SHAPE, np.uint8)
    prediction[3:5, 10:14, 10:14] = 1  # removed by the reviewer
    prediction[8:10, 30:33, 30:33] = 1  # kept
    correction = np.zeros(SHAPE, np.uint8)
    correction[8:10, 30:33, 30:33] = 1
    correction[12:14, 20:23, 20:23] = 1  # added
    states = correction_states(case.ct, case.ct.with_array(correction), case.ct.with_array(prediction))
    assert (states[3:5, 10:14, 10:14] == BACKGROUND).all()
    assert (states[correction > 0] == NODE).all()
    assert states.dtype == np.int8 and states.shape == SHAPE
    no_pred = correction_states(case.ct, case.ct.with_array(correction))
    assert (no_pred[correction > 0] == NODE).all()


def test_correction_states_put_no_background_ring_around_kept_outlines():
    from lnq_napari.phantom import make_case
    from lnq_napari.training.labels import label_states

    case = make_case(2, shape=(24, 160, 160), spacing=(2.0, 2.0, 4.0))  # fine enough for a 3 mm ring
    corrected = case.ct.with_array((case.full.array > 0).astype(np.uint8))
    states = correction_states(case.ct, corrected)
    with_ring, without = label_states(case.ct, corrected), label_states(case.ct, corrected, ring_mm=0)
    ring_only = (with_ring == BACKGROUND) & (without != BACKGROUND)
    assert ring_only.any()  # an original annotation would get a ring there
    assert not (states[ring_only] == BACKGROUND).any()


def test_split_is_stable_and_never_empty():
    assert split_cases(["a"]) == (["a"], ["a"], True)
    train, val, on_train = split_cases(["c", "a", "b", "d", "e"])
    assert not on_train and len(val) == 1 and sorted(train + val) == ["a", "b", "c", "d", "e"]
    assert split_cases(["e", "d", "c", "b", "a"])[1] == val


def test_finetune_registers_and_activates_when_not_worse(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    seen = []
    result = finetune_workspace(
        ws, iterations=3, device="cpu", progress=lambda f, m: seen.append(f),
        predictor_factory=lambda path, device: _TruthPredictor(truth),
    )
    assert isinstance(result, FinetuneResult)
    assert result.activated and result.new_version == "m002"
    assert "not worse" in result.reason
    assert len(result.val_cases) == 1 and not result.validated_on_training
    assert set(result.train_cases).isdisjoint(result.val_cases)
    assert result.replay_cases == [ws.case_ids()[3]]  # the one uncorrected case replays its labels
    assert ws.active_model()["id"] == "m002" and ws.model_info("m002")["parent"] == "m001"
    new = ws.model_path("m002")
    assert not (new / "train_state").exists()
    old_w, new_w = _weights(parent_model), _weights(new)
    assert old_w.keys() == new_w.keys()
    assert any(not np.array_equal(old_w[k], new_w[k]) for k in old_w)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    entry = ws.journal("finetune")[-1]
    assert entry["new_version"] == "m002" and entry["activated"] and entry["f1_after"] == 1.0
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["metrics_after"]["node_f1"] == 1.0 and as_json["val_cases"] == result.val_cases
    assert not (ws.models_dir / "pending.json").exists()


def test_worse_validation_is_registered_but_not_activated(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=1)
    parent_path = ws.model_path("m001").resolve()

    def factory(path, device):  # the old model is perfect, the new one predicts nothing
        return _TruthPredictor(truth if Path(path).resolve() == parent_path else {})

    result = finetune_workspace(ws, iterations=2, device="cpu", predictor_factory=factory)
    assert result.validated_on_training and "fewer than 2" in result.reason
    assert not result.activated and "worse" in result.reason and "kept m001" in result.reason
    # "before" reuses m001's stored prediction (partial labels + a false node), not a new prediction
    assert 0.0 < result.metrics_before.node_f1 < 1.0 and result.metrics_after.node_f1 == 0.0
    assert result.metrics_after.dice_mean == 0.0
    assert ws.active_model()["id"] == "m001"
    assert ws.model_info(result.new_version)["metrics"]["after"]["dice_mean"] == 0.0
    assert ws.journal("finetune")[-1]["activated"] is False


def test_interrupted_finetune_resumes(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 4  # stops inside the training loop

    def factory(path, device):
        return _TruthPredictor(truth)

    with pytest.raises(Cancelled):
        finetune_workspace(ws, iterations=6, device="cpu", cancel=cancel, predictor_factory=factory)
    pending = json.loads((ws.models_dir / "pending.json").read_text())
    assert ws.active_model()["id"] == "m001" and [m["id"] for m in ws.models()] == ["m001"]
    assert (Path(pending["staging"]) / "train_state" / "state.pt").is_file()
    result = finetune_workspace(ws, device="cpu", resume=True, predictor_factory=factory)
    assert result.new_version == pending["version"] and result.iterations == 6
    log = (ws.model_path(result.new_version) / "train_log.csv").read_text().splitlines()
    assert log[-1].startswith("6,")
    assert [e["action"] for e in ws.journal() if e["action"].startswith("finetune")] == [
        "finetune_start", "finetune_resume", "finetune"]
    with pytest.raises(LNQError, match="nothing|no interrupted"):
        finetune_workspace(ws, device="cpu", resume=True, predictor_factory=factory)


def test_no_corrections_is_a_user_error(tmp_path, dataset, parent_model):
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", dataset)
    with pytest.raises(LNQError, match="no corrected cases"):
        finetune_workspace(ws, iterations=1, device="cpu")


def test_api_next_then_finetune_with_a_real_predictor(tmp_path, dataset, parent_model):
    from lnq_napari import api
    from lnq_napari.io.readers import read_labels
    from lnq_napari.workspace import Workspace

    ws = api.init_workspace(tmp_path / "ws", dataset)
    ws.activate(ws.register_model(parent_model))
    rows = api.next_cases(ws.root, n=2)
    assert [r["rank"] for r in rows] == [1, 2]
    assert {"case", "score", "uncertain_nodes"} <= rows[0].keys()
    assert rows[0]["score"] >= rows[1]["score"]
    assert len(ws.read_cache("scores-m001.json")) == 4  # every case scored and cached
    case = rows[0]["case"]
    prediction = ws.latest_version(case, "prediction")
    assert prediction["model_version"] == "m001"
    ct = ws.read_ct(case)
    ws.add_label_version(case, read_labels(ws.full_path(case), reference=ct), "correction", edits=1)
    assert case not in [r["case"] for r in api.next_cases(ws.root, n=4, strategy="nodes")]
    result = api.finetune(ws.root, iterations=2, device="cpu")
    assert result.new_version == "m002" and result.validated_on_training
    assert Workspace.open(ws.root).model_info("m002")["parent"] == "m001"
    assert result.activated == (ws.active_model()["id"] == "m002")


def _metrics(node_f1: float, dice_mean: float) -> ValidationMetrics:
    return ValidationMetrics(node_f1=node_f1, dice_mean=dice_mean, recall=1.0, fp_per_case=0.0, cases=["a"])


def test_activation_rule_uses_node_f1_with_a_dice_guard():
    before = _metrics(0.6, 0.8)
    assert not_worse(before, _metrics(0.7, 0.78))  # more nodes found, masks slightly off
    assert not_worse(before, _metrics(0.6, 0.8))  # a tie activates
    assert not not_worse(before, _metrics(0.5, 0.9))  # fewer nodes found
    assert not not_worse(before, _metrics(0.9, 0.7))  # much worse masks
    assert not_worse(before, _metrics(0.58, 0.8), tolerance=0.05)
    assert not_worse(_metrics(float("nan"), float("nan")), _metrics(0.0, 0.0))  # nothing to compare


def test_edited_voxels_are_what_the_reviewer_added_or_removed():
    prediction = np.zeros((6, 10, 10), np.uint8)
    prediction[1:3, 1:3, 1:3] = 1  # removed
    prediction[3:5, 5:8, 5:8] = 1  # kept, then grown
    correction = np.zeros_like(prediction)
    correction[3:5, 5:9, 5:9] = 1
    vol = Volume(prediction, spacing=(1.0, 1.0, 2.0))
    edited = edited_voxels(vol, vol.with_array(correction))
    assert edited.sum() == 8 + 2 * 7 and edited[1:3, 1:3, 1:3].all() and edited[3:5, 8, 5:9].all()
    assert not edited[3:5, 5:8, 5:8].any()
    assert edited_voxels(vol, vol) is None
