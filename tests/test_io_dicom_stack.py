"""Whether a DICOM series' slices form one evenly spaced, untilted stack, its positions and orientation
written with the decimals scanners and exports use."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.dicom_stack import SliceTags, check_stack, slice_tags, written_step


def _stack(count: int, gap: float, turn: float = 0.0, shear: float = 0.0, position_decimals: int = 2,
           orientation_decimals: int = 6, missing: int | None = None, turn_y: float = 0.0) -> SliceTags:
    """``count`` slices ``gap`` mm apart along their normal (rows and columns turned ``turn`` degrees about
    x, then ``turn_y`` about y: an oblique or double-oblique stack), each ``shear`` mm further along its
    columns than the one before (a tilt), values written with so many decimals, the slice ``missing`` left
    out."""
    t, u = np.radians(turn), np.radians(turn_y)
    about_y = np.array([[np.cos(u), 0.0, np.sin(u)], [0.0, 1.0, 0.0], [-np.sin(u), 0.0, np.cos(u)]])
    row, column = about_y @ [1.0, 0.0, 0.0], about_y @ [0.0, np.cos(t), np.sin(t)]
    normal = np.cross(row, column)
    origin = np.array([-249.51234, -180.2468, -1234.5678])
    steps = np.arange(count)
    positions = origin + np.outer(steps * gap, normal) + np.outer(steps * shear, column)
    written = [[f"{v:.{position_decimals}f}" for v in p] for k, p in enumerate(positions) if k != missing]
    orientation = [f"{v:.{orientation_decimals}f}" for v in (*row, *column)]
    values = {"0020|0032": ["\\".join(p) for p in written],
              "0020|0037": ["\\".join(orientation)] * len(written)}
    return slice_tags(lambda k, tag: True, lambda k, tag: values[tag][k], len(written))


def test_the_step_a_coordinate_is_written_to_is_its_finest_decimal():
    assert written_step(["-123.45", "-250.0", "7"], 1.0) == pytest.approx(0.01)
    assert written_step(["-250", "12"], 1.0) == 1.0 and written_step(["1", "0"], 0.0) == 0.0
    assert written_step(["1e-3", "0.5"], 1.0) == 0.0 and written_step([], 1.0) == 0.0


@pytest.mark.parametrize("turn", [17, 30])
def test_an_oblique_stack_with_positions_to_a_tenth_of_a_millimetre_is_one_stack(turn):
    """Positions rounded to 0.1 mm (some exports) along an oblique normal make gaps alternate by up to
    0.1 mm per coordinate the normal crosses (0.14 mm at 30 degrees): refused as "unevenly spaced" (the
    tolerance was 0.1 mm). A slice missing is still refused."""
    check_stack(_stack(1000, 0.5, turn=turn, position_decimals=1), "ct")
    with pytest.raises(LNQError, match=r"unevenly spaced \(gaps 0\.4\d* to 1\.\d* mm\): a slice is missing"):
        check_stack(_stack(1000, 0.5, turn=turn, position_decimals=1, missing=500), "ct")


def test_an_orientation_written_to_two_decimals_is_no_tilt_but_a_real_tilt_is_refused():
    """An oblique stack's orientation written to 2 decimals turns its normal by up to 0.4 degrees: 1000
    slices drift 3 mm beside it, refused as gantry tilt. Rounding the positions to 0.01 mm never drifts
    more than 0.02 mm, however long the series; a real tilt (a drift growing along the stack) of 0.2 degrees
    over 330 mm is still refused, as is 1 degree over 1000 slices."""
    check_stack(_stack(1000, 0.5, turn=17, orientation_decimals=2), "ct")
    check_stack(_stack(1000, 0.625, turn=17), "ct")
    for count, gap, degrees in ((330, 1.0, 0.2), (1000, 0.625, 1.0)):
        shear = gap * np.tan(np.radians(degrees))
        with pytest.raises(LNQError, match=rf"is tilted \(gantry tilt about {degrees:.1f} degrees"):
            check_stack(_stack(count, gap, shear=shear), "ct")


def test_exact_components_written_with_one_decimal_do_not_make_the_orientation_coarse():
    """pydicom writes an exact axial orientation as '1.0\\0.0\\0.0\\0.0\\1.0\\0.0': its 0 and 1 say nothing
    of rounding, so the orientation counts as exact (it counted as rounded to 0.1: tilts up to 9.8 degrees
    over 330 mm read)."""
    tags = _stack(3, 1.0, orientation_decimals=1)
    assert tags.orientation_step == 0.0
    assert _stack(3, 1.0, turn=17, orientation_decimals=2).orientation_step == pytest.approx(0.01)


@pytest.mark.parametrize("decimals", [1, 2])
@pytest.mark.parametrize("degrees", [0.5, 1, 2, 5, 9])
def test_a_real_tilt_is_refused_however_coarsely_an_axial_orientation_is_written(degrees, decimals):
    """An axial stack of 330 slices 1 mm apart drifting sideways by a real tilt, its orientation written as
    pydicom writes floats ('-1.0', '0.00'): refused as tilted, as with 6 decimals."""
    shear = np.tan(np.radians(degrees))
    with pytest.raises(LNQError, match=rf"is tilted \(gantry tilt about {degrees:.1f} degrees"):
        check_stack(_stack(330, 1.0, shear=shear, orientation_decimals=decimals), "ct")


@pytest.mark.parametrize(("degrees", "decimals"), [(1, 2), (2, 2), (5, 2), (9, 2), (2, 1), (5, 1), (9, 1)])
def test_a_real_tilt_of_an_oblique_stack_with_a_coarse_orientation_is_refused(degrees, decimals):
    """An oblique stack whose orientation is written to 1 or 2 decimals may put its normal's turn down to
    rounding only as far as 2 decimals can turn it (0.5 degrees at 17 degrees), at most 0.7 degrees (the
    rounding itself allowed up to 1 or 10 degrees). At 1 decimal the orientation itself is 0.3 degrees off,
    so a 1 degree tilt may be hidden."""
    shear = np.tan(np.radians(degrees))
    with pytest.raises(LNQError, match=r"is tilted \(gantry tilt about"):
        check_stack(_stack(330, 1.0, turn=17, shear=shear, orientation_decimals=decimals), "ct")


def test_rounding_alone_still_reads_within_the_cap():
    """Untilted stacks whose orientation and positions are only rounded read: 2 decimals of a 17 and a 30
    degree oblique over 500 mm, 3 decimals over 1000 mm."""
    for turn in (17, 30):
        check_stack(_stack(1000, 0.5, turn=turn, orientation_decimals=2), "ct")
        check_stack(_stack(1000, 1.0, turn=turn, orientation_decimals=3, position_decimals=1), "ct")


@pytest.mark.parametrize("turn", [0.15, 0.2, 0.25])
def test_an_orientation_padded_with_zeros_is_rounded_to_its_decimals(turn):
    """A stack turned 0.15-0.25 degrees, its orientation written '1.00\\0.00\\0.00\\0.00\\1.00\\0.00' (a
    writer of 2 fixed decimals: 0.00 stands for up to 0.005), was refused as tilted over 500 mm ('1.00' and
    '0.00' counted as exact), while 0.3 degrees ('-0.01') read. The same drift with 6 decimals is refused."""
    assert _stack(3, 1.0, turn=turn, orientation_decimals=2).orientation_step == pytest.approx(0.01)
    check_stack(_stack(500, 1.0, turn=turn, orientation_decimals=2), "ct")
    with pytest.raises(LNQError, match=r"is tilted"):
        check_stack(_stack(500, 1.0, shear=np.tan(np.radians(turn)), orientation_decimals=6), "ct")


@pytest.mark.parametrize(("turn", "turn_y"), [(5.0, 41.0), (9.0, 37.0), (12.0, 33.0), (15.55, 7.775)])
def test_a_double_oblique_orientation_to_two_decimals_is_no_tilt(turn, turn_y):
    """Rounding a double-oblique orientation to 2 decimals turns its normal by up to 0.7 degrees (its normal
    along a cube diagonal), beyond the 0.4 degree cap: consistent stacks over 500 mm were refused as
    tilted. A 2 degree tilt of them, and a 0.5 degree one written with 6 decimals, still are."""
    check_stack(_stack(500, 1.0, turn=turn, turn_y=turn_y, orientation_decimals=2), "ct")
    for degrees, decimals in ((2.0, 2), (0.5, 6)):
        with pytest.raises(LNQError, match=r"is tilted"):
            check_stack(_stack(500, 1.0, turn=turn, turn_y=turn_y, orientation_decimals=decimals,
                               shear=np.tan(np.radians(degrees))), "ct")
