"""Where a model's false nodes lie on phantom test cases: the anatomy under each, and a parent model's view.

For every predicted component that touches no target node (a false node, as ``metrics.node_detection``
counts it), the phantom's class map under it (regenerated from the case's seed in ``-nodes.json``; the
CT is checked bit for bit against the file), its volume and mean HU, the share lying on any node
(target or not) and the parent model's peak and mean probability there and whether its mask had it.

    python benchmarks/diag_false_nodes.py --data TEST_FOLDER --model CHILD [--parent PARENT]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from lnq_napari.components import label_components
from lnq_napari.inference import Predictor
from lnq_napari.io.layout import scan_cases
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.phantom import canvas
from lnq_napari.phantom.case import make_case

CLASS_NAMES = [n for n, v in sorted(((n, v) for n, v in vars(canvas).items()
                                     if n.isupper() and isinstance(v, int) and not n.startswith("_")),
                                    key=lambda item: item[1])]


def regenerate(folder: Path, case_id: str, ct) -> tuple[np.ndarray, np.ndarray]:
    """``(class map, node instances)`` of a written phantom case, on its grid."""
    info = json.loads((folder / f"{case_id}-nodes.json").read_text())
    grabbed = {}

    def hook(anatomy, cv, nodes):
        grabbed["cls"] = cv.cls.copy()  # before the nodes are painted: the anatomy under them
        return nodes

    case = make_case(info["seed"], case_id=case_id, site=info["site"], nodes_hook=hook)
    if case.ct.shape != ct.shape or not np.array_equal(np.asarray(case.ct.array), np.asarray(ct.array)):
        raise SystemExit(f"{case_id}: the regenerated CT differs from the file (written with another grid?)")
    cls, inst = grabbed["cls"], np.asarray(case.instances.array)
    k = cls.shape[0] // inst.shape[0]  # thick sites draw k thin slices per slice
    return cls[k // 2::k][: inst.shape[0]], inst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="phantom test folder (-ct, -full, -nodes.json)")
    p.add_argument("--model", required=True, help="the model whose false nodes are looked at")
    p.add_argument("--parent", default=None, help="a model to compare with (default: the bundled one)")
    args = p.parse_args()
    folder = Path(args.data)
    child, parent = Predictor(args.model, device="cpu"), Predictor(args.parent, device="cpu")
    where = Counter()
    for case in scan_cases(folder, require="full"):
        ct = read_volume(case.ct)
        full = np.asarray(read_labels(case.full, reference=ct).array) > 0
        cls, inst = regenerate(folder, case.case_id, ct)
        mine, theirs = child.predict(ct), parent.predict(ct)
        prob = np.asarray(theirs.probabilities.array)
        their_mask = np.asarray(theirs.mask.array) > 0
        voxel_mm3 = float(np.prod(ct.spacing))
        comps, n = label_components(np.asarray(mine.mask.array) > 0)
        for c in range(1, n + 1):
            comp = comps == c
            if full[comp].any():
                continue
            share = np.bincount(cls[comp], minlength=len(CLASS_NAMES)) / comp.sum()
            top = int(np.argmax(share))
            where[CLASS_NAMES[top]] += 1
            size = f"{comp.sum() * voxel_mm3:.0f} mm3, {ct.array[comp].mean():.0f} HU"
            anatomy = f"{CLASS_NAMES[top]} {share[top]:.2f}, on a node {(inst[comp] > 0).mean():.2f}"
            seen = (f"peak {prob[comp].max():.2f}, mean {prob[comp].mean():.2f}, "
                    f"in its mask {their_mask[comp].any()}")
            print(f"{case.case_id} false node: {size}, {anatomy}; parent {seen}", flush=True)
    print("false nodes by anatomy:", dict(where.most_common()))


if __name__ == "__main__":
    main()
