"""Speed and accuracy of clicks (lnq_napari.interact) on full-size phantom cases (512 x 512 in-plane).

Positive click at the centre of every target node that the partial labels miss -> Dice against that
node's own truth component; negative click on every truth node -> exactly that component removed.
Prints per-click median / p95 time (ms) and the Dice median. Run:
    OMP_NUM_THREADS=1 python benchmarks/bench_interact.py --cases 3 [--site lowdose]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lnq_napari.interact import node_from_click, remove_node_at
from lnq_napari.phantom import make_case


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


#: A phantom node is calcified when at least 1 % of its voxels read above this (its foci: 500-1000 HU).
#: Higher than lnq_napari.components.CALCIUM_HU: at 300 HU low-dose noise marks plain nodes calcified.
CALCIFIED_NODE_HU = 400.0


def bench_case(seed: int, site: str = "default") -> tuple[list[float], list[float], list[float], list[bool],
                                                          list[bool]]:
    case = make_case(seed, site=site)
    ct, inst = case.ct, np.asarray(case.instances.array)
    partial = np.asarray(case.partial.array) > 0
    add_ms, dices, remove_ms, exact, calcified = [], [], [], [], []
    hu = np.asarray(ct.array)
    for node in case.nodes:
        if not node["target"]:
            continue
        truth = inst == node["id"]
        if not truth.any():
            continue
        centre = np.round(ct.physical_to_index(np.asarray(node["center_xyz_mm"]))[0]).astype(int)
        if node["labelled"] or (partial & truth).any():
            continue  # the click benchmark is about nodes the labels miss
        existing = np.where(partial, 1, 0).astype(np.int32)
        t0 = time.perf_counter()
        mask = node_from_click(ct, centre, labels=existing)
        add_ms.append(1000 * (time.perf_counter() - t0))
        dices.append(_dice(mask, truth))
        calcified.append(bool(np.mean(hu[truth] > CALCIFIED_NODE_HU) >= 0.01))
    for node in case.nodes:
        truth = inst == node["id"]
        centre = tuple(np.round(ct.physical_to_index(np.asarray(node["center_xyz_mm"]))[0]).astype(int))
        if not truth[centre]:
            continue
        t0 = time.perf_counter()
        out, removed = remove_node_at(inst, centre)
        remove_ms.append(1000 * (time.perf_counter() - t0))
        exact.append(removed == node["id"] and np.array_equal(out != inst, truth))
    return add_ms, dices, remove_ms, exact, calcified


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--site", default="default", help="phantom site (lnq-napari phantom --site)")
    args = parser.parse_args()
    add_ms, dices, remove_ms, exact, calcified = [], [], [], [], []
    for k in range(args.cases):
        a, d, r, e, c = bench_case(args.seed + k, args.site)
        add_ms += a
        dices += d
        remove_ms += r
        exact += e
        calcified += c
        print(f"case seed {args.seed + k}: {len(a)} missed nodes clicked, Dice {np.round(d, 3).tolist()}")
    print(
        f"positive click: n={len(add_ms)} median {np.median(add_ms):.1f} ms, "
        f"p95 {np.percentile(add_ms, 95):.1f} ms, max {np.max(add_ms):.1f} ms"
    )
    print(
        f"positive click Dice vs the node's truth: median {np.median(dices):.3f}, "
        f"mean {np.mean(dices):.3f}, min {np.min(dices):.3f}"
    )
    calc = np.asarray(calcified, bool)
    for name, pick in (("calcified", calc), ("not calcified", ~calc)):
        if pick.any():
            d = np.asarray(dices)[pick]
            print(f"  {name} nodes (n={pick.sum()}): Dice median {np.median(d):.3f}, mean {np.mean(d):.3f}, "
                  f"min {np.min(d):.3f}")
    print(
        f"negative click: n={len(remove_ms)} median {np.median(remove_ms):.1f} ms, "
        f"p95 {np.percentile(remove_ms, 95):.1f} ms; "
        f"removed exactly the clicked node: {sum(exact)}/{len(exact)}"
    )


if __name__ == "__main__":
    main()
