"""Model-side preprocessing: canonical orientation, chest ROI, resampling to the model's spacing, HU scaling.

A CT goes to the network as :class:`Prepared`: a float32 (z, y, x) array at the model's target spacing,
cropped to the chest ROI (the lungs' bounding box plus a margin, :func:`~lnq_napari.anatomy.find_roi`),
and the SimpleITK grid it lives on, so network outputs can be resampled back onto the CT's exact grid with
:func:`to_ct_grid`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.anatomy import RoiConfig, find_roi
from lnq_napari.ct_scale import tenths_problem
from lnq_napari.errors import LNQError
from lnq_napari.io.orientation import reorient
from lnq_napari.io.volume import Volume


@dataclass
class PreprocessingConfig:
    """A model's preprocessing (the ``preprocessing`` section of its config.json): orientation, target
    spacing, HU window and scaling, chest ROI; the one place their defaults live."""

    orientation: str = "LPS"
    target_spacing: list[float] = field(default_factory=lambda: [1.5, 1.5, 3.0])  # x, y, z in mm
    hu_clip: list[float] = field(default_factory=lambda: [-300.0, 400.0])
    hu_center: float = 50.0
    hu_scale: float = 175.0
    roi: RoiConfig = field(default_factory=RoiConfig)
    extras: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """A CT ready for the network: ``image`` (float32, z y x) on ``grid`` (an empty SimpleITK image)."""

    image: np.ndarray
    grid: object  # SimpleITK.Image holding origin, spacing, direction and size of ``image``
    roi_index: tuple[slice, slice, slice]  # the ROI in the oriented CT's index space (z, y, x)
    labels: np.ndarray | None = None


NOT_HU = ("the CT is not in Hounsfield units (no air near -1000 HU: values as a scanner stores them): apply "
          "the rescale intercept (usually -1024) before using it")
WINDOWED = ("the CT is not in Hounsfield units: its values lie within 0..255, an 8-bit windowed export (like "
            "a screenshot: the HU are lost, no intercept brings them back); use the original CT in HU (its "
            "DICOM series, or an NRRD/NIfTI export of it)")


def _sample(hu: np.ndarray) -> np.ndarray:
    """Every other slice and every fourth row and column of a CT: enough to judge its values."""
    return np.asarray(hu[::2, ::4, ::4]) if hu.ndim == 3 else np.asarray(hu)


NORMALISED = ("the CT is not in Hounsfield units: its values lie within 0..1, a normalised export (a "
              "viewer's or a network's: the HU are lost); use the original CT in HU (its DICOM series, or an "
              "NRRD/NIfTI export of it)")


def not_hu_reason(hu: np.ndarray) -> str:
    """Why a CT that :func:`stored_values` flags is not in HU: values within 0..1 or 8-bit windowed ones
    (exports whose HU are lost), or stored values."""
    sample = _sample(hu)
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
    sample = _sample(hu)
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
    sample = _sample(hu)
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


#: A CT longer than this (mm) along an axis has a wrong spacing (a whole-body CT spans 2 m): predicting it
#: resampled a 34-slice CT of 100 mm slices to 1100 slices for 3 minutes and found a node, and 1000 mm
#: slices ran out of memory.
MAX_EXTENT_MM = 3000.0


def check_ct_extent(ct: Volume) -> None:
    """LNQError when ``ct`` spans more than :data:`MAX_EXTENT_MM` along an axis: its spacing is in another
    unit, and resampling it would make metres of voxels."""
    extents = [n * float(sp) for n, sp in zip(ct.shape, ct.spacing_zyx)]
    if max(extents) > MAX_EXTENT_MM:
        axis = int(np.argmax(extents))
        raise LNQError(f"the CT spans {max(extents):.0f} mm along its {'zyx'[axis]} axis ({ct.shape[axis]} "
                       f"voxels of {ct.spacing_zyx[axis]:g} mm), more than any body: its voxel spacing is "
                       "wrong; fix the file's header (e.g. re-export it from the DICOM series)")


def check_ct_values(hu: np.ndarray) -> None:
    """LNQError when a CT holds NaN or infinite voxels (the network's output around them is meaningless:
    a phantom with 0.1 % NaN voxels gave 3 nodes of 8, and training diverged), or when it holds 2 to a
    handful of whole values from 0 to 255 (0 and 1, 0 and 255, ids): a label map given as the CT, where
    the model would find nothing and say little (a CT holds hundreds of values), or when it holds a
    scanner's stored values (:func:`stored_values`: the network saw bone and metal, and found nothing or
    nodes in the wrong places), or HU 1024 low (:func:`shifted_down`: no soft tissue, nothing found), or
    tenths of HU (:func:`~lnq_napari.ct_scale.tenths_problem`)."""
    if np.asarray(hu).dtype.kind == "f":
        bad = int(np.size(hu) - np.count_nonzero(np.isfinite(hu)))
        if bad:
            raise LNQError(f"the CT holds {bad} NaN or infinite voxel(s); fill them (e.g. with -1024, air) "
                           "or re-export the CT from its DICOM series")
    sample = _sample(hu)
    if sample.size and sample.min() >= 0 and sample.max() <= 255:  # HU or stored values need no sort
        values = np.unique(sample)
        if 2 <= values.size <= LABEL_MAP_VALUES and np.all(values == np.round(values)):
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


#: A "CT" with at most this many distinct values (in a sample of its voxels) is a label map.
LABEL_MAP_VALUES = 32

#: A CT with fewer voxels near -1000 HU than this share of those near +1000, and more than the next share
#: of its voxels near +1000, holds stored values: in HU a chest CT's air (outside the body, lungs) is 20-50 %
#: of it, dense bone a few per cent.
STORED_AIR_PER_TISSUE = 0.05
STORED_TISSUE_SHARE = 0.10
#: A CT with more than this share of voxels near -2000 and less than the next from -200 to 200 HU is 1024 HU
#: low (a chest CT in HU: 28 % soft tissue, 0.2 % near -2000; 1024 low: 0.04 % and 41 %).
SHIFTED_AIR_SHARE = 0.10
SHIFTED_TISSUE_SHARE = 0.002


def normalize(hu: np.ndarray, prep: PreprocessingConfig) -> np.ndarray:
    """Clip HU to the model's window and scale to roughly unit range (float32)."""
    lo, hi = prep.hu_clip
    out = np.clip(hu.astype(np.float32, copy=False), lo, hi)
    out -= float(prep.hu_center)
    out /= float(prep.hu_scale)
    return out


def pad_value(prep: PreprocessingConfig) -> float:
    """The normalised value of air, used to pad images beyond their border."""
    return (float(prep.hu_clip[0]) - float(prep.hu_center)) / float(prep.hu_scale)


def prepare(ct: Volume, prep: PreprocessingConfig | None = None, labels: np.ndarray | None = None,
            image: Prepared | None = None) -> Prepared:
    """Orient, crop to the ROI, resample to the target spacing and normalise a CT.

    ``labels`` (an int array on the CT grid, e.g. label states) follow with nearest-neighbour resampling.
    ``image``: this CT already prepared with the same ``prep``; only the labels are resampled then.
    """
    import SimpleITK as sitk

    prep = prep or PreprocessingConfig()
    if image is None:
        check_ct_extent(ct)
        oriented = reorient(ct.to_sitk(), prep.orientation)
        hu = sitk.GetArrayViewFromImage(oriented)
        check_ct_values(hu)
        roi = find_roi(hu, tuple(oriented.GetSpacing()[::-1]), prep.roi)
    else:
        roi = image.roi_index
    index = [int(roi[2].start), int(roi[1].start), int(roi[0].start)]
    size = [int(roi[2].stop - roi[2].start), int(roi[1].stop - roi[1].start), int(roi[0].stop - roi[0].start)]
    if image is None:
        cropped = sitk.RegionOfInterest(oriented, size, index)
        grid = _target_grid(cropped, prep.target_spacing)
        resampled = sitk.Resample(  # float32 out straight from the stored type: no full-size float copy
            cropped, grid, sitk.Transform(), sitk.sitkLinear, float(prep.hu_clip[0]), sitk.sitkFloat32,
        )
        array = normalize(sitk.GetArrayFromImage(resampled), prep)
    else:
        grid, array = image.grid, image.image
    out_labels = None
    if labels is not None:
        lab_vol = ct.with_array(np.asarray(labels).astype(np.int16))
        lab_img = sitk.RegionOfInterest(reorient(lab_vol.to_sitk(), prep.orientation), size, index)
        lab_res = sitk.Resample(lab_img, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
        out_labels = sitk.GetArrayFromImage(lab_res).astype(np.int8)
    return Prepared(array, grid, roi, out_labels)


def _target_grid(image, target_spacing):
    """An empty image covering ``image``'s extent at ``target_spacing`` (same direction, centred)."""
    import SimpleITK as sitk

    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = np.asarray(image.GetSize(), dtype=float)
    target = np.asarray(target_spacing, dtype=float)
    new_size = np.maximum(1, np.round(size * spacing / target)).astype(int)
    # keep the physical centre: first voxel centre shifts by half the difference in extents
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    shift = ((new_size - 1) * target - (size - 1) * spacing) / 2.0
    origin = np.asarray(image.GetOrigin(), dtype=float) - direction @ shift
    grid = sitk.Image([int(n) for n in new_size], sitk.sitkUInt8)
    grid.SetSpacing([float(t) for t in target])
    grid.SetOrigin([float(o) for o in origin])
    grid.SetDirection(image.GetDirection())
    return grid


def grid_image(values: np.ndarray, prepared: Prepared):
    """``values`` (on ``prepared.grid``) as a float32 SimpleITK image on that grid."""
    import SimpleITK as sitk

    src = sitk.GetImageFromArray(np.ascontiguousarray(values, dtype=np.float32))
    src.CopyInformation(prepared.grid)
    return src


def to_ct_grid(values, prepared: Prepared, ct: Volume, linear: bool = True) -> np.ndarray:
    """Resample ``values`` (float32 on ``prepared.grid``, or its :func:`grid_image` when several CT blocks
    take it) onto the CT's exact grid; zero outside the ROI.

    Only the block of the CT grid that covers the ROI is resampled, so big CTs stay cheap.
    """
    import SimpleITK as sitk

    src = values if isinstance(values, sitk.Image) else grid_image(values, prepared)
    # the ROI's physical corners -> the CT's index space -> the block to fill
    g = prepared.grid
    size = np.asarray(g.GetSize())
    corners = np.array([[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for k in (-0.5, size[2] - 0.5)])
    phys = np.asarray(g.GetOrigin()) + (corners * np.asarray(g.GetSpacing())) @ np.asarray(
        g.GetDirection()).reshape(3, 3).T
    zyx = ct.physical_to_index(phys)
    lo = np.maximum(0, np.floor(zyx.min(axis=0)).astype(int) - 1)
    hi = np.minimum(np.asarray(ct.shape), np.ceil(zyx.max(axis=0)).astype(int) + 2)
    out = np.zeros(ct.shape, dtype=np.float32)
    if np.any(hi <= lo):
        return out
    block = sitk.Image([int(hi[2] - lo[2]), int(hi[1] - lo[1]), int(hi[0] - lo[0])], sitk.sitkUInt8)
    block.SetSpacing(ct.spacing)
    block.SetDirection(ct.direction)
    block.SetOrigin([float(v) for v in ct.index_to_physical(lo[None].astype(float))[0]])
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    res = sitk.Resample(src, block, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = sitk.GetArrayFromImage(res)
    return out
