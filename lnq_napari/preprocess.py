"""Model-side preprocessing: canonical orientation, chest ROI, resampling to the model's spacing, HU scaling.

A CT goes to the network as :class:`Prepared`: a float32 (z, y, x) array at the model's target spacing,
cropped to the chest ROI (the lungs' bounding box plus a margin, :func:`~lnq_napari.anatomy.find_roi`),
and the SimpleITK grid it lives on, so network outputs can be resampled back onto the CT's exact grid with
:func:`to_ct_grid`. Its values are judged first (:func:`~lnq_napari.ct_scale.check_ct_values`: refused when
they are no HU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lnq_napari.anatomy import RoiConfig, find_roi
from lnq_napari.ct_scale import check_ct_values
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


#: A CT longer than this (mm) along an axis has a wrong spacing (a whole-body CT spans 2 m): predicting it
#: resampled a 34-slice CT of 100 mm slices to 1100 slices for 3 minutes and found a node, and 1000 mm
#: slices ran out of memory.
MAX_EXTENT_MM = 3000.0
#: A voxel finer than this (mm) along an axis is not a CT's (the finest clinical pixels are about 0.2 mm):
#: its spacing is in metres read as mm (0.003 for 3 mm voxels); a follow-up CT of such voxels crashed the
#: registration's coarse copy (SimpleITK BinShrink: "InputImage is too small").
MIN_SPACING_MM = 0.05


def check_ct_extent(ct: Volume, what: str = "the CT") -> None:
    """LNQError when ``ct`` (a CT, or a label map: ``what`` names it, "the label file X") spans more than
    :data:`MAX_EXTENT_MM` along an axis: its spacing is in another unit (a NIfTI saying metres, an NRRD's
    ``space units: m``, for values in mm), and resampling it would make metres of voxels; node sizes in mm
    would be absurd. Likewise when a voxel is finer than :data:`MIN_SPACING_MM` (values in metres, the
    header saying mm or nothing)."""
    finest = min(float(sp) for sp in ct.spacing_zyx)
    if finest < MIN_SPACING_MM:
        axis = [float(sp) for sp in ct.spacing_zyx].index(finest)
        raise LNQError(f"{what} has voxels of {finest:g} mm along its {'zyx'[axis]} axis, finer than "
                       "any CT's: its spacing is in another unit (values in metres, or a header saying "
                       "micrometres for values in mm?); fix the file's header (e.g. "
                       "re-export it from the DICOM series)")
    extents = [n * float(sp) for n, sp in zip(ct.shape, ct.spacing_zyx)]
    if max(extents) > MAX_EXTENT_MM:
        axis = int(np.argmax(extents))
        raise LNQError(f"{what} spans {max(extents):.0f} mm along its {'zyx'[axis]} axis ({ct.shape[axis]} "
                       f"voxels of {ct.spacing_zyx[axis]:g} mm), more than any body: its voxel spacing is "
                       "wrong (or the length unit its header gives); fix the file's header (e.g. re-export "
                       "it from the DICOM series)")


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
