"""The nnU-Net predictor backend vs the bundled model on the same held-out phantom cases: seconds per case
(median) and peak memory of the process, each backend in its own process.

    python benchmarks/bench_nnunet_backend.py [--cases 3] [--shape 48,192,192] [--device cpu] [--threads 2]

The nnU-Net model folder is made by nnU-Net's own planner from an ``export-nnunet`` of training phantoms
(``lnq_napari.nnunet.tiny`` with ``--divisor 1``: the planned network at full width, untrained: the
timing is that of a real model of that plan; its masks mean nothing). nnU-Net runs with its defaults
(tile step 0.5, Gaussian blending) with and without test-time mirroring. Needs ``nnunetv2`` (the
``[nnunet]`` extra); skips otherwise. On a GPU (``--device cuda``) the same figures are per case on it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _worker(args) -> None:
    """Load one backend, predict every case, print a JSON line (load s, per-case s, peak RSS MB)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from lnq_napari.io.readers import read_volume
    from lnq_napari.nnunet.select import load_predictor

    start = time.perf_counter()
    predictor = load_predictor(None if args.worker == "bundled" else args.worker, device=args.device)
    load = time.perf_counter() - start
    times = []
    for path in sorted(Path(args.data).glob("*-ct.nrrd")):
        ct = read_volume(path)
        start = time.perf_counter()
        predictor.predict(ct)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    print(json.dumps({"load_s": load, "times": times, "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_gpu_mb": peak_gpu, "version": predictor.version}))


def _run(name: str, model: str, data: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", model, "--data", str(data), "--device", args.device,
           "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS":
                                                                    str(args.threads or 1)})
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return {"name": name, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="held-out cases (default 3)")
    parser.add_argument("--train-cases", type=int, default=2, help="cases nnU-Net plans from (default 2)")
    parser.add_argument("--shape", default="48,192,192", help="phantom z,y,x (default 48,192,192)")
    parser.add_argument("--spacing", default="0.8,0.8,2.5", help="phantom x,y,z mm (default 0.8,0.8,2.5)")
    parser.add_argument("--divisor", type=int, default=1, help="divide nnU-Net's planned widths (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=None, help="folder to keep the data and model in")
    parser.add_argument("--no-mirroring-only", action="store_true", help="skip nnU-Net with mirroring (8x)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    from lnq_napari.nnunet.deps import have_nnunet, nnunet_version

    if not have_nnunet():
        print("nnunetv2 is not installed: skipping (pip install 'lnq-napari[nnunet]')")
        return 0
    from lnq_napari.nnunet.export import export_dataset
    from lnq_napari.nnunet.tiny import plan_dataset, write_model_folder
    from lnq_napari.phantom import write_dataset

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-nnunet-"))
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    write_dataset(work / "train", args.train_cases, seed=101, shape=shape, spacing=spacing)
    write_dataset(work / "test", args.cases, seed=202, shape=shape, spacing=spacing, prefix="lnq2023-test")
    start = time.perf_counter()
    exported = export_dataset(work / "nnUNet_raw", 990, data=work / "train", workers=1)
    export_s = time.perf_counter() - start
    plans = plan_dataset(exported.folder, work / "nnUNet_preprocessed", feature_divisor=args.divisor)
    folder = write_model_folder(plans, exported.dataset_json, work / "nnUNet_results")
    plan = json.loads(plans.read_text())["configurations"]["3d_fullres"]
    print(f"nnunetv2 {nnunet_version()}; {args.cases} held-out phantom cases {shape} at {spacing} mm; "
          f"device {args.device}, {args.threads} threads")
    print(f"export of {args.train_cases} cases: {export_s:.1f} s; nnU-Net plan: patch {plan['patch_size']}, "
          f"spacing {plan['spacing']}, features {plan['architecture']['arch_kwargs']['features_per_stage']}",
          flush=True)
    print(f"{'backend':<24}{'load s':>8}{'median s/case':>15}{'vs bundled':>12}{'peak RSS MB':>13}"
          f"{'peak GPU MB':>13}", flush=True)
    base = None
    runs = (("bundled model", "bundled"), ("nnU-Net, no mirroring", f"nnunet:{folder}?mirroring=off"),
            ("nnU-Net, mirroring", f"nnunet:{folder}"))
    for name, model in runs:
        if name.endswith(", mirroring") and args.no_mirroring_only:
            continue
        r = _run(name, model, work / "test", args)
        med = statistics.median(r["times"])
        base = base or med
        gpu = "" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        print(f"{r['name']:<24}{r['load_s']:>8.2f}{med:>15.2f}{med / base:>11.1f}x{r['peak_rss_mb']:>13.0f}"
              f"{gpu:>13}", flush=True)
    print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
