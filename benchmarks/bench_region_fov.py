"""The mediastinum region on a field of view that cuts through the lungs (a reconstruction narrower than
the chest, a crop): how much of the whole CT's region a crop keeps, and how much of the crop it covers.

    python benchmarks/bench_region_fov.py [--cases 3]

CTChest4 (slicerio's real chest CT) and ``--cases`` full-size phantom cases (seeds 33, 34, ...), each cut
three ways inside its lungs' extent: laterally (both lungs cut), anteriorly (the front chest wall and the
lungs' front cut) and both. Per crop: ``kept``, the share of the whole CT's region (cropped alike) that the
crop's own region covers (1.0: no node the whole CT would keep is dropped), and ``covers``, the share of
the crop that is region (1.0 would be no restriction). For phantoms also ``nodes_out``: true nodes lying
mostly outside the crop's region. Run it with ``PYTHONPATH`` on another checkout to compare.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from lnq_napari.components import label_components
from lnq_napari.followup.match import sub_volume
from lnq_napari.io.readers import read_volume
from lnq_napari.io.volume import Volume
from lnq_napari.phantom import make_case
from lnq_napari.preprocess import coarse_anatomy, mediastinum_region


def crops(ct: Volume) -> dict[str, tuple[slice, slice, slice]]:
    """Boxes that cut the lungs: laterally, anteriorly and both (a few voxels inside the lungs' extent)."""
    anatomy = coarse_anatomy(np.asarray(ct.array), ct.spacing_zyx)
    lungs = anatomy.upsample(anatomy.lungs)
    xs, ys = np.nonzero(lungs.any(axis=(0, 1)))[0], np.nonzero(lungs.any(axis=(0, 2)))[0]
    dx, dy = max(2, (xs.max() - xs.min()) // 25), max(2, (ys.max() - ys.min()) // 20)
    every = slice(None)
    lateral = slice(int(xs.min() + dx), int(xs.max() - dx))
    anterior = slice(int(ys.min() + dy), None)
    return {"lateral": (every, every, lateral), "anterior": (every, anterior, every),
            "both": (every, anterior, lateral)}


def rows_of(name: str, ct: Volume, truth: np.ndarray | None) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = mediastinum_region(ct, 10.0)
        rows = []
        for cut, box in crops(ct).items():
            region = mediastinum_region(sub_volume(ct, box), 10.0)
            row = {"ct": name, "crop": cut, "kept": float(region[whole[box]].mean()),
                   "covers": float(region.mean())}
            if truth is not None:
                parts, n = label_components(truth[box])
                row["nodes_out"] = sum(region[parts == k].mean() < 0.5 for k in range(1, n + 1))
                row["nodes"] = n
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="full-size phantom cases (default 3)")
    args = parser.parse_args(argv)
    import slicerio

    rows = rows_of("CTChest4", read_volume(slicerio.get_testdata_file("CTChest4.nrrd")), None)
    for k in range(args.cases):
        case = make_case(33 + k)
        rows += rows_of(case.case_id, case.ct, np.asarray(case.full.array) > 0)
    for row in rows:
        nodes = f", true nodes outside {row['nodes_out']} of {row['nodes']}" if "nodes" in row else ""
        print(f"{row['ct']:>22} {row['crop']:>9}: kept {row['kept']:.3f} of the whole CT's region, "
              f"covers {row['covers']:.3f} of the crop{nodes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
