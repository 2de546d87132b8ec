"""The activation rule: whether a fine-tuned model may replace the active one, and why, in figures.

A candidate is compared case by case with its parent and with the original model (the root of the
lineage, so that many small accepted losses cannot add up) on the same held-out corrected cases. A
paired bootstrap over cases gives a two-sided ``confidence`` interval for each mean difference; the
candidate is activated when, against both, it is non-inferior within margins fixed in advance:
surface Dice (lower bound > -dice_margin), node recall (lower bound > -recall_margin) and false nodes
per case net of the nodes it newly finds (estimate, with a prior, <= fp_margin; its interval is
reported). With fewer than ``min_cases`` cases with a defined surface Dice the evidence is thin (a
percentile bootstrap over two cases has the worse case as its bound, over three or four little else):
the rule says so and decides on the point estimates with the same margins, the surface Dice's weighed
against ``dice_prior_cases`` (2) cases of no change, as the false nodes' are (below).

The surface Dice's prior (session 39): on the held-out cases of sessions 31-39's loops (232 case pairs)
candidate minus parent surface Dice had a per-case SD of 0.035 (pooled within rounds; habitus 0.031,
lowdose 0.062, nodes 0.013), and in rounds 2-3, where the thin-evidence margin bites, the test set's change
was +0.011 +- 0.009 (k = (0.035 / 0.014)^2 ~ 3; habitus 4, lowdose 2, nodes 1); held-out surface Dice read
about 0.013 below the test set's change (click corrections keep the parent's outlines). With the plain mean
one held-out case at -0.022 to -0.044 refused versions that rose on the test set: replayed on those loops'
81 rounds (``benchmarks/bench_rule_replay.py --set dice_prior_cases=K``) k = 0 was right by the issue's bar
in 60, k = 2 (to 16) in 67: seven habitus refusals (about five distinct rounds) turn right, none turns
wrong; but only three of the 81 versions fell, none refused on this margin, so the replay cannot show the
cost: k = 2 is the smallest that turns all seven; one case must stay above -0.06, two above a mean of -0.04.
From ``min_cases`` cases on the bootstrap's bound decides, without the prior: four cases at -0.024 pass
(judged -0.016), five alike are refused (bound -0.024), a larger step with more evidence than the false
nodes' prior makes, which holds at every count.

False nodes are judged by their estimate, not their bound, because no fine-tune has the evidence for
the bound: per case, candidate minus parent false nodes (net of nodes found) had a standard deviation of
0.73 over 40 case pairs of session 19's cross-fitted loops (6 verdicts on 5-10 held-out cases), so an
upper 95 % bound under +0.2 per case needs about 36 held-out cases for a version exactly as bold as its
parent, 83 to pass it four times in five. Judged by the bound, the cross-fitted verdicts refused 5 of 6
versions, all of which rose on the test set; every refusal broke the false-node bound, and 4 of the 5
had a surface Dice interval above zero (``docs/adaptation_history.md``, session 19). A version that adds
false nodes beyond the margin is refused as before (``tests/test_activation.py``); the estimate's cost,
measured: one of nine cross-fitted rounds activated a version whose held-out false nodes were paid for
by nodes it found while the test set had +0.50 per case (lowdose pool 1, round 3).

The estimate is taken with ``fp_prior_cases`` (4) cases of no change added to the held-out ones: the
posterior mean under a normal prior centred on the parent's false nodes with SD 0.73 / 2 = 0.37 per
case (wider than every change measured on 20 test cases, +0.05 to +0.25 per case over 18 rounds) and
the per-case SD 0.73 above. On one to three held-out cases a single extra false node is a mean of +0.33
to +1.00 per case, far over the margin, yet says almost nothing: of the 5 wrong verdicts of sessions
19-20's 18 kept rounds (defaults and cross-fitted; judged on 20 test cases), 3 refused versions that
rose on extra held-out false nodes. With the prior one extra net false node never refuses on its own,
two refuse on up to five held-out cases, and +0.3 per case is still refused on ten
(``tests/test_activation.py``). Replayed on those 18 rounds (where the constant was chosen, so the
replay is no test of it) it is right in 15 against 13; its test is new loops (``docs/adaptation_history.md``,
session 21).

A version can rise on the user's site and lose where the original was good: the two default-setting
loops of session 21 whose round-3 version the rule activated lost 1.8 and 1.9 points of median Dice on
the default site. So a candidate is also scored, when there are such cases, against the original on a
few labelled cases of the original model's own data (:mod:`lnq_napari.finetuning.forgetting`: for the
bundled model, default-site phantoms) and refused when its median Dice there is more than
``forgetting_margin`` below the original's. Measured offline on sessions 20-21's loops with four such
cases and a margin of 1 point (the issue's default-site target) it refused all four versions that lost
more than a point on the default site's test set and one version that did not
(``benchmarks/bench_forgetting_check.py``). The margin is 0.9 points since session 38: on the loops of
sessions 22-37 the check read up to 0.07 points milder than the default site's six test cases, and a
version it passed at -0.99 lost 1.03 there.

False nodes are counted per connected component, so a candidate that paints one blob over most of a CT
(an under-trained nnU-Net parent found nothing; its fine-tune painted 94 % of a test CT, session 30)
finds every node with no false node, and its surface Dice, a little above a parent's 0, passes too. The
rule therefore also compares the volume each model paints more than ``GROWN_LENIENCE_MM``
(:mod:`lnq_napari.training.corrections`) from every node of a correction
(:func:`lnq_napari.metrics.false_volume_ml`, a mean per case) and refuses a candidate that paints more
than ``false_volume_margin_ml`` (20 mL, a 34 mm ball, per case) beyond the parent's or the original's:
a margin for runaways only, far above what a false node or a grown outline adds (the bundled model
painted 0-2.9 mL per case there, up to two false nodes, on twelve phantoms of four sites against
complete truth, session 31: ``python benchmarks/bench_false_volume.py``).

Outlines are judged by surface Dice at :data:`SURFACE_TOLERANCE_MM`, not volumetric Dice: a click
correction keeps the parent's own outlines wherever no click touched them, and volumetric Dice against
it leaned 0.075 toward the parent (its difference candidate - parent agreed in sign with the one
against complete truth on 10 of 18 case pairs); surface Dice at 3 mm leaned 0.008 and agreed in sign
with complete truth's surface Dice on 18 of 18 pairs and with its volumetric Dice on 15
(``benchmarks/bench_rule_fidelity.py``, habitus site, 3 fine-tuned candidates x 6 test cases).
A click grows a node only until the reviewer stops, so a node the reviewer grew or added is at least
its corrected size: a model outline reaching up to ``GROWN_LENIENCE_MM`` beyond it does not count
against the model (:func:`lnq_napari.metrics.surface_dice`); the nodes left as predicted keep the
symmetric tolerance. With both (session 15, ``docs/adaptation_history.md``), replayed on the 24 rounds of
session 14's loops (where they were chosen) the rule is right by the issue's bar in 20 against 14, on
the 30 rounds of sessions 9-12 in 19 against 14 (``benchmarks/bench_rule_replay.py``).
Tried in session 12 and reverted: judging outlines by the known-voxel Dice
(:func:`lnq_napari.metrics.known_voxel_dice`, blind to growth into tissue the correction leaves unknown);
replayed on 30 loop rounds it was right by the issue's bar in 15 against 14: three refusals of better
lowdose versions became activations, and two refusals of noncontrast versions with more false nodes
did too (``docs/adaptation_history.md``, session 12).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lnq_napari.metrics import CaseScores

MODELS = ("candidate", "parent", "original")
#: Outline differences below this many mm do not count in the held-out surface Dice the rule judges.
SURFACE_TOLERANCE_MM = 3.0


@dataclass(frozen=True)
class CaseFigures:
    """One model's figures on one held-out case. ``dice`` (volumetric, reported) and ``surface_dice``
    (what the rule judges outlines by) are NaN when undefined (empty masks, or not measured);
    ``false_volume_ml`` (:func:`lnq_napari.metrics.false_volume_ml` beyond ``GROWN_LENIENCE_MM``) is
    NaN when not measured."""

    case_id: str
    dice: float
    nodes_hit: int
    nodes_gt: int
    false_nodes: int
    surface_dice: float = math.nan
    false_volume_ml: float = math.nan

    @classmethod
    def from_dict(cls, data: Mapping) -> CaseFigures:
        """From :func:`dataclasses.asdict` as stored in standard JSON (an undefined figure as null)."""
        return cls(**{k: math.nan if v is None else v for k, v in data.items()})

    @classmethod
    def from_metrics(cls, case_id: str, scores: CaseScores) -> CaseFigures:
        """From :func:`lnq_napari.metrics.evaluate_case`'s scores (a figure not measured as NaN)."""
        def measured(value: float | None) -> float:
            return math.nan if value is None else float(value)

        return cls(case_id, float(scores.dice), int(scores.nodes_hit), int(scores.nodes_gt),
                   int(scores.fp_nodes), measured(scores.surface_dice), measured(scores.false_volume_ml))


@dataclass(frozen=True)
class ActivationRule:
    """Margins and bootstrap settings, fixed before any figure is seen.

    ``hit_credit``: extra false nodes per case that one newly found true node pays for (0 charges
    every extra false node). ``fp_prior_cases``: cases of no change added to the held-out ones when
    the false nodes' estimate is judged against ``fp_margin`` (0: the plain mean). ``dice_prior_cases``:
    the same for the surface Dice's estimate against ``dice_margin`` on thin evidence (fewer than
    ``min_cases`` cases, where the point estimate is judged; 0: the plain mean). ``confidence``:
    level of the two-sided bootstrap interval whose ends the margins are checked against.
    ``forgetting_margin``: how far the candidate's median Dice on the original's own data (the forgetting
    check) may fall below the original's. ``false_volume_margin_ml``: how much more volume per case (mean,
    over the cases where both models' is measured) the candidate may paint where the correction has no
    node; it only catches a runaway, as one blob over most of a CT, that counts as no false node.
    """

    dice_margin: float = 0.02
    recall_margin: float = 0.05
    fp_margin: float = 0.2
    hit_credit: float = 1.0
    fp_prior_cases: float = 4.0
    dice_prior_cases: float = 2.0
    forgetting_margin: float = 0.009
    false_volume_margin_ml: float = 20.0
    n_bootstrap: int = 2000
    confidence: float = 0.9
    seed: int = 0
    min_cases: int = 5


@dataclass(frozen=True)
class Verdict:
    """Whether to activate the candidate; ``reason`` is one line with the figures in ``figures``.

    ``figures`` keys: ``n_cases``, ``confidence``;
    ``{model}_{dice|surface_dice|recall|false_nodes|false_volume_ml}`` for each model (means over defined
    cases, pooled recall, false nodes per case); and for ``vs`` in parent/original,
    ``{surface_dice|recall|false_nodes|net_false_nodes}_vs_{vs}`` with ``_low``/``_high``,
    ``net_false_nodes_vs_{vs}_judged`` (the estimate with the prior's cases),
    ``surface_dice_vs_{vs}_judged`` where the surface Dice was judged with ``dice_prior_cases`` (thin
    evidence) and ``false_volume_ml_vs_{vs}``;
    with a forgetting check ``forgetting_cases``, ``forgetting_{candidate|original}_dice`` (median Dice)
    and ``forgetting_dice_vs_original``.
    """

    activate: bool
    reason: str
    figures: dict[str, float]


@dataclass(frozen=True)
class ForgettingFigures:
    """The candidate's and the original's figures on the same cases of the original model's own data;
    ``source`` says which cases, in words. A candidate whose prediction stopped once the check could
    only refuse it holds figures of the first cases only (:attr:`stopped_early`)."""

    source: str
    candidate: tuple[CaseFigures, ...]
    original: tuple[CaseFigures, ...]

    @property
    def stopped_early(self) -> bool:
        """Whether the candidate's last cases were left unpredicted."""
        return len(self.candidate) < len(self.original)

    def change_words(self) -> str:
        """The candidate's median Dice minus the original's, e.g. ``"-0.012"``; ``"at most -0.012"`` for a
        check that :attr:`stopped_early`."""
        cand, orig = self.medians()
        return f"{'at most ' if self.stopped_early else ''}{cand - orig:+.3f}"

    def partial_note(self) -> str:
        """``"; k of n cases predicted"`` for a check that :attr:`stopped_early`, else ``""``."""
        if not self.stopped_early:
            return ""
        return f"; {len(self.candidate)} of {len(self.original)} cases predicted"

    def medians(self) -> tuple[float, float]:
        """Median Dice of the candidate and of the original over the cases where both are defined; for a
        check that :attr:`stopped_early`, the candidate's at most (Dice 1 on each case left, whose
        truth holds a node and so a defined Dice)."""
        known = [(c.dice, o.dice) for c, o in zip(self.candidate, self.original)]
        left = [(1.0, o.dice) for o in self.original[len(self.candidate):]]
        pairs = [(c, o) for c, o in known + left if math.isfinite(c) and math.isfinite(o)]
        if not pairs:
            return math.nan, math.nan
        return float(np.median([c for c, _ in pairs])), float(np.median([o for _, o in pairs]))


@dataclass(frozen=True)
class _Difference:
    """A mean difference (candidate minus other) and its interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class _Comparison:
    against: str
    surface_dice: _Difference
    recall: _Difference
    false_nodes: _Difference
    net_false_nodes: _Difference
    judged_false_nodes: float  # net extra false nodes over the held-out cases plus the prior's
    judged_surface_dice: float | None  # on thin evidence with dice_prior_cases: likewise; else None
    false_volume_ml: float  # mean extra volume painted where no node is, per case; NaN when unmeasured
    failures: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    """Per-case figures aligned by case: columns candidate, parent, original."""

    case_ids: tuple[str, ...]
    dice: np.ndarray  # (n, 3) float, NaN where undefined
    surface_dice: np.ndarray  # (n, 3) float, NaN where undefined
    hits: np.ndarray  # (n, 3)
    fp: np.ndarray  # (n, 3)
    false_volume: np.ndarray  # (n, 3) float mL, NaN where not measured
    gt: np.ndarray  # (n,)


def _table(candidate: Sequence[CaseFigures], parent: Sequence[CaseFigures],
           original: Sequence[CaseFigures]) -> _Table:
    """Align the three models' figures by case id (sorted); they must cover the same cases and GT nodes."""
    rows = [{f.case_id: f for f in figures} for figures in (candidate, parent, original)]
    ids = tuple(sorted(f.case_id for f in candidate))  # the bootstrap does not depend on input order
    if len(rows[0]) != len(candidate) or any(set(r) != set(ids) for r in rows):
        raise ValueError("the candidate, parent and original figures must cover the same held-out cases")
    per = [[r[i] for r in rows] for i in ids]
    if any(len({f.nodes_gt for f in case}) > 1 for case in per):
        raise ValueError("the models' figures disagree on the number of GT nodes of a case")
    return _Table(
        ids,
        np.array([[f.dice for f in case] for case in per], dtype=float).reshape(-1, 3),
        np.array([[f.surface_dice for f in case] for case in per], dtype=float).reshape(-1, 3),
        np.array([[f.nodes_hit for f in case] for case in per], dtype=float).reshape(-1, 3),
        np.array([[f.false_nodes for f in case] for case in per], dtype=float).reshape(-1, 3),
        np.array([[f.false_volume_ml for f in case] for case in per], dtype=float).reshape(-1, 3),
        np.array([case[0].nodes_gt for case in per], dtype=float),
    )


def _ratio(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """sum(num) / sum(den) over each row of case indices ``idx``; NaN where sum(den) is 0."""
    top, bottom = num[idx].sum(axis=-1), den[idx].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), math.nan)


def _difference(num: np.ndarray, den: np.ndarray, idx: np.ndarray | None, confidence: float) -> _Difference:
    """Point estimate over all cases and, given bootstrap rows ``idx``, its two-sided interval."""
    estimate = float(_ratio(num, den, np.arange(num.size))[()])
    boot = np.empty(0) if idx is None else _ratio(num, den, idx)
    boot = boot[np.isfinite(boot)]  # resamples without a defined value say nothing
    if boot.size == 0 or not math.isfinite(estimate):
        return _Difference(estimate, estimate, estimate)
    tail = (1.0 - confidence) / 2.0
    return _Difference(estimate, float(np.quantile(boot, tail)), float(np.quantile(boot, 1.0 - tail)))


def _compare(t: _Table, other: int, idx: np.ndarray | None, rule: ActivationRule) -> _Comparison:
    """Candidate (column 0) against column ``other``; failures name each margin it breaks."""
    defined = np.isfinite(t.surface_dice[:, 0]) & np.isfinite(t.surface_dice[:, other])
    d_dice = np.where(defined, t.surface_dice[:, 0] - t.surface_dice[:, other], 0.0)
    d_hits = t.hits[:, 0] - t.hits[:, other]
    d_fp = t.fp[:, 0] - t.fp[:, other]
    ones = np.ones_like(d_fp)
    dice = _difference(d_dice, defined.astype(float), idx, rule.confidence)
    recall = _difference(d_hits, t.gt, idx, rule.confidence)
    fp = _difference(d_fp, ones, idx, rule.confidence)
    d_net = d_fp - rule.hit_credit * d_hits
    net = _difference(d_net, ones, idx, rule.confidence)
    judged = float(d_net.sum() / (d_net.size + rule.fp_prior_cases))
    judged_dice = float(d_dice.sum() / (defined.sum() + rule.dice_prior_cases)) \
        if idx is None and rule.dice_prior_cases > 0 and defined.any() else None
    measured = np.isfinite(t.false_volume[:, 0]) & np.isfinite(t.false_volume[:, other])
    volume = float((t.false_volume[measured, 0] - t.false_volume[measured, other]).mean()) \
        if measured.any() else math.nan
    against = MODELS[other]
    failures = _failures(against, dice, judged_dice, recall, net, judged, rule)
    if volume > rule.false_volume_margin_ml:
        failures += (f"volume painted where no node is vs {against} {volume:+.1f} mL/case "
                     f"(margin +{rule.false_volume_margin_ml:g})",)
    return _Comparison(against, dice, recall, fp, net, judged, judged_dice, volume, failures)


def _failures(against: str, dice: _Difference, judged_dice: float | None, recall: _Difference,
              net: _Difference, judged: float, rule: ActivationRule) -> tuple[str, ...]:
    """The margins the candidate breaks against one model (on thin evidence the bounds are the point
    estimates, the surface Dice's taken with the prior's cases when ``judged_dice`` is given)."""
    out = []
    if not math.isfinite(dice.estimate):
        out.append(f"no case with a defined surface Dice for candidate and {against}")
    elif judged_dice is not None:
        if round(judged_dice, 9) <= -rule.dice_margin:  # the plain mean's test, free of float noise
            out.append(f"surface Dice vs {against} {dice.estimate:+.3f}, {judged_dice:+.3f} with "
                       f"{rule.dice_prior_cases:g} prior cases of no change (margin -{rule.dice_margin:g})")
    elif dice.low <= -rule.dice_margin:
        out.append(f"surface Dice vs {against} {dice.estimate:+.3f}, bound {dice.low:+.3f} "
                   f"(margin -{rule.dice_margin:g})")
    if math.isfinite(recall.estimate) and recall.low <= -rule.recall_margin:
        out.append(f"recall vs {against} {recall.estimate:+.2f}, bound {recall.low:+.2f} "
                   f"(margin -{rule.recall_margin:g})")
    if judged > rule.fp_margin + 1e-9:
        out.append(f"false nodes vs {against} {net.estimate:+.2f}/case net of nodes found, "
                   f"{judged:+.2f} with {rule.fp_prior_cases:g} prior cases of no change "
                   f"(margin +{rule.fp_margin:g})")
    return tuple(out)


def _interval(d: _Difference, fmt: str, label: str | None) -> str:
    """``+0.18 [90% CI +0.09, +0.27]``, or the point estimate alone when ``label`` is None; "undefined"
    when no case defines it (recall where no held-out correction has a node)."""
    if not math.isfinite(d.estimate):
        return "undefined"
    if label is None:
        return f"{d.estimate:{fmt}}"
    return f"{d.estimate:{fmt}} [{label} {d.low:{fmt}}, {d.high:{fmt}}]"


def _describe(c: _Comparison, label: str | None) -> str:
    """One comparison in words: each difference with its interval."""
    judged = "" if c.judged_surface_dice is None else f" (judged {c.judged_surface_dice:+.3f})"
    return (f"vs {c.against}: surface Dice {_interval(c.surface_dice, '+.3f', label)}{judged}, "
            f"recall {_interval(c.recall, '+.2f', label)}, "
            f"false nodes per case {_interval(c.false_nodes, '+.2f', label)} "
            f"(net of nodes found {_interval(c.net_false_nodes, '+.2f', label)}, "
            f"judged {c.judged_false_nodes:+.2f})"
            + (f", volume where no node is {c.false_volume_ml:+.1f} mL/case"
               if math.isfinite(c.false_volume_ml) else ""))


def _figures(t: _Table, comparisons: Sequence[_Comparison], rule: ActivationRule) -> dict[str, float]:
    """The flat figures of a verdict (see :class:`Verdict`)."""
    out: dict[str, float] = {"n_cases": float(len(t.case_ids)), "confidence": rule.confidence}
    every = np.arange(len(t.case_ids))
    for col, model in enumerate(MODELS):
        for name in ("dice", "surface_dice"):
            values = getattr(t, name)[:, col]
            defined = np.isfinite(values)
            out[f"{model}_{name}"] = float(values[defined].mean()) if defined.any() else math.nan
        out[f"{model}_recall"] = float(_ratio(t.hits[:, col], t.gt, every)[()])
        out[f"{model}_false_nodes"] = float(t.fp[:, col].mean()) if len(every) else math.nan
        volume = t.false_volume[:, col]
        out[f"{model}_false_volume_ml"] = float(volume[np.isfinite(volume)].mean()) \
            if np.isfinite(volume).any() else math.nan
    for c in comparisons:
        for name in ("surface_dice", "recall", "false_nodes", "net_false_nodes"):
            d = getattr(c, name)
            key = f"{name}_vs_{c.against}"
            out.update({key: d.estimate, f"{key}_low": d.low, f"{key}_high": d.high})
        out[f"net_false_nodes_vs_{c.against}_judged"] = c.judged_false_nodes
        if c.judged_surface_dice is not None:
            out[f"surface_dice_vs_{c.against}_judged"] = c.judged_surface_dice
        out[f"false_volume_ml_vs_{c.against}"] = c.false_volume_ml
    return out


def _forgetting(f: ForgettingFigures, rule: ActivationRule) -> tuple[list[str], str, dict[str, float]]:
    """The forgetting check: its failures, its words and its figures."""
    if [c.case_id for c in f.candidate] != [o.case_id for o in f.original][: len(f.candidate)]:
        raise ValueError("the forgetting check's candidate and original figures must cover the same cases")
    cand, orig = f.medians()
    change = cand - orig
    most = "at most " if f.stopped_early else ""
    words = (f"forgetting check on {f.source}: median Dice {most}{cand:.3f} vs original {orig:.3f} "
             f"({f.change_words()}{f.partial_note()})")
    failures = []
    if not math.isfinite(change):
        words = f"forgetting check on {f.source}: no case with a defined Dice"
    elif change < -rule.forgetting_margin - 1e-9:
        failures.append(f"median Dice on the original's own data {f.change_words()} vs original "
                        f"(margin -{rule.forgetting_margin:g}{f.partial_note()})")
    figures = {"forgetting_cases": float(len(f.original)), "forgetting_candidate_dice": cand,
               "forgetting_original_dice": orig, "forgetting_dice_vs_original": change}
    return failures, words, figures


def forgetting_refuses(f: ForgettingFigures, rule: ActivationRule = ActivationRule()) -> bool:
    """Whether the forgetting check alone refuses a candidate (more than ``rule.forgetting_margin`` below
    the original on the original's own data)."""
    return bool(_forgetting(f, rule)[0])


def decide_activation(candidate: Sequence[CaseFigures], parent: Sequence[CaseFigures],
                      original: Sequence[CaseFigures] | None = None,
                      rule: ActivationRule = ActivationRule(),
                      forgetting: ForgettingFigures | None = None) -> Verdict:
    """Whether the candidate may replace its parent, judged on the same held-out cases against the
    parent and the original model (``original`` None: the parent is the original) and, given
    ``forgetting``, on cases of the original's own data against the original."""
    t = _table(candidate, parent, parent if original is None else original)
    n = len(t.case_ids)
    if n == 0:
        return Verdict(False, "refuse: no held-out corrected case to judge the candidate on; "
                              "correct more cases or activate it by hand", {"n_cases": 0.0})
    usable = int((np.isfinite(t.surface_dice[:, 0]) & np.isfinite(t.surface_dice[:, 1])).sum())
    thin = usable < rule.min_cases
    idx = None if thin else np.random.default_rng(rule.seed).integers(0, n, size=(rule.n_bootstrap, n))
    comparisons = [_compare(t, 1, idx, rule)]
    if original is not None:
        comparisons.append(_compare(t, 2, idx, rule))
    failures = [f for c in comparisons for f in c.failures]
    label = None if thin else f"{rule.confidence:.0%} CI"
    words = [_describe(c, label) for c in comparisons]
    if original is None:
        words.append("the parent is the original")
    evidence = f"{n} held-out case{'s' if n != 1 else ''}"
    if thin:
        evidence += f", {usable} with a defined surface Dice: thin evidence, decided on point estimates"
    figures = _figures(t, comparisons, rule)
    tail = ""
    if forgetting is not None:
        forgot, said, extra = _forgetting(forgetting, rule)
        failures += forgot
        tail = f"; {said}"
        figures.update(extra)
    head = "activate" if not failures else f"refuse ({'; '.join(failures)})"
    return Verdict(not failures, f"{head}: {'; '.join(words)}; {evidence}{tail}", figures)
