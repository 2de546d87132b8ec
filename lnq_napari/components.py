"""Connected nodes: the one connectivity rule shared by the GUI, measurements, post-processing and metrics.

Two voxels belong to one node when they touch by a face, an edge or a corner (26-connectivity), so a
mask gives the same nodes in the napari table, in ``lnq-napari measure``, in post-processing and in the
per-node detection figures. The band within a distance in mm of a mask (:func:`within_mm`) lives here
too: the metrics' lenience, the label states' rings and the mediastinum region use the one function.
"""

from __future__ import annotations

import numpy as np

STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # the 26-neighbourhood as a scipy.ndimage structure


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(labels int32, count)``: one id per 26-connected component of the non-zero voxels."""
    from scipy import ndimage

    binary = np.asarray(mask)
    binary = binary if binary.dtype == bool else binary > 0  # a bool mask as it is: no copy
    box = bounding_box(binary)
    if box is None:
        return np.zeros(binary.shape, np.int32), 0
    if all(b.stop - b.start == n for b, n in zip(box, binary.shape)):
        labels, count = ndimage.label(binary, structure=STRUCTURE)
        return labels.astype(np.int32, copy=False), int(count)
    # labelled inside the box only: the same ids (raster order is kept), a fraction of the time
    labels = np.zeros(binary.shape, np.int32)
    count = ndimage.label(binary[box], structure=STRUCTURE, output=labels[box])
    return labels, int(count)


def grown_by_one(mask: np.ndarray) -> np.ndarray:
    """``mask`` and every voxel touching it by a face, an edge or a corner: what a mask touches is what
    would join it into one node."""
    from scipy import ndimage

    return ndimage.binary_dilation(np.asarray(mask) > 0, structure=STRUCTURE)


def bounding_box(binary: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel, or None when there is none."""
    if binary.ndim == 0 or not binary.any():
        return None
    box = []
    for axis in range(binary.ndim):
        hit = np.flatnonzero(binary.any(axis=tuple(a for a in range(binary.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def label_nodes(labels: np.ndarray) -> np.ndarray:
    """One id per node, as int32: a node is a connected component of the voxels of one value (a lymph node
    is one blob, so a value on several blobs is a class or a brush colour used for several nodes). A value
    on one blob keeps it as its id. A mask (one value, 0/1 or 0/255, on several blobs) gives ids 1..n in
    raster order; in a map of several values each blob of a value after its first (raster order) gets a
    new id above the map's largest. Values that touch stay apart (:func:`touching_ids`). ``labels``
    itself when it is int32 and no value splits (no full-size copy)."""
    from scipy import ndimage

    array = np.asarray(labels)
    box = bounding_box(array != 0)
    if box is None:
        return np.zeros(array.shape, np.int32)
    inside = array[box]
    values = np.unique(inside[inside != 0])
    if values.size == 1:  # labelled in the box: the ids of the whole grid (raster order is kept)
        ids, count = label_components(inside)
        out = np.zeros(array.shape, np.int32)
        out[box] = ids if count != 1 else ids * np.int32(values[0])
        return out
    compact = np.searchsorted(values, inside).astype(np.int32) + 1  # values as 1..k in the box
    compact[inside == 0] = 0
    out = array if array.dtype == np.int32 else array.astype(np.int32)  # no copy while no value splits
    new_id = int(values[-1]) + 1
    for k, part in enumerate(ndimage.find_objects(compact), start=1):
        pieces, count = label_components(compact[part] == k)
        if count > 1:
            out = out.copy() if out is array else out
            extra = pieces > 1
            out[box][part][extra] = pieces[extra] - 2 + new_id
            new_id += count - 1
    return out


def touching_ids(ids: np.ndarray) -> list[tuple[int, ...]]:
    """The groups of node ids (two or more each) whose voxels touch: one node in the 0/1 mask a saved
    version holds (the LNQ format), however the label map ``ids`` kept them apart."""
    ids = np.asarray(ids)
    box = bounding_box(ids != 0)
    if box is None:
        return []
    ids = ids[box].astype(np.int64, copy=False)  # whole numbers of any dtype (bool, float 0/1)
    if ids.max() <= 1:  # a 0/1 mask: one id, nothing to join
        return []
    components, count = label_components(ids)
    inside = ids > 0
    pairs = np.unique(np.stack([components[inside], ids[inside]], axis=1), axis=0)
    ids_per_component = np.bincount(pairs[:, 0], minlength=count + 1)
    shared = np.flatnonzero(ids_per_component > 1)
    return sorted({tuple(int(i) for i in pairs[pairs[:, 0] == c, 1]) for c in shared})  # each group once


#: Above this HU a voxel is calcium (or bone cortex): a calcified node's foci, 500-1000 HU in the phantom.
CALCIUM_HU = 300.0


def too_bright(hu_values: np.ndarray, max_hu: float) -> bool:
    """Whether a component with these HU values is too bright to be a lymph node (bone, an enhanced
    vessel): calcium (above :data:`CALCIUM_HU`) is most of it, or its other voxels' mean **and** median
    lie above ``max_hu``. A calcified node passes: its calcium is left out, and most of it stays soft
    tissue even when the component takes in a piece of the enhanced vessel beside it."""
    values = np.asarray(hu_values)
    if not values.size:
        return False
    calcium = values > CALCIUM_HU
    if calcium.mean() > 0.5:
        return True
    soft = values[~calcium]
    return float(soft.mean()) > max_hu and float(np.median(soft)) > max_hu


def within_mm(mask: np.ndarray, spacing_zyx, distance_mm: float) -> np.ndarray:
    """bool: voxels within ``distance_mm`` (Euclidean, in mm) of ``mask``'s non-zero voxels (the mask
    itself for a distance <= 0); the distance transform runs on the mask's box grown by the distance only
    (the same result as on the whole grid)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    hit = np.nonzero(mask)
    if distance_mm <= 0 or not hit[0].size:
        return mask.copy()
    out = np.zeros(mask.shape, dtype=bool)
    pad = [int(np.ceil(distance_mm / s)) + 1 for s in spacing_zyx]
    box = tuple(slice(max(int(h.min()) - p, 0), int(h.max()) + p + 1) for h, p in zip(hit, pad))
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing_zyx) <= distance_mm
    return out
