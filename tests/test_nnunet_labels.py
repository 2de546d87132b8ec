"""Which labels of a researcher's nnU-Net model are the lymph nodes, read from the names in its
``dataset.json`` alone (no model folder, no network): node words with stations, sides, numbers or places
are node labels and the nodes their union; a label naming nodes in a way the rule cannot read is refused
in one line rather than left out of the union; region-based models agree with nnU-Net's own
``LabelManager`` on which voxels are nodes."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.model.nnunet_labels import argmax_decides, node_outputs


def _labels(*names: str) -> dict:
    return {name: value for value, name in enumerate(("background", *names))}


@pytest.mark.parametrize("names, channels", [
    (("lymph_node_4R", "subcarinal_lymph_node", "hilar_lymph_node_R"), (1, 2, 3)),
    (("lymph_node_2R", "lymph_node_2L", "lymph_node_4R/4L"), (1, 2, 3)),
    (("Lymph node (station 7)", "aorta", "mediastinal_lymph_nodes"), (1, 3)),
    (("left_lymph_nodes", "right_lymph_nodes", "nodule"), (1, 2)),
])
def test_node_words_with_a_place_or_a_station_list_are_node_labels(names, channels):
    """``subcarinal_lymph_node``, ``hilar_lymph_node_R`` and ``lymph_node_4R/4L`` were left out of the
    union beside ``lymph_node_4R`` (their nodes shown as background without a word); a place or side
    before the node word, stations joined by ``/`` or in brackets name nodes as plainly as ``_4R``."""
    assert node_outputs({"labels": _labels(*names)}, "F").channels == channels


@pytest.mark.parametrize("names, unread", [
    (("lymph_node", "LN_metastatic"), "LN_metastatic"),
    (("lymph_node_4R", "all_lymph_nodes", "aorta"), "all_lymph_nodes"),
    (("lymph_node", "lymph_node_12mm"), "lymph_node_12mm"),
    (("lymph_node_7", "node_st"), "node_st"),
])
def test_a_label_naming_nodes_the_rule_cannot_read_is_refused_not_left_out(names, unread):
    """``LN_metastatic`` beside ``lymph_node`` (a model of benign and metastatic nodes) gave the benign
    nodes alone; ``lymph_node_12mm`` and ``node_st`` were taken as stations. Each is refused in one line
    that names it and says how to name the node labels."""
    with pytest.raises(LNQError) as caught:
        node_outputs({"labels": _labels(*names)}, "M")
    message = str(caught.value)
    assert f"cannot read as nodes or not: {unread} (beside the node labels" in message
    assert "name each node label lymph_node_<station or number>" in message
    assert message.endswith("(nnU-Net reads no meaning from the names)") and "\n" not in message


@pytest.mark.parametrize("names, unread", [
    (("lymph_node_benign", "lymph_node_malignant"), "lymph_node_benign, lymph_node_malignant"),
    (("lnst", "vessel"), None),
    (("lymph_node_10mm", "lymph_node_small"), "lymph_node_10mm, lymph_node_small"),
])
def test_no_node_label_names_those_naming_nodes_and_how_to_name_them(names, unread):
    """No label the rule reads as nodes: the refusal lists the labels naming nodes it cannot read and says
    to name each node label ``lymph_node_<station or number>`` (two labels cannot both be named
    ``lymph_node``, as it said); ``lnst`` (no station) and ``lymph_node_10mm`` were taken as nodes."""
    with pytest.raises(LNQError) as caught:
        node_outputs({"labels": _labels(*names)}, "M")
    message = str(caught.value)
    assert message.startswith("the nnU-Net model M has no lymph-node label")
    assert "name each node label lymph_node_<station or number> (e.g. lymph_node_4R, lymph_node_1" in message
    assert (f"labels naming nodes it cannot read: {unread})" in message) is (unread is not None)


def test_two_names_of_one_value_are_one_output_for_the_argmax():
    """``{"lymph_node": 1, "LN": 1}`` is a two-output model: nnU-Net's argmax decides nothing a cut at 0.5
    would not (it was counted as three labels, keying a threshold of 0.5 apart from no threshold)."""
    assert not argmax_decides({"background": 0, "lymph_node": 1, "LN": 1})
    assert not argmax_decides({"background": 0, "lymph_node": 1, "LN": [1], "ignore": 2})
    assert argmax_decides({"background": 0, "lymph_node": 1, "vessel": 2})


BIG_TO_SMALL = {"background": 0, "mediastinum": [1, 2, 3], "lymph_node_4R": [1], "lymph_node_7": [3]}


@pytest.mark.parametrize("labels, order, nodes", [
    (BIG_TO_SMALL, [2, 1, 3], (1, 3)),
    ({"background": 0, "lymph_nodes": [1, 2], "LN_7": [2]}, [1, 2], (1, 2)),
    ({"background": 0, "nodes_and_vessels": [1, 2], "lymph_node": [2]}, [1, 2], (2,)),
    ({"background": 0, "lymph_node_4R": 1, "aorta": 2, "lymph_node_7": 3}, None, (1, 3)),
])
def test_the_nodes_agree_with_nnunets_own_segmentation(labels, order, nodes):
    """Region-based: the node probability (the voxel-wise maximum of the node regions' sigmoids) above 0.5
    is where nnU-Net's ``LabelManager`` writes a node label (``regions_class_order``, later regions
    overwriting earlier ones), on sigmoids of which about half are below 0.5. Softmax: the mask is
    nnU-Net's argmax with the node labels mapped to nodes."""
    nnunet = pytest.importorskip("nnunetv2.utilities.label_handling.label_handling")

    outputs = node_outputs({"labels": labels, "regions_class_order": order}, "F")
    manager = nnunet.LabelManager(labels, order)
    values = np.random.default_rng(0).random((manager.num_segmentation_heads, 20, 30, 40), dtype=np.float32)
    if order is None:
        values /= values.sum(axis=0)  # softmax outputs
    seg = manager.convert_probabilities_to_segmentation(values)
    ours = outputs.argmax_wins(values) if order is None else outputs.probability(values) > 0.5
    assert 0.2 < ours.mean() < 0.9 and np.array_equal(ours, np.isin(seg, nodes))
