"""SIGKILL at random moments during save, autosave and `workspace activate`: nothing reported saved is
lost, no half-written file shows as a version, the registry and journal parse (a few trials each; the
full count runs in benchmarks/bench_reliability.py)."""

from __future__ import annotations

import importlib.util
import os
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
