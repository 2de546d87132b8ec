"""Several processes on one workspace: label versions never shared or lost, journal complete, registry
entries never lost (the cross-process lock of :mod:`lnq_napari.workspace.lock`)."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.lock import WorkspaceLock

SHAPE = (8, 16, 16)
PROCESSES, SAVES = 4, 25


def _mask(seed: int) -> Volume:
    array = np.zeros(SHAPE, np.uint8)
    array.flat[seed % array.size] = 1  # each save is a different mask, so files can be told apart
    return Volume(array, spacing=(0.8, 0.8, 2.0))


def _saver(root: str, cases: list[str], worker: int, out) -> None:
    ws = Workspace.open(root)  # a fresh object per process, as the widgets and the CLI make
    saved = []
    for i in range(SAVES):
        case = cases[(worker + i) % len(cases)]
        seed = 1000 * worker + i
        saved.append((case, ws.add_label_version(case, _mask(seed), "correction", edits=1, seed=seed)))
    out.put(saved)


def _registrar(root: str, model: str, count: int, out) -> None:
    ws = Workspace.open(root)
    ids = []
    for _ in range(count):
        ids.append(ws.register_model(model))
        ws.activate(ids[-1], reason="test", decided_by="user")
    out.put(ids)


def _run(target, args_per_process) -> list:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for args in args_per_process]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


@pytest.fixture
def workspace(tmp_path):
    data = tmp_path / "data"
    for i in range(PROCESSES):
        write_volume(data / f"lnq2023-train-{i:04d}-ct.nrrd",
                     Volume(np.zeros(SHAPE, np.int16), spacing=(0.8, 0.8, 2.0)))
    return Workspace.init(tmp_path / "ws", data)


@pytest.mark.parametrize("same_case", [True, False], ids=["one-case", "different-cases"])
def test_four_processes_save_100_distinct_readable_versions(workspace, same_case):
    cases = workspace.case_ids()
    targets = [cases[:1] if same_case else cases] * PROCESSES
    results = _run(_saver, [(str(workspace.root), targets[w], w) for w in range(PROCESSES)])
    saved = [pair for result in results for pair in result]
    assert len(saved) == PROCESSES * SAVES == len(set(saved))  # 100 distinct (case, version)
    for case, version in saved:
        info = workspace.version_info(case, version)
        labels = workspace.read_labels(case, version)
        assert labels.array.flat[info["seed"] % labels.array.size] == 1 and labels.array.sum() == 1
    journaled = {(e["case"], e["version"]) for e in workspace.journal("correction")}
    assert journaled == set(saved)
    lines = workspace.journal_path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # no line torn or interleaved


def test_concurrent_register_and_activate_never_lose_an_entry(workspace, tmp_path):
    from lnq_napari.model import bundled_model_path

    results = _run(_registrar, [(str(workspace.root), str(bundled_model_path()), 6)] * 2)
    ids = [i for result in results for i in result]
    assert len(set(ids)) == 12
    entries = workspace.models()
    assert sorted(e["id"] for e in entries) == sorted(ids)
    assert sum(bool(e.get("active")) for e in entries) == 1
    for version in ids:
        workspace.registry.check(version)  # every registered folder complete and unchanged
    assert len(workspace.journal("activate")) == 12


def test_lock_is_reentrant_and_excludes_other_threads(tmp_path):
    import threading

    lock, order = WorkspaceLock(tmp_path), []
    with lock, WorkspaceLock(tmp_path):  # nested, through a second object: no deadlock
        worker = threading.Thread(target=lambda: (lock.__enter__(), order.append("thread"),
                                                  lock.__exit__(None, None, None)))
        worker.start()
        worker.join(0.3)
        order.append("main")
    worker.join(5)
    assert order == ["main", "thread"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_uses_the_workspace_its_parent_opened(workspace):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    workspace.log("parent")  # the parent has used (and released) the lock before forking
    child = ctx.Process(target=_saver, args=(str(workspace.root), workspace.case_ids()[:1], 0, out))
    child.start()
    saved = out.get(timeout=60)
    child.join(30)
    assert child.exitcode == 0 and len(saved) == SAVES


def _finetuning(root: str, started, stop) -> None:
    """Hold the workspace's fine-tune lock, as a running fine-tune does, until told to stop."""
    with Workspace.open(root).running_finetune():
        started.set()
        stop.wait(60)


def test_a_second_finetune_is_refused_while_one_runs_and_the_lock_dies_with_its_process(workspace):
    """Two fine-tunes at once deleted the version the first had registered and activated: the second is
    now refused at once (its plan, the first's pending plan and scratch folders untouched); a fine-tune
    killed without a word (kill -9) leaves the lock to the next one."""
    from lnq_napari.errors import LNQError
    from lnq_napari.finetuning import finetune_workspace

    ctx = multiprocessing.get_context("spawn")
    started, stop = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_finetuning, args=(str(workspace.root), started, stop))
    holder.start()
    assert started.wait(60)
    pending = workspace.models_dir / "pending.json"
    pending.write_text('{"version": "m001"}')  # the running one's plan
    scratch = workspace.models_dir / ".m001.staging"
    scratch.mkdir()
    try:
        with pytest.raises(LNQError, match=rf"a fine-tune is already running in this workspace \(process "
                                           rf"{holder.pid}, since .*\); wait for it to finish"):
            finetune_workspace(workspace.root)
        assert pending.read_text() == '{"version": "m001"}' and scratch.is_dir()
    finally:
        holder.kill()  # as kill -9: no cleanup of its own
        holder.join(30)
    with workspace.running_finetune():  # free again
        pass


def _probe(folder: str, seconds: float) -> None:
    import time

    from lnq_napari.workspace.lock import finetune_running

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        finetune_running(folder)


@pytest.mark.skipif(os.name == "nt", reason="the flock probe")
def test_asking_whether_a_finetune_runs_never_refuses_one_that_starts(tmp_path):
    """`workspace models` or `next` asking at the moment a fine-tune started took the free run lock for an
    instant: the fine-tune was refused as "already running"."""
    import time

    from lnq_napari.workspace.lock import RunLock

    with RunLock(tmp_path):
        pass  # the lock file exists, free
    ctx = multiprocessing.get_context("spawn")
    prober = ctx.Process(target=_probe, args=(str(tmp_path), 4.0))
    prober.start()
    try:
        time.sleep(1.0)  # the prober started
        for _ in range(300):
            with RunLock(tmp_path):
                pass
    finally:
        prober.join(30)


@pytest.mark.skipif(os.name == "nt", reason="the flock probe")
def test_a_finetune_running_is_told_from_a_read_only_view_of_its_workspace(tmp_path, monkeypatch):
    """A read-only mount of a workspace a fine-tune runs in (through a writable path): the probe opened the
    lock file for writing, failed (EROFS) and said none runs, offering --resume for the running plan."""
    import errno

    from lnq_napari.workspace.lock import RUN_FILE, RunLock, finetune_running

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(RUN_FILE) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    with RunLock(tmp_path):
        monkeypatch.setattr(os, "open", read_only)
        assert finetune_running(tmp_path) is True
        monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(os, "open", read_only)
    assert finetune_running(tmp_path) is False
