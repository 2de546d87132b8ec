"""Finishing a painted phantom: lung texture, partial-volume blur, scanner noise, kernel and calibration."""

from __future__ import annotations

import numpy as np

from lnq_napari.phantom import canvas as C
from lnq_napari.phantom.anatomy import Anatomy
from lnq_napari.phantom.canvas import Canvas
from lnq_napari.phantom.sites import DEFAULT, Site


def separable_field(rng: np.random.Generator, shape, cell_vox, rank: int = 3) -> np.ndarray:
    """Smooth random field (mean ~0, std ~1) as a sum of ``rank`` products of smooth 1D profiles.

    Much cheaper than filtering 3D noise: ``2 * rank`` whole-array operations.
    """
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(rank):
        prof = []
        for n, c in zip(shape, cell_vox):
            x = np.arange(n) / max(c, 1.0)
            k = rng.uniform(0.5, 1.5, 3)
            ph = rng.uniform(0, 2 * np.pi, 3)
            prof.append((np.cos(np.outer(x, k) + ph).sum(1) / np.sqrt(1.5)).astype(np.float32))
        out += prof[0][:, None, None] * prof[1][None, :, None] * prof[2][None, None, :]
    out /= np.float32(np.sqrt(rank))
    return out


def _taps(sigma: float) -> float:
    """Side weight of a normalised 3-tap Gaussian [a, 1 - 2a, a]."""
    if sigma <= 0:
        return 0.0
    e = np.exp(-0.5 / sigma**2)
    return float(e / (1.0 + 2.0 * e))


def _blur_axis(a: np.ndarray, w: float, axis: int) -> None:
    """In-place 3-tap blur [w, 1 - 2w, w] of ``a`` along ``axis`` (edges replicated)."""
    if w <= 0 or a.shape[axis] < 2:
        return
    w = np.float32(w)
    src = a.copy()
    a *= np.float32(1.0 - 2.0 * w)
    lo = [slice(None)] * a.ndim
    hi = [slice(None)] * a.ndim
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    a[tuple(hi)] += w * src[tuple(lo)]
    a[tuple(lo)] += w * src[tuple(hi)]
    first = [slice(None)] * a.ndim
    last = [slice(None)] * a.ndim
    first[axis], last[axis] = slice(0, 1), slice(-1, None)
    a[tuple(first)] += w * src[tuple(first)]
    a[tuple(last)] += w * src[tuple(last)]


def noise_and_blur(a: np.ndarray, rng: np.random.Generator, sd: float, weights) -> None:
    """Add white noise of std ``sd`` to ``a`` (z, y, x) and blur it in place, slab by slab.

    In-plane blur runs per slab of slices, the through-plane blur with a rolling copy of one slice,
    so no second full-size array is needed.
    """
    wz, wy, wx = (np.float32(w) for w in weights)
    nz = a.shape[0]
    step = max(1, 4_000_000 // max(a.shape[1] * a.shape[2], 1))
    for z0 in range(0, nz, step):
        slab = a[z0 : z0 + step]
        if sd > 0:
            noise = rng.standard_normal(slab.shape, dtype=np.float32)
            noise *= np.float32(sd)
            slab += noise
        _blur_axis(slab, float(wy), 1)
        _blur_axis(slab, float(wx), 2)
    if wz <= 0 or nz < 2:
        return
    prev = a[0].copy()
    for z in range(nz):
        cur = a[z].copy()
        nxt = a[z + 1] if z + 1 < nz else cur
        a[z] *= np.float32(1.0) - 2 * wz
        a[z] += wz * prev
        a[z] += wz * nxt
        prev = cur


def noise_gain(weights) -> float:
    """Std of white noise after ``blur3`` with ``weights``, per unit input std."""
    return float(np.prod([np.sqrt(2 * w * w + (1 - 2 * w) ** 2) for w in weights]))


def edge_enhance(a: np.ndarray, gain: float) -> None:
    """Sharpen ``a`` in-plane in place (unsharp mask, ``a += gain * (a - blurred a)``), slab by slab."""
    w = _taps(1.0)
    step = max(1, 4_000_000 // max(a.shape[1] * a.shape[2], 1))
    for z0 in range(0, a.shape[0], step):
        slab = a[z0 : z0 + step]
        smooth = slab.copy()
        _blur_axis(smooth, w, 1)
        _blur_axis(smooth, w, 2)
        slab *= np.float32(1.0 + gain)
        slab -= np.float32(gain) * smooth


def finish(cv: Canvas, a: Anatomy, rng: np.random.Generator, site: Site = DEFAULT) -> np.ndarray:
    """Texture, partial-volume blur and noise, then the site's kernel and HU calibration.

    Returns the float32 HU array (z, y, x).
    """
    hu = cv.hu
    lung = cv.cls == C.LUNG
    zz = np.nonzero(lung.any(axis=(1, 2)))[0]
    if zz.size:
        yy = np.nonzero(lung.any(axis=(0, 2)))[0]
        xx = np.nonzero(lung.any(axis=(0, 1)))[0]
        sl = (slice(zz[0], zz[-1] + 1), slice(yy[0], yy[-1] + 1), slice(xx[0], xx[-1] + 1))
        cell = (max(6.0 / cv.spacing[2], 1.0), 6.0 / cv.spacing[1], 6.0 / cv.spacing[0])
        tex = separable_field(rng, lung[sl].shape, cell)
        tex *= np.float32(12.0)
        # dependent (posterior) lung is denser
        tex += (cv.v[sl[1]] / np.float32(max(a.Bi, 1.0)) * np.float32(25.0))[None, :, None]
        np.add(hu[sl], tex, out=hu[sl], where=lung[sl])
    # partial volume / reconstruction blur with noise added before it, so noise is correlated
    sxy = rng.uniform(0.45, 0.8) * site.kernel_blur_scale  # reconstruction kernel, sharper or softer
    weights = (_taps(rng.uniform(0.35, 0.55)), _taps(sxy), _taps(sxy))  # z, y, x in voxels
    target_sd = rng.uniform(10.0, 20.0) * site.noise_scale
    noise_and_blur(hu, rng, target_sd / noise_gain(weights), weights)
    if site.edge_enhance > 0:
        edge_enhance(hu, site.edge_enhance)
    if site.hu_offset:
        hu += np.float32(site.hu_offset)
    return hu
