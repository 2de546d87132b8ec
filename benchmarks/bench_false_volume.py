"""The volume a model paints where no node is, on phantom sites: what the activation rule's
``false_volume_margin_ml`` (a margin for runaways only) stands far above.

    python benchmarks/bench_false_volume.py [--cases 3] [--seed 7] [--sites default,lowdose,nodes,noncontrast]
        [--model FOLDER]

Per case of each site (the cases ``lnq-napari phantom OUT --site S --cases N --seed SEED`` writes):
false nodes and the volume (mL) the model (default: the bundled one) paints more than
:data:`lnq_napari.training.corrections.GROWN_LENIENCE_MM` from every node of the complete truth
(:func:`lnq_napari.metrics.false_volume_ml`), then the largest over all cases.
"""

from __future__ import annotations

import argparse

from lnq_napari import api, metrics
from lnq_napari.phantom import make_case
from lnq_napari.phantom.dataset import case_seed
from lnq_napari.training.corrections import GROWN_LENIENCE_MM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sites", default="default,lowdose,nodes,noncontrast")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    predictor = api.load_predictor(args.model, device="cpu")
    largest = 0.0
    print("site         case  false_nodes  false_volume_ml  dice")
    for site in args.sites.split(","):
        for k in range(args.cases):
            case = make_case(case_seed(args.seed, k), site=site)
            mask = api.find_nodes(case.ct, model=predictor).binary_mask()
            row = metrics.evaluate_case(mask, case.full, false_volume_beyond_mm=GROWN_LENIENCE_MM)
            largest = max(largest, row.false_volume_ml)
            print(f"{site:<12} {k:>4}  {row.fp_nodes:>11}  {row.false_volume_ml:>15.2f}  {row.dice:.3f}",
                  flush=True)
    print(f"largest false volume: {largest:.2f} mL per case")


if __name__ == "__main__":
    main()
