"""npe2 reader, writer and sample data through a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.io.readers import read_labels, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.plugin._layers import GEOMETRY_KEY, layer_volume
from lnq_napari.plugin._reader import napari_get_reader

pytestmark = pytest.mark.gui


def test_reader_opens_ct_as_windowed_image_and_seg_as_node_labels(make_napari_viewer, phantom_files):
    viewer = make_napari_viewer()
    assert napari_get_reader(str(phantom_files.ct)) is not None
    assert napari_get_reader("notes.txt") is None
    (ct,) = viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    (seg,) = viewer.open(str(phantom_files.seg), plugin="lnq-napari")
    case = phantom_files.case
    assert ct._type_string == "image" and seg._type_string == "labels"
    assert tuple(ct.contrast_limits) == (-160, 240) and ct.colormap.name == "gray"
    assert ct.scale == pytest.approx(case.ct.spacing[::-1]) and ct.translate == pytest.approx(
        case.ct.origin[::-1]
    )
    assert seg.scale == pytest.approx(ct.scale) and seg.translate == pytest.approx(ct.translate)
    assert ct.metadata[GEOMETRY_KEY]["origin"] == pytest.approx(case.ct.origin)
    assert layer_volume(ct).same_grid(case.ct)
    # one id per connected node, covering exactly the partial labels
    assert np.array_equal(seg.data > 0, np.asarray(case.partial.array) > 0)
    assert seg.data.max() >= 1


def test_reader_honours_direction_with_an_affine(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    rot = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x and y axes swapped (90 degree rotation)
    volume = Volume(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), (0.5, 0.7, 2.0), (10.0, 20.0, 30.0), rot
    )
    path = write_volume(tmp_path / "rotated-ct.nrrd", volume)
    (layer,) = viewer.open(str(path), plugin="lnq-napari")
    index = np.array([1.0, 2.0, 3.0])  # z, y, x
    expected = volume.index_to_physical(index)[0][::-1]  # world is (z, y, x) LPS
    assert layer.data_to_world(index) == pytest.approx(expected)
    assert layer_volume(layer).same_grid(volume)


def test_writer_saves_slicer_seg_on_the_ct_grid(make_napari_viewer, phantom_files, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(phantom_files.ct), plugin="lnq-napari")
    (seg,) = viewer.open(str(phantom_files.seg), plugin="lnq-napari")
    seg.data[seg.data > 0] = 5  # any ids: saved as node = 1
    from napari.plugins.io import save_layers

    out = save_layers(str(tmp_path / "edited.seg.nrrd"), [seg], plugin="lnq-napari")
    assert out == [str(tmp_path / "edited.seg.nrrd")]
    back = read_labels(out[0])
    assert back.same_grid(phantom_files.case.ct)
    assert np.array_equal(back.array, (seg.data > 0).astype(np.uint8))
    assert back.meta["selected_segments"] == ["lymph node"] and back.meta["lnq_layer"] == seg.name


def test_sample_data_opens_phantom_case(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("lnq-napari", "phantom")
    kinds = {layer.name: layer._type_string for layer in viewer.layers}
    assert list(kinds.values())[:2] == ["image", "labels"]
    ct = viewer.layers[0]
    assert ct.data.dtype == np.int16 and ct.data.ndim == 3 and tuple(ct.contrast_limits) == (-160, 240)
    # the bundled model's nodes, one id per node (no model would mean no "nodes" layer: a failure)
    nodes = viewer.layers["nodes"]
    assert kinds["nodes"] == "labels" and nodes.data.shape == ct.data.shape
    assert nodes.metadata["lnq_model_version"] and nodes.metadata["lnq_probabilities"].shape == ct.data.shape
