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


def default_grid(rng: np.random.Generator, shape=None, spacing=None, site: Site = DEFAULT):
    """Shape (z, y, x) and spacing (x, y, z) like LNQ scans, for whichever of them was not given.

    The site's field of view scales the in-plane spacing and its slice thickness replaces the z spacing,
    drawn or given.
    """
    if spacing is None:
        fov = float(np.clip(np.exp(rng.normal(np.log(425.0), 0.15)), 307.0, 778.0))
        s = round(fov) / 512.0
        dz = float(
            rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0], p=[0.06, 0.04, 0.07, 0.1, 0.1, 0.48, 0.15])
        )
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
    """``shape`` as three positive ints (z, y, x), or LNQError."""
    try:
        out = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise LNQError(f"shape {shape!r} is not three integers (z, y, x); give e.g. (24, 96, 96)") from None
    if len(out) != 3 or min(out) < 1:
        raise LNQError(f"shape {shape!r} must be three positive integers (z, y, x); give e.g. (24, 96, 96)")
    return out


def check_spacing(spacing) -> tuple[float, float, float]:
    """``spacing`` as three positive floats (x, y, z) mm, or LNQError."""
    try:
        out = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise LNQError(f"spacing {spacing!r} is not three numbers (x, y, z) in mm") from None
    if len(out) != 3 or not all(np.isfinite(out)) or min(out) <= 0:
        raise LNQError(f"spacing {spacing!r} must be three positive numbers (x, y, z) in mm")
    return out


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
    the seed (512 x 512 in-plane, 0.6-1.5 mm pixels, 1-5 mm slices covering 250-330 mm). Anatomy lives
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


__all__ = ["PhantomCase", "make_case", "default_grid", "choose_labelled", "average_slices"]
