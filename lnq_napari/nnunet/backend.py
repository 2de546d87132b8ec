"""A trained nnU-Net v2 model as a predictor: the same :class:`~lnq_napari.inference.Prediction` as ours.

nnU-Net's own ``nnUNetPredictor`` does the preprocessing (its plans' spacing and CT normalisation),
the sliding window (tile step, Gaussian blending, mirroring, fold ensemble) and the way back to the CT
grid; the lymph-node probability (the outputs dataset.json's labels name, summed where nodes are split
by station: :mod:`~lnq_napari.model.nnunet_labels`) then goes through our post-processing, so
suggestions, the node table and workspace ranking work unchanged. The CT array is given in the order
the reader returns it, which is the order nnU-Net's SimpleITKIO (and NibabelIO) reads from an exported
dataset; a model trained with a reorienting reader (NibabelIOWithReorient, SimpleITKIOWithReorient)
gets it turned to RAS as that reader turns it (:mod:`~lnq_napari.nnunet.orient`).
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.inference import Prediction, postprocess_as
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import ModelConfig
from lnq_napari.model.nnunet_folder import NnunetOptions, open_model
from lnq_napari.model.nnunet_labels import argmax_decides, cascade_error, check_usable
from lnq_napari.nnunet.deps import require_nnunet
from lnq_napari.nnunet.orient import NIBABEL_REORIENT, SITK_REORIENT, Reorientation, reorienting_reader
from lnq_napari.per_ct import region_of


def _tracked_predictor_class():
    """nnUNetPredictor that calls ``self.tick()`` before each tile (progress and Cancel)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class TrackedPredictor(nnUNetPredictor):
        tick: Callable[[], None] | None = None
        tiles: int = 0

        def _internal_get_sliding_window_slicers(self, image_size):
            slicers = super()._internal_get_sliding_window_slicers(image_size)
            self.tiles = len(slicers)
            return slicers

        def _internal_maybe_mirror_and_predict(self, x):
            if self.tick is not None:
                self.tick()
            return super()._internal_maybe_mirror_and_predict(x)

    return TrackedPredictor


#: A NIfTI this model's reorienting reader places otherwise than lnq-napari reads it (``Volume.meta`` key
#: the reader sets), and the warning given when such a CT reaches such a model.
NIFTI_PLACED_OTHERWISE = {
    (NIBABEL_REORIENT, "nifti_unplaced"):
        "the CT's NIfTI file sets neither a qform nor an sform: lnq-napari reads its axes as stored, nibabel "
        "(this model's NibabelIOWithReorient reader) mirrored in x, so the model may see it mirrored against "
        "nnUNetv2_predict; set the file's qform or sform",
    (SITK_REORIENT, "nifti_sform_over_qform"):
        "the CT's NIfTI file has an sform and a qform of other axes: lnq-napari reads it by the sform, "
        "SimpleITK (this model's SimpleITKIOWithReorient reader) by the qform, so the model may see it "
        "turned otherwise than nnUNetv2_predict; make the file's qform and sform agree",
}


class NnUNetPredictor:
    """A loaded nnU-Net model folder; reuse it for many CTs (the interface of ``inference.Predictor``).

    ``folds``: None (every fold with ``checkpoint``, each fold's checkpoint file; default
    ``checkpoint_final.pth``) or the folds to ensemble. ``tile_step``: nnU-Net's tile step size (0.5 its
    default; larger is faster). ``mirroring``: test-time mirroring along the axes the model allows
    (nnU-Net's default on; off is up to 8x faster). ``inference``: overrides of the post-processing
    (:class:`InferenceConfig` fields; default :data:`NNUNET_INFERENCE`). Settings not given (None) are
    :meth:`~lnq_napari.model.nnunet_folder.NnunetOptions.predicting`'s.
    """

    def __init__(self, model: str | Path, device: str = "auto", folds=None, checkpoint: str | None = None,
                 tile_step: float | None = None, mirroring: bool | None = None,
                 inference: dict | None = None) -> None:
        options = NnunetOptions(checkpoint=checkpoint, tile_step=tile_step, mirroring=mirroring,
                                inference=dict(inference or {}))
        try:
            tile_step, mirroring, inf = options.predicting()  # nnU-Net's defaults for those not given
        except TypeError as exc:
            raise LNQError(f"unknown inference setting ({exc}); use fields of InferenceConfig") from exc
        if not 0.0 < float(tile_step) <= 1.0:
            raise LNQError(f"tile step {tile_step} must be in (0, 1]; nnU-Net's default is 0.5")
        self.model = open_model(model, folds, options.checkpoint_file)
        require_nnunet("an nnU-Net model")
        self.path = self.model.path
        self.version: str = self.model.version
        self.device = resolve_device(device)
        self.config = ModelConfig(inference=inf, version=self.version)
        # before loading: a CT + PET network or a cascade's second stage fails deep inside otherwise; the
        # lymph node's output channels (several: a node label per station), as nnU-Net lays the outputs out
        self.outputs = check_usable(self.path)
        dataset = json.loads((self.path / "dataset.json").read_text(encoding="utf-8"))
        self._reader = reorienting_reader(dataset)  # None: the model reads the CT's own voxel order
        self._argmax = options.argmax and argmax_decides(dataset.get("labels"))
        cls = _tracked_predictor_class()
        cuda = self.device.type == "cuda"
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints that CPU runs keep data on the CPU
            self._nnunet = cls(tile_step_size=float(tile_step), use_gaussian=True,
                               use_mirroring=bool(mirroring), perform_everything_on_device=cuda,
                               device=self.device, verbose=False, verbose_preprocessing=False,
                               allow_tqdm=False)
        try:
            self._nnunet.initialize_from_trained_model_folder(
                str(self.path), use_folds=[f if f == "all" else int(f) for f in self.model.folds],
                checkpoint_name=self.model.checkpoint)
        # nnU-Net checks dataset.json with assert (an ignore label below another, regions without order)
        except (KeyError, RuntimeError, ValueError, EOFError, OSError, AssertionError,
                pickle.UnpicklingError) as exc:
            why = str(exc).splitlines()[0][:160] if str(exc) else ""
            if "torchvision" in why:  # nnU-Net looked for a trainer class among modules that need it
                raise LNQError(f"cannot load the nnU-Net model {self.path}: nnU-Net imports torchvision to "
                               "find its trainer class, and torchvision does not load beside this torch "
                               f"({why}); install the torchvision build made for your torch") from exc
            if isinstance(exc, AssertionError):
                raise LNQError(f"cannot load the nnU-Net model {self.path} (AssertionError: {why}); its "
                               "dataset.json labels are not as nnU-Net takes them: copy dataset.json again "
                               "from the folder nnUNetv2_train wrote") from exc
            raise LNQError(f"cannot load the nnU-Net model {self.path} ({type(exc).__name__}: {why}); check "
                           "the folder was written by nnUNetv2_train with this nnunetv2 (an empty or damaged "
                           "checkpoint: copy it again)") from exc
        _check_one_stage(self.path, self._nnunet.configuration_manager)

    def predict(self, ct: Volume, progress: Callable[[float, str], None] | None = None,
                cancel: Callable[[], bool] | None = None, region: bool = True) -> Prediction:
        """Probabilities and mask on ``ct``'s exact grid (``region`` as for ``Predictor.predict``)."""
        step = progress or (lambda fraction, message="": None)
        folds = len(self.model.folds)
        done = [0]

        def tick() -> None:
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            done[0] += 1
            total = max(self._nnunet.tiles * folds, 1)
            step(0.05 + 0.85 * min(done[0] / total, 1.0), f"nnU-Net tile {done[0]}/{total}")

        if cancel is not None and cancel():
            raise Cancelled("prediction cancelled")
        step(0.0, "nnU-Net preprocessing")
        image, spacing = np.asarray(ct.array, dtype=np.float32), list(ct.spacing_zyx)
        turn = Reorientation.of(ct, self._reader) if self._reader else None  # trained on images turned to RAS
        if turn is not None:
            image, spacing = turn.forward(image, spacing)
        for (reader, key), why in NIFTI_PLACED_OTHERWISE.items():
            if self._reader == reader and ct.meta.get(key):
                warnings.warn(why, UserWarning, stacklevel=2)
        self._nnunet.tick = tick
        try:
            _, probabilities = self._nnunet.predict_single_npy_array(
                image[None], {"spacing": spacing}, None, None, True)
        finally:
            self._nnunet.tick = None
        step(0.9, "post-processing")
        if turn is not None:
            probabilities = np.stack([turn.back(p) for p in np.asarray(probabilities)])
        prob = np.clip(self.outputs.probability(probabilities), 0.0, 1.0)
        if prob.shape != ct.shape:
            raise LNQError(f"nnU-Net returned shape {prob.shape} for a CT of shape {ct.shape}; check the "
                           "model's plans (transpose) match how it was trained")
        inf = self.config.inference
        region_mask = None
        if region and inf.mediastinum_margin_mm is not None:
            region_mask = region_of(ct, float(inf.mediastinum_margin_mm))
        decision = prob
        if self._argmax:  # no threshold asked (not even 0.5), and argmax gives other nodes than one
            decision = _argmax_decision(self.outputs.argmax_wins(probabilities), prob, float(inf.threshold))
        mask = postprocess_as(inf, decision, ct, region_mask)
        step(1.0, "done")
        meta = {"model_version": self.version}
        return Prediction(ct.with_array(prob, **meta), ct.with_array(mask, **meta), self.version, region_mask)


def _argmax_decision(wins: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """The node probability ``prob`` raised to ``threshold`` where a node label ``wins`` nnU-Net's argmax
    over all outputs and held below it elsewhere: thresholded, nnU-Net's own segmentation of a model of
    more than two labels (a node at 0.45 beside background 0.40 and a vessel 0.15 is nnU-Net's node)."""
    below = np.nextafter(np.float32(threshold), np.float32(0.0))
    return np.where(wins, np.maximum(prob, np.float32(threshold)), np.minimum(prob, below)).astype(np.float32)


def _check_one_stage(folder: Path, configuration) -> None:
    """LNQError when the model is a cascade's second stage (it takes the first stage's segmentation as
    input besides the CT; without it the network fails on its first tile): the configuration its
    checkpoint names, whatever its folder is called."""
    previous = getattr(configuration, "previous_stage_name", None)
    if previous:
        raise cascade_error(folder, previous)
