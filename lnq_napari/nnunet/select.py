"""One factory from a model string to a loaded predictor: ours, or an nnU-Net model folder.

``None`` or a folder with ``config.json``: :class:`~lnq_napari.inference.Predictor`; ``nnunet:<folder>``
or a folder holding nnU-Net's ``plans.json`` and ``dataset.json``: :class:`~lnq_napari.nnunet.backend.
NnUNetPredictor`. Both yield the same :class:`~lnq_napari.inference.Prediction`, so callers (``api``,
the CLI, the widgets, the notebooks) choose a model through this one function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

from lnq_napari.errors import LNQError
from lnq_napari.model.nnunet_folder import PREFIX, is_nnunet_folder, strip_prefix

NNUNET_OPTIONS = ("folds", "checkpoint", "tile_step", "mirroring", "inference")
# post-processing settings (InferenceConfig fields) a model string may set, e.g. ?min_component_mm3=300
_POSTPROCESSING = ("threshold", "min_component_mm3", "min_peak", "max_mean_hu", "mediastinum_margin_mm")
#: The values those settings may take (a threshold of 2 gave an empty mask without a word).
_RANGES = {"threshold": (0.0, 1.0), "min_peak": (0.0, 1.0), "min_component_mm3": (0.0, float("inf")),
           "mediastinum_margin_mm": (0.0, float("inf"))}


@runtime_checkable
class ModelPredictor(Protocol):
    """What a loaded model offers: its folder, version, settings and ``predict``."""

    path: Path
    version: str
    config: object  # ModelConfig: ``config.inference`` drives thresholds, post-processing, suggestions

    def predict(self, ct, progress=None, cancel=None, region: bool = True): ...


def is_nnunet_model(model) -> bool:
    """True for ``nnunet:<folder>[?options]`` or a folder that is an nnU-Net trained model folder."""
    if model is None or hasattr(model, "predict"):
        return False
    return str(model).startswith(PREFIX) or is_nnunet_folder(model)


def parse_model(model) -> tuple[Path, dict]:
    """The folder and options of ``nnunet:<folder>[?folds=0,1&tile_step=0.5&mirroring=off&checkpoint=...]``
    (and post-processing: ``threshold``, ``min_component_mm3``, ``min_peak``, ``max_mean_hu``,
    ``mediastinum_margin_mm``).

    The options ride in the model string, so every place that takes a model (CLI ``--model``, the
    Segment widget's model field, a workspace) can set them.
    """
    text = str(model)
    body, _, query = text.partition("?") if text.startswith(PREFIX) else (text, "", "")
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "folds":
            options["folds"] = [f.strip() for f in value.split(",") if f.strip()]
        elif key == "tile_step":
            try:
                options["tile_step"] = float(value)
            except ValueError:
                raise LNQError(f"tile_step={value!r} in {text} is not a number "
                               "(nnU-Net's default: 0.5)") from None
        elif key == "mirroring":
            if value.lower() not in ("on", "off", "1", "0", "true", "false"):
                raise LNQError(f"mirroring={value!r} in {text} must be on or off")
            options["mirroring"] = value.lower() in ("on", "1", "true")
        elif key == "checkpoint":
            options["checkpoint"] = value
        elif key in _POSTPROCESSING:
            try:
                number = None if value.lower() in ("", "none", "off") else float(value)
            except ValueError:
                raise LNQError(f"{key}={value!r} in {text} is not a number (or none)") from None
            low, high = _RANGES.get(key, (float("-inf"), float("inf")))
            if number is not None and not low <= number <= high:
                raise LNQError(f"{key}={value} in {text} lies outside {low:g} to {high:g}")
            options.setdefault("inference", {})[key] = number
        else:
            raise LNQError(f"unknown nnU-Net model option {key!r} in {text}; use folds, tile_step, "
                           f"mirroring, checkpoint or {', '.join(_POSTPROCESSING)}")
    if body.startswith(PREFIX) and not body[len(PREFIX):].strip():
        raise LNQError(f"{text} names no folder; give nnunet:<trained model folder> "
                       "(nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<configuration>)")
    return strip_prefix(body), options


def _active_model_of_workspace(model):
    """``model``, or when it names a review workspace, the folder of that workspace's active model."""
    if model is None or not isinstance(model, (str, Path)):
        return model
    from lnq_napari.workspace.cases import META_FILE

    if not (Path(model).expanduser() / META_FILE).is_file():
        return model
    from lnq_napari.workspace import Workspace

    return Workspace.open(Path(model).expanduser()).prediction_model()[0]


def check_model(model=None) -> None:
    """LNQError in one line when ``model`` (as :func:`load_predictor` takes it) names no model: the
    folder's files and an nnU-Net string's options checked, nothing loaded (a window that opens first
    then says nothing about a misspelt ``--model``)."""
    from lnq_napari.model import resolve_model
    from lnq_napari.model.nnunet_folder import CHECKPOINT, open_model

    if model is not None and hasattr(model, "predict"):
        return
    model = _active_model_of_workspace(model)
    if is_nnunet_model(model):
        path, options = parse_model(model)
        open_model(path, options.get("folds"), options.get("checkpoint", CHECKPOINT))
        return
    folder = resolve_model(model)
    if not (folder / "config.json").is_file():
        raise LNQError(f"{folder} holds no config.json: not a model folder; pass a folder written by "
                       "`lnq-napari train` (or nnunet:<folder> for an nnU-Net model)")


def load_predictor(model=None, device: str = "auto", **nnunet_options) -> ModelPredictor:
    """A loaded predictor for ``model`` (a loaded predictor is returned as it is).

    ``nnunet_options`` (``folds``, ``checkpoint``, ``tile_step``, ``mirroring``, ``inference``) go to
    :class:`~lnq_napari.nnunet.backend.NnUNetPredictor`; giving them for one of our models is an error.
    """
    if model is not None and hasattr(model, "predict"):
        return model
    model = _active_model_of_workspace(model)
    unknown = sorted(set(nnunet_options) - set(NNUNET_OPTIONS))
    if unknown:
        raise TypeError(f"unknown predictor option(s) {', '.join(unknown)}")
    if is_nnunet_model(model):
        from lnq_napari.nnunet.backend import NnUNetPredictor

        path, options = parse_model(model)
        return NnUNetPredictor(path, device=device, **{**options, **nnunet_options})
    given = {k: v for k, v in nnunet_options.items() if v is not None}
    if given:
        raise LNQError(f"{', '.join(sorted(given))} apply to nnU-Net models only; "
                       "give --model nnunet:<folder>")
    from lnq_napari.inference import Predictor

    return Predictor(model, device=device)
