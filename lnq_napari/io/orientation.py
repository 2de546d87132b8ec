"""Axis order of images: put a SimpleITK image in a canonical orientation (LPS) and map results back.

Work that needs axial slices first (anatomy, label states, the model's input) runs on the image in LPS
order and maps its output back onto the original grid exactly. An oblique direction has no axis
permutation that makes it canonical: such an image keeps its grid (code ``None``).
"""

from __future__ import annotations

import numpy as np


def reorient(image, orientation: str = "LPS"):
    """``image`` with its axes permuted/flipped to ``orientation``; an oblique image is returned as is."""
    import SimpleITK as sitk

    try:
        return sitk.DICOMOrient(image, orientation)
    except RuntimeError:
        return image


def to_lps(image) -> tuple[str | None, object]:
    """``(code, image in LPS axis order)``; :func:`from_lps` with ``code`` maps results back.

    An oblique direction keeps its grid: ``(None, image)``.
    """
    import SimpleITK as sitk

    try:
        code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
        if code == "LPS":  # already in LPS axis order: no reoriented copy of the voxels
            return code, image
        return code, sitk.DICOMOrient(image, "LPS")
    except RuntimeError:
        return None, image


def from_lps(array: np.ndarray, oriented, code: str | None) -> np.ndarray:
    """An array computed on ``oriented`` (the LPS image from :func:`to_lps`), on the original grid."""
    import SimpleITK as sitk

    if not code or code == "LPS":  # nothing to undo: no copies through SimpleITK
        return np.asarray(array)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(oriented)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, code))


def radiological(volume):
    """``volume`` (a :class:`~lnq_napari.io.volume.Volume`) in LPS axis order, axes permuted and flipped
    only, no resampling (an oblique grid is kept as it is): ``array[z]`` is then an axial slice as
    radiologists read it, anterior at the top and the patient's right on the left, whatever order the
    file stored its voxels in."""
    from lnq_napari.io.volume import Volume

    code, oriented = to_lps(volume.to_sitk())
    return volume if code is None else Volume.from_sitk(oriented)
