"""The case table: workspace.json made from a data folder, read back, and the v1 format still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.workspace.cases import FORMAT, CaseTable, new_meta, read_meta, workspace_id, write_meta


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _data(tmp_path: Path) -> Path:
    _touch(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd")
    return tmp_path / "data"


def test_new_meta_lists_each_ct_with_its_siblings(tmp_path):
    data = tmp_path / "data"
    ct = _touch(data / "lnq2023-train-0000-ct.nrrd")
    seg = _touch(data / "lnq2023-train-0000-seg.nrrd")
    _touch(data / "lnq2023-train-0001-ct.nrrd")
    _touch(data / "notes.txt")
    meta = new_meta(data, tmp_path / "ws")
    assert meta["format"] == FORMAT and meta["format_version"] == 1 and meta["data"] == str(data.resolve())
    assert meta["root"] == str((tmp_path / "ws").resolve())
    other = str((data / "lnq2023-train-0001-ct.nrrd").resolve())
    assert meta["cases"] == {
        "lnq2023-train-0000": {"ct": str(ct.resolve()), "seg": str(seg.resolve()), "full": None,
                               "nodes": None},
        "lnq2023-train-0001": {"ct": other, "seg": None, "full": None, "nodes": None},
    }
    write_meta(tmp_path / "ws", meta)
    assert read_meta(tmp_path / "ws") == meta


def test_a_version_1_workspace_json_still_reads(tmp_path):
    (tmp_path / "workspace.json").write_text(json.dumps({
        "format": "lnq-napari-workspace", "format_version": 1, "created": "2024-05-01T10:00:00+00:00",
        "data": "/data", "cases": {"c1": {"ct": "/data/c1-ct.nrrd", "seg": "/data/c1-seg.nrrd",
                                          "full": None, "nodes": None}},
    }, indent=1))
    table = CaseTable(read_meta(tmp_path)["cases"], tmp_path)
    assert table.ids() == ["c1"] and table.ct_path("c1") == Path("/data/c1-ct.nrrd")
    assert table.seg_path("c1") == Path("/data/c1-seg.nrrd") and table.full_path("c1") is None
    with pytest.raises(LNQError, match="not in workspace"):
        table.entry("c2")


def test_a_workspace_is_known_by_its_identity_wherever_it_is_and_one_without_the_field_by_its_stamp(tmp_path):
    """Gone from its path was only "no workspace.json there": a new workspace made at the old path was taken
    for the one opened from it."""
    from lnq_napari.workspace.cases import id_at, workspace_gone, workspace_id

    one, two = new_meta(_data(tmp_path), tmp_path / "ws"), new_meta(_data(tmp_path), tmp_path / "ws")
    assert workspace_id(one) != workspace_id(two)  # made in one folder within one second: still two
    write_meta(tmp_path / "ws", one)
    assert id_at(tmp_path / "ws") == workspace_id(one)
    assert not workspace_gone(tmp_path / "ws", workspace_id(one))
    (tmp_path / "ws").rename(tmp_path / "moved")
    assert workspace_gone(tmp_path / "ws", workspace_id(one)) and id_at(tmp_path / "ws") is None
    write_meta(tmp_path / "ws", two)  # another workspace at the old path
    assert workspace_gone(tmp_path / "ws", workspace_id(one))
    assert not workspace_gone(tmp_path / "ws", None) and not workspace_gone(None, "x")  # unknown: a workspace
    old = {"format": FORMAT, "format_version": 1, "created": "2024-05-01T10:00:00+00:00", "root": "/p/ws",
           "data": "/data", "cases": {}}  # made before the id field
    write_meta(tmp_path / "old", old)
    assert id_at(tmp_path / "old") == workspace_id(old) == workspace_id({**old, "cases": {"c": {}}})
    assert workspace_id(old) != workspace_id({**old, "root": "/p/other"})


def test_a_workspace_that_cannot_be_read_now_is_not_taken_for_gone(tmp_path, monkeypatch):
    """A stale network share (ESTALE) or no permission (EACCES): the test of a moved workspace raised, in
    the viewer's autosave timer at every edit."""
    import errno
    import os

    from lnq_napari.workspace.cases import is_workspace, workspace_gone

    write_meta(tmp_path / "ws", new_meta(_data(tmp_path), tmp_path / "ws"))
    real = os.stat

    def stale(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ws")):
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stale)
    assert not workspace_gone(tmp_path / "ws", "some id") and not workspace_gone(tmp_path / "ws", None)
    assert not is_workspace(tmp_path / "ws")  # os.path.isfile: cannot be told, no error


def test_only_a_workspace_json_of_lnq_napari_makes_a_workspace(tmp_path):
    """An Nx monorepo's or a home folder's own workspace.json made every folder below it "inside a
    workspace" (`workspace init` refused there)."""
    from lnq_napari.workspace.cases import is_workspace

    (tmp_path / "workspace.json").write_text(json.dumps({"version": 2, "projects": {}}))
    assert not is_workspace(tmp_path)
    (tmp_path / "workspace.json").write_text(json.dumps({"format": FORMAT, "cases": {}})[:-2])
    assert is_workspace(tmp_path)  # ours damaged: opening it says what is wrong
    write_meta(tmp_path, new_meta(_data(tmp_path), tmp_path))
    assert is_workspace(tmp_path)


def test_a_workspace_moved_with_its_data_finds_the_files_where_they_went(tmp_path):
    """``init W --data data`` in a project folder, then the folder moved: the recorded absolute paths are
    gone, the files lie at the same place relative to the workspace."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.workspace import Workspace

    ct = Volume(np.zeros((2, 4, 4), np.int16))
    write_volume(tmp_path / "proj" / "data" / "lnq2023-train-0000-ct.nrrd", ct)
    Workspace.init(tmp_path / "proj" / "W", tmp_path / "proj" / "data")
    (tmp_path / "proj").rename(tmp_path / "moved")
    ws = Workspace.open(tmp_path / "moved" / "W")
    assert ws.ct_path("lnq2023-train-0000") == (tmp_path / "moved" / "data" / "lnq2023-train-0000-ct.nrrd")
    assert ws.read_ct("lnq2023-train-0000").shape == (2, 4, 4)
    (tmp_path / "moved" / "data" / "lnq2023-train-0000-ct.nrrd").unlink()
    with pytest.raises(LNQError, match="the CT of case lnq2023-train-0000 is gone from .*proj/data/"):
        Workspace.open(tmp_path / "moved" / "W").read_ct("lnq2023-train-0000")


def test_not_a_workspace_raises(tmp_path):
    with pytest.raises(LNQError, match="no workspace.json"):
        read_meta(tmp_path)
    (tmp_path / "workspace.json").write_text("{")
    with pytest.raises(LNQError, match="unreadable"):
        read_meta(tmp_path)
    (tmp_path / "workspace.json").write_text('{"format": "other"}')
    with pytest.raises(LNQError, match="not a lnq-napari workspace file"):
        read_meta(tmp_path)
    with pytest.raises(LNQError, match="ct.nrrd"):
        new_meta(tmp_path, tmp_path / "ws")


def test_a_workspace_whose_file_lost_its_id_is_still_the_one_opened(tmp_path):
    """workspace.json rewritten without its ``id`` (a hand edit, a tool dropping keys): every open case saw
    its workspace gone (Save refused, edits kept aside under the old id, never offered again)."""
    from lnq_napari.workspace.cases import id_at, same_id, workspace_gone, workspace_id, written_for

    meta = new_meta(_data(tmp_path), tmp_path / "ws")
    write_meta(tmp_path / "ws", meta)
    opened = id_at(tmp_path / "ws")
    write_meta(tmp_path / "ws", {k: v for k, v in meta.items() if k != "id"})
    assert not workspace_gone(tmp_path / "ws", opened)
    now = id_at(tmp_path / "ws")
    assert same_id(now, opened) and written_for(tmp_path / "ws", opened, tmp_path / "ws", now)
    other = new_meta(_data(tmp_path), tmp_path / "ws")  # made in the same folder within the second
    assert not same_id(workspace_id(other), opened)  # by the id where both have one


def test_init_under_another_program_s_workspace_json_that_is_no_plain_json_is_not_refused(tmp_path):
    """An Nx monorepo's workspace.json with comments (or any JSON that does not parse) counted as a
    damaged workspace: `workspace init` anywhere below it was refused as "inside a workspace"."""
    from lnq_napari.workspace import Workspace
    from lnq_napari.workspace.cases import is_workspace

    (tmp_path / "mono").mkdir()
    (tmp_path / "mono" / "workspace.json").write_text('// Nx workspace\n{"version": 2, "projects": {}}\n')
    assert not is_workspace(tmp_path / "mono")
    data = _data(tmp_path)
    assert Workspace.init(tmp_path / "mono" / "studies" / "ws", data).case_ids()


def test_a_workspace_json_rewritten_within_the_second_it_was_read_is_read_again(tmp_path):
    """File systems that keep whole seconds (ext3, FAT, some NFS): a rewrite in the second the identity was
    read kept inode, size and mtime, and the memo gave the old workspace's identity."""
    import os
    import time

    from lnq_napari.workspace.cases import id_at

    folder, second = tmp_path / "ws", time.time_ns() // 10**9 * 10**9
    one, two = (new_meta(_data(tmp_path), folder) for _ in range(2))
    write_meta(folder, one)
    os.utime(folder / "workspace.json", ns=(second, second))
    assert id_at(folder) == workspace_id(one)
    with open(folder / "workspace.json", "r+") as f:  # in place: the same inode and size
        f.write(json.dumps({**two, "created": one["created"]}, indent=1))
    os.utime(folder / "workspace.json", ns=(second, second))
    assert id_at(folder) == workspace_id({**two, "created": one["created"]})


def test_a_workspace_json_replaced_by_one_of_the_same_size_and_times_is_read_again(tmp_path):
    """A workspace.json replaced in place by one of the same size with its times kept (cp -p, rsync -t,
    a restore): inode, size and mtime were all the memo compared, and it gave the old identity."""
    import os

    from lnq_napari.workspace.cases import id_at

    folder = tmp_path / "ws"
    one, two = (new_meta(_data(tmp_path), folder) for _ in range(2))
    two["created"] = one["created"]
    write_meta(folder, one)
    os.utime(folder / "workspace.json", (1000, 1000))
    assert id_at(folder) == workspace_id(one)
    with open(folder / "workspace.json", "r+") as f:  # the same inode and size
        f.write(json.dumps(two, indent=1))
    os.utime(folder / "workspace.json", (1000, 1000))
    assert id_at(folder) == workspace_id(two)


def test_a_workspace_made_before_the_id_field_is_one_workspace_by_its_stamp_even_with_a_bar_in_its_folder():
    """An identity is ``<id>|<stamp>`` or, for a workspace made before the id field, its stamp alone; a
    ``|`` in the stamp's folder is not read as an id."""
    from lnq_napari.workspace.cases import same_id, workspace_id

    old = {"format": FORMAT, "created": "2024-05-01T10:00:00+00:00", "root": "/p/a|b", "cases": {}}
    assert same_id(workspace_id(old), workspace_id(dict(old)))
    assert not same_id(workspace_id(old), workspace_id({**old, "root": "/p/a|c"}))
    assert same_id(workspace_id({**old, "id": "f" * 32}), workspace_id(old))  # the file lost its id
    assert not same_id(workspace_id({**old, "id": "f" * 32}), workspace_id({**old, "id": "e" * 32}))
