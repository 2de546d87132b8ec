"""Active learning on the phantom: does reviewing + fine-tuning improve the model, and does ranking help?

Starting from a model trained on partial labels (the bundled one, or ``--model``), each round a
simulated reviewer (:mod:`lnq_napari.simulate`, i.e. the napari click functions) takes the top-k cases
of the review queue, clicks the centres of the nodes the model missed and removes its false nodes;
the workspace then fine-tunes the active model on all corrections so far. Held-out phantom cases with
complete truth are scored after each round. Strategies are compared on the same pool and test set.

From the first ranking it measures how well each uncertainty signal predicts a case's true error on
the pool (Spearman correlation with 1 - Dice and with missed + false nodes); ``--tta`` adds flip-TTA
disagreement, which costs a second prediction per case.

Prints a table (round, strategy, median Dice, node recall, FP/case, fine-tune seconds) and writes
``active_learning.png``, ``uncertainty_vs_error.png`` and ``active_learning.json`` under ``--out``
(default benchmarks/results/, gitignored).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_active_learning.py --pool 12 --test 4 \\
        --rounds 2 --per-round 3 --iterations 60
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _adapt_common import choose_cases, review_cases


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="starting model folder (default: the bundled model)")
    p.add_argument("--pretrain-iterations", type=int, default=0,
                   help="train the starting model on the pool's partial labels (when no model exists)")
    p.add_argument("--pool", type=int, default=20, help="unreviewed cases in the pool (default 20)")
    p.add_argument("--test", type=int, default=6, help="held-out cases with complete truth (default 6)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-round", type=int, default=5, help="cases reviewed per round (default 5)")
    p.add_argument("--iterations", type=int, default=200, help="fine-tune iterations per round")
    p.add_argument("--strategies", default="uncertainty,random")
    p.add_argument("--shape", type=_ints, default=None, help="phantom grid z,y,x (default: LNQ-like 512x512)")
    p.add_argument("--spacing", type=_floats, default=None, help="phantom spacing x,y,z in mm")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--tta", action="store_true", help="also measure flip-TTA disagreement (2x predictions)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--keep", action="store_true", help="keep the phantom data and workspaces")
    return p.parse_args(argv)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.time()

    def __call__(self) -> float:
        return time.time() - self.t0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def evaluate_test(predictor, test_cases: list[tuple], review: bool = False) -> dict:
    """Median Dice, recall, FP/case of ``predictor`` on the held-out cases.

    With ``review`` also the same figures after the simulated reviewer corrected each prediction
    (``reviewed``): the most a model that learned every click could reach.
    """
    from lnq_napari.metrics import evaluate_case, summarize
    from lnq_napari.simulate import simulate_review

    def figures(rows: list) -> dict:
        s = summarize(rows)
        return {"dice_median": s.dice_median, "dice_mean": s.dice_mean, "recall": s.recall,
                "fp_per_case": s.fp_per_case, "rows": rows}

    rows, reviewed = [], []
    for _, ct, full in test_cases:
        mask = predictor.predict(ct).mask
        rows.append(evaluate_case(mask, full))
        if review:
            reviewed.append(evaluate_case(simulate_review(ct, mask, full)[0], full))
    out = figures(rows)
    if review:
        out["reviewed"] = {k: v for k, v in figures(reviewed).items() if k != "rows"}
    return out


def uncertainty_study(ws, scores: dict, tta_predictor=None) -> dict:
    """Each pool case's uncertainty signals vs its true error (its stored prediction vs complete truth).

    Uses the scores and predictions of the first ranking (no extra predictions), plus a flipped
    prediction per case when ``tta_predictor`` is given (disagreement).
    """
    from lnq_napari import active
    from lnq_napari.io.readers import read_labels
    from lnq_napari.metrics import evaluate_case

    records = []
    for case, score in scores.items():
        ct = ws.read_ct(case)
        pred = ws.latest_labels(case, "prediction")
        full = read_labels(ws.full_path(case), reference=ct)
        ev = evaluate_case(pred, full)
        rec = {
            "case": case, "score": score.score, "entropy_cm3": score.entropy_cm3,
            "node_uncertainty": score.node_uncertainty, "uncertain_nodes": score.uncertain_nodes,
            "outline_cm3": score.outline_cm3, "incomplete_nodes": score.incomplete_nodes,
            "error_dice": 1.0 - ev.dice,
            "error_nodes": (ev.nodes_gt - ev.nodes_hit) + ev.fp_nodes,
        }
        if tta_predictor is not None:
            flipped = tta_predictor.predict(active.flipped(ct, (2,))).mask.array[:, :, ::-1]
            rec["disagreement"] = active.mask_disagreement([pred.array, flipped])
        records.append(rec)
    signals = ["score", "entropy_cm3", "node_uncertainty", "uncertain_nodes", "outline_cm3",
               "incomplete_nodes"]
    signals += ["disagreement"] if tta_predictor is not None else []
    table = {s: {"vs_1-dice": spearman([r[s] for r in records], [r["error_dice"] for r in records]),
                 "vs_node_errors": spearman([r[s] for r in records], [r["error_nodes"] for r in records])}
             for s in signals}
    return {"records": records, "spearman": table}


def run_strategy(name: str, args, base_model: Path, pool_dir: Path, test_cases, work: Path,
                 before: dict, study: dict) -> list[dict]:
    from lnq_napari import active
    from lnq_napari.finetuning import finetune_workspace
    from lnq_napari.inference import Predictor
    from lnq_napari.model.config import FinetuneConfig
    from lnq_napari.workspace import Workspace

    ws_path = work / f"ws-{name}"
    shutil.rmtree(ws_path, ignore_errors=True)
    ws = Workspace.init(ws_path, pool_dir)
    ws.activate(ws.register_model(base_model, parent=None))
    rows = []
    t = Timer()
    rows.append({"round": 0, "strategy": name, **{k: v for k, v in before.items() if k != "rows"},
                 "finetune_s": 0.0, "reviewed": 0, "clicks": 0, "activated": None, "model": "m001"})
    log(f"{name} round 0: {rows[-1]['dice_median']:.3f} median Dice ({t():.0f} s)")
    clicks = 0
    for rnd in range(1, args.rounds + 1):
        model_id = ws.active_model()["id"]
        predictor = active.LazyPredictor(lambda: Predictor(ws.active_model()["path"], device=args.device))
        chosen, scores = choose_cases(ws, name, predictor, model_id, args.per_round, args.seed + rnd)
        if scores and rnd == 1 and not study:
            log("uncertainty vs true error of the starting model on the pool")
            tta = Predictor(base_model, device=args.device) if args.tta else None
            study.update(uncertainty_study(ws, scores, tta))
            text = json.dumps(study, indent=1, default=float)
            Path(args.out, "uncertainty_study.json").write_text(text)
            for key, v in study["spearman"].items():
                log(f"  {key}: Spearman vs 1-Dice {v['vs_1-dice']:+.2f}, vs node errors "
                    f"{v['vs_node_errors']:+.2f}")
        clicks += review_cases(ws, chosen, model_id)
        ft = Timer()
        config = FinetuneConfig(iterations=args.iterations, seed=args.seed + rnd)
        result = finetune_workspace(ws, config=config, device=args.device)
        ft_s = ft()
        after = evaluate_test(Predictor(ws.active_model()["path"], device=args.device), test_cases)
        rows.append({"round": rnd, "strategy": name, **{k: v for k, v in after.items() if k != "rows"},
                     "finetune_s": round(ft_s, 1), "train_s": result.train_seconds,
                     "reviewed": len(ws.corrected_cases()), "clicks": clicks,
                     "activated": result.activated, "model": ws.active_model()["id"], "chosen": chosen,
                     "reason": result.reason})
        log(f"{name} round {rnd}: chose {chosen}; {result.reason}; test median Dice "
            f"{rows[-1]['dice_median']:.3f} recall {rows[-1]['recall']:.3f} ({t():.0f} s)")
    return rows


def plot(rows: list[dict], study: dict | None, out: Path, ceiling: dict | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in sorted({r["strategy"] for r in rows}):
        rr = [r for r in rows if r["strategy"] == name]
        x = [r["round"] for r in rr]
        axes[0].plot(x, [r["dice_median"] for r in rr], "o-", label=name)
        axes[1].plot(x, [r["recall"] for r in rr], "o-", label=name)
        axes[2].plot(x, [r["fp_per_case"] for r in rr], "o-", label=name)
    if ceiling:
        for ax, key in zip(axes, ["dice_median", "recall", "fp_per_case"]):
            ax.axhline(ceiling[key], color="grey", ls="--", lw=1, label="round 0 + clicks")
    for ax, title in zip(axes, ["median Dice (held-out)", "node recall", "false nodes / case"]):
        ax.set_title(title)
        ax.set_xticks(sorted({r["round"] for r in rows}))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    paths.append(out / "active_learning.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if study:
        recs = study["records"]
        signals = list(study["spearman"])
        fig, axes = plt.subplots(1, len(signals), figsize=(3.3 * len(signals), 3.3), squeeze=False)
        for ax, s in zip(axes[0], signals):
            ax.scatter([r[s] for r in recs], [r["error_dice"] for r in recs], s=14)
            ax.set_xlabel(s)
            ax.set_title(f"rho={study['spearman'][s]['vs_1-dice']:.2f}")
        axes[0][0].set_ylabel("1 - Dice vs complete truth")
        fig.tight_layout()
        paths.append(out / "uncertainty_vs_error.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from lnq_napari.inference import Predictor
    from lnq_napari.io.readers import read_labels, read_volume
    from lnq_napari.model import resolve_model
    from lnq_napari.phantom import write_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "active_learning_work"
    shutil.rmtree(work, ignore_errors=True)
    total = Timer()
    pool_dir, test_dir = work / "pool", work / "test"
    log(f"writing {args.pool} pool + {args.test} test phantom cases")
    write_dataset(pool_dir, args.pool, seed=args.seed + 100, shape=args.shape, spacing=args.spacing)
    write_dataset(test_dir, args.test, seed=args.seed + 200, shape=args.shape, spacing=args.spacing,
                  prefix="lnq2023-val")
    if args.pretrain_iterations:
        from lnq_napari.training.trainer import load_training_cases, train_model

        log(f"pre-training a starting model on the pool's partial labels ({args.pretrain_iterations} it)")
        base = train_model(load_training_cases(pool_dir), work / "base", args.pretrain_iterations,
                           device=args.device, seed=args.seed)
    else:
        base = resolve_model(args.model)
    test_cases = []
    for ct_path in sorted(test_dir.glob("*-ct.nrrd")):
        ct = read_volume(ct_path)
        test_cases.append((ct_path.name, ct, read_labels(str(ct_path).replace("-ct.nrrd", "-full.nrrd"),
                                                            reference=ct)))

    log("scoring the starting model on the held-out cases")
    before = evaluate_test(Predictor(base, device=args.device), test_cases, review=True)
    ceiling = before.pop("reviewed")
    log(f"held-out cases as the reviewer would correct them: median Dice {ceiling['dice_median']:.3f}, "
        f"recall {ceiling['recall']:.3f}")
    rows, study = [], {}
    for name in args.strategies.split(","):
        rows += run_strategy(name, args, Path(base), pool_dir, test_cases, work, before, study)

    cols = ["round", "strategy", "dice_median", "recall", "fp_per_case", "finetune_s", "reviewed", "clicks",
            "activated"]
    if study:
        print(f"\nuncertainty signal vs true error on the pool (Spearman rho, n={len(study['records'])}):")
        for s, v in study["spearman"].items():
            print(f"  {s:18s} vs 1-Dice {v['vs_1-dice']:+.2f}   "
                  f"vs missed+false nodes {v['vs_node_errors']:+.2f}")
    print(f"\nheld-out cases corrected by the simulated reviewer (the most learning every click could give): "
          f"median Dice {ceiling['dice_median']:.3f}, recall {ceiling['recall']:.3f}, "
          f"FP/case {ceiling['fp_per_case']:.2f}")
    print()
    print("  ".join(f"{c:>11s}" for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:11.3f}" if isinstance(v, float) else f"{str(v):>11s}")
        print("  ".join(cells))
    settings = {k: v for k, v in vars(args).items()}
    (out / "active_learning.json").write_text(json.dumps(
        {"settings": settings, "rows": rows, "reviewed_ceiling": ceiling, "uncertainty": study,
         "seconds": round(total(), 1)},
        indent=1, default=str))
    for p in plot(rows, study, out, ceiling):
        print(f"wrote {p}")
    print(f"total {total():.0f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
