"""Would a forgetting check have refused the versions that cost the default site?

The activation rule judges a new version on the user's site only, and loops whose round-3 version it
activated lost up to 1.9 points of median Dice on the default site (``docs/adaptation_history.md``,
session 21). A check a user could run is the candidate against the original model on a few cases of
the model's own training data (for the bundled model: default-site phantoms). For every fine-tuned
round of the loop runs kept under ``--out``, this scores the round's new version and the original on
``--cases`` default-site phantom cases that are not the loops' forgetting test set (the benchmark's
"replay" draw, other seeds), and prints whether a check refusing a median Dice more than ``--margin``
below the original's would have refused it, beside the change the issue measures (the six default-site
test cases) and the round's verdict. It measured the check offline (session 21); the product has run
it since session 22 on cases of its own (:mod:`lnq_napari.finetuning.forgetting`), so this benchmark
now serves to replay it on loops run without it.

    OMP_NUM_THREADS=2 python benchmarks/bench_forgetting_check.py \\
        --out benchmarks/results/adaptation-s21 --runs "*=true"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_adaptation import FORGET_SITE, figures, frozen_predictor, load_cases, site_data

from lnq_napari.inference import Predictor
from lnq_napari.workspace import Workspace

FORGET_TARGET = 0.01  # the default-site target: median Dice at most 1 point below the frozen model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="a bench_adaptation.py --out folder")
    p.add_argument("--runs", default="*", help="glob of the loop runs after loop- (default all)")
    p.add_argument("--cases", type=int, default=4, help="default-site cases the check scores (default 4)")
    p.add_argument("--margin", type=float, default=0.01, help="median Dice below the original that refuses")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    frozen = frozen_predictor(out)
    cases = load_cases(site_data(out, FORGET_SITE, "replay", args.cases))
    original = figures(frozen, cases)["dice_median"]
    print(f"original model on {len(cases)} default-site check cases: median Dice {original:.3f}", flush=True)
    lost, refused, caught = 0, 0, 0
    for path in sorted(out.glob(f"loop-{args.runs}.json")):
        run = json.loads(path.read_text())
        if run["site"] == FORGET_SITE:
            continue
        ws = Workspace.open(out / "work" / path.stem.removeprefix("loop-"))
        rows = run["rows"]
        for row in rows[1:]:
            check = figures(Predictor(ws.model_path(row["candidate"]), device="cpu"), cases)["dice_median"]
            refuse = check < original - args.margin
            refused += refuse
            measured = row.get("cand_default_dice_median")  # the loops score it for activated versions
            if measured is None:
                test = "not scored (refused by the rule)"
            else:
                change = measured - rows[0]["default_dice_median"]
                lost += change < -FORGET_TARGET
                caught += refuse and change < -FORGET_TARGET
                test = f"{change:+.3f}"
            print(f"{path.stem.removeprefix('loop-')} round {row['round']}: "
                  f"{'activated' if row['activated'] else 'refused'}; check Dice {check:.3f} "
                  f"({check - original:+.3f}): {'refuse' if refuse else 'pass'}; default-site test {test}",
                  flush=True)
    print(f"versions losing more than {FORGET_TARGET:g} on the default-site test: {lost}; refused by the "
          f"check: {refused}, {caught} of them among those")
    return 0


if __name__ == "__main__":
    sys.exit(main())
