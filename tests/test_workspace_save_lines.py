"""Each label save's journal line survives a kill -9 between the version's commit and its line: the next
opening, journal read or save writes it, marked recovered; nothing is written twice, and a live saver's
version is never taken for a dead one's."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Journal, Workspace
from lnq_napari.workspace import labels as labels_module
from lnq_napari.workspace.save_lines import NOTE_FILE, RECOVERED

CASE = "lnq2023-train-0000"
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked saver (POSIX)")


@pytest.fixture
def ws(tmp_path):
    """A workspace of one case whose original labels are v001."""
    for role, dtype in (("ct", np.int16), ("seg", np.uint8)):
        volume = Volume(np.zeros((4, 6, 6), dtype), spacing=(1.0, 1.0, 2.0))
        write_volume(tmp_path / "data" / f"{CASE}-{role}.nrrd", volume)
    return Workspace.init(tmp_path / "ws", tmp_path / "data")


def _edit(ws) -> Volume:
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 2:4, 2:4] = 1
    return ws.ct_grid(CASE).with_array(labels)


def _killed_saving(ws, kill_at) -> None:
    """Save a correction in a forked child that SIGKILLs itself where ``kill_at(die)`` puts ``die()``;
    waits for it to die."""
    labels = _edit(ws)
    pid = os.fork()
    if pid == 0:
        try:
            kill_at(lambda: os.kill(os.getpid(), signal.SIGKILL))
            Workspace.open(ws.root).add_label_version(CASE, labels, "correction", edits=3, reviewer="ana")
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _lines(ws) -> list[dict]:
    """The journal's correction lines as they are on disk (no recovery run)."""
    return Journal(ws.journal_path).entries("correction")


def _before_the_line(die) -> None:
    real = Journal.append
    Journal.append = lambda self, action, **fields: die() if action == "correction" else real(
        self, action, **fields)


def test_a_save_killed_between_its_commit_and_its_line_is_journaled_when_the_workspace_opens(ws):
    _killed_saving(ws, _before_the_line)
    saved = ws.versions(CASE)[-1]
    assert (saved["source"], saved["reviewer"]) == ("correction", "ana") and _lines(ws) == []
    reopened = Workspace.open(ws.root)
    (line,) = _lines(ws)
    assert (line["case"], line["version"], line["edits"]) == (CASE, saved["version"], 3)
    assert line["parent"] == "v001"
    assert line["recovered"] == RECOVERED and line["saved"] == saved["time"]
    assert not (ws.root / NOTE_FILE).exists()
    Workspace.open(ws.root)
    assert reopened.journal("correction") == [line]  # written once


def test_the_next_save_journals_a_killed_one_first(ws):
    _killed_saving(ws, _before_the_line)
    killed = ws.versions(CASE)[-1]["version"]
    version = ws.add_label_version(CASE, _edit(ws), "correction")  # the object opened before the kill
    assert [(e["version"], "recovered" in e) for e in _lines(ws)] == [(killed, True), (version, False)]


def test_a_save_killed_after_its_line_is_not_journaled_twice(ws):
    real = Journal.append

    def after_the_line(die):
        Journal.append = lambda self, action, **fields: (real(self, action, **fields), action == "correction"
                                                         and die())[0]

    _killed_saving(ws, after_the_line)
    assert (ws.root / NOTE_FILE).exists() and len(_lines(ws)) == 1
    assert len(Workspace.open(ws.root).journal("correction")) == 1 and not (ws.root / NOTE_FILE).exists()


def test_a_save_killed_before_its_commit_leaves_no_version_and_no_line(ws):
    def writing_the_provenance(die):
        labels_module.LabelStore._commit = lambda *args: die()

    _killed_saving(ws, writing_the_provenance)
    reopened = Workspace.open(ws.root)
    assert [v["version"] for v in reopened.versions(CASE)] == ["v001"]
    assert reopened.journal("correction") == []
    assert not (ws.root / NOTE_FILE).exists()


def test_a_live_save_between_its_commit_and_its_line_is_not_taken_for_a_killed_one(ws, monkeypatch):
    """Another opening finds the lock the saver holds from its note to its line: it neither waits nor
    writes the line; one line, the saver's own."""
    committed, go = threading.Event(), threading.Event()
    real = labels_module.LabelStore._commit

    def slow_commit(*args):
        placed = real(*args)
        committed.set()
        go.wait(10)
        return placed

    monkeypatch.setattr(labels_module.LabelStore, "_commit", slow_commit)
    saver = threading.Thread(target=ws.add_label_version, args=(CASE, _edit(ws), "correction"))
    saver.start()
    assert committed.wait(10)
    read = []
    reader = threading.Thread(target=lambda: read.append(Workspace.open(ws.root).journal("correction")))
    reader.start()
    reader.join(5)
    alive = reader.is_alive()
    go.set()
    saver.join(10)
    reader.join(10)
    assert not alive and read == [[]]  # did not wait for the saver
    assert [("recovered" in e) for e in _lines(ws)] == [False]


def test_opening_never_waits_for_another_program_s_lock_to_recover_a_line(ws, monkeypatch):
    """A killed save's note while another program holds the lock (a fine-tune registering its model):
    opening and reading the journal waited for the lock and, past its timeout, raised. They go on at
    once, and the line is written by the first reader once the lock is free."""
    from lnq_napari.workspace import lock as lock_module

    _killed_saving(ws, _before_the_line)
    monkeypatch.setattr(lock_module, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(lock_module, "_LOCKS", {})
    taken, release = os.pipe()
    holder = os.fork()
    if holder == 0:
        try:
            with lock_module.WorkspaceLock(ws.root):
                os.write(release, b"x")
                time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.read(taken, 1)
        start = time.monotonic()
        reopened = Workspace.open(ws.root)
        assert reopened.journal("correction") == [] and (ws.root / NOTE_FILE).exists()
        assert time.monotonic() - start < 0.5
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    (line,) = reopened.journal("correction")
    assert line["recovered"] == RECOVERED and not (ws.root / NOTE_FILE).exists()


def test_a_save_whose_line_cannot_be_written_is_saved_and_says_so(ws, monkeypatch):
    """The journal refusing the line (a full disk) after the commit: the save said "cannot save the
    labels" of a version that was saved. It returns the version with a warning; the line comes later."""
    import errno

    from lnq_napari import api

    real = Journal.append

    def full(self, action, **fields):
        if action == "correction":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, action, **fields)

    monkeypatch.setattr(Journal, "append", full)
    with pytest.warns(UserWarning, match=f"{CASE} saved as v002, but its journal line could not be written "
                                         r"\(No space left on device\); it is written by the next save"):
        saved = api.save_labels(_edit(ws), CASE, workspace=ws.root)
    assert saved.version == "v002" and ws.versions(CASE)[-1]["version"] == "v002"
    monkeypatch.setattr(Journal, "append", real)
    (line,) = Workspace.open(ws.root).journal("correction")
    assert line["version"] == "v002" and line["recovered"] == RECOVERED
