"""Model folders: ``weights.safetensors`` + ``config.json`` (a :class:`ModelConfig`), saved and loaded.

Loading never unpickles: the network is built from a known architecture name and the weights are read
with safetensors after their sha256 is checked against the one recorded in ``config.json``; weights that
do not fit the configured architecture are refused. Other files in the folder are never read: they are
named in a warning rather than refused, because ``train`` keeps its log and resume state beside the
model and users keep notes there, and refusing them would make nothing safer.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write, atomic_write_text
from lnq_napari.io.checksum import sha256_file
from lnq_napari.io.format_version import check_format_version
from lnq_napari.model.config import ModelConfig
from lnq_napari.model.nnunet_folder import (
    PREFIX,
    NnunetModelSpec,
    is_nnunet_folder,
    model_spec,
    prediction_key,
)

FORMAT = "lnq-napari-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
CHECK_FIGURES = "check_figures.json"  # the model's own figures on the forgetting check's cases
KNOWN_FILES = (WEIGHTS, CONFIG, "train_state", "train_log.csv", CHECK_FIGURES)  # what lnq-napari writes
_SHA256 = re.compile(r"[0-9a-f]{64}")


def save_checkpoint(folder: str | Path, state_dict: dict, config: ModelConfig) -> Path:
    """Write a model folder atomically file by file; returns the folder.

    config.json is ``config.to_dict()`` with the format name, format version and weights' sha256.
    """
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_write(folder / WEIGHTS) as tmp:  # Python writes: a full disk is OSError, not Rust's error
        tmp.write_bytes(save(tensors))
    data = config.to_dict()
    data.update(format=FORMAT, format_version=FORMAT_VERSION, weights_sha256=sha256_file(folder / WEIGHTS))
    atomic_write_text(folder / CONFIG, json.dumps(data, indent=2, default=_json_default) + "\n")
    return folder


def _json_default(value):
    try:
        return value.tolist()
    except AttributeError:
        return str(value)


def figures_key(folder: str | Path | NnunetModelSpec) -> str | None:
    """What figures of a model's masks are kept under: its weights and inference settings, hashed (an
    nnU-Net model folder, ``nnunet:<folder>?<options>`` or its spec: the content of the checkpoints used
    and the prediction settings, :func:`~lnq_napari.model.nnunet_folder.prediction_key`); None for
    anything else (a folder that is not there, moved or deleted, among them)."""
    if isinstance(folder, NnunetModelSpec) or str(folder).startswith(PREFIX) or is_nnunet_folder(folder):
        try:
            return prediction_key(model_spec(folder)) if is_nnunet_folder(folder) else None
        except LNQError:
            return None
    try:
        config = read_config(folder)
    except LNQError:
        return None
    inference = json.dumps(config.to_dict().get("inference"), sort_keys=True)
    return hashlib.sha256(f"{config.weights_sha256}|{inference}".encode()).hexdigest()[:16]


def read_config(folder: str | Path) -> ModelConfig:
    """The checked ``config.json`` of a model folder (raises LNQError for anything not a model of ours)."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise LNQError(f"model folder {folder} does not exist; give a folder written by `lnq-napari train`")
    cfg_path = folder / CONFIG
    if not cfg_path.is_file():
        raise LNQError(f"{cfg_path} is missing; {folder} is not an lnq-napari model folder")
    try:
        config = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LNQError(f"{cfg_path} is not valid JSON ({exc}); re-copy the model folder") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise LNQError(f"{cfg_path} is not an lnq-napari model config (format is not {FORMAT!r}); "
                       "use a model folder written by lnq-napari")
    check_format_version(config.get("format_version", 1), cfg_path, "model", FORMAT_VERSION,
                         "re-copy or re-export the model, or correct the value")  # none: the first
    for key in ("architecture", "preprocessing", "weights_sha256"):
        if key not in config:
            raise LNQError(f"{cfg_path} lacks {key!r}; re-export the model")
    if not isinstance(config["preprocessing"], dict):
        raise LNQError(f"{cfg_path} has preprocessing settings that are not a JSON object; re-export it")
    if not isinstance(config["architecture"], dict) or "name" not in config["architecture"]:
        raise LNQError(f"{cfg_path} has no architecture name; re-export the model")
    if not isinstance(config["weights_sha256"], str) or not _SHA256.fullmatch(config["weights_sha256"]):
        raise LNQError(f"{cfg_path} records no valid weights sha256 (64 hex digits); re-export the model")
    try:
        return ModelConfig.from_dict(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise LNQError(f"{cfg_path} has settings of the wrong kind ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); re-export the model") from exc


def unexpected_files(folder: str | Path) -> list[str]:
    """Names in a model folder that lnq-napari neither reads nor writes (hidden temp files excluded)."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name not in KNOWN_FILES and not p.name.startswith("."))


def load_state(folder: str | Path) -> tuple[dict, ModelConfig]:
    """``(state_dict, config)`` of a model folder after checking the weights' hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    config = read_config(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise LNQError(f"{weights} is missing; re-copy the model folder")
    if sha256_file(weights) != config.weights_sha256:
        raise LNQError(f"{weights} does not match the sha256 recorded in config.json (truncated or altered); "
                       "re-copy the model folder")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LNQError(f"{weights} is not a readable safetensors file ({str(exc).splitlines()[0][:120]}); "
                       "re-copy the model folder") from exc
    if not state:
        raise LNQError(f"{weights} holds no tensors; re-copy the model folder")
    extra = unexpected_files(folder)
    if extra:
        warnings.warn(f"model folder {folder} also holds {', '.join(extra[:5])}"
                      f"{' ...' if len(extra) > 5 else ''}; only {CONFIG} and {WEIGHTS} are read",
                      UserWarning, stacklevel=2)
    return state, config


def load_checkpoint(folder: str | Path, device: str = "cpu") -> tuple[object, ModelConfig]:
    """``(network, config)``: the network built from its architecture name, weights loaded, eval mode."""
    from lnq_napari.model.network import build_network  # torch

    state, config = load_state(folder)
    arch = config.architecture
    net = build_network(arch.name, arch.kwargs)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0]
        raise LNQError(f"weights in {folder} do not fit architecture {arch.name!r} ({first}); "
                       "re-export the model") from exc
    return net.to(device).eval(), config
