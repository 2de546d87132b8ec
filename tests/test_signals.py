"""SIGTERM during a command (signals.py): handled as Ctrl-C (one line, exit 143, nothing half-written),
the caller's handler back after it; a napari window ends at once. The signals are sent from a hook at a
known point of a subprocess, never after a sleep."""

from __future__ import annotations

import json
import signal
import sys

import pytest
from conftest import one_case_workspace, posix, run_script, temps

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import Terminated
from lnq_napari.model import bundled_model_path


@posix
def test_sigterm_inside_a_write_ends_in_one_line_and_leaves_no_temp_file(tmp_path):
    """SIGTERM killed the process where it stood (exit -15, not a word): an activation's registry write
    left its hidden temp file. Now it is handled as Ctrl-C: the write is dropped whole, exit 143, one line."""
    ws = one_case_workspace(tmp_path / "ws")
    ws.register_model(bundled_model_path())
    registry = (ws.models_dir / "registry.json").read_text()
    done = run_script(f"""
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
    assert not temps(ws.root)
    for line in ws.journal_path.read_text().splitlines():
        json.loads(line)
    assert main(["workspace", "activate", str(ws.root), "m001"]) == 0  # the same command again


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

