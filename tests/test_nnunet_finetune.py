"""The nnU-Net fine-tune in the workspace: with an nnU-Net version active, ``api.finetune`` holds out
validation corrections as our fine-tune does, exports the rest, trains through nnU-Net's trainer on the
CPU (2 iterations), judges candidate and parent on the held-out case with the activation rule, registers
the candidate (kind nnunet, parent, figures, verdict); ``workspace models / activate`` show it and roll
back; the new version loads in the backend, predicts on the CT grid and its weights moved from the
parent's; a half-written version and bad input are one-line errors with nothing changed. Needs nnunetv2
(the ``[nnunet]`` extra)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from lnq_napari import api  # noqa: E402
from lnq_napari.cli import main  # noqa: E402
from lnq_napari.errors import LNQError  # noqa: E402
from lnq_napari.finetuning.validation import ValidationMetrics, version_figures  # noqa: E402
from lnq_napari.io.readers import read_labels  # noqa: E402
from lnq_napari.model.config import FinetuneConfig  # noqa: E402
from lnq_napari.model.nnunet_folder import CHECKPOINT, NnunetOptions  # noqa: E402
from lnq_napari.nnunet.backend import NnUNetPredictor  # noqa: E402
from lnq_napari.nnunet.export import free_dataset_id  # noqa: E402
from lnq_napari.nnunet.finetune import NnUNetFinetune, _register  # noqa: E402
from lnq_napari.nnunet.select import load_predictor  # noqa: E402
from lnq_napari.workspace import Workspace  # noqa: E402

NAME = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _correct(ws: Workspace, case: str) -> None:
    """A prediction by m001 (the case's partial labels) and its correction (the complete truth)."""
    ws.add_label_version(case, ws.latest_labels(case, "original"), "prediction", model_version="m001")
    ws.add_label_version(case, read_labels(ws.full_path(case), reference=ws.read_ct(case)), "correction",
                         model_version="m001", edits=1)


@pytest.fixture(scope="module")
def finetuned(nnunet_model, tmp_path_factory) -> tuple[Workspace, NnUNetFinetune, list[float]]:
    """A workspace whose active model is the tiny nnU-Net model (m001), 2 corrected cases of 3 (one node
    each), after ``api.finetune`` (2 nnU-Net iterations on the CPU)."""
    data, folder = nnunet_model
    ws = Workspace.init(tmp_path_factory.mktemp("ws") / "ws", data)
    ws.activate(ws.register_model(folder), decided_by="user")
    for case in ws.case_ids()[1:]:  # the first phantom case has no node: replayed
        _correct(ws, case)
    steps: list[float] = []
    result = api.finetune(ws.root, iterations=2, device="cpu", progress=lambda f, m="": steps.append(f))
    return ws, result, steps


def test_finetune_registers_an_nnunet_version_judged_on_held_out_corrections(finetuned):
    ws, result, steps = finetuned
    assert isinstance(result, NnUNetFinetune) and steps == sorted(steps) and steps[-1] == 1.0
    assert (result.new_version, result.parent, result.original) == ("m002", "m001", "m001")
    corrected, replay = ws.case_ids()[1:], ws.case_ids()[:1]
    assert sorted(result.train_cases + result.val_cases) == corrected and not result.validated_on_training
    assert len(result.val_cases) == 1 and result.replay_cases == replay
    exported = json.loads((result.dataset / "dataset.json").read_text())["lnq_napari"]["cases"]
    assert exported == {result.train_cases[0]: "correction", replay[0]: "original"}  # no held-out case
    work = ws.root / "nnunet"  # the raw export is kept (provenance), nnU-Net's other copies are removed
    assert result.dataset == work / "nnUNet_raw" / "Dataset001_LNQfinetune"
    assert [p.name for p in (work / "nnUNet_preprocessed").iterdir()] == []
    assert [p.name for p in (work / "nnUNet_results").iterdir()] == []
    entry = ws.model_info("m002")
    assert entry["kind"] == "nnunet" and entry["parent"] == "m001"
    assert entry["path"] == f"models/m002/{NAME}" and result.model == ws.model_path("m002")
    assert sorted(entry["sha256"]) == ["dataset.json", "dataset_fingerprint.json",
                                       "fold_all/checkpoint_final.pth", "plans.json"]
    assert entry["training_cases"] == result.train_cases + replay and entry["dataset"] == str(result.dataset)
    assert result.version.startswith(f"nnunet:m002/{NAME}@")
    assert result.parent_version.startswith(f"nnunet:m001/{NAME}@")
    figures = result.figures
    assert figures["n_cases"] == 1.0 and {"candidate_surface_dice", "parent_recall"} <= set(figures)
    assert result.metrics_before.cases == result.val_cases == result.metrics_after.cases
    # m001's stored prediction of the held-out case is its complete truth: the candidate cannot beat it
    assert figures["parent_recall"] == 1.0 and figures["parent_surface_dice"] == 1.0
    assert not result.activated and result.reason.startswith("refuse")
    assert result.reason.endswith("; kept m001 active") and ws.active_model()["id"] == "m001"
    summary = next(m for m in api.list_models(ws.root) if m.version == "m002")
    assert (summary.kind, summary.verdict, summary.reason) == ("nnunet", "refuse", result.reason)
    assert summary.dice_parent == pytest.approx(figures["parent_dice"])
    line = ws.journal("finetune_nnunet")[-1]
    assert (line["new_version"], line["parent_id"], line["decided_by"]) == ("m002", "m001", "rule")
    assert (line["parent"], line["version"]) == (result.parent_version, result.version)


def _never(*args, **kwargs):
    raise AssertionError("a kept figure was predicted again")


def test_a_versions_held_out_figures_are_read_when_it_is_the_parent(finetuned):
    """The candidate's held-out figures are kept under its version and default prediction settings; its
    registered copy has the same key, so the next round reads them instead of predicting its cases."""
    from lnq_napari.model.checkpoint import figures_key

    ws, result, _ = finetuned
    read = version_figures(_never, "m002", ws.model_path("m002"), "cpu", ws, result.val_cases)
    assert repr(ValidationMetrics.from_figures(read)) == repr(result.metrics_after)
    assert None is not figures_key(ws.model_path("m002")) != figures_key(ws.model_path("m001"))


def test_a_version_whose_folder_is_missing_is_named_and_the_others_carry_on(finetuned, tmp_path, capsys):
    """The lineage's original moved or deleted: the next fine-tune failed with a TypeError traceback where it
    keyed the original's figures. It is listed with the others and named in one line (``workspace models``;
    activating it is refused so), and the next round judges against its stored predictions."""
    import shutil

    ws, result, _ = finetuned
    copy = Workspace.open(shutil.copytree(ws.root, tmp_path / "ws"))
    copy.activate("m002", decided_by="user")
    gone = copy.model_path("m001")
    shutil.rmtree(gone)
    assert main(["workspace", "models", str(copy.root)]) == 0
    out = capsys.readouterr().out
    note = f"m001: its model folder {gone} is missing (moved or deleted)"
    assert "m002" in out and sum(line.startswith(note) for line in out.splitlines()) == 1
    assert main(["workspace", "activate", str(copy.root), "m001"]) != 0
    err = capsys.readouterr().err.strip()
    assert f"model m001's folder {gone} is missing (moved or deleted)" in err and "\n" not in err
    with pytest.raises(LNQError, match=f"nnU-Net model folder {gone} does not exist"):  # nothing stored
        version_figures(load_predictor, None, copy.model("m001"), "cpu", copy, result.val_cases)
    third = api.finetune(copy.root, iterations=1, device="cpu")
    assert (third.new_version, third.parent, third.original) == ("m003", "m002", "m001")
    assert "vs original" in third.reason and copy.registry.check("m003")
    # a held-out case the original never predicted (m002 did): it must predict it, and says what to do
    case = copy.case_ids()[0]
    copy.add_label_version(case, copy.latest_labels(case, "original"), "prediction", model_version="m002")
    copy.add_label_version(case, copy.latest_labels(case, "original"), "correction", model_version="m002",
                           edits=1)
    with pytest.raises(LNQError) as caught:
        version_figures(_never, "m001", copy.model("m001"), "cpu", copy, [case, *result.val_cases],
                        role="the lineage's original")
    assert str(caught.value) == (
        f"the lineage's original m001 is needed to judge the new version on held-out case {case}, which it "
        f"never predicted, but its model folder {gone} is missing (moved or deleted); put it back there, "
        "then fine-tune again")


def test_the_parents_dataset_json_is_read_as_utf_8_whatever_the_locale(tmp_path, monkeypatch):
    """A parent's label named in another script (``lymph_node_站7``): the fresh-output warning read
    dataset.json in the locale's encoding, a traceback on a non-UTF-8 locale after the labels had
    passed the check (which reads UTF-8)."""
    import pathlib

    from lnq_napari.nnunet.finetune import _warn_fresh_output

    labels = {"background": 0, "lymph_node_站7": 1, "aorta": 2}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}, ensure_ascii=False),
                                           encoding="utf-8")
    read = pathlib.Path.read_text
    monkeypatch.setattr(pathlib.Path, "read_text",  # an ASCII locale's default
                        lambda self, encoding=None, errors=None: read(self, encoding or "ascii", errors))
    with pytest.warns(UserWarning, match="the parent's labels \\(background, lymph_node_站7, aorta\\)"):
        _warn_fresh_output(tmp_path)


def test_the_nnunet_version_predicts_on_the_ct_grid_and_its_weights_moved(finetuned, odd_grid_ct):
    """The registered folder loads in the backend (nnU-Net's fold "all", the version the fine-tune
    reported), predicts on a CT grid unlike the training one, and its weights are not the parent's."""
    import torch

    ws, result, _ = finetuned
    assert result.corrected_cases == ws.case_ids()[1:]
    predictor = NnUNetPredictor(result.model, device="cpu", mirroring=False)
    assert predictor.version == result.version and predictor.model.folds == ("all",)
    pred = predictor.predict(odd_grid_ct)
    assert pred.probabilities.same_grid(odd_grid_ct) and pred.mask.same_grid(odd_grid_ct)

    def weights(path: Path) -> dict:
        return torch.load(path / "checkpoint_final.pth", weights_only=False)["network_weights"]

    before, after = weights(ws.model_path(result.parent) / "fold_0"), weights(result.model / "fold_all")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    # the output layers too start from the parent's (nnU-Net's pretraining route draws them afresh):
    # two iterations move them a little, a fresh draw is as far from them as they are large
    for key in (k for k in before if ".seg_layers." in k and k.endswith(".weight")):
        assert torch.linalg.norm(after[key] - before[key]) < 0.2 * torch.linalg.norm(before[key]), key


def test_workspace_models_activate_roll_back_and_predict_with_the_nnunet_version(finetuned, capsys):
    ws, result, _ = finetuned
    root = str(ws.root)
    assert main(["workspace", "models", root]) == 0
    out = capsys.readouterr().out
    assert "m002" in out and f"m002: {result.reason}" in out
    assert main(["workspace", "activate", root, "m002"]) == 0
    assert "active model: m002 (was m001)" in capsys.readouterr().out
    rows = api.next_cases(root, n=1, strategy="random")  # predicts the uncorrected case with m002
    case = rows[0].case
    stored = ws.latest_version(case, "prediction")
    assert stored["model_version"] == "m002"
    assert ws.read_labels(case, stored["version"]).same_grid(ws.read_ct(case))
    assert main(["workspace", "activate", root, "m001"]) == 0
    assert ws.active_model()["id"] == "m001"
    assert [(e["version"], e["decided_by"]) for e in ws.journal("activate")][-2:] == [("m002", "user"),
                                                                                      ("m001", "user")]


def test_cli_finetune_routes_to_nnunet_and_prints_the_verdict(finetuned, monkeypatch, capsys):
    """``lnq-napari finetune`` with an nnU-Net version active runs the nnU-Net fine-tune (stood in for by
    the finished one) with the workspace defaults, and prints its result with the rule's reason."""
    from lnq_napari.nnunet import finetune as module

    ws, result, _ = finetuned
    calls = []
    monkeypatch.setattr(module, "finetune_nnunet", lambda *a, **k: calls.append((a, k)) or result)
    out = ws.root.parent / "finetune.json"
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "3", "--device", "cpu",
                 "--json", str(out)]) == 0
    (args, kwargs), = calls
    assert args[1:] == (None, None, None) and kwargs["iterations"] == 3  # active parent, W/nnunet, free id
    # what the user sees: the key figures, the verdict (it printed a ~200-line JSON first), where the JSON is
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("held-out Dice ") and "false nodes per case" in lines[0]
    assert lines[1] == f"m002 registered, not activated: {result.reason}"
    assert lines[-1] == f"all figures written to {out}"
    printed = json.loads(out.read_text())  # every figure, for programs
    assert printed["new_version"] == "m002" and printed["reason"] == result.reason
    assert printed["activated"] is False and printed["model"] == str(result.model)


def test_the_rule_activates_a_registered_candidate_and_says_so(finetuned):
    """What follows an "activate" verdict: registered with the rule's reason, activated by the rule."""
    ws, result, _ = finetuned
    yes = dataclasses.replace(result, activated=True, reason="activate: vs parent: ...")
    done = _register(ws, yes, 0.0, ws.prediction_model()[1])
    assert done.new_version == "m003" and ws.active_model()["id"] == "m003"
    assert ws.journal("activate")[-1]["decided_by"] == "rule"
    assert next(m for m in api.list_models(ws) if m.version == "m003").verdict == "activate"
    api.activate_model(ws, "m001")


def test_a_model_the_user_activates_while_an_nnunet_finetune_runs_stays_active(finetuned):
    """An "activate" verdict does not undo the user's roll-back made while the fine-tune ran."""
    ws, result, _ = finetuned
    before = (ws.active_model() or {}).get("id", "bundled")
    at_start = ws.prediction_model()[1]
    api.activate_model(ws, "bundled")  # the user, meanwhile
    yes = dataclasses.replace(result, activated=True, reason="activate: vs parent: ...")
    done = _register(ws, yes, 0.0, at_start)
    assert not done.activated and ws.active_model() is None
    assert done.reason.startswith("the bundled model was made active while the fine-tune ran or was stopped, "
                                  "and that choice stands (the rule's verdict: activate")
    assert ws.model_info(done.new_version)["metrics"]["activated"] is False
    assert next(m for m in api.list_models(ws) if m.version == done.new_version).verdict == "activate"
    api.activate_model(ws, before)


def test_a_refusal_after_the_user_activated_another_model_does_not_say_the_parent_was_kept(finetuned):
    """The verdict, the registry and the journal said "kept m001 active" while the user's choice was."""
    ws, result, _ = finetuned
    before = (ws.active_model() or {}).get("id", "bundled")
    at_start = ws.prediction_model()[1]
    api.activate_model(ws, "bundled")  # the user, meanwhile
    no = dataclasses.replace(result, activated=False, reason=f"refuse (recall ...): vs parent: ...; kept "
                                                             f"{before} active; no forgetting check (...)")
    done = _register(ws, no, 0.0, at_start)
    assert not done.activated and ws.active_model() is None and "kept" not in done.reason
    assert done.reason == ("refuse (recall ...): vs parent: ...; the bundled model was made active while the "
                           "fine-tune ran or was stopped and stays active; no forgetting check (...)")
    api.activate_model(ws, before)


def test_the_forgetting_check_scores_nnunet_versions_on_forgetting_data(finetuned, nnunet_model):
    """An nnU-Net lineage has no default check cases; with forgetting_data the candidate and the original
    predict through the nnU-Net backend, and their figures are kept under each folder's version and
    default prediction settings: a second check predicts nothing."""
    from lnq_napari.finetuning.forgetting import CACHE, forgetting_figures
    from lnq_napari.model.checkpoint import figures_key
    from lnq_napari.nnunet.select import load_predictor

    ws, result, _ = finetuned
    data, _ = nnunet_model
    root = ("m001", ws.model_path("m001"))
    assert forgetting_figures(load_predictor, result.model, *root, "cpu", FinetuneConfig(), ws) is None
    config = FinetuneConfig(forgetting_data=str(data), forgetting_cases=2)
    before = set(ws.read_cache(CACHE))
    checked = forgetting_figures(load_predictor, result.model, *root, "cpu", config, ws)
    ids = [f.case_id for f in checked.candidate]
    assert ids == [f.case_id for f in checked.original] == ws.case_ids()[:2]
    assert checked.source == f"2 cases of {data}"
    assert all(f.nodes_gt == g.nodes_gt for f, g in zip(checked.candidate, checked.original, strict=True))
    kept = {entry.split("|")[0] for entry in set(ws.read_cache(CACHE)) - before}
    assert kept <= {figures_key(result.model), figures_key(root[1])} and figures_key(root[1]) in (
        kept | {entry.split("|")[0] for entry in before})

    again = forgetting_figures(_never, result.model, *root, "cpu", config, ws)
    assert repr(again) == repr(checked)  # NaN surface Dice: equal figures, not ==


def test_a_half_written_nnunet_version_is_refused_in_one_line(finetuned, capsys):
    ws, _, _ = finetuned
    (ws.model_path("m003") / "fold_all" / "checkpoint_final.pth").unlink()
    before = ws.registry.file.read_bytes()
    assert main(["workspace", "activate", str(ws.root), "m003"]) == 2
    err = capsys.readouterr().err.strip()
    assert "incomplete" in err and "fold_all/checkpoint_final.pth" in err and "\n" not in err
    assert ws.registry.file.read_bytes() == before and ws.active_model()["id"] == "m001"


def test_bad_input_is_a_one_line_error_with_nothing_written(nnunet_model, tmp_path, capsys):
    data, folder = nnunet_model
    bare = Workspace.init(tmp_path / "bare", data)
    assert main(["finetune-nnunet", "--workspace", str(bare.root), "--model", f"nnunet:{folder}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no corrected cases" in err and "\n" not in err
    assert bare.models() == [] and not (bare.root / "nnunet").exists()
    _correct(bare, bare.case_ids()[0])
    with pytest.raises(LNQError, match="not an nnU-Net model"):  # the bundled model is active
        api.finetune_nnunet(bare.root)
    for bad in ({"iterations": 0}, {"epochs": 0}, {"iterations": 2.5}):  # nnU-Net failed after 30 s
        with pytest.raises(LNQError, match=r"^(\w+) must be a whole number of at least 1 .* \(--\1 on the "
                                           r"command line\)$"):
            api.finetune_nnunet(bare.root, **bad)
    assert not (bare.root / "nnunet").exists()
    bare.activate(bare.register_model(folder), decided_by="user")
    with pytest.raises(LNQError, match="lr apply to lnq-napari models only"):
        api.finetune(bare.root, config=FinetuneConfig(lr=1e-3))
    with pytest.raises(LNQError, match="--resume"):
        api.finetune(bare.root, resume=True)
    with pytest.raises(LNQError, match="forgetting_data folder .* does not exist"):
        api.finetune(bare.root, config=FinetuneConfig(forgetting_data=str(tmp_path / "nowhere")))
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    with pytest.raises(LNQError, match="--work .*afile is a file"):  # it was reported as --out .../nnUNet_raw
        api.finetune_nnunet(bare.root, work=a_file)
    assert [m["id"] for m in bare.models()] == ["m001"] and not (bare.root / "nnunet").exists()


def test_a_free_dataset_id_is_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.delenv("nnUNet_results", raising=False)
    assert free_dataset_id(tmp_path / "raw") == 1
    for folder in ("raw/Dataset001_A", "pre/Dataset002_B", "raw/.Dataset003_C.partial-1"):
        (tmp_path / folder).mkdir(parents=True)
    assert free_dataset_id(tmp_path / "raw", tmp_path / "pre") == 3


@pytest.mark.parametrize("stop", ["cancel", "fail"])
def test_a_cancelled_or_failed_finetune_leaves_nothing_a_rerun_meets(nnunet_model, tmp_path, monkeypatch,
                                                                     stop):
    """Training stood in for: it writes nnU-Net's preprocessed and results folders, then is cancelled or
    fails; the dataset id's raw, preprocessed and results folders are removed, nothing is registered, and
    a rerun with the same id (given or the lowest free one) is not refused."""
    from lnq_napari.errors import Cancelled
    from lnq_napari.nnunet import finetune as module

    data, folder = nnunet_model
    ws = Workspace.init(tmp_path / "ws", data)
    ws.activate(ws.register_model(folder), decided_by="user")
    for case in ws.case_ids()[1:]:
        _correct(ws, case)
    seen = []

    def train_fold(dataset, pre, results, **_):
        seen.append(Path(dataset).name)
        assert (Path(pre) / Path(dataset).name / "nnUNetPlans.json").is_file() and Path(dataset).is_dir()
        (Path(results) / Path(dataset).name / NAME / "fold_all").mkdir(parents=True)
        raise Cancelled("training cancelled") if stop == "cancel" else LNQError("training failed")

    monkeypatch.setattr(module, "train_fold", train_fold)
    for dataset_id in (None, 1):
        with pytest.raises(Cancelled if stop == "cancel" else LNQError, match="training"):
            api.finetune_nnunet(ws.root, dataset_id=dataset_id, iterations=2, device="cpu")
        work = ws.root / "nnunet"
        assert [p for p in work.rglob("*") if p.name.startswith(("Dataset", ".Dataset"))] == []
    assert seen == ["Dataset001_LNQfinetune"] * 2
    assert [m["id"] for m in ws.models()] == ["m001"] and ws.journal("finetune_nnunet") == []
    (ws.root / "nnunet" / "nnUNet_results" / "Dataset001_Mine").mkdir(parents=True)
    with pytest.raises(LNQError, match="dataset id 1 is already in use"):  # not this run's to remove
        api.finetune_nnunet(ws.root, dataset_id=1, device="cpu")


def test_what_a_killed_finetune_left_is_removed_by_the_next(nnunet_model, tmp_path, monkeypatch):
    """kill -9 (or SIGTERM) during a fine-tune left its exported, preprocessed and results datasets in the
    workspace's nnunet folder for good (gigabytes on real data); the next fine-tune there removes them
    (it holds the workspace's fine-tune lock, so no other runs) and takes the freed id; another dataset
    is left alone."""
    from lnq_napari.errors import Cancelled
    from lnq_napari.nnunet import finetune as module

    data, folder = nnunet_model
    ws = Workspace.init(tmp_path / "ws", data)
    ws.activate(ws.register_model(folder), decided_by="user")
    for case in ws.case_ids()[1:]:
        _correct(ws, case)
    work = ws.root / "nnunet"
    left = [work / "nnUNet_raw" / "Dataset001_LNQfinetune",
            work / "nnUNet_preprocessed" / "Dataset001_LNQfinetune",
            work / "nnUNet_results" / "Dataset002_LNQfinetune",
            work / "nnUNet_raw" / ".Dataset003_LNQfinetune.partial-9"]
    for leftover in left:
        (leftover / "x").mkdir(parents=True)
    mine = work / "nnUNet_results" / "Dataset007_Mine"
    mine.mkdir(parents=True)
    trained_on = work / "nnUNet_raw" / "Dataset004_LNQfinetune"  # a finished round's export: kept
    (trained_on / "x").mkdir(parents=True)
    ws.register_model(folder, parent="m001", dataset=str(trained_on))
    seen = []

    def train_fold(dataset, pre, results, **_):
        seen.append(Path(dataset).name)
        raise Cancelled("training cancelled")

    monkeypatch.setattr(module, "train_fold", train_fold)
    with pytest.raises(Cancelled):
        api.finetune_nnunet(ws.root, iterations=2, device="cpu")
    assert seen == ["Dataset001_LNQfinetune"] and not any(p.exists() for p in left) and mine.is_dir()
    assert (trained_on / "x").is_dir()  # the next round removed an earlier version's export, then took its id


def _network(folder: Path, fold: str) -> dict:
    import torch

    return torch.load(folder / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                      weights_only=False)["network_weights"]


def test_a_step_holds_the_parent_and_fine_tuned_weights_mixed(finetuned, tmp_path):
    """A step back's writer: a model folder of its own whose fold checkpoint holds 0.75 parent + 0.25
    fine-tuned network weights (the rest of the checkpoint kept); written into the trained folder, in
    place; none for a parent whose network differs."""
    import shutil

    from lnq_napari.model.nnunet_folder import open_model
    from lnq_napari.nnunet.finetune import _stepping

    ws, result, _ = finetuned
    trained = tmp_path / "trained"
    shutil.copytree(result.model, trained)
    parent = open_model(ws.model_path("m001"))
    base, tuned = _network(parent.path, parent.folds[0]), _network(trained, "all")
    write = _stepping(trained, parent)
    write(0.25, tmp_path / "step")
    step = _network(tmp_path / "step", "all")
    moved = [k for k in tuned if tuned[k].is_floating_point() and not (tuned[k] == base[k]).all()]
    assert moved and all((step[k] - (0.75 * base[k] + 0.25 * tuned[k])).abs().max() < 1e-6 for k in tuned
                         if tuned[k].is_floating_point())
    assert open_model(tmp_path / "step").folds == ("all",)
    write(0.5, trained)
    kept = _network(trained, "all")
    assert all((kept[k] - (0.5 * base[k] + 0.5 * tuned[k])).abs().max() < 1e-6 for k in moved)
    import torch  # a parent whose network differs (a layer fewer): nothing to mix, no step back

    other = tmp_path / "other"
    shutil.copytree(parent.path, other)
    saved = torch.load(other / f"fold_{parent.folds[0]}" / "checkpoint_final.pth", weights_only=False)
    saved["network_weights"].pop(moved[0])
    torch.save(saved, other / f"fold_{parent.folds[0]}" / "checkpoint_final.pth")
    assert _stepping(trained, open_model(other)) is None
    # a region-based parent with as many outputs (sigmoid per region, no background): its output layer
    # means something else, so mixing it with the fine-tuned softmax layer mixes nothing meaningful
    regions = Path(shutil.copytree(parent.path, tmp_path / "regions"))
    meta = json.loads((regions / "dataset.json").read_text())
    meta.update(labels={"background": 0, "lymph_node": 1, "nodes_and_more": [1, 2]},
                regions_class_order=[1, 2])
    (regions / "dataset.json").write_text(json.dumps(meta))
    assert _stepping(trained, open_model(regions)) is None


def test_a_refused_nnunet_version_is_stepped_back_until_the_check_passes(nnunet_model, tmp_path, monkeypatch):
    """The nnU-Net fine-tune steps a version the forgetting check refuses back toward its parent as ours
    does: the full step forgets the original's own data, an eighth of the way (the first step the line
    from the parent's change to the full step's allows) does not and is registered, activated and said
    so."""
    from lnq_napari.io.readers import read_volume
    from lnq_napari.nnunet import finetune as module
    from lnq_napari.phantom import write_dataset

    data, folder = nnunet_model
    own = tmp_path / "own"
    write_dataset(own, 2, seed=31, shape=(16, 48, 48), spacing=(1.5, 1.5, 3.0))
    checked = {read_volume(own / f"lnq2023-train-000{k}-ct.nrrd").origin for k in (1, 2)}
    ws = Workspace.init(tmp_path / "ws", data)
    ws.activate(ws.register_model(folder), decided_by="user")
    for case in ws.case_ids()[1:]:
        _correct(ws, case)
    parent = _network(ws.model_path("m001"), "0")
    tuned = {}

    class Truth:
        """The correction on the workspace's cases; the check's cases predicted well only near the parent."""

        def __init__(self, alpha: float) -> None:
            self.alpha = alpha

        def predict(self, ct, progress=None, cancel=None, prepared=None):
            from types import SimpleNamespace

            if ct.origin in checked:
                return SimpleNamespace(mask=ct.with_array(np.zeros(ct.shape, np.uint8) if self.alpha > 0.3
                                                          else _own_truth(own, ct)))
            case = next(c for c in ws.case_ids() if ws.read_ct(c).origin == ct.origin)
            return SimpleNamespace(mask=read_labels(ws.full_path(case), reference=ct))

    def alpha_of(path: Path) -> float:
        path = Path(str(path).removeprefix("nnunet:"))
        if path.resolve() == ws.model_path("m001").resolve():
            return 0.0
        weights = _network(path, "all")
        if not tuned:  # first seen: the fine-tuned weights
            tuned.update(weights)
        key = next(k for k in parent if tuned[k].is_floating_point() and not (tuned[k] == parent[k]).all())
        moved = tuned[key] - parent[key]
        return float(((weights[key] - parent[key]) * moved).sum() / (moved * moved).sum())

    seen = []
    monkeypatch.setattr(module, "load_predictor", lambda path, device="auto": seen.append(
        round(alpha_of(path), 3)) or Truth(seen[-1]))
    config = FinetuneConfig(forgetting_data=str(own), forgetting_cases=2)
    result = api.finetune(ws.root, iterations=2, device="cpu", config=config)
    assert result.activated, result.reason
    assert result.reason.startswith("activate the step back to alpha 0.125 (w = 0.875 m001 + 0.125 "
                                    "fine-tuned; the full step: refuse (median Dice on the original's own "
                                    "data -0.500")
    assert "; alpha 0.125: check +0.000): activate: " in result.reason  # the first step the line allows
    assert result.figures["step_back_alpha"] == 0.125 and seen.count(0.125) == 2
    registered = _network(ws.model_path(result.new_version), "all")
    key = next(k for k in parent if tuned[k].is_floating_point() and not (tuned[k] == parent[k]).all())
    assert (registered[key] - (0.875 * parent[key] + 0.125 * tuned[key])).abs().max() < 1e-6
    assert ws.active_model()["id"] == result.new_version
    read = version_figures(_never, result.new_version, ws.model_path(result.new_version), "cpu", ws,
                           result.val_cases)  # the step's figures, kept as the next round's parent's
    assert repr(ValidationMetrics.from_figures(read)) == repr(result.metrics_after)


def _own_truth(own: Path, ct) -> np.ndarray:
    """The complete truth of the check case whose CT is ``ct``."""
    from lnq_napari.io.readers import read_volume

    for k in (1, 2):
        if read_volume(own / f"lnq2023-train-000{k}-ct.nrrd").origin == ct.origin:
            return read_labels(own / f"lnq2023-train-000{k}-full.nrrd", reference=ct).array
    raise AssertionError("not a check case")


def test_a_parent_given_with_options_trains_and_predicts_as_they_say(nnunet_model, tmp_path, monkeypatch):
    """``finetune-nnunet --model nnunet:<folder>?checkpoint=checkpoint_best.pth&tile_step=0.75&...``: the
    options were dropped, so training started from checkpoint_final.pth and the candidate was judged
    and registered with nnU-Net's default settings. The parent is kept with its options and trained from
    the checkpoint they choose; the new version keeps the parent's prediction settings (not its choice of
    weights: its own are the fold it trained), is judged with them and predicts with them."""
    import shutil
    from types import SimpleNamespace

    from lnq_napari.nnunet import finetune as module

    data, folder = nnunet_model
    parent = tmp_path / "runs" / "Dataset601_LNQ" / NAME
    shutil.copytree(folder, parent)
    shutil.copy2(parent / "fold_0" / "checkpoint_final.pth", parent / "fold_0" / "checkpoint_best.pth")
    ws = Workspace.init(tmp_path / "ws", data)
    for case in ws.case_ids()[1:]:
        _correct(ws, case)  # m001's stored predictions: the parent's figures need no predicting
    started, loaded = [], []

    def train_fold(dataset, pre, results, pretrained=None, **_):
        started.append(Path(pretrained))
        trained = Path(results) / Path(dataset).name / NAME
        (trained / "fold_all").mkdir(parents=True)
        for name in ("plans.json", "dataset.json"):
            shutil.copy2(parent / name, trained / name)
        shutil.copy2(parent / "fold_0" / "checkpoint_final.pth", trained / "fold_all" / CHECKPOINT)
        return trained

    def truth(ct, progress=None, cancel=None, prepared=None):
        case = next(c for c in ws.case_ids() if ws.read_ct(c).origin == ct.origin)
        return SimpleNamespace(mask=read_labels(ws.full_path(case), reference=ct))

    monkeypatch.setattr(module, "train_fold", train_fold)
    monkeypatch.setattr(module, "load_predictor", lambda model, device="auto": loaded.append(str(model))
                        or SimpleNamespace(predict=truth))
    result = api.finetune_nnunet(
        ws.root, f"nnunet:{parent}?checkpoint=checkpoint_best.pth&tile_step=0.75&mirroring=off", iterations=2,
        device="cpu")
    assert ws.model_info("m001")["options"] == "checkpoint=checkpoint_best.pth&tile_step=0.75&mirroring=off"
    assert started == [ws.model_path("m001") / "fold_0" / "checkpoint_best.pth"]
    assert len(loaded) == 1 and loaded[0].startswith(f"nnunet:{ws.root / 'nnunet'}")
    assert loaded[0].endswith(f"/{NAME}?tile_step=0.75&mirroring=off")  # the candidate, judged
    new = result.new_version
    assert (new, result.options) == ("m002", NnunetOptions(tile_step=0.75, mirroring=False))
    assert ws.model(new) == result.spec and result.to_dict()["options"] == "tile_step=0.75&mirroring=off"
    assert result.model_string == f"nnunet:{ws.model_path(new)}?tile_step=0.75&mirroring=off"


def test_a_save_does_not_wait_for_the_candidate_being_copied_in(finetuned, monkeypatch):
    """The rule's registration copied the candidate's checkpoints holding the workspace lock: a label
    save meanwhile waited behind the copy and, past the lock's timeout, was refused. It is saved at once."""
    import threading

    from lnq_napari.workspace import lock as lock_module
    from lnq_napari.workspace import registry as registry_module

    ws, result, _ = finetuned
    monkeypatch.setattr(lock_module, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(lock_module, "_LOCKS", {})
    copying, go = threading.Event(), threading.Event()
    real = registry_module.shutil.copy2
    monkeypatch.setattr(registry_module.shutil, "copy2",
                        lambda src, dst: (copying.set(), go.wait(10), real(src, dst))[-1])
    done = []
    registering = threading.Thread(target=lambda: done.append(_register(ws, result, 0.0, "m001")))
    registering.start()
    try:
        assert copying.wait(10)
        case = ws.case_ids()[0]
        saved = ws.add_label_version(case, ws.latest_labels(case, "original"), "correction", edits=1)
    finally:
        go.set()
        registering.join(30)
    assert ws.journal("correction")[-1]["version"] == saved
    assert ws.registry.check(done[0].new_version)


def _unusable(folder: Path, root: Path, what: str) -> Path:
    """A copy of the tiny model that lnq-napari cannot predict with: a CT + PET input, no node label, or
    (renamed and re-planned) a cascade's second stage."""
    import shutil

    name = NAME.replace("3d_fullres", "3d_cascade_fullres") if what == "cascade" else NAME
    copy = Path(shutil.copytree(folder, root / what / name))
    dataset, plans = (json.loads((copy / f).read_text()) for f in ("dataset.json", "plans.json"))
    if what == "two channels":
        dataset["channel_names"] = {"0": "CT", "1": "PET"}
    elif what == "no node label":
        dataset["labels"] = {"background": 0, "vessel": 1, "ignore": 2}
    else:
        plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres",
                                                         "previous_stage": "3d_lowres"}
    (copy / "dataset.json").write_text(json.dumps(dataset))
    (copy / "plans.json").write_text(json.dumps(plans))
    return copy


@pytest.mark.parametrize("what, message", [("two channels", "takes 2 input channels"),
                                           ("no node label", "no lymph-node label"),
                                           ("cascade", "second stage of a cascade")])
def test_a_model_lnq_napari_cannot_predict_with_is_not_registered(nnunet_model, tmp_path, capsys, what,
                                                                   message):
    """It was copied in and registered (a version, m001) by finetune-nnunet, ``workspace init --model`` and
    ``workspace activate``, then refused at its first prediction; the message named the workspace's copy
    and told the user to edit its dataset.json (which its recorded sha256 then refused)."""
    data, folder = nnunet_model
    bad = _unusable(folder, tmp_path, what)
    ws = Workspace.init(tmp_path / "ws", data)
    _correct(ws, ws.case_ids()[1])
    before = ws.registry.file.read_bytes() if ws.registry.file.exists() else None
    for argv in (["finetune-nnunet", "--workspace", str(ws.root), "--model", f"nnunet:{bad}"],
                 ["workspace", "activate", str(ws.root), f"nnunet:{bad}"],
                 ["workspace", "init", str(tmp_path / "new"), "--data", str(data),
                  "--model", f"nnunet:{bad}"]):
        assert main(argv) != 0, argv
        err = capsys.readouterr().err.strip()
        assert message in err and str(bad) in err and "\n" not in err and "Traceback" not in err, argv
    assert ws.models() == [] and not any((ws.root / "models").glob("m*"))
    assert (ws.registry.file.read_bytes() if ws.registry.file.exists() else None) == before
    assert not (tmp_path / "new").exists()


def test_a_renamed_copy_of_a_model_fine_tunes(nnunet_model, tmp_path):
    """A model folder copied under another plans name than its plans.json's (nnU-Net names the trained
    folder by the latter): the fine-tune looked for the trained folder under the copy's name and failed
    with a traceback after training; a configuration its plans lack is refused before anything."""
    import shutil

    data, folder = nnunet_model
    ws = Workspace.init(tmp_path / "ws", data)
    _correct(ws, ws.case_ids()[1])
    results = tmp_path / "Dataset601_LNQ"
    renamed = Path(shutil.copytree(folder, results / "nnUNetTrainer__myPlans__3d_fullres"))
    lowres = Path(shutil.copytree(folder, results / "nnUNetTrainer__nnUNetPlans__3d_lowres"))
    with pytest.raises(LNQError, match="named for the configuration 3d_lowres, which its plans.json lacks"):
        api.finetune_nnunet(ws.root, f"nnunet:{lowres}", iterations=1, device="cpu")
    assert ws.models() == []
    result = api.finetune_nnunet(ws.root, f"nnunet:{renamed}?mirroring=off", iterations=1, device="cpu")
    assert result.model.name == "nnUNetTrainer__myPlans__3d_fullres" and result.new_version == "m002"


def test_a_parent_of_nodes_by_station_fine_tunes_with_a_fresh_output_layer_and_says_so(nnunet_model, tmp_path,
                                                                                      capsys):
    """A parent whose dataset.json splits the nodes by station beside an organ was refused as having no
    node label. Its outputs cannot keep their meaning on the export's labels (background, lymph_node,
    ignore): it trains from a fresh output layer, one warning line says so, and the new version segments
    the nodes as one label."""
    from lnq_napari.nnunet import tiny

    data, folder = nnunet_model
    labels = {"background": 0, "lymph_node_4R": 1, "aorta": 2, "lymph_node_7": 3}
    (tmp_path / "p").mkdir()
    dataset = json.loads((folder / "dataset.json").read_text()) | {"labels": labels}
    (tmp_path / "p" / "dataset.json").write_text(json.dumps(dataset))
    parent = tiny.write_model_folder(folder / "plans.json", tmp_path / "p" / "dataset.json",
                                     tmp_path / "results")
    ws = Workspace.init(tmp_path / "ws", data)
    _correct(ws, ws.case_ids()[1])
    assert main(["finetune-nnunet", "--workspace", str(ws.root), "--model", f"nnunet:{parent}?mirroring=off",
                 "--iterations", "1", "--device", "cpu"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning: the parent's labels" in line]
    assert len(warned) == 1 and "(background, lymph_node_4R, aorta, lymph_node_7)" in warned[0]
    assert "fresh output layer" in warned[0]
    parent_entry, new = ws.models()
    assert parent_entry["kind"] == new["kind"] == "nnunet" and new["parent"] == parent_entry["id"]
    trained = ws.registry.check(new["id"])
    assert json.loads((trained / "dataset.json").read_text())["labels"] == {"background": 0, "lymph_node": 1,
                                                                         "ignore": 2}
    assert _network(trained, "all")["decoder.seg_layers.0.weight"].shape[0] == 2  # background and nodes


def test_a_reorienting_parent_fine_tunes_on_images_turned_as_it_learned(nnunet_model, tmp_path):
    """A parent whose dataset.json names NibabelIOWithReorient learned on images turned to RAS; its
    fine-tune was exported and trained in the CT's own voxel order (SimpleITKIO) from those layers, and
    the candidate predicted unturned. The export names SimpleITKIOWithReorient (it reads NRRD): the
    candidate trains and predicts turned, as its parent."""
    import shutil

    data, folder = nnunet_model
    parent = Path(shutil.copytree(folder, tmp_path / "Dataset601_LNQ" / NAME))
    meta = json.loads((parent / "dataset.json").read_text())
    (parent / "dataset.json").write_text(json.dumps(meta | {"overwrite_image_reader_writer":
                                                            "NibabelIOWithReorient"}))
    ws = Workspace.init(tmp_path / "ws", data)
    _correct(ws, ws.case_ids()[1])
    result = api.finetune_nnunet(ws.root, f"nnunet:{parent}?mirroring=off", iterations=1, device="cpu")
    trained = json.loads((result.model / "dataset.json").read_text())
    assert trained["overwrite_image_reader_writer"] == "SimpleITKIOWithReorient"
    assert NnUNetPredictor(result.model, device="cpu")._reader == "SimpleITKIOWithReorient"


def test_a_gpu_trained_parent_loads_on_a_machine_without_a_gpu(tmp_path, monkeypatch):
    """nnU-Net's load_pretrained_weights reads the parent's checkpoint without map_location: its CUDA
    tensors fail to load on a CPU-only machine. The fine-tune reads it onto the CPU (a torch.load that
    fails unless mapped so stands for the CUDA checkpoint here), all but the output layers unless kept."""
    import torch

    from lnq_napari.nnunet.train import load_pretrained

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Conv3d(1, 2, 1)
            self.decoder = torch.nn.Module()
            self.decoder.seg_layers = torch.nn.ModuleList([torch.nn.Conv3d(2, 3, 1)])

    torch.manual_seed(0)
    parent, checkpoint = Net(), tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": parent.state_dict()}, checkpoint)
    real, maps = torch.load, []

    def cuda_checkpoint(*args, map_location=None, **kwargs):
        maps.append(map_location)
        if str(map_location) != "cpu":
            raise RuntimeError("Attempting to deserialize object on a CUDA device but "
                               "torch.cuda.is_available() is False")
        return real(*args, map_location=map_location, **kwargs)

    monkeypatch.setattr(torch, "load", cuda_checkpoint)
    for keep in (False, True):
        net = Net()
        fresh = net.decoder.seg_layers[0].weight.detach().clone()
        load_pretrained(net, checkpoint, keep_output=keep)
        assert torch.equal(net.encoder.weight, parent.encoder.weight)
        head = parent.decoder.seg_layers[0].weight if keep else fresh
        assert torch.equal(net.decoder.seg_layers[0].weight, head)
    assert maps and all(str(m) == "cpu" for m in maps)
    net = Net()
    net.encoder = torch.nn.Conv3d(1, 4, 1)
    with pytest.raises(RuntimeError, match=r"do not fit the network \(layer encoder.weight"):
        load_pretrained(net, checkpoint)
