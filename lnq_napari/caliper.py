"""Caliper geometry of a node's axial slices: the long axis and RECIST 1.1's short axis.

On each axial slice (of a (z, y, x) mask in LPS axis order) the node's outline is taken as the
marching-squares boundary (points half a pixel from each boundary pixel's centre along x and y, scaled by
the spacing); the *long axis* is the largest distance between two outline points over all slices (the
slice where the node is largest); the *short axis* is the longest caliper line across the node at right
angles to the long axis on that slice, as RECIST 1.1 measures a node. Each line runs from where it enters
the outline's convex hull to where it leaves it; where the hull bridges a pocket (a bend of the node
holding air: an outside pixel's centre inside the hull of the node's pixel centres, as in an L, V or
crescent) that end moves to the first (last) point where the line meets the outline. So a caliper spans a
hollow it crosses (C, U) but never ends in the air beyond the node; a digitised convex node has no pocket
and its caliper is the hull's chord (over its outline's staircase steps). Both axes are within about one
pixel of the true diameters of a digitised ellipse (short axis within about 0.7 mm on 0.6-0.9 mm pixels).
"""

from __future__ import annotations

import numpy as np

#: Lengths within this many mm are equal (float rounding only): tied chords, and a short axis at a
#: threshold (a 10 mm bar of 39 pixels of 10/39 mm read 9.999999999999998).
TIE_MM = 1e-6


#: Line-segment crossings handled in one block of :func:`_crossings`: its memory stays bounded (about 10
#: arrays of this many numbers) on an outline of thousands of segments (an untrained model's slice-wide
#: blob needed 24 GB when every line met every segment in one array).
_BLOCK_CELLS = 1 << 20


def _crossings(starts: np.ndarray, ends: np.ndarray, u: np.ndarray,
               lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the lines at right angles to ``u`` (at ``lines`` along it) meet segments ``starts`` to
    ``ends``: (first, last) position across ``u`` on each line (inf, -inf: none), and their segments (the
    lowest index among equals; 0 where none).

    Each segment meets only the lines within its span along ``u`` (found by sorting), so the work grows
    with the crossings, not with lines x segments (an untrained model's slice-wide blob took 24 s)."""
    v = np.array([-u[1], u[0]])
    start_u, end_u = starts @ u, ends @ u
    across0 = starts @ v
    across = ends @ v - across0
    order = np.argsort(lines, kind="stable")
    sorted_lines = lines[order]
    low_k = np.searchsorted(sorted_lines, np.minimum(start_u, end_u), "left")  # the lines in its span
    high_k = np.searchsorted(sorted_lines, np.maximum(start_u, end_u), "right")
    per_line = np.zeros(len(lines) + 1, dtype=np.int64)
    np.add.at(per_line, low_k, 1)
    np.add.at(per_line, high_k, -1)
    ends_at = np.cumsum(np.cumsum(per_line[:-1]))  # crossings up to each line, inclusive
    first = np.full(len(lines), np.inf)
    last = np.full(len(lines), -np.inf)
    first_seg = np.zeros(len(lines), dtype=np.int64)
    last_seg = np.zeros(len(lines), dtype=np.int64)
    for k0, k1 in _line_blocks(ends_at, _BLOCK_CELLS):
        seg = np.nonzero((low_k < k1) & (high_k > k0))[0]
        lo, hi = np.maximum(low_k[seg], k0), np.minimum(high_k[seg], k1)
        counts = hi - lo
        seg = np.repeat(seg, counts)
        k = np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
        line = sorted_lines[k]
        a, b = start_u[seg] - line, end_u[seg] - line
        # a segment along a line adds nothing: the segments that join its ends cross the line there
        crosses = (a * b <= 0) & (a != b)
        seg, k, a, b = seg[crosses], k[crosses], a[crosses], b[crosses]
        at = across0[seg] + (a / (a - b)) * across[seg]
        for reduce, none, out, out_seg in ((np.minimum, np.inf, first, first_seg),
                                           (np.maximum, -np.inf, last, last_seg)):
            best = np.full(k1 - k0, none)  # per line of the block: the nearest (farthest) crossing
            reduce.at(best, k - k0, at)
            lowest = np.full(k1 - k0, len(starts), dtype=np.int64)  # the lowest segment there
            on = at == best[k - k0]
            np.minimum.at(lowest, k[on] - k0, seg[on])
            met = lowest < len(starts)
            out[order[k0:k1][met]] = best[met]
            out_seg[order[k0:k1][met]] = lowest[met]
    return first, last, first_seg, last_seg


def _line_blocks(ends_at: np.ndarray, cells: int) -> list[tuple[int, int]]:
    """(first, end) of each block of the sorted lines, in order: as many lines as hold at most ``cells``
    crossings (``ends_at``: the crossings up to each line, inclusive), at least one line each."""
    blocks, k0 = [], 0
    while k0 < len(ends_at):
        done = ends_at[k0 - 1] if k0 else 0
        k1 = max(k0 + 1, int(np.searchsorted(ends_at, done + cells, "right")))
        blocks.append((k0, k1))
        k0 = k1
    return blocks


def perpendicular_chord(hull: np.ndarray, u: np.ndarray, pocket: np.ndarray | None = None,
                        outline: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Length (mm) of the longest caliper line across a node's slice at right angles to the unit vector
    ``u``: on each line, from where it enters the convex polygon ``hull`` ((n, 2) mm, vertices in order) to
    where it leaves; but an end on a hull edge that bridges a ``pocket`` (per edge, :func:`hull_pockets`)
    moves to the first (last) point where the line meets the ``outline`` (segments: starts, ends), so the
    caliper spans a hollow it crosses but ends on the node. The length is linear between the vertices'
    positions along ``u``, so the longest is at one."""
    ring = np.roll(hull, -1, axis=0)
    pocket = np.zeros(len(hull), dtype=bool) if pocket is None or outline is None else pocket
    positions = [hull @ u] + ([outline[0] @ u, outline[1] @ u] if pocket.any() else [])
    lines = np.unique(np.concatenate(positions))
    first, last, edge_first, edge_last = _crossings(hull, ring, u, lines)
    if pocket.any():
        node_first, node_last, _, _ = _crossings(*outline, u, lines)
        first = np.where(pocket[edge_first], node_first, first)
        last = np.where(pocket[edge_last], node_last, last)
    return float((last - first).max())


def hull_pockets(plane: np.ndarray, hull: np.ndarray, spacing_xy: tuple[float, float],
                 centres: np.ndarray | None = None) -> np.ndarray:
    """Per edge of a slice's outline ``hull`` (vertices counter-clockwise, mm): whether it bridges a pocket,
    an air pixel open to the outside whose centre lies strictly inside the convex hull of the node's pixel
    centres (``centres``: those of its boundary pixels, mm, if known), this edge the nearest to it (or as
    near as any). A digitised convex node (pixels whose centres lie in a convex shape) has none: no other
    pixel centre lies in its centres' hull."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    none = np.zeros(len(hull), dtype=bool)
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    if centres is None:
        ys, xs = np.nonzero(plane)
        centres = np.stack([xs * sx, ys * sy], axis=1)
    try:
        inner = centres[ConvexHull(centres).vertices]
    except QhullError:  # fewer than 3 pixels, or a line of them
        return none
    # each row's span strictly inside the centres' hull (a convex polygon: one interval per row)
    y = np.arange(plane.shape[0]) * sy
    x0, y0 = inner[:, 0], inner[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    d = (y0[None] - y[:, None]) * (y1[None] - y[:, None])
    cut = (d <= 0) & (y0 != y1)[None]
    x = x0[None] + np.divide(y[:, None] - y0[None], (y1 - y0)[None], out=np.zeros(d.shape),
                             where=cut) * (x1 - x0)[None]
    left = np.where(cut, x, np.inf).min(axis=1)[:, None] + TIE_MM
    right = np.where(cut, x, -np.inf).max(axis=1)[:, None] - TIE_MM
    rows = (y > y0.min() + TIE_MM) & (y < y0.max() - TIE_MM)
    xs = np.arange(plane.shape[1])[None] * sx
    inside = rows[:, None] & (xs > left) & (xs < right) & ~plane
    if inside.any():  # but not in a hole of the node
        inside &= ~ndimage.binary_fill_holes(plane)
    if not inside.any():
        return none
    ys, xs = np.nonzero(inside)
    edge = np.roll(hull, -1, axis=0) - hull
    rel = np.stack([xs * sx, ys * sy], axis=1)[:, None, :] - hull[None]
    t = np.clip((rel * edge[None]).sum(-1) / (edge * edge).sum(-1)[None], 0.0, 1.0)
    distance = np.linalg.norm(rel - t[..., None] * edge[None], axis=-1)
    return (distance <= distance.min(axis=1, keepdims=True) + TIE_MM).any(axis=0)  # ties: both edges


#: Marching squares on a 2 x 2 cell of pixels (top-left, top-right, bottom-right, bottom-left inside):
#: the cell edges (0 top, 1 right, 2 bottom, 3 left) each outline segment joins. Two inside pixels
#: touching by a corner are one node (26-connectivity), so the outline passes between them and the others.
def _cell_edges() -> dict[int, tuple[tuple[int, int], ...]]:
    edges = {}
    for case in range(1, 15):
        tl, tr, br, bl = ((case >> k) & 1 for k in range(4))
        cut = [e for e, (p, q) in enumerate([(tl, tr), (tr, br), (bl, br), (tl, bl)]) if p != q]
        if len(cut) == 2:
            edges[case] = (tuple(cut),)
        elif tl:  # top-left and bottom-right inside: cut off the other two corners
            edges[case] = ((0, 1), (2, 3))
        else:
            edges[case] = ((0, 3), (1, 2))
    return edges


_CELL_EDGES = _cell_edges()


def outline_segments(plane: np.ndarray, spacing_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) (n, 2) mm (x, y) of the marching-squares outline of a 2D mask: segments joining the
    midpoints between an inside pixel's centre and an outside neighbour's, pixel (0, 0)'s centre at 0."""
    padded = np.pad(np.asarray(plane, dtype=bool), 1)
    case = (padded[:-1, :-1] * 1 + padded[:-1, 1:] * 2 + padded[1:, 1:] * 4 + padded[1:, :-1] * 8)
    i, j = np.nonzero((case > 0) & (case < 15))
    codes = case[i, j]
    # midpoints of the cell's edges in padded pixel units (x, y): top, right, bottom, left
    mid = np.stack([np.stack([j + 0.5, i + 0.0], 1), np.stack([j + 1.0, i + 0.5], 1),
                    np.stack([j + 0.5, i + 1.0], 1), np.stack([j + 0.0, i + 0.5], 1)], axis=1)
    starts, ends = [], []
    for code, pairs in _CELL_EDGES.items():
        cells = mid[codes == code]
        for e, f in pairs:
            starts.append(cells[:, e])
            ends.append(cells[:, f])
    scale = np.array([float(spacing_xy[0]), float(spacing_xy[1])])
    return (np.concatenate(starts) - 1.0) * scale, (np.concatenate(ends) - 1.0) * scale


def axial_axes(mask: np.ndarray, spacing_xy: tuple[float, float]) -> tuple[float, float]:
    """(long, short) axis in mm of a (z, y, x) node mask, RECIST style over its axial slices."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull

    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    offsets = np.array([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]]) * np.array([sx, sy])
    hulls = []  # (each slice, its boundary pixels' centres, its outline's hull, the hull's chord lengths)
    for plane in mask:
        if not plane.any():
            continue
        edge = plane & ~ndimage.binary_erosion(plane)
        ys, xs = np.nonzero(edge)
        centres = np.stack([xs * sx, ys * sy], axis=1)
        points = (centres[:, None, :] + offsets[None]).reshape(-1, 2)
        hull = points[ConvexHull(points).vertices]
        hulls.append((plane, centres, hull, np.linalg.norm(hull[:, None] - hull[None], axis=-1)))
    if not hulls:
        return 0.0, 0.0
    # longest chords of equal length, on one slice or several (a grid's symmetry, up to rounding): the
    # widest across, whichever order the voxels are stored in (the first found depended on it: a mirrored
    # copy's short axis differed by 1.3 mm)
    longest = max(float(gaps.max()) for *_, gaps in hulls)
    short = 0.0
    for plane, centres, hull, gaps in hulls:
        ties = np.argwhere(np.triu(gaps >= longest - TIE_MM, k=1))
        if len(ties):
            pocket = hull_pockets(plane, hull, (sx, sy), centres)
            outline = outline_segments(plane, (sx, sy)) if pocket.any() else None
            for i, j in ties:
                u = (hull[j] - hull[i]) / gaps[i, j]
                short = max(short, perpendicular_chord(hull, u, pocket, outline))
    return longest, short
