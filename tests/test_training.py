"""Training on partial labels: label states, masked losses, a tiny trainer run, cancel and resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.inference import Predictor
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import InferenceConfig
from lnq_napari.preprocess import PreprocessingConfig
from lnq_napari.training.labels import BACKGROUND, NODE, UNKNOWN, label_states, naive_states
from lnq_napari.training.losses import masked_bce, masked_dice_ce, masked_soft_dice
from lnq_napari.training.trainer import TrainingCase, _prepare_sources, load_training_cases, train_model

torch.set_num_threads(1)

TINY_CONFIG = {
    "architecture": {"name": "unet3d", "kwargs": {"features": [4, 8], "strides": [[1, 2, 2]],
                                                  "kernels": [[1, 3, 3], [3, 3, 3]]}},
    "preprocessing": {"target_spacing": [4.0, 4.0, 8.0]},
    "inference": {"patch_size": [8, 32, 32]},
    "train": {"patch_size": [8, 32, 32], "batch_size": 2, "lr": 5e-3, "warmup": 0},
}


def _hand_built():
    """Air, a fat-filled body, two lungs, and two node blobs between them (only the first annotated)."""
    shape, spacing = (24, 96, 128), (1.5, 1.5, 3.0)
    z, y, x = np.indices(shape)
    mm = lambda a, c, s: (a - c) * s  # noqa: E731
    hu = np.full(shape, -1000, np.int16)
    body = (mm(y, 48, 1.5) / 68) ** 2 + (mm(x, 64, 1.5) / 90) ** 2 < 1
    hu[body] = -100
    for cx in (30, 98):
        lung = (mm(y, 48, 1.5) / 45) ** 2 + (mm(x, cx, 1.5) / 30) ** 2 < 1
        hu[lung] = -850
    node_a = mm(z, 12, 3.0) ** 2 + mm(y, 35, 1.5) ** 2 + mm(x, 64, 1.5) ** 2 < 8**2
    node_b = mm(z, 12, 3.0) ** 2 + mm(y, 62, 1.5) ** 2 + mm(x, 64, 1.5) ** 2 < 8**2
    hu[node_a | node_b] = 50
    rng = np.random.default_rng(0)
    hu = (hu + rng.normal(0, 8, shape)).astype(np.int16)
    ct = Volume(hu, spacing=spacing, origin=(-95.2, 3.5, -411.0))
    labels = ct.with_array(node_a.astype(np.uint8))
    return ct, labels, node_a, node_b


def test_label_states_on_hand_built_labels():
    ct, labels, node_a, node_b = _hand_built()
    states = label_states(ct, labels, ring_mm=3.0)
    assert states.dtype == np.int8 and states.shape == ct.shape
    assert (states[node_a] == NODE).all()
    from scipy import ndimage

    ring = ndimage.binary_dilation(node_a, iterations=1) & ~node_a
    assert (states[ring] == BACKGROUND).all()
    inner_b = ndimage.binary_erosion(node_b, iterations=1)
    assert (states[inner_b] == UNKNOWN).all()  # an unlabelled node is not background
    assert states[0, 0, 0] == BACKGROUND  # air
    assert states[12, 48, 64 + 35] == BACKGROUND or ct.array[12, 48, 64 + 35] < -500  # lung
    fat = (ct.array > -200) & (ct.array < -60)
    fat_inner = ndimage.binary_erosion(fat, iterations=2)
    assert (states[fat_inner] == BACKGROUND).mean() > 0.95
    assert (naive_states(labels)[node_b] == BACKGROUND).all()


def test_label_states_refuses_other_grid():
    ct, labels, *_ = _hand_built()
    with pytest.raises(LNQError, match="not on the CT grid"):
        label_states(ct, labels.array[:, :10])


def test_masked_losses_ignore_unknown_voxels():
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 4, 8, 8)
    states = torch.full((1, 1, 4, 8, 8), -1, dtype=torch.int8)
    states[..., :2, :, :] = 0
    states[..., 0, :4, :4] = 1
    changed = logits.clone()
    changed[..., 2:, :, :] += 5.0  # only unknown voxels change
    for loss in (masked_bce, masked_soft_dice, masked_dice_ce):
        assert torch.isclose(loss(logits, states), loss(changed, states))
    assert masked_bce(logits, torch.full_like(states, -1)).item() == 0.0
    perfect = torch.where(states == 1, 20.0, -20.0).float()
    assert masked_dice_ce(perfect, states) < 0.01 < masked_dice_ce(logits, states)


@pytest.fixture(scope="module")
def phantom_case():
    from lnq_napari.phantom import make_case

    c = make_case(5, shape=(32, 96, 96), spacing=(4.0, 4.0, 8.0))
    return TrainingCase(c.case_id, c.ct, label_states(c.ct, c.partial))


def _losses(folder):
    with open(folder / "train_log.csv") as handle:
        return [(int(r["iteration"]), float(r["loss"])) for r in csv.DictReader(handle)]


def test_tiny_network_loss_falls(tmp_path, phantom_case):
    messages = []
    out = train_model([phantom_case], tmp_path / "m", iterations=40, device="cpu", seed=1,
                      config=TINY_CONFIG, progress=lambda f, m: messages.append((f, m)))
    losses = _losses(out)
    assert losses[-1][0] == 40
    assert losses[-1][1] < losses[0][1] - 0.05  # the logged loss is a running mean
    assert messages[-1][0] == 1.0 and "it/s" in messages[-1][1]
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["completed_iterations"] == 40
    assert len(config["training"]["data_fingerprint"]) == 64


def test_cancel_then_resume_continues_iterations(tmp_path, phantom_case):
    out = tmp_path / "m"
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 6

    with pytest.raises(Cancelled):
        train_model([phantom_case], out, iterations=10, device="cpu", config=TINY_CONFIG, cancel=cancel,
                    checkpoint_every=100)
    state = torch.load(out / "train_state" / "state.pt", weights_only=True)
    assert state["iteration"] == 6
    before = (out / "weights.safetensors").read_bytes()
    messages = []
    train_model([phantom_case], out, iterations=10, device="cpu", resume=True,
                progress=lambda f, m: messages.append(m))
    assert torch.load(out / "train_state" / "state.pt", weights_only=True)["iteration"] == 10
    assert messages[-1].startswith("it 10/10")
    assert not any(m.startswith("it 5/") for m in messages)  # it did not start over
    assert (out / "weights.safetensors").read_bytes() != before
    with pytest.raises(LNQError, match="nothing to resume"):
        train_model([phantom_case], tmp_path / "empty", iterations=5, device="cpu", resume=True)


def test_stop_at_pauses_with_a_checkpoint_and_resume_finishes_the_schedule(tmp_path, phantom_case):
    out = tmp_path / "m"
    train_model([phantom_case], out, iterations=8, device="cpu", config=TINY_CONFIG, stop_at=3,
                checkpoint_every=100)
    assert torch.load(out / "train_state" / "state.pt", weights_only=True)["iteration"] == 3
    paused = json.loads((out / "config.json").read_text())["training"]
    assert paused["completed_iterations"] == 3 and paused.get("finished") is None
    train_model([phantom_case], out, iterations=8, device="cpu", resume=True)
    done = json.loads((out / "config.json").read_text())["training"]
    assert done["completed_iterations"] == 8 and done["finished"]
    assert [it for it, _ in _losses(out)][-1] == 8


@pytest.mark.parametrize("damage", [lambda b: b[:3000], lambda b: b"", lambda b: bytes(range(256)) * 8,
                                    lambda b: None])
def test_a_damaged_checkpoint_is_one_line_and_changes_nothing(tmp_path, phantom_case, damage):
    """`train --resume` over a state.pt cut short, empty, of other bytes or of another dict: torch's
    traceback (zip reader, EOFError, unpickler, KeyError)."""
    out = tmp_path / "m"
    train_model([phantom_case], out, iterations=2, device="cpu", config=TINY_CONFIG)
    state = out / "train_state" / "state.pt"
    damaged = damage(state.read_bytes())
    if damaged is None:
        torch.save({"weights": 1}, state)
    else:
        state.write_bytes(damaged)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(LNQError, match="state.pt is damaged .* train again without --resume into a new"):
        train_model([phantom_case], out, iterations=4, device="cpu", resume=True)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_init_from_records_parent(tmp_path, phantom_case):
    parent = train_model([phantom_case], tmp_path / "p", iterations=2, device="cpu", config=TINY_CONFIG)
    child = train_model([phantom_case], tmp_path / "c", iterations=2, device="cpu", init_from=parent)
    p_cfg = json.loads((parent / "config.json").read_text())
    c_cfg = json.loads((child / "config.json").read_text())
    assert c_cfg["parent_version"] == p_cfg["version"] != c_cfg["version"]
    assert c_cfg["architecture"] == p_cfg["architecture"]
    assert c_cfg["inference"] == p_cfg["inference"]


def test_trainer_and_predictor_agree_on_inference_defaults(tmp_path, phantom_case):
    out = train_model([phantom_case], tmp_path / "m", iterations=1, device="cpu", config=TINY_CONFIG)
    written = json.loads((out / "config.json").read_text())["inference"]
    defaults = InferenceConfig()
    assert written["min_component_mm3"] == defaults.min_component_mm3 == 300.0
    assert written["max_mean_hu"] == defaults.max_mean_hu and written["threshold"] == defaults.threshold
    assert written["patch_size"] == TINY_CONFIG["inference"]["patch_size"]
    cfg = json.loads((out / "config.json").read_text())
    for key in ("min_component_mm3", "max_mean_hu", "threshold", "overlap", "sw_batch_size"):
        del cfg["inference"][key]  # a model written before these settings existed
    (out / "config.json").write_text(json.dumps(cfg))
    read = Predictor(out, device="cpu").config.inference
    assert {k: getattr(read, k) for k in written} == written


def test_load_training_cases_in_processes_matches_serial(tmp_path):
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "d", 3, seed=4, shape=(16, 64, 64), spacing=(6.0, 6.0, 12.0))
    serial = load_training_cases(tmp_path / "d", workers=1)
    parallel = load_training_cases(tmp_path / "d", workers=2)
    assert [c.case_id for c in parallel] == [c.case_id for c in serial] == sorted(c.case_id for c in serial)
    for a, b in zip(serial, parallel):
        assert np.array_equal(a.states, b.states) and np.array_equal(a.ct.array, b.ct.array)
        assert a.ct.spacing == b.ct.spacing


def test_load_training_cases_and_errors(tmp_path):
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "d", 1, seed=3, shape=(16, 64, 64), spacing=(6.0, 6.0, 12.0))
    cases = load_training_cases(tmp_path / "d")
    assert len(cases) == 1 and cases[0].states.shape == cases[0].ct.shape
    naive = load_training_cases(tmp_path / "d", naive=True)
    assert set(np.unique(naive[0].states)) <= {0, 1}
    with pytest.raises(LNQError, match="does not exist"):
        load_training_cases(tmp_path / "missing")
    with pytest.raises(LNQError, match="no CT files with a matching \\*-seg"):
        load_training_cases(tmp_path)
    with pytest.raises(LNQError, match="no training cases"):
        train_model([], tmp_path / "x", iterations=1)



def test_a_case_that_cannot_be_trained_on_is_named(tmp_path):
    """A seg that does not overlap its CT, or a CT with NaN voxels, in a folder of many cases: the error
    named neither the case nor (for NaN) the cause (training diverged: "lower lr")."""
    from lnq_napari.io.readers import read_volume, write_volume
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "d", 2, seed=3, shape=(16, 64, 64), spacing=(6.0, 6.0, 12.0))
    seg = tmp_path / "d" / "lnq2023-train-0002-seg.nrrd"
    labels = read_volume(seg)
    write_volume(seg, Volume(labels.array, labels.spacing, (9000.0, 9000.0, 9000.0), labels.direction))
    with pytest.raises(LNQError, match=r"^case lnq2023-train-0002: the labels .* do not overlap the CT"):
        load_training_cases(tmp_path / "d", workers=1)
    ct_path = tmp_path / "d" / "lnq2023-train-0001-ct.nrrd"
    ct = read_volume(ct_path)
    hu = np.asarray(ct.array).astype(np.float32)
    hu[5, 30, 30] = np.nan
    write_volume(ct_path, ct.with_array(hu))
    with pytest.raises(LNQError, match=r"^case lnq2023-train-0001: the CT holds 1 NaN or infinite voxel"):
        load_training_cases(tmp_path / "d", workers=1)


def test_cuda_asked_but_absent():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(LNQError, match="no CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")  # a notebook's own torch device
    assert resolve_device(None).type == "cpu"


def test_focus_voxels_follow_the_states_onto_the_model_grid():
    ct, labels, *_ = _hand_built()
    states = label_states(ct, labels)
    focus = np.zeros(states.shape, bool)
    focus[10:14, 30:40, 60:70] = True
    prep = PreprocessingConfig(target_spacing=[3.0, 3.0, 6.0])
    rng = np.random.default_rng(0)
    plain, = _prepare_sources([TrainingCase("a", ct, states)], prep, rng, None)
    focused, = _prepare_sources([TrainingCase("a", ct, states, focus)], prep, rng, None)
    np.testing.assert_array_equal(focused.states, plain.states)  # the states are not changed
    assert plain.focus_voxels is None and len(focused.focus_voxels) > 0
    expected, = _prepare_sources([TrainingCase("a", ct, focus.astype(np.int8))], prep, rng, None)
    hits = {tuple(p) for p in np.argwhere(expected.states == 1)}
    assert {tuple(p) for p in focused.focus_voxels} == hits  # exactly the resampled focus


# ---------------------------------------------------------------- fine-tune terms: replay mix, distillation
def test_sampler_mixes_replay_patches_into_each_batch_as_asked():
    from lnq_napari.training.sampler import PatchSampler, PatchSource

    rng = np.random.default_rng(0)
    states = np.zeros((8, 16, 16), np.int8)
    states[3:5, 6:9, 6:9] = 1
    edited = np.zeros(states.shape, bool)
    edited[3:5, 6:9, 6:9] = True
    own = PatchSource.build("own", np.full(states.shape, -7.0, np.float32), states, rng, focus=edited)
    replay = PatchSource.build("old", np.full(states.shape, 7.0, np.float32), states, rng, replay=True)

    def batches(fraction):
        sampler = PatchSampler([own, replay], (4, 8, 8), 0.5, 0.0, np.random.default_rng(1), flip_x=False,
                               intensity_jitter=0.0, replay_fraction=fraction)
        return [sampler.sample_batch(4) for _ in range(50)]

    for batch in batches(0.5):  # exactly half of every batch, replay first
        assert list(batch.from_replay) == [True, True, False, False]
        assert set(np.unique(batch.images[:2])) <= {0.0, 7.0} and 7.0 in batch.images[:2]  # 0: padding
        assert set(np.unique(batch.images[2:])) <= {0.0, -7.0} and -7.0 in batch.images[2:]
        assert not batch.edited[:2].any()  # replay cases have no edits
    shares = [b.from_replay.mean() for b in batches(0.3)]
    assert set(shares) <= {0.25, 0.5} and abs(np.mean(shares) - 0.3) < 0.06
    assert not any(b.from_replay.any() for b in batches(0.0))
    assert any(b.edited.any() for b in batches(0.0))


def test_distillation_loss_is_zero_on_edited_voxels():
    from lnq_napari.training.losses import distillation_bce

    torch.manual_seed(0)
    logits = torch.randn(1, 1, 4, 6, 6, requires_grad=True)
    parent = torch.rand(1, 1, 4, 6, 6)
    edited = torch.zeros(1, 1, 4, 6, 6, dtype=torch.bool)
    edited[..., 1:3, 2:5, 2:5] = True
    loss = distillation_bce(logits, parent, ~edited)
    loss.backward()
    assert loss > 0 and (logits.grad[edited] == 0).all() and (logits.grad[~edited] != 0).all()
    changed = logits.detach().clone()
    changed[edited] = 50.0  # whatever the network says where the reviewer edited costs nothing
    assert torch.isclose(distillation_bce(changed, parent, ~edited), loss.detach())
    assert distillation_bce(logits, parent, torch.zeros_like(edited)) == 0
    at_target = torch.logit(parent.clamp(1e-4, 1 - 1e-4))
    entropy = distillation_bce(at_target, parent, ~edited)
    assert distillation_bce(logits.detach(), parent, ~edited) > entropy  # minimal at the parent's output


def test_trainable_norm_first_freezes_all_but_norms_and_the_first_block():
    from lnq_napari.model.network import build_network
    from lnq_napari.training.anchor import trainable_parameters

    net = build_network("unet3d", TINY_CONFIG["architecture"]["kwargs"])
    assert len(trainable_parameters(net, "all")) == len(list(net.parameters()))
    kept = trainable_parameters(net, "norm_first")
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    assert len(kept) == len(names) < len(list(net.parameters()))
    assert all(n.startswith("encoders.0.") or n.split(".")[-2] in ("1", "4") for n in names)
    assert {"encoders.0.0.weight", "decoders.0.1.weight"} <= names and "head.weight" not in names
    with pytest.raises(LNQError, match="trainable"):
        trainable_parameters(net, "some")


def test_a_model_trained_with_the_command_keeps_to_the_mediastinum_as_the_bundled_one(tmp_path):
    """`lnq-napari train` wrote mediastinum_margin_mm null: a researcher's own model kept nodes below the
    lungs of a real chest CT, which the bundled model leaves out."""
    from lnq_napari import api
    from lnq_napari.model import bundled_model_path
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "d", 1, seed=3, shape=(16, 64, 64), spacing=(6.0, 6.0, 12.0))
    out = api.train(tmp_path / "d", tmp_path / "m", iterations=1, device="cpu")
    written = json.loads((out / "config.json").read_text())["inference"]["mediastinum_margin_mm"]
    bundled = json.loads((bundled_model_path() / "config.json").read_text())["inference"]
    assert written == bundled["mediastinum_margin_mm"] == 10.0
