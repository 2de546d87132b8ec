"""Read a DICOM CT series (a folder, one of its slices, or an enhanced multi-frame CT) with its exact grid:
which series of a folder is read, its slices checked as one evenly spaced, untilted stack of one pixel
spacing in HU, a declared padding read below air; and a series' grid alone (:func:`dicom_grid`, where a DICOM
SEG is placed). Everything broken ends in a one-line LNQError."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.heard import collected_warnings
from lnq_napari.io import dicom_tree
from lnq_napari.io.dicom_choice import choice_text, largest_series, series_look, soft_stand_in
from lnq_napari.io.dicom_codecs import missing_codec, native_dataset, pydicom_decodes
from lnq_napari.io.dicom_headers import (
    ENHANCED_CT_SOP_CLASSES,
    SEG_SOP_CLASSES,
    SLICE_TAGS,
    VOLUME_SLICES,
    VOLUME_TAGS,
    bare_dataset,
    frame_count,
    is_ct_image,
    is_ct_modality,
    is_localizer,
    is_localizer_volume,
    padding_values,
    read_header,
    series_slices,
    stored_range,
)
from lnq_napari.io.dicom_stack import (
    check_stack,
    header_slice_tags,
    placed_stack,
    slice_tags,
    written_direction,
)
from lnq_napari.io.geometry import SliceThicknessWarning
from lnq_napari.io.layout import cd_root
from lnq_napari.io.raw_image import RawImage, from_sitk_image, itk_quiet
from lnq_napari.io.volume import Volume, check_grid

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


class SeriesChoice(NamedTuple):
    """Which series a read of a path gives (:func:`choose_series`), told from headers alone: the folder
    read, the series, every series' files, first header and slices compared."""

    path: Path  # the path read (a CD's root taken for its DICOMDIR; a series folder below a download's root)
    folder: Path
    series_uid: str
    files_by_series: dict[str, tuple[str, ...]]
    first: dict[str, FileHeader]
    volume: dict[str, bool]  # a series read as a CT (a PET, scout or dose screen only when alone)
    images: dict[str, int]
    slices: dict[str, tuple[list[str], list[Dataset | None]]]  # (:func:`_series_slices`) of those compared


def choose_series(path: Path, series_uid: str | None = None, stacklevel: int = 2) -> SeriesChoice:
    """Which series a read of ``path`` (a folder, or one of its files) gives, told from headers alone (no
    pixels read): ``series_uid`` when given, else the file's or the largest CT series, unless that is a sharp
    (lung or bone kernel) reconstruction and another is clearly its scan reconstructed otherwise
    (:func:`.dicom_choice.soft_stand_in`) (without one, a CT whose slices all say LOCALIZER that forms a
    volume; a PET, scout or dose screen only when there is no CT, a PET or MR with a warning). The choice's
    warning is raised ``stacklevel`` frames up; LNQError when no series can be chosen (none, several
    patients, slices each of their own series, several series folders below)."""
    import SimpleITK as sitk

    path = cd_root(path)  # a CD's index: the folder it indexes
    folder = path if path.is_dir() else path.parent
    reader = sitk.ImageSeriesReader()
    try:
        with itk_quiet():  # a folder without DICOM: ITK's own warning lines, then ours
            series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series = ()
    if path.is_dir() and series and dicom_tree.loose_segs(folder):  # SEGs beside series folders: none here
        series = ()
    if not series and path.is_dir():  # a CD export (DICOMDIR) or a TCIA download: series folders below
        try:
            below = [f for _, f in dicom_tree.ct_series_inputs(folder.name, folder) if f != folder]
        except LNQError:
            below = []
        if len(below) == 1:
            return choose_series(below[0], series_uid, stacklevel + 1)
        dicom_tree.refuse_split_series(below)
        if below:
            named = ", ".join(str(f.relative_to(folder)) for f in below[:3]) + \
                (" ..." if len(below) > 3 else "")
            raise LNQError(f"{folder} holds {len(below)} DICOM CT series in the folders below it ({named}); "
                           "point to one series folder, or give the folder to lnq-napari predict, which "
                           "reads every series")
    if not series and path.is_file():
        raise LNQError(_cut_short(folder.name, [path]) or _no_ct_image(path))
    if not series:
        if reason := _cut_short(folder.name, dicom_tree.unlisted_files(folder, [])):
            raise LNQError(reason)
        raise LNQError(f"{folder} is a folder without a DICOM series; point to a CT file "
                       "(.nrrd, .nii.gz, .mha) or to a folder holding the DICOM slices of one series")
    if path.is_dir():  # opened as one CT (napari, view, measure --ct): refused as predict refuses it
        dicom_tree.refuse_series_below(folder)
    files_by_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    first = {sid: _series_header(files) for sid, files in files_by_series.items()}
    images = {sid: 0 if first[sid].sop_class in SEG_SOP_CLASSES else len(files) * first[sid].frames
              for sid, files in files_by_series.items()}  # slices, an enhanced CT's frames; a SEG none
    volume = {sid: first[sid].ct_image for sid in series}  # a PET, scout or dose screen: read if alone
    slices: dict[str, tuple[list[str], list[Dataset | None]]] = {}  # (:func:`_series_slices`) compared

    if series_uid in files_by_series:
        sid = series_uid
    elif not path.is_dir():
        chosen = [sid for sid, files in files_by_series.items()
                  if any(Path(f).resolve() == path.resolve() for f in files)]
        if not chosen:  # an RT structure set, a dose report ...: not the CT beside it
            raise LNQError(_cut_short(folder.name, [path]) or _no_ct_image(path))
        sid = chosen[0]
    else:  # the largest soft-tissue CT series (else the largest), counted as read (no scouts, copies)
        patients = sorted({_patient_id(files[0]) for files in files_by_series.values()} - {""})
        if len(patients) > 1:  # which one is meant cannot be told, and the case is named by the folder
            named = ", ".join(patients[:4]) + (" ..." if len(patients) > 4 else "")
            raise LNQError(f"{folder} holds the DICOM series of {len(patients)} patients ({named}); give "
                           "each patient's series a folder of its own")
        pool, marked = [o for o in series if volume[o]], []
        if not pool:  # a CT whose every slice says LOCALIZER (some exports mark it so), not a PET beside it
            slices = _localizer_volumes(files_by_series, first, images)
            pool = marked = list(slices)
            volume.update(dict.fromkeys(pool, True))
        pool = pool or [o for o in series if images[o]] or list(series)
        if len(pool) > 1 and not slices:
            slices = {o: _series_slices(files_by_series[o]) for o in pool if images[o]}
        images.update({o: sum(map(frame_count, headers)) for o, (_, headers) in slices.items()})  # as kept
        kept = {o: (slices[o][0] or files_by_series[o]) if o in slices else files_by_series[o] for o in pool}
        looks = {o: series_look(kept[o][0]) for o in pool} if len(pool) > 1 else {}  # no scout's header
        largest, reformats = largest_series(pool, slices, images)  # no reformat beside an axial volume
        soft = soft_stand_in(largest, pool, slices, looks, images) if all(volume[o] for o in pool) else None
        sid = soft or largest
        single = sum(1 for o in pool if images[o] == 1 and volume[o])
        if images[sid] == 1 and single >= VOLUME_SLICES:  # no series a volume: one read would be one slice
            raise LNQError(f"{folder} holds {single} DICOM CT series of one slice each (each file has its "
                           "own Series Instance UID, as some anonymisers and exports write), so no series is "
                           "a volume; re-export or re-anonymise the CT keeping one Series Instance UID for "
                           "all its slices")
        if len(pool) > 1:  # another CT (a lung-kernel reconstruction): which one is read, and why, is said
            kind = "CT series" if volume[sid] else "series"
            warnings.warn(f"{folder} holds {len(pool)} DICOM {kind}; "
                          f"{choice_text(sid, largest, pool, looks, images, reformats)}: to read another, "
                          "give a folder holding only its slices", UserWarning, stacklevel=stacklevel)
        if sid in marked:
            warnings.warn(f"{folder} holds no DICOM CT series but "
                          f"{series_look(kept[sid][0]).name} ({images[sid]} slices), whose "
                          "slices are all marked LOCALIZER: read as the CT (a stack of parallel slices, no "
                          "scout)", UserWarning, stacklevel=stacklevel)
        if not first[sid].ct_modality and first[sid].modality.upper() != "CT":
            # a PET or MR alone: read, but not taken for a CT without a word (a Secondary Capture of
            # modality CT, as ITK writes a series, reads as before)
            warnings.warn(f"{folder} holds no DICOM CT series; reading "
                          f"{series_look(kept[sid][0]).name} (modality "
                          f"{first[sid].modality or 'unknown'}) as if it were a CT, which it is not: point "
                          "to the folder of the patient's CT", UserWarning, stacklevel=stacklevel)
    return SeriesChoice(path, folder, sid, files_by_series, first, volume, images, slices)


def read_dicom(path: Path, series_uid: str | None = None) -> RawImage:
    """The CT series in a folder (or the series of a file) that :func:`choose_series` chooses, with its
    Series and Frame of Reference UIDs in ``meta``; a slice's declared pixel padding reads below air
    (:func:`_padding_below_air`)."""
    import SimpleITK as sitk

    choice = choose_series(path, series_uid, stacklevel=4)  # the warning at read_dicom's caller's caller
    path, folder, sid, files_by_series = choice.path, choice.folder, choice.series_uid, choice.files_by_series
    if path.is_dir() and sid != series_uid and (choice.images[sid] <= 1 or not choice.volume[sid]):
        _refuse_float_beside(folder, files_by_series)  # a scout read as the CT of Float Pixel Data slices
    files, headers = choice.slices.get(sid) or _series_slices(list(files_by_series[sid]))
    head = _series_header(files) if files else choice.first[sid]  # of the files read (no enhanced copy)
    reader = sitk.ImageSeriesReader()
    _refuse_cut_short(folder, [f for files in files_by_series.values() for f in files], sid)
    _refuse_headerless(files, headers, folder.name)
    if _enhanced(head.sop_class, head.frames):
        if len(files) > 1:
            raise LNQError(f"{folder.name} holds an enhanced (multi-frame) DICOM CT split over "
                           f"{len(files)} files; lnq-napari reads one enhanced file holding every frame, or "
                           "a classic series (a file per slice): convert it, e.g. with dcm2niix to NIfTI, or "
                           "export the series as one enhanced file or as single frames from the PACS")
        raw = _read_enhanced(Path(files[0]), folder.name)
    else:
        _set_file_names(reader, files, folder)
        reader.SetImageIO("GDCMImageIO")  # ITK's own choice finds none for a file without the preamble
        reader.MetaDataDictionaryArrayUpdateOn()  # each slice's position, for the spacing check
        if _rescale_beyond_first(headers):  # else ITK reads every slice in the first slice's type
            reader.SetOutputPixelType(sitk.sitkFloat32)
        image = _execute_series(reader, folder)
        tags = slice_tags(reader.HasMetaDataKey, reader.GetMetaData, len(files))
        check_stack(tags, folder.name)
        direction = written_direction(image.GetDirection(), tags, folder.name)
        _check_dicom_pixels(reader.HasMetaDataKey, reader.GetMetaData, len(files), folder.name)
        del reader  # it holds the image in its pipeline: kept, the image's array was a deep copy first
        raw = from_sitk_image(image, folder.name)
        raw.spacing = _one_slice_spacing(raw.spacing, headers, folder.name)
        raw.array = _padding_below_air(raw.array, headers, files)
        if direction is not None:
            _place_written(raw, direction, tags.positions)
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


def _padding_below_air(array: np.ndarray, headers: list, files: list[str]) -> np.ndarray:
    """A classic series' HU (z y x, slice k read from ``headers[k]``'s file ``files[k]``) with the voxels
    each slice declares padding (:func:`.dicom_headers.padding_values`, through that slice's rescale) at
    :data:`PADDING_HU` when the whole padding reads above :data:`CT_TOP_HU`: unsigned pixels padded with
    63536 (-2000 as 16 bits) read as +62512 HU with intercept -1024, a bright ring around the body. A
    padding beyond the slice's Bits Stored (63536 in a 12-bit slice, -3024 in a signed one) is found in the
    file's pixels as written (:func:`_written_pixels`): GDCM reads it with its high bits cleared (+1072 HU,
    bone), where tissue may read so too; it reads as its own HU where they are at most :data:`CT_TOP_HU`,
    else as :data:`PADDING_HU`. A slice without the tag keeps its values (it speaks of its own image)."""
    for k, header in enumerate(headers):
        stored = padding_values(header) if header is not None else None
        rescale = _rescale(header) if stored is not None else None
        if rescale is None:
            continue
        slope, intercept = rescale
        low, high = sorted(v * slope + intercept for v in stored)
        bottom, top = stored_range(header)
        if bottom <= stored[0] and stored[1] <= top:
            if low <= CT_TOP_HU:
                continue
            half = abs(slope) / 2  # ITK rescales in the output type: a stored value lies within half a step
            padded = (array[k] > low - half) & (array[k] < high + half)
            values = np.full(int(padded.sum()), PADDING_HU)
        else:
            written = _written_pixels(files[k], array[k].shape)
            if written is None:
                continue
            padded = (written >= stored[0]) & (written <= stored[1])
            values = written[padded] * slope + intercept
            values[values > CT_TOP_HU] = PADDING_HU
        if padded.any():
            array = _fitting(array, values)
            array[k][padded] = values
    return array


def _fitting(array: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``array``, as int32 where it is unsigned or narrower than ``values`` need (-3024 in uint16),
    as float32 where ``values`` are fractional and it holds integers."""
    if array.dtype.kind == "f":
        return array
    if not np.array_equal(values, np.round(values)):
        return array.astype(np.float32)
    info = np.iinfo(array.dtype)
    if array.dtype.kind == "u" or values.min() < info.min or values.max() > info.max:
        return array.astype(np.int32)
    return array


def _written_pixels(file: str, shape: tuple) -> np.ndarray | None:
    """A slice's stored pixels as written, their unused high bits kept (pydicom; GDCM clears them); None
    when they cannot be decoded or are not one plane of ``shape``."""
    from pydicom.pixels import pixel_array

    try:
        written = pixel_array(read_header(file), correct_unused_bits=False)
    except Exception:  # undecodable here: the padding is left as GDCM read it
        return None
    return written if written.shape == shape else None


def _one_slice_spacing(spacing, headers: list, name: str) -> tuple:
    """``spacing`` (x y z, as ITK read the series) with, for a series of one slice, its z the slice's Spacing
    Between Slices (as GDCM reads it), else its Slice Thickness, where that is a positive number: without
    the first ITK gives one slice 1 mm, and a 5 mm slice read so was placed, measured and saved 5 times too
    thin; with neither, 1 mm and a warning. More slices: as read (their positions give z)."""
    if len(headers) != 1 or headers[0] is None:
        return tuple(spacing)
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(headers[0].get(keyword) or 0)
        except (TypeError, ValueError):  # several values, or not a number
            continue
        if np.isfinite(value) and value > 0:
            return (*tuple(spacing)[:2], value)
    depth = float(tuple(spacing)[2])
    warnings.warn(f"the one DICOM slice in {name} gives no slice thickness (Slice Thickness, Spacing Between "
                  f"Slices); taken as {depth:g} mm, so its volume along z is wrong unless it is: re-export "
                  "with it", SliceThicknessWarning, stacklevel=4)
    return tuple(spacing)


def _place_written(raw: RawImage, direction: np.ndarray, positions: list, pixels: bool = True) -> None:
    """``raw`` (a classic series as ITK read it, slice k from ``positions[k]``) placed on the written
    orientation made orthonormal, ``direction`` (:func:`.dicom_stack.written_direction`), where GDCM read
    it with the axial axes: its slices stacked along that normal (``pixels=False``: a grid's zeros, left
    as they are), the first one's position its origin, their spacing along it its slice spacing (one
    slice, or slices without positions: its direction only)."""
    raw.direction = tuple(float(v) for v in direction.ravel())
    if len(positions) < 2 or any(p is None or p.size != 3 for p in positions):
        return
    order, raw.origin, spacing = placed_stack(direction, positions)
    if pixels and np.any(order != np.arange(len(order))):
        raw.array = np.ascontiguousarray(raw.array[order])
    raw.spacing = (*tuple(raw.spacing)[:2], spacing)


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


def _float_pixels(files: list[Path]) -> str | None:
    """The error for DICOM slices holding Float or Double Float Pixel Data (7FE0,0008 / 0009), which GDCM
    (SimpleITK's DICOM reader) does not list as images (the folder read as holding no series); None when
    none of ``files`` holds them."""
    for file in files:
        try:
            ds = read_header(file, defer_size="1 KB")  # the pixel element's presence, not its values
        except Exception:  # not DICOM: the caller's error stands
            continue
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return (f"{file.name} holds Float Pixel Data (floating-point DICOM pixels), which lnq-napari's "
                    "DICOM reader (GDCM) cannot read; re-export the CT with integer pixels and a rescale "
                    "(the scanner's usual export), or convert it to NRRD or NIfTI")
    return None


def _refuse_float_beside(folder: Path, files_by_series: dict[str, tuple[str, ...]]) -> None:
    """LNQError (:func:`_float_pixels`) when the first few files of ``folder`` that GDCM lists in no series
    hold Float Pixel Data: a scout or single slice beside them is the only series listed, not the CT."""
    unlisted = dicom_tree.unlisted_files(folder, [f for files in files_by_series.values() for f in files])
    if reason := _float_pixels(unlisted[:4]):
        raise LNQError(reason)


def _cut_short(name: str, files: list[Path], series_uid: str | None = None,
               listed: list[str] | None = None) -> str | None:
    """The error for ``files`` (of the folder ``name``) that GDCM put in no series although they are DICOM
    images (:func:`.dicom_tree._kind_and_header`: "ct" or "image", or "unreadable": a header cut short, a
    bare dataset cut before its SOP class), of the series ``series_uid`` when given (a file whose header
    gives no series counts; one cut within its Series Instance UID counts when that is the start of
    ``series_uid``: :func:`_value_cut`), or empty (:func:`_zeros`, at any size: an interrupted copy made
    or preallocated the file, no byte of it came; named as the slices ``listed`` are, :func:`_named_as`,
    else as the other files named here: a zero-byte LOCK or _SUCCESS beside slices named by UID is no
    slice) beside such a series, beside other files named here, or all of ``files``: read without them, a
    CT lacked those slices (a gap refused as "a slice is missing", or at either end silently a shorter CT;
    a folder of them "held no DICOM series"). Each is
    named by what it is (:func:`_pixel_state`): empty, cut short (it ends before its header or pixel data
    do), damaged (whole, yet GDCM cannot parse it); Float Pixel Data is named as such
    (:func:`_float_pixels`), and an image file without pixel data is left out. None when none is."""
    found: dict[Path, str] = {}
    shapes = {_name_shape(f) for f in listed} if listed else None  # else: of the files found, or all
    zeros = [file for file in files if (shapes is None or _named_as(file, shapes)) and _zeros(file)]
    for file in (f for f in files if f not in zeros):
        kind, header = dicom_tree._kind_and_header(file)
        if kind not in ("ct", "image", "unreadable"):
            continue
        with collected_warnings():  # dropped: pydicom's note on a UID cut short
            uid = str(header.get("SeriesInstanceUID", "") or "").strip() if header is not None else ""
        if series_uid is not None and uid and uid != series_uid and not (
                kind == "unreadable" and series_uid.startswith(uid) and _value_cut(file, uid)):
            continue  # another series' (cut within its UID: the start of this series')
        state = "cut short" if kind == "unreadable" else _pixel_state(file)
        if state == "float":
            return _float_pixels([file])
        if state != "none":
            found[file] = state
    shapes = shapes or {_name_shape(f) for f in (list(found) or files)}
    empty = [file for file in zeros if _named_as(file, shapes)]
    if empty and (series_uid is not None or found or len(empty) == len(files)):
        found = {**dict.fromkeys(empty, "empty"), **found}
    if not found:
        return None
    images = list(found)
    named = ", ".join(f.name for f in images[:3]) + (" ..." if len(images) > 3 else "")
    said = " or ".join(state for state in ("empty", "cut short", "damaged") if state in found.values())
    what = "file" if "empty" in found.values() else "DICOM image file"
    lack = ("" if series_uid is None else
            f", so the CT would lack {'those slices' if len(images) > 1 else 'that slice'}")
    cause = "an interrupted copy or download" if said != "damaged" else "GDCM cannot parse it"
    return (f"{len(images)} {what}{'s' if len(images) > 1 else ''} in {name} ({named}) cannot be read: "
            f"{said} ({cause}){lack}; copy or download the series again")


#: A run of digits, or of numbers joined by dots (a UID): one mark in a name's shape (:func:`_name_shape`).
_NUMBERS = re.compile(r"\d+(?:\.\d+)*")
#: A name that is a hash or UUID (hexadecimal digits, dashes; its suffix apart): one shape, whatever they are.
_HEX_NAME = re.compile(r"(?=[^.]*\d)[0-9a-f-]{8,}(\.[a-z]+)?")
#: A name of 8 letters and digits (its suffix apart): a CD's or PACS export's file IDs (IM000012, random
#: ones: 4WN6ISIG, XKQZBTRA), one shape for those holding a digit, one for those of letters only.
_ID8_NAME = re.compile(r"([0-9a-z]{8})(\.[a-z]+)?")
_ID8_MIXED, _ID8_LETTERS = "<8 letters and digits>", "<8 letters>"


def _name_shape(name: str | Path) -> str:
    """How a file is named, its numbers apart, in lower case: 'ct-#.dcm' for ct-012.dcm, '#' for a UID
    ('1.2.840.113619.2.55.3.2831'), 'im.#' for IM.0001, '<hex>.dcm' for a hash or UUID name; a name of 8
    letters and digits (IM000012, a PACS export's random 4WN6ISIG) '<8 letters and digits>', of 8 letters
    '<8 letters>' (a random name may hold no digit; LOCKFILE beside IM000012 is no slice). A file named so
    beside a series' slices may be one of them (:func:`_named_as`)."""
    name = Path(name).name.lower()
    if short := _ID8_NAME.fullmatch(name):
        return (_ID8_LETTERS if short.group(1).isalpha() else _ID8_MIXED) + (short.group(2) or "")
    if hexed := _HEX_NAME.fullmatch(name):
        return "<hex>" + (hexed.group(1) or "")
    return _NUMBERS.sub("#", name)


def _named_as(file: Path, shapes: set[str]) -> bool:
    """Whether a file of zeros (:func:`_zeros`) is named as the slices whose name shapes
    (:func:`_name_shape`) are ``shapes``: its shape is one of them. A name of 8 letters beside slices named
    by 8 random letters and digits (7 % of which hold no digit, so a 40-slice series mostly holds one) only
    when the file is not empty (zeros of a slice's size, preallocated): an empty one is as likely a marker
    file (a zero-byte LOCKFILE or COMPLETE, which refused the series), so a random name of letters only lost
    with no byte is missed."""
    shape = _name_shape(file)
    if shape.startswith(_ID8_LETTERS) and shape.replace(_ID8_LETTERS, _ID8_MIXED, 1) in shapes:
        try:
            return file.stat().st_size > 0
        except OSError:
            return False
    return shape in shapes


#: How much of a file is read at once to tell whether it holds only zeros (:func:`_zeros`).
_CHUNK_BYTES = 1 << 20


def _zeros(file: Path) -> bool:
    """Whether ``file`` holds no byte, or only zeros (a copy that made or preallocated the file, a crash
    that left it zero-filled): read until its first byte that is not zero (a DICOM file's preamble ends
    in 'DICM', a dataset without it starts with a tag)."""
    try:
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                if chunk.count(0) != len(chunk):
                    return False
    except OSError:
        return False
    return True


def _value_cut(file: Path, value: str) -> bool:
    """Whether ``file`` ends within its Series Instance UID, read as ``value``: its last bytes are ``value``
    and the element's declared length (explicit or implicit VR, little endian) is longer. A whole UID of
    another series may be the start of this one's (...1 beside ...12)."""
    data = value.encode("ascii", "replace")
    try:
        with open(file, "rb") as handle:
            start = handle.seek(0, 2) - len(data) - 8
            if start < 0:
                return False
            handle.seek(start)
            tail = handle.read()
    except OSError:
        return False
    head = tail[:8]
    if tail[8:] != data or head[:4] != b"\x20\x00\x0e\x00":
        return False
    length = int.from_bytes(head[6:8] if head[4:6] == b"UI" else head[4:8], "little")
    return length > len(data)


#: A pixel element's length that says "up to its delimiter" (encapsulated, compressed frames).
UNDEFINED_LENGTH = 0xFFFFFFFF


def _pixel_state(file: Path) -> str:
    """What a DICOM image file GDCM left out holds: "float" (Float Pixel Data), "none" (no pixel data, the
    file whole: no slice to miss), "cut short" (its header or its pixel data runs past the file's end: an
    interrupted copy) or "damaged" (whole, yet unparseable)."""
    try:
        with collected_warnings():  # dropped: pydicom's note on compressed pixels cut short, said here
            ds = read_header(file, defer_size="1 KB")  # the pixel element's place and length, not its values
        size = file.stat().st_size
    except Exception:  # an element runs past the end, or the rest is garbage
        return "cut short"
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return "float"
    if "PixelData" not in ds:
        return "cut short" if _pixel_element_begun(file) else "none"
    raw = ds.get_item("PixelData", keep_deferred=True)  # its place and length, not read
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", 0)
    if tell is not None and length != UNDEFINED_LENGTH and tell + length > size:
        return "cut short"
    return "damaged"


#: A Pixel Data element's tag (7FE0,0010) as written, little or big endian.
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")


def _pixel_element_begun(file: Path) -> bool:
    """Whether the header of ``file`` is followed by a Pixel Data element, or by the start of one's own
    header (its tag, and its VR or length cut off): pydicom leaves out (with a warning only) compressed
    pixels whose fragments run past the file's end, a JPEG 2000 slice cut short by an interrupted copy, and
    stops at a file's end within an element's header with no word: either then looked like an image file
    without pixel data (the CT read a slice short, or refused as unevenly spaced)."""
    import pydicom

    try:
        with open(file, "rb") as opened, collected_warnings():
            handle = _ShortReads(opened)
            pydicom.dcmread(handle, force=True, stop_before_pixels=True)  # left at the pixel element's tag
            if handle.short_at is None:
                return opened.read(4) in _PIXEL_TAGS
            opened.seek(handle.short_at)  # the file ends within what pydicom read from here on
            rest = opened.read(4)
            return bool(rest) and any(tag.startswith(rest) for tag in _PIXEL_TAGS)
    except Exception:  # unreadable: no pixel element found
        return False


class _ShortReads:
    """A file handle for pydicom that notes where its last read began when that read came short
    (``short_at``: the file ends within what was read from there, an element's header cut; None when it
    was whole, or read nothing: the file ends between elements)."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self.short_at: int | None = None

    def read(self, size: int = -1) -> bytes:
        at = self._handle.tell()
        data = self._handle.read(size)
        self.short_at = at if size is not None and 0 < len(data) < size else None
        return data

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def _refuse_cut_short(folder: Path, listed: list[str], series_uid: str) -> None:
    """LNQError (:func:`_cut_short`) for the files of ``folder`` GDCM did not list (``listed``: the files
    of its series) that belong to the series ``series_uid``: the one check of :func:`read_dicom` and
    :func:`dicom_grid`."""
    if reason := _cut_short(folder.name, dicom_tree.unlisted_files(folder, listed), series_uid, listed):
        raise LNQError(reason)


def _refuse_headerless(files: list[str], headers: list, name: str) -> None:
    """LNQError for a slice GDCM lists whose header cannot be read (:func:`_series_slices`' None): read
    without it, the checks of the series' headers (scouts, copies, rescales read in float, padding) would be
    skipped without a word, and HU of later slices could wrap."""
    for file, header in zip(files, headers, strict=True):
        if header is None:
            raise LNQError(f"the header of {Path(file).name} in {name} cannot be read, although it is "
                           "listed as a slice of the DICOM series (damaged, or an encoding lnq-napari does "
                           "not read); re-export the series from the PACS or scanner, or convert it to NRRD "
                           "or NIfTI")


def _no_ct_image(path: Path) -> str:
    """The error for a DICOM file that is no image of a series (an RT structure set, a report)."""
    try:
        modality = str(read_header(path, stop_before_pixels=True, specific_tags=["Modality"])
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
    if path.is_file() and dicom_tree.is_dicom_path(path):
        head = _first_file_header(str(path))
        if head.sop_class and not _enhanced(head.sop_class, head.frames) \
                and head.sop_class not in SEG_SOP_CLASSES:
            return path.parent
    return path


def _patient_id(file: str) -> str:
    """The Patient ID in a DICOM file's header ("" when it has none or cannot be read)."""
    try:
        header = read_header(file, stop_before_pixels=True, specific_tags=["PatientID"])
        return str(header.get("PatientID", ""))
    except Exception:  # the series is read next, and refused there when damaged
        return ""


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
    try:
        header = read_header(file, stop_before_pixels=True, specific_tags=[
            "SOPClassUID", "NumberOfFrames", "FrameOfReferenceUID", "ImageType", "Modality"])
        sop_class = str(header.get("SOPClassUID", ""))
    except Exception:  # unreadable: the series reader says so
        return FileHeader()
    return FileHeader(sop_class, frame_count(header), str(header.get("FrameOfReferenceUID", "")).strip(),
                      is_localizer(header), is_ct_image(header), is_ct_modality(header),
                      str(header.get("Modality", "") or "").strip())


#: What a series' headers are read for: its slices (:data:`.dicom_headers.SLICE_TAGS`), their stack and
#: padding (:data:`.dicom_headers.VOLUME_TAGS`), their rescale to HU.
_SLICE_HEADER_TAGS = [*SLICE_TAGS, *VOLUME_TAGS, "RescaleSlope", "RescaleIntercept", "SliceThickness",
                      "SpacingBetweenSlices", "SharedFunctionalGroupsSequence"]


def _series_slices(files: list[str]) -> tuple[list[str], list[Dataset | None]]:
    """The files of a series that are its slices, in order (:func:`.dicom_headers.series_slices`), and
    each one's header (:data:`_SLICE_HEADER_TAGS`, no pixels; None: unreadable)."""
    headers = []
    for file in files:
        try:
            headers.append(read_header(file, stop_before_pixels=True, specific_tags=_SLICE_HEADER_TAGS))
        except Exception:  # the series reader says what is wrong with it
            headers.append(None)
    kept = series_slices(list(zip(files, headers, strict=True)), headers)
    return [file for file, _ in kept], [header for _, header in kept]


def _rescale_beyond_first(headers: list) -> bool:
    """Whether a slice's rescale slope or intercept (:func:`_series_slices`' headers) is fractional, or not
    that of every other slice: ITK reads a series in the type the first slice's rescale gives, so a later
    slice's fractional HU were rounded (up to 1 HU off), and a later slice's negative HU wrapped round to
    +65535 when the first slice's rescale gave unsigned values (intercept 0), unless the series is read as
    float."""
    seen = set()
    for header in (h for h in headers if h is not None):
        rescale = _rescale(header)
        if rescale is None:  # not numbers: the series reader says what is wrong
            continue
        if not all(value.is_integer() for value in rescale):
            return True
        seen.add(rescale)
    return len(seen) > 1


def _enhanced(sop_class: str, frames: int) -> bool:
    """Whether a file of that SOP class and frame count is an enhanced (multi-frame) CT."""
    return sop_class in ENHANCED_CT_SOP_CLASSES or frames > 1


def _read_enhanced(file: Path, name: str, pixels: bool = True) -> RawImage:
    """An enhanced (multi-frame) DICOM CT in HU, its grid taken from the frames' functional groups by
    highdicom, which refuses frames that are missing, unevenly spaced or tilted; slices ordered along the
    normal of their rows and columns, as a classic series reads. ``pixels=False``: its grid only, over an
    all-zero read-only array (no frame decoded). Declared pixel padding above the CT's range reads as
    :data:`PADDING_HU`, as in a classic series (:func:`_padding_below_air`)."""
    import highdicom

    fix = "convert it, e.g. with dcm2niix to NIfTI, or re-export the series"
    try:
        if pixels and not pydicom_decodes(file):  # JPEG lossless without pylibjpeg: GDCM decodes it
            image = highdicom.Image.from_dataset(native_dataset(file), copy=False)
        elif bare_dataset(file):  # highdicom's imread reads none without the preamble; its pixels if asked
            image = highdicom.Image.from_dataset(read_header(file, stop_before_pixels=not pixels), copy=False)
        else:
            image = highdicom.imread(file, lazy_frame_retrieval=True)
        geometry = image.get_volume_geometry()
    except LNQError:  # a codec neither pydicom nor GDCM has: named
        raise
    except Exception as exc:  # highdicom raises ValueError/RuntimeError/AttributeError for such headers
        raise LNQError(f"{name}: the header of its enhanced (multi-frame) DICOM CT cannot be read "
                       f"({_first_line(exc)}); {fix}") from None
    if geometry is None or len(geometry.spatial_shape) != 3:
        raise LNQError(f"{name}: the frames of its enhanced (multi-frame) DICOM CT do not form one evenly "
                       f"spaced volume (a frame missing, doubled or tilted); {fix}")
    if pixels:
        try:
            array = _enhanced_hu(image, file)
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


def _enhanced_hu(image, file: Path) -> np.ndarray:
    """An enhanced CT's HU (highdicom's volume, float32), its pixels' bits beyond Bits Stored cleared
    (:func:`_bits_stored_image`: highdicom reads every allocated bit) and its declared padding read as in a
    classic series (:func:`_padding_below_air`): its own HU where they are at most :data:`CT_TOP_HU`, else
    :data:`PADDING_HU`. Its stored values are decoded a second time (in their own integer type) only where
    the HU may hold a value beyond Bits Stored, or a padding above the CT's range, and the frames' one
    rescale cannot say which voxels."""
    array = image.get_volume(dtype=np.float32, apply_modality_transform=True).array
    declared, (bottom, top) = padding_values(image), stored_range(image)
    rescales = _frame_rescales(image)
    if len(rescales) == 1:  # HU bounds of what Bits Stored allows: the HU read tell whether any lies beyond
        slope, intercept = next(iter(rescales))
        low, high = sorted((bottom * slope + intercept, top * slope + intercept))
        half = abs(slope) / 2
        if array.size and low - half <= array.min() and array.max() <= high + half:
            if declared is not None:  # within Bits Stored: found by its HU, as a classic series' padding
                pad_low, pad_high = sorted(v * slope + intercept for v in declared)
                if pad_low > CT_TOP_HU:
                    array[(array > pad_low - half) & (array < pad_high + half)] = PADDING_HU
            return array
    elif declared is None and int(image.get("BitsStored") or image.BitsAllocated) >= int(image.BitsAllocated):
        return array  # every allocated bit stored, no padding: nothing to look for
    bits, signed = int(image.BitsAllocated), bool(int(image.get("PixelRepresentation") or 0))
    stored = image.get_volume(dtype=np.dtype(f"{'i' if signed else 'u'}{max(bits // 8, 1)}"),
                              apply_modality_transform=False).array
    padded = None if declared is None else (stored >= declared[0]) & (stored <= declared[1])
    written = None if padded is None else array[padded]  # the padding's HU as written, every bit read
    if stored.min() < bottom or stored.max() > top:  # high bits set beyond Bits Stored
        del stored
        array = _bits_stored_image(file).get_volume(dtype=np.float32, apply_modality_transform=True).array
    if padded is not None:
        written[written > CT_TOP_HU] = PADDING_HU
        array[padded] = written
    return array


def _frame_rescales(image) -> set[tuple[float, float]]:
    """The (slope, intercept) pairs an enhanced CT's frames are rescaled by (its shared and per-frame Pixel
    Value Transformation, and any given at its top level); (1, 0) when none is given; empty when one cannot
    be read."""
    found = set()
    groups = [group for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
              for group in image.get(keyword) or []]
    items = [item for group in groups for item in group.get("PixelValueTransformationSequence") or []]
    for item in [*items, *([image] if "RescaleSlope" in image or "RescaleIntercept" in image else [])]:
        rescale = _rescale(item)
        if rescale is None:
            return set()
        found.add(rescale)
    return found or {(1.0, 0.0)}


def _bits_stored_image(file: Path):
    """An enhanced CT file as highdicom reads it, its pixels' unused high bits cleared first (pydicom's
    decode, as the standard reads them and GDCM reads a classic slice): highdicom 0.28 reads every
    allocated bit, so a 12-bit CT with bits set above its Bits Stored (an overlay, garbage) read
    thousands of HU off."""
    import highdicom
    from pydicom.pixels import pixel_array
    from pydicom.uid import ExplicitVRLittleEndian

    dataset = native_dataset(file)  # compressed so that pydicom cannot decode it: GDCM's decode
    frames = pixel_array(dataset)  # high bits cleared (signed: extended from the high bit)
    dataset.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    dataset["PixelData"].VR = "OW"
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return highdicom.Image.from_dataset(dataset, copy=False)


def _first_line(exc: Exception) -> str:
    """An exception's first line without its full stop, or its type's name when it has no text."""
    return (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")


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


def _set_file_names(reader, files: list[str], folder: Path) -> None:
    """``reader.SetFileNames(files)``; LNQError naming a file whose name is no UTF-8 text (a Latin-1 name
    from an old CD or a Windows share), which SimpleITK cannot pass to GDCM (a TypeError traceback)."""
    for file in files:
        try:
            file.encode("utf-8")
        except UnicodeEncodeError:
            shown = Path(file).name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise LNQError(f"the file name '{shown}' in {folder.name} is not UTF-8 text, which the DICOM "
                           "reader (GDCM) cannot open; rename the file (letters and digits only)") from None
    reader.SetFileNames(files)


def _execute_series(reader, folder: Path):
    """``reader.Execute()`` of a SimpleITK series reader, ITK's own warnings silenced (the slice check
    that follows says what is wrong, in one line); a failure is a one-line LNQError (ITK's last line: a
    damaged compressed slice's codec prints its own lines on stderr before it, which are left there)."""
    try:
        with itk_quiet():
            return reader.Execute()
    except RuntimeError as exc:
        text = str(exc)
        if "does not fully contain the requested region" in text:  # a slice of another size
            raise LNQError(f"the DICOM slices in {folder} differ in size (a localizer or another series "
                           "among them); keep only the slices of the one CT series") from exc
        reason = _ITK_PREFIX.sub("", text.strip().splitlines()[-1])[:160]
        if name := _undecodable_slice(reader.GetFileNames()):
            if codec := missing_codec(Path(folder) / name):  # no codec for it here: not damaged
                raise LNQError(f"cannot read the DICOM series in {folder}: {codec}") from exc
            raise LNQError(f"cannot read the DICOM series in {folder}: its slice {name} cannot be decoded "
                           f"({reason}); the file is damaged: copy or re-export the series again") from exc
        raise LNQError(f"cannot read the DICOM series in {folder} ({reason}); check that the slices are "
                       "complete images of one series") from exc


#: ITK's prefix to an error's line ('ITK ERROR: GDCMImageIO(0x55d9b66cc1c0): '), which says nothing to a user.
_ITK_PREFIX = re.compile(r"^ITK ERROR: \w+\(0x[0-9a-f]+\): ")


def _undecodable_slice(files) -> str | None:
    """The name of the first of a series' ``files`` that SimpleITK (GDCM) cannot read alone, where a read of
    the series failed (a damaged compressed slice: its codec's own lines go to stderr once more); None when
    each reads."""
    import SimpleITK as sitk

    for file in files:
        try:
            with itk_quiet():
                sitk.ReadImage(file, imageIO="GDCMImageIO")
        except RuntimeError:
            return Path(file).name
    return None


def dicom_grid(folder: Path, series_uid: str) -> Volume:
    """The grid :func:`read_dicom` gives a series (as an all-zero read-only Volume, with the series and
    frame of reference UIDs in ``meta``) from its first and last slices' pixels (ITK takes the origin and
    direction from the first and the slice spacing as (last - first) / (slices - 1)) and every slice's
    header (a slice missing or doubled is refused, as a read of the series refuses it)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    listed = list(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    _refuse_cut_short(folder, listed, series_uid)  # as :func:`read_dicom` refuses it
    files, headers = _series_slices(listed)
    head = _first_file_header(files[0]) if files else FileHeader()
    if len(files) == 1 and _enhanced(head.sop_class, head.frames):  # its frames place it
        raw = _read_enhanced(Path(files[0]), folder.name, pixels=False)
        meta = {"dicom_series_uid": series_uid, "dicom_frame_of_reference": head.frame_of_reference}
        zeros = np.broadcast_to(np.uint8(0), raw.array.shape)
        return Volume(zeros, raw.spacing, raw.origin, raw.direction, {k: v for k, v in meta.items() if v})
    tags = header_slice_tags(files, headers)
    check_stack(tags, folder.name)  # the stack the ends stand for
    _set_file_names(reader, [files[0], files[-1]] if len(files) > 2 else files, folder)
    reader.SetImageIO("GDCMImageIO")  # as :func:`read_dicom` reads the series
    reader.MetaDataDictionaryArrayUpdateOn()
    image = _execute_series(reader, folder)
    direction = written_direction(image.GetDirection(), tags, folder.name)
    spacing = list(_one_slice_spacing(image.GetSpacing(), headers, folder.name))
    if len(files) > 2:
        spacing[2] /= len(files) - 1
    columns, rows, depth = image.GetSize()
    zeros = np.broadcast_to(np.uint8(0), (len(files) if len(files) > 2 else depth, rows, columns))
    raw = RawImage(zeros, tuple(spacing), image.GetOrigin(), image.GetDirection(), {})
    if direction is not None:
        _place_written(raw, direction, tags.positions, pixels=False)
    check_grid(raw.spacing, raw.origin, raw.direction, folder.name)
    meta = {"dicom_series_uid": series_uid}
    if reader.HasMetaDataKey(0, "0020|0052"):
        meta["dicom_frame_of_reference"] = reader.GetMetaData(0, "0020|0052").strip()
    return Volume(raw.array, list(raw.spacing), raw.origin, raw.direction, meta)
