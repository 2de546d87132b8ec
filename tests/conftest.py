"""Fixtures shared across test modules (the GUI ones are in tests/plugin/conftest.py)."""

from __future__ import annotations

import errno
import gc
import hashlib
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

NNUNET_SHAPE, NNUNET_SPACING = (16, 48, 48), (1.5, 1.5, 3.0)


@pytest.fixture(autouse=True)
def _full_collections_skip_older_objects() -> None:
    """Before each test: collect garbage, then move what is still alive (modules, session and module
    fixtures) to the collector's permanent generation. A full collection then scans only what the test
    made: napari runs one each time layers are removed (``viewer.layers.clear``, closing a viewer), and
    with torch, napari and pytest loaded one took about a second. Nothing a test made is frozen while
    the test runs, so what it expects to be collected still is."""
    gc.collect()
    gc.freeze()


def _digest(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` -> the sha256 of its bytes."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_process_pool(*args, **kwargs):
    raise AssertionError("a process pool was started (lnq_napari.nnunet.pools runs one-process pools here)")


@pytest.fixture(scope="session")
def nnunet_model(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """(data folder of 3 phantom cases, tiny nnU-Net model folder planned on them as Dataset601_LNQ),
    built once for the session under ``<root>/data``, ``<root>/nnUNet_raw``, ``<root>/nnUNet_preprocessed``
    and ``<root>/nnUNet_results``. Shared: a test that changes the model or the data copies them first;
    the teardown fails if any file under the data or model folder changed. Needs nnunetv2."""
    pytest.importorskip("nnunetv2")
    import torch

    torch.set_num_threads(1)
    from lnq_napari.nnunet.export import export_dataset
    from lnq_napari.nnunet.tiny import make_tiny_model
    from lnq_napari.phantom import write_dataset

    root = tmp_path_factory.mktemp("nnunet")
    write_dataset(root / "data", 3, seed=3, shape=NNUNET_SHAPE, spacing=NNUNET_SPACING)
    exported = export_dataset(root / "nnUNet_raw", 601, data=root / "data", workers=1)
    with pytest.MonkeyPatch.context() as patch:  # planned in this process: no pool of nnU-Net's spawned
        patch.setattr(multiprocessing, "get_context", _no_process_pool)
        folder = make_tiny_model(exported.folder, root)
    before = _digest(root / "data", folder)
    yield root / "data", folder
    assert _digest(root / "data", folder) == before, "a test changed the shared nnU-Net model or data"


@pytest.fixture
def odd_grid_ct(nnunet_model):
    """The first case's CT on a grid unlike the training one: cropped, another spacing, x axis flipped,
    shifted origin (a fresh Volume per test)."""
    import numpy as np

    from lnq_napari.io.readers import read_volume
    from lnq_napari.io.volume import Volume

    ct = read_volume(sorted(nnunet_model[0].glob("*-ct.nrrd"))[0])
    return Volume(np.ascontiguousarray(ct.array[1:14, 3:45, 5:40]), (1.2, 1.7, 2.5), (-10.5, 20.25, 3.0),
                  (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
DICOM_SERIES = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"  # 3 real CT slices (GE)


def _as_enhanced(ds, frames: list, positions: list):
    """``ds`` turned into an Enhanced CT holding ``frames`` (arrays) at ``positions``: orientation, pixel
    spacing and rescale in the shared functional groups, each frame's position in its own."""
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def item(**kw):
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    dtype = ds.pixel_array.dtype
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    shared = item(PixelMeasuresSequence=Sequence([item(PixelSpacing=ds.PixelSpacing,
                                                       SliceThickness=ds.SliceThickness)]),
                  PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=ds.ImageOrientationPatient)]),
                  PixelValueTransformationSequence=Sequence([item(RescaleIntercept=ds.RescaleIntercept,
                                                                  RescaleSlope=ds.RescaleSlope,
                                                                  RescaleType="HU")]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [item(PlanePositionSequence=Sequence([item(ImagePositionPatient=list(p))])) for p in positions])
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleIntercept",
                "RescaleSlope", "SliceLocation"):
        ds.pop(tag, None)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack(frames).astype(dtype).tobytes()
    return ds


@pytest.fixture
def enhanced_ct():
    """``make(folder, order, positions=None, frames_per_file=None) -> folder``: the 3-slice DICOM series'
    slices (in ``order``, at ``positions`` or their own) written as an Enhanced CT: one multi-frame file
    ``IM0000.dcm``, or ``frames_per_file`` frames a file."""
    import pydicom

    def make(folder: Path, order: list[int], positions: list | None = None,
             frames_per_file: int | None = None) -> Path:
        files = sorted(DICOM_SERIES.glob("*.dcm"))
        slices = [pydicom.dcmread(f) for f in files]
        at = positions or [[float(v) for v in slices[i].ImagePositionPatient] for i in order]
        per = frames_per_file or len(order)
        series = pydicom.uid.generate_uid()
        folder.mkdir(parents=True)
        for k in range(0, len(order), per):
            ds = pydicom.dcmread(files[0])
            part = slice(k, k + per)
            _as_enhanced(ds, [slices[i].pixel_array for i in order[part]], at[part])
            ds.SeriesInstanceUID = series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(folder / f"IM{k:04d}.dcm")
        return folder

    return make


@pytest.fixture
def cd_export():
    """``make(root, series=1) -> root``: the 3-slice DICOM series written as a CD / PACS export does (IHE
    PDI): ``root/DICOMDIR`` and ``root/PT000000/ST000000/SE00000k/IM00000j`` (no extension), one series
    folder per copy."""
    import pydicom
    from pydicom.fileset import FileSet

    def make(root: Path, series: int = 1) -> Path:
        fs = FileSet()
        for _ in range(series):
            uid = pydicom.uid.generate_uid()
            for f in sorted(DICOM_SERIES.glob("*.dcm")):
                ds = pydicom.dcmread(f)
                ds.SeriesInstanceUID = uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
                fs.add(ds)
        fs.write(root)
        return root

    return make


@pytest.fixture
def fixed_prediction(monkeypatch):
    """``model(mask)``: a loaded model stand-in for ``api.predict`` (which takes it as it is) whose every
    prediction is ``mask`` (``api._predicted`` patched): no model is loaded or run."""
    from lnq_napari import api
    from lnq_napari.inference import Prediction

    class Loaded:
        def predict(self, *args, **kwargs):
            raise AssertionError("api._predicted is patched")

    def model(mask):
        monkeypatch.setattr(api, "_predicted", lambda volume, predictor, *a, **kw: (
            None, Prediction(mask, mask, "m001")))
        return Loaded()

    return model


def _small_chest(shape=(20, 64, 80)) -> np.ndarray:
    """Air outside, a soft-tissue body ellipse, two lungs, a node-like blob between them."""
    z, y, x = np.indices(shape)
    hu = np.full(shape, -1000, np.int16)
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (shape[1] * 0.42)) ** 2 + ((x - cx) / (shape[2] * 0.45)) ** 2 < 1
    hu[body] = 40
    for side in (-1, 1):
        dx = x - cx - side * shape[2] * 0.22
        lung = ((y - cy) / (shape[1] * 0.28)) ** 2 + (dx / (shape[2] * 0.15)) ** 2 < 1
        hu[lung & (z > 2) & (z < shape[0] - 3)] = -850
    return hu


@pytest.fixture
def small_chest():
    """A builder of a small synthetic chest in HU (:func:`_small_chest`), for the preprocessing and anatomy
    tests."""
    return _small_chest


def one_case_workspace(root: Path, shape: tuple[int, int, int] = (4, 6, 6), node_end: int = 4,
                       case: str = "lnq2023-train-0000"):
    """A workspace at ``root`` over one case written in ``data/`` beside it: a random CT of ``shape`` and a
    partial label of one box node (``[1:3, 2:node_end, 2:node_end]``)."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume
    from lnq_napari.workspace import Workspace

    ct = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    seg = np.zeros(shape, np.uint8)
    seg[1:3, 2:node_end, 2:node_end] = 1
    data = root.parent / "data"
    write_volume(data / f"{case}-ct.nrrd", Volume(ct))
    write_volume(data / f"{case}-seg.nrrd", Volume(seg))
    return Workspace.init(root, data)


ROOT = Path(__file__).resolve().parents[1]
#: Tests that send POSIX signals to a subprocess.
posix = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals to a subprocess")


def run_script(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (dedented) in a fresh Python with this checkout first on its path, in ``tmp_path``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def temps(folder: Path) -> list[Path]:
    """The temp files of interrupted writes under ``folder``."""
    from lnq_napari.io.atomic import is_temp

    return [p for p in folder.rglob("*") if is_temp(p)]


def full_disk_after(monkeypatch, calls: int, code: int = errno.ENOSPC) -> None:
    """``nrrd.write`` fills the disk (or the quota: ``code``) at its ``calls``-th call: half a file written,
    then ENOSPC (EDQUOT) with no file name, as ``write()`` raises it."""
    import nrrd

    write, count = nrrd.write, {"n": 0}

    def full(path, *args, **kwargs):
        count["n"] += 1
        if count["n"] < calls:
            return write(path, *args, **kwargs)
        Path(path).write_bytes(b"NRRD0004\n# half a header")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(nrrd, "write", full)



@pytest.fixture
def own_sigterm():
    """A SIGTERM handler of the caller's own (a notebook's), put back as it was after the test."""
    def own(signum, frame) -> None:
        pass

    before = signal.signal(signal.SIGTERM, own)
    yield own
    signal.signal(signal.SIGTERM, before)


def ellipse_section(semi_axes_mm, spacing, angle=0.0, shape=(64, 64), centre_mm=(0.0, 0.0)):
    """(1, y, x) mask of one axial slice of an ellipse with semi-axes (a, b) rotated by ``angle``."""
    y, x = np.indices(shape, dtype=float)
    px = (x - shape[1] // 2) * spacing[0] - centre_mm[0]
    py = (y - shape[0] // 2) * spacing[1] - centre_mm[1]
    u = px * math.cos(angle) + py * math.sin(angle)
    w = -px * math.sin(angle) + py * math.cos(angle)
    return ((u / semi_axes_mm[0]) ** 2 + (w / semi_axes_mm[1]) ** 2 <= 1.0)[None].astype(np.uint8)


def cut_node(nid: int, short: float, cut: tuple[str, ...] = ()):
    """A NodeRow of 0.5 cm3, 20 mm long, ``short`` mm across, cut by the image edges ``cut`` (none: whole)."""
    from lnq_napari.quantify import NodeRow

    return NodeRow(id=nid, voxels=10, volume_mm3=500.0, volume_cm3=0.5, centroid_mm=(0.0, 0.0, 0.0),
                   long_axis_mm=20.0, short_axis_mm=short, principal_axes_mm=(20.0, short, short),
                   ge_10mm=short >= 10, side="right", cut_by_edge=cut)
