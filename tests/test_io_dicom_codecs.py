"""Compressed DICOM as PACS exports give it: an enhanced CT in JPEG lossless (which pydicom cannot decode
without pylibjpeg) reads through GDCM, and a codec no reader here has is named, not called damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from test_io_dicom_series import _enhanced_of, _jpeg_slice, hu, series

from lnq_napari.errors import LNQError
from lnq_napari.io import read_volume
from lnq_napari.io.dicom_headers import VOLUME_SLICES

#: MPEG-2 Main Profile: a compressed transfer syntax neither GDCM nor pydicom decodes here.
NO_CODEC = "1.2.840.10008.1.2.4.100"


def _gdcm_encoded(frame: np.ndarray, scratch: Path, compressor: str = "JPEG") -> tuple[bytes, str]:
    """One frame compressed by GDCM (JPEG lossless by default): its bytes and transfer syntax UID."""
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(scratch))
    writer.SetImageIO("GDCMImageIO")
    writer.SetUseCompression(True)
    writer.SetCompressor(compressor)
    writer.Execute(sitk.GetImageFromArray(frame[None]))
    encoded = pydicom.dcmread(scratch)
    scratch.unlink()
    return next(generate_frames(encoded.PixelData, number_of_frames=1)), encoded.file_meta.TransferSyntaxUID


def _enhanced_jpeg(tmp_path: Path, values: np.ndarray) -> Path:
    """``values`` (HU) as one enhanced CT file whose frames are JPEG lossless, as a PACS may export it."""
    series(tmp_path / "classic", values)
    _enhanced_of(tmp_path / "classic", tmp_path / "enhanced")
    file = tmp_path / "enhanced" / "ct.dcm"
    ds = pydicom.dcmread(file)
    parts = [_gdcm_encoded(frame, tmp_path / "frame.dcm") for frame in ds.pixel_array]
    ds.PixelData, ds.file_meta.TransferSyntaxUID = encapsulate([p for p, _ in parts]), parts[0][1]
    ds["PixelData"].VR = "OB"
    ds.save_as(file, enforce_file_format=True)
    return file


def test_an_enhanced_ct_compressed_jpeg_lossless_reads_its_hu(tmp_path):
    """An enhanced CT whose frames are JPEG lossless (Process 14 SV1): its classic slices read (GDCM), but
    the enhanced file was refused ("cannot be decoded (... all plugins are missing dependencies:)"), a
    traceback printed before it; its frames are now decoded by GDCM and read as the classic series reads."""
    values = hu(VOLUME_SLICES)
    file = _enhanced_jpeg(tmp_path, values)
    assert pydicom.dcmread(file, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
    enhanced, classic = read_volume(file.parent), read_volume(tmp_path / "classic")
    np.testing.assert_array_equal(enhanced.array, values)
    np.testing.assert_allclose(enhanced.spacing, classic.spacing, atol=1e-6)
    np.testing.assert_allclose(enhanced.origin, classic.origin, atol=1e-6)


def _relabelled(file: Path, syntax: str) -> None:
    """``file`` (compressed) said to be in transfer syntax ``syntax``."""
    ds = pydicom.dcmread(file)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(file, enforce_file_format=True)


def test_a_series_in_a_codec_no_reader_here_has_is_named_not_called_damaged(tmp_path):
    """Slices in a transfer syntax GDCM has no codec for were refused as "the file is damaged: copy or
    re-export the series again", which sends the user copying the same files; the transfer syntax is now
    named with how to convert the series."""
    series(tmp_path / "ct", hu(VOLUME_SLICES))
    for file in sorted((tmp_path / "ct").iterdir()):
        _jpeg_slice(file, slice(0, 0), b"", "JPEG2000")
        _relabelled(file, NO_CODEC)
    with pytest.raises(LNQError, match=r"^cannot read the DICOM series in .*ct: its pixels are compressed as "
                                       r"MPEG2 [^;]*\(1\.2\.840\.10008\.1\.2\.4\.100\), which neither GDCM "
                                       r"nor pydicom here can decode; convert the series to uncompressed "
                                       r"DICOM .*$") as raised:
        read_volume(tmp_path / "ct")
    assert "damaged" not in str(raised.value)


def test_an_enhanced_ct_in_a_codec_no_reader_here_has_is_named(tmp_path):
    """An enhanced CT in a transfer syntax neither pydicom nor GDCM decodes: refused naming it, in one line
    (it quoted the first line of pydicom's message, cut at "missing dependencies:")."""
    file = _enhanced_jpeg(tmp_path, hu(VOLUME_SLICES))
    _relabelled(file, NO_CODEC)
    with pytest.raises(LNQError, match=r"^enhanced/ct\.dcm: its pixels are compressed as MPEG2 [^\n]*"
                                       r"\(1\.2\.840\.10008\.1\.2\.4\.100\), which neither GDCM nor pydicom "
                                       r"here can decode; [^\n]*$"):
        read_volume(file.parent)
