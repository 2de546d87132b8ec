"""Where a model misses nodes on test cases with complete truth: each truth node's size, its share inside
the mediastinum region, the share the mask covers, the model's peak and mean probability on it, the
thresholded components over it (volume, mean HU) and the CT's spacing: a miss with a confident core but
a small component is the size floor's; one without a confident voxel is the network's.

    python benchmarks/diag_missed_nodes.py --data TEST_FOLDER [--model MODEL] [--all]
"""

from __future__ import annotations

import argparse

import numpy as np

from lnq_napari.components import label_components
from lnq_napari.inference import Predictor
from lnq_napari.io.layout import scan_cases
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.metrics import TARGET_DIAMETER_MM, counted_nodes


def node_rows(ct, truth: np.ndarray, prediction, threshold: float) -> list[dict]:
    """One row per truth node that counts (:func:`lnq_napari.metrics.counted_nodes`)."""
    voxel = float(np.prod(ct.spacing_zyx))
    nodes, count = label_components(truth)
    parts, _ = label_components(prediction.probabilities.array >= threshold)
    region = prediction.region if prediction.region is not None else np.ones(truth.shape, bool)
    rows = []
    for k in range(1, count + 1):
        node = nodes == k
        if not counted_nodes(np.array([node.sum()]), ct.spacing_zyx, TARGET_DIAMETER_MM)[0]:
            continue
        prob = prediction.probabilities.array[node]
        over = [int(i) for i in np.unique(parts[node]) if i]
        rows.append({
            "volume_mm3": node.sum() * voxel, "in_region": float(region[node].mean()),
            "covered": float((prediction.mask.array[node] > 0).mean()), "peak": float(prob.max()),
            "mean": float(prob.mean()),
            "components": [(round(float((parts == i).sum() * voxel)),
                            round(float(np.asarray(ct.array)[parts == i].mean()))) for i in over],
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of <case>-ct.nrrd with <case>-full.nrrd")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--all", action="store_true", help="list found nodes too, not only the missed")
    args = parser.parse_args()
    predictor = Predictor(args.model, "cpu")
    threshold = float(predictor.config.inference.threshold)
    found = total = 0
    for case in scan_cases(args.data):
        if case.full is None:
            continue
        ct = read_volume(case.ct)
        truth = np.asarray(read_labels(case.full, reference=ct).array) > 0
        rows = node_rows(ct, truth, predictor.predict(ct), threshold)
        spacing = " x ".join(f"{s:.2f}" for s in ct.spacing)
        for n, row in enumerate(rows, start=1):
            hit = row["covered"] > 0
            found, total = found + hit, total + 1
            if args.all or not hit:
                print(f"{case.case_id} ({spacing} mm) node {n}: {row['volume_mm3']:.0f} mm3, "
                      f"{100 * row['in_region']:.0f}% in region, covered {row['covered']:.2f}, peak "
                      f"{row['peak']:.2f}, mean {row['mean']:.2f}, components (mm3, HU) {row['components']}")
    print(f"found {found} of {total} nodes ({found / max(total, 1):.3f})")


if __name__ == "__main__":
    main()
