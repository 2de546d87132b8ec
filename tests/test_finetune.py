"""Fine-tuning from corrections: label states, split, registration, the activation verdict, resume, and
each FinetuneConfig switch doing what it says.

(Label states of corrections live in training.corrections; the orchestration in lnq_napari.finetuning.)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.finetuning import FinetuneResult, cross_fit_folds, finetune_workspace, split_cases
from lnq_napari.io.readers import read_volume, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.training.corrections import (
    correction_states,
    edited_voxels,
    grown_nodes,
    unconfirmed_components,
)
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

    def predict(self, ct, progress=None, cancel=None, prepared=None):
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


def test_correction_states_teach_what_the_brush_erased_from_a_kept_node():
    """Voxels erased from a node the reviewer kept (a spill into a vessel) are background farther than
    GROWN_LENIENCE_MM from every corrected node; nearer they stay unknown: the ring between a leaky node
    and its re-clicked outline, a gap erased to keep two touching nodes apart."""
    from lnq_napari.phantom import make_case
    from lnq_napari.training.corrections import GROWN_LENIENCE_MM

    shape = (8, 40, 40)
    case = make_case(2, shape=shape, spacing=(2.0, 2.0, 4.0))  # x, y 2 mm: fine against the 5 mm lenience
    nothing_ruled_out = np.zeros(shape, bool)  # the CT's own background aside: only the edits count
    z, y, x = 4, 20, 20
    prediction = np.zeros(shape, np.uint8)
    prediction[z, y - 1:y + 2, x - 6:x + 8] = 1  # one node spilling along x
    trimmed = prediction.copy()
    trimmed[z, y - 1:y + 2, x + 1:x + 8] = 0  # the spill erased with the brush
    erased = (prediction > 0) & (trimmed == 0)
    near = (np.abs(np.arange(shape[2]) - x) * 2.0 <= GROWN_LENIENCE_MM)[None, None, :]
    assert (erased & near).any() and (erased & ~near).any()
    states = correction_states(case.ct, case.ct.with_array(trimmed), case.ct.with_array(prediction),
                               background=nothing_ruled_out)
    assert (states[erased & ~near] == BACKGROUND).all()  # the spill: "no node here"
    assert (states[erased & near] == -1).all()  # beside the node: unknown, as before
    assert (states[trimmed > 0] == NODE).all()
    split = prediction.copy()
    split[z, y - 1:y + 2, x] = 0  # a gap erased to keep two touching nodes apart
    states = correction_states(case.ct, case.ct.with_array(split), case.ct.with_array(prediction),
                               background=nothing_ruled_out)
    assert (states[z, y - 1:y + 2, x] == -1).all()


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


def test_split_keeps_the_lineages_training_corrections_out_of_the_held_out_cases():
    cases = [f"case{k:02d}" for k in range(15)]
    _, first_val, _ = split_cases(cases[:10])
    trained = set(cases[:10]) - set(first_val)  # what the parent was fine-tuned on
    train, val, on_train = split_cases(cases, 0.2, trained)
    assert len(val) == 3 and not set(val) & trained and not on_train
    assert sorted(train + val) == cases
    # too few untouched cases: the parent's own training cases fill the held-out share
    _, val_all, _ = split_cases(cases[:10], 0.5, set(cases[:8]))
    assert set(cases[8:10]) <= set(val_all) and len(val_all) == 5


def test_cross_fit_folds_deal_the_cases_new_to_the_lineage_into_folds():
    cases = [f"case{k:02d}" for k in range(15)]
    trained = set(cases[:10])
    folds = cross_fit_folds(cases, 2, trained)
    assert len(folds) == 2 and sorted(folds[0] + folds[1]) == cases[10:]
    assert abs(len(folds[0]) - len(folds[1])) <= 1
    assert cross_fit_folds(list(reversed(cases)), 2, trained) == folds  # by case id, not by order
    assert [len(f) for f in cross_fit_folds(cases, 9, trained)] == [1] * 5  # at most one fold per case
    assert cross_fit_folds(cases, 2, set(cases[:14])) == []  # one new case: hold out as split_cases does
    assert cross_fit_folds(["a"], 2) == [] and cross_fit_folds(cases, 1) == []


def _recording_training(monkeypatch, fail_at: int | None = None) -> list[tuple[str, list[str]]]:
    """Patch the fine-tune's ``train_model`` to record (folder name, corrected case ids) per call; with
    ``fail_at``, that call (from 0) raises Cancelled once."""
    from lnq_napari.errors import Cancelled
    from lnq_napari.finetuning import workflow

    calls, real = [], workflow.train_model

    def train_model(cases, out_dir, *args, **kwargs):
        calls.append((Path(out_dir).name, sorted(c.case_id for c in cases if not c.replay)))
        if fail_at is not None and len(calls) == fail_at + 1:
            raise Cancelled("stopped by the test")
        return real(cases, out_dir, *args, **kwargs)

    monkeypatch.setattr(workflow, "train_model", train_model)
    return calls


def test_cross_fitting_judges_each_new_case_by_a_model_trained_without_it(tmp_path, dataset, parent_model,
                                                                          monkeypatch):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=3)
    by_origin = {ws.read_ct(c).origin: c for c in ws.corrected_cases()}
    predicted = []

    def factory(path, device):
        class Spy(_TruthPredictor):
            def predict(self, ct, progress=None, cancel=None, prepared=None):
                predicted.append((Path(path).name, by_origin.get(ct.origin)))
                return super().predict(ct, progress, cancel, prepared)
        return Spy(truth)

    trained = _recording_training(monkeypatch)
    config = FinetuneConfig(iterations=2, folds=2, mine_negatives=False)
    result = finetune_workspace(ws, config, device="cpu", predictor_factory=factory)
    corrected = sorted(ws.corrected_cases())
    assert len(result.folds) == 2 and sorted(c for f in result.folds for c in f) == corrected
    assert result.val_cases == corrected and result.train_cases == corrected
    assert result.figures["n_cases"] == 3.0 and "cross-fitted over 2 folds" in result.reason
    stored = ws.model_info("m002")["metrics"]["case_figures"]
    assert sorted(f["case_id"] for f in stored["candidate"]) == corrected
    assert [f["case_id"] for f in stored["parent"]] == [f["case_id"] for f in stored["original"]]
    assert trained[-1] == (".m002.training", corrected)  # the version trains on every correction
    for k, fold in enumerate(result.folds):
        folder = f".m002.fold{k + 1}"
        assert (folder, [c for c in corrected if c not in fold]) in trained
        assert sorted(c for name, c in predicted if name == folder) == fold
    assert not list(ws.models_dir.glob(".m002.*")) and not (ws.models_dir / "pending.json").exists()
    assert ws.model_info("m002")["metrics"]["folds"] == result.folds
    assert ws.model_info("m002")["corrected_cases"] == corrected
    assert ws.model_info("m002")["correction_versions"] == {  # which correction, when a case has several
        c: ws.latest_version(c, "correction")["version"] for c in corrected}


def test_an_interrupted_cross_fit_resumes_after_the_folds_already_judged(tmp_path, dataset, parent_model,
                                                                        monkeypatch):
    from lnq_napari.errors import Cancelled

    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=3)
    trained = _recording_training(monkeypatch, fail_at=1)  # the second fold's training stops
    config = FinetuneConfig(iterations=2, folds=2, mine_negatives=False)

    def factory(path, device):
        return _TruthPredictor(truth)

    with pytest.raises(Cancelled):
        finetune_workspace(ws, config, device="cpu", predictor_factory=factory)
    pending = json.loads((ws.models_dir / "pending.json").read_text())
    assert [f["case_id"] for f in pending["fold_figures"]] == pending["folds"][0]
    result = finetune_workspace(ws, device="cpu", resume=True, predictor_factory=factory)
    assert [name for name, _ in trained] == [".m002.fold1", ".m002.fold2", ".m002.fold2", ".m002.training"]
    assert result.figures["n_cases"] == 3.0 and result.folds == pending["folds"]
    assert not list(ws.models_dir.glob(".m002.*"))


def test_a_version_the_user_activates_while_it_trains_stays_active(tmp_path, dataset, parent_model):
    """The user decides in the end: a roll-back made (in another program) while the fine-tune trained
    is not undone by the rule; the new version is registered, not activated, and says why."""
    from lnq_napari.workspace import Workspace

    ws, truth = _workspace(tmp_path, dataset, parent_model)
    other = Workspace.open(ws.root)  # a second program on the same workspace

    def progress(fraction, message):
        if message.startswith("it ") and other.active_model() is not None:
            other.activate("bundled", reason="I prefer the bundled model", decided_by="user")

    result = finetune_workspace(ws, FinetuneConfig(iterations=3), device="cpu", progress=progress,
                                predictor_factory=lambda path, device: _TruthPredictor(truth))
    assert not result.activated and result.new_version == "m002"
    assert result.reason.startswith("the bundled model was made active while the fine-tune ran or was "
                                    "stopped, and that choice stands (the rule's verdict: activate")
    assert ws.active_model() is None and other.active_model() is None
    last = ws.journal("activate")[-1]
    assert last["version"] == "bundled" and last["decided_by"] == "user"
    assert ws.model_info("m002")["metrics"]["activated"] is False
    summary = next(m for m in ws.model_summaries() if m.version == "m002")
    assert summary.verdict == "activate" and not summary.active  # the rule's verdict; the user's choice
    assert ws.journal("finetune")[-1]["reason"] == result.reason


def test_finetune_registers_and_activates_when_not_worse(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    seen = []
    result = finetune_workspace(
        ws, FinetuneConfig(iterations=3), device="cpu", progress=lambda f, m: seen.append(f),
        predictor_factory=lambda path, device: _TruthPredictor(truth),
    )
    assert isinstance(result, FinetuneResult)
    assert result.activated and result.new_version == "m002"
    assert result.reason.startswith("activate") and "the parent is the original" in result.reason
    assert result.original == "m001" and result.figures["n_cases"] == 1.0
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
    assert entry["decided_by"] == "rule"
    activation = ws.journal("activate")[-1]
    assert activation["version"] == "m002" and activation["decided_by"] == "rule"
    assert activation["reason"] == result.reason
    stored = ws.model_info("m002")["metrics"]
    assert stored["reason"] == result.reason and stored["figures"] == result.figures
    assert stored["figures"]["candidate_dice"] == 1.0
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["metrics_after"]["node_f1"] == 1.0 and as_json["val_cases"] == result.val_cases
    assert as_json["config"]["iterations"] == 3
    assert not (ws.models_dir / "pending.json").exists()


def _own_data(tmp_path) -> tuple[Path, dict]:
    """Two labelled cases of the original model's own data (``forgetting_data``) and their complete
    truth by CT origin."""
    from lnq_napari.io.readers import read_labels
    from lnq_napari.phantom import write_dataset

    own = tmp_path / "own"
    write_dataset(own, 2, seed=31, shape=SHAPE, spacing=SPACING)
    checked = {}
    for k in (1, 2):
        ct = read_volume(own / f"lnq2023-train-000{k}-ct.nrrd")
        checked[ct.origin] = read_labels(own / f"lnq2023-train-000{k}-full.nrrd", reference=ct).array
    return own, checked


def test_a_version_that_forgets_the_original_s_own_data_is_refused(tmp_path, dataset, parent_model):
    """Perfect on the held-out corrections, blind on the original's own data (forgetting_data): the
    rule refuses it and says why; one that keeps both is activated, the original's check figures read
    from the workspace cache instead of predicted again."""
    own, checked = _own_data(tmp_path)
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    assert not set(checked) & set(truth)
    parent_path = ws.model_path("m001").resolve()
    built = []

    on_own_data = []  # the check cases the fine-tuned versions were predicted on

    class Forgetful(_TruthPredictor):
        def predict(self, ct, progress=None, cancel=None, prepared=None):
            on_own_data.append(ct.origin in checked)
            return super().predict(ct, progress, cancel, prepared)

    def forgetful(path, device):  # the candidate knows only the user's site
        built.append(Path(path).resolve())
        return _TruthPredictor({**truth, **checked}) if built[-1] == parent_path else Forgetful(truth)

    config = FinetuneConfig(iterations=2, forgetting_data=str(own))
    refused = finetune_workspace(ws, config, device="cpu", predictor_factory=forgetful)
    assert not refused.activated and ws.active_model()["id"] == "m001"
    # each check stops at the first case: Dice 0 there leaves at most a median of 0.5 (the second at
    # Dice 1) against the original's 1.0, a refusal whatever the second case gives
    assert refused.reason.startswith("refuse (median Dice on the original's own data at most -0.500 vs "
                                     "original (margin -0.009; 1 of 2 cases predicted))")
    assert (f"forgetting check on 2 cases of {own}: median Dice at most 0.500 vs original 1.000 (at most "
            "-0.500; 1 of 2 cases predicted)") in refused.reason
    assert refused.figures["forgetting_dice_vs_original"] == -0.5
    assert [f.dice for f in refused.case_figures["forgetting_original"]] == [1.0, 1.0]
    assert ws.model_info(refused.new_version)["metrics"]["figures"]["forgetting_cases"] == 2.0
    # the line from the parent's change (0) to the full step's (at most -0.5) meets the margin at an
    # alpha under every step's: the smallest step alone is tried
    assert refused.reason.endswith("stepped back toward m001, none passed (alpha 0.125: check at most "
                                   "-0.500 (refused; 1 of 2 cases predicted))")
    assert sum(on_own_data) == 2  # the full step and the step on the first case only
    assert len(refused.case_figures["forgetting_candidate"]) == 1
    assert refused.alpha is None and "step_back_alpha" not in refused.figures
    built.clear()  # another seed: other weights (the cache knows a model by its weights)
    kept = finetune_workspace(ws, config.replace(seed=1), device="cpu",
                              predictor_factory=lambda path, device: forgetful(path, device) and
                              _TruthPredictor({**truth, **checked}))
    assert kept.activated and "median Dice 1.000 vs original 1.000 (+0.000)" in kept.reason
    assert parent_path not in built  # the original's check figures came from the cache
    unchecked = finetune_workspace(ws, FinetuneConfig(iterations=2), device="cpu",
                                   predictor_factory=lambda path, device: _TruthPredictor(truth))
    assert unchecked.reason.endswith("no forgetting check (no cases of the original model's own data: "
                                     "set forgetting_data)")
    off = finetune_workspace(ws, FinetuneConfig(iterations=2, forgetting_cases=0, forgetting_data=str(own)),
                             device="cpu", predictor_factory=lambda path, device: _TruthPredictor(truth))
    assert off.activated and off.reason.endswith("; no forgetting check (forgetting_cases=0)")


def _own_check(candidate_dice: list[float], original_dice: list[float]):
    """Forgetting-check figures of a model on as many cases of the original's own data."""
    from lnq_napari.activation import CaseFigures, ForgettingFigures

    def own(dice):
        return tuple(CaseFigures(f"own{i}", d, 1, 1, 0, None) for i, d in enumerate(dice))

    return ForgettingFigures("own data", own(candidate_dice), own(original_dice))


def test_the_steps_back_start_where_the_check_s_change_meets_the_margin():
    """A line from the parent's change on the original's own data to the refused version's: a version
    just over the margin steps back three quarters of the way, one far over it an eighth, without the
    steps between; a parent already near the margin leaves less room; at most ``steps`` steps."""
    from lnq_napari.activation import ActivationRule, ForgettingFigures
    from lnq_napari.finetuning.posttrain import step_alphas

    rule, original = ActivationRule(), [0.95] * 4
    parent = _own_check(original, original)  # the original itself: change 0
    just_over = _own_check([0.94] * 4, original)  # -0.010 against the margin -0.009: reach 0.9
    assert step_alphas(parent, just_over, rule, 3) == [0.75, 0.5, 0.125]  # the smallest always last
    far_over = _own_check([0.90] * 4, original)  # -0.050: reach 0.18
    assert step_alphas(parent, far_over, rule, 3) == [0.125]
    assert step_alphas(_own_check([0.945] * 4, original), far_over, rule, 3) == [0.125]  # reach 0.09
    worn = _own_check([0.9425] * 4, original)  # the parent at -0.0075: reach (0.0015 / 0.0225) 0.067
    assert step_alphas(worn, _own_check([0.92] * 4, original), rule, 3) == [0.125]
    assert step_alphas(parent, _own_check([0.935] * 4, original), rule, 3) == [0.5, 0.25, 0.125]  # 0.6
    assert step_alphas(parent, just_over, rule, 2) == [0.75, 0.125]
    assert step_alphas(parent, _own_check([float("nan")] * 4, original), rule, 2) == [0.75, 0.125]
    # a parent beyond the margin already (activated by hand, say): only the smallest step, whichever way
    beyond = _own_check([0.94] * 4, original)  # -0.010
    assert step_alphas(beyond, _own_check([0.945] * 4, original), rule, 3) == [0.125]
    assert step_alphas(beyond, far_over, rule, 3) == [0.125]
    # a refused version whose check stopped early after two cases: its change is a bound (at most
    # -0.010) though the cases seen say -0.12; the smallest step is still tried last
    stopped = ForgettingFigures("own data", _own_check([0.78, 0.78], original).candidate,
                                parent.original)
    assert stopped.stopped_early and step_alphas(parent, stopped, rule, 3)[-1] == 0.125
    assert step_alphas(parent, far_over, rule, 0) == []


def test_a_refused_version_is_stepped_back_toward_its_parent_until_the_check_passes(
        tmp_path, dataset, parent_model, monkeypatch):
    """The full step forgets the original's own data (-0.5 against the parent's 0): the first step tried
    is an eighth of the way (where the line from the parent's change to the full step's meets the
    margin), it passes, is judged on the held-out cases too, registered and activated, and the reason
    says how; the check's cases are read once for the full step's check and the steps."""
    from lnq_napari.finetuning import forgetting

    own, checked = _own_data(tmp_path)
    reads = []
    monkeypatch.setattr(forgetting, "read_volume", lambda path: reads.append(path) or read_volume(path))
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    parent, tuned, seen = _weights(parent_model), {}, []

    def alpha_of(path: Path) -> float:
        """How far a model folder's weights lie from the parent's toward the fine-tuned ones."""
        if path.name.endswith(".candidate") and not tuned:  # first predicted: the fine-tuned weights
            tuned.update(_weights(path))
        if not tuned:  # mining negatives half-way through training
            return 1.0
        w = _weights(path)
        key = next(k for k in parent if not np.allclose(parent[k], tuned[k]))
        moved = tuned[key] - parent[key]
        return float(np.sum((w[key] - parent[key]) * moved) / np.sum(moved * moved))

    def factory(path, device):
        alpha = 0.0 if Path(path).resolve() == ws.model_path("m001").resolve() else alpha_of(Path(path))
        seen.append(round(alpha, 3))
        return _TruthPredictor({**truth, **checked} if alpha < 0.3 else truth)

    said = []
    result = finetune_workspace(ws, FinetuneConfig(iterations=3, lr=1e-2, forgetting_data=str(own)),
                                device="cpu", predictor_factory=factory, progress=lambda f, m: said.append(m))
    assert result.activated, (result.reason, seen)
    assert [m for m in said if m.startswith("stepping back")] == [
        "stepping back: the parent's forgetting check", "stepping back to alpha 0.125: forgetting check",
        "stepping back to alpha 0.125: held-out cases"]
    assert result.alpha == 0.125 and result.figures["step_back_alpha"] == 0.125
    assert result.reason.startswith("activate the step back to alpha 0.125 (w = 0.875 m001 + 0.125 "
                                    "fine-tuned; the full step: refuse (median Dice on the original's own "
                                    "data at most -0.500")
    assert "fine-tuned; the full step: refuse (" in result.reason
    assert "; alpha 0.125: check +0.000): activate: " in result.reason and "alpha 0.5" not in result.reason
    assert result.figures["forgetting_dice_vs_original"] == 0.0 and result.metrics_after.dice_mean == 1.0
    assert [f.dice for f in result.case_figures["forgetting_candidate"]] == [1.0, 1.0]
    assert seen.count(0.5) == 0 and seen.count(0.125) == 2  # the check, then the held-out cases
    assert len(reads) == 2 and len(set(reads)) == 2  # read once: for the full step's check and the step
    kept = _weights(ws.model_path(result.new_version))
    assert all(np.allclose(kept[k], 0.875 * parent[k] + 0.125 * tuned[k], atol=1e-6) for k in parent)
    assert ws.active_model()["id"] == result.new_version
    assert not list(ws.models_dir.glob(".m002*"))
    def forgets(path, device):  # every fine-tuned version forgets the original's own data
        return _TruthPredictor({**truth, **checked} if Path(path).resolve() == ws.model_path("m001").resolve()
                               else truth)

    off = finetune_workspace(ws, FinetuneConfig(iterations=3, lr=1e-2, forgetting_data=str(own), seed=1,
                                                fallback_steps=0), device="cpu", predictor_factory=forgets)
    assert not off.activated and "stepped back" not in off.reason


def test_a_version_judged_on_its_own_training_correction_is_not_activated(tmp_path, dataset, parent_model):
    """With one corrected case the version was judged on the case it trained on and activated."""
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=1)

    def factory(path, device):  # the new model is perfect on its training case: no evidence
        return _TruthPredictor(truth)

    result = finetune_workspace(ws, FinetuneConfig(iterations=2), device="cpu", predictor_factory=factory)
    assert result.validated_on_training and not result.activated and ws.active_model()["id"] == "m001"
    assert result.reason.startswith("validated on its own training correction (fewer than 2 corrected "
                                    "cases), which shows nothing about other cases: correct another case, "
                                    "or activate it by hand: refuse")
    assert ws.model_info(result.new_version)["metrics"]["reason"] == result.reason


def test_worse_validation_is_registered_but_not_activated(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=1)
    parent_path = ws.model_path("m001").resolve()

    def factory(path, device):  # the old model is perfect, the new one predicts nothing
        return _TruthPredictor(truth if Path(path).resolve() == parent_path else {})

    result = finetune_workspace(ws, FinetuneConfig(iterations=2), device="cpu", predictor_factory=factory)
    assert result.validated_on_training and "fewer than 2" in result.reason
    assert "1 training case" in result.reason and "held-out case" not in result.reason  # not held out
    assert not result.activated and result.reason.count("refuse") == 1 and "kept m001" in result.reason
    assert "thin evidence" in result.reason
    # "before" reuses m001's stored prediction (partial labels + a false node), not a new prediction
    assert 0.0 < result.metrics_before.dice_mean < 1.0 and result.metrics_after.dice_mean == 0.0
    assert ws.active_model()["id"] == "m001"
    stored = ws.model_info(result.new_version)["metrics"]
    assert stored["metrics_after"]["dice_mean"] == 0.0 and stored["reason"] == result.reason
    assert ws.journal("finetune")[-1]["activated"] is False
    assert not ws.journal("activate") or ws.journal("activate")[-1]["version"] == "m001"


def test_interrupted_finetune_resumes(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 4  # stops inside the training loop

    def factory(path, device):
        return _TruthPredictor(truth)

    with pytest.raises(Cancelled):
        finetune_workspace(ws, FinetuneConfig(iterations=6), device="cpu", cancel=cancel,
                           predictor_factory=factory)
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


def test_a_resume_that_fails_says_the_interrupted_run_is_discarded(tmp_path, dataset, parent_model):
    """`finetune --resume` over a staging folder whose weights were cut short said only "re-copy the model
    folder", though the failure discards the interrupted run: a plain finetune is what is left to do."""
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 4

    def factory(path, device):
        return _TruthPredictor(truth)

    with pytest.raises(Cancelled):
        finetune_workspace(ws, FinetuneConfig(iterations=6), device="cpu", cancel=cancel,
                           predictor_factory=factory)
    staging = Path(json.loads((ws.models_dir / "pending.json").read_text())["staging"])
    weights = staging / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(LNQError, match="interrupted fine-tune is discarded: run finetune without --resume"):
        finetune_workspace(ws, device="cpu", resume=True, predictor_factory=factory)
    assert not (ws.models_dir / "pending.json").exists()


def test_no_corrections_is_a_user_error(tmp_path, dataset, parent_model):
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", dataset)
    with pytest.raises(LNQError, match="no corrected cases"):
        finetune_workspace(ws, FinetuneConfig(iterations=1), device="cpu")


def test_a_correction_whose_file_was_deleted_is_named_not_dropped_without_a_word(tmp_path, dataset,
                                                                                  parent_model):
    from lnq_napari.finetuning.plan import make_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=3)
    case = ws.case_ids()[0]
    info = ws.latest_version(case, "correction")
    ws.label_path(case, info["version"]).unlink()  # by hand, in a file manager
    with pytest.warns(UserWarning, match=f"case {case}: the file of correction {info['version']} .* is gone"):
        plan = make_plan(ws, FinetuneConfig(), "cpu")
    assert case not in plan.train_cases + plan.val_cases and len(plan.train_cases + plan.val_cases) == 2


def test_api_next_then_finetune_with_a_real_predictor(tmp_path, dataset, parent_model, capsys):
    from lnq_napari import api
    from lnq_napari.cli import main
    from lnq_napari.io.readers import read_labels
    from lnq_napari.workspace import Workspace

    ws = api.init_workspace(tmp_path / "ws", dataset)
    ws.activate(ws.register_model(parent_model))
    rows = api.next_cases(ws.root, n=2)
    assert [r.rank for r in rows] == [1, 2]
    assert {"case", "score", "uncertain_nodes"} <= rows[0].to_dict().keys()
    assert rows[0].score >= rows[1].score
    assert len(ws.read_cache("scores-m001.json")) == 4  # every case scored and cached
    case = rows[0].case
    prediction = ws.latest_version(case, "prediction")
    assert prediction["model_version"] == "m001"
    ct = ws.read_ct(case)
    ws.add_label_version(case, read_labels(ws.full_path(case), reference=ct), "correction", edits=1)
    assert case not in [r.case for r in api.next_cases(ws.root, n=4, strategy="nodes")]
    assert api.next_cases(ws, n=np.int64(1))[0].case != case  # the Workspace init_workspace gave
    result = api.finetune(ws.root, iterations=2, device="cpu")
    assert result.new_version == "m002" and result.validated_on_training
    assert Workspace.open(ws.root).model_info("m002")["parent"] == "m001"
    assert result.activated == (ws.active_model()["id"] == "m002")
    for other in ws.case_ids():  # every case corrected: the CLI says so instead of an empty table
        if other != case:
            ws.add_label_version(other, read_labels(ws.full_path(other), reference=ws.read_ct(other)),
                                 "correction", edits=1)
    capsys.readouterr()
    assert main(["next", "--workspace", str(ws.root)]) == 0
    assert capsys.readouterr().out.startswith("nothing left to review: every case of the workspace has a")
    journal = (ws.root / "journal.jsonl").read_text()
    assert main(["next", "--workspace", str(ws.root), "-n", "0"]) == 2  # not "nothing left to review"
    assert capsys.readouterr().err.strip() == ("lnq-napari: error: the number of cases to rank must be a "
                                               "positive integer, got 0; use e.g. -n 5")
    assert (ws.root / "journal.jsonl").read_text() == journal


def test_rejected_suggestions_become_background_but_never_over_a_corrected_node():
    from lnq_napari.interact import Rejection, spot_mask
    from lnq_napari.phantom import make_case

    case = make_case(2, shape=SHAPE, spacing=SPACING)
    correction = np.zeros(SHAPE, np.uint8)
    correction[8:10, 30:33, 30:33] = 1
    corrected = case.ct.with_array(correction)
    plain = correction_states(case.ct, corrected)
    unknown = np.argwhere(plain == -1)
    spot = unknown[np.abs(unknown[:, 0] - 9) >= 4][0]  # soft tissue the rules leave unknown, off the node
    far, near = Rejection(tuple(int(v) for v in spot), 7.0), Rejection((9, 31, 31), 7.0)  # near: on the node
    states = correction_states(case.ct, corrected,
                               rejected=spot_mask([far, near], SHAPE, case.ct.spacing_zyx))
    box, ball = far.ball(SHAPE, case.ct.spacing_zyx)
    assert (states[box][ball] == BACKGROUND).all() and not (plain[box][ball] == BACKGROUND).all()
    assert (states[correction > 0] == NODE).all()
    away = np.ones(SHAPE, bool)
    for r in (far, near):
        b, m = r.ball(SHAPE, case.ct.spacing_zyx)
        away[b] &= ~m
    assert np.array_equal(states[away], plain[away])  # nothing changes outside the balls


def test_a_correction_s_rejections_reach_the_fine_tune_as_background_and_focus(tmp_path, dataset,
                                                                               parent_model):
    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.workflow import _correction_case
    from lnq_napari.interact import Rejection

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    case = ws.corrected_cases()[0]
    before = _correction_case(ws, make_plan(ws, FinetuneConfig(), "cpu"), case)
    correction = ws.latest_labels(case, "correction")
    unknown = np.argwhere((before.states == -1) & ~before.focus)
    rejection = Rejection(tuple(int(v) for v in unknown[len(unknown) // 2]), 7.0)
    ws.add_label_version(case, correction, "correction", model_version="m001", edits=4,
                         rejected=[rejection.to_dict()])
    after = _correction_case(ws, make_plan(ws, FinetuneConfig(), "cpu"), case)
    box, ball = rejection.ball(SHAPE, correction.spacing_zyx)
    assert (after.states[box][ball] == BACKGROUND).all()
    assert not (before.states[box][ball] == BACKGROUND).all()
    assert after.focus[box][ball].all() and not before.focus[box][ball].all()
    assert not (before.focus & ~after.focus).any()  # the edits stay focus too


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


def test_grown_nodes_are_those_the_reviewer_added_or_grew():
    prediction = np.zeros((6, 12, 12), np.uint8)
    prediction[1:3, 1:3, 1:3] = 1  # kept as predicted
    prediction[3:5, 5:8, 5:8] = 1  # kept, then grown
    prediction[0:2, 9:11, 9:11] = 1  # removed
    correction = prediction.copy()
    correction[0:2, 9:11, 9:11] = 0
    correction[3:5, 8, 5:8] = 1
    correction[1:3, 8:11, 1:3] = 1  # added
    grown = grown_nodes(correction, prediction)
    assert grown[3:5, 5:9, 5:8].all() and grown[1:3, 8:11, 1:3].all()
    assert grown.sum() == 2 * 4 * 3 + 2 * 3 * 2 and not grown[1:3, 1:3, 1:3].any()
    assert not grown_nodes(prediction, prediction).any()


def test_held_out_corrections_know_the_nodes_the_reviewer_added(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.validation import correction_and_grown

    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=1)
    case = ws.case_ids()[0]
    correction, grown = correction_and_grown(ws, case)
    original = ws.latest_labels(case, "original").array > 0
    added = (correction.array > 0) & ~original
    assert added.any() and grown[added].all()  # the nodes the correction adds to the partial labels
    assert not grown[original].any()  # the labelled nodes were predicted as they are
    reads = []
    read = ws.read_labels
    ws.read_labels = lambda c, v: reads.append(v) or read(c, v)
    again, grown_again = correction_and_grown(ws, case)  # the parent, the original, the candidate...
    assert len(reads) == 1 and np.array_equal(grown_again, grown)  # ...read the prediction once
    ws.read_labels = read
    other = ws.case_ids()[1]  # a correction made without any prediction: nothing is known grown
    ws.add_label_version(other, ws.latest_labels(other, "original"), "correction", edits=0)
    assert correction_and_grown(ws, other)[1] is None


# ---------------------------------------------------------------- the switches of FinetuneConfig
def _sha(path) -> str:
    from lnq_napari.model.checkpoint import read_config

    return read_config(path).weights_sha256


def _distance(a: dict, b: dict) -> float:
    return float(sum(((a[k].astype(np.float64) - b[k]) ** 2).sum() for k in a))


def test_dense_truth_makes_a_corrected_case_node_or_background(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.workflow import _correction_case

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    case = ws.corrected_cases()[0]
    correction = ws.latest_labels(case, "correction").array > 0
    dense = _correction_case(ws, make_plan(ws, FinetuneConfig(dense_truth=True), "cpu"), case)
    assert set(np.unique(dense.states)) <= {BACKGROUND, NODE}
    assert np.array_equal(dense.states == NODE, correction)
    partial = _correction_case(ws, make_plan(ws, FinetuneConfig(), "cpu"), case)
    assert (partial.states == -1).any()  # the label-state rules leave unknowns
    assert dense.focus is not None and np.array_equal(dense.focus, partial.focus)


def test_unconfirmed_components_are_the_predicted_ones_on_no_reviewed_node():
    prediction = np.zeros((6, 20, 20), bool)
    prediction[1:3, 2:5, 2:5] = True  # on a node
    prediction[1:3, 10:13, 10:13] = True  # on none
    prediction[4:6, 15:18, 2:4] = True  # on none
    nodes = np.zeros_like(prediction)
    nodes[2:4, 3:7, 3:7] = True
    found = unconfirmed_components(prediction, nodes)
    expected = prediction.copy()
    expected[1:3, 2:5, 2:5] = False
    assert np.array_equal(found, expected)
    assert not unconfirmed_components(np.zeros_like(prediction), nodes).any()


def test_mined_negatives_become_background_and_focus_half_way(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=3)
    parent_path = ws.model_path("m001").resolve()
    asked = []

    def factory(path, device):  # the half-trained model calls one more place a node on every CT
        asked.append(Path(path).resolve())
        if Path(path).resolve() == parent_path:
            return _TruthPredictor(truth)
        false_node = {}
        for origin, mask in truth.items():
            extra = mask.copy()
            extra[10:13, 40:44, 2:6] = 1
            false_node[origin] = extra
        return _TruthPredictor(false_node)

    config = FinetuneConfig(iterations=4, mine_negatives=True, replay_fraction=0.0)
    result = finetune_workspace(ws, config, device="cpu", predictor_factory=factory)
    assert result.mined_negatives == len(result.train_cases)  # one false component per training case
    staging = [p for p in asked if p != parent_path][0]
    assert staging.name != result.new_version  # mined with the half-trained model, before registering
    log = (ws.model_path(result.new_version) / "train_log.csv").read_text().splitlines()
    assert log[-1].startswith("4,")

    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.workflow import _correction_case, _with_negatives

    case = result.train_cases[0]
    plain = _correction_case(ws, make_plan(ws, FinetuneConfig(), "cpu"), case)
    mined = np.zeros(plain.states.shape, bool)
    mined[10:13, 40:44, 2:6] = True
    namesake = replace(plain, states=plain.states[:-1], replay=True)  # replay_data, same id
    taught, replayed = _with_negatives([plain, namesake], {case: mined})
    assert (taught.states[mined] == BACKGROUND).all() and taught.focus[mined].all()
    assert np.array_equal(taught.states[~mined], plain.states[~mined])
    assert replayed is namesake


def test_norm_first_leaves_frozen_weights_bit_identical(tmp_path, dataset, parent_model):
    from lnq_napari.model.checkpoint import load_checkpoint
    from lnq_napari.training.anchor import trainable_parameters

    ws, truth = _workspace(tmp_path, dataset, parent_model)
    result = finetune_workspace(ws, FinetuneConfig(iterations=3, lr=1e-2, trainable="norm_first"),
                                device="cpu", predictor_factory=lambda p, d: _TruthPredictor(truth))
    net, _ = load_checkpoint(parent_model)
    trained = {name for name, p in net.named_parameters() if any(p is q for q in
                                                                   trainable_parameters(net, "norm_first"))}
    assert any(n.startswith("encoders.0.") for n in trained)
    assert any(n.startswith("decoders") for n in trained)
    assert not any(n.startswith("head") for n in trained)
    old, new = _weights(parent_model), _weights(ws.model_path(result.new_version))
    frozen = [k for k in old if k not in trained]
    assert frozen and all(np.array_equal(old[k], new[k]) for k in frozen)
    assert any(not np.array_equal(old[k], new[k]) for k in trained)


def test_l2sp_keeps_weights_nearer_the_parent(tmp_path, dataset, parent_model):
    from lnq_napari.training.anchor import Anchor
    from lnq_napari.training.trainer import load_training_cases, train_model

    cases = load_training_cases(dataset, workers=1)[:1]
    config = {"train": {"lr": 1e-2, "warmup": 0}}
    distances = {}
    for weight in (0.0, 10.0):
        anchor = Anchor(str(parent_model), l2sp_weight=weight) if weight else None
        out = train_model(cases, tmp_path / f"l2sp-{weight}", 6, device="cpu", init_from=parent_model,
                          config=config, anchor=anchor)
        distances[weight] = _distance(_weights(out), _weights(parent_model))
    assert 0.0 < distances[10.0] < distances[0.0]


def test_l2sp_pulls_toward_the_lineages_original_not_the_parent(tmp_path, dataset, parent_model):
    import torch

    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.workflow import _anchor
    from lnq_napari.model.checkpoint import load_checkpoint
    from lnq_napari.training.anchor import Anchor, AnchorTerms
    from lnq_napari.training.trainer import load_training_cases, train_model

    cases = load_training_cases(dataset, workers=1)[:1]
    child = train_model(cases, tmp_path / "child", 3, device="cpu", init_from=parent_model,
                        config={"train": {"lr": 1e-2, "warmup": 0}})
    net, _ = load_checkpoint(child)
    at_parent = AnchorTerms(Anchor(str(child), l2sp_weight=1.0), net, torch.device("cpu"))
    at_original = AnchorTerms(Anchor(str(child), l2sp_weight=1.0, original=str(parent_model)), net,
                              torch.device("cpu"))
    x = torch.zeros(1, 1, 8, 32, 32)
    edited = torch.zeros_like(x, dtype=torch.bool)
    assert at_parent.loss(net, x, net(x), edited) == 0  # the child is its own parent
    assert at_original.loss(net, x, net(x), edited) > 0  # but has moved away from the original
    # a second-round fine-tune of a workspace anchors L2-SP to the root of the lineage
    ws, _ = _workspace(tmp_path, dataset, parent_model)  # m001 active
    ws.activate(ws.register_model(child, parent="m001"))
    anchor = _anchor(make_plan(ws, FinetuneConfig(l2sp_weight=1.0), "cpu"))
    assert anchor.parent == str(ws.model_path("m002")) and anchor.original == str(ws.model_path("m001"))
    # a lineage rooted in a bundled model this version no longer ships: the parent's weights instead
    ws.register_model(parent_model, parent="bundled-0123456789")
    ws.activate(ws.register_model(child, parent="m003"))
    assert _anchor(make_plan(ws, FinetuneConfig(l2sp_weight=1.0), "cpu")).original is None


def test_distillation_targets_the_parent_outside_the_edits(tmp_path, dataset, parent_model):
    import torch

    from lnq_napari.model.checkpoint import load_checkpoint
    from lnq_napari.training.anchor import Anchor, AnchorTerms

    net, _ = load_checkpoint(parent_model)
    terms = AnchorTerms(Anchor(str(parent_model), distill_weight=2.0), net, torch.device("cpu"))
    x = torch.randn(1, 1, 8, 32, 32)
    none = torch.zeros_like(x, dtype=torch.bool)
    with torch.no_grad():
        own = net(x)
    other = own + torch.randn_like(own)
    assert terms.loss(net, x, other, ~none) == 0  # every voxel edited: nothing to distil
    assert terms.loss(net, x, other, none) > terms.loss(net, x, own, none) > 0  # the parent's own is best
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    config = FinetuneConfig(iterations=2, distill_weight=1.0, replay_fraction=0.0)
    result = finetune_workspace(ws, config, device="cpu",
                                predictor_factory=lambda p, d: _TruthPredictor(truth))
    assert result.replay_cases == [] and result.config.distill_weight == 1.0
    assert ws.model_info(result.new_version)["metrics"]["config"]["distill_weight"] == 1.0


def test_interpolation_at_alpha_zero_reproduces_the_parent(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    parent_sha = _sha(parent_model)

    def factory(path, device):  # only the parent's weights predict anything (the stored predictions win)
        return _TruthPredictor({} if _sha(path) != parent_sha else truth)

    result = finetune_workspace(ws, FinetuneConfig(iterations=3, lr=1e-2, interpolate=True), device="cpu",
                                predictor_factory=factory)
    assert result.alpha == 0.0
    old, new = _weights(parent_model), _weights(ws.model_path(result.new_version))
    assert all(np.array_equal(old[k], new[k]) for k in old)
    assert ws.model_info(result.new_version)["metrics"]["alpha"] == 0.0


def test_interpolation_picks_alpha_on_the_validation_cases(tmp_path, dataset, parent_model):
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    parent_sha = _sha(parent_model)

    def factory(path, device):  # every interpolated model is perfect: the smallest alpha > 0 wins
        return _TruthPredictor(truth if _sha(path) != parent_sha else {})

    result = finetune_workspace(ws, FinetuneConfig(iterations=3, lr=1e-2, interpolate=True), device="cpu",
                                predictor_factory=factory)
    assert result.alpha == 0.25 and result.metrics_after.dice_mean == 1.0
    old, new = _weights(parent_model), _weights(ws.model_path(result.new_version))
    assert any(not np.array_equal(old[k], new[k]) for k in old)


def test_refit_writes_postprocessing_from_training_corrections_only(tmp_path, dataset, parent_model,
                                                                  monkeypatch):
    from lnq_napari.finetuning import posttrain
    from lnq_napari.model.checkpoint import load_state, read_config

    ws, truth = _workspace(tmp_path, dataset, parent_model)
    seen = []

    def spy(cases, *args, **kwargs):
        seen.extend(c.case_id for c in cases)
        return fit(cases, *args, **kwargs)

    fit = posttrain.fit_postprocessing
    monkeypatch.setattr(posttrain, "fit_postprocessing", spy)
    result = finetune_workspace(ws, FinetuneConfig(iterations=2, refit_postprocessing=True), device="cpu",
                                predictor_factory=lambda p, d: _TruthPredictor(truth))
    assert sorted(seen) == sorted(result.train_cases) and set(seen).isdisjoint(result.val_cases)
    post = result.postprocessing
    inference = read_config(ws.model_path(result.new_version)).inference
    assert (inference.threshold, inference.min_component_mm3) == (post.threshold, post.min_component_mm3)
    stored = ws.model_info(result.new_version)["metrics"]["postprocessing"]
    assert post.reason and stored["reason"] == post.reason
    load_state(ws.model_path(result.new_version))  # weights still match their recorded sha256


def test_original_model_is_the_root_of_the_lineage(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.validation import original_model
    from lnq_napari.model import resolve_model

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    ws.register_model(parent_model, parent="m001")
    ws.register_model(parent_model, parent="m002")
    assert original_model(ws, "m001") is None
    assert original_model(ws, "m003") == ("m001", ws.model_path("m001"))
    ws.register_model(parent_model, parent="bundled-0123456789")
    assert original_model(ws, "m004") == ("bundled-0123456789", Path(resolve_model(None)))


def test_lineage_corrections_are_those_of_the_version_and_its_ancestors(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.validation import lineage, lineage_corrections

    ws, _ = _workspace(tmp_path, dataset, parent_model)  # m001, the root
    ws.register_model(parent_model, parent="m001", corrected_cases=["a", "b"])
    ws.register_model(parent_model, parent="m002", corrected_cases=["a", "b", "c"])
    ws.register_model(parent_model, parent="m001", corrected_cases=["d"])  # another branch
    assert lineage(ws, "m003") == ["m003", "m002", "m001"]
    assert lineage_corrections(ws, "m003") == {"a", "b", "c"} and lineage_corrections(ws, "m004") == {"d"}
    assert lineage_corrections(ws, "bundled-0123456789") == set()


def test_held_out_figures_reuse_an_older_prediction_of_the_same_model(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.validation import case_figures, stored_prediction

    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=1)
    case = ws.case_ids()[0]
    first = stored_prediction(ws, case, "m001")
    ct = ws.read_ct(case)
    empty = ct.with_array(np.zeros(ct.shape, np.uint8))
    ws.add_label_version(case, empty, "prediction", model_version="m002")
    assert stored_prediction(ws, case, "m001") == first and stored_prediction(ws, case, "m009") is None
    # m001's own stored mask (with its false node) is scored, not the predictor's perfect one
    (stored,) = case_figures(_TruthPredictor(truth), ws, [case], stored_from="m001")
    (fresh,) = case_figures(_TruthPredictor(truth), ws, [case])
    assert stored.false_nodes == 1 and fresh.false_nodes == 0 and stored.dice < fresh.dice == 1.0


def test_held_out_figures_are_kept_per_model_weights_and_correction(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.validation import HELD_OUT_CACHE, version_figures

    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    cases = ws.case_ids()[:2]
    built = []

    def factory(path, device):
        built.append(Path(path).name)
        return _TruthPredictor(truth)

    first = version_figures(factory, None, parent_model, "cpu", ws, cases)
    assert built == [parent_model.name] and [f.dice for f in first] == [1.0, 1.0]
    assert len(ws.read_cache(HELD_OUT_CACHE)) == 2
    assert version_figures(factory, None, parent_model, "cpu", ws, cases) == first  # read, not predicted
    assert len(built) == 1
    # a new correction of one case: that case only is predicted again
    ct = ws.read_ct(cases[0])
    ws.add_label_version(cases[0], ct.with_array(np.zeros(ct.shape, np.uint8)), "correction", edits=1)
    again = version_figures(factory, None, parent_model, "cpu", ws, cases)
    assert len(built) == 2 and again[1] == first[1] and again[0].nodes_gt == 0
    # other weights (the same folder retrained): predicted again
    from lnq_napari.model.checkpoint import load_state, save_checkpoint

    other = tmp_path / "other"
    state, config = load_state(parent_model)
    save_checkpoint(other, {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, config)
    version_figures(factory, None, other, "cpu", ws, cases)
    assert built[-1] == "other" and len(built) == 3


def test_known_background_is_computed_once_per_ct_options_and_code(tmp_path, dataset, parent_model,
                                                                   monkeypatch):
    from lnq_napari.finetuning import reviewed
    from lnq_napari.model.config import StatesConfig
    from lnq_napari.training.labels import ct_background, label_states

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=1)
    ct = ws.read_ct(ws.case_ids()[0])
    first = reviewed.known_background(ws, ct)
    assert np.array_equal(first, ct_background(ct))
    labels = ws.latest_labels(ws.case_ids()[0], "original")
    assert np.array_equal(label_states(ct, labels, background=first), label_states(ct, labels))
    calls = []
    monkeypatch.setattr(reviewed, "ct_background", lambda c, o=None: calls.append(o) or ct_background(c, o))
    assert np.array_equal(reviewed.known_background(ws, ct), first) and calls == []  # from the cache
    reviewed.known_background(ws, ct, StatesConfig(low_hu=-50.0))  # other options: computed again
    other = ct.with_array(ct.array + 1)
    reviewed.known_background(ws, other)  # another CT: computed again
    assert len(calls) == 2 and len(list(ws.cache.folder.glob("background-*.npz"))) == 3
    monkeypatch.setattr(reviewed, "region_code", lambda *modules: "other code")  # a new release: again
    reviewed.known_background(ws, ct)
    assert len(calls) == 3 and len(list(ws.cache.folder.glob("background-*.npz"))) == 4


def test_set_settings_parse_by_type_and_fail_in_one_line(tmp_path, capsys):
    from lnq_napari.cli import main

    config = FinetuneConfig().with_settings(["dense_truth=true", "replay_data=none", "l2sp_weight=0.5",
                                             "iterations=7", "trainable=all"])
    assert (config.dense_truth, config.replay_data, config.l2sp_weight) == (True, None, 0.5)
    assert (config.iterations, config.trainable) == (7, "all")
    assert FinetuneConfig().with_settings(["replay_data=/data/lnq"]).replay_data == "/data/lnq"
    for bad, words in ((["colour=red"], "l2sp_weight"), (["lr=fast"], "float"),
                       (["dense_truth=maybe"], "bool"), (["trainable=half"], "norm_first"),
                       (["replay_fraction=2"], "0..1"), (["folds=0"], ">= 1"),
                       (["folds=3", "interpolate=true"], "folds=1"), (["forgetting_cases=-1"], ">= 0"),
                       (["fallback_steps=-1"], "fallback_steps must be >= 0"), (["warmup=-1"], "warmup must"),
                       (["lr=nan"], "lr must be a number > 0"), (["lr=inf"], "lr must be a number > 0"),
                       (["l2sp_weight=nan"], "l2sp_weight must be"),
                       (["distill_weight=inf"], "distill_weight must be"),
                       (["seed=-1"], "seed must be a whole number from 0"),
                       (["iterations"], "has no value; use KEY=VALUE, e.g. --set iterations=200")):
        with pytest.raises(LNQError, match=words):
            FinetuneConfig().with_settings(bad)
        assert main(["finetune", "--workspace", str(tmp_path), *[a for b in bad for a in ("--set", b)]]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err
    for bad in ({"iterations": 2.7}, {"seed": 0.5}, {"folds": True}):  # 2.7 iterations ran 2 in the API
        with pytest.raises(LNQError, match=f"{next(iter(bad))} must be a whole number"):
            FinetuneConfig(**bad)
    whole = FinetuneConfig(iterations=1e3, seed=1.0)  # whole numbers written as floats stay welcome
    assert (whole.iterations, whole.seed) == (1000, 1) and isinstance(whole.iterations, int)


def test_a_diverged_fine_tune_fails_in_one_line_and_leaves_no_version_or_plan(tmp_path, dataset, parent_model,
                                                                             capsys):
    """A learning rate that blows the weights up to NaN is a one-line error: no version registered (a
    model that predicts nothing would look like one with fewer false nodes), no pending plan for
    --resume to fail on again, no scratch folder."""
    from lnq_napari.cli import main

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    before = sorted(p.name for p in ws.models_dir.iterdir())
    assert main(["finetune", "--workspace", str(ws.root), "--device", "cpu", "--iterations", "2",
                 "--set", "lr=1e30", "--set", "forgetting_cases=0", "--set", "mine_negatives=false"]) == 2
    err = capsys.readouterr().err.strip()  # the progress bar, then the error
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("lnq-napari: error: training diverged at iteration")
    assert last.endswith("train again with a lower lr (this run: 1e+30)")
    assert sorted(p.name for p in ws.models_dir.iterdir()) == before and len(ws.models()) == 1
    assert ws.journal("finetune_discard")[-1]["reason"].startswith("failed: training diverged")
    assert main(["finetune", "--workspace", str(ws.root), "--resume"]) == 2
    assert "no interrupted fine-tune to resume" in capsys.readouterr().err


def test_a_missing_forgetting_data_folder_fails_before_anything_is_written(tmp_path, dataset, parent_model,
                                                                          capsys):
    from lnq_napari.cli import main

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    before = sorted(p.name for p in ws.models_dir.iterdir())
    missing = tmp_path / "nowhere"
    assert main(["finetune", "--workspace", str(ws.root), "--set", f"forgetting_data={missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"forgetting_data folder {missing} does not exist" in err
    assert sorted(p.name for p in ws.models_dir.iterdir()) == before and len(ws.models()) == 1


def test_a_pending_plan_of_an_older_format_is_discarded_not_resumed(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.plan import start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    staging = ws.models_dir / ".m007.training"
    staging.mkdir()
    (ws.models_dir / "pending.json").write_text(json.dumps({"version": "m007", "staging": str(staging),
                                                            "iterations": 200}))
    with pytest.raises(LNQError, match="older lnq-napari"):
        finetune_workspace(ws, device="cpu", resume=True)
    with pytest.warns(UserWarning, match=r"an interrupted fine-tune was discarded: .*finetune --resume"):
        plan = start_plan(ws, FinetuneConfig(iterations=5), "cpu")
    assert not staging.exists() and ws.journal("finetune_discard")[-1]["version"] == "m007"
    pending = json.loads((ws.models_dir / "pending.json").read_text())
    assert pending["config"]["iterations"] == 5 and pending["version"] == plan.version


def test_a_new_run_refused_for_its_settings_leaves_the_interrupted_one_to_resume(tmp_path, dataset,
                                                                                 parent_model):
    """A fine-tune whose settings or inputs are refused (a mistyped forgetting_data) discarded the
    interrupted run first: --resume then had nothing to resume. A new run that starts takes the
    interrupted one's version number."""
    from lnq_napari.finetuning.plan import resume_plan, start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    interrupted = start_plan(ws, FinetuneConfig(iterations=5), "cpu")
    with pytest.raises(LNQError, match="does not exist"):
        start_plan(ws, FinetuneConfig(forgetting_data=str(tmp_path / "typo")), "cpu")
    assert resume_plan(ws).version == interrupted.version and not ws.journal("finetune_discard")
    with pytest.warns(UserWarning, match="an interrupted fine-tune was discarded"):
        again = start_plan(ws, FinetuneConfig(iterations=6), "cpu")
    assert again.version == interrupted.version and again.config.iterations == 6


def test_models_and_next_say_an_interrupted_fine_tune_can_be_resumed_and_finetune_warns_as_it_discards(
        tmp_path, dataset, parent_model, capsys, monkeypatch):
    """An interrupted fine-tune went unmentioned by `workspace models` and `next`: a plain `finetune`,
    the obvious next command, discarded it."""
    import lnq_napari.finetuning.workflow as workflow
    from lnq_napari import api
    from lnq_napari.cli import main
    from lnq_napari.finetuning.plan import start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    assert api.interrupted_finetune(ws) is None
    assert main(["workspace", "models", str(ws.root)]) == 0 and "--resume" not in capsys.readouterr().out
    plan = start_plan(ws, FinetuneConfig(iterations=5), "cpu")  # a run killed after it started
    with ws.running_finetune():  # still running: its plan is no interrupted one
        assert api.interrupted_finetune(ws) is None
    assert api.interrupted_finetune(ws).version == plan.version
    for argv in (["workspace", "models", str(ws.root)], ["next", "--workspace", str(ws.root), "-n", "1"]):
        assert main(argv) == 0
        said = [line for line in capsys.readouterr().out.splitlines() if "interrupted fine-tune" in line]
        assert len(said) == 1 and f"({plan.version}, started " in said[0]
        assert f"lnq-napari finetune --workspace {ws.root} --resume" in said[0]

    heard_before_the_run = []

    def baseline(*args, **kwargs):
        heard_before_the_run.append(capsys.readouterr().err)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "_baseline", baseline)
    assert main(["finetune", "--workspace", str(ws.root)]) == 130
    assert "warning: an interrupted fine-tune was discarded" in heard_before_the_run[0]  # not at the end


def test_resume_with_other_settings_is_refused_not_silently_ignored(tmp_path, dataset, parent_model, capsys):
    from lnq_napari.cli import main
    from lnq_napari.finetuning.plan import start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    start_plan(ws, FinetuneConfig(iterations=5), "cpu")  # an interrupted run
    for extra in (["--iterations", "50"], ["--set", "lr=0.001"], ["--set", "iterations=200"]):  # a default
        assert main(["finetune", "--workspace", str(ws.root), "--resume", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "with the settings it started with" in err
    assert (ws.models_dir / "pending.json").is_file()


def test_resume_after_a_crash_between_registering_and_activating_says_how_to_finish(tmp_path, dataset,
                                                                                     parent_model):
    from lnq_napari.finetuning.plan import resume_plan, start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    plan = start_plan(ws, FinetuneConfig(iterations=5), "cpu")
    ws.register_model(parent_model, parent=plan.parent, version=plan.version,
                      metrics={"activated": True, "verdict": "activate"})
    with pytest.raises(LNQError, match=f"registered {plan.version}, which the rule activates, and stopped "
                                       f"before activating it: `lnq-napari workspace activate"):
        resume_plan(ws)
    assert not (ws.models_dir / "pending.json").exists()
    line, = ws.journal("finetune")  # the run stopped before its journal line: written from the registry
    assert (line["new_version"], line["parent"], line["activated"]) == (plan.version, plan.parent, True)
    with pytest.raises(LNQError, match="no interrupted"):
        resume_plan(ws)
    assert len(ws.journal("finetune")) == 1


def test_the_interrupted_line_offers_resume_only_for_a_plan_resume_continues(tmp_path, dataset, parent_model):
    """`workspace models` and `next` offered `--resume` for plans it refuses (damaged, a JSON list, an older
    one's, a finished one's, whose plan resume then deleted), and a start time no calendar holds raised
    OverflowError; a partial plan made --resume raise TypeError."""
    from lnq_napari import api
    from lnq_napari.finetuning.plan import resume_plan, start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    pending = ws.models_dir / "pending.json"
    plan = start_plan(ws, FinetuneConfig(iterations=5), "cpu")
    good = json.loads(pending.read_text())
    for text in ("{not json", "[]", json.dumps({"version": "m007", "started": 1.7e9}), '{"config": {}}',
                 json.dumps({**good, "train_cases": None, "staging": None})):
        pending.write_text(text)
        note = api.interrupted_finetune(ws).note()
        assert "cannot be resumed" in note and "--resume" not in note and "replaces it" in note, text
        with pytest.raises(LNQError, match="cannot be resumed"):
            resume_plan(ws)
    for started in (1e20, float("inf")):
        pending.write_text(json.dumps({**good, "started": started}, allow_nan=True))
        note = api.interrupted_finetune(ws).note()
        assert f"({plan.version}) can be continued with" in note and "--resume" in note
    pending.write_text(json.dumps(good))
    ws.register_model(parent_model, parent=plan.parent, version=plan.version)
    assert api.interrupted_finetune(ws) is None and pending.is_file()  # finished: said by nothing, kept


def test_an_interrupted_fine_tune_resumes_in_its_moved_workspace_on_the_device_asked_now(
        tmp_path, dataset, parent_model):
    """The plan keeps absolute paths and its device: a moved workspace's resume trained afresh at the old
    place, and a plan started on a GPU that is gone failed with 'use --device cpu', which --resume
    ignored, and the failure discarded the run; a run refused for its device discarded it too."""
    import shutil

    import torch

    from lnq_napari.finetuning.plan import resume_plan, start_plan
    from lnq_napari.workspace import Workspace

    ws, truth = _workspace(tmp_path, dataset, parent_model)
    plan = start_plan(ws, FinetuneConfig(iterations=2, forgetting_cases=0, mine_negatives=False), "cpu")
    pending = ws.models_dir / "pending.json"
    pending.write_text(pending.read_text().replace('"device": "cpu"', '"device": "cuda"'))
    Path(plan.staging).mkdir()
    shutil.move(ws.root, tmp_path / "moved")
    moved = Workspace.open(tmp_path / "moved")
    resumed = resume_plan(moved)
    assert Path(resumed.staging) == moved.models_dir / f".{plan.version}.training"
    assert Path(resumed.parent_path).parent == moved.models_dir
    if not torch.cuda.is_available():
        with pytest.raises(LNQError, match="no CUDA GPU"):
            finetune_workspace(moved, FinetuneConfig(iterations=3), device="cuda")
        assert (moved.models_dir / "pending.json").is_file()
    done = finetune_workspace(moved, device="cpu", resume=True,
                              predictor_factory=lambda path, device: _TruthPredictor(truth))
    assert done.new_version == plan.version and not (tmp_path / "ws").exists()
    assert not list(moved.models_dir.glob(".*.training"))


def test_a_damaged_plan_or_registry_is_one_line_and_a_new_run_replaces_the_plan(tmp_path, dataset,
                                                                                parent_model):
    """A pending plan or registry cut short (a crash while copying) gave JSONDecodeError's traceback and
    blocked every fine-tune until the file was deleted by hand."""
    from lnq_napari.finetuning.plan import start_plan

    ws, _ = _workspace(tmp_path, dataset, parent_model)
    (ws.models_dir / "pending.json").write_text('{"version": "m00')
    with pytest.raises(LNQError, match="pending.json is damaged, so it cannot be resumed; run finetune "
                                       "without --resume"):
        finetune_workspace(ws, device="cpu", resume=True)
    with pytest.warns(UserWarning, match="an interrupted fine-tune was discarded"):
        plan = start_plan(ws, FinetuneConfig(iterations=5), "cpu")
    assert json.loads((ws.models_dir / "pending.json").read_text())["version"] == plan.version
    registry = ws.models_dir / "registry.json"
    registry.write_text(registry.read_text()[:20])
    with pytest.raises(LNQError, match="registry.json is unreadable .*; restore it from a backup"):
        ws.model_summaries()


def test_a_ct_replaced_after_its_correction_is_named_with_what_to_do(tmp_path, dataset, parent_model):
    """The CT file of a corrected case replaced by a scan on another grid: the fine-tune said "labels of
    shape ... are not on the CT grid; align them first" (no case, and the labels were not at fault)."""
    import shutil

    from lnq_napari.io.readers import write_volume

    own = tmp_path / "data"  # the module's data set stays as it is
    shutil.copytree(dataset, own)
    ws, _ = _workspace(tmp_path, own, parent_model, n_corrected=1)
    case = ws.corrected_cases()[0]
    ct = ws.read_ct(case)
    from lnq_napari.io.volume import Volume

    shorter = Volume(ct.array[:-2], ct.spacing, ct.origin, ct.direction)  # another scan: two slices fewer
    write_volume(ws.ct_path(case), shorter)
    with pytest.raises(LNQError, match=rf"case {case}'s labels v003 and its CT are on different grids .*the "
                                       "CT file was replaced after the labels were saved"):
        finetune_workspace(ws, FinetuneConfig(iterations=2), device="cpu")


def test_cancel_pressed_during_the_last_prediction_registers_nothing(tmp_path, dataset, parent_model,
                                                                       monkeypatch):
    """Cancel while the verdict's last prediction ran: the version was registered and activated all the
    same (the widget's Cancel was still enabled). Now it is cancelled, its plan kept for --resume."""
    import threading

    from lnq_napari.errors import Cancelled
    from lnq_napari.finetuning import workflow

    ws, truth = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    pressed, judge = threading.Event(), workflow._verdict

    def judged_then_pressed(*args, **kwargs):
        out = judge(*args, **kwargs)
        pressed.set()  # after every prediction's own check of the cancel flag
        return out

    monkeypatch.setattr(workflow, "_verdict", judged_then_pressed)
    before = [m["id"] for m in ws.models()]
    with pytest.raises(Cancelled, match="before its version was registered; finetune --resume"):
        finetune_workspace(ws, FinetuneConfig(iterations=2), device="cpu", cancel=pressed.is_set,
                           predictor_factory=lambda path, device: _TruthPredictor(truth))
    assert [m["id"] for m in ws.models()] == before and (ws.models_dir / "pending.json").is_file()


def test_replay_comes_from_the_workspace_or_from_replay_data(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.workflow import _training_cases

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    own = make_plan(ws, FinetuneConfig(), "cpu")
    assert own.replay_cases and set(own.replay_cases).isdisjoint(ws.corrected_cases())
    assert make_plan(ws, FinetuneConfig(replay_fraction=0.0), "cpu").replay_cases == []
    other = make_plan(ws, FinetuneConfig(replay_data=str(dataset)), "cpu")
    assert len(other.replay_cases) == len(other.train_cases) == 1
    cases = _training_cases(ws, other)
    assert [c.replay for c in cases] == [False, True]
    assert cases[1].case_id == other.replay_cases[0] and (cases[1].states == NODE).any()
    # a replay folder's case that cannot be read is named as the replay folder's (the workspace has a case
    # of that id: the message read as if the workspace's own file were damaged)
    import shutil

    broken = Path(shutil.copytree(dataset, tmp_path / "replay"))
    seg = broken / f"{other.replay_cases[0]}-seg.nrrd"
    seg.write_bytes(seg.read_bytes()[:300])
    with pytest.raises(LNQError, match=rf"^replay_data {broken}: case {other.replay_cases[0]}: "):
        _training_cases(ws, replace(other, config=other.config.replace(replay_data=str(broken))))


def test_a_marked_node_is_unknown_around_a_core_of_node():
    from lnq_napari.interact import NodeMark, spot_mask
    from lnq_napari.phantom import make_case

    case = make_case(2, shape=SHAPE, spacing=SPACING)
    correction = np.zeros(SHAPE, np.uint8)
    correction[8:10, 30:33, 30:33] = 1
    corrected = case.ct.with_array(correction)
    background = np.argwhere(correction_states(case.ct, corrected) == BACKGROUND)
    spot = tuple(int(v) for v in background[np.abs(background[:, 0] - 9) >= 4][len(background) // 3])
    mark = NodeMark.at(spot, radius_mm=6.0)
    removed = correction.copy()
    box, ball = mark.ball(SHAPE, case.ct.spacing_zyx)
    removed[box] |= ball.astype(np.uint8)  # the reviewer removed a leaky component there, then marked it
    states = correction_states(case.ct, corrected, case.ct.with_array(removed), marks=[mark])
    core = spot_mask([mark], SHAPE, case.ct.spacing_zyx, part="core")
    assert (states[core] == NODE).all() and (states[box][ball & ~core[box]] == -1).all()
    assert (states[correction > 0] == NODE).all()


def test_a_correction_s_marks_reach_the_fine_tune_and_the_held_out_figures(tmp_path, dataset, parent_model):
    from lnq_napari.finetuning.plan import make_plan
    from lnq_napari.finetuning.validation import held_out_truth
    from lnq_napari.finetuning.workflow import _correction_case, _mined_negatives
    from lnq_napari.interact import NodeMark, spot_mask
    from lnq_napari.training.trainer import STATE_DIR

    ws, _ = _workspace(tmp_path, dataset, parent_model, n_corrected=2)
    case = ws.corrected_cases()[0]
    assert held_out_truth(ws, case).marked is None
    before = _correction_case(ws, make_plan(ws, FinetuneConfig(), "cpu"), case)
    correction = ws.latest_labels(case, "correction")
    far = np.argwhere((before.states == BACKGROUND) & ~before.focus)
    mark = NodeMark.at(far[len(far) // 2], radius_mm=15.0)
    ws.add_label_version(case, correction, "correction", model_version="m001", edits=4,
                         marked=[mark.to_dict()])
    plan = make_plan(ws, FinetuneConfig(), "cpu")
    after = _correction_case(ws, plan, case)
    ball = spot_mask([mark], SHAPE, correction.spacing_zyx)
    core = spot_mask([mark], SHAPE, correction.spacing_zyx, part="core")
    assert (after.states[core] == NODE).all() and (after.states[ball & ~core] == -1).all()
    assert after.focus[ball].all() and not (before.focus & ~after.focus).any()
    truth = held_out_truth(ws, case)
    assert np.array_equal(truth.marked, ball) and np.array_equal(truth.correction.array, correction.array)

    class Guess:  # a half-trained model: a guess in the mark's ball (off its core) and a false node
        def predict(self, ct, cancel=None, prepared=None):
            mask = np.zeros(SHAPE, np.uint8)
            mask[ball & ~core] = 1
            mask[0, :3, :3] = 1
            return SimpleNamespace(mask=ct.with_array(mask))

    (Path(plan.staging) / STATE_DIR).mkdir(parents=True)  # made by the first half of training
    mined = _mined_negatives(ws, plan, Path(plan.staging), [after], lambda path, device: Guess(), None)[case]
    assert ball.sum() > 10 and mined[0, :3, :3].all() and not mined[ball].any()  # the guess: not mined


def test_cli_finetune_writes_standard_json(tmp_path, dataset, parent_model, capsys, monkeypatch):
    """What `--json` writes is JSON other programs read (jq, JavaScript): an undefined figure is null."""
    import dataclasses
    import math

    from lnq_napari import api
    from lnq_napari.cli import main

    real = api.finetune

    def with_an_undefined_figure(*args, **kwargs):  # as when no held-out case has a surface to score
        result = real(*args, **kwargs)
        return dataclasses.replace(result, figures={**result.figures, "candidate_surface_dice": math.nan})

    monkeypatch.setattr(api, "finetune", with_an_undefined_figure)
    ws, _ = _workspace(tmp_path, dataset, parent_model)
    out = tmp_path / "finetune.json"
    assert main(["finetune", "--workspace", str(ws.root), "--device", "cpu", "--iterations", "2",
                 "--set", "forgetting_cases=0", "--set", "mine_negatives=false", "--json", str(out)]) == 0

    def refuse(constant):
        raise AssertionError(f"not standard JSON: {constant}")

    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # figures, the file, the verdict
    printed = json.loads(out.read_text(), parse_constant=refuse)
    assert printed["figures"]["candidate_surface_dice"] is None
    assert printed["new_version"] == ws.journal("finetune")[-1]["new_version"]


def test_the_prediction_a_correction_corrected_is_numbered_below_it(tmp_path):
    """A prediction `next` stored while a correction made on the original was written (same second,
    higher number) was taken as the prediction the reviewer corrected."""
    from lnq_napari.finetuning.reviewed import prediction_parent
    from lnq_napari.workspace import Workspace

    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd", Volume(np.zeros((4, 6, 6), np.int16)))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    case = ws.case_ids()[0]
    labels = Volume(np.zeros((4, 6, 6), np.uint8))
    original = ws.add_label_version(case, labels, "original")
    seen = ws.add_label_version(case, labels, "prediction", model_version="m001")
    correction = ws.add_label_version(case, labels, "correction", parent=original)
    ws.add_label_version(case, labels, "prediction", model_version="m002")  # above it, same second
    assert prediction_parent(ws, case, ws.version_info(case, correction))["version"] == seen


def test_the_result_shows_its_verdict_and_figures_not_every_field():
    """A notebook cell ending in ``api.finetune(...)`` showed ~3,000 characters (every figure, the config,
    per-case lists); now one line: the version, the verdict, the held-out figures and why."""
    from lnq_napari.finetuning.validation import ValidationMetrics

    parent = "lnq-unet-20261127-1053-356336d7+ft-20261127-1102-356336d7+ft-20261202-1521-ae70d27d"
    result = FinetuneResult(
        "m003", False, "refuse: vs parent: surface Dice -0.020", {"candidate_dice": 0.8}, parent, parent,
        ValidationMetrics(0.9, 0.85, 0.9, 0.5, ["a", "b"]),
        ValidationMetrics(0.8, 0.8, 0.75, 1.0, ["a", "b"]),
        ["a", "b", "c"], ["a", "b"], [], False, 50, None, None, FinetuneConfig(iterations=50), 12.0, 30.04)
    shown = repr(result)
    assert shown == ("FinetuneResult(m003 from lnq-unet 2026-11-27 10:53 +2 ft, not activated; held-out Dice "
                     "0.800 (parent 0.850), recall 0.75 (0.90), false nodes per case 1.00 (0.50) on 2 cases; "
                     "50 iterations in 30.0 s; why: refuse: vs parent: surface Dice -0.020)")


def test_the_result_says_when_no_case_was_held_out_and_names_the_bundled_parent_as_models_does():
    """With one corrected case the figures are its own training correction's, yet the line said "held-out
    Dice"; the bundled parent showed as its raw key where ``workspace models`` shows "bundled"."""
    from lnq_napari.finetuning.validation import ValidationMetrics
    from lnq_napari.model import bundled_model_path
    from lnq_napari.workspace.registry import bundled_key

    key = bundled_key(bundled_model_path())
    result = FinetuneResult(
        "m001", False, "validated on its own training correction", {}, key, key,
        ValidationMetrics(0.9, 0.85, 0.9, 0.5, ["a"]), ValidationMetrics(0.8, 0.8, 0.75, 1.0, ["a"]),
        ["a"], ["a"], [], True, 50, None, None, FinetuneConfig(iterations=50), 12.0, 30.04)
    shown = repr(result)
    assert shown.startswith("FinetuneResult(m001 from bundled, not activated; training-case Dice 0.800 "
                            "(parent 0.850), ") and "on 1 case (no held-out case); 50 iterations" in shown
    assert "held-out Dice" not in shown
    other_release = "bundled-0123456789"  # another release's bundled model keeps its key, as models shows it
    assert "from bundled-0123456789," in repr(dataclasses.replace(result, parent=other_release))


def test_a_refused_version_names_the_bundled_model_kept_active_as_workspace_models_does(tmp_path, dataset):
    """A fine-tune of the bundled model refused said "kept bundled-<hash> active", a name ``workspace
    models`` and ``workspace activate`` show as "bundled"."""
    from lnq_napari.io.readers import read_labels
    from lnq_napari.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws", dataset)
    case = ws.case_ids()[0]
    ct = ws.read_ct(case)
    full = read_labels(ws.full_path(case), reference=ct)
    ws.add_label_version(case, full, "correction", edits=3)

    def factory(path, device):
        return _TruthPredictor({ct.origin: full.array})

    result = finetune_workspace(ws, FinetuneConfig(iterations=1), device="cpu", predictor_factory=factory)
    assert not result.activated and ws.active_model() is None
    assert result.reason.endswith("; kept bundled active")


def test_the_progress_of_a_fine_tune_never_goes_back_and_names_the_pause_that_mines_false_nodes(
        tmp_path, dataset, parent_model):
    """Half-way through, the training paused to mine the model's false nodes (seconds with the bar still)
    and resumed by preparing its cases again at fraction 0: the Review tab's bar fell from 51 % to 18 %."""
    ws, truth = _workspace(tmp_path, dataset, parent_model)
    seen = []
    finetune_workspace(
        ws, FinetuneConfig(iterations=12), device="cpu", progress=lambda f, m: seen.append((f, m)),
        predictor_factory=lambda path, device: _TruthPredictor(truth),
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("false nodes" in m for _, m in seen)
