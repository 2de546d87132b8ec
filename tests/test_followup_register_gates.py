"""The registration's gates: a fit is refused when the scans share too little of the chest or lungs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from lnq_napari.errors import LNQError
from lnq_napari.followup import register as reg
from lnq_napari.phantom.followup import Motion, make_followup


@pytest.fixture(scope="module")
def chest():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = make_followup(11, shape=(40, 128, 128), spacing=(2.6, 2.6, 6.0), scenario="mixed",
                             motion=Motion())
    return reg.chest_of(pair.baseline.ct)


def fit(chest, slide_mm: float):
    return reg._fit(chest, chest, sitk.TranslationTransform(3, (0.0, 0.0, float(slide_mm))))


def test_one_chest_slid_far_along_itself_is_refused_though_its_shared_slices_match(chest):
    """The same CT slid 160 mm: the lungs' Dice, counted where both scans reach, read 0.59 with a third
    of the chest inside, and the fit passed both gates (min Dice 0.4, min overlap 0.3)."""
    dice, overlap, share, fewer = fit(chest, 160.0)
    assert dice > reg.MIN_LUNG_DICE and overlap > reg.MIN_OVERLAP  # the two old gates pass
    assert share < reg.MIN_LUNG_SHARE
    with pytest.raises(LNQError, match="of the baseline's lungs lie inside the follow-up scan"):
        reg.check_fit(dice, overlap, share, fewer)
    reg.check_fit(*fit(chest, 0.0))  # in place: kept


def test_the_refusal_says_what_failed_and_nothing_it_contradicts():
    """An upper-chest follow-up with its lungs 96 % alike was refused as 'do not overlap (lungs overlap
    96%, 27% of the baseline chest inside ...)'."""
    with pytest.raises(LNQError) as refused:
        reg.check_fit(0.96, 0.27, 1.0)
    message = str(refused.value)
    assert "only 27% of the baseline chest lies inside the follow-up" in message
    assert "overlap only" not in message and "only 100%" not in message


def test_a_lungs_share_refusal_names_the_scan_and_says_its_figure_once():
    """The refusal said '43%' twice and spoke of 'the lungs of the scan showing fewer'."""
    with pytest.raises(LNQError) as refused:
        reg.check_fit(0.6, 0.35, 0.43, "follow-up")
    message = str(refused.value)
    assert "only 43% of the follow-up's lungs lie inside the baseline scan" in message
    assert message.count("43%") == 1 and "showing fewer" not in message
    assert "the lungs overlap 60% where both scans reach" in message


def test_a_refusal_where_one_scan_shows_no_lungs_names_that_scan():
    """With no lungs in one scan the share is not defined: the refusal said only that the lungs overlap 0 %,
    not which scan showed none."""
    with pytest.raises(LNQError, match=r"the follow-up scan shows no lungs"):
        reg.check_fit(0.0, 0.9, math.nan, "follow-up")


def test_itks_reason_for_a_failed_registration_is_its_first_sentence_whole():
    """Two scans that do not overlap: the error quoted ITK's last line cut at 120 characters, mid-word
    ("... They need to be initialized to have more overlap before this metric will work. For instance,
    you can align the image centers by translation" cut after "The"), with its class and address."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    fixed = sitk.GetImageFromArray(rng.random((10, 10, 10)).astype(np.float32))
    moving = sitk.GetImageFromArray(rng.random((10, 10, 10)).astype(np.float32))
    moving.SetOrigin((1000.0, 1000.0, 1000.0))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation()
    method.SetOptimizerAsGradientDescent(1.0, 5)
    method.SetInitialTransform(sitk.TranslationTransform(3))
    said = (r"^the two scans do not overlap enough to be registered \(All samples map outside moving image "
            r"buffer\): check that both CTs show the chest of the same patient$")
    with pytest.raises(LNQError, match=said):
        reg._execute(method, SimpleNamespace(image=fixed), SimpleNamespace(image=moving))
