"""Time to find the cases of DICOM folders of two reconstructions: each case folder holds a soft (B31f) and a
lung (B70f) reconstruction of one scan and a DICOM SEG drawn on the soft one, so find_cases must learn which
series each folder reads (from headers since this change; the whole CT was read before, pixels included).

    python benchmarks/bench_dicom_choice.py make DIR [CASES SLICES SIZE [jpeg2000]]   # writes the cases
    python benchmarks/bench_dicom_choice.py time DIR                                  # median of 3 runs

The cases are written with pydicom (and GDCM for JPEG 2000); nothing is downloaded.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make(root: Path, cases: int, slices: int, size: int, jpeg2000: bool = False) -> None:
    """``cases`` case folders of two ``slices`` x ``size`` x ``size`` reconstructions and a SEG each."""
    import test_io_dicom_series as t
    from pydicom.uid import generate_uid
    from test_io_dicom_codecs import _gdcm_encoded

    from lnq_napari.io import read_volume
    from lnq_napari.io.dicom_seg import write_dicom_seg

    for c in range(cases):
        folder = root / f"case{c:02d}"
        values = np.random.default_rng(c).integers(-1000, 1500, (slices, size, size)).astype(np.int16)
        t.STUDY, t.FRAME = generate_uid(), generate_uid()
        soft = t.series(folder, values, "soft", ConvolutionKernel="B31f", PatientID=f"P{c}")
        t.series(folder, values, "lung", ConvolutionKernel="B70f", PatientID=f"P{c}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ct = read_volume(folder / "soft-000.dcm")
        labels = ct.with_array(np.zeros(ct.shape, np.uint8))
        labels.array[slices // 2, 10:20, 10:20] = 1
        write_dicom_seg(folder / "seg.dcm", labels, folder, series_uid=soft)
        if jpeg2000:
            _compress(folder, _gdcm_encoded)


def _compress(folder: Path, encode) -> None:
    """Every CT slice in ``folder`` re-saved JPEG 2000 (GDCM's encoder)."""
    import pydicom
    from pydicom.encaps import encapsulate

    for file in sorted(folder.glob("*-*.dcm")):
        ds = pydicom.dcmread(file)
        frame, syntax = encode(ds.pixel_array, folder / "scratch.dcm", "JPEG2000")
        ds.PixelData, ds.file_meta.TransferSyntaxUID = encapsulate([frame]), syntax
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
