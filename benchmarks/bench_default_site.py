"""How much did a loop's versions lose on the default site, judged on more test cases than the loop's six?

``bench_adaptation.py`` checks forgetting on six default-site test cases, where a point of one case's Dice
moves the median. This scores the frozen model and every version of one kept loop run on ``--test``
default-site test cases (the loop's six first: the same seeds) and prints each version's median Dice, its
change against the frozen model and the paired per-case change (session 41: nodes pool 5's round-2
version, -1.2 points on the six, was -1.2 on 20 too, 15 of 20 cases lower).

    OMP_NUM_THREADS=1 python benchmarks/bench_default_site.py \\
        --out benchmarks/results/adaptation-s41a --test 20 \\
        --run "nodes-s5-uncertainty-clicks-mine_negatives=true"
"""

from __future__ import annotations

import argparse
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
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    ws = Workspace.open(out / "work" / args.run)
    cases = load_cases(site_data(out, FORGET_SITE, "test", args.test))
    frozen = figures(frozen_predictor(out), cases)
    base = np.asarray(frozen["dice_cases"])
    print(f"frozen: median Dice {frozen['dice_median']:.3f} on {len(cases)} default-site cases", flush=True)
    for version in sorted(m["id"] for m in ws.models()):
        dice = np.asarray(figures(Predictor(ws.model_path(version), device="cpu"), cases)["dice_cases"])
        paired = dice - base
        print(f"{version}: median Dice {np.median(dice):.3f} ({np.median(dice) - np.median(base):+.4f}); "
              f"paired median {np.median(paired):+.4f}, {int((paired < 0).sum())} of {paired.size} cases "
              "lower", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
