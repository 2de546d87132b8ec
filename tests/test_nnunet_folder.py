"""The nnU-Net model string ``nnunet:<folder>[?options]``: one parser (folder and typed options) for every
place that takes a model; no nnunetv2 needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lnq_napari.errors import LNQError
from lnq_napari.model.config import FinetuneConfig, parse_switch
from lnq_napari.model.nnunet_folder import (
    NnunetModelSpec,
    NnunetOptions,
    model_spec,
    open_model,
    parse_model_string,
    parse_options,
)


def test_a_model_string_gives_its_folder_and_typed_options():
    spec = parse_model_string("nnunet:/r/m?folds=0,1&tile_step=0.75&mirroring=off"
                              "&checkpoint=checkpoint_best.pth&min_component_mm3=300&max_mean_hu=none")
    assert spec == NnunetModelSpec(Path("/r/m"), NnunetOptions(
        folds=("0", "1"), checkpoint="checkpoint_best.pth", tile_step=0.75, mirroring=False,
        inference={"min_component_mm3": 300.0, "max_mean_hu": None}))
    assert spec.options.kwargs() == {"folds": ("0", "1"), "checkpoint": "checkpoint_best.pth",
                                     "tile_step": 0.75, "mirroring": False,
                                     "inference": {"min_component_mm3": 300.0, "max_mean_hu": None}}
    assert parse_model_string(Path("nnunet:~/m")).folder == Path.home() / "m"
    assert parse_model_string("nnunet:/m") == NnunetModelSpec(Path("/m")) and NnunetOptions().kwargs() == {}
    assert parse_model_string("/m?folds=0") is None  # no prefix: a plain path, '?' and all
    assert model_spec("/m?folds=0") == NnunetModelSpec(Path("/m?folds=0"))
    assert model_spec("nnunet:/m?folds=0").folder == Path("/m")


@pytest.mark.parametrize(("text", "message"), [
    ("nnunet:/m?speed=fast", "unknown nnU-Net model option 'speed'"),
    ("nnunet:/m?tile_step=big", "tile_step='big' in nnunet:/m.* is not a number"),
    ("nnunet:/m?mirroring=maybe", "mirroring='maybe' in .* must be on or off"),
    ("nnunet:/m?threshold=2", "threshold=2 in .* lies outside 0 to 1"),
    ("nnunet:/m?tile_step=0", "tile_step=0 in .* must be above 0 and at most 1"),
    ("nnunet:/m?min_peak=x", "min_peak='x' in .* is not a number"),
    ("nnunet:", "names no folder; give nnunet:<trained model folder>"),
    ("nnunet:/m?checkpoint=", "checkpoint='' in nnunet:/m.* names no checkpoint file"),
    ("nnunet:/m?folds=0&checkpoint= ", "names no checkpoint file"),
    ("nnunet: ?folds=0", "names no folder"),
])
def test_bad_model_strings_are_refused(text, message):
    with pytest.raises(LNQError, match=message):
        parse_model_string(text)


def test_none_turns_each_post_processing_setting_off():
    """``none`` (``off``, nothing) turns a setting off, as the README says: ``threshold=none`` is nnU-Net's
    argmax (no threshold), the size and peak floors 0, the HU and margin limits None. threshold,
    min_component_mm3 and min_peak were kept as None, which post-processing took to float() (TypeError)."""
    import numpy as np

    from lnq_napari.inference import postprocess_as
    from lnq_napari.io.volume import Volume

    for value in ("none", "off", ""):
        options = parse_options(f"threshold=0.4&threshold={value}&min_component_mm3={value}"
                                f"&min_peak={value}&max_mean_hu={value}&mediastinum_margin_mm={value}")
        assert options.argmax and options.inference == {"min_component_mm3": 0.0, "min_peak": 0.0,
                                                        "max_mean_hu": None, "mediastinum_margin_mm": None}
        _, _, inference = options.predicting()
        prob = np.zeros((4, 5, 6), np.float32)
        prob[1:3, 1:3, 1:3] = 0.9
        mask = postprocess_as(inference, prob, Volume(np.zeros((4, 5, 6), np.int16)))
        assert np.array_equal(np.asarray(mask, bool), prob >= 0.5)
    assert parse_options("threshold=none") == parse_options("")


def test_on_and_off_read_alike_in_model_strings_and_finetune_settings():
    for text, value in (("on", True), ("YES", True), ("1", True), ("off", False), ("no", False),
                        ("False", False), ("maybe", None)):
        assert parse_switch(text) is value
        if value is not None:
            assert parse_model_string(f"nnunet:/m?mirroring={text}").options.mirroring is value
            assert FinetuneConfig().with_settings([f"interpolate={text}"]).interpolate is value


def test_options_written_back_read_the_same_and_a_fine_tune_keeps_the_settings_only():
    """What a workspace keeps of a model string (:meth:`NnunetOptions.query`) reads back to the same
    options; ``settings()`` drops the choice of weights (folds, checkpoint)."""
    text = ("nnunet:/r/m?mirroring=off&folds=0,all&checkpoint=checkpoint_best.pth&tile_step=0.75"
            "&max_mean_hu=none&min_component_mm3=300")
    spec = parse_model_string(text)
    assert spec.options.query() == ("folds=0,all&checkpoint=checkpoint_best.pth&tile_step=0.75&mirroring=off"
                                    "&max_mean_hu=none&min_component_mm3=300.0")
    assert parse_model_string(str(spec)) == spec and str(NnunetModelSpec(Path("/r/m"))) == "nnunet:/r/m"
    assert spec.options.settings() == NnunetOptions(tile_step=0.75, mirroring=False, inference={
        "max_mean_hu": None, "min_component_mm3": 300.0})
    assert NnunetOptions().query() == "" and parse_options("") == NnunetOptions()


def test_figures_are_kept_under_the_weights_and_settings_a_model_string_chooses(tmp_path):
    """A model string's options choose what its figures are kept under: the same as the folder's without
    options when they set nnU-Net's defaults, another key for other settings or folds."""
    import json

    from lnq_napari.model.checkpoint import figures_key

    folder = tmp_path / "m"
    for fold in ("0", "1"):
        (folder / f"fold_{fold}").mkdir(parents=True)
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(f"weights {fold}".encode())
    for name in ("plans.json", "dataset.json"):
        (folder / name).write_text(json.dumps({}))
    plain = figures_key(folder)
    assert plain is not None and figures_key(f"nnunet:{folder}") == plain
    assert figures_key(f"nnunet:{folder}?tile_step=0.5&mirroring=on&threshold=0.5") == plain
    others = [figures_key(f"nnunet:{folder}?{q}") for q in ("mirroring=off", "tile_step=0.75", "folds=1",
                                                             "min_component_mm3=300")]
    assert None not in others and len({plain, *others}) == 5
    assert figures_key(f"nnunet:{folder}?folds=4") is None  # a fold it lacks: nothing to key
    # a folder moved or deleted, given as a spec (a registered nnU-Net version) or a model string: no key
    # (a TypeError traceback in the fine-tune that judged against it)
    from lnq_napari.model.nnunet_folder import NnunetModelSpec, parse_options

    gone = tmp_path / "gone"
    assert figures_key(NnunetModelSpec(gone, parse_options("mirroring=off"))) is None
    assert figures_key(NnunetModelSpec(gone)) is None and figures_key(f"nnunet:{gone}?mirroring=off") is None


def test_argmax_and_an_explicit_threshold_are_kept_apart_where_they_differ(tmp_path):
    """A model of more than two labels: nnU-Net's argmax (no threshold) and ``?threshold=0.5`` give other
    masks, so their figures are kept under other keys (they shared one): argmax keeps the key its figures
    were cached under, the 0.5 threshold gets a fresh one (other thresholds keep theirs); a two-label or
    region model's keys are unchanged (its argmax is the node probability at 0.5)."""
    import dataclasses
    import hashlib
    import json

    from lnq_napari.model.checkpoint import figures_key
    from lnq_napari.model.nnunet_folder import NNUNET_INFERENCE

    folder = tmp_path / "m"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (folder / "plans.json").write_text(json.dumps({}))
    for labels, apart in (({"background": 0, "lymph_node": 1, "ignore": 2}, False),
                          ({"background": 0, "vessel": 1, "lymph_node": 2}, True),
                          ({"background": 0, "lymph_node": 1, "nodes_and_more": [1, 2]}, False)):
        (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
        plain, thresholded = figures_key(folder), figures_key(f"nnunet:{folder}?threshold=0.5")
        assert (plain != thresholded) is apart, labels
        settings = json.dumps([0.5, True, dataclasses.asdict(NNUNET_INFERENCE)], sort_keys=True)
        before = hashlib.sha256(f"{model_spec(folder).open().content}|{settings}".encode()).hexdigest()[:16]
        assert plain == before and (thresholded == before) is not apart  # argmax caches keep their key
        other = json.dumps([0.5, True, dataclasses.asdict(NNUNET_INFERENCE) | {"threshold": 0.4}],
                           sort_keys=True)
        other = hashlib.sha256(f"{model_spec(folder).open().content}|{other}".encode()).hexdigest()[:16]
        assert figures_key(f"nnunet:{folder}?threshold=0.4") == other  # and so do other thresholds
    # several node labels (``lymph_node`` beside ``lymph_node_4R`` predicted ``lymph_node`` alone, now their
    # union): figures cached for the one label are not read for the union
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lymph_node": 1,
                                                                "lymph_node_4R": 2}}))
    settings = json.dumps([0.5, True, dataclasses.asdict(NNUNET_INFERENCE)], sort_keys=True)
    before = hashlib.sha256(f"{model_spec(folder).open().content}|{settings}".encode()).hexdigest()[:16]
    assert figures_key(folder) not in (None, before)


def test_a_folder_with_a_question_mark_reads_back_from_its_model_string():
    """Options follow the last '?'; one followed by a '/' lies in the folder (a workspace under
    ``review?2/``), and a folder whose own name holds one is written with a '?' after it."""
    for folder in ("/r?2/ws/m", "/r?2/m?x", "/r/m"):
        for options in (NnunetOptions(), NnunetOptions(folds=("0",), mirroring=False)):
            spec = NnunetModelSpec(Path(folder), options)
            assert parse_model_string(str(spec)) == spec == model_spec(spec)
    assert parse_model_string("nnunet:/r?2/ws/m") == NnunetModelSpec(Path("/r?2/ws/m"))
    with pytest.raises(LNQError, match="names no checkpoint file"):
        parse_options("checkpoint=fold_0/checkpoint_final.pth")  # a query holds no '/'


def test_options_are_compared_as_they_take_effect(tmp_path):
    """:func:`effective_options`: nnU-Net's defaults left out, folds in the folder's order and none when
    they are every fold; the checkpoint's folds decide which are every fold."""
    import json

    from lnq_napari.model.nnunet_folder import NO_OPTIONS, effective_options

    folder = tmp_path / "m"
    for fold, checkpoints in (("0", ("checkpoint_final.pth", "checkpoint_best.pth")),
                              ("1", ("checkpoint_final.pth",)), ("all", ("checkpoint_final.pth",))):
        for name in checkpoints:
            (folder / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
            (folder / f"fold_{fold}" / name).write_bytes(b"w")

    def effective(query: str) -> str:
        return effective_options(folder, parse_options(query)).query()

    for query in ("", "folds=", "folds=1,0", "folds=0,1,1", "mirroring=on", "tile_step=0.5",
                  "checkpoint=checkpoint_final.pth", "max_mean_hu=none&min_peak=0"):
        assert effective(query) == "", query
    # two labels (or regions): a threshold of 0.5 is the argmax, one model however it is spelled
    assert effective("threshold=0.5&max_mean_hu=none&min_peak=0") == ""
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lymph_node": 1}}))
    assert effective("threshold=0.5") == ""
    # more labels: a threshold replaces nnU-Net's argmax even at 0.5 (a workspace adopting it got argmax)
    three = {"background": 0, "vessel": 1, "lymph_node": 2}
    (folder / "dataset.json").write_text(json.dumps({"labels": three}))
    assert effective("threshold=0.5&max_mean_hu=none&min_peak=0") == "threshold=0.5"
    assert effective("folds=1,all,0") == "folds=0,1,all" and effective("folds=all") == "folds=all"
    assert effective("folds=1&mirroring=off&threshold=0.7") == "folds=1&mirroring=off&threshold=0.7"
    assert effective("checkpoint=checkpoint_best.pth&folds=0") == "checkpoint=checkpoint_best.pth"
    assert effective_options(tmp_path / "nowhere", NO_OPTIONS) == NO_OPTIONS
    with pytest.raises(LNQError, match=r"lacks fold\(s\) 1 \(checkpoint_best.pth\)"):
        effective("checkpoint=checkpoint_best.pth&folds=1")


def test_a_folder_above_or_below_a_model_folder_names_the_model_folder(tmp_path):
    """The dataset folder, nnUNet_results or a fold_<k> folder given for the model folder: the error names
    the folder to give (it said only nnU-Net's layout)."""
    import json

    model = tmp_path / "nnUNet_results" / "Dataset501_LNQ" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_2").mkdir(parents=True)
    (model / "fold_2" / "checkpoint_final.pth").write_bytes(b"w")
    for name in ("plans.json", "dataset.json"):
        (model / name).write_text(json.dumps({}))
    for given in (model.parent, model.parent.parent):
        with pytest.raises(LNQError, match=f"give a model folder below it: {re.escape(str(model))}$"):
            open_model(f"nnunet:{given}")
    with pytest.raises(LNQError, match=rf"it is a fold of the model folder {re.escape(str(model))}: give "
                                       r"that folder \(add \?folds=2 for this fold alone\)"):
        open_model(model / "fold_2")
    with pytest.raises(LNQError, match="give nnUNet_results/DatasetNNN_X/<trainer>__<plans>__<config"):
        open_model(tmp_path)
