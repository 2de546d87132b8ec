"""The voxel order an nnU-Net model was trained in, when it is not the CT's own: a model whose dataset.json
names one of nnU-Net's reorienting readers saw every image turned to RAS before training, so it is given
the CT turned the same way and its outputs are turned back. ``NibabelIOWithReorient`` turns with nibabel's
``as_closest_canonical``, ``SimpleITKIOWithReorient`` with ``sitk.DICOMOrient(image, "RAS")``; they agree
except on grids turned exactly 45 degrees, where each reader's own choice is followed. Other readers
(SimpleITKIO, NibabelIO) give the CT's own voxel order, as lnq-napari's reader. Needs nibabel (a dependency
of nnunetv2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnq_napari.io.volume import Volume

NIBABEL_REORIENT = "NibabelIOWithReorient"  # nnU-Net's readers that turn images to RAS
SITK_REORIENT = "SimpleITKIOWithReorient"
REORIENTING = (NIBABEL_REORIENT, SITK_REORIENT)


def reorienting_reader(dataset: dict) -> str | None:
    """The reorienting reader dataset.json names (the model saw images turned to RAS), else None."""
    reader = dataset.get("overwrite_image_reader_writer") if isinstance(dataset, dict) else None
    return reader if reader in REORIENTING else None


@dataclass(frozen=True)
class Reorientation:
    """How a CT's voxel axes (x, y, z) turn to RAS: nibabel's orientation, one row ``(axis, flip)`` per
    axis, as nnU-Net's reader applies it."""

    ornt: np.ndarray

    @classmethod
    def of(cls, ct: Volume, reader: str = NIBABEL_REORIENT) -> Reorientation:
        """The turn of ``ct``'s grid as ``reader`` turns it: SimpleITK's DICOM orientation code of the
        direction for SimpleITKIOWithReorient, nibabel's of the RAS affine for NibabelIOWithReorient."""
        from nibabel.orientations import axcodes2ornt, io_orientation

        if reader == SITK_REORIENT:
            import SimpleITK as sitk

            direction = tuple(float(v) for v in np.asarray(ct.direction_matrix, dtype=float).ravel())
            code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(direction)
            return cls(axcodes2ornt(tuple(code)))  # DICOM's letters: where each axis points, as nibabel's
        affine = np.eye(4)
        affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ ct.direction_matrix @ np.diag(ct.spacing)
        return cls(io_orientation(affine))

    def forward(self, array_zyx: np.ndarray, spacing_zyx) -> tuple[np.ndarray, list[float]]:
        """The CT array (z, y, x) and spacing turned as nnU-Net's reader turns them (still z, y, x)."""
        from nibabel.orientations import apply_orientation

        turned = apply_orientation(np.asarray(array_zyx).transpose(2, 1, 0), self.ornt)
        zooms = np.empty(3)
        zooms[self.ornt[:, 0].astype(int)] = np.asarray(spacing_zyx, dtype=float)[::-1]
        return np.ascontiguousarray(turned.transpose(2, 1, 0)), [float(z) for z in zooms[::-1]]

    def back(self, array_zyx: np.ndarray) -> np.ndarray:
        """A turned array (z, y, x) back in the CT's own voxel order."""
        from nibabel.orientations import apply_orientation

        inverse = np.empty_like(self.ornt)
        for axis, (to, flip) in enumerate(self.ornt):
            inverse[int(to)] = (axis, flip)
        back = apply_orientation(np.asarray(array_zyx).transpose(2, 1, 0), inverse)
        return np.ascontiguousarray(back.transpose(2, 1, 0))
