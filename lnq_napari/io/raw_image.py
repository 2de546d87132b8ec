"""An image as stored (:class:`RawImage`: its array, a list axis kept, its grid and header fields), and a
SimpleITK image read into one with ITK's own warning lines silenced."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume, native_order, plain_image


@dataclass
class RawImage:
    """An image as stored: ``array`` is (z, y, x) or (layers, z, y, x) for files with a list axis."""

    array: np.ndarray
    spacing: tuple
    origin: tuple
    direction: tuple
    meta: dict = field(default_factory=dict)

    @property
    def layered(self) -> bool:
        return self.array.ndim == 4

    def volume(self, array: np.ndarray | None = None) -> Volume:
        return Volume(self.array if array is None else array, self.spacing, self.origin, self.direction,
                      dict(self.meta))


def native(array: np.ndarray) -> np.ndarray:
    """Native byte order and C-contiguous (SimpleITK and torch need both)."""
    return np.ascontiguousarray(native_order(array))


def not_scalar(name: str, components: int, what: str = "a colour or vector image",
               labels: bool = False) -> LNQError:
    """The error for an image of ``components`` values per voxel (RGB, a vector field), not a CT (with
    ``labels``: not a label map)."""
    if labels:
        return LNQError(f"{name}: an image of {components} values per voxel ({what}); a label map holds one "
                        "value per voxel (0 background, node ids): pass the label map itself, not a colour "
                        "rendering or export of it")
    return LNQError(f"{name} has {components} values per voxel ({what}); a CT volume must be scalar: "
                    "use the CT itself, not a colour rendering or export of it")


def from_sitk_image(image, name: str, labels: bool = False) -> RawImage:
    """A 3D scalar SimpleITK image (4D of one time point: its volume; a LabelMap: its label image) as
    stored; LNQError for another (``labels``: said of a label map, not a CT)."""
    import SimpleITK as sitk

    image = plain_image(image)
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # one time point: its volume
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise LNQError(f"{name}: a {dim}D image; a CT or label volume must be 3D (z, y, x)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise not_scalar(name, image.GetNumberOfComponentsPerPixel(), labels=labels)
    return RawImage(native(sitk.GetArrayFromImage(image)), image.GetSpacing(), image.GetOrigin(),
                    image.GetDirection(), {})


@contextlib.contextmanager
def itk_quiet() -> Iterator[None]:
    """ITK's own warnings (printed to stderr, outside Python's warnings) silenced in this block: what is
    wrong is said in one line by the caller."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
