"""The line of a write the system refused (io/atomic.py): a full disk or quota names the folder and what
helps, nothing half-written is left."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from conftest import full_disk_after, temps

from lnq_napari.cli import main
from lnq_napari.io.atomic import cannot_write_line


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_folder_and_says_to_free_space(tmp_path, monkeypatch, capsys, code):
    """export-nnunet on a disk that fills at its second file said "cannot write a file (No space left on
    device)": not where. Now the folder and "free space"; no dataset and no temp file is left. The folder
    named is one still there (it named the hidden staging folder, removed by then); a used-up quota says
    so (it said the disk was full)."""
    from lnq_napari.phantom import write_dataset

    write_dataset(tmp_path / "data", 2, seed=3, shape=(8, 24, 24), spacing=(6.0, 6.0, 8.0))
    full_disk_after(monkeypatch, 2, code)
    out = tmp_path / "raw"
    assert main(["export-nnunet", "--data", str(tmp_path / "data"), "--out", str(out), "--dataset-id", "7",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lnq-napari: error:"), err
    if code == errno.ENOSPC:
        folder = re.search(r"the disk of (.+) is full \(", err[0])
        assert folder and "free space there" in err[0], err[0]
    else:
        folder = re.search(r"your disk quota on (.+) is used up \(", err[0])
        assert folder and "larger quota" in err[0] and "is full" not in err[0], err[0]
    assert Path(folder.group(1)).is_dir() and folder.group(1).startswith(str(tmp_path)), err[0]
    assert not list(out.glob("Dataset007*")) and not temps(tmp_path)


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "the disk is full (No space left on device); free space on it, then run"),
    (errno.EDQUOT, "your disk quota is used up (Disk quota exceeded); remove files of yours or ask for a "
                   "larger quota, then run"),
    (errno.EROFS, "cannot write a file (Read-only file system); give a writable folder")])
def test_a_refused_write_that_names_no_file_says_what_to_do(code, said):
    """The line of a write refused without a file name: no "there" without a place it points to."""
    assert cannot_write_line(OSError(code, os.strerror(code))).startswith(said)

