"""Prediction: a :class:`Predictor` keeps a model loaded and turns a CT into node probabilities and a mask.

CT -> orient, ROI crop, resample to the model spacing, normalise -> sliding window with Gaussian
blending -> probabilities back on the CT's exact grid -> threshold -> small, bright components removed,
and (when the model's ``mediastinum_margin_mm`` is set) components outside the mediastinum region.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.components import label_components
from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled
from lnq_napari.io.volume import Volume
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import load_checkpoint
from lnq_napari.model.config import ModelConfig
from lnq_napari.preprocess import mediastinum_region, pad_value, prepare, to_ct_grid


@dataclass
class Prediction:
    """Node probabilities (float32 0..1) and the post-processed mask (uint8 {0, 1}), both on the CT grid."""

    probabilities: Volume
    mask: Volume
    model_version: str
    region: np.ndarray | None = None  # bool on the CT grid: the mediastinum region applied (None: none)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Evenly spread window starts covering ``size`` with windows of ``roi`` overlapping by >= ``overlap``."""
    if size <= roi:
        return [0]
    n = math.ceil((size - roi) / max(roi * (1.0 - overlap), 1.0)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - roi, n)})


def gaussian_weights(roi, sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights: a separable Gaussian peaking at the window centre (floor 1e-3 at the border)."""
    w = np.ones((), dtype=np.float32)
    for r in roi:
        x = np.arange(r, dtype=np.float32) - (r - 1) / 2.0
        g = np.exp(-0.5 * (x / max(r * sigma_scale, 1e-3)) ** 2)
        w = np.multiply.outer(w, g / g.max())
    return np.maximum(w, 1e-3).astype(np.float32)


def sliding_window(image: np.ndarray, roi, overlap: float, run: Callable, pad: float,
                   batch_size: int = 1) -> np.ndarray:
    """Gaussian-blended sliding-window prediction of a (z, y, x) array; ``run`` maps (B, 1, *roi) windows
    (numpy float32) to (B, 1, *roi) probabilities. Stitching happens on the CPU in numpy."""
    roi = [int(r) for r in roi]
    before = [max(0, r - n) // 2 for n, r in zip(image.shape, roi)]
    padded = np.pad(image, [(b, max(0, r - n) - b) for b, n, r in zip(before, image.shape, roi)],
                    constant_values=pad)
    starts = [window_starts(n, r, overlap) for n, r in zip(padded.shape, roi)]
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    weights = gaussian_weights(roi)
    acc = np.zeros(padded.shape, dtype=np.float32)
    norm = np.zeros(padded.shape, dtype=np.float32)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i : i + batch_size]
        batch = np.stack([padded[z : z + roi[0], y : y + roi[1], x : x + roi[2]] for z, y, x in chunk])
        probs = run(batch[:, None], i + len(chunk), len(corners))
        for (z, y, x), p in zip(chunk, probs):
            sl = (slice(z, z + roi[0]), slice(y, y + roi[1]), slice(x, x + roi[2]))
            acc[sl] += p[0] * weights
            norm[sl] += weights
    out = acc / np.maximum(norm, 1e-6)
    return out[tuple(slice(b, b + n) for b, n in zip(before, image.shape))]


def postprocess(prob: np.ndarray, spacing_zyx, threshold: float, min_component_mm3: float,
                hu: np.ndarray | None = None, max_mean_hu: float | None = None,
                region: np.ndarray | None = None) -> np.ndarray:
    """Threshold ``prob``; drop 26-connected components smaller than ``min_component_mm3``; given the
    CT's ``hu``, components whose mean HU is above ``max_mean_hu`` (bone, enhanced vessels, not nodes);
    given a bool ``region``, components with most of their voxels outside it."""
    mask = prob >= threshold
    use_hu = hu is not None and max_mean_hu is not None
    if (min_component_mm3 <= 0 and not use_hu and region is None) or not mask.any():
        return mask.astype(np.uint8)
    box = []
    for axes in ((1, 2), (0, 2), (0, 1)):
        idx = np.nonzero(mask.any(axis=axes))[0]
        box.append(slice(int(idx.min()), int(idx.max()) + 1))
    box = tuple(box)
    sub = mask[box]
    lab, n = label_components(sub)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    keep = counts * float(np.prod(spacing_zyx)) >= min_component_mm3
    if use_hu:
        sums = np.bincount(lab.ravel(), weights=hu[box].astype(np.float64).ravel(), minlength=n + 1)
        keep &= sums / np.maximum(counts, 1) <= max_mean_hu
    if region is not None:
        inside = np.bincount(lab.ravel(), weights=region[box].ravel().astype(np.float64), minlength=n + 1)
        keep &= inside >= 0.5 * counts
    keep[0] = False
    out = np.zeros(mask.shape, dtype=np.uint8)
    out[box] = keep[lab].astype(np.uint8)
    return out


class Predictor:
    """A loaded model ready to predict; reuse it for many CTs.

    ``model``: a model folder, or None for the bundled model. ``device``: "auto", "cpu" or "cuda".
    Settings missing from the model's config.json take the defaults of :class:`ModelConfig`.
    """

    def __init__(self, model: str | Path | None = None, device: str = "auto") -> None:
        self.path = resolve_model(model)
        self.device = resolve_device(device)
        self.network, config = load_checkpoint(self.path, device=str(self.device))
        self.config: ModelConfig = config
        self.version: str = config.version or "unknown"

    def predict(self, ct: Volume, progress: Callable[[float, str], None] | None = None,
                cancel: Callable[[], bool] | None = None, region: bool = True) -> Prediction:
        """Probabilities and mask on ``ct``'s exact grid. ``region=False`` leaves out the mediastinum
        region for this call even when the model's ``mediastinum_margin_mm`` sets one."""
        import torch

        inf = self.config.inference
        prep_cfg = self.config.preprocessing
        if progress:
            progress(0.0, "preprocessing")
        prepared = prepare(ct, prep_cfg)
        cuda = self.device.type == "cuda"
        amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16

        def run(batch: np.ndarray, done: int, total: int) -> np.ndarray:
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            x = torch.from_numpy(batch).to(self.device)
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=cuda):
                out = torch.sigmoid(self.network(x).float())
            if progress:
                progress(0.05 + 0.85 * done / max(total, 1), f"window {done}/{total}")
            return out.cpu().numpy()

        with torch.inference_mode():
            prob = sliding_window(prepared.image, inf.patch_size, float(inf.overlap), run,
                                  pad_value(prep_cfg), int(inf.sw_batch_size))
        if progress:
            progress(0.9, "resampling to the CT grid")
        prob_ct = np.clip(to_ct_grid(prob, prepared, ct, linear=True), 0.0, 1.0).astype(np.float32)
        region_mask = None
        if region and inf.mediastinum_margin_mm is not None:
            region_mask = mediastinum_region(ct, float(inf.mediastinum_margin_mm))
        mask = postprocess(prob_ct, ct.spacing_zyx, float(inf.threshold), float(inf.min_component_mm3),
                           hu=ct.array, max_mean_hu=inf.max_mean_hu, region=region_mask)
        if progress:
            progress(1.0, "done")
        meta = {"model_version": self.version}
        return Prediction(ct.with_array(prob_ct, **meta), ct.with_array(mask, **meta), self.version,
                          region_mask)
