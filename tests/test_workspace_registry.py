"""ModelRegistry: register (copied or in place), ids, activation, the model to predict with; the
user's choice through api.list_models / api.activate_model: summaries with the rule's figures, journal
lines saying who decided, roll-back to the bundled model, and bad versions refused with nothing changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.nnunet_folder import NnunetModelSpec, NnunetOptions
from lnq_napari.workspace import ModelRegistry, Workspace
from lnq_napari.workspace import registry as registry_module


def _model(folder, weights: bytes = b"w"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": "tiny"}))
    (folder / "weights.safetensors").write_bytes(weights)
    return folder


def _trained_elsewhere(folder):
    """A model folder from outside any workspace that lnq-napari loads: a copy of the bundled model's."""
    import shutil

    from lnq_napari.model import bundled_model_path

    folder.mkdir(parents=True)
    for name in ("config.json", "weights.safetensors"):
        shutil.copy2(bundled_model_path() / name, folder / name)
    return folder


@pytest.fixture
def registry(tmp_path):
    (tmp_path / "ws").mkdir()  # the workspace's folder (its lock never makes it)
    reg = ModelRegistry(tmp_path / "ws" / "models", tmp_path / "ws")
    reg.create()
    return reg


def test_register_copies_and_activation_is_exclusive(registry, tmp_path):
    model = _model(tmp_path / "model")
    first = registry.register(model, training_cases=["a"], metrics={"dice": 0.5})
    second = registry.register(model, parent="m001", training_cases=["a", "b"])
    assert (first["id"], second["id"]) == ("m001", "m002") and not first["active"]
    assert first["path"] == "models/m001"
    assert (registry.path("m001") / "weights.safetensors").read_bytes() == b"w"
    assert registry.active() is None
    registry.activate("m002")
    reopened = ModelRegistry(registry.folder, registry.root)
    active = reopened.active()
    assert active["id"] == "m002" and active["parent"] == "m001"
    assert active["path"] == str(registry.path("m002"))
    registry.activate("m001")
    assert [e["active"] for e in registry.entries()] == [True, False]
    assert not [p for p in registry.folder.iterdir() if p.name.startswith(".")]


def test_registering_into_a_workspace_moved_meanwhile_makes_nothing_at_its_old_path(registry, tmp_path):
    """The end of an nnU-Net fine-tune stages its model before the lock: a workspace moved meanwhile got
    its models folder made again at the old path, the model copied into it, then the lock file: an empty
    shell a later move went into."""
    model = _model(tmp_path / "model")
    registry.root.rename(tmp_path / "moved")
    with pytest.raises(LNQError, match=r"is gone from there"):
        with registry.staged(model):
            pass
    assert not registry.root.exists()


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_registered_copy_has_the_mode_a_plain_folder_gets(registry, tmp_path):
    """A model copied in (adopted, registered) stayed 0700 as ``tempfile.mkdtemp`` made its staging folder:
    no other reviewer could predict with it."""
    model = _model(tmp_path / "model")
    old = os.umask(0o002)
    try:
        entry = registry.register(model)
    finally:
        os.umask(old)
    assert registry.path(entry["id"]).stat().st_mode & 0o777 == 0o775


def test_copies_left_by_a_killed_registration_are_removed_once_stale(registry, tmp_path):
    import os
    import time

    stale, fresh = registry.folder / ".m001.ab12cd34", registry.folder / ".m002.ef56gh78"
    stale_new, training = registry.folder / ".registering.ab12cd34", registry.folder / ".m003.training"
    for folder in (stale, fresh, stale_new, training):
        _model(folder)
    old = time.time() - 2 * 3600
    for folder in (stale, stale_new, training):
        os.utime(folder, (old, old))
    registry.register(_model(tmp_path / "model"), training_cases=["a"])
    assert not stale.exists() and not stale_new.exists()
    assert fresh.is_dir()  # a fresh one may be another process's copy in progress
    assert training.is_dir()  # a fine-tune's scratch folder, unchanged while it trains, is no copy
    assert [e["id"] for e in registry.entries()] == ["m004"]  # m003: the fine-tune's


def test_bad_registrations_raise(registry, tmp_path):
    with pytest.raises(LNQError, match="config.json"):
        registry.register(tmp_path)
    registry.register(_model(tmp_path / "model"), version="m005")
    with pytest.raises(LNQError, match="already registered"):
        registry.register(tmp_path / "model", version="m005")
    with pytest.raises(LNQError, match="not registered"):
        registry.activate("m999")
    assert registry.next_version() == "m006"
    (registry.folder / "m009").mkdir()  # a model folder left by an interrupted run
    assert registry.next_version() == "m010"


def test_a_model_kept_in_place_is_found_by_absolute_path(registry, tmp_path):
    model = _model(tmp_path / "elsewhere")
    entry = registry.register(model, copy=False)
    assert entry["path"] == str(model.resolve()) and registry.path(entry["id"]) == model.resolve()
    assert not (registry.folder / entry["id"]).exists()


def test_prediction_model_is_the_active_one_else_the_bundled_one(registry, tmp_path, monkeypatch):
    bundled = _model(tmp_path / "bundled", b"release-1")
    monkeypatch.setattr(registry_module, "resolve_model", lambda model: bundled)
    path, key = registry.prediction_model()
    assert path == bundled and key.startswith("bundled-") and len(key) == len("bundled-") + 10
    (bundled / "weights.safetensors").write_bytes(b"release-2")
    assert registry.prediction_model()[1] != key  # caches follow a new release
    registry.activate(registry.register(_model(tmp_path / "m"))["id"])
    assert registry.prediction_model() == (registry.path("m001"), "m001")


# ------------------------------------------------------------------ the user decides (api)
RULE_METRICS = {
    "reason": "activate: vs parent: Dice +0.150 [90% CI +0.10, +0.20]; 3 held-out cases",
    "figures": {"n_cases": 3.0, "candidate_dice": 0.8, "parent_dice": 0.65, "candidate_recall": 0.9,
                "parent_recall": 0.7, "candidate_false_nodes": 0.5, "parent_false_nodes": 0.25,
                "dice_vs_parent": 0.15, "recall_vs_parent": 0.2, "false_nodes_vs_parent": 0.25,
                "dice_vs_original": float("nan")},
    "activate": True,
}
OLD_METRICS = {  # what fine-tunes stored before the activation rule: ValidationMetrics before / after
    "activated": False,
    "before": {"node_f1": 0.8, "dice_mean": 0.7, "recall": 0.75, "fp_per_case": 0.0, "cases": ["a"]},
    "after": {"node_f1": 0.7, "dice_mean": 0.6, "recall": 0.5, "fp_per_case": 1.0, "cases": ["a"]},
    "reason": "validation worse: node F1 0.700 vs 0.800 ...; kept m001 active",
}
NO_FIGURES = {  # a fine-tune whose rule left no figures: its validation metrics stand in
    "metrics_before": {"dice_mean": 0.5, "recall": 1.0, "fp_per_case": 0.0},
    "metrics_after": {"dice_mean": 0.75, "recall": 1.0, "fp_per_case": float("nan")},
    "reason": "validated on the training corrections (fewer than 2 corrected cases): activate: ...",
}


@pytest.fixture
def ws(tmp_path):
    """A workspace of one small case with m001 (active, no figures), m002 (the rule's figures) and
    m003 (older before/after metrics)."""
    ct = Volume(np.zeros((4, 6, 6), np.int16), spacing=(1.0, 1.0, 2.0))
    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd", ct)
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    model = _model(tmp_path / "model", b"some weights")
    ws.activate(ws.register_model(model, training_cases=["a"]))
    ws.register_model(model, parent="m001", training_cases=["a", "b"], metrics=RULE_METRICS)
    ws.register_model(model, parent="m002", training_cases=["a"], metrics=OLD_METRICS)
    return ws


def _state(ws) -> tuple[bytes, bytes]:
    return ws.registry.file.read_bytes(), ws.journal_path.read_bytes()


def test_list_models_shows_bundled_then_versions_with_their_figures(ws):
    models = api.list_models(ws.root)
    assert [m.version for m in models] == ["bundled", "m001", "m002", "m003"]
    assert [m.active for m in models] == [False, True, False, False]
    bundled, m1, m2, m3 = models
    assert m1.parent is None and m1.corrected_cases == 1 and m1.verdict == "" and m1.dice is None
    assert m2.parent == "m001" and m2.corrected_cases == 2 and m2.verdict == "activate"
    assert m2.reason.startswith("activate: vs parent: Dice +0.150")
    assert (m2.dice, m2.dice_parent, m2.false_nodes, m2.false_nodes_parent) == (0.8, 0.65, 0.5, 0.25)
    assert m2.vs_parent("dice") == 0.15 and m2.vs_parent("false_nodes") == 0.25
    assert "dice_vs_original" not in m2.figures  # NaN figures are left out
    assert m2.before_after() == ("Dice 0.650 -> 0.800, recall 0.70 -> 0.90, "
                                 "false nodes per case 0.25 -> 0.50 (m001 -> m002)")
    assert m1.before_after() == ""
    assert m3.verdict == "refuse" and (m3.dice, m3.dice_parent) == (0.6, 0.7)
    assert m3.vs_parent("recall") == pytest.approx(-0.25) and m3.vs_parent("false_nodes") == 1.0
    ws.register_model(ws.model_path("m001"), parent="m003", metrics=NO_FIGURES)
    m4 = api.list_models(ws.root)[-1]
    assert (m4.dice, m4.dice_parent, m4.vs_parent("dice"), m4.false_nodes) == (0.75, 0.5, 0.25, None)
    assert m4.verdict == ""  # no stored decision and the reason does not start with one
    assert m2.path == str(ws.model_path("m002")) and bundled.path.endswith("bundled")


def test_user_activation_and_roll_back_are_journalled_with_who_decided(ws):
    chosen = api.activate_model(ws.root, "m003", reason="looks better on my cases")
    assert chosen.version == "m003" and chosen.active
    assert (chosen.replaced, chosen.activation()) == ("m001", "active model: m003 (was m001)")
    again = api.activate_model(ws.root, "m003")  # already active: it says so, read under the lock
    assert again.replaced is None
    assert again.activation() == "m003 is already the active model; nothing changed"
    assert Workspace.open(ws.root).active_model()["id"] == "m003"
    back = api.activate_model(ws.root, "bundled")
    assert back.version == "bundled" and back.active
    assert ws.active_model() is None and ws.prediction_model()[1].startswith("bundled-")
    assert not any(m.active for m in api.list_models(ws.root)[1:])
    api.activate_model(ws, str(ws.model_path("m002")))  # a model folder of this workspace names it
    assert ws.active_model()["id"] == "m002"
    lines = ws.journal("activate")
    assert [(e["version"], e["previous"], e["decided_by"]) for e in lines] == [
        ("m001", "bundled", "rule"), ("m003", "m001", "user"), ("bundled", "m003", "user"),
        ("m002", "bundled", "user")]
    assert lines[1]["reason"] == "looks better on my cases"
    api.activate_model(ws, "bundled")
    key = ws.prediction_model()[1]  # bundled-<hash>: how a version's parent column names it
    api.activate_model(ws, "m002")
    assert api.activate_model(ws, key).version == "bundled" and ws.active_model() is None
    with pytest.raises(LNQError, match="bundled-0123456789 is the bundled model of another lnq-napari"):
        api.activate_model(ws, "bundled-0123456789")


def _break_weights(ws):
    (ws.model_path("m002") / "weights.safetensors").unlink()


def _truncate_weights(ws):
    path = ws.model_path("m002") / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-1])


def _bad_config(ws):
    (ws.model_path("m002") / "config.json").write_text('{"name": "ti')


def _unrecorded_and_config_disagrees(ws):
    """An entry without checksums (an older registry) whose config.json records other weights."""
    registry = json.loads(ws.registry.file.read_text())
    registry["versions"][1].pop("sha256")
    ws.registry.file.write_text(json.dumps(registry))
    (ws.model_path("m002") / "config.json").write_text(json.dumps({"weights_sha256": "0" * 64}))


def _entry_elsewhere(ws):
    """m002's entry points at a model folder of another workspace (a registry copied between them)."""
    other = ws.root.parent / "other" / "models" / "m002"
    _model(other)
    registry = json.loads(ws.registry.file.read_text())
    registry["versions"][1]["path"] = str(other)
    ws.registry.file.write_text(json.dumps(registry))


@pytest.mark.parametrize(("breaks", "version", "message"), [
    (None, "m009", r"'m009' is not registered .*known versions: m001, m002, m003, bundled"),
    (None, "", "is not registered"),
    (_break_weights, "m002", r"incomplete: .*weights.safetensors is missing"),
    (_truncate_weights, "m002", "does not match the sha256 recorded at registration"),
    (_bad_config, "m002", "does not match the sha256|cannot be read"),
    (_unrecorded_and_config_disagrees, "m002", "does not match the sha256 recorded in config.json"),
    (_entry_elsewhere, "m002", "from another workspace"),
])
def test_bad_versions_are_one_line_errors_and_change_nothing(ws, breaks, version, message):
    if breaks is not None:
        breaks(ws)
    before = _state(ws)
    with pytest.raises(LNQError, match=message) as info:
        api.activate_model(ws.root, version)
    assert "\n" not in str(info.value)
    assert _state(ws) == before and ws.active_model()["id"] == "m001"


def test_a_model_folder_of_another_workspace_is_refused(ws, tmp_path):
    other = _model(tmp_path / "other-ws" / "models" / "m001")
    (other.parent / "registry.json").write_text('{"versions": []}')  # a workspace's models folder
    before = _state(ws)
    with pytest.raises(LNQError, match="from another workspace.*activate one of m001, m002, m003, bundled"):
        api.activate_model(ws.root, str(other))
    assert _state(ws) == before


def test_an_unregistered_folder_in_the_models_folder_is_called_half_written(ws):
    """A folder left in models/ by an interrupted fine-tune (copied, its weights missing) is named as such,
    not as another workspace's model."""
    half = _model(ws.models_dir / "m004")
    (half / "weights.safetensors").unlink()
    before = _state(ws)
    with pytest.raises(LNQError, match="models folder but is no registered version .*half-written"):
        api.activate_model(ws.root, str(half))
    assert _state(ws) == before


def test_unreadable_config_is_refused(ws):
    config = ws.model_path("m003") / "config.json"
    config.write_bytes(b"\xff\xfe not json")
    registry = json.loads(ws.registry.file.read_text())
    registry["versions"][2].pop("sha256")  # no checksum to catch it: reading it must
    ws.registry.file.write_text(json.dumps(registry))
    before = _state(ws)
    with pytest.raises(LNQError, match="m003 cannot be read"):
        api.activate_model(ws.root, "m003")
    assert _state(ws) == before


# ------------------------------------------------------------------ nnU-Net versions
NNUNET_NAME = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _nnunet_model(folder, folds=("0", "1")):
    """A stand-in nnU-Net trained model folder: plans.json, dataset.json, fold checkpoints, a training log."""
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({"plans_name": "nnUNetPlans"}))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"},
                                                     "labels": {"background": 0, "lymph_node": 1}}))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(f"weights {fold}".encode())
        (folder / f"fold_{fold}" / "training_log.txt").write_text("not copied")
    return folder


def test_an_nnunet_folder_is_copied_under_its_own_name_with_checksums(registry, tmp_path):
    src = _nnunet_model(tmp_path / "nnUNet_results" / "Dataset601_LNQ" / NNUNET_NAME)
    entry = registry.register(src, parent="m001")
    assert entry["kind"] == "nnunet" and entry["path"] == f"models/m001/{NNUNET_NAME}"
    assert sorted(entry["sha256"]) == ["dataset.json", "fold_0/checkpoint_final.pth",
                                       "fold_1/checkpoint_final.pth", "plans.json"]
    copied = registry.path("m001")
    assert (copied / "fold_1" / "checkpoint_final.pth").read_bytes() == b"weights 1"
    assert not (copied / "fold_0" / "training_log.txt").exists()
    registry.activate("m001")
    assert registry.prediction_model() == (NnunetModelSpec(copied), "m001")  # load_predictor takes it
    assert registry.summaries()[1].kind == "nnunet" and registry.summaries()[0].kind == "lnq"
    assert registry.version_of(f"nnunet:{copied}") == "m001"
    assert registry.find(src) == registry.find(copied) == "m001"  # the same files: registered once
    (src / "fold_0" / "checkpoint_final.pth").write_bytes(b"retrained")
    assert registry.find(src) is None and registry.find(tmp_path) is None
    assert not [p for p in registry.folder.iterdir() if p.name.startswith(".")]
    with pytest.raises(LNQError, match="no fold_"):
        registry.register(_nnunet_model(tmp_path / "empty" / NNUNET_NAME, folds=()))


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda p: (p / "fold_1" / "checkpoint_final.pth").unlink(),
     r"incomplete: .*fold_1/checkpoint_final.pth is missing"),
    (lambda p: (p / "plans.json").write_text("{}"), "plans.json does not match the sha256 recorded"),
])
def test_a_half_written_nnunet_version_is_refused_with_nothing_changed(ws, tmp_path, breaks, message):
    version = ws.register_model(_nnunet_model(tmp_path / "r" / "Dataset601_LNQ" / NNUNET_NAME))
    breaks(ws.model_path(version))
    before = _state(ws)
    with pytest.raises(LNQError, match=message) as info:
        api.activate_model(ws.root, version)
    assert "\n" not in str(info.value)
    assert _state(ws) == before and ws.active_model()["id"] == "m001"


def test_a_workspace_given_as_the_model_predicts_with_its_active_version(ws):
    """``predict --model W``: W's active model (said "W/config.json is missing; not a model folder")."""
    from lnq_napari.nnunet.select import _active_model_of_workspace

    assert _active_model_of_workspace(str(ws.root)) == ws.model_path("m001")
    api.activate_model(ws, "bundled")
    assert _active_model_of_workspace(ws.root) == ws.prediction_model()[0]
    assert _active_model_of_workspace("elsewhere") == "elsewhere" and _active_model_of_workspace(None) is None


def test_an_open_workspace_or_a_list_models_entry_is_a_model_and_other_objects_one_lnqerror(ws):
    """``find_nodes(ct, model=api.list_models(ws)[-1])`` (or ``model=ws``) raised pathlib's TypeError, as
    did ``model=3``; now the entry is the version it names and anything else one LNQError."""
    from lnq_napari.nnunet.select import _active_model_of_workspace, check_model

    m001 = next(m for m in api.list_models(ws) if m.version == "m001")
    assert Path(_active_model_of_workspace(m001)) == ws.model_path("m001")
    assert _active_model_of_workspace(ws) == ws.prediction_model()[0]
    for wrong, kind in ((3, "builtins.int"), ([ws.root], "builtins.list")):
        said = rf"a workspace, an entry of api.list_models\(\) or a loaded predictor \(got {kind}\)"
        with pytest.raises(LNQError, match="model must be a model folder, nnunet:<folder>, " + said):
            check_model(wrong)


def test_a_model_trained_elsewhere_is_adopted_once_and_activated(ws, tmp_path):
    """`workspace activate W FOLDER` with a model you trained (not in any workspace): copied in as the
    root of its own lineage and activated, journaled as the user's choice; again: the same version."""
    mine = _trained_elsewhere(tmp_path / "runs" / "lnq-model")
    active = api.activate_model(ws.root, str(mine))
    assert active.version == "m004" and active.active and active.parent is None
    assert (ws.model_path("m004") / "weights.safetensors").read_bytes() == \
        (mine / "weights.safetensors").read_bytes()
    assert ws.journal("activate")[-1]["decided_by"] == "user"
    api.activate_model(ws.root, "m001")
    assert api.activate_model(ws.root, str(mine)).version == "m004"  # found by its files, not copied again
    assert [m.version for m in api.list_models(ws.root)] == ["bundled", "m001", "m002", "m003", "m004"]
    from lnq_napari.model import bundled_model_path

    assert api.activate_model(ws.root, str(bundled_model_path())).version == "bundled"  # its row, no copy
    assert len(api.list_models(ws.root)) == 5
    before = _state(ws)
    with pytest.raises(LNQError, match="no-model"):
        api.activate_model(ws.root, str(tmp_path / "no-model"))
    assert _state(ws) == before


def test_a_workspace_made_with_a_model_of_ones_own_starts_from_it(tmp_path, capsys):
    from lnq_napari.cli import main

    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd",
                 Volume(np.zeros((4, 6, 6), np.int16), spacing=(1.0, 1.0, 2.0)))
    mine = _trained_elsewhere(tmp_path / "runs" / "lnq-model")
    assert main(["workspace", "init", str(tmp_path / "ws"), "--data", str(tmp_path / "data"),
                 "--model", str(mine)]) == 0
    assert "model m001 (from" in capsys.readouterr().out
    ws = Workspace.open(tmp_path / "ws")
    assert ws.active_model()["id"] == "m001" and ws.journal("activate")[-1]["decided_by"] == "user"
    code = main(["workspace", "init", str(tmp_path / "ws2"), "--data", str(tmp_path / "data"),
                 "--model", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a model folder" in err
    assert not (tmp_path / "ws2").exists()


def test_a_version_fine_tuned_from_the_bundled_model_names_the_bundled_row_as_its_parent(ws, tmp_path):
    """The registry keeps the bundled model's key (``bundled-<hash>``, so another release's is told
    apart); the table showed that key, which matched no row."""
    from lnq_napari.model import bundled_model_path
    from lnq_napari.workspace.registry import bundled_key

    model = _model(tmp_path / "child", b"other weights")
    ws.register_model(model, parent=bundled_key(bundled_model_path()))
    ws.register_model(model, parent="bundled-0123456789")  # another release's bundled model
    *_, child, stranger = api.list_models(ws.root)
    assert child.parent == "bundled" and stranger.parent == "bundled-0123456789"


def test_the_version_a_running_or_interrupted_fine_tune_will_register_is_not_handed_out(ws, tmp_path):
    """A model adopted while a fine-tune ran took the id in its plan: the fine-tune failed at its end and
    its training was lost (``--resume`` then said it had finished)."""
    assert ws.registry.next_version() == "m004"
    (ws.models_dir / ".m004.training").mkdir()  # a fine-tune's scratch folder
    assert ws.registry.next_version() == "m005"
    (ws.models_dir / "pending.json").write_text(json.dumps({"version": "m006"}))
    assert ws.registry.next_version() == "m007"
    entry = ws.register_model(_model(tmp_path / "outside", b"adopted"))
    assert entry == "m007"
    (ws.models_dir / "pending.json").write_text('{"version": "m0')  # damaged: the folders still count
    assert ws.registry.next_version() == "m008"


@pytest.mark.parametrize("damage", ["no weights", "empty weights", "weights not as in config.json",
                                    "a config of another kind", "another architecture"])
def test_a_half_written_model_from_outside_changes_nothing_and_makes_no_workspace(ws, tmp_path, capsys,
                                                                                  damage):
    """Activating such a folder said 'incomplete' (exit 2) after registering it, twice on a retry;
    `workspace init --model` with it exited 2 and left the workspace, which then 'already exists'."""
    from lnq_napari.cli import main

    half = _trained_elsewhere(tmp_path / "runs" / "half")
    weights, config = half / "weights.safetensors", half / "config.json"
    if damage == "a config of another kind":
        config.write_text(json.dumps({"name": "tiny"}))
    elif damage == "another architecture":
        config.write_text(config.read_text().replace('"unet3d"', '"resnet"'))
    elif damage == "no weights":
        weights.unlink()
    elif damage == "empty weights":
        weights.write_bytes(b"")
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    before = _state(ws)
    for _ in range(2):
        assert main(["workspace", "activate", str(ws.root), str(half)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lnq-napari: error: "), err
    assert _state(ws) == before and sorted(p.name for p in ws.models_dir.iterdir() if p.name[0] == "m") == \
        ["m001", "m002", "m003"]
    data = ws.root.parent / "data"
    assert main(["workspace", "init", str(tmp_path / "ws2"), "--data", str(data), "--model", str(half)]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "ws2").exists()


def test_an_nnunet_folder_with_an_empty_checkpoint_is_not_adopted(ws, tmp_path, capsys):
    from lnq_napari.cli import main
    from lnq_napari.model.nnunet_folder import FOLDER_FILES

    folder = tmp_path / "runs" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    for name in FOLDER_FILES:
        (folder / name).write_text("{}")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    before = _state(ws)
    assert main(["workspace", "activate", str(ws.root), str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint_final.pth is empty" in err and _state(ws) == before


@pytest.mark.parametrize("damage", ["cut short", "plans.json"])
def test_an_nnunet_folder_with_a_damaged_checkpoint_or_plans_is_not_adopted(ws, tmp_path, capsys, damage):
    """A checkpoint cut to its first bytes or a plans.json that is no JSON was adopted and activated; every
    prediction failed after."""
    import io
    import zipfile

    from lnq_napari.cli import main
    from lnq_napari.model.nnunet_folder import FOLDER_FILES

    folder = tmp_path / "runs" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    for name in FOLDER_FILES:
        (folder / name).write_text("{}")
    archive = io.BytesIO()  # torch's checkpoint format: a zip archive
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 4000)
    data = archive.getvalue()
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(data[:1000] if damage == "cut short" else data)
    if damage == "plans.json":
        (folder / "plans.json").write_text('{"plans_name": ')
    before = _state(ws)
    assert main(["workspace", "activate", str(ws.root), str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and _state(ws) == before
    assert ("not a complete checkpoint" if damage == "cut short" else "cannot be read") in err


def _complete_nnunet_model(folder, folds=("0", "1")):
    """A stand-in nnU-Net model folder whose checkpoints are complete zip archives (torch's format)."""
    import io
    import zipfile

    _nnunet_model(folder, folds=())
    for fold in folds:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("archive/data.pkl", f"weights {fold}".encode())
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(archive.getvalue())
    return folder


def _complete_zip_at(path, text: str) -> None:
    """A complete zip archive (torch's checkpoint format) holding ``text``, written at ``path``."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", text.encode())
    path.write_bytes(archive.getvalue())


def test_a_workspace_keeps_an_nnunet_model_s_options_and_predicts_with_them(ws, tmp_path, capsys,
                                                                          monkeypatch):
    """``nnunet:<folder>?folds=0&mirroring=off&threshold=0.7`` given to `workspace init --model` (or
    `workspace activate`): the options were checked, warned about and dropped, so the workspace predicted
    with every fold, mirroring and nnU-Net's argmax. The version keeps them (its ``options``), predicts
    with them, and is found again only with the same options; other options make a version of their own."""
    from lnq_napari.cli import main
    from lnq_napari.model.nnunet_folder import model_spec
    from lnq_napari.nnunet import backend
    from lnq_napari.nnunet.select import load_predictor

    loaded = []
    monkeypatch.setattr(backend, "NnUNetPredictor", lambda folder, device="auto", **kw: loaded.append(
        (Path(folder), kw)) or object())
    mine = _complete_nnunet_model(tmp_path / "runs" / "Dataset601_LNQ" / NNUNET_NAME)
    given = f"nnunet:{mine}?folds=0&mirroring=off&threshold=0.7"
    assert main(["workspace", "init", str(tmp_path / "ws2"), "--data", str(tmp_path / "data"),
                 "--model", given]) == 0
    out, err = capsys.readouterr()
    assert "model m001 (from nnunet:" in out and not err
    made = Workspace.open(tmp_path / "ws2")
    assert made.active_model()["options"] == "folds=0&mirroring=off&threshold=0.7"
    model, key = made.prediction_model()
    assert key == "m001" and model_spec(model).folder == made.model_path("m001")
    assert model_spec(model).options == NnunetOptions(folds=("0",), mirroring=False,
                                                      inference={"threshold": 0.7})
    load_predictor(model, device="cpu")
    load_predictor(made.root, device="cpu")  # a workspace named as the model: its active one
    assert loaded == [(made.model_path("m001"), {"folds": ("0",), "mirroring": False,
                                                 "inference": {"threshold": 0.7}})] * 2
    assert api.activate_model(ws, given).version == "m004"  # into another workspace, options and all
    assert api.activate_model(ws, f"nnunet:{mine}?threshold=0.7&mirroring=off&folds=0").version == "m004"
    assert str(ws.model("m004")) == f"nnunet:{ws.model_path('m004')}?folds=0&mirroring=off&threshold=0.7"
    assert api.activate_model(ws, f"nnunet:{mine}").version == "m005"  # no options: a version of its own
    assert ws.model("m005") == NnunetModelSpec(ws.model_path("m005"))
    assert "options" not in ws.model_info("m005")
    assert api.activate_model(ws, f"nnunet:{ws.model_path('m004')}?folds=0&mirroring=off&threshold=0.7"
                              ).version == "m004"  # its own folder with its own options, or none
    assert ws.registry.version_of(str(ws.model_path("m004"))) == "m004"
    before = _state(ws)
    with pytest.raises(LNQError, match=r"names m004 with other options than it was registered with "
                                        r"\(folds=0&mirroring=off&threshold=0.7\)"):
        api.activate_model(ws, f"nnunet:{ws.model_path('m004')}?folds=1")
    with pytest.raises(LNQError, match=r"lacks fold\(s\) 7"):
        api.activate_model(ws, f"nnunet:{mine}?folds=7")
    with pytest.raises(LNQError, match=r"has no fold_\*/checkpoint_best.pth"):
        api.activate_model(ws, f"nnunet:{mine}?checkpoint=checkpoint_best.pth")
    with pytest.raises(LNQError, match="unknown nnU-Net model option 'speed'"):
        api.activate_model(ws, f"nnunet:{mine}?speed=fast")
    with pytest.raises(LNQError, match="names no folder"):  # was the current folder
        api.activate_model(ws, "nnunet:?folds=0")
    with pytest.raises(LNQError, match="apply to nnU-Net models only"):
        api.activate_model(ws, f"nnunet:{_trained_elsewhere(tmp_path / 'ours')}?folds=0")
    assert _state(ws) == before
    for bad in ("mirroring=maybe", "folds=3", "tile_step=2"):
        with pytest.raises(LNQError, match="must be on or off|lacks fold|tile_step=2 .* at most 1"):
            api.init_workspace(tmp_path / "ws3", tmp_path / "data", f"nnunet:{mine}?{bad}")
        assert not (tmp_path / "ws3").exists()


def test_a_version_kept_with_a_checkpoint_option_holds_that_checkpoint(ws, tmp_path):
    """``checkpoint=checkpoint_best.pth``: the registered copy holds each fold's checkpoint_best.pth (the
    weights it predicts with, checksummed), not checkpoint_final.pth, and activates after the check."""
    mine = _complete_nnunet_model(tmp_path / "runs" / "Dataset601_LNQ" / NNUNET_NAME)
    for fold in ("0", "1"):
        _complete_zip_at(mine / f"fold_{fold}" / "checkpoint_best.pth", f"best {fold}")
    version = api.activate_model(ws, f"nnunet:{mine}?checkpoint=checkpoint_best.pth").version
    entry = ws.model_info(version)
    assert sorted(k for k in entry["sha256"] if k.startswith("fold_")) == [
        "fold_0/checkpoint_best.pth", "fold_1/checkpoint_best.pth"]
    assert not list(ws.model_path(version).glob("fold_*/checkpoint_final.pth"))
    assert ws.prediction_model() == (NnunetModelSpec(ws.model_path(version), NnunetOptions(
        checkpoint="checkpoint_best.pth")), version)
    assert api.activate_model(ws, f"nnunet:{mine}").version != version  # the final checkpoints: another


def test_an_nnunet_version_registered_without_options_predicts_from_its_folder(registry, tmp_path):
    """A registry written before versions kept options (no ``options`` key) loads as it did: the folder,
    nnU-Net's own settings."""
    entry = registry.register(_complete_nnunet_model(tmp_path / "x" / NNUNET_NAME))
    assert "options" not in json.loads(registry.file.read_text())["versions"][0]
    assert registry.model(entry["id"]) == NnunetModelSpec(registry.path(entry["id"]))
    registry.activate(entry["id"])
    assert registry.prediction_model() == (NnunetModelSpec(registry.path(entry["id"])), entry["id"])


def test_options_a_registry_holds_that_cannot_be_read_name_the_version(registry, tmp_path):
    """A registry entry whose options this release cannot read (a newer release's, or edited by hand) gave
    "unknown nnU-Net model option ... in nnunet:...?..." naming neither the version nor the registry."""
    entry = registry.register(_complete_nnunet_model(tmp_path / "x" / NNUNET_NAME))
    data = json.loads(registry.file.read_text())
    data["versions"][0]["options"] = "folds=0&sharpen=2"
    registry.file.write_text(json.dumps(data))
    with pytest.raises(LNQError, match=rf"unknown nnU-Net model option 'sharpen' in version {entry['id']}'s "
                                       r"options \(folds=0&sharpen=2\) in the workspace's model registry"):
        registry.model(entry["id"])


def test_an_empty_checkpoint_option_is_refused_before_anything_is_made(ws, tmp_path):
    """``?checkpoint=`` was kept: the registry read it as checkpoint_final.pth, the predictor as no file at
    all, so the workspace could never predict."""
    mine = _complete_nnunet_model(tmp_path / "runs" / "Dataset601_LNQ" / NNUNET_NAME)
    before = _state(ws)
    given = f"nnunet:{mine}?checkpoint="
    with pytest.raises(LNQError, match="names no checkpoint file; give the file name in each fold_<k>"):
        api.init_workspace(tmp_path / "ws2", tmp_path / "data", given)
    with pytest.raises(LNQError, match="names no checkpoint file"):
        api.activate_model(ws, given)
    assert not (tmp_path / "ws2").exists() and _state(ws) == before


def test_a_workspace_under_a_folder_with_a_question_mark_predicts_with_its_options(tmp_path, monkeypatch):
    """A version kept with options under ``review?2/``: its model string was cut at the path's '?', so
    every prediction failed. The registry hands out the typed spec; its text reads back as well."""
    from lnq_napari.model.nnunet_folder import parse_model_string
    from lnq_napari.nnunet import backend
    from lnq_napari.nnunet.select import check_model, load_predictor

    loaded = []
    monkeypatch.setattr(backend, "NnUNetPredictor", lambda folder, device="auto", **kw: loaded.append(
        (Path(folder), kw)) or object())
    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd",
                 Volume(np.zeros((4, 6, 6), np.int16), spacing=(1.0, 1.0, 2.0)))
    mine = _complete_nnunet_model(tmp_path / "runs?1" / "Dataset601_LNQ" / NNUNET_NAME)
    ws = api.init_workspace(tmp_path / "review?2" / "ws", tmp_path / "data", f"nnunet:{mine}?folds=0")
    model = ws.prediction_model()[0]
    assert model == NnunetModelSpec(ws.model_path("m001"), NnunetOptions(folds=("0",)))
    check_model(model)
    check_model(str(ws.root))
    load_predictor(ws.root, device="cpu")
    load_predictor(str(model), device="cpu")  # as the Segment tab's model field holds it
    assert loaded == [(ws.model_path("m001"), {"folds": ("0",)})] * 2
    assert parse_model_string(str(NnunetModelSpec(tmp_path / "a?b" / "m"))) == NnunetModelSpec(
        tmp_path / "a?b" / "m")


def test_a_fine_tune_parent_named_by_its_version_folder_is_that_version(ws, tmp_path):
    """``finetune-nnunet --model nnunet:<W/models/m004/<name>>`` without the options m004 was registered
    with: the lookup missed it and copied the workspace's own version in as a new root version."""
    mine = _complete_nnunet_model(tmp_path / "runs" / "Dataset601_LNQ" / NNUNET_NAME)
    version = api.activate_model(ws, f"nnunet:{mine}?mirroring=off").version
    own = ws.model_path(version)
    for named in (own, f"nnunet:{own}", f"nnunet:{own}?mirroring=off"):
        assert ws.adopt_model(named) == version
    before = _state(ws)
    with pytest.raises(LNQError, match=f"names {version} with other options than it was registered with "
                                       r"\(mirroring=off\)"):
        ws.adopt_model(f"nnunet:{own}?tile_step=0.75")
    with pytest.raises(LNQError, match="no registered version"):
        ws.adopt_model(own.parent)
    assert _state(ws) == before and [e["id"] for e in ws.models()] == ["m001", "m002", "m003", version]


def test_options_on_the_bundled_model_or_one_of_our_versions_are_refused_as_for_a_new_model(ws, tmp_path):
    """`workspace activate` dropped options given with the bundled model's folder without a word, and for
    one of our versions advised adding the folder as a version with them, which is refused."""
    from lnq_napari.model import bundled_model_path

    before = _state(ws)
    for folder in (bundled_model_path(), ws.model_path("m002")):
        with pytest.raises(LNQError, match=r"is an lnq-napari model; the options after '\?' \(folds=0\) "
                                           "apply to nnU-Net models only: give the folder without them"):
            api.activate_model(ws, f"nnunet:{folder}?folds=0")
    assert _state(ws) == before
    assert api.activate_model(ws, f"nnunet:{bundled_model_path()}").version == "bundled"
    assert api.activate_model(ws, str(ws.model_path("m002"))).version == "m002"


def test_options_that_spell_out_the_defaults_are_one_version_and_one_cache_key(ws, tmp_path, capsys):
    """``mirroring=on``, ``checkpoint=checkpoint_final.pth``, every fold listed, or folds in another order
    made versions (copies) of their own and, for the fold order, another figures key. Options are kept as
    they take effect; `workspace models` and the register_model line show them."""
    from lnq_napari.cli import main
    from lnq_napari.model.checkpoint import figures_key

    mine = _complete_nnunet_model(tmp_path / "runs" / "Dataset601_LNQ" / NNUNET_NAME, folds=("0", "1", "2"))
    plain = api.activate_model(ws, f"nnunet:{mine}").version
    for query in ("mirroring=on", "checkpoint=checkpoint_final.pth", "folds=", "folds=2,0,1",
                  "tile_step=0.5&max_mean_hu=none", "threshold=0.5"):  # two labels: 0.5 is the argmax
        assert api.activate_model(ws, f"nnunet:{mine}?{query}").version == plain, query
    cut = api.activate_model(ws, f"nnunet:{mine}?threshold=0.4&max_mean_hu=none").version
    assert cut != plain and ws.model_info(cut)["options"] == "threshold=0.4"
    some = api.activate_model(ws, f"nnunet:{mine}?folds=2,0&mirroring=off&mirroring=off").version
    assert api.activate_model(ws, f"nnunet:{mine}?mirroring=off&folds=0,2,0&tile_step=0.5").version == some
    assert [e["id"] for e in ws.models()][-3:] == [plain, cut, some] and "options" not in ws.model_info(plain)
    assert ws.model_info(some)["options"] == "folds=0,2&mirroring=off"
    assert figures_key(f"nnunet:{mine}?folds=2,0") == figures_key(f"nnunet:{mine}?folds=0,2") != \
        figures_key(mine) == figures_key(ws.model(plain)) == figures_key(f"nnunet:{mine}?folds=1,2,0")
    assert [e.get("options") for e in ws.journal("register_model")][-3:] == [None, "threshold=0.4",
                                                                          "folds=0,2&mirroring=off"]
    by_id = {m.version: m for m in api.list_models(ws)}  # what the Models panel hands the Segment tab
    assert by_id[plain].model == str(ws.model_path(plain))
    assert by_id[some].model == f"nnunet:{ws.model_path(some)}?folds=0,2&mirroring=off" == str(ws.model(some))
    assert main(["workspace", "models", str(ws.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[-1] == "options"
    assert out[1 + len(ws.models())].split()[-1] == "folds=0,2&mirroring=off"


def test_activate_model_takes_an_entry_of_list_models(ws):
    """``api.activate_model(ws, api.list_models(ws)[0])`` read the entry as its text: an unknown version."""
    bundled, m001 = (next(m for m in api.list_models(ws) if m.version == v) for v in ("bundled", "m001"))
    assert api.activate_model(ws, bundled).version == "bundled" and ws.active_model() is None
    assert api.activate_model(ws, m001).active and ws.active_model()["id"] == "m001"
