"""Connected nodes: the one connectivity rule shared by the GUI, measurements, post-processing and metrics.

Two voxels belong to one node when they touch by a face, an edge or a corner (26-connectivity), so a
mask gives the same nodes in the napari table, in ``lnq-napari measure``, in post-processing and in the
per-node detection figures. The band within a distance in mm of a mask (:func:`within_mm`) lives here
too: the metrics' lenience, the label states' rings and the mediastinum region use the one function.
"""

from __future__ import annotations

import numpy as np

from lnq_napari.errors import LNQError

STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # the 26-neighbourhood as a scipy.ndimage structure


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(labels int32, count)``: one id per 26-connected component of the non-zero voxels."""
    return _components_in_box(mask)[:2]


def _components_in_box(mask: np.ndarray) -> tuple[np.ndarray, int, tuple[slice, ...] | None]:
    """:func:`label_components` and the box holding every component (None: none)."""
    from scipy import ndimage

    binary = np.asarray(mask)
    binary = binary if binary.dtype == bool else binary > 0  # a bool mask as it is: no copy
    box = bounding_box(binary)
    if box is None:
        return np.zeros(binary.shape, np.int32), 0, None
    if all(b.stop - b.start == n for b, n in zip(box, binary.shape)):
        labels, count = ndimage.label(binary, structure=STRUCTURE)
        return labels.astype(np.int32, copy=False), int(count), box
    # labelled inside the box only: the same ids (raster order is kept), a fraction of the time
    labels = np.zeros(binary.shape, np.int32)
    count = ndimage.label(binary[box], structure=STRUCTURE, output=labels[box])
    return labels, int(count), box


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


#: A map whose largest id is at most this gives each value's box in one pass (``ndimage.find_objects``,
#: a list as long as the largest id); other maps (floats, larger ids) have their values numbered 1..k first.
FIND_OBJECTS_MAX = 1 << 16


def node_numbers(
    labels: np.ndarray, max_nodes: int | None = None, grid=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(int32 map numbering the nodes 1..n, the id of each node as int64, ascending) of a label map.

    A node is a connected blob of one value; values that touch stay apart (:func:`touching_ids`). Each
    value is the id of its first blob (raster order) and each further blob of a value gets a new id above
    the largest (by value, then raster order): a 0/1 mask's blobs are 1..n, and a napari layer's ids are
    the table's whatever ids it still holds. Raster order is that of the voxels in LPS order when
    ``grid`` (the :class:`~lnq_napari.io.volume.Volume` ``labels`` lies on) is given, so a node's number
    does not depend on the file's axis order and direction (:func:`_in_lps_order`); stored order without.
    The map is ``labels`` itself when it is int32 holding 1..k and no value splits. LNQError when a map
    of several values holds more than ``max_nodes`` values or nodes (an image, not a label map), found
    before the whole map is labelled."""
    array = np.asarray(labels)
    numbers, ids, box = _stored_numbers(array, max_nodes)
    if grid is None or ids.size < 2 or numbers is array:  # the map itself: one blob per value, kept
        return numbers, ids
    return _in_lps_order(numbers, array, grid, box), ids


def _in_lps_order(numbers: np.ndarray, labels: np.ndarray, grid, box: tuple[slice, ...]) -> np.ndarray:
    """``numbers`` (blobs numbered in stored raster order by :func:`_stored_numbers`) renumbered as in LPS
    raster order: each blob ranked by its first voxel in LPS order (on the edge plane of its box that
    comes first in LPS z), each value's LPS-first blob keeping the value's number and its further blobs
    numbered above in (value, LPS order); written in place, in the boxes of the blobs whose number
    changes (no copy of the map in another axis order); ``box`` holds every blob. ``numbers`` itself when
    nothing changes."""
    from scipy import ndimage

    from lnq_napari.io.orientation import lps_axes, lps_index

    axes = lps_axes(grid)
    if axes is None or (axes[0] == [0, 1, 2] and min(axes[1]) > 0):  # stored in LPS order, or oblique
        return numbers
    axis = 2 - axes[0][2]  # the array axis along LPS z
    keys, values = [], []
    shift = [b.start for b in box]
    boxes = [tuple(slice(b.start + o, b.stop + o) for b, o in zip(found, shift))
             for found in ndimage.find_objects(numbers[box])]
    for k, box in enumerate(boxes, start=1):
        edge = box[axis].start if axes[1][2] > 0 else box[axis].stop - 1
        plane = list(box)
        plane[axis] = slice(edge, edge + 1)
        zyx = np.argwhere(numbers[tuple(plane)] == k) + np.array([b.start for b in plane])
        lps = lps_index(grid, zyx)
        first = np.lexsort(lps.T[::-1])[0]
        keys.append(lps[first])
        values.append(labels[tuple(zyx[first])])
    keys, values = np.array(keys), np.array(values)
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], values))
    primary = np.ones(order.size, bool)
    primary[1:] = values[order][1:] != values[order][:-1]
    lut = np.zeros(order.size + 1, np.int32)
    lut[order[primary] + 1] = np.arange(1, primary.sum() + 1)
    lut[order[~primary] + 1] = np.arange(primary.sum() + 1, order.size + 1)
    moved = np.flatnonzero(lut != np.arange(lut.size))
    for k in moved:  # inside each moved blob's box only; negative until all are done (boxes overlap)
        in_box = numbers[boxes[k - 1]]  # a view: written through
        in_box[in_box == k] = -lut[k]
    for k in moved:  # by a mask, not np.negative(out=, where=): in place on some strided views, some numpy
        in_box = numbers[boxes[k - 1]]  # builds negate wrongly (a voxel of a node read 0 or another's -id)
        negative = in_box < 0
        in_box[negative] = -in_box[negative]
    return numbers


def _stored_numbers(
    labels: np.ndarray, max_nodes: int | None,
) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...] | None]:
    """:func:`node_numbers` in stored raster order, and a box holding every node (None: none)."""
    from scipy import ndimage

    array = given = np.asarray(labels)
    top = array.max(initial=0)
    boxes = values = None
    if 1 < top <= FIND_OBJECTS_MAX and array.dtype.kind in "iu":  # each value's box in one pass
        found = enumerate(ndimage.find_objects(array), start=1)
        boxes = [(value, box) for value, box in found if box is not None]
        values = np.array([value for value, _ in boxes], np.int64)
    elif top > 1:
        values = np.unique(array[array != 0])
    if values is None or values.size == 1:  # one value v (or none): its blobs are v, v + 1, ...
        numbers, n, box = _components_in_box(array)
        first = 1 if values is None else int(values[0])
        return numbers, np.arange(first, first + n, dtype=np.int64), box
    if max_nodes is not None and values.size > max_nodes:
        raise _image(f"{values.size} distinct values")
    if boxes is None:  # the values numbered 1..k, then their boxes
        array = number_values(given, values)
        boxes = list(enumerate(ndimage.find_objects(array), start=1))
    numbered = array.dtype == np.int32 and boxes[-1][0] == len(boxes)  # each value is its number
    numbers = array if numbered else np.zeros(array.shape, np.int32)
    n = len(boxes)
    for number, (value, box) in enumerate(boxes, start=1):
        blob = array[box] == value
        pieces, count = label_components(blob)
        if numbered and count == 1:
            continue
        numbers = numbers.copy() if numbers is given else numbers  # the caller's map stays as it is
        table = np.concatenate([[0, number], np.arange(n + 1, n + count)]).astype(np.int32)
        in_box = numbers[box]  # a view: written through
        in_box[blob] = table[pieces[blob]]
        n += count - 1
        if max_nodes is not None and n > max_nodes:
            raise _image(f"more than {max_nodes} nodes (blobs of one value)")
    ids = values.astype(np.int64)
    union = tuple(slice(min(b[a].start for _, b in boxes), max(b[a].stop for _, b in boxes))
                  for a in range(array.ndim))
    return numbers, np.concatenate([ids, ids[-1] + np.arange(1, n - ids.size + 1)]), union


def number_values(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int32 map of ``labels`` with each of its non-zero ``values`` (sorted, all of them) as its number
    1..k, written a slab at a time (no full-size int64 index)."""
    out = np.zeros(labels.shape, np.int32)
    step = max(1, (1 << 20) // max(1, labels[0].size))
    for z in range(0, len(labels), step):
        out[z:z + step] = np.searchsorted(values, labels[z:z + step], side="right")
    return out


def _image(what: str) -> LNQError:
    return LNQError(f"the labels hold {what}: this looks like an image (a CT?), not a label map; give the "
                    "segmentation file")


def label_nodes(labels: np.ndarray, grid=None) -> np.ndarray:
    """The map of node ids (:func:`node_numbers`, in LPS order with ``grid``; each node's id in place of its
    number): int32, or int64 where an id does not fit."""
    numbers, ids = node_numbers(labels, grid=grid)
    if np.array_equal(ids, np.arange(1, ids.size + 1)):
        return numbers
    lut = np.concatenate([[0], ids])
    out = numbers if ids[-1] <= np.iinfo(np.int32).max else np.empty(numbers.shape, np.int64)
    for z in range(len(numbers)):  # a plane at a time: no full-size index copy
        out[z] = lut[numbers[z]]
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
