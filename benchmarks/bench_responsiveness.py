"""Is the viewer responsive while Segment predicts? A 20 ms QTimer's lateness during the worker run.

Opens a real napari viewer (needs a display: run under Xvfb, e.g. ``xvfb-run -a python ...``), loads a
phantom CT, starts the Segment widget's prediction in its worker thread and records when a QTimer
set to fire every 20 ms actually fires. Lateness = gap between two firings - 20 ms. Prints max and p95
lateness while the worker runs, and separately for the GUI-thread step that shows the result.
Uses the bundled model, else an untrained model of the default architecture (same compute).
    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/bench_responsiveness.py --shape 64 256 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def model_folder(tmp: Path) -> tuple[str | None, str]:
    """The bundled model (None) when it loads, else an untrained default-architecture model folder."""
    from lnq_napari.errors import LNQError

    try:
        from lnq_napari.model import resolve_model

        resolve_model(None)
        return None, "bundled"
    except (LNQError, FileNotFoundError, ImportError):
        pass
    from lnq_napari.model.checkpoint import save_checkpoint
    from lnq_napari.model.config import ModelConfig
    from lnq_napari.model.network import build_network

    cfg = ModelConfig(version="untrained-default-architecture")
    net = build_network(cfg.architecture.name, cfg.architecture.kwargs)
    return str(save_checkpoint(tmp / "model", net.state_dict(), cfg)), "untrained (default architecture)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256), metavar=("Z", "Y", "X"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 1.5, 3.0), metavar=("X", "Y", "Z"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="model folder (default: bundled, else an untrained one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds of idle baseline first")
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from lnq_napari.phantom import make_case
    from lnq_napari.plugin._reader import ct_layer_data
    from lnq_napari.plugin.app import dock_widgets

    torch.set_num_threads(args.threads)
    case = make_case(0, shape=tuple(args.shape), spacing=tuple(args.spacing))
    with tempfile.TemporaryDirectory() as tmp:
        model, kind = (args.model, args.model) if args.model else model_folder(Path(tmp))
        viewer = napari.Viewer(show=True)
        data, kwargs, _ = ct_layer_data(case.ct, name="ct")
        viewer.add_image(data, **kwargs)
        segment = dock_widgets(viewer, model=model)["Segment"]  # all four widgets, as a user has them
        segment.form.device.value = args.device
        app = QApplication.instance()
        ticks: list[float] = []
        marks: dict[str, float] = {}
        timer = QTimer()
        timer.setInterval(20)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        t0 = time.perf_counter()
        while segment.warm_up.is_alive():  # the widget imports in the background on opening
            app.processEvents()
            time.sleep(0.001)
        warm = np.diff(np.asarray(ticks)) * 1000.0 - 20.0
        print(
            f"widget warm-up import: {time.perf_counter() - t0:.1f} s, "
            f"max lateness {warm.max() if len(warm) else 0.0:.1f} ms over {len(warm)} ticks"
        )
        ticks.clear()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.idle_s:  # baseline: the same timer with nothing running
            app.processEvents()
            time.sleep(0.001)
        idle = np.diff(np.asarray(ticks)) * 1000.0 - 20.0
        if len(idle):
            print(
                f"idle baseline ({args.idle_s:.0f} s, machine load shows here): lateness p95 "
                f"{np.percentile(idle, 95):.1f} ms, max {idle.max():.1f} ms"
            )
        ticks.clear()
        phases: list[tuple[float, str]] = []
        segment._signals.changed.connect(lambda f, msg: phases.append((time.perf_counter(), msg)))
        worker = segment.run()
        marks["start"] = time.perf_counter()
        worker.returned.connect(lambda _: marks.setdefault("returned", time.perf_counter()))
        while segment.worker is not None:
            app.processEvents()
            time.sleep(0.001)
        marks["shown"] = time.perf_counter()
        for _ in range(20):  # a few more ticks after the result is on screen
            app.processEvents()
            time.sleep(0.01)
        timer.stop()
        ticks_a = np.asarray(ticks)
        gaps = np.diff(ticks_a) * 1000.0
        ends = ticks_a[1:]
        during = gaps[(ends > marks["start"]) & (ends <= marks.get("returned", marks["shown"]))]
        showing = gaps[ends > marks.get("returned", marks["shown"])]
        late = np.maximum(during - 20.0, 0.0)
        sel = (ends > marks["start"]) & (ends <= marks.get("returned", marks["shown"]))
        worst = ends[sel][np.argmax(during)] if len(during) else marks["start"]
        phase = ([msg for t, msg in phases if t <= worst] or ["-"])[-1]
        print(f"worst tick while predicting at {worst - marks['start']:.2f} s, after: {phase}")
        print("phases (s):", [(round(t - marks["start"], 2), m) for t, m in phases[:3] + phases[-3:]])
        print(
            f"model: {kind}; CT {tuple(args.shape)} voxels; device {args.device}; "
            f"torch threads {args.threads}"
        )
        print(
            f"prediction in the worker: {marks.get('returned', marks['shown']) - marks['start']:.1f} s; "
            f"status: {segment.status.text()}"
        )
        print(
            f"while predicting: {len(during)} ticks, lateness p95 {np.percentile(late, 95):.1f} ms, "
            f"max {late.max():.1f} ms (target: answered within 100 ms)"
        )
        if len(showing):
            late_show = np.maximum(showing - 20.0, 0.0)
            print(
                f"showing the result (GUI thread): max lateness {late_show.max():.1f} ms "
                f"over {len(showing)} ticks"
            )
        viewer.close()


if __name__ == "__main__":
    main()
