"""A trained nnU-Net model folder (``nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<config>``): what it
must hold, which folds it has, and its version (folder + checkpoint hash). Needs no nnunetv2."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.checksum import sha256_file

PREFIX = "nnunet:"
CHECKPOINT = "checkpoint_final.pth"


@dataclass(frozen=True)
class NnUNetModel:
    """A checked nnU-Net model folder: the folds used, their checkpoint files and the model version."""

    path: Path
    folds: tuple[str, ...]  # "0".."4" or "all"
    checkpoint: str
    version: str

    def checkpoint_path(self, fold: str) -> Path:
        return self.path / f"fold_{fold}" / self.checkpoint


def strip_prefix(model: str | Path) -> Path:
    """The folder of ``nnunet:<folder>`` (or of a plain folder)."""
    text = str(model)
    return Path(text[len(PREFIX):] if text.startswith(PREFIX) else text).expanduser()


def is_nnunet_folder(path: str | Path) -> bool:
    """True for a folder holding nnU-Net's ``plans.json`` and ``dataset.json`` (a trained model folder)."""
    path = strip_prefix(path)
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def available_folds(path: Path, checkpoint: str = CHECKPOINT) -> list[str]:
    """Folds of ``path`` with ``fold_<f>/<checkpoint>``: numbers in order, then "all"."""
    found = [p.name[len("fold_"):] for p in path.glob("fold_*") if (p / checkpoint).is_file()]
    return sorted((f for f in found if f.isdigit()), key=int) + (["all"] if "all" in found else [])


def model_version(path: Path, folds, checkpoint: str) -> str:
    """``nnunet:<dataset>/<model folder>@<12 hex>``: the hash covers plans.json, dataset.json and the
    used folds' checkpoints, so retraining a fold gives a new version."""
    digest = hashlib.sha256()
    for name in ("plans.json", "dataset.json"):
        digest.update(f"{name}:{sha256_file(path / name)}\n".encode())
    for fold in folds:
        digest.update(f"fold_{fold}:{sha256_file(path / f'fold_{fold}' / checkpoint)}\n".encode())
    return f"{PREFIX}{path.parent.name}/{path.name}@{digest.hexdigest()[:12]}"


def open_model(model: str | Path, folds=None, checkpoint: str = CHECKPOINT) -> NnUNetModel:
    """Check an nnU-Net model folder; LNQError when it is not one or lacks the folds asked for.

    ``folds``: None for every fold that has ``checkpoint`` (as nnU-Net's own auto-detection, plus
    ``fold_all`` when it is the only one), else the folds to ensemble ("0".."4", "all").
    """
    path = strip_prefix(model)
    if not path.is_dir():
        raise LNQError(f"nnU-Net model folder {path} does not exist; give the trained model folder "
                       "(nnUNet_results/DatasetNNN_X/nnUNetTrainer__nnUNetPlans__3d_fullres)")
    if not is_nnunet_folder(path):
        raise LNQError(f"{path} is not an nnU-Net trained model folder (no plans.json and dataset.json); "
                       "give nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<configuration>")
    found = available_folds(path, checkpoint)
    if not found:
        raise LNQError(f"{path} has no fold_*/{checkpoint}; finish training a fold (nnUNetv2_train) or pass "
                       "another checkpoint (e.g. checkpoint_best.pth)")
    if folds is None or folds == () or folds == []:
        numbered = [f for f in found if f != "all"]
        chosen = tuple(numbered or found)
    else:
        chosen = tuple(str(f) for f in ([folds] if isinstance(folds, (int, str)) else folds))
        missing = [f for f in chosen if f not in found]
        if missing:
            raise LNQError(f"{path} lacks fold(s) {', '.join(missing)} ({checkpoint}); it has fold(s) "
                           f"{', '.join(found)}: pass those or train the missing ones")
    return NnUNetModel(path, chosen, checkpoint, model_version(path, chosen, checkpoint))
