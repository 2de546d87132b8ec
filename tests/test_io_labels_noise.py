"""A float label file holding resampling noise (0.99999 for 1) is refused naming a value that shows why:
the message said "non-integer values (e.g. 1)", a whole number, which reads as a contradiction."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_near_a_whole_number_is_shown_as_it_is(tmp_path, dtype):
    labels = np.zeros((6, 12, 12), dtype)
    labels[2:4, 3:7, 3:7] = dtype(0.99999)
    path = write_volume(tmp_path / "case-seg.nrrd", Volume(labels, (2.0, 2.0, 2.0)))
    with pytest.raises(LNQError, match=r"non-integer values \(e\.g\. 0\.99999\)"):
        api.measure(path)


def test_a_plain_fraction_keeps_three_digits(tmp_path):
    labels = np.zeros((6, 12, 12), np.float32)
    labels[2:4, 3:7, 3:7] = 0.73456
    path = write_volume(tmp_path / "case-seg.nrrd", Volume(labels, (2.0, 2.0, 2.0)))
    with pytest.raises(LNQError, match=r"non-integer values \(e\.g\. 0\.735\)"):
        api.measure(path)
