"""Phantom follow-ups: a second time point of the same synthetic patient with known node changes.

The follow-up is drawn from the baseline's seed, so anatomy and node positions are the same; before
painting, target nodes grow, shrink, stay or vanish and new ones appear (a *scenario*: response,
progression, stable or mixed). The whole scan is then moved: a rigid shift and turn (another table
position) and a small breathing-like deformation (the lower chest moves up and out). The truth records
which baseline node became which follow-up node and the true volume change (the change of the node's
shape, before it is put on voxels).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lnq_napari.io.outputs import check_not_users
from lnq_napari.io.volume import Volume
from lnq_napari.phantom.anatomy import Anatomy
from lnq_napari.phantom.canvas import Canvas
from lnq_napari.phantom.case import PhantomCase, make_case
from lnq_napari.phantom.dataset import case_seed, write_case_files
from lnq_napari.phantom.nodes import Node, _Placer, _sized_node

SCENARIOS = ("response", "progression", "stable", "mixed")
#: Radius factors (all three axes) a node's change is drawn from, by kind of change.
_FACTORS = {"grow": (1.2, 1.45), "shrink": (0.55, 0.8), "stay": (0.95, 1.05)}
#: Share of each kind of change per scenario: grow, shrink, stay, vanish; and how many new nodes.
_MIX = {
    "response": ((0.0, 0.75, 0.15, 0.1), (0, 0)),
    "progression": ((0.7, 0.0, 0.3, 0.0), (1, 2)),
    "stable": ((0.0, 0.0, 1.0, 0.0), (0, 0)),
    "mixed": ((0.3, 0.3, 0.25, 0.15), (1, 1)),
}


@dataclass
class Motion:
    """How the patient lies at follow-up: rigid turn (degrees about x, y, z) and shift (mm), and the
    breathing amplitude (mm: superior shift of the lower chest; half of it as antero-posterior widening)."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    breathing_mm: float = 0.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Motion:
        rot = (rng.normal(0.0, 1.0), rng.normal(0.0, 1.0), rng.normal(0.0, 2.0))
        shift = (rng.normal(0.0, 6.0), rng.normal(0.0, 6.0), rng.normal(0.0, 10.0))
        return cls(tuple(float(np.clip(r, -4, 4)) for r in rot),
                   tuple(float(np.clip(s, -20, 20)) for s in shift), float(rng.uniform(2.0, 6.0)))


@dataclass
class FollowupPair:
    """Baseline and follow-up phantom cases of one patient and the truth between them."""

    baseline: PhantomCase
    followup: PhantomCase
    truth: dict = field(default_factory=dict)  # scenario, motion, changes (one entry per node), ids


@dataclass
class _Edit:
    """The node edit of one follow-up: draws the changes and remembers them."""

    rng: np.random.Generator
    scenario: str
    changes: list[dict] = field(default_factory=list)

    def __call__(self, anatomy: Anatomy, cv: Canvas, nodes: list[Node]) -> list[Node]:
        mix, (lo_new, hi_new) = _MIX[self.scenario]
        kinds = ("grow", "shrink", "stay", "vanish")
        out: list[Node] = []
        placer = _Placer(anatomy, cv, self.rng)
        placer.placed = list(nodes)
        for index, node in enumerate(nodes):
            base_id = index + 1
            if not node.target:
                out.append(node)
                continue
            kind = str(self.rng.choice(kinds, p=mix))
            if kind == "vanish":  # kept in the placer: no new node takes its place (that would be ambiguous)
                self.changes.append({"baseline_id": base_id, "followup_id": None, "change": "vanished",
                                     "radius_factor": 0.0})
                continue
            factor, changed = self._resize(placer, node, kind)
            out.append(changed)
            self.changes.append({"baseline_id": base_id, "followup_id": len(out),
                                 "change": kind if factor != 1.0 else "stay",
                                 "radius_factor": round(factor, 4)})
        for _ in range(int(self.rng.integers(lo_new, hi_new + 1))):
            for attempt in range(4):  # a node that does not fit is redrawn smaller
                node = _sized_node(self.rng, True, scale=0.85**attempt)
                if placer.place(node, touch=bool(self.rng.random() < 0.3), tries=100):
                    out.append(node)
                    self.changes.append({"baseline_id": None, "followup_id": len(out), "change": "new",
                                         "radius_factor": None})
                    break
        return out

    def _resize(self, placer: _Placer, node: Node, kind: str) -> tuple[float, Node]:
        """``node`` scaled by a factor of ``kind`` that still fits between its neighbours."""
        lo, hi = _FACTORS[kind]
        factor = float(self.rng.uniform(lo, hi))
        placer.placed = [n for n in placer.placed if n is not node]  # by identity: nodes hold arrays
        for _ in range(8):
            changed = replace(node, radii=node.radii * factor)
            if factor <= 1.0 or _fits(changed, placer):
                break
            factor = 1.0 + (factor - 1.0) * 0.7  # too big for its place: grow less
        else:
            changed, factor = node, 1.0
        placer.placed.append(changed)
        return factor, changed


def _fits(node: Node, placer: _Placer) -> bool:
    """A grown node stays in the chest, mostly out of the lungs, and clear of every other node."""
    c, b = node.centre, node.bound()
    if np.any(c - b < placer.lo) or np.any(c + b > placer.hi):
        return False
    if any(np.linalg.norm(o.centre - c) < o.bound() + b + 1.0 for o in placer.placed):
        return False
    pts = node.surface()
    return bool(np.all(placer.a.in_thorax(pts[:, 0], pts[:, 1], pts[:, 2]))
                and placer.a.lung_at(pts).mean() <= 0.5)


def make_followup(seed: int, shape=None, spacing=None, scenario: str | None = None,
                  motion: Motion | None = None, site: str = "default") -> FollowupPair:
    """Baseline (``make_case(seed)``) and its follow-up with known changes (see the module docstring).

    ``scenario`` (one of :data:`SCENARIOS`) and ``motion`` are drawn from the seed when not given.
    """
    rng = np.random.default_rng([int(seed), 1])
    scenario = scenario or str(rng.choice(SCENARIOS))
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    motion = motion or Motion.draw(rng)
    baseline = make_case(seed, shape=shape, spacing=spacing, site=site)
    edit = _Edit(rng, scenario)
    moved = make_case(seed, shape=shape, spacing=spacing, site=site, nodes_hook=edit,
                      case_id=f"{baseline.case_id}-followup")
    followup = _move(moved, motion)
    truth = _truth(baseline, followup, edit, scenario, motion)
    return FollowupPair(baseline, followup, truth)


def motion_transform(volume: Volume, motion: Motion):
    """SimpleITK transform: follow-up point -> the same tissue's point before the motion.

    The turn is about the grid's centre; breathing lifts and widens the lower chest smoothly
    (nothing above the grid's middle moves by more than a quarter of the amplitude).
    """
    import SimpleITK as sitk

    step = 8.0
    lo = np.asarray(volume.index_to_physical(np.array([[-0.5, -0.5, -0.5]])))[0]
    hi = np.asarray(volume.index_to_physical(np.asarray(volume.shape, dtype=float)[None] - 0.5))[0]
    lo, hi = np.minimum(lo, hi) - 2 * step, np.maximum(lo, hi) + 2 * step
    size = np.ceil((hi - lo) / step).astype(int) + 1
    axes = [lo[i] + step * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    points = np.stack([x, y, z], axis=-1)
    centre = (lo + hi) / 2.0
    euler = sitk.Euler3DTransform()
    euler.SetCenter([float(c) for c in centre])
    euler.SetRotation(*[float(np.deg2rad(a)) for a in motion.rotation_deg])
    matrix = np.asarray(euler.GetMatrix()).reshape(3, 3)
    rigid = (points - centre) @ matrix.T + centre + np.asarray(motion.shift_mm)
    low = 0.5 * (1.0 - np.tanh((points[..., 2] - centre[2]) / 40.0))  # 1 in the lower chest, 0 above
    breath = np.zeros_like(points)
    breath[..., 2] = -motion.breathing_mm * low  # the tissue seen here came from lower down
    breath[..., 1] = -0.5 * motion.breathing_mm * low * (points[..., 1] - centre[1]) / 120.0
    field_ = sitk.GetImageFromArray((rigid + breath - points).astype(np.float64), isVector=True)
    field_.SetOrigin([float(v) for v in lo])
    field_.SetSpacing([step] * 3)
    return sitk.DisplacementFieldTransform(field_)


def _move(case: PhantomCase, motion: Motion) -> PhantomCase:
    """``case`` seen after ``motion`` on the same grid (CT linear, labels nearest neighbour)."""
    import SimpleITK as sitk

    transform = motion_transform(case.ct, motion)

    def warp(vol: Volume, interp, fill: float) -> Volume:
        image = vol.to_sitk()
        out = sitk.Resample(image, image, transform, interp, fill, image.GetPixelID())
        return Volume(sitk.GetArrayFromImage(out), vol.spacing, vol.origin, vol.direction, dict(vol.meta))

    ct = warp(case.ct, sitk.sitkLinear, -1000.0)
    instances = warp(case.instances, sitk.sitkNearestNeighbor, 0)
    target_ids = [n["id"] for n in case.nodes if n["target"]]
    labelled = [n["id"] for n in case.nodes if n["labelled"]]
    inst = np.asarray(instances.array)
    full = np.isin(inst, target_ids).astype(np.uint8)
    partial = np.isin(inst, labelled).astype(np.uint8)
    return PhantomCase(case.case_id, ct, case.partial.with_array(partial), case.full.with_array(full),
                       case.nodes, instances)


def _voxels(case: PhantomCase) -> dict[int, tuple[int, list[float]]]:
    """Node id -> (voxel count, centroid xyz mm) from the case's instance map."""
    from scipy import ndimage

    inst = np.asarray(case.instances.array)
    out = {}
    for k, box in enumerate(ndimage.find_objects(inst.astype(np.int32)), start=1):
        if box is None:
            continue
        zyx = np.argwhere(inst[box] == k) + np.array([s.start for s in box])
        centroid = case.instances.index_to_physical(zyx.mean(axis=0))[0]
        out[k] = (len(zyx), [round(float(v), 3) for v in centroid])
    return out


def _truth(baseline: PhantomCase, followup: PhantomCase, edit: _Edit,
           scenario: str, motion: Motion) -> dict:
    """The true matching and changes (JSON-ready); follow-up ids are those of its instance map."""
    voxel_ml = float(np.prod(baseline.ct.spacing)) / 1000.0
    base_vox, follow_vox = _voxels(baseline), _voxels(followup)
    changes = []
    for change in edit.changes:
        entry = dict(change)
        bid, fid = entry["baseline_id"], entry["followup_id"]
        b = base_vox.get(bid) if bid else None
        f = follow_vox.get(fid) if fid else None
        entry["status"] = {(True, True): "matched", (True, False): "vanished", (False, True): "new",
                           (False, False): "absent"}[(b is not None, f is not None)]
        entry["volume_baseline_ml"] = round(b[0] * voxel_ml, 4) if b else None
        entry["volume_followup_ml"] = round(f[0] * voxel_ml, 4) if f else None
        factor = entry["radius_factor"]
        entry["volume_change_pct"] = (round(100.0 * (factor ** 3 - 1.0), 2)
                                      if factor and b and f else None)  # of its shape
        entry["voxel_change_pct"] = round(100.0 * (f[0] / b[0] - 1.0), 2) if b and f else None  # its masks
        entry["centroid_baseline_mm"] = b[1] if b else None
        entry["centroid_followup_mm"] = f[1] if f else None
        changes.append(entry)
    return {"scenario": scenario, "motion": {"rotation_deg": list(motion.rotation_deg),
            "shift_mm": list(motion.shift_mm), "breathing_mm": motion.breathing_mm}, "changes": changes}


def write_followup(out: str | Path, seed: int = 0, index: int = 0, shape=None, spacing=None,
                   prefix: str = "phantom-followup", scenario: str | None = None) -> tuple[Path, Path]:
    """Write pair ``index`` of the follow-up set ``seed``: ``<prefix>-NNNN-t0-*`` (baseline) and
    ``-t1-*`` (follow-up), each with ``-ct.nrrd``, ``-seg.nrrd`` (partial), ``-full.nrrd`` (truth) and
    ``-nodes.json``; the follow-up's JSON also holds ``baseline`` and ``changes`` (the true matching).
    Returns the two CT paths; each CT is written last. Files of those names the phantom did not write
    are an LNQError before anything is written."""
    out = Path(out)
    stem = f"{prefix}-{index + 1:04d}"
    names = (f"{stem}-{tag}-{kind}.nrrd" for tag in ("t0", "t1") for kind in ("ct", "seg", "full"))
    check_not_users((out / name for name in names), "output", ("phantom",))
    out.mkdir(parents=True, exist_ok=True)
    pair = make_followup(case_seed(seed, index), shape=shape, spacing=spacing, scenario=scenario)
    paths = []
    for tag, case, extra in (("t0", pair.baseline, {}), ("t1", pair.followup, {**pair.truth,
                                                                               "baseline": f"{stem}-t0"})):
        case.case_id = f"{stem}-{tag}"
        paths.append(write_case_files(out, case, extra))
    return paths[0], paths[1]
