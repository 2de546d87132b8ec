"""Opening a case from the Review queue: how long the GUI thread is busy, and when the suggestions arrive.

Opens a real napari viewer (needs a display: run under Xvfb), makes a workspace over default-site phantom
cases (full size, 62 x 512 x 512) and opens each case from the Review widget, as a double-click on the
queue does. Per case: the GUI thread's time in ``open_case`` (reading the CT and labels, adding the
layers: what the user waited for before), the time until the workspace's model has found the case's
suggestions in its background worker and they are on screen, and a 20 ms QTimer's lateness meanwhile (the
viewer answering while the model runs). Medians over the cases; the bundled model.
    OMP_NUM_THREADS=2 xvfb-run -a python benchmarks/bench_open_case.py --cases 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import napari
    import torch
    from _gui_probe import TickProbe
    from qtpy.QtWidgets import QApplication

    from lnq_napari.phantom import write_dataset
    from lnq_napari.plugin.widgets import ReviewWidget
    from lnq_napari.workspace import Workspace

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp) / "data", args.cases, seed=21)
        ws = Workspace.init(Path(tmp) / "ws", Path(tmp) / "data")
        viewer = napari.Viewer(show=True)
        review = ReviewWidget(viewer, workspace=ws)
        app = QApplication.instance()
        probe = TickProbe(20)
        ticks = probe.ticks
        rows = []
        for case in ws.case_ids():
            started = time.perf_counter()
            review.open_case(case)
            opened = time.perf_counter()
            ticks.clear()
            while review.suggesting is not None:
                app.processEvents()
                time.sleep(0.001)
            shown = time.perf_counter()
            late = np.maximum(probe.lateness_ms(), 0.0) if len(ticks) > 1 else [0.0]
            n = len(viewer.layers["suggestions"].data) if "suggestions" in viewer.layers else 0
            rows.append((opened - started, shown - started, float(np.max(late)), n))
            print(f"{case}: open_case {opened - started:.2f} s on the GUI thread; suggestions ({n}) on "
                  f"screen after {shown - started:.1f} s; max timer lateness meanwhile {np.max(late):.0f} ms")
        probe.timer.stop()
        viewer.close()
    opened, shown, late, _ = (np.asarray(col) for col in zip(*rows))
    print(f"median over {len(rows)} cases: open_case {np.median(opened):.2f} s (the wait before, and now), "
          f"suggestions after {np.median(shown):.1f} s, max lateness {np.median(late):.0f} ms "
          f"(torch threads {args.threads})")


if __name__ == "__main__":
    main()
