"""An image as stored (:class:`RawImage`: its array, a list axis kept, its grid and header fields), and a
SimpleITK image read into one with ITK's own warning lines silenced, and its codecs' lines caught."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.volume import Volume, native_order


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


def not_scalar(name: str, components: int, what: str = "a colour or vector image") -> LNQError:
    """The error for an image of ``components`` values per voxel (RGB, a vector field), not a CT."""
    return LNQError(f"{name} has {components} values per voxel ({what}); a CT volume must be scalar: "
                    "use the CT itself, not a colour rendering or export of it")


def from_sitk_image(image, name: str) -> RawImage:
    """A 3D scalar SimpleITK image (4D of one time point: its volume) as stored; LNQError for another."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # one time point: its volume
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise LNQError(f"{name} is {dim}D; a CT or label volume must be 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise not_scalar(name, image.GetNumberOfComponentsPerPixel())
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


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """What native code writes to the process's stderr in this block (GDCM's codecs print there: OpenJPEG's
    "Error with SIZ marker", libjpeg's "Corrupt JPEG data", which SimpleITK cannot silence), kept from the
    terminal and given back, each line once in order, in the list yielded once the block ends, so that the
    caller says what is wrong in one line of its own. File descriptor 2 is the whole process's: another
    thread's writes meanwhile are caught too (keep the block to the read). No stderr: nothing is caught."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no stderr (a windowed app), or none to flush
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines.extend(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
