"""A CT stored flipped (feet first: z decreasing) is drawn through an affine, its layer scale (1, 1, 1):
edits sized in mm must take the grid's spacing, not the layer's scale."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.interact import Suggestion
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._case import add_case, nodes_layer_data
from lnq_napari.plugin._reader import ct_layer_data
from lnq_napari.plugin._session import PROB_KEY, session_for, show_suggestions

pytestmark = pytest.mark.gui

SPACING = (1.0, 1.0, 5.0)  # x, y, z mm: thick slices, as a routine chest CT's
FEET_FIRST = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _accepted_on(viewer, direction) -> np.ndarray:
    """The voxels a suggestion's acceptance paints where the model saw a 100 mm long structure of
    probability 0.5 in lung HU (no node-like tissue: the model's region is taken), on a CT of ``direction``;
    as physical z (mm) of each painted voxel."""
    shape = (20, 24, 24)
    ct = Volume(np.full(shape, -800, dtype=np.int16), SPACING, (0.0, 0.0, 0.0), direction)
    prob = np.zeros(shape, dtype=np.float32)
    prob[:, 10:14, 10:14] = 0.5
    ct_layer, nodes = add_case(viewer, ct_layer_data(ct), nodes_layer_data(ct.with_array(np.zeros(shape,
                                                                                                      np.uint8))))
    session = session_for(viewer, nodes)
    session.nodes.metadata[PROB_KEY] = prob
    centre = (10, 12, 12)
    suggestion = Suggestion("bright", centre, (12.0, 12.0, 0.0), 1.0, 0.5, 0.5, True, 320, 1600.0)
    session.suggestions = show_suggestions(viewer, ct, [suggestion], like=ct_layer)
    assert session.accept_suggestion(0)
    z_index = np.nonzero(nodes.data)[0]
    return np.asarray([nodes.data_to_world((z, 12, 12))[0] for z in z_index]) - nodes.data_to_world(centre)[0]


def test_an_accepted_suggestion_on_a_feet_first_ct_stays_within_the_growth_ball_in_mm(make_napari_viewer):
    viewer = make_napari_viewer()
    head_first = _accepted_on(viewer, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    viewer.layers.clear()
    feet_first = _accepted_on(viewer, FEET_FIRST)
    assert np.abs(head_first).max() <= 25.0  # the model's region, cut at 25 mm from the click
    assert np.abs(feet_first).max() <= 25.0  # 25 slices (125 mm) when the layer's scale was taken for mm
    assert feet_first.size == head_first.size
