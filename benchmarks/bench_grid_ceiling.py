"""The Dice a perfect model could reach through the model's grid: each case's complete truth resampled to
the network's grid (linear) and back onto the CT grid (linear, >= 0.5), scored against itself.

    python benchmarks/bench_grid_ceiling.py --data DIR_WITH_FULL_NRRD [--model FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import SimpleITK as sitk

    from lnq_napari.io.readers import read_labels, read_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.metrics import evaluate_case
    from lnq_napari.model import resolve_model
    from lnq_napari.model.checkpoint import read_config
    from lnq_napari.preprocess import prepare, to_ct_grid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None, help="model folder (its preprocessing)")
    args = parser.parse_args()
    prep = read_config(resolve_model(args.model)).preprocessing
    rows = []
    for ct_path in sorted(Path(args.data).glob("*-ct.nrrd")):
        ct = read_volume(ct_path)
        full = read_labels(str(ct_path).replace("-ct.nrrd", "-full.nrrd"), reference=ct)
        prepared = prepare(ct, prep)
        truth = sitk.DICOMOrient(sitk.Cast(full.to_sitk(), sitk.sitkFloat32), prep.orientation)
        on_grid = sitk.Resample(truth, prepared.grid, sitk.Transform(), sitk.sitkLinear, 0.0)
        back = to_ct_grid(sitk.GetArrayFromImage(on_grid), prepared, ct) >= 0.5
        mask = Volume(back.astype(np.uint8), spacing=ct.spacing, origin=ct.origin, direction=ct.direction)
        row = evaluate_case(mask, full)
        rows.append(row)
        print(f"{ct_path.name}: Dice {row.dice:.3f}, ASSD {row.assd_mm:.2f} mm", flush=True)
    print(f"median Dice {np.median([r.dice for r in rows]):.3f}, "
          f"median ASSD {np.median([r.assd_mm for r in rows]):.2f} mm over {len(rows)} cases")


if __name__ == "__main__":
    main()
