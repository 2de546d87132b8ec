"""The main job (`lnq-napari demo`) headless: results and pictures on disk, clean errors."""

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
    csv_lines = (tmp_path / "out" / "lnq2023-train-0003-nodes.csv").read_text().strip().splitlines()
    assert len(csv_lines) == report["nodes"] + 1
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
