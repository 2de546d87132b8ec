"""The GUI-thread probe of the responsiveness benchmarks: a QTimer set to fire every ``interval_ms`` and
the times it fired; a tick's lateness (gap - interval) is how long the GUI thread was busy."""

from __future__ import annotations

import time

import numpy as np


class TickProbe:
    """Started on creation; ``ticks`` holds ``time.perf_counter()`` at each firing (clear it to restart)."""

    def __init__(self, interval_ms: int = 20) -> None:
        from qtpy.QtCore import QTimer

        self.interval_ms = interval_ms
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def lateness_ms(self) -> np.ndarray:
        """Each gap between two firings minus the interval, in ms (empty with fewer than two firings)."""
        return np.diff(np.asarray(self.ticks)) * 1000.0 - self.interval_ms
