"""Timing shared by the benchmarks: the median wall time of a job over repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(job: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``job()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
