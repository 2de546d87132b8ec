"""LabelStore: versions count up, provenance and checksums, crash leftovers ignored, numbers never reused."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import LabelStore, SavedLabels

GRID = dict(spacing=(0.7, 0.7, 2.5), origin=(1.0, 2.0, 3.0))


def _labels(value: int = 3) -> Volume:
    labels = Volume(np.zeros((3, 8, 8), np.int32), **GRID)
    labels.array[1, 2:4, 2:4] = value
    return labels


def test_versions_count_up_with_provenance_and_never_overwrite(tmp_path):
    store = LabelStore(tmp_path, "c1")
    first = store.add(_labels(), "prediction", model_version="m1")
    second = store.add(_labels(), "correction", model_version="m1", edits=2, layer="nodes")
    assert first == SavedLabels("c1", "v001", tmp_path / "c1" / "v001.seg.nrrd")
    assert second.version == "v002" and first.path.exists()
    prov = store.info("v002")
    assert prov["parent"] == "v001" and prov["edits"] == 2 and prov["layer"] == "nodes"
    assert prov["case"] == "c1" and prov["file"] == "v002.seg.nrrd" and prov["source"] == "correction"
    assert prov["sha256"] == hashlib.sha256(second.path.read_bytes()).hexdigest()
    assert prov["bytes"] == second.path.stat().st_size
    back = read_labels(second.path)
    assert np.array_equal(back.array, (_labels().array > 0).astype(np.uint8)) and back.same_grid(_labels())
    assert back.meta["lnq_edits"] == "2" and back.meta["lnq_model_version"] == "m1"
    assert back.meta["lnq_version"] == "v002" and back.meta["lnq_source"] == "correction"
    assert [v["version"] for v in store.versions()] == ["v001", "v002"]
    assert store.latest("prediction")["version"] == "v001"
    assert store.read("v001").meta["lnq_source"] == "prediction"
    assert not [p for p in store.folder.iterdir() if ".tmp" in p.name]


def test_unknown_source_and_version_raise(tmp_path):
    store = LabelStore(tmp_path, "c1")
    with pytest.raises(LNQError, match="source"):
        store.add(_labels(), "guess")
    assert not store.folder.exists() or not list(store.folder.iterdir())
    with pytest.raises(LNQError, match="no label version"):
        store.info("v001")
    with pytest.raises(LNQError, match="no label version"):
        store.path("../x")
    assert store.versions() == [] and store.latest() is None


@pytest.mark.parametrize("killed_in", ["link", "write"], ids=["placing the label", "writing the provenance"])
def test_a_killed_save_leaves_nothing_committed_and_its_number_unused(tmp_path, monkeypatch, killed_in):
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, killed_in, killed)
    with pytest.raises(KeyboardInterrupt):
        store.add(_labels(1), "correction")
    monkeypatch.undo()
    assert [v["version"] for v in store.versions()] == ["v001"]
    assert np.array_equal(store.read("v001").array, (_labels().array > 0).astype(np.uint8))
    assert not any(p.name.startswith(".") for p in store.folder.iterdir())
    assert store.add(_labels(1), "correction").version == "v003"  # v002 stays the crash's


def test_truncated_or_unreadable_versions_are_ignored(tmp_path):
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")
    second = store.add(_labels(1), "autosave")
    second.path.write_bytes(second.path.read_bytes()[:20])
    (store.folder / "v003.json").write_text('{"version": "v0')  # torn provenance
    (store.folder / "v004.json").write_text("")  # a reservation whose save never finished
    assert [v["version"] for v in store.versions()] == ["v001"]
    assert store.latest()["version"] == "v001"
    with pytest.raises(LNQError):
        store.info("v002")
    assert store.add(_labels(), "correction").version == "v005"


def test_two_stores_on_one_folder_never_share_a_number(tmp_path):
    a, b = LabelStore(tmp_path, "c1"), LabelStore(tmp_path, "c1")
    saved = [(a if i % 2 else b).add(_labels(i + 1), "correction", edits=i) for i in range(6)]
    assert [s.version for s in saved] == [f"v{i:03d}" for i in range(1, 7)]
    assert [v["edits"] for v in a.versions()] == list(range(6))


def test_a_taken_number_is_skipped(tmp_path):
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")
    # another process took v002 between this store's scan and its create: simulate by a stale scan
    store._highest_number = lambda: 0  # type: ignore[method-assign]
    (store.folder / "v002.json").write_text("")
    assert store.add(_labels(), "correction").version == "v003"
    assert json.loads((store.folder / "v001.json").read_text())["source"] == "original"


def test_labels_refused_while_written_give_their_number_back(tmp_path):
    """2D labels passed the value check, took v002, then failed to write: an empty v002.json stayed and the
    next save became v003."""
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")
    with pytest.raises(LNQError, match="must be 3D"):
        store.add(Volume(np.ones((8, 8), np.uint8)), "correction")
    assert sorted(p.name for p in store.folder.iterdir()) == ["v001.json", "v001.seg.nrrd"]
    assert store.add(_labels(1), "correction").version == "v002"


@pytest.mark.parametrize("field", ["version", "file", "time", "case", "sha256"])
def test_provenance_fields_the_store_sets_are_refused_before_a_number_is_taken(tmp_path, field):
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")
    with pytest.raises(LNQError, match=f"{field} is set by the label store"):
        store.add(_labels(1), "correction", **{field: "v999"})
    assert [v["version"] for v in store.versions()] == ["v001"]
    assert store.add(_labels(1), "correction", reviewer="x").version == "v002"
    assert store.latest()["version"] == "v002" and store.read("v002").array.any()


def test_provenance_beyond_ascii_is_kept_exactly_and_the_header_holds_escapes(tmp_path):
    store = LabelStore(tmp_path, "Müller ç")
    saved = store.add(_labels(), "correction", reviewer="José Åström", note="ganglion lymphatique élargi")
    prov = store.info(saved.version)
    assert prov["reviewer"] == "José Åström" and prov["note"] == "ganglion lymphatique élargi"
    assert prov["case"] == "Müller ç"
    back = read_labels(saved.path)
    assert back.meta["lnq_reviewer"] == "Jos\\xe9 \\xc5str\\xf6m"  # NRRD headers are ASCII
    assert b"lnq_reviewer:=Jos\\xe9 \\xc5str\\xf6m\n" in saved.path.read_bytes()


def test_version_provenance_of_a_store_file_and_of_names_that_only_look_like_one(tmp_path, monkeypatch):
    """A label store's file gives its version's provenance; a relative or rootless vNNN name gives None
    (it raised "'' cannot name a case", so a SEG opened by a relative name failed in napari)."""
    from lnq_napari.workspace.labels import version_provenance

    saved = LabelStore(tmp_path / "lnq-labels", "case1").add(
        Volume(np.zeros((2, 3, 4), np.uint8), (1.0, 1.0, 1.0)), "correction", origin="/data/ct")
    assert version_provenance(saved.path)["origin"] == "/data/ct"
    assert version_provenance(saved.path.with_name(f"{saved.version}.seg.dcm"))["origin"] == "/data/ct"
    monkeypatch.chdir(saved.path.parent)
    assert version_provenance(saved.path.name)["origin"] == "/data/ct"  # relative, resolved
    for name in ("../v001.nrrd", "/v001.dcm", "notes.txt"):
        assert version_provenance(name) is None


def _aged(*paths, seconds: float = 2 * 3600) -> None:
    """Set the modification time of ``paths`` ``seconds`` back (a crash or an edit long ago)."""
    for path in paths:
        stamp = path.stat().st_mtime - seconds
        os.utime(path, (stamp, stamp))


DAMAGED = {  # what was done to a correction's vNNN.json -> what unrecorded() says of it
    "deleted": (lambda p, prov: p.unlink(), "is missing"),
    "emptied": (lambda p, prov: p.write_text(""), "is empty"),
    "torn": (lambda p, prov: p.write_text(json.dumps(prov)[:40]), "is not valid JSON"),
    "bytes as text": (lambda p, prov: p.write_text(json.dumps({**prov, "bytes": str(prov["bytes"])})),
                      "is not the provenance of v002"),
    "file a number": (lambda p, prov: p.write_text(json.dumps({**prov, "file": 5})),
                      "is not the provenance of v002"),
    "no source": (lambda p, prov: p.write_text(json.dumps({k: v for k, v in prov.items() if k != "source"})),
                  "is not the provenance of v002"),
    "a list": (lambda p, prov: p.write_text(json.dumps([prov])), "is not the provenance of v002"),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_label_file_whose_provenance_is_damaged_is_named_not_silently_dropped(tmp_path, damage):
    """A correction's label file, whole, whose vNNN.json was deleted, emptied, torn or edited to wrong
    kinds was ignored without a word (or, for a file that is a number or no source, raised TypeError and
    KeyError): the fine-tune loop lost the reviewer's labels silently."""
    store = LabelStore(tmp_path, "c1")
    store.add(_labels(), "original")
    saved = store.add(_labels(1), "correction", edits=2)
    side = store.folder / "v002.json"
    act, why = DAMAGED[damage]
    act(side, json.loads(side.read_text()))
    if side.exists():
        _aged(side, saved.path)
    assert [v["version"] for v in store.versions()] == ["v001"] and store.lost() == []
    assert store.latest("correction") is None
    (found,) = store.unrecorded()
    assert (found.path, found.side, found.source) == (saved.path, side, "correction")
    assert found.why.startswith(why)
    kinds = {"deleted": "missing", "emptied": "empty", "torn": "torn"}
    assert found.kind == kinds.get(damage, "not_provenance")
    assert store.add(_labels(), "correction").version == "v003"  # its number stays taken


def test_what_is_wrong_with_a_provenance_is_decided_by_its_kind_not_its_wording(tmp_path, monkeypatch):
    """Three places branched on the words of ``Unrecorded.why`` ("cannot be read ..."): reworded, a
    permission problem would have been offered a rebuild over the other account's file."""
    from lnq_napari.workspace import labels
    from lnq_napari.workspace.repair import plan_repair

    store = LabelStore(tmp_path, "c1")
    saved = store.add(_labels(1), "correction", edits=2)
    side = store.folder / "v001.json"
    _aged(side, saved.path)
    monkeypatch.setattr(labels, "_provenance", lambda path: (None, "unreadable", "is off limits"))
    (found,) = store.unrecorded()
    plan = plan_repair(store, found)
    assert found.kind == "unreadable" and not plan.rebuildable and "chmod a+r" in plan.fix


def test_a_save_in_flight_is_not_taken_for_a_damaged_provenance(tmp_path):
    """An empty or half-filled placeholder beside a fresh label file is a save between placing its label
    file and filling its provenance (or one killed there a moment ago): never named, until an hour old."""
    store = LabelStore(tmp_path, "c1")
    saved = store.add(_labels(), "correction")
    side = store.folder / "v001.json"
    whole = side.read_text()
    for placeholder in ("", whole[:30]):
        side.write_text(placeholder)
        assert store.unrecorded() == [] and store.versions() == []
    _aged(side, saved.path)
    assert [u.why.split(" (")[0] for u in store.unrecorded()] == ["is not valid JSON"]
    side.write_text(whole)  # restored from a backup: the version again
    assert [v["version"] for v in store.versions()] == ["v001"] and store.unrecorded() == []
