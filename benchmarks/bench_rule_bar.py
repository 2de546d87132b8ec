"""Is the issue's bar for the activation rule itself steady? The kept loop rounds judged on a larger test set.

``bench_adaptation.py`` calls a round's verdict right when it matches whether the new version's figures
rose on the site's fixed test set (median Dice and recall not lower, false nodes per case at most 0.2
higher than the active model's): six cases, where one case or one node can turn "rose". This benchmark
scores, for every fine-tuned round of the loop runs kept under each ``--out``, the round's new version
and the model that was active before it on ``--test`` cases of the site (the first six are the loop's
own test cases: the same seeds), and prints per round whether the figures rose on the six and on all
``--test``, and whether the verdict was right by each. Where the two bars disagree the six-case bar
was deciding on noise, and so was any count of "rule right" built on it. Where a round kept its per-case
held-out figures (since session 19), today's rule is replayed on them too: only the round's own verdict
(had it changed, later rounds would have had another parent).

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/bench_rule_bar.py --test 20 \\
        --out benchmarks/results/adaptation-s19 benchmarks/results/adaptation-s19b

``--test 6`` judges by the loops' own six cases alone (nothing is scored: quick, any site, the default
site's in-distribution loops too). ``--bars LOG ...`` takes the bars of rounds an earlier run printed
instead of scoring them again (20 cases per version are hours on the CPU), so today's rule can be
replayed on them alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from _adapt_targets import rose
from bench_adaptation import FORGET_SITE, figures, frozen_predictor, load_cases, site_data

from lnq_napari.activation import MODELS, CaseFigures, ForgettingFigures, decide_activation
from lnq_napari.inference import Predictor
from lnq_napari.workspace import Workspace


@dataclass(frozen=True)
class RoundBar:
    """One kept round: its verdict, whether its figures rose on the six and on the larger test set."""

    name: str
    activated: bool
    rose_small: bool
    rose_large: bool
    change: dict  # candidate - active model on the larger set: dice_median, recall, fp_per_case
    today: bool | None  # today's rule on the round's kept held-out figures (None: not kept)

    def line(self, n: int) -> str:
        c = self.change
        replay = "" if self.today is None else (
            f"; today's rule {'activates' if self.today else 'refuses'}, right by {n} "
            f"{self.today == self.rose_large}")
        return (f"{self.name}: {'activated' if self.activated else 'refused'}; rose on 6 {self.rose_small}, "
                f"on {n} {self.rose_large} (Dice {c['dice_median']:+.3f}, recall {c['recall']:+.3f}, false "
                f"nodes {c['fp_per_case']:+.2f}/case); right by 6 {self.activated == self.rose_small}, "
                f"by {n} {self.activated == self.rose_large}{replay}")


LOOP_TEST = 6  # the loops' own test cases per site
CHANGE = ("dice_median", "recall", "fp_per_case")
_LINE = re.compile(r"^(?P<name>.+ round \d+): \w+; rose on 6 (?P<small>True|False), "
                   r"on \d+ (?P<large>True|False) \(Dice (?P<dice_median>\S+), recall (?P<recall>\S+), "
                   r"false nodes (?P<fp_per_case>[^/]+)/case\)")


def read_bars(logs: list[str]) -> dict[str, tuple[bool, bool, dict]]:
    """Round name -> (rose on 6, rose on the larger set, change) from earlier runs' printed lines."""
    out = {}
    for log in logs:
        for m in filter(None, map(_LINE.match, Path(log).read_text().splitlines())):
            out[m["name"]] = (m["small"] == "True", m["large"] == "True",
                              {k: float(m[k]) for k in CHANGE})
    return out


def replayed_verdict(ws: Workspace, version: str) -> bool | None:
    """Today's rule on the per-case held-out figures the version was judged on, and on its forgetting
    check's figures when it had one (None: not kept)."""
    entry = ws.registry.info(version)
    kept = entry.get("metrics", {}).get("case_figures")
    if not kept:
        return None
    figures = {m: [CaseFigures(**f) for f in kept[m]] for m in MODELS}
    original = None if entry["metrics"].get("original") == entry["parent"] else figures["original"]
    checked = None
    if "forgetting_candidate" in kept:
        checked = ForgettingFigures("kept", *(tuple(CaseFigures(**f) for f in kept[f"forgetting_{m}"])
                                              for m in ("candidate", "original")))
    return decide_activation(figures["candidate"], figures["parent"], original, forgetting=checked).activate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", nargs="+", required=True, help="bench_adaptation.py --out folders")
    p.add_argument("--test", type=int, default=20, help="test cases per site (default 20; the loops used 6)")
    p.add_argument("--runs", default="*", help="glob of the loop runs after loop- (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bars", nargs="*", default=[],
                   help="earlier runs' printed output: rounds found there are not scored again")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    first = Path(args.out[0])  # its data and frozen cache serve every run
    frozen = frozen_predictor(first)
    tests: dict[str, list] = {}
    scored: dict[tuple[str, str], dict] = {}  # (model folder, site) -> figures on the large test set

    def large(site: str, model) -> dict:
        key = (str(model), site)
        if key not in scored:
            if site not in tests:
                tests[site] = load_cases(site_data(first, site, "test", args.test, workers=2))
            predictor = frozen if model is None else Predictor(model, device="cpu")
            scored[key] = figures(predictor, tests[site])
        return scored[key]

    rows, bars, judged_names = [], read_bars(args.bars), set()
    for out in map(Path, args.out):
        for path in sorted(out.glob(f"loop-{args.runs}.json")):
            run = json.loads(path.read_text())
            if run["site"] == FORGET_SITE and args.test != LOOP_TEST:
                continue
            ws = Workspace.open(out / "work" / path.stem.removeprefix("loop-"))
            loop_rows = run["rows"]
            for before, row in zip(loop_rows, loop_rows[1:]):
                name = f"{out.name} {run['site']} pool {run['seed']} round {row['round']}"
                if name in judged_names:  # a round name stands for one run: its bar must not be reused
                    raise SystemExit(f"two runs in {out} are named {name!r} (settings differ); "
                                     "choose one with --runs")
                judged_names.add(name)
                if name not in bars and args.test == LOOP_TEST:  # the loop's own six: nothing to score
                    cand, base = {k: row[f"cand_{k}"] for k in CHANGE}, before
                elif name not in bars:
                    active = None if before["model"].startswith("bundled") else ws.model_path(before["model"])
                    cand = large(run["site"], ws.model_path(row["candidate"]))
                    base = large(run["site"], active)
                if name not in bars:
                    bars[name] = (rose(row, before, "cand_"), rose(cand, base),
                                  {k: cand[k] - base[k] for k in CHANGE})
                judged = RoundBar(name, bool(row["activated"]), *bars[name],
                                  replayed_verdict(ws, row["candidate"]))
                rows.append(judged)
                print(judged.line(args.test), flush=True)
    if rows:
        print(f"{len(rows)} rounds: the two bars agree on {sum(r.rose_small == r.rose_large for r in rows)}; "
              f"rule right by 6 cases in {sum(r.activated == r.rose_small for r in rows)}, by {args.test} in "
              f"{sum(r.activated == r.rose_large for r in rows)}")
        kept = [r for r in rows if r.today is not None]
        print(f"today's rule on the {len(kept)} rounds that kept their held-out figures: right by "
              f"{args.test} in {sum(r.today == r.rose_large for r in kept)} (their verdicts then: "
              f"{sum(r.activated == r.rose_large for r in kept)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
