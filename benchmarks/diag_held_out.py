"""Were a loop's held-out corrected cases like its site? Each fine-tuned version and its parent scored on
the version's held-out cases against the click correction (what the rule judged) and against complete
truth, beside each case's contrast and slice thickness, and the same split of the site's test set.

A rule that refused a version whose test figures rose was either misled by its yardstick (the figures
against the correction and against truth disagree) or shown unrepresentative cases (they agree, and the
cases differ from the test set where it rose).

    OMP_NUM_THREADS=2 python benchmarks/diag_held_out.py --site habitus \
        --out benchmarks/results/adaptation-s34
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lnq_napari import metrics
from lnq_napari.activation import SURFACE_TOLERANCE_MM
from lnq_napari.finetuning.validation import held_out_truth
from lnq_napari.inference import Predictor
from lnq_napari.io.readers import read_labels
from lnq_napari.model import resolve_model
from lnq_napari.training.corrections import GROWN_LENIENCE_MM
from lnq_napari.workspace import Workspace


def case_kind(nodes_json: Path) -> str:
    """``"contrast 3.0 mm"`` or ``"non-contrast 5.0 mm"`` from a phantom case's ``-nodes.json``."""
    info = json.loads(nodes_json.read_text())
    return f"{'contrast' if info['contrast'] else 'non-contrast'} {info['spacing'][2]:.1f} mm"


def held_out_rows(work: Path, pool: Path) -> list[str]:
    """One line per (version, held-out case): surface Dice of the version and its parent against the
    correction and against complete truth, and volumetric Dice against truth."""
    ws = Workspace.open(work)
    versions = json.loads((work / "models" / "registry.json").read_text())["versions"]
    ids = {v["id"] for v in versions}
    predicted: dict[tuple[str, str], object] = {}

    def mask(model: str, case: str):
        if (model, case) not in predicted:
            path = work / "models" / model if model in ids else resolve_model(None)
            predicted[model, case] = Predictor(path, device="cpu").predict(ws.read_ct(case)).mask
        return predicted[model, case]

    lines = []
    for version in versions:
        parent = version.get("parent") if version.get("parent") in ids else "original"
        for row in version["metrics"]["case_figures"]["candidate"]:
            case = row["case_id"]
            truth = read_labels(pool / f"{case}-full.nrrd")
            truth = truth.with_array((np.asarray(truth.array) > 0).astype(np.uint8))
            held = held_out_truth(ws, case, version["correction_versions"].get(case))
            got = {}
            for name, model in (("cand", version["id"]), ("parent", parent)):
                m = mask(model, case)
                got[name] = (metrics.surface_dice(m, held.correction, SURFACE_TOLERANCE_MM, grown=held.grown,
                                                  lenience_mm=GROWN_LENIENCE_MM),
                             metrics.surface_dice(m, truth, SURFACE_TOLERANCE_MM), metrics.dice(m, truth))
            (cc, ct, cd), (pc, pt, pd) = got["cand"], got["parent"]
            lines.append(f"{version['id']} vs {parent} on {case} ({case_kind(pool / f'{case}-nodes.json')}): "
                         f"surface Dice vs correction {cc - pc:+.3f}, vs truth {ct - pt:+.3f}; "
                         f"Dice vs truth {cd - pd:+.3f}")
    return lines


def test_rows(loop: dict, test: Path) -> list[str]:
    """Each round's median change of test Dice against the frozen model, by kind of case."""
    kinds = [case_kind(p) for p in sorted(test.glob("*-nodes.json"))]
    frozen = np.array(loop["rows"][0]["dice_cases"])
    lines = []
    for row in loop["rows"][1:]:
        change = np.array(row.get("cand_dice_cases") or row["dice_cases"]) - frozen
        by = {}
        for kind, d in zip(kinds, change):
            by.setdefault(kind.split()[0], []).append(d)
        parts = "; ".join(f"{k} {np.median(v):+.3f} median over {len(v)}" for k, v in sorted(by.items()))
        model = row.get("candidate") or row["model"]
        lines.append(f"round {row['round']} {model}: test Dice vs frozen {parts}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="a bench_adaptation.py --out folder")
    parser.add_argument("--site", required=True)
    args = parser.parse_args()
    data = args.out / "data" / args.site
    for loop_file in sorted(args.out.glob(f"loop-{args.site}-*.json")):
        loop = json.loads(loop_file.read_text())
        work = args.out / "work" / loop_file.stem.removeprefix("loop-")
        pool = next(data.glob(f"pool-s{loop['seed']}-*"))
        print(loop_file.name)
        for line in test_rows(loop, next(data.glob("test-*"))) + held_out_rows(work, pool):
            print("  " + line, flush=True)


if __name__ == "__main__":
    main()
