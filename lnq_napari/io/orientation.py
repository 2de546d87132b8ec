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
    """``(code, image in LPS axis order)``; :func:`from_lps` with ``code`` maps results back. For a
    SimpleITK pipeline; a :class:`~lnq_napari.io.volume.Volume` is put in the same order, without a copy,
    by :func:`lps_view`.

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
    """``volume`` (a :class:`~lnq_napari.io.volume.Volume`) in LPS axis order (:func:`lps_view`: axes
    permuted and flipped, no resampling, no copy): ``array[z]`` is then an axial slice as radiologists read
    it, anterior at the top and the patient's right on the left, whatever order the file stored its
    voxels in."""
    return lps_view(volume)


def lps_axes(volume) -> tuple[list[int], list[float]] | None:
    """(the stored axis (i, j, k) along LPS x, y, z, its sign) of ``volume``'s grid; None when no axis
    permutation matches it (a grid near 45 degrees)."""
    matrix = volume.direction_matrix
    order = [int(np.argmax(np.abs(matrix[:, j]))) for j in range(3)]  # the LPS axis each file axis runs along
    if sorted(order) != [0, 1, 2]:
        return None
    axis_of = [order.index(a) for a in range(3)]
    return axis_of, [1.0 if matrix[a, j] >= 0 else -1.0 for a, j in enumerate(axis_of)]


def lps_view(volume):
    """``volume`` in LPS axis order as a numpy view of its voxels (no copy): its axes permuted and flipped
    so that array index (z, y, x) runs foot to head, anterior to posterior, right to left, each axis the one
    whose direction is nearest that LPS axis (as :func:`to_lps` orients, an oblique grid included). The
    same points stored in any axis order or direction give the same array and grid, so work that
    subsamples or numbers by index (a coarse copy, blobs in raster order) gives the same answer
    whichever way the file stored them."""
    from lnq_napari.io.volume import Volume

    axes = lps_axes(volume)
    if axes is None:  # no one-to-one axis match: kept as stored
        return volume
    axis_of, signs = axes
    origin = volume.index_to_physical(first_voxel(volume, axis_of, signs)[::-1])[0]
    direction = volume.direction_matrix[:, axis_of] * np.asarray(signs)[None, :]
    spacing = np.asarray(volume.spacing)[axis_of]
    return Volume(permuted_view(volume, axis_of, signs), tuple(spacing), tuple(origin),
                  tuple(direction.ravel()), dict(volume.meta))


def permuted_view(volume, order, signs) -> np.ndarray:
    """``volume``'s voxels (z, y, x) with its (i, j, k) axes taken in ``order`` and each flipped where its
    sign in ``signs`` is negative: a numpy view, no copy."""
    ijk = np.asarray(volume.array).transpose(2, 1, 0).transpose(order)
    ijk = ijk[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in signs)]
    return ijk.transpose(2, 1, 0)


def first_voxel(volume, order, signs) -> np.ndarray:
    """The (i, j, k) index in ``volume`` of the voxel that comes first in :func:`permuted_view`'s order."""
    first = np.zeros(3)
    for a, s in zip(order, signs):
        first[a] = 0 if s > 0 else volume.size_xyz[a] - 1
    return first


def lps_index(volume, zyx: np.ndarray) -> np.ndarray:
    """(n, 3) int: the (z, y, x) index in :func:`lps_view` of ``volume`` of the stored voxels ``zyx`` (n, 3);
    stored indices as they are when no axis permutation matches the grid. Sorting by it (z, then y,
    then x) is raster order in LPS, the same whichever way the file stores the voxels."""
    zyx = np.asarray(zyx, dtype=np.int64).reshape(-1, 3)
    axes = lps_axes(volume)
    if axes is None:
        return zyx
    axis_of, signs = axes
    ijk, size = zyx[:, ::-1], volume.size_xyz
    out = np.stack([ijk[:, a] if s > 0 else size[a] - 1 - ijk[:, a] for a, s in zip(axis_of, signs)], axis=1)
    return out[:, ::-1]
