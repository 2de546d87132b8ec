"""Lymph nodes: irregular soft-tissue blobs placed in mediastinal fat, painted with their labels.

A node is an ellipsoid with a random orientation whose radius is perturbed by a smooth function of
direction (low-frequency "radial perturbation"). Target nodes have a minimal (Feret) diameter of at
least 10 mm; sub-centimetre distractors have a maximal diameter of at most 8 mm and are never targets.
A `Site` can change their appearance: HU, irregularity, conglomerates of touching nodes, necrotic
(low-HU) centres and calcifications.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from lnq_napari.phantom import canvas as C
from lnq_napari.phantom.anatomy import Anatomy, random_rotation
from lnq_napari.phantom.canvas import Canvas, spheres_sdf
from lnq_napari.phantom.sites import DEFAULT, Site


@lru_cache(maxsize=1)
def _dirs() -> np.ndarray:
    """400 near-uniform unit directions (Fibonacci sphere)."""
    i = np.arange(400) + 0.5
    phi = np.arccos(1 - 2 * i / 400)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


@dataclass
class Node:
    """One node's shape (chest mm) and appearance."""

    centre: np.ndarray
    radii: np.ndarray
    rot: np.ndarray
    amp: float
    waves: np.ndarray  # (K, 3) directions
    freq: np.ndarray
    phase: np.ndarray
    weight: np.ndarray
    hu: float
    target: bool
    station: str = ""
    touches_vessel: bool = False
    labelled: bool = False
    core: float = 0.0  # radius fraction of a necrotic (low-HU) centre; 0: solid
    calcified: bool = False

    def support(self, d: np.ndarray) -> float:
        """How far the surface reaches from the centre along the unit direction ``d`` (mm)."""
        return float(((self.surface() - self.centre[None, :]) @ d).max())

    def factor(self, n: np.ndarray) -> np.ndarray:
        """Radius factor 1 + amp * perturbation for unit directions ``n`` (..., 3) in the scaled frame."""
        proj = n @ self.waves.T
        return 1.0 + self.amp * (np.cos(np.pi * self.freq * proj + self.phase) * self.weight).sum(-1)

    def surface(self, n_dirs: np.ndarray | None = None) -> np.ndarray:
        """Points on the node surface (N, 3), chest mm."""
        n = _dirs() if n_dirs is None else n_dirs
        q = n * self.factor(n)[:, None] * self.radii[None, :]
        return self.centre[None, :] + q @ self.rot.T

    def ferets(self) -> tuple[float, float]:
        """Minimal and maximal caliper diameter (mm)."""
        p = self.surface()
        proj = p @ _dirs()[:200].T
        width = proj.max(0) - proj.min(0)
        return float(width.min()), float(width.max())

    def bound(self) -> float:
        return float(self.radii.max() * (1.0 + self.amp))

    def inside(self, u, v, w) -> np.ndarray:
        c = self.centre.astype(np.float32)
        du, dv, dw = u - c[0], v - c[1], w - c[2]
        rt = (self.rot.T / self.radii[:, None]).astype(np.float32)
        q = [rt[k, 0] * du + rt[k, 1] * dv + rt[k, 2] * dw for k in range(3)]
        rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        safe = np.maximum(rho, 1e-6)
        n = np.stack([q[0] / safe, q[1] / safe, q[2] / safe], axis=-1)
        return rho <= self.factor(n)


def _random_node(rng: np.random.Generator, target: bool, site: Site = DEFAULT) -> Node:
    k = 4
    waves = rng.normal(size=(k, 3))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)
    weight = rng.uniform(0.3, 1.0, k)
    weight /= weight.sum()
    if target:
        short = 10.8 + rng.gamma(2.0, 4.0)
        short = min(short, 28.0)
        radii = short / 2 * np.array([1.0, rng.uniform(1.05, 1.4), rng.uniform(1.1, 1.7)])
        radii = np.minimum(radii, 17.0)
        amp = rng.uniform(0.04, 0.12)
    else:
        rmax = rng.uniform(2.0, 3.6)
        radii = rmax * np.array([rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0), 1.0])
        amp = rng.uniform(0.03, 0.08)
    return Node(
        centre=np.zeros(3),
        radii=radii,
        rot=random_rotation(rng),
        amp=amp * site.node_irregularity,
        waves=waves,
        freq=rng.uniform(0.7, 2.0, k),
        phase=rng.uniform(0, 2 * np.pi, k),
        weight=weight,
        hu=float(np.clip(rng.normal(50.0, 9.0), 32.0, 68.0)) + site.node_hu_shift,
        target=target,
    )


def _sized_node(rng: np.random.Generator, target: bool, scale: float = 1.0, site: Site = DEFAULT) -> Node:
    """A random node whose Feret diameters obey the target / distractor rule (``scale`` shrinks it)."""
    for _ in range(50):
        node = _random_node(rng, target, site)
        node.radii = node.radii * scale
        dmin, dmax = node.ferets()
        if target and dmin < 10.3:
            node.radii = node.radii * (10.5 / dmin)
            dmin, dmax = node.ferets()
        if (target and dmin >= 10.3 and dmax <= 35.0) or (not target and dmax <= 8.0):
            return node
    raise RuntimeError("could not draw a node of the requested size")  # pragma: no cover


class _Placer:
    """Rejection sampling of node positions in mediastinal fat."""

    def __init__(self, a: Anatomy, cv: Canvas, rng: np.random.Generator) -> None:
        self.a, self.cv, self.rng = a, cv, rng
        self.stations = a.stations()
        names = list(self.stations)
        p = np.array([self.stations[k][2] for k in names])
        self.names, self.p = names, p / p.sum()
        self.vessels = [t for t in a.tubes if t.kind in ("artery", "vein")]
        vc = np.vstack([t.centres for t in self.vessels])
        vr = np.concatenate([t.radii for t in self.vessels])
        self.vessel_c, self.vessel_r = vc, vr
        oc = np.vstack([t.centres for t in a.tubes])
        orad = np.concatenate([t.radii for t in a.tubes])
        self.obst_c, self.obst_r = oc, orad
        lo, hi = cv.extent()
        margin = np.array([cv.spacing[0], cv.spacing[1], cv.spacing[2]]) * 0.5
        self.lo, self.hi = lo + margin, hi - margin
        self.placed: list[Node] = []

    def _near(self, p: np.ndarray, reach: float, centres, radii):
        keep = np.linalg.norm(centres - p[None, :], axis=1) < radii + reach + 5.0
        return centres[keep], radii[keep]

    def _ok(self, node: Node, partner: Node | None = None) -> tuple[bool, float]:
        a = self.a
        c, b = node.centre, node.bound()
        if np.any(c - b < self.lo) or np.any(c + b > self.hi):
            return False, np.inf
        for other in self.placed:
            if other is partner:  # placed against it by construction
                continue
            if np.linalg.norm(other.centre - c) < other.bound() + b + 2.0:
                return False, np.inf
        pts = node.surface(_dirs()[::2])
        u, v, w = pts[:, 0], pts[:, 1], pts[:, 2]
        if not a.in_thorax(c[0], c[1], c[2]) or a.lung_at(c[None])[0]:
            return False, np.inf
        if not np.all(a.in_thorax(u, v, w)) or a.lung_at(pts).mean() > 0.35:
            return False, np.inf
        if np.any(a.in_heart(u, v, w, grow=1.0)) or np.any(w < a.dome(u, v) + 3.0):
            return False, np.inf
        if np.any((np.abs(u) < 26.0) & (v > a.v_spine - 24.0)):
            return False, np.inf
        oc, orad = self._near(c, b, self.obst_c, self.obst_r)
        if len(oc) and spheres_sdf(pts, oc, orad).min() < 0.8:
            return False, np.inf
        vc, vr = self._near(c, b, self.vessel_c, self.vessel_r)
        gap = spheres_sdf(pts, vc, vr).min() if len(vc) else np.inf
        return True, float(gap)

    def place(self, node: Node, touch: bool, tries: int = 80) -> bool:
        for _ in range(tries):
            k = self.rng.choice(len(self.names), p=self.p)
            mean, sd, _ = self.stations[self.names[k]]
            node.centre = mean + self.rng.normal(0.0, 1.0, 3) * sd
            node.station = self.names[k]
            if touch:
                self._snap_to_vessel(node)
            ok, gap = self._ok(node)
            if ok:
                node.touches_vessel = bool(gap <= 2.0)
                self.placed.append(node)
                return True
        return False

    def place_against(self, node: Node, partner: Node, tries: int = 30) -> bool:
        """Place ``node`` touching ``partner`` (0.3-1.2 mm apart): a conglomerate of two nodes."""
        for _ in range(tries):
            d = self.rng.normal(size=3)
            d /= np.linalg.norm(d)
            gap = self.rng.uniform(0.3, 1.2)
            node.centre = np.zeros(3)
            reach = partner.support(d) + node.support(-d) + gap
            node.centre = partner.centre + reach * d
            node.station = partner.station
            ok, gap_vessel = self._ok(node, partner)
            if ok:
                node.touches_vessel = bool(gap_vessel <= 2.0)
                self.placed.append(node)
                return True
        return False

    def _snap_to_vessel(self, node: Node) -> None:
        """Move the node so its surface lies ~1 mm from the nearest vessel."""
        for _ in range(3):
            vc, vr = self._near(node.centre, node.bound() + 15.0, self.vessel_c, self.vessel_r)
            if not len(vc):
                return
            pts = node.surface(_dirs()[::8])
            d = np.sqrt(((pts[:, None, :] - vc[None]) ** 2).sum(-1)) - vr[None]
            i, j = np.unravel_index(np.argmin(d), d.shape)
            gap = d[i, j]
            direction = vc[j] - pts[i]
            direction /= max(np.linalg.norm(direction), 1e-6)
            node.centre = node.centre + direction * (gap - self.rng.uniform(0.8, 1.6))


def place_nodes(a: Anatomy, cv: Canvas, rng: np.random.Generator, site: Site = DEFAULT) -> list[Node]:
    """Draw targets (3-12, median ~8) and sub-centimetre distractors and place them without overlap.

    With ``site.cluster`` a target may be placed touching an earlier one (a conglomerate); then
    ``site.necrotic`` and ``site.calcified`` give some nodes a low-HU centre or calcifications.
    """
    placer = _Placer(a, cv, rng)
    n_targets = int(np.clip(np.round(rng.normal(8.0, 2.5)), 3, 12))
    n_small = int(rng.integers(3, 9))
    # big nodes first: they are the hardest to fit
    targets = sorted((_sized_node(rng, True, site=site) for _ in range(n_targets)), key=lambda n: -n.bound())
    for node in targets:
        placed_targets = [n for n in placer.placed if n.target]
        if site.cluster > 0 and placed_targets and rng.random() < site.cluster:
            partner = placed_targets[int(rng.integers(len(placed_targets)))]
            if placer.place_against(node, partner):
                continue
        touch = bool(rng.random() < 0.4)
        for attempt in range(3):  # a node that does not fit is redrawn smaller
            if placer.place(node, touch=touch, tries=50):
                break
            node = _sized_node(rng, True, scale=0.8 ** (attempt + 1), site=site)
    for _ in range(n_small):
        placer.place(_sized_node(rng, False, site=site), touch=bool(rng.random() < 0.3))
    for node in placer.placed:
        if site.necrotic > 0 and node.target and rng.random() < site.necrotic:
            node.core = float(rng.uniform(0.45, 0.7))
        if site.calcified > 0 and rng.random() < site.calcified:
            node.calcified = True
    return placer.placed


def paint_nodes(
    cv: Canvas, nodes: list[Node], rng: np.random.Generator, fat_hu: float = -90.0
) -> tuple[np.ndarray, dict]:
    """Paint nodes (HU with texture; necrotic centres and calcifications where drawn).

    Returns the instance map (uint16, node index + 1) and each painted node's index box by id.
    """
    inst = np.zeros(cv.shape, dtype=np.uint16)
    boxes = {}
    for i, node in enumerate(nodes):
        b = node.bound() + 6.0
        sl = cv.box(node.centre - b, node.centre + b)
        if sl is None:
            continue
        u, v, w = cv.coords(sl)
        # the node sits in a pad of mediastinal fat where it borders the lung
        pad = replace(node, radii=node.radii + float(rng.uniform(2.0, 5.0)))
        cv.paint(sl, pad.inside(u, v, w), fat_hu, C.MED_FAT, where=cv.cls[sl] == C.LUNG)
        mask = node.inside(u, v, w)
        if not mask.any():
            continue
        k = rng.normal(size=(3, 3)) / 6.0  # texture: ~6 mm blobs
        ph = rng.uniform(0, 2 * np.pi, 3)
        c = node.centre
        tex = sum(
            np.cos(k[j, 0] * (u - c[0]) + k[j, 1] * (v - c[1]) + k[j, 2] * (w - c[2]) + ph[j])
            for j in range(3)
        )
        hu = node.hu + 4.0 * tex
        if node.core > 0:  # necrosis: fluid-like centre
            core = replace(node, radii=node.radii * node.core).inside(u, v, w) & mask
            hu = np.where(core, rng.uniform(5.0, 20.0) + 2.0 * tex, hu)
        if node.calcified:  # 1-3 dense foci inside the node
            for _ in range(int(rng.integers(1, 4))):
                spot = node.centre + node.rot @ (rng.uniform(-0.5, 0.5, 3) * node.radii)
                r = rng.uniform(2.5, 4.5)
                d2 = (u - spot[0]) ** 2 + (v - spot[1]) ** 2 + (w - spot[2]) ** 2
                hu = np.where((d2 <= r * r) & mask, rng.uniform(500.0, 1000.0), hu)
        cv.paint(sl, mask, hu, C.NODE if node.target else C.SMALL_NODE)
        inst[sl][mask] = i + 1
        boxes[i + 1] = sl
    return inst, boxes
