"""The program's entry (launch.py, ``python -m lnq_napari``): a Ctrl-C while it starts is one line and exit
130, not a traceback; a second signal while the first is reported keeps the first one's status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from conftest import ROOT, one_case_workspace, posix, run_script

from lnq_napari import api, launch
from lnq_napari.errors import Terminated


@posix
def test_ctrl_c_while_the_program_starts_is_one_line_not_a_traceback(tmp_path):
    """Ctrl-C while `lnq-napari` imports its libraries (seconds on a busy machine) printed a 30-line
    traceback: the entry point imported the whole command line before any handler ran."""
    ws = one_case_workspace(tmp_path / "ws")
    done = run_script(f"""
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

