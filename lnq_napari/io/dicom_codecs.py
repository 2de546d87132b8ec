"""Compressed DICOM pixels that pydicom cannot decode here (JPEG lossless and JPEG-LS need pylibjpeg or
python-gdcm, which lnq-napari does not require): decoded by GDCM inside SimpleITK, which reads them for a
classic series already, so that an enhanced (multi-frame) CT exported compressed reads as its classic
slices do; a codec neither has is named in one line."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_headers import frame_count, read_header
from lnq_napari.io.raw_image import itk_quiet

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

#: The pixel module's tags GDCM needs to decode the frames (no rescale: the stored values come back).
_PIXEL_TAGS = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation",
               "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration")


def pydicom_decodes(file: str | Path) -> bool:
    """Whether pydicom can decode ``file``'s pixels here (uncompressed, or a codec whose plugin is
    installed); read from its header alone."""
    return _pydicom_decodes(_transfer_syntax(file))


def _transfer_syntax(file: str | Path) -> UID:
    """``file``'s Transfer Syntax UID, read from its header alone."""
    header = read_header(file, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    return header.file_meta.TransferSyntaxUID


def _pydicom_decodes(syntax: UID) -> bool:
    """Whether pydicom can decode pixels of transfer syntax ``syntax`` here."""
    from pydicom.pixels import get_decoder

    if not syntax.is_compressed:
        return True
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # no decoder of that syntax in pydicom at all
        return False


def native_dataset(file: str | Path) -> Dataset:
    """``file``'s pydicom dataset with its pixels uncompressed (little-endian, as stored: no rescale, every
    frame in file order), decoded by GDCM where pydicom cannot decode them; LNQError naming the transfer
    syntax when neither can."""
    from pydicom.uid import ExplicitVRLittleEndian

    dataset = read_header(file)
    if "PixelData" not in dataset or pydicom_decodes(file):
        return dataset
    frames = _gdcm_frames(dataset, f"{Path(file).parent.name}/{Path(file).name}")
    dataset.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    dataset["PixelData"].VR = "OW" if int(dataset.BitsAllocated) > 8 else "OB"
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dataset


def _gdcm_frames(dataset: Dataset, name: str) -> np.ndarray:
    """The stored frames (frames, rows, columns) of ``dataset``'s compressed pixels, decoded by GDCM from a
    file holding only its pixel module (so GDCM applies no rescale and reads every frame in order)."""
    import SimpleITK as sitk
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import MultiFrameGrayscaleWordSecondaryCaptureImageStorage as SecondaryCapture
    from pydicom.uid import generate_uid

    syntax = dataset.file_meta.TransferSyntaxUID
    bare = Dataset()
    bare.file_meta = FileMetaDataset()
    bare.file_meta.TransferSyntaxUID = syntax
    bare.SOPClassUID = bare.file_meta.MediaStorageSOPClassUID = SecondaryCapture
    bare.SOPInstanceUID = bare.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword in _PIXEL_TAGS:
        if keyword in dataset:
            bare[keyword] = dataset[keyword]
    bare["PixelData"] = dataset["PixelData"]
    frames, rows, columns = frame_count(dataset), int(dataset.Rows), int(dataset.Columns)
    with tempfile.TemporaryDirectory(prefix="lnq-dicom-") as scratch:
        path = Path(scratch) / "frames.dcm"
        bare.save_as(path, enforce_file_format=True)
        try:
            with itk_quiet():
                array = sitk.GetArrayFromImage(sitk.ReadImage(str(path), imageIO="GDCMImageIO"))
        except RuntimeError:
            array = None
    if array is None or array.size != frames * rows * columns:
        raise LNQError(f"{name}: {_codec_text(syntax)}")
    signed, bits = bool(int(dataset.get("PixelRepresentation") or 0)), int(dataset.BitsAllocated)
    return array.reshape(frames, rows, columns).astype(f"{'i' if signed else 'u'}{max(bits // 8, 1)}")


#: Compressed transfer syntaxes GDCM (inside SimpleITK) decodes: JPEG baseline, extended and lossless,
#: JPEG-LS, JPEG 2000 (and High-Throughput JPEG 2000, a JPEG 2000 codestream), RLE, deflate. A slice of one
#: of these that does not decode is damaged; one of another (MPEG, JPEG XL, JPIP ...) lacks a codec.
GDCM_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.1.99"})


def missing_codec(file: str | Path) -> str | None:
    """Where ``file``'s pixels are compressed in a transfer syntax neither GDCM nor pydicom decodes here,
    what to say of it (its name and UID, and what to do); None otherwise (uncompressed, a syntax GDCM reads,
    an unreadable header)."""
    try:
        syntax = _transfer_syntax(file)
        if not syntax.is_compressed or str(syntax) in GDCM_SYNTAXES or _pydicom_decodes(syntax):
            return None
    except Exception:  # not read: the caller names the file as it found it
        return None
    return _codec_text(syntax)


def _codec_text(syntax: UID) -> str:
    """What to say of pixels compressed in a transfer syntax no codec here decodes, and what to do."""
    return (f"its pixels are compressed as {syntax.name} ({syntax}), which neither GDCM nor pydicom here can "
            "decode; convert the series to uncompressed DICOM (e.g. gdcmconv --raw) or to NIfTI (dcm2niix), "
            "or re-export it from the PACS uncompressed or as JPEG 2000")
