"""Follow-up comparison on phantom pairs with known changes: matching, volume change, RECIST, time.

Each pair is a phantom baseline and its follow-up (`lnq_napari.phantom.followup`: nodes grown, shrunk,
new, vanished; a rigid shift and turn and a breathing-like deformation). Figures:

- matching: share of the true nodes with short axis >= 10 mm (in either scan) that are matched to the
  right node or rightly called new / vanished (target >= 95 %), with the true segmentations;
- volume change: median absolute error in percentage points against the true change of the node's
  shape, with the true segmentations (target <= 10 pp) and with the model's (``--predict``);
- RECIST 1.1 category: the pipeline's against the truth's (true segmentations, true matching) per pair
  (target >= 90 %);
- registration + matching time per pair (target <= 60 s on 2 cores for a median-size case).

    OMP_NUM_THREADS=2 python benchmarks/bench_followup.py --pairs 4            # LNQ-size grids
    OMP_NUM_THREADS=2 python benchmarks/bench_followup.py --pairs 4 --small    # 40 x 128 x 128, quick
    OMP_NUM_THREADS=2 python benchmarks/bench_followup.py --pairs 4 --predict  # also the bundled model
    OMP_NUM_THREADS=2 python benchmarks/bench_followup.py --pairs 4 --predict --no-region  # nodes anywhere
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from lnq_napari.followup import compare_nodes
from lnq_napari.followup.recist import recist
from lnq_napari.io.volume import Volume
from lnq_napari.phantom.dataset import case_seed
from lnq_napari.phantom.followup import SCENARIOS, make_followup
from lnq_napari.quantify import measure_nodes

SMALL = dict(shape=(40, 128, 128), spacing=(2.6, 2.6, 6.0))


def truth_labels(case) -> Volume:
    """Target nodes with their phantom ids."""
    inst = np.asarray(case.instances.array).astype(np.int32)
    return case.instances.with_array(np.where(np.asarray(case.full.array) > 0, inst, 0))


def majority(pred: Volume, truth: Volume) -> dict[int, int]:
    """Truth node id -> the predicted node id that covers most of it (absent when none does)."""
    p, t = np.asarray(pred.array), np.asarray(truth.array)
    both = (p > 0) & (t > 0)
    out: dict[int, int] = {}
    best: dict[int, int] = {}
    pairs, counts = np.unique(np.stack([t[both], p[both]]), axis=1, return_counts=True)
    for (tid, pid), n in zip(pairs.T, counts):
        if n > best.get(int(tid), 0):
            best[int(tid)], out[int(tid)] = int(n), int(pid)
    return out


def score_pair(pair, result, small_ids: set) -> dict:
    """Matching hits and volume errors of one comparison on the true segmentations."""
    rows = {(r.baseline_id, r.followup_id): r for r in result.rows}
    hits = total = 0
    errors = []
    for c in pair.truth["changes"]:
        if c["status"] == "absent" or (c["baseline_id"], c["followup_id"]) in small_ids:
            continue
        total += 1
        row = rows.get((c["baseline_id"], c["followup_id"]))
        hits += bool(row is not None and row.status == c["status"])
        if c["status"] == "matched" and row is not None and row.volume_change_pct is not None:
            errors.append(abs(row.volume_change_pct - c["volume_change_pct"]))
    return {"hits": hits, "total": total, "errors": errors}


def true_recist(pair, base_rows, follow_rows) -> str:
    matches = {c["baseline_id"]: c["followup_id"] for c in pair.truth["changes"] if c["status"] == "matched"}
    return recist(base_rows, follow_rows, matches).overall


def predicted_errors(pair, predictor, region: bool = True) -> tuple[list[float], dict, str]:
    """Volume-change errors (pp) with the model's nodes, why true pairs were lost, the RECIST category.

    A true matched pair is lost when the model missed the node in the baseline or the follow-up, or
    found both but the pipeline did not pair them."""
    from lnq_napari import api

    segs = [api.find_nodes(case.ct, predictor, region=region).mask for case in (pair.baseline, pair.followup)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_nodes(pair.baseline.ct, segs[0], pair.followup.ct, segs[1])
    to_pred = [majority(seg, truth_labels(case)) for seg, case in zip(segs, (pair.baseline, pair.followup))]
    rows = {(r.baseline_id, r.followup_id): r for r in result.rows}
    errors, lost = [], {"baseline": 0, "followup": 0, "unpaired": 0}
    for c in pair.truth["changes"]:
        if c["status"] != "matched":
            continue
        key = (to_pred[0].get(c["baseline_id"]), to_pred[1].get(c["followup_id"]))
        row = rows.get(key)
        if key[0] is None:
            lost["baseline"] += 1
        elif key[1] is None:
            lost["followup"] += 1
        elif row is None or row.volume_change_pct is None:
            lost["unpaired"] += 1
        else:
            errors.append(abs(row.volume_change_pct - c["volume_change_pct"]))
    return errors, lost, result.recist.overall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="40 x 128 x 128 phantoms at 2.6 x 2.6 x 6 mm")
    parser.add_argument("--predict", action="store_true", help="also with the bundled model's nodes")
    parser.add_argument("--no-region", action="store_true",
                        help="predicted nodes not restricted to the mediastinum region")
    args = parser.parse_args()
    import SimpleITK as sitk

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    grid = SMALL if args.small else {}
    predictor = None
    if args.predict:
        from lnq_napari.inference import Predictor

        predictor = Predictor(None, device="cpu")
    hits = total = 0
    errors, pred_errors, times, agree, pred_agree, shapes = [], [], [], 0, 0, []
    pred_lost = {"baseline": 0, "followup": 0, "unpaired": 0}
    for i in range(args.pairs):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        pair = make_followup(case_seed(args.seed, i), scenario=scenario, **grid)
        base, follow = truth_labels(pair.baseline), truth_labels(pair.followup)
        start = time.perf_counter()
        result = compare_nodes(pair.baseline.ct, base, pair.followup.ct, follow)
        seconds = time.perf_counter() - start
        base_rows, follow_rows = measure_nodes(base), measure_nodes(follow)
        sa_b = {r.id: r.short_axis_mm for r in base_rows}
        sa_f = {r.id: r.short_axis_mm for r in follow_rows}
        small = {(c["baseline_id"], c["followup_id"]) for c in pair.truth["changes"]
                 if max(sa_b.get(c["baseline_id"], 0.0), sa_f.get(c["followup_id"], 0.0)) < 10.0}
        s = score_pair(pair, result, small)
        hits, total = hits + s["hits"], total + s["total"]
        errors += s["errors"]
        truth_category = true_recist(pair, base_rows, follow_rows)
        agree += result.recist.overall == truth_category
        times.append(seconds)
        shapes.append(pair.baseline.ct.shape)
        line = (f"pair {i + 1} ({scenario}, {pair.baseline.ct.shape}): {s['hits']}/{s['total']} nodes right, "
                f"volume error median {np.median(s['errors']) if s['errors'] else float('nan'):.1f} pp, "
                f"RECIST {result.recist.overall} (truth {truth_category}), {seconds:.1f} s "
                f"(registration {result.quality.seconds:.1f} s, residual "
                f"{result.quality.mean_distance_mm or float('nan'):.1f} mm)")
        if predictor is not None:
            e, lost, category = predicted_errors(pair, predictor, region=not args.no_region)
            pred_errors += e
            for key, n in lost.items():
                pred_lost[key] += n
            pred_agree += category == truth_category
            line += (f"; predicted: volume error median {np.median(e) if e else float('nan'):.1f} pp, "
                     f"true pairs lost {lost}, RECIST {category}")
        print(line, flush=True)
    print(f"\n{args.pairs} pairs, {'small' if args.small else 'LNQ-size'} grids, {threads} thread(s)")
    share = 100.0 * hits / max(total, 1)
    print(f"matching (nodes >= 10 mm, true segmentations): {hits}/{total} = {share:.1f} %")
    print(f"volume change, median abs error (true segmentations): {np.median(errors):.1f} pp over "
          f"{len(errors)} matched nodes")
    if predictor is not None:
        med = np.median(pred_errors) if pred_errors else float("nan")
        print(f"volume change, median abs error (predicted segmentations): {med:.1f} pp over "
              f"{len(pred_errors)} nodes; true pairs lost: model missed the node at baseline "
              f"{pred_lost['baseline']}, at follow-up {pred_lost['followup']}, found but not paired "
              f"{pred_lost['unpaired']}")
        print(f"RECIST agreement (predicted segmentations): {pred_agree}/{args.pairs}")
    print(f"RECIST agreement (true segmentations): {agree}/{args.pairs} = {100.0 * agree / args.pairs:.0f} %")
    print(f"registration + matching per pair: median {np.median(times):.1f} s, max {np.max(times):.1f} s")


if __name__ == "__main__":
    main()
