"""The workspace's locks on a workspace that cannot be written: every command that must write there says
so in the one line `next` says it in (lock.not_writable); commands that only read still work."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import one_case_workspace

from lnq_napari.cli import main
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model import bundled_model_path
from lnq_napari.workspace import Workspace
from lnq_napari.workspace import lock as lock_module

CASE = "lnq2023-train-0000"
OTHER = "lnq2023-train-0001"


@pytest.fixture
def read_only_ws(tmp_path, monkeypatch) -> Workspace:
    """A workspace of one case on what acts as a read-only mount (chmod does not stop root): no file can
    be made in it, and its lock files cannot be opened for writing."""
    ws = one_case_workspace(tmp_path / "ws")
    root = ws.root.resolve()

    def refused(path) -> bool:
        return path is not None and Path(path).resolve().is_relative_to(root)

    class ReadOnlyLock:
        def __init__(self, path, **kwargs) -> None:
            self.path = path

        def acquire(self, *args, **kwargs) -> None:
            raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    real_lock, mkstemp = lock_module.FileLock, tempfile.mkstemp
    monkeypatch.setattr(lock_module, "_LOCKS", {})
    monkeypatch.setattr(lock_module, "FileLock",
                        lambda path, **k: ReadOnlyLock(path) if refused(path) else real_lock(path, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: (
        (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system", str(dir))) if refused(dir)
        else mkstemp(*a, dir=dir, **k)))
    return ws


def _files(ws: Workspace) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(ws.root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", [
    ["workspace", "activate", "{ws}", "bundled"],
    ["workspace", "activate", "{ws}", "{model}"],  # a model folder from elsewhere: copied in first
    ["workspace", "group", "{ws}", "{csv}"],
    ["finetune", "--workspace", "{ws}", "--iterations", "1"],
    ["next", "--workspace", "{ws}"],
    ["workspace", "repair", "{ws}"],
])
def test_a_command_that_writes_a_read_only_workspace_says_so_in_one_line(read_only_ws, tmp_path, capsys,
                                                                          command):
    """activate, group and finetune said "cannot write <ws>/.lnq.lock (...); give a writable folder (a short
    name, no file in its path) or free some space" (activating a model folder from elsewhere: "cannot write
    <ws>/models/.registering.x"), while next said the workspace is read-only and what to do: each says the
    latter now, and nothing in the workspace changes."""
    csv = tmp_path / "group.csv"
    csv.write_text(f"case,patient,timepoint\n{CASE},p1,t0\n")
    model = tmp_path / "trained"
    shutil.copytree(bundled_model_path(), model)
    if command[:2] == ["workspace", "repair"]:  # something to repair (with nothing, it writes nothing)
        (read_only_ws.root / "labels" / CASE / "v001.json").unlink()
    before = _files(read_only_ws)
    argv = [a.format(ws=read_only_ws.root, csv=csv, model=model) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    said = f"lnq-napari: error: the workspace {read_only_ws.root} is read-only (Read-only file system) and "
    assert err.startswith(said), err
    assert err.endswith("; make it writable, or copy it to a folder you can write to and run the command "
                        "there"), err
    assert _files(read_only_ws) == before


def test_commands_that_only_read_work_on_a_read_only_workspace(read_only_ws, tmp_path, capsys):
    """workspace models and export-nnunet read the workspace and write elsewhere (or nothing)."""
    before = _files(read_only_ws)
    assert main(["workspace", "models", str(read_only_ws.root)]) == 0
    assert "bundled" in capsys.readouterr().out
    out = tmp_path / "raw"
    assert main(["export-nnunet", "--workspace", str(read_only_ws.root), "--out", str(out),
                 "--dataset-id", "501"]) == 0
    assert json.loads((out / "Dataset501_LNQ" / "dataset.json").read_text())["numTraining"] == 1
    assert _files(read_only_ws) == before


def test_repair_with_nothing_to_do_or_a_dry_run_works_on_a_read_only_workspace(read_only_ws, capsys):
    """Repair refused to look at a read-only workspace ("... is read-only and repair writes ..."), with
    nothing to repair too."""
    before = _files(read_only_ws)
    assert main(["workspace", "repair", str(read_only_ws.root)]) == 0
    assert capsys.readouterr().out.startswith("nothing to repair: every label file of ")
    (read_only_ws.root / "labels" / CASE / "v001.json").unlink()
    before = _files(read_only_ws)
    assert main(["workspace", "repair", str(read_only_ws.root), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"{CASE} v001: v001.json would be rebuilt from the header")
    assert _files(read_only_ws) == before


def _read_only_folder(monkeypatch, folder: Path) -> None:
    """``folder`` (one of a workspace's) acts as a read-only mount of its own: nothing can be made in it."""
    folder = folder.resolve()
    mkstemp, mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def refused(where) -> bool:
        return where is not None and Path(where).resolve().is_relative_to(folder)

    def fail(where):
        raise OSError(errno.EROFS, "Read-only file system", str(where))

    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: fail(dir) if refused(dir)
                        else mkstemp(*a, dir=dir, **k))
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, dir=None, **k: fail(dir) if refused(dir)
                        else mkdtemp(*a, dir=dir, **k))


@pytest.fixture
def corrected_ws(tmp_path) -> Workspace:
    """A workspace of one case, corrected (nothing left to rank), with models/, labels/ and cache/ made."""
    ws = one_case_workspace(tmp_path / "ws")
    ws.add_label_version(CASE, ws.read_labels(CASE, "v001"), "correction", edits=1)
    for folder in (ws.models_dir, ws.cache.folder, ws.root / "labels"):
        folder.mkdir(exist_ok=True)
    return ws


def _kept(ws: Workspace) -> dict[str, bytes]:
    """The workspace's files but its lock files (made where the root can be written)."""
    return {k: v for k, v in _files(ws).items() if ".lock" not in Path(k).name}


def test_next_works_when_only_models_is_read_only(corrected_ws, monkeypatch, capsys):
    """`next` never writes models/, but was refused ("the workspace ... is read-only") when only models/
    was (an admin keeping reviewers from registering models)."""
    _read_only_folder(monkeypatch, corrected_ws.models_dir)
    assert main(["next", "--workspace", str(corrected_ws.root), "-n", "1"]) == 0
    assert "nothing left to review" in capsys.readouterr().out


def test_registering_a_model_works_when_only_labels_is_read_only(corrected_ws, monkeypatch, tmp_path, capsys):
    """Activating a model folder from elsewhere copies it into models/; a read-only labels/ refused it."""
    model = tmp_path / "trained"
    shutil.copytree(bundled_model_path(), model)
    _read_only_folder(monkeypatch, corrected_ws.root / "labels")
    assert main(["workspace", "activate", str(corrected_ws.root), str(model)]) == 0
    assert "active model: m001" in capsys.readouterr().out


@pytest.mark.parametrize("command", [
    ["finetune", "--workspace", "{ws}", "--iterations", "1"],
    ["workspace", "activate", "{ws}", "bundled"],
])
def test_a_command_that_writes_models_names_that_folder_when_only_it_is_read_only(corrected_ws, monkeypatch,
                                                                                  capsys, command):
    """finetune said "cannot write <ws>/models/.pending.json.x.tmp.json (...); give a writable folder (a short
    name, no file in its path) or free some space" (activate: the registry's temp file); now the one message,
    naming models/, before any training, and nothing in the workspace changes."""
    before = _kept(corrected_ws)
    _read_only_folder(monkeypatch, corrected_ws.models_dir)
    assert main([a.format(ws=corrected_ws.root) for a in command]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    ws = corrected_ws
    said = (f"lnq-napari: error: the folder {ws.models_dir} of the workspace {ws.root} is read-only "
            "(Read-only file system) and ")
    assert err.startswith(said), err
    assert err.endswith("; make it writable, or copy the workspace to a folder you can write to and run the "
                        "command there"), err
    assert _kept(corrected_ws) == before


def _group_csv(tmp_path) -> Path:
    csv = tmp_path / "group.csv"
    csv.write_text(f"case,patient,timepoint\n{CASE},p1,t0\n")
    return csv


def test_an_immutable_lock_file_is_named_not_called_a_read_only_workspace(corrected_ws, tmp_path, capsys):
    """A lock file that cannot be opened for writing in a workspace that can be written was reported as
    "the workspace ... is read-only (Operation not permitted)"."""
    import subprocess

    lock = corrected_ws.root / lock_module.LOCK_FILE
    lock.touch()
    if subprocess.run(["chattr", "+i", str(lock)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs root and a file system with attributes")
    try:
        assert main(["workspace", "group", str(corrected_ws.root), str(_group_csv(tmp_path))]) == 2
    finally:
        subprocess.run(["chattr", "-i", str(lock)], check=True)
    err = capsys.readouterr().err.strip()
    assert err == (f"lnq-napari: error: the lock file {lock} of the workspace {corrected_ws.root} cannot be "
                   "opened for writing (Operation not permitted), though the workspace can be written; make "
                   f"it writable (chmod u+w {lock}; if it is immutable, chattr -i {lock}), or delete it "
                   "while no lnq-napari uses the workspace, then run the command again")


def test_another_account_s_lock_file_names_its_owner(corrected_ws, tmp_path, capsys, monkeypatch):
    """filelock makes the lock file 0644: a second account of a group-writable workspace cannot open it."""
    import pwd

    lock = corrected_ws.root / lock_module.LOCK_FILE
    for name in (lock_module.LOCK_FILE, lock_module.RUN_FILE):
        (corrected_ws.root / name).touch()
        os.chown(corrected_ws.root / name, 65534, 65534)
    owner = next((p.pw_name for p in pwd.getpwall() if p.pw_uid == 65534), "uid 65534")

    class ForeignLock:  # what os.open(lock, O_RDWR) says to an account that is not its owner
        def __init__(self, path, **kwargs) -> None:
            self.path = path

        def acquire(self, *args, **kwargs) -> None:
            raise PermissionError(errno.EACCES, "Permission denied", str(self.path))

    monkeypatch.setattr(lock_module, "_LOCKS", {})
    monkeypatch.setattr(lock_module, "FileLock", ForeignLock)
    assert main(["workspace", "group", str(corrected_ws.root), str(_group_csv(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"lnq-napari: error: the lock file {lock} of the workspace {corrected_ws.root} cannot be "
                   "opened for writing (Permission denied), though the workspace can be written: it belongs "
                   f"to {owner}; ask {owner}, whose lnq-napari made it, to run chmod a+w {lock}, or delete "
                   "it while no lnq-napari uses the workspace, then run the command again")
    assert main(["finetune", "--workspace", str(corrected_ws.root), "--iterations", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"the lock file {corrected_ws.root / lock_module.RUN_FILE} " in err and "read-only" not in err


def _two_cases(tmp_path: Path) -> Workspace:
    """A workspace of two cases, neither corrected."""
    ct = np.random.default_rng(0).integers(-1000, 400, (4, 6, 6)).astype(np.int16)
    seg = np.zeros(ct.shape, np.uint8)
    seg[1:3, 2:4, 2:4] = 1
    for case in (CASE, OTHER):
        write_volume(tmp_path / "data" / f"{case}-ct.nrrd", Volume(ct))
        write_volume(tmp_path / "data" / f"{case}-seg.nrrd", Volume(seg))
    return Workspace.init(tmp_path / "ws", tmp_path / "data")



def test_repair_leaves_a_case_folder_it_cannot_write_alone_and_goes_on(tmp_path, monkeypatch, capsys):
    """The first case folder that could not be written stopped repair ("cannot write .../.v001.json.damaged.
    x.tmp.json.damaged ..."), after other cases' versions were rebuilt but never journaled."""
    ws = _two_cases(tmp_path)
    for case in (CASE, OTHER):
        (ws.root / "labels" / case / "v001.json").write_text("{torn")
        stamp = os.path.getmtime(ws.root / "labels" / case / "v001.json") - 7200
        for name in ("v001.json", "v001.seg.nrrd"):
            os.utime(ws.root / "labels" / case / name, (stamp, stamp))
    stuck = ws.root / "labels" / CASE
    _read_only_folder(monkeypatch, stuck)
    before = {p.name: p.read_bytes() for p in stuck.iterdir()}
    assert main(["workspace", "repair", str(ws.root)]) == 1
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [
        f"{CASE}: its folder {stuck} cannot be written (Read-only file system); v001 left alone: make the "
        "folder writable and run repair again",
        f"{OTHER} v001: v001.json rebuilt from the header of v001.seg.nrrd (original, parent none, edits 0, "
        "model none); nothing lost"]
    assert {p.name: p.read_bytes() for p in stuck.iterdir()} == before
    assert ws.journal("repair")[-1]["versions"] == [f"{OTHER}/v001"]


def test_next_checks_the_case_folders_it_stores_predictions_in_before_predicting(tmp_path, monkeypatch,
                                                                                 capsys):
    """A read-only case folder stopped `next` with "cannot write .../v003.json (...); give a writable
    folder ..." after other cases' predictions were stored."""
    ws = _two_cases(tmp_path)
    stuck = ws.root / "labels" / OTHER
    _read_only_folder(monkeypatch, stuck)
    before = _kept(ws)
    assert main(["next", "--workspace", str(ws.root), "-n", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lnq-napari: error: the folder {stuck} of the workspace {ws.root} is read-only "
                          "(Read-only file system) and ranking stores"), err
    assert len(err.splitlines()) == 1 and _kept(ws) == before


def test_next_ranks_again_when_only_a_scored_case_s_folder_is_read_only(tmp_path, monkeypatch, capsys):
    """`next` checked every uncorrected case's folder, those whose scores were cached too (nothing is
    written there): one case folder of another account refused every ranking after."""
    ws = _two_cases(tmp_path)
    assert main(["next", "--workspace", str(ws.root), "-n", "2"]) == 0
    first = capsys.readouterr().out
    stuck = ws.root / "labels" / OTHER
    _read_only_folder(monkeypatch, stuck)
    before = {p.name: p.read_bytes() for p in stuck.iterdir()}
    assert main(["next", "--workspace", str(ws.root), "-n", "2"]) == 0
    out = capsys.readouterr()
    assert out.out == first and OTHER in out.out, out
    assert {p.name: p.read_bytes() for p in stuck.iterdir()} == before


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "the disk of the workspace {} is full"),
    (errno.EDQUOT, "your disk quota on the workspace {}"),
    (errno.EROFS, "the workspace {} is read-only")])
def test_a_workspace_on_a_full_disk_says_to_free_space_not_to_make_it_writable(tmp_path, code, said):
    """A command refused by a full workspace disk said "cannot be written to ...; make it writable"; a
    used-up quota said the disk was full."""
    from lnq_napari.workspace.lock import not_writable

    refused = OSError(code, os.strerror(code), str(tmp_path / "journal.jsonl"))
    message = str(not_writable(tmp_path, refused, "finetune stores its model there"))
    assert said.format(tmp_path) in message, message
    assert ("make it writable" in message) == (code == errno.EROFS)
    assert ("is full" in message) == (code == errno.ENOSPC)

