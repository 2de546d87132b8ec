"""npe2 reader: CT files open as a windowed Image layer, label files as a Labels layer (one id per node).

File names are read by :mod:`lnq_napari.io.layout` (suffixes, label roles, the case's CT beside a label
file); nodes are connected by :mod:`lnq_napari.components`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from lnq_napari.components import label_nodes
from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_series import dicom_source
from lnq_napari.io.dicom_tree import DICOM_SUFFIXES, is_dicom_folder, is_dicom_path, seg_file
from lnq_napari.io.geometry import reordered_onto
from lnq_napari.io.labels import looks_like_label_map
from lnq_napari.io.layout import (
    image_names,
    image_suffix,
    is_dicomdir,
    is_image_file,
    looks_like_label_name,
    sibling_ct,
    split_name,
)
from lnq_napari.io.readers import read_ct_of, read_grid, read_volume
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._layers import (
    CT_CONTRAST,
    CT_ROLE,
    PROB_ROLE,
    is_ct_layer,
    layer_kwargs,
    layer_volume,
)
from lnq_napari.plugin._viewers import open_viewers, remember_current
from lnq_napari.quantify import read_node_ids
from lnq_napari.wording import count
from lnq_napari.workspace.cases import is_workspace
from lnq_napari.workspace.labels import version_provenance


def _layer_name(path: Path) -> str:
    """The file name without its image suffix or ``.dcm`` / ``.ima`` (a DICOM folder keeps its name)."""
    suffix = image_suffix(path) or next((s for s in DICOM_SUFFIXES if path.name.lower().endswith(s)), "")
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _is_dicom_seg(path: Path) -> bool:
    """A DICOM SEG file, or a folder holding SEG files only (several: read_labels says what to do)."""
    try:
        return seg_file(path) is not None
    except LNQError:
        return True


def is_supported(path: str | Path) -> bool:
    """True for CT/label files this plugin reads: NRRD, NIfTI, MHA/MHD, a DICOM folder, a DICOM file (a
    slice of a series, an enhanced CT, a SEG) or a CD's DICOMDIR."""
    path = Path(path)
    return is_image_file(path) or is_dicom_folder(path) or is_dicomdir(path) or \
        (path.is_file() and is_dicom_path(path)) or _is_dicom_seg(path)


def looks_like_labels(path: str | Path, array: np.ndarray | None = None) -> bool:
    """A label file name (``-seg``, ``-full``, ``.seg.nrrd``, ...), or values that read as a label map
    (:func:`~lnq_napari.io.labels.looks_like_label_map`: a mask stored as float, as MONAI writes one, too)."""
    return looks_like_label_name(path) or (array is not None and looks_like_label_map(array))


def napari_get_reader(path):
    """npe2 ``get_reader``: the reader function for a supported path (or list of paths), else None; for a
    folder of CT files (``lnq-napari phantom OUT``, an LNQ download) one that says what to open instead
    (napari's own message, "refused the file", said nothing)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if len(paths) == 1 and _case_folder_note(Path(paths[0])):
        return _refuse_case_folder
    if not paths or not all(is_supported(p) for p in paths):
        return None
    return read_layers


def _case_folder_note(folder: Path) -> str:
    """What to do with ``folder`` when it is a workspace, or holds CT files but is no DICOM series (""
    otherwise)."""
    if not folder.is_dir():
        return ""
    if is_workspace(folder):
        return (f"{folder.name} is a lnq-napari workspace: review its cases with "
                f"lnq-napari view --workspace {shlex.quote(str(folder))}")
    names = image_names(folder)
    if not names:  # CT files beside DICOM: the CT files, as the command line takes them
        return ""
    return (f"{folder.name} is a folder of {count(len(names), 'CT file')} "
            f"({names[0]}{', ...' if len(names) > 1 else ''}): open one CT file with File > Open, or review "
            f"them all: lnq-napari workspace init W --data {shlex.quote(str(folder))}, then "
            "lnq-napari view --workspace W")


def _refuse_case_folder(path) -> list[tuple]:
    raise LNQError(_case_folder_note(Path(path if isinstance(path, str | Path) else path[0])))


def read_layers(path) -> list[tuple]:
    """Layer data tuples for one path or a list of paths (CT images first, then labels)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    remember_current()  # its CTs: where labels opened later, when another viewer is current, look
    firsts = {}  # the slices of one series: one CT layer, read from the first of them
    for p in paths:
        firsts.setdefault(dicom_source(p), p)
    layers = [read_layer(p) for p in firsts.values()]
    return sorted(layers, key=lambda t: t[2] != "image")


def read_layer(path: str | Path) -> tuple:
    """One layer data tuple: ``(data, kwargs, "image" | "labels")``."""
    path = Path(path)
    seg = _is_dicom_seg(path)
    if not looks_like_label_name(path) and not seg:
        volume = read_volume(path)  # a slice of a series: that series
        if split_name(path).role == PROB_ROLE:  # a probability map (predict --probabilities): no CT
            return prob_layer_data(volume, name=_layer_name(path), source=path)
        source = dicom_source(path)  # a CD or a series, named and saved beside as its folder is
        if not looks_like_labels(path, volume.array):
            return ct_layer_data(volume, name=_layer_name(source), source=source)
        try:  # taken for labels by its values only: if they cannot be read as labels, it is an image
            return _labels_of(path, seg)
        except LNQError:
            return ct_layer_data(volume, name=_layer_name(source), source=source)
    return _labels_of(path, seg)


def _labels_of(path: Path, seg: bool) -> tuple:
    """The Labels layer tuple of a label file, on its CT's grid where one is known."""
    reference = sibling_ct_grid(path) or (saved_on_ct(path) if seg else open_ct_turned(path))
    labels = read_node_ids(path, reference=reference)  # Slicer / SEG segments: ids of their own
    return labels_layer_data(labels, name=_layer_name(path), source=path)


def saved_on_ct(path: Path) -> Volume | None:
    """The CT a DICOM SEG saved in a label store was drawn on (its version's ``origin``; a SEG needs its CT
    and ``lnq-labels/<case>/`` holds none), or None when it names none that exists."""
    origin = (version_provenance(path) or {}).get("origin")
    if not origin or not Path(origin).exists():
        return None
    return read_ct_of(origin, path)


def open_ct_turned(path: Path) -> Volume | None:
    """The open CT whose very points the label file ``path`` samples in another axis order or direction
    (a head-first copy of a feet-first CT's labels): read onto its grid, exactly, as ``view --seg`` reads
    them, they are that CT's labels (Shift+click, Save on its case). Looked for in napari's current viewer,
    then in the other open viewers the plugin met (:func:`~lnq_napari.plugin._viewers.open_viewers`).
    None when no open CT's grid matches, when CTs of several grids do, or when one already has the labels'
    grid: the labels stay as stored."""
    grid = read_grid(path)
    if grid is None:
        return None
    for viewer in open_viewers():
        cts = [ct for ct in (_grid_of(ly) for ly in viewer.layers if is_ct_layer(ly, views=False))
               if ct is not None]
        if any(ct.same_grid(grid) for ct in cts):
            return None
        turned = [ct for ct in cts if reordered_onto(ct, grid) is not None]
        if turned:
            return turned[0] if all(ct.same_grid(turned[0]) for ct in turned) else None
    return None


def _grid_of(layer) -> Volume | None:
    """The CT volume an Image layer shows, or None for one that is no 3D grey volume on square axes."""
    if layer.ndim != 3 or getattr(layer, "rgb", False):
        return None
    try:
        return layer_volume(layer)
    except LNQError:  # sheared in napari
        return None


def sibling_ct_grid(path: Path) -> Volume | None:
    """The grid of the case's CT beside a label file (``<case>-ct.nrrd`` next to ``<case>-seg.nrrd``).

    Returned as a Volume of zeros (header read only, :func:`~lnq_napari.io.readers.read_grid`), so labels
    can be put on the CT grid when the two files disagree (a known LNQ2023 quirk). None when there is no
    such CT.
    """
    ct = sibling_ct(path)
    return None if ct is None else read_grid(ct)


def ct_layer_data(volume: Volume, name: str = "CT", source=None) -> tuple:
    """An Image layer tuple showing a CT in the mediastinal window."""
    kwargs = layer_kwargs(volume, name, role=CT_ROLE, source=source)
    kwargs.update(contrast_limits=CT_CONTRAST, colormap="gray", blending="translucent")
    return np.asarray(volume.array), kwargs, "image"


PROB_CONTRAST = (0.0, 1.0)


def prob_layer_data(volume: Volume, name: str = "probabilities", source=None) -> tuple:
    """An Image layer tuple showing a node probability map (``<case>-prob.nrrd``) over 0..1, added onto
    the CT below it."""
    kwargs = layer_kwargs(volume, name, role=PROB_ROLE, source=source)
    kwargs.update(contrast_limits=PROB_CONTRAST, colormap="inferno", blending="additive", opacity=0.6)
    return np.asarray(volume.array), kwargs, "image"


HEADER_KEY = "lnq_header"  # a labels layer's metadata: the text fields of its file's header


def labels_layer_data(volume: Volume, name: str = "nodes", source=None, **metadata) -> tuple:
    """A Labels layer tuple with one id per node, the ids the node table gives (:func:`label_nodes`: a
    mask's nodes 1..n, a value on several blobs one id per blob)."""
    array = np.asarray(volume.array)
    labels = label_nodes(array, grid=volume)  # the ids the node table gives, in stored order (C-ordered)
    labels = labels.copy() if np.shares_memory(labels, array) else labels  # the layer's own: edits stay out
    header = {k: v for k, v in volume.meta.items() if isinstance(v, str)}
    kwargs = layer_kwargs(volume, name, role="labels", source=source, **{HEADER_KEY: header}, **metadata)
    kwargs.update(opacity=0.5)
    return labels, kwargs, "labels"
