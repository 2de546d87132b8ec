"""Read CT and label volumes (NRRD/.nhdr, NIfTI, MHA/MHD, DICOM folders, DICOM SEG) with their exact grid.

Hostile or broken files end in a one-line LNQError: the voxel count and bytes a header claims are checked
against what the file can hold before any data is read (:mod:`.file_checks`), a detached data file must
lie in the header's folder, and every grid goes through :func:`lnq_napari.io.volume.check_grid`. A DICOM CT
series is read by :mod:`.dicom_series`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io import dicom_seg, dicom_tree, segfile
from lnq_napari.io.atomic import atomic_write
from lnq_napari.io.dicom_series import dicom_grid, read_dicom
from lnq_napari.io.file_checks import (
    check_named_as_held,
    check_nifti_complete,
    check_nrrd_list,
    check_nrrd_payload,
    check_sitk_payload,
    nifti_nonfinite,
    nifti_sform,
    nifti_unplaced,
    nifti_version,
    unreadable,
)
from lnq_napari.io.geometry import (
    COLOUR_KINDS,
    align_to,
    nrrd_geometry,
    nrrd_geometry_fields,
    nrrd_spatial_axes,
)
from lnq_napari.io.labels import label_mask
from lnq_napari.io.nrrd_header import custom_fields
from lnq_napari.io.raw_image import RawImage, from_sitk_image, itk_quiet, native, not_scalar
from lnq_napari.io.segfile import check_extra_fields, compression_level, write_seg_nrrd
from lnq_napari.io.volume import Volume, check_grid, unit_steps

NRRD_SUFFIXES = (".nrrd", ".nhdr")
SITK_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nia", ".hdr", ".img", ".img.gz")


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise LNQError(f"{path} does not exist; check the path")
    return path


def file_format(path: Path) -> str:
    """'nrrd', 'sitk', 'dicom' (a folder or a DICOM file: :func:`.dicom_tree.is_dicom_path`) or 'other',
    from the name (a DICOM file also by its start)."""
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    if name.endswith(NRRD_SUFFIXES):
        return "nrrd"
    if name.endswith(SITK_SUFFIXES):
        return "sitk"
    if dicom_tree.is_dicom_path(path):  # by name, magic, or a dataset without the preamble
        return "dicom"
    return "other"


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
        with open(path, "rb") as handle:
            header = nrrd.read_header(handle)
            data_start = handle.tell()
        check_nrrd_payload(path, header, data_start)
        data = _fast_nrrd_data(path, header)
        if data is None:
            data, header = nrrd.read(str(path), index_order="C")
    except LNQError:
        raise
    except FileNotFoundError as exc:  # a detached header naming a missing data file
        raise LNQError(f"{path.name}: data file {exc.filename} not found; keep the .nhdr next to its data "
                       "file") from exc
    except Exception as exc:  # NRRDError, zlib/bz2 errors, UnicodeDecodeError, ValueError ...
        check_nrrd_list(path)  # a list of data files after the header: pynrrd fails on their names
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise LNQError(f"cannot read {path.name} as NRRD ({reason}); the file is truncated, damaged or not "
                       "an NRRD image: re-export or re-download it") from exc
    dim = int(header["dimension"])
    if dim < 3:
        raise LNQError(f"{path.name} is {dim}D; a CT or label volume must be 3D")
    colour = [a for a, k in enumerate(header.get("kinds") or []) if str(k).lower() in COLOUR_KINDS]
    if colour:  # an RGB(A) image, not layers of a segmentation
        raise not_scalar(path.name, int(header["sizes"][colour[0]]), "a colour image")
    spacing, origin, direction = nrrd_geometry(header, path.name)
    spatial = nrrd_spatial_axes(header)
    c_spatial = [dim - 1 - a for a in spatial]  # pynrrd C order reverses the header's axes
    others = [a for a in range(dim) if a not in c_spatial]
    array = np.moveaxis(data, others, list(range(len(others)))) if others else data
    if array.ndim > 4:
        raise LNQError(f"{path.name} is {dim}D; a CT or label volume must be 3D")
    return RawImage(native(array), spacing, origin, direction, custom_fields(header))


def _sform_differences(geometry: tuple, sform: tuple[tuple, tuple, tuple]) -> list[str]:
    """What the pixdim / qform grid ``geometry`` (spacing, origin, direction: as SimpleITK reads a NIfTI) and
    the sform give differently: spacing, origin, direction."""
    spacing, origin, direction = (np.asarray(v, dtype=float) for v in sform)
    same = (np.allclose(geometry[0], spacing, rtol=1e-3), np.allclose(geometry[1], origin, atol=1e-2),
            np.allclose(geometry[2], direction, atol=1e-3))
    return [what for what, ok in zip(("spacing", "origin", "direction"), same) if not ok]


def _nifti_grid(geometry: tuple, header: bytes | None) -> tuple[tuple, list[str]]:
    """The grid :func:`read_volume` gives an image SimpleITK read as ``geometry``, ``header`` its NIfTI
    header (None: not a NIfTI): the sform's when it and the pixdim / qform differ, as the NIfTI standard
    and nibabel read it; with what they give differently (empty: ``geometry`` kept)."""
    sform = nifti_sform(header) if header else None
    differ = _sform_differences(geometry, sform) if sform else []
    return (sform if differ else geometry), differ


def _read_sitk_file(path: Path) -> RawImage:
    import SimpleITK as sitk

    header = check_nifti_complete(path)
    nifti = header is not None
    with itk_quiet() if nifti else contextlib.nullcontext():  # ITK's warning lines: ours follow
        try:
            check_sitk_payload(path)
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                raise unreadable(path, exc) from exc
        except LNQError:
            if nifti and nifti_version(header) == 2:  # not damaged: a format this SimpleITK does not read
                raise LNQError(f"{path.name} is a NIfTI-2 file, which SimpleITK cannot read; save it as "
                               "NIfTI-1 (.nii.gz) or NRRD, e.g. with nibabel or 3D Slicer") from None
            raise
    raw = from_sitk_image(image, path.name)
    # SimpleITK read non-finite voxels as 0: only a float array holding a 0 is read again to find them
    refind = raw.array.dtype.kind == "f" and not raw.array.all()
    bad, values = nifti_nonfinite(path, header) if refind else ((), ())
    if len(bad) and bad.max() < raw.array.size:  # SimpleITK read them as 0 (water, in a CT)
        raw.array.reshape(-1)[bad] = values  # as NRRD and MHA read them: the CT's value check refuses them
    sform, differ = _nifti_grid((raw.spacing, raw.origin, raw.direction), header)
    if differ:
        said = {"spacing": f"spacing {', '.join(f'{v:.4g}' for v in sform[0])} mm",
                "origin": f"origin {', '.join(f'{v:.4g}' for v in sform[1])} mm",
                "direction": "its direction"}
        read = "; ".join(said[d] for d in differ)
        warnings.warn(f"{path.name}: its sform and its pixdim / qform give different grids "
                      f"({', '.join(differ)}); read by the sform ({read}), as the NIfTI standard and nibabel "
                      "do: check the file's header", UserWarning, stacklevel=3)
        raw = RawImage(raw.array, *sform, raw.meta)
        if "direction" in differ:  # ITK (SimpleITKIOWithReorient's reader) took the qform's axes
            raw.meta["nifti_sform_over_qform"] = True  # not a str: never written into an NRRD header
    elif nifti and nifti_unplaced(header):
        raw.meta["nifti_unplaced"] = True  # not a str: never written into an NRRD header
        warnings.warn(f"{path.name} sets neither a qform nor an sform: its place in space is unknown (read "
                      "at origin 0, axes as stored); labels from other files may not line up with it",
                      UserWarning, stacklevel=3)
    return raw


@dicom_tree.one_scan()
def read_raw(path: str | Path, series_uid: str | None = None) -> RawImage:
    """The image as stored, keeping a 4th list/layer axis first if the file has one; its grid checked.
    ``series_uid``: of a DICOM folder holding several series, the one to read (else the largest CT
    series)."""
    raw = _read_any(path, series_uid)
    raw.spacing, raw.direction = unit_steps(raw.spacing, raw.direction)  # ITK keeps an MHA's lengths there
    check_grid(raw.spacing, raw.origin, raw.direction, Path(path).name)
    return raw


#: 2D picture formats: no CT or label volume is stored so.
PICTURES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _read_any(path: str | Path, series_uid: str | None = None) -> RawImage:
    path = _existing(path)
    kind = file_format(path)
    if kind == "dicom":
        seg = dicom_tree.seg_file(path)
        if seg is not None:  # a DICOM SEG: its mask on its CT's grid
            labels = _read_dicom_seg(seg)
            return RawImage(labels.array, labels.spacing, labels.origin, labels.direction, labels.meta)
        return read_dicom(path, series_uid)
    if path.is_dir():
        raise LNQError(f"{path} is a folder; point to an image file")
    check_named_as_held(path)
    if kind == "nrrd":
        return _read_nrrd(path)
    if kind == "sitk":
        return _read_sitk_file(path)
    if path.suffix.lower() in PICTURES:  # never a volume; ITK's PNG reader would print libpng's own lines
        raise LNQError(f"{path.name} is a picture, not a supported image; use NRRD (.nrrd/.nhdr), "
                       "NIfTI (.nii, .nii.gz), MHA/MHD or a DICOM folder")
    try:
        return _read_sitk_file(path)
    except LNQError as exc:
        raise LNQError(f"{path.name} is not a supported image; use NRRD (.nrrd/.nhdr), "
                       "NIfTI (.nii, .nii.gz), MHA/MHD or a DICOM folder") from exc


def read_grid(path: str | Path) -> Volume | None:
    """The grid of an image file from its header alone: a Volume of zeros with the spacing, origin and
    direction :func:`read_volume` gives it (an NRRD's units in mm: SimpleITK ignores them); None when the
    header cannot be read or holds no 3D image."""
    import SimpleITK as sitk

    path = Path(path)
    try:
        if file_format(path) == "nrrd":
            import nrrd

            header = nrrd.read_header(str(path))
            size = [int(header["sizes"][a]) for a in nrrd_spatial_axes(header)]
            geometry = nrrd_geometry(header, path.name)
        else:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            with itk_quiet():
                reader.ReadImageInformation()
            size, spacing, origin = list(reader.GetSize()), reader.GetSpacing(), reader.GetOrigin()
            direction = np.asarray(reader.GetDirection()).reshape(len(size), len(size))
            if len(size) == 4 and size[3] == 1:  # one time point: its volume, as read_volume reads it
                size, spacing, origin, direction = size[:3], spacing[:3], origin[:3], direction[:3, :3]
            spacing, direction = unit_steps(spacing, direction)
            geometry, _ = _nifti_grid((spacing, origin, direction), check_nifti_complete(path))
    except Exception:  # unreadable here: the reader says what is wrong when the file is read
        return None
    return Volume(np.zeros(size[::-1], np.uint8), *geometry) if len(size) == 3 else None


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


@dicom_tree.one_scan()
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
    seg = dicom_tree.seg_file(path) if file_format(_existing(path)) == "dicom" else None
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


def read_segment_masks(path: str | Path, keys: list, reference: Volume | None = None) -> Iterator[np.ndarray]:
    """Each segment ``keys`` names (``Volume.meta["segment_keys"]`` of :func:`read_labels`) of a 3D Slicer
    segmentation or a DICOM SEG as its own uint8 {0,1} mask on ``reference``'s grid (the SEG's CT
    without one), one at a time (not every mask held at once); the file is read once for all of them, in
    one :func:`.dicom_tree.one_scan` block (opened in the body: a decorator's would close before it runs)."""
    with dicom_tree.one_scan():
        seg = dicom_tree.seg_file(path) if file_format(_existing(path)) == "dicom" else None
        if seg is not None:
            parsed = dicom_seg.read_seg(seg)
            grid = reference if reference is not None else dicom_grid(*dicom_seg.find_ct_series(parsed))
            dicom_seg.check_reference(parsed, grid)
            for key in keys:
                yield dicom_seg.seg_mask(parsed, grid, key)[0]
            return
        raw = read_raw(path)
        for key in keys:
            mask = raw.volume(segfile.segment_mask(path, raw, key)[0])
            yield np.asarray((mask if reference is None else align_to(reference, mask)).array)


@dicom_tree.one_scan()
def read_ct_of(path: str | Path, labels: str | Path) -> Volume:
    """The CT at ``path`` for the label file ``labels``: of a DICOM folder holding several series, the one
    a DICOM SEG ``labels`` was drawn on (else, as :func:`read_volume`, the largest CT series)."""
    series = None
    if file_format(_existing(path)) == "dicom" and file_format(_existing(labels)) == "dicom":
        seg = dicom_tree.seg_file(labels)
        referenced = dicom_seg.referenced_series(seg) if seg is not None else ()
        series = referenced[0] if referenced else None
    return read_volume(path, series)


def _read_dicom_seg(path: Path, reference: Volume | None = None, segment: str | int | None = None) -> Volume:
    """A DICOM SEG's chosen segments as uint8 {0,1} on ``reference``'s grid, or on the grid of the CT series
    it references, found beside it (see :func:`lnq_napari.io.dicom_seg.find_ct_series`)."""
    seg = dicom_seg.read_seg(path)
    if reference is None:
        reference = dicom_grid(*dicom_seg.find_ct_series(seg))
    dicom_seg.check_reference(seg, reference)
    mask, chosen = dicom_seg.seg_mask(seg, reference, segment)
    return Volume(mask, reference.spacing, reference.origin, reference.direction,
                  dicom_seg.seg_meta(seg, chosen))


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
