"""Fine-tune an nnU-Net model on a workspace, decided by the activation rule like our own fine-tune.

The corrected cases are split as our fine-tune splits them (:func:`~lnq_napari.finetuning.plan.
split_cases`: a fixed share held out by hashed case id; with fewer than two corrected cases the training
corrections double as validation). The training corrections (by the correction rules) and the other
cases as replay (their original labels) are exported without the held-out cases, the parent's plans
reused, and one fold trained through nnU-Net's own trainer from the parent's weights, its output layer
too when its labels are the export's (nnU-Net's pretraining route starts that layer afresh, as it does,
with a one-line warning, for a parent of other labels: nodes by station, another structure, regions)
(:func:`~lnq_napari.nnunet.train.train_fold`, a subprocess with progress and Cancel).

The candidate, its parent and the lineage's original model are then judged on the held-out corrections
(:func:`~lnq_napari.finetuning.validation.version_figures`: the parent's stored predictions reused, and
each model's figures kept in the workspace cache under its content and prediction settings, so
a candidate's figures are read, not predicted, when it is the next round's parent, and the original's
on the forgetting check's cases are predicted once per lineage) by
:func:`~lnq_napari.activation.decide_activation` (with ``forgetting_data``, the forgetting check too; a
candidate it alone refuses is stepped back toward its parent as our fine-tune steps back ours:
:func:`~lnq_napari.finetuning.posttrain.step_back`, the fold checkpoint's network weights mixed). The
candidate is registered in the workspace registry
(``kind: nnunet``, parent = the parent's version) with the verdict and figures, and activated when the
rule says so (``decided_by: "rule"``); ``lnq-napari workspace activate`` rolls back. A parent given as a
folder that is not yet a version of the workspace is registered first (the root of its lineage).

A parent given as ``nnunet:<folder>?<options>`` (or registered with them) is used as its options say:
its predictions, and training from the first (lowest) of the folds they choose with their checkpoint. The new
version keeps the parent's prediction settings (tile step, mirroring, post-processing): a user who chose
them for the lineage expects them of its next version, and candidate and parent are judged alike; not the
choice of weights (folds, checkpoint), since its own are the one fold it trained.

The work folder (default ``W/nnunet``) does not grow with nnU-Net's copies: once the candidate is
registered (copied under ``models/<id>``, the only model), its preprocessed data and its
``nnUNet_results`` dataset folder are removed. The raw export is kept: it is exactly what nnU-Net trained
on (labels by the correction rules of the day), the registry entry and the journal name it, and nothing
reads it back, so it can be deleted by hand. A failed or cancelled run removes all three folders of its
dataset id, so a rerun (same ``--dataset-id`` or the lowest free one) starts clean.
"""

from __future__ import annotations

import dataclasses
import io
import json
import numbers
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lnq_napari.activation import ActivationRule, CaseFigures, ForgettingFigures, Verdict
from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.finetuning.forgetting import check_alone_refused, check_data, checked_verdict, step_checker
from lnq_napari.finetuning.plan import split_cases
from lnq_napari.finetuning.posttrain import (
    StepWriter,
    interpolated,
    step_alphas,
    step_back,
    stepped_back_verdict,
)
from lnq_napari.finetuning.validation import (
    ValidationMetrics,
    held_out_verdict,
    lineage_corrections,
    original_model,
    unless_active_changed,
    version_figures,
)
from lnq_napari.io.atomic import atomic_write, check_output_folder
from lnq_napari.model.config import FinetuneConfig
from lnq_napari.model.nnunet_folder import (
    CHECKPOINT,
    FINGERPRINT,
    FOLDER_FILES,
    NnUNetModel,
    NnunetModelSpec,
    NnunetOptions,
    model_spec,
    open_model,
)
from lnq_napari.model.nnunet_labels import same_as_export
from lnq_napari.nnunet.export import (
    ExportResult,
    check_target,
    dataset_folder_name,
    export_dataset,
    free_dataset_id,
    used_dataset_ids,
)
from lnq_napari.nnunet.orient import SITK_REORIENT, reorienting_reader
from lnq_napari.nnunet.select import load_predictor
from lnq_napari.nnunet.train import train_fold
from lnq_napari.per_ct import kept_per_ct
from lnq_napari.workspace.lock import FINETUNE_WRITES
from lnq_napari.workspace.registry import entry_options, is_nnunet_version, rule_verdict

WORK = "nnunet"  # the default work folder inside the workspace
NAME = "LNQfinetune"  # the exported dataset's name: <work>/nnUNet_raw/DatasetNNN_LNQfinetune
#: The fold a fine-tune trains: all, every exported case (a numbered fold left a fifth of the corrections
#: out by nnU-Net's own split, while the registry listed them as trained on).
FOLD = "all"
#: The FinetuneConfig settings an nnU-Net fine-tune uses (``iterations``: nnU-Net iterations per epoch).
NNUNET_SETTINGS = ("iterations", "val_fraction", "dense_truth", "forgetting_data", "forgetting_cases",
                   "fallback_steps")


@dataclass(frozen=True)
class NnUNetFinetune:
    """A finished nnU-Net fine-tune: the new registered version (``new_version``), whether the rule
    activated it and why (``reason``, ``figures``), its parent's version; the registered model folder
    (``model``) and its nnU-Net version (``version``, what its predictions carry), the parent's
    (``parent_version``); the exported data and the split. :attr:`spec` is the model with the prediction
    settings it keeps from its parent (``options``), :attr:`model_string` its text."""

    new_version: str
    activated: bool
    reason: str
    figures: dict[str, float]
    parent: str
    original: str
    model: Path
    options: NnunetOptions  # the parent's prediction settings it keeps
    version: str
    parent_version: str
    dataset: Path
    corrected_cases: list[str]
    train_cases: list[str]
    val_cases: list[str]
    replay_cases: list[str]
    validated_on_training: bool
    metrics_before: ValidationMetrics
    metrics_after: ValidationMetrics
    iterations: int
    epochs: int
    train_seconds: float
    seconds: float

    @property
    def spec(self) -> NnunetModelSpec:
        """The registered model with the prediction settings it keeps: what the workspace predicts with."""
        return NnunetModelSpec(self.model, self.options)

    @property
    def model_string(self) -> str:
        """``nnunet:<model>[?options]``: what ``--model`` takes to predict as the workspace does."""
        return str(self.spec)

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths as strings, the options as a model string writes them, nested objects
        as dicts)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()} | {
            "options": self.options.query()}


def _stage(progress, lo: float, hi: float):
    return None if progress is None else (lambda f, m="": progress(lo + (hi - lo) * f, m))


def _parent(ws, parent: str | Path | None) -> tuple[str, NnunetModelSpec]:
    """``(version, registered folder with its options)`` of the parent: the active version when
    ``parent`` is None, the version registered from the same files with the same options as ``parent``
    (a folder or ``nnunet:<folder>[?options]``), else ``parent`` registered as a new version (the root
    of its lineage)."""
    if parent is None:
        active = ws.active_model()
        if not is_nnunet_version(active):
            raise LNQError(f"the workspace's active model ({(active or {}).get('id', 'bundled')}) is not an "
                           "nnU-Net model; give --model nnunet:<trained model folder>")
        version = active["id"]
    else:
        version = ws.adopt_model(parent)
    return version, NnunetModelSpec(ws.registry.check(version), entry_options(ws.model_info(version)))


def _check_config(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` when it changes only what applies to an nnU-Net fine-tune, else LNQError."""
    default = FinetuneConfig()
    changed = [f.name for f in dataclasses.fields(config) if f.name not in NNUNET_SETTINGS
               and getattr(config, f.name) != getattr(default, f.name)]
    if changed:
        raise LNQError(f"fine-tune setting(s) {', '.join(changed)} apply to lnq-napari models only; an "
                       f"nnU-Net fine-tune takes {', '.join(NNUNET_SETTINGS)}")
    return config


def _plans(folder: Path) -> tuple[str, str]:
    """``(plans name, configuration)`` from nnU-Net's model folder name; LNQError when the name is not
    nnU-Net's or its plans.json has no such configuration."""
    parts = folder.name.split("__")
    if len(parts) != 3:
        raise LNQError(f"{folder.name} is not named <trainer>__<plans>__<configuration> as nnU-Net names "
                       "its model folders; give the folder nnUNetv2_train wrote")
    configurations = json.loads((folder / "plans.json").read_text(encoding="utf-8")).get("configurations", {})
    if parts[2] not in configurations:
        raise LNQError(f"{folder} is named for the configuration {parts[2]}, which its plans.json lacks "
                       f"(it has {', '.join(configurations) or 'none'}); give it its name as nnUNetv2_train "
                       "wrote it")
    return parts[1], parts[2]


def _folders(work: Path, dataset_id: int) -> tuple[Path, Path, Path]:
    """The raw, preprocessed and results folders of ``dataset_id``'s fine-tune dataset under ``work``."""
    name = dataset_folder_name(dataset_id, NAME)
    return tuple(work / f"nnUNet_{n}" / name for n in ("raw", "preprocessed", "results"))


def _check_free(work: Path, dataset_id: int) -> None:
    """LNQError when ``dataset_id`` is in use under ``work`` (raw, preprocessed or results), so that every
    folder of the id is this run's to remove."""
    check_target(work / "nnUNet_raw", dataset_id, NAME)
    for root in (work / "nnUNet_preprocessed", work / "nnUNet_results"):
        if dataset_id in used_dataset_ids(root):
            raise LNQError(f"dataset id {dataset_id} is already in use under {root}; choose another "
                           "--dataset-id")


def _leftovers(work: Path) -> list[Path]:
    """The fine-tune datasets under ``work`` (raw, preprocessed, results, and a hidden partial export): a
    finished fine-tune removes its own but the raw export its registered version names, so while this
    workspace's fine-tune lock is held any other found is what a killed one left (gigabytes on real
    data)."""
    roots = [work / f"nnUNet_{n}" for n in ("raw", "preprocessed", "results")]
    return [f for root in roots for pattern in (f"Dataset*_{NAME}", f".Dataset*_{NAME}.partial-*")
            for f in root.glob(pattern) if f.is_dir()]


def _remove(*folders: Path) -> None:
    """Remove ``folders`` (those that exist)."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _train(ws, model: NnUNetModel, work: Path, dataset_id: int, exclude: list[str],
           iterations: int, epochs: int, dense: bool, device: str, progress,
           cancel) -> tuple[ExportResult, Path]:
    """Export (without ``exclude``), reuse the parent's plans, train one fold from its weights; returns
    the export and the trained model folder."""
    plans_name, configuration = _plans(model.path)
    parent_json = json.loads((model.path / "dataset.json").read_text(encoding="utf-8"))
    exported = export_dataset(work / "nnUNet_raw", dataset_id, workspace=ws, name=NAME,
                              dense=dense, exclude=exclude, progress=_stage(progress, 0.0, 0.2),
                              cancel=cancel)
    if reorienting_reader(parent_json):  # the parent learned on images turned to RAS: the candidate too
        _read_turned(exported.dataset_json)
    plans = json.loads((model.path / "plans.json").read_text(encoding="utf-8"))
    plans["dataset_name"] = exported.folder.name  # the parent's plans for the new data (as nnU-Net's
    pre = work / "nnUNet_preprocessed" / exported.folder.name  # nnUNetv2_move_plans_between_datasets)
    plans["plans_name"] = plans_name  # nnU-Net names the trained folder by it (a renamed copy's differs)
    pre.mkdir(parents=True, exist_ok=True)
    (pre / f"{plans_name}.json").write_text(json.dumps(plans, indent=2))
    shutil.copy(exported.dataset_json, pre / "dataset.json")  # as nnU-Net's planner leaves it
    trained = train_fold(exported.folder, work / "nnUNet_preprocessed", work / "nnUNet_results", fold=FOLD,
                         iterations=iterations, epochs=epochs,
                         pretrained=model.checkpoint_path(model.folds[0]), device=device, plans=plans_name,
                         keep_output=same_as_export(parent_json),
                         configuration=configuration, progress=_stage(progress, 0.2, 1.0), cancel=cancel)
    return exported, trained


def _warn_fresh_output(parent: Path) -> None:
    """A one-line warning when the ``parent`` folder's labels are not the export's (nodes by station,
    another structure, regions): its output layer cannot keep its meaning, so training starts it afresh."""
    dataset = json.loads((parent / "dataset.json").read_text(encoding="utf-8"))
    if not same_as_export(dataset):
        labels = ", ".join(map(str, dataset.get("labels") or {}))
        warnings.warn(f"the parent's labels ({labels}) are not the export's (background, lymph_node, "
                      "ignore): the new version starts from a fresh output layer and segments the lymph "
                      "nodes as one label", UserWarning, stacklevel=3)


def _read_turned(dataset_json: Path) -> None:
    """Name nnU-Net's SimpleITKIOWithReorient (it reads the export's NRRD files) as the reader of the
    exported ``dataset_json``: the candidate trains on the images turned to RAS, as its reorienting parent
    did (it was trained in the CT's own voxel order from the parent's RAS-trained layers), and its
    dataset.json, copied from there, has it predict turned so."""
    dataset = json.loads(dataset_json.read_text(encoding="utf-8"))
    dataset["overwrite_image_reader_writer"] = SITK_REORIENT
    dataset_json.write_text(json.dumps(dataset, indent=2) + "\n")


def finetune_nnunet(
    workspace, parent: str | Path | None = None, work: str | Path | None = None,
    dataset_id: int | None = None, iterations: int = 250, epochs: int = 1,
    device: str = "auto", progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None, config: FinetuneConfig | None = None,
    rule: ActivationRule | None = None,
) -> NnUNetFinetune:
    """Fine-tune the nnU-Net model ``parent`` (default: the workspace's active version, which must be an
    nnU-Net one) on ``workspace``'s corrections; register the result and activate it when the activation
    ``rule`` says so. nnU-Net's folders go under ``work`` (default ``<workspace>/nnunet``:
    ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``) with ``dataset_id`` (default: the
    lowest free one). ``config``: ``val_fraction``, ``dense_truth`` and the forgetting check's
    ``forgetting_data``, ``forgetting_cases`` and ``fallback_steps`` (a version the check alone refuses
    is stepped back toward its parent, its fold checkpoint's weights mixed as our fine-tune mixes ours)
    of :class:`~lnq_napari.model.config.FinetuneConfig`.
    LNQError when the workspace has no correction, the parent is not an nnU-Net model folder or
    ``dataset_id`` is in use under ``work``, before anything is written."""
    from lnq_napari.workspace import Workspace

    config, rule = _check_config(config or FinetuneConfig()), rule or ActivationRule()
    for name, value in (("iterations", iterations), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise LNQError(f"{name} must be a whole number of at least 1 (got {value!r}); nnU-Net's "
                           f"trainer runs that many (--{name} on the command line)")
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    # one fine-tune at a time in a workspace, ours or nnU-Net's; a CT predicted again reuses its region
    with ws.running_finetune(), kept_per_ct(ws.cache):
        return _finetune(ws, parent, work, dataset_id, iterations, epochs, device, progress, cancel,
                         config, rule)


def _finetune(ws, parent, work, dataset_id, iterations, epochs, device, progress, cancel,
              config: FinetuneConfig, rule: ActivationRule) -> NnUNetFinetune:
    """:func:`finetune_nnunet` while it holds the workspace's fine-tune lock."""
    t0 = time.time()
    ws.check_writable(FINETUNE_WRITES, ws.models_dir, ws.cache.folder)  # not after its training
    corrected = ws.corrected_cases()
    if not corrected:
        raise LNQError("the workspace has no corrected cases; correct some cases (Save in napari) first")
    if parent is not None:  # a bad parent (or folds it lacks) is refused before it is registered
        _plans(model_spec(parent).open().path)
    device = str(resolve_device(device))  # an unavailable --device cuda fails here, in one line
    if work is None:  # the workspace's own work folder: what a killed fine-tune left there is stale now
        work = ws.root / WORK
        kept_exports = {str(v.get("dataset")) for v in ws.models()}  # what registered versions trained on
        _remove(*[f for f in _leftovers(work) if str(f) not in kept_exports])
    work = check_output_folder(work, "--work", "nnU-Net's working folders").resolve()
    if dataset_id is None:
        dataset_id = free_dataset_id(*(work / f"nnUNet_{n}" for n in ("raw", "preprocessed", "results")))
    _check_free(work, dataset_id)
    kept = (ws.active_model() or {}).get("id", "the bundled model")
    active_at_start = ws.prediction_model()[1]
    parent_id, parent_spec = _parent(ws, parent)
    parent_model = parent_spec.open()  # the registered copy with the folds and checkpoint it predicts with
    _warn_fresh_output(parent_model.path)
    settings = parent_spec.options.settings()  # what the new version keeps (see the module's docstring)

    def as_candidate(folder: Path) -> NnunetModelSpec:
        """A trained folder as the candidate predicts: with the parent's prediction settings."""
        return NnunetModelSpec(folder, settings)

    train, val, on_train = split_cases(corrected, config.val_fraction, lineage_corrections(ws, parent_id))
    original = original_model(ws, parent_id)
    root = original or (parent_id, parent_spec)  # the lineage's original
    checks = check_data(config, *root)  # a bad forgetting_data fails here; cases loaded once, when checked
    parent_figures = version_figures(load_predictor, parent_id, parent_spec, device, ws, val,
                                     progress=_stage(progress, 0.0, 0.05), cancel=cancel)
    original_figures = None if original is None else version_figures(
        load_predictor, *original, device, ws, val, progress=_stage(progress, 0.05, 0.1), cancel=cancel,
        role="the lineage's original")
    raw, pre, results = _folders(work, dataset_id)
    try:
        t_train = time.time()
        exported, trained = _train(ws, parent_model, work, dataset_id, [] if on_train else val,
                                   iterations, epochs, config.dense_truth, device, _stage(progress, 0.1, 0.9),
                                   cancel)
        train_seconds = round(time.time() - t_train, 1)
        figures = version_figures(load_predictor, None, as_candidate(trained), device, ws, val,
                                  progress=_stage(progress, 0.9, 0.95), cancel=cancel)

        def judge(figs: list[CaseFigures], checked: ForgettingFigures | None) -> Verdict:
            return held_out_verdict(figs, parent_figures, original_figures, rule, on_train, kept, checked)

        verdict, checked = checked_verdict(lambda c: judge(figures, c), load_predictor, as_candidate(trained),
                                           *root, device, config, rule, ws, _stage(progress, 0.95, 0.97),
                                           cancel, checks)
        writer = None
        if config.fallback_steps and check_alone_refused(verdict, checked, lambda: judge(figures, None)):
            writer = _stepping(trained, parent_model)
            if writer is None:
                verdict = dataclasses.replace(verdict, reason=f"{verdict.reason}; no step back (the parent's "
                                              "network or labels differ from the fine-tuned one's)")
        if writer is not None:
            check = step_checker(load_predictor, *root, device, config, rule, ws, cancel, checks)
            if progress is not None:
                progress(0.98, "stepping back: the parent's forgetting check")
            alphas = step_alphas(check(parent_spec), checked, rule, config.fallback_steps)
            step = step_back(trained, writer, alphas, lambda f: check(as_candidate(f)),
                             lambda f: version_figures(load_predictor, None, as_candidate(f), device, ws, val,
                                                       cancel=cancel), judge, rule,
                             None if progress is None else (lambda message: progress(0.98, message)))
            verdict = stepped_back_verdict(verdict, step, parent_id)
            figures = list(step.figures) if step.alpha is not None else figures
        result = NnUNetFinetune(
            new_version="", activated=verdict.activate, reason=verdict.reason, figures=verdict.figures,
            parent=parent_id, original=original[0] if original else parent_id, model=trained,
            options=settings, version="",
            parent_version=parent_model.version, dataset=exported.folder,
            corrected_cases=corrected, train_cases=train, val_cases=val, validated_on_training=on_train,
            replay_cases=[c.case_id for c in exported.cases if c.kind == "original"],
            metrics_before=ValidationMetrics.from_figures(parent_figures),
            metrics_after=ValidationMetrics.from_figures(figures), iterations=int(iterations),
            epochs=int(epochs), train_seconds=train_seconds, seconds=0.0)
        if cancel is not None and cancel():  # pressed during the last prediction: nothing registered
            raise Cancelled("nnU-Net fine-tune cancelled before its version was registered")
        result = _register(ws, result, t0, active_at_start)
    except BaseException:  # failed or cancelled: nothing of this dataset id is left for a rerun to meet
        _remove(raw, pre, results)
        raise
    _remove(pre, results)  # the registered copy under models/<id> is the model
    if progress:
        state = "activated" if result.activated else "registered, not activated"
        progress(1.0, f"{result.new_version} {state}")
    return result


def _stepping(trained: Path, parent: NnUNetModel) -> StepWriter | None:
    """Steps between the parent's checkpoint (the one training started from) and the fine-tuned fold's
    (both read once): ``write(alpha, folder)`` writes the step's ``network_weights`` into ``folder``'s
    fold checkpoint, ``folder`` a model folder of its own unless it is ``trained``. None when the two
    networks' weights do not match name for name and shape for shape (nothing to mix), or the parent's
    outputs are not laid out as the fine-tuned one's (its labels not the export's: a region-based
    parent's sigmoid layer mixed with a softmax one)."""
    import torch

    if not same_as_export(json.loads((parent.path / "dataset.json").read_text(encoding="utf-8"))):
        return None
    name = f"fold_{FOLD}"
    saved = torch.load(trained / name / CHECKPOINT, map_location="cpu", weights_only=False)
    base = torch.load(parent.checkpoint_path(parent.folds[0]), map_location="cpu",
                      weights_only=False)["network_weights"]
    tuned = saved["network_weights"]
    if set(base) != set(tuned) or any(base[k].shape != tuned[k].shape for k in tuned):
        return None

    def write(alpha: float, folder: Path) -> None:
        if folder != trained:
            shutil.rmtree(folder, ignore_errors=True)
            (folder / name).mkdir(parents=True)
            for file in (*FOLDER_FILES, FINGERPRINT):  # what a model folder holds beside its folds
                if (trained / file).is_file():
                    shutil.copy2(trained / file, folder / file)
        step = {**saved, "network_weights": interpolated(base, tuned, alpha)}
        data = io.BytesIO()  # the same bytes whatever the file's name; a full disk is OSError when written
        torch.save(step, data)
        with atomic_write(folder / name / CHECKPOINT) as tmp:
            tmp.write_bytes(data.getvalue())

    return write


def _register(ws, result: NnUNetFinetune, t0: float, active_at_start: str) -> NnUNetFinetune:
    """Register the trained folder (parent: ``result.parent``) with the verdict and figures and the
    prediction settings it keeps (``result.options``), activate it when the rule said so (and no other
    model was made active since ``active_at_start``), journal the run; returns the result naming the
    registered version."""
    keep = ("activated", "reason", "figures", "original", "metrics_before", "metrics_after",
            "validated_on_training", "train_seconds")
    # copied before the lock (saves wait for no copy); a user's activation cannot come between the check
    # and the rule's activation
    with ws.registry.staged(result.model, result.options) as model, ws.locked():
        rule = rule_verdict(result.activated)
        activated, reason = unless_active_changed(ws, active_at_start, result.activated, result.reason)
        result = dataclasses.replace(result, activated=activated, reason=reason)
        metrics = {**{k: v for k, v in result.to_dict().items() if k in keep}, **rule}
        version = ws.register_model(
            model, parent=result.parent, training_cases=result.train_cases + result.replay_cases,
            metrics=metrics, corrected_cases=result.train_cases, replay_cases=result.replay_cases,
            val_cases=result.val_cases, iterations=result.iterations, epochs=result.epochs,
            dataset=str(result.dataset), options=result.options)
        if result.activated:
            ws.activate(version, reason=result.reason, decided_by="rule")
    registered = open_model(ws.model_path(version))
    result = dataclasses.replace(result, new_version=version, model=registered.path,
                                 options=entry_options(ws.model_info(version)),
                                 version=registered.version, seconds=round(time.time() - t0, 1))
    fields = {k: v for k, v in result.to_dict().items() if k not in ("metrics_before", "metrics_after")}
    fields.update(parent=result.parent_version, parent_id=result.parent, decided_by="rule",  # nnU-Net
                  dice_before=result.metrics_before.dice_mean,  # versions as parent and version
                  dice_after=result.metrics_after.dice_mean)
    ws.log("finetune_nnunet", **fields)
    return result
