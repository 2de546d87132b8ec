"""Speed of the synthetic chest CT phantom.

Prints the median wall-clock and CPU time of `make_case` on an LNQ-median grid (512 x 512 x 114,
0.83 mm pixels, 3 mm slices) and of writing one case in the LNQ layout (gzip NRRD).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_phantom.py --repeats 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

from lnq_napari.phantom import make_case, write_dataset


def _time(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=114)
    args = parser.parse_args(argv)
    shape, spacing = (args.slices, 512, 512), (0.83, 0.83, 3.0)

    make_case(0, shape=(24, 96, 96), spacing=(4.0, 4.0, 10.0))  # warm-up (imports)
    runs = [_time(lambda s=s: make_case(100 + s, shape=shape, spacing=spacing)) for s in range(args.repeats)]
    wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(
        f"make_case {shape[2]}x{shape[1]}x{shape[0]}: median wall {wall:.2f} s, CPU {cpu:.2f} s "
        f"over {args.repeats} seeds (min wall {min(r[0] for r in runs):.2f} s)"
    )

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process so far: {peak:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        w, c = _time(lambda: write_dataset(tmp, 1, seed=1, shape=shape, spacing=spacing))
    print(f"write_dataset, 1 case incl. generation and gzip NRRD: wall {w:.2f} s, CPU {c:.2f} s")


if __name__ == "__main__":
    main()
