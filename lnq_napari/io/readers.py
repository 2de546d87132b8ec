"""Read CT and label volumes (NRRD/.nhdr, NIfTI, MHA/MHD, DICOM folders) with their exact grid."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io import segfile
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.geometry import align_to, nrrd_geometry, nrrd_geometry_fields, nrrd_spatial_axes
from lnq_napari.io.labels import label_mask
from lnq_napari.io.nrrd_header import custom_fields
from lnq_napari.io.segfile import check_extra_fields, compression_level, write_seg_nrrd
from lnq_napari.io.volume import Volume

NRRD_SUFFIXES = (".nrrd", ".nhdr")
SITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nia", ".hdr", ".img", ".img.gz")

@dataclass
class RawImage:
    """An image as stored: ``array`` is (z, y, x) or (layers, z, y, x) for files with a list axis."""

    array: np.ndarray
    spacing: tuple
    origin: tuple
    direction: tuple
    meta: dict = field(default_factory=dict)

    @property
    def layered(self) -> bool:
        return self.array.ndim == 4

    def volume(self, array: np.ndarray | None = None) -> Volume:
        return Volume(self.array if array is None else array, self.spacing, self.origin, self.direction,
                      dict(self.meta))


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise LNQError(f"{path} does not exist; check the path")
    return path


def file_format(path: Path) -> str:
    """'nrrd', 'sitk', 'dicom' (a folder or a .dcm file) or 'other' from the name."""
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    if name.endswith(SITK_SUFFIXES):
        return "sitk"
    if name.endswith((".dcm", ".ima")) or _has_dicom_magic(path):
        return "dicom"
    return "other"


def _has_dicom_magic(path: Path) -> bool:
    """True for a DICOM Part 10 file ('DICM' at byte 128), whatever its name."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _native(array: np.ndarray) -> np.ndarray:
    """Native byte order and C-contiguous (SimpleITK and torch need both)."""
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def _fast_nrrd_data(path: Path, header: dict) -> np.ndarray | None:
    """Voxels of a plain 3D NRRD (attached raw/gzip data, no skips) via SimpleITK, which decodes
    about 1.5x faster than pynrrd; None when the file is another variant or SimpleITK fails."""
    skips = ("data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip")
    encoding = str(header.get("encoding", "")).lower()
    detached_or_skipped = any(k in header for k in skips)
    if int(header["dimension"]) != 3 or encoding not in ("raw", "gzip", "gz") or detached_or_skipped:
        return None
    import SimpleITK as sitk

    try:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError:
        return None  # pynrrd then reads it, or says precisely what is wrong
    if array.shape != tuple(int(n) for n in header["sizes"][::-1]):
        return None
    return array


def _read_nrrd(path: Path) -> RawImage:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
        data = _fast_nrrd_data(path, header)
        if data is None:
            data, header = nrrd.read(str(path), index_order="C")
    except FileNotFoundError as exc:  # a detached header naming a missing data file
        raise LNQError(f"{path.name}: data file {exc.filename} not found; keep the .nhdr next to its data "
                       "file") from exc
    except Exception as exc:  # NRRDError, zlib/bz2 errors, UnicodeDecodeError, ValueError ...
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise LNQError(f"cannot read {path.name} as NRRD ({reason}); the file is truncated, damaged or not "
                       "an NRRD image: re-export or re-download it") from exc
    dim = int(header["dimension"])
    if dim < 3:
        raise LNQError(f"{path.name} is {dim}D; a CT volume must be 3D")
    spacing, origin, direction = nrrd_geometry(header, path.name)
    spatial = nrrd_spatial_axes(header)
    c_spatial = [dim - 1 - a for a in spatial]  # pynrrd C order reverses the header's axes
    others = [a for a in range(dim) if a not in c_spatial]
    array = np.moveaxis(data, others, list(range(len(others)))) if others else data
    if array.ndim > 4:
        raise LNQError(f"{path.name} is {dim}D; a CT volume must be 3D")
    return RawImage(_native(array), spacing, origin, direction, custom_fields(header))


def _nifti_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1/2 single file's voxel data ends, from its header; None if unknown."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or offset <= 0:
        return None
    return offset + int(np.prod([max(d, 1) for d in dims[1:1 + dims[0]]], dtype=np.int64)) * bitpix // 8


def _gzip_length(path: Path) -> int:
    """Decompressed length of a gzip file, streaming (raises EOFError when it is cut short)."""
    import gzip

    total = 0
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            total += len(chunk)
    return total


def _check_nifti_complete(path: Path) -> None:
    """SimpleITK reads a truncated NIfTI silently (zeros); compare the stored size with the header's."""
    import gzip

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                header = handle.read(540)
            with open(path, "rb") as handle:
                handle.seek(-4, 2)
                stored = struct.unpack("<I", handle.read(4))[0]  # gzip trailer: size mod 2**32
            end = _nifti_data_end(header)
            complete = end is None or stored == end % 2**32
            if not complete:  # the trailer only counts the last member of a multi-member gzip: count all
                complete = _gzip_length(path) >= end
        else:
            with open(path, "rb") as handle:
                end = _nifti_data_end(handle.read(540))
            complete = end is None or path.stat().st_size >= end
    except (OSError, EOFError, struct.error) as exc:
        raise LNQError(f"cannot read {path.name} ({exc}); the file is truncated or damaged: re-export or "
                       "re-download it") from exc
    if not complete:
        raise LNQError(f"cannot read {path.name} (it holds less data than its header announces); the file is "
                       "truncated: re-export or re-download it")


def _read_sitk_file(path: Path) -> RawImage:
    import SimpleITK as sitk

    _check_nifti_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:160]
        raise LNQError(f"cannot read {path.name} ({reason}); the file is truncated, damaged or not a "
                       "supported image (NRRD, NIfTI, MHA/MHD, DICOM folder): "
                       "re-export or re-download it") from exc
    return _from_sitk_image(image, path.name)


def _from_sitk_image(image, name: str) -> RawImage:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim != 3:
        raise LNQError(f"{name} is {dim}D; a CT volume must be 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LNQError(f"{name} has {image.GetNumberOfComponentsPerPixel()} values per voxel (a colour or "
                       "vector image); a CT volume must be scalar")
    return RawImage(_native(sitk.GetArrayFromImage(image)), image.GetSpacing(), image.GetOrigin(),
                    image.GetDirection(), {})


def _read_dicom(path: Path) -> RawImage:
    import warnings

    import SimpleITK as sitk

    folder = path if path.is_dir() else path.parent
    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series = ()
    if not series:
        raise LNQError(f"{folder} is a folder without a DICOM series; point to a CT file "
                       "(.nrrd, .nii.gz, .mha) or to a folder holding the DICOM slices of one series")
    files_by_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    if not path.is_dir():
        chosen = [sid for sid, files in files_by_series.items()
                  if any(Path(f).resolve() == path.resolve() for f in files)]
        sid = chosen[0] if chosen else max(files_by_series, key=lambda s: len(files_by_series[s]))
    else:
        sid = max(files_by_series, key=lambda s: len(files_by_series[s]))
        if len(series) > 1:
            warnings.warn(f"{folder} holds {len(series)} DICOM series; reading the largest "
                          f"({len(files_by_series[sid])} slices, series {sid})", UserWarning, stacklevel=3)
    reader.SetFileNames(files_by_series[sid])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1][:160]
        raise LNQError(f"cannot read the DICOM series in {folder} ({reason}); check that the slices are "
                       "complete images of one series") from exc
    raw = _from_sitk_image(image, folder.name)
    raw.meta["dicom_series_uid"] = sid
    array = raw.array
    if array.dtype.kind in "iu" and array.dtype.itemsize > 2 and array.size:
        lo, hi = array.min(), array.max()
        if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
            raw.array = array.astype(np.int16)  # HU fit int16, as in LNQ's files
    return raw


def read_raw(path: str | Path) -> RawImage:
    """The image as stored, keeping a 4th list/layer axis first if the file has one."""
    path = _existing(path)
    kind = file_format(path)
    if kind == "dicom":
        return _read_dicom(path)
    if path.is_dir():
        raise LNQError(f"{path} is a folder; point to an image file")
    if kind == "nrrd":
        return _read_nrrd(path)
    if kind == "sitk":
        return _read_sitk_file(path)
    try:
        return _read_sitk_file(path)
    except LNQError as exc:
        raise LNQError(f"{path.name} is not a supported image; use NRRD (.nrrd/.nhdr), "
                       "NIfTI (.nii, .nii.gz), MHA/MHD or a DICOM folder") from exc


def read_volume(path: str | Path) -> Volume:
    """Read a 3D image (CT) with its grid: NRRD (.nrrd, .nhdr), NIfTI, MHA/MHD or a DICOM series folder.

    NRRD custom header fields (``key:=value``) are kept as strings in ``Volume.meta``.
    """
    raw = read_raw(path)
    if raw.layered:
        name = Path(path).name
        raise LNQError(f"{name} is 4D ({raw.array.shape[0]} layers/components); a CT volume must be 3D "
                       "(for a 3D Slicer segmentation with layers use read_labels)")
    return raw.volume()


def read_labels(path: str | Path, reference: Volume | None = None,
                segment: str | int | None = None) -> Volume:
    """Read a node mask as uint8 {0, 1}.

    Plain label images: every non-zero voxel (or voxels equal to ``segment`` when it is an int) -> 1.
    3D Slicer ``.seg.nrrd``: the segment(s) named like a lymph node, or the one given by ``segment``
    (name or label value), else all segments. With ``reference``, the mask is put on its grid
    (see :func:`lnq_napari.io.geometry.align_to`). Custom header fields are kept in ``meta``.
    """
    raw = read_raw(path)
    name = Path(path).name
    if segfile.is_slicer_segmentation(raw.meta):
        mask, chosen = segfile.segment_mask(path, raw, segment)
        volume = raw.volume(mask)
        volume.meta["selected_segments"] = chosen
    else:
        if isinstance(segment, str):
            raise LNQError(f"{name} has no named segments (not a 3D Slicer .seg.nrrd); pass segment as a "
                           "label value (int) or leave it out")
        array = raw.array
        if raw.layered:  # overlapping layers without Slicer keys: a voxel is labelled if any layer is
            masks = [label_mask(layer, name, segment) for layer in array]
            mask = np.max(np.stack(masks), axis=0)
        else:
            mask = label_mask(array, name, segment)
        volume = raw.volume(mask)
    if reference is not None:
        volume = align_to(reference, volume)
    return volume


WRITE_SUFFIXES = (".seg.nrrd", ".nrrd", ".nii.gz", ".nii", ".mha")


def write_volume(path: str | Path, volume: Volume) -> Path:
    """Write ``volume`` atomically, format by extension: .nrrd (gzip), .seg.nrrd, .nii.gz, .nii, .mha.

    NRRD keeps the ``meta`` string fields as ``key:=value`` header fields.
    """

    path = Path(path)
    suffix = next((s for s in WRITE_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise LNQError(f"cannot write {path.name}: use one of {', '.join(WRITE_SUFFIXES)}")
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise LNQError(f"cannot write a {array.ndim}D array as a volume; it must be 3D (z, y, x)")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    if suffix == ".seg.nrrd":
        return write_seg_nrrd(path, volume.with_array(array))
    if suffix == ".nrrd":
        import nrrd

        plain = {k: v for k, v in volume.meta.items()
                 if isinstance(v, str) and not re.match(r"^Segment(\d+_|ation_)", k)}
        header = {"encoding": "gzip", **nrrd_geometry_fields(volume), **check_extra_fields(plain)}
        with atomic_write(path, suffix=suffix) as tmp:
            nrrd.write(str(tmp), np.ascontiguousarray(array), header, index_order="C",
                       compression_level=compression_level(array))
        return path
    import SimpleITK as sitk

    image = Volume(array, volume.spacing, volume.origin, volume.direction).to_sitk()
    with atomic_write(path, suffix=suffix) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), True)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1][:160]
            raise LNQError(f"cannot write {path.name} ({reason}); try another format (.nrrd)") from exc
    return path
