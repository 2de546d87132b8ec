"""Worker processes end with the program that started them (a kill -9 left export workers writing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import posix

from lnq_napari.errors import LNQError, Terminated

SCRIPT = '''
import os, time
from lnq_napari.processes import process_pool

def worker_pid(_):
    return os.getpid()

def busy(_):
    time.sleep(120)

if __name__ == "__main__":
    pool = process_pool(1)
    print(pool.submit(worker_pid, 0).result(), flush=True)
    pool.submit(busy, 0)
    time.sleep(120)
'''


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _ends_with_its_parent(tmp_path, script_text: str, settle: float = 0.0) -> None:
    """Start ``script_text`` (it prints the pid of a process it started), kill it with kill -9 (no
    chance to clean up) and see that process end within 20 s."""
    script = tmp_path / "parent.py"
    script.write_text(script_text)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(settle)
        assert _running(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)
        deadline = time.time() + 20
        while _running(child) and time.time() < deadline:
            time.sleep(0.2)
        assert not _running(child)
    finally:
        parent.kill()


def test_a_worker_ends_soon_after_its_program_is_killed(tmp_path):
    _ends_with_its_parent(tmp_path, SCRIPT)


CHILD_SCRIPT = '''
import os, subprocess, sys, time

code = ("import sys, time; from lnq_napari.processes import end_with_parent; "
        "end_with_parent(int(sys.argv[1])); time.sleep(120)")
child = subprocess.Popen([sys.executable, "-c", code, str(os.getpid())])
print(child.pid, flush=True)
time.sleep(120)
'''


def test_a_child_process_that_watches_its_parent_ends_with_it(tmp_path):
    """What nnU-Net's training process does (a fine-tune killed with kill -9 left it training alone)."""
    _ends_with_its_parent(tmp_path, CHILD_SCRIPT, settle=1.0)  # the child's watcher is up


def test_the_nnunet_trainer_watches_the_process_that_started_it(monkeypatch):
    """``train_fold``'s subprocess starts watching its parent before anything else (nnU-Net's imports and
    preprocessing take minutes on real data)."""
    from lnq_napari.nnunet import train

    watched = []

    def watch(parent):
        watched.append(parent)
        raise SystemExit(0)

    monkeypatch.setattr(train, "end_with_parent", watch)
    with pytest.raises(SystemExit):
        train._main({"parent": 4242, "dataset": "Dataset999_None"})
    assert watched == [4242]


def test_a_program_read_from_stdin_loads_its_cases_in_one_process(tmp_path):
    """The model card's `python - <<'PY'` training snippet broke the process pool at once (its workers
    could not import a main program that has no file): it loads in this process instead."""
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "d", 2, seed=3, shape=(16, 64, 64), spacing=(6.0, 6.0, 12.0))
    script = ("from lnq_napari.training.trainer import load_training_cases\n"
              f"print(len(load_training_cases({str(tmp_path / 'd')!r}, workers=2)))\n")
    run = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "2", run.stderr[-500:]


def test_workers_show_warnings_in_one_line_as_the_cli_does(capfd):
    """`train` read its cases in worker processes that printed a resampled label file's warning in
    Python's raw format (file, line number and source line): they lacked the CLI's hook."""
    import warnings

    from lnq_napari.heard import show_one_line
    from lnq_napari.processes import process_pool

    with warnings.catch_warnings():
        warnings.showwarning = show_one_line  # as the CLI sets it
        with process_pool(1) as pool:
            pool.submit(warnings.warn, "case7: labels resampled onto the CT's grid", UserWarning).result()
    err = capfd.readouterr().err
    assert "lnq-napari: warning: case7: labels resampled onto the CT's grid" in err
    assert "UserWarning" not in err and ".py:" not in err


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



def test_a_script_without_a_main_guard_gets_one_lnqerror(tmp_path):
    """Spawned workers import the script: without ``if __name__ == "__main__":`` its calls ran again in
    each worker, the pool broke and the script ended in BrokenProcessPool's traceback; now one LNQError
    says why."""
    script = tmp_path / "make_data.py"
    script.write_text(textwrap.dedent('''
        from lnq_napari.errors import LNQError
        from lnq_napari.phantom import write_dataset
        try:
            write_dataset("data", 2, shape=(8, 32, 32), spacing=(4.0, 4.0, 8.0), workers=2)
        except LNQError as exc:
            print("LNQError:", exc)
        '''))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert "LNQError: a worker process stopped before its work was done: in a script, put the calls under " \
           '`if __name__ == "__main__":`' in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("main", ["cli", "launcher", "guarded", "notebook"])
def test_a_broken_pool_outside_an_unguarded_script_names_a_crash_or_memory_not_the_guard(
        tmp_path, monkeypatch, main):
    """``lnq-napari train``/``export-nnunet`` (and a notebook) said "in a script, put the calls under
    `if __name__ == "__main__":`" when a worker died of memory or a crash: there is no script to guard."""
    import types
    from concurrent.futures.process import BrokenProcessPool

    import lnq_napari
    from lnq_napari.processes import broken_pool_said

    module = types.ModuleType("__main__")
    launcher = tmp_path / "lnq-napari"  # what pip writes for the console script
    launcher.write_text("import sys\nfrom lnq_napari.launch import main\nif __name__ == '__main__':\n"
                        "    sys.exit(main())\n")
    guarded = tmp_path / "run.py"
    guarded.write_text("from lnq_napari import api\n\nif __name__ == \"__main__\":\n"
                       "    api.train('d', 'm')\n")
    files = {"cli": Path(lnq_napari.__file__).with_name("__main__.py"), "launcher": launcher,
             "guarded": guarded}
    if main in files:
        module.__file__ = str(files[main])
    monkeypatch.setitem(sys.modules, "__main__", module)
    with pytest.raises(LNQError) as said:
        with broken_pool_said():
            raise BrokenProcessPool("A child process terminated abruptly")
    assert str(said.value).startswith("a worker process crashed or ran out of memory before its work was "
                                      "done; close other programs and run again, or use fewer workers")
    assert "__main__" not in str(said.value)
    unguarded = tmp_path / "make_data.py"
    unguarded.write_text("from lnq_napari import api\napi.train('d', 'm')\n")
    module.__file__ = str(unguarded)
    with pytest.raises(LNQError, match="in a script, put the calls under `if __name__ == \"__main__\":`"):
        with broken_pool_said():
            raise BrokenProcessPool("A child process terminated abruptly")
