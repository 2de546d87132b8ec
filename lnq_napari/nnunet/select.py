"""One factory from a model string to a loaded predictor: ours, or an nnU-Net model folder.

``None`` or a folder with ``config.json``: :class:`~lnq_napari.inference.Predictor`; ``nnunet:<folder>``
or a folder holding nnU-Net's ``plans.json`` and ``dataset.json``: :class:`~lnq_napari.nnunet.backend.
NnUNetPredictor`. Both yield the same :class:`~lnq_napari.inference.Prediction`, so callers (``api``,
the CLI, the widgets, the notebooks) choose a model through this one function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from lnq_napari.errors import LNQError, kind_of
from lnq_napari.model.nnunet_folder import PREFIX, NnunetModelSpec, is_nnunet_folder, model_spec

NNUNET_OPTIONS = ("folds", "checkpoint", "tile_step", "mirroring", "inference")


@runtime_checkable
class ModelPredictor(Protocol):
    """What a loaded model offers: its folder, version, settings and ``predict``."""

    path: Path
    version: str
    config: object  # ModelConfig: ``config.inference`` drives thresholds, post-processing, suggestions

    def predict(self, ct, progress=None, cancel=None, region: bool = True): ...


def is_nnunet_model(model) -> bool:
    """True for an :class:`~lnq_napari.model.nnunet_folder.NnunetModelSpec`, ``nnunet:<folder>[?options]``
    (:func:`~lnq_napari.model.nnunet_folder.parse_model_string`) or a folder that is an nnU-Net trained
    model folder."""
    if model is None or hasattr(model, "predict"):
        return False
    return isinstance(model, NnunetModelSpec) or str(model).startswith(PREFIX) or is_nnunet_folder(model)


def _active_model_of_workspace(model):
    """``model``, or when it names a review workspace, that workspace's active model (our model's folder,
    an nnU-Net version's :class:`~lnq_napari.model.nnunet_folder.NnunetModelSpec`); an open workspace's
    too, and a :class:`~lnq_napari.workspace.registry.ModelSummary` (an entry of ``api.list_models``) as
    the model it names. LNQError for anything else (an int reached pathlib's TypeError)."""
    from lnq_napari.workspace import Workspace
    from lnq_napari.workspace.registry import ModelSummary

    if isinstance(model, Workspace):
        return model.prediction_model()[0]
    if isinstance(model, ModelSummary):
        return model.model
    if model is None or isinstance(model, NnunetModelSpec):
        return model
    if not isinstance(model, (str, Path)):
        raise LNQError(f"model must be a model folder, nnunet:<folder>, a workspace, an entry of "
                       f"api.list_models() or a loaded predictor (got {kind_of(model)})")
    from lnq_napari.workspace.cases import is_workspace

    if not is_workspace(Path(model).expanduser()):
        return model
    return Workspace.open(Path(model).expanduser()).prediction_model()[0]


def model_version_of(model) -> str:
    """The version a predictor of ``model`` (a folder, ``nnunet:<folder>`` or its spec) stamps on what it
    predicts, read without loading the weights."""
    if is_nnunet_model(model):
        return model_spec(model).open().version
    from lnq_napari.model import resolve_model
    from lnq_napari.model.checkpoint import read_config

    return read_config(resolve_model(model)).version or "unknown"  # as Predictor names it


def check_model(model=None) -> None:
    """LNQError in one line when ``model`` (as :func:`load_predictor` takes it) names no model: the
    folder's files and an nnU-Net string's options checked, nothing loaded (a window that opens first
    then says nothing about a misspelt ``--model``)."""
    from lnq_napari.model import resolve_model

    if model is not None and hasattr(model, "predict"):
        return
    model = _active_model_of_workspace(model)
    if is_nnunet_model(model):
        model_spec(model).open()
        return
    folder = resolve_model(model)
    if not (folder / "config.json").is_file():
        raise LNQError(f"{folder} holds no config.json: not a model folder; pass a folder written by "
                       "`lnq-napari train` (or nnunet:<folder> for an nnU-Net model)")


def load_predictor(model=None, device: str = "auto", **nnunet_options) -> ModelPredictor:
    """A loaded predictor for ``model``: a folder, a model string, an
    :class:`~lnq_napari.model.nnunet_folder.NnunetModelSpec`, a workspace (its active model), an entry of
    ``api.list_models`` (the version it names), or a loaded predictor (returned as it is).

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

        spec = model_spec(model)
        return NnUNetPredictor(spec.folder, device=device, **{**spec.options.kwargs(), **nnunet_options})
    given = {k: v for k, v in nnunet_options.items() if v is not None}
    if given:
        raise LNQError(f"{', '.join(sorted(given))} apply to nnU-Net models only; "
                       "give --model nnunet:<folder>")
    from lnq_napari.inference import Predictor

    return Predictor(model, device=device)
