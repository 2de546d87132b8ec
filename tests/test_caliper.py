"""The caliper geometry (caliper.py): the short axis is a caliper line at right angles to the long axis, in
mm, the longest of them, on the widest slice of tied long axes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ellipse_section

from lnq_napari.caliper import axial_axes, perpendicular_chord


def test_perpendicular_chord_is_a_caliper_line_not_the_width():
    """A kite with its long diagonal along x: the longest vertical chord is 3.75, its width across 6."""
    kite = np.array([[0.0, 0.0], [8.0, -3.0], [10.0, 0.0], [2.0, 3.0]])
    assert perpendicular_chord(kite, np.array([1.0, 0.0])) == pytest.approx(3.75)
    assert perpendicular_chord(kite[::-1], np.array([-1.0, 0.0])) == pytest.approx(3.75)
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    assert perpendicular_chord(square, np.array([1.0, 0.0])) == pytest.approx(4.0)  # edges along the line


def test_perpendicular_chord_is_the_longest_not_the_one_at_the_vertices_middle():
    """Many vertices near the thin end: the widest line (6 at x = 10) is far from their mean position."""
    poly = np.array([[0, 0], [1, -0.5], [2, -0.9], [3, -1.2], [10, -3], [10.5, 0], [10, 3]], float)
    assert perpendicular_chord(poly, np.array([1.0, 0.0])) == pytest.approx(6.0)


def test_equal_long_axes_on_two_slices_take_the_wider_slice_whichever_is_stored_first():
    mask = np.zeros((2, 5, 12), bool)
    mask[:, 2, 1:11] = True  # a 10-pixel bar on both slices: the same long axis
    mask[1, 1, 6] = True  # a bump on the second: 2 pixels across there
    assert axial_axes(mask, (0.7, 0.9)) == pytest.approx((7.0, 1.8))
    assert axial_axes(mask[::-1], (0.7, 0.9)) == pytest.approx((7.0, 1.8))


def _scanned_axes(plane: np.ndarray, spacing: tuple[float, float], lines: int = 2001) -> tuple[float, float]:
    """(long, short) of a convex node's slice by brute force: the outline's hull (edge midpoints), its
    longest chords, and across each the longest of ``lines`` lines at right angles (clipped to the hull)."""
    from scipy.spatial import ConvexHull

    ys, xs = np.nonzero(plane)
    half = np.array([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]])
    points = ((np.stack([xs, ys], 1)[:, None] + half[None]) * np.array(spacing)).reshape(-1, 2)
    hull = points[ConvexHull(points).vertices]
    gaps = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    short = 0.0
    for i, j in np.argwhere(np.triu(gaps >= gaps.max() - 1e-6, 1)):
        u = (hull[j] - hull[i]) / gaps[i, j]
        v = np.array([-u[1], u[0]])
        p, q = hull, np.roll(hull, -1, axis=0)
        for t in np.linspace((hull @ u).min(), (hull @ u).max(), lines)[1:-1]:
            a, b = p @ u - t, q @ u - t
            cut = (a * b <= 0) & (a != b)
            at = (p[cut] + (a[cut] / (a[cut] - b[cut]))[:, None] * (q[cut] - p[cut])) @ v
            short = max(short, float(at.max() - at.min()))
    return float(gaps.max()), short


@pytest.mark.parametrize("degrees", [30, 45, 60])
def test_caliper_is_at_right_angles_in_mm_on_rectangular_pixels(degrees):
    """A 24 x 6 mm ellipse on 0.6 x 0.9 mm pixels: the caliper is at right angles in mm, not in pixels
    (0.05-0.12 mm off), against a brute-force scan of the same outline."""
    spacing = (0.6, 0.9, 2.0)
    mask = ellipse_section((12.0, 3.0), spacing, math.radians(degrees), shape=(80, 80))[0] > 0
    long_axis, short_axis = axial_axes(mask[None], spacing[:2])
    reference = _scanned_axes(mask, spacing[:2])
    assert long_axis == pytest.approx(reference[0], abs=1e-9)
    assert short_axis == pytest.approx(reference[1], abs=0.01)


def test_a_comb_shaped_node_is_measured_in_bounded_memory():
    """An outline of thousands of segments with pockets (an untrained model's slice-wide blob): every
    caliper line against every segment in one array needed 24 GB and the kernel was killed; now blocks."""
    import tracemalloc

    comb = np.zeros((1, 80, 170), dtype=bool)
    comb[0, 70:78, 4:166] = True  # the back
    for x in range(4, 166, 4):
        comb[0, 8:70, x:x + 2] = True  # 41 teeth, 2 pixels wide, 2 apart
    tracemalloc.start()
    long_mm, short_mm = axial_axes(comb, (0.7, 0.7))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 300e6, f"{peak / 1e6:.0f} MB"
    assert 0.7 * 162 < long_mm <= math.hypot(0.7 * 162, 0.7 * 70) + 1.0 and 0.7 * 8 < short_mm < long_mm


def _dense_crossings(starts, ends, u, lines):
    """Every line against every segment: the plain rule :func:`_crossings` must reproduce exactly."""
    v = np.array([-u[1], u[0]])
    a = (starts @ u)[None, :] - lines[:, None]
    b = (ends @ u)[None, :] - lines[:, None]
    crosses = (a * b <= 0) & (a != b)
    w = np.divide(a, a - b, out=np.zeros_like(a), where=crosses)
    across0 = starts @ v
    at = across0[None, :] + w * (ends @ v - across0)[None, :]
    low, high = np.where(crosses, at, np.inf), np.where(crosses, at, -np.inf)
    first, last = low.argmin(axis=1), high.argmax(axis=1)
    rows = np.arange(len(lines))
    return low[rows, first], high[rows, last], first, last


@pytest.mark.parametrize("block", [1 << 20, 5])
def test_crossings_found_by_span_equal_every_line_against_every_segment(block, monkeypatch):
    """Pruning the segments to the lines in their span changes no figure, ties and blocks included."""
    from lnq_napari import caliper

    monkeypatch.setattr(caliper, "_BLOCK_CELLS", block)
    rng = np.random.default_rng(3)
    for trial in range(60):
        plane = rng.random((rng.integers(3, 30), rng.integers(3, 30))) > rng.uniform(0.2, 0.8)
        if not plane.any():
            continue
        starts, ends = caliper.outline_segments(plane, (0.7, [0.6, 0.9][trial % 2]))
        angle = [0.0, math.pi / 4, rng.uniform(0, math.pi)][trial % 3]  # along the grid: ties and overlaps
        u = np.array([math.cos(angle), math.sin(angle)])
        lines = rng.permutation(np.unique(np.concatenate([starts @ u, ends @ u, rng.uniform(-5, 30, 4)])))
        for got, want in zip(caliper._crossings(starts, ends, u, lines),
                             _dense_crossings(starts, ends, u, lines), strict=True):
            np.testing.assert_array_equal(got, want)


def test_caliper_work_grows_with_the_crossings_not_lines_x_segments(monkeypatch):
    """A ragged 200 x 200 blob (an untrained model's, with pockets): each caliper line meets only the
    outline segments in its span. With no limit on a block, memory stays small (every line against every
    segment in one array: 632 MB) and each call is one block of lines; with a limit, blocks hold about that
    many crossings (one block per line read every segment once per line: lines x segments again)."""
    import tracemalloc

    from scipy import ndimage

    from lnq_napari import caliper

    field = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((200, 200)), 4)
    parts, _ = ndimage.label(field > -0.02, np.ones((3, 3)))
    blob = (parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1)[None]
    calls = []  # per call of _crossings: its lines, crossings and blocks
    line_blocks = caliper._line_blocks

    def counted(ends_at, cells):
        blocks = line_blocks(ends_at, cells)
        calls.append((len(ends_at), int(ends_at[-1]) if len(ends_at) else 0, len(blocks)))
        return blocks

    monkeypatch.setattr(caliper, "_line_blocks", counted)
    monkeypatch.setattr(caliper, "_BLOCK_CELLS", 1 << 40)
    tracemalloc.start()
    unlimited = axial_axes(blob, (0.7, 0.7))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"
    assert calls and all(blocks == 1 for lines, _, blocks in calls if lines)
    assert max(lines for lines, *_ in calls) > 100  # many lines: one block per line would show
    calls.clear()
    monkeypatch.setattr(caliper, "_BLOCK_CELLS", 4096)
    assert axial_axes(blob, (0.7, 0.7)) == unlimited
    # two blocks in a row hold more than the limit (else they were one)
    assert all(blocks <= 2 * crossings / 4096 + 1 for _, crossings, blocks in calls), calls
    assert sum(blocks for *_, blocks in calls) > len(calls)  # the limit was reached
