"""A random but plausible chest: body wall, lungs, heart, great vessels, airway, spine and ribs.

All shapes are in chest coordinates (mm; ``u`` left, ``v`` posterior, ``w`` superior, carina at 0).
`Anatomy.sample` draws sizes, positions and contrast from a random generator (shifted by a `Site`:
contrast, body habitus, mediastinal width and fat); `Anatomy.paint` samples
the shapes onto a `Canvas`; `Anatomy.obstacles` and `Anatomy.in_lung` let node placement keep nodes
in mediastinal fat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lnq_napari.phantom import canvas as C
from lnq_napari.phantom.canvas import Canvas, spheres_sdf
from lnq_napari.phantom.sites import DEFAULT, Site
from lnq_napari.phantom.vessels import TREE_STEP, Tube, centrelines, lung_trees


@dataclass
class Anatomy:
    """The random parameters of one chest and the shapes derived from them."""

    A: float  # body half-width (mm)
    B: float  # body half-depth
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest-wall muscle thickness
    w_top: float  # lung apex height above the carina
    dome_r: float  # right diaphragm dome height (negative, below carina)
    dome_l: float
    contrast: bool
    blood_hu: float  # arterial / cardiac blood pool HU
    vein_hu: float
    heart: tuple  # centre (3,), radii (3,), rotation (3, 3)
    v_spine: float
    v_trachea: float
    pericardial_fat: float = 6.0
    squeeze: float = 1.0  # left-right factor of the mediastinal structures and node stations
    fat_scale: float = 1.0  # factor of the mediastinal fat pads around the stations
    med_fat_hu: float = -90.0
    tubes: list[Tube] = field(default_factory=list)
    trees: list[Tube] = field(default_factory=list)

    # ------------------------------------------------------------------ sampling
    @classmethod
    def sample(
        cls, rng: np.random.Generator, max_half_width: float | None = None, site: Site = DEFAULT
    ) -> Anatomy:
        """Draw one chest. ``max_half_width`` keeps the body inside a narrow field of view."""
        s = rng.uniform(0.9, 1.1)  # overall scale of the mediastinum
        su = site.mediastinum_width
        A = rng.uniform(140.0, 180.0) * site.body_scale
        if max_half_width is not None:
            A = min(A, max(max_half_width - 4.0, 120.0))
        B = A * rng.uniform(0.68, 0.8)
        contrast = bool(rng.random() < 0.6)
        if site.contrast is not None:
            contrast = site.contrast
        blood = rng.uniform(150.0, 300.0) if contrast else rng.uniform(30.0, 50.0)
        vein = (blood * rng.uniform(0.6, 1.2)) if contrast else blood + rng.uniform(-5, 5)
        fat = rng.uniform(*site.fat_mm)
        muscle = rng.uniform(7.0, 13.0)
        Bi = B - fat - muscle
        v_spine = Bi - rng.uniform(24.0, 32.0)
        vt = v_spine - 48.0 * s  # trachea, posterior mediastinum
        j = lambda sd=3.0: rng.normal(0.0, sd)  # noqa: E731 - jitter in mm
        heart_c = np.array([20 * s * su + j(5), vt - 55 * s + j(4), -85 * s + j(6)])
        heart_r = np.array([60, 47, 52]) * s * rng.uniform(0.9, 1.1, 3)
        heart_rot = _rotation(rng, np.array([0.3, -0.5, 0.2]), 0.15)
        a = cls(
            A=A,
            B=B,
            fat=fat,
            muscle=muscle,
            w_top=rng.uniform(105, 130) * s,
            dome_r=-rng.uniform(105, 125) * s,
            dome_l=-rng.uniform(120, 140) * s,
            contrast=contrast,
            blood_hu=blood,
            vein_hu=vein,
            heart=(heart_c, heart_r, heart_rot),
            v_spine=v_spine,
            v_trachea=vt,
            squeeze=su,
            fat_scale=site.mediastinal_fat,
            med_fat_hu=site.med_fat_hu,
        )
        a.pericardial_fat = rng.uniform(3.0, 10.0) * site.mediastinal_fat
        a.tubes = centrelines(rng, s, vt, v_spine, j, su=su, halo_scale=site.mediastinal_fat)
        a.trees = lung_trees(rng, a.tubes, a.in_lung)
        return a

    # ------------------------------------------------------------------ regions
    @property
    def Bi(self) -> float:
        return self.B - self.fat - self.muscle

    @property
    def Ai(self) -> float:
        return self.A - self.fat - self.muscle

    def _ellipse(self, u, v, a, b):
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0

    def thorax(self, u, v, w, shrink: float = 0.0):
        """Inside the rib cage, which narrows towards the thoracic inlet (broadcastable)."""
        t = np.clip((w - 20.0) / (self.w_top + 10.0), 0.0, 1.0) ** 1.5
        a = (self.Ai - shrink) * (1.0 - 0.3 * t)
        b = (self.Bi - shrink) * (1.0 - 0.1 * t)
        return (u / a) ** 2 + ((v + 0.1 * t * self.Bi) / b) ** 2 <= 1.0

    def dome(self, u, v):
        """Height of the diaphragm surface under each (u, v)."""
        lc = 0.45 * self.Ai
        right = self.dome_r - 0.0055 * ((u + lc) ** 2 + (0.8 * v) ** 2)
        left = self.dome_l - 0.0055 * ((u - lc) ** 2 + (0.8 * v) ** 2)
        return np.where(u < 0, right, left)

    def apex(self, u, v):
        """Height of the lung apex surface over each (u, v)."""
        lc = 0.45 * self.Ai
        return self.w_top - 0.004 * ((np.abs(u) - lc) ** 2 + v**2)

    def in_lung(self, u, v, w, heart: bool = True):
        """True inside the lung envelope (broadcastable arrays), before mediastinal fat is carved out."""
        inside = self.thorax(u, v, w, shrink=2.0)
        inside = inside & ((w > self.dome(u, v)) & (w < self.apex(u, v)))
        inside = inside & (np.abs(u - 4.0) > 5.0)  # a thin central mediastinal band
        # paravertebral gutters: lungs reach beside, not into, the spine
        vs = self.v_spine
        inside = inside & ~(
            ((u / 34.0) ** 2 + ((v - vs) / 30.0) ** 2 <= 1.0) | ((np.abs(u) < 24.0) & (v > vs))
        )
        if heart:
            inside = inside & (~self.in_heart(u, v, w, grow=self.pericardial_fat))
        return inside

    def stations(self) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
        """Lymph-node stations: mean position, spread (mm) and relative frequency of nodes there."""
        vt = self.v_trachea
        S = lambda *x: np.array(x, dtype=float) * np.array([self.squeeze, 1.0, 1.0])  # noqa: E731
        return {
            "2R": (S(-20, vt - 10, 55), S(5, 5, 12), 0.8),
            "4R": (S(-22, vt - 10, 33), S(5, 5, 6), 2.0),
            "2L": (S(20, vt + 2, 62), S(4, 4, 8), 0.3),
            "4L": (S(22, vt - 12, 12), S(4, 4, 5), 1.2),
            "5": (S(36, vt - 26, 14), S(5, 5, 5), 1.0),
            "3A": (S(0, vt - 72, 45), S(12, 6, 14), 1.0),
            "7": (S(6, vt - 3, -28), S(6, 5, 7), 2.0),
            "10R": (S(-58, vt + 4, -22), S(4, 5, 6), 1.0),
            "10L": (S(58, vt - 6, -31), S(4, 5, 6), 0.8),
            "8": (S(-15, vt + 8, -68), S(4, 4, 12), 0.6),
        }

    def fat_pads(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Ellipsoids (centre, radii) of mediastinal fat around the node stations."""
        return [(m, (1.6 * sd + 7.0) * self.fat_scale) for m, sd, _ in self.stations().values()]

    @cached_property
    def _halo_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        with_halo = [t for t in self.tubes if t.halo is not None]
        return np.vstack([t.centres for t in with_halo]), np.concatenate(
            [t.radii + t.halo for t in with_halo]
        )

    def lung_at(self, points: np.ndarray) -> np.ndarray:
        """True for (N, 3) chest points that end up in lung (envelope minus mediastinal fat halos)."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        out = self.in_lung(points[:, 0], points[:, 1], points[:, 2])
        for c, r in self.fat_pads():
            out &= (((points - c) / r) ** 2).sum(1) > 1.0
        if out.any():
            hc, hr = self._halo_spheres
            lo, hi = points.min(0), points.max(0)
            near = np.all((hc + hr[:, None] >= lo) & (hc - hr[:, None] <= hi), axis=1)
            if near.any():
                out &= spheres_sdf(points, hc[near], hr[near]) > 0
        return out

    def in_heart(self, u, v, w, grow: float = 0.0):
        c, r, rot = self.heart
        q = _local(u, v, w, c, rot)
        return sum((q[k] / (r[k] + grow)) ** 2 for k in range(3)) <= 1.0

    def in_thorax(self, u, v, w):
        return self.thorax(u, v, w)

    # ------------------------------------------------------------------ painting
    def paint(self, cv: Canvas) -> None:
        """Sample the whole chest onto ``cv`` (nodes excepted)."""
        A, B = self.A, self.B
        lo_all = np.array([-A - 2, -B - 2, -1e4])
        hi_all = np.array([A + 2, B + 2, 1e4])

        def body(d):
            return lambda u, v, w: self._ellipse(u, v * np.where(v > 0, 1.12, 1.0), A - d, B - d)

        # the scanner table under the patient: two thin shells around low-density foam
        v0 = B / 1.12 + 4.0
        for top, bottom, hu in ((0.0, 14.0, 180.0), (2.0, 12.0, -850.0)):
            cv.region(
                np.array([-260.0, v0 + top - 30.0, -1e4]),
                np.array([260.0, v0 + bottom, 1e4]),
                lambda u, v, w, a=top, b=bottom: (
                    ((v - v0 + 0.0004 * u**2) >= a) & ((v - v0 + 0.0004 * u**2) <= b)
                ),
                hu,
                C.TABLE,
                planar=True,
            )
        cv.region(lo_all, hi_all, body(0.0), 40.0, C.SKIN, planar=True)
        cv.region(lo_all, hi_all, body(2.0), -100.0, C.FAT, planar=True)
        cv.region(lo_all, hi_all, body(self.fat), 45.0, C.MUSCLE, planar=True)
        lo_th = np.array([-self.Ai - 1, -self.Bi - 1, -1e4])
        hi_th = np.array([self.Ai + 1, self.Bi + 1, 1e4])
        cv.region(lo_th, hi_th, self.thorax, self.med_fat_hu, C.MED_FAT)
        # abdomen below the diaphragm: liver / spleen / stomach as soft tissue
        liver = 60.0 + (40.0 if self.contrast else 0.0)
        cv.region(
            lo_th,
            np.array([self.Ai + 1, self.Bi + 1, max(self.dome_r, self.dome_l) + 1]),
            lambda u, v, w: self.thorax(u, v, w) & (w <= self.dome(u, v)),
            liver,
            C.ABDOMEN,
        )
        # stomach (fluid with a gas cap) and spleen under the left dome
        dl = self.dome_l
        sc, sr = np.array([0.45 * self.Ai, -0.1 * self.Bi, dl - 45.0]), np.array([38.0, 42.0, 36.0])
        sp, spr = np.array([0.7 * self.Ai, 0.45 * self.Bi, dl - 45.0]), np.array([22.0, 38.0, 45.0])
        for c, r, hu, gas in (
            (sc, sr, 15.0, True),
            (sp, spr, 50.0 + (70.0 if self.contrast else 0.0), False),
        ):

            def inside(u, v, w, c=c, r=r):
                return ((u - c[0]) / r[0]) ** 2 + ((v - c[1]) / r[1]) ** 2 + ((w - c[2]) / r[2]) ** 2 <= 1.0

            cv.region(c - r, c + r, inside, hu, C.ABDOMEN, only=(C.ABDOMEN,))
            if gas:
                cv.region(
                    c - r,
                    c + r,
                    lambda u, v, w, c=c, f=inside: f(u, v, w) & (w > c[2] + 12.0),
                    -990.0,
                    C.AIR,
                    only=(C.ABDOMEN,),
                )
        # paraspinal muscles
        vs = self.v_spine
        for side in (-1.0, 1.0):
            cv.region(
                np.array([side * 35 - 30, vs, -1e4]),
                np.array([side * 35 + 30, B, 1e4]),
                lambda u, v, w, side=side: (
                    (((u - side * 35.0) / 26.0) ** 2 + ((v - vs - 38.0) / 20.0) ** 2 <= 1.0)
                    & body(self.fat)(u, v, w)
                ),
                50.0,
                C.MUSCLE,
                planar=True,
            )
        w_low = min(self.dome_r, self.dome_l) - 0.0055 * ((1.45 * self.Ai) ** 2 + (0.8 * self.Bi) ** 2)
        cv.region(
            np.array([-self.Ai, -self.Bi, w_low]),
            np.array([self.Ai, self.Bi, self.w_top]),
            lambda u, v, w: self.in_lung(u, v, w, heart=False),
            -860.0,
            C.LUNG,
        )
        c, r, rot = self.heart
        reach = float(r.max()) + self.pericardial_fat + 1
        cv.region(
            c - reach,
            c + reach,
            lambda u, v, w: self.in_heart(u, v, w, grow=self.pericardial_fat),
            self.med_fat_hu,
            C.MED_FAT,
            only=(C.LUNG,),
        )
        for t in self.tubes:  # mediastinal fat around the mediastinal structures
            if t.halo is not None:
                cv.spheres(t.centres, t.radii + t.halo, self.med_fat_hu, C.MED_FAT, only=(C.LUNG,))
        for c, r in self.fat_pads():
            cv.region(
                c - r,
                c + r,
                lambda u, v, w, c=c, r=r: (
                    ((u - c[0]) / r[0]) ** 2 + ((v - c[1]) / r[1]) ** 2 + ((w - c[2]) / r[2]) ** 2 <= 1.0
                ),
                self.med_fat_hu,
                C.MED_FAT,
                only=(C.LUNG,),
            )
        self._paint_heart(cv)
        for t in self.tubes:
            if t.kind == "airway":
                continue
            hu = {"artery": self.blood_hu, "vein": self.vein_hu, "esophagus": 35.0}[t.kind]
            cl = {"artery": C.ARTERY, "vein": C.VEIN, "esophagus": C.ESOPHAGUS}[t.kind]
            cv.spheres(t.centres, t.radii, hu, cl)
        airway = [t for t in self.tubes if t.kind == "airway"]
        for t in airway:
            cv.spheres(t.centres, t.radii, 60.0, C.AIRWAY_WALL)
        for t in airway:
            cv.spheres(t.centres, np.maximum(t.radii - 2.0, 0.8), -1000.0, C.AIRWAY_LUMEN)
        self._paint_spine(cv)
        for t in self.trees:  # pulmonary vessels inside the lungs
            hu = self.blood_hu if t.kind == "artery" else self.vein_hu
            cv.stamp(t.centres, t.radii, hu, C.LUNG_VESSEL, only=C.LUNG, step=TREE_STEP)

    def _paint_heart(self, cv: Canvas) -> None:
        c, r, rot = self.heart
        reach = float(r.max()) + 2
        lo, hi = c - reach, c + reach
        cv.region(lo, hi, lambda u, v, w: self.in_heart(u, v, w) & self.thorax(u, v, w, 3.0), 40.0, C.HEART)
        if self.contrast:
            # blood pools: ventricles and atria inside a ~10 mm myocardial wall
            for off, scale in (((-0.2, -0.1, 0.1), 0.55), ((0.25, 0.1, 0.05), 0.5), ((0.0, 0.45, 0.35), 0.4)):
                cc = c + rot @ (np.asarray(off) * r)
                rr = r * scale
                cv.region(
                    cc - rr.max(),
                    cc + rr.max(),
                    lambda u, v, w, cc=cc, rr=rr: (
                        sum((q / rr[k]) ** 2 for k, q in enumerate(_local(u, v, w, cc, rot))) <= 1.0
                    ),
                    self.blood_hu,
                    C.BLOOD,
                    only=(C.HEART,),
                )

    def _paint_spine(self, cv: Canvas) -> None:
        vs = self.v_spine
        lo = np.array([-45.0, vs - 25, -1e4])
        hi = np.array([45.0, self.B, 1e4])

        def body(u, v, w, rad=20.0):
            return (u / (rad + 2)) ** 2 + ((v - vs) / rad) ** 2 <= 1.0

        def disc(u, v, w):
            return np.abs(((w + 7.0) % 30.0) - 15.0) < 3.0

        cv.region(lo, hi, body, 650.0, C.BONE, planar=True)
        cv.region(lo, hi, lambda u, v, w: body(u, v, w, 17.5), 260.0, C.MARROW, planar=True)
        cv.region(lo, hi, lambda u, v, w: body(u, v, w) & disc(u, v, w), 85.0, C.MUSCLE)

        # posterior arch around the canal and the spinous process
        def arch(u, v, w):
            d = np.sqrt(u**2 + (v - vs - 30.0) ** 2)
            return ((d > 8.0) & (d < 16.0) & (v > vs + 14)) | (
                (np.abs(u) < 4.0) & (v > vs + 40) & (v < self.B - self.fat - 4)
            )

        cv.region(lo, hi, arch, 500.0, C.BONE, planar=True)
        cv.region(lo, hi, lambda u, v, w: u**2 + (v - vs - 30.0) ** 2 < 64.0, 15.0, C.MUSCLE, planar=True)
        self._paint_ribs(cv)
        # sternum: anterior midline bone from the manubrium to the xiphoid
        vst = -self.Bi - 3.0
        w_lo, w_hi = self.dome_r - 20.0, self.w_top - 40.0
        lo, hi = np.array([-20.0, vst - 9, w_lo]), np.array([20.0, vst + 9, w_hi])
        cv.region(
            lo,
            hi,
            lambda u, v, w: (u / 16.0) ** 2 + ((v - vst) / 6.0) ** 2 <= 1.0,
            550.0,
            C.BONE,
            planar=True,
        )
        cv.region(
            lo,
            hi,
            lambda u, v, w: (u / 13.0) ** 2 + ((v - vst) / 3.5) ** 2 <= 1.0,
            220.0,
            C.MARROW,
            planar=True,
        )

    def _paint_ribs(self, cv: Canvas) -> None:
        """Ribs: bony arcs just outside the lungs, sloping down anteriorly, ~25 mm apart."""
        Ai, Bi = self.Ai, self.Bi
        ring = cv.box(np.array([-Ai - 12, -Bi - 12, -1e4]), np.array([Ai + 12, Bi + 12, 1e4]))
        if ring is None:
            return
        u, v, _ = cv.coords(ring)
        u2, v2 = u[0], v[0]
        rho = np.sqrt((u2 / Ai) ** 2 + (v2 / Bi) ** 2)
        theta = np.arctan2(v2, u2)
        radial = (rho - 1.0) * Ai / 10.0  # 0..1 across a ~10 mm thick rib
        keep = (radial > 0.05) & (radial < 0.95) & (np.abs(np.cos(theta)) > 0.25)  # no cartilage/spine
        yy, xx = np.nonzero(keep)
        if yy.size == 0:
            return
        slope = 45.0 * (1.0 - np.sin(theta[yy, xx]))  # anterior rib ends lie lower
        rr = radial[yy, xx]
        w = cv.w[ring[0]][:, None]
        phase = ((w + slope[None, :] - self.w_top) % 26.0) / 10.0  # 0..1 across a 10 mm tall rib
        e = ((rr[None, :] - 0.5) / 0.5) ** 2 + ((phase - 0.5) / 0.5) ** 2
        zz = np.arange(ring[0].start, ring[0].stop)[:, None]
        below_top = w < self.w_top + 20
        for mask, hu, cl in ((e <= 1.0, 700.0, C.BONE), (e <= 0.35, 250.0, C.MARROW)):
            mask = mask & below_top
            iz, ip = np.nonzero(mask)
            gz, gy, gx = zz[iz, 0], yy[ip] + ring[1].start, xx[ip] + ring[2].start
            cv.hu[gz, gy, gx] = hu
            cv.cls[gz, gy, gx] = cl


def _rotation(rng: np.random.Generator, axis: np.ndarray, jitter: float) -> np.ndarray:
    """A rotation turning the local x-axis towards ``axis`` (plus a random jitter)."""
    a = np.asarray(axis, dtype=float) + rng.normal(0.0, jitter, 3)
    a /= np.linalg.norm(a)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _local(u, v, w, c, rot):
    """Coordinates of (u, v, w) in the frame (centre ``c``, columns of ``rot``)."""
    du, dv, dw = u - np.float32(c[0]), v - np.float32(c[1]), w - np.float32(c[2])
    rt = rot.T.astype(np.float32)
    return [rt[k, 0] * du + rt[k, 1] * dv + rt[k, 2] * dw for k in range(3)]
