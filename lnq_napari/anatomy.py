"""The chest's anatomy on a coarse copy of a CT: body, lungs, the padding outside the field of view, the
chest ROI and the mediastinum region.

:func:`coarse_anatomy` finds body and lungs on a ~3 mm copy (the image edges and the edge of a padded field
of view, a scanner's circle or straight sides, closed where they cut a lung); :func:`find_roi` crops to the
lungs for the network, and :func:`mediastinum_region` draws where mediastinal nodes can be.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lnq_napari.components import within_mm
from lnq_napari.io.orientation import from_lps, to_lps
from lnq_napari.io.volume import Volume


@dataclass
class RoiConfig:
    """How :func:`find_roi` finds the chest ROI: the lungs' bounding box ("lungs_bbox") or the whole CT
    ("none"), and the HU and sizes of its lungs and body."""

    rule: str = "lungs_bbox"
    lung_hu: float = -500.0
    body_hu: float = -300.0
    margin_mm: float = 15.0
    min_lung_ml: float = 50.0
    extras: dict = field(default_factory=dict)


#: The edge of the field of view on a coarse slice: the voxels in view next to the padding as (ys, xs,
#: closed) pieces in order around the view's centre, and that centre (y, x) (:func:`_edge_of`).
ViewEdge = tuple[list[tuple[np.ndarray, np.ndarray, bool]], tuple[float, float]]


@dataclass
class Anatomy:
    """Coarse (~3 mm) masks of a CT: ``body``, ``lungs`` and ``mediastinum`` (the per-slice convex hull
    of the lungs, where mediastinal nodes live), ``outside`` the field of view (the padding; None: none)
    and ``view``, the view's edge per slice that has padding; ``small``, the coarse copy of the CT they were
    found on (None: not kept). ``step`` maps the coarse grid to the CT index grid."""

    step: tuple[int, int, int]
    shape: tuple[int, int, int]
    body: np.ndarray
    lungs: np.ndarray
    outside: np.ndarray | None = None
    view: dict[int, ViewEdge] = field(default_factory=dict)
    small: np.ndarray | None = None

    @cached_property
    def near_edge(self) -> np.ndarray:
        """bool (coarse z y x): the voxels within :data:`CUT_LUNG_REACH` of the view's edge (an image edge,
        the padding ``outside``)."""
        from scipy import ndimage

        near = np.zeros(self.lungs.shape, dtype=bool)
        near[:, :CUT_LUNG_REACH] = near[:, -CUT_LUNG_REACH:] = True
        near[:, :, :CUT_LUNG_REACH] = near[:, :, -CUT_LUNG_REACH:] = True
        if self.outside is not None:
            near |= ndimage.binary_dilation(self.outside, _PLANE, iterations=CUT_LUNG_REACH)
        return near

    @cached_property
    def mediastinum(self) -> np.ndarray:
        """The lungs' per-slice convex hull (a slice with fewer than 4 lung voxels: none); made when
        first asked for (the ROI and the mediastinum region do without it)."""
        from skimage.morphology import convex_hull_image

        hull = np.zeros_like(self.lungs)
        for z in range(self.lungs.shape[0]):
            if self.lungs[z].sum() >= 4:
                hull[z] = convex_hull_image(self.lungs[z])
        return hull

    def upsample(self, mask: np.ndarray) -> np.ndarray:
        """A coarse mask on the full index grid (nearest), filled a coarse slice at a time: no
        full-size intermediate arrays."""
        sz, sy, sx = self.step
        out = np.empty(self.shape, dtype=mask.dtype)
        for k in range(min(mask.shape[0], -(-self.shape[0] // sz))):
            plane = np.repeat(np.repeat(mask[k], sy, axis=0), sx, axis=1)
            out[k * sz : (k + 1) * sz] = plane[: self.shape[1], : self.shape[2]]
        return out


#: Connects voxels within a slice only (face neighbours), so 3D calls work slice by slice.
_PLANE = np.zeros((3, 3, 3), dtype=bool)
_PLANE[1, 1, :] = _PLANE[1, :, 1] = True


def coarse_anatomy(hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                   roi: RoiConfig | None = None, seal: int = 0) -> Anatomy:
    """Body, lungs and (when asked for) the mediastinum region on a ~3 mm copy of ``hu`` (cheap for any
    CT size).

    ``seal`` (coarse voxels): close gaps in a thin chest wall this wide before filling the body, so
    the lungs of a slender patient do not leak into the air outside. The image edges and the edge of a
    padded field of view (a scanner's circle, a rotated or shifted frame: the padding outside it,
    :func:`outside_view`, kept as ``outside``) are closed where they cut a lung (:func:`_edges_sealed`,
    :func:`_view_sealed`), so a lung cut by them is not taken for the air outside."""
    from scipy import ndimage

    roi = roi or RoiConfig()
    step = tuple(max(1, int(round(3.0 / s))) for s in spacing_zyx)
    small = np.array(hu[:: step[0], :: step[1], :: step[2]])  # a copy: the full CT is not kept alive
    body = body_of(small, roi.body_hu)
    if seal:  # the image edge grows no wall (over a lung it cuts: 3 voxels deep), nor wears it away
        grown = ndimage.binary_dilation(body, _PLANE, iterations=seal, border_value=0)
        wall = ndimage.binary_erosion(grown, _PLANE, iterations=seal, border_value=1)
    else:
        wall = body
    wall = _edges_sealed(wall, body)
    outside = outside_view(small, roi, tuple(s * st for s, st in zip(spacing_zyx[1:], step[1:])))
    view = _view_edges(outside)
    if view:  # a scan circle: its edge cuts the chest as an image edge does
        wall = _view_sealed(wall, body, outside, view)
    filled = _holes_filled(wall, _PLANE) & (body | ~wall)
    lungs = ndimage.binary_opening(filled & (small < roi.lung_hu), _PLANE, iterations=1)
    return Anatomy(step, tuple(hu.shape), filled, lungs, outside if outside.any() else None, view, small)


#: Values below this (HU) were never measured: the padding a scanner writes outside its circular field of
#: view (-3024, -2048, -2000), far below air (-1000; noise rarely reaches -1100).
OUTSIDE_VIEW_HU = -1500.0


def outside_view(small: np.ndarray, roi: RoiConfig | None = None,
                 spacing_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """bool (z y x): the padding outside the field of view of ``small`` (a CT, z y x; ``spacing_yx``: its
    pixel size, mm), where it reaches the image edge (not a metal artefact's streak inside the body): values
    below :data:`OUTSIDE_VIEW_HU`, and a padding that looks like air (-1024, -1000): an air-like value
    (below ``roi.lung_hu``) that a corner holds on every slice (:func:`_corner_values`), where every slice
    holds exactly it (measured air is noisy and never the same value through all slices) and the view's
    edge beside it is a circle (a scanner's, :func:`_on_circle`) or a few straight sides (a CT rotated,
    shifted or cropped and filled with -1024, :func:`_on_lines`); a CT masked to the body holds it outside
    the body's outline, which is neither."""
    roi = roi or RoiConfig()
    outside = _reaching_edge(small < OUTSIDE_VIEW_HU)
    if small.ndim != 3 or min(small.shape) < 2:
        return outside
    below = outside.all(axis=0)  # the padding below -1500 on every slice: an air-like one may lie beyond it
    for value in _corner_values(small, roi.lung_hu):
        held = _reaching_edge(np.logical_and.reduce(small == value, axis=0)[None])
        if _on_circle(held[0] | below, spacing_yx) or _on_lines(held[0] | below, held[0]):
            outside |= held | _rim(held[0], below, small, roi.body_hu)
    return outside


def _rim(held: np.ndarray, below: np.ndarray, small: np.ndarray, body_hu: float) -> np.ndarray:
    """bool (z y x): the voxels in view next to an air-like padding ``held`` (y x) that are no body on their
    slice but border it: where a tool resampled the CT with linear interpolation (a rotation, a sub-voxel
    shift) they blend padding with tissue, a rim of no body that kept the view's edge from meeting the body
    it cuts. Lung and air beside the padding stay in view (review: a lung beside a sharp -1024 circle lost a
    second voxel, and thin slivers of it, to the rim)."""
    from scipy import ndimage

    ys, xs = _next_to(held)
    rim = np.zeros(held.shape, dtype=bool)
    rim[ys, xs] = True
    blend = rim[None] & ~below[None] & (small <= body_hu)
    return blend & ndimage.binary_dilation(small > body_hu, _PLANE)


def _corner_values(small: np.ndarray, below_hu: float) -> list[float]:
    """The air-like values (from :data:`OUTSIDE_VIEW_HU` to ``below_hu``) that a corner of ``small`` (z y x)
    holds on every slice: a padding's, where it covers that corner (measured air is noisy)."""
    corners = small[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    held = (corners == corners[0]).all(axis=0) & (corners[0] >= OUTSIDE_VIEW_HU) & (corners[0] < below_hu)
    return sorted(set(corners[0][held].tolist()))


def _reaching_edge(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` (z y x) that reach a slice's edge."""
    return ~_holes_filled(~mask, _PLANE)


#: Padding ends on a circle when the voxels in view next to it lie this close (voxels, of the larger pixel
#: side) to one circle.
VIEW_CIRCLE_VOXELS = 2.0


def _on_circle(padding: np.ndarray, spacing_yx: tuple[float, float] = (1.0, 1.0)) -> bool:
    """Whether the voxels in view next to ``padding`` (y x; ``spacing_yx``: pixel size) lie on one circle
    in mm (:data:`VIEW_CIRCLE_VOXELS`; fitted, so the image edge may cut it; a circle is an ellipse in
    indices where pixels are not square)."""
    ys, xs = _next_to(padding)
    if ys.size < 3:
        return False
    ys, xs = ys * float(spacing_yx[0]), xs * float(spacing_yx[1])
    (d, e, f), *_ = np.linalg.lstsq(np.stack([ys, xs, np.ones_like(ys)], 1), -(ys**2 + xs**2), rcond=None)
    cy, cx = -d / 2, -e / 2
    radius = np.sqrt(max(cy**2 + cx**2 - f, 0.0))
    return bool(np.abs(np.hypot(ys - cy, xs - cx) - radius).max() <= VIEW_CIRCLE_VOXELS * max(spacing_yx))


#: Padding ends on straight lines (a CT rotated or shifted in its grid, the corners or a side filled with
#: -1024) when the edge of the view beside it splits into at most this many straight sides, ...
VIEW_SIDES = 8
#: ... each within this many voxels of the line between its ends (a staircase line: 1.4) ...
VIEW_LINE_VOXELS = 2.0
#: ... at least this many voxels long (measured air clipped at -1024 breaks into specks) ...
VIEW_SIDE_VOXELS = 4
#: ... and bowed by at most this many voxels (a parabola fitted along it: a staircase line 0-0.35, a body's
#: outline cut into a few sides 1.4 or more).
VIEW_BOW_VOXELS = 0.75


def _on_lines(padding: np.ndarray, facing: np.ndarray | None = None) -> bool:
    """Whether the edge of the view beside ``padding`` (y x) is made of a few long straight sides
    (:data:`VIEW_SIDES`): a body's outline curves, measured air breaks into short pieces. ``facing``: judge
    only the edge facing this part of the padding (an air-like frame inside a scanner's circle: the circle's
    arcs are no side)."""
    sides: list[np.ndarray] = []
    for ys, xs, closed in _edge_of(padding, facing)[0]:
        points = np.stack([ys, xs], axis=1).astype(float)
        if closed:  # split a closed edge where it lies farthest from its start
            far = int(np.argmax(np.hypot(*(points - points[0]).T)))
            sides += _sides(points[: far + 1], VIEW_SIDES) + _sides(points[far:], VIEW_SIDES)
        else:
            sides += _sides(points, VIEW_SIDES)
        if len(sides) > VIEW_SIDES:
            return False
    return bool(sides) and all(len(side) >= VIEW_SIDE_VOXELS and _bow(side) <= VIEW_BOW_VOXELS
                               for side in sides)


def _sides(points: np.ndarray, most: int) -> list[np.ndarray]:
    """The straight sides of the path ``points`` (n, 2), split where it lies farthest from the line between
    its ends until each lies within :data:`VIEW_LINE_VOXELS` of it (Douglas-Peucker); stops splitting past
    ``most`` sides."""
    ends = points[-1] - points[0]
    length = float(np.hypot(*ends))
    off = points - points[0]
    far = np.abs(off[:, 0] * ends[1] - off[:, 1] * ends[0]) / length if length else np.hypot(*off.T)
    k = int(np.argmax(far))
    if far[k] <= VIEW_LINE_VOXELS or most <= 1 or k in (0, len(points) - 1):
        return [points]
    first = _sides(points[: k + 1], most - 1)
    return first + _sides(points[k:], most - len(first))


def _bow(side: np.ndarray) -> float:
    """How far (voxels) the middle of ``side`` (n >= 3 points, n, 2) bows away from its ends: the sagitta of
    the parabola fitted across the line between its ends."""
    ends = side[-1] - side[0]
    along = ends / max(float(np.hypot(*ends)), 1e-9)
    t, d = (side - side[0]) @ along, (side - side[0]) @ np.array([-along[1], along[0]])
    curve = np.polyfit(t - t.mean(), d, 2)[0]
    return float(abs(curve) * np.ptp(t) ** 2 / 4)


def _next_to(padding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ys, xs)`` of the voxels in view (not ``padding``, y x) that face a padding voxel: the edge of the
    field of view."""
    from scipy import ndimage

    return np.nonzero(ndimage.binary_dilation(padding, ndimage.generate_binary_structure(2, 1)) & ~padding)


def body_of(hu: np.ndarray, body_hu: float = RoiConfig.body_hu) -> np.ndarray:
    """The patient's body in ``hu`` (any sampling): the largest connected part above ``body_hu``."""
    from scipy import ndimage

    body = hu > body_hu
    lab, n = ndimage.label(body)
    if n:
        body = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    return body


def _edges_sealed(wall: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``wall`` with each slice's edge closed between the first and last voxel of ``body`` on it: a field
    of view that cuts through the chest (the body reaching the image edge on both sides of the lungs)
    keeps the lungs enclosed, so they are not taken for the air outside. A body off the edges changes
    nothing."""
    sealed = wall.copy()
    for edge in (np.s_[:, 0, :], np.s_[:, -1, :], np.s_[:, :, 0], np.s_[:, :, -1]):
        sealed[edge] |= _between(body[edge], 1)
    return sealed


def _between(mask: np.ndarray, axis: int) -> np.ndarray:
    """Where ``mask`` holds a True at or before and at or after each position along ``axis``."""
    ahead = np.flip(np.maximum.accumulate(np.flip(mask, axis), axis=axis), axis)
    return np.maximum.accumulate(mask, axis=axis) & ahead


#: An air gap along the scan circle's edge between two stretches of body is a lung the circle cuts when at
#: least this share of the air behind it lies beyond the bulge of the circle between the two stretches (a
#: lung reaches in towards the mediastinum); the air between the skin and the circle fills that bulge, but
#: for a few voxels where the skin meets the circle.
CUT_AIR_BEYOND = 0.2


def _view_sealed(wall: np.ndarray, body: np.ndarray, outside: np.ndarray,
                 view: dict[int, ViewEdge]) -> np.ndarray:
    """``wall`` (coarse, z y x) with the scan circle's edge closed where it cuts the chest, as
    :func:`_edges_sealed` closes an image edge: along the circle's edge (``view``; ``outside``: the
    padding), the gaps between two stretches of ``body`` that cut a lung. Gaps whose air is one are judged
    together (:func:`_cuts_lung`): a cut lung touches its own gap only; the air round a trunk with arms
    beside it touches gaps all round the circle and lies within them."""
    from scipy import ndimage

    lab, _ = ndimage.label(~(wall | outside), _PLANE)
    sealed = wall.copy()
    for z, (pieces, _) in view.items():
        arcs = [arc for ys, xs, closed in pieces for arc in _gap_arcs(ys, xs, body[z, ys, xs], closed)]
        touched = [set(np.unique(lab[z][ys[1:-1], xs[1:-1]]).tolist()) - {0} for ys, xs in arcs]
        for air, group in _sharing(touched):
            if _cuts_lung(lab[z], air, [arcs[i] for i in group]):
                for i in group:
                    sealed[z, arcs[i][0][1:-1], arcs[i][1][1:-1]] = True
    return sealed


def _gap_arcs(ys: np.ndarray, xs: np.ndarray, on: np.ndarray,
              closed: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The gaps between two stretches of body (``on``) along a piece of the view's edge (``ys``, ``xs``;
    ``closed``: a whole circle): each as (ys, xs) from the body voxel before it to the one after it."""
    if not on.any():
        return
    if closed:  # from a body voxel round to it again, so every gap lies between two stretches of body
        loop = np.r_[np.arange(int(np.argmax(on)), on.size), np.arange(int(np.argmax(on)) + 1)]
        ys, xs, on = ys[loop], xs[loop], on[loop]
    change = np.flatnonzero(np.diff(on.view(np.int8))) + 1
    starts, ends = change[on[change - 1]], change[~on[change - 1]]  # a gap from a start to the next end
    for a in starts:
        after = ends[ends > a]
        if after.size:
            yield ys[a - 1 : after[0] + 1], xs[a - 1 : after[0] + 1]


def _sharing(touched: list[set[int]]) -> list[tuple[set[int], list[int]]]:
    """The gaps (indices into ``touched``, the air components each touches) grouped where they share air,
    with the air of each group."""
    groups: list[tuple[set[int], list[int]]] = []
    for i, ids in enumerate(touched):
        joined = [g for g in groups if g[0] & ids]
        groups = [g for g in groups if not g[0] & ids]
        groups.append((set(ids).union(*(g[0] for g in joined)), [j for g in joined for j in g[1]] + [i]))
    return groups


def _cuts_lung(labels: np.ndarray, air: set[int], arcs: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether gaps along the field of view's edge (``arcs``: each (ys, xs) with the body voxel at either
    end) cut a lung: the ``air`` components of ``labels`` (a slice) they touch reach in beyond the convex
    hull of the arcs (the bulge of the circle between their ends; :data:`CUT_AIR_BEYOND`)."""
    from scipy.spatial import ConvexHull, QhullError

    inner = np.argwhere(np.isin(labels, sorted(air)))
    if not inner.size:
        return False
    try:
        hull = ConvexHull(np.concatenate([np.stack(arc, axis=1) for arc in arcs]))
    except QhullError:  # a straight gap: no bulge, all air lies beyond it (an image edge)
        return True
    inside = np.all(inner @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9, axis=1)
    return bool(1.0 - inside.mean() >= CUT_AIR_BEYOND)


#: Neighbours along the field of view's edge lie this many voxels apart at most (a staircase circle);
#: a longer step is where the image edge interrupts it.
VIEW_EDGE_STEP = 2


def _view_edges(outside: np.ndarray) -> dict[int, ViewEdge]:
    """Per slice of ``outside`` (the padding, coarse z y x) that holds some: the edge of the field of view
    (:data:`ViewEdge`, :func:`_edge_of`). Found once for the slices that share a padding."""
    last, found, edges = None, ([], (0.0, 0.0)), {}
    for z in np.nonzero(outside.any(axis=(1, 2)))[0]:
        if last is None or not np.array_equal(outside[z], outside[last]):
            last, found = z, _edge_of(outside[z])
        if found[0]:
            edges[int(z)] = found
    return edges


def _edge_of(padding: np.ndarray, facing: np.ndarray | None = None) -> ViewEdge:
    """The edge of the field of view beside ``padding`` (y x): the voxels in view next to it (next to its
    part ``facing`` where given) in order round the view's centre; the image edge splits it into pieces
    (``closed`` False), a view wholly in the image has one closed piece."""
    view = ~padding
    ys, xs = _next_to(padding)
    if facing is not None:
        near = np.zeros_like(padding)
        near[_next_to(facing)] = True
        ys, xs = ys[near[ys, xs]], xs[near[ys, xs]]
    centre = tuple(float(np.mean(v)) for v in np.nonzero(view)) if view.any() else (0.0, 0.0)
    order = np.argsort(np.arctan2(ys - centre[0], xs - centre[1]), kind="stable")
    ys, xs = ys[order], xs[order]
    jump = np.flatnonzero(np.maximum(np.abs(ys - np.roll(ys, 1)), np.abs(xs - np.roll(xs, 1)))
                          > VIEW_EDGE_STEP)
    if not ys.size:
        return [], centre
    if not jump.size:
        return [(ys, xs, True)], centre
    ys, xs = np.roll(ys, -jump[0]), np.roll(xs, -jump[0])
    cuts = np.append(jump - jump[0], ys.size)
    return [(ys[a:b], xs[a:b], False) for a, b in zip(cuts[:-1], cuts[1:])], centre


def _holes_filled(mask: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask, plane)`` for an in-plane ``plane`` structure (the same result,
    several times faster): the background components that reach no slice's edge become foreground."""
    from scipy import ndimage

    lab, n = ndimage.label(~mask, plane)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[edge] = True
    outside[0] = False
    return ~outside[lab]


#: A 3D air component counts as lung when one of its slices covers at least this share of the body's
#: cross-section (bowel and stomach gas stay far below it) and it holds ``min_lung_ml`` or more.
LUNG_BODY_FRACTION = 0.10
#: Gaps in the chest wall up to about 2 x this many coarse (~3 mm) voxels are closed (slender patients).
SEAL_WALL = 3


#: Where no air component covers :data:`LUNG_BODY_FRACTION` of the body, one this large (ml) whose median
#: lies above :data:`CUT_LUNG_HU` (lung tissue, not gas) is lung however small its share: a very obese
#: patient's (100 mm of fat round a phantom's chest:
#: each lung 8.7 % of the body's section, none found, "no lungs found"; 3.2 l each, median -848; the upper
#: abdomen's gas of a real CT: 43 ml, median -965).
LARGE_LUNG_ML = 300.0


def _small(anatomy: Anatomy) -> np.ndarray:
    """The coarse CT of ``anatomy`` (one made without it: an error saying so)."""
    if anatomy.small is None:
        raise ValueError("this anatomy keeps no coarse CT; make it with coarse_anatomy")
    return anatomy.small


def chest_lungs(anatomy: Anatomy, spacing_zyx: tuple[float, float, float],
                min_lung_ml: float = RoiConfig.min_lung_ml) -> np.ndarray:
    """The lungs of a coarse anatomy without bowel or stomach gas: the 3D air components that hold
    ``min_lung_ml`` and, on one of their slices, cover a share of the body (:data:`LUNG_BODY_FRACTION`);
    where none does, those as large and dense as lungs (:data:`LARGE_LUNG_ML`; a colon loop beside lungs
    found stays out, whatever it reads)."""
    from scipy import ndimage

    lab, n = ndimage.label(anatomy.lungs)
    if n == 0:
        return np.zeros_like(anatomy.lungs)
    voxel_ml = float(np.prod([s * st for s, st in zip(spacing_zyx, anatomy.step)])) / 1000.0
    volume = np.bincount(lab.ravel(), minlength=n + 1)[1:] * voxel_ml
    body_area = np.maximum(anatomy.body.sum(axis=(1, 2)), 1)
    wide = np.zeros(n, dtype=bool)
    for k, sl in enumerate(ndimage.find_objects(lab)):
        if sl is not None:
            area = (lab[sl] == k + 1).sum(axis=(1, 2))
            wide[k] = np.max(area / body_area[sl[0]]) >= LUNG_BODY_FRACTION
    if not (wide & (volume >= min_lung_ml)).any():
        large = np.flatnonzero(volume >= LARGE_LUNG_ML)
        if large.size:
            wide[large] = np.asarray(ndimage.median(_small(anatomy), lab, large + 1)) > CUT_LUNG_HU
    keep = np.concatenate([[False], wide & (volume >= min_lung_ml)])
    return keep[lab]


#: Air in the body within this many coarse voxels of the view's edge (an image edge, the padding) is cut
#: by it (the sealed edge and the lungs' opening keep it a voxel or two inside).
CUT_LUNG_REACH = 2
#: A cut piece of air is lung beside the lungs found when at least this share of its voxels lie within
#: the rows (front to back) that those lungs span on its slice ...
CUT_LUNG_BESIDE = 0.5
#: ... and its median (HU) lies above this: lung tissue (-900 to -700; the phantom's -870 to -800), not the
#: air outside the body (-1000 and its noise: the pockets between flank, table and the view's edge, -990).
CUT_LUNG_HU = -950.0
#: Pieces of a cut lung count when together they hold this much (ml): the sliver the view leaves loses
#: another ~9 mm to the wall sealed along the edge (a real CT's lung cut to 15 % of its width: 18 ml left).
CUT_LUNG_ML = 10.0


def cut_lung(anatomy: Anatomy, lungs: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """bool (coarse z y x): the pieces of a lung the view's edge cuts deeply (a crop, a narrow field of
    view: a sliver of its width left, broken into pieces each too small beside the body for
    :func:`chest_lungs`, which found ``lungs``). The air of
    ``anatomy.lungs`` reaching the view's edge (:data:`CUT_LUNG_REACH`) at the depth of the lungs found
    (:data:`CUT_LUNG_BESIDE`, the rows run front to back) and as dense as lung (:data:`CUT_LUNG_HU`), taken
    when together it holds :data:`CUT_LUNG_ML`."""
    from scipy import ndimage

    lab, n = ndimage.label(anatomy.lungs & ~lungs)
    if n == 0 or not lungs.any():
        return np.zeros_like(lungs)
    first, last = _rows_of(lungs)
    z, y = np.nonzero(lab)[:2]
    ids = lab[lab > 0]
    beside = np.bincount(ids, (first[z] <= y) & (y <= last[z]), minlength=n + 1)
    size = np.bincount(ids, minlength=n + 1)
    cut = np.zeros(n + 1, dtype=bool)
    cut[np.unique(lab[anatomy.near_edge])] = True
    cut &= beside >= CUT_LUNG_BESIDE * np.maximum(size, 1)
    cut[0] = False
    if cut.any():
        cut[cut] = np.asarray(ndimage.median(_small(anatomy), lab, np.flatnonzero(cut))) > CUT_LUNG_HU
    voxel_ml = float(np.prod([s * st for s, st in zip(spacing_zyx, anatomy.step)])) / 1000.0
    return cut[lab] if size[cut].sum() * voxel_ml >= CUT_LUNG_ML else np.zeros_like(lungs)


#: A CT whose field of view lies inside the chest (:func:`_view_inside_chest`) on at least this share of
#: its lung slices (a mediastinal reconstruction): the hull of the lungs in view is not the mediastinum
#: (a 140 mm view: 22 % of the nodes' voxels in it), so the region keeps the lungs' slices only.
INSIDE_CHEST_SHARE = 0.5
#: In a view inside the chest a slice holds lung when at least this share of its view is lung-dense air
#: (:data:`LUNG_AIR_HU`, median above :data:`CUT_LUNG_HU`): the lungs there are cut on both sides, so
#: their air lies outside the body found and :func:`chest_lungs` finds only the apices (CTChest4 cropped
#: to 140 mm: z 28-32 of the lungs' 8-32; its lung-dense air: z 9-32, 500-1500 voxels a slice).
LUNG_AIR_SHARE = 0.05
#: HU range of the air counted by :data:`LUNG_AIR_SHARE` (lung and gas; the median tells them apart).
LUNG_AIR_HU = (-1500.0, -500.0)
#: An air gap this long (mm) between two stretches of body along an image edge is a lung the edge cuts.
CUT_LUNG_MM = 10.0


def _view_inside_chest(body: np.ndarray, lungs: np.ndarray,
                       spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Per slice of ``body`` and ``lungs`` (coarse, z y x): whether the field of view lies inside the chest:
    the body reaches all four image edges and along one of them the lungs fill a gap of at least
    :data:`CUT_LUNG_MM` between two stretches of body (the edge cuts through a lung; the lungs found touch
    the edge or the row inside it, which the sealed edge keeps out of them). A large patient whose skin
    touches every edge, lungs in view, has none: the air between flank and table, between arm and trunk,
    between the breasts is outside, not lung."""
    edges = ((np.s_[:, 0, :], np.s_[:, 1, :], spacing_zyx[2]),  # (edge, the row inside it, mm along it)
             (np.s_[:, -1, :], np.s_[:, -2, :], spacing_zyx[2]),
             (np.s_[:, :, 0], np.s_[:, :, 1], spacing_zyx[1]),
             (np.s_[:, :, -1], np.s_[:, :, -2], spacing_zyx[1]))
    reached = np.ones(body.shape[0], dtype=bool)
    cut = np.zeros(body.shape[0], dtype=bool)
    for edge, within, step_mm in edges:
        line = body[edge]  # (slice, position along the edge)
        reached &= line.any(axis=1)
        gaps = _between(line, 1) & ~line & (lungs[edge] | lungs[within])  # lung between two stretches of body
        cut |= _longest_run(gaps) * step_mm >= CUT_LUNG_MM
    return reached & cut


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """The length of the longest run of True along the last axis of ``mask`` (int, one per row)."""
    rows = np.asarray(mask, dtype=bool).reshape(-1, mask.shape[-1])
    flat = np.pad(rows, ((0, 0), (1, 1))).ravel().view(np.int8)  # a False between rows: runs stay in one
    change = np.flatnonzero(np.diff(flat))
    longest = np.zeros(rows.shape[0], dtype=int)
    np.maximum.at(longest, change[::2] // (rows.shape[1] + 2), change[1::2] - change[::2])
    return longest.reshape(mask.shape[:-1])


#: The front and the back of the scan circle: its edge within this angle (degrees) of straight up or down.
CIRCLE_POLE_DEG = 30.0


def _circle_inside_chest(body: np.ndarray, lungs: np.ndarray, view: dict[int, ViewEdge],
                         spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Per slice of ``body`` and ``lungs`` (coarse, z y x; ``view``: the circle's edge on the slices that
    have one): whether the scan circle lies inside the chest, as :func:`_view_inside_chest` asks of the
    image edges: the body meets the circle's edge at its front and at its back (:data:`CIRCLE_POLE_DEG`:
    the chest is deeper than the circle) and lungs found run along it for :data:`CUT_LUNG_MM` (the circle
    cuts through a lung). A large patient whose sides only the circle cuts keeps air at the front and
    back."""
    from scipy import ndimage

    near = ndimage.binary_dilation(lungs, _PLANE)  # lungs next to the sealed edge
    step_mm = min(spacing_zyx[1:])
    inside = np.zeros(body.shape[0], dtype=bool)
    for z, (pieces, (cy, cx)) in view.items():
        ys, xs = np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])
        pole = (np.abs(xs - cx) * spacing_zyx[2]
                <= np.tan(np.radians(CIRCLE_POLE_DEG)) * np.abs(ys - cy) * spacing_zyx[1])  # in mm
        on = body[z, ys, xs]
        inside[z] = bool(on[pole & (ys < cy)].any() and on[pole & (ys > cy)].any()
                         and _longest_run(near[z, ys, xs]) * step_mm >= CUT_LUNG_MM)
    return inside


def _rows_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last row (y) that ``mask`` (z y x) holds on each slice (none: past the last, -1)."""
    zs, ys = np.nonzero(mask.any(axis=2))
    first, last = np.full(mask.shape[0], mask.shape[1]), np.full(mask.shape[0], -1)
    np.minimum.at(first, zs, ys)
    np.maximum.at(last, zs, ys)
    return first, last


def _spread(cut: np.ndarray, lungs: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """Where a lung the view's edge cuts runs on beyond it (``cut``: its pieces in view, :func:`cut_lung`;
    ``lungs``: the lungs found beside it; coarse z y x): its pieces on every slice of their z range (the
    sliver in view leaves slices out), and the columns it holds at the view's edge from the first to the
    last row of the lungs found on each slice (it is as deep as the lung beside it; the sliver in view is
    its shallow inner edge). A lung cut to 15 % of its width left up to 270 node voxels of 416 out of the
    region."""
    span = np.nonzero(cut.any(axis=(1, 2)))[0]
    out = cut.copy()
    if not span.size:
        return out
    out[span[0] : span[-1] + 1] |= cut.any(axis=0)
    columns = np.nonzero((out & anatomy.near_edge).any(axis=(0, 1)))[0]
    first, last = _rows_of(lungs)
    for z in range(int(span[0]), int(span[-1]) + 1):
        if first[z] <= last[z]:
            out[z, first[z] : last[z] + 1, columns] = True
    return out if anatomy.outside is None else out & ~anatomy.outside


#: A slice whose lungs on one side of the chest's midline (:func:`_midlines`) cover less than this share of
#: those on the other side (one lung removed, collapsed or under an effusion) is drawn with the other lung
#: mirrored too: the hull of one lung leaves out the mediastinum beside it (one lung filled with soft tissue:
#: 64 % of a phantom's node voxels out of the region; the lower half of one lung: 13 %).
LOPSIDED_LUNGS = 0.5


#: ... on the slices from the first to the last where the other side's lung holds at least this share of
#: the largest section of a lung (a lung's tapering apex or base, beside a shorter lung, is no lung missing;
#: the slices between, at the hilum, may hold less: 23 % on a phantom with one lung gone).
FULL_LUNG = 0.5


def _per_side(lungs: np.ndarray, mids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice of ``lungs`` (coarse z y x): the lung voxels on the low and on the high side of the column
    ``mids`` (one per slice)."""
    cols = np.arange(lungs.shape[2])
    per_col = lungs.sum(axis=1)
    return (per_col * (cols < mids[:, None])).sum(axis=1), (per_col * (cols > mids[:, None])).sum(axis=1)


#: The midline on a slice with both lungs is the median of the lungs' middles on this many such slices
#: either side of it (a phantom with arms down lost the tip of a lung base: the midline moved 12 mm).
MIDLINE_SLICES = 2


def _lung_split(per_col: np.ndarray, cut: np.ndarray | None = None) -> tuple[int, int] | None:
    """Of one slice's lung voxels per column ``per_col``: the last column of the low lung and the first of
    the high one, split by the widest gap in the columns they cover (the mediastinum); None where no gap
    splits them or one side holds under :data:`LOPSIDED_LUNGS` of the other (one lung, split about a column
    within it, is none), unless that side's lung reaches the view's edge in a column where ``cut`` (bool per
    column) holds: a lung the view cuts to a sliver is a lung however little of it is in view."""
    cols = np.flatnonzero(per_col)
    if cols.size < 2:
        return None
    gap = int(np.argmax(np.diff(cols)))
    if cols[gap + 1] - cols[gap] < 2:
        return None
    split = int(cols[gap]), int(cols[gap + 1])
    low, high = per_col[: split[0] + 1].sum(), per_col[split[1] :].sum()
    if min(low, high) >= LOPSIDED_LUNGS * max(low, high):
        return split
    small = slice(0, split[0] + 1) if low < high else slice(split[1], None)
    return split if cut is not None and cut[small].any() else None


def _both_lungs(lungs: np.ndarray) -> np.ndarray:
    """Per slice of ``lungs`` (coarse z y x): whether it holds two lungs (:func:`_lung_split`)."""
    return np.array([_lung_split(row) is not None for row in lungs.sum(axis=1)], dtype=bool)


def _midlines(lungs: np.ndarray, anatomy: Anatomy) -> np.ndarray | None:
    """Per slice of ``lungs`` (coarse z y x): the column of the chest's midline. On slices that hold both
    lungs (:func:`_both_lungs`) clear of the view's edge (a cut lung's outer column is the edge's) the middle
    of the lungs' outer columns (the median of :data:`MIDLINE_SLICES` such slices either side: a lung's
    lateral tip at its base), between and beyond them interpolated over z (a patient off-centre, rotated,
    a spine curved); with no such slice (one lung gone throughout) the body's middle column, unless air of
    ``anatomy.lungs`` reaches the view's edge (a lung runs on beyond it, and so does the chest: None, no
    midline known)."""
    nz, _, nx = lungs.shape
    cols = np.arange(nx)

    def middle(mask: np.ndarray) -> np.ndarray:
        held = mask.any(axis=1)
        first = np.where(held, cols, nx).min(axis=1)
        last = np.where(held, cols, -1).max(axis=1)
        return np.where(held.any(axis=1), (first + last) / 2, nx / 2)

    both = np.flatnonzero(_both_lungs(lungs) & ~(lungs & anatomy.near_edge).any(axis=(1, 2)))
    if both.size:
        held, n = middle(lungs)[both], MIDLINE_SLICES
        steady = [np.median(held[max(k - n, 0) : k + n + 1]) for k in range(both.size)]
        return np.interp(np.arange(nz), both, steady)
    if (anatomy.lungs & anatomy.near_edge).any():
        return None
    return middle(anatomy.body)


def _lopsided(lungs: np.ndarray, mids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice of ``lungs`` (coarse z y x; ``mids``: the midline per slice): whether one side holds little
    lung beside a full lung (:data:`LOPSIDED_LUNGS`, :data:`FULL_LUNG`), and whether the full one is on
    the high side."""
    low, high = _per_side(lungs, mids)
    lopsided = np.minimum(low, high) < LOPSIDED_LUNGS * np.maximum(low, high)
    full = np.flatnonzero(lopsided & (np.maximum(low, high) >= FULL_LUNG * max(low.max(), high.max())))
    span = np.zeros_like(lopsided)
    if full.size:
        span[full[0] : full[-1] + 1] = True
    return lopsided & span, high > low


def _mirror(lungs: np.ndarray, body: np.ndarray, mids: np.ndarray, slices: np.ndarray,
            spacing_yx: tuple[float, float]) -> np.ndarray:
    """bool (coarse z y x): on ``slices``, ``lungs`` mirrored about the midline ``mids`` (one column per
    slice), kept inside the chest: in ``body`` at least as deep below its outline (holes filled) as the
    lungs lie (the chest wall's thickness; a mirror tilted against a rotated chest leaves the rest in the
    ribs)."""
    from scipy import ndimage

    out = np.zeros_like(lungs)
    for z in np.flatnonzero(slices):
        ys, xs = np.nonzero(lungs[z])
        flipped = np.round(2 * mids[z] - xs).astype(int)
        keep = (flipped >= 0) & (flipped < lungs.shape[2])
        out[z, ys[keep], flipped[keep]] = True
        depth = ndimage.distance_transform_edt(ndimage.binary_fill_holes(body[z]), sampling=spacing_yx)
        out[z] &= depth >= depth[ys, xs].min()
    return out


def _mirrored(lungs: np.ndarray, anatomy: Anatomy, spacing_yx: tuple[float, float]) -> np.ndarray:
    """bool (coarse z y x): on each slice of ``lungs`` where one side of the chest's midline holds little
    lung beside a full one (:func:`_midlines`, :func:`_lopsided`), the lungs mirrored into the chest on the
    other side (:func:`_mirror`); elsewhere nothing, nor where air of ``anatomy.lungs`` on the slice reaches
    the view's edge on the side with little lung: a lung the view cuts runs on beyond it (:func:`cut_lung`
    and :func:`_spread` draw it). A chest wall the view's edge cuts is no reason to skip (it was: one lung
    gone, the image edge through that side's wall, 64 % of a phantom's node voxels out)."""
    mids = _midlines(lungs, anatomy)
    if mids is None:
        return np.zeros_like(lungs)
    slices, high_full = _lopsided(lungs, mids)
    cols = np.arange(lungs.shape[2])
    empty_side = np.where(high_full[:, None], cols < mids[:, None], cols > mids[:, None])
    slices &= ~((anatomy.lungs & anatomy.near_edge).any(axis=1) & empty_side).any(axis=1)
    return _mirror(lungs, anatomy.body, mids, slices, spacing_yx)


#: A row of a slice whose lung on one side of the mediastinum reaches at least this share of the slice's
#: widest reach on that side is a lung's outline: what lies beyond it, away from the mediastinum, is chest
#: wall or axilla, never mediastinum (a row through the trachea or a bronchus alone reaches less).
LATERAL_ROW_REACH = 0.5


#: Along a row, outward from the lung found, this many voxels in a row that are no lung-dense air
#: (:data:`LUNG_AIR_HU`) are the chest wall: the lung ends before them. Fewer are noise in a lung that was
#: found only in fragments (the margin was cut inside the lung, up to 6 mm from a hilar node).
CHEST_WALL_VOXELS = 2


def _outer_reach(air: np.ndarray, found: np.ndarray, away: np.ndarray) -> np.ndarray:
    """Per row of one slice: how far (columns, along ``away``, the distance from the mediastinum, 0 on
    its side) the lung runs outward: past the reach of the lung ``found`` (bool rows x columns) on through
    the lung-dense ``air`` until :data:`CHEST_WALL_VOXELS` voxels of no air (the view's edge: its last
    column)."""
    reach = np.where(found & (away > 0)[None, :], away[None, :], 0.0).max(axis=1)
    order = np.argsort(away, kind="stable")
    order = order[away[order] > 0]  # the columns outward, one step apart
    if order.size <= CHEST_WALL_VOXELS:
        return reach
    dist = away[order]
    wall = np.lib.stride_tricks.sliding_window_view(~air[:, order], CHEST_WALL_VOXELS, axis=1).all(axis=2)
    wall &= dist[None, : wall.shape[1]] > reach[:, None]
    first = np.where(wall.any(axis=1), wall.argmax(axis=1), order.size)  # the wall's first column
    before = np.where(first > 0, dist[np.maximum(first, 1) - 1], 0.0)
    return np.maximum(reach, before)


def _beside_lungs(lungs: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """bool (coarse z y x): per slice of ``lungs`` that holds two lungs (:func:`_lung_split`), per row the
    columns beyond the row's lung, away from the mediastinum, on rows where the lung found reaches
    :data:`LATERAL_ROW_REACH` of its widest reach from the gap: the chest wall beside a lung, which the lungs'
    hull grown by a margin takes in (CTChest4 at 1 mm: a node there was kept). The row's lung runs on past
    the part found through lung-dense air to the chest wall (:func:`_outer_reach`): a lung found only in part
    is cut beyond its real edge, never inside it. A row is left as it is where its lung ends at the view's
    edge (cut: what lies beyond is out of view)."""
    small = _small(anatomy)
    air = _holes_filled(anatomy.body, _PLANE) & (small > LUNG_AIR_HU[0]) & (small < LUNG_AIR_HU[1])
    if anatomy.outside is not None:
        air &= ~anatomy.outside
    air |= lungs
    cols = np.arange(lungs.shape[2])
    rows_all = np.arange(lungs.shape[1])
    out = np.zeros(lungs.shape, dtype=bool)
    cut_cols = (lungs & anatomy.near_edge).any(axis=1)  # per slice, the columns where a lung meets the edge
    for z, per_col in enumerate(lungs.sum(axis=1)):
        split = _lung_split(per_col, cut_cols[z])
        if split is None:
            continue
        mid = (split[0] + split[1]) / 2  # the middle of the gap between the lungs
        for side in (-1.0, 1.0):
            away = side * (cols - mid)
            reach = np.where(lungs[z] & (away > 0)[None, :], away[None, :], 0.0).max(axis=1)  # lung found
            outer = _outer_reach(air[z], lungs[z], away)  # and the lung beyond it
            edge = np.rint(mid + side * outer).astype(int)  # each row's outer lung column
            at_edge = anatomy.near_edge[z][rows_all, np.clip(edge, 0, cols.size - 1)]
            rows = (reach >= LATERAL_ROW_REACH * reach.max()) & ~at_edge
            out[z] |= rows[:, None] & (away[None, :] > outer[:, None])
    return out


def _fill_hulls(hull: np.ndarray, lungs: np.ndarray, found: np.ndarray) -> None:
    """``hull`` (coarse z y x, False) set to the per-slice convex hull of ``lungs`` on the slices ``found``,
    and slices between them where the lungs were missed to the hulls of the nearest slices around."""
    from skimage.morphology import convex_hull_image

    for z in found:
        ys, xs = np.nonzero(lungs[z])
        box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        hull[z][box] = convex_hull_image(lungs[z][box]) if ys.size >= 4 else lungs[z][box]  # nothing beyond
    for z in range(int(found[0]) + 1, int(found[-1])):  # the lungs span their z range: fill slices
        if z not in found:  # where they were missed with the hulls of the nearest slices around
            below, above = found[found < z][-1], found[found > z][0]
            hull[z] = hull[below] | hull[above]


def _lung_air_slices(anatomy: Anatomy, found: np.ndarray) -> tuple[int, int]:
    """First and last coarse slice of the lungs in a view inside the chest: the run of slices around
    ``found`` (the slices where lungs were found) whose view is at least :data:`LUNG_AIR_SHARE` lung-dense
    air (median above :data:`CUT_LUNG_HU`: lung, not the bowel's gas or the air outside the body)."""
    small = _small(anatomy)
    air = (small > LUNG_AIR_HU[0]) & (small < LUNG_AIR_HU[1])
    in_view = np.ones_like(air) if anatomy.outside is None else ~anatomy.outside
    air &= in_view
    lung = np.zeros(small.shape[0], dtype=bool)
    for z in range(small.shape[0]):
        n = int(air[z].sum())
        if n and n >= LUNG_AIR_SHARE * max(int(in_view[z].sum()), 1):
            lung[z] = float(np.median(small[z][air[z]])) > CUT_LUNG_HU
    lo, hi = int(found[0]), int(found[-1])
    while lo > 0 and lung[lo - 1]:
        lo -= 1
    while hi < lung.size - 1 and lung[hi + 1]:
        hi += 1
    return lo, hi


#: The lungs were missed in a view inside the body (:func:`_lungs_missed`) when on at least this share of
#: the lung-air slices added to those found the body reaches all four image edges.
LUNGS_MISSED_EDGES = 0.5


def _lungs_missed(anatomy: Anatomy, found: np.ndarray) -> bool:
    """Whether the lungs were found on fewer than half of their slices in a view inside the body: the run
    of lung-dense air around ``found`` (:func:`_lung_air_slices`) is more than twice as long, and on most
    of the slices added the body reaches all four image edges. A view cut by three edges (CTChest4 cropped
    to 165-214 mm, 18 mm off the middle: the lungs ran off two corners) let the lungs' air out on most
    slices; only the apices were found and the region, their hull, kept 30-88 % of the whole CT's."""
    lo, hi = _lung_air_slices(anatomy, found)
    added = np.setdiff1d(np.arange(lo, hi + 1), found)
    if added.size <= found.size:
        return False
    body = anatomy.body[added]
    reached = body[:, 0].any(axis=1) & body[:, -1].any(axis=1) & body[:, :, 0].any(axis=1)
    reached &= body[:, :, -1].any(axis=1)
    return bool(reached.mean() >= LUNGS_MISSED_EDGES)


def mediastinum_region(ct: Volume, margin_mm: float = 10.0) -> np.ndarray:
    """bool mask on the CT grid: the lungs' per-slice convex hull grown by ``margin_mm`` in 3D (where
    mediastinal nodes can be). Air that is not lung (bowel, stomach) is left out (:func:`chest_lungs`); a
    lung the view's edge cuts deeply counts by the sliver in view, spread as deep as the lung beside it
    (:func:`cut_lung`, :func:`_spread`); where one side holds little lung (one removed, collapsed, under an
    effusion) the other counts mirrored too (:func:`_mirrored`).

    When no lungs are in view (an abdomen, a neck, a slab of soft tissue) it warns and returns all True: no
    restriction rather than a region that leaves nodes out. When the field of view lies inside the chest
    (:data:`INSIDE_CHEST_SHARE`) it warns and keeps only the lungs' slices (:func:`_lung_air_slices`)
    grown by ``margin_mm`` (in plane no restriction: the slices below the lungs, an upper abdomen, hold no
    mediastinal node).
    """
    import SimpleITK as sitk

    code, oriented = to_lps(ct.to_sitk())
    hu = sitk.GetArrayViewFromImage(oriented)
    spacing_zyx = tuple(oriented.GetSpacing()[::-1])
    anatomy = coarse_anatomy(hu, spacing_zyx, seal=SEAL_WALL)
    lungs = chest_lungs(anatomy, spacing_zyx)
    cut = cut_lung(anatomy, lungs, spacing_zyx)
    lungs |= cut
    if not lungs.any():
        warnings.warn("no lungs found in this CT, so nodes are not restricted to the mediastinum; check "
                      "that the CT shows the chest", UserWarning, stacklevel=2)
        return np.ones(ct.shape, dtype=bool)
    found = np.nonzero(lungs.any(axis=(1, 2)))[0]
    coarse = tuple(s * st for s, st in zip(spacing_zyx, anatomy.step))
    inside = _view_inside_chest(anatomy.body[found], lungs[found], coarse)
    if anatomy.view:
        view = {k: anatomy.view[int(z)] for k, z in enumerate(found) if int(z) in anatomy.view}
        inside |= _circle_inside_chest(anatomy.body[found], lungs[found], view, coarse)
    hull = np.zeros_like(lungs)
    beside = None
    if inside.mean() >= INSIDE_CHEST_SHARE or _lungs_missed(anatomy, found):  # the lungs in view bound
        # nodes along z only
        lo, hi = _lung_air_slices(anatomy, found)
        hull[lo : hi + 1] = True
        warnings.warn(f"the field of view lies inside the chest (the image edges or the scan circle cut "
                      f"through the lungs), so nodes are restricted only to the lungs' slices "
                      f"+ {margin_mm:g} mm, not to the mediastinum", UserWarning, stacklevel=2)
    else:
        beside = _beside_lungs(lungs, anatomy)  # the lungs found, none spread or mirrored
        lungs |= _spread(cut, lungs, anatomy)
        lungs |= _mirrored(lungs, anatomy, coarse[1:])
        _fill_hulls(hull, lungs, found)
    grown = within_mm(hull, coarse, margin_mm)
    if beside is not None:  # the margin beside a lung, not the hull: a lung's row may reach less than it
        grown &= hull | ~beside
    region = anatomy.upsample(grown)  # bool
    return from_lps(region.view(np.uint8), oriented, code).view(bool)  # 0/1 either way: no bool copy


def find_roi(hu: np.ndarray, spacing_zyx: tuple[float, float, float], roi: RoiConfig,
             anatomy: Anatomy | None = None) -> tuple[slice, slice, slice]:
    """The chest ROI in index space: the lungs' bounding box plus a margin, found on a coarse copy.

    Falls back to the body's bounding box when no lungs are found, and to the whole volume when no
    body is found.
    """
    shape = hu.shape
    if roi.rule == "none":
        return tuple(slice(0, n) for n in shape)
    anatomy = anatomy or coarse_anatomy(hu, spacing_zyx, roi)
    step = anatomy.step
    voxel_ml = float(np.prod([s * st for s, st in zip(spacing_zyx, step)])) / 1000.0
    target = anatomy.lungs if anatomy.lungs.sum() * voxel_ml >= roi.min_lung_ml else anatomy.body
    if not target.any():
        return tuple(slice(0, n_) for n_ in shape)
    idx = np.nonzero(target)
    out = []
    for axis in range(3):
        margin = int(np.ceil(roi.margin_mm / spacing_zyx[axis]))
        lo = int(idx[axis].min()) * step[axis] - margin
        hi = (int(idx[axis].max()) + 1) * step[axis] + margin
        out.append(slice(max(0, lo), min(shape[axis], hi)))
    return tuple(out)
