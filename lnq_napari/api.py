"""One function per job. The CLI, the napari widgets and the notebooks all call these.

Heavy imports (torch, napari) happen inside the functions, so importing this module stays cheap.
Each function's owner edits only that function's body.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.layout import case_name
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import LabelStore, SavedLabels, Workspace

DEMO_SEED = 7

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


def make_phantom(out: str | Path, cases: int = 4, seed: int = 0, progress: Progress = None) -> list[Path]:
    """Write a synthetic LNQ-layout data set (ct, partial seg, full truth, nodes JSON) to ``out``."""
    from lnq_napari.phantom import write_dataset

    return write_dataset(out, cases, seed=seed, progress=progress)


def evaluate(pred: str | Path, gt: str | Path, json_path: str | Path | None = None) -> dict:
    """Challenge Dice/ASSD and node detection for files or folders paired by case id.

    Returns ``{"cases": [row per case], "summary": {...}}``. A folder is paired by case id (the file
    name without ``-ct/-seg/-full/-pred`` and extension); in a ground-truth folder ``*-full`` (complete
    truth) wins over ``*-seg``. The prediction must lie on the ground truth's grid, as in the challenge.
    Predictions the challenge would mis-score (labels other than 0/1, float maps) give a warning.
    """
    import json
    import math
    import warnings

    from lnq_napari import metrics
    from lnq_napari.io.atomic import atomic_write_text
    from lnq_napari.io.readers import read_labels, read_volume

    image_ext = (".seg.nrrd", ".nrrd", ".nhdr", ".nii.gz", ".nii", ".mha", ".mhd")
    preference = {"gt": ("-full", "-seg", "", "-pred"), "pred": ("-pred", "", "-seg")}

    def split(file: Path) -> tuple[str, str] | None:
        """(case id, role suffix such as '-full' or '') of an image file name, else None."""
        ext = next((e for e in image_ext if file.name.lower().endswith(e)), None)
        if ext is None or not file.is_file():
            return None
        case = case_name(file)
        return case, file.name[len(case): len(file.name) - len(ext)]

    def files_by_case(path: Path, role: str) -> dict[str, Path]:
        """Case id -> the preferred label file of that case in a folder (or the single file)."""
        if not path.exists():
            raise LNQError(f"--{role} {path} does not exist; give a label file or a folder of them")
        if path.is_file():
            return {case_name(path): path}
        ranked: dict[str, tuple[int, Path]] = {}
        for file in sorted(path.iterdir()):
            parts = split(file)
            if parts is None or parts[1] not in preference[role]:
                continue
            rank = preference[role].index(parts[1])
            if parts[0] not in ranked or rank < ranked[parts[0]][0]:
                ranked[parts[0]] = (rank, file)
        if not ranked:
            raise LNQError(f"--{role} folder {path} holds no label files (.nrrd, .nii.gz, .mha); "
                           "check the path")
        return {case: file for case, (_, file) in ranked.items()}

    pred, gt = Path(pred), Path(gt)
    preds, gts = files_by_case(pred, "pred"), files_by_case(gt, "gt")
    if pred.is_file() and gt.is_file():
        pairs = [(case_name(gt), pred, gt)]
    else:
        if pred.is_file() or gt.is_file():  # one file against a folder: only that case
            only = next(iter(preds if pred.is_file() else gts))
            preds = {k: v for k, v in preds.items() if k == only}
            gts = {k: v for k, v in gts.items() if k == only}
        unpaired = []
        for what, cases in (("ground truth", set(preds) - set(gts)), ("prediction", set(gts) - set(preds))):
            if cases:
                names = sorted(cases)
                unpaired.append(f"no {what} for {', '.join(names[:5])}" + (" ..." if len(names) > 5 else ""))
        if unpaired:
            raise LNQError(f"unpaired cases: {'; '.join(unpaired)}; name files <case>-pred.nrrd and "
                           "<case>-full.nrrd or <case>-seg.nrrd, or point at matching files")
        pairs = [(case, preds[case], gts[case]) for case in sorted(gts)]
    if json_path is not None and Path(json_path).is_dir():
        raise LNQError(f"--json {json_path} is a folder; give a file name such as scores.json")

    rows = []
    for case, pred_path, gt_path in pairs:
        truth = read_labels(gt_path)
        prediction = read_volume(pred_path)
        problem = metrics.prediction_problem(prediction)
        if problem:
            warnings.warn(f"{case}: the prediction {pred_path.name} {problem}", UserWarning, stacklevel=2)
        try:
            row = metrics.evaluate_case(prediction, truth)
        except LNQError as exc:
            raise LNQError(f"{case}: {exc}") from exc
        rows.append({"case": case, "pred": str(pred_path), "gt": str(gt_path), **row})
    result = {"cases": rows, "summary": metrics.summarize(rows)}
    if json_path is not None:
        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None  # JSON has no NaN
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        try:
            atomic_write_text(json_path, json.dumps(clean(result), indent=2) + "\n")
        except OSError as exc:
            raise LNQError(f"cannot write {json_path} ({exc.strerror or exc}); choose another path") from exc
    return result


def measure(seg: str | Path, ct: str | Path | None = None, csv_path: str | Path | None = None):
    """Node table of a label file. Returns ``(rows, summary)``.

    A 0/1 mask is split into 26-connected nodes; a label map with several ids (one per node, as a
    napari Labels layer saves it) keeps one node per id; a 3D Slicer ``.seg.nrrd`` gives its
    lymph-node segment(s). With ``ct`` the labels are put on the CT grid (nearest neighbour, with a
    warning when they differ) and each node gets its mean HU. ``csv_path`` gets the table atomically.
    """
    from lnq_napari.io import segfile
    from lnq_napari.io.geometry import align_to
    from lnq_napari.io.readers import read_labels, read_raw, read_volume
    from lnq_napari.quantify import measure_nodes, summarize_nodes, write_csv

    if csv_path is not None and Path(csv_path).is_dir():
        raise LNQError(f"--csv {csv_path} is a folder; give a file name such as nodes.csv")
    raw = read_raw(seg)
    if raw.layered or segfile.is_slicer_segmentation(raw.meta):
        labels = read_labels(seg)
    else:
        labels = raw.volume()
    volume = None
    if ct is not None:
        volume = read_volume(ct)
        labels = align_to(volume, labels)
    rows = measure_nodes(labels, volume)
    summary = summarize_nodes(rows)
    if csv_path is not None:
        try:
            write_csv(rows, csv_path)
        except OSError as exc:
            raise LNQError(f"cannot write {csv_path} ({exc.strerror or exc}); choose another path") from exc
    return rows, summary


def train(
    data: str | Path, out: str | Path, iterations: int = 2000, device: str = "auto", seed: int = 0,
    resume: bool = False, naive: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> Path:
    """Train a model on LNQ-layout data with partial labels; returns the model folder."""
    from lnq_napari.training.trainer import load_training_cases, train_model

    cases = load_training_cases(data, naive=naive)
    return train_model(cases, out, iterations, device=device, seed=seed, config={"naive": bool(naive)},
                       resume=resume, progress=progress, cancel=cancel, checkpoint_every=100)


def predict(
    inputs: str | Path, out: str | Path, model: str | Path | None = None, device: str = "auto",
    probabilities: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> list[Path]:
    """Predict node masks for a CT (file, DICOM folder or folder of CTs); returns written files.

    Per CT: ``<case>-seg.nrrd`` (uint8 {0,1} on the CT grid, Slicer keys, model version in the header)
    and, with ``probabilities``, ``<case>-prob.nrrd`` (float32).
    """
    from lnq_napari.inference import Predictor
    from lnq_napari.io.layout import ct_inputs
    from lnq_napari.io.readers import read_volume, write_volume
    from lnq_napari.io.segfile import write_seg_nrrd

    items = ct_inputs(inputs)
    predictor = Predictor(model, device=device)
    out = Path(out)
    written: list[Path] = []
    for k, (case_id, path) in enumerate(items):
        def step(fraction: float, message: str, k: int = k, case_id: str = case_id) -> None:
            if progress:
                progress((k + fraction) / len(items), f"{case_id}: {message}")

        ct = read_volume(path)
        result = predictor.predict(ct, progress=step, cancel=cancel)
        extra = {"lnq_model_version": result.model_version, "lnq_source": Path(path).name,
                 "lnq_created_by": "lnq-napari predict"}
        written.append(write_seg_nrrd(out / f"{case_id}-seg.nrrd", result.mask, extra=extra))
        if probabilities:
            written.append(write_volume(out / f"{case_id}-prob.nrrd", result.probabilities))
    return written


def view(ct=None, seg=None, model=None, workspace=None, block: bool = False):
    """Open a napari viewer with the lnq-napari widgets docked; returns the viewer.

    ``ct`` opens as a windowed CT layer, ``seg`` as the editable "nodes" layer (put on the CT grid),
    ``model`` pre-fills the Segment widget, ``workspace`` makes Save and autosave write there.
    With ``block`` the Qt event loop runs until the window closes.
    """
    import napari

    from lnq_napari.plugin._app import open_viewer

    viewer = open_viewer(ct=ct, seg=seg, model=model, workspace=workspace)
    if block:
        napari.run()
    return viewer


def demo(
    ct=None, out: str | Path = "lnq-demo", model=None, headless: bool = False, progress: Progress = None
) -> dict:
    """The main job: predict, measure, evaluate (phantom) and show or save pictures. Returns a report.

    With no ``ct`` a built-in phantom case is made and scored against its complete truth. Results go to
    ``out``: the CT (phantom only), ``<case>-seg.nrrd``, ``<case>-nodes.csv``, ``<case>-overlay.png`` and
    ``report.json``. With a display (and not ``headless``) napari then opens on the case.
    """
    import json
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
    step = progress or (lambda fraction, message="": None)
    truth = None
    if ct is None:
        from lnq_napari.phantom import make_case

        step(0.0, "making a phantom case")
        case = make_case(DEMO_SEED, case_id="lnq2023-demo-0001")
        volume, truth, name = case.ct, case.full, case.case_id
    else:
        volume, name = read_volume(ct), case_name(ct)
    predictor = Predictor(model, device="auto")
    out.mkdir(parents=True, exist_ok=True)
    if truth is None:
        ct_path = Path(ct)
    else:
        from lnq_napari.io.readers import write_volume

        ct_path = write_volume(out / f"{name}-ct.nrrd", volume)
        write_volume(out / f"{name}-full.nrrd", truth)

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
    if has_display() and not headless:
        view(ct_path, seg=seg_path, model=model, block=True)
    return report


def has_display() -> bool:
    """True when a window can open (an X or Wayland display, or macOS / Windows)."""
    import os
    import sys

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin", "win32")


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
    cases = None
    if strategy == "random":  # needs no scores: predict only the drawn cases
        corrected = set(ws.corrected_cases())
        pool = {c: active.CaseScore(c, 0.0) for c in ws.case_ids() if c not in corrected}
        cases = chosen.rank(pool, n)
    scores = active.score_workspace(ws, predictor, key, cases=cases, flips=flips, progress=progress)
    rows = active.ranked_rows(scores, chosen, n)
    ws.log("next", strategy=strategy, model_version=key, cases=[r["case"] for r in rows])
    return rows


def finetune(
    workspace: str | Path, iterations: int = 200, device: str = "auto", resume: bool = False,
    progress: Progress = None, cancel: Cancel = None,
) -> dict:
    """Fine-tune the active model on the workspace's corrections; returns what happened.

    See :func:`lnq_napari.training.finetune.finetune_workspace`: the new version is registered with the
    active model as parent and activated only if its validation Dice is not worse. Keys: new_version,
    activated, reason, metrics_before, metrics_after, train_cases, val_cases, replay_cases, seconds.
    """
    from lnq_napari.training.finetune import finetune_workspace

    return finetune_workspace(workspace, iterations=iterations, device=device, resume=resume,
                              progress=progress, cancel=cancel)


def save_labels(
    labels: Volume, case: str, *, workspace: str | Path | None = None, folder: str | Path | None = None,
    source: str = "correction", model_version: str | None = None, edits: int = 0, **provenance,
) -> SavedLabels:
    """Store ``labels`` as a new version of ``case``; never overwrites anything.

    With ``workspace`` the version goes into it (with a journal line) and ``folder`` is not used;
    without, into the label store ``<folder>/<case>/`` (the same ``vNNN.seg.nrrd`` + ``vNNN.json``
    layout). Extra keyword fields are kept in the provenance.
    """
    if workspace is not None:
        ws = Workspace.open(workspace)
        version = ws.add_label_version(case, labels, source, model_version=model_version, edits=edits,
                                       **provenance)
        return SavedLabels(case, version, ws.label_path(case, version))
    if folder is None:
        raise LNQError(f"nowhere to save the labels of {case}; pass a workspace or a folder")
    return LabelStore(folder, case).add(labels, source, model_version=model_version, edits=edits,
                                        **provenance)
