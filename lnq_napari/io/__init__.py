"""Reading and writing CT and label volumes with their exact geometry."""

from lnq_napari.io.volume import Volume

__all__ = ["Volume"]
