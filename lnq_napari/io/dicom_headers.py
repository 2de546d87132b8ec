"""What a DICOM header says of its file: a CT image, a localizer, one of its series' slices, a sharp (lung
or bone kernel) reconstruction. One rule for :mod:`.dicom_series` (reading a series), :mod:`.dicom_tree`
(finding files) and :mod:`.dicom_seg` (writing a SEG for a series)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from lnq_napari.heard import collected_warnings


class Header(Protocol):
    """A DICOM header as read (a pydicom dataset, a highdicom image): its attributes by keyword."""

    def get(self, key: str, default: Any = None) -> Any: ...


#: Enhanced CT and Legacy Converted Enhanced CT: positions and rescale in functional groups, not per file.
ENHANCED_CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2")
#: CT Image Storage and the enhanced ones: the images of a CT (a PET, a dose screen, a SEG are none).
CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", *ENHANCED_CT_SOP_CLASSES)
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage (what write_dicom_seg writes)
SEG_SOP_CLASSES = (SEG_SOP_CLASS, "1.2.840.10008.5.1.4.1.1.66.7")  # and Label Map Segmentation Storage
#: The header elements :func:`series_slices` reads.
SLICE_TAGS = ["SOPInstanceUID", "ImageType", "ImagePositionPatient", "NumberOfFrames"]
#: The header elements :func:`forms_volume` and :func:`padding_values` read, beside :data:`SLICE_TAGS`.
VOLUME_TAGS = ["ImageOrientationPatient", "PixelPaddingValue", "PixelPaddingRangeLimit",
               "PixelRepresentation", "BitsAllocated", "BitsStored"]

Item = TypeVar("Item")

#: How a DICOM dataset written without the 128-byte preamble and 'DICM' marker begins (older exports, some
#: PACS): its first element's group, 0002 (file meta) or 0008, little endian; or 0008 big endian (explicit VR
#: big endian without file meta).
BARE_STARTS = (b"\x02\x00", b"\x08\x00")
BIG_ENDIAN_START = b"\x00\x08"
#: The two-letter value representations an explicit-VR element may name.
VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
                b"UR US UT UV".split())
#: The longest first element of a bare implicit-VR dataset looked at as DICOM: a group length (4 bytes), the
#: character set, image type or SOP class (tens of bytes). A GIPL or raw volume starting 02 00 or 08 00 reads
#: a length of millions here, or of 0 (zeros, then checked by :data:`PREFIX_BYTES`).
MAX_FIRST_LENGTH = 1024
#: What of a bare file is parsed to find its SOP Class UID (:func:`bare_sop_class`): (0002,0002) or
#: (0008,0016) lie in its first few hundred bytes; a large file that only starts like one is not walked.
PREFIX_BYTES = 65536
HEAD_BYTES = 132  # the preamble and 'DICM', or a bare dataset's first elements


def bare_start(head: bytes) -> bool:
    """Whether a file's first bytes ``head`` (:data:`HEAD_BYTES`) begin a DICOM dataset written without the
    preamble and 'DICM': a first element of group 0002 or 0008 (:data:`BARE_STARTS`, or
    :data:`BIG_ENDIAN_START`) with an explicit VR (:data:`VRS`), or an implicit-VR length below
    :data:`MAX_FIRST_LENGTH` (a file meta element a sane element number)."""
    if len(head) < 8 or head[128:132] == b"DICM":
        return False
    if head[:2] == BIG_ENDIAN_START:
        return head[4:6] in VRS
    if head[:2] not in BARE_STARTS:
        return False
    if head[:2] == b"\x02\x00" and int.from_bytes(head[2:4], "little") > 0x0102:  # no file meta element
        return False
    return head[4:6] in VRS or int.from_bytes(head[4:8], "little") < MAX_FIRST_LENGTH


def bare_dataset(path) -> bool:
    """Whether the file ``path`` begins as a DICOM dataset written without the preamble and 'DICM'
    (:func:`bare_start`); SimpleITK's GDCM reads such a file, pydicom only when forced."""
    try:
        with open(path, "rb") as handle:
            return bare_start(handle.read(HEAD_BYTES))
    except OSError:
        return False


def bare_sop_class(head: bytes, handle) -> str:
    """The SOP Class UID of a file that begins as a bare dataset (:func:`bare_start` of its first bytes
    ``head``, read from ``handle``), from its first :data:`PREFIX_BYTES` only; "" when it has none there
    or does not begin so."""
    import io

    import pydicom

    if not bare_start(head):
        return ""
    prefix = head + handle.read(PREFIX_BYTES - len(head))
    try:
        with collected_warnings():  # dropped: pydicom's notes on a file that is no DICOM, or one cut short
            ds = pydicom.dcmread(io.BytesIO(prefix), force=True, specific_tags=["SOPClassUID",
                                                                                "MediaStorageSOPClassUID"])
            meta = getattr(ds, "file_meta", None)  # values are converted (and warned of) when asked for
            found = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None
                                              else None)
    except Exception:  # not DICOM at all
        return ""
    return str(found or "").strip()


def bare_cut_short(path: str | Path) -> bool:
    """Whether the file ``path`` begins as a bare dataset (:func:`bare_start`) yet ends within
    :data:`PREFIX_BYTES` before naming its SOP class (:func:`bare_sop_class` finds none): a slice written
    without the preamble whose copy was interrupted in its first elements."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            if not bare_start(head) or bare_sop_class(head, handle):
                return False
            return handle.seek(0, 2) < PREFIX_BYTES
    except OSError:
        return False


def read_header(path, force: bool = False, **options):
    """The pydicom dataset of a DICOM file, with its preamble or without (a :func:`bare_start` with a SOP
    class in its first bytes, :func:`bare_sop_class`, read by force; ``force``: whatever it starts with),
    its transfer syntax the encoding it was read in when it has no file meta (so that its pixels decode),
    the file opened once: the one reader of the headers of a CT's files. ``options`` go to
    ``pydicom.dcmread`` (``stop_before_pixels``, ``specific_tags`` ...); raises what it raises for a file
    that is no DICOM."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        force = force or bool(bare_sop_class(head, handle))  # a large file only starting so: not walked
        handle.seek(0)
        dataset = pydicom.dcmread(handle, force=force, **options)
    if "TransferSyntaxUID" not in dataset.file_meta:  # no file meta (bare, or a preamble without it)
        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else \
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return dataset


def is_localizer(header) -> bool:
    """Whether a DICOM header's Image Type says it is a localizer (a scout, topogram or survey)."""
    kinds = header.get("ImageType") or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return "LOCALIZER" in [str(k).strip().upper() for k in kinds]


def _position(header) -> tuple:
    """A header's Image Position (Patient) rounded to 0.001 mm (() when it has none or it is unreadable)."""
    try:
        return tuple(round(float(v), 3) for v in header.get("ImagePositionPatient") or ())
    except (TypeError, ValueError):
        return ()


def is_ct_image(header) -> bool:
    """Whether a DICOM header is a CT image (a volume's slice or an enhanced CT): a CT's image
    (:func:`is_ct_modality`) and no localizer (a PET, a dose screen stored as Secondary Capture with
    Modality CT, a SEG are none)."""
    return not is_localizer(header) and is_ct_modality(header)


def is_ct_modality(header) -> bool:
    """Whether a DICOM header is an image of a CT, localizer or not: its SOP class a CT one; a header
    without a SOP class by its Modality (CT, or none given)."""
    sop_class = str(header.get("SOPClassUID", "") or "").strip()
    if sop_class:
        return sop_class in CT_SOP_CLASSES
    return str(header.get("Modality", "") or "CT").strip().upper() == "CT"


#: A stack of at least this many parallel slices at distinct positions is a volume; a scout is 1 to 3 slices
#: (frontal, lateral, often not parallel), a few repeated at other heights at most.
VOLUME_SLICES = 8


def forms_volume(headers: Sequence) -> bool:
    """Whether the headers of a series' slices (:func:`series_slices`; None: unreadable) form a volume:
    :data:`VOLUME_SLICES` or more, one orientation, distinct positions along its normal (evenly spaced or
    not: a CT missing a slice is still the CT, the reader then says what is wrong). Of a CT whose
    every slice says LOCALIZER (some exports mark the whole CT so), a volume is the CT, a scout is not."""
    return volume_stack(headers) is not None


def volume_stack(headers: Sequence) -> tuple[np.ndarray, np.ndarray] | None:
    """Of the headers of a series' slices that :func:`forms_volume`, the slice normal (unit length) and
    each slice's position (n x 3, mm); None when they form no volume."""
    if len(headers) < VOLUME_SLICES or any(h is None for h in headers):
        return None
    try:
        orientations = np.array([[float(v) for v in h.get("ImageOrientationPatient") or ()] for h in headers])
        positions = np.array([[float(v) for v in h.get("ImagePositionPatient") or ()] for h in headers])
    except (TypeError, ValueError):  # missing in some, or not numbers
        return None
    if orientations.shape != (len(headers), 6) or positions.shape != (len(headers), 3) \
            or not np.allclose(orientations, orientations[0], atol=1e-3):
        return None
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    if not np.diff(np.sort(positions @ normal)).min() >= 1e-3:  # two at one position, no normal, not numbers
        return None
    return normal / np.linalg.norm(normal), positions


def is_localizer_volume(headers: Sequence) -> bool:
    """Whether a series' slices (their headers, :func:`series_slices`) are a CT whose every slice is marked
    LOCALIZER (some exports mark a whole CT so) that forms a volume (:func:`forms_volume`): of series none
    of which is a CT image (:func:`is_ct_image`), the CT to read rather than a PET or MR beside it."""
    return all(h is not None and is_ct_modality(h) for h in headers) and forms_volume(headers)


def padding_values(header: Header) -> tuple[int, int] | None:
    """The stored values (lowest, highest) a slice's header marks as padding outside its scan circle:
    Pixel Padding Value (0028,0120), to Pixel Padding Range Limit (0028,0121) where given; read as
    signed or unsigned by its Pixel Representation (a tag's VR, US or SS, may say otherwise); None when it
    gives none."""
    values = [header.get(keyword) for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit")]
    if values[0] is None:
        return None
    bits = int(header.get("BitsAllocated") or 16)
    signed = bool(int(header.get("PixelRepresentation") or 0))
    try:
        stored = [_stored(v, bits, signed) for v in values if v is not None]
    except (TypeError, ValueError):  # several values, or not a number: no padding read from it
        return None
    return min(stored), max(stored)


def stored_range(header: Header) -> tuple[int, int]:
    """The lowest and highest stored pixel a header's Bits Stored and Pixel Representation allow (its
    Bits Allocated's where it gives no Bits Stored): what a pixel reads as once the unused high bits are
    cleared, as the standard reads them (GDCM and pydicom do; a value beyond it is read as another)."""
    try:
        bits = int(header.get("BitsStored") or header.get("BitsAllocated") or 16)
        signed = bool(int(header.get("PixelRepresentation") or 0))
    except (TypeError, ValueError):
        bits, signed = 16, False
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _stored(value, bits: int, signed: bool) -> int:
    """A padding tag's value as a stored pixel of ``bits`` bits, signed or not."""
    if isinstance(value, bytes):
        return int.from_bytes(value[: bits // 8], "little", signed=signed)
    value = int(value) % (1 << bits)
    return value - (1 << bits) if signed and value >= 1 << (bits - 1) else value


def series_slices(items: Sequence[Item], headers: Sequence) -> list[Item]:
    """Of a series' ``items`` (files or headers, in order) with each one's header (None: unreadable), its
    slices: a localizer (scout) filed in the series and a second copy of one image (same SOP Instance UID
    at the same position: a file copied twice) left out; unreadable ones kept (the series reader names
    what is wrong). Slices at other positions sharing a UID (a faulty exporter or anonymiser) are kept.
    A series of localizers only keeps them (a scout alone is read as what it is). Classic slices and an
    enhanced (multi-frame) file of one Series Instance UID (a converter that kept it, its output saved
    beside its input) are one CT twice: whichever holds more images is kept (the slices on a tie)."""
    kept, localizers, seen = [], [], set()
    for item, header in zip(items, headers, strict=True):
        if header is None:
            kept.append((item, 1))
            continue
        instance = str(header.get("SOPInstanceUID", "")).strip()
        copy = (instance, _position(header))
        if instance and copy in seen:
            continue
        seen.add(copy)
        (localizers if is_localizer(header) else kept).append((item, frame_count(header)))
    return [item for item, _ in (_one_kind(kept) if kept else localizers)]


def frame_count(header: Header | None) -> int:
    """A header's Number of Frames: 1 when it gives none, or none that is a number (the reader says so), or
    is None (unreadable)."""
    if header is None:
        return 1
    try:
        return int(header.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _one_kind(kept: list[tuple[Item, int]]) -> list[tuple[Item, int]]:
    """Of a series' ``(slice, frames)``, its classic slices or its enhanced (multi-frame) files, whichever
    hold more images (the slices on a tie); all when not both are there."""
    multi = [entry for entry in kept if entry[1] > 1]
    if not multi or len(multi) == len(kept):
        return kept
    single = [entry for entry in kept if entry[1] <= 1]
    return single if len(single) >= sum(frames for _, frames in multi) else multi


#: Kernel names (ConvolutionKernel, upper case, split at anything but letters and digits) of a sharp
#: reconstruction: GE's LUNG, BONE, BONEPLUS, EDGE, DETAIL; SHARP in Canon's and United Imaging's names.
SHARP_KERNEL_WORDS = frozenset({"LUNG", "BONE", "BONEPLUS", "EDGE", "SHARP", "DETAIL"})
#: Kernel names of a soft-tissue reconstruction: GE's STANDARD and SOFT.
SOFT_KERNEL_WORDS = frozenset({"STANDARD", "SOFT"})
#: Philips' one-letter kernels: L (lung), D and E (sharp, bone); A, B and C (smooth to standard) are soft.
#: Their two-letter ones (YA to YD, CB, UB ...) are not told apart here: unknown.
PHILIPS_SHARP, PHILIPS_SOFT = frozenset("LDE"), frozenset("ABC")
#: Siemens kernels are a letter or two (B, Br, Bl, Hr, I, Qr ...), a sharpness and a suffix (B30f, Br64d;
#: any case): 50 and above are sharp (B50f to B80f, Bl57, Br59, Hr60), below soft.
SIEMENS_SHARP_FROM = 50
#: Whole words (lower case) of a series description naming a sharp reconstruction, read only for a series
#: that gives no kernel: lung, Lunge, Lungenfenster, poumon, bone, Knochen, sharp (not "Lungenembolie",
#: "LungCARE" or "Boneremoval", which name a protocol or a processing).
SHARP_DESCRIPTION_WORDS = frozenset({"lung", "lungs", "lunge", "lungen", "lungenfenster", "poumon", "poumons",
                                     "bone", "bones", "knochen", "knochenfenster", "sharp"})
#: Words (upper case) of an Image Type or series description naming a projection or rendering, no slice of
#: the scan: maximum, minimum or average intensity projections (MIP, MinIP, AVG; DICOM's MAXIMUM, MINIMUM,
#: MEAN pixel contrast), a thick slab, a volume rendering (VRT).
PROJECTION_WORDS = frozenset({"MIP", "MIPS", "MINIP", "MAXIP", "AVG", "AVERAGE", "MEAN", "MAXIMUM", "MINIMUM",
                              "PROJECTION", "SLAB", "VRT"})


def convolution_kernel(header) -> str:
    """A DICOM header's Convolution Kernel, its values joined by "/" ("" when it gives none): a classic
    slice's own, an enhanced CT's from its shared CT Reconstruction functional group."""
    kernel = header.get("ConvolutionKernel")
    if kernel is None:
        try:
            kernel = header.SharedFunctionalGroupsSequence[0].CTReconstructionSequence[0].get(
                "ConvolutionKernel")
        except (AttributeError, IndexError, KeyError, TypeError):
            kernel = None
    if kernel is None:
        return ""
    values = str(kernel).split("\\") if isinstance(kernel, str) else list(kernel)
    return "/".join(str(v).strip() for v in values if str(v).strip())


def reconstruction_sharpness(kernel: str, description: str = "") -> bool | None:
    """Whether a CT series is a sharp (lung or bone kernel) reconstruction, which the model reads poorly:
    True sharp, False soft, None not known. Its Convolution Kernel (:func:`convolution_kernel`) decides
    where known here; a series giving no kernel at all is sharp when its Series Description names lung, bone
    or sharp as a whole word (:data:`SHARP_DESCRIPTION_WORDS`), else unknown, as is an unknown kernel."""
    values = [v.strip() for v in re.split(r"[/\\]", kernel) if v.strip()]
    for value in values:
        verdict = _kernel_sharpness(value)
        if verdict is not None:
            return verdict
    if values:
        return None
    words = set(re.split(r"[^a-zà-ÿ]+", description.lower()))
    return True if words & SHARP_DESCRIPTION_WORDS else None


def is_projection(header) -> bool:
    """Whether a series' slice header says it is a projection or rendering (MIP, MinIP, average, thick slab,
    VRT: :data:`PROJECTION_WORDS`) by its Image Type or Series Description; DERIVED alone is none (a
    reformat or a resampled series is still the scan)."""
    kinds = header.get("ImageType") or []
    kinds = str(kinds).split("\\") if isinstance(kinds, str) else [str(k) for k in kinds]
    text = " ".join([*kinds, str(header.get("SeriesDescription", "") or "")]).upper()
    words = [w for w in re.split(r"[^A-Z0-9]+", text) if w]
    pairs = {" ".join(words[i:i + 2]) for i in range(len(words) - 1)}
    return bool(set(words) & PROJECTION_WORDS or pairs & {"MIN IP", "MAX IP"})


def _kernel_sharpness(kernel: str) -> bool | None:
    """One kernel name's verdict: True sharp, False soft, None not known here."""
    upper = kernel.upper()
    canon = re.fullmatch(r"FC(\d)\d(?:[^0-9].*)?", upper)  # Canon / Toshiba FC01 .. FC86
    if canon:
        digit = int(canon.group(1))
        return True if 5 <= digit <= 8 else False if digit <= 1 else None
    siemens = re.fullmatch(r"[A-Z]{1,2}(\d{2})[A-Z]?", upper)
    if siemens:
        return int(siemens.group(1)) >= SIEMENS_SHARP_FROM
    if upper in PHILIPS_SHARP or upper in PHILIPS_SOFT:
        return upper in PHILIPS_SHARP
    words = set(re.split(r"[^A-Z0-9]+", upper))
    if words & SHARP_KERNEL_WORDS:
        return True
    if words & SOFT_KERNEL_WORDS:
        return False
    return None
