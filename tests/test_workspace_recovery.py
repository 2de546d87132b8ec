"""Unsaved edits in a case's autosave (no Qt): offered when it opens only when nothing saved holds them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.autosave import (
    AUTOSAVE_ENV,
    AutosaveSession,
    autosave_dir,
    review_fields,
    write_autosave,
)
from lnq_napari.workspace.recovery import RecoveredEdits, unsaved_edits

GRID = dict(spacing=(0.8, 0.8, 2.0), origin=(-10.0, 5.0, 30.0))
CASE = "lnq2023-train-0000"
MARK = {"centre_zyx": [3.0, 4.0, 4.0]}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path / "autosave"))
    seg = np.zeros((6, 12, 10), np.uint8)
    seg[2:4, 3:6, 3:5] = 1
    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", Volume(np.full(seg.shape, -100, np.int16), **GRID))
    write_volume(tmp_path / "data" / f"{CASE}-seg.nrrd", Volume(seg, **GRID))
    return Workspace.init(tmp_path / "ws", tmp_path / "data")


def _edited(ws: Workspace, version: str) -> Volume:
    """The labels of ``version`` with one voxel painted."""
    labels = ws.read_labels(CASE, version)
    array = np.asarray(labels.array).copy()
    array[5, 0, 0] = 1
    return labels.with_array(array)


def _autosave(ws: Workspace, labels: Volume, parent: str, marked=(), rejected=(), after=None):
    """Write the case's autosave of edits made on ``parent``, dated 1 s after the file ``after``."""
    extra = {"lnq_workspace": str(ws.root), "lnq_parent": parent,
             **review_fields(list(marked), list(rejected))}
    path = write_autosave(labels, autosave_dir(ws.ct_path(CASE), ws.root), CASE, extra)
    if after is not None:
        _date(path, after, 10**9)
    return path


def _date(path, like, offset_ns: int) -> None:
    stamp = os.stat(like).st_mtime_ns + offset_ns
    os.utime(path, ns=(stamp, stamp))


def _open(ws: Workspace, prov: dict | None) -> RecoveredEdits | None:
    """What opening the case with ``prov`` on screen finds (as the Review widget opens it)."""
    seg = ws.label_path(CASE, prov["version"]) if prov else ws.seg_path(CASE)
    ct = ws.ct_grid(CASE)
    shown = ws.read_labels(CASE, prov["version"]).array if prov else None
    return unsaved_edits(ws, CASE, seg, shown, prov, reference=ct)


def test_no_autosave_is_no_unsaved_edits(ws):
    assert _open(ws, ws.latest_version(CASE)) is None


def test_an_autosave_older_than_the_shown_labels_is_not_offered(ws):
    original = ws.latest_version(CASE)
    path = _autosave(ws, _edited(ws, original["version"]), original["version"])
    _date(path, ws.label_path(CASE, original["version"]), -10**9)  # the labels were saved after it
    assert _open(ws, original) is None


def test_an_autosave_holding_the_shown_labels_is_not_offered(ws):
    original = ws.latest_version(CASE)
    _autosave(ws, ws.read_labels(CASE, original["version"]), original["version"],
              after=ws.label_path(CASE, original["version"]))
    assert _open(ws, original) is None


def test_an_autosave_with_other_labels_is_offered_with_its_marks_and_rejections(ws):
    original = ws.latest_version(CASE)
    edited = _edited(ws, original["version"])
    path = _autosave(ws, edited, original["version"], marked=[MARK], rejected=[{"id": 1}],
                     after=ws.label_path(CASE, original["version"]))
    found = _open(ws, original)
    assert isinstance(found, RecoveredEdits) and found.path == path
    assert np.array_equal(np.asarray(found.labels.array) > 0, np.asarray(edited.array) > 0)
    assert found.labels.shape == ws.ct_grid(CASE).shape
    assert (found.marked, found.rejected) == ([MARK], [{"id": 1}])
    assert found.base["version"] == original["version"]
    opened = found.opened(original)
    assert opened["version"] == original["version"] and opened["marked"] == [MARK]
    assert opened["rejected"] == [{"id": 1}]


def test_an_autosave_with_the_shown_labels_but_other_marks_is_offered(ws):
    original = ws.latest_version(CASE)
    _autosave(ws, ws.read_labels(CASE, original["version"]), original["version"], marked=[MARK],
              after=ws.label_path(CASE, original["version"]))
    assert _open(ws, original).marked == [MARK]


def test_edits_on_a_version_another_process_saved_over_are_offered(ws):
    original = ws.latest_version(CASE)["version"]
    edited = _edited(ws, original)
    _autosave(ws, edited, original, after=ws.label_path(CASE, original))
    newer = ws.add_label_version(CASE, ws.read_labels(CASE, original), "prediction", model_version="m9")
    _date(ws.label_path(CASE, newer), ws.label_path(CASE, original), 5 * 10**9)  # saved after the autosave
    found = _open(ws, ws.version_info(CASE, newer))
    assert found is not None and found.base["version"] == original
    assert found.opened(ws.version_info(CASE, newer))["version"] == original  # the next Save's parent


@pytest.mark.parametrize("saved", [True, False])
def test_edits_a_correction_from_the_same_base_holds_are_not_offered(ws, saved):
    """The reviewer saved the autosaved edits (a correction of the version they were made on); another
    reviewer saved a correction since, which is the one shown: the autosave is no unsaved edits. A
    correction of that version without the edits does not hold them."""
    original = ws.latest_version(CASE)["version"]
    edited = _edited(ws, original)
    path = _autosave(ws, edited, original, after=ws.label_path(CASE, original))
    mine = ws.add_label_version(CASE, edited if saved else ws.read_labels(CASE, original), "correction",
                                parent=original, marked=[], rejected=[])
    theirs = ws.add_label_version(CASE, edited.with_array(np.zeros_like(np.asarray(edited.array))),
                                  "correction")
    for offset, version in ((10**9, mine), (2 * 10**9, theirs)):
        _date(ws.label_path(CASE, version), path, offset)
    found = _open(ws, ws.version_info(CASE, theirs))
    assert (found is None) if saved else (found.path == path and found.base["version"] == original)


def test_an_autosave_of_another_workspace_is_not_offered(ws, tmp_path):
    original = ws.latest_version(CASE)["version"]
    path = _autosave(ws, _edited(ws, original), original, after=ws.label_path(CASE, original))
    extra = {"lnq_workspace": str(tmp_path / "another"), "lnq_parent": original}
    write_autosave(_edited(ws, original), path.parent, CASE, extra)
    _date(path, ws.label_path(CASE, original), 10**9)
    assert _open(ws, ws.version_info(CASE, original)) is None


@pytest.mark.parametrize("how", ["moved", "relative"])
def test_an_autosave_in_the_workspace_s_own_folder_is_offered_after_a_move(ws, tmp_path, monkeypatch, how):
    """A workspace renamed (or once opened by a relative path, now from another folder) took the edits its
    own autosave folder held for another workspace's, and the first edit overwrote them."""
    monkeypatch.delenv(AUTOSAVE_ENV)
    original = ws.latest_version(CASE)["version"]
    path = write_autosave(_edited(ws, original), autosave_dir(ws.ct_path(CASE), ws.root), CASE,
                          {"lnq_workspace": str(ws.root) if how == "moved" else "ws", "lnq_parent": original})
    _date(path, ws.label_path(CASE, original), 10**9)
    if how == "moved":
        ws.root.rename(tmp_path / "renamed")
        ws = Workspace.open(tmp_path / "renamed")
    else:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
    found = _open(ws, ws.version_info(CASE, original))
    assert found is not None and found.base["version"] == original


def _autosave_while_open(opened: Workspace, where, labels: Volume, parent: str, after=None):
    """Write the case's autosave as the viewer does for a case opened from ``opened``, which was at the
    path ``where`` then (its folder and header from one autosave_target)."""
    from lnq_napari.workspace.autosave import autosave_target

    target = autosave_target(opened.ct_path(CASE), where, opened.id)
    path = write_autosave(labels, target.folder, CASE, {**target.fields(), "lnq_parent": parent})
    if after is not None:
        _date(path, after, 10**9)
    return path


def test_edits_autosaved_after_the_workspace_moved_make_no_shell_there_and_come_back_from_its_new_place(
        ws, tmp_path, monkeypatch):
    """Renamed while a case was open, the workspace got its autosave at the old path: the folders made
    again there, an empty shell, and the edits missing from the workspace wherever it went."""
    monkeypatch.delenv(AUTOSAVE_ENV)
    monkeypatch.setattr("getpass.getuser", lambda: "ann")
    original = ws.latest_version(CASE)["version"]
    edited, old = _edited(ws, original), ws.root
    old.rename(tmp_path / "renamed")
    path = _autosave_while_open(ws, old, edited, original)
    assert path.parent == tmp_path / "data" / "lnq-autosave" / "ann"  # where a case without a workspace goes
    assert not old.exists()
    moved = Workspace.open(tmp_path / "renamed")
    _date(path, moved.label_path(CASE, original), 10**9)
    found = _open(moved, moved.version_info(CASE, original))
    assert found is not None and found.path == path and found.base["version"] == original
    Workspace.init(old, tmp_path / "data")  # another workspace at the old path: not its edits
    assert _open(Workspace.open(old), None) is None


@pytest.mark.parametrize("shared", [False, True], ids=["beside the data", "LNQ_NAPARI_AUTOSAVE_DIR"])
def test_edits_a_moved_workspace_kept_aside_are_not_offered_to_another_workspace_of_the_case(
        ws, tmp_path, monkeypatch, shared):
    """Workspace A moved while its case was open: its edits were offered to workspace B over the same
    data when B opened that case (A's old path was empty, and that was all that was asked)."""
    if not shared:
        monkeypatch.delenv(AUTOSAVE_ENV)
    other = Workspace.init(tmp_path / "other", tmp_path / "data")
    original = ws.latest_version(CASE)["version"]
    edited, old = _edited(ws, original), ws.root
    old.rename(tmp_path / "renamed")
    _autosave_while_open(ws, old, edited, original, after=other.label_path(CASE, original))
    assert _open(other, other.version_info(CASE, original)) is None
    moved = Workspace.open(tmp_path / "renamed")
    assert _open(moved, moved.version_info(CASE, original)) is not None


def test_edits_kept_aside_come_back_after_the_workspace_is_moved_back(ws, tmp_path, monkeypatch):
    """Renamed while its case was open and renamed back, the workspace never offered the edits autosaved
    meanwhile (its old path held a workspace again: the kept-aside file was taken for another's)."""
    monkeypatch.delenv(AUTOSAVE_ENV)
    original = ws.latest_version(CASE)["version"]
    edited, old = _edited(ws, original), ws.root
    old.rename(tmp_path / "renamed")
    path = _autosave_while_open(ws, old, edited, original,
                                after=tmp_path / "renamed" / "workspace.json")
    (tmp_path / "renamed").rename(old)
    back = Workspace.open(old)
    found = _open(back, back.version_info(CASE, original))
    assert found is not None and found.path == path


def test_a_new_workspace_made_at_the_old_path_gets_none_of_the_edits_of_the_case_open_from_the_old_one(
        ws, tmp_path, monkeypatch):
    """Renamed while its case was open and a new workspace made at its old path: the case's autosaves went
    into the new workspace, which offered them as its own, and the renamed one never did."""
    monkeypatch.delenv(AUTOSAVE_ENV)
    original = ws.latest_version(CASE)["version"]
    edited, old = _edited(ws, original), ws.root
    old.rename(tmp_path / "renamed")
    new = Workspace.init(old, tmp_path / "data")
    path = _autosave_while_open(ws, old, edited, original,
                                after=new.label_path(CASE, original))
    assert not path.is_relative_to(old)
    assert _open(new, new.version_info(CASE, original)) is None
    renamed = Workspace.open(tmp_path / "renamed")
    assert _open(renamed, renamed.version_info(CASE, original)) is not None


def test_a_copy_of_the_workspace_is_not_offered_the_unsaved_edits_of_its_original(ws, tmp_path):
    """A copy (cp -r) shares the workspace's identity: with one $LNQ_NAPARI_AUTOSAVE_DIR the copy was
    offered the unsaved edits of the same case open from the original, which is still where it was."""
    import shutil

    original = ws.latest_version(CASE)["version"]
    copy = Workspace.open(shutil.copytree(ws.root, tmp_path / "copy"))
    path = _autosave_while_open(ws, ws.root, _edited(ws, original), original,
                                after=copy.label_path(CASE, original))
    assert _open(copy, copy.version_info(CASE, original)) is None
    found = _open(ws, ws.version_info(CASE, original))
    assert found is not None and found.path == path
    ws.root.rename(tmp_path / "renamed")  # the original moved: its edits go with it (the copy cannot tell)
    moved = Workspace.open(tmp_path / "renamed")
    assert _open(moved, moved.version_info(CASE, original)) is not None


def test_edits_autosaved_before_the_workspace_file_lost_its_id_are_offered_again(ws, tmp_path):
    """workspace.json rewritten without its ``id``: the reopened workspace (known by its stamp then) never
    offered the edits autosaved under the id."""
    import json

    original = ws.latest_version(CASE)["version"]
    path = _autosave_while_open(ws, ws.root, _edited(ws, original), original,
                                after=ws.label_path(CASE, original))
    meta = json.loads((ws.root / "workspace.json").read_text())
    del meta["id"]
    (ws.root / "workspace.json").write_text(json.dumps(meta))
    again = Workspace.open(ws.root)
    found = _open(again, again.version_info(CASE, original))
    assert found is not None and found.path == path


def test_edits_of_a_case_open_from_a_read_only_workspace_are_autosaved_beside_the_data_and_offered_again(
        ws, tmp_path, monkeypatch):
    """A workspace on a read-only mount: every autosave failed (into its own folder), and the edits were
    kept nowhere."""
    import os

    from lnq_napari.workspace.autosave import autosave_target

    monkeypatch.delenv(AUTOSAVE_ENV)
    monkeypatch.setattr("getpass.getuser", lambda: "ann")
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if mode == os.W_OK and str(path).startswith(str(ws.root)) else real(path, mode, **kw)))
    original = ws.latest_version(CASE)["version"]
    target = autosave_target(ws.ct_path(CASE), ws.root, ws.id)
    assert target.folder == tmp_path / "data" / "lnq-autosave" / "ann" and not target.moved
    path = _autosave_while_open(ws, ws.root, _edited(ws, original), original,
                                after=ws.label_path(CASE, original))
    again = Workspace.open(ws.root)
    found = _open(again, again.version_info(CASE, original))
    assert found is not None and found.path == path


def test_edits_a_live_session_of_another_window_autosaves_are_said_not_offered(ws):
    """The case open in a second window was offered the first window's live, unsaved edits as a crash's
    leftovers; it is told instead that the case is open with unsaved edits elsewhere, and who has it; once
    that session is over (a crash), its edits are offered as before."""
    import socket

    from lnq_napari.workspace.autosave import AutosaveSession
    from lnq_napari.workspace.recovery import edits_open_elsewhere

    original = ws.latest_version(CASE)
    other = AutosaveSession()
    extra = {"lnq_workspace": str(ws.root), "lnq_parent": original["version"]}
    path = other.write(_edited(ws, original["version"]), autosave_dir(ws.ct_path(CASE), ws.root), CASE, extra)
    _date(path, ws.label_path(CASE, original["version"]), 10**9)
    seg, shown = ws.label_path(CASE, original["version"]), ws.read_labels(CASE, original["version"]).array
    assert _open(ws, original) is None
    note = edits_open_elsewhere(ws, CASE, seg, shown, original, reference=ws.ct_grid(CASE))
    assert note.startswith(f"{CASE} is open with unsaved edits in another window or process (")
    assert f"on {socket.gethostname()}, process {os.getpid()}" in note and str(path) in note
    assert "\n" not in note
    assert edits_open_elsewhere(ws, CASE, seg, shown, original, reference=ws.ct_grid(CASE),
                                own=(other.id,)) == ""  # the asking window's own session
    other.close(remove=False)  # its process gone
    assert _open(ws, original).path == path
    assert edits_open_elsewhere(ws, CASE, seg, shown, original, reference=ws.ct_grid(CASE)) == ""



def test_a_live_session_whose_edits_are_saved_is_not_said_open_with_unsaved_edits(ws):
    """A second window open on a case whose edits the first saved (its autosave holds the saved labels)
    is not told of unsaved edits there."""
    from lnq_napari.workspace.autosave import AutosaveSession
    from lnq_napari.workspace.recovery import edits_open_elsewhere

    original = ws.latest_version(CASE)
    other = AutosaveSession()
    edited = _edited(ws, original["version"])
    extra = {"lnq_workspace": str(ws.root), "lnq_parent": original["version"]}
    path = other.write(edited, autosave_dir(ws.ct_path(CASE), ws.root), CASE, extra)
    saved = ws.add_label_version(CASE, edited, "correction", parent=original["version"], marked=[],
                                 rejected=[])
    _date(ws.label_path(CASE, saved), path, 10**9)
    prov = ws.version_info(CASE, saved)
    note = edits_open_elsewhere(ws, CASE, ws.label_path(CASE, saved), ws.read_labels(CASE, saved).array, prov,
                                reference=ws.ct_grid(CASE))
    assert note == ""
    other.close(remove=True)


def test_every_ended_session_s_unsaved_edits_are_offered_newest_first_none_hidden(ws):
    """Two crashed windows with other edits: the newer is offered naming the older; once it is saved the
    older is offered; a saved window's leftover newer than both hides neither."""
    original = ws.latest_version(CASE)
    v = original["version"]
    folder = autosave_dir(ws.ct_path(CASE), ws.root)
    extra = {"lnq_workspace": str(ws.root), "lnq_parent": v}

    def painted(index):
        labels = ws.read_labels(CASE, v)
        array = np.asarray(labels.array).copy()
        array[index] = 1
        return labels.with_array(array)

    first, second, third = AutosaveSession(), AutosaveSession(), AutosaveSession()
    older = first.write(painted((5, 0, 0)), folder, CASE, extra)
    _date(older, ws.label_path(CASE, v), 10**9)
    newer = second.write(painted((5, 11, 9)), folder, CASE, extra)
    _date(newer, older, 10**9)
    first.close(remove=False)
    second.close(remove=False)
    found = _open(ws, original)
    assert found.path == newer and found.others == (older,)
    assert str(older) in found.others_note()
    saved = ws.add_label_version(CASE, found.labels, "correction", parent=v, marked=[], rejected=[])
    _date(ws.label_path(CASE, saved), newer, 10**9)
    leftover = third.write(found.labels, folder, CASE, extra)  # a window that saved, then closed
    _date(leftover, ws.label_path(CASE, saved), 10**9)
    third.close(remove=False)
    again = _open(ws, ws.version_info(CASE, saved))
    assert again is not None and again.path == older and again.others == ()


def test_an_autosave_never_offered_but_holding_other_edits_is_kept_when_the_case_opens(ws):
    """Opening a case removed every ended autosave recovery would not offer, by date alone: one older than
    the labels shown whose edits no saved version holds was deleted (a user can open it by hand)."""
    from lnq_napari.workspace.recovery import remove_saved_autosaves

    original = ws.latest_version(CASE)
    kept = _autosave(ws, _edited(ws, original["version"]), original["version"])
    _date(kept, ws.label_path(CASE, original["version"]), -10**9)  # saved after it: never offered
    assert _open(ws, original) is None
    seg, shown = ws.label_path(CASE, original["version"]), ws.read_labels(CASE, original["version"]).array
    assert remove_saved_autosaves(ws, CASE, seg, shown, original, reference=ws.ct_grid(CASE)) == []
    assert kept.is_file()
    _autosave(ws, ws.read_labels(CASE, original["version"]), original["version"])  # now holds the shown
    _date(kept, ws.label_path(CASE, original["version"]), -10**9)
    assert remove_saved_autosaves(ws, CASE, seg, shown, original, reference=ws.ct_grid(CASE)) == [kept]
    assert not kept.exists()
