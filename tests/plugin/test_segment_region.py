"""The Segment form's mediastinum region (toggle, outline layer) and suggestions cap; on a real chest CT,
the node table counts what ``lnq-napari measure`` counts on the saved mask."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from lnq_napari.cli import main
from lnq_napari.inference import Prediction
from lnq_napari.model.config import ModelConfig
from lnq_napari.plugin.app import dock_widgets
from lnq_napari.plugin.widgets.segment import REGION_NAME

pytestmark = pytest.mark.gui


class RegionStandIn:
    """TEST DOUBLE of ``Predictor.predict``: the phantom's nodes at 0.9, eight unsure blobs at 0.3 in
    the upper-left quarter, the region (when on, margin set) the left half of the volume."""

    def __init__(self, case) -> None:
        self.case = case
        self.config = ModelConfig()
        self.config.inference.mediastinum_margin_mm = 10.0
        self.calls: list[bool] = []

    def predict(self, ct, progress=None, cancel=None, region=True):
        self.calls.append(region)
        prob = np.where(np.asarray(self.case.instances.array) > 0, 0.9, 0.0).astype(np.float32)
        for k in range(8):
            y = 10 + 9 * k
            prob[10:14, y: y + 5, 100:105] = 0.3  # right half: outside the stand-in's region
            prob[10:14, y: y + 5, 10:15] = 0.3 + 0.01 * k
        inside = None
        if region:
            inside = np.zeros(ct.shape, bool)
            inside[..., : ct.shape[2] // 2] = True
        mask = (prob >= 0.5).astype(np.uint8)
        if inside is not None:
            mask[~inside] = 0
        return Prediction(ct.with_array(prob), ct.with_array(mask), "region-stand-in", inside)


def _run(qtbot, segment) -> None:
    assert segment.run() is not None
    qtbot.waitUntil(lambda: segment.worker is None, timeout=600000)


def test_region_toggle_outline_and_suggestions_cap(make_napari_viewer, qtbot, phantom_files, autosave_dir):
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    segment = dock_widgets(viewer)["Segment"]
    stand_in = RegionStandIn(phantom_files.case)
    segment.predictor_factory = lambda model, device: stand_in
    assert segment.form.region.value and segment.form.max_suggestions.value == 10
    segment.form.max_suggestions.value = 3
    _run(qtbot, segment)
    outline = viewer.layers[REGION_NAME]
    assert outline.data.shape == viewer.layers["nodes"].data.shape
    assert outline.data[:, :, : outline.data.shape[2] // 2].any() and not outline.data[..., -5:].any()
    points = viewer.layers["suggestions"].data
    assert 1 <= len(points) <= 3 and np.all(points[:, 2] < 80)  # inside the region, at most 3
    assert list(viewer.layers["suggestions"].features["reason"]) == [""] * len(points)  # unsure, outline
    assert "lungs' hull + 10 mm" in segment.status.text()

    segment.form.region.value = False
    segment.form.max_suggestions.value = 20
    _run(qtbot, segment)
    assert stand_in.calls == [True, False] and REGION_NAME not in viewer.layers
    points = viewer.layers["suggestions"].data
    assert len(points) <= 20 and np.sum(points[:, 2] >= 100) >= 6  # the blobs outside are back
    assert "mediastinum region: off" in segment.status.text()


def _links(emitters) -> list[int]:
    """Each emitter's callbacks but the node layers' sessions' own (one per node layer while it lives)."""
    return [sum(not (isinstance(cb, tuple) and cb[1] == "_on_nodes_removed") for cb in e.callbacks)
            for e in emitters]


def test_region_outline_is_hidden_in_3d_and_back_in_2d(make_napari_viewer, qtbot, phantom_files,
                                                       autosave_dir):
    """The per-slice outlines stacked into a cyan cage in 3D that hid the nodes: 2D only, as the user left
    them (one hidden by hand, in 2D or in 3D, stays hidden), also for a region found while the view is in
    3D; the link ends with the layer."""
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    # from the Plugins menu: napari hands the widget a proxy of the viewer, whose layers are proxies too
    _, panel = viewer.window.add_plugin_dock_widget("lnq-napari", "Panel")
    segment = panel.widgets["Segment"]
    segment.predictor_factory = lambda model, device: RegionStandIn(phantom_files.case)
    listeners = (viewer.dims.events.ndisplay, viewer.layers.events.removed)
    before = _links(listeners)
    _run(qtbot, segment)
    outline = viewer.layers[REGION_NAME]
    assert outline.visible
    gc.collect()  # the proxy the outline was added through is gone
    viewer.dims.ndisplay = 3
    assert not outline.visible and viewer.layers["nodes"].visible
    viewer.dims.ndisplay = 2
    assert outline.visible
    outline.visible = False  # the user's choice in 2D is kept through a 3D visit
    viewer.dims.ndisplay = 3
    viewer.dims.ndisplay = 2
    assert not outline.visible
    viewer.dims.ndisplay = 3
    _run(qtbot, segment)  # found while in 3D: not drawn until back in 2D
    assert not viewer.layers[REGION_NAME].visible
    viewer.dims.ndisplay = 2
    assert viewer.layers[REGION_NAME].visible
    outline = viewer.layers[REGION_NAME]
    viewer.dims.ndisplay = 3  # hidden by the link; the user shows it, looks, and hides it again in 3D
    outline.visible = True
    outline.visible = False
    viewer.dims.ndisplay = 2
    assert not outline.visible  # the user's last choice, not the link's
    outline.visible = True
    assert _links(listeners) == [n + 1 for n in before]  # one link, not two
    viewer.layers.remove(outline)  # the link ends with the layer (no 2D/3D switch needed)
    assert _links(listeners) == before
    assert len(outline.events.visible.callbacks) == 0


def test_real_chest_ct_node_table_equals_measure_on_the_saved_mask(
    make_napari_viewer, qtbot, tmp_path, autosave_dir
):
    import slicerio
    import torch

    torch.set_num_threads(2)
    ct_path = slicerio.get_testdata_file("CTChest4.nrrd")
    viewer = make_napari_viewer()
    viewer.open(ct_path, plugin="lnq-napari")
    widgets = dock_widgets(viewer)
    segment = widgets["Segment"]
    segment.form.device.value = "cpu"
    segment.form.region.value = False  # the bundled model's node below the lungs makes a row to count
    _run(qtbot, segment)
    n_nodes = int(viewer.layers["nodes"].data.max())
    assert segment.status.text().startswith(f"{n_nodes} nodes")
    qtbot.waitUntil(lambda: widgets["Nodes"]._worker is None and len(widgets["Nodes"].rows) == n_nodes,
                    timeout=60000)
    saved = tmp_path / "CTChest4-seg.nrrd"
    viewer.layers["nodes"].save(str(saved), plugin="lnq-napari")
    csv_path = tmp_path / "nodes.csv"
    assert main(["measure", str(saved), "--ct", ct_path, "--csv", str(csv_path)]) == 0
    assert len(csv_path.read_text().strip().splitlines()) - 1 == len(widgets["Nodes"].rows) == n_nodes


def test_a_ct_without_lungs_says_so_and_that_no_region_restricts_the_nodes(make_napari_viewer, qtbot,
                                                                           tmp_path, autosave_dir):
    """With no lungs in view the region is the whole CT: find_nodes' warning was lost in the worker thread
    and the status line said "mediastinum region: lungs' hull + 10 mm"."""
    from lnq_napari.anatomy import mediastinum_region
    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    class NoLungs:
        config = ModelConfig()

        def predict(self, ct, progress=None, cancel=None, region=True):
            inside = mediastinum_region(ct) if region else None  # warns, and returns the whole CT
            prob = np.zeros(ct.shape, np.float32)
            return Prediction(ct.with_array(prob), ct.with_array(prob.astype(np.uint8)), "no-lungs", inside)

    NoLungs.config.inference.mediastinum_margin_mm = 10.0
    ct_path = tmp_path / "soft-tissue-ct.nrrd"  # a crop of the mediastinum: fat and muscle, no lung
    hu = np.random.default_rng(0).normal(40.0, 20.0, (16, 48, 48))
    hu[:, :, :12] -= 140.0  # a band of fat
    write_volume(ct_path, Volume(hu.astype(np.int16), spacing=(1.0, 1.0, 2.0)))
    viewer = make_napari_viewer()
    viewer.open(str(ct_path), plugin="lnq-napari")
    segment = dock_widgets(viewer)["Segment"]
    segment.predictor_factory = lambda model, device: NoLungs()
    _run(qtbot, segment)
    said = segment.status.text()
    assert "mediastinum region: none (no lungs in view)" in said and "lungs' hull" not in said
    assert "note: no lungs found in this CT, so nodes are not restricted to the mediastinum" in said
