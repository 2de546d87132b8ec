"""One function per job. The CLI, the napari widgets and the notebooks all call these.

Heavy imports (torch, napari) happen inside the functions, so importing this module stays cheap.
Each function's owner edits only that function's body.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lnq_napari.errors import LNQError

DEMO_SEED = 7

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


def make_phantom(out: str | Path, cases: int = 4, seed: int = 0, progress: Progress = None) -> list[Path]:
    """Write a synthetic LNQ-layout data set (ct, partial seg, full truth, nodes JSON) to ``out``."""
    from lnq_napari.phantom import write_dataset

    return write_dataset(out, cases, seed=seed, progress=progress)


def evaluate(pred: str | Path, gt: str | Path, json_path: str | Path | None = None) -> dict:
    """Challenge Dice/ASSD and node detection for files or folders paired by case id.

    Returns ``{"cases": [row per case], "summary": {...}}``.
    """
    raise NotImplementedError


def measure(seg: str | Path, ct: str | Path | None = None, csv_path: str | Path | None = None):
    """Node table of a label file. Returns ``(rows, summary)``."""
    raise NotImplementedError


def train(
    data: str | Path, out: str | Path, iterations: int = 2000, device: str = "auto", seed: int = 0,
    resume: bool = False, naive: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> Path:
    """Train a model on LNQ-layout data with partial labels; returns the model folder."""
    raise NotImplementedError


def predict(
    inputs: str | Path, out: str | Path, model: str | Path | None = None, device: str = "auto",
    probabilities: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> list[Path]:
    """Predict node masks for a CT (file, DICOM folder or folder of CTs); returns written files."""
    raise NotImplementedError


def view(ct=None, seg=None, model=None, workspace=None, block: bool = False):
    """Open a napari viewer with the lnq-napari widgets docked; returns the viewer."""
    raise NotImplementedError


def demo(
    ct=None, out: str | Path = "lnq-demo", model=None, headless: bool = False, progress: Progress = None
) -> dict:
    """The main job: predict, measure, evaluate (phantom) and show or save pictures. Returns a report.

    With no ``ct`` a built-in phantom case is made and scored against its complete truth. Results go to
    ``out``: the CT (phantom only), ``<case>-seg.nrrd``, ``<case>-nodes.csv``, ``<case>-overlay.png`` and
    ``report.json``. With a display (and not ``headless``) napari then opens on the case.
    """
    import json
    import os
    import sys
    import time

    from lnq_napari.figures import overlay_figure
    from lnq_napari.inference import Predictor
    from lnq_napari.io.atomic import atomic_write_text
    from lnq_napari.io.readers import read_volume
    from lnq_napari.io.segfile import write_seg_nrrd
    from lnq_napari.quantify import measure_nodes, summarize_nodes, write_csv

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LNQError(f"--out {out} is a file; give a folder for the results")
    out.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda fraction, message="": None)
    truth = None
    if ct is None:
        from lnq_napari.io.readers import write_volume
        from lnq_napari.phantom import make_case

        step(0.0, "making a phantom case")
        case = make_case(DEMO_SEED, case_id="lnq2023-demo-0001")
        volume, truth, name = case.ct, case.full, case.case_id
        ct_path = write_volume(out / f"{name}-ct.nrrd", volume)
        write_volume(out / f"{name}-full.nrrd", truth)
    else:
        ct_path = Path(ct)
        volume, name = read_volume(ct_path), case_name(ct_path)

    step(0.1, "loading the model")
    predictor = Predictor(model, device="auto")
    started = time.perf_counter()
    prediction = predictor.predict(volume, progress=lambda f, m="": step(0.1 + 0.8 * f, m))
    seconds = time.perf_counter() - started
    seg_path = write_seg_nrrd(
        out / f"{name}-seg.nrrd", prediction.mask, extra={"lnq_source": "prediction",
                                                          "lnq_model_version": prediction.model_version},
    )
    rows = measure_nodes(prediction.mask, volume)
    write_csv(rows, out / f"{name}-nodes.csv")
    summary = summarize_nodes(rows)
    report = {
        "case": name, "ct": str(ct_path), "segmentation": str(seg_path), "model": prediction.model_version,
        "predict_seconds": round(seconds, 2), "nodes": summary["n_nodes"],
        "nodes_ge_10mm": summary["n_ge_10mm"],
        "total_volume_cm3": round(summary["total_volume_cm3"], 3),
    }
    if truth is not None:
        from lnq_napari.metrics import evaluate_case

        scores = evaluate_case(prediction.mask, truth)
        report.update({f"truth_{k}": v for k, v in scores.items()})
    figure = overlay_figure(volume, prediction.mask, out / f"{name}-overlay.png", truth=truth,
                            title=f"{name}: {summary['n_nodes']} nodes predicted")
    report["picture"] = str(figure)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float))
    step(1.0, "done")
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin", "win32")
    if has_display and not headless:
        view(ct_path, seg=seg_path, model=model, block=True)
    return report


def init_workspace(path: str | Path, data: str | Path):
    """Create a review workspace over a data folder; returns the :class:`~lnq_napari.workspace.Workspace`."""
    from lnq_napari.workspace import Workspace

    return Workspace.init(path, data)


def next_cases(workspace: str | Path, n: int = 5, strategy: str = "uncertainty", progress: Progress = None):
    """The ``n`` cases most worth reviewing next, ranked.

    Rows ``{rank, case, score, uncertain_nodes, ...}``. Uses the workspace's active model (the bundled
    one when none is registered); per-case scores are cached in the workspace by model version, and
    each case's predicted mask is stored as a ``prediction`` label version. Corrected cases are skipped.
    """
    from lnq_napari import active
    from lnq_napari.inference import Predictor
    from lnq_napari.workspace import Workspace

    ws = Workspace.open(workspace)
    chosen = active.get_strategy(strategy)
    model_path, key = ws.prediction_model()
    flips = [(2,)] if chosen.needs_flips else []
    predictor = active.LazyPredictor(lambda: Predictor(model_path))
    scores = active.score_workspace(ws, predictor, key, flips=flips, progress=progress)
    rows = active.ranked_rows(scores, chosen, n)
    ws.log("next", strategy=strategy, model_version=key, cases=[r["case"] for r in rows])
    return rows


def finetune(
    workspace: str | Path, iterations: int = 200, device: str = "auto", resume: bool = False,
    progress: Progress = None, cancel: Cancel = None,
) -> dict:
    """Fine-tune the active model on the workspace's corrections; returns what happened."""
    raise NotImplementedError


def case_name(path: str | Path) -> str:
    """A case id from a file name: ``lnq2023-train-0001-ct.nrrd`` -> ``lnq2023-train-0001``."""
    name = Path(path).name
    for ext in (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    for suffix in ("-ct", "-seg", "-full", "-pred", "-prob"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
