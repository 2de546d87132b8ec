"""Centrelines of the great vessels, airway and oesophagus, and the pulmonary vessel trees.

Positions are in chest coordinates (mm; ``u`` left, ``v`` posterior, ``w`` superior, carina at 0),
relative to the trachea depth ``vt`` and the spine depth ``vsp``, jittered and scaled per case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnq_napari.phantom.canvas import tube

TREE_STEP = 0.9  # lung-tree sample spacing, in vessel radii


@dataclass
class Tube:
    """A vessel or airway: sphere centres along its centreline and their radii (mm)."""

    name: str
    centres: np.ndarray
    radii: np.ndarray
    kind: str  # "artery", "vein", "airway", "esophagus"
    halo: np.ndarray | None = None  # mediastinal fat margin around each sphere (mm)


def centrelines(rng, s, vt, vsp, j, su: float = 1.0, halo_scale: float = 1.0) -> list[Tube]:
    """Centrelines (mm) of the great vessels, airway and oesophagus, jittered per case.

    ``su`` scales them left-right (a narrower mediastinum), ``halo_scale`` their fat margins.
    """
    top = 400.0
    vd = vsp - 20.0  # descending aorta depth
    bottom = -400.0
    r = lambda x: x * s * rng.uniform(0.9, 1.1)  # noqa: E731
    p = lambda *xyz: np.array(xyz, dtype=float) * np.array([s * su, 1.0, s])  # noqa: E731
    specs = [
        ("trachea", "airway", [p(j(2), vt, top), p(j(2), vt, 60), p(0, vt, 0)], [r(10.0)] * 3),
        ("bronchus_r", "airway", [p(0, vt, 0), p(-20, vt + 2, -12), p(-38, vt + 4, -26)], [r(8.0)] * 3),
        ("bronchus_l", "airway", [p(0, vt, 0), p(26, vt + 4, -14), p(48, vt + 8, -34)], [r(7.5)] * 3),
        (
            "lobar_rul",
            "airway",
            [p(-30, vt + 3, -18), p(-55, vt, -5), p(-75, vt - 5, 10)],
            [r(5.5), r(4.5), r(3.5)],
        ),
        (
            "lobar_rll",
            "airway",
            [p(-38, vt + 4, -26), p(-55, vt + 10, -60), p(-65, vt + 15, -95)],
            [r(6.0), r(5.0), r(3.5)],
        ),
        (
            "lobar_lul",
            "airway",
            [p(40, vt + 6, -26), p(62, vt - 5, -15), p(80, vt - 15, 0)],
            [r(5.5), r(4.5), r(3.5)],
        ),
        (
            "lobar_lll",
            "airway",
            [p(48, vt + 8, -34), p(60, vt + 14, -65), p(68, vt + 20, -100)],
            [r(6.0), r(5.0), r(3.5)],
        ),
        (
            "esophagus",
            "esophagus",
            [p(2 + j(2), vsp - 30, top), p(6, vsp - 30, -60), p(14, vsp - 35, bottom)],
            [r(8.0)] * 3,
        ),
        (
            "aorta",
            "artery",
            [
                p(-5 + j(), vt - 48, -50),
                p(-6, vt - 47, 10),
                p(0, vt - 40, 38),
                p(16, vt - 20, 46),
                p(30, vt + 5, 36),
                p(28, vd, 15),
                p(26, vd, -60),
                p(18, vd - 5, bottom),
            ],
            [r(15.0)] * 3 + [r(13.0)] * 2 + [r(11.5)] * 3,
        ),
        (
            "brachiocephalic",
            "artery",
            [p(4, vt - 38, 44), p(-10, vt - 38, 70), p(-22, vt - 30, top)],
            [r(6.5)] * 3,
        ),
        ("carotid_l", "artery", [p(14, vt - 28, 48), p(16, vt - 26, 75), p(20, vt - 20, top)], [r(4.5)] * 3),
        ("subclavian_l", "artery", [p(24, vt - 12, 44), p(32, vt - 8, 70), p(45, vt - 5, top)], [r(5.0)] * 3),
        (
            "pa_trunk",
            "artery",
            [p(25, vt - 75, -55), p(30, vt - 62, -30), p(30, vt - 50, -12)],
            [r(14.0)] * 3,
        ),
        (
            "pa_left",
            "artery",
            [p(30, vt - 50, -12), p(45, vt - 25, -8), p(62, vt - 8, -14), p(80, vt, -22)],
            [r(11.0), r(10.0), r(9.0), r(7.0)],
        ),
        (
            "pa_right",
            "artery",
            [
                p(30, vt - 50, -12),
                p(5, vt - 28, -20),
                p(-25, vt - 22, -22),
                p(-55, vt - 15, -25),
                p(-80, vt - 10, -28),
            ],
            [r(11.0), r(10.5), r(10.0), r(9.0), r(7.0)],
        ),
        (
            "svc",
            "vein",
            [p(-34 + j(), vt - 35, top), p(-34, vt - 35, 20), p(-32, vt - 38, -45)],
            [r(10.0)] * 3,
        ),
        (
            "brachiocephalic_v_l",
            "vein",
            [p(45, vt - 40, 90), p(10, vt - 52, 70), p(-30, vt - 40, 55)],
            [r(6.5)] * 3,
        ),
        (
            "azygos",
            "vein",
            [
                p(-12, vsp - 23, bottom),
                p(-12, vsp - 23, -10),
                p(-16, vt + 14, 8),
                p(-22, vt - 5, 14),
                p(-30, vt - 25, 16),
                p(-34, vt - 35, 14),
            ],
            [r(4.5)] * 6,
        ),
        (
            "ivc",
            "vein",
            [p(-25, vt - 25, -105), p(-22, vsp - 35, -150), p(-22, vsp - 35, bottom)],
            [r(11.0)] * 3,
        ),
        ("pulm_vein_rs", "vein", [p(-60, vt + 5, -45), p(-25, vt + 8, -60)], [r(7.0)] * 2),
        ("pulm_vein_ls", "vein", [p(60, vt + 5, -50), p(30, vt + 10, -62)], [r(7.0)] * 2),
    ]
    halo = {
        "trachea": 7,
        "bronchus_r": 6,
        "bronchus_l": 6,
        "esophagus": 6,
        "aorta": 10,
        "brachiocephalic": 7,
        "carotid_l": 6,
        "subclavian_l": 6,
        "pa_trunk": 8,
        "pa_left": 7,
        "pa_right": 7,
        "svc": 7,
        "brachiocephalic_v_l": 6,
        "pulm_vein_rs": 4,
        "azygos": 3,
        "pulm_vein_ls": 4,
    }
    out = []
    for name, kind, pts, rads in specs:
        centres, radii = tube(np.asarray(pts), np.asarray(rads))
        t = Tube(name, centres, radii, kind)
        if name in halo:
            # fat margin, thinning towards the hila so the lungs keep their shape
            taper = np.clip(1.0 - (np.abs(centres[:, 0]) - 40.0) / 35.0, 0.15, 1.0)
            t.halo = halo[name] * rng.uniform(0.6, 1.5) * halo_scale * taper
        out.append(t)
    return out


def lung_trees(rng: np.random.Generator, tubes: list[Tube], in_lung) -> list[Tube]:
    """Branching pulmonary arteries and veins from the hila out into each lung (sphere samples).

    Grown breadth-first and vectorised: each generation every branch tip proposes a segment, bends
    back (up to four tries) when it would leave the lung, then splits in two thinner children.
    """
    by_name = {t.name: t for t in tubes}
    p, d, r, kind = [], [], [], []
    for name in ("pa_right", "pa_left"):
        t = by_name[name]
        end, before = t.centres[-1], t.centres[-len(t.centres) // 6]
        axis = (end - before) / np.linalg.norm(end - before)
        for lobe in (
            (0.0, -0.2, 1.0),
            (0.0, 0.3, -1.0),
            (0.0, -0.6, -0.2),
            (0.0, 0.8, 0.1),
            (0.0, 0.5, 1.0),
            (0.0, -0.5, -1.0),
        ):
            p.append(end), d.append(axis + np.asarray(lobe)), r.append(t.radii[-1] * 0.8), kind.append(0)
    for name in ("pulm_vein_rs", "pulm_vein_ls"):
        t = by_name[name]
        start, nxt = t.centres[0], t.centres[min(4, len(t.centres) - 1)]
        axis = (start - nxt) / np.linalg.norm(start - nxt)
        for lobe in ((0.0, 0.3, -0.8), (0.0, -0.3, 0.6), (0.0, 0.6, 0.0), (0.0, -0.6, -0.6)):
            p.append(start), d.append(axis + np.asarray(lobe)), r.append(t.radii[0] * 0.8), kind.append(1)
    p, d, r, kind = np.array(p), np.array(d), np.array(r), np.array(kind)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    centres, radii, kinds = [], [], []
    for _ in range(14):
        if not len(p):
            break
        length = np.maximum(r * rng.uniform(3.5, 6.0, len(r)), 5.0)
        ok = np.zeros(len(p), bool)
        new_d = d.copy()
        for attempt in range(4):
            todo = ~ok
            trial = d[todo] + rng.normal(0.0, 0.2 + 0.3 * attempt, (int(todo.sum()), 3))
            trial /= np.linalg.norm(trial, axis=1, keepdims=True)
            q = p[todo] + length[todo, None] * trial
            inside = in_lung(q[:, 0], q[:, 1], q[:, 2])
            idx = np.nonzero(todo)[0][inside]
            new_d[idx] = trial[inside]
            ok[idx] = True
        p, d, r, kind, length = p[ok], new_d[ok], r[ok], kind[ok], length[ok]
        if not len(p):
            break
        n = np.maximum((length / (TREE_STEP * r)).astype(int) + 1, 2)
        seg = np.repeat(np.arange(len(p)), n)
        starts = np.repeat(np.cumsum(n) - n, n)
        t = (np.arange(int(n.sum())) - starts) / np.repeat(n - 1, n)
        centres.append(p[seg] + (t * length[seg])[:, None] * d[seg])
        radii.append(r[seg])
        kinds.append(kind[seg])
        grow = r >= 0.75
        p, d, r, kind = (p + length[:, None] * d)[grow], d[grow], r[grow], kind[grow]
        perp = np.cross(d, rng.normal(size=d.shape))
        perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-9)
        ang = np.deg2rad(rng.uniform(20.0, 40.0, (2, len(p))))[..., None]
        d = np.concatenate(
            [np.cos(ang[0]) * d - np.sin(ang[0]) * perp, np.cos(ang[1]) * d + np.sin(ang[1]) * perp]
        )
        p, kind = np.concatenate([p, p]), np.concatenate([kind, kind])
        r = np.concatenate([r, r]) * rng.uniform(0.74, 0.88, 2 * len(r))
    if not centres:
        return []
    c, rr, k = np.vstack(centres), np.concatenate(radii), np.concatenate(kinds)
    return [Tube(f"lung_{name}", c[k == i], rr[k == i], name) for i, name in enumerate(("artery", "vein"))]
