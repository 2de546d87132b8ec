"""Labels that sample the CT's very points stored in another axis order or direction (read from a copy saved
x-flipped or z-first, without the CT as reference) are saved on the CT's grid, transposed, nothing
resampled: ``save_labels`` refused them as "on different grids" though every other entry point (measure,
evaluate, read_labels with the CT) takes them as the same image."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume

CASE = "lnq2023-train-0000"
SHAPE = (6, 8, 10)  # z, y, x
SPACING = (0.8, 0.9, 2.5)  # x, y, z
ORIGIN = (-40.0, 20.0, -300.0)


def _workspace(tmp_path):
    ct = np.random.default_rng(0).integers(-1000, 400, SHAPE).astype(np.int16)
    data = tmp_path / "data"
    write_volume(data / f"{CASE}-ct.nrrd", Volume(ct, SPACING, ORIGIN))
    return api.init_workspace(tmp_path / "ws", data)


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:3, 2:5, 1:4] = 1
    labels[4, 6, 8] = 2
    return labels


def _stored_otherwise(labels: np.ndarray, how: str) -> Volume:
    """``labels`` (on the CT grid) as another file stores the same points."""
    if how == "x-flipped":
        origin = (ORIGIN[0] + SPACING[0] * (SHAPE[2] - 1), ORIGIN[1], ORIGIN[2])
        return Volume(labels[:, :, ::-1].copy(), SPACING, origin, (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    # z-first: array axes (x, y, z), so its first (ITK x) axis steps along z and its last along x
    return Volume(labels.transpose(2, 1, 0).copy(), SPACING[::-1], ORIGIN, (0, 0, 1, 0, 1, 0, 1, 0, 0))


@pytest.mark.parametrize("how", ["x-flipped", "z-first"])
def test_labels_of_the_same_points_are_saved_on_the_ct_grid(tmp_path, how):
    ws = _workspace(tmp_path)
    labels = _labels()
    other = _stored_otherwise(labels, how)
    assert not other.same_grid(ws.ct_grid(CASE))
    saved = api.save_labels(other, CASE, workspace=ws)
    back = ws.read_labels(CASE, saved.version)
    assert back.same_grid(ws.ct_grid(CASE))
    np.testing.assert_array_equal(back.array > 0, labels > 0)


def test_labels_on_another_grid_are_still_refused(tmp_path):
    ws = _workspace(tmp_path)
    shifted = Volume(_labels(), SPACING, (ORIGIN[0] + 0.4, ORIGIN[1], ORIGIN[2]))  # half a voxel off
    with pytest.raises(LNQError, match="different grids"):
        api.save_labels(shifted, CASE, workspace=ws)
    assert ws.versions(CASE) == []
