"""Prediction speed and peak memory of the bundled (or given) model on LNQ-sized phantom CTs.

    python benchmarks/bench_predict.py [--model DIR] [--device cpu] [--repeats 3] [--sizes 114,656]
    python benchmarks/bench_predict.py --sizes 114 --batches 1,2   # windows one / two at a time

Each size runs in its own subprocess (so peak RSS is that size's): 512 x 512 x N slices at
0.83 x 0.83 mm, 3 mm slices for N <= 200, else 0.625 mm. Prints the median wall time over repeats
(model loading excluded, reading excluded) and the process's peak resident memory. ``--batches`` times
the predictor with that many windows through the network at once (its own choice by default), the
batches alternating within each repeat, and prints each median's ratio to the first batch's.
Targets (2-core CPU): 114 slices <= 20 s and <= 3 GB; 656 slices <= 2 min and <= 6 GB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from lnq_napari.inference import Predictor
from lnq_napari.phantom import make_case
n, model, device, repeats, threads, batches = sys.argv[1:7]
n, repeats = int(n), int(repeats)
if int(threads) > 0:
    torch.set_num_threads(int(threads))
dz = 3.0 if n <= 200 else 0.625
ct = make_case(11, shape=(n, 512, 512), spacing=(0.83, 0.83, dz)).ct
predictor = Predictor(None if model == "bundled" else model, device=device)
batches = [int(b) for b in batches.split(",") if b] or [predictor.max_batch]
times = {b: [] for b in batches}
for _ in range(repeats):
    for b in batches:
        predictor.max_batch = b
        t = time.perf_counter()
        pred = predictor.predict(ct)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[b].append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
print(json.dumps({"slices": n, "slice_mm": dz, "times_s": times, "peak_rss_gb": peak,
                  "mask_voxels": int(pred.mask.array.sum()), "threads": torch.get_num_threads(),
                  "version": predictor.version}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="114,656")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batches", default="", help="windows at once to compare, e.g. 1,2 (default: the "
                        "predictor's own)")
    args = parser.parse_args(argv)
    for n in [int(s) for s in args.sizes.split(",") if s]:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), args.model, args.device, str(args.repeats),
             str(args.threads), args.batches],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        medians = {batch: statistics.median(times) for batch, times in r["times_s"].items()}
        first = next(iter(medians))
        for batch, times in r["times_s"].items():
            median = medians[batch]
            ratio = f", {median / medians[first]:.2f} x batch {first}'s" if len(medians) > 1 else ""
            print(f"512x512x{r['slices']} ({r['slice_mm']} mm slices), {args.device}, {r['threads']} "
                  f"threads, {batch} window(s) at once: median {median:.1f} s over {len(times)} "
                  f"({', '.join(f'{t:.1f}' for t in times)}){ratio}; peak RSS {r['peak_rss_gb']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
