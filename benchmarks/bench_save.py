"""Does the viewer stay responsive while Save writes a label version? A 20 ms QTimer's lateness from the
press of Save until the Save widget says it ended.

Opens a real napari viewer (needs a display: run under Xvfb), puts a CT and a "nodes" label layer of
``--shape`` voxels with ``--nodes`` ball-shaped nodes on it (a synthetic case: building a phantom this
large takes minutes), docks the lnq-napari widgets, presses Save (into a temporary label folder) and
records when the timer actually fires. Prints the longest GUI-thread stall (the largest gap between two
firings, minus 20 ms) during the Save, and the Save's wall time. The press, the wait and the probe use only
what every version of the Save widget has (its button and its status line), so the same script measures
an older tree: ``--baseline TREE`` first runs itself with ``PYTHONPATH=TREE`` in a subprocess, then here.
    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/bench_save.py --shape 300 512 512 --baseline /path/old
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def synthetic_case(shape: tuple[int, int, int], nodes: int, seed: int = 0):
    """(CT, node ids) Volumes: soft tissue with ``nodes`` balls of 4-9 mm radius, ids 1..nodes."""
    from lnq_napari.io.volume import Volume

    rng = np.random.default_rng(seed)
    spacing = (0.8, 0.8, 1.5)  # x, y, z mm
    ct = np.full(shape, 40, np.int16)
    ids = np.zeros(shape, np.int32)
    for node in range(1, nodes + 1):
        radius_mm = rng.uniform(4.0, 9.0)
        r = np.ceil(radius_mm / np.array(spacing[::-1])).astype(int)
        centre = [rng.integers(ri, n - ri) for ri, n in zip(r, shape, strict=True)]
        box = tuple(slice(c - ri, c + ri + 1) for c, ri in zip(centre, r, strict=True))
        grid = np.ogrid[tuple(slice(-ri, ri + 1) for ri in r)]
        ball = sum((g * s) ** 2 for g, s in zip(grid, spacing[::-1], strict=True)) <= radius_mm ** 2
        ids[box][ball] = node
        ct[box][ball] = 60
    return Volume(ct, spacing=spacing), Volume(ids, spacing=spacing)


def measure(shape: tuple[int, int, int], nodes: int, idle_s: float) -> None:
    import napari
    from _gui_probe import TickProbe
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import lnq_napari
    from lnq_napari.plugin._case import add_case, nodes_layer_data
    from lnq_napari.plugin._reader import ct_layer_data
    from lnq_napari.plugin.app import dock_widgets

    ct, ids = synthetic_case(shape, nodes)
    with tempfile.TemporaryDirectory() as tmp:
        viewer = napari.Viewer(show=True)
        add_case(viewer, ct_layer_data(ct, name="ct"), nodes_layer_data(ids))
        save = dock_widgets(viewer)["Save"]
        save.folder.setText(tmp)
        app = QApplication.instance()
        probe = TickProbe(20)
        ticks = probe.ticks

        def spin(seconds: float) -> None:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                app.processEvents()
                time.sleep(0.001)

        spin(idle_s)  # baseline: the same timer with nothing running (the node table fills first)
        idle = probe.lateness_ms()
        ticks.clear()
        spin(0.2)
        start = time.perf_counter()
        QTimer.singleShot(0, save.save_button.click)  # as a user's click, from the event loop
        while not save.status.text().startswith(("saved", "not saved")):
            app.processEvents()
            time.sleep(0.001)
        ended = time.perf_counter()
        spin(0.3)  # a few ticks after it ended
        probe.timer.stop()
        stamps = np.asarray(ticks)
        gaps, ends = np.diff(stamps) * 1000.0 - 20.0, stamps[1:]
        during = gaps[(ends > start) & (ends <= ended + 0.05)]
        print(f"lnq_napari from {os.path.dirname(os.path.dirname(lnq_napari.__file__))}")
        print(f"labels {shape} int32, {nodes} nodes; idle lateness max {idle.max():.1f} ms")
        print(f"Save took {ended - start:.2f} s; status: {save.status.text().splitlines()[0]}")
        print(f"GUI-thread stall during Save: max {during.max():.0f} ms, p95 "
              f"{np.percentile(during, 95):.0f} ms over {len(during)} ticks")
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--idle-s", type=float, default=3.0, help="seconds of idle baseline first")
    parser.add_argument("--baseline", metavar="TREE",
                        help="a source tree (an older lnq-napari) to measure first, the same way")
    args = parser.parse_args()
    if args.baseline:
        cmd = [sys.executable, __file__, "--shape", *map(str, args.shape), "--nodes", str(args.nodes),
               "--idle-s", str(args.idle_s)]
        print("== baseline:", args.baseline, flush=True)
        subprocess.run(cmd, env={**os.environ, "PYTHONPATH": args.baseline}, check=True)
        print("== this tree", flush=True)
    measure(tuple(args.shape), args.nodes, args.idle_s)


if __name__ == "__main__":
    main()
