"""The main job (`lnq-napari demo`) headless: results and pictures on disk, clean errors."""

import csv
import json

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.io.readers import read_labels, read_volume, write_volume
from lnq_napari.phantom import make_case


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory):
    case = make_case(3, shape=(40, 144, 144), spacing=(2.6, 2.6, 6.0))
    path = write_volume(tmp_path_factory.mktemp("ct") / "lnq2023-train-0003-ct.nrrd", case.ct)
    return path, case


def test_demo_on_a_ct_file_writes_results_on_its_grid(small_ct, tmp_path):
    path, case = small_ct
    report = api.demo(path, out=tmp_path / "out")
    ct = read_volume(path)
    seg = read_labels(tmp_path / "out" / "lnq2023-train-0003-seg.nrrd")
    assert seg.same_grid(ct, tol=1e-6)
    assert set(np.unique(seg.array)) <= {0, 1}
    assert report["case"] == "lnq2023-train-0003"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["nodes"] == report["nodes"]
    with open(tmp_path / "out" / "lnq2023-train-0003-nodes.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == report["nodes"]
    assert saved["nodes_cut_by_edge"] == sum(1 for row in table if row["cut_by_edge"])
    png = (tmp_path / "out" / "lnq2023-train-0003-overlay.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_missing_ct_fails_in_one_line_without_output(tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["demo", str(tmp_path / "nope-ct.nrrd"), "--out", str(out), "--headless"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("lnq-napari: error:")
    assert not out.exists()


def test_the_node_table_keeps_its_columns_when_no_node_is_found(tmp_path):
    """With no node (CTChest4) the demo's CSV had no mean_hu column; with nodes it had one."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    hu = np.random.default_rng(0).normal(-100.0, 10.0, (12, 48, 48)).astype(np.int16)  # fat, no node
    path = write_volume(tmp_path / "fat-ct.nrrd", Volume(hu, spacing=(1.5, 1.5, 5.0)))
    report = api.demo(path, out=tmp_path / "out")
    header = (tmp_path / "out" / "fat-nodes.csv").read_text().splitlines()
    assert report["nodes"] == 0 and len(header) == 1 and "mean_hu" in header[0].split(",")


@pytest.mark.parametrize("slicer_name", ["fat.seg.nrrd", "fat-ct.seg.nrrd"])
def test_demo_does_not_shadow_the_users_labels_and_reruns_over_its_own(tmp_path, capsys, slicer_name):
    """`demo CT --out DIR` beside ``fat.seg.nrrd`` (3D Slicer's name for the user's labels) wrote
    ``fat-seg.nrrd``, which the folder's label lookup then took in their place (predict refused it)."""
    import hashlib

    from lnq_napari.io.segfile import write_seg_nrrd
    from lnq_napari.io.volume import Volume

    hu = np.random.default_rng(0).normal(-100.0, 10.0, (12, 48, 48)).astype(np.int16)
    data = tmp_path / "data"
    ct = write_volume(data / "fat-ct.nrrd", Volume(hu, spacing=(1.5, 1.5, 5.0)))
    labels = write_seg_nrrd(data / slicer_name, Volume(np.ones(hu.shape, np.uint8), (1.5, 1.5, 5.0)))
    before = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in data.iterdir()}
    assert main(["demo", str(ct), "--out", str(data), "--headless"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lnq-napari: error: the output folder ")
    assert f"holds {labels.name}, labels lnq-napari demo did not write" in err[0]
    assert {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in data.iterdir()} == before
    out = tmp_path / "out"
    out.mkdir()  # an empty folder, then the demo's own results: written over
    for _ in range(2):
        assert main(["demo", str(ct), "--out", str(out), "--headless"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "fat-nodes.csv", "fat-overlay.png", "fat-seg.nrrd", "report.json"]
