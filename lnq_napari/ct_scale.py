"""Whether a CT's values are Hounsfield units as the model was trained on: the one place that judges it
(each threshold with its reason), read from the CT's own values.

Refused (:func:`check_ct_values`, before the model runs: it would find nothing, or nodes in the wrong
places): NaN or infinite voxels; a label map; values with no HU left in them (0..1 normalised, an 8-bit
window) or a scanner's stored values (:func:`stored_values`, the intercept not applied); HU 1024 low
(:func:`shifted_down`, the intercept applied twice); tenths of HU (:func:`tenths_problem`). Warned
(:func:`scale_problem`: the CT is predicted): a wrong slope or intercept read from the landmarks below.
A node table's CT (:func:`warn_if_not_hu`) is warned of stored values or HU 1024 low, not refused.

Landmarks (:func:`landmarks`): the air (the mode of the CT's lowest values: about -1000 HU, or a lung's
-850 when little air is in view), the air round the body (outside the body that
:func:`~lnq_napari.anatomy.coarse_anatomy` fills, so a lung the view cuts is not taken for it: -1000 HU)
and the body (the mode of block means of about 3 mm, :data:`BODY_BLOCK_MM`, from 300 to 2500 above the
air, a lung's mode below a denser one skipped, :func:`_body_mode`: fat about -100 or soft tissue about +40
HU; block means, so noise does not blur them). A CT whose air round the body reads 100 HU high, or whose
body lies twice as far above its air as in HU, passes the stored-value checks and the model finds little
or nothing in it, silently: the bundled model found 0 of 8 phantom nodes 100 HU high, 4
of 8 at slope x2. :func:`scale_problem` says so in one line; a CT whose air reads -10000 (tenths of HU) is
refused. A CT with no air round the body (cropped to it) is not judged by its air.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.labels import looks_like_label_map
from lnq_napari.io.volume import Volume

# Refused: values that are no CT in HU.

#: A CT with fewer voxels near -1000 HU than this share of those near +1000, and more than the next share
#: of its voxels near +1000, holds stored values: in HU a chest CT's air (outside the body, lungs) is 20-50 %
#: of it, dense bone a few per cent.
STORED_AIR_PER_TISSUE = 0.05
STORED_TISSUE_SHARE = 0.10
#: A CT with more than this share of voxels near -2000 and less than the next from -200 to 200 HU is 1024 HU
#: low (a chest CT in HU: 28 % soft tissue, 0.2 % near -2000; 1024 low: 0.04 % and 41 %).
SHIFTED_AIR_SHARE = 0.10
SHIFTED_TISSUE_SHARE = 0.002

NOT_HU = ("the CT is not in Hounsfield units (no air near -1000 HU: values as a scanner stores them): apply "
          "the rescale intercept (usually -1024) before using it")
WINDOWED = ("the CT is not in Hounsfield units: its values lie within 0..255, an 8-bit windowed export (like "
            "a screenshot: the HU are lost, no intercept brings them back); use the original CT in HU (its "
            "DICOM series, or an NRRD/NIfTI export of it)")
NORMALISED = ("the CT is not in Hounsfield units: its values lie within 0..1, a normalised export (a "
              "viewer's or a network's: the HU are lost); use the original CT in HU (its DICOM series, or an "
              "NRRD/NIfTI export of it)")


def _value_sample(hu: np.ndarray) -> np.ndarray:
    """Every other slice and every fourth row and column of a CT, as values: enough to judge its scale (not
    :func:`_spread_slices`, whose whole slices keep where each value lies)."""
    return np.asarray(hu[::2, ::4, ::4]) if hu.ndim == 3 else np.asarray(hu)


def not_hu_reason(hu: np.ndarray) -> str:
    """Why a CT that :func:`stored_values` flags is not in HU: values within 0..1 or 8-bit windowed ones
    (exports whose HU are lost), or stored values."""
    sample = _value_sample(hu)
    if sample.size and sample.max() <= 1.0:
        return NORMALISED
    return WINDOWED if sample.size and sample.max() <= 255 else NOT_HU


def stored_values(hu: np.ndarray) -> bool:
    """Whether a CT holds a scanner's stored values, not Hounsfield units (the rescale intercept, usually
    -1024, not applied): no value below 0, or, with a negative padding value around the scan circle, next
    to no air near -1000 HU beside the tissue near +1000 (soft tissue stored as HU + 1024). A chest CT in
    HU always holds air (lungs, about -1000), many times its dense bone. The air is weighed against the
    tissue, not the whole CT: the rim where a -3024 padding shifted to -2000 blends into the body passes
    through -1000 (slicerio's CTChest4 + 1024: 0.24 % of its voxels near -1000, 28 % near +1000)."""
    if not hu.size:
        return False
    sample = _value_sample(hu)
    if sample.min() >= 0:
        return True
    air = np.count_nonzero((sample > -1100) & (sample < -850))
    tissue = np.count_nonzero((sample > 850) & (sample < 1250))
    return air < STORED_AIR_PER_TISSUE * tissue and tissue > STORED_TISSUE_SHARE * sample.size


SHIFTED_DOWN = ("the CT's values lie about 1024 below Hounsfield units (air near -2000, no soft tissue near "
                "0 HU): the rescale intercept was applied twice; add 1024 to it, or re-export the CT from "
                "its DICOM series")


def shifted_down(hu: np.ndarray) -> bool:
    """Whether a CT's HU were shifted down by the rescale intercept applied a second time (-1024 again): much
    of it near -2000 (its air) and next to none from -200 to 200 HU (soft tissue, a quarter of a chest CT in
    HU). A padding of -2000 around the scan circle leaves the soft tissue where it is."""
    sample = _value_sample(hu)
    if not sample.size:
        return False
    low = np.count_nonzero((sample > -2150) & (sample < -1850))
    tissue = np.count_nonzero((sample > -200) & (sample < 200))
    return low > SHIFTED_AIR_SHARE * sample.size and tissue < SHIFTED_TISSUE_SHARE * sample.size


def warn_if_not_hu(hu: np.ndarray) -> None:
    """Warn when a CT holds stored values, not HU (:func:`stored_values`): its mean HU read 1024 high; or
    HU shifted down by a second intercept (:func:`shifted_down`): 1024 low."""
    if stored_values(hu):
        warnings.warn(not_hu_reason(hu), UserWarning, stacklevel=3)
    elif shifted_down(hu):
        warnings.warn(SHIFTED_DOWN, UserWarning, stacklevel=3)


def check_ct_values(hu: np.ndarray) -> None:
    """LNQError when a CT holds NaN or infinite voxels (the network's output around them is meaningless:
    a phantom with 0.1 % NaN voxels gave 3 nodes of 8, and training diverged), or when it reads as a label
    map (:func:`~lnq_napari.io.labels.looks_like_label_map`, the reader's one rule: a few whole values in
    solid blobs) given as the CT, where the model would find nothing and say little, or when it holds a
    scanner's stored values (:func:`stored_values`: the network saw bone and metal, and found nothing or
    nodes in the wrong places), or HU 1024 low (:func:`shifted_down`: no soft tissue, nothing found), or
    tenths of HU (:func:`tenths_problem`)."""
    if np.asarray(hu).dtype.kind == "f":
        bad = int(np.size(hu) - np.count_nonzero(np.isfinite(hu)))
        if bad:
            raise LNQError(f"the CT holds {bad} NaN or infinite voxel(s); fill them (e.g. with -1024, air) "
                           "or re-export the CT from its DICOM series")
    if looks_like_label_map(hu):  # a CT never does: negative HU, hundreds of values
        values = np.unique(_value_sample(hu))
        if values.size >= 2:  # a blank volume is no label map given as the CT
            shown = ", ".join(f"{v:g}" for v in values[:5]) + (" ..." if values.size > 5 else "")
            raise LNQError(f"the CT holds only {values.size} distinct value(s) ({shown}): it looks like a "
                           "label map, not a CT; pass the CT volume (Hounsfield units)")
    if stored_values(hu):
        raise LNQError(not_hu_reason(hu))
    if shifted_down(hu):  # the network saw no soft tissue: nothing found, "no lungs found" said
        raise LNQError(SHIFTED_DOWN)
    tenths = tenths_problem(hu)  # air at -10000: no window of the model's holds anything
    if tenths:
        raise LNQError(tenths)


# Warned: a slope or an intercept off, read from the landmarks.

#: The air's value in HU, and how far from it a CT's air round the body may read (HU) before it is called
#: shifted: -1000 +- 25 on phantoms, CTChest4 (-979) and dcmqi's CT; the model lost a node of 8 50 HU high.
AIR_HU = -1000.0
AIR_TOLERANCE_HU = 40.0
#: How far the body's main tissue (fat or soft tissue) lies above the air in HU (phantoms: 900 HU, fat;
#: slicerio's CTChest4: 1030 HU, soft tissue), and the span outside which the CT's slope is called wrong:
#: calibrated bodies read 850 (40 keV fat -150) to 1190 (enhanced soft tissue +190) above the air; the span
#: keeps about 130 HU either side, so x0.75 and x1.4 about the air are the least slopes said.
BODY_GAP_HU = 960.0
BODY_GAP_SPAN = (720.0, 1350.0)
#: The span when no air round the body was read and ``air`` may be a lung's (-950 dense .. -600 HU) below
#: fat (-150 at 40 keV) or soft tissue (+60): 450..1060 HU calibrated, so only a gross slope is said.
LUNG_GAP_SPAN = (450.0, 1450.0)
#: Air reading below this is tenths of HU (air -10000), whatever the rest says; the lowest value, when below
#: the next and common, is a scanner's padding outside its circle (-3024, -2000), never air.
TENTHS_AIR = -5000.0
PADDING_BELOW = -1500.0
#: The least share of the CT's voxels the air's mode must hold to be judged (a CT of the mediastinum only
#: has no air to read, and is not judged).
MIN_AIR_SHARE = 0.03  # a chest in a square view: air round it 20-40 %, lungs 10-15 %; less is no landmark
#: An "air" reading above this is fat (a crop to the mediastinum holds neither air nor lung; a lung at x0.5
#: reads -430): the CT is not judged. Stored values (air about +24) are refused first
#: (:func:`stored_values`).
NO_AIR_ABOVE = -400.0

NOT_TRUSTED = "the model, trained on calibrated HU, may miss or misplace nodes in it"


@dataclass(frozen=True)
class Landmarks:
    """A CT's air, the air round its body and its main body tissue as read (None: not found), in the CT's own
    values. ``outside`` is None when little air lies round the body (cropped to it, or a body filling the
    view): ``air`` is then the lungs' (-850 HU in a patient), no sign of an intercept."""

    air: float | None
    body: float | None
    outside: float | None = None


#: Slices read at most, evenly spread (a chest's air and body show on any of them).
SAMPLED_SLICES = 24


def _spread_slices(hu: np.ndarray) -> np.ndarray:
    """At most about :data:`SAMPLED_SLICES` whole slices of a CT (every other one at most), evenly spread,
    z y x (one slice: as one): where the air round the body lies shows on them."""
    if hu.ndim != 3:
        return np.asarray(hu)[None]
    return np.asarray(hu[:: max(2, -(-hu.shape[0] // SAMPLED_SLICES))])


def _mode(values: np.ndarray, lo: float, hi: float, width: float,
          sigma: float = 1.0) -> tuple[float, int] | None:
    """The centre and count of the fullest ``width`` bin of ``values`` in ``lo..hi`` (smoothed over ``sigma``
    bins)."""
    from scipy import ndimage

    if hi - lo < width:
        return None
    edges = np.arange(lo, hi + width, width)[:4001]
    counts, _ = np.histogram(values, edges)
    if not counts.any():
        return None
    smooth = ndimage.gaussian_filter1d(counts.astype(float), sigma)
    i = int(np.argmax(smooth))
    return float(edges[i] + width / 2), int(counts[max(i - 2, 0): i + 3].sum())


def _has_padding(grid: np.ndarray) -> bool:
    """Whether ``grid`` holds a scanner's padding outside its circle: one exact value between
    :data:`TENTHS_AIR` and :data:`PADDING_BELOW` (-3024, -2000) held by 2 % of the voxels (a circle in its
    square: 21 %) and by a quarter of what the 200 HU above it hold (a padding: 1-2 times its blurred or
    cubic-undershot edge). Air clipped at its stored zero (-1024) then scaled x2 is a plateau too, but at the
    foot of the air's noise, 20 times fuller above it (phantoms: 0.04-0.06); tenths (-10000) lie below."""
    low = grid[(grid > TENTHS_AIR) & (grid < PADDING_BELOW)]
    if low.size < 0.02 * grid.size:
        return False
    values, counts = np.unique(low, return_counts=True)
    top = int(np.argmax(counts))
    above = np.count_nonzero((grid > values[top]) & (grid <= values[top] + 200.0))
    return bool(counts[top] > 0.02 * grid.size and counts[top] > 0.25 * above)


def _lowest_mode(values: np.ndarray) -> float:
    """The lowest of the modes of ``values`` (20 HU bins, smoothed over 40 HU) that holds a quarter of the
    fullest's height: the air round the body, below a lung's -850 where a field of view cut lungs."""
    from scipy import ndimage

    edges = np.arange(float(values.min()), float(values.max()) + 40.0, 20.0)[:4001]
    counts, _ = np.histogram(values, edges)
    smooth = ndimage.gaussian_filter1d(counts.astype(float), 2.0)
    # a quarter of the fullest: the air of a thin band round the body still counts, a noise bump does not
    peak = (smooth >= np.roll(smooth, 1)) & (smooth >= np.roll(smooth, -1)) & (smooth >= 0.25 * smooth.max())
    return float(edges[int(np.flatnonzero(peak)[0])] + 10.0)


def _outline_in_view(body: np.ndarray) -> np.ndarray:
    """bool (z): the slices of ``body`` (z y x) that touch at most one image edge (a table's side), so their
    outline is in view. Where the body touches two edges or more (a 12-25 cm view), what lies beside it may
    be a lung the view cuts: -850 HU, which no value can tell from air 150 HU high."""
    sides = (body[:, 0].any(axis=1), body[:, -1].any(axis=1), body[:, :, 0].any(axis=1),
             body[:, :, -1].any(axis=1))
    return np.sum(sides, axis=0) <= 1


def _round_body(ct: Volume, cut: float) -> tuple[np.ndarray, np.ndarray]:
    """The coarse copy of ``ct`` (:func:`~lnq_napari.anatomy.coarse_anatomy`, in LPS order: a lung one image
    edge cuts stays in the body) as float32, and where on it the air round the body lies: below ``cut``,
    outside the body, on slices showing the body's outline (:func:`_outline_in_view`) and above any
    padding."""
    from lnq_napari.anatomy import SEAL_WALL, RoiConfig, coarse_anatomy
    from lnq_napari.io.orientation import lps_view

    view = lps_view(ct)
    # the landmarks' own scale: a CT 200 HU high keeps its body. Not the mediastinum region's anatomy (-300,
    # -500 HU), which would save 0.2 s on a 300 x 512 x 512 CT but move readings: CTChest4 100 HU low was
    # said -79 HU, not -78; x0.7 about -1024, 700 above its air, not 713
    roi = RoiConfig(lung_hu=cut, body_hu=cut)
    anatomy = coarse_anatomy(np.asarray(view.array), view.spacing_zyx, roi, seal=SEAL_WALL)
    small = anatomy.small.astype(np.float32)
    keep = ~anatomy.body & _outline_in_view(anatomy.body)[:, None, None]
    keep &= (small < cut) & (small >= PADDING_BELOW)  # a blurred padding: no air
    return small, keep


#: The side in mm of the blocks whose means show the body's tissue (4 x 4 voxels of 0.7-0.8 mm): noise
#: averaged out, a tissue's value kept. Blocks of 4 x 4 voxels of 4 mm (16 mm) mixed lung into the chest wall.
BODY_BLOCK_MM = 3.0


def _block_size(ct: Volume | np.ndarray) -> tuple[int, int]:
    """Voxels per block side along a CT's rows and columns: :data:`BODY_BLOCK_MM` in 1-4 voxels (an array,
    its spacing unknown: 4)."""
    if not isinstance(ct, Volume) or len(ct.spacing_zyx) != 3:
        return 4, 4
    return tuple(int(min(4, max(1, round(BODY_BLOCK_MM / s)))) for s in ct.spacing_zyx[1:])


#: A tissue this many times as far above the air as the fullest one in the body's window lies above it is
#: the body, the fullest one a lung: calibrated, lung (-850..-600 HU) lies 150-400 above the air and fat or
#: soft tissue 6-2.5 times as far; at slope x2 a phantom's uniform lung (-850) reads 350 above its air,
#: fills more blocks than its fat, and was taken for the body ('scaled x0.4', the wrong way). The body
#: itself has nothing as dense as 2.5 times it above it (bone +1250 HU and more: under 1 % of blocks).
LUNG_BELOW_BODY = 2.5


def _body_mode(blocks: np.ndarray, air: float) -> float | None:
    """The body's main tissue among block means ``blocks``: the fullest mode from 300 to 2500 above ``air``
    holding 1 % of them (a tissue, not a rim), or the fullest one :data:`LUNG_BELOW_BODY` times as far above
    the air above it (that one a lung); None: none."""
    body = None
    lo = air + 300.0
    for _ in range(2):
        mode = _mode(blocks, lo, air + 2500.0, 5.0)
        if mode is None or mode[1] < 0.01 * blocks.size:
            break
        body = mode[0]
        lo = air + LUNG_BELOW_BODY * (body - air)
    return body


#: The half-width (HU) of the window round the air's mode whose median is the air round the body: air's
#: noise (sd 10-40 HU), not a lung.
AIR_WINDOW_HU = 60.0


def _air_near_mode(values: np.ndarray) -> tuple[float | None, float]:
    """The median of ``values`` within :data:`AIR_WINDOW_HU` of their lowest mode (:func:`_lowest_mode`;
    None: none there), and their noise read below that mode (sd; the lower side holds air only)."""
    found = _lowest_mode(values)
    near = values[np.abs(values - found) <= AIR_WINDOW_HU]
    below = found - values[values < found]
    sd = float(np.median(below)) / 0.6745 if below.size else 0.0  # a half-normal's median: 0.6745 sd
    return (float(np.median(near)) if near.size else None), sd


def _air_round_body(small: np.ndarray, keep: np.ndarray) -> float | None:
    """The air round the body: the values of ``small`` where ``keep`` near their lowest mode
    (:func:`_air_near_mode`). Air noisier than that window (a thin slice, a low dose: sd 150) is read on
    the means of 3 x 3 voxels in plane whose voxels all lie in ``keep`` (sd a third): on single voxels its
    mode lay anywhere on a flat top pulled up by the rims' tail (CTChest4 + sd 150: -950 for -979, a false
    'intercept' warning)."""
    from scipy import ndimage

    outside, sd = _air_near_mode(small[keep])
    if sd <= AIR_WINDOW_HU:
        return outside
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = True
    inner = ndimage.binary_erosion(keep, plane)
    if np.count_nonzero(inner) < 64:
        return outside
    return _air_near_mode(ndimage.uniform_filter(small, size=(1, 3, 3))[inner])[0]


def landmarks(ct: Volume | np.ndarray) -> Landmarks:
    """The air, the air round the body and the body of ``ct`` (a Volume; an array, z y x or one slice: no
    air round the body read) as their values read (see the module and :class:`Landmarks`)."""
    hu = np.asarray(ct.array if isinstance(ct, Volume) else ct)
    sample = _spread_slices(hu)
    if sample.size < 64 or sample.shape[1] < 8 or sample.shape[2] < 8:
        return Landmarks(None, None)
    step = max(1, min(sample.shape[1:]) // 128)  # a 512 x 512 CT: every fourth row and column
    grid = sample[:, ::step, ::step].astype(np.float32)
    lowest = float(grid.min())
    padding = grid < lowest + 10.0  # a plateau at the minimum (-6048: a padding scaled x2 with the CT)
    if lowest >= PADDING_BELOW or np.count_nonzero(padding) <= 0.01 * grid.size:
        padding[:] = False
    if _has_padding(grid):
        padding |= grid < PADDING_BELOW
    flat = grid[~padding]  # a scanner's padding (-3024, -2000), its blurred edge with it: no air
    if flat.size < 64:
        return Landmarks(None, None)
    lo, hi = np.percentile(flat, [0.5, 35.0])
    air = _mode(flat, float(lo), float(hi) + 10.0, 10.0)
    if air is None or air[1] < MIN_AIR_SHARE * flat.size:
        return Landmarks(None, None)
    z, y, x = sample.shape
    ky, kx = _block_size(ct)
    blocks = sample[:, : y // ky * ky, : x // kx * kx].astype(np.float32)
    blocks = blocks.reshape(z, y // ky, ky, x // kx, kx).mean(axis=(2, 4)).ravel()
    body = _body_mode(blocks, air[0])
    if not isinstance(ct, Volume) or hu.ndim != 3 or min(hu.shape) < 2:
        return Landmarks(air[0], body)
    cut = (air[0] + (air[0] + 900.0 if body is None else body)) / 2
    outside = None
    small, keep = _round_body(ct, cut)
    if np.count_nonzero(keep) >= max(64, MIN_AIR_SHARE * small.size):
        outside = _air_round_body(small, keep)
    return Landmarks(air[0], body, outside)


def tenths_problem(hu: np.ndarray) -> str | None:
    """One line when ``hu`` holds tenths of HU (its air near -10000), else None."""
    marks = landmarks(np.asarray(hu))
    if marks.air is None or marks.air > TENTHS_AIR:
        return None
    return (f"the CT's air reads {marks.air:.0f} (in Hounsfield units about -1000): its values look like "
            "tenths of HU; divide them by 10 (rescale slope 0.1), or re-export the CT from its DICOM series")


def scale_problem(ct: Volume) -> str | None:
    """One line when ``ct``'s values are off the Hounsfield scale (its slope or intercept wrong: its body
    too far from or too near its air, or its air not near -1000 HU), else None."""
    marks = landmarks(ct)
    if marks.air is None or marks.air <= TENTHS_AIR or marks.air > NO_AIR_ABOVE:
        return None
    shift = None if marks.outside is None else marks.outside - AIR_HU
    if marks.body is not None:
        span = BODY_GAP_SPAN if marks.outside is not None else LUNG_GAP_SPAN
        base = marks.air if marks.outside is None else marks.outside
        gap = marks.body - base
        if not span[0] <= gap <= span[1]:
            return (f"the CT's body reads {gap:.0f} above its air ({base:.0f}, {marks.body:.0f}; in "
                    f"Hounsfield units about {BODY_GAP_HU:.0f}): its values look scaled "
                    f"x{gap / BODY_GAP_HU:.1f}; check its rescale slope; {NOT_TRUSTED}")
    if shift is not None and abs(shift) > AIR_TOLERANCE_HU:
        said = round(shift, -1) if abs(shift) >= 100 else round(shift)  # 42 is said 42, not +40 (the limit)
        return (f"the CT's air reads {marks.outside:.0f} HU (expected about {AIR_HU:.0f}): its values look "
                f"shifted by about {said:+.0f} HU; check its rescale intercept (or its slope, if the body "
                f"moved by another amount); {NOT_TRUSTED}")
    return None
