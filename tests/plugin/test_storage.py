"""Label versions and autosave paths (no Qt): names, never overwriting, provenance, folder choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lnq_napari.io.layout import case_name
from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._storage import (
    AUTOSAVE_ENV,
    autosave_dir,
    next_version_path,
    save_label_version,
    write_autosave,
)


@pytest.mark.parametrize(
    "name, case",
    [
        ("lnq2023-train-0001-ct.nrrd", "lnq2023-train-0001"),
        ("lnq2023-train-0001-seg.nrrd", "lnq2023-train-0001"),
        ("lnq2023-val-0002-full.nrrd", "lnq2023-val-0002"),
        ("lnq2023-train-0001-seg.v007.seg.nrrd", "lnq2023-train-0001"),
        ("case.autosave.seg.nrrd", "case"),
        ("scan.nii.gz", "scan"),
    ],
)
def test_case_name(name, case):
    assert case_name(f"/data/{name}") == case


def test_versions_count_up_and_never_overwrite(tmp_path):
    labels = Volume(np.zeros((3, 8, 8), np.int32), (0.7, 0.7, 2.5), (1.0, 2.0, 3.0))
    labels.array[1, 2:4, 2:4] = 3
    original = tmp_path / "c1-seg.nrrd"
    original.write_bytes(b"original")
    paths = [save_label_version(labels, tmp_path, "c1", {"edits": k, "model_version": "m1"}) for k in (1, 2)]
    assert [p.name for p in paths] == ["c1-seg.v001.seg.nrrd", "c1-seg.v002.seg.nrrd"]
    assert original.read_bytes() == b"original"
    assert next_version_path(tmp_path, "c1").name == "c1-seg.v003.seg.nrrd"
    back = read_labels(paths[1])
    assert np.array_equal(back.array, (labels.array > 0).astype(np.uint8)) and back.same_grid(labels)
    assert back.meta["lnq_edits"] == "2" and back.meta["lnq_model_version"] == "m1"
    sidecar = json.loads((tmp_path / "c1-seg.v002.json").read_text())
    assert sidecar["edits"] == 2 and sidecar["case"] == "c1" and sidecar["file"] == paths[1].name
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_autosave_folder_choice(tmp_path, monkeypatch):
    monkeypatch.delenv(AUTOSAVE_ENV, raising=False)
    source = tmp_path / "c1-ct.nrrd"
    assert autosave_dir(source) == tmp_path / "lnq-autosave"
    assert autosave_dir(source, workspace=tmp_path / "ws") == tmp_path / "ws" / "autosave"
    assert autosave_dir(None).name == "autosave"
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path / "elsewhere"))
    assert autosave_dir(source) == tmp_path / "elsewhere"


def test_autosave_rewrites_one_file(tmp_path):
    labels = Volume(np.zeros((2, 4, 4), np.uint8))
    first = write_autosave(labels, tmp_path, "c1", {"lnq_edits": 1})
    labels.array[0, 0, 0] = 1
    second = write_autosave(labels, tmp_path, "c1", {"lnq_edits": 2})
    assert first == second == tmp_path / "c1.autosave.seg.nrrd"
    assert read_labels(second).array[0, 0, 0] == 1 and len(list(tmp_path.iterdir())) == 1
