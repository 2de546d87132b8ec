"""A run stopped by Ctrl-C or SIGTERM, or by a full disk: one line saying so (and where, and what to do), no
traceback, nothing half-written, the workspace as before. The signals are sent from a hook at a known
point of a subprocess, never after a sleep."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import one_case_workspace

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import is_temp
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


def _full_disk_after(monkeypatch, calls: int) -> None:
    """``nrrd.write`` fills the disk at its ``calls``-th call: half a file written, then ENOSPC with no file
    name, as ``write()`` raises it."""
    import nrrd

    write, count = nrrd.write, {"n": 0}

    def full(path, *args, **kwargs):
        count["n"] += 1
        if count["n"] < calls:
            return write(path, *args, **kwargs)
        Path(path).write_bytes(b"NRRD0004\n# half a header")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nrrd, "write", full)


def test_a_full_disk_names_the_folder_and_says_to_free_space(tmp_path, monkeypatch, capsys):
    """export-nnunet on a disk that fills at its second file said "cannot write a file (No space left on
    device)": not where. Now the folder and "free space"; no dataset and no temp file is left."""
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "data", 2, seed=3, shape=(8, 24, 24), spacing=(6.0, 6.0, 8.0))
    _full_disk_after(monkeypatch, 2)
    out = tmp_path / "raw"
    assert main(["export-nnunet", "--data", str(tmp_path / "data"), "--out", str(out), "--dataset-id", "7",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lnq-napari: error:"), err
    assert str(out) in err[0] and "is full" in err[0] and "free space" in err[0]
    assert not list(out.glob("Dataset007*")) and not _temps(tmp_path)


def test_save_labels_on_a_full_disk_says_free_space_and_keeps_every_version(tmp_path, monkeypatch):
    """save_labels on a full disk said "make it writable": the workspace was writable, only full."""
    ws = one_case_workspace(tmp_path / "ws")
    case = ws.case_ids()[0]
    before = {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()}
    _full_disk_after(monkeypatch, 1)
    labels = ws.latest_labels(case)
    with pytest.raises(LNQError, match="free space there, then save again"):
        api.save_labels(labels.with_array(np.ones(labels.shape, np.uint8)), case, workspace=ws.root)
    assert {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()} == before
    assert not _temps(ws.root)


def test_a_workspace_on_a_full_disk_says_to_free_space_not_to_make_it_writable(tmp_path):
    """A command refused by a full workspace disk said "cannot be written to ...; make it writable"."""
    from lnq_napari.workspace.lock import not_writable

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "journal.jsonl"))
    message = str(not_writable(tmp_path, full, "finetune stores its model there"))
    assert f"the disk of the workspace {tmp_path} is full" in message and "free space there" in message
    assert "make it writable" not in message
