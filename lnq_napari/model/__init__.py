"""The segmentation model: network, checkpoint folders, and where models are found."""

from __future__ import annotations

from pathlib import Path

from lnq_napari.errors import LNQError


def bundled_model_path() -> Path:
    """The folder of the model shipped with lnq-napari."""
    return Path(__file__).resolve().parent / "bundled"


def resolve_model(model: str | Path | None = None) -> Path:
    """The model folder to use: ``None`` -> the bundled model; a path must exist."""
    if model is None or str(model) == "":
        path = bundled_model_path()
        if not (path / "config.json").is_file():
            raise LNQError(f"the bundled model is missing from {path}; reinstall lnq-napari or pass --model")
        return path
    path = Path(model).expanduser()
    if path.is_file() and path.name in ("config.json", "weights.safetensors"):
        path = path.parent
    if not path.exists():
        raise LNQError(f"model folder {path} does not exist; pass a folder written by `lnq-napari train` "
                       "(or nnunet:<folder> for an nnU-Net model)")
    if not path.is_dir():
        raise LNQError(f"model {path} is not a folder; "
                       "pass the folder holding config.json and weights.safetensors")
    return path
