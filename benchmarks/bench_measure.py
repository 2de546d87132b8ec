"""Node axes against known geometry: synthetic nodes measured by ``quantify.measure_nodes`` and by a
brute-force RECIST reference written here, an independent chord computation on the same outline, hull and
tie rule (per acquisition slice: the longest distance between outline points, and the longest caliper chord
of the hull at right angles to it, found by scanning 801 lines; equal longest chords: the widest). These
nodes have no pocket (a bend holding air), so the code's caliper is the hull's chord; non-convex nodes
(an L, a C) are tested in tests/test_quantify.py.

Cases: ellipsoids rotated 0-90 degrees in plane on 0.6 x 0.6 x 5, 0.7 x 0.7 x 1.25 and 0.7 x 0.9 x 2.5 mm
grids; a grid turned about z; a gantry-like tilt about x; LPS, RAS, feet-first and coronal storage; a node
cut by the image's edge; one slice thick; one voxel; two touching nodes of different labels; a necrotic
hole; a node largest on its top slice. Prints each case, the largest error against the true diameters
per group, and the largest difference from the reference on the same (edge-midpoint) outline.

    OMP_NUM_THREADS=1 python benchmarks/bench_measure.py
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.spatial import ConvexHull

from lnq_napari.io.volume import Volume
from lnq_napari.quantify import measure_nodes

Inside = Callable[[np.ndarray], np.ndarray]  # (n, 3) LPS mm relative to a centre -> (n,) bool

OUTLINES = {  # each labelled pixel's outline points, in half pixels
    "corner": np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]),
    "midpoint": np.array([[-1, 0], [1, 0], [0, -1], [0, 1]]),
}


def rot_z(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def make(shape: tuple[int, int, int], spacing: tuple[float, float, float], direction: np.ndarray,
         centre_mm: Sequence[float], inside: Inside) -> Volume:
    """Labels 1 where ``inside`` holds for the voxel centre (LPS mm, relative to ``centre_mm``)."""
    grid = Volume(np.zeros(shape, np.uint8), spacing, (0.0, 0.0, 0.0), tuple(np.ravel(direction)))
    points = grid.index_to_physical(np.indices(shape).reshape(3, -1).T) - np.asarray(centre_mm)
    return grid.with_array(inside(points).reshape(shape).astype(np.uint8))


def centre_of(shape: tuple[int, int, int], spacing: tuple[float, float, float], direction: np.ndarray,
              index_zyx: Sequence[float]) -> np.ndarray:
    """LPS mm of a (fractional) voxel index on a grid of ``shape``, ``spacing`` and ``direction``."""
    grid = Volume(np.zeros(shape, np.uint8), spacing, (0.0, 0.0, 0.0), tuple(np.ravel(direction)))
    return grid.index_to_physical(np.array([index_zyx]))[0]


def ellipsoid(a: float, b: float, c: float, theta: float = 0.0, frame: np.ndarray | None = None) -> Inside:
    turn = rot_z(theta) if frame is None else frame

    def inside(p: np.ndarray) -> np.ndarray:
        q = p @ turn
        return (q[:, 0] / a) ** 2 + (q[:, 1] / b) ** 2 + (q[:, 2] / c) ** 2 <= 1.0
    return inside


def chord(hull: np.ndarray, u: np.ndarray) -> float:
    """Longest chord of the convex polygon ``hull`` at right angles to ``u``, by scanning lines."""
    v = np.array([-u[1], u[0]])
    along, best = hull @ u, 0.0
    for t in np.linspace(along.min(), along.max(), 801):
        hits = []
        for k in range(len(hull)):
            p, q = hull[k], hull[(k + 1) % len(hull)]
            a, b = p @ u - t, q @ u - t
            if a == b == 0:
                hits += [p @ v, q @ v]
            elif a != b and a * b <= 0:
                hits.append((p + a / (a - b) * (q - p)) @ v)
        if len(hits) >= 2:
            best = max(best, max(hits) - min(hits))
    return best


def reference(vol: Volume, label: int, outline: str = "midpoint") -> tuple[float, float]:
    """(long, short) by brute force on the acquisition slices (the grid axis nearest patient z)."""
    k = int(np.argmax(np.abs(vol.direction_matrix[2, :])))  # grid axis along z; array axis 2 - k
    axis, spacing = 2 - k, np.asarray(vol.spacing)
    rest = [a for a in range(3) if a != axis]
    step = np.array([spacing[2 - a] for a in rest])
    best = (0.0, 0.0)
    for s in range(vol.shape[axis]):
        idx = np.argwhere(np.take(np.asarray(vol.array) == label, s, axis=axis))
        if not len(idx):
            continue
        points = (idx[:, None, :] * step + OUTLINES[outline] * step / 2).reshape(-1, 2)
        hull = points[ConvexHull(points).vertices]
        gaps = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
        long = float(gaps.max())
        short = max(chord(hull, (hull[j] - hull[i]) / gaps[i, j])
                    for i, j in np.argwhere(np.triu(gaps >= long - 1e-6, 1)))
        if long > best[0] + 1e-6 or (abs(long - best[0]) <= 1e-6 and short > best[1]):
            best = (long, short)
    return best


RESULTS: list[tuple[str, float, float, float, float]] = []


def record(group: str, name: str, truth: tuple[float, float], vol: Volume, label: int = 1) -> None:
    row = {r.id: r for r in measure_nodes(vol)}[label]
    ref = reference(vol, label)
    voxels = int((np.asarray(vol.array) == label).sum())
    assert abs(row.volume_mm3 - voxels * float(np.prod(vol.spacing))) < 1e-6
    errors = (row.long_axis_mm - truth[0], row.short_axis_mm - truth[1])
    RESULTS.append((group, *errors, row.long_axis_mm - ref[0], row.short_axis_mm - ref[1]))
    print(f"{name:44s} truth {truth[0]:6.2f} / {truth[1]:6.2f}  measured {row.long_axis_mm:6.2f} / "
          f"{row.short_axis_mm:6.2f}  reference {ref[0]:6.2f} / {ref[1]:6.2f}")


def cases() -> None:
    for sp in [(0.6, 0.6, 5.0), (0.7, 0.7, 1.25), (0.7, 0.9, 2.5)]:
        for a, b in [(12.0, 6.0), (7.5, 5.0), (5.0, 5.0)]:
            for deg in range(0, 91, 15):
                shape = (int(24 / sp[2]) + 5, 64, 64)
                centre = (32 * sp[0] + 0.13, 32 * sp[1] - 0.21, (shape[0] // 2) * sp[2])
                vol = make(shape, sp, np.eye(3), centre, ellipsoid(a, b, 10.0, math.radians(deg)))
                name = f"{2 * a:g} x {2 * b:g} mm at {deg} deg, {sp}"
                record(f"ellipsoids {sp}", name, (2 * a, 2 * b), vol)
    sp, shape = (0.7, 0.7, 1.25), (25, 64, 64)
    for deg in [10, 30, 45, 60]:
        d = rot_z(math.radians(deg))
        vol = make(shape, sp, d, centre_of(shape, sp, d, (12, 32.3, 31.8)), ellipsoid(9.0, 5.0, 8.0, 0.35))
        record("grid turned about z", f"grid turned {deg} deg about z", (18.0, 10.0), vol)
    for deg in [10, 20, 30]:
        d = rot_x(math.radians(deg))
        centre = centre_of(shape, sp, d, (12, 32.3, 31.8))
        record("tilt about x", f"tilt {deg} deg, sphere r 7", (14.0, 14.0),
               make(shape, sp, d, centre, lambda p: (p ** 2).sum(1) <= 49.0))
        record("tilt about x", f"tilt {deg} deg, ellipsoid along the grid", (20.0, 12.0),
               make(shape, sp, d, centre, ellipsoid(10.0, 6.0, 8.0, frame=d)))
    for name, d in [("LPS", np.eye(3)), ("RAS", np.diag([-1.0, -1.0, 1.0])),
                    ("feet first", np.diag([1.0, 1.0, -1.0])),
                    ("coronal", np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]))]:
        shp, spo = ((40, 40, 64), (0.7, 0.7, 0.7)) if name == "coronal" else (shape, sp)
        centre = centre_of(shp, spo, d, (np.array(shp) - 1) / 2 + 0.27)
        vol = make(shp, spo, d, centre, ellipsoid(9.0, 5.0, 8.0, 0.6))
        record("storage order", f"stored {name}", (18.0, 10.0), vol)
    sp = (0.6, 0.6, 5.0)
    vol = make((5, 40, 40), sp, np.eye(3), (1.2, 12.0, 10.0), lambda p: (p ** 2).sum(1) <= 64.0)
    record("cut by the edge", "sphere r 8, centre 2 pixels from the edge", reference(vol, 1, "corner"), vol)
    vol = make((3, 40, 40), sp, np.eye(3), (12.1, 12.0, 5.0),
               lambda p: ((p[:, 0] / 6) ** 2 + (p[:, 1] / 4) ** 2 <= 1) & (np.abs(p[:, 2]) < 1))
    record("one slice / voxel", "one-slice ellipse 12 x 8", (12.0, 8.0), vol)
    single = np.zeros((3, 10, 10), np.uint8)
    single[1, 4, 4] = 1
    record("one slice / voxel", "one voxel", (0.6, 0.6), Volume(single, sp))
    sp, shape = (0.7, 0.7, 1.25), (25, 64, 80)
    c1 = np.array([25 * 0.7, 32 * 0.7, 12 * 1.25])
    sphere = make(shape, sp, np.eye(3), c1, lambda p: (p ** 2).sum(1) <= 49.0)
    labels = np.asarray(sphere.array).astype(np.uint16)
    labels[np.asarray(make(shape, sp, np.eye(3), c1 + (14.0, 0.0, 0.0), ellipsoid(7, 4, 6)).array) > 0] = 2
    record("touching, 2 labels", "ellipsoid 14 x 8 touching a sphere", (14.0, 8.0), Volume(labels, sp), 2)
    solid = np.asarray(make(shape, sp, np.eye(3), c1, lambda p: (p ** 2).sum(1) <= 64.0).array)
    hole = np.asarray(make(shape, sp, np.eye(3), c1, lambda p: (p ** 2).sum(1) <= 16.0).array)
    record("necrotic hole", "sphere r 8 with a hole r 4", (16.0, 16.0), Volume(solid * (1 - hole), sp))
    sp, shape = (0.7, 0.7, 2.5), (20, 64, 64)

    def cone(p: np.ndarray) -> np.ndarray:
        r = 3 + p[:, 2] * 0.25  # radius 3 -> 10.5 mm over 30 mm, largest on the top slice
        return (p[:, 2] >= 0) & (p[:, 2] <= 30) & (p[:, 0] ** 2 + (p[:, 1] / 0.6) ** 2 <= r ** 2)
    record("largest off the middle", "cone, largest on its top slice", (21.0, 12.6),
           make(shape, sp, np.eye(3), (22.4, 22.4, 10.0), cone))


def main() -> None:
    cases()
    print()
    groups: dict[str, list[list[float]]] = {}
    for group, *errors in RESULTS:
        groups.setdefault(group, []).append(errors)
    for group, errors in groups.items():
        e = np.abs(np.array(errors))
        print(f"{group:34s} n={len(errors):3d}  max |error| long {e[:, 0].max():.2f} "
              f"short {e[:, 1].max():.2f} mm  (mean short error {np.mean([x[1] for x in errors]):+.2f})")
    e = np.abs(np.array([r[1:] for r in RESULTS]))
    print(f"all: max |error| long {e[:, 0].max():.2f} short {e[:, 1].max():.2f} mm; against the brute-force "
          f"reference on the same outline: long {e[:, 2].max():.4f} short {e[:, 3].max():.4f} mm")


if __name__ == "__main__":
    main()
