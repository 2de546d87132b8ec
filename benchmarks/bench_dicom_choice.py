"""Time to find the cases of DICOM folders of two reconstructions: each case folder holds a soft (B31f) and a
lung (B70f) reconstruction of one scan and a DICOM SEG drawn on the soft one, so find_cases must learn which
series each folder reads (from headers since this change; the whole CT was read before, pixels included).

    python benchmarks/bench_dicom_choice.py make DIR [CASES SLICES SIZE [jpeg2000]]   # writes the cases
    python benchmarks/bench_dicom_choice.py time DIR                                  # median of 3 runs

The cases are written here with pydicom (and GDCM for JPEG 2000); nothing is downloaded, no test imported.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

#: Where the slices lie: the first slice's corner (mm), the pixel spacing (row, column) and the slice gap.
ORIGIN, SPACING, GAP = (-100.0, -120.0, -50.0), (0.7, 0.8), 2.5


def make(root: Path, cases: int, slices: int, size: int, jpeg2000: bool = False) -> None:
    """``cases`` case folders of two ``slices`` x ``size`` x ``size`` reconstructions and a SEG each."""
    from pydicom.uid import generate_uid

    from lnq_napari.io import read_volume
    from lnq_napari.io.dicom_seg import write_dicom_seg

    for c in range(cases):
        folder = root / f"case{c:02d}"
        values = np.random.default_rng(c).integers(-1000, 1500, (slices, size, size)).astype(np.int16)
        study, frame = generate_uid(), generate_uid()
        soft = write_series(folder, values, "soft", study, frame, ConvolutionKernel="B31f", PatientID=f"P{c}")
        write_series(folder, values, "lung", study, frame, ConvolutionKernel="B70f", PatientID=f"P{c}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ct = read_volume(folder / "soft-000.dcm")
        labels = ct.with_array(np.zeros(ct.shape, np.uint8))
        labels.array[slices // 2, 10:20, 10:20] = 1
        write_dicom_seg(folder / "seg.dcm", labels, folder, series_uid=soft)
        if jpeg2000:
            _compress(folder)


def write_series(folder: Path, values: np.ndarray, name: str, study: str, frame: str, **tags: str) -> str:
    """``values`` (HU, z y x) as a classic CT series of axial slices ``<name>-<k>.dcm`` in ``folder`` (study
    and frame of reference UIDs given, ``tags`` set on every slice); its Series Instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for k, plane in enumerate(values):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = \
            ds.SOPClassUID, ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, uid, frame
        ds.Modality, ds.InstanceNumber, ds.ImageType = "CT", k + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + GAP * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = list(SPACING), GAP
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = plane.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (plane.astype(np.int16) + 1024).astype(np.int16).tobytes()
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"{name}-{k:03d}.dcm", enforce_file_format=True)
    return uid


def _compress(folder: Path) -> None:
    """Every CT slice in ``folder`` re-saved JPEG 2000, encoded by GDCM (inside SimpleITK)."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.encaps import encapsulate, generate_frames

    scratch = folder / "scratch.dcm"
    for file in sorted(folder.glob("*-*.dcm")):
        ds = pydicom.dcmread(file)
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(scratch))
        writer.SetImageIO("GDCMImageIO")
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG2000")
        writer.Execute(sitk.GetImageFromArray(ds.pixel_array[None]))
        encoded = pydicom.dcmread(scratch)
        scratch.unlink()
        ds.PixelData = encapsulate([next(generate_frames(encoded.PixelData, number_of_frames=1))])
        ds.file_meta.TransferSyntaxUID = encoded.file_meta.TransferSyntaxUID
        ds["PixelData"].VR = "OB"
        ds.save_as(file, enforce_file_format=True)


def time_cases(root: Path, repeats: int = 3) -> None:
    """Median wall and CPU seconds of find_cases(root) over ``repeats`` runs."""
    from lnq_napari.io.datasets import find_cases

    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = find_cases(root)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(f"find_cases: {len(found)} cases; wall {[round(w, 2) for w in walls]} s, median "
          f"{statistics.median(walls):.2f} s; CPU median {statistics.median(cpus):.2f} s")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        numbers = [int(v) for v in sys.argv[3:6]] or [20, 150, 128]
        make(Path(sys.argv[2]), *numbers, jpeg2000="jpeg2000" in sys.argv[6:])
    else:
        time_cases(Path(sys.argv[2]))
