"""npe2 writer: a Labels layer -> a 3D Slicer ``.seg.nrrd`` (node = 1) on the source CT's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lnq_napari.io.segfile import write_seg_nrrd
from lnq_napari.plugin._layers import volume_from, world_matrix


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer for Labels layers; returns the written path."""
    target = Path(path)
    if not target.name.lower().endswith(".nrrd"):
        target = target.with_name(target.name + ".seg.nrrd")
    ndim = np.ndim(data)
    scale, translate = meta.get("scale", (1.0,) * ndim), meta.get("translate", (0.0,) * ndim)
    to_world = world_matrix(scale, translate, meta.get("rotate"), meta.get("shear"), meta.get("affine"))
    volume = volume_from(data, meta.get("metadata"), to_world)  # 3D only
    write_seg_nrrd(target, volume, extra={"lnq_layer": str(meta.get("name", "labels"))})
    return [str(target)]
