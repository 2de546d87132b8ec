"""A run stopped by Ctrl-C or SIGTERM, or by a full disk: one line saying so (and where, and what to do), no
traceback, nothing half-written, the workspace as before. The signals are sent from a hook at a known
point of a subprocess, never after a sleep."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import one_case_workspace

from lnq_napari import api, launch
from lnq_napari.cli import main
from lnq_napari.errors import LNQError, Terminated
from lnq_napari.io.atomic import cannot_write_line, is_temp
from lnq_napari.model import bundled_model_path

ROOT = Path(__file__).resolve().parents[1]
posix = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals to a subprocess")


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp(p)]


@posix
def test_sigterm_inside_a_write_ends_in_one_line_and_leaves_no_temp_file(tmp_path):
    """SIGTERM killed the process where it stood (exit -15, not a word): an activation's registry write
    left its hidden temp file. Now it is handled as Ctrl-C: the write is dropped whole, exit 143, one line."""
    ws = one_case_workspace(tmp_path / "ws")
    ws.register_model(bundled_model_path())
    registry = (ws.models_dir / "registry.json").read_text()
    done = _run(f"""
        import os, signal, sys
        from lnq_napari import cli
        from lnq_napari.io import atomic
        flushed = atomic.flushed
        def hook(path):  # the temp file is written, not yet renamed into place
            os.kill(os.getpid(), signal.SIGTERM)
            return flushed(path)
        atomic.flushed = hook
        sys.exit(cli.main(["workspace", "activate", {str(ws.root)!r}, "m001"]))
    """, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 143, done.stderr
    assert lines == ["lnq-napari: terminated"] and "Traceback" not in done.stderr
    assert (ws.models_dir / "registry.json").read_text() == registry  # nothing activated
    assert not _temps(ws.root)
    for line in ws.journal_path.read_text().splitlines():
        json.loads(line)
    assert main(["workspace", "activate", str(ws.root), "m001"]) == 0  # the same command again


@posix
def test_ctrl_c_while_the_program_starts_is_one_line_not_a_traceback(tmp_path):
    """Ctrl-C while `lnq-napari` imports its libraries (seconds on a busy machine) printed a 30-line
    traceback: the entry point imported the whole command line before any handler ran."""
    ws = one_case_workspace(tmp_path / "ws")
    done = _run(f"""
        import importlib, os, signal, sys, tomllib
        with open({str(ROOT / "pyproject.toml")!r}, "rb") as f:
            entry = tomllib.load(f)["project"]["scripts"]["lnq-napari"]  # what the installed program runs
        class CtrlC:  # Ctrl-C pressed while the API is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "lnq_napari.api":
                    os.kill(os.getpid(), signal.SIGINT)
                return None
        sys.meta_path.insert(0, CtrlC())
        module, function = entry.split(":")
        program = getattr(importlib.import_module(module), function)
        sys.exit(program(["workspace", "models", {str(ws.root)!r}]))
    """, tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["lnq-napari: interrupted while starting; nothing was changed"]


@posix
def test_python_m_after_a_ctrl_c_inside_a_string_exec_exits_130(tmp_path):
    """Under `python -m lnq_napari`, a Ctrl-C landing in code run by a string exec() (dataclasses and
    scipy import through them) was reported in its one line, and then CPython killed the process with
    SIGINT at exit (status -2): it remembers such a KeyboardInterrupt even once handled."""
    ws = one_case_workspace(tmp_path / "ws")
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "stop_in_exec.py").write_text(textwrap.dedent(f"""
        import os, runpy, signal, sys
        class CtrlC:  # Ctrl-C lands inside a string exec() while the API is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "lnq_napari.api":
                    exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(1000): pass")
                return None
        sys.meta_path.insert(0, CtrlC())
        sys.argv = ["lnq-napari", "workspace", "models", {str(ws.root)!r}]
        runpy.run_module("lnq_napari", run_name="__main__", alter_sys=True)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(tmp_path / "probe"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "stop_in_exec"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["lnq-napari: interrupted while starting; nothing was changed"]


@pytest.fixture
def own_sigterm():
    """A SIGTERM handler of the caller's own (a notebook's), put back as it was after the test."""
    def own(signum, frame) -> None:
        pass

    before = signal.signal(signal.SIGTERM, own)
    yield own
    signal.signal(signal.SIGTERM, before)


def test_a_second_signal_while_the_first_is_reported_claims_nothing_and_keeps_its_status(
        tmp_path, monkeypatch, capsys, own_sigterm):
    """A Ctrl-C while the command reported a SIGTERM reached the program's start-up handler: "interrupted
    while starting; nothing was changed" (the command had run) and exit 130 instead of 143."""
    ws = one_case_workspace(tmp_path / "ws")

    def terminated(*args, **kwargs):
        raise Terminated

    def second(args):
        raise KeyboardInterrupt  # the second signal, while the first one's line is made

    monkeypatch.setattr(api, "finetune", terminated)
    monkeypatch.setattr("lnq_napari.cli._after_interrupt", second)
    monkeypatch.setattr(launch, "ignore_interrupts", lambda: None)  # not in the test's own process
    assert launch.main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 143
    assert capsys.readouterr().err.strip().splitlines() == ["lnq-napari: terminated"]
    assert signal.getsignal(signal.SIGTERM) is own_sigterm


def test_the_command_line_puts_the_sigterm_handler_back(tmp_path, monkeypatch, capsys, own_sigterm):
    """`cli.main` from a notebook or a test: SIGTERM raises Terminated only while the command runs; the
    caller's handler is back after it, whether it ended or was stopped."""
    ws = one_case_workspace(tmp_path / "ws")
    assert main(["workspace", "models", str(ws.root)]) == 0
    assert signal.getsignal(signal.SIGTERM) is own_sigterm

    def terminated(*args, **kwargs):
        raise Terminated

    monkeypatch.setattr(api, "finetune", terminated)
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 143
    assert signal.getsignal(signal.SIGTERM) is own_sigterm


@pytest.mark.parametrize("command", ["view", "demo"])
def test_sigterm_ends_a_napari_window_at_once_not_through_napari(tmp_path, monkeypatch, command,
                                                                  own_sigterm):
    """SIGTERM to `view` (or `demo`'s window) raised Terminated inside a Qt callback: napari's error hook
    ended the process with exit 1 and "Closed by KeyboardInterrupt", seconds later. The window now has
    the default SIGTERM (ends at once, as README says); the handler of before is back after it."""
    import types

    seen = []
    window = types.ModuleType("lnq_napari.plugin.app")
    window.view = lambda *args, **kwargs: seen.append(signal.getsignal(signal.SIGTERM))
    monkeypatch.setitem(sys.modules, "lnq_napari.plugin.app", window)
    monkeypatch.setattr(api, "require_display", lambda: None)
    monkeypatch.setattr(api, "has_display", lambda: True)
    monkeypatch.setattr(api, "demo", lambda *args, **kwargs: {"ct": str(tmp_path / "ct.nrrd")})
    assert main([command]) == 0
    assert seen == [signal.SIG_DFL]
    assert signal.getsignal(signal.SIGTERM) is own_sigterm


def test_ctrl_c_before_a_finetune_s_plan_does_not_send_to_resume(tmp_path, monkeypatch, capsys):
    """A fine-tune stopped before its plan was written said "run it again with --resume", which then
    answered "no interrupted fine-tune to resume"."""
    ws = one_case_workspace(tmp_path / "ws")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "finetune", stopped)
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("lnq-napari: interrupted;") and "--resume" not in err, err
    (ws.models_dir / "pending.json").write_text("{}")  # a plan pending: --resume is the way on
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 130
    assert "--resume" in capsys.readouterr().err


def _full_disk_after(monkeypatch, calls: int, code: int = errno.ENOSPC) -> None:
    """``nrrd.write`` fills the disk (or the quota: ``code``) at its ``calls``-th call: half a file written,
    then ENOSPC (EDQUOT) with no file name, as ``write()`` raises it."""
    import nrrd

    write, count = nrrd.write, {"n": 0}

    def full(path, *args, **kwargs):
        count["n"] += 1
        if count["n"] < calls:
            return write(path, *args, **kwargs)
        Path(path).write_bytes(b"NRRD0004\n# half a header")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(nrrd, "write", full)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_folder_and_says_to_free_space(tmp_path, monkeypatch, capsys, code):
    """export-nnunet on a disk that fills at its second file said "cannot write a file (No space left on
    device)": not where. Now the folder and "free space"; no dataset and no temp file is left. The folder
    named is one still there (it named the hidden staging folder, removed by then); a used-up quota says
    so (it said the disk was full)."""
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "data", 2, seed=3, shape=(8, 24, 24), spacing=(6.0, 6.0, 8.0))
    _full_disk_after(monkeypatch, 2, code)
    out = tmp_path / "raw"
    assert main(["export-nnunet", "--data", str(tmp_path / "data"), "--out", str(out), "--dataset-id", "7",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lnq-napari: error:"), err
    if code == errno.ENOSPC:
        folder = re.search(r"the disk of (.+) is full \(", err[0])
        assert folder and "free space there" in err[0], err[0]
    else:
        folder = re.search(r"your disk quota on (.+) is used up \(", err[0])
        assert folder and "larger quota" in err[0] and "is full" not in err[0], err[0]
    assert Path(folder.group(1)).is_dir() and folder.group(1).startswith(str(tmp_path)), err[0]
    assert not list(out.glob("Dataset007*")) and not _temps(tmp_path)


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "free space there, then save again"),
    (errno.EDQUOT, "remove files of yours or ask for a larger quota, then save again")])
def test_save_labels_on_a_full_disk_says_free_space_and_keeps_every_version(tmp_path, monkeypatch, code,
                                                                             said):
    """save_labels on a full disk said "make it writable": the workspace was writable, only full; a used-up
    quota was told to "free space there" (only the user's own files count)."""
    ws = one_case_workspace(tmp_path / "ws")
    case = ws.case_ids()[0]
    before = {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()}
    _full_disk_after(monkeypatch, 1, code)
    labels = ws.latest_labels(case)
    with pytest.raises(LNQError, match=said):
        api.save_labels(labels.with_array(np.ones(labels.shape, np.uint8)), case, workspace=ws.root)
    assert {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()} == before
    assert not _temps(ws.root)


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


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "the disk is full (No space left on device); free space on it, then run"),
    (errno.EDQUOT, "your disk quota is used up (Disk quota exceeded); remove files of yours or ask for a "
                   "larger quota, then run"),
    (errno.EROFS, "cannot write a file (Read-only file system); give a writable folder")])
def test_a_refused_write_that_names_no_file_says_what_to_do(code, said):
    """The line of a write refused without a file name: no "there" without a place it points to."""
    assert cannot_write_line(OSError(code, os.strerror(code))).startswith(said)


@posix
@pytest.mark.parametrize("child_sigterm, ends_by", [("SIG_DFL", -signal.SIGTERM),
                                                    ("SIG_IGN", -signal.SIGKILL)])
def test_a_stopped_nnunet_training_stops_its_child_first(tmp_path, monkeypatch, child_sigterm, ends_by):
    """SIGTERM to a fine-tune left its nnU-Net training child running (only Cancel stopped it): the
    fine-tune's clean-up then removed the folders the child still wrote checkpoints into. Now any
    exception stops the child (SIGTERM, SIGKILL once it will not end) before it leaves train_fold."""
    from lnq_napari.nnunet import train

    out = tmp_path / "results"
    out.mkdir()
    child = textwrap.dedent(f"""
        import pathlib, signal, time
        signal.signal(signal.SIGTERM, signal.{child_sigterm})
        for i in range(600):  # a checkpoint every 0.1 s, as nnU-Net's trainer writes them
            pathlib.Path({str(out)!r}, f"epoch{{i}}.pth").write_text("x")
            time.sleep(0.1)
    """)
    started, popen = [], subprocess.Popen

    def fake_child(cmd, **kwargs):
        started.append(popen([sys.executable, "-c", child], **kwargs))
        return started[-1]

    def terminated_once_training() -> bool:
        if any(out.glob("*.pth")):
            raise Terminated  # SIGTERM to the parent only, once the child writes its checkpoints
        return False

    monkeypatch.setattr(train.subprocess, "Popen", fake_child)
    monkeypatch.setattr(train, "require_nnunet", lambda *args: None)
    monkeypatch.setattr(train, "STOP_SECONDS", 0.5, raising=False)
    try:
        with pytest.raises(Terminated):
            train.train_fold(out, out, out, fold=0, cancel=terminated_once_training)
        assert started[0].poll() == ends_by  # ended before train_fold returned
    finally:
        started[0].kill()
        started[0].wait()
