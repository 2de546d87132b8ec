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
