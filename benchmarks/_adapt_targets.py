"""The adaptation issue's bar, applied to finished loop runs of ``bench_adaptation.py``.

- A new version **rose** when, against the model active at the time, its held-out median Dice and node
  recall are not lower and its false nodes per case at most ``FP_MARGIN`` higher. The rule is **right**
  when it activated a version that rose or refused one that did not.
- After the last round the user's model **meets the targets** when its held-out median Dice is at least
  ``DICE_GAIN`` over the frozen model's or at least ``DICE_FLOOR``, its recall at least ``RECALL_FLOOR``
  and its false nodes per case at most the frozen model's + ``FP_MARGIN``.
- Across seeds (each seed draws its own pool; the test set is the same) the mean of the user's median
  Dice gets a two-level bootstrap interval: seeds and test cases are resampled in each draw (the same
  cases for every seed, as the test set is shared), so it holds both the pool's luck and the test set's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

FP_MARGIN, DICE_GAIN, DICE_FLOOR, RECALL_FLOOR = 0.2, 0.08, 0.85, 0.95


def rose(new: dict, before: dict, prefix: str = "") -> bool:
    """Whether the figures ``prefix`` + key of ``new`` rose against ``before`` (the active model's)."""
    return (new[prefix + "dice_median"] >= before["dice_median"]
            and new[prefix + "recall"] >= before["recall"]
            and new[prefix + "fp_per_case"] <= before["fp_per_case"] + FP_MARGIN + 1e-9)


def judge_rounds(rows: list[dict]) -> list[dict]:
    """``rows`` of one loop run with ``rose`` and ``right`` added to each fine-tuned round."""
    out = [dict(rows[0])]
    for before, row in zip(rows, rows[1:]):
        went_up = rose(row, before, "cand_")
        out.append(dict(row, rose=went_up, right=bool(row["activated"]) == went_up))
    return out


def meets_targets(final: dict, frozen: dict) -> bool:
    """Whether the user's model after the last round meets the issue's held-out targets."""
    dice_ok = final["dice_median"] >= frozen["dice_median"] + DICE_GAIN or final["dice_median"] >= DICE_FLOOR
    return (dice_ok and final["recall"] >= RECALL_FLOOR
            and final["fp_per_case"] <= frozen["fp_per_case"] + FP_MARGIN + 1e-9)


@dataclass(frozen=True)
class SeedSummary:
    """One site's (and setting's) loop runs over seeds: what the user has after the last round."""

    group: str
    seeds: list[int]
    dice_mean: float
    dice_lo: float
    dice_hi: float
    recall_mean: float
    fp_mean: float
    frozen_dice: float
    frozen_recall: float
    frozen_fp: float
    met: int  # seeds whose final model meets the targets
    right: int  # rounds (all seeds) where the rule was right by the bar
    rounds: int

    def line(self) -> str:
        return (f"{self.group}: seeds {','.join(map(str, self.seeds))}: the user's model after the last "
                f"round: mean median Dice {self.dice_mean:.3f} "
                f"(90% CI {self.dice_lo:.3f}-{self.dice_hi:.3f}; "
                f"frozen {self.frozen_dice:.3f}), recall {self.recall_mean:.3f} (frozen "
                f"{self.frozen_recall:.3f}), false nodes/case {self.fp_mean:.2f} "
                f"(frozen {self.frozen_fp:.2f}); "
                f"targets met on {self.met}/{len(self.seeds)} seeds; rule right by the bar in "
                f"{self.right}/{self.rounds} rounds")


def seed_interval(case_dice: list[list[float]], confidence: float = 0.9, n: int = 4000,
                  seed: int = 0) -> tuple[float, float]:
    """Two-level bootstrap interval of the mean over seeds of the median over test cases.

    ``case_dice[s][c]``: seed ``s``'s Dice on test case ``c`` (the same cases in the same order per seed).
    """
    d = np.asarray(case_dice, float)
    rng = np.random.default_rng(seed)
    s_idx = rng.integers(0, d.shape[0], size=(n, d.shape[0]))
    c_idx = rng.integers(0, d.shape[1], size=(n, d.shape[1]))
    stats = np.array([np.nanmean(np.nanmedian(d[np.ix_(s, c)], axis=1)) for s, c in zip(s_idx, c_idx)])
    tail = 50 * (1 - confidence)
    return float(np.percentile(stats, tail)), float(np.percentile(stats, 100 - tail))


def settings_label(settings: list[str] | None) -> str:
    """A loop run's ``--set`` settings joined by ``+`` (a folder setting by its last part), or "defaults"."""
    return "+".join(re.sub(r"=.*/", "=", item) for item in settings or []) or "defaults"


def summarise_seeds(runs: list[dict], frozen: dict[str, dict]) -> list[SeedSummary]:
    """One summary per (site, strategy, corrections, settings) over the seeds run."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        setting = settings_label(run["settings"].get("set"))
        key = f"{run['site']} {run['strategy']} {run['corrections']} {setting}"
        groups.setdefault(key, []).append(run)
    out = []
    for key, group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r["seed"])
        base = frozen[group[0]["site"]]
        finals = [run["rows"][-1] for run in group]
        judged = [r for run in group for r in judge_rounds(run["rows"])[1:]]
        lo, hi = seed_interval([f["dice_cases"] for f in finals])
        out.append(SeedSummary(
            group=key, seeds=[run["seed"] for run in group],
            dice_mean=float(np.mean([f["dice_median"] for f in finals])), dice_lo=lo, dice_hi=hi,
            recall_mean=float(np.mean([f["recall"] for f in finals])),
            fp_mean=float(np.mean([f["fp_per_case"] for f in finals])),
            frozen_dice=base["dice_median"], frozen_recall=base["recall"], frozen_fp=base["fp_per_case"],
            met=sum(meets_targets(f, base) for f in finals),
            right=sum(r["right"] for r in judged), rounds=len(judged)))
    return [s for s in out if not math.isnan(s.dice_mean)]
