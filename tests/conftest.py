"""Fixtures shared across test modules (the GUI ones are in tests/plugin/conftest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

NNUNET_SHAPE, NNUNET_SPACING = (16, 48, 48), (1.5, 1.5, 3.0)


def _digest(*folders: Path) -> dict[str, str]:
    """Every file under ``folders`` -> the sha256 of its bytes."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


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
