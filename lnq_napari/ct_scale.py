"""Whether a CT's values are on the Hounsfield scale the model was trained on, read from the CT itself.

Two landmarks: the air (the mode of the CT's lowest values: the air round the body, the airways and, in
a phantom, the lungs; about -1000 HU) and the body (the mode of 4 x 4-voxel block means from 300 to 2500
above the air: fat about -100 or soft tissue about +40 HU; block means, so noise does not blur them). A CT
whose air reads 100 HU high, or whose body lies twice as far above its air as in HU, passes the stored-value
checks (:mod:`lnq_napari.preprocess`) and the model finds nothing in it, saying nothing: the bundled model
found 0 of 8 nodes on a phantom 100 HU high. :func:`scale_problem` says so in one line; a CT whose air
reads -10000 (tenths of HU) is no CT in HU at all (:func:`tenths_problem`, refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The air's value in HU, and how far from it a CT's air may read (HU) before it is called shifted: the
#: air round a body reads -1000 +- 20 (a phantom's -995 to -1024); the model lost nodes 50 HU off.
AIR_HU = -1000.0
AIR_TOLERANCE_HU = 40.0
#: How far the body's main tissue (fat or soft tissue) lies above the air in HU (phantoms: 900 HU, fat;
#: slicerio's CTChest4: 1030 HU, soft tissue), and the span outside which the CT's slope is called wrong.
BODY_GAP_HU = 960.0
BODY_GAP_SPAN = (720.0, 1350.0)
#: Air reading below this is tenths of HU (air -10000), whatever the rest says; the lowest value, when below
#: the next and common, is a scanner's padding outside its circle (-3024, -2000), never air.
TENTHS_AIR = -5000.0
PADDING_BELOW = -1500.0
#: The least share of the CT's voxels the air's mode must hold to be judged (a CT of the mediastinum only
#: has no air to read, and is not judged).
MIN_AIR_SHARE = 0.03

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


def _sample(hu: np.ndarray) -> np.ndarray:
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


def _outside(grid: np.ndarray, below: float) -> np.ndarray:
    """bool (z y x): the voxels of ``grid`` below ``below`` joined to an image edge within their slice."""
    from scipy import ndimage

    low = grid < below
    plane = np.zeros((3, 3, 3), bool)
    plane[1, 1, :] = plane[1, :, 1] = True
    labels, _ = ndimage.label(low, plane)
    edge = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                                     labels[:, :, -1].ravel()]))
    return np.isin(labels, edge[edge > 0])


def landmarks(hu: np.ndarray) -> Landmarks:
    """The air, the air round the body and the body of ``hu`` (z y x, or one slice) as their values read
    (see the module and :class:`Landmarks`)."""
    sample = _sample(hu)
    if sample.size < 64 or sample.shape[1] < 8 or sample.shape[2] < 8:
        return Landmarks(None, None)
    step = max(1, min(sample.shape[1:]) // 128)  # a 512 x 512 CT: every fourth row and column
    grid = sample[:, ::step, ::step].astype(np.float32)
    lowest = float(grid.min())
    padding = grid < lowest + 10.0
    if not (lowest < PADDING_BELOW and np.count_nonzero(padding) > 0.01 * grid.size):
        padding[:] = False  # else a scanner's padding outside its circle (-3024, -2000): never air
    flat = grid[~padding]
    if flat.size < 64:
        return Landmarks(None, None)
    lo, hi = np.percentile(flat, [0.5, 35.0])
    air = _mode(flat, float(lo), float(hi) + 10.0, 10.0)
    if air is None or air[1] < MIN_AIR_SHARE * flat.size:
        return Landmarks(None, None)
    z, y, x = sample.shape
    blocks = sample[:, : y // 4 * 4, : x // 4 * 4].astype(np.float32)
    blocks = blocks.reshape(z, y // 4, 4, x // 4, 4).mean(axis=(2, 4)).ravel()
    body = _mode(blocks, air[0] + 300.0, air[0] + 2500.0, 5.0)
    body = None if body is None or body[1] < 0.01 * blocks.size else body[0]
    round_body = grid[_outside(np.where(padding, air[0], grid), (air[0] + (body or air[0] + 900.0)) / 2)
                      & ~padding]
    round_body = round_body[round_body >= PADDING_BELOW]  # a noisy or blurred padding is no air either
    outside = None
    if round_body.size >= MIN_AIR_SHARE * flat.size:  # the mode, then the median near it: noise-proof
        found = _mode(round_body, float(round_body.min()), float(round_body.max()) + 20.0, 20.0, 2.0)
        near = round_body[np.abs(round_body - found[0]) <= 60.0] if found else round_body[:0]
        outside = float(np.median(near)) if near.size else None
    return Landmarks(air[0], body, outside)


def tenths_problem(hu: np.ndarray) -> str | None:
    """One line when ``hu`` holds tenths of HU (its air near -10000), else None."""
    marks = landmarks(hu)
    if marks.air is None or marks.air > TENTHS_AIR:
        return None
    return (f"the CT's air reads {marks.air:.0f} (in Hounsfield units about -1000): its values look like "
            "tenths of HU; divide them by 10 (rescale slope 0.1), or re-export the CT from its DICOM series")


def scale_problem(hu: np.ndarray) -> str | None:
    """One line when ``hu``'s values are off the Hounsfield scale (its slope or intercept wrong: its body
    too far from or too near its air, or its air not near -1000 HU), else None."""
    marks = landmarks(hu)
    if marks.air is None or marks.air <= TENTHS_AIR:
        return None
    if marks.body is not None:
        gap = marks.body - marks.air
        if not BODY_GAP_SPAN[0] <= gap <= BODY_GAP_SPAN[1]:
            return (f"the CT's body reads {gap:.0f} above its air ({marks.air:.0f}, {marks.body:.0f}; in "
                    f"Hounsfield units about {BODY_GAP_HU:.0f}): its values look scaled "
                    f"x{gap / BODY_GAP_HU:.1f}; check its rescale slope; {NOT_TRUSTED}")
    shift = None if marks.outside is None else marks.outside - AIR_HU
    if shift is not None and abs(shift) > AIR_TOLERANCE_HU:
        return (f"the CT's air reads {marks.outside:.0f} HU (expected about {AIR_HU:.0f}): its values look "
                f"shifted by about {round(shift, -1):+.0f} HU; check its rescale intercept; {NOT_TRUSTED}")
    return None
