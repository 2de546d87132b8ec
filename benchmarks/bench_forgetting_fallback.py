"""Could a version the forgetting check refused be saved by moving it back toward its parent?

For every round of the loop runs under ``--out`` whose version the rule's forgetting check refused
(session 22 on), this writes the interpolation ``(1 - alpha) w_parent + alpha w_version`` for each
``--alphas`` value and scores it as the loops score a version: the product's forgetting check (the
bundled model's default-site check cases, against the original), the site's six test cases (median Dice,
recall, false nodes per case) and the default site's six. Beside it the same figures of the parent (the
active model the round kept) and of the refused version, as the loop recorded them. Nothing in the
product is changed by it; it asks whether a fallback on a refusal would keep both the site's gain and
the default site. Since session 23 the fine-tune itself steps a refused version back (alphas 0.5, then
0.25; since session 38 from 0.75 to 0.125, chosen from the check's figures: ``FinetuneConfig.fallback_steps``,
``posttrain.step_alphas``); this scores other alphas, and the default site, offline.

    OMP_NUM_THREADS=2 python benchmarks/bench_forgetting_fallback.py --out benchmarks/results/adaptation-s22
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_adaptation import FORGET_SITE, figures, load_cases, site_data

from lnq_napari.activation import ForgettingFigures
from lnq_napari.finetuning.forgetting import check_data, check_figures
from lnq_napari.finetuning.posttrain import interpolated
from lnq_napari.inference import Predictor
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import load_state, save_checkpoint
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.registry import bundled_key


def _site(row: dict, prefix: str = "") -> str:
    """A loop row's site figures (median Dice / recall / false nodes per case) under ``prefix``."""
    dice, recall, fp = (row[prefix + k] for k in ("dice_median", "recall", "fp_per_case"))
    return f"{dice:.3f} / {recall:.3f} / {fp:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="a bench_adaptation.py --out folder")
    p.add_argument("--runs", default="*", help="glob of the loop runs after loop- (default all)")
    p.add_argument("--alphas", default="0.5", help="comma-separated alphas (default 0.5)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    bundled = Path(resolve_model(None))
    check = check_data(FinetuneConfig(), bundled_key(bundled), bundled)
    original, = check_figures(Predictor, [bundled], "cpu", check)
    forget = load_cases(site_data(out, FORGET_SITE, "test", 6))

    def scored(folder: Path, site_cases) -> str:
        predictor = Predictor(folder, device="cpu")
        own, = check_figures(lambda path, device: predictor, [folder], "cpu", check)
        cand, orig = ForgettingFigures("", tuple(own), tuple(original)).medians()
        site, default = figures(predictor, site_cases), figures(predictor, forget)
        return (f"check {cand - orig:+.3f}; site {site['dice_median']:.3f} / {site['recall']:.3f} / "
                f"{site['fp_per_case']:.2f}; default {default['dice_median']:.3f}")

    for path in sorted(out.glob(f"loop-{args.runs}.json")):
        run = json.loads(path.read_text())
        name = path.stem.removeprefix("loop-")
        ws = Workspace.open(out / "work" / name)
        site_cases = load_cases(site_data(out, run["site"], "test", 6))
        for row in run["rows"][1:]:
            if row["activated"] or row.get("forgetting_dice_vs_original") is None:
                continue
            version = row["candidate"]
            parent = ws.model_info(version)["parent"]
            parent_path = ws.model_path(parent) if parent in {e["id"] for e in ws.models()} else bundled
            print(f"{name} round {row['round']} ({version}, parent {parent}):", flush=True)
            print(f"  parent: site {_site(row)}; default {row['default_dice_median']:.3f}", flush=True)
            refused = _site(row, "cand_")
            print(f"  refused version: check {row['forgetting_dice_vs_original']:+.3f}; site {refused}; "
                  f"default {row['cand_default_dice_median']:.3f}", flush=True)
            tuned, config = load_state(ws.model_path(version))
            base, _ = load_state(parent_path)
            for alpha in (float(a) for a in args.alphas.split(",")):
                trial = Path(tempfile.mkdtemp(prefix="alpha-")) / "model"
                try:
                    save_checkpoint(trial, interpolated(base, tuned, alpha), config)
                    print(f"  alpha {alpha:g}: {scored(trial, site_cases)}", flush=True)
                finally:
                    shutil.rmtree(trial.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
