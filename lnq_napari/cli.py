"""The ``lnq-napari`` command line: a thin argparse front end over :mod:`lnq_napari.api`."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.finetuning.validation import key_figures
from lnq_napari.heard import show_one_line
from lnq_napari.io.atomic import CANNOT_WRITE, atomic_write_text, cannot_write_line
from lnq_napari.io.json_text import strict_json
from lnq_napari.io.outputs import check_table_path
from lnq_napari.metrics import figure
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.phantom.sites import SITES
from lnq_napari.quantify import marked_cells, short_axis_text
from lnq_napari.signals import ignore_interrupts, stopped_how, terminate_as_interrupt, terminate_by_default
from lnq_napari.training.trainer import STATE_DIR
from lnq_napari.wording import count as _count

#: How ``finetune --json`` begins: a file that does not is not written over (a file of the user's).
FINETUNE_JSON_STARTS = '{\n  "new_version": '

# A percentage bar with elapsed and remaining time and the core's message: the core reports fractions of
# one job, so a rate ("it/s") would mean nothing.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


@contextmanager
def _progress_bar(desc: str) -> Iterator[Callable[[float, str], None]]:
    """A tqdm bar driven by the core's ``progress(fraction, message)`` callback.

    The bar appears at the first update, so input errors found before any work print only their line.
    """
    bars: list[tqdm] = []

    def update(fraction: float, message: str = "") -> None:
        if not bars:
            bars.append(
                tqdm(total=100, desc=desc, bar_format=BAR_FORMAT, file=sys.stderr, dynamic_ncols=True)
            )
        bar = bars[0]
        bar.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


DATA_HELP = ("folder of cases: <case>-ct.nrrd with <case>-seg.nrrd (LNQ layout; .nii.gz, .mha too), plainly "
             "named CTs with <case>-seg files, or DICOM CT series with the SEGs that reference them (or with "
             "<series folder>-seg.nrrd files beside them)")


def _fmt(value) -> str:
    """A table cell: a float as :func:`~lnq_napari.metrics.figure` shows it, anything else as text."""
    return figure(value) if isinstance(value, float) else str(value)


def _pct(value: float | None) -> str:
    """A change in percent with its sign, "n/a" when undefined (no "-0.0 %" for a change that rounds to 0)."""
    return "n/a" if value is None else f"{round(value, 1) + 0.0:+.1f} %"


def _print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


# ---------------------------------------------------------------- handlers
def _cmd_phantom(args: argparse.Namespace) -> None:
    with _progress_bar("phantom") as progress:
        paths = api.make_phantom(
            args.out, cases=args.cases, seed=args.seed, site=args.site, progress=progress,
            shape=args.shape, spacing=args.spacing,
        )
    print(f"wrote {_count(len(paths), args.site + ' case')} to {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    result = api.evaluate(args.pred, args.gt, json_path=args.json)
    _print_table([row.to_dict() for row in result.cases],
                 ["case", "dice", "assd_mm", "nodes_gt", "nodes_hit", "recall", "fp_nodes"])
    print(result.summary.text())


def _cmd_measure(args: argparse.Namespace) -> None:
    rows, summary = api.measure(args.seg, ct=args.ct, csv_path=args.csv)
    columns = ["id", "voxels", "volume_cm3", "long_axis_mm", "short_axis_mm", "ge_10mm"]
    if args.ct:
        columns.append("mean_hu")
    if any(r.cut_by_edge for r in rows):
        columns.append("cut_by_edge")
    # the short axis as the node table shows it: "10.0" only beside ge_10mm True (the CSV: full precision);
    # "+" after a figure of a node cut by the image edge (a lower bound)
    table = [marked_cells(r, {**{k: _fmt(v) for k, v in r.to_dict().items()},
                              "short_axis_mm": short_axis_text(r.short_axis_mm)}) for r in rows]
    _print_table(table, columns)
    print(summary.text())


def _scan(values: list[str], flag: str) -> tuple[str, str | None]:
    if len(values) > 2:
        raise LNQError(f"{flag} takes a CT and at most one SEG, got {len(values)} files")
    return values[0], (values[1] if len(values) == 2 else None)


def _cmd_compare(args: argparse.Namespace) -> None:
    from lnq_napari.followup.report import CUT_CELLS

    by_scans, by_patient = bool(args.baseline or args.followup), bool(args.workspace or args.patient)
    if by_scans == by_patient or (by_scans and not (args.baseline and args.followup)) or \
            (by_patient and not (args.workspace and args.patient)):
        raise LNQError("compare needs --baseline CT [SEG] and --followup CT [SEG], or --workspace W and "
                       "--patient P (a patient grouped with `lnq-napari workspace group`)")
    with _progress_bar("compare") as progress:
        if by_patient:
            result = api.compare_time_points(args.workspace, args.patient, csv_path=args.csv,
                                             model=args.model, device=args.device, progress=progress)
        else:
            (ct0, seg0), (ct1, seg1) = _scan(args.baseline, "--baseline"), _scan(args.followup, "--followup")
            result = api.compare(ct0, ct1, seg0, seg1, csv_path=args.csv, model=args.model,
                                 device=args.device, progress=progress)
    if by_patient:  # which scans, before their table
        first, last = api.first_and_last_scans(args.workspace, args.patient)
        print(f"patient {args.patient}: baseline {first.case} ({first.timepoint}), follow-up {last.case} "
              f"({last.timepoint})")
    columns = ["baseline_id", "followup_id", "status", "volume_baseline_cm3", "volume_followup_cm3",
               "volume_change_pct", "short_axis_baseline_mm", "short_axis_followup_mm",
               "short_axis_change_mm", "long_axis_change_mm", "recist", "relation",
               "recist_followup_short_axis_mm"]
    if any(r.cut_by_edge_baseline or r.cut_by_edge_followup for r in result.rows):
        columns += ["cut_by_edge_baseline", "cut_by_edge_followup"]
    table = [marked_cells(r, {k: ("" if v is None else _fmt(v)) for k, v in r.to_dict().items()}, CUT_CELLS)
             for r in result.rows]  # "+" after a figure of a node cut by the image edge
    _print_table(table, columns)
    r, v, q = result.recist, result.volume, result.quality
    change = _pct(r.sum_change_pct)
    print(f"RECIST 1.1: {_count(len(r.targets), 'target node')}, sum of short axes "
          f"{r.baseline_sum_mm:.1f} -> {r.followup_sum_mm:.1f} mm ({change}){r.nadir_note()}; targets "
          f"{r.target_response}, non-targets {r.non_target_response}, new lesions {len(r.new_lesions)}"
          + (f" ({len(r.equivocal_new)} equivocal: confirm at the next scan)" if r.equivocal_new else "")
          + f"; overall {r.overall}")
    # a response resting on cut nodes: said once, by compare's warning (printed as one line)
    total = _pct(v.change_pct)
    print(f"volume: all nodes {v.baseline_total_cm3:.2f} -> {v.followup_total_cm3:.2f} cm3 ({total}); "
          f"{v.n_matched} matched ({v.n_grown} grew, {v.n_shrunk} shrank by >= 20 %), {v.n_new} new, "
          f"{v.n_vanished} vanished{v.pieces()}; by volume {r.volume_response} (targets; any new node PD)")
    print(f"nodes: baseline {result.sources[0]}; follow-up {result.sources[1]}")
    mean = "n/a" if q.mean_distance_mm is None else f"{q.mean_distance_mm:.1f} mm"
    lungs = "no lungs in view" if math.isnan(q.lung_dice) else f"lungs overlap {q.lung_dice:.0%}"
    print(f"registration: {q.stage}, {q.seconds:.1f} s, {lungs}, matched nodes {mean} apart")
    if args.csv:
        print(f"table written to {args.csv}")


def _cmd_train(args: argparse.Namespace) -> None:
    with _progress_bar("train") as progress:
        path = api.train(
            args.data, args.out, iterations=args.iterations, device=args.device, seed=args.seed,
            resume=args.resume, naive=args.naive, progress=progress,
        )
    print(f"model written to {path}")


def _cmd_predict(args: argparse.Namespace) -> None:
    with _progress_bar("predict") as progress:
        paths = api.predict(
            args.input, args.output, model=args.model, device=args.device,
            probabilities=args.probabilities, progress=progress, format=args.format,
        )
    for p in paths:
        print(p)


def _cmd_view(args: argparse.Namespace) -> None:
    api.require_display()  # Qt would abort the process with its own lines
    if args.model:
        api.check_model(args.model)  # before a window opens that would not say why nothing is found
    from lnq_napari.plugin.app import view  # napari and Qt: only when a window is asked for

    with terminate_by_default():  # SIGTERM ends the window at once (its edits are autosaved), not napari
        view(args.ct, seg=args.seg, model=args.model, workspace=args.workspace, block=True)


def _cmd_demo(args: argparse.Namespace) -> None:
    with _progress_bar("demo") as progress:
        report = api.demo(args.ct, out=args.out, model=args.model, progress=progress)
    for key, value in report.items():
        print(f"{key}: {_fmt(value)}")
    if api.has_display() and not args.headless:
        from lnq_napari.plugin.app import view  # napari and Qt: only when a window opens

        print("opening napari on the case, finding its nodes and suggestions there (close the window to "
              "finish)")
        with terminate_by_default():  # as in `view`: at once, not through napari's exit
            view(report["ct"], model=args.model, block=True, find_nodes=True)


def _cmd_workspace(args: argparse.Namespace) -> None:
    ws = api.init_workspace(args.path, data=args.data, model=args.model)
    active = ws.active_model()
    print(f"workspace {args.path}: {_count(len(ws.case_ids()), 'case')}; model "
          f"{active['id'] + ' (from ' + args.model + ')' if active else 'bundled'}")


def _cmd_group(args: argparse.Namespace) -> None:
    points = api.group_cases(args.path, args.csv)
    print(f"workspace {args.path}: {_count(len(points), 'case')} grouped, "
          f"{_count(len({p.patient for p in points}), 'patient')}")
    _print_table([vars(p) for p in sorted(points, key=lambda t: (t.patient, t.timepoint, t.case))],
                 ["patient", "timepoint", "case"])


def _signed(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:+.{digits}f}"


def _model_row(m) -> dict:
    """One row of ``workspace models``: figures vs the parent as differences, when the version has them
    (the surface Dice also as the rule judged it on thin evidence, with its prior's cases of no change);
    an nnU-Net version's options."""
    judged = m.figures.get("surface_dice_vs_parent_judged")
    return {
        "version": m.version, "parent": m.parent or "", "active": "*" if m.active else "",
        "created": m.created[:16].replace("T", " "),
        "corrected cases": "" if m.version == "bundled" else m.corrected_cases,
        "Dice vs parent": _signed(m.vs_parent("dice"), 3),
        "surface Dice vs parent": _signed(m.vs_parent("surface_dice"), 3),
        "judged": _signed(judged, 3),
        "recall vs parent": _signed(m.vs_parent("recall"), 2),
        "false nodes vs parent": _signed(m.vs_parent("false_nodes"), 2), "verdict": m.verdict,
        "options": m.options,
    }


def _cmd_models(args: argparse.Namespace) -> None:
    models = api.list_models(args.path)
    rows = [_model_row(m) for m in models]
    sometimes = ("options", "judged")  # columns only where some version has them
    _print_table(rows, [c for c in rows[0] if c not in sometimes or any(r[c] for r in rows)])
    for m in models[1:]:
        if m.missing():
            print(m.missing())
    for m in models[1:]:
        if m.reason:
            print(f"{m.version}: {m.reason}")
    if (interrupted := api.interrupted_finetune(args.path)) is not None:
        print(interrupted.note())


def _cmd_activate(args: argparse.Namespace) -> None:
    print(api.activate_model(args.path, args.version, decided_by="user", reason=args.reason).activation())


def _cmd_repair(args: argparse.Namespace) -> int:
    done = api.repair_workspace(args.path, case=args.case, dry_run=args.dry_run)
    for repair in done:
        print(repair.line())
    if not done:
        of = f"case {args.case} of {args.path}" if args.case else args.path
        print(f"nothing to repair: every label file of {of} has its provenance")
    return 1 if any(not r.repaired for r in done) else 0  # 1: files left alone, they need the user


def _cmd_export(args: argparse.Namespace) -> None:
    path = api.export_dicom_seg(args.output, workspace=args.path, case=args.case, version=args.version,
                                ct=args.ct)
    print(path)


def _cmd_next(args: argparse.Namespace) -> None:
    with _progress_bar("rank") as progress:
        ranked = api.next_cases(args.workspace, n=args.n, strategy=args.strategy, progress=progress)
    if not ranked:
        print("nothing left to review: every case of the workspace has a correction")
    else:
        _print_table([r.to_dict() for r in ranked],
                     ["rank", "case", "score", "uncertain_nodes", "incomplete_nodes"])
    if (interrupted := api.interrupted_finetune(args.workspace)) is not None:
        print(interrupted.note())


def _cmd_finetune(args: argparse.Namespace) -> None:
    config = FinetuneConfig().with_settings(args.set) if args.set else None  # none given: the defaults
    json_path = check_table_path(args.json, "--json", "finetune.json", starts=FINETUNE_JSON_STARTS)
    with _progress_bar("finetune") as progress:
        result = api.finetune(
            args.workspace, config=config, iterations=args.iterations, device=args.device,
            resume=args.resume, progress=progress,
        )
    print(key_figures(result.metrics_after, result.metrics_before, result.validated_on_training))
    state = "activated" if result.activated else "registered, not activated"  # said whatever follows
    print(f"{result.new_version} {state}: {result.reason}")
    if json_path is not None:  # every figure, for programs (standard JSON: an undefined figure is null)
        _write_json_after(json_path, strict_json(result.to_dict()) + "\n", result.new_version)


def _write_json_after(path: Path, text: str, version: str) -> None:
    """Write the ``--json`` file of a finished run: a failed write (the folder gone or full meanwhile) is
    one warning line, the run's outcome already printed and kept (the journal has every figure)."""
    try:
        atomic_write_text(path, text)
    except (OSError, LNQError) as exc:
        why = exc.strerror or exc if isinstance(exc, OSError) else exc
        warnings.warn(f"{version} is kept, but --json {path} could not be written ({why}); the workspace "
                      "journal's finetune line keeps its figures and settings", UserWarning, stacklevel=2)
    else:
        print(f"all figures written to {path}")


def _cmd_export_nnunet(args: argparse.Namespace) -> None:
    with _progress_bar("export") as progress:
        result = api.export_nnunet(args.out, args.dataset_id, data=args.data, workspace=args.workspace,
                                   name=args.name, workers=args.workers, progress=progress)
    counts = result.counts
    total = max(sum(counts), 1)
    corrected = sum(c.kind == "correction" for c in result.cases)
    resampled = sum(c.resampled for c in result.cases)
    notes = ([f"{corrected} corrected"] if args.workspace else []) + \
        ([f"{_count(resampled, 'seg')} resampled onto their CT grid"] if resampled else [])
    said = f" ({', '.join(notes)})" if notes else ""
    print(f"{result.folder}: {_count(len(result.cases), 'case')}{said}; voxels: "
          f"lymph node {counts[1] / total:.3%}, background "
          f"{counts[0] / total:.1%}, ignore {counts[2] / total:.1%}")
    if result.skipped:
        print(f"left out (no labels, or labels without their CT): {', '.join(result.skipped)}")
    print(f"next: nnUNet_raw={result.folder.parent} nnUNetv2_plan_and_preprocess -d {args.dataset_id} "
          "--verify_dataset_integrity (README: Train on LNQ2023 with nnU-Net)")


def _cmd_finetune_nnunet(args: argparse.Namespace) -> None:
    with _progress_bar("finetune") as progress:
        done = api.finetune_nnunet(args.workspace, args.model, args.work, args.dataset_id,
                                   iterations=args.iterations, epochs=args.epochs, device=args.device,
                                   progress=progress)
    print(f"nnU-Net model {done.version} (parent {done.parent_version}), trained on "
          f"{_count(len(done.train_cases), 'corrected case')}: use it with --model "
          f"{shlex.quote(done.model_string)}")
    state = "activated" if done.activated else "registered, not activated"
    print(f"{done.new_version} (parent {done.parent}) {state}: {done.reason}")


# ---------------------------------------------------------------- parser
# What the `gui` extra brings: missing in a core-only install, where `view` says how to add them.
GUI_PACKAGES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt"}
MODEL_HELP = ("model folder (default: the bundled model), a review workspace (its active model), or "
              "nnunet:<nnU-Net trained model folder>[?folds=0,1&tile_step=0.5&mirroring=off]")
DEVICE_HELP = "where to compute: auto (a GPU if there is one, else the CPU), cpu or cuda (default auto)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnq-napari", description="Find, measure and correct mediastinal lymph nodes in chest CT."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job: predict, measure, show nodes (phantom if no CT)")
    p.add_argument("ct", nargs="?", help="CT file or DICOM folder (default: a built-in phantom case)")
    p.add_argument("--out", default="lnq-demo", help="folder for results and pictures (default: lnq-demo)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--headless", action="store_true", help="never open napari, even with a display")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("phantom", help="write a synthetic LNQ-style data set with complete truth")
    p.add_argument("out", help="output folder")
    p.add_argument("--cases", type=int, default=4, help="number of cases (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--site",
        default="default",
        metavar="NAME",
        help=f"CT source to imitate, one of: {', '.join(SITES)} (default: default, the training phantom)",
    )
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxels per case, e.g. 40 160 160 for small quick cases (default: LNQ-like, "
                        "512 x 512 in-plane); at least 250 mm across and 100 mm along z with the spacing")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="voxel size in mm, e.g. 2 2 5: pixels 0.3-5, slices 0.5-10 (default: LNQ-like, drawn "
                        "per case; with --shape alone, the spacing of an LNQ-like field of view: 307-778 mm "
                        "across the smaller in-plane size, 250-330 mm over the slices)")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("evaluate", help="challenge Dice and ASSD plus per-node detection")
    p.add_argument("--pred", required=True, help="prediction file or folder")
    p.add_argument("--gt", required=True, help="ground-truth file or folder (paired by case id)")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("measure", help="table of node measurements from a label file")
    p.add_argument("seg", help="label file (.seg.nrrd, .nrrd, .nii.gz, .mha)")
    p.add_argument("--ct", help="CT file, for mean HU per node; nodes cut by its edge are flagged "
                   "(cut_by_edge, '+' after their figures: lower bounds)")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("compare", help="which nodes grew, shrank, appeared or vanished between two scans")
    p.add_argument("--baseline", nargs="+", metavar=("CT", "SEG"),
                   help="baseline CT, then optionally its SEG (nodes are predicted when no SEG is given)")
    p.add_argument("--followup", nargs="+", metavar=("CT", "SEG"),
                   help="follow-up CT, then optionally its SEG")
    p.add_argument("--workspace", help="instead of the scans: a workspace whose cases are grouped by patient")
    p.add_argument("--patient", help="with --workspace: compare this patient's first and last time points")
    p.add_argument("--csv", help="also write the change table as CSV here")
    p.add_argument("--model", help="model folder for predicted nodes (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("train", help="train a model on LNQ-layout data with partial labels")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--iterations", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0, help="random seed: initial weights, patches (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--naive", action="store_true", help="baseline: treat unlabelled voxels as background")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export-nnunet", help="write an nnU-Net v2 raw dataset (unknown voxels as its ignore "
                       "label) to train nnU-Net on")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help=DATA_HELP)
    source.add_argument("--workspace", help="workspace folder: corrected cases by the correction rules, the "
                        "others by their original labels")
    p.add_argument("--out", required=True,
                   help="nnU-Net's raw folder (nnUNet_raw); DatasetNNN_NAME goes there")
    p.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1 to 999 (e.g. 501)")
    p.add_argument("--name", default="LNQ", help="dataset name after the id (default LNQ)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: up to 4, one per CPU)")
    p.set_defaults(func=_cmd_export_nnunet)

    p = sub.add_parser("finetune-nnunet", help="fine-tune an nnU-Net model on a workspace's corrections "
                       "(nnU-Net's own trainer, from its weights)")
    p.add_argument("--workspace", required=True, help="workspace folder with corrected cases")
    p.add_argument("--model", help="the parent: nnunet:<nnU-Net trained model folder> (default: the "
                   "workspace's active model, an nnU-Net version)")
    p.add_argument("--work", help="folder for nnU-Net's raw, preprocessed and results folders "
                   "(default: W/nnunet)")
    p.add_argument("--dataset-id", type=int, help="nnU-Net dataset id of the export, 1-999 (default: the "
                   "lowest free one)")
    p.add_argument("--iterations", type=int, default=250, help="iterations per epoch (default 250)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.set_defaults(func=_cmd_finetune_nnunet)

    p = sub.add_parser("predict", help="predict node masks for a CT file or a folder of CTs")
    p.add_argument("input", help="CT file, DICOM folder, folder of *-ct.nrrd files (else of CT images "
                   "named without a role: patient1.nii.gz), or a folder of DICOM series folders (a TCIA "
                   "download: every CT series below it)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.add_argument("--probabilities", action="store_true", help="also write the probability map")
    p.add_argument("--format", default="nrrd", choices=["nrrd", "dicom-seg"],
                   help="nrrd: <case>-seg.nrrd (3D Slicer segmentation); dicom-seg: <case>-seg.dcm, a DICOM "
                   "SEG referencing the CT series, for DICOM CTs (default nrrd)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("view", help="open napari with the lnq-napari widgets")
    p.add_argument("ct", nargs="?", help="CT file or DICOM folder")
    p.add_argument("--seg", help="label file to open over the CT")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--workspace", help="workspace folder: Save and autosave write there")
    p.set_defaults(func=_cmd_view)

    ws = sub.add_parser("workspace", help="manage a review workspace")
    ws_sub = ws.add_subparsers(dest="ws_command", required=True, metavar="ACTION")
    p = ws_sub.add_parser("init", help="create a workspace from a data folder")
    p.add_argument("path", help="workspace folder to create")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--model", help="start from this model folder instead of the bundled model (one you "
                                   "trained: lnq-napari train, or nnunet:<nnU-Net trained model "
                                   "folder>[?options], kept and predicted with)")
    p.set_defaults(func=_cmd_workspace)
    p = ws_sub.add_parser("group", help="record each case's patient and time point (for compare --patient)")
    p.add_argument("path", help="workspace folder")
    p.add_argument("csv", nargs="?", help="CSV with the columns case,patient,timepoint (ISO date or t0, "
                                          "t1, ...); without it: the CT headers' DICOM PatientID, StudyDate")
    p.set_defaults(func=_cmd_group)
    p = ws_sub.add_parser("models", help="list the model versions: parent, active, figures, verdict")
    p.add_argument("path", help="workspace folder")
    p.set_defaults(func=_cmd_models)
    p = ws_sub.add_parser("export", help="write a case's label version as a DICOM SEG of its DICOM CT series")
    p.add_argument("path", help="workspace folder")
    p.add_argument("case", help="case id")
    p.add_argument("-o", "--output", required=True, help="DICOM SEG file to write (e.g. case-seg.dcm)")
    p.add_argument("--version", help="label version (default: the newest)")
    p.add_argument("--ct", help="the DICOM CT series folder the case's CT was converted from "
                   "(default: the case's CT, which must then be DICOM)")
    p.set_defaults(func=_cmd_export)
    p = ws_sub.add_parser("activate", help="make a model version the active one (also to roll back)")
    p.add_argument("path", help="workspace folder")
    p.add_argument("version", help="model version (e.g. m002), bundled to go back to the bundled model, or a "
                                   "model folder you trained elsewhere, nnunet:<folder>[?options] too "
                                   "(registered, then activated)")
    p.add_argument("--reason", default="", help="why, for the journal (default: none)")
    p.set_defaults(func=_cmd_activate)
    p = ws_sub.add_parser("repair", help="rebuild a label version's missing or damaged provenance "
                                         "(vNNN.json) from its label file's header",
                          description="Rebuild the provenance (vNNN.json) of each label file whose own is "
                                      "missing or damaged from the file's header; one line per file. Exit "
                                      "status: 0 when every such file was repaired (or there was none), 1 "
                                      "when some were left alone (each line says why and what to do), 2 on "
                                      "an error.")
    p.add_argument("path", help="workspace folder")
    p.add_argument("case", nargs="?", help="repair only this case (default: every case)")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be repaired or left alone, write nothing (also on a read-only "
                        "workspace)")
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser("next", help="rank the cases worth reviewing next")
    p.add_argument("--workspace", required=True, help="workspace folder (made by `workspace init`)")
    p.add_argument("-n", type=int, default=5, help="how many cases (default 5)")
    p.add_argument("--strategy", default="uncertainty", help="uncertainty | random | disagreement | nodes")
    p.set_defaults(func=_cmd_next)

    p = sub.add_parser("finetune", help="fine-tune the active model on the workspace's corrections")
    p.add_argument("--workspace", required=True, help="workspace folder (made by `workspace init`)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"fine-tuning steps (default {FinetuneConfig().iterations})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=DEVICE_HELP)
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune")
    p.add_argument("--json", help="also write every figure of the result as JSON here")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a fine-tune setting, repeatable; KEY one of "
                   + ", ".join(FinetuneConfig.setting_names()))
    p.set_defaults(func=_cmd_finetune)
    return parser


def _after_interrupt(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves for the command to continue from, as the end of its one line."""
    if args.func is _cmd_finetune and api.pending_finetune(args.workspace):
        return "; run it again with --resume to continue where it stopped"
    if args.func is _cmd_finetune:  # before its plan was written (or a --resume that had nothing to do)
        return "; it stopped before training began: nothing to resume, run it again"
    every = f"one every {api.TRAIN_CHECKPOINT_EVERY} iterations"
    if args.func is _cmd_train and (Path(args.out) / STATE_DIR / "state.pt").is_file():
        return f"; run it again with --resume to continue from its last checkpoint in {args.out} ({every})"
    if args.func is _cmd_train:
        return f"; it stopped before its first checkpoint ({every}): nothing to resume, run it again"
    if args.func is _cmd_predict:
        return (f"; the cases written to {args.output} before it are whole, the others missing: run it "
                "again to predict every case")
    return ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lnq-napari``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(), terminate_as_interrupt():  # both restored after the command
            warnings.showwarning = show_one_line
            status = args.func(args)
    except LNQError as exc:
        print(f"lnq-napari: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in GUI_PACKAGES:
            raise
        print(f"lnq-napari: error: the viewer needs napari and a Qt binding ({exc.name} is not installed); "
              'pip install "lnq-napari[all]", or "lnq-napari[gui]" next to your own Qt binding',
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): every write is whole or not there
        how, status = stopped_how(exc)
        print(f"lnq-napari: {how}{_after_interrupt(args)}", file=sys.stderr)
        return status
    except BrokenPipeError:  # the reader of our output stopped early (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except OSError as exc:
        if exc.errno not in CANNOT_WRITE:
            raise
        print(f"lnq-napari: error: {cannot_write_line(exc)}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0  # a command's own status (repair: 1, files left alone)


if __name__ == "__main__":
    _status = main()  # as launch.main does (cli may not import launch); for `torchrun ... -m lnq_napari.cli`
    ignore_interrupts()  # the command is over: a late Ctrl-C must not abort the interpreter's shutdown
    sys.exit(_status)
