"""How long ranking a case for review takes besides the network: the uncertainty score of its probabilities.

Draws ``--cases`` full-size phantom cases, predicts each once with the bundled model (CPU), then times
``active.score_probabilities`` (per-node peak, mean, size and centre; entropy band) and
``active.incomplete_outlines``, median over ``--repeats``, against the same per-node figures taken by
scipy.ndimage's per-label reductions (``maximum``, ``mean``, ``sum_labels``, ``center_of_mass``: what
``node_scores`` used until session 20), measured in the same run. The network's time per case is printed
for scale. On a GPU the network shrinks and this part is what is left.

    OMP_NUM_THREADS=2 python benchmarks/bench_ranking.py --cases 3 --repeats 3 \
        --ct "$(python -c 'import slicerio; print(slicerio.get_testdata_file("CTChest4.nrrd"))')"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from _timing import median_seconds


def scipy_node_figures(p: np.ndarray, low: float) -> tuple:
    """The reference: per-component peak, mean, size and centre by scipy's per-label reductions."""
    from scipy import ndimage

    from lnq_napari.components import label_components

    components, n = label_components(p >= low)
    index = np.arange(1, n + 1)
    ones = np.ones_like(p, dtype=np.float32)
    return (ndimage.maximum(p, components, index), ndimage.mean(p, components, index),
            ndimage.sum_labels(ones, components, index), ndimage.center_of_mass(ones, components, index))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=3, help="full-size phantom cases (default 3)")
    p.add_argument("--ct", action="append", default=[], help="a real CT to time too (repeatable), e.g. "
                   "slicerio's CTChest4.nrrd")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=2000)
    args = p.parse_args(argv)

    from lnq_napari import active
    from lnq_napari.inference import Predictor
    from lnq_napari.io.layout import scan_cases
    from lnq_napari.io.readers import read_volume
    from lnq_napari.phantom import write_dataset

    predictor = Predictor(None, device="cpu")
    rows = []

    def time_case(name: str, ct) -> None:
        t = time.perf_counter()
        pred = predictor.predict(ct)
        network = time.perf_counter() - t
        prob = np.asarray(pred.probabilities.array, np.float32)
        ours = median_seconds(partial(active.score_probabilities, name, pred.probabilities), args.repeats)
        outlines = median_seconds(partial(active.incomplete_outlines, ct, pred.mask), args.repeats)
        reference = median_seconds(partial(scipy_node_figures, prob, active.LOW), args.repeats)
        rows.append((name, ct.shape, network, ours, outlines, reference))
        print(f"{name} {ct.shape}: prediction {network:.1f} s; score {ours:.3f} s, outlines {outlines:.3f} "
              f"s; scipy per-label node figures alone {reference:.3f} s ({reference / ours:.0f}x the score)")

    for path in args.ct:
        time_case(Path(path).name, read_volume(path))
    with tempfile.TemporaryDirectory() as tmp:
        if args.cases:
            write_dataset(tmp, args.cases, seed=args.seed)
            for case in scan_cases(tmp):
                time_case(case.case_id, read_volume(case.ct))
    med = [statistics.median(r[i] for r in rows) for i in (2, 3, 4, 5)]
    print(f"median over {len(rows)} cases: prediction {med[0]:.1f} s, score {med[1]:.3f} s, outlines "
          f"{med[2]:.3f} s; scipy per-label node figures {med[3]:.3f} s ({med[3] / med[1]:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
