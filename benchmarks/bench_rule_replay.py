"""Would the activation rule as it is now have judged the kept loop rounds right more often?

For every fine-tuned round of the loop runs ``bench_adaptation.py`` kept under ``--out``, the version,
its parent and the lineage's original model are scored again on the version's held-out corrected cases
with today's validation (:func:`lnq_napari.finetuning.validation.version_figures`) and judged by today's
rule (:func:`lnq_napari.activation.decide_activation`); each verdict is checked against the issue's bar
on the test set (:func:`_adapt_targets.judge_rounds`). Only the round's own verdict is replayed: had a
verdict changed, later rounds would have had another parent. (At commit b927cc1 the rule judged
outlines by the known-voxel Dice, at 8303422 by the symmetric surface Dice with the worst case deciding
below five cases; this benchmark there replayed those readings: ``docs/adaptation_history.md``, sessions
12 and 15.)

With ``--marks`` each held-out correction made without "node here, outline unknown" marks gets those
today's simulated reviewer (:func:`lnq_napari.simulate.simulate_review`) places: a mark adds no voxel,
so the correction's labels are those the loop saved (checked), and only the verdict is replayed.

    OMP_NUM_THREADS=2 python benchmarks/bench_rule_replay.py --out benchmarks/results/adaptation-s14
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from _adapt_targets import judge_rounds
from bench_adaptation import loop_name

from lnq_napari.activation import decide_activation
from lnq_napari.finetuning import validation
from lnq_napari.finetuning.reviewed import prediction_parent
from lnq_napari.finetuning.validation import original_model, version_figures
from lnq_napari.inference import Predictor
from lnq_napari.interact import spot_mask
from lnq_napari.io.readers import read_labels
from lnq_napari.model import resolve_model
from lnq_napari.simulate import simulate_review
from lnq_napari.workspace import Workspace


class _Remembering:
    """A predictor that predicts each CT once (one model's held-out cases recur over rounds)."""

    def __init__(self, path: Path, device: str) -> None:
        self.inner, self.seen = Predictor(path, device=device), {}

    def predict(self, ct, progress=None, cancel=None):
        key = (ct.origin, ct.shape)
        if key not in self.seen:
            self.seen[key] = self.inner.predict(ct, progress=progress, cancel=cancel)
        return self.seen[key]


def _mark_held_out_cases() -> None:
    """Make the held-out figures count the marks today's simulated reviewer would have saved."""
    plain, found = validation.held_out_truth, {}

    def with_marks(ws, case: str, version: str | None = None):
        truth = plain(ws, case, version)
        info = ws.version_info(case, version) if version else ws.latest_version(case, "correction")
        made = prediction_parent(ws, case, info)
        if truth.marked is not None or made is None:
            return truth
        key = (str(ws.root), case, info["version"])
        if key not in found:
            ct = ws.read_ct(case)
            again, stats = simulate_review(ct, ws.read_labels(case, made["version"]),
                                           read_labels(ws.full_path(case), reference=ct))
            if not np.array_equal(again.array > 0, truth.correction.array > 0):
                raise SystemExit(f"{case}: today's reviewer corrects it otherwise; --marks cannot replay it")
            found[key] = spot_mask(stats["marks"], ct.shape, ct.spacing_zyx) if stats["marks"] else None
        return dataclasses.replace(truth, marked=found[key])

    validation.held_out_truth = with_marks


def _rescore(ws: Workspace, version: str, predictors: dict):
    """Today's verdict on ``version``, from fresh figures of it, its parent and the original."""
    entry = ws.model_info(version)
    cases = entry["metrics"]["metrics_after"]["cases"]
    registered = {m["id"] for m in ws.models()}

    def figures(model: str):
        path = ws.model_path(model) if model in registered else Path(resolve_model(None))
        make = lambda p, d: predictors.setdefault(str(p), _Remembering(p, d))  # noqa: E731
        return version_figures(make, model, path, "cpu", ws, cases)

    original = original_model(ws, entry["parent"])
    return decide_activation(figures(version), figures(entry["parent"]),
                             None if original is None else figures(original[0]))


def replay(out: Path, pattern: str) -> list[dict]:
    """One row per fine-tuned round of every kept loop run: the bar's verdict, the logged one, today's."""
    rows = []
    for path in sorted(out.glob(f"loop-{pattern}.json")):
        run = json.loads(path.read_text())
        name = f"{run['site']}-s{run['seed']}-" + loop_name(
            run["strategy"], run["corrections"], run["settings"].get("set") or [])
        folder = out / "work" / name
        if not (folder / "workspace.json").is_file():
            continue
        ws, predictors = Workspace.open(folder), {}
        for row in judge_rounds(run["rows"])[1:]:
            verdict = _rescore(ws, row["candidate"], predictors)
            rows.append({"run": name, "round": row["round"], "rose": row["rose"], "logged": row["activated"],
                         "now": verdict.activate, "reason": verdict.reason})
            print(f"{name} round {row['round']}: {'rose' if row['rose'] else 'fell'}; logged "
                  f"{'activated' if row['activated'] else 'refused'}, now {verdict.reason}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "adaptation"))
    p.add_argument("--runs", default="*", help="glob of the loop runs after loop- (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--marks", action="store_true",
                   help="held-out corrections with the marks today's simulated reviewer places")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.marks:
        _mark_held_out_cases()
    rows = replay(Path(args.out), args.runs)
    for rule in ("logged", "now"):
        right = sum(bool(r[rule]) == r["rose"] for r in rows)
        print(f"{rule}: right by the bar in {right} of {len(rows)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
