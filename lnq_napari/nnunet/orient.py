"""The voxel order an nnU-Net model was trained in, when it is not the CT's own: a model whose dataset.json
names nnU-Net's ``NibabelIOWithReorient`` reader saw every image turned to RAS (nibabel's
``as_closest_canonical``) before training, so it is given the CT turned the same way and its outputs are
turned back. Other readers (SimpleITKIO, NibabelIO) give the CT's own voxel order, as lnq-napari's reader.
Needs nibabel (a dependency of nnunetv2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lnq_napari.io.volume import Volume

REORIENTING = "NibabelIOWithReorient"  # nnU-Net's reader that turns images to RAS


def reorients(dataset: dict) -> bool:
    """True when the model of ``dataset`` (its dataset.json) was trained on images turned to RAS."""
    return isinstance(dataset, dict) and dataset.get("overwrite_image_reader_writer") == REORIENTING


@dataclass(frozen=True)
class Reorientation:
    """How a CT's voxel axes (x, y, z) turn to RAS: nibabel's orientation, one row ``(axis, flip)`` per
    axis, as nnU-Net's reader applies it."""

    ornt: np.ndarray

    @classmethod
    def of(cls, ct: Volume) -> Reorientation:
        """The turn of ``ct``'s grid (LPS direction and spacing as nibabel's RAS affine sees them)."""
        from nibabel.orientations import io_orientation

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
