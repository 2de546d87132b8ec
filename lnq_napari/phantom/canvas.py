"""The sampling grid of a phantom and the primitives that paint anatomy onto it.

Anatomy is defined in physical millimetres in *chest coordinates* ``(u, v, w)``: ``u`` to the patient's
left, ``v`` posterior, ``w`` superior (LPS axes), with the origin at the carina. A `Canvas` samples
those shapes at the voxel centres of whatever grid was asked for, working only inside each shape's
bounding box and in z-chunks, so a 512 x 512 x 114 case stays fast and memory stays modest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# tissue classes of the internal class map (not written to disk)
AIR, SKIN, FAT, MUSCLE, MED_FAT, LUNG, ABDOMEN, HEART, BLOOD, ARTERY, VEIN = range(11)
AIRWAY_WALL, AIRWAY_LUMEN, ESOPHAGUS, BONE, MARROW, LUNG_VESSEL, NODE, SMALL_NODE, TABLE = range(11, 20)

Region = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_CHUNK_VOXELS = 4_000_000


class Canvas:
    """HU and tissue-class arrays (z, y, x) plus the chest coordinates of every voxel centre."""

    def __init__(self, shape: tuple[int, int, int], spacing_xyz, origin_xyz, centre_xyz) -> None:
        nz, ny, nx = shape
        self.shape = (nz, ny, nx)
        self.spacing = np.asarray(spacing_xyz, dtype=float)
        # chest coordinates of voxel centres along each axis (identity direction)
        self.u = (origin_xyz[0] + self.spacing[0] * np.arange(nx) - centre_xyz[0]).astype(np.float32)
        self.v = (origin_xyz[1] + self.spacing[1] * np.arange(ny) - centre_xyz[1]).astype(np.float32)
        self.w = (origin_xyz[2] + self.spacing[2] * np.arange(nz) - centre_xyz[2]).astype(np.float32)
        self.hu = np.full(self.shape, -1000.0, dtype=np.float32)
        self.cls = np.zeros(self.shape, dtype=np.uint8)

    # ------------------------------------------------------------------ geometry
    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest voxel-centre chest coordinates (u, v, w)."""
        lo = np.array([self.u[0], self.v[0], self.w[0]], dtype=float)
        hi = np.array([self.u[-1], self.v[-1], self.w[-1]], dtype=float)
        return lo, hi

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of the voxel centres inside the chest-coordinate box ``lo..hi``."""
        out = []
        for axis, a, b in ((self.w, lo[2], hi[2]), (self.v, lo[1], hi[1]), (self.u, lo[0], hi[0])):
            i0 = int(np.searchsorted(axis, a, side="left"))
            i1 = int(np.searchsorted(axis, b, side="right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def coords(self, sl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable chest coordinates (u, v, w) of the voxels in ``sl``."""
        return (
            self.u[sl[2]][None, None, :],
            self.v[sl[1]][None, :, None],
            self.w[sl[0]][:, None, None],
        )

    def chunks(self, sl):
        """Split a (z, y, x) box into z-chunks of bounded size."""
        zs, ys, xs = sl
        per_slice = max((ys.stop - ys.start) * (xs.stop - xs.start), 1)
        step = max(1, _CHUNK_VOXELS // per_slice)
        for z0 in range(zs.start, zs.stop, step):
            yield (slice(z0, min(z0 + step, zs.stop)), ys, xs)

    # ------------------------------------------------------------------ painting
    def paint(self, sl, mask: np.ndarray, hu: float | np.ndarray, cls: int, where: np.ndarray | None = None):
        """Set HU and class where ``mask`` (and the optional class condition ``where``) holds in ``sl``."""
        if where is not None:
            mask = mask & where
            if not mask.any():
                return
        np.copyto(self.hu[sl], np.float32(hu) if np.ndim(hu) == 0 else hu, where=mask, casting="unsafe")
        np.copyto(self.cls[sl], np.uint8(cls), where=mask)

    def region(
        self,
        lo,
        hi,
        inside: Region,
        hu: float,
        cls: int,
        only: tuple[int, ...] | None = None,
        planar: bool = False,
    ):
        """Paint the voxels of the box ``lo..hi`` for which ``inside(u, v, w)`` is true.

        ``planar``: ``inside`` ignores ``w``, so it is evaluated on one slice and reused for all.
        """
        box = self.box(lo, hi)
        if box is None:
            return
        plane = None
        if planar:
            u, v, w = self.coords((slice(box[0].start, box[0].start + 1), box[1], box[2]))
            plane = np.broadcast_to(inside(u, v, w), (1,) + self.hu[(slice(0, 1),) + box[1:]].shape[1:])
            if not plane.any():
                return
        for sl in self.chunks(box):
            shape = self.hu[sl].shape
            if plane is None:
                u, v, w = self.coords(sl)
                mask = np.broadcast_to(inside(u, v, w), shape)
            else:
                mask = np.broadcast_to(plane, shape)
            where = _class_mask(self.cls[sl], only) if only is not None else None
            self.paint(sl, mask, hu, cls, where)

    def spheres(
        self, centres: np.ndarray, radii: np.ndarray, hu: float, cls: int, only: tuple[int, ...] | None = None
    ) -> None:
        """Paint the union of spheres (a tube when the centres follow a line)."""
        centres = np.asarray(centres, dtype=float).reshape(-1, 3)
        radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(centres),))
        lo, hi = centres - radii[:, None], centres + radii[:, None]
        i0 = [np.searchsorted(ax, lo[:, k], side="left") for k, ax in enumerate((self.u, self.v, self.w))]
        i1 = [np.searchsorted(ax, hi[:, k], side="right") for k, ax in enumerate((self.u, self.v, self.w))]
        ok = (radii > 0) & (i1[0] > i0[0]) & (i1[1] > i0[1]) & (i1[2] > i0[2])
        u_all, v_all, w_all = self.u, self.v, self.w
        for n in np.nonzero(ok)[0]:
            c, r = centres[n], radii[n]
            sl = (slice(i0[2][n], i1[2][n]), slice(i0[1][n], i1[1][n]), slice(i0[0][n], i1[0][n]))
            du = (u_all[sl[2]] - np.float32(c[0])) ** 2
            dv = (v_all[sl[1]] - np.float32(c[1])) ** 2
            dw = (w_all[sl[0]] - np.float32(c[2])) ** 2
            mask = (du[None, None, :] + dv[None, :, None]) + dw[:, None, None] <= np.float32(r * r)
            where = _class_mask(self.cls[sl], only) if only is not None else None
            self.paint(sl, mask, hu, cls, where)

    def stamp(
        self,
        centres: np.ndarray,
        radii: np.ndarray,
        hu: float,
        cls: int,
        only: int | None = None,
        step: float = 0.6,
    ) -> None:
        """Paint many small spheres at once (fine vessels sampled every ``step * radius`` mm).

        Spheres at least half a pixel wide are point-sampled exactly; thinner ones add their volume
        fraction to the voxel they fall in (partial volume), so coarse grids stay plausible.
        """
        centres = np.asarray(centres, dtype=float).reshape(-1, 3)
        radii = np.asarray(radii, dtype=float)
        origin = np.array([self.u[0], self.v[0], self.w[0]], dtype=float)
        pos = (centres - origin) / self.spacing  # continuous (x, y, z) index
        idx = np.rint(pos).astype(np.int64)
        shape_xyz = np.array(self.shape[::-1])
        flat_hu, flat_cls = self.hu.reshape(-1), self.cls.reshape(-1)
        big = radii >= 0.5 * self.spacing[:2].min()
        # thin vessels: splat volume fraction into the nearest voxel
        thin = ~big & np.all((idx >= 0) & (idx < shape_xyz), axis=1)
        if thin.any():
            flat = np.ravel_multi_index(tuple(idx[thin][:, ::-1].T), self.shape)
            vol = np.pi * radii[thin] ** 2 * (step * radii[thin]) / float(np.prod(self.spacing))
            uniq, inv = np.unique(flat, return_inverse=True)
            frac = np.minimum(np.bincount(inv, weights=vol), 1.0).astype(np.float32)
            if only is not None:
                keep = flat_cls[uniq] == only
                uniq, frac = uniq[keep], frac[keep]
            flat_hu[uniq] += frac * (np.float32(hu) - flat_hu[uniq])
            flat_cls[uniq[frac >= 0.5]] = cls
        # wider vessels: voxel centres within the radius of the exact centre
        bucket = np.ceil(radii / self.spacing.min() * 2.0) / 2.0
        for b in np.unique(bucket[big]):
            sel = big & (bucket == b)
            n = np.floor(radii[sel].max() / self.spacing + 0.5).astype(int)
            ox, oy, oz = (o.ravel() for o in np.meshgrid(*(np.arange(-k, k + 1) for k in n), indexing="ij"))
            offs = np.stack([ox, oy, oz], axis=1).astype(np.int32)
            base = idx[sel].astype(np.int32)
            frac = ((pos[sel] - base) * self.spacing).astype(np.float32)  # centre offset from base voxel, mm
            d = offs[None, :, :] * self.spacing.astype(np.float32) - frac[:, None, :]
            inside = (d * d).sum(-1) <= (radii[sel].astype(np.float32) ** 2)[:, None]
            pts = (base[:, None, :] + offs[None])[inside]
            pts = pts[((pts >= 0) & (pts < shape_xyz)).all(1)]
            flat = (pts[:, 2].astype(np.int64) * self.shape[1] + pts[:, 1]) * self.shape[2] + pts[:, 0]
            if only is not None:
                flat = flat[flat_cls[flat] == only]
            flat_hu[flat] = hu
            flat_cls[flat] = cls


def _class_mask(cls: np.ndarray, only: tuple[int, ...]) -> np.ndarray:
    """True where the class map holds one of ``only``."""
    return cls == only[0] if len(only) == 1 else np.isin(cls, only)


def tube(points, radii, step_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Sphere centres and radii along a polyline through ``points`` with per-point ``radii``.

    The polyline is smoothed (Catmull-Rom) and sampled so neighbouring spheres overlap closely.
    """
    pts = np.asarray(points, dtype=float)
    rad = np.asarray(radii, dtype=float)
    if len(pts) > 2:
        pts, rad = _catmull_rom(pts, rad)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    step = max(float(rad.min()) * step_fraction, 0.3)
    n = max(int(np.ceil(arc[-1] / step)) + 1, 2)
    s = np.linspace(0.0, arc[-1], n)
    centres = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
    return centres, np.interp(s, arc, rad)


def _catmull_rom(pts: np.ndarray, rad: np.ndarray, per_segment: int = 12):
    ext = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(
            0.5
            * (
                (2 * p1)
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(pts[-1][None])
    curve = np.vstack(out)
    r = np.interp(np.linspace(0, len(rad) - 1, len(curve)), np.arange(len(rad)), rad)
    return curve, r


def spheres_sdf(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) from each point to a union of spheres."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    d = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2) - radii[None, :]
    return d.min(axis=1)
