"""Fine-tune an nnU-Net model on a workspace: export its corrections (by the correction rules) with the
other cases as replay (their original labels), reuse the parent's plans, and train one fold through
nnU-Net's own trainer with the parent's weights as pretrained weights (:func:`~lnq_napari.nnunet.train.
train_fold`, a subprocess with progress and Cancel).

The result is a new nnU-Net model folder, journaled in the workspace (``finetune_nnunet``). It is not
yet registered in the workspace's model registry nor decided by the activation rule: the registry takes
lnq-napari model folders (config.json + weights) only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lnq_napari.device import resolve_device
from lnq_napari.errors import LNQError
from lnq_napari.nnunet.export import export_dataset
from lnq_napari.nnunet.folder import open_model
from lnq_napari.nnunet.train import train_fold


@dataclass(frozen=True)
class NnUNetFinetune:
    """A finished nnU-Net fine-tune: the new model folder and version, its parent, the exported data."""

    model: Path
    version: str
    parent_version: str
    dataset: Path
    corrected_cases: list[str]


def _stage(progress, lo: float, hi: float):
    return None if progress is None else (lambda f, m="": progress(lo + (hi - lo) * f, m))


def finetune_nnunet(
    workspace, parent: str | Path, work: str | Path, dataset_id: int, fold: str = "all",
    iterations: int = 250, epochs: int = 1, device: str = "auto",
    progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
) -> NnUNetFinetune:
    """Fine-tune the nnU-Net model ``parent`` on ``workspace``; nnU-Net's folders go under ``work``
    (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``). LNQError when the workspace has no
    correction or the parent is not an nnU-Net model folder."""
    from lnq_napari.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    corrected = ws.corrected_cases()
    if not corrected:
        raise LNQError("the workspace has no corrected cases; correct some cases (Save in napari) first")
    model = open_model(parent)
    parts = model.path.name.split("__")
    if len(parts) != 3:
        raise LNQError(f"{model.path.name} is not named <trainer>__<plans>__<configuration> as nnU-Net names "
                       "its model folders; give the folder nnUNetv2_train wrote")
    plans_name, configuration = parts[1], parts[2]
    work = Path(work).expanduser().resolve()
    exported = export_dataset(work / "nnUNet_raw", dataset_id, workspace=ws, name="LNQfinetune",
                              progress=_stage(progress, 0.0, 0.2), cancel=cancel)
    plans = json.loads((model.path / "plans.json").read_text())
    plans["dataset_name"] = exported.folder.name  # the parent's plans for the new data (as nnU-Net's
    pre = work / "nnUNet_preprocessed" / exported.folder.name  # nnUNetv2_move_plans_between_datasets)
    pre.mkdir(parents=True, exist_ok=True)
    (pre / f"{plans_name}.json").write_text(json.dumps(plans, indent=2))
    shutil.copy(exported.dataset_json, pre / "dataset.json")  # as nnU-Net's planner leaves it
    device = str(resolve_device(device))  # an unavailable --device cuda fails here, in one line
    folder = train_fold(exported.folder, work / "nnUNet_preprocessed", work / "nnUNet_results", fold=fold,
                        iterations=iterations, epochs=epochs,
                        pretrained=model.checkpoint_path(model.folds[0]), device=device, plans=plans_name,
                        configuration=configuration,
                        progress=_stage(progress, 0.2, 1.0), cancel=cancel)
    version = open_model(folder).version
    ws.log("finetune_nnunet", parent=model.version, version=version, model=str(folder),
           dataset=str(exported.folder), cases=corrected, iterations=int(iterations), epochs=int(epochs))
    return NnUNetFinetune(folder, version, model.version, exported.folder, corrected)
