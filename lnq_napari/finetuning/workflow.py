"""Running one fine-tune: plan, train, post-train, judge, register and maybe activate a version."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, Verdict
from lnq_napari.components import label_components
from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.finetuning.forgetting import (
    CheckData,
    check_alone_refused,
    check_data,
    checked_verdict,
    step_checker,
)
from lnq_napari.finetuning.plan import (
    FinetunePlan,
    discard_pending,
    resume_plan,
    save_plan,
    start_plan,
)
from lnq_napari.finetuning.posttrain import (
    PostprocessingChoice,
    choose_alpha,
    interpolating,
    refit_postprocessing,
    step_alphas,
    step_back,
    stepped_back_verdict,
)
from lnq_napari.finetuning.reviewed import (
    known_background,
    labels_on_ct,
    marks_of,
    read_reviewed,
)
from lnq_napari.finetuning.validation import (
    ValidationMetrics,
    case_figures,
    held_out_verdict,
    key_figures,
    unless_active_changed,
    version_figures,
)
from lnq_napari.inference import Predictor
from lnq_napari.interact import spot_mask
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.datasets import find_cases
from lnq_napari.model.checkpoint import read_config
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.model.names import short_model_name
from lnq_napari.per_ct import kept_per_ct
from lnq_napari.preprocess import prepare
from lnq_napari.training.anchor import Anchor
from lnq_napari.training.corrections import edited_voxels, unconfirmed_components
from lnq_napari.training.labels import BACKGROUND, NODE, label_states, naive_states
from lnq_napari.training.trainer import STATE_DIR, TrainingCase, load_case, train_model
from lnq_napari.workspace import Workspace
from lnq_napari.workspace.labels import marks_lost
from lnq_napari.workspace.lock import FINETUNE_WRITES
from lnq_napari.workspace.registry import bundled_key, rule_verdict, shown_parent

MODEL_FILES = ("weights.safetensors", "config.json", "train_log.csv")
MINED = "mined_negatives.npz"  # in the staging train state: what mining found, for a resumed fine-tune
Progress = Callable[[float, str], None] | None
#: ``(model folder, device)`` -> a predictor: ``predict(ct, progress=None, cancel=None)`` as
#: :class:`~lnq_napari.inference.Predictor`'s; mining also passes ``prepared`` (the CT already prepared).
PredictorFactory = Callable[[Path, str], object]
Candidate = tuple[list[CaseFigures], float | None, PostprocessingChoice | None]
#: The verdict, the forgetting check's figures (None: not run), the held-out figures and alpha it rests on.
Judged = tuple[Verdict, ForgettingFigures | None, list[CaseFigures], float | None]

@dataclass
class FinetuneResult:
    """What a fine-tune did: the new version, whether it is active and why (the activation rule's
    ``reason`` and ``figures``), the held-out figures (with ``folds``, cross-fitted: each fold's from a
    model trained without it), and what the post-training steps chose."""

    new_version: str
    activated: bool
    reason: str
    figures: dict[str, float]
    parent: str
    original: str
    metrics_before: ValidationMetrics
    metrics_after: ValidationMetrics
    train_cases: list[str]
    val_cases: list[str]
    replay_cases: list[str]
    validated_on_training: bool
    iterations: int
    alpha: float | None
    postprocessing: PostprocessingChoice | None
    config: FinetuneConfig
    train_seconds: float
    seconds: float
    mined_negatives: int = 0
    folds: list[list[str]] = field(default_factory=list)
    #: The per-case figures the verdict rests on, by model: "candidate", "parent" and "original"; with a
    #: forgetting check also "forgetting_candidate" and "forgetting_original" (the original's own data).
    case_figures: dict[str, list[CaseFigures]] = field(default_factory=dict)

    def __repr__(self) -> str:  # what a notebook cell shows: the verdict and its figures, not every field
        said = "activated" if self.activated else "not activated"
        parent = short_model_name(shown_parent(self.parent))  # as `workspace models` names it
        return (f"FinetuneResult({self.new_version} from {parent}, {said}; "
                f"{key_figures(self.metrics_after, self.metrics_before, self.validated_on_training)}; "
                f"{self.iterations} iterations in {self.seconds:.1f} s; why: {self.reason})")

    def to_dict(self) -> dict:
        """A JSON-ready dict (nested objects as dicts)."""
        return asdict(self)


def train_overrides(parent: Path, config: FinetuneConfig) -> dict:
    """Trainer config for fine-tuning ``parent``: its own train settings with the fine-tune's schedule."""
    train = read_config(parent).to_dict()["train"]
    train.update(lr=config.lr, warmup=config.warmup, focus_fraction=config.focus_fraction,
                 replay_fraction=config.replay_fraction)
    return {"train": train}


# ---------------------------------------------------------------- training
def _stage(progress: Progress, lo: float, hi: float) -> Progress:
    """``progress`` mapped onto the share ``lo``..``hi`` of the whole run."""
    if progress is None:
        return None
    return lambda f, m="": progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), m)


def _correction_case(ws, plan: FinetunePlan, case: str) -> TrainingCase:
    """A corrected case: label states of the correction (dense truth: node or background); the edits,
    the rejected suggestions (provenance ``rejected``) and the marked nodes (``marked``) as focus."""
    reviewed = read_reviewed(ws, case, plan.corrections[case], plan.predictions.get(case))
    if plan.config.dense_truth:
        states = naive_states(reviewed.correction)
    else:
        states = reviewed.states(known_background(ws, reviewed.ct))
    prediction, balls = reviewed.prediction, reviewed.rejected
    focus = None if prediction is None else edited_voxels(prediction, reviewed.correction)
    if reviewed.marks:
        marked = spot_mask(reviewed.marks, reviewed.ct.shape, reviewed.ct.spacing_zyx)
        balls = marked if balls is None else balls | marked
    if balls is not None:
        focus = balls if focus is None else focus | balls
    return TrainingCase(case, reviewed.ct, states, focus)


def _replay_case(ws, plan: FinetunePlan, case: str, folder: dict | None) -> TrainingCase:
    """A replay case with the label states of its original partial labels."""
    if folder is not None:
        try:
            return dataclasses.replace(load_case(folder[case]), replay=True)
        except LNQError as exc:  # not the workspace's case of that id: the replay folder's
            raise LNQError(f"replay_data {plan.config.replay_data}: {exc}") from exc
    ct = ws.read_ct(case)
    info = ws.latest_version(case, "original")
    original = None if info is None else labels_on_ct(ws, case, info["version"], ct)
    states = label_states(ct, original, background=known_background(ws, ct))
    return TrainingCase(case, ct, states, replay=True)


def _training_cases(ws, plan: FinetunePlan, progress: Progress = None) -> list[TrainingCase]:
    data = plan.config.replay_data
    folder = None if data is None else {c.case_id: c for c in find_cases(data, require="seg")}
    todo = [(c, False) for c in plan.train_cases] + [(c, True) for c in plan.replay_cases]
    cases = []
    for k, (case, replay) in enumerate(todo):
        cases.append(_replay_case(ws, plan, case, folder) if replay else _correction_case(ws, plan, case))
        if progress:
            progress((k + 1) / len(todo), f"label states {case}")
    return cases


def _anchor(plan: FinetunePlan) -> Anchor | None:
    c = plan.config
    if c.distill_weight == 0 and c.l2sp_weight == 0 and c.trainable == "all":
        return None
    return Anchor(plan.parent_path, c.distill_weight, c.l2sp_weight, c.trainable, _original_weights(plan))


def _original_weights(plan: FinetunePlan) -> str | None:
    """The lineage's original model folder for L2-SP; None (the parent then) when the lineage began at a
    bundled model this lnq-napari no longer ships (its weights are gone)."""
    if plan.original is None or plan.original_path is None:
        return None
    if plan.original.startswith("bundled-") and bundled_key(Path(plan.original_path)) != plan.original:
        return None
    return plan.original_path


def _mined_negatives(ws, plan: FinetunePlan, folder: Path, cases: list[TrainingCase],
                     make_predictor: PredictorFactory, cancel) -> dict[str, np.ndarray]:
    """Per corrected training case, the components the half-trained model (in ``folder``) predicts
    on none of the reviewer's nodes and marked nodes (none for a correction whose marks are lost); saved
    with the train state, read back when a fine-tune resumes."""
    path = folder / STATE_DIR / MINED
    if path.is_file():
        with np.load(path) as saved:
            return {case.case_id: saved[case.case_id] for case in cases if case.case_id in saved.files}
    predictor = make_predictor(folder, plan.device)
    mined = {}
    for case in cases:
        info = None if case.replay else ws.version_info(case.case_id, plan.corrections[case.case_id])
        if info is not None and not marks_lost(info):  # a lost mark may sit on any mined component
            prediction = predictor.predict(case.ct, cancel=cancel, prepared=case.prepared)
            predicted = np.asarray(prediction.mask.array) > 0
            marks = marks_of(info)
            nodes = case.states == NODE
            if marks:
                nodes |= spot_mask(marks, nodes.shape, case.ct.spacing_zyx)
            mined[case.case_id] = unconfirmed_components(predicted, nodes)
    with atomic_write(path) as tmp:
        np.savez_compressed(tmp, **mined)
    return mined


def _with_negatives(cases: list[TrainingCase], mined: dict[str, np.ndarray]) -> list[TrainingCase]:
    """The corrected cases with their mined components as known background and as focus (a replay case
    from ``replay_data`` may share a corrected case's id, never its mined components)."""
    out = []
    for case in cases:
        mask = None if case.replay else mined.get(case.case_id)
        if mask is None or not mask.any():
            out.append(case)
            continue
        focus = mask if case.focus is None else case.focus | mask
        states = np.where(mask, np.int8(BACKGROUND), case.states)
        out.append(dataclasses.replace(case, states=states, focus=focus))
    return out


def _prepared_cases(ws, plan: FinetunePlan, progress: Progress) -> list[TrainingCase]:
    """The plan's training and replay cases with their label states, each CT prepared once as the
    parent's preprocessing says (a fine-tune keeps its parent's), for every training of the run."""
    prep = read_config(Path(plan.parent_path)).preprocessing
    return [dataclasses.replace(case, prepared=prepare(case.ct, prep))
            for case in _training_cases(ws, plan, progress)]


def _forward_only(progress: Progress) -> Progress:
    """``progress`` that never goes back: a training resumed after its pause said "preprocessed" at
    fraction 0, and the bar fell from half-way to where the training began."""
    if progress is None:
        return None
    furthest = [0.0]

    def report(fraction: float, message: str = "") -> None:
        furthest[0] = max(furthest[0], fraction)
        progress(furthest[0], message)
    return report


def _train(ws, plan: FinetunePlan, staging: Path, cases: list[TrainingCase], resume: bool,
           make_predictor: PredictorFactory, progress: Progress, cancel) -> tuple[float, int]:
    """Train a model on ``cases`` into ``staging`` (continuing a cancelled one); with ``mine_negatives``
    pause half-way and mine the model's unconfirmed components on the corrected cases. Returns seconds
    and the number of mined components."""
    iterations = plan.config.iterations
    pause = iterations // 2 if plan.config.mine_negatives and iterations >= 2 else None
    t0, n_mined = time.time(), 0
    progress = _forward_only(progress)  # the leg after the pause prepares its cases again, at fraction 0
    for stop_at in ([pause] if pause else []) + [None]:
        can_resume = resume and (staging / STATE_DIR / "state.pt").is_file()
        train_model(
            cases, staging, iterations, device=plan.device, seed=plan.config.seed,
            init_from=None if can_resume else plan.parent_path,
            config=train_overrides(Path(plan.parent_path), plan.config),
            progress=progress, cancel=cancel, resume=can_resume,
            checkpoint_every=max(10, iterations // 4), anchor=_anchor(plan), stop_at=stop_at,
        )
        if stop_at is not None:
            if progress:
                progress(stop_at / iterations, "finding the half-trained model's false nodes to train on")
            mined = _mined_negatives(ws, plan, staging, cases, make_predictor, cancel)
            n_mined = sum(int(label_components(m)[1]) for m in mined.values())
            cases = _with_negatives(cases, mined)
            resume = True
    return time.time() - t0, n_mined


def _cross_fit(ws, plan: FinetunePlan, cases: list[TrainingCase], resume: bool,
               make_predictor: PredictorFactory, progress: Progress, cancel) -> float:
    """Train a model without each fold and keep its figures on that fold (saved fold by fold, so a resumed
    run skips the folds already judged); returns the seconds spent training."""
    seconds = 0.0
    for k, fold in enumerate(plan.folds):
        sub = _stage(progress, k / len(plan.folds), (k + 1) / len(plan.folds))
        judged = {f.case_id for f in plan.fold_figures}
        if set(fold) <= judged:
            continue
        folder = plan.fold_folder(k)
        train = [c for c in cases if c.replay or c.case_id not in fold]
        spent, _ = _train(ws, plan, folder, train, resume, make_predictor, _stage(sub, 0.0, 0.9), cancel)
        plan.fold_figures += case_figures(make_predictor(folder, plan.device), ws, fold, plan.corrections,
                                          _stage(sub, 0.9, 1.0), cancel)
        save_plan(ws, plan)
        shutil.rmtree(folder, ignore_errors=True)
        seconds += spent
    return seconds


# ---------------------------------------------------------------- figures, candidate, verdict
def _baseline(ws, plan: FinetunePlan, make_predictor: PredictorFactory, progress: Progress, cancel) -> None:
    """The parent's and the original model's held-out figures (stored predictions reused), saved."""
    if plan.parent_figures is None:
        plan.parent_figures = version_figures(make_predictor, plan.parent, plan.parent_path, plan.device, ws,
                                              plan.val_cases, plan.corrections, _stage(progress, 0.0, 0.5),
                                              cancel)
        save_plan(ws, plan)
    if plan.original is not None and plan.original_figures is None:
        plan.original_figures = version_figures(make_predictor, plan.original, plan.original_path,
                                                plan.device, ws, plan.val_cases, plan.corrections,
                                                _stage(progress, 0.5, 1.0), cancel,
                                                role="the lineage's original")
        save_plan(ws, plan)


def _refit(ws, plan: FinetunePlan, make_predictor: PredictorFactory, cancel) -> PostprocessingChoice:
    """Re-fit the candidate's post-processing on the training corrections (never the validation cases)."""
    candidate = plan.candidate
    if plan.validated_on_training:
        inf = read_config(candidate).inference
        return PostprocessingChoice(float(inf.threshold), float(inf.min_component_mm3),
                                    "not re-fitted: the only corrected case is the validation case")
    parent_figures = version_figures(make_predictor, plan.parent, plan.parent_path, plan.device, ws,
                                     plan.train_cases, plan.corrections, cancel=cancel)
    parent_fp = ValidationMetrics.from_figures(parent_figures).fp_per_case
    return refit_postprocessing(candidate, make_predictor(candidate, plan.device), ws, plan.train_cases,
                                plan.corrections, parent_fp, cancel)


def _candidate(ws, plan: FinetunePlan, make_predictor: PredictorFactory, rule: ActivationRule,
               progress: Progress, cancel) -> Candidate:
    """Copy the trained model to the candidate folder, interpolate and re-fit it as configured; returns
    its held-out figures, the chosen alpha and post-processing."""
    candidate = plan.candidate
    shutil.rmtree(candidate, ignore_errors=True)
    candidate.mkdir(parents=True)
    for name in MODEL_FILES:
        if (Path(plan.staging) / name).is_file():
            shutil.copy2(Path(plan.staging) / name, candidate / name)

    def figures_of(folder: Path, sub: Progress = None) -> list[CaseFigures]:
        return version_figures(make_predictor, None, folder, plan.device, ws, plan.val_cases,
                               plan.corrections, sub, cancel)

    figures, alpha, post = (list(plan.fold_figures) if plan.folds else None), None, None
    if plan.config.interpolate:
        choice = choose_alpha(candidate, Path(plan.parent_path), figures_of, plan.parent_figures,
                              rule.fp_margin)
        figures, alpha = list(choice.figures), choice.alpha
    if plan.config.refit_postprocessing:
        post = _refit(ws, plan, make_predictor, cancel)
        figures = None  # the masks changed with the post-processing
    if figures is None:
        figures = figures_of(candidate, progress)
    return figures, alpha, post


def _verdict(ws, plan: FinetunePlan, figures: list[CaseFigures], alpha: float | None, rule: ActivationRule,
             make_predictor: PredictorFactory, progress: Progress, cancel) -> Judged:
    """The rule's verdict on the held-out figures and, when they would activate the candidate, on the
    forgetting check too (:mod:`lnq_napari.finetuning.forgetting`); when the check alone refuses it, the
    candidate stepped back toward its parent (:func:`~lnq_napari.finetuning.posttrain.step_back`)."""
    def judge(figs: list[CaseFigures], forgetting: ForgettingFigures | None) -> Verdict:
        return held_out_verdict(figs, plan.parent_figures, plan.original_figures, rule,
                                plan.validated_on_training, shown_parent(plan.parent), forgetting)

    checks = check_data(plan.config, *plan.root)  # its cases are loaded once for the check and a step back
    verdict, forgetting = checked_verdict(lambda f: judge(figures, f), make_predictor, plan.candidate,
                                          *plan.root, plan.device, plan.config, rule, ws,
                                          _stage(progress, 0.0, 0.5), cancel, checks)
    if plan.config.fallback_steps and not plan.folds and check_alone_refused(verdict, forgetting,
                                                                             lambda: judge(figures, None)):
        say = None if progress is None else (lambda message: progress(0.75, message))
        verdict, forgetting, figures, alpha = _stepped_back(ws, plan, (verdict, forgetting, figures, alpha),
                                                            judge, rule, make_predictor, checks, say, cancel)
    if plan.folds:
        how = (f"cross-fitted over {len(plan.folds)} folds (each held-out case judged by a model trained "
               f"without it; the version trains on all {len(plan.train_cases)} corrected cases)")
        verdict = dataclasses.replace(verdict, reason=f"{verdict.reason}; {how}")
    return verdict, forgetting, figures, alpha


def _stepped_back(ws, plan: FinetunePlan, refusal: Judged,
                  judge: Callable[[list[CaseFigures], ForgettingFigures | None], Verdict],
                  rule: ActivationRule, make_predictor: PredictorFactory, checks: CheckData,
                  say: Callable[[str], None] | None, cancel) -> Judged:
    """The candidate the forgetting check refused (``refusal``, on ``checks``), stepped back toward its
    parent: the verdict on the step that passed (alpha relative to the parent) or the refusal with the
    steps tried."""
    refused, forgetting, _, alpha = refusal

    def held_out(folder: Path) -> list[CaseFigures]:
        return version_figures(make_predictor, None, folder, plan.device, ws, plan.val_cases,
                               plan.corrections, cancel=cancel)

    check = step_checker(make_predictor, *plan.root, plan.device, plan.config, rule, ws, cancel, checks)
    if say is not None:
        say("stepping back: the parent's forgetting check")  # kept in the cache when it was checked
    alphas = step_alphas(check(Path(plan.parent_path)), forgetting, rule, plan.config.fallback_steps)
    step = step_back(plan.candidate, interpolating(plan.candidate, Path(plan.parent_path)), alphas, check,
                     held_out, judge, rule, say)
    scale = 1.0 if alpha is None else alpha  # the share of the fine-tuned weights the refused one held
    verdict = stepped_back_verdict(refused, step, plan.parent, scale)
    if step.alpha is None:
        return verdict, *refusal[1:]
    return verdict, step.forgetting, list(step.figures), step.alpha * scale


def _result(plan: FinetunePlan, activate: bool, reason: str, verdict: Verdict, figures: list[CaseFigures],
            alpha: float | None, post, forgetting: ForgettingFigures | None, train_seconds: float,
            n_mined: int, t0: float) -> FinetuneResult:
    """The run's result as it is registered and journaled."""
    checked = {} if forgetting is None else {"forgetting_candidate": list(forgetting.candidate),
                                             "forgetting_original": list(forgetting.original)}
    return FinetuneResult(
        new_version=plan.version, activated=activate, reason=reason, figures=verdict.figures,
        parent=plan.parent, original=plan.root[0],
        metrics_before=ValidationMetrics.from_figures(plan.parent_figures),
        metrics_after=ValidationMetrics.from_figures(figures), train_cases=plan.train_cases,
        val_cases=plan.val_cases, replay_cases=plan.replay_cases,
        validated_on_training=plan.validated_on_training, iterations=plan.config.iterations, alpha=alpha,
        postprocessing=post, config=plan.config, train_seconds=round(train_seconds, 1),
        seconds=round(time.time() - t0, 1), mined_negatives=n_mined, folds=plan.folds,
        case_figures={"candidate": figures, "parent": plan.parent_figures,
                      "original": plan.original_figures or plan.parent_figures, **checked},
    )


def _register(ws, plan: FinetunePlan, result: FinetuneResult, rule_activates: bool) -> str:
    """Move the candidate into ``models/<version>`` and register it with the active one as parent (with
    the rule's verdict: a user's activation during the run may have kept it from being activated)."""
    shutil.rmtree(plan.staging, ignore_errors=True)  # the fold folders went as each fold was judged
    final = ws.models_dir / plan.version
    if any(v["id"] == plan.version for v in ws.models()):  # never removed once registered
        raise LNQError(f"{plan.version} is already registered in this workspace; run finetune again")
    if final.exists():  # a crash after the rename but before registering
        shutil.rmtree(final)
    os.replace(plan.candidate, final)
    keep = ("activated", "reason", "figures", "original", "metrics_before", "metrics_after", "alpha",
            "postprocessing", "config", "validated_on_training", "train_seconds", "folds", "case_figures")
    metrics = {**{k: v for k, v in result.to_dict().items() if k in keep}, **rule_verdict(rule_activates)}
    return ws.register_model(
        final, parent=plan.parent, training_cases=plan.train_cases + plan.replay_cases,
        metrics=metrics, version=plan.version, corrected_cases=plan.train_cases,
        replay_cases=plan.replay_cases, iterations=plan.config.iterations,
        correction_versions=plan.corrections,  # which correction of each case it trained or was judged on
    )


def finetune_workspace(
    workspace, config: FinetuneConfig | None = None, device: str = "auto", resume: bool = False,
    progress: Progress = None, cancel: Callable[[], bool] | None = None,
    predictor_factory: PredictorFactory | None = None, rule: ActivationRule | None = None,
) -> FinetuneResult:
    """Fine-tune the active model on the corrected cases as ``config`` says; register the result and
    activate it when the activation ``rule`` says so. ``resume=True`` continues the pending run (its
    own config)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    # a second fine-tune is refused, not let loose on this one's plan; a CT predicted again (a step back,
    # a later round) reuses its preprocessing and region
    with ws.running_finetune(), kept_per_ct(ws.cache):
        return _finetune(ws, config, device, resume, progress, cancel, predictor_factory or Predictor,
                         rule or ActivationRule())


def _finetune(ws: Workspace, config: FinetuneConfig | None, device: str, resume: bool, progress: Progress,
              cancel, make_predictor: PredictorFactory, rule: ActivationRule) -> FinetuneResult:
    """:func:`finetune_workspace` while it holds the workspace's fine-tune lock."""
    t0 = time.time()
    ws.check_writable(FINETUNE_WRITES, ws.models_dir, ws.cache.folder)  # not after its training
    resolve_device(device)  # a device refused before any plan is made or discarded
    if resume:  # on the device asked now: the one it started on may be gone (a GPU session ended)
        plan = dataclasses.replace(resume_plan(ws), device=device)
    else:
        plan = start_plan(ws, config or FinetuneConfig(), device)
    try:
        _baseline(ws, plan, make_predictor, _stage(progress, 0.0, 0.1), cancel)
        cases = _prepared_cases(ws, plan, _stage(progress, 0.1, 0.18))
        share = 0.18 + 0.67 * len(plan.folds) / (len(plan.folds) + 1)
        fold_seconds = _cross_fit(ws, plan, cases, resume, make_predictor, _stage(progress, 0.18, share),
                                  cancel)
        train_seconds, n_mined = _train(ws, plan, Path(plan.staging), cases, resume, make_predictor,
                                        _stage(progress, share, 0.85), cancel)
        del cases  # their CTs and label states: judging reads the held-out cases anew
        train_seconds += fold_seconds
        figures, alpha, post = _candidate(ws, plan, make_predictor, rule, _stage(progress, 0.85, 0.93),
                                          cancel)
        verdict, forgetting, figures, alpha = _verdict(ws, plan, figures, alpha, rule, make_predictor,
                                                       _stage(progress, 0.93, 1.0), cancel)
        if cancel is not None and cancel():  # pressed during the last prediction: nothing registered
            raise Cancelled("fine-tune cancelled before its version was registered; finetune --resume "
                            "continues it")
    except LNQError as exc:  # a failure, not an interruption: --resume would only fail again
        discard_pending(ws, f"failed: {exc}")
        if resume:  # its advice (re-copy a folder, ...) is about the run discarded now
            raise LNQError(f"{exc}; the interrupted fine-tune is discarded: run finetune without --resume") \
                from exc
        raise
    with ws.locked():  # a user's activation cannot come between the check and the rule's activation
        activate, reason = unless_active_changed(ws, plan.parent, verdict.activate, verdict.reason)
        result = _result(plan, activate, reason, verdict, figures, alpha, post, forgetting, train_seconds,
                         n_mined, t0)
        version = _register(ws, plan, result, verdict.activate)
        fields = {k: v for k, v in result.to_dict().items() if k not in ("metrics_before", "metrics_after")}
        ws.log("finetune", **fields, decided_by="rule", f1_before=result.metrics_before.node_f1,
               f1_after=result.metrics_after.node_f1, dice_before=result.metrics_before.dice_mean,
               dice_after=result.metrics_after.dice_mean)  # before the activation it explains
        if result.activated:
            ws.activate(version, reason=result.reason, decided_by="rule")
    ws.pending_plan_path.unlink(missing_ok=True)
    if progress:
        progress(1.0, f"{version} {'activated' if result.activated else 'registered, not activated'}")
    return result
