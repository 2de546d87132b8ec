"""workspace repair: a label file whose vNNN.json is missing or damaged gets it back from its header, with
its number, parent, edits, model version and time; what cannot be recovered is said; files a save may be
writing, unreadable provenance and torn label files are left alone (never deleted)."""

from __future__ import annotations

import json
import os
import pathlib
import warnings

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace

CASE = "lnq2023-train-0000"
MARK = {"centre_zyx": [2, 3, 3], "radius_mm": 10.0}
REJECTED = {"centre_zyx": [1, 1, 1], "radius_mm": 4.0}


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """v001 original, v002 prediction, v003 the reviewer's correction of v002 (marks and a rejection)."""
    ct = np.random.default_rng(0).integers(-1000, 400, (4, 8, 8)).astype(np.int16)
    seg = np.zeros(ct.shape, np.uint8)
    seg[1:3, 2:5, 2:5] = 1
    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", Volume(ct))
    write_volume(tmp_path / "data" / f"{CASE}-seg.nrrd", Volume(seg))
    ws = Workspace.init(tmp_path / "my ws", tmp_path / "data")
    labels = ws.read_labels(CASE, "v001")
    ws.add_label_version(CASE, labels, "prediction", model_version="bundled")
    ws.add_label_version(CASE, labels, "correction", model_version="bundled", edits=5, parent="v002",
                         marked=[MARK], rejected=[REJECTED], origin="/data/ct a")
    return ws


def _folder(ws: Workspace) -> pathlib.Path:
    return ws.root / "labels" / CASE


def _aged(*paths: pathlib.Path) -> None:
    for path in paths:
        stamp = path.stat().st_mtime - 2 * 3600
        os.utime(path, (stamp, stamp))


def _files(ws: Workspace) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in _folder(ws).iterdir()}


def test_a_deleted_provenance_is_rebuilt_from_the_header_keeping_number_and_parent(ws, capsys):
    """The warning's fix was to open the file in napari and Save: a new version, parented on the newest one
    (a prediction `next` stored meanwhile), with 0 edits and no model version. Repair keeps v003 as it was
    saved but for the lists only its JSON held, and says so."""
    side = _folder(ws) / "v003.json"
    before = json.loads(side.read_text())
    side.unlink()
    with pytest.warns(UserWarning, match=r"workspace repair '.*my ws'"):
        ws.warn_lost_corrections("ranked")
    assert main(["workspace", "repair", str(ws.root)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{CASE} v003: v003.json rebuilt from the header of v003.seg.nrrd (correction, parent "
                   "v002, edits 5, model bundled); not recoverable: its marked nodes and rejected "
                   "suggestions, if it had any (kept only in v003.json)")
    after = ws.version_info(CASE, "v003")
    assert {k: v for k, v in after.items() if k != "repaired"} == {
        k: v for k, v in before.items() if k not in ("marked", "rejected")}
    assert ws.latest_version(CASE, "correction")["version"] == "v003"
    assert ws.journal("repair")[-1]["versions"] == [f"{CASE}/v003"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ws.warn_lost_corrections("ranked")  # nothing left to warn of
    assert main(["workspace", "repair", str(ws.root)]) == 0
    said = capsys.readouterr().out.strip()
    assert said == f"nothing to repair: every label file of {ws.root} has its provenance"


def test_a_provenance_edited_beyond_use_keeps_its_marks_and_is_kept_aside(ws):
    side = _folder(ws) / "v003.json"
    damaged = json.dumps({**json.loads(side.read_text()), "bytes": "many"}).encode()
    side.write_bytes(damaged)
    _aged(side)
    (repair,) = api.repair_workspace(ws.root)
    assert repair.repaired and repair.note.endswith("; nothing lost"), repair.note
    info = ws.version_info(CASE, "v003")
    assert info["marked"] == [MARK] and info["rejected"] == [REJECTED] and info["edits"] == 5
    assert (_folder(ws) / "v003.json.damaged").read_bytes() == damaged


def test_a_save_that_may_still_be_writing_is_left_alone(ws):
    """An empty placeholder beside a label file changed within the hour is a save in flight."""
    side = _folder(ws) / "v003.json"
    side.write_text("")
    before = _files(ws)
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and "a save may still be writing it" in repair.note
    assert _files(ws) == before and ws.journal("repair") == []


def test_a_provenance_that_cannot_be_read_is_a_permission_problem_not_restored(ws, monkeypatch):
    """Another account's save under umask 077: the warning said "restore v003.json from a backup"."""
    side = _folder(ws) / "v003.json"
    _aged(side, _folder(ws) / "v003.seg.nrrd")
    read_text = pathlib.Path.read_text

    def refused(self, *args, **kwargs):
        if self == side:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", refused)
    before = _files(ws)
    with pytest.warns(UserWarning) as caught:
        ws.warn_lost_corrections("ranked")
    (said,) = [str(w.message) for w in caught]
    assert "a permission problem, not damage" in said and "backup" not in said and "repair" not in said
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and "a permission problem" in repair.note and "chmod a+r" in repair.note
    assert _files(ws) == before


def test_a_torn_label_file_is_named_with_the_way_out_and_never_deleted(ws):
    """An old version's killed save: a label file cut short beside an empty placeholder, an hour old."""
    folder = _folder(ws)
    whole = (folder / "v003.seg.nrrd").read_bytes()
    (folder / "v004.seg.nrrd").write_bytes(whole[:len(whole) - 40])
    (folder / "v004.json").write_text("")
    _aged(folder / "v004.seg.nrrd", folder / "v004.json")
    before = _files(ws)
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and repair.version == "v004"
    assert "though its header says correction: a torn leftover; delete" in repair.note, repair.note
    assert "(repair never deletes)" in repair.note
    assert _files(ws) == before
