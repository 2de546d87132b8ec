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
