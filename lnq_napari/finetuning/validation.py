"""Held-out figures of a fine-tune: per-case figures of a model on corrected cases, their summary, the
original model of a registry lineage (what the activation rule compares a candidate with), and the
rule's verdict worded for the registry and the journal. Shared by our fine-tune and nnU-Net's."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.activation import (
    SURFACE_TOLERANCE_MM,
    ActivationRule,
    CaseFigures,
    ForgettingFigures,
    Verdict,
    decide_activation,
)
from lnq_napari.active import LazyPredictor
from lnq_napari.components import bounding_box
from lnq_napari.errors import LNQError
from lnq_napari.finetuning.reviewed import marks_of, prediction_parent
from lnq_napari.interact import spot_mask
from lnq_napari.io.volume import Volume
from lnq_napari.metrics import evaluate_case
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import figures_key
from lnq_napari.model.nnunet_folder import NnunetModelSpec, model_spec, typed_model
from lnq_napari.training.corrections import GROWN_LENIENCE_MM, grown_nodes

Progress = Callable[[float, str], None] | None


@dataclass
class ValidationMetrics:
    """A model against the corrections of ``cases``: pooled node F1 and recall, mean Dice and surface
    Dice, false nodes."""

    node_f1: float
    dice_mean: float
    recall: float
    fp_per_case: float
    cases: list[str]
    surface_dice_mean: float = math.nan

    @classmethod
    def from_figures(cls, figures: Sequence[CaseFigures]) -> ValidationMetrics:
        gt = sum(f.nodes_gt for f in figures)
        hit = sum(f.nodes_hit for f in figures)
        fp = sum(f.false_nodes for f in figures)
        dices = [f.dice for f in figures if math.isfinite(f.dice)]
        surface = [f.surface_dice for f in figures if math.isfinite(f.surface_dice)]
        return cls(
            node_f1=2 * hit / (2 * hit + (gt - hit) + fp) if (gt or fp) else 1.0,
            dice_mean=float(np.mean(dices)) if dices else math.nan,
            recall=hit / gt if gt else math.nan,
            fp_per_case=fp / len(figures) if figures else math.nan,
            cases=[f.case_id for f in figures],
            surface_dice_mean=float(np.mean(surface)) if surface else math.nan,
        )


def stored_prediction(ws, case: str, model: str) -> str | None:
    """The newest label version of ``case`` that ``model`` (a model version) predicted, or None."""
    made = [v for v in ws.versions(case) if v["source"] == "prediction" and v.get("model_version") == model]
    return made[-1]["version"] if made else None


def case_figures(predictor, ws, cases: Sequence[str], corrections: dict[str, str] | None = None,
                 progress: Progress = None, cancel=None, stored_from: str | None = None) -> list[CaseFigures]:
    """Per-case figures (:func:`lnq_napari.metrics.evaluate_case`, the project's node size limit, surface
    Dice at the rule's tolerance, lenient by the rule's margin beyond the nodes the reviewer grew, marked
    nodes counted: :func:`held_out_truth`) of ``predictor`` against each case's correction (``corrections``:
    case -> label version, else the latest). With ``stored_from`` (a model version), that model's newest
    stored prediction of a case (:func:`stored_prediction`) is used instead of predicting again."""
    out = []
    for k, case in enumerate(cases):
        truth = held_out_truth(ws, case, (corrections or {}).get(case))
        stored = stored_prediction(ws, case, stored_from) if stored_from else None
        if stored is not None:
            mask = ws.read_labels(case, stored)
        else:
            sub = None if progress is None else (lambda f, m="", k=k: progress((k + f) / len(cases), m))
            mask = predictor.predict(ws.read_ct(case), progress=sub, cancel=cancel).mask
        out.append(CaseFigures.from_metrics(case, evaluate_case(
            mask, truth.correction, surface_tolerance_mm=SURFACE_TOLERANCE_MM, grown=truth.grown,
            lenience_mm=GROWN_LENIENCE_MM, marked=truth.marked, false_volume_beyond_mm=GROWN_LENIENCE_MM)))
    return out


@dataclass
class HeldOutTruth:
    """What a model is judged against on a held-out corrected case: the correction, its nodes the
    reviewer grew or added (lower bounds; None when unknown) and the balls of its marked nodes (None
    when none)."""

    correction: Volume
    grown: np.ndarray | None
    marked: np.ndarray | None


def held_out_truth(ws, case: str, version: str | None = None) -> HeldOutTruth:
    """The correction ``version`` of ``case`` (the latest when None), its grown nodes
    (:func:`correction_and_grown`) and its marked nodes (provenance ``marked``)."""
    info = ws.version_info(case, version) if version else ws.latest_version(case, "correction")
    correction, grown = correction_and_grown(ws, case, info["version"])
    marks = marks_of(info)
    marked = spot_mask(marks, correction.shape, correction.spacing_zyx) if marks else None
    return HeldOutTruth(correction, grown, marked)


#: Grown nodes by the checksums of (correction, corrected prediction), cropped to their box: one
#: fine-tune judges the same held-out cases for the parent, the original and the candidate.
_GROWN: OrderedDict[tuple, tuple[tuple[slice, ...], np.ndarray] | None] = OrderedDict()
_GROWN_KEPT = 16


def correction_and_grown(ws, case: str, version: str | None = None):
    """``(correction, grown)``: the correction ``version`` of ``case`` (the latest when None) and its
    nodes the reviewer added or grew (:func:`~lnq_napari.training.corrections.grown_nodes`; None when the
    prediction it corrected is unknown or on another grid). Remembered per pair of label checksums, so
    the corrected prediction is read once per process."""
    info = ws.version_info(case, version) if version else ws.latest_version(case, "correction")
    truth = ws.read_labels(case, info["version"])
    made = prediction_parent(ws, case, info)
    if made is None:
        return truth, None
    key = (info.get("sha256"), made.get("sha256"))
    known = _GROWN.get(key, False) if None not in key else False
    if known is False:
        before = ws.read_labels(case, made["version"]).array
        grown = None if before.shape != truth.shape else grown_nodes(truth.array, before)
        box = None if grown is None else bounding_box(grown) or (slice(0, 0),) * grown.ndim
        known = None if grown is None else (box, grown[box].copy())
        if None not in key:
            _GROWN[key] = known
            while len(_GROWN) > _GROWN_KEPT:
                _GROWN.popitem(last=False)
    if known is None:
        return truth, None
    box, inside = known
    grown = np.zeros(truth.shape, dtype=bool)
    grown[box] = inside
    return truth, grown


HELD_OUT_CACHE = "held_out.json"  # in the workspace cache: figures by model, case and correction


def version_figures(make_predictor, version: str | None, path: str | Path | NnunetModelSpec, device: str, ws,
                    cases: Sequence[str], corrections: dict[str, str] | None = None,
                    progress: Progress = None, cancel=None, role: str = "version") -> list[CaseFigures]:
    """:func:`case_figures` of the model folder ``path`` (registered as ``version``, or None): figures the
    workspace keeps for the same weights, inference settings and correction are read, ``version``'s stored
    predictions reused, the model loaded (``make_predictor(path, device)``) only when a case needs
    predicting; new figures are kept (so a version's held-out figures, judged when it was a candidate,
    are not predicted again when it is the parent). LNQError naming ``version`` as the ``role`` it is
    judged for (``the lineage's original``) when a case needs predicting and its folder is missing."""
    model = figures_key(path)
    keys = {case: _held_out_key(ws, model, case, (corrections or {}).get(case)) for case in cases}
    kept = ws.read_cache(HELD_OUT_CACHE) if model else {}
    todo = [case for case in cases if keys[case] not in kept]
    _check_there(ws, version, path, todo, role)
    predictor = LazyPredictor(lambda: make_predictor(typed_model(path), device))
    fresh = dict(zip(todo, case_figures(predictor, ws, todo, corrections, progress, cancel,
                                        stored_from=version)))
    new = {keys[case]: dataclasses.asdict(f) for case, f in fresh.items() if keys[case]}
    if new:
        ws.update_cache(HELD_OUT_CACHE, new)  # an undefined figure as null
    return [fresh[case] if case in fresh else CaseFigures.from_dict(kept[keys[case]]) for case in cases]


def _check_there(ws, version: str | None, path, cases: Sequence[str], role: str) -> None:
    """LNQError when the registered ``version``'s model folder is missing and one of ``cases`` has no stored
    prediction of it (it must predict that case)."""
    folder = model_spec(path).folder
    if version is None or folder.exists():
        return
    need = [case for case in cases if stored_prediction(ws, case, version) is None]
    if need:
        more = f" (and {len(need) - 1} more)" if len(need) > 1 else ""
        raise LNQError(f"{role} {version} is needed to judge the new version on held-out case "
                       f"{need[0]}{more}, which it never predicted, but its model folder {folder} is "
                       "missing (moved or deleted); put it back there, then fine-tune again")


def _held_out_key(ws, model: str | None, case: str, version: str | None) -> str | None:
    """A case's figures entry: the model's key, the case, its correction (version and checksum) and the
    tolerances the figures are taken at; None when the model or the correction's checksum is unknown."""
    if model is None:
        return None
    info = ws.version_info(case, version) if version else ws.latest_version(case, "correction")
    if not info.get("sha256"):
        return None
    tolerances = f"{SURFACE_TOLERANCE_MM:g}|{GROWN_LENIENCE_MM:g}|false_volume"
    return f"{model}|{case}|{info['version']}|{info['sha256']}|{tolerances}"


def held_out_verdict(candidate: Sequence[CaseFigures], parent: Sequence[CaseFigures],
                     original: Sequence[CaseFigures] | None, rule: ActivationRule,
                     validated_on_training: bool, kept: str,
                     forgetting: ForgettingFigures | None = None) -> Verdict:
    """:func:`~lnq_napari.activation.decide_activation`, its reason saying when the validation cases were
    the training corrections and, on a refusal, which version stays active (``kept``)."""
    verdict = decide_activation(candidate, parent, original, rule, forgetting)
    reason = verdict.reason
    if validated_on_training:  # the cases judged are the training ones: no evidence, never activated
        reason = reason.replace("held-out case", "training case")
        if verdict.activate:
            reason = "refuse" + reason.removeprefix("activate")
            verdict = dataclasses.replace(verdict, activate=False)
        reason = (f"validated on its own training correction (fewer than 2 corrected cases), which shows "
                  f"nothing about other cases: correct another case, or activate it by hand: {reason}")
    if not verdict.activate:
        reason += f"; kept {kept} active"
    return dataclasses.replace(verdict, reason=reason)


def unless_active_changed(ws, active_at_start: str, activate: bool, reason: str) -> tuple[bool, str]:
    """The rule's ``(activate, reason)``, unless another model was made active while the fine-tune ran
    (``active_at_start``: the version key active when it began): then whoever activated it decides and
    the new version is only registered, the reason saying so. Call it holding ``ws.locked()``."""
    now = ws.prediction_model()[1]
    if now == active_at_start:
        return activate, reason
    shown = (ws.active_model() or {}).get("id", "the bundled model")
    meanwhile = f"{shown} was made active while the fine-tune ran or was stopped"
    if not activate:  # the refusal kept nothing: another model is active now (what follows is kept)
        return False, re.sub(r"; kept \S+ active", f"; {meanwhile} and stays active", reason, count=1)
    return False, (f"{meanwhile}, and that choice stands (the rule's verdict: {reason}); "
                   "`lnq-napari workspace activate` to use it")


def lineage(ws, version: str) -> list[str]:
    """``version`` and its ancestors in the registry, newest first; the last one is the root (a version
    outside the registry, such as the bundled model, ends the list)."""
    return _lineage({e["id"]: e for e in ws.models()}, version)


def _lineage(entries: dict[str, dict], version: str) -> list[str]:
    chain = [version]
    while chain[-1] in entries:
        up = entries[chain[-1]].get("parent")
        if up is None or up in chain:
            break
        chain.append(up)
    return chain


def lineage_corrections(ws, version: str) -> set[str]:
    """The corrected cases ``version`` or any of its ancestors was fine-tuned on."""
    entries = {e["id"]: e for e in ws.models()}
    return {case for v in _lineage(entries, version)
            for case in (entries.get(v) or {}).get("corrected_cases") or []}


def original_model(ws, parent: str) -> tuple[str, Path | NnunetModelSpec] | None:
    """``(version, model)`` of the root of ``parent``'s lineage in the registry (our model's folder, an
    nnU-Net version's spec with its options: :meth:`~lnq_napari.workspace.Workspace.model`; the bundled
    model when the lineage starts there), or None when ``parent`` is itself the original."""
    entries = {e["id"]: e for e in ws.models()}
    root = _lineage(entries, parent)[-1]
    if root == parent:
        return None
    if root in entries:
        return root, ws.model(root)
    return root, Path(resolve_model(None))  # a parent outside the registry: the bundled model


def key_figures(after: ValidationMetrics, before: ValidationMetrics, on_training: bool) -> str:
    """The figures a fine-tune's verdict rests on, in one phrase: the candidate's Dice, recall and false
    nodes per case (``after``) against its parent's (``before``), on how many cases: held out, or its own
    training cases (``on_training``)."""
    n = len(after.cases)
    judged = "training-case" if on_training else "held-out"  # its own correction
    return (f"{judged} Dice {after.dice_mean:.3f} (parent {before.dice_mean:.3f}), recall "
            f"{after.recall:.2f} ({before.recall:.2f}), false nodes per case {after.fp_per_case:.2f} "
            f"({before.fp_per_case:.2f}) on {n} case{'s' if n != 1 else ''}"
            f"{' (no held-out case)' if on_training else ''}")
