"""Fine-tune the active model on a workspace's corrections, validate, register and maybe activate.

Label states of a corrected case: the corrected mask follows the partial-label rules of
:func:`~lnq_napari.training.labels.label_states` (its nodes are 1, a ring around them and what the CT
rules out are 0, the rest unknown); on top of that, components of the prediction the reviewer
corrected that are absent from the correction (removed as false) become known background (0).
Other cases replay their original partial labels so the model does not forget them.

Validation uses held-out corrected cases (a fixed split by case id); with fewer than two corrected
cases it validates on the training corrections and says so. The new version is registered with the
active one as parent and activated only when it does not validate worse (:func:`not_worse`).
Interruptions leave ``models/pending.json``; ``resume=True`` continues that run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.io.volume import Volume

PENDING = "pending.json"
#: Fine-tuning overrides of the trainer's config: a gentler, shorter schedule than training.
#: Half the node-centred patches (a quarter of all) are centred on what the reviewer changed.
FINETUNE_CONFIG: dict = {"train": {"lr": 1e-4, "warmup": 10, "focus_fraction": 0.5}}


def correction_states(
    ct: Volume, correction: Volume, prediction: Volume | None = None, options: dict | None = None
) -> np.ndarray:
    """int8 states of a corrected case: label_states of the correction, plus removed components as 0.

    Unlike an original annotation, a correction gets no ring of known background around its nodes: the
    outline of a node the reviewer kept is the model's own, and where the model stopped short the ring
    would mark node tissue as background (teaching it to stop short again).
    """
    from scipy import ndimage

    from lnq_napari.training.labels import BACKGROUND, NODE, label_states

    states = label_states(ct, correction, ring_mm=0.0, options=options)
    corrected = np.asarray(correction.array) > 0
    if prediction is not None:
        predicted = np.asarray(prediction.array) > 0
        if predicted.shape != corrected.shape:
            raise LNQError(f"prediction {predicted.shape} and correction {corrected.shape} differ in grid; "
                           "re-predict the case before fine-tuning")
        comp, n = ndimage.label(predicted, structure=np.ones((3, 3, 3), bool))
        if n:
            kept = np.unique(comp[corrected & predicted])
            removed = (comp > 0) & ~np.isin(comp, kept)
            states[removed & ~corrected] = BACKGROUND
    states[corrected] = NODE
    return states


def edited_voxels(prediction: Volume, correction: Volume) -> np.ndarray | None:
    """Bool mask of the voxels a reviewer changed (added or removed), or None when nothing changed."""
    before, after = np.asarray(prediction.array) > 0, np.asarray(correction.array) > 0
    if before.shape != after.shape:
        return None
    edited = before != after
    return edited if edited.any() else None


def finetune_config(parent: Path, overrides: dict | None = None) -> dict:
    """Trainer config for fine-tuning ``parent``: its own train settings, a gentler schedule, overrides."""
    from lnq_napari.model.checkpoint import read_config

    train = dict(read_config(parent).get("train", {}))
    train.update(FINETUNE_CONFIG["train"])
    train.update((overrides or {}).get("train", {}))
    return {**(overrides or {}), "train": train}


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


def _hash_order(case: str) -> str:
    return hashlib.sha1(case.encode()).hexdigest()


def split_cases(corrected: Sequence[str], val_fraction: float = 0.2) -> tuple[list[str], list[str], bool]:
    """``(train, validation, validated_on_training)``: a fixed split by hashed case id.

    With fewer than two corrected cases the training corrections double as validation.
    """
    cases = sorted(corrected)
    if len(cases) < 2:
        return cases, list(cases), True
    n_val = min(len(cases) - 1, max(1, int(round(val_fraction * len(cases)))))
    ordered = sorted(cases, key=_hash_order)
    val = sorted(ordered[:n_val])
    return [c for c in cases if c not in val], val, False


def validation_metrics(predictor, ws, cases: Sequence[str], progress=None, cancel=None,
                       stored_from: str | None = None) -> dict:
    """Node F1, mean Dice, pooled node recall and false nodes per case of ``predictor`` vs corrections.

    With ``stored_from`` (a model version), a case's stored prediction by that model is used instead
    of predicting again.
    """
    from lnq_napari.metrics import evaluate_case

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
    return {
        "node_f1": 2 * hit / (2 * hit + (gt - hit) + fp) if (gt or fp) else 1.0,
        "dice_mean": float(np.mean([r["dice"] for r in rows])) if rows else math.nan,
        "recall": hit / gt if gt else math.nan,
        "fp_per_case": fp / len(rows) if rows else math.nan,
        "cases": list(cases),
    }


def not_worse(before: dict, after: dict, tolerance: float = 0.0, dice_margin: float = 0.05) -> bool:
    """The activation rule: node F1 not lower (beyond ``tolerance``) and Dice not lower by > ``dice_margin``.

    Node F1 (nodes found vs missed and false, pooled) decides because the corrections keep the old
    model's own masks for the nodes it found, so voxel Dice against them favours the old model; Dice
    only guards against a model whose masks got much worse.
    """
    if math.isnan(before.get("node_f1", math.nan)):
        return True
    return (after["node_f1"] >= before["node_f1"] - tolerance
            and after["dice_mean"] >= before["dice_mean"] - dice_margin)


def _default_predictor(path: Path, device: str):
    from lnq_napari.inference import Predictor

    return Predictor(path, device=device)


def _training_cases(ws, plan: dict, progress=None) -> list:
    from lnq_napari.training.labels import label_states
    from lnq_napari.training.trainer import TrainingCase

    cases = []
    todo = [(c, "correction") for c in plan["train_cases"]] + [(c, "original") for c in plan["replay_cases"]]
    for k, (case, kind) in enumerate(todo):
        ct = ws.read_ct(case)
        if kind == "correction":
            corr = ws.version_info(case, plan["corrections"][case])
            pred_version = plan["predictions"].get(case)
            prediction = ws.read_labels(case, pred_version) if pred_version else None
            correction = ws.read_labels(case, corr["version"])
            states = correction_states(ct, correction, prediction)
            focus = None if prediction is None else edited_voxels(prediction, correction)
        else:
            states, focus = label_states(ct, ws.latest_labels(case, "original")), None
        cases.append(TrainingCase(case, ct, states, focus))
        if progress:
            progress((k + 1) / len(todo), f"label states {case}")
    return cases


def _make_plan(ws, iterations: int, device: str, seed: int, val_fraction: float, replay: int | None) -> dict:
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
    return {
        "version": version, "parent": parent_key, "parent_path": str(parent_path),
        "staging": str(ws.models_dir / f".{version}.training"),
        "iterations": int(iterations), "device": device, "seed": int(seed),
        "train_cases": train, "val_cases": val, "validated_on_training": on_train,
        "replay_cases": replay_cases, "corrections": corrections, "predictions": predictions,
        "before": None, "started": time.time(),
    }


def finetune_workspace(
    workspace, iterations: int = 200, device: str = "auto", resume: bool = False, seed: int = 0,
    val_fraction: float = 0.2, replay: int | None = None, config: dict | None = None,
    tolerance: float = 0.0, dice_margin: float = 0.05, progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    predictor_factory: Callable[[Path, str], object] | None = None,
) -> dict:
    """Fine-tune the active model on the corrected cases; register the result; activate it if not worse.

    ``replay``: how many uncorrected cases replay their original partial labels (default: as many as
    training corrections). ``tolerance`` / ``dice_margin``: see :func:`not_worse`.
    Returns ``new_version, activated, reason, metrics_before, metrics_after, train_cases, val_cases,
    replay_cases, validated_on_training, seconds``.
    """
    from lnq_napari.active import LazyPredictor
    from lnq_napari.training.trainer import train_model
    from lnq_napari.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    make_predictor = predictor_factory or _default_predictor
    pending_path = ws.models_dir / PENDING
    t0 = time.time()

    def stage(lo: float, hi: float):
        if progress is None:
            return None
        return lambda f, m="": progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), m)

    if resume:
        if not pending_path.is_file():
            raise LNQError("no interrupted fine-tune to resume in this workspace; "
                           "run finetune without --resume")
        plan = json.loads(pending_path.read_text())
        if any(v["id"] == plan["version"] for v in ws.models()):  # killed after registering
            pending_path.unlink()
            info = ws.model_info(plan["version"])
            raise LNQError(f"the interrupted fine-tune had already finished as {plan['version']} "
                           f"(active: {bool(info.get('active'))}); nothing to resume")
        ws.log("finetune_resume", version=plan["version"])
    else:
        if pending_path.is_file():
            old = json.loads(pending_path.read_text())
            shutil.rmtree(old.get("staging", ""), ignore_errors=True)
            ws.log("finetune_discard", version=old.get("version"), reason="a new fine-tune was started")
        plan = _make_plan(ws, iterations, device, seed, val_fraction, replay)
        atomic_write_text(pending_path, json.dumps(plan, indent=1))
        ws.log("finetune_start", version=plan["version"], parent=plan["parent"],
               train_cases=plan["train_cases"], val_cases=plan["val_cases"],
               replay_cases=plan["replay_cases"])

    if plan["before"] is None:
        old_model = LazyPredictor(lambda: make_predictor(Path(plan["parent_path"]), device))
        plan["before"] = validation_metrics(old_model, ws, plan["val_cases"], stage(0.0, 0.1), cancel,
                                            stored_from=plan["parent"])
        atomic_write_text(pending_path, json.dumps(plan, indent=1))
    cases = _training_cases(ws, plan, stage(0.1, 0.2))
    staging = Path(plan["staging"])
    can_resume = resume and (staging / "train_state" / "state.pt").is_file()
    t_train = time.time()
    train_model(
        cases, staging, plan["iterations"], device=device, seed=plan["seed"],
        init_from=None if can_resume else plan["parent_path"],
        config=finetune_config(Path(plan["parent_path"]), config), progress=stage(0.2, 0.9), cancel=cancel,
        resume=can_resume, checkpoint_every=max(10, plan["iterations"] // 4),
    )
    train_seconds = time.time() - t_train
    new_model = make_predictor(staging, device)
    after = validation_metrics(new_model, ws, plan["val_cases"], stage(0.9, 1.0), cancel)
    before = plan["before"]
    activated = not_worse(before, after, tolerance, dice_margin)
    where = "the training corrections (fewer than 2 corrected cases)" if plan["validated_on_training"] \
        else f"{len(plan['val_cases'])} held-out corrected case(s)"
    compare = (f"node F1 {after['node_f1']:.3f} vs {before['node_f1']:.3f}, Dice {after['dice_mean']:.3f} "
               f"vs {before['dice_mean']:.3f} of {plan['parent']} on {where}")
    if activated:
        reason = f"validation not worse: {compare}"
    else:
        reason = f"validation worse: {compare}; kept {plan['parent']} active"

    shutil.rmtree(staging / "train_state", ignore_errors=True)
    final = ws.models_dir / plan["version"]
    if final.exists():  # a crash after the rename but before registering
        shutil.rmtree(final)
    os.replace(staging, final)
    metrics = {"before": before, "after": after, "validated_on_training": plan["validated_on_training"],
               "train_seconds": round(train_seconds, 1)}
    version = ws.register_model(
        final, parent=plan["parent"], training_cases=plan["train_cases"] + plan["replay_cases"],
        metrics=metrics, version=plan["version"], corrected_cases=plan["train_cases"],
        replay_cases=plan["replay_cases"], iterations=plan["iterations"],
    )
    if activated:
        ws.activate(version, reason=reason)
    result = {
        "new_version": version, "activated": activated, "reason": reason, "parent": plan["parent"],
        "metrics_before": before, "metrics_after": after, "train_cases": plan["train_cases"],
        "val_cases": plan["val_cases"], "replay_cases": plan["replay_cases"],
        "validated_on_training": plan["validated_on_training"], "iterations": plan["iterations"],
        "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - t0, 1),
    }
    ws.log("finetune", **{k: v for k, v in result.items() if k not in ("metrics_before", "metrics_after")},
           f1_before=before["node_f1"], f1_after=after["node_f1"],
           dice_before=before["dice_mean"], dice_after=after["dice_mean"])
    pending_path.unlink(missing_ok=True)
    if progress:
        progress(1.0, f"{version} {'activated' if activated else 'registered, not activated'}")
    return result
