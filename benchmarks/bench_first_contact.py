"""First contact: the bundled model on a real chest CT and its crops, and the mediastinum region's cost.

    python benchmarks/bench_first_contact.py [--margins 0,5,10,15,20] [--margin 10] [--cases 2]
        [--sites default,habitus,nodes] [--json out.json]

Real CT: CTChest4 (slicerio's test data: a whole chest, 3 x 3 x 10 mm) and three crops of it: the upper
chest, the lung bases with the upper abdomen, and the abdomen below the lungs. Per CT: the time of
:func:`lnq_napari.api.find_nodes` with the region on (``--margin``), whether lungs were found, the nodes
without the region, how many of them lie outside the region at each margin, and the suggestions with the
region on and off. Phantom: held-out cases (seeds 33, 34, ...; the bundled model trained on data set
seed 11) of each site, median Dice, node recall and false nodes without the region and with it at each
margin, and the true nodes lying mostly outside the region (``truth_out``). Each CT is predicted once;
the region is then applied as the Predictor applies it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np

from lnq_napari import api, metrics
from lnq_napari.anatomy import mediastinum_region
from lnq_napari.components import label_components
from lnq_napari.inference import Prediction, Predictor, postprocess
from lnq_napari.io.readers import read_volume
from lnq_napari.io.volume import Volume
from lnq_napari.phantom import make_case

CROPS = {"CTChest4": (0, None), "upper chest": (17, None), "lung bases": (0, 13), "abdomen": (0, 7)}
PHANTOM_GRID = {"shape": (40, 160, 160), "spacing": (2.0, 2.0, 6.0)}  # x, y, z mm: 320 x 320 x 240 mm


def crop_z(ct: Volume, z0: int, z1: int | None) -> Volume:
    """Slices ``z0:z1`` of ``ct`` on their own exact grid."""
    origin = ct.index_to_physical(np.array([[z0, 0, 0]], dtype=float))[0]
    return Volume(np.ascontiguousarray(ct.array[z0:z1]), ct.spacing, tuple(float(v) for v in origin),
                  ct.direction)


class OnceThenRegion:
    """The bundled Predictor run once per CT (region off); each call then applies the region at
    ``margin`` (None: none) exactly as :meth:`Predictor.predict` does."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor, self.config, self.margin = predictor, predictor.config, None
        self._cache: tuple[int, Prediction] | None = None
        self.seconds = 0.0

    def raw(self, ct: Volume) -> Prediction:
        if self._cache is None or self._cache[0] != id(ct):
            started = time.perf_counter()
            self._cache = (id(ct), self.predictor.predict(ct, region=False))
            self.seconds = time.perf_counter() - started
        return self._cache[1]

    def predict(self, ct: Volume, progress=None, cancel=None, region: bool = True) -> Prediction:
        raw = self.raw(ct)
        if self.margin is None or not region:
            return raw
        inf = self.config.inference
        inside = mediastinum_region(ct, self.margin)
        mask = postprocess(np.asarray(raw.probabilities.array), ct.spacing_zyx, float(inf.threshold),
                           float(inf.min_component_mm3), hu=ct.array, max_mean_hu=inf.max_mean_hu,
                           region=inside)
        return Prediction(raw.probabilities, ct.with_array(mask), raw.model_version, inside)


def outside(mask: np.ndarray, region: np.ndarray) -> int:
    """Nodes (26-connected components) of ``mask`` with most of their voxels outside ``region``."""
    lab, n = label_components(mask > 0)
    if n == 0:
        return 0
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    inside = np.bincount(lab.ravel(), weights=region.ravel().astype(float), minlength=n + 1)[1:]
    return int(np.sum(inside < 0.5 * counts))


def real_ct_rows(runner: OnceThenRegion, margins: list[float], margin: float) -> list[dict]:
    full = read_volume(_ctchest4())
    rows = []
    for name, (z0, z1) in CROPS.items():
        ct = crop_z(full, z0, z1)
        runner.margin = None
        started = time.perf_counter()
        off = api.find_nodes(ct, runner, region=False)
        seconds_off = time.perf_counter() - started  # prediction + suggestions + table
        runner.margin = margin
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.perf_counter()
            on = api.find_nodes(ct, runner)
            region_s = time.perf_counter() - started
        lungs = not any("no lungs" in str(w.message) for w in caught)
        row = {"ct": name, "shape": "x".join(map(str, ct.shape)),
               "seconds": round(runner.seconds + region_s, 1),
               "predict_s": round(runner.seconds, 1), "lungs": lungs, "nodes_off": len(off.nodes),
               "nodes_on": len(on.nodes), "sugg_off": len(off.suggestions), "sugg_on": len(on.suggestions),
               "pipeline_off_s": round(seconds_off, 1)}
        mask = np.asarray(off.mask.array)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for m in margins:
                row[f"outside@{m:g}"] = outside(mask, mediastinum_region(ct, m))
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def phantom_rows(runner: OnceThenRegion, sites: list[str], n_cases: int, margins: list[float]) -> list[dict]:
    rows = []
    for site in sites:
        for k in range(n_cases):
            case = make_case(33 + k, site=site, **PHANTOM_GRID)
            ct, truth = case.ct, case.full
            raw = runner.raw(ct)
            row = {"site": site, "seed": 33 + k, "predict_s": round(runner.seconds, 1)}
            for m in [None, *margins]:
                runner.margin = m
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    pred = runner.predict(ct)
                if m is not None and any("no lungs" in str(w.message) for w in caught):
                    row["no_lungs"] = True
                score = metrics.evaluate_case(pred.mask, truth)
                key = "off" if m is None else f"{m:g}"
                row[f"dice@{key}"] = round(float(score.dice), 4)
                row[f"recall@{key}"] = score.recall
                row[f"fp@{key}"] = score.fp_nodes
                if pred.region is not None:  # true nodes the region would cut away (mostly outside it)
                    row[f"truth_out@{key}"] = outside(np.asarray(truth.array), pred.region)
            del raw
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def summary(rows: list[dict], margins: list[float]) -> list[dict]:
    """Per site: median Dice, mean recall, total false nodes without the region and at each margin."""
    out = []
    for site in dict.fromkeys(r["site"] for r in rows):
        mine = [r for r in rows if r["site"] == site]
        line = {"site": site, "cases": len(mine)}
        for key in ["off", *[f"{m:g}" for m in margins]]:
            line[f"dice@{key}"] = round(statistics.median(r[f"dice@{key}"] for r in mine), 4)
            line[f"min_delta@{key}"] = round(min(r[f"dice@{key}"] - r["dice@off"] for r in mine), 4)
            line[f"fp@{key}"] = sum(r[f"fp@{key}"] for r in mine)
            if key != "off":
                line[f"truth_out@{key}"] = sum(r[f"truth_out@{key}"] for r in mine)
        out.append(line)
    return out


def _ctchest4() -> str:
    import slicerio

    return slicerio.get_testdata_file("CTChest4.nrrd")


def _line(row: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in row.items())


def _table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margins", default="0,5,10,15,20", help="region margins (mm) to compare")
    parser.add_argument("--margin", type=float, default=10.0, help="the margin of the 'on' columns (mm)")
    parser.add_argument("--cases", type=int, default=2, help="phantom cases per site")
    parser.add_argument("--sites", default="default,habitus,nodes", help="phantom sites")
    parser.add_argument("--skip-real", action="store_true", help="phantom only")
    parser.add_argument("--json", default=None, help="write all rows here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    margins = [float(m) for m in args.margins.split(",")]
    runner = OnceThenRegion(Predictor(None, device="cpu"))
    real = [] if args.skip_real else real_ct_rows(runner, margins, args.margin)
    phantom = phantom_rows(runner, args.sites.split(","), args.cases, margins)
    sites = summary(phantom, margins)
    if real:
        print("\nReal CT (bundled model):\n" + _table(real))
    print("\nPhantom, held-out, per case:\n" + _table(phantom))
    print("\nPhantom, per site (median Dice; min_delta: worst case's Dice change vs off; fp: false nodes; "
          "truth_out: true nodes mostly outside the region):\n"
          + _table(sites))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"real": real, "phantom": phantom, "sites": sites}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
