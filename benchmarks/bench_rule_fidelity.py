"""Does the activation rule's yardstick, measured against click corrections, tell what complete truth tells?

The rule judges a fine-tuned candidate against its parent on held-out *click-corrected* cases. A
click correction keeps the parent's own outlines wherever no click touched them, so a yardstick that
counts small outline differences leans toward the parent. This benchmark measures that lean: on the
site's fixed test cases (complete truth known), the simulated reviewer corrects the frozen model's
prediction with clicks, and each candidate model left by ``bench_adaptation.py`` (its workspaces
under ``OUT/work``) is scored against the click corrections and against the truth. For each
yardstick (volumetric Dice, surface Dice at 1, 2 and 3 mm) it prints, per candidate, the mean
difference candidate - parent against clicks and against truth, and over all (candidate, case) pairs
how often the two differences agree in sign and their correlation.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/bench_rule_fidelity.py --site habitus
"""

from __future__ import annotations

import argparse
import json
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from bench_adaptation import Bench, parse_args

from lnq_napari import metrics
from lnq_napari.inference import Predictor
from lnq_napari.simulate import simulate_review
from lnq_napari.workspace import Workspace

TOLERANCES_MM = (1.0, 2.0, 3.0)


def yardsticks(mask, reference) -> dict[str, float]:
    """Dice and surface Dice at each tolerance of ``mask`` against ``reference``."""
    out = {"dice": metrics.dice(mask, reference)}
    for tol in TOLERANCES_MM:
        out[f"nsd{tol:g}"] = metrics.surface_dice(mask, reference, tol)
    return out


def candidates(out: Path, site: str, pattern: str = "*") -> dict[str, Path]:
    """``{name: model folder}`` of every fine-tuned version whose parent is the bundled model, in the
    workspaces ``bench_adaptation.py`` kept under ``OUT/work`` (loop rounds and ablation variants) whose
    folder name matches ``<site>-s*<pattern>``."""
    found = {}
    kept = (p for p in (out / "work").glob(f"{site}-s*") if fnmatch(p.name, f"{site}-s*{pattern}"))
    for ws_path in sorted(kept):
        ws = Workspace.open(ws_path)
        for m in ws.models():
            if str(m.get("parent") or "").startswith("bundled"):
                found[f"{ws_path.name.split('-', 2)[2]}/{m['id']}"] = ws.model_path(m["id"])
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--site", default="habitus")
    p.add_argument("--out-json", default=None, help="write the per-pair figures here")
    p.add_argument("--workspaces", default="*", help="only the kept workspaces whose name matches this glob "
                                                     "after <site>-s<seed> (default all)")
    own, rest = p.parse_known_args(argv)
    args = parse_args(["--sites", own.site, *rest])
    import torch

    torch.set_num_threads(args.threads)
    bench = Bench(args, own.site)
    models = candidates(Path(args.out), own.site, own.workspaces)
    if not models:
        print(f"no kept ablation workspace of {own.site} under {args.out}/work: run bench_adaptation.py "
              "--mode ablation first", file=sys.stderr)
        return 2
    parent_rows, clicks = [], []
    for _, ct, truth in bench.test:
        mask = bench.frozen.predict(ct).mask
        corrected, _ = simulate_review(ct, mask, truth)
        clicks.append(corrected)
        parent_rows.append({"clicks": yardsticks(mask, corrected), "truth": yardsticks(mask, truth)})
    pairs = []
    for name, folder in models.items():
        predictor = Predictor(folder, device="cpu")
        for k, (case, ct, truth) in enumerate(bench.test):
            mask = predictor.predict(ct).mask
            cand = {"clicks": yardsticks(mask, clicks[k]), "truth": yardsticks(mask, truth)}
            pairs.append({"variant": name, "case": case, **{
                f"{ref}_{key}": cand[ref][key] - parent_rows[k][ref][key]
                for ref in ("clicks", "truth") for key in cand[ref]}})
        print(f"scored {name}", file=sys.stderr)
    keys = ["dice", *[f"nsd{t:g}" for t in TOLERANCES_MM]]
    print(f"\n{own.site}: candidate - parent, mean over {len(bench.test)} test cases (clicks | truth)")
    print("variant".ljust(34) + "".join(k.rjust(18) for k in keys))
    for name in models:
        rows = [r for r in pairs if r["variant"] == name]
        means = {ref: [np.mean([r[f"{ref}_{k}"] for r in rows]) for k in keys] for ref in ("clicks", "truth")}
        print(name.ljust(34) + "".join(f"{c:+8.3f}|{t:+8.3f}".rjust(18)
                                       for c, t in zip(means["clicks"], means["truth"])))
    print(f"\nover {len(pairs)} (candidate, case) pairs: sign agreement and correlation, clicks vs truth")
    for k in keys:
        a = np.array([r[f"clicks_{k}"] for r in pairs])
        b = np.array([r[f"truth_{k}"] for r in pairs])
        ok = np.isfinite(a) & np.isfinite(b)
        agree = np.mean(np.sign(a[ok]) == np.sign(b[ok]))
        corr = np.corrcoef(a[ok], b[ok])[0, 1] if ok.sum() > 2 else float("nan")
        print(f"  {k:8s} sign agreement {agree:.2f}  correlation {corr:+.2f}  "
              f"mean lean (clicks - truth) {np.mean(a[ok] - b[ok]):+.3f}")
    if own.out_json:
        Path(own.out_json).write_text(json.dumps(pairs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
