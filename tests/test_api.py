"""lnq_napari.api from a notebook: what a researcher passes (SimpleITK images, dicts, wrong types) and
what the returned objects say when shown."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume

GRID = dict(spacing=(0.8, 0.8, 2.0), origin=(-10.0, 5.0, 30.0), direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))


def _labels() -> Volume:
    labels = Volume(np.zeros((6, 20, 20), np.uint8), **GRID)
    labels.array[1:4, 2:9, 2:9] = 1
    labels.array[2:5, 12:16, 12:18] = 1
    return labels


def test_a_simpleitk_image_is_taken_as_a_volume(tmp_path):
    """measure, evaluate and save_labels take a SimpleITK image (grid kept) as they take its Volume."""
    labels = _labels()
    image = labels.to_sitk()
    rows, summary = api.measure(image)
    assert rows == api.measure(labels)[0] and summary.n_nodes == 2
    scored = api.evaluate(image, image)
    assert scored.cases[0].scores.dice == pytest.approx(1.0)
    saved = api.save_labels(image, "c1", folder=tmp_path / "store")
    assert saved.version == "v001"


def test_a_2d_simpleitk_image_is_one_lnqerror():
    import SimpleITK as sitk

    with pytest.raises(LNQError, match=r"^the labels: a 2D image; a CT or label volume must be 3D \(z, y, "
                                       r"x\)$"):
        api.measure(sitk.Image(8, 8, sitk.sitkUInt8))


def test_a_vector_image_given_as_labels_is_named_as_labels_not_as_a_ct():
    """A SimpleITK vector image as labels was told "a CT volume must be scalar: use the CT itself"."""
    import SimpleITK as sitk

    vector = sitk.Image([20, 20, 6], sitk.sitkVectorUInt8, 3)
    with pytest.raises(LNQError, match=r"^the labels: an image of 3 values per voxel \(a colour or vector "
                                       r"image\); a label map holds one value per voxel") as said:
        api.measure(vector)
    assert "CT" not in str(said.value)
    with pytest.raises(LNQError, match="the ground truth: an image of 3 values per voxel"):
        api.evaluate(_labels(), vector)
    ct = sitk.Image([20, 20, 6], sitk.sitkVectorInt16, 3)
    with pytest.raises(LNQError, match="the CT has 3 values per voxel .* a CT volume must be scalar"):
        api.measure(_labels(), ct)


def test_evaluate_names_the_case_of_the_file_beside_a_volume(tmp_path):
    """A Volume scored against a file is that file's case, as ``evaluate --pred F --gt G`` names it."""
    truth = write_volume(tmp_path / "lnq2023-val-0007-full.nrrd", _labels())
    assert api.evaluate(_labels(), truth).cases[0].case == "lnq2023-val-0007"
    assert api.evaluate(truth, _labels()).cases[0].case == "lnq2023-val-0007"
    assert api.evaluate(_labels(), _labels()).cases[0].case == "case"


def test_a_workspace_that_is_no_path_is_one_lnqerror():
    with pytest.raises(LNQError, match=r"the workspace must be a folder path or an open Workspace \(got "
                                       r"builtins.int\)"):
        api.list_models(3)


def test_finetune_takes_a_dict_of_settings_and_names_unknown_ones(tmp_path):
    """A dict of settings is checked as a FinetuneConfig (it reached the trainer as an AttributeError)."""
    with pytest.raises(LNQError, match="unknown fine-tune setting iteration; use one of iterations, lr"):
        api.finetune(tmp_path / "ws", {"iteration": 5})
    with pytest.raises(LNQError, match="bad fine-tune setting: iterations must be >= 1"):
        api.finetune(tmp_path / "ws", {"iterations": 0})
    with pytest.raises(LNQError, match=r"FinetuneConfig or a dict of its settings \(got builtins.str"):
        api.finetune(tmp_path / "ws", "iterations=5")
    with pytest.raises(LNQError, match="does not exist"):  # the dict passed: on to the workspace
        api.finetune(tmp_path / "ws", {"iterations": 5}, iterations=3)


def test_evaluation_workspace_and_models_show_their_figures(tmp_path):
    """What a notebook cell shows: the summary line evaluate prints, the workspace's folder, cases and
    model (was ``<... Workspace object at 0x...>``), each model version in one line."""
    truth = write_volume(tmp_path / "c1-full.nrrd", _labels())
    shown = repr(api.evaluate(_labels(), truth))
    assert shown.startswith("Evaluation(cases 1: Dice mean 1 median 1; ASSD mean ") and shown.endswith(
        "mm; node recall nan; false-positive nodes per case 0)")  # no node >= 10 mm: no recall
    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((6, 20, 20), np.int16)))
    ws = api.init_workspace(tmp_path / "ws", data)
    assert repr(ws) == f"Workspace({str(ws.root)!r}, 1 case, active model bundled)"
    assert repr(api.list_models(ws)) == "[ModelSummary(bundled, active)]"


def test_a_node_result_names_its_model_shortly():
    """The full version of a fine-tuned model (~160 characters) filled the NodeResult's line."""
    version = "lnq-unet-20261127-1053-356336d7+ft-20261127-1102-356336d7+ft-20261202-1521-ae70d27d"
    mask = _labels().with_array(np.zeros((6, 20, 20), np.int32))
    shown = repr(api.NodeResult(mask, mask, version, [], []))
    assert "model lnq-unet 2026-11-27 10:53 +2 ft, on Volume(" in shown and version not in shown


def test_evaluate_warns_once_when_the_truth_is_a_partial_training_label(tmp_path):
    """A training case's -seg marks only some nodes: scored against it, a prediction that found every node
    read as Dice 0.25 with 7 false nodes, and nothing said why. Complete labels give no warning."""
    pred = write_volume(tmp_path / "pred" / "lnq2023-train-0001-seg.nrrd", _labels())
    truth = _labels()
    truth.array[2:5, 12:16, 12:18] = 0  # the training label marks one node of two
    for case in ("0001", "0002"):
        write_volume(tmp_path / "gt" / f"lnq2023-train-{case}-seg.nrrd", truth)
    write_volume(tmp_path / "pred" / "lnq2023-train-0002-seg.nrrd", _labels())
    with pytest.warns(UserWarning, match="the ground truth lnq2023-train-0001-seg.nrrd is an LNQ training "
                                         "label, which marks only some nodes: a node found that it leaves"):
        api.evaluate(pred, tmp_path / "gt" / "lnq2023-train-0001-seg.nrrd")
    with pytest.warns(UserWarning) as said:
        api.evaluate(tmp_path / "pred", tmp_path / "gt")
    partial = [str(w.message) for w in said if "LNQ training label" in str(w.message)]
    assert len(partial) == 1
    assert partial[0].startswith("the 2 ground-truth files (lnq2023-train-0001-seg.nrrd, ...) are")

    for name in ("lnq2023-train-0001-full.nrrd", "lnq2023-val-0001-seg.nrrd"):  # complete labels
        complete = write_volume(tmp_path / "complete" / name, _labels())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            api.evaluate(pred, complete)


def test_a_find_nodes_result_is_taken_as_its_labels(tmp_path):
    """measure and save_labels take a find_nodes result (as evaluate did) as its mask, saved with its model;
    predict given a Volume says what to use instead (was pathlib's TypeError)."""
    labels = _labels()
    ids = labels.with_array(labels.array.astype(np.int32))
    found = api.NodeResult(ids, labels.with_array(np.zeros(labels.shape, np.float32)), "m007", [], [])
    assert api.measure(found)[0] == api.measure(labels)[0]
    saved = api.save_labels(found, "c1", folder=tmp_path / "store")
    from lnq_napari.workspace import LabelStore

    assert LabelStore(tmp_path / "store", "c1").info(saved.version)["model_version"] == "m007"
    with pytest.raises(LNQError, match=r"predict reads CT files or folders and writes label files \(got "
                                       r"lnq_napari.Volume\); for a CT in memory use find_nodes\(ct\)"):
        api.predict(labels, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_compare_takes_simpleitk_cts():
    """``api.compare(sitk_ct, sitk_ct, seg, seg)`` raised a raw TypeError (the image read as a path)."""
    from lnq_napari.phantom import make_case

    case = make_case(3, shape=(24, 96, 96), spacing=(3.4, 3.4, 8.0))
    ct, seg = case.ct.to_sitk(), case.full.to_sitk()
    with pytest.warns(UserWarning, match="the same scan"):
        result = api.compare(ct, ct, seg, seg)
    assert result.sources == ("the labels given", "the labels given")
    assert {row.status for row in result.rows} <= {"matched"}


@pytest.mark.parametrize("pixel", ["UInt8", "UInt16", "UInt32", "UInt64"])
def test_a_simpleitk_label_map_is_taken_as_its_labels(pixel):
    """A LabelMap (BinaryImageToLabelMap's output) aborted the process in GetArrayFromImage (a Jupyter
    kernel died); now it is read as its label image, as labels and as a CT."""
    import SimpleITK as sitk

    labels = _labels()
    image = sitk.Cast(labels.to_sitk(), getattr(sitk, f"sitk{pixel}"))
    label_map = sitk.LabelImageToLabelMap(image)
    assert label_map.GetPixelID() == getattr(sitk, f"sitkLabel{pixel}")
    rows, summary = api.measure(label_map)
    assert rows == api.measure(labels)[0] and summary.n_nodes == 2
    assert np.array_equal(Volume.from_sitk(label_map).array, labels.array)
    with pytest.warns(UserWarning):  # a label image as the CT: not HU, said as for a file
        api.measure(labels, label_map)


def test_a_saved_version_of_a_training_case_is_no_partial_ground_truth(tmp_path):
    """A label store's version of a training case (a reviewer's complete correction) warned that it marks
    only some nodes."""
    saved = api.save_labels(_labels(), "lnq2023-train-0001", folder=tmp_path / "store")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api.evaluate(_labels(), saved.path).cases[0].scores.dice == pytest.approx(1.0)


def test_a_find_nodes_result_saved_as_a_prediction_is_recorded_under_the_workspace_s_model_key(tmp_path):
    """``save_labels(result, workspace=ws, source="prediction")`` recorded the model's long version, while
    the workspace stores and finds its active model's predictions by its key (``bundled-<hash>``): never
    found as the active model's, so ranking stored another. Another model's result is refused."""
    from lnq_napari.model.checkpoint import read_config

    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((6, 20, 20), np.int16)))
    ws = api.init_workspace(tmp_path / "ws", data)
    model, key = ws.prediction_model()
    labels = _labels()
    found = api.NodeResult(labels, labels.with_array(np.zeros(labels.shape, np.float32)),
                           read_config(model).version, [], [])  # the bundled model's own
    saved = api.save_labels(found, "c1", workspace=ws, source="prediction")
    assert ws.version_info("c1", saved.version)["model_version"] == key
    assert ws.preferred_version("c1", ("prediction",))["version"] == saved.version
    other = api.NodeResult(labels, found.probabilities, "lnq-unet-20250101-0900-0123abcd", [], [])
    with pytest.raises(LNQError, match="these nodes were predicted by model lnq-unet-20250101-0900-0123abcd, "
                                       f"not the workspace's active model {key}"):
        api.save_labels(other, "c1", workspace=ws, source="prediction")
    assert [v["version"] for v in ws.versions("c1")][-1] == saved.version
    corrected = api.save_labels(found, "c1", workspace=ws)  # a correction keeps the model's own version
    assert ws.version_info("c1", corrected.version)["model_version"] == found.model_version


def test_what_a_wrong_value_is_said_one_way_by_the_api_and_the_model_loader():
    """api and nnunet.select each spelt out the type of a wrong value (numpy.ndarray): one helper now."""
    from lnq_napari.errors import kind_of

    assert kind_of(np.zeros(2)) == "numpy.ndarray" and kind_of("x") == "builtins.str"
    for call in (lambda: api.list_models(3), lambda: api.load_predictor(3)):
        with pytest.raises(LNQError, match=r"\(got builtins\.int\)"):
            call()


def test_activating_a_list_models_entry_of_another_workspace_is_refused(tmp_path):
    """``activate_model(ws, entry)`` used only the entry's id: another workspace's m001 activated this
    workspace's m001, a different model."""
    from lnq_napari.model import bundled_model_path

    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((6, 20, 20), np.int16)))
    first, second = (api.init_workspace(tmp_path / name, data) for name in ("ws1", "ws2"))
    for ws in (first, second):
        ws.register_model(bundled_model_path())
    theirs = api.list_models(first)[-1]
    with pytest.raises(LNQError, match=f"the list_models entry m001 is the model at {theirs.path}, not a "
                                       "version of the workspace .*ws2; pass an entry of list_models of this "
                                       "workspace"):
        api.activate_model(second, theirs)
    assert second.active_model() is None
    assert api.activate_model(second, api.list_models(second)[-1]).active  # its own entry
    assert api.activate_model(second, api.list_models(first)[0]).version == "bundled"  # the same everywhere


def test_an_empty_simpleitk_image_is_one_lnqerror():
    """A SimpleITK image of zero voxels reached numpy's raw ValueError in the node table."""
    import SimpleITK as sitk

    with pytest.raises(LNQError, match=r"^the labels: no voxels \(shape \(5, 5, 0\)\); pass a volume"):
        api.measure(sitk.Image([0, 5, 5], sitk.sitkUInt8))
