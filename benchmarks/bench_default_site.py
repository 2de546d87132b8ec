"""How much did a loop's versions lose on the default site, judged on more test cases than the loop's six?

``bench_adaptation.py`` checks forgetting on six default-site test cases, where a point of one case's Dice
moves the median. This scores the frozen model and every version of one kept loop run on ``--test``
default-site test cases (the loop's six first: the same seeds) and prints each version's median Dice, its
change against the frozen model and the paired per-case change (session 41: nodes pool 5's round-2
version, -1.2 points on the six, was -1.2 on 20 too, 15 of 20 cases lower).

It also asks how well a forgetting check on a few cases reads that change: for each version it draws
``--draws`` subsets of ``--check`` of the test cases and prints, per statistic of the check (the change
of median Dice the product's check has used, the paired mean change, the paired median change), the
spread of the subsets' readings around the statistic on all cases and how often a check with
``--margin`` would refuse. ``--json`` keeps the per-case Dice for later replays.

    OMP_NUM_THREADS=1 python benchmarks/bench_default_site.py \\
        --out benchmarks/results/adaptation-s41a --test 20 \\
        --run "nodes-s5-uncertainty-clicks-mine_negatives=true"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from bench_adaptation import FORGET_SITE, figures, frozen_predictor, load_cases, site_data

from lnq_napari.inference import Predictor
from lnq_napari.workspace import Workspace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="a bench_adaptation.py --out folder")
    p.add_argument("--run", required=True, help="the loop run's workspace name under OUT/work")
    p.add_argument("--test", type=int, default=20, help="default-site test cases (default 20; loops use 6)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--check", type=int, nargs="+", default=[4, 8], help="check sizes to replay (default 4 8)")
    p.add_argument("--draws", type=int, default=2000, help="subsets drawn per check size (default 2000)")
    p.add_argument("--margin", type=float, default=0.009, help="the check's margin (default 0.009)")
    p.add_argument("--json", type=Path, help="write the per-case Dice of every model here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    ws = Workspace.open(out / "work" / args.run)
    cases = load_cases(site_data(out, FORGET_SITE, "test", args.test))
    frozen = figures(frozen_predictor(out), cases)
    base = np.asarray(frozen["dice_cases"])
    print(f"frozen: median Dice {frozen['dice_median']:.3f} on {len(cases)} default-site cases", flush=True)
    kept = {"frozen": base.tolist()}
    for version in sorted(m["id"] for m in ws.models()):
        dice = np.asarray(figures(Predictor(ws.model_path(version), device="cpu"), cases)["dice_cases"])
        paired = dice - base
        kept[version] = dice.tolist()
        print(f"{version}: median Dice {np.median(dice):.3f} ({np.median(dice) - np.median(base):+.4f}); "
              f"paired median {np.median(paired):+.4f}, mean {paired.mean():+.4f}, "
              f"SD {paired.std(ddof=1):.4f}; "
              f"{int((paired < 0).sum())} of {paired.size} cases lower", flush=True)
        for n in args.check:
            print("    " + "; ".join(replay_check(dice, base, n, args.draws, args.margin)), flush=True)
    if args.json:
        args.json.write_text(json.dumps(kept, indent=1))
    return 0


#: A check's statistic of a candidate's and the original's per-case Dice on the same cases.
STATISTICS = {
    "median change": lambda c, o: np.median(c, axis=-1) - np.median(o, axis=-1),
    "paired mean": lambda c, o: np.mean(c - o, axis=-1),
    "paired median": lambda c, o: np.median(c - o, axis=-1),
}


def replay_check(dice: np.ndarray, base: np.ndarray, n: int, draws: int, margin: float) -> list[str]:
    """Per statistic: its reading on all cases, the SD of its readings on ``draws`` subsets of ``n`` cases
    (drawn without replacement, seed 0) and the share of subsets that read below ``-margin``."""
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(dice.size, n, replace=False) for _ in range(draws)])
    out = [f"{n} cases"]
    for name, stat in STATISTICS.items():
        whole, read = stat(dice, base), stat(dice[idx], base[idx])
        out.append(f"{name} {whole:+.4f}: SD {read.std():.4f}, refused {np.mean(read < -margin - 1e-9):.0%}")
    return out


if __name__ == "__main__":
    sys.exit(main())
