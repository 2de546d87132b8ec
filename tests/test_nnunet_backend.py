"""The nnU-Net predictor backend: a model folder made by nnU-Net's own planner and network builder from a
tiny phantom export predicts on the CT's exact grid, agrees with nnU-Net's own reader + predictor, and
goes through load_predictor, api.find_nodes and ``predict --model nnunet:<folder>``. Skips without
nnunetv2 (the ``[nnunet]`` extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nnunetv2")

from lnq_napari import api  # noqa: E402
from lnq_napari.cli import main  # noqa: E402
from lnq_napari.errors import Cancelled, LNQError  # noqa: E402
from lnq_napari.inference import Prediction, Predictor  # noqa: E402
from lnq_napari.io.readers import read_volume  # noqa: E402
from lnq_napari.nnunet.backend import NnUNetPredictor  # noqa: E402
from lnq_napari.nnunet.select import load_predictor  # noqa: E402


@pytest.fixture(scope="module")
def predictor(nnunet_model) -> NnUNetPredictor:
    return NnUNetPredictor(nnunet_model[1], device="cpu", mirroring=False)


def test_prediction_on_the_exact_ct_grid(odd_grid_ct, predictor):
    ct = odd_grid_ct
    steps = []
    pred = predictor.predict(ct, progress=lambda f, m="": steps.append(f))
    assert isinstance(pred, Prediction)
    for vol in (pred.probabilities, pred.mask):
        assert vol.shape == ct.shape
        assert (vol.spacing, vol.origin, vol.direction) == (ct.spacing, ct.origin, ct.direction)
    prob = pred.probabilities.array
    assert prob.dtype == np.float32 and 0.0 <= prob.min() and prob.max() <= 1.0 and prob.std() > 0
    np.testing.assert_array_equal(pred.mask.array, (prob >= 0.5).astype(np.uint8))  # nnU-Net's argmax
    assert pred.model_version == predictor.version == pred.mask.meta["model_version"]
    assert pred.model_version.startswith("nnunet:Dataset601_LNQ/nnUNetTrainer__nnUNetPlans__3d_fullres@")
    assert steps == sorted(steps) and steps[-1] == 1.0


def test_agrees_with_nnunets_own_reader_and_predictor(odd_grid_ct, predictor, tmp_path):
    """Our Volume -> backend equals nnU-Net's SimpleITKIO reading the same file -> its predictor."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from lnq_napari.io.readers import write_volume

    ct = odd_grid_ct
    path = write_volume(tmp_path / "case_0000.nrrd", ct)
    data, props = SimpleITKIO().read_images([str(path)])
    seg = predictor._nnunet.predict_single_npy_array(data, props, None, None, False)
    ours = predictor.predict(ct)
    differ = ours.mask.array != seg
    assert differ.mean() < 1e-3  # only ties: nnU-Net's argmax keeps 0 where the softmax is exactly 0.5
    assert np.all(np.abs(ours.probabilities.array[differ] - 0.5) < 1e-3)


def test_cancel_stops_prediction(odd_grid_ct, predictor):
    with pytest.raises(Cancelled):
        predictor.predict(odd_grid_ct, cancel=lambda: True)


def test_fold_ensemble_and_version(nnunet_model, odd_grid_ct, tmp_path):
    import torch

    folder = tmp_path / "Dataset601_LNQ" / nnunet_model[1].name
    shutil.copytree(nnunet_model[1], folder)
    ckpt = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    ckpt["network_weights"] = {k: v * 0.5 if v.is_floating_point() else v
                               for k, v in ckpt["network_weights"].items()}
    (folder / "fold_1").mkdir()
    torch.save(ckpt, folder / "fold_1" / "checkpoint_final.pth")
    ct = odd_grid_ct
    one = NnUNetPredictor(folder, device="cpu", folds=[0], mirroring=False)
    both = NnUNetPredictor(folder, device="cpu", mirroring=False)
    assert both.model.folds == ("0", "1") and one.version != both.version
    assert not np.allclose(one.predict(ct).probabilities.array, both.predict(ct).probabilities.array)
    with pytest.raises(LNQError, match=r"lacks fold\(s\) 3"):
        NnUNetPredictor(folder, device="cpu", folds=[3])


def test_load_predictor_chooses_the_backend(nnunet_model):
    folder = nnunet_model[1]
    chosen = load_predictor(f"nnunet:{folder}?mirroring=off&tile_step=0.75&folds=0", device="cpu")
    assert isinstance(chosen, NnUNetPredictor)
    assert chosen._nnunet.use_mirroring is False and chosen._nnunet.tile_step_size == 0.75
    assert chosen.config.inference.min_component_mm3 == 0.0  # nnU-Net's argmax unless asked
    assert chosen.config.inference.min_peak == 0.0
    floor = load_predictor(f"nnunet:{folder}?min_component_mm3=300&max_mean_hu=none&min_peak=0.9",
                           device="cpu")
    assert floor.config.inference.min_component_mm3 == 300.0 and floor.config.inference.max_mean_hu is None
    assert floor.config.inference.min_peak == 0.9
    assert isinstance(load_predictor(folder, device="cpu"), NnUNetPredictor)  # found by its plans.json
    assert isinstance(load_predictor(None, device="cpu"), Predictor)
    assert load_predictor(chosen) is chosen
    with pytest.raises(LNQError, match="unknown nnU-Net model option"):
        load_predictor(f"nnunet:{folder}?speed=fast")
    for bad in ("threshold=2", "min_peak=-0.1", "min_component_mm3=-5"):  # an empty mask, silently
        with pytest.raises(LNQError, match="lies outside"):
            load_predictor(f"nnunet:{folder}?{bad}")
    with pytest.raises(LNQError, match="nnU-Net models only"):
        load_predictor(None, tile_step=0.5)
    for empty in ("nnunet:", "nnunet:?folds=0"):  # were read as the current folder
        with pytest.raises(LNQError, match=r"names no folder; give nnunet:<trained model folder>"):
            load_predictor(empty)
    with pytest.raises(LNQError, match=r"does not exist; .* \(or nnunet:<folder> for an nnU-Net model\)"):
        load_predictor(str(folder) + "-missing")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_a_model_of_two_channels_or_an_empty_checkpoint_is_one_line(nnunet_model, tmp_path):
    """A CT + PET model predicted with a traceback from inside the network, an empty checkpoint (a full
    disk) or text in its place with EOFError / UnpicklingError: one line each, naming what to do."""
    import json

    two = _copy(nnunet_model[1], tmp_path / "two")
    meta = json.loads((two / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT", "1": "PET"}
    (two / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LNQError, match=r"takes 2 input channels \(CT, PET\); lnq-napari gives it the CT"):
        NnUNetPredictor(two, device="cpu")
    meta["modality"] = meta.pop("channel_names")  # a dataset converted from nnU-Net v1 names them so
    (two / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LNQError, match=r"takes 2 input channels \(CT, PET\)"):
        NnUNetPredictor(two, device="cpu")
    one = _copy(nnunet_model[1], tmp_path / "v1")
    meta = json.loads((one / "dataset.json").read_text())
    (one / "dataset.json").write_text(json.dumps(meta | {"modality": meta.pop("channel_names")}))
    assert NnUNetPredictor(one, device="cpu").outputs.channels == (1,)  # one input: no refusal for its name
    for n, cut in enumerate((lambda b: b"", lambda b: b"not a checkpoint", lambda b: b[:5000])):
        bad = _copy(nnunet_model[1], tmp_path / f"bad{n}")  # the last: cut short (OSError's traceback)
        for checkpoint in bad.glob("fold_*/checkpoint_final.pth"):
            checkpoint.write_bytes(cut(checkpoint.read_bytes()))
        with pytest.raises(LNQError, match="cannot load the nnU-Net model .*empty or damaged checkpoint"):
            NnUNetPredictor(bad, device="cpu")


def _relabelled(model: Path, root: Path, labels: dict, configuration: str | None = None, **extra) -> Path:
    """A tiny model folder like ``model`` whose dataset.json has ``labels`` (and ``extra``), its network
    built for them by nnU-Net's own builder (as many outputs as the labels make)."""
    import json

    from lnq_napari.nnunet import tiny

    plans = json.loads((model / "plans.json").read_text())
    if configuration is not None:  # a cascade's second stage after a first one
        base = plans["configurations"]["3d_fullres"]
        plans["configurations"]["3d_lowres"] = dict(base, next_stage=configuration)
        plans["configurations"][configuration] = {"inherits_from": "3d_fullres",
                                                  "previous_stage": "3d_lowres"}
    dataset = json.loads((model / "dataset.json").read_text()) | {"labels": labels, **extra}
    root.mkdir()
    (root / "plans.json").write_text(json.dumps(plans))
    (root / "dataset.json").write_text(json.dumps(dataset))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny, "CONFIGURATION", configuration or tiny.CONFIGURATION)
        return tiny.write_model_folder(root / "plans.json", root / "dataset.json", root / "results")


@pytest.mark.parametrize("labels, extra, channel", [
    ({"background": 0, "vessel": 1, "lymph_node": 2}, {}, 2),
    ({"background": 0, "LN": 1, "ignore": 2}, {}, 1),
    ({"background": 0, "lymph_node": 1, "nodes_and_vessels": [1, 2]}, {"regions_class_order": [1, 2]}, 0),
])
def test_the_node_probability_is_the_channel_dataset_json_names(nnunet_model, odd_grid_ct, tmp_path, labels,
                                                                extra, channel):
    """A researcher's own labels: the node label at 2 beside a vessel label, named "LN", or region-based
    (sigmoid outputs, one per region, no background channel): the probability is nnU-Net's own output of
    the node label (channel 1 was taken regardless: a vessel or another region's map as the nodes)."""
    folder = _relabelled(nnunet_model[1], tmp_path / "m", labels, **extra)
    predictor = NnUNetPredictor(folder, device="cpu", mirroring=False)
    ct = odd_grid_ct
    seg, own = predictor._nnunet.predict_single_npy_array(
        np.asarray(ct.array, dtype=np.float32)[None], {"spacing": list(ct.spacing_zyx)}, None, None, True)
    assert own.shape[0] == (2 if extra else len(labels) - ("ignore" in labels))
    pred = predictor.predict(ct)
    np.testing.assert_allclose(pred.probabilities.array, own[channel], atol=1e-6)
    # softmax: the mask is nnU-Net's own segmentation of the node label (its argmax over all labels, not
    # its probability above 0.5 when there are more than two); region-based: the node region's sigmoid
    # above 0.5, not nnU-Net's label map (there a later region in regions_class_order overwrites it)
    node = next(k for k in labels if k in ("lymph_node", "LN"))
    nnunet_mask = own[channel] > 0.5 if extra else seg == labels[node]
    differ = pred.mask.array.astype(bool) != nnunet_mask
    assert np.all(np.abs(own[channel][differ] - 0.5) < 1e-3)  # ties at 0.5 only
    if len(own) > 2:
        assert (seg == labels["lymph_node"]).any() and not differ.any()


@pytest.mark.parametrize("labels, channel", [
    ({"background": 0, "lymph_node": 1.0}, 1),
    ({"background": "0", "lymph_node": "1"}, 1),
    ({"background": 0.0, "lymph_node": 1.0, "ignore": 2}, 1),
    ({"background": 0, "vessel": "1", "lymph_node": 2.0}, 2),
    ({"background": 0, "ignore": 2.0, "lymph_node": 1}, None),
])
def test_label_values_are_read_as_nnunet_reads_them(labels, channel):
    """nnU-Net's label manager reads label values with int(): 1.0 and "1" are labels (1.0 passed before
    and was then refused as "not a label"; with an ignore label "not the highest"); its ignore label must
    be an int (it asserts), which the one-line error says."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from lnq_napari.model.nnunet_labels import node_outputs, same_as_export

    if channel is None:
        with pytest.raises(AssertionError):
            LabelManager(labels, None)
        with pytest.raises(LNQError, match=r"the ignore label 2\.0, not an integer .*whole number without "
                           r".*decimals\); fix F.dataset\.json or copy it again .*nnUNetv2_train wrote$"):
            node_outputs({"labels": labels}, "F")
        return
    assert LabelManager(labels, None).num_segmentation_heads > channel
    assert node_outputs({"labels": labels}, "F").channels == (channel,)
    assert same_as_export({"labels": labels}) is (channel == 1)


@pytest.mark.parametrize("labels, nnunet_reads", [
    ({"background": 0, "lymph_node": "1.0"}, False),
    ({"background": "0.0", "lymph_node": 1}, False),
    ({"background": 0, "lymph_node": "1e0", "ignore": 2}, False),
    ({"background": 0, "lymph_node": True}, True),
    ({"background": 0, "vessel": 1.5, "lymph_node": 2}, True),
])
def test_label_values_nnunet_cannot_read_or_lnq_cannot_use_are_refused_in_one_line(labels, nnunet_reads):
    """Text is read with int() as nnU-Net reads it ("1.0" passed lnq's checks, then nnU-Net's loader
    failed with a misleading 'damaged checkpoint'); True and 1.5, which nnU-Net reads as 1, are refused
    without claiming nnU-Net refuses them."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from lnq_napari.model.nnunet_labels import node_outputs, same_as_export

    if nnunet_reads:
        LabelManager(labels, None)
    else:
        with pytest.raises(ValueError, match="invalid literal for int"):
            LabelManager(labels, None)
    with pytest.raises(LNQError) as caught:
        node_outputs({"labels": labels}, "F")
    message = str(caught.value)
    assert "lnq-napari needs whole-number label values" in message and "nnU-Net refuses" not in message
    assert ("nnU-Net reads label values with int()" in message) is not nnunet_reads
    assert message.endswith("nnUNetv2_train wrote") and "\n" not in message
    assert nnunet_reads or not same_as_export({"labels": labels})


@pytest.mark.parametrize("labels, message", [
    ({"background": 0, "vessel": 1}, r"no lymph-node label .*\(labels \{'background': 0, 'vessel': 1\}\); "
                                     r"name each node label lymph_node_<station or number> \(e\.g\. "),
    ({"background": 0, "nodule": 1, "station_4R": 2},  # a lung nodule; a station atlas's region
     r"no lymph-node label .*\(labels \{'background': 0, 'nodule': 1, 'station_4R': 2\}\)"),
    ({"background": 0, "lymph_node": 1, "LN_metastatic": 2},  # was lymph_node alone, without a word
     r"labels naming lymph nodes that lnq-napari cannot read as nodes or not: LN_metastatic \(beside the "
     r"node labels lymph_node, whose union"),
])
def test_labels_naming_no_node_label_are_one_line(nnunet_model, tmp_path, capsys, labels, message):
    folder = _relabelled(nnunet_model[1], tmp_path / "m", labels)
    with pytest.raises(LNQError, match=message):
        NnUNetPredictor(folder, device="cpu")
    ct = sorted(nnunet_model[0].glob("*-ct.nrrd"))[0]
    assert main(["predict", str(ct), "-o", str(tmp_path / "out"), "--model", f"nnunet:{folder}"]) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


STATIONS = {"background": 0, "lymph_node_4R": 1, "aorta": 2, "lymph_node_7": 3}
#: Regions as nnU-Net lays them out, big to small (the mediastinum's label 2 written first, then the nodes')
REGIONS = {"background": 0, "mediastinum": [1, 2, 3], "lymph_node_4R": [1], "lymph_node_7": [3]}


@pytest.mark.parametrize("labels, extra, channels", [
    (STATIONS, {}, (1, 3)),
    ({"background": 0, "LN_station_2R": 1, "LN station 4L": 2, "ignore": 3}, {}, (1, 2)),
    ({"background": 0, "node_1": 1, "nodule": 2, "node_2": 3}, {}, (1, 3)),
    ({"background": 0, "lymph_node": 1, "lymph_node_4R": 2}, {}, (1, 2)),
    ({"background": 0, "node": 1, "LN": 2}, {}, (1, 2)),
    (REGIONS, {"regions_class_order": [2, 1, 3]}, (1, 2)),
])
def test_nodes_split_by_station_are_the_union_of_the_node_labels(labels, extra, channels):
    """Nodes labelled by station (``lymph_node_4R``, ``LN_station_2R``) or number (``node_1``), with the
    nodes of no station (``lymph_node``) or beside other organs, were refused as having no (or several)
    node labels, and ``lymph_node`` beside ``lymph_node_4R`` took the former alone (the 4R nodes as not
    nodes): every label named as nodes is one, never ``nodule`` (a lung nodule); regions by their sigmoid
    channel. None keeps its output layer in a fine-tune (its labels are not the export's)."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from lnq_napari.model.nnunet_labels import node_outputs, same_as_export

    outputs = node_outputs({"labels": labels, **extra}, "F")
    assert outputs.channels == channels and outputs.regions is bool(extra)
    manager = LabelManager(labels, extra.get("regions_class_order"))
    assert manager.num_segmentation_heads > max(channels) and not same_as_export({"labels": labels, **extra})


def _mask_differs_at_ties(pred, expected: np.ndarray, prob: np.ndarray) -> None:
    differ = pred.mask.array.astype(bool) != expected
    assert np.all(np.abs(prob[differ] - 0.5) < 1e-3)


@pytest.mark.parametrize("labels, extra", [
    (STATIONS, {}),
    (REGIONS, {"regions_class_order": [2, 1, 3]}),
])
def test_a_model_of_nodes_by_station_predicts_their_union(nnunet_model, odd_grid_ct, tmp_path, labels, extra):
    """Softmax: the node probability is the node labels' summed (any node), the mask nnU-Net's own
    segmentation with the node labels merged, or that sum cut at a threshold when one is asked (which then
    keys the figures apart from argmax's); regions: the voxel-wise maximum of the node regions' sigmoids
    (their union), where nnU-Net's own segmentation has a node label."""
    from lnq_napari.model.checkpoint import figures_key

    folder = _relabelled(nnunet_model[1], tmp_path / "m", labels, **extra)
    predictor = NnUNetPredictor(folder, device="cpu", mirroring=False)
    ct = odd_grid_ct
    seg, own = predictor._nnunet.predict_single_npy_array(
        np.asarray(ct.array, dtype=np.float32)[None], {"spacing": list(ct.spacing_zyx)}, None, None, True)
    pred = predictor.predict(ct)
    if extra:  # sigmoids of the regions mediastinum, lymph_node_4R, lymph_node_7
        union = np.maximum(own[1], own[2])
        np.testing.assert_allclose(pred.probabilities.array, union, atol=1e-6)
        _mask_differs_at_ties(pred, np.isin(seg, (1, 3)), union)
        return
    union = own[1] + own[3]
    np.testing.assert_allclose(pred.probabilities.array, np.clip(union, 0, 1), atol=1e-6)
    merged = np.isin(seg, (1, 3))
    assert merged.any() and np.array_equal(pred.mask.array.astype(bool), merged)
    cut = NnUNetPredictor(folder, device="cpu", mirroring=False, inference={"threshold": 0.5}).predict(ct)
    _mask_differs_at_ties(cut, union > 0.5, union)
    assert figures_key(f"nnunet:{folder}?mirroring=off&threshold=0.5") != \
        figures_key(f"nnunet:{folder}?mirroring=off")


@pytest.mark.parametrize("labels", [{"background": 0, "ignore": 1, "lymph_node": 2},
                                    {"background": 0, "lymph_node": 1, "nodes_and_more": [1, 2]}])
def test_labels_nnunet_asserts_on_are_one_line(nnunet_model, tmp_path, labels):
    """An ignore label below another, regions without regions_class_order: nnU-Net's loader asserts, which
    came out as a traceback; refused before loading."""
    import json

    folder = _copy(nnunet_model[1], tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps(meta | {"labels": labels}))
    with pytest.raises(LNQError, match=r"ignore label that is not the highest|no regions_class_order of 2"):
        NnUNetPredictor(folder, device="cpu")


@pytest.mark.parametrize("labels", [{"background": 0, "lymph_node": 5},
                                    {"background": 0, "vessel": 2, "lymph_node": 3, "ignore": 4}])
def test_label_values_with_gaps_are_one_line(nnunet_model, tmp_path, labels):
    """Label values with a gap (a hand-edited dataset.json): the node's value is no output of the model,
    which passed the checks and failed at prediction with an IndexError traceback; refused before loading."""
    import json

    folder = _copy(nnunet_model[1], tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps(meta | {"labels": labels}))
    with pytest.raises(LNQError, match=r"label values \[0(, \d)+\] that are not 0, 1, 2, ... without gaps "
                                       r".*nnUNetv2_train wrote$"):
        NnUNetPredictor(folder, device="cpu")


@pytest.mark.parametrize("reader, ending", [("NibabelIOWithReorient", ".nii.gz"),
                                            ("SimpleITKIOWithReorient", ".nrrd")])
def test_a_model_trained_on_images_turned_to_ras_is_given_the_ct_turned(nnunet_model, odd_grid_ct, tmp_path,
                                                                       reader, ending):
    """A dataset.json naming one of nnU-Net's reorienting readers: the model saw every image turned to
    RAS, so it is given the CT turned so (it was given the CT's own voxel order: flipped anatomy) and its
    output is turned back: nnU-Net's own reader and predictor on the same file agree, turned alike, also on
    a grid turned 45 degrees where nibabel's and SimpleITK's turns differ (each reader's own is followed)."""
    import json

    from nibabel.orientations import axcodes2ornt, io_orientation
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    io_class = recursive_find_reader_writer_by_name(reader)
    folder = _copy(nnunet_model[1], tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    meta.update(overwrite_image_reader_writer=reader, file_ending=ending)
    (folder / "dataset.json").write_text(json.dumps(meta))
    predictor = NnUNetPredictor(folder, device="cpu", mirroring=False)

    odd = odd_grid_ct  # its x axis is flipped: RAS turns its y axis; swapped: x and z swapped besides
    swapped = Volume(odd.array, odd.spacing, odd.origin, (0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0, 0.0))
    r = float(np.sqrt(0.5))  # 45 degrees, x and z swapped: a tie nibabel and SimpleITK break differently
    tilted = Volume(odd.array, odd.spacing, odd.origin, (0.0, r, -r, 0.0, r, r, 1.0, 0.0, 0.0))
    for ct in (odd, swapped, tilted):
        path = write_volume(tmp_path / f"ct_0000{ending}", ct)
        data, props = io_class().read_images([str(path)])
        _, own = predictor._nnunet.predict_single_npy_array(data, props, None, None, True)
        ct = read_volume(path)
        pred = predictor.predict(ct)
        assert pred.probabilities.same_grid(ct)
        ours, _ = io_class().read_images([str(write_volume(tmp_path / f"prob_0000{ending}",
                                                           pred.probabilities))])
        assert ours[0].shape == own[1].shape
        np.testing.assert_allclose(ours[0], own[1], atol=1e-5)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ ct.direction_matrix
    import SimpleITK as sitk

    code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(ct.direction)
    assert not np.array_equal(io_orientation(affine), axcodes2ornt(tuple(code)))  # the tie is exercised


def _warned_predicting(predictor, image, folder: Path) -> list[str]:
    """The warnings ``predictor`` gives on the NIfTI ``image`` saved in ``folder`` (its reading's aside)."""
    import warnings

    import nibabel as nib

    nib.save(image, folder / "ct.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ct = read_volume(folder / "ct.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict(ct)
    return [str(w.message) for w in caught]


def _nifti_predictor(nnunet_model, tmp_path, reader: str) -> NnUNetPredictor:
    """The tiny model's copy trained, as its dataset.json says, on NIfTI read by ``reader``."""
    import json

    folder = _copy(nnunet_model[1], tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    meta.update(overwrite_image_reader_writer=reader, file_ending=".nii.gz")
    (folder / "dataset.json").write_text(json.dumps(meta))
    return NnUNetPredictor(folder, device="cpu", mirroring=False)


def test_a_nifti_without_qform_or_sform_warns_for_a_nibabel_reorienting_model(nnunet_model, odd_grid_ct,
                                                                             tmp_path):
    """NIfTI with qform_code = sform_code = 0: ITK (lnq-napari's reader) takes its axes as stored, nibabel
    (NibabelIOWithReorient) mirrors x, so such a model's turn differs from nnUNetv2_predict's by an x
    flip; it is said in one warning (was silent). A file with a qform predicts without it."""
    import nibabel as nib

    predictor = _nifti_predictor(nnunet_model, tmp_path, "NibabelIOWithReorient")
    array = np.asarray(odd_grid_ct.array).transpose(2, 1, 0)
    for codes, said in (((0, 0), True), ((1, 0), False)):
        image = nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.5, 1.0]))
        image.set_qform(image.affine, code=codes[0])
        image.set_sform(image.affine, code=codes[1])
        said_now = _warned_predicting(predictor, image, tmp_path)
        lines = [w for w in said_now if "neither a qform nor an sform" in w]
        assert len(lines) == int(said) and all("\n" not in line for line in lines), codes


def test_a_nifti_whose_sform_turns_otherwise_than_its_qform_warns_for_a_simpleitk_reorienting_model(
        nnunet_model, odd_grid_ct, tmp_path):
    """sform_code 2 with a qform of other axes: lnq-napari reads the sform, ITK (SimpleITKIOWithReorient)
    the qform, so the model's turn differs from nnUNetv2_predict's; said in one warning (was silent). With
    sform_code 1 ITK takes the sform too: no warning."""
    import nibabel as nib

    predictor = _nifti_predictor(nnunet_model, tmp_path, "SimpleITKIOWithReorient")
    array = np.asarray(odd_grid_ct.array).transpose(2, 1, 0)
    swapped = np.array([[0, 1.5, 0, 0], [1.5, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1.0]])
    for code, said in ((2, True), (1, False)):
        image = nib.Nifti1Image(array, swapped)
        image.set_qform(np.diag([1.5, 1.5, 2.5, 1.0]), code=1)
        image.set_sform(swapped, code=code)
        said_now = _warned_predicting(predictor, image, tmp_path)
        lines = [w for w in said_now if "sform and a qform of other axes" in w]
        assert len(lines) == int(said) and all("\n" not in line for line in lines), code


def test_a_cascade_second_stage_is_refused_in_one_line(nnunet_model, tmp_path):
    """Its network takes the first stage's segmentation besides the CT: it failed on the first tile with
    a traceback from inside the network."""
    folder = _relabelled(nnunet_model[1], tmp_path / "m", {"background": 0, "lymph_node": 1, "ignore": 2},
                         configuration="3d_cascade_fullres")
    with pytest.raises(LNQError, match="second stage of a cascade .*give the 3d_lowres model folder"):
        NnUNetPredictor(folder, device="cpu")


def test_find_nodes_and_cli_predict_with_an_nnunet_model(nnunet_model, tmp_path, capsys):
    data, folder = nnunet_model
    ct_path = sorted(data.glob("*-ct.nrrd"))[0]
    ct = read_volume(ct_path)
    result = api.find_nodes(ct, f"nnunet:{folder}?mirroring=off", device="cpu")
    assert result.model_version.startswith("nnunet:") and result.mask.shape == ct.shape
    assert len(result.nodes) == int(result.mask.array.max())
    assert main(["predict", str(ct_path), "-o", str(tmp_path), "--model", f"nnunet:{folder}?mirroring=off",
                 "--device", "cpu"]) == 0
    seg = read_volume(next(tmp_path.glob("*-seg.nrrd")))
    assert seg.same_grid(ct)
    np.testing.assert_array_equal(seg.array > 0, result.mask.array > 0)
    assert main(["predict", str(ct_path), "-o", str(tmp_path), "--model", f"nnunet:{tmp_path}"]) == 2
    assert "not an nnU-Net trained model folder" in capsys.readouterr().err


def test_a_workspace_made_and_activated_with_an_nnunet_string_with_options_predicts(nnunet_model, tmp_path):
    """``nnunet:<folder>?folds=0`` was taken for the folder ``<folder>?folds=0`` and refused; then the
    folder was adopted without its options, so the workspace predicted with mirroring and nnU-Net's argmax
    where the user asked for neither. The workspace predicts its cases with the options given."""
    from lnq_napari.nnunet.select import load_predictor

    data, folder = nnunet_model
    given = f"nnunet:{folder}?folds=0&mirroring=off&threshold=0.7"
    ws = api.init_workspace(tmp_path / "ws", data, given)
    assert ws.active_model()["id"] == "m001" and ws.active_model()["kind"] == "nnunet"
    predictor = load_predictor(ws.root, device="cpu")  # what `predict --model <workspace>` loads
    assert predictor.path == ws.model_path("m001") and predictor.config.inference.threshold == 0.7
    assert predictor._nnunet.use_mirroring is False
    rows = api.next_cases(ws, n=1, strategy="random")  # predicts a case with m001, the nnU-Net copy
    stored = ws.latest_version(rows[0].case, "prediction")
    assert stored["model_version"] == "m001"
    same = load_predictor(given, device="cpu").predict(ws.read_ct(rows[0].case)).mask
    np.testing.assert_array_equal(ws.read_labels(rows[0].case, stored["version"]).array > 0, same.array > 0)
    api.activate_model(ws, "bundled")
    assert api.activate_model(ws, f"nnunet:{ws.model_path('m001')}").version == "m001"
    assert api.activate_model(ws, given).version == "m001"  # found, not copied
    assert api.activate_model(ws, f"nnunet:{folder}?mirroring=off").version == "m002"  # other options
    assert [m.version for m in api.list_models(ws)] == ["bundled", "m001", "m002"]


def test_cancelled_training_stops_the_subprocess(nnunet_model, tmp_path):
    from lnq_napari.nnunet.train import train_fold

    root = nnunet_model[1].parents[2]
    shutil.copytree(root / "nnUNet_preprocessed", tmp_path / "pre")  # the session's folders stay as they are
    (tmp_path / "results").mkdir()
    with pytest.raises(Cancelled):
        train_fold(root / "nnUNet_raw" / "Dataset601_LNQ", tmp_path / "pre", tmp_path / "results",
                   cancel=lambda: True)
    assert not any((tmp_path / "results").iterdir())
