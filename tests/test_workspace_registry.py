"""ModelRegistry: register (copied or in place), ids, activation, the model to predict with."""

from __future__ import annotations

import json

import pytest

from lnq_napari.errors import LNQError
from lnq_napari.workspace import ModelRegistry
from lnq_napari.workspace import registry as registry_module


def _model(folder, weights: bytes = b"w"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": "tiny"}))
    (folder / "weights.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def registry(tmp_path):
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
