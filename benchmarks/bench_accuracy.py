"""Accuracy on held-out phantom cases with complete truth: challenge Dice, ASSD, node recall, FP nodes.

    lnq-napari phantom /tmp/lnq-phantom-test --cases 20 --seed 2      # or write_dataset(..., prefix=...)
    python benchmarks/bench_accuracy.py --data /tmp/lnq-phantom-test \
        --model ours=/tmp/lnq-models/ours --model naive=/tmp/lnq-models/naive [--json out.json]

Each model predicts every ``*-ct.nrrd`` once (probabilities cached as float16 under ``--cache``); the
post-processing grid (``--thresholds``, ``--min-mm3``, ``--min-peak``, ...) is then scored against
``*-full.nrrd`` without predicting again. Nodes count for recall when their equivalent diameter is >= 10 mm.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np


def _cases(data: Path, limit: int | None) -> list[tuple[str, Path, Path]]:
    out = []
    for ct in sorted(data.glob("*-ct.nrrd")):
        cid = ct.name[: -len("-ct.nrrd")]
        full = ct.with_name(f"{cid}-full.nrrd")
        if full.exists():
            out.append((cid, ct, full))
    return out[:limit] if limit else out


def _key(predictor) -> str:
    return str(predictor.config.weights_sha256) + str(predictor.config.inference)


def _probabilities(name: str, model: str, cases, cache: Path, device: str) -> dict[str, Path]:
    from lnq_napari.inference import Predictor
    from lnq_napari.io.readers import read_volume

    folder = cache / name
    folder.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, device=device)
    key = _key(predictor)
    paths = {}
    for cid, ct_path, _ in cases:
        path = folder / f"{cid}.npy"
        stamp = folder / f"{cid}.version"
        if not (path.exists() and stamp.exists() and stamp.read_text() == key):
            t = time.perf_counter()
            pred = predictor.predict(read_volume(ct_path))
            np.save(path, pred.probabilities.array.astype(np.float16))
            stamp.write_text(key)
            dt = time.perf_counter() - t
            print(f"  {name} {cid}: predicted in {dt:.1f} s", file=sys.stderr, flush=True)
        paths[cid] = path
    return paths


def _score_case(cid: str, ct_path: Path, full_path: Path, prob_path: Path, combos: list) -> list:
    """CaseScores of one case per post-processing combination ``(thr, min_mm3, max_hu, region_mm, peak)``."""
    from lnq_napari.anatomy import mediastinum_region
    from lnq_napari.inference import postprocess
    from lnq_napari.io.readers import read_labels, read_volume
    from lnq_napari.metrics import evaluate_case

    gt, ct = read_labels(full_path), read_volume(ct_path)
    prob = np.load(prob_path).astype(np.float32)
    regions = {rg: mediastinum_region(ct, rg) for rg in {c[3] for c in combos} if rg is not None}
    rows = []
    for thr, mn, mh, rg, pk in combos:
        mask = gt.with_array(postprocess(prob, gt.spacing_zyx, thr, mn, hu=ct.array, max_mean_hu=mh,
                                         region=regions.get(rg), min_peak=pk))
        rows.append(evaluate_case(mask, gt))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", action="append", required=True, help="name=folder (repeatable)")
    parser.add_argument("--cache", default="/tmp/lnq-bench-cache")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--thresholds", default="", help="comma list; default: each model's own")
    parser.add_argument("--min-mm3", default="", help="comma list; default: each model's own")
    parser.add_argument("--max-hu", default="", help="comma list of component mean-HU limits ('none': off)")
    parser.add_argument("--region-mm", default="", help="comma list of mediastinum margins ('none': off)")
    parser.add_argument("--min-peak", default="", help="comma list of peak floors; default: the model's")
    parser.add_argument("--workers", type=int, default=1, help="processes that score cases in parallel")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from lnq_napari.metrics import summarize
    from lnq_napari.model.checkpoint import read_config

    cases = _cases(Path(args.data), args.limit)
    if not cases:
        print(f"no *-ct.nrrd with *-full.nrrd in {args.data}", file=sys.stderr)
        return 2
    results = {}
    for spec in args.model:
        name, _, folder = spec.partition("=")
        inf = read_config(folder).inference
        thresholds = [float(t) for t in args.thresholds.split(",") if t] or [float(inf.threshold)]
        mins = [float(m) for m in args.min_mm3.split(",") if m] or [float(inf.min_component_mm3)]
        hus = [None if h == "none" else float(h) for h in args.max_hu.split(",") if h] or [
            inf.max_mean_hu]
        regions = [None if h == "none" else float(h) for h in args.region_mm.split(",") if h] or [
            inf.mediastinum_margin_mm]
        peaks = [float(k) for k in args.min_peak.split(",") if k] or [float(inf.min_peak)]
        probs = _probabilities(name, folder, cases, Path(args.cache), args.device)
        combos = list(itertools.product(thresholds, mins, hus, regions, peaks))
        jobs = [(cid, ct, full, probs[cid], combos) for cid, ct, full in cases]
        if args.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                per_case = list(pool.map(_score_case, *zip(*jobs)))
        else:
            per_case = [_score_case(*job) for job in jobs]
        for k, (thr, mn, mh, rg, pk) in enumerate(combos):
            scores = [case_rows[k] for case_rows in per_case]
            s = summarize(scores)
            key = f"{name} thr={thr:g} min={mn:g} maxhu={mh} region={rg} peak={pk:g}"
            results[key] = {"summary": s.to_dict(),
                            "cases": [{"case": cid, **r.to_dict()} for (cid, *_), r in zip(cases, scores)]}
            print(f"{key:44s} Dice median {s.dice_median:.3f} mean {s.dice_mean:.3f} | "
                  f"ASSD median {s.assd_median:.2f} mm (worst-filled {s.assd_median_worst:.2f}) | "
                  f"recall>=10mm {s.recall:.3f} ({s.nodes_hit}/{s.nodes_gt}) | "
                  f"FP nodes/case {s.fp_per_case:.2f} | n={s.n_cases}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
