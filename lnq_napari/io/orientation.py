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
        return code, sitk.DICOMOrient(image, "LPS")
    except RuntimeError:
        return None, image


def from_lps(array: np.ndarray, oriented, code: str | None) -> np.ndarray:
    """An array computed on ``oriented`` (the LPS image from :func:`to_lps`), on the original grid."""
    import SimpleITK as sitk

    if not code:
        return np.asarray(array)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(oriented)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, code))
