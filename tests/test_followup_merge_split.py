"""Nodes that coalesce or split between the scans, on small phantoms with an identity registration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from lnq_napari.followup.compare import compare_nodes
from lnq_napari.followup.register import Registration
from lnq_napari.io.volume import Volume

SHAPE = (40, 120, 160)
SPACING = (1.0, 1.0, 2.0)  # x y z
ZZ, YY, XX = np.indices(SHAPE)
CT = Volume(np.zeros(SHAPE, np.int16), SPACING, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
CT2 = CT.with_array(np.ones(SHAPE, np.int16))  # another scan on the same grid
IDENTITY = Registration(sitk.Euler3DTransform(), "rigid", 0.0, 0.95, 1.0, (0.0, 0.0, 0.0))


def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    x, y, z = centre
    dx, dy, dz = XX * SPACING[0] - x, YY * SPACING[1] - y, ZZ * SPACING[2] - z
    return dx ** 2 + dy ** 2 + dz ** 2 <= radius ** 2


def compare(base: np.ndarray, follow: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_nodes(CT, CT.with_array(base), CT2, CT2.with_array(follow), registration=IDENTITY)


def conglomerate() -> np.ndarray:
    """One follow-up mass (short axis ~27 mm) whose bulk sits at x = 85 mm, bridged to x = 55 mm."""
    follow = np.zeros(SHAPE, np.uint8)
    follow[ball((85, 60, 40), 13)] = 1
    follow[ball((55, 60, 40), 4)] = 1
    follow[(np.abs(YY - 60) <= 2) & (np.abs(ZZ * 2 - 40) <= 4) & (XX >= 55) & (XX <= 85)] = 1
    return follow


@pytest.mark.parametrize(("radius", "role"), [(10, "target"), (6, "non-target")])
def test_a_target_or_non_target_merged_into_a_normal_nodes_partner_is_not_a_response(radius, role):
    """Baseline: a target (21 mm) or non-target (13 mm) and a 9 mm normal node; at follow-up one mass
    matched to the normal node. The merged node read 0 mm: CR while the disease grew to a 27 mm mass."""
    base = np.zeros(SHAPE, np.uint8)
    base[ball((50, 60, 40), radius)] = 1
    base[ball((85, 60, 40), 4)] = 1
    result = compare(base, conglomerate())
    roles = sorted((r.status, r.recist) for r in result.rows)
    assert roles == sorted([("merged", role), ("matched", "normal")])
    summary = result.recist
    if role == "target":
        assert summary.followup_sum_mm > summary.baseline_sum_mm
        assert (summary.target_response, summary.overall, summary.volume_response) == ("PD", "PD", "PD")
    else:
        assert (summary.non_target_response, summary.overall) == ("non-CR/non-PD", "non-CR/non-PD")
