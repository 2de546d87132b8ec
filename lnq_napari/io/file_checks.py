"""What an image file's header claims, checked against the file before any data is read: the voxel count
and bytes (:func:`check_payload`), a detached data file in the header's folder (NRRD, MHD), a NIfTI cut
short or with a non-finite geometry; and what a NIfTI header says of its grid (sform, none set, version)."""

from __future__ import annotations

import bz2
import struct
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError

MAX_VOXELS = 2**31  # 3.3x the largest LNQ CT (512 x 512 x 656) times 20: anything above is not a CT
GZIP_MAX_RATIO = 1032  # deflate cannot compress more than about 1032:1


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
             "txt": (stored + 1) // 2 * itemsize}.get(encoding)
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
    if _nrrd_multi_file(value):
        raise _several_files(path, value)
    folder = path.resolve().parent
    target = (folder / value).resolve()
    if not target.is_relative_to(folder):
        raise LNQError(f"{path.name} points to a data file outside its folder ({value[:60]!r}); keep the "
                       ".nhdr and its data file in one folder and name the data file without a path")
    if not target.is_file():
        raise LNQError(f"{path.name}: data file {value[:60]!r} not found; keep the .nhdr next to its data "
                       "file")
    return target


def check_nrrd_list(path: Path) -> None:
    """LNQError when a NRRD header keeps its data in several files (``data file: LIST``, the files' names
    on the lines after it, which pynrrd cannot parse: it said the file was damaged; or a numbered
    pattern), as :func:`_nrrd_multi_file` reads the value."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    for line in head.split(b"\n\n", 1)[0].splitlines():
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() in ("data file", "datafile") and _nrrd_multi_file(value):
            raise _several_files(path, value.strip())


def _several_files(path: Path, value: str) -> LNQError:
    return LNQError(f"{path.name} spreads its data over several files ({value[:60]!r}); lnq-napari reads one "
                    "data file: re-save the image as a single .nrrd")


def _nrrd_multi_file(value: str) -> bool:
    """Whether a NRRD ``data file`` value names several files, as Teem reads it: ``LIST [<subdim>]`` or
    ``<format> <min> <max> <step> [<subdim>]`` (a ``%`` pattern and three whole numbers); anything else is
    one file's name, spaces and all (ITK and 3D Slicer write ``data file: CT chest.raw.gz`` for
    ``CT chest.nhdr``)."""
    tokens = value.split()
    if not tokens:
        return False
    numbers = all(t.lstrip("+-").isdigit() for t in tokens[1:4])
    return tokens[0].upper() == "LIST" or ("%" in tokens[0] and len(tokens) >= 4 and numbers)


#: The NRRD encodings pynrrd reads (Teem's hex and zrl are not among them).
NRRD_ENCODINGS = ("raw", "gzip", "gz", "bzip2", "bz2", "ascii", "text", "txt")


def check_nrrd_payload(path: Path, header: dict, data_start: int) -> None:
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
    if encoding not in NRRD_ENCODINGS:  # pynrrd said "Unsupported encoding", read as a damaged file
        raise LNQError(f"{path.name} stores its voxels in NRRD encoding '{encoding}', which lnq-napari "
                       "cannot read; re-save it raw or gzip-compressed (e.g. from 3D Slicer)")
    if encoding in ("bzip2", "bz2"):  # bzip2 compresses zeros a million-fold: count the stream instead
        total = 0
        with open(source, "rb") as handle:
            handle.seek(0 if data_file else data_start)
            decomp = bz2.BZ2Decompressor()
            while not decomp.eof and (block := handle.read(1 << 20)):
                total += len(decomp.decompress(block))
        encoding, stored = "raw", total
    check_payload(path.name, header.get("sizes", ()), itemsize, encoding, stored)


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
#: Where a NIfTI-1 / NIfTI-2 header keeps its xyzt_units, and mm per unit of its space code (its low 3
#: bits: 1 metre, 2 mm, 3 micrometre; 0, unknown: mm, as ITK, nibabel and every viewer take it).
_NIFTI_UNITS = {348: (123, "B"), 540: (500, "i")}
_NIFTI_MM_PER_UNIT = {1: 1000.0, 3: 1e-3}


def nifti_sform(header: bytes) -> tuple[tuple, tuple, tuple] | None:
    """(spacing, origin, direction) in LPS and mm (its xyzt_units in metres or micrometres converted, as
    SimpleITK converts the qform) of a NIfTI header's sform when its code is set, else None."""
    try:
        for endian in "<>":
            size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
            if size in _NIFTI_SFORM_CODE and len(header) >= size:
                offset, fmt = _NIFTI_SFORM_CODE[size]
                if struct.unpack_from(endian + fmt, header, offset)[0] <= 0:
                    return None
                at, rows = _NIFTI_GEOMETRY[size][2]
                affine = np.asarray(struct.unpack_from(endian + rows, header, at), dtype=float).reshape(3, 4)
                at, fmt = _NIFTI_UNITS[size]
                affine *= _NIFTI_MM_PER_UNIT.get(struct.unpack_from(endian + fmt, header, at)[0] & 0x07, 1.0)
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


def nifti_unplaced(header: bytes) -> bool:
    """Whether a NIfTI-1 header sets neither a qform nor an sform (its place in space is unknown)."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            return struct.unpack_from(endian + "2h", header, 252) == (0, 0)
    return False


def _nifti_payload(header: bytes) -> tuple[str, int, int, int, int] | None:
    """(byte order, offset, voxel count, bits per voxel, datatype code) of a NIfTI-1/2 single file's voxel
    data, from its header; None if unknown."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = struct.unpack(endian + "f", header[108:112])[0]
            if not np.isfinite(offset):
                return None  # SimpleITK then refuses the header itself
            offset = int(offset)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or offset <= 0:
        return None
    return endian, offset, int(np.prod([max(d, 1) for d in dims[1:1 + dims[0]]], dtype=np.int64)), bitpix, \
        datatype


def _nifti_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1/2 single file's voxel data ends, from its header; None if unknown."""
    payload = _nifti_payload(header)
    if payload is None:
        return None
    _, offset, count, bitpix, _ = payload
    return offset + count * bitpix // 8


#: NIfTI datatype codes of float voxels SimpleITK reads: float32, float64.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
_CHUNK_VOXELS = 1 << 22


def nifti_nonfinite(path: Path, header: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices, values) of the NaN or infinite voxels a float NIfTI-1 single file stores, in its
    storage order (x fastest: a SimpleITK array's C order); empty for any other file. SimpleITK's NIfTI
    reader sets them to 0 without a word (a NaN outside a resampled CT read as water); read in chunks."""
    import gzip

    payload = _nifti_payload(header) if header is not None else None
    none = np.zeros(0, np.int64), np.zeros(0, np.float64)
    if payload is None or payload[4] not in _NIFTI_FLOATS:
        return none
    endian, offset, count, _, datatype = payload
    dtype = np.dtype(endian + _NIFTI_FLOATS[datatype])
    found, values, done = [], [], 0
    opener = gzip.open if _gzipped(path) else open
    with opener(path, "rb") as handle:
        handle.seek(offset)
        while done < count:
            chunk = np.frombuffer(handle.read(min(_CHUNK_VOXELS, count - done) * dtype.itemsize), dtype)
            if not chunk.size:
                break
            bad = np.flatnonzero(~np.isfinite(chunk))
            if bad.size:
                found.append(bad + done)
                values.append(chunk[bad].astype(np.float64))
            done += chunk.size
    return (np.concatenate(found), np.concatenate(values)) if found else none


def _gzip_length(path: Path) -> int:
    """Decompressed length of a gzip file, streaming (raises EOFError when it is cut short)."""
    import gzip

    total = 0
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            total += len(chunk)
    return total


def check_nifti_complete(path: Path) -> bytes | None:
    """SimpleITK reads a truncated NIfTI silently (zeros); compare the stored size with the header's.
    A header with a non-finite geometry is refused first. Returns the header read (None: not NIfTI)."""
    import gzip

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        if _gzipped(path):  # by its bytes: SimpleITK reads a .nii.gz stored uncompressed as it is
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


def _first_bytes(path: Path, count: int = 348) -> bytes:
    """The first ``count`` bytes of a file (b"" when it cannot be read: its reader says why)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(count)
    except OSError:
        return b""


def _gzipped(path: Path) -> bool:
    """Whether a file is gzip-compressed, by its first bytes (not its name)."""
    return _first_bytes(path, 2) == b"\x1f\x8b"


def content_format(path: Path) -> str | None:
    """What image format a file holds by its first bytes: "nrrd", "nifti", "nifti-gz", "gzip" (another
    gzip stream, or one cut short), "dicom", "zip"; None when they name none of these."""
    import gzip

    start = _first_bytes(path, 348)
    if start.startswith(b"NRRD0"):
        return "nrrd"
    if start.startswith(b"PK\x03\x04"):
        return "zip"
    if len(start) >= 132 and start[128:132] == b"DICM":
        return "dicom"
    if nifti_version(start) is not None:
        return "nifti"
    if start.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(4)
        except (OSError, EOFError):
            return "gzip"
        return "nifti-gz" if nifti_version(inner) is not None else "gzip"
    return None


#: The formats a file's name promises (its suffix, lower case) that its bytes may hold
#: (:func:`content_format`; None: none it knows, as MetaImage text or a DICOM without its preamble).
_HELD_BY_NAME = {".nrrd": {"nrrd"}, ".nhdr": {"nrrd"}, ".nii": {"nifti"},
                 ".nii.gz": {"nifti", "nifti-gz", "gzip"}, ".mha": {None}, ".mhd": {None},
                 ".dcm": {"dicom", None}, ".ima": {"dicom", None}}
#: Analyze / NIfTI pairs (a header and its data file): not checked.
_PAIR_SUFFIXES = (".hdr", ".img", ".img.gz", ".nia")
_SUFFIX_FOR = {"nrrd": ".nrrd", "nifti": ".nii", "nifti-gz": ".nii.gz", "dicom": ".dcm"}


def check_named_as_held(path: Path) -> None:
    """LNQError when a file's bytes hold another image format than its name says (a NIfTI named .nrrd, a
    gzip-compressed NIfTI named .nii, an NRRD without a suffix) or a zip archive: the reader its name picks
    would call it damaged. Files whose bytes name no format are left to their reader."""
    held = content_format(path)
    if held is None:
        return
    if held == "zip":
        raise LNQError(f"{path.name} is a zip archive; unzip it and give the CT file or DICOM folder inside")
    name = path.name.lower()
    if name.endswith(_PAIR_SUFFIXES):
        return
    suffix = next((s for s in sorted(_HELD_BY_NAME, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None and held == "dicom" or suffix is not None and held in _HELD_BY_NAME[suffix]:
        return
    if held == "gzip":
        return  # a gzip stream of unknown content: its reader says what is wrong
    what = {"nrrd": "an NRRD image", "nifti": "an uncompressed NIfTI image",
            "nifti-gz": "a gzip-compressed NIfTI image", "dicom": "a DICOM file"}[held]
    raise LNQError(f"{path.name} holds {what} (by its first bytes), not what its name says; rename it to "
                   f"end in {_SUFFIX_FOR[held]} and open it again")


def nifti_version(header: bytes) -> int | None:
    """1 or 2 by a NIfTI header's first field (its size: 348 or 540 bytes, either byte order)."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else None
        if size in (348, 540):
            return 1 if size == 348 else 2
    return None


def unreadable(path: Path, exc: RuntimeError) -> LNQError:
    """The one-line error for a file SimpleITK cannot read."""
    reason = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
    return LNQError(f"cannot read {path.name} ({reason}); the file is truncated, damaged or not a supported "
                    "image (NRRD, NIfTI, MHA/MHD, DICOM folder): re-export or re-download it")


def check_sitk_payload(path: Path) -> None:
    """The size a NIfTI/MHA/MHD header claims, read without its data, against the file's bytes (data may be
    zlib-compressed: at most 1032:1); a .mhd's data file must lie in its folder."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise unreadable(path, exc) from exc
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
    if not value or not target.is_relative_to(folder) or not target.is_file():  # spaces: one file's name
        raise LNQError(f"{path.name} names the data file {value[:60]!r}, which is not a file in its folder; "
                       "keep the .mhd and its .raw in one folder and name the data file without a path")
    return target
