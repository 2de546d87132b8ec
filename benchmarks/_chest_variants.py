"""Chest CTs unlike the phantoms, made from one CT (z y x in HU, with masks carried along): one lung removed,
an effusion, emphysema, a child, an obese patient, arms down, metal, no table, the mediastinum only, neck
to pelvis, prone, an HU offset, one lung cut to a sliver. Used by bench_region_fov.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from lnq_napari.anatomy import SEAL_WALL, body_of, chest_lungs, coarse_anatomy

#: A variant: (hu, masks carried along, spacing z y x) -> the same, changed.
Variant = Callable[[np.ndarray, list[np.ndarray], tuple[float, float, float]],
                   tuple[np.ndarray, list[np.ndarray]]]


def _noise(shape, sd: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, shape)


def lung_voxels(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The lungs at full resolution: air below -400 inside the coarse lungs grown by a voxel."""
    anatomy = coarse_anatomy(hu, spacing, seal=SEAL_WALL)
    lungs = ndimage.binary_dilation(chest_lungs(anatomy, spacing), iterations=1)
    return anatomy.upsample(lungs) & (hu < -400)


def _side(lungs: np.ndarray) -> np.ndarray:
    """bool x columns of the lung at low x (split between the lungs' columns)."""
    xs = np.nonzero(lungs.any(axis=(0, 1)))[0]
    cols = np.arange(lungs.shape[2])
    return cols < (xs.min() + xs.max()) / 2


def _pad_xy(hu, masks, mm: float, spacing, axes=(1, 2)):
    pads = [(0, 0)] * 3
    for a in axes:
        n = int(round(mm / spacing[a]))
        pads[a] = (n, n)
    air = np.pad(hu.astype(np.float32), pads, constant_values=np.nan)
    air = np.where(np.isnan(air), -1000 + _noise(air.shape, 10.0, 1), air)
    return air, [np.pad(m, pads) for m in masks]


def pneumonectomy(hu, masks, spacing):
    lungs = lung_voxels(hu, spacing) & _side(lung_voxels(hu, spacing))[None, None]
    out = hu.astype(np.float32)
    out[lungs] = 30 + _noise(int(lungs.sum()), 10.0)
    return out, masks


def effusion(hu, masks, spacing):
    lungs = lung_voxels(hu, spacing) & _side(lung_voxels(hu, spacing))[None, None]
    zs = np.nonzero(lungs.any(axis=(1, 2)))[0]
    lungs[int(np.median(zs)):] = False  # z rises to the head: the lower half
    out = hu.astype(np.float32)
    out[lungs] = 10 + _noise(int(lungs.sum()), 10.0)
    return out, masks


def emphysema(hu, masks, spacing):
    lungs = lung_voxels(hu, spacing)
    out = hu.astype(np.float32)
    out[lungs] = -980 + _noise(int(lungs.sum()), 8.0)
    return out, masks


def child(hu, masks, spacing):
    """The patient at half size in the same field of view (zoomed by 0.5, padded with air)."""
    small = ndimage.zoom(hu.astype(np.float32), 0.5, order=1)
    out = -1000 + _noise(hu.shape, 10.0, 2)
    lo = [(n - m) // 2 for n, m in zip(hu.shape, small.shape)]
    box = tuple(slice(a, a + m) for a, m in zip(lo, small.shape))
    out[box] = small
    moved = []
    for m in masks:
        z = np.zeros(hu.shape, dtype=bool)
        z[box] = ndimage.zoom(m.astype(np.uint8), 0.5, order=0) > 0
        moved.append(z)
    return out, moved


def _filled_body(hu):
    body = body_of(hu, -300)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def obese(fat_mm: float) -> Variant:
    """``fat_mm`` of fat (-100 HU) round the body (the image padded to hold it)."""
    def padded(hu, masks, spacing):
        hu, masks = _pad_xy(hu, masks, fat_mm + 10.0, spacing)
        body = _filled_body(hu)
        out = hu.copy()
        for z in range(hu.shape[0]):
            far = ndimage.distance_transform_edt(~body[z], sampling=spacing[1:])
            ring = (far > 0) & (far <= fat_mm)
            out[z][ring] = -100 + _noise(int(ring.sum()), 15.0, z)
        return out, masks
    return padded


def arms(hu, masks, spacing, gap_mm: float = 4.0):
    """An arm beside each side of the chest (muscle, a fat rim, the humerus), ``gap_mm`` of air between."""
    hu, masks = _pad_xy(hu, masks, 130.0, spacing, axes=(2,))
    body = _filled_body(hu)
    out = hu.copy()
    yy, xx = np.mgrid[: hu.shape[1], : hu.shape[2]]
    sy, sx = spacing[1:]
    for z in range(hu.shape[0]):
        ys, xs = np.nonzero(body[z])
        if not ys.size:
            continue
        cy = (ys.min() + ys.max()) / 2
        for edge, sign in ((xs.min(), -1), (xs.max(), 1)):
            cx = edge + sign * (gap_mm + 45.0) / sx
            r = np.hypot((yy - cy) * sy / 55.0, (xx - cx) * sx / 45.0)
            out[z][r <= 1] = -90
            out[z][r <= 0.85] = 45
            out[z][np.hypot((yy - cy) * sy, (xx - cx) * sx) <= 12] = 700
    return out, masks


def metal(hu, masks, spacing):
    """Sternal wires (3000 HU) on four slices and a pacemaker on three, with bright and dark streaks
    through each slice they lie on."""
    body = _filled_body(hu)
    lungs = lung_voxels(hu, spacing)
    zs = np.nonzero(lungs.any(axis=(1, 2)))[0]
    out = hu.astype(np.float32)
    yy, xx = np.mgrid[: hu.shape[1], : hu.shape[2]]
    sy, sx = spacing[1:]
    cx = float(np.nonzero(lungs.any(axis=(0, 1)))[0].mean())
    for k, z in enumerate(np.linspace(zs[0] + 2, zs[-1] - 2, 7).round().astype(int)):
        ys = np.nonzero(body[z, :, int(cx)])[0]
        if not ys.size:
            continue
        if k < 4:  # a wire 8 mm behind the front skin, in the midline
            py, px, size = ys.min() + 8.0 / sy, cx, 3.0
        else:  # a pacemaker under the skin, front left
            py, px, size = ys.min() + 10.0 / sy, cx + 70.0 / sx, 12.0
        dist = np.hypot((yy - py) * sy, (xx - px) * sx)
        angle = np.arctan2((yy - py) * sy, (xx - px) * sx)
        streak = np.cos(8 * angle) * np.exp(-dist / 150.0)
        lines = np.abs(np.sin(8 * angle)) * dist < 1.5 * max(sy, sx)
        out[z][lines] += 1000 * streak[lines]
        out[z][dist <= size] = 3000
    return np.clip(out, -1024, 3071), masks


def no_table(hu, masks, spacing):
    """Everything outside the body set to -1024 (a CT masked to the body: no table, no noise)."""
    body = _filled_body(hu)
    return np.where(body, hu, -1024).astype(np.float32), masks


def mediastinum_only(hu, masks, spacing):
    """Cropped to 120 mm round the midline, from the lungs' front to their back (no lung edges)."""
    lungs = lung_voxels(hu, spacing)
    xs = np.nonzero(lungs.any(axis=(0, 1)))[0]
    ys = np.nonzero(lungs.any(axis=(0, 2)))[0]
    cx, half = (xs.min() + xs.max()) // 2, int(60.0 / spacing[2])
    box = (slice(None), slice(int(ys.min()), int(ys.max()) + 1), slice(int(cx - half), int(cx + half)))
    return hu[box].astype(np.float32), [m[box] for m in masks]


def neck_to_pelvis(hu, masks, spacing):
    """1.5 times as long: a quarter of the length more above (the neck: the top slice, its air soft
    tissue) and below (the abdomen: the bottom slice, its air soft tissue but for bowel gas)."""
    lungs = lung_voxels(hu, spacing)
    n = hu.shape[0] // 4
    top, bottom = hu[-1].astype(np.float32).copy(), hu[0].astype(np.float32).copy()
    top[lungs[-1]] = 35
    bottom[lungs[0]] = 40
    ys, xs = np.nonzero(lungs[0]) if lungs[0].any() else np.nonzero(_filled_body(hu)[0])
    cy, cx = int(np.median(ys)), int(np.median(xs))
    bottom[cy - 3 : cy + 3, cx - 3 : cx + 3] = -900  # bowel gas
    below = np.repeat(bottom[None], n, 0) + _noise((n,) + bottom.shape, 10.0, 3)
    above = np.repeat(top[None], n, 0) + _noise((n,) + top.shape, 10.0, 4)
    out = np.concatenate([below, hu.astype(np.float32), above])
    return out, [np.pad(m, ((n, n), (0, 0), (0, 0))) for m in masks]


def prone(hu, masks, spacing):
    return hu[:, ::-1].astype(np.float32), [m[:, ::-1] for m in masks]


def offset(by: float) -> Variant:
    def shifted(hu, masks, spacing):
        return hu.astype(np.float32) + by, masks
    return shifted


def sliver(share: float) -> Variant:
    """One lung (at low x) cut by the image edge to ``share`` of its width."""
    def cut(hu, masks, spacing):
        lungs = lung_voxels(hu, spacing)
        xs = np.nonzero(lungs & _side(lungs)[None, None])[2]
        first, last = np.percentile(xs, [0.5, 99.5])
        col = int(round(last - share * (last - first)))
        return hu[:, :, col:].astype(np.float32), [m[:, :, col:] for m in masks]
    return cut


VARIANTS: dict[str, Variant] = {
    "pneumonectomy": pneumonectomy, "effusion": effusion, "emphysema": emphysema, "child": child,
    "obese 60mm": obese(60.0), "obese 100mm": obese(100.0), "arms down": arms,
    "arms touching": lambda h, m, s: arms(h, m, s, 0.0),
    "metal": metal, "no table": no_table, "mediastinum only": mediastinum_only,
    "neck to pelvis": neck_to_pelvis, "prone": prone, "offset +1024": offset(1024.0),
    "offset +100": offset(100.0), "sliver 10%": sliver(0.10), "sliver 5%": sliver(0.05),
}
