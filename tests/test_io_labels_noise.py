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


@pytest.mark.parametrize("value", [1234.5, -1024.5, 2.9999])
def test_a_value_whose_three_digits_look_whole_is_shown_whole(value):
    """1234.5 in 3 digits is "1.23e+03", a whole number (1230) again: shown as it is."""
    from lnq_napari.io.labels import check_label_values

    labels = np.zeros((2, 2, 2), np.float32)
    labels[0, 0, 0] = value
    with pytest.raises(LNQError) as caught:
        check_label_values(labels, "seg.nrrd")
    shown = str(caught.value).split("(e.g. ")[1].split(")")[0]
    assert float(shown) == pytest.approx(value, rel=1e-6) and not float(shown).is_integer()
