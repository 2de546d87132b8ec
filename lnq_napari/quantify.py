"""Node table: one row per lymph node with volume, RECIST-style axial axes, centroid and side.

Nodes are the connected blobs of each value of a label map (:func:`~lnq_napari.components.node_numbers`):
the components of a 0/1 mask (ids 1..n), the ids of a map with one id per node (as a napari Labels
layer holds them), and each node of a class map (values 1 and 2) or of a brush colour painted on several
nodes (each value the id of its first blob, a further blob a new id above the largest).

Axial axes (:func:`~lnq_napari.caliper.axial_axes`): the long axis and RECIST 1.1's short axis, the
longest caliper line at right angles to it, on the axial slices; within about one pixel of a digitised
ellipse's diameters (short axis within about 0.7 mm on 0.6-0.9 mm pixels), so the >= 10 mm flag
(:func:`reaches`) is not exact near 10 mm.

A node the CT's edge cuts (it reaches the first or last slice, or the in-plane border of a cropped CT:
:func:`cut_by_edge`, the one rule) is measured on what is visible: its axes and volume are lower bounds
and a "no" of the >= 10 mm flag may be wrong. Its row names the edges (``cut_by_edge``) and the tables
mark its figures with :data:`CUT_MARK`. Only a CT's grid tells: a label file alone may be stored cropped
to its nodes (3D Slicer's "crop to minimum extent", a DICOM SEG's frames), so without a CT no node is
flagged.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.caliper import TIE_MM, axial_axes
from lnq_napari.components import node_numbers, number_values
from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.dicom_tree import one_scan
from lnq_napari.io.geometry import GridWarning, align_to
from lnq_napari.io.labels import check_label_values
from lnq_napari.io.orientation import radiological
from lnq_napari.io.readers import read_labels, read_segment_masks
from lnq_napari.io.volume import Volume

#: Nodes whose centroid lies within this distance (mm) of the patient's midline in x are "midline" (the
#: body's centre with a CT, else the volume's centre).
MIDLINE_MM = 5.0
#: More distinct ids than this means the file is an image (a CT?), not a label map.
MAX_IDS = 1000
#: Short-axis threshold of a clinically enlarged (and LNQ2023-target) node.
ENLARGED_MM = 10.0


#: The patient's side each LPS axis runs from and to (x: right to left, y: anterior to posterior, z: inferior
#: to superior), and the order the sides of :func:`cut_by_edge` are named in.
LPS_SIDES = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))
SIDE_ORDER = ("superior", "inferior", "right", "left", "anterior", "posterior")
#: Beside a figure of a node cut by the image edge (``"8.4+"``): a lower bound.
CUT_MARK = "+"
#: The figures (:class:`NodeRow` fields) a cut by the image edge makes lower bounds: each table marks them
#: with :data:`CUT_MARK` (the node and compare tables, ``measure``, ``compare``).
CUT_FIGURES = ("short_axis_mm", "long_axis_mm", "volume_cm3")
#: The node table's cells a cut makes lower bounds, each with the :class:`NodeRow` field naming its edges
#: (the compare table's twin: :data:`~lnq_napari.followup.report.CUT_CELLS`), for :func:`marked_cell`.
NODE_CUT_CELLS = {figure: "cut_by_edge" for figure in CUT_FIGURES}
#: The words every note, tooltip and summary names a cut by (:func:`cut_by_edge`) in, and what it means.
CUT_WORDS = "cut by the image edge"
CUT_MEANS = "measured on what is visible"


def cut_by_edge(box: tuple[slice, ...], grid: Volume) -> tuple[str, ...]:
    """The sides of the image (the patient's: "superior", "inferior", "right", "left", "anterior",
    "posterior") where a node whose voxels span ``box`` ((z, y, x) slices of ``grid``'s array) reaches the
    grid's first or last voxel: the first or last slice, or the in-plane border (of a cropped CT); empty
    when the node lies whole inside. The one rule of the edge flag."""
    sides = set()
    direction = grid.direction_matrix  # column k: where index axis k (x, y, z) runs in LPS
    for axis, (span, n) in enumerate(zip(box, grid.shape)):
        column = direction[:, 2 - axis]  # array axis 0 is index axis z
        lps = int(np.argmax(np.abs(column)))
        first, last = LPS_SIDES[lps] if column[lps] > 0 else LPS_SIDES[lps][::-1]
        if span.start == 0:
            sides.add(first)
        if span.stop == n:
            sides.add(last)
    return tuple(side for side in SIDE_ORDER if side in sides)


def cut_text(sides: tuple[str, ...]) -> str:
    """What a cut by the image edge means, for a tooltip or a note ("" for a whole node)."""
    if not sides:
        return ""
    return (f"{CUT_WORDS} ({', '.join(sides)}): {CUT_MEANS}, so its axes and volume are lower bounds and a "
            "short axis under 10 mm may not be")


def marked(text: str, sides: tuple[str, ...]) -> str:
    """A figure's text with :data:`CUT_MARK` after it when the image edge cuts its node (``sides``)."""
    return f"{text}{CUT_MARK}" if sides else text


def marked_cell(row: object, key: str, text: str,
                cells: Mapping[str, str] = NODE_CUT_CELLS) -> tuple[str, str]:
    """A table cell's text with :data:`CUT_MARK` after it when the image edge makes its figure a lower bound
    (cut at the edges the :class:`NodeRow` or ChangeRow field ``cells`` names for ``key`` holds), and what
    that means (:func:`cut_text`, "" otherwise); an empty cell or one holding no such figure stays as is."""
    field_name = cells.get(key)
    sides = tuple(getattr(row, field_name)) if field_name and text != "" else ()
    return marked(text, sides), cut_text(sides)


def marked_cells(row: object, texts: dict[str, str], cells: Mapping[str, str] = NODE_CUT_CELLS) -> dict:
    """A table row's cell texts (``texts``, by key), each figure the image edge makes a lower bound marked
    (:func:`marked_cell`): the CLI's tables."""
    return {key: marked_cell(row, key, text, cells)[0] for key, text in texts.items()}


def may_be_enlarged(row: NodeRow) -> bool:
    """Whether a node may have a short axis of 10 mm or more: it has, or the image edge cuts it (measured on
    what is visible, its "no" may be wrong). The rule of the node table's "≥10 mm only"."""
    return bool(row.ge_10mm or row.cut_by_edge)


def reaches(length_mm: float, threshold_mm: float) -> bool:
    """Whether a length is at least a threshold, up to float rounding (:data:`TIE_MM`): the one rule of
    the >= 10 mm flag, of RECIST's thresholds and of the shown short axis (:func:`short_axis_text`)."""
    return bool(length_mm >= threshold_mm - TIE_MM)


def short_axis_text(length_mm: float) -> str:
    """A short axis in mm for display: rounded down to 0.1 mm (up only where :func:`reaches` says the next
    0.1 is reached), so "10.0" shows exactly when the >= 10 mm flag is set and "15.0" when a node reaches
    RECIST's target size (9.96 mm shows "9.9", not "10.0" beside "no"). Tables keep full precision."""
    tenths = math.floor(length_mm * 10.0)
    if reaches(length_mm, (tenths + 1) / 10.0):
        tenths += 1
    return f"{tenths / 10.0:.1f}"


@dataclass(frozen=True)
class NodeRow:
    """One node of the table. Positions are LPS mm; the axes are full lengths in mm."""

    id: int
    voxels: int
    volume_mm3: float
    volume_cm3: float
    centroid_mm: tuple[float, float, float]  # x, y, z (LPS)
    long_axis_mm: float
    short_axis_mm: float
    principal_axes_mm: tuple[float, float, float]  # descending
    ge_10mm: bool  # short axis >= ENLARGED_MM (:func:`reaches`)
    side: str  # "right", "left" or "midline"
    mean_hu: float | None = None  # with a CT only
    #: the image edges that cut the node (:func:`cut_by_edge`): its figures are lower bounds; () when whole
    #: or measured without a CT (not known)
    cut_by_edge: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The row as the CSV and the CLI table spell it (``centroid_x``, ``principal_axis_1_mm``, ...)."""
        row = {"id": self.id, "voxels": self.voxels, "volume_mm3": self.volume_mm3,
               "volume_cm3": self.volume_cm3}
        row.update(zip(("centroid_x", "centroid_y", "centroid_z"), self.centroid_mm, strict=True))
        row.update(long_axis_mm=self.long_axis_mm, short_axis_mm=self.short_axis_mm)
        for i, length in enumerate(self.principal_axes_mm, start=1):
            row[f"principal_axis_{i}_mm"] = length
        row.update(mean_hu=self.mean_hu, ge_10mm=self.ge_10mm, side=self.side,
                   cut_by_edge=" ".join(self.cut_by_edge))
        return row


CSV_COLUMNS = [
    "id", "voxels", "volume_mm3", "volume_cm3", "centroid_x", "centroid_y", "centroid_z",
    "long_axis_mm", "short_axis_mm", "principal_axis_1_mm", "principal_axis_2_mm",
    "principal_axis_3_mm", "mean_hu", "ge_10mm", "side", "cut_by_edge",
]


def node_ids(labels: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(int32 map numbering the nodes 1..n, the id of each node) of a label map:
    :func:`~lnq_napari.components.node_numbers` (each value the id of its first blob in raster order, each
    further blob of a value a new id above the largest: a 0/1 mask's blobs are 1..n), the raster order
    of the voxels in LPS order, so a node's id does not depend on the file's axis order. LNQError for an
    image: more than MAX_IDS values or nodes."""
    array = np.asarray(labels.array)
    check_label_values(array)
    return node_numbers(array, MAX_IDS, grid=labels)


def _compact(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``ids`` numbered 1..n as int32, the id each number stands for; ``ids`` itself when they are)."""
    found = np.unique(ids[ids != 0])
    if ids.dtype == np.int32 and np.array_equal(found, np.arange(1, found.size + 1)):
        return ids, found.astype(np.int64)
    return number_values(ids, found), found.astype(np.int64)


@one_scan()
def read_node_ids(path: str | Path, reference: Volume | None = None) -> Volume:
    """The nodes of a label file as one id per node: :func:`read_labels`, except that in a segmentation
    (3D Slicer, DICOM SEG) with several node segments each segment's connected parts get ids of their
    own, so touching nodes drawn as separate segments stay apart (the union would join them). One read of
    the file's folder (:func:`.dicom_tree.one_scan`): a damaged file beside a SEG is named once."""
    volume = read_labels(path, reference)
    keys = volume.meta.get("segment_keys") or []
    if len(keys) < 2:
        return volume
    ids = np.zeros(volume.shape, dtype=np.int32)
    overlap = np.zeros(volume.shape, dtype=bool)  # in more than one segment: each such voxel once
    for parts in _segment_ids(path, volume, reference):
        inside = parts > 0
        overlap |= inside & (ids > 0)
        ids[inside] = parts[inside]  # a voxel in two segments: the later one's
    shared = int(np.count_nonzero(overlap))
    meta = dict(volume.meta)
    if shared:  # measure_segments measures each segment's own nodes whole (not a str: no header field)
        meta[OVERLAPPING_SEGMENTS] = True
        warnings.warn(f"{Path(path).name}: {shared} voxels lie in more than one node segment; one node per "
                      "voxel holds each in the later segment only, so the earlier nodes show (and measure) "
                      "smaller: `lnq-napari measure` measures each segment whole", OverlapWarning,
                      stacklevel=2)
    return volume.with_array(ids, **meta)


def _segment_ids(path: str | Path, volume: Volume, reference: Volume | None) -> Iterator[np.ndarray]:
    """Each node segment of the segmentation ``path`` (``volume``: its :func:`read_labels` on
    ``reference``) as the int32 ids of its nodes on ``volume``'s grid, one segment at a time, numbered on
    from the segments before: the ids of :func:`read_node_ids`, the one place they are given."""
    count = 0
    for mask in read_segment_masks(path, volume.meta["segment_keys"], reference):
        parts, found = node_numbers(np.asarray(mask) > 0, grid=volume)  # in LPS order, as node_ids numbers
        parts[parts > 0] += count
        count += found.size
        yield parts


class OverlapWarning(UserWarning):
    """Node segments of a segmentation share voxels: a map of one id per voxel gives each to one node."""


#: ``Volume.meta`` key :func:`read_node_ids` sets when node segments overlap (3D Slicer layers, a DICOM
#: SEG's frames): its one id per voxel gives a shared voxel to one node only.
OVERLAPPING_SEGMENTS = "overlapping_segments"


def measure_segments(path: str | Path, ids: Volume, ct: Volume | None = None) -> list[NodeRow]:
    """One row per node of each node segment of the segmentation ``path``, each segment measured on its
    own mask (one at a time): a voxel that overlapping segments share counts in each of their nodes (the
    id map holds it in one). ``ids``: the file's :func:`read_node_ids` as read (before :func:`align_to`);
    the rows keep its ids, those napari's node layer and ``compare`` show, each segment numbered on the
    file's grid and then put on ``ct``'s grid as the id map is (a node lost there has no row)."""
    centre_x = _centre_x(ids if ct is None else ct, ct)  # the CT's work once, not once per segment
    rows: list[NodeRow] = []
    with warnings.catch_warnings():  # a grid warning: the id map's align_to has given it
        warnings.simplefilter("ignore", GridWarning)
        for parts in _segment_ids(path, ids, ids):
            numbered = ids.with_array(parts) if ct is None else align_to(ct, ids.with_array(parts))
            rows += _measure(numbered, *_compact(np.asarray(numbered.array)), ct, centre_x)
    return rows


def principal_axes(zyx: np.ndarray, volume: Volume) -> tuple[float, float, float]:
    """Full axis lengths (mm, descending) of the solid ellipsoid with the node's second moments.

    A solid ellipsoid of semi-axis ``a`` has variance ``a**2 / 5`` along it, so the length is
    ``2 * sqrt(5 * eigenvalue)``; each voxel counts as a uniform box (adds ``spacing**2 / 12``).
    """
    xyz = volume.index_to_physical(zyx)
    cov = np.cov(xyz, rowvar=False, bias=True) if len(xyz) > 1 else np.zeros((3, 3))
    d = volume.direction_matrix
    cov = cov + d @ np.diag(np.square(volume.spacing) / 12.0) @ d.T
    eigen = np.clip(np.linalg.eigvalsh(cov), 0.0, None)[::-1]
    return tuple(float(2.0 * math.sqrt(5.0 * e)) for e in eigen)


def midline_x(ct: Volume) -> float | None:
    """LPS x (mm) of the patient's midline: the median, over the body's rows (left to right, in LPS axis
    order), of each row's middle, on a coarse copy (:func:`~lnq_napari.anatomy.body_of`). A scan need
    not centre the patient (one lying off the table's middle, a cropped field of view), and the table
    the patient lies on, part of the body where they touch and centred on the scanner, holds few rows:
    the body's mean x leant towards it (a node 10 mm right of a phantom's midline, 65 mm off the
    table's centre, read "midline"). None when the CT shows no body."""
    from lnq_napari.anatomy import body_of
    from lnq_napari.io.orientation import lps_view

    ct = lps_view(ct)  # subsampled in LPS order: the same voxels whichever way the file stores them
    hu = np.asarray(ct.array)
    step = tuple(max(1, n // 64) for n in hu.shape)
    coarse = Volume(np.ascontiguousarray(hu[:: step[0], :: step[1], :: step[2]]),
                    tuple(float(s) * k for s, k in zip(ct.spacing, step[::-1])), ct.origin, ct.direction)
    body = body_of(coarse.array)
    rows = body.any(axis=2)
    if not rows.any():
        return None
    width = body.shape[2]
    middles = (np.argmax(body, axis=2) + (width - 1 - np.argmax(body[:, :, ::-1], axis=2))) / 2.0
    z, y = (float(v) for v in np.argwhere(rows).mean(axis=0))
    return float(coarse.index_to_physical(np.array([z, y, float(np.median(middles[rows]))]))[0, 0])


def _side(x: float, centre_x: float) -> str:
    if x < centre_x - MIDLINE_MM:
        return "right"  # LPS: +x points to the patient's left
    if x > centre_x + MIDLINE_MM:
        return "left"
    return "midline"


def _axial_planes(labels: Volume, ids: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``ids`` (on ``labels``' grid) with array axis 0 across axial planes, and the in-plane spacing: as
    stored when its slices are axial (the usual case, no copy), else put in LPS axis order."""
    if int(np.argmax(np.abs(labels.direction_matrix[:, 2]))) == 2:  # the slice index runs head to foot
        return ids, (float(labels.spacing[0]), float(labels.spacing[1]))
    axial = radiological(labels.with_array(ids))
    return np.asarray(axial.array), (float(axial.spacing[0]), float(axial.spacing[1]))


def measure_nodes(labels: Volume, ct: Volume | None = None) -> list[NodeRow]:
    """One row per node of a label map (:func:`node_ids`, see the module docstring); ``ct`` must share the
    labels' grid (without it no node is flagged as cut by the image edge: the labels' own grid may be
    cropped to the nodes)."""
    return _measure(labels, *node_ids(labels), ct)


def measure_ids(ids: Volume, ct: Volume | None = None) -> list[NodeRow]:
    """One row per id of ``ids``, each id one node however many pieces it has (``compare`` measures a
    node it found split as one, under one id); else as :func:`measure_nodes`."""
    return _measure(ids, *_compact(np.asarray(ids.array)), ct)


def _centre_x(grid: Volume, ct: Volume | None) -> float:
    """LPS x (mm) that sides are told from: the CT's midline (:func:`midline_x`), else ``grid``'s centre
    (a scan roughly centred on the patient)."""
    centre_x = None if ct is None else midline_x(ct)
    if centre_x is None:
        centre = (np.asarray(grid.shape, dtype=float) - 1.0) / 2.0
        centre_x = float(grid.index_to_physical(centre)[0, 0])
    return centre_x


def _measure(labels: Volume, compact: np.ndarray, ids: np.ndarray, ct: Volume | None,
             centre_x: float | None = None) -> list[NodeRow]:
    """The rows of the nodes ``compact`` numbers 1..n on ``labels``' grid, each with its id from ``ids``;
    ``centre_x``: :func:`_centre_x`'s (computed here when not given)."""
    from scipy import ndimage

    if ct is not None and not ct.same_grid(labels):
        raise LNQError("the CT and the labels are on different grids; resample the labels onto the CT grid")
    axial_ids, axial_xy = _axial_planes(labels, compact)
    axial_boxes = ndimage.find_objects(axial_ids)
    voxel_mm3 = float(np.prod(labels.spacing))
    if centre_x is None:
        centre_x = _centre_x(labels, ct)
    rows = []
    for k, box in enumerate(ndimage.find_objects(compact), start=1):
        if box is None:
            continue
        mask = compact[box] == k
        zyx = np.argwhere(mask) + np.array([s.start for s in box])
        centroid = tuple(float(v) for v in labels.index_to_physical(zyx.mean(axis=0))[0])
        long_axis, short_axis = axial_axes(axial_ids[axial_boxes[k - 1]] == k, axial_xy)
        mean_hu = None if ct is None else float(np.asarray(ct.array)[box][mask].astype(float).mean())
        rows.append(NodeRow(
            id=int(ids[k - 1]), voxels=int(len(zyx)), volume_mm3=len(zyx) * voxel_mm3,
            volume_cm3=len(zyx) * voxel_mm3 / 1000.0, centroid_mm=centroid,
            long_axis_mm=long_axis, short_axis_mm=short_axis, principal_axes_mm=principal_axes(zyx, labels),
            ge_10mm=reaches(short_axis, ENLARGED_MM), side=_side(centroid[0], centre_x), mean_hu=mean_hu,
            cut_by_edge=() if ct is None else cut_by_edge(box, ct),  # a label file may be cropped
        ))
    return rows


@dataclass(frozen=True)
class NodeSummary:
    """A node table in three figures: nodes, those with a short axis >= 10 mm, their total volume; and
    how many the image edge cuts."""

    n_nodes: int
    n_ge_10mm: int
    total_volume_cm3: float
    n_cut: int = 0  # nodes cut by the image edge (:func:`cut_by_edge`)

    def __repr__(self) -> str:  # a notebook cell's last line: its text (total_volume_cm3=38.220000000000006)
        return f"NodeSummary({self.text()})"

    def cut_words(self) -> str:
        """``"1 cut by the image edge"``, "" when none is: the words each summary of nodes counts them in."""
        return f"{self.n_cut} {CUT_WORDS}" if self.n_cut else ""

    def text(self) -> str:
        """``"8 nodes, 8 with short axis >= 10 mm, total volume 40.78 cm3"``, and where the image edge
        cuts nodes ``"; 1 cut by the image edge (+: measured on what is visible, a lower bound)"``."""
        cut = "" if not self.n_cut else f"; {self.cut_words()} ({CUT_MARK}: {CUT_MEANS}, a lower bound)"
        return (f"{self.n_nodes} node{'s' if self.n_nodes != 1 else ''}, {self.n_ge_10mm} with short axis "
                f">= 10 mm, total volume {self.total_volume_cm3:.2f} cm3{cut}")


def summarize_nodes(rows: list[NodeRow], union: Volume | None = None) -> NodeSummary:
    """The :class:`NodeSummary` of a node table. ``union``: a map of its nodes holding each voxel once,
    for rows that share voxels (overlapping segments, each node measured whole): the total volume is then
    the node tissue, each shared voxel once, not the rows' sum."""
    total = sum(r.volume_cm3 for r in rows) if union is None else \
        np.count_nonzero(union.array) * float(np.prod(union.spacing)) / 1000.0
    return NodeSummary(len(rows), sum(1 for r in rows if r.ge_10mm), float(total),
                       sum(1 for r in rows if r.cut_by_edge))


def write_csv(rows: list[NodeRow], path: str | Path, mean_hu: bool | None = None) -> Path:
    """Write the node table atomically (principal axes as three columns; a ``mean_hu`` column when
    ``mean_hu``, by default when a row has a mean HU); returns the path."""
    if mean_hu is None:
        mean_hu = any(r.mean_hu is not None for r in rows)
    columns = [c for c in CSV_COLUMNS if c != "mean_hu" or mean_hu]
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.to_dict() for r in rows)
    return path
