"""Autosave files (no Qt): the folder choice and the atomic rewrite of one rolling file per case."""

from __future__ import annotations

import numpy as np

from lnq_napari.io.readers import read_labels
from lnq_napari.io.volume import Volume
from lnq_napari.workspace.autosave import AUTOSAVE_ENV, autosave_dir, autosave_path, write_autosave


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
    assert first == second == autosave_path(tmp_path, "c1") == tmp_path / "c1.autosave.seg.nrrd"
    back = read_labels(second)
    assert back.array[0, 0, 0] == 1 and back.meta["lnq_edits"] == "2" and back.meta["lnq_autosave_time"]
    assert len(list(tmp_path.iterdir())) == 1
