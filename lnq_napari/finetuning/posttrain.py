"""After a fine-tune's training: interpolating toward the parent's weights (WiSE-FT), chosen on the
validation cases; re-fitting the post-processing on the training corrections (weights untouched); and,
after the forgetting check refused a version, stepping it back toward its parent until it passes."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, Verdict, forgetting_refuses
from lnq_napari.calibration import CalibrationCase, fit_postprocessing
from lnq_napari.finetuning.validation import ValidationMetrics
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.model.checkpoint import CONFIG, load_state, read_config, save_checkpoint
from lnq_napari.per_ct import region_of

#: The alphas of w = (1 - alpha) w_parent + alpha w_finetuned tried on the validation cases.
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Interpolation:
    """The chosen ``alpha``, the validation figures there, and mean surface Dice / false nodes per alpha."""

    alpha: float
    figures: tuple[CaseFigures, ...]
    surface_dice: dict[str, float]
    false_nodes: dict[str, float]


@dataclass(frozen=True)
class PostprocessingChoice:
    """The threshold and minimum component size written into the new model's config, and why."""

    threshold: float
    min_component_mm3: float
    reason: str


def interpolated(parent: dict, tuned: dict, alpha: float) -> dict:
    """``(1 - alpha) * parent + alpha * tuned`` for floating tensors (others from ``tuned``); alpha 0 and
    1 give the parent's and the tuned weights exactly."""
    if alpha == 0.0:
        return {k: parent[k].clone() for k in tuned}
    if alpha == 1.0:
        return {k: t.clone() for k, t in tuned.items()}
    return {k: ((1.0 - alpha) * parent[k] + alpha * t) if t.is_floating_point() else t.clone()
            for k, t in tuned.items()}


def _best(summaries: dict[float, ValidationMetrics], fp_margin: float) -> float:
    """Highest mean surface Dice (the activation rule's yardstick) among the alphas whose false nodes
    per case stay within ``fp_margin`` of alpha 0 (the parent); ties go to the smaller alpha (nearer
    the parent)."""
    limit = summaries[0.0].fp_per_case + fp_margin if 0.0 in summaries else math.inf
    pool = [a for a, m in summaries.items() if not m.fp_per_case > limit + 1e-9] or list(summaries)

    def dice(a: float) -> float:
        value = summaries[a].surface_dice_mean
        return value if math.isfinite(value) else -1.0

    top = max(dice(a) for a in pool)
    return min(a for a in pool if dice(a) >= top - 1e-9)


def choose_alpha(model: Path, parent: Path, figures_of: Callable[[Path], list[CaseFigures]],
                 parent_figures: Sequence[CaseFigures], fp_margin: float = 0.2) -> Interpolation:
    """Try each of :data:`ALPHAS` on the validation cases (``figures_of(folder)``; alpha 0 is the
    parent, ``parent_figures``) and write the best interpolation into the model folder ``model``."""
    tuned, cfg = load_state(model)
    base, _ = load_state(parent)
    trial = model.with_name(model.name + ".alpha")
    figures: dict[float, list[CaseFigures]] = {}
    try:
        for alpha in ALPHAS:
            if alpha == 0.0:
                figures[alpha] = list(parent_figures)
                continue
            save_checkpoint(trial, interpolated(base, tuned, alpha), cfg)
            figures[alpha] = figures_of(trial)
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    summaries = {a: ValidationMetrics.from_figures(f) for a, f in figures.items()}
    alpha = _best(summaries, fp_margin)
    save_checkpoint(model, interpolated(base, tuned, alpha), cfg)
    return Interpolation(alpha, tuple(figures[alpha]),
                         {f"{a:g}": m.surface_dice_mean for a, m in summaries.items()},
                         {f"{a:g}": m.fp_per_case for a, m in summaries.items()})


@dataclass(frozen=True)
class StepBack:
    """The steps tried after a forgetting-check refusal: ``alpha`` of the one that passed (None: none did)
    with its ``verdict``, held-out ``figures`` and ``forgetting`` figures; ``tried`` says each step's
    outcome in words."""

    alpha: float | None
    verdict: Verdict | None
    figures: tuple[CaseFigures, ...]
    forgetting: ForgettingFigures | None
    tried: tuple[str, ...]


#: Writes the step ``alpha`` of the way from the parent's weights to the fine-tuned ones into a folder.
StepWriter = Callable[[float, Path], None]


def interpolating(model: Path, parent: Path) -> StepWriter:
    """Steps between an lnq-napari ``parent`` and ``model`` (both read once): ``write(alpha, folder)``
    writes ``(1 - alpha) w_parent + alpha w_model`` as a model folder."""
    tuned, cfg = load_state(model)
    base, _ = load_state(parent)
    return lambda alpha, folder: save_checkpoint(folder, interpolated(base, tuned, alpha), cfg)


#: The steps back a refused version may take, as alpha of ``(1 - alpha) w_parent + alpha w_refused``.
STEP_ALPHAS = (0.75, 0.5, 0.25, 0.125)


def step_alphas(parent: ForgettingFigures, refused: ForgettingFigures, rule: ActivationRule,
                steps: int) -> list[float]:
    """The steps to try after the forgetting check refused a version, largest first, at most ``steps``:
    those of :data:`STEP_ALPHAS` at or below the alpha where the check's change, drawn as a line from the
    parent's (alpha 0) to the refused version's (alpha 1), meets the margin, the last of them always the
    smallest (the refused version's change is a bound when its check stopped early: the line may reach too
    far); the smallest alone when none is, or when the parent itself is beyond the margin. A version just
    over the margin keeps three quarters of its step, one far over it an eighth, without checking the
    steps between."""
    if steps < 1:
        return []
    start, end = (float(np.subtract(*f.medians())) for f in (parent, refused))
    drop = start - end
    if start < -rule.forgetting_margin:  # the parent itself beyond the margin
        reach = 0.0
    else:
        reach = (start + rule.forgetting_margin) / drop if drop > 0 else 1.0  # no line (NaN, no drop): top
    tried = ([a for a in STEP_ALPHAS if a <= reach] or [STEP_ALPHAS[-1]])[:steps]
    return [*tried[:-1], STEP_ALPHAS[-1]]


def step_back(model: Path, write: StepWriter, alphas: Sequence[float],
              check: Callable[[Path], ForgettingFigures], held_out: Callable[[Path], list[CaseFigures]],
              judge: Callable[[list[CaseFigures], ForgettingFigures], Verdict],
              rule: ActivationRule, say: Callable[[str], None] | None = None) -> StepBack:
    """Try the steps ``alphas`` (:func:`step_alphas`) of the way from the parent to ``model``
    (``write(a, folder)``), in turn: the forgetting check first (``check(folder)``), then the held-out
    figures (``held_out(folder)``) and the rule on both (``judge``); the first that the rule activates is
    written into ``model``, which is otherwise untouched. ``say(message)`` hears what is being predicted."""
    say = say or (lambda message: None)
    trial = model.with_name(model.name + ".step")
    tried = []
    try:
        for alpha in alphas:
            write(alpha, trial)
            say(f"stepping back to alpha {alpha:g}: forgetting check")
            forgetting = check(trial)
            said = f"alpha {alpha:g}: check {forgetting.change_words()}"
            if forgetting_refuses(forgetting, rule):
                tried.append(f"{said} (refused{forgetting.partial_note()})")
                continue
            say(f"stepping back to alpha {alpha:g}: held-out cases")
            figures = held_out(trial)
            verdict = judge(figures, forgetting)
            if verdict.activate:
                write(alpha, model)
                return StepBack(alpha, verdict, tuple(figures), forgetting, (*tried, said))
            tried.append(f"{said}, held-out figures refused")
    finally:
        shutil.rmtree(trial, ignore_errors=True)
    return StepBack(None, None, (), None, tuple(tried))


def stepped_back_verdict(refused: Verdict, step: StepBack, parent: str, scale: float = 1.0) -> Verdict:
    """The verdict after a step back from the ``refused`` version toward ``parent`` (a version id): the
    activation of the step that passed (its alpha times ``scale``, the share of the fine-tuned weights the
    refused version held), or the refusal with the steps tried."""
    tried = "; ".join(step.tried)
    if step.alpha is None:
        return dataclasses.replace(refused, reason=f"{refused.reason}; stepped back toward {parent}, none "
                                   f"passed ({tried})")
    total = step.alpha * scale
    head = refused.reason.split(":", 1)[0]
    reason = (f"activate the step back to alpha {total:g} (w = {1 - total:g} {parent} + {total:g} "
              f"fine-tuned; the full step: {head}; {tried}): {step.verdict.reason}")
    return Verdict(True, reason, {**step.verdict.figures, "step_back_alpha": step.alpha})


def _calibration_case(predictor, ws, case: str, correction: str, margin_mm: float | None,
                      cancel=None) -> CalibrationCase:
    ct = ws.read_ct(case)
    probabilities = predictor.predict(ct, cancel=cancel).probabilities.array
    truth = np.asarray(ws.read_labels(case, correction).array) > 0
    region = None if margin_mm is None else region_of(ct, float(margin_mm))
    return CalibrationCase(case, np.asarray(probabilities, np.float32), np.asarray(ct.array),
                           tuple(ct.spacing_zyx), truth, region)


def refit_postprocessing(model: Path, predictor, ws, cases: Sequence[str], corrections: dict[str, str],
                         parent_fp_per_case: float | None, cancel=None) -> PostprocessingChoice:
    """Fit threshold and minimum component size of ``model`` (predicted by ``predictor``) on the
    corrected ``cases`` only, false nodes per case near the parent's; write them into its config.json."""
    inf = read_config(model).inference
    calibration = [_calibration_case(predictor, ws, case, corrections[case], inf.mediastinum_margin_mm,
                                     cancel) for case in cases]
    fit = fit_postprocessing(calibration, parent_fp_per_case, current_threshold=float(inf.threshold),
                             current_min_component_mm3=float(inf.min_component_mm3),
                             max_mean_hu=inf.max_mean_hu, min_peak=float(inf.min_peak))
    data = json.loads((model / CONFIG).read_text())
    data.setdefault("inference", {}).update(threshold=fit.threshold, min_component_mm3=fit.min_component_mm3)
    atomic_write_text(model / CONFIG, json.dumps(data, indent=2) + "\n")
    return PostprocessingChoice(fit.threshold, fit.min_component_mm3, fit.reason)
