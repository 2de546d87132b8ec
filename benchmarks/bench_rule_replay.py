"""Would another reading of the held-out evidence have made the activation rule right more often?

For every fine-tuned round of the loop runs ``bench_adaptation.py`` kept under ``--out``, the verdict's
figures are read from the workspace's model registry (the differences candidate - parent and candidate -
original on the version's held-out corrected cases, with their bootstrap bounds) and judged again by
fixed alternatives; each verdict is then checked against the issue's bar on the test set
(:func:`_adapt_targets.judge_rounds`). Only the round's own verdict is replayed: had a verdict changed,
later rounds would have had another parent.

- ``logged``: the rule as it ran (bounds of the 90% interval; point estimates on one held-out case).
- ``points``: point estimates against the margins (surface Dice > -0.02, recall > -0.05, false nodes
  net of nodes found < +0.2), at any number of cases.
- ``points-strict``: point estimates, no surface Dice or recall loss at all (the thin-evidence rule).
- ``fp-points``: bounds for surface Dice and recall, the point estimate for false nodes.

    python benchmarks/bench_rule_replay.py --out benchmarks/results/adaptation-s9
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _adapt_targets import judge_rounds
from bench_adaptation import loop_name

from lnq_napari.activation import ActivationRule

RULE = ActivationRule()


def _fails(figures: dict, vs: str, bounds: bool, strict: bool) -> bool:
    """Whether the candidate breaks a margin against ``vs``: outline and recall judged by their interval's
    lower bound (``bounds``) or point estimate; ``strict``: any loss breaks; false nodes always by the
    point estimate."""
    end = "_low" if bounds else ""
    outline, recall = figures[f"surface_dice_vs_{vs}{end}"], figures[f"recall_vs_{vs}{end}"]
    if strict:
        worse = outline < 0 or recall < 0
    else:
        worse = outline <= -RULE.dice_margin or recall <= -RULE.recall_margin
    return worse or figures[f"net_false_nodes_vs_{vs}"] >= RULE.fp_margin


#: name -> (outline and recall by their lower bound, any loss breaks)
ALTERNATIVES = {"points": (False, False), "points-strict": (False, True), "fp-points": (True, False)}


def replay(out: Path) -> list[dict]:
    """One row per fine-tuned round of every kept loop run: the bar's verdict and each rule's."""
    rows = []
    for path in sorted(out.glob("loop-*.json")):
        run = json.loads(path.read_text())
        name = f"{run['site']}-s{run['seed']}-" + loop_name(
            run["strategy"], run["corrections"], run["settings"].get("set") or [])
        registry = out / "work" / name / "models" / "registry.json"
        if not registry.is_file():
            continue
        versions = {v["id"]: v for v in json.loads(registry.read_text())["versions"]}
        for row in judge_rounds(run["rows"])[1:]:
            metrics = versions[row["candidate"]]["metrics"]
            figures = metrics["figures"]
            against = ["parent"] + (["original"] if "surface_dice_vs_original" in figures else [])
            verdicts = {"logged": bool(row["activated"])}
            for rule, (bounds, strict) in ALTERNATIVES.items():
                verdicts[rule] = not any(_fails(figures, vs, bounds, strict) for vs in against)
            rows.append({"run": name, "round": row["round"], "rose": row["rose"],
                         "held_out": int(figures["n_cases"]), **verdicts})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "adaptation"))
    rows = replay(Path(p.parse_args(argv).out))
    rules = ["logged", *ALTERNATIVES]
    for r in rows:
        cells = " ".join(f"{k}:{'act' if r[k] else 'ref'}{'' if r[k] == r['rose'] else '(wrong)'}"
                         for k in rules)
        print(f"{r['run']} round {r['round']} ({r['held_out']} held-out): "
              f"{'rose' if r['rose'] else 'fell'}; {cells}")
    for k in rules:
        print(f"{k}: right by the bar in {sum(r[k] == r['rose'] for r in rows)} of {len(rows)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
