"""Cache: named JSON files; missing or damaged ones read as empty."""

from __future__ import annotations

from lnq_napari.workspace.cache import Cache


def test_write_read_and_damaged_files(tmp_path):
    cache = Cache(tmp_path / "cache")
    assert cache.read("scores-m001.json") == {}
    cache.write("scores-m001.json", {"a": 0.5})
    assert cache.read("scores-m001.json") == {"a": 0.5}
    assert cache.path("scores-m001.json") == tmp_path / "cache" / "scores-m001.json"
    cache.path("scores-m001.json").write_text("{")
    assert cache.read("scores-m001.json") == {}


def test_masks_round_trip_and_damaged_ones_read_as_missing(tmp_path):
    import numpy as np

    cache = Cache(tmp_path / "cache")
    assert cache.read_mask("bg-x.npz") is None
    mask = np.random.default_rng(0).random((3, 5, 7)) > 0.5
    cache.write_mask("bg-x.npz", mask)
    back = cache.read_mask("bg-x.npz")
    assert back.dtype == bool and back.shape == mask.shape and np.array_equal(back, mask)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["bg-x.npz"]  # no temp file left
    cache.path("bg-x.npz").write_bytes(b"not a zip")
    assert cache.read_mask("bg-x.npz") is None


def test_the_workspace_files_are_standard_json_with_undefined_figures_as_null(tmp_path):
    """An undefined figure (a surface Dice of two empty masks) was written as NaN, which strict JSON
    readers (JavaScript, Go, jq) refuse: in the cache, the journal, the registry and a fine-tune's plan;
    read back as NaN where figures are expected."""
    import dataclasses
    import json
    import math

    import numpy as np

    from lnq_napari.activation import CaseFigures
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.workspace import Workspace

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))

    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd", Volume(np.zeros((4, 6, 6), np.int16)))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    figures = CaseFigures("c", math.nan, 0, 0, 0, math.nan, np.float32(1.5))
    ws.update_cache("held_out.json", {"k": dataclasses.asdict(figures)})
    ws.log("finetune", figures={"surface_dice_vs_parent": math.nan})
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"weights")
    ws.register_model(model, metrics={"figures": {"candidate_surface_dice": math.nan}})
    kept = strict(ws.cache.path("held_out.json").read_text())["k"]
    assert kept["surface_dice"] is None and kept["false_volume_ml"] == 1.5
    back = CaseFigures.from_dict(kept)
    assert math.isnan(back.surface_dice) and math.isnan(back.dice) and back.false_volume_ml == 1.5
    lines = [strict(line) for line in ws.journal_path.read_text().splitlines()]
    assert [e["figures"] for e in lines if e["action"] == "finetune"] == [{"surface_dice_vs_parent": None}]
    registry = strict((ws.models_dir / "registry.json").read_text())
    assert registry["versions"][0]["metrics"]["figures"]["candidate_surface_dice"] is None
