"""Autosave files (no Qt): the folder choice and the atomic rewrite of one rolling file per case."""

from __future__ import annotations

import json

import numpy as np

from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.autosave import (
    AUTOSAVE_ENV,
    autosave_dir,
    autosave_path,
    newer_autosave,
    write_autosave,
)


def test_autosave_folder_choice(tmp_path, monkeypatch):
    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "ann")
    source = tmp_path / "c1-ct.nrrd"
    assert autosave_dir(source) == tmp_path / "lnq-autosave" / "ann"
    assert autosave_dir(source, workspace=tmp_path / "ws") == tmp_path / "ws" / "autosave" / "ann"
    assert autosave_dir(None).name == "autosave"
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path / "elsewhere"))
    assert autosave_dir(source) == tmp_path / "elsewhere"


def test_two_reviewers_of_one_case_keep_their_own_autosave(tmp_path, monkeypatch):
    """One autosave per case in a shared workspace: the second reviewer's edits overwrote the first's."""
    from lnq_napari.workspace.autosave import newer_autosave

    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    ws, source = tmp_path / "ws", tmp_path / "c1-ct.nrrd"
    written = {}
    for user in ("ann", "bob"):
        monkeypatch.setattr("getpass.getuser", lambda user=user: user)
        written[user] = write_autosave(labels, autosave_dir(source, ws), "c1", {"lnq_edits": 1})
    assert written["ann"] != written["bob"] and all(p.is_file() for p in written.values())
    assert newer_autosave("c1", source, ws, None) == written["bob"]
    monkeypatch.setattr("getpass.getuser", lambda: "cy")  # an autosave from before: one per case
    legacy = write_autosave(labels, ws / "autosave", "c1", {"lnq_edits": 1})
    assert newer_autosave("c1", source, ws, None) == legacy
    monkeypatch.setattr("getpass.getuser", lambda: "a b/../")
    assert autosave_dir(source, ws).parent == ws / "autosave" and "/" not in autosave_dir(source, ws).name


def test_autosave_rewrites_one_file(tmp_path):
    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    first = write_autosave(labels, tmp_path, "c1", {"lnq_edits": 1})
    labels.array[0, 0, 0] = 1
    second = write_autosave(labels, tmp_path, "c1", {"lnq_edits": 2})
    assert first == second == autosave_path(tmp_path, "c1") == tmp_path / "c1.autosave.seg.nrrd"
    back = read_labels(second)
    assert back.array[0, 0, 0] == 1 and back.meta["lnq_edits"] == "2" and back.meta["lnq_autosave_time"]
    assert len(list(tmp_path.iterdir())) == 1


def test_an_autosave_counts_as_unsaved_edits_only_when_newer_than_the_labels(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    labels = Volume(np.zeros((4, 5, 6), np.uint8), (1.0, 1.0, 2.0))
    version = tmp_path / "v002.seg.nrrd"
    version.write_bytes(b"saved")
    assert newer_autosave("case", None, tmp_path, version) is None  # none written
    path = write_autosave(labels, tmp_path / "autosave", "case")
    os.utime(version, ns=(path.stat().st_mtime_ns - 10**9,) * 2)
    assert newer_autosave("case", None, tmp_path, version) == path
    assert newer_autosave("case", None, tmp_path, None) == path  # no labels to compare with
    os.utime(version, ns=(path.stat().st_mtime_ns + 10**9,) * 2)  # saved after the autosave
    assert newer_autosave("case", None, tmp_path, version) is None


def test_a_workspace_gone_from_its_path_autosaves_where_a_case_without_one_does(tmp_path, monkeypatch):
    from lnq_napari.workspace.autosave import autosave_target
    from lnq_napari.workspace.cases import FORMAT, META_FILE, workspace_id

    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "ann")
    source, ws = tmp_path / "c1-ct.nrrd", tmp_path / "ws"
    ws.mkdir()
    meta = {"format": FORMAT, "id": "w1", "created": "2026-01-01T00:00:00+00:00", "root": str(ws)}
    (ws / META_FILE).write_text(json.dumps(meta))
    wid = workspace_id(meta)
    assert not autosave_target(source, ws, wid).moved and not autosave_target(source, None).moved
    assert autosave_target(source, ws, wid).folder == ws / "autosave" / "ann"
    assert autosave_target(source, ws, wid).fields() == {
        "lnq_workspace": str(ws), "lnq_workspace_id": wid, "lnq_workspace_moved": ""}
    ws.rename(tmp_path / "renamed")
    gone = autosave_target(source, ws, wid)
    assert gone.moved and gone.folder == autosave_dir(source) == tmp_path / "lnq-autosave" / "ann"
    assert gone.fields()["lnq_workspace_moved"] == "1"


def test_a_workspace_folder_that_cannot_be_read_now_gets_its_autosave_there_without_an_error(
        tmp_path, monkeypatch):
    """A stale network share (ESTALE): the test of a moved workspace raised, in the viewer's autosave
    timer at every edit; it is taken for still there (a write there fails and says why)."""
    import errno
    import os

    from lnq_napari.workspace.autosave import autosave_target

    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "ann")
    ws = tmp_path / "share" / "ws"
    real = os.stat

    def stale(path, *args, **kwargs):
        if str(path).startswith(str(ws)):
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stale)
    assert autosave_target(tmp_path / "c1-ct.nrrd", ws).folder == ws / "autosave" / "ann"


def test_the_read_only_note_says_only_this_workspace_gets_the_edits_back():
    """Edits kept aside for a read-only workspace come back only when the case opens from it: the note let
    a user copying the share somewhere writable expect them there."""
    from lnq_napari.workspace.autosave import read_only_note

    note = read_only_note("/share/ws", "case1", "/data/lnq-autosave/ann")
    assert "/data/lnq-autosave/ann" in note and "not from a copy of it" in note and "\n" not in note


def _session_in_child(folder, case: str, hold_s: float = 60.0):
    """A child process whose viewer session autosaves ``case`` in ``folder`` and then lives on:
    (the process, its autosave file)."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys, time, numpy as np\n"
              "from lnq_napari.io.volume import Volume\n"
              "from lnq_napari.workspace.autosave import AutosaveSession\n"
              "s = AutosaveSession()\n"
              "v = Volume(np.ones((2, 4, 4), np.uint8))\n"
              "p = s.write(v, sys.argv[1], sys.argv[2], {'lnq_edits': 3})\n"
              f"print(p, flush=True); time.sleep({hold_s})\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(folder), case], stdout=subprocess.PIPE,
                             text=True)
    return child, Path(child.stdout.readline().strip())


def test_a_live_session_s_autosave_is_not_a_crash_s_and_is_once_its_process_is_gone(tmp_path, monkeypatch):
    """One autosave per case: a second window of the case was offered the first's live, unsaved edits as
    a crash's leftovers, and each window's autosave overwrote the other's (a crash then lost edits)."""
    import os
    import signal
    import socket

    from lnq_napari.workspace.autosave import AutosaveSession, live_autosaves

    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path / "auto"))
    child, theirs = _session_in_child(tmp_path / "auto", "c1")
    try:
        labels = Volume(np.zeros((2, 4, 4), np.uint8))
        mine = AutosaveSession()
        assert newer_autosave("c1", None, None, None) is None  # theirs lives: not a crash's
        ((live, who),) = live_autosaves("c1", None, None)
        assert live == theirs and f"on {socket.gethostname()}, process {child.pid}" in who
        path = mine.write(labels, tmp_path / "auto", "c1", {"lnq_edits": 1})
        assert path != theirs and read_labels(theirs).array.max() == 1  # never written over
        assert newer_autosave("c1", None, None, None) is None  # each window's own lives
        assert newer_autosave("c1", None, None, None, own=(mine.id,)) == path  # the asking window's own
        assert [p for p, _ in live_autosaves("c1", None, None, own=(mine.id,))] == [theirs]
    finally:
        os.kill(child.pid, signal.SIGKILL)  # the crash
        child.wait()
    os.utime(theirs)  # (written after mine)
    assert [p for p, _ in live_autosaves("c1", None, None)] == [path]  # only mine lives now
    assert newer_autosave("c1", None, None, None) == theirs  # offered as before
    assert read_labels(theirs).meta["lnq_edits"] == "3"
    mine.close(remove=True)  # closed with nothing unsaved: its files go, not the crashed one's
    assert not path.exists() and not list((tmp_path / "auto").glob(f"{path.name}*"))
    assert theirs.is_file() and newer_autosave("c1", None, None, None) == theirs


def test_an_autosave_of_the_name_before_sessions_is_still_found(tmp_path, monkeypatch):
    """Files written by the version before (``<case>.autosave.seg.nrrd``, no session, no lock) are a
    crash's, and the newest of a case's files, old name or session's, is offered."""
    import os

    from lnq_napari.workspace.autosave import AutosaveSession, case_autosaves

    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path))
    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    old = write_autosave(labels, tmp_path, "c1", {"lnq_edits": 1})
    write_autosave(labels, tmp_path, "c1.b", {"lnq_edits": 1})  # another case whose name starts alike
    assert newer_autosave("c1", None, None, None) == old
    over = AutosaveSession()
    path = over.write(labels, tmp_path, "c1")
    over.close(remove=False)  # set aside: over, kept
    assert set(case_autosaves(tmp_path, "c1")) == {old, path}
    os.utime(old, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert newer_autosave("c1", None, None, None) == old


def test_an_autosave_is_written_when_the_file_system_has_no_locks(tmp_path, monkeypatch):
    """filelock 3.x raises NotImplementedError where flock is not supported (Lustre, some GPFS, 9p):
    the autosave is written anyway, said once, never lost to the lock."""
    import warnings

    import filelock

    from lnq_napari.workspace.autosave import AutosaveSession

    def no_flock(self, *args, **kwargs):
        raise NotImplementedError("FileSystem does not appear to support flock; use SoftFileLock instead")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_flock)
    session = AutosaveSession()
    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        path = session.write(labels, tmp_path, "c1")
        labels.array[0, 0, 0] = 1
        session.write(labels, tmp_path, "c1")
    assert path.is_file() and read_labels(path).array[0, 0, 0] == 1
    assert len([w for w in said if "without a lock" in str(w.message)]) == 1
    session.close(remove=True)


def test_closing_a_session_never_raises_and_says_what_it_could_not_remove(tmp_path, monkeypatch):
    """An unlink that fails (a sharing violation, a read-only folder) is said in one line; every lock is
    still given back; a file written without a lock is removed too."""
    from pathlib import Path

    from lnq_napari.workspace.autosave import LOCK_SUFFIX, AutosaveSession
    from lnq_napari.workspace.lock import file_locked

    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    session = AutosaveSession()
    first, second = session.write(labels, tmp_path, "c1"), session.write(labels, tmp_path, "c2")
    real = Path.unlink

    def refuse(self, *args, **kwargs):
        if self == first:
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    note = session.close(remove=True)
    assert str(first) in note and "\n" not in note
    assert first.is_file() and not second.exists() and not Path(f"{second}{LOCK_SUFFIX}").exists()
    assert file_locked(f"{first}{LOCK_SUFFIX}") is False  # given back: offered as a crash's
    monkeypatch.setattr(Path, "unlink", real)

    import filelock

    def no_flock(self, *args, **kwargs):
        raise NotImplementedError("no flock")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_flock)
    unlocked = AutosaveSession()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = unlocked.write(labels, tmp_path, "c3")
    assert unlocked.close(remove=True) == "" and not path.exists()
