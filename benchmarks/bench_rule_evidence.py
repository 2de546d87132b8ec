"""Were the activation rule's verdicts faithful to its own held-out cases?

The rule judges a fine-tuned version on the few corrected cases its fine-tune held out, against the
reviewer's (simulated, click) corrections. ``bench_rule_fidelity.py`` measures how far that yardstick
leans on the fixed test cases; this benchmark asks the question of the verdicts themselves: for every
version in the loop workspaces ``bench_adaptation.py`` kept (``OUT/work/<site>-s*``), the version, its
parent and the lineage's original model are scored on the version's held-out cases against the
corrections (what the rule saw) and against the phantom's complete truth. Per (version, case) it
prints candidate - parent, both ways, for surface Dice at the rule's tolerance (what it judges outlines
by), Dice, false nodes, and two readings tried in session 12 and not adopted: the known-voxel Dice
(against the correction's label states) and false nodes lying mostly on known background; and over all
pairs how often the two agree. Where they agree, a verdict the test set calls wrong was
wrong because its held-out cases differ from the test cases, not because the corrections misled it.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/bench_rule_evidence.py \
        --out benchmarks/results/adaptation-s9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lnq_napari.activation import SURFACE_TOLERANCE_MM
from lnq_napari.components import label_components
from lnq_napari.finetuning.reviewed import read_reviewed
from lnq_napari.inference import Predictor
from lnq_napari.io.readers import read_volume
from lnq_napari.metrics import evaluate_case, known_voxel_dice
from lnq_napari.model import resolve_model
from lnq_napari.workspace import Workspace

FIGURES = ("surface_dice", "dice", "known_dice", "fp_nodes", "known_fp")


def _folder(ws: Workspace, version: str) -> Path:
    return ws.model_path(version) if version in {m["id"] for m in ws.models()} else Path(resolve_model(None))


def _reviewed(ws: Workspace, case: str, reviewed: dict):
    """``(reviewed case, its label states)``, read once per case (its states are the costly part)."""
    key = (str(ws.root), case)
    if key not in reviewed:
        found = read_reviewed(ws, case, ws.latest_version(case, "correction")["version"])
        reviewed[key] = found, found.states()
    return reviewed[key]


def _scores(ws: Workspace, version: str, case: str, predictors: dict,
            reviewed: dict) -> dict[str, dict[str, float]]:
    """``{"clicks": figures, "truth": figures}`` of ``version`` on ``case``."""
    folder = _folder(ws, version)
    if folder not in predictors:
        predictors[folder] = Predictor(folder, device="cpu")
    found, states = _reviewed(ws, case, reviewed)  # the correction as training reads it
    mask = predictors[folder].predict(found.ct).mask
    correction = found.correction
    truth = correction.with_array((np.asarray(read_volume(ws.full_path(case)).array) > 0).astype(np.uint8))
    out = {ref: evaluate_case(mask, labels, surface_tolerance_mm=SURFACE_TOLERANCE_MM).to_dict()
           for ref, labels in (("clicks", correction), ("truth", truth))}  # rows of the table, extended below
    predicted = np.asarray(mask.array) > 0
    out["clicks"]["known_dice"] = known_voxel_dice(predicted, states)
    out["truth"]["known_dice"] = out["truth"]["dice"]
    # a component touching no corrected node counts when at least half of it is known background
    comp, n = label_components(predicted)
    size = np.bincount(comp.ravel(), minlength=n + 1)
    background = np.bincount(comp.ravel(), weights=(states == 0).ravel(), minlength=n + 1)
    on_node = np.zeros(n + 1, bool)
    on_node[np.unique(comp[(states == 1) & (comp > 0)])] = True
    out["clicks"]["known_fp"] = int((~on_node[1:] & (background[1:] >= 0.5 * size[1:])).sum())
    out["truth"]["known_fp"] = out["truth"]["fp_nodes"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/adaptation", help="bench_adaptation.py's --out")
    p.add_argument("--workspaces", default="*", help="glob of the kept workspaces' names (default all)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.out) / "work"
    kept = sorted(w for w in work.glob(args.workspaces) if (w / "workspace.json").is_file())
    if not kept:
        print(f"no kept loop workspace under {args.out}/work: run bench_adaptation.py --mode loop first",
              file=sys.stderr)
        return 2
    predictors: dict = {}
    reviewed: dict = {}
    pairs = []
    print("workspace/version  case  against  " + "  ".join(f"{f} cand-parent" for f in FIGURES) + "  verdict")
    for path in kept:
        ws = Workspace.open(path)
        for entry in ws.models():
            metrics = entry.get("metrics") or {}
            cases = (metrics.get("metrics_after") or {}).get("cases") or []
            verdict = "activated" if metrics.get("activated") else "refused"
            for case in cases:
                cand = _scores(ws, entry["id"], case, predictors, reviewed)
                parent = _scores(ws, entry["parent"], case, predictors, reviewed)
                row = {ref: {f: float(cand[ref][f]) - float(parent[ref][f]) for f in FIGURES}
                       for ref in ("clicks", "truth")}
                pairs.append(row)
                for ref in ("clicks", "truth"):
                    print(f"{path.name}/{entry['id']}  {case}  {ref:6s}  "
                          + "  ".join(f"{row[ref][f]:+18.3f}" for f in FIGURES) + f"  {verdict}")
    print(f"\nover {len(pairs)} (version, held-out case) pairs, candidate - parent:")
    for f in FIGURES:
        a = np.array([r["clicks"][f] for r in pairs])
        b = np.array([r["truth"][f] for r in pairs])
        ok = np.isfinite(a) & np.isfinite(b)
        print(f"  {f:13s} same sign against clicks and truth {int((np.sign(a[ok]) == np.sign(b[ok])).sum())}"
              f"/{int(ok.sum())}, mean lean (clicks - truth) {np.mean(a[ok] - b[ok]):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
