"""Register a follow-up CT to the baseline CT of the same patient, restricted to the chest.

SimpleITK, on ~3 mm copies of both scans: the translation starts from the lungs' centroids (body and
air inside it from :func:`lnq_napari.anatomy.coarse_anatomy`), a rigid step follows, then an affine
one; the metric (Mattes mutual information) only looks at the baseline's chest (the lungs' per-slice
hull, grown a little). The result maps baseline points (LPS mm) to follow-up points, as ITK's
resampling wants it.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass

import numpy as np

from lnq_napari.anatomy import SEAL_WALL, RoiConfig, coarse_anatomy
from lnq_napari.errors import LNQError
from lnq_napari.io.orientation import to_lps
from lnq_napari.io.volume import Volume

#: Coarse voxel size (mm) both scans are registered at.
COARSE_MM = 3.0
#: The chest mask of the baseline is the lungs' hull grown by this many coarse voxels.
CHEST_GROW = 3
#: A lung holds at least this share of the largest air component inside the body.
LARGEST_SHARE = 0.2
#: After registration at least this share of the baseline's chest must lie inside the follow-up scan...
MIN_OVERLAP = 0.3
#: ...and the two scans' lungs must overlap at least this well (Dice), else the scans do not overlap...
MIN_LUNG_DICE = 0.4
#: ...and at least this share of the lungs of the scan with less lung must lie inside the other scan (the
#: Dice counts only where both reach: two scans slid far apart match their few shared slices well).
MIN_LUNG_SHARE = 0.5
#: Under this lungs' Dice the search starts once more: from the lungs' area profiles, then from no shift.
RETRY_LUNG_DICE = 0.7
#: A fit from the lungs' centroids whose lungs overlap this well needs no start from their profiles.
SURE_LUNG_DICE = 0.85
#: Step (mm) of the lungs' area profile along the body axis.
PROFILE_STEP_MM = 2.0
#: Two scans' lung-area profiles are laid over each other only where each scan has at least this share of
#: the lungs the other shows in full (a stretch of lung tips alone places nothing).
PROFILE_MIN_SHARE = 0.6


@dataclass
class Chest:
    """A CT on a coarse grid: ``image`` (SimpleITK float32), ``lungs`` and ``chest`` masks (bool, z y x)."""

    image: object
    lungs: np.ndarray
    chest: np.ndarray

    def mask_image(self, mask: np.ndarray):
        """``mask`` as a SimpleITK uint8 image on the coarse grid."""
        import SimpleITK as sitk

        out = sitk.GetImageFromArray(mask.astype(np.uint8))
        out.CopyInformation(self.image)
        return out

    def centroid(self, mask: np.ndarray) -> np.ndarray:
        """Physical centroid (x, y, z mm) of a mask on the coarse grid (the grid's centre when empty)."""
        zyx = np.argwhere(mask).mean(axis=0) if mask.any() else (np.asarray(mask.shape) - 1) / 2.0
        return np.asarray(self.image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


def chest_of(ct: Volume) -> Chest:
    """The coarse copy of ``ct`` in LPS order with its lungs and chest mask (the lungs' hull, grown)."""
    import SimpleITK as sitk
    from scipy import ndimage

    _, oriented = to_lps(ct.to_sitk())
    # at most the axis's own size: a slab thinner than COARSE_MM (2 slices of 1 mm) crashed BinShrink
    factors = [max(1, min(n, int(round(COARSE_MM / s))))
               for s, n in zip(oriented.GetSpacing(), oriented.GetSize())]
    image = sitk.BinShrink(sitk.Cast(oriented, sitk.sitkFloat32), factors)
    image = sitk.Clamp(image, sitk.sitkFloat32, -1024.0, 600.0)
    hu = sitk.GetArrayViewFromImage(image)
    spacing_zyx = tuple(image.GetSpacing()[::-1])
    anatomy = coarse_anatomy(hu, spacing_zyx, seal=SEAL_WALL)
    lungs = _large_air(anatomy.lungs, spacing_zyx)
    if lungs.any():
        hull = anatomy.mediastinum & lungs.any(axis=(1, 2))[:, None, None]
        chest = ndimage.binary_dilation(hull | lungs, iterations=CHEST_GROW)
    else:
        chest = anatomy.body
    if anatomy.step != (1, 1, 1):  # spacing coarser than 3 mm already: anatomy came out coarser
        lungs, chest = anatomy.upsample(lungs), anatomy.upsample(chest)
    return Chest(image, lungs, chest)


def _large_air(air: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The lungs: the 3D components of ``air`` (inside the body) holding the preprocessing's lung volume
    and a fifth of the largest one or more (stomach and bowel gas stay below that). Each lung counts on
    its own: :func:`lnq_napari.anatomy.chest_lungs` may drop one of a narrow chest, and the two scans'
    lungs must agree for the registration to start in the right place."""
    from scipy import ndimage

    lab, n = ndimage.label(air)
    if n == 0:
        return air
    ml = np.bincount(lab.ravel(), minlength=n + 1) * float(np.prod(spacing_zyx)) / 1000.0
    ml[0] = 0.0
    keep = ml >= max(RoiConfig.min_lung_ml, LARGEST_SHARE * ml.max())
    return keep[lab]


@dataclass
class Registration:
    """Baseline -> follow-up mapping and how well it fits."""

    transform: object  # SimpleITK transform: baseline point (LPS mm) -> follow-up point
    stage: str  # the last stage run: "rigid" or "affine"
    seconds: float
    lung_dice: float  # the lungs of both scans after registration
    overlap: float  # share of the baseline chest that lies inside the follow-up scan
    initial_shift_mm: tuple[float, float, float]  # lungs' centroid shift the search started from

    def to_followup(self, xyz: np.ndarray) -> np.ndarray:
        """Baseline points (N, 3, LPS mm) in the follow-up scan."""
        points = np.asarray(xyz, dtype=float).reshape(-1, 3)
        return np.array([self.transform.TransformPoint([float(v) for v in p]) for p in points]).reshape(-1, 3)

    def to_baseline(self, xyz: np.ndarray) -> np.ndarray:
        """Follow-up points (N, 3, LPS mm) in the baseline scan."""
        inverse = self.transform.GetInverse()
        points = np.asarray(xyz, dtype=float).reshape(-1, 3)
        return np.array([inverse.TransformPoint([float(v) for v in p]) for p in points]).reshape(-1, 3)

    def resample(self, followup: Volume, baseline: Volume, labels: bool = False, fill: float = 0.0) -> Volume:
        """``followup`` (an image or labels) on ``baseline``'s grid: nearest neighbour for labels."""
        import SimpleITK as sitk

        interp = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
        moving = followup.to_sitk()
        out = sitk.Resample(moving, baseline.to_sitk(), self.transform, interp, float(fill),
                            moving.GetPixelID())
        return baseline.with_array(sitk.GetArrayFromImage(out))


def _method(fixed_mask, iterations: int, seed: int):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed)
    method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.01, numberOfIterations=iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def register(baseline: Volume, followup: Volume, affine: bool = True, iterations: int = 60,
             seed: int = 7) -> Registration:
    """Register ``followup`` to ``baseline`` (rigid, then affine unless ``affine=False``).

    The search starts from the lungs' shift and, unless its lungs then overlap surely, where the lungs'
    area profiles along the body axis lay the scans elsewhere (one scan showing only part of the lungs:
    their centroids differ by the part left out), the better fit kept; when it ends with the lungs apart
    it starts again from no shift. LNQError when the scans do not overlap after registration (other body
    parts, a wrong file).
    """
    start = time.perf_counter()
    fixed, moving = chest_of(baseline), chest_of(followup)
    if not fixed.lungs.any() or not moving.lungs.any():
        warnings.warn("no lungs found in one of the scans: registration starts from the scans' centres "
                      "and may be poor; check that both CTs show the chest", UserWarning, stacklevel=2)
    centre = fixed.centroid(fixed.lungs if fixed.lungs.any() else fixed.chest)
    shift = moving.centroid(moving.lungs if moving.lungs.any() else moving.chest) - centre
    best = None
    for starts in _starts(fixed, moving, shift):
        for initial in starts:
            transform, stage = _search(fixed, moving, centre, initial, affine, iterations, seed)
            dice, overlap, share, fewer = _fit(fixed, moving, transform)
            key = (not share < MIN_LUNG_SHARE, dice, overlap)  # a NaN share (no lungs) is not below
            if best is None or key > best[0]:
                best = (key, transform, stage, dice, overlap, share, fewer, initial)
            if dice >= SURE_LUNG_DICE and key[0]:
                break
        if best[3] >= RETRY_LUNG_DICE and best[0][0]:
            break
    _, transform, stage, dice, overlap, share, fewer, initial = best
    check_fit(dice, overlap, share, fewer)
    return Registration(transform, stage, time.perf_counter() - start, dice, overlap,
                        tuple(float(v) for v in initial))


def check_fit(dice: float, overlap: float, share: float, fewer: str = "baseline") -> None:
    """LNQError naming what failed when a registration's fit (:func:`_fit`) is no overlap of two chests;
    ``fewer`` names the scan with less lung ("baseline" or "follow-up"), whose lungs ``share`` counts."""
    other = "follow-up" if fewer == "baseline" else "baseline"
    checks = (
        (f"{overlap:.0%} of the baseline chest lies inside the follow-up", overlap, MIN_OVERLAP),
        (f"the lungs overlap {dice:.0%} where both scans reach", dice, MIN_LUNG_DICE),
        (f"{share:.0%} of the {fewer}'s lungs lie inside the {other} scan", share, MIN_LUNG_SHARE))
    failed = [f"only {what}" for what, value, least in checks if value < least]  # a NaN is not below
    if not failed:
        return
    # each figure once: the lungs' figures that passed after those that failed
    said = [what for what, value, least in checks[1:] if not math.isnan(value) and value >= least]
    if math.isnan(dice):  # no lungs in either scan: the chest overlap decides alone
        said = ["no lungs in either scan"]
    elif math.isnan(share):  # no lungs in one scan
        said = [f"the {fewer} scan shows no lungs"] + said
    raise LNQError(f"the two scans do not overlap enough after registration ({'; '.join(failed + said)}; "
                   f"needed: {MIN_OVERLAP:.0%} of the chest inside, a lungs' Dice of {MIN_LUNG_DICE:.0%}, "
                   f"{MIN_LUNG_SHARE:.0%} of the lungs of the scan with less lung inside the other): "
                   "check that both CTs show the chest of the same patient")


def _starts(fixed: Chest, moving: Chest, shift: np.ndarray):
    """The shifts the search starts from, in rounds (the best fit of a round ends the search when its
    lungs overlap well): the lungs' centroids, and their area profiles where these place the scans
    elsewhere (one scan shows only part of the lungs: tried unless the first fit is sure, since a wrong
    fit of a part can overlap fairly well too); then no shift."""
    profiled = _profile_shift(fixed, moving)
    if profiled is not None and np.linalg.norm(profiled - shift) > 10.0:
        yield (shift, profiled)
    else:
        yield (shift,)
    yield (np.zeros(3),)


def _profile(chest: Chest) -> tuple[np.ndarray, np.ndarray] | None:
    """(z mm, lungs' area mm² there) every :data:`PROFILE_STEP_MM` over the scan; None when the coarse
    image is not in LPS axis order (an oblique scan) or shows no lungs."""
    image = chest.image
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not chest.lungs.any() or not np.allclose(direction, np.eye(3), atol=1e-3):
        return None
    sx, sy, sz = image.GetSpacing()
    z = _heights(chest)
    area = chest.lungs.sum(axis=(1, 2)) * sx * sy
    grid = np.arange(z[0] - sz / 2.0, z[-1] + sz / 2.0, PROFILE_STEP_MM)
    return grid, np.interp(grid, z, area)


def _heights(chest: Chest) -> np.ndarray:
    """The height (z mm) of each slice of ``chest``'s coarse image (LPS axis order)."""
    image = chest.image
    return image.GetOrigin()[2] + image.GetSpacing()[2] * np.arange(chest.lungs.shape[0])


def _profile_shift(fixed: Chest, moving: Chest) -> np.ndarray | None:
    """The shift (x, y, z mm) that lays the follow-up's lung-area profile along the body axis over the
    baseline's (least difference where both scans reach, each holding at least
    :data:`PROFILE_MIN_SHARE` of the lungs the other shows there), with x and y from the lungs' centroids
    over that stretch; None when no stretch qualifies."""
    pb, pf = _profile(fixed), _profile(moving)
    if pb is None or pf is None:
        return None
    (zb, ab), (zf, af) = pb, pf
    best = None
    for s in np.arange(zf[0] - zb[-1], zf[-1] - zb[0] + PROFILE_STEP_MM, PROFILE_STEP_MM):
        window = (zb >= zf[0] - s) & (zb <= zf[-1] - s)
        if not window.any():
            continue
        a, b = ab[window], np.interp(zb[window] + s, zf, af)
        if a.sum() < PROFILE_MIN_SHARE * b.sum() or b.sum() < PROFILE_MIN_SHARE * a.sum() or \
                min(a.sum(), b.sum()) < PROFILE_MIN_SHARE * min(ab.sum(), af.sum()):
            continue
        score = float(np.abs(a - b).sum() / (a + b).sum())
        if best is None or score < best[0]:
            best = (score, s, zb[window][0], zb[window][-1])
    if best is None:
        return None
    _, s, lo, hi = best
    return _slab_centroid(moving, lo + s, hi + s) - _slab_centroid(fixed, lo, hi)


def _slab_centroid(chest: Chest, lo: float, hi: float) -> np.ndarray:
    """The centroid (x, y, z mm) of the lungs between the heights ``lo`` and ``hi`` (mm)."""
    z = _heights(chest)
    slab = chest.lungs & ((z >= lo) & (z <= hi))[:, None, None]
    return chest.centroid(slab if slab.any() else chest.lungs)


def _search(fixed: Chest, moving: Chest, centre: np.ndarray, shift: np.ndarray, affine: bool,
            iterations: int, seed: int):
    """(transform, stage): rigid from ``shift``, then affine."""
    import SimpleITK as sitk

    rigid = sitk.Euler3DTransform()
    rigid.SetCenter([float(v) for v in centre])
    rigid.SetTranslation([float(v) for v in shift])
    mask = fixed.mask_image(fixed.chest)
    method = _method(mask, iterations, seed)
    method.SetInitialTransform(rigid, inPlace=True)
    _execute(method, fixed, moving)
    if not affine:
        return rigid, "rigid"
    step = sitk.AffineTransform(3)
    step.SetCenter(rigid.GetCenter())
    step.SetMatrix(rigid.GetMatrix())
    step.SetTranslation(rigid.GetTranslation())
    method = _method(mask, iterations, seed)
    method.SetInitialTransform(step, inPlace=True)
    _execute(method, fixed, moving)
    return step, "affine"


def _execute(method, fixed: Chest, moving: Chest) -> None:
    try:
        method.Execute(fixed.image, moving.image)
    except RuntimeError as exc:  # e.g. a featureless image: the metric has nothing to work on
        reason = _itk_reason(str(exc))
        if "number of pixels along dimension" in reason:  # a slab of a few slices, however well it overlaps
            raise LNQError("a scan is too thin to be registered (a few slices: the registration's coarse "
                           "copy has too few voxels along an axis); give the whole series of both scans") \
                from None
        raise LNQError(f"the two scans do not overlap enough to be registered ({reason}): check that both "
                       "CTs show the chest of the same patient") from None


def _itk_reason(text: str) -> str:
    """ITK's reason in an exception's text: its last line without the "Description:" and
    "ITK ERROR: Class(0x...):" prefixes, its first sentence (it was cut at 120 characters, mid-word)."""
    line = text.strip().splitlines()[-1] if text.strip() else "no reason given"
    line = line.removeprefix("Description:").strip()
    line = re.sub(r"^.*?(?:itk::ERROR|ITK ERROR):\s*[^:]*\):\s*", "", line)
    return line.split(". ")[0].rstrip(". ")


def _fit(fixed: Chest, moving: Chest, transform) -> tuple[float, float, float, str]:
    """(lung Dice, share of the baseline chest inside the follow-up, share of the lungs of the scan
    with less lung that lie inside the other scan, which scan that is: "baseline" or "follow-up") after
    registration. The Dice counts the lungs where
    both scans reach (a scan showing part of the lungs matches the other's same part, not its whole); NaN
    when neither scan shows lungs there (a crop of the mediastinum: the chest overlap decides alone); the
    share is NaN when one scan shows no lungs."""
    import SimpleITK as sitk

    nearest = sitk.sitkNearestNeighbor
    ones = sitk.Image(moving.image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving.image)
    inside = sitk.GetArrayViewFromImage(sitk.Resample(ones, fixed.image, transform, nearest, 0)) > 0
    lungs = sitk.Resample(moving.mask_image(moving.lungs), fixed.image, transform, nearest, 0)
    warped = sitk.GetArrayViewFromImage(lungs) > 0  # inside the follow-up's reach by construction
    shared = fixed.lungs & inside
    total = int(shared.sum()) + int(warped.sum())
    dice = 2.0 * float((warped & shared).sum()) / total if total else math.nan  # no lungs in either
    chest = fixed.chest
    overlap = float(inside[chest].mean()) if chest.any() else 0.0
    to_fixed = float(np.prod(moving.image.GetSpacing())) / float(np.prod(fixed.image.GetSpacing()))
    b_all, f_all = float(fixed.lungs.sum()), float(moving.lungs.sum()) * to_fixed  # baseline voxels
    if min(b_all, f_all) <= 0:
        share = math.nan
    else:
        share = float(shared.sum()) / b_all if b_all <= f_all else float(warped.sum()) / f_all
    return dice, overlap, min(share, 1.0), "baseline" if b_all <= f_all else "follow-up"
