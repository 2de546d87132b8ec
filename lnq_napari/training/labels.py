"""Label states for learning from partial labels: 1 node, 0 known background, -1 unknown.

A training case annotates only some of its nodes, so "not annotated" is not "background". Background
is only what the CT itself rules out: air and lungs, fat, bone and contrast (HU outside the node range),
the body's outside, everything away from the mediastinum, soft-tissue structures far too big to be a
node (heart, muscle: a morphological opening with a ball wider than the biggest node), and a thin ring
around each annotated node. Everything else is unknown and ignored by the loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lnq_napari.anatomy import coarse_anatomy
from lnq_napari.components import within_mm
from lnq_napari.errors import LNQError
from lnq_napari.io.orientation import from_lps, to_lps
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import StatesConfig

NODE, BACKGROUND, UNKNOWN = 1, 0, -1


def _erode_mm(mask: np.ndarray, radius_mm: float, spacing_zyx) -> np.ndarray:
    from scipy import ndimage

    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(mask, sampling=spacing_zyx) > radius_mm


def _background_array(hu: np.ndarray, spacing_zyx, opts: StatesConfig) -> np.ndarray:
    """Bool: what the CT itself rules out (array in the canonical orientation, axial slices first)."""
    from scipy import ndimage

    sigma = [opts.smooth_mm / s for s in spacing_zyx]
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), sigma=sigma, truncate=2.0)
    background = (smooth < opts.low_hu) | (smooth > opts.high_hu)

    anatomy = coarse_anatomy(hu, spacing_zyx)
    coarse_spacing = tuple(s * st for s, st in zip(spacing_zyx, anatomy.step))
    if anatomy.mediastinum.any():
        near = within_mm(anatomy.mediastinum, coarse_spacing, opts.mediastinum_margin_mm)
        background |= ~anatomy.upsample(near)
    background |= ~anatomy.upsample(anatomy.body)
    if opts.large_radius_mm > 0:
        # solid tissue (soft, bone or contrast) that holds a ball wider than any node: heart, muscle, spine
        sm = smooth[:: anatomy.step[0], :: anatomy.step[1], :: anatomy.step[2]]
        core = _erode_mm(sm >= opts.low_hu, opts.large_radius_mm, coarse_spacing)
        opened = within_mm(core, coarse_spacing, opts.large_radius_mm - opts.large_shrink_mm)
        background |= anatomy.upsample(opened)
    if opts.line_mm > 0:
        # tubes: a straight segment longer than any node fits inside (unenhanced vessels, oesophagus,
        # muscle); segment ends are trimmed by ``line_trim_mm`` where a node may sit on a vessel
        sm = smooth[:: anatomy.step[0], :: anatomy.step[1], :: anatomy.step[2]]
        soft = ((sm >= opts.low_hu) & (sm <= opts.high_hu)).view(np.uint8)
        tubes = np.zeros(soft.shape, dtype=bool)
        for axis, sp in enumerate(coarse_spacing):
            n = int(round(opts.line_mm / sp))
            k = max(1, n - 2 * int(round(opts.line_trim_mm / sp)))
            if n < 2 or n > soft.shape[axis]:
                continue
            eroded = ndimage.minimum_filter1d(soft, n, axis=axis)
            tubes |= ndimage.maximum_filter1d(eroded, k, axis=axis).astype(bool)
        background |= anatomy.upsample(tubes)
    return background


def states_options(options: StatesConfig | None = None, ring_mm: float | None = None) -> StatesConfig:
    """The label-state settings: ``options`` (default: :class:`StatesConfig`'s), ``ring_mm`` replaced."""
    opts = options or StatesConfig()
    return opts if ring_mm is None else dataclasses.replace(opts, ring_mm=float(ring_mm))


def ct_background(ct: Volume, options: StatesConfig | None = None) -> np.ndarray:
    """Bool on the CT grid: the voxels the CT itself rules out as node (known background of every
    labelling of this CT; :func:`label_states` adds the labels' nodes and ring)."""
    import SimpleITK as sitk

    code, oriented = to_lps(ct.to_sitk())
    background = _background_array(sitk.GetArrayViewFromImage(oriented), tuple(oriented.GetSpacing()[::-1]),
                                   states_options(options))
    return from_lps(background.view(np.uint8), oriented, code).astype(bool)


def label_states(ct: Volume, labels: Volume | np.ndarray, ring_mm: float | None = None,
                 options: StatesConfig | None = None, background: np.ndarray | None = None) -> np.ndarray:
    """int8 states on the CT grid: 1 annotated node, 0 known background, -1 unknown (ignored).

    ``labels`` must be on the CT grid (any value > 0 is an annotated node). ``background``: this CT's
    :func:`ct_background` with the same ``options`` when already at hand (e.g. from a cache).
    """
    opts = states_options(options, ring_mm)
    lab = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    if lab.shape != ct.shape:
        raise LNQError(f"labels of shape {lab.shape} are not on the CT grid {ct.shape}; align them first")
    if background is None:
        background = ct_background(ct, options)
    elif background.shape != ct.shape:
        raise LNQError(f"background of shape {background.shape} is not on the CT grid {ct.shape}")
    states = np.where(background, np.int8(BACKGROUND), np.int8(UNKNOWN)).astype(np.int8)
    nodes = lab > 0
    if nodes.any():
        # the ring, computed in the nodes' bounding box only (distances in mm: any axis order)
        spacing = tuple(float(s) for s in ct.spacing_zyx)
        margin = [int(np.ceil(opts.ring_mm / s)) + 1 for s in spacing]
        idx = np.nonzero(nodes)
        box = tuple(slice(max(0, int(i.min()) - m), int(i.max()) + m + 1) for i, m in zip(idx, margin))
        sub = nodes[box]
        ring = within_mm(sub, spacing, opts.ring_mm) & ~sub
        view = states[box]
        view[ring] = BACKGROUND
        view[sub] = NODE
    return states


def naive_states(labels: Volume | np.ndarray) -> np.ndarray:
    """The naive baseline: annotated voxels are nodes, everything else background."""
    lab = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    return np.where(lab > 0, NODE, BACKGROUND).astype(np.int8)
