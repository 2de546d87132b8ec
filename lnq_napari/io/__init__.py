"""Reading and writing CT and label volumes with their exact geometry."""

from lnq_napari.io.geometry import GridWarning, align_to, check_same_grid
from lnq_napari.io.readers import read_labels, read_volume, write_volume
from lnq_napari.io.segfile import write_seg_nrrd
from lnq_napari.io.volume import Volume

__all__ = [
    "GridWarning", "Volume", "align_to", "check_same_grid", "read_labels", "read_volume", "write_seg_nrrd",
    "write_volume",
]
