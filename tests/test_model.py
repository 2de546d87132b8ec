"""Model folders: save/load round trip, refusal of tampered, truncated and foreign files, model lookup,
and the typed config (its defaults, its config.json round trip)."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import torch

from lnq_napari.anatomy import RoiConfig
from lnq_napari.errors import LNQError
from lnq_napari.model import bundled_model_path, resolve_model
from lnq_napari.model.checkpoint import load_checkpoint, load_state, read_config, save_checkpoint, sha256_file
from lnq_napari.model.config import InferenceConfig, ModelConfig, StatesConfig, TrainConfig
from lnq_napari.model.network import UNet3D, build_network
from lnq_napari.preprocess import PreprocessingConfig

torch.set_num_threads(1)

TINY = {"features": [4, 8], "strides": [[1, 2, 2]], "kernels": [[1, 3, 3], [3, 3, 3]]}


def _config() -> ModelConfig:
    return ModelConfig.from_dict(
        {"architecture": {"name": "unet3d", "kwargs": TINY}, "preprocessing": {}, "version": "test-1"})


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    net = build_network("unet3d", TINY)
    return save_checkpoint(tmp_path / "m", net.state_dict(), _config()), net


def test_network_shape_and_stride():
    net = UNet3D(features=(4, 8, 16), strides=((1, 2, 2), (2, 2, 2)))
    assert net.total_stride == (2, 4, 4)
    x = torch.zeros(1, 1, 4, 16, 24)
    assert net(x).shape == (1, 1, 4, 16, 24)


def test_unknown_architecture_refused():
    with pytest.raises(LNQError, match="unknown model architecture"):
        build_network("os.system", {})
    with pytest.raises(LNQError, match="bad arguments"):
        build_network("unet3d", {"no_such_arg": 1})


def test_round_trip_gives_same_outputs(model_dir):
    folder, net = model_dir
    loaded, config = load_checkpoint(folder)
    assert isinstance(config, ModelConfig)
    assert config.version == "test-1" and len(config.weights_sha256) == 64
    x = torch.randn(1, 1, 4, 16, 16)
    net.eval()
    with torch.inference_mode():
        assert torch.allclose(net(x), loaded(x))


def test_tampered_weights_refused(model_dir):
    folder, _ = model_dir
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LNQError, match="sha256"):
        load_checkpoint(folder)


def test_truncated_weights_refused(model_dir):
    folder, _ = model_dir
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LNQError, match="truncated"):
        load_checkpoint(folder)


def test_truncated_file_with_matching_hash_refused(model_dir):
    """A broken safetensors file whose hash was (re)recorded is still refused, not crashed on."""
    from lnq_napari.model.checkpoint import sha256_file

    folder, _ = model_dir
    weights = folder / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights_sha256"] = sha256_file(weights)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LNQError, match="safetensors"):
        load_checkpoint(folder)


def test_foreign_and_broken_config_refused(model_dir):
    folder, _ = model_dir
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    with pytest.raises(LNQError, match="not an lnq-napari model"):
        load_checkpoint(folder)
    cfg_path.write_text("{not json")
    with pytest.raises(LNQError, match="not valid JSON"):
        read_config(folder)
    cfg["architecture"]["kwargs"] = {"features": [4, 8, 16], "strides": [[1, 2, 2], [2, 2, 2]]}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(LNQError, match="do not fit"):
        load_checkpoint(folder)
    cfg_path.unlink()
    with pytest.raises(LNQError, match="config.json is missing"):
        load_checkpoint(folder)


def test_resolve_model(tmp_path, model_dir):
    folder, _ = model_dir
    assert resolve_model(folder) == folder
    assert resolve_model(folder / "config.json") == folder
    missing = tmp_path / "nowhere"
    with pytest.raises(LNQError, match="nowhere"):
        resolve_model(missing)


def test_bundled_model_is_complete_and_small():
    path = bundled_model_path()
    assert (path / "config.json").is_file() and (path / "weights.safetensors").is_file(), \
        f"the bundled model is missing from {path}"
    assert resolve_model(None) == path
    net, config = load_checkpoint(path)
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 20 * 1024 * 1024
    assert config.version and config.training is not None and config.training.iterations > 0
    assert config.preprocessing.target_spacing and config.inference.patch_size
    assert np.isfinite(sum(float(p.detach().abs().sum()) for p in net.parameters()))


def test_bundled_config_round_trips_through_model_config(tmp_path):
    """config.json -> ModelConfig -> config.json keeps every key and value; the weights hash still matches."""
    path = bundled_model_path()
    raw = json.loads((path / "config.json").read_text())
    state, config = load_state(path)
    saved = save_checkpoint(tmp_path / "copy", state, config)
    again = json.loads((saved / "config.json").read_text())
    assert again["weights_sha256"] == raw["weights_sha256"] == sha256_file(path / "weights.safetensors")
    # settings newer than the bundled model are written with their dataclass defaults; nothing else changes
    defaults = ModelConfig().to_dict()
    expected = dict(raw)
    for section in ("inference", "train"):
        newer = {k: v for k, v in defaults[section].items() if k not in raw[section]}
        expected[section] = {**raw[section], **newer}
    assert again == expected
    assert ModelConfig.from_dict(again) == config
    # the typed preprocessing and states sections give back exactly the bundled objects
    assert isinstance(config.preprocessing, PreprocessingConfig) and isinstance(config.states, StatesConfig)
    written = config.to_dict()
    for section in ("preprocessing", "states"):
        assert written[section] == raw[section] and list(written[section]) == list(raw[section])


def test_missing_settings_get_the_dataclass_defaults_and_unknown_keys_survive(tmp_path, model_dir):
    folder, _ = model_dir
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["inference"]["min_component_mm3"], cfg["train"]["lr"]
    cfg["inference"]["future_setting"] = [1, 2]
    cfg["from_a_newer_version"] = {"a": 1}
    (folder / "config.json").write_text(json.dumps(cfg))
    config = read_config(folder)
    assert config.inference.min_component_mm3 == InferenceConfig().min_component_mm3 == 300.0
    assert config.train.lr == TrainConfig().lr
    state, _ = load_state(folder)
    again = json.loads((save_checkpoint(tmp_path / "re", state, config) / "config.json").read_text())
    assert again["inference"]["future_setting"] == [1, 2] and again["from_a_newer_version"] == {"a": 1}
    assert again["inference"]["min_component_mm3"] == 300.0


def test_old_preprocessing_and_states_get_defaults_and_keep_unknown_keys():
    """A config.json of an older (or newer) version: missing settings read as the defaults, unknown keys
    are kept (also within ``preprocessing.roi``) and written back."""
    old = {"preprocessing": {"target_spacing": [4.0, 4.0, 8.0], "roi": {"margin_mm": 10.0, "new_rule": 1},
                             "resampler": "bspline"},
           "states": {"high_hu": 200.0, "future_rule": [1, 2]}}
    config = ModelConfig.from_dict(old)
    prep, states = config.preprocessing, config.states
    assert prep.target_spacing == [4.0, 4.0, 8.0] and prep.hu_clip == PreprocessingConfig().hu_clip
    assert prep.roi.margin_mm == 10.0 and prep.roi.min_lung_ml == RoiConfig().min_lung_ml
    assert prep.extras == {"resampler": "bspline"} and prep.roi.extras == {"new_rule": 1}
    assert states.high_hu == 200.0 and states.low_hu == StatesConfig().low_hu
    assert states.extras == {"future_rule": [1, 2]}
    written, default = config.to_dict(), ModelConfig().to_dict()
    assert written["preprocessing"]["resampler"] == "bspline"
    roi = written["preprocessing"]["roi"]
    assert roi == {**default["preprocessing"]["roi"], "margin_mm": 10.0, "new_rule": 1}
    assert written["states"] == {**default["states"], "high_hu": 200.0, "future_rule": [1, 2]}
    assert ModelConfig.from_dict(written) == config
    defaults = ModelConfig.from_dict({})
    assert defaults.preprocessing == PreprocessingConfig() and defaults.states == StatesConfig()


@pytest.mark.parametrize("bad", [{"states": [1, 2]}, {"preprocessing": {"roi": 5}}])
def test_a_preprocessing_or_states_section_of_the_wrong_kind_is_one_line(bad):
    with pytest.raises(LNQError, match="is not a JSON object; re-export the model") as info:
        ModelConfig.from_dict(bad)
    assert "\n" not in str(info.value)


def test_default_model_config_names_every_inference_setting():
    written = ModelConfig().to_dict()["inference"]
    assert set(written) == {f.name for f in fields(InferenceConfig)} - {"extras"}
    assert ModelConfig().merged({"inference": {"threshold": 0.4}}).inference.threshold == 0.4
    with pytest.raises(LNQError, match="not a JSON object"):
        ModelConfig.from_dict({"inference": [1, 2]})
