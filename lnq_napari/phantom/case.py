"""`make_case`: one synthetic chest CT with complete node truth and LNQ-style partial labels.

A `Site` (by name) shifts the grid here (slice thickness, field of view; thick slices are drawn thin
and averaged) and passes on to anatomy, nodes and scanner finish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume
from lnq_napari.phantom.anatomy import Anatomy
from lnq_napari.phantom.canvas import Canvas
from lnq_napari.phantom.nodes import Node, paint_nodes, place_nodes
from lnq_napari.phantom.sites import DEFAULT, Site, get_site
from lnq_napari.phantom.texture import finish

# LNQ training cases: how many nodes carry a label (mean ~1.46, 63 % exactly one)
_LABELLED_P = (0.63, 0.28, 0.09)


@dataclass
class PhantomCase:
    """One phantom case: CT, partial labels, complete truth and the node list."""

    case_id: str
    ct: Volume  # int16 HU
    partial: Volume  # uint8 {0, 1}: the labelled subset of target nodes
    full: Volume  # uint8 {0, 1}: every target node (minimal diameter >= 10 mm)
    nodes: list[dict] = field(default_factory=list)
    instances: Volume | None = None  # uint16: node id (1-based, as in ``nodes``) per voxel, all nodes


def choose_labelled(rng: np.random.Generator, target_ids: list[int]) -> set[int]:
    """The targets an LNQ-style partial label annotates: 1, 2 or 3 of them (63 / 28 / 9 %)."""
    if not target_ids:
        return set()
    k = int(rng.choice([1, 2, 3], p=_LABELLED_P))
    return set(rng.choice(target_ids, size=min(k, len(target_ids)), replace=False).tolist())


#: The grid a phantom case may be drawn on: its voxel size (mm) and the most voxels (about 28 bytes each
#: while a case is drawn: 262 million take some 7 GB).
MIN_SPACING_MM = 0.3
MAX_VOXELS = 1000 * 512 * 512
#: The grid a user may ask for (``phantom --shape/--spacing``, :func:`check_requested_grid`): pixel (X, Y)
#: and slice (Z) sizes, and the least field of view that holds the phantom's chest (its body is at least
#: 240 mm wide) and the mediastinum's node stations along z.
PIXEL_MM = (MIN_SPACING_MM, 5.0)
SLICE_MM = (0.5, 10.0)
MIN_FOV_MM = (250.0, 100.0)  # across (X and Y), along z


def default_grid(rng: np.random.Generator, shape=None, spacing=None, site: Site = DEFAULT):
    """Shape (z, y, x) and spacing (x, y, z) like LNQ scans, for whichever of them was not given.

    Neither given: 512 x 512 pixels of 0.6-1.5 mm (an LNQ-like field of view of 307-778 mm, about 425),
    1-5 mm slices covering 250-330 mm. A shape alone: the spacing that gives such a chest-size field, the
    drawn field of view over the in-plane size (its smaller side) and the drawn 250-330 mm over the slices,
    kept within :data:`PIXEL_MM` and :data:`SLICE_MM`. A spacing alone: 512 x 512 pixels and the drawn
    length. The site's field of view scales the in-plane spacing and its slice thickness replaces the z
    spacing, drawn or given.
    """
    if spacing is None:
        fov = float(np.clip(np.exp(rng.normal(np.log(425.0), 0.15)), 307.0, 778.0))
        if shape is None:
            s = round(fov) / 512.0
            dz = float(
                rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0], p=[0.06, 0.04, 0.07, 0.1, 0.1, 0.48, 0.15])
            )
        else:  # the field of view of an LNQ scan, not 512 of its pixels (a 160-pixel grid held 13 cm)
            nz, ny, nx = check_shape(shape)
            s = round(float(np.clip(round(fov) / min(ny, nx), *PIXEL_MM)), 6)
            dz = round(float(np.clip(rng.uniform(250.0, 330.0) / nz, *SLICE_MM)), 6)
        spacing = (s, s, dz)
    sx, sy, sz = check_spacing(spacing)
    if site.fov_scale != 1.0:
        sx, sy = round(sx * site.fov_scale, 6), round(sy * site.fov_scale, 6)
    spacing = (sx, sy, site.slice_mm or sz)
    if shape is None:
        extent = rng.uniform(250.0, 330.0)
        shape = (max(int(round(extent / spacing[2])), 8), 512, 512)
    return check_shape(shape), check_spacing(spacing)


def check_shape(shape) -> tuple[int, int, int]:
    """``shape`` as three positive ints (z, y, x) of at most :data:`MAX_VOXELS` voxels, or LNQError."""
    try:
        out = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise LNQError(f"shape {shape!r} is not three integers (z, y, x); give e.g. --shape 40 160 160") \
            from None
    if len(out) != 3 or min(out) < 1:
        raise LNQError(f"shape {shape!r} must be three positive integers (z, y, x); give e.g. "
                       "--shape 40 160 160")
    voxels = int(np.prod(out, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise LNQError(f"--shape {_three(out)} is {voxels / 1e6:.0f} million voxels, more than the "
                       f"{MAX_VOXELS / 1e6:.0f} million a phantom case may have (about 7 GB of memory to "
                       "draw); give a smaller shape, e.g. --shape 40 160 160")
    return out


def check_spacing(spacing) -> tuple[float, float, float]:
    """``spacing`` as three numbers (x, y, z) of at least :data:`MIN_SPACING_MM` mm, or LNQError."""
    try:
        out = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise LNQError(f"spacing {spacing!r} is not three numbers (x, y, z) in mm") from None
    if len(out) != 3 or not all(np.isfinite(out)) or min(out) <= 0:
        raise LNQError(f"spacing {spacing!r} must be three positive numbers (x, y, z) in mm")
    if min(out) < MIN_SPACING_MM:  # a node's box at 0.01 mm took all memory
        raise LNQError(f"--spacing {_three(out)} is finer than the {MIN_SPACING_MM} mm a phantom case may "
                       "have; give e.g. --spacing 2 2 5")
    return out


def check_requested_grid(shape=None, spacing=None) -> None:
    """LNQError, in one line naming ``--shape``/``--spacing``, the allowed range and what to give, when the
    grid a user asks for cannot hold the phantom's chest: pixels outside :data:`PIXEL_MM`, slices outside
    :data:`SLICE_MM`, a field of view under :data:`MIN_FOV_MM` (a small grid held no node) or too many
    voxels. A shape alone is measured at the largest spacing :func:`default_grid` may choose for it."""
    shape = None if shape is None else check_shape(shape)
    spacing = None if spacing is None else check_spacing(spacing)
    if spacing is not None and not (PIXEL_MM[0] <= min(spacing[:2]) and max(spacing[:2]) <= PIXEL_MM[1]
                                    and SLICE_MM[0] <= spacing[2] <= SLICE_MM[1]):
        raise LNQError(f"--spacing {_three(spacing)} is outside what a phantom case may have: pixels (X, Y) "
                       f"{_mm(PIXEL_MM)} and slices (Z) {_mm(SLICE_MM)}; give e.g. --spacing 2 2 5")
    if shape is None:
        if spacing is not None and min(spacing[:2]) * 512 < MIN_FOV_MM[0]:  # 512 x 512 pixels
            across = min(spacing[:2]) * 512
            raise LNQError(f"--spacing {_three(spacing)} alone gives 512 x 512 pixels, {across:.0f} mm "
                           f"across, less than the {MIN_FOV_MM[0]:.0f} mm the phantom's chest needs; give "
                           "--shape too, e.g. --shape 40 160 160 --spacing 2 2 5")
        return
    nz, ny, nx = shape
    sx, sy, sz = spacing or (PIXEL_MM[1], PIXEL_MM[1], SLICE_MM[1])
    field = (nx * sx, ny * sy, nz * sz)
    if min(field[:2]) < MIN_FOV_MM[0] or field[2] < MIN_FOV_MM[1]:
        given = f"--shape {_three(shape)}" + (f" --spacing {_three(spacing)}" if spacing else "")
        least = (int(np.ceil(MIN_FOV_MM[0] / PIXEL_MM[1])), int(np.ceil(MIN_FOV_MM[1] / SLICE_MM[1])))
        fix = ("give more voxels or larger spacing" if spacing else
               f"without --spacing, give at least {least[0]} pixels across and {least[1]} slices")
        covers = "covers" if spacing else "covers at most"
        raise LNQError(f"{given} {covers} {field[0]:.0f} x {field[1]:.0f} x {field[2]:.0f} mm, too small for "
                       f"the phantom's chest (at least {MIN_FOV_MM[0]:.0f} mm across and "
                       f"{MIN_FOV_MM[1]:.0f} mm along z); {fix}, e.g. --shape 40 160 160 --spacing 2 2 5")


def _three(values) -> str:
    """Three numbers as the command line takes them: ``40 160 160``, ``2 2 5``."""
    return " ".join(f"{v:g}" for v in values)


def _mm(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}-{bounds[1]:g} mm"


def make_case(
    seed: int,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    case_id: str | None = None,
    site: str | Site = "default",
    nodes_hook: Callable[[Anatomy, Canvas, list[Node]], list[Node]] | None = None,
) -> PhantomCase:
    """A synthetic chest CT drawn from ``seed`` as the CT source ``site`` would show it.

    ``shape`` is (z, y, x) and ``spacing`` (x, y, z) in mm; either defaults to LNQ-like values drawn from
    the seed (:func:`default_grid`: 512 x 512 in-plane, 0.6-1.5 mm pixels, 1-5 mm slices covering 250-330
    mm; a shape alone gets the spacing of such a field of view). Anatomy lives
    in physical mm, so any grid samples the same kind of chest. ``site`` names an entry of
    `lnq_napari.phantom.sites.SITES` ("default": the training phantom). ``nodes_hook(anatomy, canvas, nodes)``
    may return another node list before painting (a later time point: :mod:`lnq_napari.phantom.followup`).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LNQError(f"seed must be a non-negative integer, got {seed!r}")
    site = get_site(site)
    rng = np.random.default_rng(seed)
    shape, spacing = default_grid(rng, shape, spacing, site)
    nz, ny, nx = shape
    fov = np.array([nx * spacing[0], ny * spacing[1], nz * spacing[2]])
    # scanner-like LPS origin: x, y about minus half the field of view, z anywhere
    origin = np.array(
        [
            -(nx - 1) * spacing[0] / 2 + rng.normal(0.0, 4.0),
            -(ny - 1) * spacing[1] / 2 + rng.normal(0.0, 8.0),
            -rng.uniform(100.0, 1200.0),
        ]
    ).round(3)
    offset = np.array([rng.normal(0.0, 6.0), rng.normal(0.0, 8.0)])
    centre_xy = origin[:2] + (np.array([nx, ny]) - 1) * np.asarray(spacing[:2]) / 2 + offset
    above = rng.uniform(110.0, 150.0) if fov[2] >= 250 else fov[2] * rng.uniform(0.42, 0.52)
    centre_z = origin[2] + (nz - 1) * spacing[2] - above
    centre = np.array([centre_xy[0], centre_xy[1], centre_z])

    anatomy = Anatomy.sample(rng, max_half_width=min(fov[0] / 2 - abs(offset[0]), fov[1] / 1.4), site=site)
    k = site.pv_subslices  # thin slices per slice
    thin = spacing[2] / k
    cv = Canvas((nz * k, ny, nx), (spacing[0], spacing[1], thin), origin - [0, 0, (k - 1) * thin / 2], centre)
    anatomy.paint(cv)
    nodes = place_nodes(anatomy, cv, rng, site)
    if nodes_hook is not None:
        nodes = nodes_hook(anatomy, cv, nodes)
    inst, boxes = paint_nodes(cv, nodes, rng, fat_hu=anatomy.med_fat_hu)
    hu = finish(cv, anatomy, rng, site)
    if k > 1:
        hu, inst, boxes = average_slices(hu, inst, boxes, k)

    counts = {i: int((inst[sl] == i).sum()) for i, sl in boxes.items()}
    counts = [counts.get(i, 0) for i in range(len(nodes) + 1)]
    target_ids = [i + 1 for i, n in enumerate(nodes) if n.target and counts[i + 1] > 0]
    chosen = choose_labelled(rng, target_ids)
    for i in chosen:
        nodes[i - 1].labelled = True
    full = np.zeros(inst.shape, dtype=np.uint8)
    partial = np.zeros(inst.shape, dtype=np.uint8)
    for i in target_ids:  # nodes never overlap, so box by box is exact
        full[boxes[i]][inst[boxes[i]] == i] = 1
        if i in chosen:
            partial[boxes[i]][inst[boxes[i]] == i] = 1

    grid = dict(spacing=spacing, origin=tuple(origin))
    cid = case_id or f"phantom-{seed}"
    meta = {"contrast": anatomy.contrast, "lnq_site": site.name}
    return PhantomCase(
        case_id=cid,
        ct=Volume(_to_int16(hu), meta=meta, **grid),
        partial=Volume(partial, **grid),
        full=Volume(full, **grid),
        nodes=[_node_dict(i + 1, n, centre, counts[i + 1], spacing) for i, n in enumerate(nodes)],
        instances=Volume(inst, **grid),
    )


def average_slices(
    hu: np.ndarray, inst: np.ndarray, boxes: dict, k: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Thick slices from thin ones: HU averaged over each ``k`` slices (partial volume).

    A thick voxel belongs to the node that fills at least half of it; node boxes follow.
    """
    nz = hu.shape[0] // k
    thick = hu.reshape(nz, k, *hu.shape[1:]).mean(axis=1)
    out = np.zeros((nz,) + inst.shape[1:], dtype=inst.dtype)
    share = np.zeros(out.shape, dtype=np.float32)
    out_boxes = {}
    for i, sl in boxes.items():
        z0, z1 = sl[0].start // k, -(-sl[0].stop // k)
        box = (slice(z0, z1), sl[1], sl[2])
        block = inst[z0 * k : z1 * k, sl[1], sl[2]] == i
        frac = block.reshape(z1 - z0, k, *block.shape[1:]).mean(axis=1, dtype=np.float32)
        take = (frac >= 0.5) & (frac > share[box])
        out[box][take] = i
        share[box][take] = frac[take]
        out_boxes[i] = box
    return thick, out, out_boxes


def _to_int16(hu: np.ndarray) -> np.ndarray:
    """Round and clip HU to the CT range in place, then convert to int16."""
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    return hu.astype(np.int16)


def _node_dict(nid: int, n: Node, centre: np.ndarray, n_vox: int, spacing) -> dict:
    dmin, dmax = n.ferets()
    return {
        "id": nid,
        "center_xyz_mm": [round(float(x), 3) for x in n.centre + centre],
        "radii_mm": [round(float(r), 3) for r in n.radii],
        "diameter_min_mm": round(dmin, 2),
        "diameter_max_mm": round(dmax, 2),
        "target": bool(n.target),
        "labelled": bool(n.labelled),
        "touches_vessel": bool(n.touches_vessel),
        "station": n.station,
        "hu_mean": round(float(n.hu), 1),
        "n_voxels": int(n_vox),
        "volume_ml": round(float(n_vox * np.prod(spacing)) / 1000.0, 3),
    }


__all__ = ["PhantomCase", "make_case", "default_grid", "check_requested_grid", "choose_labelled",
           "average_slices"]
