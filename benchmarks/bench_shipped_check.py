"""The original's side of the forgetting check for a lineage from the bundled model: the check figures
shipped with it read, against the same check with another ``check_figures.json`` (an older, stale one:
every case predicted). One run each, the check's phantoms drawn before the clock starts.

    OMP_NUM_THREADS=2 python benchmarks/bench_shipped_check.py [--against OLD_check_figures.json]
    (e.g. git show f15f361:lnq_napari/model/bundled/check_figures.json > /tmp/stale.json)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from lnq_napari.finetuning.forgetting import check_data, check_figures
from lnq_napari.inference import Predictor
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import CHECK_FIGURES
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.workspace.registry import bundled_key


def timed(figures_file: Path | None) -> tuple[float, list[float]]:
    """Seconds the original's check figures take with ``figures_file`` as the shipped ones (None: the
    bundled model's own), and the Dice per case."""
    bundled = Path(resolve_model(None))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "bundled"
        shutil.copytree(bundled, model)
        if figures_file is not None:
            shutil.copy(figures_file, model / CHECK_FIGURES)
        data = check_data(FinetuneConfig(), bundled_key(bundled), bundled)
        for case in data.cases:
            data.load(case)
        start = time.perf_counter()
        (figures,) = check_figures(Predictor, [model], "cpu", data)
        return time.perf_counter() - start, [round(f.dice, 4) for f in figures]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, default=None, help="another check_figures.json to time too")
    args = parser.parse_args()
    for name, file in (("shipped", None), *((("against", args.against),) if args.against else ())):
        seconds, dice = timed(file)
        print(f"{name}: {seconds:.1f} s, Dice per case {dice}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
