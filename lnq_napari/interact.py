"""Clicks on a CT: grow the node at a positive click, remove the node at a negative click, suggest candidates.

Pure numpy/scipy: no Qt, no napari. Every function works in a local crop around the click so a click
stays fast on a full 512 x 512 CT. Points are (z, y, x) voxel indices of the CT grid. Nodes (what a
click removes, what a suggestion is) are connected by :mod:`lnq_napari.components`; region growing
from a click steps to face neighbours only, so it does not leak through voxel corners.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from lnq_napari.components import CALCIUM_HU, bounding_box, grown_by_one, label_components, too_bright
from lnq_napari.io.orientation import lps_index
from lnq_napari.io.volume import Volume

#: Soft-tissue HU band a lymph node can take (LNQ2023 nodes: 0.5-99.5 % range -36..157 HU).
NODE_HU = (-40.0, 170.0)
#: HU window below the seed's own (smoothed) intensity.
SEED_HU_HALF_WIDTH = 75.0
#: Above it: max(UPPER_SD x the spread near the seed, UPPER_MIN_HU).
UPPER_SD, UPPER_MIN_HU = 3.0, 30.0
#: Radius (mm) of the neighbourhood that sets the seed's intensity.
SEED_RADIUS_MM = 2.0
#: The fat around a node: smoothed voxels above this HU (not lung) and this far below the node's own.
#: The band's lower end is half-way between the two: on the nodes phantom site (fat -55 HU, nodes about
#: 20 HU) the click's Dice rose from a median 0.847 to 0.925 (``bench_interact.py --site nodes --cases 4``),
#: default unchanged (0.986).
SURROUNDING_HU = (-250.0, 40.0)
#: Image noise (HU) up to which a click smooths the CT at its base width; noisier CT (low dose) is
#: smoothed wider in proportion. At 40 the click's Dice on the lowdose phantom site (noise level ~80)
#: rose from a median 0.709 to 0.968 (``bench_interact.py --site lowdose --cases 4``); the default, sharp
#: and nodes sites (12-36) are below it.
SMOOTH_NOISE_HU = 40.0
#: Radius (mm) of the neighbourhood whose noise sets the smoothing.
NOISE_RADIUS_MM = 10.0
#: A click on calcium (smoothed HU above the node band) finds the node's soft tissue within this radius.
CALCIUM_REACH_MM = 6.0
#: Bright components up to this volume (a 15 mm ball), enclosed by a grown node at least this share of
#: their surrounding shell, are the node's calcifications and join it.
CALCIUM_MAX_MM3, CALCIUM_ENCLOSED = 1767.0, 0.6

#: Watershed basins of a grown region stay one node where the neck between them is at least this share
#: as thick (distance to the region's border) as the thicker side: lobes of one irregular node, not a
#: neighbour behind a bridge. The cut took 4-45 % of lobed phantom nodes (nodes, sharp, habitus sites);
#: worst decile of the click's Dice on the sharp site 0.657 -> 0.866, nodes 0.679 -> 0.853, no click worse
#: (``bench_interact.py``; centre and 2-4 mm off-centre clicks, 3 cases a site). At 0.5 more lobes
#: joined but neighbours behind wide contacts too (habitus: 0.94 -> 0.54).
NECK_SHARE = 0.6

Slices = tuple[slice, slice, slice]
#: Candidate regions closer than this (mm) are one suggestion (fragments of one node).
MERGE_MM = 5.0


@dataclass(frozen=True)
class Suggestion:
    """A place worth the reviewer's look: a region the model is unsure of or left out, or a node's
    missing tissue."""

    kind: str  # "unsure" (the model half-sees a node), "small" / "bright" / "dropped" (the model is sure,
    # post-processing left it out: ``reason`` says why) or "outline" (a node outlined only in part)
    centre_zyx: tuple[int, int, int]  # voxel index: where a click accepts it
    centre_mm: tuple[float, float, float]  # the same point, LPS x, y, z
    score: float  # ranking score, larger first
    max_prob: float
    mean_prob: float  # nan for "outline"
    uncertain: bool  # peak probability below the model's threshold
    voxels: int
    volume_mm3: float  # the region's (for "outline": the missing tissue's) volume
    rank: int = 0  # 1 = best, set by :func:`rank_suggestions`
    node_volume_mm3: float | None = None  # "outline": the volume of the node it completes
    reason: str = ""  # what a sure candidate is, e.g. "small, below the size floor (0.30 cm3)"

    @property
    def text(self) -> str:
        """One line for a list of suggestions."""
        if self.kind == "outline":
            return f"outline incomplete? +{self.volume_mm3 / 1000:.2f} cm3"
        line = f"p={self.max_prob:.2f}  {self.volume_mm3 / 1000:.2f} cm3"
        return f"{self.reason}: {line}" if self.reason else line


#: Largest radius (mm) a rejected suggestion teaches as background (a big candidate is still one spot).
MAX_REJECTION_RADIUS_MM = 15.0


@dataclass(frozen=True)
class Spot:
    """A ball the reviewer placed with one click: ``radius_mm`` around ``centre_zyx`` (voxel index)."""

    centre_zyx: tuple[int, int, int]
    radius_mm: float

    def to_dict(self) -> dict:
        return {"centre_zyx": list(self.centre_zyx), "radius_mm": self.radius_mm}

    @classmethod
    def from_dict(cls, data: dict):
        """The spot ``to_dict`` wrote; ValueError when ``data`` is none (an entry edited by hand)."""
        try:
            centre, radius = tuple(int(c) for c in data["centre_zyx"]), float(data["radius_mm"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{data!r} is not a spot (centre_zyx [z, y, x] and radius_mm)") from exc
        if len(centre) != 3 or not math.isfinite(radius) or radius < 0:
            raise ValueError(f"{data!r} is not a spot (centre_zyx [z, y, x] and radius_mm >= 0)")
        return cls(centre, radius)

    def ball(self, shape: Sequence[int], spacing_zyx: Sequence[float]) -> tuple[Slices, np.ndarray] | None:
        """``(box, local bool mask)`` of the ball on a ``shape`` grid; None when it lies outside."""
        return _ball(self.centre_zyx, self.radius_mm, shape, spacing_zyx)


def read_spots(kind: type[Spot], items: object) -> tuple[list, int]:
    """The spots of ``kind`` in ``items`` (a list of ``to_dict`` entries, as a provenance keeps them) that
    read, and how many did not (an entry edited by hand; the whole when ``items`` is no list)."""
    if not isinstance(items, list):
        return [], 1
    kept = []
    for item in items:
        with contextlib.suppress(ValueError):
            kept.append(kind.from_dict(item))
    return kept, len(items) - len(kept)


def unreadable_entries(bad: int, what: str, where: str) -> str:
    """The words for ``bad`` entries of a provenance's list (``what``: "marked nodes", "rejected
    suggestions") in ``where`` (a file) that :func:`read_spots` could not read."""
    return f"{bad} entr{'ies' if bad != 1 else 'y'} of {what} in {where} cannot be read (edited by hand?)"


@dataclass(frozen=True)
class Rejection(Spot):
    """A suggestion the reviewer rejected: no node within ``radius_mm`` of ``centre_zyx`` (voxel index).

    Kept in a saved correction's provenance (``rejected``); a fine-tune takes the ball as known
    background (:func:`lnq_napari.training.corrections.correction_states`).
    """

    @classmethod
    def of(cls, centre_zyx: Sequence[float], volume_mm3: float) -> Rejection:
        """The rejection of a candidate region of ``volume_mm3`` centred at ``centre_zyx``: the ball of
        its equivalent radius, at most :data:`MAX_REJECTION_RADIUS_MM`."""
        radius = min(equivalent_diameter(max(float(volume_mm3), 0.0)) / 2.0, MAX_REJECTION_RADIUS_MM)
        return cls(tuple(int(round(float(c))) for c in centre_zyx), round(radius, 2))


#: Radius (mm) of the region a "node here, outline unknown" mark leaves unknown: a node of 2 cm.
MARK_RADIUS_MM = 10.0
#: Radius (mm) of a mark's core, taken as node tissue: inside any node over 1 cm clicked near its centre.
MARK_CORE_MM = 2.5


@dataclass(frozen=True)
class NodeMark(Spot):
    """A mark "node here, outline unknown": the reviewer sees a node at ``centre_zyx`` that no click could
    outline (the growth leaked or found nothing). Kept in a saved correction's provenance (``marked``).
    A fine-tune takes the core (:data:`MARK_CORE_MM`) as node and the rest of the ball as unknown
    (:func:`lnq_napari.training.corrections.correction_states`); the held-out figures count the mark as
    a node, found by any predicted voxel in the ball, and leave the outline of what the model predicts
    there unjudged (:func:`lnq_napari.metrics.evaluate_case`)."""

    @classmethod
    def at(cls, centre_zyx: Sequence[float], radius_mm: float = MARK_RADIUS_MM) -> NodeMark:
        return cls(tuple(int(round(float(c))) for c in centre_zyx), round(float(radius_mm), 2))

    def core(self, shape: Sequence[int], spacing_zyx: Sequence[float]) -> tuple[Slices, np.ndarray] | None:
        """``(box, local bool mask)`` of the core ball (at least the centre voxel); None outside."""
        spacing = np.asarray(spacing_zyx, dtype=float)
        return _ball(self.centre_zyx, max(min(MARK_CORE_MM, self.radius_mm), float(spacing.min()) / 2),
                     shape, spacing)


def _ball(centre_zyx: Sequence[int], radius_mm: float, shape: Sequence[int],
          spacing_zyx: Sequence[float]) -> tuple[Slices, np.ndarray] | None:
    spacing = np.asarray(spacing_zyx, dtype=float)
    reach = np.ceil(radius_mm / spacing).astype(int)
    lo = [max(0, c - r) for c, r in zip(centre_zyx, reach)]
    hi = [min(n, c + r + 1) for c, r, n in zip(centre_zyx, reach, shape)]
    if any(h <= lo_ for lo_, h in zip(lo, hi)):
        return None
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    local_centre = [c - a for c, a in zip(centre_zyx, lo)]
    return box, _distance_mm([b - a for a, b in zip(lo, hi)], local_centre, spacing) <= radius_mm


def spot_mask(spots: Sequence[Spot], shape: Sequence[int], spacing_zyx: Sequence[float],
              part: str = "ball") -> np.ndarray:
    """Bool mask of the balls (``part="core"``: the cores of :class:`NodeMark` s) on a ``shape`` grid."""
    out = np.zeros(tuple(shape), dtype=bool)
    for spot in spots:
        ball = spot.core(shape, spacing_zyx) if part == "core" else spot.ball(shape, spacing_zyx)
        if ball is not None:
            out[ball[0]] |= ball[1]
    return out


def _point_index(point_zyx: Sequence[float], shape: Sequence[int]) -> tuple[int, int, int]:
    """Round a (z, y, x) point to the nearest voxel; raise ValueError when it lies outside ``shape``."""
    idx = tuple(int(round(float(p))) for p in point_zyx)
    if len(idx) != 3 or any(i < 0 or i >= n for i, n in zip(idx, shape, strict=True)):
        raise ValueError(f"point {tuple(point_zyx)} is outside the volume of shape {tuple(shape)}")
    return idx  # type: ignore[return-value]


def _crop_around(idx: Sequence[int], radius_vox: Sequence[int], shape: Sequence[int]) -> Slices:
    return tuple(
        slice(max(0, i - r), min(n, i + r + 1)) for i, r, n in zip(idx, radius_vox, shape, strict=True)
    )  # type: ignore[return-value]


def _distance_mm(shape: Sequence[int], centre: Sequence[int], spacing: np.ndarray) -> np.ndarray:
    """Physical distance (mm) of every voxel of a ``shape`` grid to ``centre``."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True)))


def interior_point(mask: np.ndarray, grid: Volume | None = None) -> tuple[int, int, int]:
    """The voxel of ``mask`` deepest inside it (largest distance to its border): a node's centre. Of several
    equally deep, the one nearest their mean, and of those equally near (a node an even number of voxels
    across) the first in LPS raster order of ``grid`` (the Volume ``mask``, or the crop ``mask`` is, lies
    on; stored raster order without it): the same voxel whichever order and direction the file stores
    the axes in (the first in stored raster order was another voxel of a flipped copy, so a suggestion's
    click and the node grown from it differed with the file's axis order)."""
    coords = np.argwhere(mask)
    lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    edt = ndimage.distance_transform_edt(np.pad(mask[box], 1))[1:-1, 1:-1, 1:-1]
    deepest = np.argwhere(edt == edt.max()) + lo
    gap = np.square(deepest - deepest.mean(axis=0)).sum(axis=1)
    nearest = deepest[gap <= gap.min() + 1e-9]  # equally near up to rounding (a mirrored mean)
    if grid is not None and len(nearest) > 1:
        key = lps_index(grid, nearest)
        nearest = nearest[np.lexsort(key.T[::-1])]
    return tuple(int(a) for a in nearest[0])


def node_region_from_click(
    ct: Volume,
    point_zyx: Sequence[float],
    probabilities: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    max_radius_mm: float = 25.0,
) -> tuple[Slices, np.ndarray]:
    """The node at a click as ``(crop slices, bool mask of the crop)``; the mask is empty when none is found.

    Region growing from the seed in a soft-tissue HU band around the seed's smoothed intensity (the
    smoothing widened in proportion on CT noisier than :data:`SMOOTH_NOISE_HU`, such as low dose; the
    band's lower end at the node's half-maximum edge against the fat around it),
    limited to a ball of ``max_radius_mm``, restricted by ``probabilities`` (threshold well below the
    model's) when they are given and the seed is not clearly missed by the model, excluding voxels
    already labelled in ``labels``; thin bridges to touching vessels and neighbours are cut by a
    distance-transform watershed, and the basin holding the click is kept with the basins joined to it
    through necks at least :data:`NECK_SHARE` (0.6) as thick as the thicker side (lobes of an irregular
    node), but none that reaches the edge of the growth ball (a vessel as thick as the node runs on, a
    lobe ends). Two touching nodes whose centres are closer than about 0.8 of a diameter come as one
    (12 mm nodes 9.6 mm apart). A click on a calcification takes the band from the soft tissue around
    it, and calcifications the grown node encloses (:func:`_with_calcifications`) become part of it.
    """
    shape = ct.shape
    idx = _point_index(point_zyx, shape)
    spacing = np.asarray(ct.spacing_zyx, dtype=float)
    radius_vox = [int(np.ceil(max_radius_mm / s)) + 1 for s in spacing]
    box = _crop_around(idx, radius_vox, shape)
    seed = tuple(i - s.start for i, s in zip(idx, box, strict=True))

    hu = ct.array[box].astype(np.float32)
    near = hu[_crop_around(seed, [max(2, int(round(NOISE_RADIUS_MM / s))) for s in spacing], hu.shape)]
    sigma = np.clip(0.6 / spacing * spacing.min(), 0.3, 1.0) * max(1.0, noise_hu(near) / SMOOTH_NOISE_HU)
    smooth = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest")

    ball = _distance_mm(hu.shape, seed, spacing) <= max_radius_mm

    on_calcium = smooth[seed] > NODE_HU[1]  # above any node tissue: perhaps a calcified node's calcium
    lo, hi = _hu_band(smooth, seed, spacing, soft_only=on_calcium)
    region = (smooth >= lo) & (smooth <= hi) & ball
    if labels is not None:
        region &= labels[box] == 0
    if probabilities is not None:
        prob = probabilities[box]
        seed_prob = float(prob[_crop_around(seed, (1, 1, 1), prob.shape)].max())
        if seed_prob >= 0.1:  # the model saw something here: let it bound the growth
            region &= prob >= min(0.05, 0.5 * seed_prob)

    empty = np.zeros(region.shape, dtype=bool)
    clicked = seed
    if not region[seed]:
        seed = _nearest_true(region, seed, spacing, within_mm=CALCIUM_REACH_MM if on_calcium else 3.0)
        if seed is None:
            return box, empty
    comp, _ = ndimage.label(region)  # growth: face neighbours
    region = comp == comp[seed]
    region = _with_calcifications(region, smooth, hi, spacing, None if labels is None else labels[box] == 0)
    if on_calcium and not region[clicked]:  # bright, but not calcium inside a node: a vessel or bone
        return box, empty
    rim = ball & ~ndimage.binary_erosion(ball)  # where the growth was stopped by its limit, not by an edge
    return box, _split_at_bridges(region, seed, spacing, rim)


def _with_calcifications(region: np.ndarray, smooth: np.ndarray, hi: float, spacing: np.ndarray,
                         free: np.ndarray | None = None) -> np.ndarray:
    """``region`` (grown up to ``hi`` HU) plus each brighter component holding calcium (above
    :data:`~lnq_napari.components.CALCIUM_HU`) of at most :data:`CALCIUM_MAX_MM3` whose surrounding
    shell lies mostly (:data:`CALCIUM_ENCLOSED`) in ``region``: a calcified node's foci with their
    blurred rims. Vessels and bone are larger or lie beside the node, not inside it. ``free``: the
    voxels it may take."""
    box = _grown_box(region, 1)
    if box is None:
        return region
    lab, n = ndimage.label((smooth[box] > hi) & ~region[box])  # only what can touch the region
    if not n:
        return region
    out = region.copy()
    voxel_mm3 = float(np.prod(spacing))
    near = np.unique(lab[ndimage.binary_dilation(region[box]) & (lab > 0)])
    objects = ndimage.find_objects(lab)
    inside, taken = region[box], out[box]
    for k in near:
        if any(a.start == 0 or a.stop == b.stop - b.start for a, b in zip(objects[k - 1], box)):
            continue  # it goes on beyond the region's box: not enclosed
        win = tuple(slice(a.start - 1, a.stop + 1) for a in objects[k - 1])
        blob = lab[win] == k
        if blob.sum() * voxel_mm3 > CALCIUM_MAX_MM3 or not (smooth[box][win][blob] > CALCIUM_HU).any():
            continue
        shell = ndimage.binary_dilation(blob) & ~blob
        if inside[win][shell].mean() >= CALCIUM_ENCLOSED:
            taken[win] |= blob if free is None else blob & free[box][win]
    return out


def _grown_box(mask: np.ndarray, margin: int) -> Slices | None:
    """The bounding box of ``mask`` grown by ``margin`` voxels (clipped), or None when it is empty."""
    box = bounding_box(mask)
    if box is None:
        return None
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, mask.shape))


def noise_hu(hu: np.ndarray) -> float:
    """Robust noise level (HU) of a CT crop: 1.4826 x the median absolute deviation of its soft-tissue
    voxels from their 3 x 3 x 3 median (about 0.7 x the sd of white noise; a clean edge reads 0; 0 when
    the crop holds no soft tissue)."""
    soft = (hu > NODE_HU[0] - 110.0) & (hu < NODE_HU[1] + 80.0)
    if not soft.any():
        return 0.0
    residual = (hu - ndimage.median_filter(hu, size=3))[soft]
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def _hu_band(smooth: np.ndarray, seed: tuple[int, ...], spacing: np.ndarray,
             soft_only: bool = False) -> tuple[float, float]:
    """HU window of the node at ``seed``: towards fat down to the half-way level between the node and
    the fat of the crop (the node's half-maximum edge, never below ``mu - SEED_HU_HALF_WIDTH``), narrow
    above the seed's own intensity (vessels and muscle that touch nodes are often a little brighter).
    ``soft_only`` (a seed on calcium): the seed's intensity is that of the node-band voxels within
    :data:`CALCIUM_REACH_MM` (an empty window when there are none)."""
    radius = CALCIUM_REACH_MM if soft_only else SEED_RADIUS_MM
    near = smooth[_crop_around(seed, [max(1, int(round(radius / s))) for s in spacing], smooth.shape)]
    if soft_only:
        near = near[(near >= NODE_HU[0]) & (near <= NODE_HU[1])]
        if near.size < 10:
            return 1.0, 0.0
    mu, sd = float(np.median(near)), float(np.std(near))
    lo = max(NODE_HU[0], mu - SEED_HU_HALF_WIDTH)
    fat = smooth[(smooth > SURROUNDING_HU[0]) & (smooth < mu - SURROUNDING_HU[1])]
    if fat.size >= 50:  # half-way between the node and the fat around it: its half-maximum edge
        lo = max(lo, 0.5 * (mu + float(np.median(fat))))
    hi = min(NODE_HU[1], mu + max(UPPER_SD * sd, UPPER_MIN_HU))
    return lo, hi


def _nearest_true(mask: np.ndarray, seed: tuple[int, ...], spacing: np.ndarray, within_mm: float):
    """The voxel of ``mask`` nearest to ``seed`` within ``within_mm``, or None."""
    r = [max(1, int(np.ceil(within_mm / s))) for s in spacing]
    win = _crop_around(seed, r, mask.shape)
    pts = np.argwhere(mask[win])
    if len(pts) == 0:
        return None
    offs = np.array([w.start for w in win])
    d = np.sqrt((((pts + offs - np.array(seed)) * spacing) ** 2).sum(axis=1))
    best = int(np.argmin(d))
    if d[best] > within_mm:
        return None
    return tuple(int(v) for v in pts[best] + offs)


def _split_at_bridges(region: np.ndarray, seed: tuple[int, ...], spacing: np.ndarray,
                      rim: np.ndarray | None = None) -> np.ndarray:
    """Cut ``region`` at narrow necks with a distance-transform watershed; keep the seed's basin and the
    basins joined to it through wide necks (:func:`_basins_joined_at_wide_necks`), none that reaches
    ``rim`` (the growth limit's edge: a vessel runs on beyond it, a lobe ends). On 0.7 mm slices a 12 mm
    node pressed on a 10 mm vessel across 10 mm took the vessel without that (Dice 0.34); a lobe of a
    node or mass that outgrows the limit is left out (3 of 628 benchmark clicks)."""
    from skimage.segmentation import watershed

    edt = ndimage.distance_transform_edt(region, sampling=spacing)
    # The node's core: the seed's local maximum of the distance map, reached by climbing from the seed.
    peak = _climb(edt, seed)
    core_r = float(edt[peak])
    # Too thin to cut: 1.5 in-plane voxels (the median spacing: the in-plane one on thick slices, in any
    # storage order; the slice spacing skipped nodes under 7.5 mm radius on 5 mm
    # slices, and a touching vessel came with them: thick-site worst decile 0.565 -> 0.865, none worse)
    if core_r <= 1.5 * float(np.median(spacing)):
        return region
    # Markers: the node's core plus every region voxel far from it that is as "thick" as a bridge end.
    markers = np.zeros(region.shape, dtype=np.int32)
    d_core = _distance_mm(region.shape, peak, spacing)
    markers[(d_core <= 0.5 * core_r) & region] = 1
    # Other blobs: local maxima of the distance map away from the node's core.
    maxima = (edt == ndimage.maximum_filter(edt, size=3)) & (edt >= 0.35 * core_r) & (d_core > 1.6 * core_r)
    maxima &= region
    if not maxima.any():
        return region
    markers[maxima] = ndimage.label(maxima, structure=np.ones((3, 3, 3)))[0][maxima] + 1  # one id a blob
    basins = watershed(-edt, markers, mask=region)
    runs_on = np.zeros(int(basins.max()) + 1, dtype=bool)
    if rim is not None:
        runs_on[basins[rim & region]] = True
    return np.isin(basins, _basins_joined_at_wide_necks(basins, edt, runs_on))


def _basins_joined_at_wide_necks(basins: np.ndarray, edt: np.ndarray,
                                 runs_on: np.ndarray | None = None) -> list[int]:
    """The ids of the watershed ``basins`` joined to basin 1 (the clicked node's core) through necks at
    least :data:`NECK_SHARE` as thick (``edt``, mm) as the thicker of the two sides: lobes of one node.
    Adjacent basins merge widest neck first; a group's thickness is its deepest ``edt``. A group holding
    a basin flagged in ``runs_on`` (by id) never joins the core's: a vessel as thick as the node, pressed
    against it, has a neck as wide as a lobe's, but it runs on where a lobe ends."""
    n = int(basins.max())
    peak = np.zeros(n + 1)
    inside = basins > 0  # the basins' voxels only: ndimage.maximum sorts the whole crop (100-300 ms)
    np.maximum.at(peak, basins[inside], edt[inside])
    keys, widths = [], []  # basin pairs (i * (n + 1) + j, i < j) touching at a face, and the neck there
    for axis in range(basins.ndim):
        a, b = np.swapaxes(basins, 0, axis), np.swapaxes(edt, 0, axis)
        touch = (a[:-1] != a[1:]) & (a[:-1] > 0) & (a[1:] > 0)
        i, j = a[:-1][touch].astype(np.int64), a[1:][touch].astype(np.int64)
        keys.append(np.minimum(i, j) * (n + 1) + np.maximum(i, j))
        widths.append(np.minimum(b[:-1], b[1:])[touch])
    key, width = np.concatenate(keys), np.concatenate(widths)
    order = np.lexsort((-width, key))  # by pair, widest first: each pair's first row is its neck
    key, width = key[order], width[order]
    first = np.r_[True, key[1:] != key[:-1]]
    key, width = key[first], width[first]
    parent = list(range(n + 1))
    runs = np.zeros(n + 1, dtype=bool) if runs_on is None else runs_on.copy()

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in np.argsort(-width, kind="stable"):
        ri, rj = root(int(key[k] // (n + 1))), root(int(key[k] % (n + 1)))
        if ri == rj or width[k] < NECK_SHARE * max(peak[ri], peak[rj]):
            continue
        core = root(1)
        if (ri == core and runs[rj]) or (rj == core and runs[ri]):
            continue  # a vessel's length, not a lobe: left out (it may still take the lobes behind it)
        parent[rj] = ri
        peak[ri], runs[ri] = max(peak[ri], peak[rj]), runs[ri] or runs[rj]
    return [k for k in range(1, n + 1) if root(k) == root(1)]


def _climb(edt: np.ndarray, seed: tuple[int, ...], max_steps: int = 200) -> tuple[int, ...]:
    """Steepest ascent on ``edt`` from ``seed`` over the 26-neighbourhood."""
    pos = tuple(int(s) for s in seed)
    for _ in range(max_steps):
        win = _crop_around(pos, (1, 1, 1), edt.shape)
        local = edt[win]
        k = np.unravel_index(int(np.argmax(local)), local.shape)
        nxt = tuple(int(w.start + o) for w, o in zip(win, k, strict=True))
        if edt[nxt] <= edt[pos]:
            return pos
        pos = nxt
    return pos


def probable_region_at(
    probabilities: np.ndarray,
    point_zyx: Sequence[float],
    spacing_zyx: Sequence[float],
    labels: np.ndarray | None = None,
    low: float = 0.2,
    max_radius_mm: float = 25.0,
) -> tuple[Slices, np.ndarray]:
    """The connected region of ``probabilities >= low`` (unlabelled) holding a point, in a local crop.

    The fallback for accepting a suggestion whose tissue falls outside the HU band of
    :func:`node_region_from_click`. Returns ``(crop slices, bool mask)``; empty when the point is
    below ``low``.
    """
    idx = _point_index(point_zyx, probabilities.shape)
    spacing = np.asarray(spacing_zyx, dtype=float)
    box = _crop_around(idx, [int(np.ceil(max_radius_mm / s)) + 1 for s in spacing], probabilities.shape)
    seed = tuple(i - b.start for i, b in zip(idx, box, strict=True))
    region = (probabilities[box] >= low) & (
        _distance_mm(probabilities[box].shape, seed, spacing) <= max_radius_mm
    )
    if labels is not None:
        region &= labels[box] == 0
    if not region[seed]:
        seed = _nearest_true(region, seed, spacing, within_mm=3.0)
        if seed is None:
            return box, np.zeros(region.shape, dtype=bool)
    comp, _ = ndimage.label(region)  # growth: face neighbours
    return box, comp == comp[seed]


def node_from_click(
    ct: Volume,
    point_zyx: Sequence[float],
    probabilities: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    max_radius_mm: float = 25.0,
) -> np.ndarray:
    """Bool mask (CT shape) of the node at a positive click; see :func:`node_region_from_click`."""
    box, local = node_region_from_click(ct, point_zyx, probabilities, labels, max_radius_mm)
    mask = np.zeros(ct.shape, dtype=bool)
    mask[box] = local
    return mask


def peak_along_ray(probabilities: np.ndarray, start_zyx: Sequence[float], end_zyx: Sequence[float],
                   labels: np.ndarray | None = None, min_prob: float = 0.1) -> tuple[float, ...] | None:
    """The index point of highest probability on the segment start-end (a click in a 3D view): the
    middle of the run of samples near the peak, so the point lies inside the node, not on its edge.

    Voxels already labelled in ``labels`` do not count (an add click looks for a missed node). None when
    no sample reaches ``min_prob``: the click ran past anything the model saw as node-like.
    """
    start, end = np.asarray(start_zyx, dtype=float), np.asarray(end_zyx, dtype=float)
    n = int(np.ceil(2.0 * np.linalg.norm(end - start))) + 1  # half-voxel steps
    pts = start + np.linspace(0.0, 1.0, n)[:, None] * (end - start)
    idx = np.clip(np.round(pts).astype(int), 0, np.asarray(probabilities.shape) - 1)
    values = np.asarray(probabilities[idx[:, 0], idx[:, 1], idx[:, 2]], dtype=np.float32)
    if labels is not None:
        values[np.asarray(labels[idx[:, 0], idx[:, 1], idx[:, 2]]) > 0] = 0.0
    best = int(np.argmax(values))
    if values[best] < min_prob:
        return None
    near = values >= 0.9 * values[best]
    lo, hi = best, best
    while lo > 0 and near[lo - 1]:
        lo -= 1
    while hi < len(near) - 1 and near[hi + 1]:
        hi += 1
    return tuple(float(v) for v in idx[(lo + hi) // 2])


def component_at(
    labels: np.ndarray,
    point_zyx: Sequence[float],
    start_mm: float = 40.0,
    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[Slices, np.ndarray, int]:
    """The node (connected voxels of the same id) at a click as ``(slices, crop mask, id)``.

    Labelling starts in a crop around the click and grows the crop until the component no longer
    touches its border, so a click never labels the whole volume. ``id`` is 0 when the click is on
    background (the mask is then empty).
    """
    idx = _point_index(point_zyx, labels.shape)
    value = int(labels[idx])
    if value == 0:
        box = _crop_around(idx, (0, 0, 0), labels.shape)
        return box, np.zeros((1, 1, 1), dtype=bool), 0
    radius = [max(2, int(np.ceil(start_mm / s))) for s in spacing_zyx]
    while True:
        box = _crop_around(idx, radius, labels.shape)
        comp, _ = label_components(labels[box] == value)
        mask = comp == comp[tuple(i - s.start for i, s in zip(idx, box, strict=True))]
        touches = any(
            (s.start > 0 and np.take(mask, 0, axis=ax).any())
            or (s.stop < labels.shape[ax] and np.take(mask, -1, axis=ax).any())
            for ax, s in enumerate(box)
        )
        if not touches:
            return box, mask, value
        radius = [r * 2 for r in radius]


def remove_node_at(labels: np.ndarray, point_zyx: Sequence[float]) -> tuple[np.ndarray, int]:
    """``(labels without the clicked component, its id)``; unchanged copy and id 0 on background.

    Only the clicked connected component is removed, so a binary mask (all nodes labelled 1) loses
    just the clicked node.
    """
    box, mask, value = component_at(labels, point_zyx)
    out = labels.copy()
    if value:
        out[box][mask] = 0
    return out, value


def suggest_candidates(
    probabilities: Volume,
    mask: Volume,
    low: float = 0.2,
    high: float = 0.5,
    min_volume_mm3: float = 50.0,
    max_candidates: int = 50,
    hu: np.ndarray | None = None,
    max_mean_hu: float | None = None,
    region: np.ndarray | None = None,
    size_floor_mm3: float = 0.0,
    merge_mm: float = MERGE_MM,
    min_peak: float = 0.0,
) -> list[Suggestion]:
    """Candidate nodes the mask leaves out, best first.

    A candidate is a connected region where ``low <= probability`` that the mask leaves out and that
    does not touch a masked node (so fringes of accepted nodes are not suggested). Regions closer than
    ``merge_mm`` to each other are one candidate (fragments of one node). Left out: candidates too
    bright to be nodes given ``hu`` (the CT on the same grid; mean and median HU above ``max_mean_hu``,
    as post-processing rejects bone and enhanced vessels), smaller than ``min_volume_mm3``, or, given a
    bool ``region``, mostly outside it. ``kind`` says what a candidate is: "unsure" (peak below
    ``high``, the model's threshold, or below ``min_peak``, the confident core post-processing asks
    for), or, for a region the model is sure of that post-processing
    dropped, "small" (its core below ``size_floor_mm3``), "bright" (its core too bright, as above) or
    "dropped". The centre is the centroid of the best fragment. Score = max probability x equivalent
    diameter in mm.
    """
    prob = np.asarray(probabilities.array, dtype=np.float32)
    masked = np.asarray(mask.array) > 0
    if prob.shape != masked.shape:
        raise ValueError(f"probabilities {prob.shape} and mask {masked.shape} differ in shape")
    candidates = prob >= low  # one full-size bool, masked voxels cleared in place
    candidates[masked] = False
    # ids on the candidates' box grown by a voxel only (the same ids, raster order): no full-size int32
    cbox = _grown_box(candidates, 1)
    if cbox is None:  # nothing the model saw beside the nodes
        return []
    comp, _ = label_components(candidates[cbox])
    offset = [c.start for c in cbox]
    del candidates
    voxel_mm3 = float(np.prod(probabilities.spacing))
    pieces = []
    # one small crop per component: fast, and never holds the GIL long (the GUI stays responsive)
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        box = tuple(slice(max(0, b.start - 1), min(dim, b.stop + 1)) for b, dim in zip(box, comp.shape))
        local = comp[box] == k
        box = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, offset))  # on the CT grid
        if (grown_by_one(local) & masked[box]).any():
            continue  # touches a masked node: a fringe, not a candidate
        if hu is not None and max_mean_hu is not None and too_bright(hu[box][local], max_mean_hu):
            continue  # too bright to be a node
        if region is not None and 2 * int(np.count_nonzero(region[box][local])) < int(local.sum()):
            continue  # mostly outside the region
        pieces.append(_Piece(box, local, prob[box][local]))
    rows = []
    for group in _groups(pieces, np.asarray(probabilities.spacing_zyx, dtype=float), merge_mm):
        voxels = sum(p.voxels for p in group)
        vol = voxels * voxel_mm3
        if vol < min_volume_mm3:
            continue
        best = max(group, key=lambda p: float(p.prob.max()) * p.voxels ** (1 / 3))
        max_prob = max(float(p.prob.max()) for p in group)
        centre = np.argwhere(best.local).mean(axis=0) + np.array([b.start for b in best.box])
        kind, reason = "unsure", ""
        if high <= max_prob < min_peak:
            reason = f"no confident core (peak below {min_peak:g})"
        elif max_prob >= high:
            kind, reason = _why_dropped(group, prob, high, voxel_mm3, size_floor_mm3, hu, max_mean_hu)
        rows.append(Suggestion(
            kind=kind, centre_zyx=tuple(int(round(c)) for c in centre),
            centre_mm=tuple(float(v) for v in probabilities.index_to_physical(centre)[0]),
            score=max_prob * equivalent_diameter(vol), max_prob=max_prob,
            mean_prob=float(sum(float(p.prob.sum()) for p in group) / voxels),
            uncertain=kind == "unsure", voxels=voxels, volume_mm3=vol, reason=reason,
        ))
    return rank_suggestions(rows, max_candidates)


@dataclass
class _Piece:
    """One connected candidate region: its crop, its mask there and its probabilities."""

    box: Slices
    local: np.ndarray
    prob: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.prob.size)


def _groups(pieces: list[_Piece], spacing: np.ndarray, merge_mm: float) -> list[list[_Piece]]:
    """``pieces`` grouped by nearness: two pieces whose voxels come within ``merge_mm`` share a group."""
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pad = [int(np.ceil(merge_mm / s)) for s in spacing]
    for i, a in enumerate(pieces):
        if merge_mm <= 0:
            break
        near = None
        lo = [b.start - p for b, p in zip(a.box, pad)]
        hi = [b.stop + p for b, p in zip(a.box, pad)]
        for j in range(i + 1, len(pieces)):
            b = pieces[j]
            if any(bb.stop <= l or bb.start >= h for bb, l, h in zip(b.box, lo, hi)):
                continue
            if near is None:  # distance (mm) to piece a, on a's box grown by merge_mm
                canvas = np.zeros([h - lo_ for lo_, h in zip(lo, hi)], dtype=bool)
                canvas[tuple(slice(p, p + n) for p, n in zip(pad, a.local.shape))] = a.local
                near = ndimage.distance_transform_edt(~canvas, sampling=spacing) <= merge_mm
            pts = np.argwhere(b.local) + [bb.start - l for bb, l in zip(b.box, lo)]
            inside = np.all((pts >= 0) & (pts < near.shape), axis=1)
            if inside.any() and near[tuple(pts[inside].T)].any():
                parent[root(j)] = root(i)
    groups: dict[int, list[_Piece]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(root(i), []).append(piece)
    return list(groups.values())


def _why_dropped(group: list[_Piece], prob: np.ndarray, high: float, voxel_mm3: float,
                 size_floor_mm3: float, hu: np.ndarray | None, max_mean_hu: float | None) -> tuple[str, str]:
    """``(kind, reason)`` of a region the model is sure of that post-processing left out."""
    core = [(p.box, p.local & (prob[p.box] >= high)) for p in group]
    core_mm3 = sum(int(c.sum()) for _, c in core) * voxel_mm3
    if core_mm3 < size_floor_mm3:
        return "small", f"small, below the size floor ({size_floor_mm3 / 1000:.2f} cm3)"
    if hu is not None:
        values = np.concatenate([hu[b][c].ravel() for b, c in core])
        if max_mean_hu is not None and too_bright(values, max_mean_hu):
            return "bright", f"bright, mean {float(values.mean()):.0f} HU"
    return "dropped", "left out by post-processing"


def equivalent_diameter(volume_mm3: float) -> float:
    """Diameter (mm) of the sphere of this volume."""
    return (6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0)


def rank_suggestions(rows: list[Suggestion], max_candidates: int = 50,
                     spacing_zyx: Sequence[float] | None = None, merge_mm: float = 0.0) -> list[Suggestion]:
    """Suggestions sorted by ``score`` (best first), cut to ``max_candidates``, ``rank`` set from 1.

    Given ``spacing_zyx`` and ``merge_mm``, a suggestion whose centre lies within ``merge_mm`` of a
    better one's is dropped (two rings on one node: e.g. its missing outline and an unsure fringe).
    """
    rows = sorted(rows, key=lambda r: r.score, reverse=True)
    if spacing_zyx is not None and merge_mm > 0:
        spacing = np.asarray(spacing_zyx, dtype=float)
        kept: list[Suggestion] = []
        for row in rows:
            here = np.asarray(row.centre_zyx, dtype=float)
            if all(np.linalg.norm((here - np.asarray(k.centre_zyx)) * spacing) > merge_mm for k in kept):
                kept.append(row)
        rows = kept
    rows = rows[: max(int(max_candidates), 0)]
    return [replace(row, rank=rank) for rank, row in enumerate(rows, start=1)]
