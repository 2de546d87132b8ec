"""Would the activation rule as it is now have judged the kept loop rounds right more often?

For every fine-tuned round of the loop runs ``bench_adaptation.py`` kept under ``--out``, the version,
its parent and the lineage's original model are scored again on the version's held-out corrected cases
with today's validation (:func:`lnq_napari.finetuning.validation.version_figures`) and judged by today's
rule (:func:`lnq_napari.activation.decide_activation`); each verdict is checked against the issue's bar
on the test set (:func:`_adapt_targets.judge_rounds`). Only the round's own verdict is replayed: had a
verdict changed, later rounds would have had another parent. A cross-fitted version (``folds``) is judged on
the fold models' figures its registry entry keeps (the version itself trained on those cases); the
forgetting check runs where the held-out figures activate, on the figures the entry keeps or else on
the workspace's cache (predicted when missing). (At commit b927cc1 the rule judged
outlines by the known-voxel Dice, at 8303422 by the symmetric surface Dice with the worst case deciding
below five cases; this benchmark there replayed those readings: ``docs/adaptation_history.md``, sessions
12 and 15.)

With ``--marks`` each held-out correction made without "node here, outline unknown" marks gets those
today's simulated reviewer (:func:`lnq_napari.simulate.simulate_review`) places: a mark adds no voxel,
so the correction's labels are those the loop saved (checked), and only the verdict is replayed.

With ``--set`` (repeated: one variant each) the verdicts are replayed with those rule settings too,
e.g. ``--set dice_prior_cases=0 --set dice_prior_cases=4`` (a variant's settings joined by commas); each
variant's rounds right by the bar are printed in all and per site, with the rounds whose verdict differs
from the first variant's. ``--spread`` prints the per-case SD of candidate minus parent held-out surface
Dice and the spread of the true mean change across rounds (the prior cases they support). ``--out`` may be
a glob of result folders.

    OMP_NUM_THREADS=2 python benchmarks/bench_rule_replay.py --out benchmarks/results/adaptation-s14
    python benchmarks/bench_rule_replay.py --out 'results/adaptation-s3[1-9]*' --spread \\
        --set dice_prior_cases=0 --set dice_prior_cases=2 --set dice_prior_cases=4 --set dice_prior_cases=8
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _adapt_targets import judge_rounds
from bench_adaptation import loop_name

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, decide_activation
from lnq_napari.finetuning import validation
from lnq_napari.finetuning.forgetting import check_data, forgetting_figures
from lnq_napari.finetuning.reviewed import prediction_parent
from lnq_napari.finetuning.validation import original_model, version_figures
from lnq_napari.inference import Predictor
from lnq_napari.interact import spot_mask
from lnq_napari.io.readers import read_labels
from lnq_napari.model import resolve_model
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.simulate import simulate_review
from lnq_napari.workspace import Workspace


class _Remembering:
    """A predictor that predicts each CT once (one model's held-out cases recur over rounds)."""

    def __init__(self, path: Path, device: str) -> None:
        self.inner, self.seen = Predictor(path, device=device), {}

    def predict(self, ct, progress=None, cancel=None):
        key = (ct.origin, ct.shape)
        if key not in self.seen:
            self.seen[key] = self.inner.predict(ct, progress=progress, cancel=cancel)
        return self.seen[key]


def _mark_held_out_cases() -> None:
    """Make the held-out figures count the marks today's simulated reviewer would have saved."""
    plain, found = validation.held_out_truth, {}

    def with_marks(ws, case: str, version: str | None = None):
        truth = plain(ws, case, version)
        info = ws.version_info(case, version) if version else ws.latest_version(case, "correction")
        made = prediction_parent(ws, case, info)
        if truth.marked is not None or made is None:
            return truth
        key = (str(ws.root), case, info["version"])
        if key not in found:
            ct = ws.read_ct(case)
            again, stats = simulate_review(ct, ws.read_labels(case, made["version"]),
                                           read_labels(ws.full_path(case), reference=ct))
            if not np.array_equal(again.array > 0, truth.correction.array > 0):
                raise SystemExit(f"{case}: today's reviewer corrects it otherwise; --marks cannot replay it")
            found[key] = spot_mask(stats["marks"], ct.shape, ct.spacing_zyx) if stats["marks"] else None
        return dataclasses.replace(truth, marked=found[key])

    validation.held_out_truth = with_marks


def _rules(settings: list[str] | None) -> dict[str, ActivationRule]:
    """The rule of each ``--set`` variant (``name=value[,name=value]``) by its words; today's ("now") when
    none."""
    default, out = ActivationRule(), {}
    for words in settings or []:
        changes = dict(item.split("=", 1) for item in words.split(","))
        unknown = set(changes) - {f.name for f in dataclasses.fields(ActivationRule)}
        if unknown:
            raise SystemExit(f"--set {words}: no rule setting {', '.join(sorted(unknown))}")
        out[words] = dataclasses.replace(
            default, **{k: type(getattr(default, k))(v) for k, v in changes.items()})
    return out or {"now": default}


@dataclass
class _Figures:
    """A round's held-out figures (candidate, parent, original or None) and its forgetting check's, read
    from the registry entry or else taken when a verdict first needs them (:meth:`forgetting`)."""

    held_out: tuple
    check: Callable[[ActivationRule], ForgettingFigures | None]
    kept: ForgettingFigures | None

    def forgetting(self, rule: ActivationRule) -> ForgettingFigures | None:
        if self.kept is None:
            self.kept = self.check(rule)
        return self.kept

    def verdict(self, rule: ActivationRule):
        """The rule's verdict as a fine-tune takes it: the forgetting check where the held-out figures
        activate."""
        verdict = decide_activation(*self.held_out, rule=rule)
        checked = self.forgetting(rule) if verdict.activate else None
        if checked is None:
            return verdict
        return decide_activation(*self.held_out, rule=rule, forgetting=checked)


def _rescore(ws: Workspace, version: str, predictors: dict, checks: dict) -> _Figures:
    """Fresh held-out figures of ``version`` (a cross-fitted one's as its entry keeps them), its parent and
    the original, and its forgetting check (kept in the entry, else from the cache or predicted)."""
    entry = ws.model_info(version)
    cases, kept = entry["metrics"]["metrics_after"]["cases"], entry["metrics"].get("case_figures") or {}
    registered = {m["id"] for m in ws.models()}
    corrections = entry.get("correction_versions")
    make = lambda p, d: predictors.setdefault(str(p), _Remembering(p, d))  # noqa: E731

    def path(model: str):
        return ws.model_path(model) if model in registered else Path(resolve_model(None))

    def figures(model: str):
        return version_figures(make, model, path(model), "cpu", ws, cases, corrections)

    def stored(name: str) -> tuple[CaseFigures, ...]:
        return tuple(CaseFigures.from_dict(f) for f in kept[name])

    original = original_model(ws, entry["parent"])
    candidate = stored("candidate") if entry["metrics"].get("folds") else figures(version)
    held_out = (candidate, figures(entry["parent"]), None if original is None else figures(original[0]))
    root, root_path = original or (entry["parent"], path(entry["parent"]))
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    config = FinetuneConfig(**{k: v for k, v in entry["metrics"]["config"].items() if k in fields})
    key = (root, str(root_path), config.forgetting_data, config.forgetting_cases)
    if key not in checks:
        checks[key] = check_data(config, root, root_path)
    data = checks[key]
    check = lambda rule: None if data is None else forgetting_figures(  # noqa: E731
        make, path(version), root, root_path, "cpu", config, ws, data=data, refusing=rule)
    known = None if data is None or "forgetting_candidate" not in kept else ForgettingFigures(
        data.source, stored("forgetting_candidate"), stored("forgetting_original"))
    return _Figures(held_out, check, known)


def replay(outs: list[Path], pattern: str, rules: dict[str, ActivationRule]) -> list[dict]:
    """One row per fine-tuned round of every kept loop run: the bar's verdict, the logged one and each
    rule's (``now`` when only today's), with the round's held-out figures (``figures``)."""
    rows, checks = [], {}
    for out in outs:
        for path in sorted(out.glob(f"loop-{pattern}.json")):
            run = json.loads(path.read_text())
            name = f"{run['site']}-s{run['seed']}-" + loop_name(
                run["strategy"], run["corrections"], run["settings"].get("set") or [])
            folder = out / "work" / name
            if not (folder / "workspace.json").is_file():
                continue
            ws, predictors = Workspace.open(folder), {}
            for row in judge_rounds(run["rows"])[1:]:
                figs = _rescore(ws, row["candidate"], predictors, checks)
                verdicts = {words: figs.verdict(rule) for words, rule in rules.items()}
                rows.append({"run": f"{out.name}/{name}", "site": run["site"], "round": row["round"],
                             "rose": row["rose"], "logged": row["activated"], "figures": figs.held_out,
                             "test": (run["rows"][row["round"] - 1], row),
                             **{words: v.activate for words, v in verdicts.items()}})
                said = "; ".join(f"{words}: {v.reason}" for words, v in verdicts.items())
                print(f"{out.name}/{name} round {row['round']}: {'rose' if row['rose'] else 'fell'}; logged "
                      f"{'activated' if row['activated'] else 'refused'}; {said}", flush=True)
    return rows


def _tally(rows: list[dict], rule: str) -> str:
    """``right/rounds`` in all and per site."""
    def right(some: list[dict]) -> str:
        return f"{sum(bool(r[rule]) == r['rose'] for r in some)}/{len(some)}"
    sites = sorted({r["site"] for r in rows})
    per_site = ", ".join(f"{site} {right([r for r in rows if r['site'] == site])}" for site in sites)
    return f"{right(rows)} ({per_site})"


def _flips(rows: list[dict], base: str, rule: str) -> str:
    """The rounds whose verdict ``rule`` changes from ``base``'s, with the direction by the bar."""
    def words(r: dict) -> str:
        way = "wrong->right" if bool(r[rule]) == r["rose"] else "right->wrong"
        return (f"{r['run']} round {r['round']} ({way}: {'activated' if r[rule] else 'refused'}, "
                f"{'rose' if r['rose'] else 'fell'})")
    return "; ".join(words(r) for r in rows if bool(r[rule]) != bool(r[base])) or "none"


def _changes(name: str, means: np.ndarray, noise: float, sd: float) -> str:
    """The rounds' mean changes in words: their spread net of sampling ``noise`` (a variance), and the
    prior cases k = (``sd`` / true spread)^2 that spread (about the mean, and about no change) supports."""
    true = float(means.var(ddof=1) - noise)
    about_zero = true + float(means.mean()) ** 2
    said = [f"{name}: {means.size} rounds, mean {means.mean():+.4f}, SD {means.std(ddof=1):.4f}"]
    for label, var in (("true SD", true), ("true RMS about 0", about_zero)):
        said.append(f"{label} {np.sqrt(var):.4f} (k {sd ** 2 / var:.1f})" if var > 0 else
                    f"{label}: not above the sampling noise")
    return "; ".join(said)


def spread(rows: list[dict]) -> None:
    """Print the per-case SD of candidate minus parent held-out surface Dice and the spread of the rounds'
    true mean change (held-out, and the test set's median-Dice bar's per-case Dice, each net of its
    sampling noise) with the prior cases k = (per-case SD / SD of true changes)^2 they support."""
    held = []
    for r in rows:
        cand, parent = ({f.case_id: f.surface_dice for f in figs} for figs in r["figures"][:2])
        d = np.array([cand[c] - parent[c] for c in cand if np.isfinite(cand[c]) and np.isfinite(parent[c])])
        held += [d] if d.size else []
    within = [d - d.mean() for d in held if d.size > 1]
    dof = sum(d.size - 1 for d in within)
    sd = float(np.sqrt(sum((d ** 2).sum() for d in within) / dof))
    pairs = np.concatenate(held)
    print(f"held-out surface Dice, candidate - parent: {pairs.size} case pairs over {len(held)} rounds; "
          f"per-case SD within rounds {sd:.4f} ({dof} df), over all pairs {pairs.std(ddof=1):.4f}")
    print(_changes("held-out mean change", np.array([d.mean() for d in held]),
                   float(np.mean([sd ** 2 / d.size for d in held])), sd))
    test = []
    for r in rows:
        before, row = r["test"]
        d = np.array([np.nan if a is None or b is None else a - b
                      for a, b in zip(row["cand_dice_cases"], before["dice_cases"])])
        d = d[np.isfinite(d)]
        test.append((d.mean(), d.var(ddof=1) / d.size))
    print(_changes("test-set Dice mean change (candidate - active)", np.array([t[0] for t in test]),
                   float(np.mean([t[1] for t in test])), sd))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "adaptation"),
                   help="result folder, or a glob of them")
    p.add_argument("--runs", default="*", help="glob of the loop runs after loop- (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--marks", action="store_true",
                   help="held-out corrections with the marks today's simulated reviewer places")
    p.add_argument("--set", action="append", metavar="NAME=VALUE[,NAME=VALUE]",
                   help="a variant of the rule (repeat for more); default: today's rule alone")
    p.add_argument("--spread", action="store_true",
                   help="print the per-case SD and the spread of true changes a surface Dice prior rests on")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.marks:
        _mark_held_out_cases()
    rules = _rules(args.set)
    out = Path(args.out)
    outs = sorted(out.parent.glob(out.name)) if glob.has_magic(args.out) else [out]
    rows = replay(outs, args.runs, rules)
    for rule in ("logged", *rules):
        print(f"{rule}: right by the bar in {_tally(rows, rule)}")
    for rule in list(rules)[1:]:
        print(f"{rule} vs {next(iter(rules))}: {_flips(rows, next(iter(rules)), rule)}")
    if args.spread:
        spread(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
