"""Caliper time on huge outlines (median of 3 runs), with the axes it gives (the same before and after a
speed-up): an untrained model's slice-wide blob on a 512 x 512 slice, 60 mm conglomerates on 0.6 mm pixels
(with and without a bay between lobes), and a comb (every caliper line crosses its teeth).

    OMP_NUM_THREADS=1 python benchmarks/bench_caliper_time.py
"""

import numpy as np
from _timing import median_seconds

from lnq_napari.caliper import axial_axes


def blob_slice() -> np.ndarray:
    """An untrained model's slice-wide blob: the largest piece of a noisy threshold of a smoothed random
    field on one 512 x 512 slice."""
    from scipy import ndimage
    rng = np.random.default_rng(0)
    f = ndimage.gaussian_filter(rng.standard_normal((512, 512)), 6)
    m = f > -0.02
    lab, n = ndimage.label(m, np.ones((3, 3)))
    big = np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return (lab == big)[None]


def conglomerate() -> np.ndarray:
    """A 60 mm conglomerate on 0.6 mm pixels: 14 overlapping discs, a pocket carved, 3 slices."""
    n = 120
    yy, xx = np.mgrid[:n, :n]
    m = np.zeros((n, n), bool)
    r2 = np.random.default_rng(1)
    for _ in range(14):
        cy, cx = r2.uniform(25, 95, 2)
        r = r2.uniform(10, 22)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    # carve some pockets
    m &= ~((yy > 50) & (yy < 70) & (xx > 100))
    return np.stack([m, m, m])


def comb() -> np.ndarray:
    """A comb on one 400 x 400 slice: every caliper line crosses its teeth."""
    m = np.zeros((1, 400, 400), bool)
    m[0, 10:30, 10:390] = True
    for x in range(10, 390, 6):
        m[0, 30:380, x:x + 3] = True
    return m


def conglomerate_pockets() -> np.ndarray:
    """A 60 mm conglomerate on 0.6 mm pixels: 9 lobes round a horseshoe (a bay of fat), 10 slices."""
    n = 110
    yy, xx = np.mgrid[:n, :n]
    r3 = np.random.default_rng(2)
    planes = []
    for z in range(10):
        m = np.zeros((n, n), bool)
        for k in range(9):
            t = np.pi * (0.15 + 0.7 * k / 8) * 2
            cy, cx = 55 + 32 * np.sin(t), 55 + 32 * np.cos(t)
            r = r3.uniform(13, 23) * (1 - abs(z - 4.5) / 12)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        planes.append(m)
    return np.stack(planes)


def main() -> None:
    """Time each outline's calipers and print them with the axes they give."""
    cases = {"conglomerate+pockets 60mm @0.6": (conglomerate_pockets(), (0.6, 0.6)),
             "blob 512x512 @0.7": (blob_slice(), (0.7, 0.7)),
             "conglomerate 60mm @0.6": (conglomerate(), (0.6, 0.6)),
             "comb 400x400 @0.6": (comb(), (0.6, 0.6))}
    for name, (mask, sp) in cases.items():
        seconds = median_seconds(lambda mask=mask, sp=sp: axial_axes(mask, sp), 3)
        res = axial_axes(mask, sp)
        print(f"{name:28s} pixels {int(mask.sum()):7d}  median {seconds:7.3f} s  axes {res[0]!r} {res[1]!r}",
              flush=True)


if __name__ == "__main__":
    main()
