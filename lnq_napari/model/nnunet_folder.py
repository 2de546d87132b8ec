"""A trained nnU-Net model folder (``nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<config>``): what it
must hold, which folds it has, its version (folder + checkpoint hash), and the settings it predicts with
unless told otherwise. Needs no nnunetv2."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.checksum import sha256_file
from lnq_napari.model.config import InferenceConfig

PREFIX = "nnunet:"
CHECKPOINT = "checkpoint_final.pth"
FOLDER_FILES = ("plans.json", "dataset.json")  # what makes a folder a trained nnU-Net model
FINGERPRINT = "dataset_fingerprint.json"  # kept beside them when present (a copy of the model takes it)
TILE_STEP = 0.5  # nnU-Net's own default tile step
MIRRORING = True  # nnU-Net's own default: test-time mirroring on
# nnU-Net's argmax, without our bundled model's size, peak and HU filters (nnU-Net learned what a node is)
NNUNET_INFERENCE = InferenceConfig(threshold=0.5, min_component_mm3=0.0, max_mean_hu=None,
                                   mediastinum_margin_mm=None, min_peak=0.0)


@dataclass(frozen=True)
class NnUNetModel:
    """A checked nnU-Net model folder: the folds used, their checkpoint files and the model version."""

    path: Path
    folds: tuple[str, ...]  # "0".."4" or "all"
    checkpoint: str
    content: str  # SHA-256 over plans.json, dataset.json and the used folds' checkpoints

    @property
    def version(self) -> str:
        """``nnunet:<dataset>/<model folder>@<12 hex>``: retraining a fold gives a new version."""
        return f"{PREFIX}{self.path.parent.name}/{self.path.name}@{self.content[:12]}"

    def checkpoint_path(self, fold: str) -> Path:
        return self.path / f"fold_{fold}" / self.checkpoint


def strip_prefix(model: str | Path) -> Path:
    """The folder of ``nnunet:<folder>`` (or of a plain folder)."""
    text = str(model)
    return Path(text[len(PREFIX):] if text.startswith(PREFIX) else text).expanduser()


def is_nnunet_folder(path: str | Path) -> bool:
    """True for a folder holding nnU-Net's ``plans.json`` and ``dataset.json`` (a trained model folder)."""
    path = strip_prefix(path)
    return all((path / name).is_file() for name in FOLDER_FILES)


def available_folds(path: Path, checkpoint: str = CHECKPOINT) -> list[str]:
    """Folds of ``path`` with ``fold_<f>/<checkpoint>``: numbers in order, then "all"."""
    found = [p.name[len("fold_"):] for p in path.glob("fold_*") if (p / checkpoint).is_file()]
    return sorted((f for f in found if f.isdigit()), key=int) + (["all"] if "all" in found else [])


def content_digest(path: Path, folds, checkpoint: str) -> str:
    """SHA-256 over plans.json, dataset.json and the used folds' checkpoints of the model folder ``path``:
    the same for a copy anywhere."""
    digest = hashlib.sha256()
    for name in FOLDER_FILES:
        digest.update(f"{name}:{sha256_file(path / name)}\n".encode())
    for fold in folds:
        digest.update(f"fold_{fold}:{sha256_file(path / f'fold_{fold}' / checkpoint)}\n".encode())
    return digest.hexdigest()


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
    for name in ("plans.json", "dataset.json"):  # else nnU-Net's loader fails and the checkpoint is blamed
        try:
            if not isinstance(json.loads((path / name).read_text(encoding="utf-8")), dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LNQError(f"{path / name} cannot be read ({exc}); copy it again from the folder "
                           "nnUNetv2_train wrote") from exc
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
    return NnUNetModel(path, chosen, checkpoint, content_digest(path, chosen, checkpoint))


def default_prediction_key(model: NnUNetModel) -> str:
    """What the figures of ``model``'s masks, predicted with the default settings (:data:`TILE_STEP`,
    :data:`MIRRORING`, :data:`NNUNET_INFERENCE`), are kept under: its content (wherever the folder lies:
    a candidate and its registered copy share it) and those settings."""
    settings = json.dumps([TILE_STEP, MIRRORING, dataclasses.asdict(NNUNET_INFERENCE)], sort_keys=True)
    return hashlib.sha256(f"{model.content}|{settings}".encode()).hexdigest()[:16]
