"""A tiny nnU-Net model folder made with nnU-Net's own planner and network builder, for tests, the
notebook and the CPU benchmark: it shows the whole road (export -> plan -> model folder -> predict)
in seconds, without nnU-Net's 1000-epoch training. Its weights are untrained unless it is trained
afterwards (``nnUNetv2_train``); never use it for results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.model.nnunet_folder import CHECKPOINT
from lnq_napari.nnunet.deps import require_nnunet
from lnq_napari.nnunet.pools import one_process_here

CONFIGURATION = "3d_fullres"
TRAINER = "nnUNetTrainer"
PLANS = "nnUNetPlans"


@contextlib.contextmanager
def nnunet_paths(raw: str | Path, preprocessed: str | Path, results: str | Path) -> Iterator[None]:
    """Set ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` for the block, then restore."""
    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(Path(p).resolve()) for n, p in zip(names, (raw, preprocessed, results))})
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def plan_dataset(dataset_folder: str | Path, preprocessed: str | Path, num_processes: int = 1,
                 feature_divisor: int = 8) -> Path:
    """nnU-Net's fingerprint and ``3d_fullres`` plan of an exported dataset (``nnUNetv2_plan_and_preprocess``
    without the preprocessing); the network's feature counts are divided by ``feature_divisor`` (tiny)."""
    require_nnunet("planning an nnU-Net dataset")
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    dataset_folder = Path(dataset_folder)
    dataset_id = int(dataset_folder.name[len("Dataset"):len("Dataset") + 3])
    with nnunet_paths(dataset_folder.parent, preprocessed, Path(preprocessed).parent / "nnUNet_results"), \
            contextlib.redirect_stdout(io.StringIO()), one_process_here(num_processes):  # it prints its plans
        extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=False)
        plan_experiments([dataset_id])
    plans_file = Path(preprocessed) / dataset_folder.name / f"{PLANS}.json"
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    arch = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [max(4, int(f) // feature_divisor) for f in arch["features_per_stage"]]
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans_file


def write_model_folder(plans_file: str | Path, dataset_json: str | Path, results: str | Path,
                       fold: str = "0", seed: int = 0) -> Path:
    """``<results>/<dataset>/nnUNetTrainer__nnUNetPlans__3d_fullres`` with plans.json, dataset.json and
    ``fold_<fold>/checkpoint_final.pth`` holding the network nnU-Net's trainer builds from the plans
    (initialised with ``seed``, untrained). Returns the model folder."""
    require_nnunet("writing an nnU-Net model folder")
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(Path(plans_file).read_text(encoding="utf-8"))
    dataset = json.loads(Path(dataset_json).read_text(encoding="utf-8"))
    manager = PlansManager(plans)
    if CONFIGURATION not in plans.get("configurations", {}):
        raise LNQError(f"{plans_file} has no {CONFIGURATION} configuration; plan the dataset again")
    configuration = manager.get_configuration(CONFIGURATION)
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(
        manager, configuration, determine_num_input_channels(manager, configuration, dataset),
        manager.get_label_manager(dataset).num_segmentation_heads, enable_deep_supervision=False)
    folder = Path(results) / plans["dataset_name"] / f"{TRAINER}__{plans['plans_name']}__{CONFIGURATION}"
    (folder / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    fingerprint = Path(plans_file).parent / "dataset_fingerprint.json"
    if fingerprint.is_file():  # as nnU-Net's trainer keeps it beside the plans
        (folder / fingerprint.name).write_text(fingerprint.read_text())
    torch.save({
        "network_weights": network.state_dict(), "trainer_name": TRAINER, "current_epoch": 0,
        "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": fold, "dataset_json": dataset},
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }, folder / f"fold_{fold}" / CHECKPOINT)
    return folder


def make_tiny_model(dataset_folder: str | Path, work: str | Path, fold: str = "0", seed: int = 0) -> Path:
    """Plan an exported dataset (``<work>/nnUNet_preprocessed``) and write an untrained tiny model folder
    under ``<work>/nnUNet_results``; returns the model folder."""
    work = Path(work)
    plans = plan_dataset(dataset_folder, work / "nnUNet_preprocessed")
    return write_model_folder(plans, Path(dataset_folder) / "dataset.json", work / "nnUNet_results",
                              fold=fold, seed=seed)
