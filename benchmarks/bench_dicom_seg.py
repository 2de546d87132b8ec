"""DICOM SEG timings on a CT-sized series: writing a node mask as a SEG and reading it back onto the CT grid,
against highdicom's own reading (``segread`` + ``get_pixels_by_source_instance``, the peer) and against the
3D Slicer ``.seg.nrrd`` writer. Prints medians of ``--repeats`` runs.

    python benchmarks/bench_dicom_seg.py                 # 300 slices of 512 x 512, 5 repeats
    python benchmarks/bench_dicom_seg.py --slices 100 --repeats 3
    python benchmarks/bench_dicom_seg.py --fuzz 600 --slices 0   # damaged SEGs only

``--fuzz N`` damages N copies of two SEGs on the 3-slice series (ours and dcmqi's, tests/data/dicom-seg):
bytes overwritten in the header or anywhere, or the file cut short; each must read or give one LNQError line.

The series is the repository's real 3-slice GE CT (tests/data/dcmqi/ct-3slice) repeated along z with new
positions and UIDs; the mask holds 40 box-shaped nodes over the middle third of the slices.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from _timing import median_seconds

from lnq_napari.io import read_labels, read_volume, write_seg_nrrd
from lnq_napari.io.dicom_seg import write_dicom_seg

TEMPLATE = Path(__file__).resolve().parents[1] / "tests" / "data" / "dcmqi" / "ct-3slice" / "01.dcm"


def make_series(folder: Path, slices: int) -> None:
    """``slices`` CT files, 1 mm apart, one series and frame of reference."""
    folder.mkdir(parents=True)
    base = pydicom.dcmread(TEMPLATE)
    series, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    x, y, z = (float(v) for v in base.ImagePositionPatient)
    for k in range(slices):
        base.SeriesInstanceUID, base.FrameOfReferenceUID = series, frame
        base.SOPInstanceUID = base.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        base.InstanceNumber = k + 1
        base.ImagePositionPatient = [x, y, z - k]
        base.SliceLocation = z - k
        base.save_as(folder / f"{k + 1:04d}.dcm")


def node_mask(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(40):
        z = rng.integers(shape[0] // 3, 2 * shape[0] // 3 - 8)
        y, x = rng.integers(150, 350, size=2)
        mask[z:z + rng.integers(3, 8), y:y + rng.integers(6, 20), x:x + rng.integers(6, 20)] = 1
    return mask


def highdicom_read(path: Path, uids: list[str]) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(path)
    return np.asarray(seg.get_pixels_by_source_instance(uids, segment_numbers=[1], combine_segments=True))


def fuzz(count: int, seed: int = 1) -> None:
    """Read ``count`` damaged SEGs; print how many were read, refused in one line, or raised otherwise."""
    import random
    from collections import Counter

    from lnq_napari.errors import LNQError

    series = TEMPLATE.parent
    ct = read_volume(series)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        labels = read_labels(series.parent / "liver_spine_seg.nrrd", reference=ct)
        ours = write_dicom_seg(Path(tmp) / "ours.dcm", labels, series, model_version="bench")
        theirs = TEMPLATE.parents[2] / "dicom-seg" / "liver_spine_dcmqi.dcm"
        sources = [ours.read_bytes(), theirs.read_bytes()]
        rng, outcome = random.Random(seed), Counter()
        for k in range(count):
            data = bytearray(rng.choice(sources))
            mode = rng.random()
            if mode < 0.6:  # the header, where damage matters most
                for _ in range(rng.randint(1, 20)):
                    data[rng.randrange(132, min(len(data), 8000))] = rng.randrange(256)
            elif mode < 0.8:
                data = data[: rng.randrange(132, len(data))]
            else:
                for _ in range(rng.randint(1, 50)):
                    data[rng.randrange(132, len(data))] = rng.randrange(256)
            path = Path(tmp) / f"fuzz{k}.dcm"
            path.write_bytes(bytes(data))
            try:
                read_labels(path, reference=ct)
                outcome["read"] += 1
            except LNQError as exc:
                outcome["refused in one line" if "\n" not in str(exc) else "refused in several lines"] += 1
            except Exception as exc:  # what must not happen
                outcome[f"raised {type(exc).__name__}"] += 1
            path.unlink()
    print(f"fuzz: {count} damaged SEGs: " + ", ".join(f"{n} {what}" for what, n in sorted(outcome.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="CT slices (0: no timings)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fuzz", type=int, default=0, help="damaged SEGs to read (default 0)")
    args = parser.parse_args(argv)
    if args.fuzz:
        fuzz(args.fuzz)
    if args.slices <= 0:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "study"
        make_series(root / "1-CT", args.slices)
        start = time.perf_counter()
        ct = read_volume(root / "1-CT")
        ct_seconds = time.perf_counter() - start
        labels = ct.with_array(node_mask(ct.shape))
        seg = root / "2-SEG" / "seg.dcm"
        write = median_seconds(lambda: write_dicom_seg(seg, labels, root / "1-CT", model_version="bench"),
                               args.repeats)
        nrrd = median_seconds(lambda: write_seg_nrrd(Path(tmp) / "seg.seg.nrrd", labels), args.repeats)
        read_given = median_seconds(lambda: read_labels(seg, reference=ct), args.repeats)
        read_found = median_seconds(lambda: read_labels(seg), args.repeats)
        files = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted((root / "1-CT").iterdir())]
        depth = {id(d): ct.physical_to_index([float(v) for v in d.ImagePositionPatient])[0, 0] for d in files}
        order = sorted(files, key=lambda d: depth[id(d)])
        uids = [str(d.SOPInstanceUID) for d in order]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = median_seconds(lambda: highdicom_read(seg, uids), args.repeats)
        same = np.array_equal(read_labels(seg, reference=ct).array, labels.array)
        agree = np.array_equal(highdicom_read(seg, uids).astype(np.uint8), labels.array)
        frames = int(pydicom.dcmread(seg, stop_before_pixels=True).NumberOfFrames)
        print(f"series: {args.slices} slices of 512 x 512 (read_volume {ct_seconds:.2f} s); mask "
              f"{int(labels.array.sum())} voxels on {frames} slices; medians of {args.repeats}")
        print(f"write DICOM SEG           {write:7.3f} s  ({seg.stat().st_size / 1e3:.0f} kB)")
        print(f"write .seg.nrrd (peer)    {nrrd:7.3f} s  (ratio {write / nrrd:.1f}x)")
        print(f"read SEG, CT given        {read_given:7.3f} s")
        print(f"read highdicom (peer)     {peer:7.3f} s  (ratio {read_given / peer:.2f}x)")
        print(f"read SEG, CT found beside {read_found:7.3f} s  (its grid from 2 of its slices, every "
              "slice's header checked)")
        print(f"round trip exact: {same}; highdicom agrees: {agree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
