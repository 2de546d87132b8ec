"""Prediction: a :class:`Predictor` keeps a model loaded and turns a CT into node probabilities and a mask.

CT -> orient, ROI crop, resample to the model spacing, normalise -> sliding window with Gaussian
blending -> probabilities back on the CT's exact grid -> threshold -> small, bright components removed,
and (when the model's ``mediastinum_margin_mm`` is set) components outside the mediastinum region.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lnq_napari.components import label_components, too_bright
from lnq_napari.device import resolve_device
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.model import resolve_model
from lnq_napari.model.checkpoint import load_checkpoint
from lnq_napari.model.config import InferenceConfig, ModelConfig
from lnq_napari.per_ct import ct_key, prepared_ct, region_of
from lnq_napari.preprocess import Prepared, grid_image, pad_value, to_ct_grid


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


#: Voxels per slab of slices when probabilities are resampled onto the CT grid and post-processed: the
#: memory beyond the outputs stays about a slab (64 MB of float32) whatever the CT's size.
SLAB_VOXELS = 1 << 24


def slabs(nz: int, plane: int, voxels: int = SLAB_VOXELS) -> list[tuple[int, int]]:
    """``(z0, z1)`` ranges covering ``nz`` slices of ``plane`` voxels each, about ``voxels`` per range."""
    step = max(1, voxels // max(plane, 1))
    return [(z0, min(nz, z0 + step)) for z0 in range(0, nz, step)]


def probabilities_on_ct(prob: np.ndarray, prepared, ct: Volume, voxels: int = SLAB_VOXELS) -> np.ndarray:
    """``prob`` (on ``prepared.grid``) resampled linearly onto ``ct``'s exact grid and clipped to 0..1
    (float32; zero outside the ROI), one slab of slices at a time (:func:`~lnq_napari.preprocess.to_ct_grid`
    on each), so the memory beyond the output is about a slab."""
    out = np.empty(ct.shape, dtype=np.float32)
    source = grid_image(prob, prepared)  # once, not per slab
    for z0, z1 in slabs(ct.shape[0], ct.shape[1] * ct.shape[2], voxels):
        origin = ct.index_to_physical(np.array([[z0, 0.0, 0.0]]))[0]
        slab = Volume(ct.array[z0:z1], ct.spacing, tuple(origin), ct.direction)
        out[z0:z1] = to_ct_grid(source, prepared, slab, linear=True)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def postprocess(prob: np.ndarray, spacing_zyx, threshold: float, min_component_mm3: float,
                hu: np.ndarray | None = None, max_mean_hu: float | None = None,
                region: np.ndarray | None = None, min_peak: float = 0.0,
                voxels: int = SLAB_VOXELS) -> np.ndarray:
    """Threshold ``prob``; drop 26-connected components smaller than ``min_component_mm3``; those whose
    peak probability stays below ``min_peak`` (no confident core: hysteresis thresholding); given the
    CT's ``hu``, components too bright to be nodes (mean and median HU above ``max_mean_hu``: bone,
    enhanced vessels; :func:`~lnq_napari.components.too_bright`);
    given a bool ``region``, components with most of their voxels outside it.

    Per-component sums run over slabs of about ``voxels`` voxels (exact integer sums, so the result does
    not depend on it): beyond the mask and its component ids, memory stays about a slab."""
    mask = prob >= threshold
    use_hu = hu is not None and max_mean_hu is not None
    use_peak = min_peak > threshold
    if (min_component_mm3 <= 0 and not use_hu and region is None and not use_peak) or not mask.any():
        return mask.view(np.uint8)
    box = []
    for axes in ((1, 2), (0, 2), (0, 1)):
        idx = np.nonzero(mask.any(axis=axes))[0]
        box.append(slice(int(idx.min()), int(idx.max()) + 1))
    box = tuple(box)
    lab, n = label_components(mask[box])
    del mask
    counts = np.zeros(n + 1, dtype=np.int64)
    hu_sums = np.zeros(n + 1, dtype=np.float64)
    inside = np.zeros(n + 1, dtype=np.int64)
    cores = np.zeros(n + 1, dtype=np.int64)
    parts = slabs(lab.shape[0], lab.shape[1] * lab.shape[2], voxels)
    for z0, z1 in parts:
        ids = lab[z0:z1].ravel()
        counts += np.bincount(ids, minlength=n + 1)
        if use_hu:  # int16 HU summed in float64: exact, whatever the slab size
            hu_sums += np.bincount(ids, weights=hu[box][z0:z1].ravel(), minlength=n + 1)
        if region is not None:
            inside += np.bincount(ids, weights=region[box][z0:z1].ravel(), minlength=n + 1).astype(np.int64)
        if use_peak:  # voxels at or above min_peak lie inside the mask (min_peak > threshold)
            cores += np.bincount(ids[prob[box][z0:z1].ravel() >= min_peak], minlength=n + 1)
    keep = counts * float(np.prod(spacing_zyx)) >= min_component_mm3
    if use_hu:  # the mean rules out most at once; the few brighter ones are checked whole (too_bright)
        brighter = np.nonzero(keep & (hu_sums / np.maximum(counts, 1) > max_mean_hu))[0]
        boxes = ndimage.find_objects(lab) if brighter.size else []
        for k in brighter[brighter > 0]:
            sub = boxes[k - 1]
            keep[k] = not too_bright(hu[box][sub][lab[sub] == k], max_mean_hu)
    if region is not None:
        keep &= inside >= 0.5 * counts
    if use_peak:
        keep &= cores > 0
    keep[0] = False
    keep = keep.astype(np.uint8)
    out = np.zeros(prob.shape, dtype=np.uint8)
    target = out[box]
    for z0, z1 in parts:
        target[z0:z1] = keep[lab[z0:z1]]
    return out


def postprocess_as(inf: InferenceConfig, prob: np.ndarray, ct: Volume,
                   region: np.ndarray | None = None) -> np.ndarray:
    """:func:`postprocess` with a model's settings (threshold, size and peak floors, HU limit) on ``ct``."""
    return postprocess(prob, ct.spacing_zyx, float(inf.threshold), float(inf.min_component_mm3),
                       hu=ct.array, max_mean_hu=inf.max_mean_hu, region=region, min_peak=float(inf.min_peak))


#: Windows that go through the network together at least. With one small window torch's CPU convolution
#: takes its slow native kernel for the deep levels (batch x channels x depth x height <= 20480: 29 ms
#: where oneDNN takes 6); two at a time take oneDNN's: 1.5x the windows per second on 2 cores, 1.2x on
#: one (``benchmarks/bench_predict.py --batches 1,2``).
MIN_BATCH = 2


class Predictor:
    """A loaded model ready to predict; reuse it for many CTs.

    ``model``: a model folder, or None for the bundled model. ``device``: "auto", "cpu" or "cuda".
    Settings missing from the model's config.json take the defaults of :class:`ModelConfig`.

    When the GPU runs out of memory during a prediction, the windows go through the network in smaller
    batches, then (one window at a time still too much) the model moves to the CPU for this and later
    predictions; each step warns (:class:`RuntimeWarning`). Running out of memory on the CPU is an
    :class:`~lnq_napari.errors.LNQError`, never a crash.
    """

    def __init__(self, model: str | Path | None = None, device: str = "auto") -> None:
        self.path = resolve_model(model)
        self.device = resolve_device(device)
        self.network, config = load_checkpoint(self.path, device=str(self.device))
        self.config: ModelConfig = config
        self.version: str = config.version or "unknown"
        self.max_batch: int = max(MIN_BATCH, int(config.inference.sw_batch_size))  # halved on out-of-memory

    def predict(self, ct: Volume, progress: Callable[[float, str], None] | None = None,
                cancel: Callable[[], bool] | None = None, region: bool = True,
                prepared: Prepared | None = None) -> Prediction:
        """Probabilities and mask on ``ct``'s exact grid. ``region=False`` leaves out the mediastinum
        region for this call even when the model's ``mediastinum_margin_mm`` sets one. ``prepared``:
        ``ct`` already through :func:`~lnq_napari.preprocess.prepare` with this model's preprocessing."""
        try:
            return self._predict(ct, progress, cancel, region, prepared)
        except MemoryError as exc:
            raise out_of_memory(ct) from exc
        except RuntimeError as exc:
            if not is_cpu_out_of_memory(exc):
                raise
            raise out_of_memory(ct) from exc

    def _predict(self, ct: Volume, progress, cancel, region: bool, prepared: Prepared | None) -> Prediction:
        import torch

        inf = self.config.inference
        prep_cfg = self.config.preprocessing
        if progress:
            progress(0.0, "preprocessing")
        key = ct_key(ct)
        if prepared is None:
            prepared = prepared_ct(ct, prep_cfg, key)
        region_mask = None  # before the probabilities exist: its working memory does not add to theirs
        if region and inf.mediastinum_margin_mm is not None:
            region_mask = region_of(ct, float(inf.mediastinum_margin_mm), key)

        def run(batch: np.ndarray, done: int, total: int) -> np.ndarray:
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            out = self.windows(batch)
            if progress:
                progress(0.05 + 0.85 * done / max(total, 1), f"window {done}/{total}")
            return out

        with torch.inference_mode():
            prob = sliding_window(prepared.image, inf.patch_size, float(inf.overlap), run,
                                  pad_value(prep_cfg), self.max_batch)
        if progress:
            progress(0.9, "resampling to the CT grid")
        prob_ct = probabilities_on_ct(prob, prepared, ct)
        del prepared, prob
        mask = postprocess_as(inf, prob_ct, ct, region_mask)
        if progress:
            progress(1.0, "done")
        meta = {"model_version": self.version}
        return Prediction(ct.with_array(prob_ct, **meta), ct.with_array(mask, **meta), self.version,
                          region_mask)

    def windows(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (B, 1, *roi) of a batch of windows (B, 1, *roi), at most :attr:`max_batch` at a
        time; a device out of memory halves :attr:`max_batch`, then moves the model to the CPU."""
        parts = [batch[i : i + self.max_batch] for i in range(0, len(batch), self.max_batch)]
        out = []
        for part in parts:
            try:
                out.append(self._forward(part))
            except oom_errors() as exc:
                self._recover(exc, len(part))
                out.append(self.windows(part))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        cuda = self.device.type == "cuda"
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if cuda:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=amp_dtype):
                logits = self.network(x)
        else:
            logits = self.network(x)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def _recover(self, exc: BaseException, batch: int) -> None:
        """After an out-of-memory on ``batch`` windows: fewer windows at once, else the CPU."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if batch > 1:
            self.max_batch = max(1, batch // 2)
            warnings.warn(f"{self.device} ran out of memory with {batch} windows at once; predicting "
                          f"{self.max_batch} at a time", RuntimeWarning, stacklevel=3)
            return
        if self.device.type == "cpu":
            raise LNQError("out of memory running the model on the CPU; close other programs and "
                           "try again") from exc
        warnings.warn(f"{self.device} ran out of memory with one window; predicting on the CPU from now "
                      f"on (slower). Free GPU memory and reload the model to use the GPU again",
                      RuntimeWarning, stacklevel=3)
        self.device = torch.device("cpu")
        self.network.to(self.device)


def oom_errors() -> tuple[type[BaseException], ...]:
    """The exception types torch raises when a device runs out of memory."""
    import torch

    found = {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)}
    return tuple(t for t in found if t is not None)


def is_cpu_out_of_memory(exc: RuntimeError) -> bool:
    """True for torch's CPU allocator failing (a plain RuntimeError)."""
    return "DefaultCPUAllocator" in str(exc) and "allocate" in str(exc)


def out_of_memory(ct: Volume) -> LNQError:
    """The one-line error for a prediction that ran out of (CPU) memory."""
    gb = ct.array.size * 4 / 1024**3
    return LNQError(f"out of memory predicting a {'x'.join(map(str, ct.size_xyz))} CT (its probabilities "
                    f"alone take {gb:.1f} GB); close other programs, or crop the CT, and try again")
