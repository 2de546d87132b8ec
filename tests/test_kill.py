"""SIGKILL at random moments during save, autosave, `workspace activate` and `next`: nothing reported
saved is lost, no half-written file shows as a version, the registry, score cache and journal parse
(a few trials each; the full count runs in benchmarks/bench_reliability.py)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked worker (POSIX)")]
TRIALS = 10


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_reliability.py"
    spec = importlib.util.spec_from_file_location("bench_reliability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("op", ["save", "autosave", "activate"])
def test_kill_at_random_moments_loses_nothing_reported(op):
    result = _bench().kill_trials(op, TRIALS, seed=1)
    assert result["trials"] == TRIALS
    assert result["losses"] == 0, result["problems"]
    assert not result["problems"]


def test_kill_during_next_leaves_a_consistent_workspace():
    """Kills while `next` ranks cases: the cache parses and points at committed prediction versions,
    label versions are complete, the journal parses; the last, uninterrupted ranking completes."""
    result = _bench().next_trials(4, seed=1)
    assert result["trials"] == 4
    assert result["losses"] == 0, result["problems"]
    assert not result["problems"] and result["torn_journal_lines"] == 0
    assert result["prediction_versions"] >= 4  # at least one ranking stored a prediction of every case


def test_a_killed_write_leaves_a_hidden_temp_file_that_later_writes_clean():
    """SIGKILL inside an atomic write of a label file: no version shows, the leftover is never read,
    and once stale a later write into the folder removes it (a fresh one, maybe still being written,
    stays)."""
    import numpy as np

    from lnq_napari.io import atomic
    from lnq_napari.io.volume import Volume
    from lnq_napari.workspace.labels import LabelStore

    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(tmp, "case-0001")
        store.folder.mkdir(parents=True)
        pid = os.fork()
        if pid == 0:  # the child dies half-way through writing v001
            with atomic.atomic_write(store.folder / "v001.seg.nrrd") as part:
                part.write_bytes(b"NRRD0004\n# half a header")
                os.kill(os.getpid(), 9)
            os._exit(1)
        os.waitpid(pid, 0)
        leftovers = [p for p in store.folder.iterdir() if atomic.is_temp(p)]
        assert len(leftovers) == 1 and not (store.folder / "v001.seg.nrrd").exists()
        assert store.versions() == []
        labels = Volume(np.zeros((4, 8, 8), np.uint8))
        assert store.add(labels, "correction").version == "v001"  # the leftover takes no number
        assert leftovers[0].exists()  # fresh: it could be a write still going on
        old = leftovers[0].stat().st_mtime - 2 * atomic.STALE_SECONDS
        os.utime(leftovers[0], (old, old))
        assert store.add(labels, "correction").version == "v002"
        assert not leftovers[0].exists()
        assert [v["version"] for v in store.versions()] == ["v001", "v002"]
        assert not [p for p in store.folder.iterdir() if atomic.is_temp(p)]
