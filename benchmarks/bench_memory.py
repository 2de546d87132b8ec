"""Peak memory of a prediction on the largest LNQ-size CT (512 x 512 x 656, int16) on the CPU.

    python benchmarks/bench_memory.py                     # Predictor.predict, then api.find_nodes
    python benchmarks/bench_memory.py --stages            # also the peak of each step of predict
    python benchmarks/bench_memory.py --cli               # also `lnq-napari predict` on a file (in /tmp)
    python benchmarks/bench_memory.py --side 1024 --slices 450 --cli   # a high-resolution CT

The CT is a phantom chest drawn at a quarter of the voxels and repeated up to 656 x 512 x 512 at
0.83 x 0.83 x 0.625 mm (cheap to build; 344 MB of int16). Each measurement runs in its own process:
the peak resident memory (VmHWM of /proc/self/status, reset through /proc/self/clear_refs once the CT
is built and the model loaded) is printed with the resident memory before the step, so the figure is
what the step itself needs on top. Target: the whole process within 6 GB (issue 15).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1024**3
CLI = r"""
import json, resource, sys
from lnq_napari.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""
CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import bench_memory as b
print(json.dumps(b.child(*sys.argv[2:])))
"""


# ------------------------------------------------------------------ in the measuring process
def rss_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: now, VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Start a new peak: VmHWM drops to the resident memory now (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def big_ct(slices: int = 656, seed: int = 11, side: int = 512):
    """A ``side`` x ``side`` x ``slices`` phantom CT (0.83 mm x 512 / ``side`` in plane, 0.625 mm slices),
    drawn at 256 x 256 x slices / 4 and repeated up: its peak while building is a fraction of the CT's."""
    import numpy as np

    from lnq_napari.io.volume import Volume
    from lnq_napari.phantom import make_case

    small = make_case(seed, shape=(slices // 4, 256, 256), spacing=(1.66, 1.66, 2.5)).ct
    up = side // 256
    array = np.repeat(np.repeat(np.repeat(small.array, 4, axis=0), up, axis=1), up, axis=2)
    return Volume(array, (0.83 * 512 / side, 0.83 * 512 / side, 0.625), small.origin, small.direction)


def stage_peaks(predictor, ct) -> list[tuple[str, float, float]]:
    """(step, resident GB before, peak GB during) for each step of ``Predictor.predict``, run one by
    one with the predictor's own settings."""
    import torch

    from lnq_napari import inference
    from lnq_napari.anatomy import mediastinum_region
    from lnq_napari.preprocess import pad_value, prepare

    inf, prep_cfg = predictor.config.inference, predictor.config.preprocessing
    out = []

    def measure(name, fn, *args, **kwargs):
        before = rss_kb("VmRSS") / 1024**2
        reset_peak()
        value = fn(*args, **kwargs)
        out.append((name, before, rss_kb("VmHWM") / 1024**2))
        return value

    def run(batch, done, total):
        with torch.inference_mode():
            return torch.sigmoid(predictor.network(torch.from_numpy(batch))).numpy()

    prepared = measure("prepare (orient, ROI, resample)", prepare, ct, prep_cfg)
    region = None
    if inf.mediastinum_margin_mm is not None:
        region = measure("mediastinum region", mediastinum_region, ct, float(inf.mediastinum_margin_mm))
    prob = measure("sliding window", inference.sliding_window, prepared.image, inf.patch_size,
                   float(inf.overlap), run, pad_value(prep_cfg), int(inf.sw_batch_size))
    prob_ct = measure("probabilities to the CT grid", inference.probabilities_on_ct, prob, prepared, ct)
    del prepared, prob
    measure("post-processing", inference.postprocess, prob_ct, ct.spacing_zyx, float(inf.threshold),
            float(inf.min_component_mm3), hu=ct.array, max_mean_hu=inf.max_mean_hu, region=region)
    return out


def child(what: str, slices: str, side: str, threads: str, stages: str, path: str = "") -> dict:
    """One measurement (run in a fresh process): ``what`` is "predict" or "find_nodes"."""
    import torch

    from lnq_napari import api
    from lnq_napari.inference import Predictor

    torch.set_num_threads(int(threads))
    ct = big_ct(int(slices), side=int(side))
    predictor = Predictor(None, device="cpu")
    result: dict = {"what": what, "shape": list(ct.shape), "spacing": list(ct.spacing),
                    "ct_gb": ct.array.nbytes / GB, "threads": torch.get_num_threads()}
    if stages == "1":
        result["stages"] = stage_peaks(predictor, ct)
    result["rss_before_gb"] = rss_kb("VmRSS") / 1024**2
    reset_peak()
    start = time.perf_counter()
    if what == "predict":
        mask = predictor.predict(ct).mask.array
    else:
        mask = api.find_nodes(ct, predictor).mask.array > 0
    result["wall_s"] = time.perf_counter() - start
    result["peak_gb"] = rss_kb("VmHWM") / 1024**2
    result["mask_voxels"] = int(mask.sum())
    if path:
        from lnq_napari.io.readers import write_volume

        write_volume(path, ct)
    return result


# ------------------------------------------------------------------ the driver
def measure(what: str, slices: int, side: int, threads: int, stages: bool = False, path: str = "") -> dict:
    """Run :func:`child` in a fresh, low-priority process; its result."""
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(["nice", "-n", "10", sys.executable, "-c", CHILD, here, what, str(slices),
                           str(side), str(threads), "1" if stages else "0", path],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_peak(path: str, threads: int) -> tuple[float, float]:
    """(peak GB, wall s) of `lnq-napari predict PATH -o OUT --device cpu` in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="lnq-mem-out-") as out:
        start = time.perf_counter()
        done = subprocess.run(["nice", "-n", "10", sys.executable, "-c", CLI, "predict", path, "-o", out,
                               "--device", "cpu"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"lnq-napari predict failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_gb"], wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=656)
    parser.add_argument("--side", type=int, default=512, choices=(256, 512, 768, 1024),
                        help="in-plane size (1024: a high-resolution CT at 0.415 mm)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads")
    parser.add_argument("--stages", action="store_true", help="also the peak of each step of predict")
    parser.add_argument("--cli", action="store_true", help="also `lnq-napari predict` on a written file")
    parser.add_argument("--limit-gb", type=float, default=6.0)
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="lnq-mem-") as tmp:
        path = str(Path(tmp) / "big-ct.nrrd") if args.cli else ""
        for k, what in enumerate(("predict", "find_nodes")):
            r = measure(what, args.slices, args.side, args.threads, args.stages and what == "predict",
                        path if k == 0 else "")
            for name, before, peak in r.get("stages", []):
                print(f"  step {name:32s} resident before {before:5.2f} GB  peak {peak:5.2f} GB  "
                      f"(+{peak - before:4.2f})")
            z, y, x = r["shape"]
            print(f"{what:10s} {x}x{y}x{z} int16 ({r['ct_gb']:.2f} GB), cpu, {r['threads']} thread(s): "
                  f"peak RSS {r['peak_gb']:.2f} GB (resident before {r['rss_before_gb']:.2f} GB, "
                  f"+{r['peak_gb'] - r['rss_before_gb']:.2f}), {r['wall_s']:.0f} s, "
                  f"{r['mask_voxels']} mask voxels", flush=True)
            failed |= r["peak_gb"] > args.limit_gb
        if args.cli:
            peak, wall = cli_peak(path, args.threads)
            print(f"lnq-napari predict (read the NRRD, predict, write the seg): peak RSS {peak:.2f} GB, "
                  f"{wall:.0f} s", flush=True)
            failed |= peak > args.limit_gb
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
