"""Adaptation to a shifted site: does reviewing + fine-tuning make the model better where it is worse?

A pool of phantom cases from a shifted CT source (``--site``, see ``docs/phantom_sites.md``) and a fixed
held-out test set of that site (never edited), both from fixed seeds; the default site's test set
checks forgetting. The bundled model is the frozen starting point.

``--mode loop``: per site and seed, for each strategy (uncertainty, random) ``--rounds`` rounds of
``--per-round`` cases: rank, correct (simulated clicks, or the complete truth with
``--corrections truth``: the ceiling), fine-tune through ``api.finetune`` and score the new version on
both test sets whether or not the activation rule took it. Per round: held-out median Dice with a
bootstrap 90% interval over test cases, node recall, false nodes per case, the rule's verdict and
reason, the default-site figures, wall time.

``--mode ablation``: per site one round of ``--per-round`` click-corrected cases (uncertainty), then one
fine-tune per variant (the defaults, then each switch of ``FinetuneConfig`` toggled alone), each scored
on the site's test set and the default-site test set.

Phantom data, frozen-model predictions and finished runs are cached under ``--out`` (default
benchmarks/results/adaptation/, gitignored); a rerun only does what is missing and prints the tables of
all runs of the requested sites and seeds. Writes ``adaptation_<site>.png`` and JSON per run.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/bench_adaptation.py --mode loop --sites habitus --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

from _adapt_common import CachedPredictor, bootstrap_median, choose_cases, review_cases, suggester
from _adapt_targets import judge_rounds, settings_label, summarise_seeds
from bench_active_learning import Timer, evaluate_test, log

from lnq_napari import api
from lnq_napari.active import LazyPredictor
from lnq_napari.inference import Predictor
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.layout import scan_cases
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import read_config
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.phantom import write_dataset
from lnq_napari.workspace import Workspace

POOL_SEED, TEST_SEED = 1000, 2000  # + bench seed for the pool; the test sets are the same for every seed
FORGET_SITE = "default"
#: The ablation's variants besides the defaults: each switch of ``FinetuneConfig`` set alone, named as
#: ``finetune --set`` takes it ("replay_data" is filled in with a default-site phantom folder).
SWITCHES = {
    "dense_truth=true": {"dense_truth": True}, "distill_weight=1": {"distill_weight": 1.0},
    "l2sp_weight=0.01": {"l2sp_weight": 0.01}, "trainable=all": {"trainable": "all"},
    "interpolate=true": {"interpolate": True}, "refit_postprocessing=true": {"refit_postprocessing": True},
    "replay_fraction=0": {"replay_fraction": 0.0}, "replay_data=default-site": {"replay_data": None},
    "mine_negatives=false": {"mine_negatives": False},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--site", default=None, help="one shifted site (see --sites)")
    p.add_argument("--sites", default="habitus", help="comma-separated shifted sites (default habitus)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds: each draws its own pool (default 0)")
    p.add_argument("--mode", choices=("loop", "ablation", "frozen", "report"), default="loop",
                   help="loop: rounds per strategy; ablation: a fine-tune per variant; frozen: baseline; "
                        "report: tables and plots of finished runs")
    p.add_argument("--strategies", default="uncertainty,random")
    p.add_argument("--corrections", choices=("clicks", "brush", "suggestions", "truth"), default="clicks",
                   help="clicks: the simulated reviewer, on the mask; brush: clicks, then a brush stroke "
                        "erasing each outline's spill beyond the node; suggestions: it also rejects the "
                        "suggestions shown that lie on no node (saved with the correction); truth: complete "
                        "truth (the ceiling)")
    p.add_argument("--iterations", type=int, default=None, help="fine-tune iterations (default: finetune's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="loop: a fine-tune setting changed from its default, as finetune --set (repeatable); "
                        "the run's files and workspaces are named after the settings")
    p.add_argument("--variants", default=None,
                   help="ablation: comma-separated variant names, a combination joined by + (default: each "
                        "switch alone); each variant's workspace is kept under OUT/work for later analysis")
    p.add_argument("--pool", type=int, default=15, help="cases in the pool (default 15)")
    p.add_argument("--test", type=int, default=6, help="held-out cases per site (default 6)")
    p.add_argument("--replay", type=int, default=8, help="default-site cases for the replay_data variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-round", type=int, default=5, help="cases reviewed per round (default 5)")
    p.add_argument("--shape", default=None, help="phantom grid z,y,x (default: full size, drawn per case)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the models predict and fine-tune (default cpu, as every figure in the docs)")
    p.add_argument("--workers", type=int, default=1, help="processes drawing the phantom cases (default 1)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "adaptation"))
    args = p.parse_args(argv)
    args.sites = [args.site] if args.site else args.sites.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else None
    return args


# ---------------------------------------------------------------- data and scoring
def site_data(out: Path, site: str, kind: str, n: int, seed: int = 0, shape=None, workers: int = 1) -> Path:
    """A cached phantom folder: ``kind`` "test" (fixed seed), "pool" (per bench seed) or "replay"."""
    grid = "" if shape is None else "-" + "x".join(map(str, shape))
    folder = out / "data" / site / (f"pool-s{seed}-n{n}{grid}" if kind == "pool" else f"{kind}-n{n}{grid}")
    if len(list(folder.glob("*-ct.nrrd"))) < n:
        log(f"writing {n} {site} {kind} phantom cases to {folder}")
        base = POOL_SEED + seed if kind == "pool" else TEST_SEED + (7 if kind == "replay" else 0)
        write_dataset(folder, n, seed=base, site=site, shape=shape,
                      prefix="lnq2023-test" if kind == "test" else "lnq2023-train", workers=workers)
    return folder


def load_cases(folder: Path) -> list[tuple]:
    """``(name, ct, complete truth)`` of every case in ``folder``."""
    cases = []
    for case in scan_cases(folder, require="full"):
        ct = read_volume(case.ct)
        cases.append((case.case_id, ct, read_labels(case.full, reference=ct)))
    return cases


def figures(predictor, cases: list[tuple]) -> dict:
    """Median Dice with its bootstrap 90% interval, node recall, false nodes per case, per-case Dice."""
    out = evaluate_test(predictor, cases)
    dice = [float(r.dice) for r in out.pop("rows")]
    lo, hi = bootstrap_median(dice)
    return {**out, "dice_lo": lo, "dice_hi": hi, "dice_cases": dice}


def frozen_predictor(out: Path, device: str = "cpu") -> CachedPredictor:
    """The bundled model's predictor, its predictions cached under ``out/cache`` per weights: a new
    bundled model never meets the old one's cached predictions; masks are post-processed again, so a
    change of post-processing does."""
    bundled = read_config(resolve_model(None))
    return CachedPredictor(lambda: Predictor(None, device=device),
                           Path(out) / "cache" / f"frozen-{bundled.weights_sha256[:10]}", bundled.inference)


class Bench:
    """The cached inputs of one site: test sets, the frozen model's predictor and figures."""

    def __init__(self, args, site: str) -> None:
        self.args, self.site, self.out = args, site, Path(args.out)
        self.frozen = frozen_predictor(self.out, args.device)
        self.test = load_cases(self.data(site, "test", args.test))
        self.forget = load_cases(self.data(FORGET_SITE, "test", args.test))
        self.frozen_site = figures(self.frozen, self.test)
        self.frozen_default = figures(self.frozen, self.forget)

    def data(self, site: str, kind: str, n: int, seed: int = 0) -> Path:
        """A cached phantom folder of this bench's grid, drawn in ``--workers`` processes."""
        return site_data(self.out, site, kind, n, seed, self.args.shape, self.args.workers)

    def score(self, model_path, forgetting: bool = True) -> tuple[dict, dict | None, float]:
        """``(site figures, default-site figures or None, seconds)`` of a model folder."""
        t = Timer()
        predictor = Predictor(model_path, device=self.args.device)
        site = figures(predictor, self.test)
        return site, figures(predictor, self.forget) if forgetting else None, round(t(), 1)

    def workspace(self, seed: int, name: str):
        """A fresh workspace over the seed's pool, the bundled model active."""
        path = self.out / "work" / f"{self.site}-s{seed}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        pool = self.data(self.site, "pool", self.args.pool, seed)
        return Workspace.init(path, pool)


def run_finetune(ws, iterations: int | None, overrides: dict, device: str = "cpu"):
    """One fine-tune through ``api.finetune`` with the defaults changed by ``overrides``."""
    config = FinetuneConfig().replace(**overrides)
    return api.finetune(ws.root, config=config, device=device, iterations=iterations)


def _summary(fig: dict, prefix: str = "") -> dict:
    keys = ("dice_median", "dice_lo", "dice_hi", "recall", "fp_per_case", "dice_cases")
    return {prefix + k: fig.get(k) for k in keys}


# ---------------------------------------------------------------- loop
def loop_overrides(args) -> dict:
    """The loop's fine-tune settings that differ from the defaults (``--set``)."""
    base = FinetuneConfig()
    config = base.with_settings(args.set)
    return {k: v for k, v in vars(config).items() if v != getattr(base, k)}


def settings_tag(settings: list[str]) -> str:
    """``""`` for the defaults, else ``-`` + the ``--set`` settings joined by ``+``."""
    return "" if not settings else "-" + settings_label(settings)


def loop_name(strategy: str, corrections: str, settings: list[str]) -> str:
    """A loop run's workspace name under ``OUT/work/<site>-s<seed>-``: strategy, corrections, settings."""
    return f"{strategy}-{corrections}{settings_tag(settings)}"


def run_loop(bench: Bench, seed: int, strategy: str, on_round=None) -> list[dict]:
    """Rounds of choose, correct, fine-tune, score for one strategy; one row per round (0: frozen).

    ``on_round(rows)`` is called after each round with the rows so far."""
    args = bench.args
    ws = bench.workspace(seed, loop_name(strategy, args.corrections, args.set))
    active_site, active_default = bench.frozen_site, bench.frozen_default
    rows = [{"round": 0, "strategy": strategy, "model": "bundled", "activated": None, "reason": "",
             "clicks": 0, "reviewed": 0, **_summary(active_site), **_summary(active_default, "default_")}]
    clicks = 0
    for rnd in range(1, args.rounds + 1):
        t = Timer()
        model_path, model_id = ws.prediction_model()
        predictor = bench.frozen if model_id.startswith("bundled") else \
            LazyPredictor(lambda p=model_path: Predictor(p, device=args.device))
        chosen, _ = choose_cases(ws, strategy, predictor, model_id, args.per_round, seed * 100 + rnd)
        shown = suggester(predictor, model_path) if args.corrections == "suggestions" else None
        clicks += review_cases(ws, chosen, model_id, args.corrections, suggest=shown)
        choose_s = t()
        result = run_finetune(ws, args.iterations, loop_overrides(args), args.device)
        ft_s = t() - choose_s
        # a refused candidate's default-site figures change nothing the user gets: not scored (time),
        # unless the forgetting check judged it (was that check right?)
        checked = "forgetting_cases" in result.figures
        cand_site, cand_default, score_s = bench.score(ws.model_path(result.new_version),
                                                       result.activated or checked)
        if result.activated:
            active_site, active_default = cand_site, cand_default
        rows.append({
            "round": rnd, "strategy": strategy, "model": ws.prediction_model()[1], "chosen": chosen,
            "activated": result.activated, "reason": result.reason, "clicks": clicks,
            "reviewed": len(ws.corrected_cases()), "candidate": result.new_version,
            "forgetting_dice_vs_original": result.figures.get("forgetting_dice_vs_original"),
            "step_back_alpha": result.figures.get("step_back_alpha"),
            **_summary(active_site), **_summary(active_default, "default_"),
            **_summary(cand_site, "cand_"), **_summary(cand_default or {}, "cand_default_"),
            "choose_review_s": round(choose_s, 1), "finetune_s": round(ft_s, 1),
            "train_s": result.train_seconds, "score_s": score_s, "round_s": round(t(), 1),
        })
        log(f"{bench.site} s{seed} {strategy} round {rnd}: {result.new_version} "
            f"{'activated' if result.activated else 'refused'} ({result.reason}); candidate Dice "
            f"{cand_site['dice_median']:.3f} recall {cand_site['recall']:.3f} "
            f"FP {cand_site['fp_per_case']:.2f}, "
            f"default Dice {active_default['dice_median']:.3f} (active); {t():.0f} s")
        if on_round:
            on_round(rows)
    return rows


# ---------------------------------------------------------------- ablation
def variants(bench: Bench, wanted: list[str]) -> dict[str, dict]:
    """``{name: overrides}``: the defaults, each switch set alone, and any combination asked for by name
    (``trainable=norm_first+dense_truth=true``: settings joined by ``+``, parsed as ``finetune --set``)."""
    replay = str(bench.data(FORGET_SITE, "replay", bench.args.replay))
    out = {"defaults": {}, **{name: {k: replay if k == "replay_data" else v for k, v in change.items()}
                              for name, change in SWITCHES.items()}}
    base = FinetuneConfig()
    for name in wanted:
        if name not in out:
            config = base.with_settings(name.split("+"))
            out[name] = {k: v for k, v in vars(config).items() if v != getattr(base, k)}
    return out


def run_ablation(bench: Bench, seed: int, path: Path) -> None:
    """One click-corrected round, then one fine-tune per variant from the same reviewed workspace.

    Rows go to ``path`` (JSON) after each variant; variants already there are skipped.
    """
    args = bench.args
    done = json.loads(path.read_text())["rows"] if path.is_file() else []
    reviewed = bench.out / "work" / f"{bench.site}-s{seed}-ablation-reviewed"
    if done and len(Workspace.open(reviewed).corrected_cases()) == args.per_round:  # a rerun continues
        base, chosen, clicks = Workspace.open(reviewed), done[0]["chosen"], done[0]["clicks"]
    else:
        base = bench.workspace(seed, "ablation-reviewed")
        model_id = base.prediction_model()[1]
        chosen, _ = choose_cases(base, "uncertainty", bench.frozen, model_id, args.per_round, seed)
        clicks = review_cases(base, chosen, model_id, "clicks")
    rows = list(done)
    wanted = args.variants.split(",") if args.variants else ["defaults", *SWITCHES]
    todo = variants(bench, wanted)
    for name in [w for w in wanted if w not in {r["variant"] for r in done}]:
        ws_path = bench.out / "work" / f"{bench.site}-s{seed}-ablation-{name.replace('=', '-')}"
        shutil.rmtree(ws_path, ignore_errors=True)
        shutil.copytree(base.root, ws_path)
        ws = Workspace.open(ws_path)
        t = Timer()
        result = run_finetune(ws, args.iterations, todo[name], args.device)
        ft_s = t()
        site_fig, default_fig, score_s = bench.score(ws.model_path(result.new_version))
        rows.append({"variant": name, "overrides": todo[name], "site": bench.site, "seed": seed,
                     "chosen": chosen, "clicks": clicks, "activated": result.activated,
                     "reason": result.reason, **_summary(site_fig), **_summary(default_fig, "default_"),
                     "finetune_s": round(ft_s, 1), "train_s": result.train_seconds, "score_s": score_s})
        log(f"{bench.site} ablation {name}: Dice {site_fig['dice_median']:.3f} "
            f"recall {site_fig['recall']:.3f} FP {site_fig['fp_per_case']:.2f} "
            f"default {default_fig['dice_median']:.3f} ({ft_s:.0f} s)")
        path.write_text(json.dumps({"site": bench.site, "seed": seed, "settings": vars(args), "rows": rows},
                                   indent=1, default=str))


def save_run(path: Path, run: dict, rows: list[dict]) -> None:
    """A loop run's rows with its wall time so far, written whole (atomically)."""
    data = {k: v for k, v in run.items() if k != "started"}
    data.update(rows=rows, seconds=round(time.time() - run["started"], 1))
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


# ---------------------------------------------------------------- tables and plots
def _cell(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return "" if v is None else str(v)


def print_table(rows: list[dict], cols: list[str]) -> None:
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(_cell(r.get(c)).rjust(w) for c, w in zip(cols, widths)))


def plot_loop(site: str, runs: list[dict], frozen: dict, path: Path) -> None:
    """Held-out median Dice (bootstrap band), recall, false nodes and default-site Dice per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("dice_median", "median Dice, held-out"), ("recall", "node recall, held-out"),
            ("fp_per_case", "false nodes / case"), ("default_dice_median", "median Dice, default site")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    colours: dict[str, str] = {}
    cand_labelled = False
    for run in runs:
        rr = run["rows"]
        x = [r["round"] for r in rr]
        style = "o-" if run["corrections"] == "clicks" else "s--"
        label = (f"seed {run['seed']}, {run['strategy']} ({run['corrections']}), "
                 f"{settings_label(run['settings'].get('set'))}")
        first = label not in colours
        colour = colours.setdefault(label, next(palette))
        for i, (ax, (key, _)) in enumerate(zip(axes, keys)):
            ax.plot(x, [r[key] for r in rr], style, color=colour, alpha=0.8,
                    label=label if first and i == 0 else "_nolegend_")
            cand = [(r["round"], r.get(f"cand_{key}")) for r in rr if r.get(f"cand_{key}") is not None]
            if cand:  # each round's new version, activated or not
                ax.plot(*zip(*cand), "x:", color=colour, alpha=0.6,
                        label="new version (x)" if i == 0 and not cand_labelled else "_nolegend_")
                cand_labelled = cand_labelled or i == 0
        axes[0].fill_between(x, [r["dice_lo"] for r in rr], [r["dice_hi"] for r in rr], color=colour,
                             alpha=0.08)
    for ax, (key, title) in zip(axes, keys):
        ax.axhline(frozen[key], color="grey", ls=":", lw=1.2, label="frozen")
        ax.set_title(f"{site}: {title}" if key == "dice_median" else title, fontsize=10)
        ax.set_xlabel("round (5 reviewed cases each)")
        ax.set_xticks(sorted({r["round"] for run in runs for r in run["rows"]}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report_loop(out: Path, sites: list[str], seeds: list[int], frozen: dict[str, dict]) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("loop-*.json"))]
    runs = [r for r in runs if r["site"] in sites and r["seed"] in seeds]
    rows = [dict(r, site=run["site"], seed=run["seed"], corrections=run["corrections"],
                 settings=settings_label(run["settings"].get("set")), dice_ci=(
        f"{r['dice_lo']:.3f}-{r['dice_hi']:.3f}"), verdict={None: "", True: "activated", False: "refused"}[
        r["activated"]]) for run in runs for r in judge_rounds(run["rows"])]
    if rows:
        print_table(rows, ["site", "seed", "corrections", "settings", "strategy", "round", "dice_median",
                           "dice_ci", "recall", "fp_per_case", "cand_dice_median", "cand_recall",
                           "cand_fp_per_case", "rose", "verdict", "right", "default_dice_median",
                           "cand_default_dice_median", "clicks", "finetune_s", "round_s"])
    for summary in summarise_seeds(runs, frozen):
        print(summary.line())
    for site in sites:
        site_runs = [r for r in runs if r["site"] == site]
        if site_runs:
            plot_loop(site, site_runs, frozen[site], out / f"adaptation_{site}.png")
            print(f"wrote {out / f'adaptation_{site}.png'}")


def report_ablation(out: Path, sites: list[str], seeds: list[int]) -> None:
    rows = []
    for p in sorted(out.glob("ablation-*.json")):
        data = json.loads(p.read_text())
        if data["site"] in sites and data["seed"] in seeds:
            rows += data["rows"]
    if rows:
        print_table(rows, ["variant", "site", "dice_median", "recall", "fp_per_case", "default_dice_median",
                           "activated", "finetune_s"])


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frozen = {}
    for site in args.sites:
        bench = Bench(args, site)
        frozen[site] = {**_summary(bench.frozen_site), **_summary(bench.frozen_default, "default_")}
        print(f"frozen model, {site}: held-out median Dice {bench.frozen_site['dice_median']:.3f} "
              f"({bench.frozen_site['dice_lo']:.3f}-{bench.frozen_site['dice_hi']:.3f}), recall "
              f"{bench.frozen_site['recall']:.3f}, false nodes/case {bench.frozen_site['fp_per_case']:.2f}; "
              f"default site Dice {bench.frozen_default['dice_median']:.3f}")
        (out / f"frozen-{site}.json").write_text(json.dumps(frozen[site], indent=1))
        for seed in args.seeds:
            if args.mode == "ablation":
                run_ablation(bench, seed, out / f"ablation-{site}-s{seed}-it{args.iterations}.json")
            elif args.mode == "loop":
                for strategy in args.strategies.split(","):
                    path = out / f"loop-{site}-s{seed}-{loop_name(strategy, args.corrections, args.set)}.json"
                    if path.is_file():
                        continue
                    run = {"site": site, "seed": seed, "strategy": strategy, "corrections": args.corrections,
                           "settings": vars(args), "started": time.time()}
                    partial = path.with_name("partial-" + path.name)  # the rounds so far (a cut-off run)
                    rows = run_loop(bench, seed, strategy,
                                    on_round=lambda r, o=run, to=partial: save_run(to, o, r))
                    save_run(path, run, rows)
                    partial.unlink(missing_ok=True)
    if args.mode in ("loop", "report"):
        report_loop(out, args.sites, args.seeds, frozen)
    if args.mode in ("ablation", "report"):
        report_ablation(out, args.sites, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
