"""Model folders: save/load round trip, refusal of tampered, truncated and foreign files, model lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lnq_napari.errors import LNQError
from lnq_napari.model import bundled_model_path, resolve_model
from lnq_napari.model.checkpoint import load_checkpoint, read_config, save_checkpoint
from lnq_napari.model.network import UNet3D, build_network

torch.set_num_threads(1)

TINY = {"features": [4, 8], "strides": [[1, 2, 2]], "kernels": [[1, 3, 3], [3, 3, 3]]}


def _config() -> dict:
    return {"architecture": {"name": "unet3d", "kwargs": TINY}, "preprocessing": {}, "version": "test-1"}


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
    assert config["version"] == "test-1" and len(config["weights_sha256"]) == 64
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
    if not (path / "config.json").exists():
        pytest.skip("no bundled model in this checkout")
    assert resolve_model(None) == path
    net, config = load_checkpoint(path)
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 20 * 1024 * 1024
    for key in ("version", "preprocessing", "inference", "training"):
        assert key in config
    assert np.isfinite(sum(float(p.detach().abs().sum()) for p in net.parameters()))
