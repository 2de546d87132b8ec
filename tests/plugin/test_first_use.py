"""What a first-time user trips over in napari: the CT a second File > Open brings is the one Find nodes
runs on, the CT's contrast slider reaches a lung window, no warnings from the panel docked by the
Plugins menu."""

from __future__ import annotations

import shutil

import pytest

from lnq_napari.plugin.app import dock_widgets

pytestmark = pytest.mark.gui


def test_find_nodes_runs_on_the_ct_opened_last(make_napari_viewer, phantom_files, tmp_path):
    viewer = make_napari_viewer()
    segment = dock_widgets(viewer)["Segment"]
    first = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]
    assert segment.form.ct.value is first
    other = shutil.copy(phantom_files.ct, tmp_path / "patient2-ct.nrrd")
    second = viewer.open(str(other), plugin="lnq-napari")[0]
    assert segment.form.ct.value is second  # the case just opened, not the one opened before
    viewer.layers.remove(second)
    assert segment.form.ct.value is first


def test_the_ct_opens_in_the_mediastinal_window_and_its_slider_reaches_a_lung_window(
    make_napari_viewer, phantom_files
):
    import numpy as np

    from lnq_napari.plugin._layers import CT_CONTRAST
    from lnq_napari.plugin.app import open_viewer

    data = np.asarray(phantom_files.case.ct.array)
    by_view = open_viewer(ct=phantom_files.ct, viewer=make_napari_viewer()).layers[0]  # lnq-napari view
    viewer = make_napari_viewer()
    dock_widgets(viewer)
    by_menu = viewer.open(str(phantom_files.ct), plugin="lnq-napari")[0]  # File > Open beside the panel
    for layer in (by_view, by_menu):
        assert tuple(layer.contrast_limits) == CT_CONTRAST
        low, high = layer.contrast_limits_range
        assert low <= data.min() < -900 and high >= data.max()
        layer.contrast_limits = (-1350, 150)  # a lung window, as the slider is dragged
        assert tuple(layer.contrast_limits) == (-1350, 150)
