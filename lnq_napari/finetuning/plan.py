"""The plan of an active-learning fine-tune: which cases train, validate and replay, fixed when it starts
and kept in ``models/pending.json`` until it ends (so an interrupted run resumes the same plan)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lnq_napari.activation import CaseFigures
from lnq_napari.errors import LNQError
from lnq_napari.finetuning.forgetting import check_data
from lnq_napari.finetuning.reviewed import prediction_parent
from lnq_napari.finetuning.validation import lineage_corrections, original_model
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.datasets import find_cases
from lnq_napari.io.json_text import strict_json
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.workspace.registry import scratch_name


@dataclass
class FinetunePlan:
    """What a fine-tune will do, fixed when it starts (kept in ``models/pending.json`` until it ends)."""

    version: str
    parent: str
    parent_path: str
    original: str | None  # the root of the lineage when it is not the parent
    original_path: str | None
    staging: str  # the model folder while it trains
    device: str
    config: FinetuneConfig
    train_cases: list[str]
    val_cases: list[str]
    validated_on_training: bool
    replay_cases: list[str]
    corrections: dict[str, str]  # case -> correction label version
    predictions: dict[str, str]  # case -> the prediction version that correction descends from
    parent_figures: list[CaseFigures] | None = None
    original_figures: list[CaseFigures] | None = None
    started: float = 0.0
    folds: list[list[str]] = field(default_factory=list)  # cross-fitting: the val cases, fold by fold
    fold_figures: list[CaseFigures] = field(default_factory=list)  # of the folds judged so far

    def fold_folder(self, k: int) -> Path:
        """The folder where the model trained without fold ``k`` (from 0) trains."""
        return Path(self.staging).with_name(scratch_name(self.version, f"fold{k + 1}"))

    @property
    def root(self) -> tuple[str, str]:
        """``(version, folder)`` of the lineage's original model (the parent when it is the original)."""
        return self.original or self.parent, self.original_path or self.parent_path

    @property
    def candidate(self) -> Path:
        """The folder where the trained model is interpolated and re-fitted before registering."""
        return Path(self.staging).with_name(scratch_name(self.version, "candidate"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FinetunePlan:
        data = dict(data)
        figures = {k: None if data.get(k) is None else [CaseFigures.from_dict(f) for f in data.pop(k)]
                   for k in ("parent_figures", "original_figures")}
        figures["fold_figures"] = [CaseFigures.from_dict(f) for f in data.pop("fold_figures", [])]
        config = FinetuneConfig(**data.pop("config"))
        return cls(**{k: v for k, v in data.items() if k not in figures}, config=config, **figures)


def _by_hash(cases: Iterable[str]) -> list[str]:
    """Case ids in a fixed order that does not follow their names (sha1 of the id)."""
    return sorted(cases, key=lambda case: hashlib.sha1(case.encode()).hexdigest())


def split_cases(corrected: Sequence[str], val_fraction: float = 0.2,
                trained: Collection[str] = ()) -> tuple[list[str], list[str], bool]:
    """``(train, validation, validated_on_training)``: a fixed split by hashed case id.

    ``trained``: corrected cases the parent or an ancestor was fine-tuned on; they are held out only
    when too few other corrected cases are left, so that a candidate is not judged against its parent
    on the parent's own training cases. With fewer than two corrected cases the training corrections
    double as validation.
    """
    cases = sorted(corrected)
    if len(cases) < 2:
        return cases, list(cases), True
    n_val = min(len(cases) - 1, max(1, int(round(val_fraction * len(cases)))))
    by_hash = _by_hash(cases)
    ordered = [c for c in by_hash if c not in trained] + [c for c in by_hash if c in trained]
    val = sorted(ordered[:n_val])
    return [c for c in cases if c not in val], val, False


def cross_fit_folds(corrected: Sequence[str], folds: int, trained: Collection[str] = ()) -> list[list[str]]:
    """The corrected cases ``trained`` leaves out (none of the lineage's versions trained on them), dealt
    by hashed case id into at most ``folds`` folds; no folds (hold out with :func:`split_cases` instead)
    when fewer than two such cases or fewer than two corrected cases in all."""
    new = _by_hash(c for c in corrected if c not in trained)
    k = min(folds, len(new))
    if k < 2 or len(corrected) < 2:
        return []
    return [sorted(new[j::k]) for j in range(k)]


# ---------------------------------------------------------------- the plan
def _replay_cases(ws, config: FinetuneConfig, corrected: Sequence[str], n: int) -> list[str]:
    """Up to ``n`` replay case ids drawn with the seed: uncorrected workspace cases with original labels,
    or cases of ``config.replay_data``; none when ``replay_fraction`` is 0."""
    if config.replay_fraction <= 0 or n <= 0:
        return []
    if config.replay_data is not None:
        pool = [c.case_id for c in find_cases(config.replay_data, require="seg", what="replay data")]
    else:
        pool = [c for c in ws.case_ids() if c not in corrected and ws.latest_version(c, "original")]
    if not pool:
        return []
    rng = np.random.default_rng(config.seed)
    return sorted(rng.choice(pool, size=min(n, len(pool)), replace=False).tolist())


def make_plan(ws, config: FinetuneConfig, device: str) -> FinetunePlan:
    """Split the corrected cases, pick replay cases, name the new version (LNQError: nothing corrected)."""
    ws.warn_lost_corrections("fine-tuned")
    corrected = ws.corrected_cases()
    if not corrected:
        raise LNQError("the workspace has no corrected cases; correct some cases (Save in napari) first")
    parent_path, parent_key = ws.prediction_model()
    original = original_model(ws, parent_key)
    check_data(config, *(original or (parent_key, parent_path)))  # a bad forgetting_data fails here
    trained = lineage_corrections(ws, parent_key)
    folds = cross_fit_folds(corrected, config.folds, trained)
    if folds:  # the version trains on every corrected case; fold models judge the new ones
        train, val, on_train = sorted(corrected), sorted(c for fold in folds for c in fold), False
    else:
        train, val, on_train = split_cases(corrected, config.val_fraction, trained)
    corrections, predictions = {}, {}
    for case in corrected:
        corr = ws.latest_version(case, "correction")
        corrections[case] = corr["version"]
        pred = prediction_parent(ws, case, corr)
        if pred is not None:
            predictions[case] = pred["version"]
    version = ws.next_model_version()
    return FinetunePlan(
        version=version, parent=parent_key, parent_path=str(parent_path),
        original=None if original is None else original[0],
        original_path=None if original is None else str(original[1]),
        staging=str(ws.models_dir / scratch_name(version, "training")), device=device, config=config,
        train_cases=train, val_cases=val, validated_on_training=on_train,
        replay_cases=_replay_cases(ws, config, corrected, len(train)), corrections=corrections,
        predictions=predictions, started=time.time(), folds=folds,
    )


def save_plan(ws, plan: FinetunePlan) -> None:
    atomic_write_text(ws.pending_plan_path, strict_json(plan.to_dict(), indent=1))


def _read_pending(path: Path) -> dict | None:
    """The pending plan as a dict, or None when it is damaged (a crash while writing, a bad copy)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class PendingPlan:
    """What ``models/pending.json`` holds, read without changing anything (:func:`pending_plan`)."""

    data: dict  # as read ({} when damaged)
    plan: FinetunePlan | None  # None when it cannot be resumed (``unresumable`` says why)
    unresumable: str | None  # "damaged", "older" (an older lnq-napari's), or None
    finished: bool  # its version is registered already: the run stopped after registering it


def pending_plan(ws) -> PendingPlan | None:
    """The plan an interrupted fine-tune left, as far as it can be resumed (None when there is none): the
    one reading of it for ``--resume`` and for the line that offers it."""
    pending_path = ws.pending_plan_path
    if not pending_path.is_file():
        return None
    data = _read_pending(pending_path)
    if data is None:
        return PendingPlan({}, None, "damaged", False)
    if "config" not in data:
        return PendingPlan(data, None, "older", False)
    try:  # a partial or hand-edited plan: fields missing, of the wrong type
        plan = _moved_with(ws, FinetunePlan.from_dict(data))
    except (TypeError, ValueError, KeyError, AttributeError, LNQError):
        return PendingPlan(data, None, "damaged", False)
    return PendingPlan(data, plan, None, any(v["id"] == plan.version for v in ws.models()))


@dataclass(frozen=True)
class InterruptedFinetune:
    """A fine-tune that stopped before its end and left its plan in ``models/pending.json``."""

    workspace: str  # the workspace folder
    version: str | None  # the version it was to register (None: a damaged plan)
    started: float | None  # when it started (time.time()), None when unknown
    unresumable: str | None = None  # why ``--resume`` refuses it ("damaged", "older"); None: it resumes

    def note(self) -> str:
        """One line: what can continue it, and what a plain run does to it."""
        import shlex

        command = f"lnq-napari finetune --workspace {shlex.quote(self.workspace)}"
        if self.unresumable:
            why = "is damaged" if self.unresumable == "damaged" else "was made by an older lnq-napari"
            return (f"an interrupted fine-tune left a plan that {why} and cannot be resumed; a plain "
                    f"`{command}` replaces it")
        try:
            when = f", started {time.strftime('%Y-%m-%d %H:%M', time.localtime(self.started))}" \
                if self.started else ""
        except (OverflowError, OSError, ValueError):  # a time no calendar holds: not said
            when = ""
        what = f" ({self.version}{when})" if self.version else ""
        return (f"an interrupted fine-tune{what} can be continued with `{command} --resume` (a plain "
                "finetune discards it and starts afresh)")


def interrupted_finetune(ws) -> InterruptedFinetune | None:
    """The fine-tune that stopped before its end and left its plan (an interruption, a crash, a Cancel);
    None when there is none, when it had finished (registered its version), or while a fine-tune runs in
    the workspace (its plan is in use) or that cannot be told."""
    from lnq_napari.workspace.lock import finetune_running

    if not ws.pending_plan_path.is_file() or finetune_running(ws.root) is not False:
        return None  # running, or it cannot be told: then it is not offered
    pending = pending_plan(ws)
    if pending is None or pending.finished:
        return None
    version, started = pending.data.get("version"), pending.data.get("started")
    return InterruptedFinetune(str(ws.root), version if isinstance(version, str) else None,
                               float(started) if isinstance(started, (int, float)) and started > 0 else None,
                               pending.unresumable)


def discard_pending(ws, reason: str) -> bool:
    """Remove the pending plan, if any, with its scratch folders (training, candidate, folds), and say why
    in the journal; whether there was one."""
    pending_path = ws.pending_plan_path
    if not pending_path.is_file():
        return False
    old = _read_pending(pending_path) or {}  # as a dict: it may be of an older format, or damaged
    # its scratch folders: .<version>.* in this models/ (not the paths in the plan: a copied
    # workspace's plan names the original's folders)
    version = old.get("version")
    for folder in ws.models_dir.glob(f".{version}.*") if version else []:
        shutil.rmtree(folder, ignore_errors=True)
    pending_path.unlink(missing_ok=True)
    ws.log("finetune_discard", version=version, reason=reason)
    return True


def start_plan(ws, config: FinetuneConfig, device: str) -> FinetunePlan:
    """A new plan, saved as pending (a pending one left by an interrupted run is discarded, with a
    warning: ``--resume`` would have continued it). The plan is made once before: a setting or an input it
    refuses leaves the interrupted run to ``--resume``."""
    make_plan(ws, config, device)
    if discard_pending(ws, "a new fine-tune was started"):
        warnings.warn("an interrupted fine-tune was discarded: this one starts afresh (finetune --resume "
                      "continues an interrupted one)", UserWarning, stacklevel=3)
    plan = make_plan(ws, config, device)
    save_plan(ws, plan)
    ws.log("finetune_start", version=plan.version, parent=plan.parent, train_cases=plan.train_cases,
           val_cases=plan.val_cases, replay_cases=plan.replay_cases, config=asdict(config))
    return plan


def _moved_with(ws, plan: FinetunePlan) -> FinetunePlan:
    """``plan`` with its folders in this workspace's ``models/`` when the workspace was moved or copied
    since it started (the plan keeps absolute paths: a moved workspace's resume trained afresh at the old
    place, a copy's in the original's scratch folder). Folders outside ``models/`` stay."""
    started_in = Path(plan.staging).parent  # the plan's scratch folder is always in models/

    def here(path: str | None) -> str | None:
        if path is None or not Path(path).is_relative_to(started_in):
            return path
        return str(ws.models_dir / Path(path).relative_to(started_in))

    return replace(plan, staging=here(plan.staging), parent_path=here(plan.parent_path),
                   original_path=here(plan.original_path))


def resume_plan(ws) -> FinetunePlan:
    """The pending plan of an interrupted run (LNQError when there is none, it cannot be resumed
    (:func:`pending_plan`) or it had finished)."""
    pending_path = ws.pending_plan_path
    pending = pending_plan(ws)
    if pending is None:
        raise LNQError("no interrupted fine-tune to resume in this workspace; run finetune without --resume")
    if pending.unresumable == "damaged":
        raise LNQError(f"the interrupted fine-tune's plan {pending_path} is damaged, so it cannot be "
                       "resumed; run finetune without --resume (a new run replaces it)")
    if pending.unresumable == "older" or pending.plan is None:
        raise LNQError("the interrupted fine-tune was started by an older lnq-napari and cannot be resumed; "
                       "run finetune without --resume")
    plan = pending.plan
    if pending.finished:  # killed after registering
        info = ws.model_info(plan.version)
        if not any(e.get("new_version") == plan.version for e in ws.journal("finetune")):
            metrics = info.get("metrics") or {}  # killed before its journal line: written from the registry
            ws.log("finetune", new_version=plan.version, parent=info.get("parent"), decided_by="rule",
                   activated=metrics.get("activated"), reason=metrics.get("reason", ""),
                   train_cases=info.get("corrected_cases", []), replay_cases=info.get("replay_cases", []),
                   recovered="from the registry: the run stopped before writing this line")
        pending_path.unlink()
        if (info.get("metrics") or {}).get("activated") and not info.get("active"):
            raise LNQError(f"the interrupted fine-tune had registered {plan.version}, which the rule "
                           f"activates, and stopped before activating it: `lnq-napari workspace activate "
                           f"{ws.root} {plan.version}` to use it")
        raise LNQError(f"the interrupted fine-tune had already finished as {plan.version} "
                       f"(active: {bool(info.get('active'))}); nothing to resume")
    ws.log("finetune_resume", version=plan.version)
    return plan
