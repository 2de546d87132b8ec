"""3D Slicer ``.seg.nrrd`` files: choose node segments when reading, write masks Slicer opens."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.geometry import nrrd_geometry_fields
from lnq_napari.io.labels import check_label_values, label_mask
from lnq_napari.io.node_names import LYMPH_NODE_CODES, generic_segment_name, named_like_node
from lnq_napari.io.nrrd_header import NRRD_STANDARD_FIELDS
from lnq_napari.io.volume import Volume

_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(.+)$")
NRRD_COMPRESSION = 6  # zlib level for masks: level 9 is slower for a few % smaller files


def compression_level(array: np.ndarray) -> int:
    """zlib level: 6 for masks (4x smaller than level 1), 1 for CT (level 6: 2x slower, 1 % smaller)."""
    return NRRD_COMPRESSION if array.dtype.itemsize == 1 else 1

# SNOMED CT 59441001 "Lymph node structure", in 3D Slicer's terminology-entry notation.
LYMPH_NODE_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    "~SCT^59441001^Lymph node~^^~Anatomic codes - DICOM master list~^^~^^"
)
_CONVERSION_PARAMETERS = (
    "Collapse labelmaps|1|Merge the labelmaps into as few shared labelmaps as possible.&"
    "Compute surface normals|1|Compute surface normals.&"
    "Crop to reference image geometry|0|Crop the model to the extent of reference geometry.&"
    "Decimation factor|0.0|Desired reduction in the total number of polygons.&"
    "Default slice thickness|0.0|Default thickness for contours if slice spacing cannot be calculated.&"
    "End capping|1|Create end cap to close surface inside contours on the top and bottom of the structure.&"
    "Fractional labelmap oversampling factor|1|Oversampling of the reference image geometry.&"
    "Joint smoothing|0|Perform joint smoothing.&"
    "Oversampling factor|1|Oversampling of the reference image geometry.&"
    "Smoothing factor|0.5|Smoothing factor.&"
    "Threshold fraction|0.5|Threshold that the closed surface is created at.&"
)


def is_slicer_segmentation(meta: dict) -> bool:
    """True when NRRD custom fields carry 3D Slicer segment keys."""
    return any(_SEGMENT_KEY.match(k) for k in meta) or any(
        k in meta for k in ("Segmentation_MasterRepresentation", "Segmentation_SourceRepresentation"))


def node_segment_names(path: str | Path) -> tuple[bool, list[str]]:
    """Whether a Slicer segmentation file may hold nodes: a segment named or coded like a lymph node, or one
    with a generic name (``Segment_1``, ``1``, ``mask``: :func:`~.node_names.generic_segment_name`;
    what it holds cannot be told, so it is read as before, with the reader's warning); and its segments'
    names, from the header alone. ``(True, [])`` for a plain label map,
    whose every label is a node. False only when every segment is named after something else (Lung)."""
    import nrrd

    meta = nrrd.read_header(str(path))
    if not is_slicer_segmentation(meta):
        return True, []
    segments = read_segments(path, meta)
    nodes = any(s["coded"] or named_like_node(s["name"]) or generic_segment_name(s["name"]) for s in segments)
    return nodes, [s["name"] for s in segments]


def _segments_from_meta(meta: dict) -> list[dict]:
    fields: dict[int, dict] = {}
    for key, value in meta.items():
        match = _SEGMENT_KEY.match(key)
        if match:
            fields.setdefault(int(match.group(1)), {})[match.group(2)] = value
    segments = []
    for index in sorted(fields):
        f = fields[index]
        default = f"Segment_{index + 1}"
        segments.append({"id": f.get("ID", default), "name": f.get("Name", default),
                         "labelValue": f.get("LabelValue", 1), "layer": f.get("Layer", 0),
                         "terminology": _terminology_type(str(f.get("Tags", "")))})
    return segments


def _terminology_type(tags: str) -> dict:
    """``{"type": [scheme, code, meaning]}`` of a ``SegmentN_Tags`` value's TerminologyEntry (3D Slicer:
    ``context~category~type~...``, each code ``scheme^code^meaning``), as slicerio gives it; {} without."""
    entry = re.search(r"TerminologyEntry:([^|]*)", tags)
    fields = entry.group(1).split("~") if entry else []
    return {"type": fields[2].split("^")} if len(fields) > 2 else {}


def _coded_node(terminology) -> bool:
    """Whether a segment's terminology (slicerio's dict) types it as a lymph node (SNOMED CT 59441001): a
    node whatever its name (a station such as "4R"), as a DICOM SEG's coded segment is; older files code it
    in SNOMED RT (T-C4000)."""
    kind = terminology.get("type") if isinstance(terminology, dict) else None
    if not isinstance(kind, (list, tuple)) or len(kind) < 2:
        return False
    return (str(kind[1]).strip(), str(kind[0]).strip()) in LYMPH_NODE_CODES  # (code, scheme)


def _has_layer_keys(meta: dict) -> bool:
    """Whether the header places its segments in layers (``SegmentN_Layer``, 3D Slicer 4.11 and later)."""
    return any((m := _SEGMENT_KEY.match(key)) is not None and m.group(2) == "Layer" for key in meta)


def read_segments(path: str | Path, meta: dict) -> list[dict]:
    """Segment descriptions (id, name, labelValue, layer, coded: its terminology is SNOMED CT "Lymph node")
    of a Slicer segmentation file; LNQError when a label value or layer is not a whole number (label value
    1 or more, layer 0 or more)."""
    try:
        import slicerio

        found = slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]
    except Exception:  # a header slicerio rejects (unusual space/kinds, odd keys): parse the keys ourselves
        found = _segments_from_meta(meta)
    out = []
    for i, s in enumerate(found):
        sid = str(s.get("id") or f"Segment_{i + 1}")
        segment = {"id": sid, "name": str(s.get("name", sid)), "coded": _coded_node(s.get("terminology"))}
        for key, default, low in (("labelValue", 1, 1), ("layer", 0, 0)):
            segment[key] = _whole_number(s.get(key, default), low, f"{Path(path).name}: segment {sid!r}", key)
        out.append(segment)
    return out


def _whole_number(value, low: int, where: str, key: str) -> int:
    """``value`` (int or header text) as an int >= ``low``; LNQError saying which field is damaged."""
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d{1,18}", text) and int(text) >= low:
        return int(text)
    what = "label value" if key == "labelValue" else "layer"
    raise LNQError(f"{where} has {what} {text!r}; it must be a whole number of at least {low}: the file is "
                   "damaged, re-export it from 3D Slicer")


def _choose(segments: list[dict], segment: str | int | None, name: str) -> list[dict]:
    listing = ", ".join(f"'{s['name']}' (value {s['labelValue']}, layer {s['layer']})" for s in segments)
    if segment is None:
        nodes = [s for s in segments if s.get("coded") or named_like_node(s["name"])]
        if nodes:
            return nodes
        if len(segments) > 1:
            warnings.warn(f"{name}: no segment is named or coded like a lymph node; using all "
                          f"{len(segments)} segments ({listing}); name the node segments 'lymph node' (3D "
                          "Slicer), or pass segment= to read_labels to choose one",
                          UserWarning, stacklevel=4)
        return segments
    if isinstance(segment, str):
        key = segment.strip().lower()
        chosen = [s for s in segments if s["name"].lower() == key or s["id"].lower() == key]
    elif isinstance(segment, (int, np.integer)) and not isinstance(segment, bool):
        chosen = [s for s in segments if s["labelValue"] == int(segment)]
        if len(chosen) > 1:
            names = ", ".join(f"'{s['name']}'" for s in chosen)
            raise LNQError(f"{name}: label value {segment} is used by several segments ({names}) "
                           "in different layers; pass the segment name instead")
    else:
        raise LNQError(f"segment must be a segment name or a label value, not {segment!r}")
    if not chosen:
        raise LNQError(f"{name} has no segment {segment!r}; its segments are: {listing}")
    return chosen


def segment_mask(path: str | Path, raw, segment: str | int | None = None) -> tuple[np.ndarray, list[dict]]:
    """uint8 {0,1} mask of the chosen segments of a Slicer segmentation, and those segments (``name``,
    ``id``: the key that chooses one alone, ``labelValue``, ``layer``; none for a plain label map).

    ``raw`` is a :class:`lnq_napari.io.raw_image.RawImage` (array (z,y,x) or (layers,z,y,x)). A voxel belongs
    to a segment when its segment's layer holds the segment's label value there; label values that no
    segment describes are left out (with a warning).
    """
    name = Path(path).name
    segments = read_segments(path, raw.meta)
    layers = raw.array if raw.layered else raw.array[np.newaxis]
    if len(segments) > 1 and len(segments) == layers.shape[0] and not _has_layer_keys(raw.meta):
        # 3D Slicer 4.10 and earlier: one segment per layer, each a 0/1 mask (Slicer's reader does the same)
        segments = [{**s, "layer": i, "labelValue": 1} for i, s in enumerate(segments)]
    if not segments:  # Slicer keys without segments: a plain label map
        if isinstance(segment, str):
            raise LNQError(f"{name} describes no segments, so none is named {segment!r}; pass a label "
                           "value (int) or leave segment out")
        return label_mask(layers, name, segment).max(axis=0), []
    check_label_values(layers, name)
    chosen = _choose(segments, segment, name)
    mask = np.zeros(layers.shape[1:], dtype=np.uint8)
    for s in chosen:
        if not 0 <= s["layer"] < layers.shape[0]:
            raise LNQError(f"{name}: segment '{s['name']}' is in layer {s['layer']} but the file has "
                           f"{layers.shape[0]} layer(s); the file is damaged, re-export it from 3D Slicer")
        mask |= (layers[s["layer"]] == s["labelValue"]).astype(np.uint8)
    if segment is None:
        _warn_undescribed(layers, segments, name)
    return mask, chosen


def _warn_undescribed(layers: np.ndarray, segments: list[dict], name: str) -> None:
    """Warn when voxels hold label values that no segment describes (left out of every segment)."""
    undescribed: set = set()
    for k, layer in enumerate(layers):
        other = layer != 0  # voxels no segment of this layer describes: none, mostly (no sort needed)
        for value in {s["labelValue"] for s in segments if s["layer"] == k}:
            other &= layer != value
        if other.any():
            undescribed |= set(np.unique(layer[other]).tolist())
    if undescribed:
        shown = ", ".join(f"{v:g}" for v in sorted(undescribed)[:5])
        warnings.warn(f"{name}: voxels hold label values that no segment describes ({shown}); they are "
                      "left out", UserWarning, stacklevel=4)


def _extent(mask: np.ndarray) -> str:
    """Slicer's Segment0_Extent: 'imin imax jmin jmax kmin kmax' (i = x) of the non-zero voxels."""
    nz = np.argwhere(mask)
    if nz.size == 0:
        return "0 -1 0 -1 0 -1"
    lo, hi = nz.min(axis=0)[::-1], nz.max(axis=0)[::-1]
    return " ".join(f"{a} {b}" for a, b in zip(lo.tolist(), hi.tolist()))


def ascii_text(text: str) -> str:
    """``text`` as NRRD headers hold it (ASCII): other characters as Python escapes (``ü`` -> ``\\xfc``)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def check_extra_fields(extra: dict | None) -> dict[str, str]:
    """Validated ``key:=value`` header fields (strings, one line each, no reserved names; characters
    beyond ASCII as escapes: :func:`ascii_text`)."""
    out: dict[str, str] = {}
    for key, value in (extra or {}).items():
        key, value = ascii_text(str(key)), ascii_text(str(value))
        if (not key or ":" in key or "\n" in key or key.lower() in NRRD_STANDARD_FIELDS
                or _SEGMENT_KEY.match(key) or key.startswith("Segmentation_")):
            raise LNQError(f"cannot store header field {key!r}: names must be non-empty, without ':' or "
                           "newlines, and not a NRRD or Slicer segmentation field; rename it")
        if "\n" in value or "\r" in value:
            raise LNQError(f"header field {key!r} has a line break in its value; store it on one line")
        out[key] = value
    return out


def seg_header(labels: Volume, mask: np.ndarray, name: str, color, extra: dict | None) -> dict:
    """pynrrd header of a one-segment 3D Slicer segmentation of ``mask`` on ``labels``' grid."""
    if "\n" in name or "|" in name:
        raise LNQError(f"segment name {name!r} may not hold line breaks or '|'; rename it")
    color = tuple(float(c) for c in color)
    if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
        raise LNQError(f"segment color {color} must be three numbers between 0 and 1")
    header = {"type": "unsigned char", "dimension": 3, "encoding": "gzip", **nrrd_geometry_fields(labels)}
    header.update({
        "Segment0_Color": " ".join(f"{c:.6g}" for c in color),
        "Segment0_ColorAutoGenerated": "0",
        "Segment0_Extent": _extent(mask),
        "Segment0_ID": "Segment_1",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment0_Name": ascii_text(name),
        "Segment0_NameAutoGenerated": "0",
        "Segment0_Tags": f"Segmentation.Status:inprogress|TerminologyEntry:{LYMPH_NODE_TERMINOLOGY}|",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ConversionParameters": _CONVERSION_PARAMETERS,
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_SourceRepresentation": "Binary labelmap",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    })
    header.update(check_extra_fields(extra))
    return header


def write_seg_nrrd(path: str | Path, labels: Volume, name: str = "lymph node",
                   color=(0.85, 0.65, 0.13), extra: dict | None = None) -> Path:
    """Write ``labels`` (any non-zero -> 1; values a label map cannot hold, such as a probability map or
    negative values, are an LNQError) as a gzip 3D Slicer ``.seg.nrrd`` with one segment.

    ``extra`` holds further string fields for the header (provenance: model version, source ...);
    :func:`lnq_napari.io.read_labels` returns them in ``Volume.meta``. Written atomically.
    """
    import nrrd

    path = Path(path)
    mask, header = _seg_content(labels, name, color, extra, path.name)  # refused before any file is made
    with atomic_write(path, suffix=".seg.nrrd") as tmp:
        nrrd.write(str(tmp), mask, header, index_order="C", compression_level=NRRD_COMPRESSION)
    return path


def write_seg_nrrd_into(tmp: str | Path, labels: Volume, name: str = "lymph node", color=(0.85, 0.65, 0.13),
                        extra: dict | None = None, named: str | None = None) -> None:
    """:func:`write_seg_nrrd`'s content written into the file ``tmp`` itself (no temp file, no rename, no
    folder made): for a caller that made its own temp file and puts it in place; ``named`` is the final
    file's name (checked and named in errors; ``tmp``'s by default)."""
    import nrrd

    mask, header = _seg_content(labels, name, color, extra, named or Path(tmp).name)
    nrrd.write(str(tmp), mask, header, index_order="C", compression_level=NRRD_COMPRESSION)


def _seg_content(labels: Volume, name: str, color, extra: dict | None, named: str) -> tuple[np.ndarray, dict]:
    """The 0/1 mask and header of a ``.seg.nrrd`` named ``named``; LNQError for labels it cannot hold."""
    if not named.lower().endswith(".nrrd"):
        raise LNQError(f"{named}: a segmentation is written as NRRD; name the file *.seg.nrrd")
    array = np.asarray(labels.array)
    if array.ndim != 3:
        raise LNQError(f"labels are {array.ndim}D; a segmentation must be 3D")
    mask = label_mask(array, f"the labels for {named}")  # refuses probabilities and negative values
    return mask, seg_header(labels, mask, name, color, extra)
