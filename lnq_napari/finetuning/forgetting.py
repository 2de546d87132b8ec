"""The forgetting check's cases and figures: a candidate against the lineage's original model on a few
labelled cases of the original's own data (the activation rule refuses a candidate that falls more
than ``ActivationRule.forgetting_margin`` below the original there:
:func:`lnq_napari.activation.decide_activation`).

Which cases: ``FinetuneConfig.forgetting_data`` (an LNQ-layout folder; complete labels ``-full`` where a
case has them, else its ``-seg`` labels, where unlabelled nodes a model finds lower both models' Dice
alike), its first ``forgetting_cases`` cases by id; without a folder, for a lineage that starts at the
bundled model, ``forgetting_cases`` default-site phantoms drawn in memory from :data:`PHANTOM_SEED` (the
site the bundled model was trained on; a draw of its own, none of the benchmarks' test sets); any other
lineage goes unchecked. Figures are kept in the workspace cache per model weights and case content
(a phantom generator or a file that changes makes new entries), so a lineage pays for the original's
once; the bundled model ships its own figures on its check cases (``check_figures.json``, written by
:func:`ship_check_figures`), so a lineage from it never predicts them. Each case is loaded once per
:class:`CheckData`, for every model a fine-tune checks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, Verdict, forgetting_refuses
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.json_text import strict_json
from lnq_napari.io.readers import read_labels, read_volume
from lnq_napari.io.volume import Volume, volumes_digest
from lnq_napari.metrics import evaluate_case
from lnq_napari.model.checkpoint import CHECK_FIGURES, figures_key
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.model.nnunet_folder import model_spec, typed_model
from lnq_napari.phantom import case_seed, make_case
from lnq_napari.workspace.registry import bundled_key

PHANTOM_SITE = "default"
PHANTOM_SEED = 4000
CACHE = "forgetting.json"  # in the workspace cache: figures by model and cases

Progress = Callable[[float, str], None] | None


@dataclass(frozen=True)
class CheckCase:
    """One case of the check: files of a folder (``ct``, ``labels``) or a phantom drawn from ``seed``."""

    case_id: str
    ct: str | None = None
    labels: str | None = None
    seed: int | None = None

    def load(self) -> tuple[Volume, Volume]:
        """``(ct, labels)``, drawn or read now."""
        if self.seed is not None:
            case = make_case(self.seed, case_id=self.case_id, site=PHANTOM_SITE)
            return case.ct, case.full
        ct = read_volume(self.ct)
        return ct, read_labels(self.labels, reference=ct)


@dataclass(frozen=True)
class CheckData:
    """The check's cases and, in words, where they come from. A case is drawn or read when first
    needed and kept while this object lives, so the checks of one fine-tune (the candidate's and a step
    back's) load each case once."""

    source: str
    cases: tuple[CheckCase, ...]
    _kept: dict[str, tuple[Volume, Volume, str]] = field(default_factory=dict, compare=False, repr=False)

    def load(self, case: CheckCase) -> tuple[Volume, Volume]:
        """``case``'s ``(ct, labels)``."""
        return self._loaded(case)[:2]

    def content(self, case: CheckCase) -> str:
        """A hash of ``case``'s voxels and grid: what its figures are kept under."""
        return self._loaded(case)[2]

    def _loaded(self, case: CheckCase) -> tuple[Volume, Volume, str]:
        if case.case_id not in self._kept:
            ct, labels = case.load()
            self._kept[case.case_id] = ct, labels, volumes_digest(ct, labels)[:16]
        return self._kept[case.case_id]


def check_data(config: FinetuneConfig, original: str, original_path: str | Path) -> CheckData | None:
    """The cases the forgetting check scores for a lineage whose root is ``original`` (its version key)
    in ``original_path``, or None when it goes unchecked (see the module's docstring)."""
    n = config.forgetting_cases
    if n == 0:
        return None
    if config.forgetting_data is not None:
        found = find_cases(config.forgetting_data, require="seg", what="forgetting_data")[:n]
        cases = tuple(CheckCase(c.case_id, str(c.ct), str(c.full or c.seg)) for c in found)
        return CheckData(f"{len(cases)} case{'s' if len(cases) != 1 else ''} of {config.forgetting_data}",
                         cases)
    if original.startswith("bundled-") and bundled_key(Path(original_path)) == original:
        cases = tuple(CheckCase(f"{PHANTOM_SITE}-check-{i + 1:04d}", seed=case_seed(PHANTOM_SEED, i))
                      for i in range(n))
        return CheckData(f"{n} {PHANTOM_SITE}-site phantom{'s' if n != 1 else ''} (the bundled model's own "
                         "site)", cases)
    return None


def _shipped(models: list[str | Path]) -> dict:
    """The figures model folders carry on check cases (:data:`CHECK_FIGURES`), by cache entry."""
    kept = {}
    for model in models:
        try:
            kept.update(json.loads((model_spec(model).folder / CHECK_FIGURES).read_text()))
        except (OSError, ValueError):
            continue
    return kept


def _scored(make_predictor, models: list[str | Path], device: str, data: CheckData, kept: dict,
            progress: Progress = None, cancel=None,
            enough: Callable[[list[list[CaseFigures]]], bool] | None = None
            ) -> tuple[list[list[CaseFigures]], dict]:
    """Each model folder's figures on the check's cases (those in ``kept`` read, not predicted) and the
    new entries, keyed as ``kept`` is: model weights and inference settings, case id and content. Given
    ``enough(figures so far)``, the cases after the first for which it is true are left out."""
    keys = [figures_key(m) for m in models]
    predictors: dict[int, object] = {}
    out: list[list[CaseFigures]] = [[] for _ in models]
    new = {}
    steps = len(data.cases) * len(models)
    for k, case in enumerate(data.cases):
        ct, truth = data.load(case)
        content = data.content(case) if any(keys) else ""
        for j, model in enumerate(models):
            entry = f"{keys[j]}|{case.case_id}|{content}" if keys[j] else None
            if entry in kept:
                out[j].append(CaseFigures.from_dict(kept[entry]))
                continue
            if j not in predictors:
                predictors[j] = make_predictor(typed_model(model), device)
            step = k * len(models) + j
            sub = None if progress is None else (lambda f, m="", step=step: progress((step + f) / steps, m))
            mask = predictors[j].predict(ct, progress=sub, cancel=cancel).mask
            figures = CaseFigures.from_metrics(case.case_id, evaluate_case(mask, truth))
            out[j].append(figures)
            if entry:
                new[entry] = asdict(figures)  # JSON's NaN is written and read back
        if enough is not None and enough(out):
            break
    return out, new


def check_figures(make_predictor, models: list[str | Path], device: str, data: CheckData, ws=None,
                  progress: Progress = None, cancel=None,
                  enough: Callable[[list[list[CaseFigures]]], bool] | None = None) -> list[list[CaseFigures]]:
    """Each model folder's figures on the check's cases (``make_predictor(folder, device)``, built only
    when a case's figures are neither shipped with the model folder nor in ``ws``'s cache; lnq-napari
    models only are kept), one list per model; given ``enough(figures so far)``, up to the first case
    for which it is true."""
    kept = {**_shipped(models), **(ws.read_cache(CACHE) if ws is not None else {})}
    out, new = _scored(make_predictor, models, device, data, kept, progress, cancel, enough)
    if new and ws is not None:
        ws.cache.update(CACHE, new)
    return out


def ship_check_figures(make_predictor, model: str | Path, device: str, data: CheckData) -> Path:
    """Predict the check's cases with ``model`` and keep its figures in the model folder
    (:data:`CHECK_FIGURES`): every lineage that starts there reads them instead of predicting them again."""
    _, new = _scored(make_predictor, [model], device, data, {})
    path = Path(model) / CHECK_FIGURES
    atomic_write_text(path, strict_json(new, indent=1) + "\n")
    return path


def forgetting_figures(make_predictor, candidate: str | Path, original: str, original_path: str | Path,
                       device: str, config: FinetuneConfig, ws=None, progress: Progress = None,
                       cancel=None, data: CheckData | None = None,
                       refusing: ActivationRule | None = None) -> ForgettingFigures | None:
    """The candidate's and the original's figures on the check's cases (``data``, else
    :func:`check_data`'s), or None when the lineage goes unchecked. Given a rule (``refusing``), the
    candidate's cases stop once the check can only refuse it (:attr:`ForgettingFigures.stopped_early`)."""
    data = data or check_data(config, original, original_path)
    if data is None:
        return None
    if refusing is None:
        before, after = check_figures(make_predictor, [original_path, candidate], device, data, ws, progress,
                                      cancel)
        return ForgettingFigures(data.source, tuple(after), tuple(before))
    def half(lo: float) -> Progress:  # the original's figures (usually kept), then the candidate's
        return None if progress is None else (lambda f, m="": progress(lo + 0.5 * f, m))

    (before,) = check_figures(make_predictor, [original_path], device, data, ws, half(0.0), cancel)

    def refused(so_far: list[list[CaseFigures]]) -> bool:
        left = data.cases[len(so_far[0]):]
        if not left or not all(np.any(data.load(case)[1].array) for case in left):
            return False  # a case without a node could leave the median (no defined Dice): predict all
        return forgetting_refuses(ForgettingFigures(data.source, tuple(so_far[0]), tuple(before)), refusing)

    (after,) = check_figures(make_predictor, [candidate], device, data, ws, half(0.5), cancel, refused)
    return ForgettingFigures(data.source, tuple(after), tuple(before))


def step_checker(make_predictor, original: str, original_path: str | Path, device: str,
                 config: FinetuneConfig, rule: ActivationRule, ws=None, cancel=None,
                 data: CheckData | None = None) -> Callable[[Path], ForgettingFigures]:
    """The forgetting check of a step back's folders (``check(folder)``) on ``data`` (pass the candidate
    check's: its cases stay loaded), else :func:`check_data`'s; for a lineage the check ran on. A step is
    predicted on the check's cases until ``rule`` can only refuse it (a refused step's figures are not
    kept: only its verdict)."""
    data = data or check_data(config, original, original_path)
    return lambda folder: forgetting_figures(make_predictor, folder, original, original_path, device, config,
                                             ws, cancel=cancel, data=data, refusing=rule)


def check_alone_refused(verdict: Verdict, checked: ForgettingFigures | None,
                        unchecked: Callable[[], Verdict]) -> bool:
    """Whether the forgetting check alone refused a candidate: it ran, the verdict refuses and the rule
    on the held-out figures without it (``unchecked()``) would activate (what a step back answers)."""
    return checked is not None and not verdict.activate and unchecked().activate


def checked_verdict(judge: Callable[[ForgettingFigures | None], Verdict], make_predictor,
                    candidate: str | Path, original: str, original_path: str | Path, device: str,
                    config: FinetuneConfig, rule: ActivationRule, ws=None, progress: Progress = None,
                    cancel=None, data: CheckData | None = None) -> tuple[Verdict, ForgettingFigures | None]:
    """``judge(None)`` (the rule on the held-out figures); when that activates the candidate, the
    forgetting check's figures on ``data`` (else :func:`check_data`'s; predicted until ``rule`` can only
    refuse it) and ``judge`` on them too, or the reason saying the lineage went unchecked. Returns the
    verdict and the check's figures (None when it did not run)."""
    verdict = judge(None)
    if not verdict.activate:
        return verdict, None
    checked = forgetting_figures(make_predictor, candidate, original, original_path, device, config, ws,
                                 progress, cancel, data, refusing=rule)
    if checked is not None:
        return judge(checked), checked
    why = ("no cases of the original model's own data: set forgetting_data" if config.forgetting_cases
           else "forgetting_cases=0")
    return dataclasses.replace(verdict, reason=f"{verdict.reason}; no forgetting check ({why})"), None
