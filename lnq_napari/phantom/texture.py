"""Finishing a painted phantom: lung texture, partial-volume blur and scanner noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lnq_napari.phantom import canvas as C
from lnq_napari.phantom.anatomy import Anatomy
from lnq_napari.phantom.canvas import Canvas


def smooth_field(rng: np.random.Generator, shape, cell_vox) -> np.ndarray:
    """Smooth random field (mean 0, std ~1) on ``shape``, correlated over ``cell_vox`` voxels per axis."""
    coarse = tuple(max(int(np.ceil(n / c)) + 2, 2) for n, c in zip(shape, cell_vox))
    g = rng.standard_normal(coarse).astype(np.float32)
    g = ndimage.gaussian_filter(g, 0.8, mode="wrap")
    g /= max(float(g.std()), 1e-6)
    zoom = [n / c for n, c in zip(shape, coarse)]
    out = ndimage.zoom(g, zoom, order=1, grid_mode=False)
    return out[tuple(slice(0, n) for n in shape)]


def _kernel_gain(sigma: float) -> float:
    """Std of white noise after ``gaussian_filter1d(sigma)`` (truncate 4), per unit input std."""
    if sigma <= 0:
        return 1.0
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return float(np.sqrt((k**2).sum()))


def finish(cv: Canvas, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Texture, partial-volume blur and noise; returns the float32 HU array (z, y, x)."""
    hu = cv.hu
    lung = cv.cls == C.LUNG
    if lung.any():
        zz, yy, xx = (
            np.nonzero(lung.any(axis=(1, 2)))[0],
            np.nonzero(lung.any(axis=(0, 2)))[0],
            np.nonzero(lung.any(axis=(0, 1)))[0],
        )
        sl = (slice(zz[0], zz[-1] + 1), slice(yy[0], yy[-1] + 1), slice(xx[0], xx[-1] + 1))
        sub = lung[sl]
        cell = (max(8.0 / cv.spacing[2], 1.0), 8.0 / cv.spacing[1], 8.0 / cv.spacing[0])
        tex = smooth_field(rng, sub.shape, cell)
        # dependent (posterior) lung is denser
        grad = (cv.v[sl[1]] / max(a.Bi, 1.0) * 25.0)[None, :, None]
        hu[sl][sub] += (18.0 * tex + grad)[sub] if tex.shape == sub.shape else 0.0
    # partial volume / reconstruction blur (voxels) with noise added before it, so noise is correlated
    sig = (0.45, 0.6, 0.6)  # z, y, x in voxels
    target_sd = rng.uniform(10.0, 20.0)
    gain = np.prod([_kernel_gain(s) for s in sig])
    noise = rng.standard_normal(cv.shape, dtype=np.float32)
    noise *= np.float32(target_sd / gain)
    hu += noise
    del noise
    for axis, s in enumerate(sig):
        ndimage.gaussian_filter1d(hu, s, axis=axis, output=hu, mode="nearest")
    return hu
