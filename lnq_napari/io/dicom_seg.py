"""DICOM SEG: read a segmentation onto the grid of the CT series it references, write a node mask as a
BINARY DICOM SEG that references its source CT series (3D Slicer, OHIF and PACS open it).

Reading places each SEG frame on the CT slice at its position (no resampling when the SEG was drawn on
that CT, as SEGs normally are; other grids are resampled by nearest neighbour with a GridWarning). The CT
comes from the caller or is found beside the SEG by its Series Instance UID (see :func:`find_ct_series`);
:mod:`lnq_napari.io.readers` ties the two together; what the folders of a DICOM tree hold is
:mod:`.dicom_tree`'s. Everything broken ends in a one-line LNQError.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.heard import collected_warnings
from lnq_napari.io.atomic import atomic_write, file_above
from lnq_napari.io.dicom_headers import (
    SEG_SOP_CLASSES,
    read_header,
    series_slices,
)
from lnq_napari.io.dicom_stack import ITK_OFF_PERPENDICULAR, MAX_ROUNDED_COMPONENT, ON_GRID_AXES, orthonormal
from lnq_napari.io.dicom_tree import (
    SAMPLED_FILES,
    candidate_files,
    candidate_folders,
    ct_folders_below,
    dicom_folders,
    is_dicom_path,
    segs_among_slices,
    series_in,
)
from lnq_napari.io.geometry import GridWarning, align_to, reordered_onto
from lnq_napari.io.layout import CaseFiles, cd_root, folder_case, is_image_file
from lnq_napari.io.node_names import LYMPH_NODE_CODES, named_like_node
from lnq_napari.io.provenance import ALGORITHM_NAME, PREDICTION_CONTENT
from lnq_napari.io.volume import Volume

MAX_PIXELS = 2**31  # frames x rows x columns: as file_checks.MAX_VOXELS, anything above is not one CT's SEG
POSITION_TOL = 0.01  # voxel fraction: a frame this close to a CT slice lies on it
SERIES_NUMBER = 9100
LABELS_CONTENT = "LYMPH_NODES"  # the Content Label of a SEG of labels (a reviewed Save, workspace export)
LO_MAX = 64  # characters of a DICOM LO value (Algorithm Version, Series Description)


@dataclass(frozen=True)
class SegSegment:
    """One segment of a DICOM SEG: its number, label, whether it is coded or named a lymph node, the
    lnq-napari model version that made it (None: drawn by hand, or by another program) and whether a
    reader edited the model's output (SEMIAUTOMATIC)."""

    number: int
    label: str
    node: bool
    model_version: str | None = None
    edited: bool = False


@dataclass
class SegFile:
    """A parsed DICOM SEG: what it references, its segments and each frame's plane."""

    path: Path
    dataset: object  # pydicom Dataset (pixels decoded on demand)
    segments: list[SegSegment]
    seg_type: str  # BINARY, FRACTIONAL or LABELMAP
    referenced_series: tuple[str, ...]
    frame_of_reference: str
    rows: int
    columns: int
    orientation: np.ndarray  # (6,) row then column direction cosines (LPS)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    slice_spacing: float | None
    positions: np.ndarray  # (frames, 3) ImagePositionPatient of each frame
    frame_segments: np.ndarray  # (frames,) segment number of each frame (0 for a LABELMAP)

    @property
    def name(self) -> str:
        return self.path.name


# ------------------------------------------------------------------ finding (a tree's folders: .dicom_tree)
def dicom_cases(root: Path, labels: Callable[[Path], bool] = lambda seg: True,
                rank: Callable[[SegFile], tuple[int, str]] = lambda seg: (0, "")) -> list[CaseFiles]:
    """The CT series at or below ``root`` (a series folder, or a TCIA download:
    :func:`.dicom_tree.ct_series_inputs`'s case ids) as cases, each with the DICOM SEG below ``root`` that
    references it as its labels (``seg``: a SEG series folder's, else one among the case's own slices; its
    series looked for among the first files of each folder, then, for a SEG of none of those, among all of
    them): of several, the one ``rank`` puts first (``(order,
    why)``; ties: :func:`.dicom_tree.dicom_folders`' order). A SEG of no CT series here, or each other SEG
    of one, is named in a warning and left out; a SEG that ``labels`` says is none (a prediction: the
    caller names it) is left out before. Empty when there is no DICOM."""
    series, seg_files = dicom_folders(root, folder_case(root))
    case_of = {uid: case for case, folder in series for uid in series_in(folder, every_file=False)}
    claims: dict[str, list[Path]] = {}
    parsed: dict[Path, SegFile] = {}
    drawn: dict[Path, str] = {}  # SEG -> the series of its case it references
    every_file = False
    # SEG series folders first, then SEGs among the slices of a series folder none of those labels (a study
    # exported into one folder, a SEG saved into its CT's folder)
    among = (path for case, folder in series if case not in claims for path in segs_among_slices(folder))
    for path in filter(labels, itertools.chain(seg_files, among)):
        parsed[path] = read_seg(path)
        case = case_of.get(uid := _referenced_uid(parsed[path], case_of))
        if case is None and not every_file:  # a series whose files sort after another's in its folder
            every_file = True
            for other, folder in series:
                for found in series_in(folder, every_file=True):
                    case_of.setdefault(found, other)
            case = case_of.get(uid := _referenced_uid(parsed[path], case_of))
        if case is None:
            warnings.warn(f"{path} is left out (it references no CT series found here)", UserWarning,
                          stacklevel=2)
        else:
            claims.setdefault(case, []).append(path)
            drawn[path] = str(uid)
    segs: dict[str, Path] = {}
    folders = dict(series)
    for case, paths in claims.items():
        ranks = {path: rank(parsed[path]) for path in paths} if len(paths) > 1 else {}
        segs[case] = kept = min(paths, key=lambda path: ranks.get(path, (0,))[0])
        for path in (p for p in paths if p != kept):
            if drawn[path] != drawn[kept]:  # moving the kept SEG away would not make this one label its CT
                warnings.warn(f"{path} is left out: it labels another series ({drawn[path]}) of "
                              f"{folders[case]}, whose case {case} is read with {kept} (series "
                              f"{drawn[kept]}); give each series a folder of its own", UserWarning,
                              stacklevel=2)
                continue
            why = f"{ranks[kept][1]}, before {ranks[path][1]}" if ranks[kept][0] < ranks[path][0] \
                else "found first"
            warnings.warn(f"{path} is left out: a second SEG of {case}, whose labels are {kept} ({why}); "
                          "move that SEG away to use this one", UserWarning, stacklevel=2)
    return [CaseFiles(case, _drawn_on(folder, parsed[segs[case]]).resolve(), seg=segs[case].resolve())
            if case in segs else CaseFiles(case, folder.resolve()) for case, folder in series]


def _referenced_uid(seg: SegFile, case_of: dict[str, str]) -> str | None:
    """The first series ``seg`` references that is a case's (``case_of``: series UID -> case), or None."""
    return next((uid for uid in seg.referenced_series if uid in case_of), None)


#: (0008,1155) Referenced SOP Instance UID, as a file writes its tag: little-endian (True) or big-endian.
_INSTANCE_TAG = {True: b"\x08\x00\x55\x11", False: b"\x00\x08\x11\x55"}


def _referenced_instances(seg: SegFile) -> int:
    """How many images of its CT series ``seg`` lists (Referenced Series Sequence; 0 when it lists none),
    counted in each item's sequence as read, not parsed (a SEG of 600 slices lists 600)."""
    count = 0
    little = seg.dataset.is_little_endian is not False  # a retired big-endian SEG writes its tags swapped
    for item in seg.dataset.get("ReferencedSeriesSequence") or []:
        if "ReferencedInstanceSequence" not in item:
            continue
        raw = item.get_item("ReferencedInstanceSequence").value
        count += raw.count(_INSTANCE_TAG[little]) if isinstance(raw, bytes) else len(raw or [])
    return count


def _drawn_on(folder: Path, seg: SegFile) -> Path:
    """The CT of a case whose labels are ``seg``: ``folder``, or where the series a read of it chooses
    (:func:`_series_read`, from headers alone) is another than the SEG's (two reconstructions), a file of
    the SEG's series, which reads as that series. The folder where no series can be chosen (two patients'
    series: the read's refusal stands) or the choice is the SEG's series (a scout beside it: the folder's
    checks, a series split over folders, stand); refusals made after the choice (a series cut short, a
    slice without a header) then come from the read of the SEG's series."""
    import SimpleITK as sitk

    if len(os.listdir(folder)) < 2 * _referenced_instances(seg):  # most of its files are the SEG's series'
        return folder  # the largest, which the folder reads (no file read, no GDCM scan)
    own = str(getattr(seg.dataset, "SeriesInstanceUID", ""))  # the SEG filed among the slices: no CT
    present = [u for u in series_in(folder, every_file=True) if u != own]
    uid = next((u for u in seg.referenced_series if u in present), None)
    if len(present) < 2 or uid is None or _series_read(folder) in (uid, None):
        return folder
    try:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    except RuntimeError:  # the series reader says what is wrong with it
        return folder
    return Path(files[0]) if files else folder


def find_ct_series(seg: SegFile) -> tuple[Path, str]:
    """``(folder, series UID)`` of the CT series ``seg`` references, looked for in the SEG's folder and
    the folders beside it, then in the series folders below its folder (a SEG loose above them:
    :func:`.dicom_tree.loose_segs`), by the first files of each folder, then by all of them (a folder of
    two reconstructions, the SEG's sorted last); LNQError when it is not there."""
    if not seg.referenced_series:
        raise LNQError(f"{seg.name} does not say which CT series it was drawn on (no Referenced Series "
                       "Sequence); pass the CT with it (read_labels(seg, reference=read_volume(ct)))")
    home = seg.path.parent
    whole = {home}  # the folders whose every file was read
    for every_file in (False, True):  # the first files of each folder, then all (another series first)
        for folder in itertools.chain(candidate_folders(seg.path), ct_folders_below(home)):
            if every_file and folder in whole:
                continue
            present = series_in(folder, every_file=every_file or folder == home)
            for uid in seg.referenced_series:
                if uid in present:
                    return folder, uid
            if not every_file and len(candidate_files(folder)) <= SAMPLED_FILES:
                whole.add(folder)
    raise LNQError(f"{seg.name} is a DICOM SEG of CT series {seg.referenced_series[0]}, which is not in "
                   f"{home.name}/, the folders beside it or the series folders below it; keep the SEG series "
                   "folder next to its CT series folder (as TCIA downloads are laid out) or pass the CT with "
                   "it (measure --ct, read_labels(seg, reference=read_volume(ct)))")


# ------------------------------------------------------------------ parsing
def _first(item, keyword: str):
    """The first item of sequence ``keyword`` in ``item`` (None when absent or empty)."""
    seq = item.get(keyword) if item is not None else None
    return seq[0] if seq else None


def _frame_item(shared, frame, keyword: str):
    """A functional group item of one frame: its own, else the shared one (None when neither has it)."""
    return _first(frame, keyword) or _first(shared, keyword)


def _floats(value, count: int, what: str, name: str) -> np.ndarray:
    """``count`` finite numbers from a DICOM value, else a one-line LNQError naming ``what``."""
    try:
        array = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise LNQError(f"{name}: {what} is not {count} numbers; the SEG is damaged: re-export it") from exc
    if array.size != count or not np.all(np.isfinite(array)):
        raise LNQError(f"{name}: {what} is not {count} finite numbers; the SEG is damaged: re-export it")
    return array


def _segments(ds, name: str) -> list[SegSegment]:
    out = []
    for item in ds.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber", 0) or 0)
        label = str(item.get("SegmentLabel", "") or f"Segment {number}")
        codes = item.get("SegmentedPropertyTypeCodeSequence") or []
        coded = any((str(c.get("CodeValue", "")), str(c.get("CodingSchemeDesignator", "")))
                    in LYMPH_NODE_CODES for c in codes)
        out.append(SegSegment(number, label, coded or named_like_node(label),
                              _our_model_version(item),
                              str(item.get("SegmentAlgorithmType", "")).upper() == "SEMIAUTOMATIC"))
    if not out:
        raise LNQError(f"{name} is a DICOM SEG without segments (empty Segment Sequence); re-export it")
    return out


def read_seg(path: str | Path) -> SegFile:
    """Parse a DICOM SEG (header and frame geometry; pixels stay encoded). LNQError when it is not a
    SEG of a CT in patient coordinates or is damaged."""
    path = Path(path)
    name = path.name
    try:
        ds = read_header(path)  # with its pixels; a SEG saved without the preamble too
        if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
            raise LNQError(f"{name} is not a DICOM SEG (SOP class {ds.get('SOPClassUID', 'missing')})")
        return _parse(path, ds)
    except LNQError:
        raise
    except Exception as exc:  # InvalidDicomError, a missing tag, a bad value ...
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise LNQError(f"cannot read {name} as a DICOM SEG ({reason}); the file is damaged or truncated: "
                       "re-export or re-download it") from exc


def _parse(path: Path, ds) -> SegFile:
    name = path.name
    seg_type = str(ds.get("SegmentationType", "")).upper()
    if seg_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise LNQError(f"{name}: segmentation type {seg_type or 'missing'!r} is not BINARY, FRACTIONAL or "
                       "LABELMAP; the SEG is damaged: re-export it")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or columns <= 0 or frames <= 0 or rows * columns * frames > MAX_PIXELS:
        raise LNQError(f"{name} claims {frames} frames of {rows} x {columns} pixels; not a SEG of one CT: "
                       "the header is damaged, re-export or re-download it")
    if "PixelData" not in ds:
        raise LNQError(f"{name} has no pixel data; the SEG is damaged: re-export it")
    meta = getattr(ds, "file_meta", None)
    transfer = meta.get("TransferSyntaxUID") if meta is not None else None
    if transfer is None or not transfer.is_compressed:
        bits = int(ds.get("BitsAllocated", 1) or 1)
        needed = (rows * columns * frames * bits + 7) // 8
        if len(ds.PixelData) < needed:
            raise LNQError(f"{name} holds {len(ds.PixelData)} bytes of pixel data but its header needs "
                           f"{needed}; the file is truncated: re-export or re-download it")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames:
        raise LNQError(f"{name} describes {len(per_frame)} of its {frames} frames; the SEG is damaged: "
                       "re-export it")
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    orientation = measures = None
    positions = np.empty((frames, 3))
    segment_of = np.zeros(frames, dtype=int)
    for i, frame in enumerate(per_frame):
        plane = _frame_item(shared, frame, "PlaneOrientationSequence")
        pixel = _frame_item(shared, frame, "PixelMeasuresSequence")
        position = _frame_item(None, frame, "PlanePositionSequence")
        if plane is None or pixel is None or position is None or "ImagePositionPatient" not in position:
            raise LNQError(f"{name}: frame {i + 1} has no position, orientation or pixel spacing in patient "
                           "coordinates; lnq-napari reads SEGs of CT volumes: re-export it from the CT")
        this = _floats(plane.get("ImageOrientationPatient"), 6, "Image Orientation (Patient)", name)
        if orientation is None:
            orientation, measures = this, pixel
        elif not np.allclose(this, orientation, atol=ON_GRID_AXES):
            raise LNQError(f"{name}: its frames lie in different orientations; lnq-napari reads SEGs of "
                           "one CT volume")
        positions[i] = _floats(position.ImagePositionPatient, 3, "Image Position (Patient)", name)
        if seg_type != "LABELMAP":
            ident = _frame_item(shared, frame, "SegmentIdentificationSequence")
            if ident is None or "ReferencedSegmentNumber" not in ident:
                raise LNQError(f"{name}: frame {i + 1} does not say which segment it belongs to; the SEG "
                               "is damaged: re-export it")
            segment_of[i] = int(ident.ReferencedSegmentNumber)
    spacing = _floats(measures.get("PixelSpacing"), 2, "Pixel Spacing", name)
    if np.any(spacing <= 0):
        raise LNQError(f"{name}: pixel spacing {spacing.tolist()} is not positive; re-export the SEG")
    between = measures.get("SpacingBetweenSlices")
    slice_spacing = float(between) if between not in (None, "") and float(between) > 0 else None
    referenced = _referenced(ds)
    frame_of_reference = str(ds.get("FrameOfReferenceUID", ""))
    nearest, off = orthonormal(orientation)
    if off <= MAX_ROUNDED_COMPONENT:  # written to 2 decimals, as its CT's: on the axes its CT is read on
        orientation = nearest
    return SegFile(path, ds, _segments(ds, name), seg_type, referenced, frame_of_reference, rows,
                   columns, orientation, (float(spacing[0]), float(spacing[1])), slice_spacing,
                   positions, segment_of)


def _referenced(ds) -> tuple[str, ...]:
    """The Series Instance UIDs a SEG dataset references."""
    return tuple(str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence") or []
                 if "SeriesInstanceUID" in s)


def referenced_series(path: str | Path) -> tuple[str, ...]:
    """The CT series a DICOM SEG file references, from its header alone (its frames are not read)."""
    try:
        return _referenced(read_header(path, stop_before_pixels=True))
    except Exception:  # read in full later, and refused there in one line when damaged
        return ()


# ------------------------------------------------------------------ choosing and placing
def choose_segments(seg: SegFile, segment: str | int | None) -> list[SegSegment]:
    """The segments to read: ``segment`` by label or number; by default those coded or named as a lymph
    node, else all (with a warning when there are several), as for a 3D Slicer segmentation."""
    listing = ", ".join(f"'{s.label}' (number {s.number})" for s in seg.segments)
    if segment is None:
        nodes = [s for s in seg.segments if s.node]
        if nodes:
            return nodes
        if len(seg.segments) > 1:
            warnings.warn(f"{seg.name}: no segment is coded or named as a lymph node; using all "
                          f"{len(seg.segments)} segments ({listing}); name the node segments 'lymph node' "
                          "(3D Slicer), or pass segment= to read_labels to choose one",
                          UserWarning, stacklevel=4)
        return list(seg.segments)
    if isinstance(segment, str):
        chosen = [s for s in seg.segments if s.label.lower() == segment.strip().lower()]
    elif isinstance(segment, (int, np.integer)) and not isinstance(segment, bool):
        chosen = [s for s in seg.segments if s.number == int(segment)]
    else:
        raise LNQError(f"segment must be a segment label or number, not {segment!r}")
    if not chosen:
        raise LNQError(f"{seg.name} has no segment {segment!r}; its segments are: {listing}")
    return chosen


def check_reference(seg: SegFile, ct: Volume) -> None:
    """LNQError when ``ct`` (read from DICOM: its series and frame of reference UIDs in ``meta``) is not
    the series ``seg`` was drawn on. A CT without DICOM UIDs is matched by geometry only."""
    series = ct.meta.get("dicom_series_uid")
    if series and seg.referenced_series and series not in seg.referenced_series:
        raise LNQError(f"{seg.name} was drawn on CT series {seg.referenced_series[0]}, but the CT given is "
                       f"series {series}; open the CT series the SEG references")
    frame = ct.meta.get("dicom_frame_of_reference")
    if frame and seg.frame_of_reference and frame != seg.frame_of_reference:
        raise LNQError(f"{seg.name} lies in frame of reference {seg.frame_of_reference}, the CT in "
                       f"{frame}: they are not of one acquisition; open the CT series the SEG references")


def _frame_masks(seg: SegFile, chosen: list[SegSegment]):
    """``(frame index, uint8 0/1 mask)`` of each frame holding a chosen segment."""
    from pydicom.pixels import iter_pixels

    numbers = np.asarray([s.number for s in chosen])
    if seg.seg_type == "LABELMAP":
        indices = list(range(len(seg.positions)))
    else:
        indices = [int(i) for i in np.flatnonzero(np.isin(seg.frame_segments, numbers))]
    if not indices:
        return
    ds = seg.dataset
    half = (int(ds.get("MaximumFractionalValue", 255) or 255) + 1) // 2
    try:
        for index, frame in zip(indices, iter_pixels(ds, indices=indices)):
            if seg.seg_type == "LABELMAP":
                yield index, np.isin(frame, numbers).astype(np.uint8)
            elif seg.seg_type == "FRACTIONAL":
                yield index, (frame >= half).astype(np.uint8)
            else:
                yield index, (frame != 0).astype(np.uint8)
    except LNQError:
        raise
    except Exception as exc:  # a decoder missing or failing, pixel data cut short
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise LNQError(f"cannot decode the frames of {seg.name} ({reason}); the file is damaged or uses an "
                       "unsupported compression: re-export it uncompressed") from exc


def _same_axes(orientation: np.ndarray, direction: np.ndarray) -> bool:
    """Whether six orientation values (rows, columns) are a 3 x 3 direction's first two columns, within
    :data:`ON_GRID_AXES`."""
    return bool(np.allclose(orientation[:3], direction[:, 0], atol=ON_GRID_AXES)
                and np.allclose(orientation[3:], direction[:, 1], atol=ON_GRID_AXES))


def _on_grid_indices(seg: SegFile, grid: Volume) -> np.ndarray | None:
    """(frames, 3) integer (z, y, x) CT index of each frame's first pixel when every frame lies on a CT
    slice with the CT's in-plane axes and spacing; None when the SEG needs resampling."""
    same_axes = _same_axes(seg.orientation, grid.direction_matrix)
    same_spacing = np.allclose([seg.pixel_spacing[1], seg.pixel_spacing[0]], grid.spacing[:2],
                               rtol=1e-5, atol=1e-4)
    if not (same_axes and same_spacing):
        return None
    index = grid.physical_to_index(seg.positions)
    if np.abs(index - np.round(index)).max(initial=0.0) > POSITION_TOL:
        return None
    return np.round(index).astype(np.int64)


def _place(seg: SegFile, chosen: list[SegSegment], grid: Volume, index: np.ndarray) -> np.ndarray:
    """The chosen segments' frames put straight onto ``grid`` at their slices (no resampling)."""
    mask = np.zeros(grid.shape, dtype=np.uint8)
    lost = 0
    for i, frame in _frame_masks(seg, chosen):
        z, y, x = (int(v) for v in index[i])
        ys, xs = slice(max(y, 0), min(y + seg.rows, grid.shape[1])), slice(max(x, 0), min(x + seg.columns,
                                                                                         grid.shape[2]))
        total = int(frame.sum())
        if 0 <= z < grid.shape[0] and ys.start < ys.stop and xs.start < xs.stop:
            part = frame[ys.start - y: ys.stop - y, xs.start - x: xs.stop - x]
            mask[z, ys, xs] |= part
            total -= int(part.sum())
        lost += total
    if lost:
        warnings.warn(f"{seg.name}: {lost} segmented pixels lie outside the CT and were dropped",
                      GridWarning, stacklevel=4)
    return mask


def _own_volume(seg: SegFile, chosen: list[SegSegment], grid: Volume) -> Volume:
    """The chosen segments on the SEG's own regular grid (frames stacked along the slice normal)."""
    row_dir, col_dir = seg.orientation[:3], seg.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    off = ITK_OFF_PERPENDICULAR
    if abs(np.linalg.norm(normal) - 1.0) > off or abs(float(row_dir @ col_dir)) > off:
        raise LNQError(f"{seg.name}: its image orientation is not two perpendicular unit vectors; the SEG is "
                       "damaged: re-export it")
    depth = seg.positions @ normal
    inplane = seg.positions - depth[:, None] * normal
    if np.abs(inplane - inplane[0]).max(initial=0.0) > 1e-2:
        raise LNQError(f"{seg.name}: its frames are shifted within their planes; lnq-napari reads SEGs of "
                       "one CT volume")
    levels = np.unique(np.round(depth, 4))
    gaps = np.diff(levels)
    step = seg.slice_spacing or (float(gaps.min()) if gaps.size else float(grid.spacing[2]))
    slot = (depth - levels[0]) / step
    if np.abs(slot - np.round(slot)).max(initial=0.0) > POSITION_TOL * 10:
        raise LNQError(f"{seg.name}: its frames are not evenly spaced slices ({step:.4g} mm apart); "
                       "lnq-napari reads SEGs of one CT volume")
    slot = np.round(slot).astype(int)
    if (slot.max(initial=0) + 1) * seg.rows * seg.columns > max(8 * int(np.prod(grid.shape)), 2**24):
        raise LNQError(f"{seg.name}: its frames span {slot.max() + 1} slices of {seg.rows} x {seg.columns} "
                       "pixels, far more than the CT; the SEG is damaged or belongs to another scan")
    array = np.zeros((int(slot.max(initial=0)) + 1, seg.rows, seg.columns), dtype=np.uint8)
    for i, frame in _frame_masks(seg, chosen):
        array[slot[i]] |= frame
    first = int(np.argmin(depth))
    origin = seg.positions[first] - (depth[first] - levels[0]) * normal
    direction = np.stack([row_dir, col_dir, normal], axis=1).ravel()
    return Volume(array, (seg.pixel_spacing[1], seg.pixel_spacing[0], step), tuple(origin), tuple(direction))


def seg_mask(seg: SegFile, grid: Volume, segment: str | int | None = None,
             ) -> tuple[np.ndarray, list[SegSegment]]:
    """uint8 {0, 1} mask of the chosen segments on ``grid`` (the CT's), and those segments. Frames on
    the CT's slices are placed as they are; a SEG on another grid is resampled (nearest neighbour,
    GridWarning), and LNQError when it does not overlap the CT."""
    chosen = choose_segments(seg, segment)
    index = _on_grid_indices(seg, grid)
    if index is not None:
        return _place(seg, chosen, grid, index), chosen
    own = _own_volume(seg, chosen, grid)
    return align_to(grid, own, what=f"DICOM SEG {seg.name}").array, chosen


def seg_meta(seg: SegFile, chosen: list[SegSegment]) -> dict:
    """What a read SEG keeps in ``Volume.meta`` (``segment_keys``: each chosen segment's number, which
    chooses it alone; ``model_version``: the lnq-napari model that made them, when one did)."""
    made_by = {s.model_version for s in chosen}
    return {"selected_segments": [s.label for s in chosen], "segment_keys": [s.number for s in chosen],
            "dicom_seg": str(seg.path),
            "dicom_referenced_series_uid": seg.referenced_series[0] if seg.referenced_series else "",
            **({"model_version": made_by.pop(), "model_edited": any(s.edited for s in chosen)}
               if len(made_by) == 1 and None not in made_by else {})}


def _our_model_version(item) -> str | None:
    """The model version of a segment lnq-napari's model made (AUTOMATIC or SEMIAUTOMATIC, algorithm
    :data:`ALGORITHM_NAME`, its full version in the parameters), else None."""
    if str(item.get("SegmentAlgorithmType", "")).upper() not in ("AUTOMATIC", "SEMIAUTOMATIC"):
        return None
    for algorithm in item.get("SegmentationAlgorithmIdentificationSequence") or []:
        if str(algorithm.get("AlgorithmName", "")) != ALGORITHM_NAME:
            continue
        params = dict(p.partition("=")[::2] for p in str(algorithm.get("AlgorithmParameters", "")).split(","))
        return params.get("model_version") or str(algorithm.get("AlgorithmVersion", "")) or None
    return None


# ------------------------------------------------------------------ writing
def _ct_datasets(ct: Path, series_uid: str | None) -> list:
    """Headers (no pixels) of the CT series in ``ct`` (a folder or one of its files; a CD's root or its
    DICOMDIR: the series folders below it): the series with ``series_uid`` when given, else the one series
    there, else the series a read of ``ct`` gives (:func:`_chosen_series`: the file's series, or the
    folder's choice, whose LNQError stands: two patients' series are refused, not one taken)."""
    ct = cd_root(ct)
    folder = ct if ct.is_dir() else ct.parent
    by_series = _series_headers(folder)
    below = not by_series and ct.is_dir()  # a CD or a download: its series folders
    if below:
        for _, series_folder in dicom_folders(folder, folder.name)[0]:
            for uid, headers in _series_headers(series_folder).items():
                by_series.setdefault(uid, headers)
    if not by_series:
        raise LNQError(f"{ct} holds no DICOM CT slices; a DICOM SEG is written for the DICOM CT series it "
                       "was drawn on: point to that series' folder")
    if series_uid and series_uid in by_series:
        return by_series[series_uid]
    if series_uid:
        raise LNQError(f"the labels were drawn on CT series {series_uid}, which is not in {folder}; "
                       "point to that series' folder")
    if len(by_series) == 1:
        return next(iter(by_series.values()))
    if below:  # which one, of a download of several patients, cannot be told
        raise LNQError(f"{folder} holds {len(by_series)} DICOM CT series in the folders below it, and the "
                       "labels do not say which they were drawn on; point to that series' folder")
    uid = _chosen_series(ct)  # the read's choice, the one rule (a soft reconstruction, no reformat or scout)
    if uid not in by_series:
        raise LNQError(f"{ct} reads as DICOM series {uid}, which holds no CT slices placed in the patient; "
                       "point to the folder of the CT series the labels were drawn on")
    return by_series[uid]


def _chosen_series(path: Path) -> str:
    """The Series Instance UID of the series a read of ``path`` (a folder or one of its files) gives
    (:func:`.dicom_series.choose_series`, from headers alone, its warning not raised); its LNQError when
    no series can be chosen."""
    from lnq_napari.io.dicom_series import choose_series

    with warnings.catch_warnings():  # which series it reads, and why: said when the case is read
        warnings.simplefilter("ignore")
        return choose_series(path).series_uid


def _series_read(folder: Path) -> str | None:
    """The Series Instance UID of the series a read of ``folder`` gives (:func:`_chosen_series`); None when
    no series can be chosen."""
    try:
        return _chosen_series(folder)
    except LNQError:
        return None


def _series_headers(folder: Path) -> dict[str, list]:
    """Series UID -> headers (no pixels) of the placed images (classic slices, enhanced CTs; no SEG) among
    ``folder``'s files, each series' slices as a read takes them (:func:`.dicom_headers.series_slices`: a
    scout filed in the series and a file copied twice left out)."""
    by_series: dict[str, list] = {}
    for child in candidate_files(folder):  # the one rule for which files may be DICOM
        try:
            ds = read_header(child, stop_before_pixels=True)
        except Exception:
            continue  # not DICOM (a DICOMDIR's neighbours, notes ...)
        placed = "ImagePositionPatient" in ds or "PerFrameFunctionalGroupsSequence" in ds  # classic, enhanced
        if placed and str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
            by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return {uid: series_slices(headers, headers) for uid, headers in by_series.items()}


def _frame_planes(datasets: list) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(orientation (6), pixel spacing (row, column), position (3))`` of each image a SEG's frames map
    onto, in the order of ``datasets``: a classic series' slices, or the frames of one enhanced
    (multi-frame) CT, whose planes sit in its per-frame and shared functional groups."""
    def floats(values) -> np.ndarray:
        return np.asarray([float(v) for v in values])

    if len(datasets) != 1 or "PerFrameFunctionalGroupsSequence" not in datasets[0]:
        return [(floats(ds.ImageOrientationPatient), floats(ds.PixelSpacing), floats(ds.ImagePositionPatient))
                for ds in datasets]
    ds = datasets[0]
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    planes = []
    for frame in ds.PerFrameFunctionalGroupsSequence:
        items = [_frame_item(shared, frame, k) for k in
                 ("PlaneOrientationSequence", "PixelMeasuresSequence", "PlanePositionSequence")]
        if any(item is None for item in items):
            raise LNQError(f"the enhanced DICOM CT {ds.get('SeriesInstanceUID', '')} has a frame without its "
                           "orientation, pixel spacing or position; re-export the series")
        planes.append((floats(items[0].ImageOrientationPatient), floats(items[1].PixelSpacing),
                       floats(items[2].ImagePositionPatient)))
    return planes


def _share_frame_planes(ds) -> None:
    """Move the pixel spacing and orientation an enhanced CT gives in each frame's functional groups (as
    the standard allows) to its shared groups when every frame gives the same: highdicom reads them there
    only. (:func:`_slice_order` checked each frame's against the labels' grid.)"""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames:
        return
    if not ds.get("SharedFunctionalGroupsSequence"):
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    shared = ds.SharedFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        own = [frame.get(keyword) for frame in frames]
        if keyword in shared or any(not seq for seq in own) or any(seq[0] != own[0][0] for seq in own):
            continue
        setattr(shared, keyword, own[0])
        for frame in frames:
            delattr(frame, keyword)


def _slice_order(datasets: list, labels: Volume, where: str) -> list[int]:
    """The labels' z index of each CT slice; LNQError unless the labels lie exactly on the series' grid."""
    fix = (f"the labels are not on the grid of the CT series in {where} ({{}}); predict or correct on that "
           "CT (open it from its DICOM folder) or resample the labels onto it")
    first, planes = datasets[0], _frame_planes(datasets)
    if (int(first.Rows), int(first.Columns)) != labels.shape[1:] or len(planes) != labels.shape[0]:
        raise LNQError(fix.format(f"{len(planes)} slices of {first.Rows} x {first.Columns} pixels, the "
                                  f"labels {labels.shape[0]} of {labels.shape[1]} x {labels.shape[2]}"))
    d = labels.direction_matrix
    ks = []
    for orient, spacing, position in planes:
        nearest, off = orthonormal(orient)  # written to 2 decimals: read on the nearest perpendicular axes
        axes = [orient, nearest] if off <= MAX_ROUNDED_COMPONENT else [orient]
        if not any(_same_axes(a, d) for a in axes):
            raise LNQError(fix.format("orientation differs"))
        if not np.allclose(spacing[::-1], labels.spacing[:2], rtol=1e-5, atol=1e-4):
            raise LNQError(fix.format("pixel spacing differs"))
        index = labels.physical_to_index(position)[0]
        if np.abs(index - np.round(index)).max() > POSITION_TOL or np.any(np.round(index[1:]) != 0):
            raise LNQError(fix.format("slice positions differ"))
        ks.append(int(round(index[0])))
    if sorted(ks) != list(range(labels.shape[0])):
        raise LNQError(fix.format("slice positions differ"))
    return ks


def _series_axes(datasets: list, labels: Volume) -> Volume | None:
    """``labels`` transposed and flipped onto the axes of the CT series ``datasets`` (rows, columns, slices
    along their normal) when they sample the same points stored in another order: a series converted to
    an NRRD in LPS order or a NIfTI (dcm2niix flips the rows), the labels drawn on that file; None for
    another grid (:func:`.geometry.reordered_onto`)."""
    planes = _frame_planes(datasets)
    if len(planes) < 2:
        return None
    orient, spacing, _ = planes[0]
    normal = np.cross(orient[:3], orient[3:])
    heights = sorted(float(position @ normal) for _, _, position in planes)
    first = min((position for _, _, position in planes), key=lambda position: float(position @ normal))
    step = (heights[-1] - heights[0]) / (len(planes) - 1)
    if step <= 0:
        return None
    direction = np.stack([orient[:3], orient[3:], normal], axis=1)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    grid = Volume(np.broadcast_to(np.uint8(0), (len(planes), rows, columns)),
                  (float(spacing[1]), float(spacing[0]), step), tuple(first), tuple(direction.ravel()))
    return reordered_onto(grid, labels)


def short_version(version: str) -> str:
    """A model version fitting a DICOM LO value (64 characters): as it is, or cut with a hash of the
    whole so that two versions stay apart (the whole goes into Algorithm Parameters)."""
    if len(version) <= LO_MAX:
        return version
    return version[: LO_MAX - 9] + "~" + hashlib.sha256(version.encode()).hexdigest()[:8]


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lnq-napari")
    except PackageNotFoundError:
        return "unknown"


def _description(label: str, model_version: str | None, edits: int):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if model_version is None:
        kind, algorithm = "MANUAL", None
    else:
        kind = "SEMIAUTOMATIC" if edits > 0 else "AUTOMATIC"
        algorithm = hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence,
            version=short_version(model_version), parameters={"model_version": model_version})
    return hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.LymphNode, algorithm_type=kind, algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.Mediastinum], display_color=hd.color.CIELabColor(70.0, 20.0, 60.0))


#: Patient and study attributes a SEG copies from its CT (Type 2: present, may be empty) that anonymisers
#: often remove outright; highdicom needs them present.
ANONYMISED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "ReferringPhysicianName")


def write_dicom_seg(path: str | Path, labels: Volume, ct: str | Path, *, model_version: str | None = None,
                    edits: int = 0, series_uid: str | None = None, label: str = "lymph node",
                    series_description: str = "lnq-napari lymph nodes", command: str | None = None) -> Path:
    """Write ``labels`` (any non-zero -> node) as a BINARY DICOM SEG of the CT series in ``ct`` (its
    folder or one of its files; ``series_uid`` or ``labels.meta["dicom_series_uid"]`` chooses among
    several), on whose grid the labels must lie; one segment ``label`` coded SNOMED CT
    "Anatomical structure" / "Lymph node". ``model_version``: the segment is AUTOMATIC (SEMIAUTOMATIC
    with ``edits``) with lnq-napari and that version as its algorithm; None: MANUAL. ``command``: the
    lnq-napari command writing a model's prediction, not labels ("predict"), marked in the Content Label
    (:data:`PREDICTION_CONTENT`; ValueError for another). Written atomically."""
    import highdicom as hd

    if command and command not in PREDICTION_CONTENT:  # a caller's slip, not the user's
        raise ValueError(f"command={command!r}: a SEG is marked a prediction of "
                         f"{', '.join(map(repr, PREDICTION_CONTENT))} only; None writes labels")
    path, ct = Path(path), Path(ct).expanduser()
    if not ct.exists():
        raise LNQError(f"{ct} does not exist; a DICOM SEG needs the DICOM CT series it was drawn on")
    if path.is_dir():
        raise LNQError(f"{path} is a folder; give the DICOM SEG a file name such as {path.name}-seg.dcm")
    if file_above(path) is not None:
        raise LNQError(f"{path} lies under {file_above(path)}, which is a file; give a file in a folder")
    if is_image_file(path):  # .nrrd, .nii.gz ...: a reader would take the DICOM file for that format
        raise LNQError(f"{path.name} names another image format; a DICOM SEG is written as a .dcm file "
                       "(or save the labels as .seg.nrrd)")
    if not is_dicom_path(ct):
        raise LNQError(f"a DICOM SEG references the DICOM CT series it was drawn on, and {ct.name} is not "
                       "DICOM; save as .seg.nrrd instead, or open the CT from its DICOM folder")
    array = np.asarray(labels.array)
    if array.ndim != 3:
        raise LNQError(f"labels are {array.ndim}D; a segmentation must be 3D")
    datasets = _ct_datasets(ct, series_uid or labels.meta.get("dicom_series_uid"))
    try:
        ks = _slice_order(datasets, labels, str(ct))
    except LNQError:  # the series' points stored in another axis order (an NRRD converted to LPS, a NIfTI)?
        labels = _series_axes(datasets, labels)
        if labels is None:
            raise
        array = np.asarray(labels.array)
        ks = _slice_order(datasets, labels, str(ct))
    if len(datasets) == 1:
        _share_frame_planes(datasets[0])
    for ds in datasets:  # highdicom refuses an empty Specific Character Set (some scanners write one)
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
        for keyword in ANONYMISED_TYPE2:  # present and empty, as DICOM allows, where removed
            if keyword not in ds:
                setattr(ds, keyword, "")
    if not all(getattr(ds, "FrameOfReferenceUID", "") for ds in datasets):
        raise LNQError(f"the CT series in {ct} has slices without a Frame of Reference UID (0020,0052), the "
                       "space a DICOM SEG must share with its CT (scanners write one; some converters and "
                       "anonymisers drop it); save the labels as .seg.nrrd, or export from the original "
                       "series")
    frames = (array[ks] != 0).astype(np.uint8)
    content = PREDICTION_CONTENT[command] if command else LABELS_CONTENT
    try:
        with collected_warnings():  # dropped: source header quirks (names, values) highdicom reports
            seg = hd.seg.Segmentation(
                source_images=datasets, pixel_array=frames, segmentation_type="BINARY",
                segment_descriptions=[_description(label, model_version, edits)],
                series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(),
                instance_number=1, manufacturer=ALGORITHM_NAME, manufacturer_model_name=ALGORITHM_NAME,
                software_versions=_software_version(), device_serial_number="none",
                series_description=series_description[:LO_MAX], content_label=content,
                content_description="Mediastinal lymph nodes", omit_empty_frames=bool(frames.any()))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise LNQError(f"cannot write a DICOM SEG for the CT series in {ct} ({reason}); check that the CT "
                       "slices are complete images of one series") from exc
    with atomic_write(path, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return path
