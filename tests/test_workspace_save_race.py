"""A save racing with its workspace being replaced at its path: the save never replaces or deletes a file it
did not make (another workspace's committed version, a concurrent saver's file), and a refused save makes
no folder at a path whose workspace is gone. The window is hit by hooks on the label store's steps."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import lnq_napari.workspace.labels as module
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace

CASE = "c1"
GRID = dict(spacing=(0.7, 0.7, 2.5), origin=(1.0, 2.0, 3.0))


def _labels(k: int) -> Volume:
    array = np.zeros((6, 32, 32), np.uint8)
    array[1:5, 2:4 + 4 * k, 2:30] = 1  # each k a different mask and file size
    return Volume(array, **GRID)


@pytest.fixture
def data(tmp_path):
    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", Volume(np.zeros((6, 32, 32), np.int16), **GRID))
    return tmp_path / "data"


def _files(ws_root) -> list[str]:
    folder = ws_root / "labels" / CASE
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _once_after_reserving(monkeypatch, action) -> None:
    """Run ``action()`` once, after the save took its number and before it writes its label file (the
    store's ``now`` is called in between)."""
    real = module.now

    def hook():
        monkeypatch.setattr(module, "now", real)
        action()
        return real()

    monkeypatch.setattr(module, "now", hook)


def _replaced_after_reserving(monkeypatch, path, moved_to, replacement) -> None:
    """The workspace at ``path`` moved to ``moved_to`` and ``replacement`` moved to ``path`` once the save
    took its number."""
    def swap():
        path.rename(moved_to)
        replacement.rename(path)

    _once_after_reserving(monkeypatch, swap)


def test_a_refused_save_leaves_another_workspace_s_committed_version_moved_to_the_path_alone(
        tmp_path, data, monkeypatch):
    """W1 moved away and W2, which holds a committed v001, moved to its path while a save into W1 wrote
    v001: the write overwrote W2's label file and the refusal's cleanup deleted W2's v001."""
    path = tmp_path / "ws"
    w1 = Workspace.init(path, data)
    w2 = Workspace.init(tmp_path / "other", data)
    assert w2.add_label_version(CASE, _labels(1), "correction") == "v001"
    before = (tmp_path / "other" / "labels" / CASE / "v001.seg.nrrd").read_bytes()

    _replaced_after_reserving(monkeypatch, path, tmp_path / "w1_moved", tmp_path / "other")
    with pytest.raises(LNQError, match="is gone from there"):
        w1.add_label_version(CASE, _labels(3), "correction")
    now = Workspace.open(path)
    assert [v["version"] for v in now.versions(CASE)] == ["v001"] and now.label_store(CASE).lost() == []
    assert (path / "labels" / CASE / "v001.seg.nrrd").read_bytes() == before
    assert _files(path) == ["v001.json", "v001.seg.nrrd"]  # no temp file of the refused save either
    assert [e["action"] for e in now.journal()] == ["init", "correction"]


def test_a_refused_save_never_deletes_the_version_a_concurrent_saver_was_told_is_saved(
        tmp_path, data, monkeypatch):
    """A reserved v001 in W1; W1 moved away and W2 made at its path; B saved v001 into W2. A's write
    replaced B's file and A's refusal deleted it: B was told "saved v001", W2 had no version (lost)."""
    path = tmp_path / "ws"
    w1 = Workspace.init(path, data)
    events = {name: threading.Event() for name in ("a_reserved", "go_a", "b_measured", "go_b")}
    real_now, real_sha = module.now, module.sha256_file
    results: dict[str, object] = {}

    def now_hook():
        if threading.current_thread().name == "A":
            events["a_reserved"].set()
            events["go_a"].wait(20)
        return real_now()

    def sha_hook(file):
        out = real_sha(file)
        if threading.current_thread().name == "B":
            events["b_measured"].set()
            events["go_b"].wait(20)
        return out

    monkeypatch.setattr(module, "now", now_hook)
    monkeypatch.setattr(module, "sha256_file", sha_hook)

    def save(name, ws, labels):
        try:
            results[name] = ws.add_label_version(CASE, labels, "correction")
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            results[name] = exc

    a = threading.Thread(target=save, name="A", args=("A", w1, _labels(3)))
    a.start()
    assert events["a_reserved"].wait(20)
    path.rename(tmp_path / "w1_moved")
    w2 = Workspace.init(path, data)
    b = threading.Thread(target=save, name="B", args=("B", w2, _labels(1)))
    b.start()
    try:
        assert events["b_measured"].wait(20)
    finally:
        events["go_a"].set()
        a.join(30)
        events["go_b"].set()
        b.join(30)
    assert isinstance(results["A"], LNQError) and "is gone from there" in str(results["A"])
    assert results["B"] == "v001"
    w2 = Workspace.open(path)
    assert [v["version"] for v in w2.versions(CASE)] == ["v001"] and w2.label_store(CASE).lost() == []
    got = w2.read_labels(CASE, "v001").array
    assert np.array_equal(got > 0, _labels(1).array > 0)  # B's labels, not A's
    assert [(e["action"], e.get("version")) for e in w2.journal()] == [("init", None), ("correction", "v001")]


def test_a_save_whose_workspace_moves_away_during_its_write_makes_no_folder_at_the_old_path(
        tmp_path, data, monkeypatch):
    """The label write made ``ws/labels/c1`` again at the old path (and the lock ``ws/.lnq.lock``): a later
    ``mv moved ws`` then landed in ``ws/moved``."""
    path = tmp_path / "ws"
    w1 = Workspace.init(path, data)
    _once_after_reserving(monkeypatch, lambda: path.rename(tmp_path / "moved"))
    with pytest.raises(LNQError, match="is gone from there"):
        w1.add_label_version(CASE, _labels(1), "correction")
    assert not path.exists()
    moved = Workspace.open(tmp_path / "moved")
    assert moved.versions(CASE) == [] and moved.label_store(CASE).lost() == []
    assert [p for p in (tmp_path / "moved" / "labels" / CASE).iterdir() if p.name.startswith(".")] == []


def test_a_copy_with_the_same_identity_put_at_the_path_during_a_save_gets_nothing_of_it(
        tmp_path, data, monkeypatch):
    """A copy (``cp -r``: the same identity) put at the path while the save wrote: the identity check passes,
    but the number was taken in the original: nothing lands in the copy."""
    import shutil

    path = tmp_path / "ws"
    w1 = Workspace.init(path, data)
    shutil.copytree(path, tmp_path / "copy")

    _replaced_after_reserving(monkeypatch, path, tmp_path / "original", tmp_path / "copy")
    with pytest.raises(LNQError, match="is gone from there"):
        w1.add_label_version(CASE, _labels(1), "correction")
    assert _files(path) == [] and Workspace.open(path).journal("correction") == []
    assert Workspace.open(path).add_label_version(CASE, _labels(2), "correction") == "v001"


def test_a_failed_save_removes_only_its_own_files(tmp_path, monkeypatch):
    """A save failing after its write (a full disk): its number goes back and no file of it stays (a
    label store without a workspace)."""
    store = module.LabelStore(tmp_path / "lnq-labels", CASE)
    store.add(_labels(1), "correction")

    def full(_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "sha256_file", full)
    with pytest.raises(OSError):
        store.add(_labels(2), "correction")
    monkeypatch.undo()
    assert sorted(p.name for p in store.folder.iterdir()) == ["v001.json", "v001.seg.nrrd"]
    assert store.add(_labels(3), "correction").version == "v002"


@pytest.mark.parametrize("links", [True, False], ids=["hard link", "no hard links"])
def test_place_new_never_replaces_a_file(tmp_path, monkeypatch, links):
    import errno
    import os

    from lnq_napari.io.atomic import place_new, temp_beside

    if not links:
        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "v001.seg.nrrd"
    first = temp_beside(target)
    first.write_bytes(b"first")
    place_new(first, target)
    assert target.read_bytes() == b"first" and not first.exists()
    second = temp_beside(target)
    second.write_bytes(b"second")
    with pytest.raises(FileExistsError):
        place_new(second, target)
    assert target.read_bytes() == b"first" and second.read_bytes() == b"second"


@pytest.mark.parametrize("error", [(1, 1), (22, 50), (1, None)],
                         ids=["windows fat", "windows smb", "linux vfat"])
def test_a_save_where_the_drive_has_no_hard_links_is_saved(tmp_path, monkeypatch, error):
    """A FAT or exFAT drive or an SMB share makes no hard links, and says so with another error on each
    system (Windows: "Incorrect function", which Python reads as EINVAL): the save is renamed into place."""
    import os

    number, winerror = error

    def no_link(*args, **kwargs):
        exc = OSError(number, "Incorrect function")
        exc.winerror = winerror
        raise exc

    monkeypatch.setattr(os, "link", no_link)
    store = module.LabelStore(tmp_path / "lnq-labels", CASE)
    assert [store.add(_labels(k), "correction").version for k in (1, 2)] == ["v001", "v002"]
    assert sorted(p.name for p in store.folder.iterdir()) == ["v001.json", "v001.seg.nrrd", "v002.json",
                                                             "v002.seg.nrrd"]
    np.testing.assert_array_equal(store.read("v002").array, _labels(2).array)


def test_a_save_whose_temp_name_cannot_be_removed_once_in_place_is_saved(tmp_path, monkeypatch):
    """On Windows a virus scanner may hold the new file open, and the temp name's removal fails once the
    file is linked into place: the version is saved (the stale-temp sweep takes the name later)."""
    import os

    real = os.unlink

    def held(path, *args, **kwargs):
        if ".tmp" in os.fspath(path):
            raise PermissionError(13, "The process cannot access the file")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", held)
    store = module.LabelStore(tmp_path / "lnq-labels", CASE)
    assert store.add(_labels(1), "correction").version == "v001"
    monkeypatch.undo()
    assert [v["version"] for v in store.versions()] == ["v001"]
    np.testing.assert_array_equal(store.read("v001").array, _labels(1).array)
