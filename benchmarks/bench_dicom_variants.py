"""DICOM CT series as scanners and PACS exports write them, read back: a real chest CT (slicerio's
CTChest4, 128 x 128 x 34, 3 x 3 x 10 mm, LPS with x and y flipped) written with pydicom as a classic
series, compressed (RLE and JPEG-LS by pydicom, JPEG 2000 and JPEG lossless by GDCM), deflated, without the
128-byte preamble, as an enhanced (multi-frame) CT, with per-slice and fractional rescales, unsigned or
padded pixels, shuffled or missing Instance Numbers, a slice missing, cut short or doubled, gantry tilt, a
scout among the slices, and other series (a lung kernel, an MR, a PET, a dose report, an RT structure set)
beside it.
Each variant must either read as the source (every HU, spacing, origin and direction) or be refused in one
LNQError line; the table says which (and notes lines a codec printed on stderr itself, which are left
there), and the exit status is 1 when a variant does otherwise.

    python benchmarks/bench_dicom_variants.py            # every variant
    python benchmarks/bench_dicom_variants.py rle gap    # variants whose name holds a word given
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import highdicom as hd
import nrrd
import numpy as np
import pydicom
import SimpleITK as sitk
import slicerio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from lnq_napari.errors import LNQError
from lnq_napari.io import read_volume

_array, _header = nrrd.read(slicerio.get_testdata_file("CTChest4.nrrd"))
HU = np.ascontiguousarray(_array.transpose(2, 1, 0)).astype(np.int16)  # z y x
PIXEL, GAP = float(abs(_header["space directions"][0][0])), float(_header["space directions"][2][2])
ORIGIN = np.asarray(_header["space origin"], dtype=float)
AXIAL = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]  # its x and y axes run against L and P
SCOUT = {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "iop": [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
         "pos": [-200.0, 0.0, 0.0]}
STUDY, FRAME = generate_uid(), generate_uid()

Check = Callable[[object], str]  # a read Volume -> "" when it is the source, else what differs


def slice_ds(k: int, plane: np.ndarray, uid: str, number: int | None | bool = None, pos=None,
             slope: float = 1.0, intercept: float = -1024.0, iop=AXIAL, **tags) -> Dataset:
    """Slice ``k`` of a classic CT series ``uid``: HU ``plane`` stored signed through the rescale."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P1", STUDY, uid
    ds.FrameOfReferenceUID, ds.Modality = FRAME, "CT"
    if number is not False:
        ds.InstanceNumber = k + 1 if number is None else number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = list(ORIGIN + [0, 0, GAP * k]) if pos is None else list(pos)
    ds.ImageOrientationPatient = list(iop)
    ds.PixelSpacing, ds.SliceThickness = [PIXEL, PIXEL], GAP
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = plane.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = intercept, slope
    ds.PixelData = np.round((plane.astype(float) - intercept) / slope).astype(np.int16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def save(ds: Dataset, path: Path, syntax: str | None = None) -> None:
    """``ds`` as a DICOM file, compressed by pydicom (RLE, JPEG-LS) or GDCM ("JPEG2000", "JPEG")."""
    if syntax in (RLELossless, JPEGLSLossless):
        ds.compress(syntax)
    elif syntax is not None:  # GDCM's encoder through SimpleITK; its pixel data moved into ``ds``
        scratch = path.with_suffix(".gdcm")
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(scratch))
        writer.SetImageIO("GDCMImageIO")
        writer.SetUseCompression(True)
        writer.SetCompressor(syntax)
        writer.Execute(sitk.GetImageFromArray(ds.pixel_array[None].astype(np.int16)))
        encoded = pydicom.dcmread(scratch)
        scratch.unlink()
        ds.PixelData = encoded.PixelData
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = encoded.file_meta.TransferSyntaxUID
    ds.save_as(path, enforce_file_format=True)


def series(folder: Path, hu: np.ndarray = HU, uid: str | None = None, name: str = "ct",
           syntax: str | None = None, per: Callable[[int], dict] | None = None, **kw) -> str:
    """``hu`` written as a classic series in ``folder`` (``per(k)``: slice k's own arguments)."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    for k, plane in enumerate(hu):
        arguments = {**kw, **(per(k) if per else {})}
        save(slice_ds(k, plane, uid, **arguments), folder / f"{name}{k:03d}.dcm", syntax)
    return uid


def bare(ds: Dataset, path: Path, implicit: bool = True) -> None:
    """``ds`` written without the preamble, 'DICM' and file meta (an older export's bare dataset)."""
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=False)


def source(hu: np.ndarray = HU, origin=ORIGIN, tol: float = 0.0) -> Check:
    """A check that the volume read is ``hu`` (within ``tol`` HU) on the source's grid."""
    def check(volume) -> str:
        if volume.array.shape != hu.shape:
            return f"shape {volume.array.shape}, not {hu.shape}"
        wrong = []
        if (err := float(np.abs(volume.array.astype(float) - hu).max())) > tol:
            wrong.append(f"HU off by up to {err:g}")
        if not np.allclose(volume.spacing, (PIXEL, PIXEL, GAP), atol=1e-3):
            wrong.append(f"spacing {volume.spacing}")
        if not np.allclose(volume.origin, origin, atol=1e-3):
            wrong.append(f"origin {volume.origin}")
        if not np.allclose(volume.direction, [-1, 0, 0, 0, -1, 0, 0, 0, 1], atol=1e-6):
            wrong.append(f"direction {volume.direction}")
        return "; ".join(wrong)
    return check


EXACT = source()
REFUSED = None  # the variant must be refused in one line
VARIANTS: dict[str, Callable[[Path], Check | None]] = {}


def variant(fn):
    VARIANTS[fn.__name__] = fn
    return fn


@variant
def classic(d):
    series(d)
    return EXACT


@variant
def rle(d):
    series(d, syntax=RLELossless)
    return EXACT


@variant
def jpeg_ls(d):
    series(d, syntax=JPEGLSLossless)
    return EXACT


@variant
def jpeg_2000(d):
    series(d, syntax="JPEG2000")
    return EXACT


@variant
def jpeg_lossless(d):
    series(d, syntax="JPEG")
    return EXACT


@variant
def implicit_vr_deflate_big_endian(d):
    uid = series(d)
    for k, (file, syntax) in enumerate(zip(sorted(d.iterdir()), [ImplicitVRLittleEndian,
                                                                DeflatedExplicitVRLittleEndian,
                                                                ExplicitVRBigEndian] * len(HU))):
        ds = slice_ds(k, HU[k], uid)
        ds.file_meta.TransferSyntaxUID = syntax
        if syntax == ExplicitVRBigEndian:
            ds.PixelData = (HU[k].astype(np.int32) + 1024).astype(">i2").tobytes()
        ds.save_as(file, enforce_file_format=True, little_endian=syntax != ExplicitVRBigEndian,
                   implicit_vr=syntax == ImplicitVRLittleEndian)
    return EXACT


@variant
def no_preamble(d):
    d.mkdir(parents=True)
    uid = generate_uid()
    for k, plane in enumerate(HU):  # bare implicit datasets named by number; explicit ones named .dcm
        bare(slice_ds(k, plane, uid), d / (f"{k:05d}" if k % 2 else f"IM{k:04d}.dcm"), implicit=k % 2 == 1)
    return EXACT


@variant
def no_preamble_file_meta_kept(d):
    d.mkdir(parents=True)
    uid = generate_uid()
    for k, plane in enumerate(HU):
        buffer = io.BytesIO()
        slice_ds(k, plane, uid).save_as(buffer, enforce_file_format=True)
        (d / f"{k:05d}").write_bytes(buffer.getvalue()[132:])
    return EXACT


def _enhanced(d: Path, write=None, **kw) -> hd.legacy.LegacyConvertedEnhancedCTImage:
    """The slices ``write`` (default :func:`series`, with ``kw``) makes in a scratch folder, converted to one
    enhanced CT object (highdicom's legacy conversion) for ``d``."""
    scratch = d.parent / f"{d.name}-slices"
    (write or series)(scratch, **kw)
    slices = [pydicom.dcmread(f) for f in sorted(scratch.iterdir())]
    shutil.rmtree(scratch)
    d.mkdir(parents=True)
    return hd.legacy.LegacyConvertedEnhancedCTImage(
        slices, series_instance_uid=generate_uid(), series_number=9, sop_instance_uid=generate_uid(),
        instance_number=1)


@variant
def enhanced(d):
    _enhanced(d).save_as(d / "enhanced.dcm")
    return EXACT


@variant
def enhanced_rle_per_frame_rescale(d):
    image = _enhanced(d, per=lambda k: {"slope": [0.5, 1.0][k % 2], "intercept": [-1024.0, -1000.0][k % 2]})
    image.compress(RLELossless)
    image.save_as(d / "enhanced.dcm")
    return source(tol=0.25)


@variant
def enhanced_no_preamble(d):
    bare(_enhanced(d), d / "00000001", implicit=False)
    return EXACT


@variant
def enhanced_frame_missing(d):
    image = _enhanced(d, hu=HU[:20])
    image.NumberOfFrames = 19  # the last frame's functional groups dropped with it
    del image.PerFrameFunctionalGroupsSequence[10]
    frames = np.frombuffer(image.PixelData, np.int16).reshape(20, *HU.shape[1:])
    image.PixelData = np.delete(frames, 10, axis=0).tobytes()
    image.save_as(d / "enhanced.dcm")
    return REFUSED


def damaged(d: Path, syntax: str) -> None:
    """A series compressed by GDCM, bytes 40 to 60 of slice 17's codestream overwritten (its Huffman table,
    its JPEG 2000 SIZ marker): the codec printed its own lines on stderr, five times."""
    series(d, syntax=syntax)
    ds = pydicom.dcmread(d / "ct017.dcm")
    data = bytearray(ds.PixelData)
    data[40:60] = b"\xff" * 20
    ds.PixelData = bytes(data)
    ds.save_as(d / "ct017.dcm")


@variant
def jpeg_slice_damaged(d):
    damaged(d, "JPEG")
    return REFUSED


@variant
def jpeg_2000_slice_damaged(d):
    damaged(d, "JPEG2000")
    return REFUSED


@variant
def jpeg_2000_last_slice_cut_short(d):  # an interrupted copy, within its compressed pixels
    series(d, syntax="JPEG2000")
    last = d / f"ct{len(HU) - 1:03d}.dcm"
    last.write_bytes(last.read_bytes()[:-2000])
    return REFUSED


@variant
def rescale_per_slice(d):
    series(d, per=lambda k: {"intercept": [-1024.0, 0.0, -1000.0][k % 3]})
    return EXACT


@variant
def rescale_fractional(d):
    series(d, slope=0.5, intercept=-1024.5)
    return source(tol=0.25)


@variant
def rescale_fractional_per_slice(d):
    series(d, per=lambda k: {"slope": [0.5, 1.0, 0.25][k % 3]})
    return source(tol=0.25)


@variant
def unsigned_first_slice_lower_intercept(d):
    uid, hu = generate_uid(), HU.copy()
    hu[1:] = np.maximum(hu[1:], -1024)
    d.mkdir(parents=True)
    for k, plane in enumerate(hu):
        intercept = -3024.0 if k == 0 else -1024.0
        ds = slice_ds(k, plane, uid, intercept=intercept)
        ds.PixelRepresentation = 0
        ds.PixelData = np.round(plane - intercept).astype(np.uint16).tobytes()
        ds.save_as(d / f"ct{k:03d}.dcm", enforce_file_format=True)
    return source(hu)


@variant
def unsigned_12_bit(d):
    uid, hu = generate_uid(), np.clip(HU, -1024, 3071)
    d.mkdir(parents=True)
    for k, plane in enumerate(hu):
        ds = slice_ds(k, plane, uid)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.PixelData = (plane.astype(int) + 1024).astype(np.uint16).tobytes()
        ds.save_as(d / f"ct{k:03d}.dcm", enforce_file_format=True)
    return source(hu)


@variant
def unsigned_with_padding(d):
    uid, hu = generate_uid(), np.maximum(HU, -1024)
    hu[:, :4, :4] = -3024  # stored 63536 (-2000 as 16 bits), declared padding: read below air, not +62512
    d.mkdir(parents=True)
    for k, plane in enumerate(hu):
        ds = slice_ds(k, plane, uid)
        ds.PixelRepresentation = 0
        stored = (plane.astype(int) + 1024).astype(np.uint16)
        stored[:4, :4] = 63536
        ds.PixelData = stored.tobytes()
        ds.PixelPaddingValue = 63536
        ds["PixelPaddingValue"].VR = "US"
        ds.save_as(d / f"ct{k:03d}.dcm", enforce_file_format=True)
    return source(hu)


HIGH_BITS = np.random.default_rng(2).integers(0, 16, HU.shape).astype(np.uint16) << 12  # an overlay, garbage
PADDED = -3024  # what a declared padding reads as (lnq_napari.io.dicom_series.PADDING_HU)


def twelve_bit(k: int, plane: np.ndarray, uid: str, high_bits: bool = False,
               padding: bool = False) -> Dataset:
    """Slice ``k`` stored unsigned in 12 of 16 bits, intercept -1024 (``plane`` within -1024 to 3071 HU),
    with bits set above Bits Stored (``high_bits``; the standard says to ignore them) and its 4 x 4 corner
    padded with 63536 (-2000 as 16 bits, beyond 12 bits), declared (``padding``)."""
    ds = slice_ds(k, plane, uid)
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    stored = (plane.astype(int) + 1024).astype(np.uint16) | (HIGH_BITS[k] if high_bits else 0)
    if padding:
        stored[:4, :4] = 63536
        ds.PixelPaddingValue = 63536
        ds["PixelPaddingValue"].VR = "US"
    ds.PixelData = stored.tobytes()
    return ds


def twelve_bit_series(d: Path, **kw) -> np.ndarray:
    """:func:`twelve_bit` slices of the source in ``d``; the HU they must read as."""
    uid, hu = generate_uid(), np.clip(HU, -1024, 3071)
    if kw.get("padding"):
        hu[:, :4, :4] = PADDED
    d.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(np.clip(HU, -1024, 3071)):
        twelve_bit(k, plane, uid, **kw).save_as(d / f"ct{k:03d}.dcm", enforce_file_format=True)
    return hu


@variant
def unsigned_12_bit_high_bits_set(d):
    return source(twelve_bit_series(d, high_bits=True))


@variant
def padding_beyond_12_bits(d):
    return source(twelve_bit_series(d, padding=True))


@variant
def enhanced_12_bit_high_bits_padded(d):
    hu = []
    _enhanced(d, lambda scratch: hu.append(twelve_bit_series(scratch, high_bits=True, padding=True))
              ).save_as(d / "enhanced.dcm")
    return source(hu[0])


def signed_twelve_bit_series(d: Path) -> np.ndarray:
    """The source stored signed in 12 of 16 bits (intercept 0), its 4 x 4 corners padded with -3024 (beyond
    12 bits: GDCM reads it with the high bits cleared, +1072 HU), declared; the HU it must read as."""
    uid, hu = generate_uid(), np.clip(HU, -2048, 2047)
    hu[:, :4, :4] = PADDED
    d.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(hu):
        ds = slice_ds(k, plane, uid, intercept=0.0)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.PixelPaddingValue = PADDED
        ds["PixelPaddingValue"].VR = "SS"
        ds.PixelData = plane.astype(np.int16).tobytes()
        ds.save_as(d / f"ct{k:03d}.dcm", enforce_file_format=True)
    return hu


@variant
def signed_padding_beyond_12_bits(d):
    return source(signed_twelve_bit_series(d))


@variant
def enhanced_signed_padding_beyond_12_bits(d):
    hu = []
    _enhanced(d, lambda scratch: hu.append(signed_twelve_bit_series(scratch))).save_as(d / "enhanced.dcm")
    return source(hu[0])


@variant
def instance_numbers_shuffled(d):
    order = np.random.default_rng(1).permutation(len(HU))
    series(d, per=lambda k: {"number": int(order[k]) + 1})
    return EXACT


@variant
def instance_numbers_missing(d):
    series(d, number=False)
    return EXACT


@variant
def feet_first(d):
    series(d, per=lambda k: {"pos": list(ORIGIN - [0, 0, GAP * k])})
    return source(HU[::-1], ORIGIN - [0, 0, GAP * (len(HU) - 1)])


@variant
def one_slice(d):  # its Slice Thickness gives z (ITK: 1 mm)
    series(d, hu=HU[10:11], per=lambda k: {"pos": list(ORIGIN + [0, 0, GAP * 10])})
    return source(HU[10:11], ORIGIN + [0, 0, GAP * 10])


@variant
def slice_missing(d):
    series(d)
    (d / "ct017.dcm").unlink()
    return REFUSED


@variant
def last_slice_cut_short(d):
    series(d)
    last = d / f"ct{len(HU) - 1:03d}.dcm"
    last.write_bytes(last.read_bytes()[:-5000])  # an interrupted copy: its header whole, its pixels not
    return REFUSED


@variant
def no_preamble_cut_in_its_sop_class(d):  # the last slice of a bare series, cut 2 bytes into its SOP class
    no_preamble(d)
    last = d / f"{len(HU) - 1:05d}"
    data = last.read_bytes()
    last.write_bytes(data[:data.find(b"\x08\x00\x16\x00") + 10])
    return REFUSED


@variant
def last_slice_cut_in_its_preamble(d):  # named by number: 100 bytes of zeros
    series(d)
    for file in sorted(d.iterdir()):
        file.rename(d / file.stem[2:])
    (d / f"{len(HU) - 1:03d}").write_bytes(bytes(100))
    return REFUSED


def renamed(d: Path, naming: Callable[[int, Path], str]) -> list[Path]:
    """The slices of ``d`` renamed ``naming(k, file)`` (k-th in name order, the top slice last)."""
    return [file.rename(d / naming(k, file)) for k, file in enumerate(sorted(d.iterdir()))]


@variant
def uid_named_top_slice_of_zeros(d):  # named by SOP Instance UID, the top slice zero-filled at full size
    series(d)
    top = renamed(d, lambda k, f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))[-1]
    top.write_bytes(bytes(top.stat().st_size))
    return REFUSED


@variant
def cd_images_top_slice_of_4_kib_zeros(d):  # a CD's IMAGES/IM000001 ..., the top slice 4 KiB of zeros
    series(d)
    renamed(d, lambda k, f: f"IM{k + 1:06d}")[-1].write_bytes(bytes(4096))
    return REFUSED


@variant
def dicom_suffix_top_slice_empty(d):  # ct000.dicom ..., the top slice 0 bytes
    series(d)
    renamed(d, lambda k, f: f"{f.stem}.dicom")[-1].write_bytes(b"")
    return REFUSED


def random_names(count: int) -> list[str]:
    """``count`` names of 8 random capitals and digits, as a PACS export names its files."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    return ["".join(np.random.default_rng(k).choice(letters, 8)) for k in range(count)]


@variant
def randomly_named(d):  # 4WN6ISIG ...: no suffix
    series(d)
    names = random_names(len(HU))
    renamed(d, lambda k, f: names[k])
    return EXACT


@variant
def randomly_named_top_slice_of_zeros(d):
    series(d)
    names = random_names(len(HU))
    top = renamed(d, lambda k, f: names[k])[-1]
    top.write_bytes(bytes(top.stat().st_size))
    return REFUSED


@variant
def uid_named_with_zero_byte_lock_files(d):  # LOCK, _SUCCESS, VERSION: no slices
    series(d)
    renamed(d, lambda k, f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
    for name in ("LOCK", "_SUCCESS", "VERSION"):
        (d / name).write_bytes(b"")
    return EXACT


@variant
def slice_copied_twice(d):
    series(d)
    shutil.copy(d / "ct010.dcm", d / "ct010 (copy).dcm")
    return EXACT


@variant
def slice_doubled_new_uid(d):
    series(d)
    ds = pydicom.dcmread(d / "ct010.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(d / "ct010b.dcm")
    return REFUSED


@variant
def gantry_tilt_in_orientation(d):
    tilt = np.radians(15)
    series(d, iop=[-1.0, 0.0, 0.0, 0.0, -np.cos(tilt), np.sin(tilt)])
    return REFUSED


@variant
def gantry_tilt_in_positions(d):
    series(d, per=lambda k: {"pos": list(ORIGIN + [0, GAP * k * np.tan(np.radians(10)), GAP * k])})
    return REFUSED


@variant
def gantry_tilt_2_degrees_in_positions(d):  # its orientation as pydicom writes floats: '-1.0\0.0\0.0...'
    series(d, per=lambda k: {"pos": list(ORIGIN + [0, GAP * k * np.tan(np.radians(2)), GAP * k])})
    return REFUSED


def oblique(d: Path, position_decimals: int, orientation_decimals: int, turn_y: float = 0.0) -> Check:
    """The source written as an oblique stack (its rows and columns turned 17 degrees about x, then
    ``turn_y`` degrees about y: double oblique, the slices stacked along their normal, untilted), positions
    and orientation written with so many decimals, as some exports round them; the check that it reads as
    the source on that grid."""
    turn, y = np.radians(17), np.radians(turn_y)
    about_y = np.array([[np.cos(y), 0.0, np.sin(y)], [0.0, 1.0, 0.0], [-np.sin(y), 0.0, np.cos(y)]])
    row, column = about_y @ [-1.0, 0.0, 0.0], about_y @ [0.0, -np.cos(turn), np.sin(turn)]
    normal = np.cross(row, column)
    written = lambda values, decimals: [f"{v:.{decimals}f}" for v in values]  # noqa: E731
    series(d, iop=written([*row, *column], orientation_decimals),
           per=lambda k: {"pos": written(ORIGIN + GAP * k * normal, position_decimals)})

    def check(volume) -> str:
        wrong = [] if np.array_equal(volume.array, HU) else ["HU or shape differ"]
        if not np.allclose(volume.spacing, (PIXEL, PIXEL, GAP), atol=0.02):
            wrong.append(f"spacing {volume.spacing}")
        if not np.allclose(volume.direction, np.stack([row, column, normal], axis=1).ravel(), atol=0.01):
            wrong.append(f"direction {volume.direction}")
        if not np.allclose(volume.origin, ORIGIN, atol=0.1):
            wrong.append(f"origin {volume.origin}")
        return "; ".join(wrong)
    return check


@variant
def oblique_positions_to_0_1_mm(d):  # gaps alternate by up to 0.13 mm along the oblique normal
    return oblique(d, 1, 6)


@variant
def oblique_orientation_to_2_decimals(d):  # its normal turned up to 0.5 degrees: 1.3 mm over 330 mm
    return oblique(d, 2, 2)


@variant
def double_oblique_orientation_to_3_decimals(d):  # 30 degrees about y too: 6e-5 off perpendicular
    return oblique(d, 2, 3, turn_y=30)


@variant
def double_oblique_orientation_to_2_decimals(d):  # rows, columns 0.005 off perpendicular: GDCM reads axial,
    return oblique(d, 2, 2, turn_y=30)  # lnq-napari on the nearest perpendicular axes


@variant
def scout_in_the_series(d):
    uid = series(d)
    scout = slice_ds(0, np.zeros((128, 200), np.int16), uid, **SCOUT)
    scout.save_as(d / "ct000a.dcm", enforce_file_format=True)
    return EXACT


@variant
def scout_without_preamble_in_the_series(d):
    uid = series(d)
    bare(slice_ds(0, np.zeros((128, 200), np.int16), uid, **SCOUT), d / "ct000a.dcm")
    return EXACT


@variant
def slice_of_another_size(d):
    uid = series(d)
    slice_ds(5, HU[5][:64, :64], uid).save_as(d / "ct005.dcm", enforce_file_format=True)
    return REFUSED


@variant
def lung_kernel_beside(d):
    series(d, name="a")
    series(d, hu=HU[:20], name="b", ConvolutionKernel="B70f")
    return EXACT


@variant
def mr_beside(d):
    series(d)
    mr, uid = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm")), generate_uid()
    for k in range(60):
        mr.PatientID, mr.SeriesInstanceUID, mr.SOPInstanceUID = "P1", uid, generate_uid()
        mr.ImagePositionPatient, mr.InstanceNumber = [0, 0, float(k)], k + 1
        mr.save_as(d / f"mr{k:03d}.dcm")
    return EXACT


@variant
def pet_beside(d):
    series(d)
    uid = generate_uid()
    for k in range(40):
        ds = slice_ds(k, np.zeros((64, 64), np.int16), uid, pos=list(ORIGIN + [0, 0, 7.0 * k]), slope=0.37,
                      intercept=0.0, SOPClassUID="1.2.840.10008.5.1.4.1.1.128", Modality="PT")
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.save_as(d / f"pt{k:03d}.dcm", enforce_file_format=True)
    return EXACT


@variant
def dose_reports_beside(d):
    series(d)
    for name in ("test-SR.dcm", "rtdose.dcm", "rtstruct.dcm"):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file(name), force=True)
        ds.PatientID = "P1"
        ds.save_as(d / f"a-{name}", enforce_file_format=True)
    capture = "1.2.840.10008.5.1.4.1.1.7"  # a dose screen: a Secondary Capture
    screen = slice_ds(0, np.zeros((64, 80), np.int16), generate_uid(), SOPClassUID=capture,
                      ImageType=["DERIVED", "SECONDARY", "DOSE_INFO"])
    screen.file_meta.MediaStorageSOPClassUID = screen.SOPClassUID
    screen.save_as(d / "a-dose-screen.dcm", enforce_file_format=True)
    return EXACT


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """The lines written to file descriptor 2 in this block (GDCM's codecs print there), kept from the
    table and given back once the block ends."""
    sys.stderr.flush()
    saved, lines = os.dup(2), []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


def run(name: str, root: Path) -> tuple[str, str, bool]:
    """``(expected, result, as expected)`` of one variant."""
    folder = root / name
    check = VARIANTS[name](folder)
    expected = "refused" if check is None else "read"
    with warnings.catch_warnings(record=True) as said, native_stderr() as printed:
        warnings.simplefilter("always")
        try:
            volume = read_volume(folder)
        except LNQError as exc:
            volume = exc
        except Exception as exc:  # noqa: BLE001 - a traceback is what the table reports
            volume = exc
    # a codec's own lines on stderr (a damaged JPEG slice's libjpeg): a note, not a failure of the read
    printed_note = f" (stderr: {printed[0][:60]!r}, {len(printed)} lines)" if printed else ""
    if isinstance(volume, LNQError):
        text = str(volume)
        return expected, f"refused: {text}{printed_note}", check is None and "\n" not in text
    if isinstance(volume, Exception):
        return expected, "CRASH " + traceback.format_exception_only(volume)[-1].strip(), False
    ours = [str(w.message) for w in said if "site-packages" not in str(w.filename)]
    if check is None:
        return expected, f"READ {volume.array.shape}{printed_note}", False
    wrong = check(volume)
    note = f" (warned: {ours[0][:90]}...)" if ours else ""
    return expected, (f"WRONG: {wrong}" if wrong else "read as the source") + note + printed_note, not wrong


def main(words: list[str]) -> int:
    warnings.filterwarnings("ignore", message="The value length", module="pydicom")
    names = [n for n in VARIANTS if not words or any(w in n for w in words)]
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            expected, result, good = run(name, Path(scratch))
            failed += not good
            print(f"{name:38s} {expected:8s} {'ok ' if good else 'BAD'} {result}")
    print(f"{len(names) - failed} of {len(names)} variants as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
