"""Active-learning fine-tune: plan, split, validate, train, register and maybe activate a model version.

The active model is trained further on a workspace's corrected cases (label states from
:mod:`lnq_napari.training.corrections`, focus on what the reviewer changed); other cases replay their
original partial labels so the model does not forget them. Validation uses held-out corrected cases (a
fixed split by case id); with fewer than two corrected cases it validates on the training corrections
and says so. The new version is registered with the active one as parent and activated only when it
does not validate worse (:func:`not_worse`). Interruptions leave ``models/pending.json`` (the
:class:`FinetunePlan`); ``resume=True`` continues that run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lnq_napari.active import LazyPredictor
from lnq_napari.errors import LNQError
from lnq_napari.inference import Predictor
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.metrics import evaluate_case
from lnq_napari.model.checkpoint import read_config
from lnq_napari.training.corrections import correction_states, edited_voxels
from lnq_napari.training.labels import label_states
from lnq_napari.training.trainer import STATE_DIR, TrainingCase, train_model
from lnq_napari.workspace import Workspace

PENDING = "pending.json"
#: Fine-tuning overrides of the trainer's config: a gentler, shorter schedule than training.
#: Half the node-centred patches (a quarter of all) are centred on what the reviewer changed.
FINETUNE_CONFIG: dict = {"train": {"lr": 1e-4, "warmup": 10, "focus_fraction": 0.5}}
Progress = Callable[[float, str], None] | None


@dataclass
class ValidationMetrics:
    """A model against the corrections of ``cases``: pooled node F1 and recall, mean Dice, false nodes."""

    node_f1: float
    dice_mean: float
    recall: float
    fp_per_case: float
    cases: list[str]


@dataclass
class FinetunePlan:
    """What a fine-tune will do, fixed when it starts (kept in ``models/pending.json`` until it ends)."""

    version: str
    parent: str
    parent_path: str
    staging: str  # the model folder while it trains
    iterations: int
    device: str
    seed: int
    train_cases: list[str]
    val_cases: list[str]
    validated_on_training: bool
    replay_cases: list[str]
    corrections: dict[str, str]  # case -> correction label version
    predictions: dict[str, str]  # case -> the prediction version that correction descends from
    before: ValidationMetrics | None = None
    started: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FinetunePlan:
        data = dict(data)
        before = data.pop("before", None)
        return cls(**data, before=None if before is None else ValidationMetrics(**before))


@dataclass
class FinetuneResult:
    """What a fine-tune did: the new version, whether it is active and why, and its validation."""

    new_version: str
    activated: bool
    reason: str
    parent: str
    metrics_before: ValidationMetrics
    metrics_after: ValidationMetrics
    train_cases: list[str]
    val_cases: list[str]
    replay_cases: list[str]
    validated_on_training: bool
    iterations: int
    train_seconds: float
    seconds: float

    def to_dict(self) -> dict:
        """A JSON-ready dict (metrics as nested objects)."""
        return asdict(self)


def finetune_config(parent: Path, overrides: dict | None = None) -> dict:
    """Trainer config for fine-tuning ``parent``: its own train settings, a gentler schedule, overrides."""
    train = read_config(parent).to_dict()["train"]
    train.update(FINETUNE_CONFIG["train"])
    train.update((overrides or {}).get("train", {}))
    return {**(overrides or {}), "train": train}


def split_cases(corrected: Sequence[str], val_fraction: float = 0.2) -> tuple[list[str], list[str], bool]:
    """``(train, validation, validated_on_training)``: a fixed split by hashed case id.

    With fewer than two corrected cases the training corrections double as validation.
    """
    cases = sorted(corrected)
    if len(cases) < 2:
        return cases, list(cases), True
    n_val = min(len(cases) - 1, max(1, int(round(val_fraction * len(cases)))))
    ordered = sorted(cases, key=lambda case: hashlib.sha1(case.encode()).hexdigest())
    val = sorted(ordered[:n_val])
    return [c for c in cases if c not in val], val, False


def validation_metrics(predictor, ws, cases: Sequence[str], progress: Progress = None, cancel=None,
                       stored_from: str | None = None) -> ValidationMetrics:
    """Node F1, mean Dice, pooled node recall and false nodes per case of ``predictor`` vs corrections.

    With ``stored_from`` (a model version), a case's stored prediction by that model is used instead
    of predicting again.
    """
    rows = []
    for k, case in enumerate(cases):
        truth = ws.latest_labels(case, "correction")
        stored = ws.latest_version(case, "prediction") if stored_from else None
        if stored is not None and stored.get("model_version") == stored_from:
            mask = ws.read_labels(case, stored["version"])
        else:
            sub = None if progress is None else (lambda f, m="", k=k: progress((k + f) / len(cases), m))
            mask = predictor.predict(ws.read_ct(case), progress=sub, cancel=cancel).mask
        rows.append(evaluate_case(mask, truth, min_diameter_mm=0.0))
    gt = sum(r["nodes_gt"] for r in rows)
    hit = sum(r["nodes_hit"] for r in rows)
    fp = sum(r["fp_nodes"] for r in rows)
    return ValidationMetrics(
        node_f1=2 * hit / (2 * hit + (gt - hit) + fp) if (gt or fp) else 1.0,
        dice_mean=float(np.mean([r["dice"] for r in rows])) if rows else math.nan,
        recall=hit / gt if gt else math.nan,
        fp_per_case=fp / len(rows) if rows else math.nan,
        cases=list(cases),
    )


def not_worse(before: ValidationMetrics, after: ValidationMetrics, tolerance: float = 0.0,
              dice_margin: float = 0.05) -> bool:
    """The activation rule: node F1 not lower (beyond ``tolerance``) and Dice not lower by > ``dice_margin``.

    Node F1 (nodes found vs missed and false, pooled) decides because the corrections keep the old
    model's own masks for the nodes it found, so voxel Dice against them favours the old model; Dice
    only guards against a model whose masks got much worse.
    """
    if math.isnan(before.node_f1):
        return True
    return after.node_f1 >= before.node_f1 - tolerance and after.dice_mean >= before.dice_mean - dice_margin


# ---------------------------------------------------------------- the plan
def _prediction_parent(ws, case: str, correction: dict) -> dict | None:
    """The prediction version a correction descends from (via its parent chain), else the latest one."""
    by_id = {v["version"]: v for v in ws.versions(case)}
    seen = set()
    parent = correction.get("parent")
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        if by_id[parent]["source"] == "prediction":
            return by_id[parent]
        parent = by_id[parent].get("parent")
    earlier = [v for v in by_id.values() if v["source"] == "prediction" and v["time"] <= correction["time"]]
    return earlier[-1] if earlier else None


def make_plan(ws, iterations: int, device: str, seed: int, val_fraction: float,
              replay: int | None) -> FinetunePlan:
    """Split the corrected cases, pick replay cases, name the new version (LNQError: nothing corrected)."""
    corrected = ws.corrected_cases()
    if not corrected:
        raise LNQError("the workspace has no corrected cases; correct some cases (Save in napari) first")
    parent_path, parent_key = ws.prediction_model()
    train, val, on_train = split_cases(corrected, val_fraction)
    corrections, predictions = {}, {}
    for case in corrected:
        corr = ws.latest_version(case, "correction")
        corrections[case] = corr["version"]
        pred = _prediction_parent(ws, case, corr)
        if pred is not None:
            predictions[case] = pred["version"]
    others = [c for c in ws.case_ids() if c not in corrected and ws.latest_version(c, "original")]
    n_replay = len(train) if replay is None else replay
    rng = np.random.default_rng(seed)
    replay_cases = sorted(rng.choice(others, size=min(n_replay, len(others)), replace=False).tolist()) \
        if others and n_replay > 0 else []
    version = ws.next_model_version()
    return FinetunePlan(
        version=version, parent=parent_key, parent_path=str(parent_path),
        staging=str(ws.models_dir / f".{version}.training"), iterations=int(iterations), device=device,
        seed=int(seed), train_cases=train, val_cases=val, validated_on_training=on_train,
        replay_cases=replay_cases, corrections=corrections, predictions=predictions, started=time.time(),
    )


def _save_plan(ws, plan: FinetunePlan) -> None:
    atomic_write_text(ws.models_dir / PENDING, json.dumps(plan.to_dict(), indent=1))


def _start(ws, iterations: int, device: str, seed: int, val_fraction: float,
           replay: int | None) -> FinetunePlan:
    """A new plan, saved as pending (a pending one left by an interrupted run is discarded)."""
    pending_path = ws.models_dir / PENDING
    if pending_path.is_file():
        old = json.loads(pending_path.read_text())
        shutil.rmtree(old.get("staging", ""), ignore_errors=True)
        ws.log("finetune_discard", version=old.get("version"), reason="a new fine-tune was started")
    plan = make_plan(ws, iterations, device, seed, val_fraction, replay)
    _save_plan(ws, plan)
    ws.log("finetune_start", version=plan.version, parent=plan.parent, train_cases=plan.train_cases,
           val_cases=plan.val_cases, replay_cases=plan.replay_cases)
    return plan


def _resume(ws) -> FinetunePlan:
    """The pending plan of an interrupted run (LNQError when there is none or it had finished)."""
    pending_path = ws.models_dir / PENDING
    if not pending_path.is_file():
        raise LNQError("no interrupted fine-tune to resume in this workspace; run finetune without --resume")
    plan = FinetunePlan.from_dict(json.loads(pending_path.read_text()))
    if any(v["id"] == plan.version for v in ws.models()):  # killed after registering
        pending_path.unlink()
        info = ws.model_info(plan.version)
        raise LNQError(f"the interrupted fine-tune had already finished as {plan.version} "
                       f"(active: {bool(info.get('active'))}); nothing to resume")
    ws.log("finetune_resume", version=plan.version)
    return plan


# ---------------------------------------------------------------- training and registering
def _stage(progress: Progress, lo: float, hi: float) -> Progress:
    """``progress`` mapped onto the share ``lo``..``hi`` of the whole run."""
    if progress is None:
        return None
    return lambda f, m="": progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), m)


def _training_cases(ws, plan: FinetunePlan, progress: Progress = None) -> list[TrainingCase]:
    cases = []
    todo = [(c, "correction") for c in plan.train_cases] + [(c, "original") for c in plan.replay_cases]
    for k, (case, kind) in enumerate(todo):
        ct = ws.read_ct(case)
        if kind == "correction":
            pred_version = plan.predictions.get(case)
            prediction = ws.read_labels(case, pred_version) if pred_version else None
            correction = ws.read_labels(case, plan.corrections[case])
            states = correction_states(ct, correction, prediction)
            focus = None if prediction is None else edited_voxels(prediction, correction)
        else:
            states, focus = label_states(ct, ws.latest_labels(case, "original")), None
        cases.append(TrainingCase(case, ct, states, focus))
        if progress:
            progress((k + 1) / len(todo), f"label states {case}")
    return cases


def _train(ws, plan: FinetunePlan, device: str, resume: bool, config: dict | None, progress: Progress,
           cancel) -> float:
    """Train the plan's model into its staging folder (continuing a cancelled one); returns seconds."""
    cases = _training_cases(ws, plan, _stage(progress, 0.0, 0.125))
    staging = Path(plan.staging)
    can_resume = resume and (staging / STATE_DIR / "state.pt").is_file()
    t0 = time.time()
    train_model(
        cases, staging, plan.iterations, device=device, seed=plan.seed,
        init_from=None if can_resume else plan.parent_path,
        config=finetune_config(Path(plan.parent_path), config), progress=_stage(progress, 0.125, 1.0),
        cancel=cancel, resume=can_resume, checkpoint_every=max(10, plan.iterations // 4),
    )
    return time.time() - t0


def _reason(plan: FinetunePlan, before: ValidationMetrics, after: ValidationMetrics, activated: bool) -> str:
    where = "the training corrections (fewer than 2 corrected cases)" if plan.validated_on_training \
        else f"{len(plan.val_cases)} held-out corrected case(s)"
    compare = (f"node F1 {after.node_f1:.3f} vs {before.node_f1:.3f}, Dice {after.dice_mean:.3f} "
               f"vs {before.dice_mean:.3f} of {plan.parent} on {where}")
    if activated:
        return f"validation not worse: {compare}"
    return f"validation worse: {compare}; kept {plan.parent} active"


def _register(ws, plan: FinetunePlan, after: ValidationMetrics, train_seconds: float) -> str:
    """Move the staged model into ``models/<version>`` and register it with the active one as parent."""
    staging = Path(plan.staging)
    shutil.rmtree(staging / STATE_DIR, ignore_errors=True)
    final = ws.models_dir / plan.version
    if final.exists():  # a crash after the rename but before registering
        shutil.rmtree(final)
    os.replace(staging, final)
    metrics = {"before": asdict(plan.before), "after": asdict(after),
               "validated_on_training": plan.validated_on_training, "train_seconds": round(train_seconds, 1)}
    return ws.register_model(
        final, parent=plan.parent, training_cases=plan.train_cases + plan.replay_cases,
        metrics=metrics, version=plan.version, corrected_cases=plan.train_cases,
        replay_cases=plan.replay_cases, iterations=plan.iterations,
    )


def finetune_workspace(
    workspace, iterations: int = 200, device: str = "auto", resume: bool = False, seed: int = 0,
    val_fraction: float = 0.2, replay: int | None = None, config: dict | None = None,
    tolerance: float = 0.0, dice_margin: float = 0.05, progress: Progress = None,
    cancel: Callable[[], bool] | None = None,
    predictor_factory: Callable[[Path, str], object] | None = None,
) -> FinetuneResult:
    """Fine-tune the active model on the corrected cases; register the result; activate it if not worse.

    ``replay``: how many uncorrected cases replay their original partial labels (default: as many as
    training corrections). ``config``: overrides of the trainer's config (see :data:`FINETUNE_CONFIG`).
    ``tolerance`` / ``dice_margin``: see :func:`not_worse`.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    make_predictor = predictor_factory or Predictor
    t0 = time.time()
    plan = _resume(ws) if resume else _start(ws, iterations, device, seed, val_fraction, replay)
    if plan.before is None:
        old_model = LazyPredictor(lambda: make_predictor(Path(plan.parent_path), device))
        plan.before = validation_metrics(old_model, ws, plan.val_cases, _stage(progress, 0.0, 0.1), cancel,
                                         stored_from=plan.parent)
        _save_plan(ws, plan)
    train_seconds = _train(ws, plan, device, resume, config, _stage(progress, 0.1, 0.9), cancel)
    after = validation_metrics(make_predictor(Path(plan.staging), device), ws, plan.val_cases,
                               _stage(progress, 0.9, 1.0), cancel)
    activated = not_worse(plan.before, after, tolerance, dice_margin)
    reason = _reason(plan, plan.before, after, activated)
    version = _register(ws, plan, after, train_seconds)
    if activated:
        ws.activate(version, reason=reason)
    result = FinetuneResult(
        new_version=version, activated=activated, reason=reason, parent=plan.parent,
        metrics_before=plan.before, metrics_after=after, train_cases=plan.train_cases,
        val_cases=plan.val_cases, replay_cases=plan.replay_cases,
        validated_on_training=plan.validated_on_training, iterations=plan.iterations,
        train_seconds=round(train_seconds, 1), seconds=round(time.time() - t0, 1),
    )
    fields = {k: v for k, v in result.to_dict().items() if k not in ("metrics_before", "metrics_after")}
    ws.log("finetune", **fields, f1_before=plan.before.node_f1, f1_after=after.node_f1,
           dice_before=plan.before.dice_mean, dice_after=after.dice_mean)
    (ws.models_dir / PENDING).unlink(missing_ok=True)
    if progress:
        progress(1.0, f"{version} {'activated' if activated else 'registered, not activated'}")
    return result
