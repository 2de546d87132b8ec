"""Volume <-> napari layer data: physical placement (scale, translate, affine) and the grid in metadata."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.figures import WINDOW_HU
from lnq_napari.io.volume import Volume

GEOMETRY_KEY = "lnq_volume_geometry"
SOURCE_KEY = "lnq_source"
ROLE_KEY = "lnq_role"
CT_ROLE = "ct"  # a CT lnq-napari's reader (or a case it opened) shows; any reader's Image may be a CT too
PROB_ROLE = "prob"  # a probability map's layer: never taken for the CT Find nodes runs on
REGION_ROLE = "region"  # the mediastinum region's outline (Find nodes draws it): no CT either
NOT_CT_ROLES = (PROB_ROLE, REGION_ROLE)  # Image layers lnq-napari shows over a CT, never one to predict on
COMPARE_ROLE = "compare"  # the Compare widget's layers: a view of two scans, never a case's node layer
#: The world axes every layer of a case is drawn on (LPS mm: z foot to head, y front to back, x right to
#: left); napari named them "-3", "-2", "-1" beside the slice slider.
AXIS_LABELS = ("z", "y", "x")
CT_CONTRAST = WINDOW_HU  # CT layers open in the mediastinal window, as the demo's pictures show them
HU_FLOOR = -1024.0  # the contrast slider's low end at the lowest: air, and below it padding


def geometry(volume: Volume) -> dict:
    """The grid of ``volume`` as plain data (stored in ``layer.metadata``)."""
    return {
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "origin": list(volume.origin),
        "direction": list(volume.direction),
    }


def placement(volume: Volume) -> dict:
    """napari layer kwargs placing the (z, y, x) array at its LPS position in mm (world = z, y, x)."""
    d = volume.direction_matrix
    if np.allclose(d, np.eye(3), atol=1e-6):
        return {"scale": tuple(volume.spacing[::-1]), "translate": tuple(volume.origin[::-1])}
    # world (z, y, x) = R_zyx @ (spacing_zyx * index_zyx) + origin_zyx, with R_zyx the direction reversed
    rot = d[::-1, ::-1]
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(volume.spacing[::-1])[None, :]
    affine[:3, 3] = np.asarray(volume.origin[::-1])
    return {"affine": affine}


def layer_kwargs(volume: Volume, name: str, role: str, source: str | None = None, like=None,
                 **metadata) -> dict:
    """Keyword arguments for an Image/Labels/Points layer showing ``volume``'s grid; placed as the layer
    ``like`` is drawn now (a CT the user flipped or rotated in napari), else as the grid says."""
    meta = {GEOMETRY_KEY: geometry(volume), ROLE_KEY: role, **metadata}
    if source:
        meta[SOURCE_KEY] = str(source)
    return {"name": name, "metadata": meta, "axis_labels": AXIS_LABELS,
            **(placement(volume) if like is None else drawn_as(like))}


def drawn_as(layer) -> dict:
    """napari layer kwargs drawing data where ``layer`` draws its own (its scale, translate, rotation,
    shear and affine as they are now): results over a CT sit on the anatomy the user sees."""
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "rotate": np.asarray(layer.rotate), "shear": np.asarray(layer.shear),
            "affine": np.asarray(layer.affine.affine_matrix)}


def volume_from(data: np.ndarray, metadata: dict | None, to_world=None) -> Volume:
    """A Volume of layer ``data`` on the grid stored in ``metadata``, else on the layer's 4x4 data-to-world
    map ``to_world`` (:func:`world_matrix`; None: 1 mm voxels at the origin)."""
    geom = (metadata or {}).get(GEOMETRY_KEY)
    array = np.asarray(full_resolution(data))
    if array.ndim != 3:
        shape = " x ".join(str(n) for n in array.shape)
        raise LNQError(f"this layer is {array.ndim}D ({shape}); lnq-napari works on 3D CT volumes: open a CT "
                       "volume or DICOM series (an RGB picture or a single slice cannot be read as one)")
    if geom is not None and tuple(geom["shape"]) == array.shape:
        return Volume(array, tuple(geom["spacing"]), tuple(geom["origin"]), tuple(geom["direction"]))
    if to_world is None:
        return Volume(array)
    matrix = np.asarray(to_world, dtype=float)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)  # (z, y, x): the length of one step along each axis
    rot = matrix[:3, :3] / np.where(spacing > 0, spacing, 1.0)
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-4):
        raise LNQError("this layer is sheared or squashed to zero in napari; a CT grid has square axes: "
                       "reset the layer's transform (or open the file with the lnq-napari reader)")
    # the inverse of placement(): world (z, y, x) = R_zyx @ (spacing_zyx * index_zyx) + origin_zyx
    return Volume(array, tuple(spacing[::-1]), tuple(matrix[:3, 3][::-1]), tuple(rot[::-1, ::-1].ravel()))


def full_resolution(data):
    """A layer's data at full resolution: a multiscale layer's first level (napari reads the list of levels
    as an array of its last, coarsest level, and its scale and translate place the first), else ``data``."""
    return data[0] if isinstance(data, Sequence) and not isinstance(data, str | bytes) else data


def world_matrix(scale, translate, rotate=None, shear=None, affine=None) -> np.ndarray:
    """A napari layer's 4x4 data-to-world map (z, y, x) from its transform attributes: its scale, translate,
    rotate and shear, then its affine, as napari applies them."""
    from napari.utils.transforms import CompositeAffine

    inner = CompositeAffine(scale=scale, translate=translate, rotate=rotate, shear=shear,
                            ndim=len(scale)).affine_matrix
    return (np.eye(len(inner)) if affine is None else np.asarray(affine, dtype=float)) @ inner


def layer_volume(layer) -> Volume:
    """The Volume shown by a napari Image or Labels layer (its data on its stored grid, else where napari
    draws it: a New Labels layer made on a CT drawn through an affine is drawn there too)."""
    if getattr(layer, "rgb", False):
        raise LNQError(f"{layer.name!r} is a colour (RGB) picture; lnq-napari works on 3D CT volumes: open a "
                       "CT volume or DICOM series")
    return volume_from(layer.data, layer.metadata, world_matrix(layer.scale, layer.translate, layer.rotate,
                                                                layer.shear, layer.affine.affine_matrix))


def hu_span(data: np.ndarray) -> tuple[float, float] | None:
    """The lowest and highest finite value of ``data``, the low end no lower than :data:`HU_FLOOR` (the
    padding outside a scan's field of view, -32768 or -3024, is no tissue); None when none is finite."""
    lowest, highest = float(data.min()), float(data.max())
    if not (np.isfinite(lowest) and np.isfinite(highest)):  # inf or NaN in a float CT: the finite values
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return None
        lowest, highest = float(finite.min()), float(finite.max())
    return max(lowest, min(HU_FLOOR, highest)), highest


def widen_contrast_range(layer) -> None:
    """Let a CT layer's contrast slider reach every HU of its data (a lung or bone window too); the
    limits stay as they are (the mediastinal window). napari caps the slider at the limits an image
    opens with, so a CT opened in the mediastinal window could never be dragged to -1000 HU. A slider
    no longer capped at the limits (widened already: every tab docked hears a layer opened) stays."""
    if tuple(layer.contrast_limits_range) != tuple(layer.contrast_limits):
        return
    data = np.asarray(layer.data)
    if getattr(layer, "rgb", False) or data.size == 0 or not np.issubdtype(data.dtype, np.number):
        return
    span = hu_span(data)
    if span is None:
        return
    low, high = layer.contrast_limits
    lowest, highest = span
    limits = (low, high)
    layer.contrast_limits_range = (min(low, lowest), max(high, highest))
    layer.contrast_limits = limits


def unplaced_note(layer) -> str:
    """A line warning that ``layer`` carries no grid of its own ("" when it does): no lnq-napari geometry
    and napari's default placement (1 mm voxels at the origin), as when napari's built-in reader opened
    the file: its node volumes and saved labels are right only if that is the scan's grid."""
    if GEOMETRY_KEY in layer.metadata or not np.allclose(layer.affine.affine_matrix, np.eye(layer.ndim + 1)):
        return ""
    if not (np.allclose(layer.scale, 1.0) and np.allclose(layer.translate, 0.0)):
        return ""
    return (f"note: {layer.name!r} has no voxel size or position (napari's defaults, 1 mm voxels at the "
            "origin, are used): open the file with the lnq-napari reader (File > Open, choose lnq-napari) "
            "for its real grid")


def unwrapped(layer):
    """``layer`` itself, when it is the proxy napari hands a Plugins-menu widget (each read of a layer
    through it makes a new one, and each read of a private attribute warns)."""
    return getattr(layer, "__wrapped__", layer)


def is_ct_layer(layer, views: bool = True) -> bool:
    """Whether ``layer`` is an Image that may be a CT: opened by any reader (lnq-napari's, napari's own, a
    DICOM plugin's), never an overlay lnq-napari draws on a CT (a probability map, the region outline);
    with ``views=False`` never the Compare widget's view of two scans either (no case's CT)."""
    from napari.layers import Image

    skip = NOT_CT_ROLES if views else (*NOT_CT_ROLES, COMPARE_ROLE)
    return isinstance(unwrapped(layer), Image) and layer.metadata.get(ROLE_KEY) not in skip


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are one layer, either of them maybe a proxy (:func:`unwrapped`)."""
    return unwrapped(a) is unwrapped(b)


def same_placement(a, b, tol_mm: float = 0.05) -> bool:
    """True when layers ``a`` and ``b`` hold arrays of one shape placed on one grid in the world (a CT
    and the labels drawn on it): their data-to-world maps agree at the origin and one step along each
    axis, within ``tol_mm`` (float noise of exported headers; a shifted or flipped scan is mm away)."""
    if np.shape(a.data)[: a.ndim] != np.shape(b.data)[: b.ndim] or a.ndim != b.ndim:
        return False
    points = np.vstack([np.zeros(a.ndim), np.eye(a.ndim)])
    return all(np.allclose(a.data_to_world(p), b.data_to_world(p), atol=tol_mm) for p in points)


def same_scan(a, b) -> bool:
    """Whether layers ``a`` and ``b`` show one scan on one grid (a CT opened twice, or a copy of it): the
    same placement, and the same source file or the same voxels."""
    if not same_placement(a, b):
        return False
    source = a.metadata.get(SOURCE_KEY)
    if source and source == b.metadata.get(SOURCE_KEY):
        return True
    return a.data is b.data or np.array_equal(np.asarray(a.data), np.asarray(b.data))
