"""Do "outline incomplete" suggestions point at node tissue? Each one accepted as the Correct tab accepts
it (A: the tissue grown from its point joins the node it touches), scored against the complete truth.

    python benchmarks/bench_outline_suggestions.py [--cases 5] [--seed 101] [--sites default,lowdose,nodes]
        [--model FOLDER] [--demo]

Per suggestion of each case (the cases ``lnq-napari phantom OUT --site S --cases N --seed SEED`` writes):
the predicted node's volume, the tissue beyond its outline the suggestion reports, the share of that
tissue inside a true node, the model's mean probability there, what accepting it adds (cm3, share inside
a true node) and the case's Dice before and after (and after adding the reported tissue as it is); then
per site how many acceptances raised the Dice.
"""

from __future__ import annotations

import argparse

import numpy as np

from lnq_napari import api, metrics
from lnq_napari.active import incomplete_outlines
from lnq_napari.api import DEMO_SEED
from lnq_napari.interact import node_region_from_click
from lnq_napari.phantom import make_case
from lnq_napari.phantom.dataset import case_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--sites", default="default,lowdose,nodes")
    parser.add_argument("--model", default=None)
    parser.add_argument("--demo", action="store_true", help="only the demo case (lnq-napari demo's phantom)")
    args = parser.parse_args()
    predictor = api.load_predictor(args.model, device="cpu")
    print("site         case  node  node_cm3  beyond_cm3  truth_share  mean_p  accept_cm3  accept_truth  "
          "dice")
    raised: dict[str, list[bool]] = {}
    raised_reported: dict[str, list[bool]] = {}
    draws = [("demo", 0, DEMO_SEED)] if args.demo else [
        (site, k, case_seed(args.seed, k)) for site in args.sites.split(",") for k in range(args.cases)]
    for site, k, seed in draws:
        case = make_case(seed, site="default" if site == "demo" else site)
        result = api.find_nodes(case.ct, model=predictor)
        mask, prob = np.asarray(result.mask.array), np.asarray(result.probabilities.array)
        truth = np.asarray(case.full.array) > 0
        before = metrics.evaluate_case(result.binary_mask(), case.full).dice
        voxel_cm3 = float(np.prod(case.ct.spacing)) / 1000.0
        for row in incomplete_outlines(case.ct, result.mask):
            box, grown = node_region_from_click(case.ct, [int(c) for c in row["centre_zyx"]])
            beyond = grown & (mask[box] == 0)  # what the suggestion reports
            click = [int(round(c)) for c in row["click_zyx"]]
            accepted = mask.copy()  # as the Correct tab's A: grown with the model's probabilities
            where, local = node_region_from_click(case.ct, click, prob, labels=accepted)
            accepted[where][local] = row["id"]
            after = metrics.evaluate_case(result.mask.with_array((accepted > 0).astype(np.uint8)),
                                          case.full).dice
            reported = mask.copy()  # the tissue the suggestion reports, added as it is
            reported[box][beyond] = row["id"]
            as_reported = metrics.evaluate_case(
                result.mask.with_array((reported > 0).astype(np.uint8)), case.full).dice
            raised.setdefault(site, []).append(after > before)
            raised_reported.setdefault(site, []).append(as_reported > before)
            share = float(truth[where][local].mean()) if local.any() else float("nan")
            print(f"{site:<12} {k:>4}  {row['id']:>4}  {row['volume_mm3'] / 1000:>8.2f}  "
                  f"{row['outside_mm3'] / 1000:>10.2f}  {truth[box][beyond].mean():>11.2f}  "
                  f"{prob[box][beyond].mean():>6.3f}  {local.sum() * voxel_cm3:>10.2f}  {share:>12.2f}  "
                  f"{before:.3f} -> {after:.3f} (reported tissue: {as_reported:.3f})", flush=True)
    for site, ups in raised.items():
        print(f"{site}: accepting raised the Dice for {sum(ups)} of {len(ups)} outline suggestions "
              f"(adding the reported tissue: {sum(raised_reported[site])})")
    total = [u for ups in raised.values() for u in ups]
    reported = [u for ups in raised_reported.values() for u in ups]
    print(f"all: {sum(total)} of {len(total)} (adding the reported tissue: {sum(reported)})")


if __name__ == "__main__":
    main()
