"""Read CT and label volumes (NRRD/.nhdr, NIfTI, MHA/MHD, DICOM folders, DICOM SEG) with their exact grid.

Hostile or broken files end in a one-line LNQError: the voxel count and bytes a header claims are checked
against what the file can hold before any data is read (:func:`check_payload`), a detached data file must
lie in the header's folder, and every grid goes through :func:`lnq_napari.io.volume.check_grid`.
"""

from __future__ import annotations

import bz2
import contextlib
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io import dicom_seg, segfile
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.dicom_headers import (
    ENHANCED_CT_SOP_CLASSES,
    SLICE_TAGS,
    VOLUME_TAGS,
    is_ct_image,
    is_ct_modality,
    is_localizer,
    is_localizer_volume,
    padding_values,
    series_slices,
)
from lnq_napari.io.geometry import align_to, nrrd_geometry, nrrd_geometry_fields, nrrd_spatial_axes
from lnq_napari.io.labels import label_mask
from lnq_napari.io.layout import cd_root
from lnq_napari.io.nrrd_header import custom_fields
from lnq_napari.io.segfile import check_extra_fields, compression_level, write_seg_nrrd
from lnq_napari.io.volume import Volume, check_grid

NRRD_SUFFIXES = (".nrrd", ".nhdr")
SITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nia", ".hdr", ".img", ".img.gz")
MAX_VOXELS = 2**31  # 3.3x the largest LNQ CT (512 x 512 x 656) times 20: anything above is not a CT
GZIP_MAX_RATIO = 1032  # deflate cannot compress more than about 1032:1

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
    if name.endswith(dicom_seg.DICOM_SUFFIXES) or dicom_seg.has_dicom_magic(path):
        return "dicom"
    return "other"


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


def check_payload(name: str, sizes, itemsize: int, encoding: str, stored: int) -> None:
    """LNQError unless ``sizes`` voxels of ``itemsize`` bytes can be held in ``stored`` bytes of the given
    encoding (raw: all of them; gzip: at most 1032:1; text: at least two characters a value) and are at
    most :data:`MAX_VOXELS`. Called before any data is read, so a lying header allocates nothing."""
    sizes = [int(n) for n in sizes]
    if not sizes or any(n <= 0 for n in sizes):
        raise LNQError(f"{name} claims sizes {sizes}; every size must be a positive whole number: the header "
                       "is damaged, re-export or re-download the file")
    voxels = 1
    for n in sizes:
        voxels *= n  # Python ints: no overflow for absurd sizes
    if voxels > MAX_VOXELS:
        raise LNQError(f"{name} claims {voxels:.3g} voxels (sizes {sizes}), more than {MAX_VOXELS:.3g}; "
                       "not a CT of one patient: the header is damaged, re-export or re-download the file")
    needed = voxels * itemsize
    bound = {"raw": stored, "gzip": stored * GZIP_MAX_RATIO + 64, "gz": stored * GZIP_MAX_RATIO + 64,
             "ascii": (stored + 1) // 2 * itemsize, "text": (stored + 1) // 2 * itemsize,
             "txt": (stored + 1) // 2 * itemsize, "hex": stored // 2}.get(encoding)
    if bound is not None and needed > bound:
        raise LNQError(f"{name} claims {needed} bytes of voxels (sizes {sizes}) but holds only {stored} "
                       f"bytes of {encoding} data; the file is truncated or its header is wrong: re-export "
                       "or re-download it")


def _nrrd_data_file(path: Path, header: dict) -> Path | None:
    """The detached data file of a .nhdr (None when attached); LNQError when it lies outside the header's
    folder or names several files."""
    value = header.get("data file", header.get("datafile"))
    if value is None:
        return None
    value = str(value).strip()
    if value.upper().startswith("LIST") or len(value.split()) > 1:
        raise LNQError(f"{path.name} spreads its data over several files ({value[:60]!r}); lnq-napari reads "
                       "one data file: re-save the image as a single .nrrd")
    folder = path.resolve().parent
    target = (folder / value).resolve()
    if not target.is_relative_to(folder):
        raise LNQError(f"{path.name} points to a data file outside its folder ({value[:60]!r}); keep the "
                       ".nhdr and its data file in one folder and name the data file without a path")
    if not target.is_file():
        raise LNQError(f"{path.name}: data file {value[:60]!r} not found; keep the .nhdr next to its data "
                       "file")
    return target


def _check_nrrd_payload(path: Path, header: dict, data_start: int) -> None:
    """Sizes, type and encoding of a NRRD header against the bytes its data file holds (before reading)."""
    from nrrd.reader import _determine_datatype  # pynrrd's own NRRD type -> numpy dtype table

    itemsize = _determine_datatype(header).itemsize
    data_file = _nrrd_data_file(path, header)
    source = data_file or path
    skip = int(header.get("byte skip", header.get("byteskip", 0)))
    stored = source.stat().st_size - (0 if data_file else data_start) - max(skip, 0)
    encoding = str(header.get("encoding", "")).lower()
    if len(header.get("sizes", ())) != int(header.get("dimension", -1)):
        raise LNQError(f"{path.name} lists {len(header.get('sizes', ()))} sizes for dimension "
                       f"{header.get('dimension')}; the header is damaged: re-export or re-download the file")
    if encoding in ("bzip2", "bz2"):  # bzip2 compresses zeros a million-fold: count the stream instead
        total = 0
        with open(source, "rb") as handle:
            handle.seek(0 if data_file else data_start)
            decomp = bz2.BZ2Decompressor()
            while not decomp.eof and (block := handle.read(1 << 20)):
                total += len(decomp.decompress(block))
        encoding, stored = "raw", total
    check_payload(path.name, header.get("sizes", ()), itemsize, encoding, stored)


def _read_nrrd(path: Path) -> RawImage:
    import nrrd

    try:
        with open(path, "rb") as handle:
            header = nrrd.read_header(handle)
            data_start = handle.tell()
        _check_nrrd_payload(path, header, data_start)
        data = _fast_nrrd_data(path, header)
        if data is None:
            data, header = nrrd.read(str(path), index_order="C")
    except LNQError:
        raise
    except FileNotFoundError as exc:  # a detached header naming a missing data file
        raise LNQError(f"{path.name}: data file {exc.filename} not found; keep the .nhdr next to its data "
                       "file") from exc
    except Exception as exc:  # NRRDError, zlib/bz2 errors, UnicodeDecodeError, ValueError ...
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise LNQError(f"cannot read {path.name} as NRRD ({reason}); the file is truncated, damaged or not "
                       "an NRRD image: re-export or re-download it") from exc
    dim = int(header["dimension"])
    if dim < 3:
        raise LNQError(f"{path.name} is {dim}D; a CT or label volume must be 3D")
    spacing, origin, direction = nrrd_geometry(header, path.name)
    spatial = nrrd_spatial_axes(header)
    c_spatial = [dim - 1 - a for a in spatial]  # pynrrd C order reverses the header's axes
    others = [a for a in range(dim) if a not in c_spatial]
    array = np.moveaxis(data, others, list(range(len(others)))) if others else data
    if array.ndim > 4:
        raise LNQError(f"{path.name} is {dim}D; a CT or label volume must be 3D")
    return RawImage(_native(array), spacing, origin, direction, custom_fields(header))


# where a NIfTI-1 / NIfTI-2 header keeps its geometry: (offset, struct format) of pixdim, then quatern b c d
# with qoffset x y z, then the three srow rows
_NIFTI_GEOMETRY = {348: ((76, "8f"), (256, "6f"), (280, "12f")),
                   540: ((104, "8d"), (352, "6d"), (400, "12d"))}


def _check_nifti_geometry(header: bytes, name: str) -> None:
    """LNQError for a NaN or infinite spacing, quaternion or affine in a NIfTI header, before SimpleITK
    sees it (its reader loops forever on a NaN in the sform)."""
    for endian in "<>":
        if len(header) >= 4 and struct.unpack(endian + "i", header[:4])[0] in _NIFTI_GEOMETRY:
            fields = _NIFTI_GEOMETRY[struct.unpack(endian + "i", header[:4])[0]]
            break
    else:
        return
    try:
        values = [v for offset, fmt in fields for v in struct.unpack_from(endian + fmt, header, offset)]
    except struct.error:
        return  # a short header: SimpleITK refuses it
    if not np.all(np.isfinite(values[1:4] + values[8:])):
        raise LNQError(f"{name} has a NaN or infinite value in its spacing or orientation (NIfTI pixdim, "
                       "qform or sform); the header is damaged: re-export or re-download the file")


#: Where a NIfTI-1 / NIfTI-2 header keeps its sform code.
_NIFTI_SFORM_CODE = {348: (254, "h"), 540: (348, "i")}


def _nifti_sform(header: bytes) -> tuple[tuple, tuple, tuple] | None:
    """(spacing, origin, direction) in LPS of a NIfTI header's sform when its code is set, else None."""
    try:
        for endian in "<>":
            size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
            if size in _NIFTI_SFORM_CODE and len(header) >= size:
                offset, fmt = _NIFTI_SFORM_CODE[size]
                if struct.unpack_from(endian + fmt, header, offset)[0] <= 0:
                    return None
                at, rows = _NIFTI_GEOMETRY[size][2]
                affine = np.asarray(struct.unpack_from(endian + rows, header, at), dtype=float).reshape(3, 4)
                break
        else:
            return None
    except struct.error:
        return None
    affine[:2] *= -1.0  # RAS -> LPS
    steps, origin = affine[:, :3], affine[:, 3]
    spacing = np.linalg.norm(steps, axis=0)
    if not np.all(np.isfinite(affine)) or np.any(spacing <= 0):
        return None
    return tuple(spacing), tuple(origin), tuple((steps / spacing).ravel())


def _sform_differences(raw: RawImage, sform: tuple[tuple, tuple, tuple]) -> list[str]:
    """What the pixdim / qform grid ``raw`` and the sform give differently: spacing, origin, direction."""
    spacing, origin, direction = (np.asarray(v, dtype=float) for v in sform)
    same = (np.allclose(raw.spacing, spacing, rtol=1e-3), np.allclose(raw.origin, origin, atol=1e-2),
            np.allclose(raw.direction, direction, atol=1e-3))
    return [what for what, ok in zip(("spacing", "origin", "direction"), same) if not ok]


def _nifti_unplaced(header: bytes) -> bool:
    """Whether a NIfTI-1 header sets neither a qform nor an sform (its place in space is unknown)."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            return struct.unpack_from(endian + "2h", header, 252) == (0, 0)
    return False


def _nifti_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1/2 single file's voxel data ends, from its header; None if unknown."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = struct.unpack(endian + "f", header[108:112])[0]
            if not np.isfinite(offset):
                return None  # SimpleITK then refuses the header itself
            offset = int(offset)
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


def _check_nifti_complete(path: Path) -> bytes | None:
    """SimpleITK reads a truncated NIfTI silently (zeros); compare the stored size with the header's.
    A header with a non-finite geometry is refused first. Returns the header read (None: not NIfTI)."""
    import gzip

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                header = handle.read(540)
            with open(path, "rb") as handle:
                handle.seek(-4, 2)
                stored = struct.unpack("<I", handle.read(4))[0]  # gzip trailer: size mod 2**32
            _check_nifti_geometry(header, path.name)
            end = _nifti_data_end(header)
            complete = end is None or stored == end % 2**32
            if not complete:  # the trailer only counts the last member of a multi-member gzip: count all
                complete = _gzip_length(path) >= end
        else:
            with open(path, "rb") as handle:
                header = handle.read(540)
            _check_nifti_geometry(header, path.name)
            end = _nifti_data_end(header)
            complete = end is None or path.stat().st_size >= end
    except (OSError, EOFError, struct.error) as exc:
        raise LNQError(f"cannot read {path.name} ({exc}); the file is truncated or damaged: re-export or "
                       "re-download it") from exc
    if not complete:
        raise LNQError(f"cannot read {path.name} (it holds less data than its header announces); the file is "
                       "truncated: re-export or re-download it")
    return header


def _nifti_version(header: bytes) -> int | None:
    """1 or 2 by a NIfTI header's first field (its size: 348 or 540 bytes, either byte order)."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else None
        if size in (348, 540):
            return 1 if size == 348 else 2
    return None


def _read_sitk_file(path: Path) -> RawImage:
    import SimpleITK as sitk

    header = _check_nifti_complete(path)
    nifti = header is not None
    with _itk_quiet() if nifti else contextlib.nullcontext():  # ITK's warning lines: ours follow
        try:
            _check_sitk_payload(path)
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                raise _unreadable(path, exc) from exc
        except LNQError:
            if nifti and _nifti_version(header) == 2:  # not damaged: a format this SimpleITK does not read
                raise LNQError(f"{path.name} is a NIfTI-2 file, which SimpleITK cannot read; save it as "
                               "NIfTI-1 (.nii.gz) or NRRD, e.g. with nibabel or 3D Slicer") from None
            raise
    raw = _from_sitk_image(image, path.name)
    sform = _nifti_sform(header) if nifti else None
    differ = _sform_differences(raw, sform) if sform is not None else []
    if differ:
        said = {"spacing": f"spacing {', '.join(f'{v:.4g}' for v in sform[0])} mm",
                "origin": f"origin {', '.join(f'{v:.4g}' for v in sform[1])} mm",
                "direction": "its direction"}
        read = "; ".join(said[d] for d in differ)
        warnings.warn(f"{path.name}: its sform and its pixdim / qform give different grids "
                      f"({', '.join(differ)}); read by the sform ({read}), as the NIfTI standard and nibabel "
                      "do: check the file's header", UserWarning, stacklevel=3)
        raw = RawImage(raw.array, *sform, raw.meta)
    elif nifti and _nifti_unplaced(header):
        warnings.warn(f"{path.name} sets neither a qform nor an sform: its place in space is unknown (read "
                      "at origin 0, axes as stored); labels from other files may not line up with it",
                      UserWarning, stacklevel=3)
    return raw


def _unreadable(path: Path, exc: RuntimeError) -> LNQError:
    """The one-line error for a file SimpleITK cannot read."""
    reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
    return LNQError(f"cannot read {path.name} ({reason}); the file is truncated, damaged or not a supported "
                    "image (NRRD, NIfTI, MHA/MHD, DICOM folder): re-export or re-download it")


def _check_sitk_payload(path: Path) -> None:
    """The size a NIfTI/MHA/MHD header claims, read without its data, against the file's bytes (data may be
    zlib-compressed: at most 1032:1); a .mhd's data file must lie in its folder."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _unreadable(path, exc) from exc
    stored = path.stat().st_size
    if path.name.lower().endswith(".mhd"):
        stored = _mhd_data_file(path).stat().st_size
    components = max(1, reader.GetNumberOfComponents())
    try:  # bytes of one value of the pixel type, from a 1-voxel image of that type
        itemsize = sitk.Image([1] * 3, reader.GetPixelID(), components).GetSizeOfPixelComponent()
    except RuntimeError:
        itemsize = 1
    check_payload(path.name, list(reader.GetSize()) + [components], itemsize, "gzip", stored)


def _mhd_data_file(path: Path) -> Path:
    """The data file an .mhd names (``ElementDataFile``), refused when outside the header's folder or when
    the data lie in several files (``LIST`` or a ``%d`` pattern: a file per slice)."""
    fields = {}
    for line in path.read_text(errors="replace").splitlines()[:200]:
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip()
    value = fields.get("elementdatafile", "")
    if value.upper() == "LOCAL":
        return path
    if value.split()[:1] == ["LIST"] or "%" in value:  # a file per slice, listed or by a pattern
        raise LNQError(f"{path.name} spreads its data over several files ({value[:60]!r}); lnq-napari reads "
                       "one data file: re-save the image as a single .mha or .nrrd (e.g. in 3D Slicer)")
    folder = path.resolve().parent
    target = (folder / value).resolve()
    if not value or len(value.split()) > 1 or not target.is_relative_to(folder) or not target.is_file():
        raise LNQError(f"{path.name} names the data file {value[:60]!r}, which is not a file in its folder; "
                       "keep the .mhd and its .raw in one folder and name the data file without a path")
    return target


def _from_sitk_image(image, name: str) -> RawImage:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # one time point: its volume
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise LNQError(f"{name} is {dim}D; a CT or label volume must be 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LNQError(f"{name} has {image.GetNumberOfComponentsPerPixel()} values per voxel (a colour or "
                       "vector image); a CT volume must be scalar")
    return RawImage(_native(sitk.GetArrayFromImage(image)), image.GetSpacing(), image.GetOrigin(),
                    image.GetDirection(), {})


def _read_dicom(path: Path, series_uid: str | None = None) -> RawImage:
    """The CT series in a folder (or the series of a file): ``series_uid`` when given, else the file's
    or the largest CT series (without one, a CT whose slices all say LOCALIZER that forms a volume; a PET,
    scout or dose screen only when there is no CT, a PET or MR with a warning); its Series and Frame of
    Reference UIDs go into ``meta``; a slice's declared pixel padding reads below air
    (:func:`_padding_below_air`)."""
    import SimpleITK as sitk

    path = cd_root(path)  # a CD's index: the folder it indexes
    folder = path if path.is_dir() else path.parent
    reader = sitk.ImageSeriesReader()
    try:
        with _itk_quiet():  # a folder without DICOM: ITK's own warning lines, then ours
            series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series = ()
    if path.is_dir() and series and dicom_seg.loose_segs(folder):  # SEGs beside series folders: none here
        series = ()
    if not series and path.is_dir():  # a CD export (DICOMDIR) or a TCIA download: series folders below
        try:
            below = [f for _, f in dicom_seg.ct_series_inputs(folder.name, folder) if f != folder]
        except LNQError:
            below = []
        if len(below) == 1:
            return _read_dicom(below[0], series_uid)
        if below:
            named = ", ".join(str(f.relative_to(folder)) for f in below[:3]) + \
                (" ..." if len(below) > 3 else "")
            raise LNQError(f"{folder} holds {len(below)} DICOM CT series in the folders below it ({named}); "
                           "point to one series folder, or give the folder to lnq-napari predict, which "
                           "reads every series")
    if not series and path.is_file():
        raise LNQError(_no_ct_image(path))
    if not series:
        raise LNQError(f"{folder} is a folder without a DICOM series; point to a CT file "
                       "(.nrrd, .nii.gz, .mha) or to a folder holding the DICOM slices of one series")
    if path.is_dir():  # opened as one CT (napari, view, measure --ct): refused as predict refuses it
        dicom_seg.refuse_series_below(folder)
    files_by_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    first = {sid: _series_header(files) for sid, files in files_by_series.items()}
    images = {sid: 0 if first[sid].sop_class in dicom_seg.SEG_SOP_CLASSES else len(files) * first[sid].frames
              for sid, files in files_by_series.items()}  # slices, an enhanced CT's frames; a SEG none
    volume = {sid: first[sid].ct_image for sid in series}  # a PET, scout or dose screen: read if alone
    slices: dict[str, tuple[list[str], list]] = {}  # (:func:`_series_slices`) of the series compared

    if series_uid in files_by_series:
        sid = series_uid
    elif not path.is_dir():
        chosen = [sid for sid, files in files_by_series.items()
                  if any(Path(f).resolve() == path.resolve() for f in files)]
        if not chosen:  # an RT structure set, a dose report ...: not the CT beside it
            raise LNQError(_no_ct_image(path))
        sid = chosen[0]
    else:  # the largest CT series (else the largest), of several counted as read: scouts, copies left out
        patients = sorted({_patient_id(files[0]) for files in files_by_series.values()} - {""})
        if len(patients) > 1:  # which one is meant cannot be told, and the case is named by the folder
            named = ", ".join(patients[:4]) + (" ..." if len(patients) > 4 else "")
            raise LNQError(f"{folder} holds the DICOM series of {len(patients)} patients ({named}); give "
                           "each patient's series a folder of its own")
        pool = [o for o in series if volume[o]]
        if not pool:  # a CT whose every slice says LOCALIZER (some exports mark it so), not a PET beside it
            slices = _localizer_volumes(files_by_series, first, images)
            pool = list(slices)
            volume.update(dict.fromkeys(pool, True))
        pool = pool or [o for o in series if images[o]] or list(series)
        if len(pool) > 1 and not slices:
            slices = {o: _series_slices(files_by_series[o]) for o in pool if images[o]}
        images.update({o: len(files) * first[o].frames for o, (files, _) in slices.items()})
        sid = max(pool, key=images.get)
        others = "; ".join(f"{_series_description(files_by_series[o][0])} ({images[o]})"
                           for o in pool if o != sid)
        if others:  # another CT (a lung-kernel reconstruction): which one is read is said
            kind = "CT series" if volume[sid] else "series"
            warnings.warn(f"{folder} holds {len(pool)} DICOM {kind}; reading the largest, "
                          f"{_series_description(files_by_series[sid][0])} ({images[sid]} "
                          f"slices, series {sid}), not {others}: to read another, give a folder holding "
                          "only its slices", UserWarning, stacklevel=3)
        if not first[sid].ct_modality:  # a PET or MR alone: read, but not taken for a CT without a word
            warnings.warn(f"{folder} holds no DICOM CT series; reading "
                          f"{_series_description(files_by_series[sid][0])} (modality "
                          f"{first[sid].modality or 'unknown'}) as if it were a CT, which it is not: point "
                          "to the folder of the patient's CT", UserWarning, stacklevel=3)
    files, headers = slices.get(sid) or _series_slices(files_by_series[sid])
    head = first[sid]
    if _enhanced(head.sop_class, head.frames):
        if len(files) > 1:
            raise LNQError(f"{folder.name} holds an enhanced (multi-frame) DICOM CT split over "
                           f"{len(files)} files; lnq-napari reads one enhanced file holding every frame, or "
                           "a classic series (a file per slice): convert it, e.g. with dcm2niix to NIfTI, or "
                           "export the series as one enhanced file or as single frames from the PACS")
        raw = _read_enhanced(Path(files[0]), folder.name)
    else:
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()  # each slice's position, for the spacing check
        if _fractional_rescale(headers):  # else ITK rounds a later slice's HU to the first slice's type
            reader.SetOutputPixelType(sitk.sitkFloat32)
        image = _execute_series(reader, folder)
        _check_dicom_slices(_slice_tags(reader.HasMetaDataKey, reader.GetMetaData, len(files)), folder.name)
        _check_dicom_pixels(reader.HasMetaDataKey, reader.GetMetaData, len(files), folder.name)
        raw = _from_sitk_image(image, folder.name)
        raw.array = _padding_below_air(raw.array, headers)
    raw.meta["dicom_series_uid"] = sid
    if head.frame_of_reference:
        raw.meta["dicom_frame_of_reference"] = head.frame_of_reference
    raw.array = _compact_hu(raw.array)
    return raw


#: What scanners write outside the scan circle (HU), far below anything measured
#: (:data:`lnq_napari.anatomy.OUTSIDE_VIEW_HU`): a slice's declared padding reads as this where its own HU
#: lie above every value a CT measures (:func:`_padding_below_air`).
PADDING_HU = -3024
#: The top of a 12-bit CT's range (4095 - 1024 HU). A padding reading at or below it is left as stored: air
#: (-1000, -1024; genuine air clamped at the range's bottom holds it too, and the anatomy finds such padding
#: on its circle), already below anything measured (-2000, -3024), or a tag that would punch tissue (a
#: padding of 0 with intercept 0 is water).
CT_TOP_HU = 3071.0


def _padding_below_air(array: np.ndarray, headers: list) -> np.ndarray:
    """A classic series' HU (z y x, slice k read from ``headers[k]``'s file) with the voxels each slice
    declares padding (:func:`.dicom_headers.padding_values`, through that slice's rescale) at
    :data:`PADDING_HU` when the whole padding reads above :data:`CT_TOP_HU`: unsigned pixels padded with
    63536 (-2000 as 16 bits) read as +62512 HU with intercept -1024, a bright ring around the body. A slice
    without the tag keeps its values (it speaks of its own image)."""
    for k, header in enumerate(headers):
        stored = padding_values(header) if header is not None else None
        rescale = _rescale(header) if stored is not None else None
        if rescale is None:
            continue
        slope, intercept = rescale
        low, high = sorted(v * slope + intercept for v in stored)
        if low <= CT_TOP_HU:
            continue
        half = abs(slope) / 2  # ITK rescales in the output type: a stored value lies within half a step
        padded = (array[k] > low - half) & (array[k] < high + half)
        if padded.any():
            if array.dtype.kind == "u" or array.dtype.itemsize < 2:  # unsigned or int8: -3024 must fit
                array = array.astype(np.int32)
            array[k][padded] = PADDING_HU
    return array


def _rescale(header) -> tuple[float, float] | None:
    """A slice header's (slope, intercept) (1 and 0 where not given); None when unreadable."""
    try:
        return float(header.get("RescaleSlope") or 1), float(header.get("RescaleIntercept") or 0)
    except (TypeError, ValueError):
        return None


def _compact_hu(array: np.ndarray) -> np.ndarray:
    """A DICOM CT's HU as int16 when they are whole numbers in its range (as in LNQ's files), else as
    float32 at most (SimpleITK reads int32, or float32 for a fractional rescale: twice the memory)."""
    if not array.size or array.dtype.itemsize <= 2:
        return array
    lo, hi = array.min(), array.max()
    fits = np.iinfo(np.int16).min <= lo and hi <= np.iinfo(np.int16).max
    whole = array.dtype.kind in "iu" or all(np.array_equal(plane, np.round(plane)) for plane in array)
    if fits and whole:
        return array.astype(np.int16)
    return array.astype(np.float32) if array.dtype.kind == "f" and array.dtype.itemsize > 4 else array


def _no_ct_image(path: Path) -> str:
    """The error for a DICOM file that is no image of a series (an RT structure set, a report)."""
    import pydicom

    try:
        modality = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
                       .get("Modality", "")) or "unknown"
    except Exception:  # not DICOM at all
        modality = "not DICOM"
    return (f"{path.name} is no image of a CT series (modality {modality}); open the CT's folder or one of "
            "its slices")


def dicom_source(path: str | Path) -> Path:
    """What a DICOM CT input stands for, and is named and saved beside by: a CD's DICOMDIR its root, a
    slice of a classic series its series folder (every slice of a series names one case); an enhanced
    CT's one file, a folder or any other file itself."""
    path = cd_root(path)
    if path.is_file() and dicom_seg.is_dicom_path(path):
        head = _first_file_header(str(path))
        if head.sop_class and not _enhanced(head.sop_class, head.frames) \
                and head.sop_class not in dicom_seg.SEG_SOP_CLASSES:
            return path.parent
    return path


def _patient_id(file: str) -> str:
    """The Patient ID in a DICOM file's header ("" when it has none or cannot be read)."""
    import pydicom

    try:
        header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["PatientID"])
        return str(header.get("PatientID", ""))
    except Exception:  # the series is read next, and refused there when damaged
        return ""


def _series_description(file: str) -> str:
    """A series' description and kernel from one of its files ("series" when it gives neither)."""
    import pydicom

    try:
        header = pydicom.dcmread(file, stop_before_pixels=True)
    except Exception:  # the series is read next, and refused there when damaged
        return "series"
    kernel = header.get("ConvolutionKernel", "")
    kernel = "/".join(kernel) if isinstance(kernel, (list, pydicom.multival.MultiValue)) else str(kernel)
    text = " ".join(t for t in (str(header.get("SeriesDescription", "")).strip(), kernel.strip()) if t)
    return f"'{text}'" if text else "series"


def _localizer_volumes(files_by_series: dict[str, list[str]], first: dict, images: dict) -> dict:
    """Of series none of which is a CT image, those of a CT whose slices, every one marked LOCALIZER, form a
    volume (:func:`.dicom_headers.is_localizer_volume`; a scout does not): series UID ->
    :func:`_series_slices`."""
    found = {}
    for sid, files in files_by_series.items():
        if images[sid] and first[sid].ct_modality:
            files, headers = _series_slices(files)
            if is_localizer_volume(headers):
                found[sid] = (files, headers)
    return found


class FileHeader(NamedTuple):
    """What a series' first slice says of the series (the defaults where it does not say or cannot be read:
    the series reader then names what is wrong)."""

    sop_class: str = ""
    frames: int = 1
    frame_of_reference: str = ""
    localizer: bool = False  # a scout, topogram or survey
    ct_image: bool = False  # :func:`.dicom_headers.is_ct_image`: of several series, the one to read
    ct_modality: bool = False  # :func:`.dicom_headers.is_ct_modality`: a CT's image, a localizer or not
    modality: str = ""


def _series_header(files: list[str]) -> FileHeader:
    """The :class:`FileHeader` of a series' first slice (:func:`_series_slices`): its first file that is no
    localizer (a scout filed in the series may come first), headers read until one turns up; the first
    file when all are."""
    headers = (_first_file_header(file) for file in files)
    first = next(headers)
    return next((h for h in headers if not h.localizer), first) if first.localizer else first


def _first_file_header(file: str) -> FileHeader:
    """The :class:`FileHeader` of one DICOM file, read without its pixels."""
    import pydicom

    try:
        header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=[
            "SOPClassUID", "NumberOfFrames", "FrameOfReferenceUID", "ImageType", "Modality"])
        frames = int(header.get("NumberOfFrames", 1) or 1)
        sop_class = str(header.get("SOPClassUID", ""))
    except Exception:  # unreadable or a bad frame count: the series reader says so
        return FileHeader()
    return FileHeader(sop_class, frames, str(header.get("FrameOfReferenceUID", "")).strip(),
                      is_localizer(header), is_ct_image(header), is_ct_modality(header),
                      str(header.get("Modality", "") or "").strip())


#: What a series' headers are read for: its slices (:data:`.dicom_headers.SLICE_TAGS`), their stack and
#: padding (:data:`.dicom_headers.VOLUME_TAGS`), their rescale to HU.
_SLICE_HEADER_TAGS = [*SLICE_TAGS, *VOLUME_TAGS, "RescaleSlope", "RescaleIntercept"]


def _series_slices(files: list[str]) -> tuple[list[str], list]:
    """The files of a series that are its slices, in order (:func:`.dicom_headers.series_slices`), and
    each one's header (:data:`_SLICE_HEADER_TAGS`, no pixels; None: unreadable)."""
    import pydicom

    headers = []
    for file in files:
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True, specific_tags=_SLICE_HEADER_TAGS))
        except Exception:  # the series reader says what is wrong with it
            headers.append(None)
    kept = series_slices(list(zip(files, headers, strict=True)), headers)
    return [file for file, _ in kept], [header for _, header in kept]


def _fractional_rescale(headers: list) -> bool:
    """Whether a slice's rescale slope or intercept (:func:`_series_slices`' headers) is fractional: ITK
    reads a series in the type the first slice's rescale gives, so a later slice's fractional HU were
    rounded (up to 1 HU off) unless the series is read as float."""
    for header in (h for h in headers if h is not None):
        for keyword in ("RescaleSlope", "RescaleIntercept"):
            try:
                value = float(header.get(keyword) or 0)
            except (TypeError, ValueError):  # not a number: the series reader says what is wrong
                continue
            if not value.is_integer():
                return True
    return False


def _enhanced(sop_class: str, frames: int) -> bool:
    """Whether a file of that SOP class and frame count is an enhanced (multi-frame) CT."""
    return sop_class in ENHANCED_CT_SOP_CLASSES or frames > 1


def _read_enhanced(file: Path, name: str, pixels: bool = True) -> RawImage:
    """An enhanced (multi-frame) DICOM CT in HU, its grid taken from the frames' functional groups by
    highdicom, which refuses frames that are missing, unevenly spaced or tilted; slices ordered along the
    normal of their rows and columns, as a classic series reads. ``pixels=False``: its grid only, over an
    all-zero read-only array (no frame decoded)."""
    import highdicom

    fix = "convert it, e.g. with dcm2niix to NIfTI, or re-export the series"
    try:
        image = highdicom.imread(file, lazy_frame_retrieval=True)
        geometry = image.get_volume_geometry()
    except Exception as exc:  # highdicom raises ValueError/RuntimeError/AttributeError for such headers
        raise LNQError(f"{name}: the header of its enhanced (multi-frame) DICOM CT cannot be read "
                       f"({_first_line(exc)}); {fix}") from None
    if geometry is None or len(geometry.spatial_shape) != 3:
        raise LNQError(f"{name}: the frames of its enhanced (multi-frame) DICOM CT do not form one evenly "
                       f"spaced volume (a frame missing, doubled or tilted); {fix}")
    if pixels:
        try:
            array = image.get_volume(dtype=np.float32, apply_modality_transform=True).array
        except Exception as exc:  # truncated or undecodable pixel data
            raise LNQError(f"{name}: the pixel data of its enhanced (multi-frame) DICOM CT cannot be decoded "
                           f"({_first_line(exc)}); {fix}") from None
    else:
        array = np.broadcast_to(np.float32(0), geometry.spatial_shape)
    steps, position = geometry.affine[:3, :3], geometry.affine[:3, 3]
    frame, row, column = steps[:, 0], steps[:, 1], steps[:, 2]
    if np.dot(frame, np.cross(column, row)) < 0:  # stacked against the normal: turned as SimpleITK reads
        position, frame, array = position + frame * (array.shape[0] - 1), -frame, array[::-1]
    spacing = tuple(float(np.linalg.norm(v)) for v in (column, row, frame))
    direction = np.stack([column / spacing[0], row / spacing[1], frame / spacing[2]], axis=1)
    return RawImage(array if not pixels else np.ascontiguousarray(_compact_hu(array)), spacing,
                    tuple(float(v) for v in position), tuple(float(v) for v in direction.ravel()), {})


def _first_line(exc: Exception) -> str:
    """An exception's first line without its full stop, or its type's name when it has no text."""
    return (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")


def _slice_tags(has, get, count: int) -> tuple[list, list]:
    """Each slice's Image Position and Image Orientation (Patient) as float arrays (None where missing or
    unreadable), from ``has(index, tag)`` / ``get(index, tag)`` over ``count`` slices."""
    def numbers(index: int, tag: str) -> np.ndarray | None:
        if not has(index, tag):
            return None
        try:
            return np.asarray([float(v) for v in get(index, tag).split("\\")], dtype=float)
        except ValueError:
            return None

    return [numbers(i, "0020|0032") for i in range(count)], [numbers(i, "0020|0037") for i in range(count)]


def _header_slice_tags(files: list[str], headers: list) -> tuple[list, list]:
    """:func:`_slice_tags` of a series' files from their headers (:func:`_series_slices`, read once for
    both); LNQError for a file whose header cannot be read."""
    def numbers(header, keyword: str) -> np.ndarray | None:
        try:
            values = header.get(keyword)
            return None if values is None else np.asarray([float(v) for v in values], dtype=float)
        except (TypeError, ValueError):  # one number, or not numbers
            return None

    for file, header in zip(files, headers, strict=True):
        if header is None:
            raise LNQError(f"cannot read {Path(file).name} as DICOM; the file is truncated or damaged: "
                           "re-export or re-download the series")
    return ([numbers(h, "ImagePositionPatient") for h in headers],
            [numbers(h, "ImageOrientationPatient") for h in headers])


def _check_dicom_slices(tags: tuple[list, list], name: str) -> None:
    """LNQError when the slices of a series (their positions and orientations, :func:`_slice_tags`) are
    not one evenly spaced stack: a slice missing, two at one position, or orientations that differ
    (SimpleITK would silently average the spacing)."""
    positions, orientations = tags
    fix = "re-export the complete series (one acquisition, every slice) from the PACS or scanner"
    placeless = sum(p is None or p.size != 3 for p in positions)
    if len(positions) >= 2 and placeless:
        raise LNQError(f"{placeless} of the {len(positions)} DICOM slices in {name} lack their position "
                       f"(Image Position (Patient)), so the slices cannot be placed; {fix}")
    unoriented = sum(o is None or o.size != 6 for o in orientations)
    if 0 < unoriented < len(orientations):
        raise LNQError(f"{unoriented} of the {len(orientations)} DICOM slices in {name} lack their "
                       f"orientation (Image Orientation (Patient)), so they cannot be checked as one "
                       f"stack; {fix}")
    if len(positions) < 3 or unoriented:
        return  # nothing to compare (the grid check still applies)
    if any(o is None or o.size != 6 or not np.allclose(o, orientations[0], atol=1e-3) for o in orientations):
        raise LNQError(f"the DICOM slices in {name} do not share one orientation (mixed series); {fix}")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    _check_not_tilted(np.asarray(positions), normal, name)
    gaps = np.diff(np.sort(np.asarray(positions) @ normal))
    if gaps.min() < 1e-3:
        raise LNQError(f"the DICOM series in {name} has two slices at one position (duplicated or mixed "
                       f"slices); {fix}")
    # 1 % of the spacing, or 0.1 mm: positions stored to 0.1 mm (some exports round them) alternate by that
    if gaps.max() - gaps.min() > max(0.1 + 1e-6, 0.01 * float(np.median(gaps))):
        raise LNQError(f"the DICOM slices in {name} are unevenly spaced (gaps {gaps.min():.3g} to "
                       f"{gaps.max():.3g} mm): a slice is missing or the series mixes acquisitions; {fix}")


def _check_dicom_pixels(has, get, count: int, name: str) -> None:
    """LNQError when a series' slices would not read as HU on one grid: MONOCHROME1 (read inverted), a
    rescale slope or intercept on some slices only (the others read unrescaled), pixel spacings that
    differ; a warning when no slice gives its pixel spacing (read as 1 mm)."""
    def values(tag: str) -> list[str | None]:
        return [get(i, tag).strip() if has(i, tag) else None for i in range(count)]

    fix = "re-export the series from the PACS or scanner"
    if any(v == "MONOCHROME1" for v in values("0028|0004")):
        raise LNQError(f"the DICOM slices in {name} are MONOCHROME1 (inverted grey scale), which would read "
                       f"as inverted HU; convert the series to MONOCHROME2 (e.g. gdcmconv) or {fix}")
    for tag, what in (("0028|1052", "rescale intercept"), ("0028|1053", "rescale slope")):
        missing = sum(v is None for v in values(tag))
        if 0 < missing < count:
            raise LNQError(f"{missing} of the {count} DICOM slices in {name} lack their {what}, so they "
                           f"would not read in HU like the others; {fix}")
    spacings = values("0028|0030")
    if all(v is None for v in spacings):
        warnings.warn(f"the DICOM slices in {name} give no pixel spacing; taken as 1 x 1 mm, so node sizes "
                      "and the model's view of the CT are wrong unless it is: re-export with the spacing",
                      UserWarning, stacklevel=4)
        return
    try:
        numbers = [None if v is None else [float(x) for x in v.split("\\")] for v in spacings]
    except ValueError:
        return  # unreadable: SimpleITK's grid check names it
    first = next(n for n in numbers if n is not None)
    if any(n is None or len(n) != len(first) or not np.allclose(n, first, atol=1e-4) for n in numbers):
        raise LNQError(f"the DICOM slices in {name} do not share one pixel spacing (mixed series or "
                       f"reconstructions); {fix}")


#: How far (mm) a slice may lie beside the line through the first slice along the slices' normal: more is a
#: tilted stack (gantry tilt), which a volume of orthogonal axes would misplace.
MAX_SLICE_DRIFT_MM = 1.0


def _check_not_tilted(positions: np.ndarray, normal: np.ndarray, name: str) -> None:
    """LNQError when the slice positions drift sideways along the stack (a gantry-tilted acquisition):
    read as a volume, its far slices would lie that far from where the scanner put them."""
    offsets = positions - positions[0]
    sideways = offsets - np.outer(offsets @ normal, normal)
    drift = float(np.linalg.norm(sideways, axis=1).max())
    if drift > MAX_SLICE_DRIFT_MM:
        along = float(np.ptp(offsets @ normal))
        angle = float(np.degrees(np.arctan2(drift, along))) if along > 0 else 90.0
        raise LNQError(f"the DICOM series in {name} is tilted (gantry tilt about {angle:.1f} degrees: its "
                       f"slices drift {drift:.1f} mm sideways along the stack), which a volume would "
                       "misplace; resample it to an untilted stack first (dcm2niix or 3D Slicer correct "
                       "gantry tilt)")


@dicom_seg.one_scan()
def read_raw(path: str | Path, series_uid: str | None = None) -> RawImage:
    """The image as stored, keeping a 4th list/layer axis first if the file has one; its grid checked.
    ``series_uid``: of a DICOM folder holding several series, the one to read (else the largest CT
    series)."""
    raw = _read_any(path, series_uid)
    check_grid(raw.spacing, raw.origin, raw.direction, Path(path).name)
    return raw


def _read_any(path: str | Path, series_uid: str | None = None) -> RawImage:
    path = _existing(path)
    kind = file_format(path)
    if kind == "dicom":
        seg = dicom_seg.seg_file(path)
        if seg is not None:  # a DICOM SEG: its mask on its CT's grid
            labels = _read_dicom_seg(seg)
            return RawImage(labels.array, labels.spacing, labels.origin, labels.direction, labels.meta)
        return _read_dicom(path, series_uid)
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


def read_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a 3D image (CT) with its grid: NRRD (.nrrd, .nhdr), NIfTI, MHA/MHD or a DICOM series folder.

    NRRD custom header fields (``key:=value``) are kept as strings in ``Volume.meta``. ``series_uid``: of
    a DICOM folder holding several series, the one to read (else the largest CT series).
    """
    raw = read_raw(path, series_uid)
    if raw.layered and raw.array.shape[0] == 1:  # a 4D file with one component or time point: its volume
        return raw.volume(raw.array[0])
    if raw.layered:
        name = Path(path).name
        raise LNQError(f"{name} is 4D ({raw.array.shape[0]} layers/components); a CT volume must be 3D "
                       "(a 3D Slicer segmentation with layers is a label file: give it where labels go)")
    return raw.volume()


@dicom_seg.one_scan()
def read_labels(path: str | Path, reference: Volume | None = None,
                segment: str | int | None = None) -> Volume:
    """Read a node mask as uint8 {0, 1}.

    Plain label images: every non-zero voxel (or voxels equal to ``segment`` when it is an int) -> 1.
    3D Slicer ``.seg.nrrd``: the segment(s) named like a lymph node or whose terminology is SNOMED CT
    "Lymph node", or the one given by ``segment`` (name or label value), else all segments. With
    ``reference``, the mask is put on its grid (see :func:`lnq_napari.io.geometry.align_to`). Custom header
    fields are kept in ``meta``.
    DICOM SEG (a file, or a SEG series folder): the segments coded or named as a lymph node (or
    ``segment``: label or number) on the grid of the CT series it references: ``reference`` (refused
    when it is another DICOM series), else that series found beside the SEG (:mod:`.dicom_seg`).
    """
    seg = dicom_seg.seg_file(path) if file_format(_existing(path)) == "dicom" else None
    if seg is not None:
        return _read_dicom_seg(seg, reference, segment)
    raw = read_raw(path)
    name = Path(path).name
    if segfile.is_slicer_segmentation(raw.meta):
        mask, chosen = segfile.segment_mask(path, raw, segment)
        volume = raw.volume(mask)
        volume.meta["selected_segments"] = [c["name"] for c in chosen]
        volume.meta["segment_keys"] = [c["id"] for c in chosen]  # each chooses its segment alone
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
        volume = align_to(reference, volume, what=f"labels {Path(path).name}")  # which file, in a data set
    return volume


@dicom_seg.one_scan()
def read_segment_masks(path: str | Path, keys: list, reference: Volume | None = None) -> list[np.ndarray]:
    """Each segment ``keys`` names (``Volume.meta["segment_keys"]`` of :func:`read_labels`) of a 3D Slicer
    segmentation or a DICOM SEG as its own uint8 {0,1} mask on ``reference``'s grid (the SEG's CT
    without one); the file is read once for all of them."""
    seg = dicom_seg.seg_file(path) if file_format(_existing(path)) == "dicom" else None
    if seg is not None:
        parsed = dicom_seg.read_seg(seg)
        grid = reference if reference is not None else _dicom_grid(*dicom_seg.find_ct_series(parsed))
        dicom_seg.check_reference(parsed, grid)
        return [dicom_seg.seg_mask(parsed, grid, key)[0] for key in keys]
    raw = read_raw(path)
    masks = [raw.volume(segfile.segment_mask(path, raw, key)[0]) for key in keys]
    return [np.asarray((m if reference is None else align_to(reference, m)).array) for m in masks]


@dicom_seg.one_scan()
def read_ct_of(path: str | Path, labels: str | Path) -> Volume:
    """The CT at ``path`` for the label file ``labels``: of a DICOM folder holding several series, the one
    a DICOM SEG ``labels`` was drawn on (else, as :func:`read_volume`, the largest CT series)."""
    series = None
    if file_format(_existing(path)) == "dicom" and file_format(_existing(labels)) == "dicom":
        seg = dicom_seg.seg_file(labels)
        referenced = dicom_seg.referenced_series(seg) if seg is not None else ()
        series = referenced[0] if referenced else None
    return read_volume(path, series)


def _read_dicom_seg(path: Path, reference: Volume | None = None, segment: str | int | None = None) -> Volume:
    """A DICOM SEG's chosen segments as uint8 {0,1} on ``reference``'s grid, or on the grid of the CT series
    it references, found beside it (see :func:`lnq_napari.io.dicom_seg.find_ct_series`)."""
    seg = dicom_seg.read_seg(path)
    if reference is None:
        reference = _dicom_grid(*dicom_seg.find_ct_series(seg))
    dicom_seg.check_reference(seg, reference)
    mask, chosen = dicom_seg.seg_mask(seg, reference, segment)
    return Volume(mask, reference.spacing, reference.origin, reference.direction,
                  dicom_seg.seg_meta(seg, chosen))


def _execute_series(reader, folder: Path):
    """``reader.Execute()`` of a SimpleITK series reader, ITK's own warnings silenced (the slice check
    that follows says what is wrong, in one line); a failure is a one-line LNQError."""
    try:
        with _itk_quiet():
            return reader.Execute()
    except RuntimeError as exc:
        text = str(exc)
        if "does not fully contain the requested region" in text:  # a slice of another size
            raise LNQError(f"the DICOM slices in {folder} differ in size (a localizer or another series "
                           "among them); keep only the slices of the one CT series") from exc
        reason = text.strip().splitlines()[-1][:160]
        raise LNQError(f"cannot read the DICOM series in {folder} ({reason}); check that the slices are "
                       "complete images of one series") from exc


@contextlib.contextmanager
def _itk_quiet() -> Iterator[None]:
    """ITK's own warnings (printed to stderr, outside Python's warnings) silenced in this block: what is
    wrong is said in one line by the caller."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _dicom_grid(folder: Path, series_uid: str) -> Volume:
    """The grid :func:`_read_dicom` gives a series (as an all-zero read-only Volume, with the series and
    frame of reference UIDs in ``meta``) from its first and last slices' pixels (ITK takes the origin and
    direction from the first and the slice spacing as (last - first) / (slices - 1)) and every slice's
    header (a slice missing or doubled is refused, as a read of the series refuses it)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files, headers = _series_slices(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    head = _first_file_header(files[0]) if files else FileHeader()
    if len(files) == 1 and _enhanced(head.sop_class, head.frames):  # its frames place it
        raw = _read_enhanced(Path(files[0]), folder.name, pixels=False)
        meta = {"dicom_series_uid": series_uid, "dicom_frame_of_reference": head.frame_of_reference}
        zeros = np.broadcast_to(np.uint8(0), raw.array.shape)
        return Volume(zeros, raw.spacing, raw.origin, raw.direction, {k: v for k, v in meta.items() if v})
    _check_dicom_slices(_header_slice_tags(files, headers), folder.name)  # the stack the ends stand for
    reader.SetFileNames([files[0], files[-1]] if len(files) > 2 else files)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = _execute_series(reader, folder)
    spacing = list(image.GetSpacing())
    if len(files) > 2:
        spacing[2] /= len(files) - 1
    check_grid(spacing, image.GetOrigin(), image.GetDirection(), folder.name)
    meta = {"dicom_series_uid": series_uid}
    if reader.HasMetaDataKey(0, "0020|0052"):
        meta["dicom_frame_of_reference"] = reader.GetMetaData(0, "0020|0052").strip()
    columns, rows, depth = image.GetSize()
    zeros = np.broadcast_to(np.uint8(0), (len(files) if len(files) > 2 else depth, rows, columns))
    return Volume(zeros, spacing, image.GetOrigin(), image.GetDirection(), meta)


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
