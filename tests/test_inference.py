"""Prediction: exact CT grid (odd origin, flipped direction), {0,1} masks, sliding window, api.predict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lnq_napari.components import too_bright
from lnq_napari.errors import Cancelled, LNQError
from lnq_napari.inference import Predictor, gaussian_weights, postprocess, sliding_window, window_starts
from lnq_napari.io.volume import Volume
from lnq_napari.model import bundled_model_path
from lnq_napari.model.checkpoint import save_checkpoint
from lnq_napari.model.config import ModelConfig
from lnq_napari.model.network import build_network

torch.set_num_threads(1)

TINY = {"features": [4, 8], "strides": [[1, 2, 2]], "kernels": [[1, 3, 3], [3, 3, 3]]}
FLIP_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    net = build_network("unet3d", TINY)
    with torch.no_grad():
        net.head.bias.fill_(0.3)  # some voxels above 0.5, some below
    config = {
        "architecture": {"name": "unet3d", "kwargs": TINY},
        "preprocessing": {"target_spacing": [4.0, 4.0, 8.0]},
        "inference": {"patch_size": [8, 32, 32], "overlap": 0.25, "threshold": 0.5, "min_component_mm3": 0},
        "version": "tiny-test",
    }
    return save_checkpoint(tmp_path_factory.mktemp("models") / "tiny", net.state_dict(),
                           ModelConfig.from_dict(config))


@pytest.fixture(scope="module")
def small_ct():
    from lnq_napari.phantom import make_case

    c = make_case(7, shape=(20, 72, 72), spacing=(5.0, 5.0, 12.0))
    return Volume(c.ct.array, c.ct.spacing, (123.456, -78.9, 1001.1), FLIP_XY)


def test_window_helpers():
    assert window_starts(10, 16, 0.5) == [0]
    starts = window_starts(100, 32, 0.25)
    assert starts[0] == 0 and starts[-1] == 68
    assert all(b - a <= 24 for a, b in zip(starts, starts[1:]))
    w = gaussian_weights((4, 8, 8))
    assert w.shape == (4, 8, 8) and w.max() == pytest.approx(1.0, abs=0.05) and w.min() >= 1e-3
    image = np.zeros((5, 40, 50), np.float32)
    out = sliding_window(image, (4, 16, 16), 0.25, lambda b, d, t: np.full(b.shape, 0.7, np.float32), -2.0)
    assert out.shape == image.shape and np.allclose(out, 0.7)


def test_postprocess_removes_small_components():
    prob = np.zeros((10, 20, 20), np.float32)
    prob[2:8, 2:10, 2:10] = 0.9  # 384 voxels
    prob[5, 15, 15] = 0.9  # 1 voxel
    mask = postprocess(prob, (2.0, 1.0, 1.0), 0.5, min_component_mm3=10.0)
    assert mask.dtype == np.uint8 and mask.sum() == 384 and mask[5, 15, 15] == 0


def test_postprocess_keeps_a_calcified_node_and_drops_an_enhanced_vessel():
    """The brightness rule needs mean and median above the limit: a calcification lifts a node's mean,
    not its median; a contrast-filled vessel is bright throughout."""
    prob = np.zeros((12, 40, 40), np.float32)
    hu = np.full(prob.shape, -90, np.int16)
    prob[2:10, 4:14, 4:14] = 0.9  # node: soft tissue with a dense calcified core (mean 137 HU)
    hu[2:10, 4:14, 4:14] = 40
    hu[3:9, 6:12, 6:12] = 400
    prob[2:10, 24:34, 24:34] = 0.9  # enhanced vessel: 180 HU throughout
    hu[2:10, 24:34, 24:34] = 180
    node_hu = hu[2:10, 4:14, 4:14]
    assert node_hu.mean() > 100 > np.median(node_hu)
    mask = postprocess(prob, (1.0, 1.0, 1.0), 0.5, 10.0, hu=hu, max_mean_hu=100.0)
    assert mask[2:10, 4:14, 4:14].all() and not mask[2:10, 24:34, 24:34].any()


def test_postprocess_keeps_a_calcified_node_merged_with_a_piece_of_vessel_and_drops_bone():
    """Calcium is left out of the brightness rule: a calcified node whose component takes in some of the
    enhanced vessel beside it stays (its median with the calcium was above the limit); a component that
    is mostly calcium (bone) goes."""
    prob = np.zeros((12, 40, 40), np.float32)
    hu = np.full(prob.shape, -90, np.int16)
    prob[2:10, 4:20, 4:14] = 0.9
    hu[2:10, 4:14, 4:14] = 40  # the node's soft tissue
    hu[3:9, 5:10, 6:12] = 700  # its calcification
    hu[2:10, 14:20, 4:14] = 150  # the piece of vessel the component took in
    component = hu[2:10, 4:20, 4:14]
    assert np.median(component) > 100 and component.mean() > 100  # the whole rule said: too bright
    prob[2:10, 26:34, 24:34] = 0.9
    hu[2:10, 26:34, 24:34] = 800  # cortical bone with a soft fringe
    hu[2:10, 26:28, 24:34] = 60
    mask = postprocess(prob, (1.0, 1.0, 1.0), 0.5, 10.0, hu=hu, max_mean_hu=100.0)
    assert mask[2:10, 4:20, 4:14].all() and not mask[2:10, 26:34, 24:34].any()


def test_postprocess_drops_a_component_without_a_confident_core():
    """Hysteresis: a component is kept only if some voxel reaches ``min_peak``; below the threshold
    ``min_peak`` changes nothing."""
    prob = np.zeros((10, 30, 30), np.float32)
    prob[2:8, 2:12, 2:12] = 0.6
    prob[4:6, 5:8, 5:8] = 0.95  # a confident core
    prob[2:8, 18:28, 18:28] = 0.75  # as large, never confident
    kept = postprocess(prob, (2.0, 1.0, 1.0), 0.5, 10.0, min_peak=0.8)
    assert kept[2:8, 2:12, 2:12].all() and not kept[2:8, 18:28, 18:28].any()
    assert postprocess(prob, (2.0, 1.0, 1.0), 0.5, 10.0, min_peak=0.5).sum() == 2 * 600
    assert postprocess(prob, (2.0, 1.0, 1.0), 0.5, 0.0, min_peak=0.95).sum() == 600  # alone, too


def test_missing_inference_settings_take_the_config_defaults(tiny_model):
    predictor = Predictor(tiny_model, device="cpu")
    assert predictor.version == "tiny-test" and predictor.config.inference.min_component_mm3 == 0
    assert predictor.config.inference.max_mean_hu == 100.0  # not in the tiny model's config.json
    assert predictor.config.inference.min_peak == 0.7


def test_predict_on_a_ct_prepared_before_gives_the_same_prediction(tiny_model, small_ct):
    from lnq_napari.preprocess import prepare

    predictor = Predictor(tiny_model, device="cpu")
    plain = predictor.predict(small_ct)
    reused = predictor.predict(small_ct, prepared=prepare(small_ct, predictor.config.preprocessing))
    assert np.array_equal(plain.probabilities.array, reused.probabilities.array)
    assert np.array_equal(plain.mask.array, reused.mask.array)


def test_find_nodes_takes_a_ct_file_and_says_what_an_array_lacks(tmp_path, tiny_model, small_ct):
    from lnq_napari import api
    from lnq_napari.io.readers import write_volume

    path = write_volume(tmp_path / "case-ct.nrrd", small_ct)
    predictor = Predictor(tiny_model, device="cpu")
    from_file, from_volume = api.find_nodes(str(path), predictor), api.find_nodes(small_ct, predictor)
    assert np.array_equal(from_file.mask.array, from_volume.mask.array)
    assert from_file.mask.same_grid(small_ct, tol=1e-6)
    with pytest.raises(LNQError, match=r"the CT must be an lnq_napari Volume or a file path \(got numpy"):
        api.find_nodes(np.asarray(small_ct.array), predictor)
    # a notebook cell's last line shows a summary (the dataclasses' reprs printed every voxel)
    shown = repr(from_file)
    assert shown.startswith(f"NodeResult({len(from_file.nodes)} node") and len(shown) < 400
    assert f"model {from_file.model_version}, on Volume(shape (z, y, x) {small_ct.shape}, int32," in shown


def test_a_thin_slab_is_predicted_with_a_warning(tiny_model, small_ct):
    """Three slices (a 9 mm slab through two large nodes gave 0 nodes without a word): a warning saying
    why few or none are found; the whole CT is not warned about."""
    from lnq_napari import api

    predictor = Predictor(tiny_model, device="cpu")
    slab = Volume(np.asarray(small_ct.array)[:2], small_ct.spacing, small_ct.origin, small_ct.direction)
    with pytest.warns(UserWarning, match="spans only 24 mm along one axis"):
        api.find_nodes(slab, predictor)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        api.find_nodes(small_ct, predictor)


def test_a_ct_spanning_metres_is_refused_before_the_model_loads(small_ct, monkeypatch):
    """Slices 100 mm apart (a spacing in the wrong unit) made a 34-slice chest CT 3.4 m long: it was
    resampled to 1100 slices, predicted for 3 minutes and a node found; 1000 mm slices ran out of memory
    ("close other programs"). Refused in one line naming the axis and its spacing, before the model loads."""
    from lnq_napari import api

    monkeypatch.setattr(api, "load_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    spacing = (small_ct.spacing[0], small_ct.spacing[1], 200.0)  # 20 slices: 4 m
    long = Volume(small_ct.array, spacing, small_ct.origin, small_ct.direction)
    said = r"spans \d+ mm along its z axis \(\d+ voxels of 200 mm\), more than any body: its voxel spacing"
    with pytest.raises(LNQError, match=said):
        api.find_nodes(long)
    from lnq_napari.preprocess import prepare

    with pytest.raises(LNQError, match=said):  # training, ranking and fine-tuning prepare CTs too
        prepare(long)


def test_predict_on_exact_grid_with_flipped_direction(tiny_model, small_ct):
    pred = Predictor(tiny_model, device="cpu").predict(small_ct)
    for vol in (pred.probabilities, pred.mask):
        assert vol.same_grid(small_ct, tol=0) and vol.origin == small_ct.origin
    assert pred.probabilities.array.dtype == np.float32 and pred.mask.array.dtype == np.uint8
    assert set(np.unique(pred.mask.array)) <= {0, 1}
    p = pred.probabilities.array
    assert p.min() >= 0 and p.max() <= 1 and pred.model_version == "tiny-test"
    # the same CT stored with its x axis reversed gives the same answer in physical space
    arr = small_ct.array[:, :, ::-1]
    far = small_ct.index_to_physical(np.array([[0, 0, small_ct.shape[2] - 1]]))[0]
    d = np.asarray(FLIP_XY).reshape(3, 3).copy()
    d[:, 0] *= -1
    flipped = Volume(np.ascontiguousarray(arr), small_ct.spacing, tuple(far), tuple(d.ravel()))
    pred2 = Predictor(tiny_model, device="cpu").predict(flipped)
    assert np.allclose(pred2.probabilities.array[:, :, ::-1], p, atol=1e-3)


def test_predict_cancel(tiny_model, small_ct):
    with pytest.raises(Cancelled):
        Predictor(tiny_model, device="cpu").predict(small_ct, cancel=lambda: True)


def test_missing_model_and_absent_cuda(tmp_path, tiny_model):
    with pytest.raises(LNQError, match="does not exist"):
        Predictor(tmp_path / "no-model")
    if not torch.cuda.is_available():
        with pytest.raises(LNQError, match="CUDA"):
            Predictor(tiny_model, device="cuda")


def test_api_predict_writes_seg_and_prob(tmp_path, tiny_model, small_ct):
    from lnq_napari import api
    from lnq_napari.io.readers import read_labels, read_volume, write_volume

    data = tmp_path / "data"
    write_volume(data / "case-0001-ct.nrrd", small_ct)
    written = api.predict(data, tmp_path / "out", model=tiny_model, device="cpu", probabilities=True)
    assert [p.name for p in written] == ["case-0001-seg.nrrd", "case-0001-prob.nrrd"]
    seg = read_labels(written[0])
    assert seg.same_grid(small_ct) and seg.meta.get("lnq_model_version") == "tiny-test"
    prob = read_volume(written[1])
    assert prob.array.dtype == np.float32 and prob.same_grid(small_ct)
    with pytest.raises(LNQError):
        api.predict(tmp_path / "nothing.nrrd", tmp_path / "out", model=tiny_model)


def test_cli_predict_on_a_file_named_beyond_ascii(tmp_path, tiny_model, small_ct, capsys):
    """A file name with accents (the source name goes into the NRRD header, which is ASCII) predicts."""
    from lnq_napari.cli import main
    from lnq_napari.io.readers import read_labels, write_volume

    ct = write_volume(tmp_path / "data" / "patiënt ç-ct.nrrd", small_ct)
    assert main(["predict", str(ct), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu"]) == 0
    seg = read_labels(tmp_path / "out" / "patiënt ç-seg.nrrd")
    assert seg.same_grid(small_ct) and seg.meta["lnq_source"] == "pati\\xebnt \\xe7-ct.nrrd"
    assert "Traceback" not in capsys.readouterr().err


def _bundled():
    assert (bundled_model_path() / "config.json").is_file(), "the bundled model is missing"
    return Predictor(None, device="cpu")


def test_bundled_model_finds_phantom_nodes():
    from lnq_napari.metrics import evaluate_case
    from lnq_napari.phantom import make_case

    predictor = _bundled()
    case = make_case(2024, shape=(64, 256, 256), spacing=(1.6, 1.6, 4.5))
    pred = predictor.predict(case.ct)
    row = evaluate_case(pred.mask, case.full)
    assert row.dice > DICE_FLOOR, row
    assert row.recall >= 0.8, row


# the bundled model measured Dice 0.904, recall 7/7 on this case (16:01 UTC, 2026-11-27; 0.855 before the
# unenhance stages); floor with margin
DICE_FLOOR = 0.7


def test_bundled_model_on_real_chest_ct(tmp_path):
    import slicerio

    from lnq_napari import api
    from lnq_napari.io.readers import read_labels, read_volume

    _bundled()
    path = slicerio.get_testdata_file("CTChest4.nrrd")
    written = api.predict(path, tmp_path, device="cpu")
    ct = read_volume(path)
    seg = read_labels(written[0])
    assert written[0].name == "CTChest4-seg.nrrd"
    assert seg.same_grid(ct) and set(np.unique(seg.array)) <= {0, 1}


# ---------------------------------------------------------------- memory: slabs give the plain results
def _plain_postprocess(prob, spacing_zyx, threshold, min_mm3, hu, max_mean_hu, region, min_peak):
    """The rules of :func:`postprocess` written plainly, one component at a time (the reference)."""
    from scipy import ndimage

    lab, n = ndimage.label(prob >= threshold, structure=np.ones((3, 3, 3), bool))
    out = np.zeros(prob.shape, np.uint8)
    for i in range(1, n + 1):
        comp = lab == i
        ok = comp.sum() * np.prod(spacing_zyx) >= min_mm3
        ok &= not too_bright(hu[comp], max_mean_hu)
        ok &= region[comp].sum() >= 0.5 * comp.sum()
        ok &= prob[comp].max() >= min_peak
        out[comp] = ok
    return out


def test_postprocess_in_slabs_matches_the_plain_rules():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    prob = ndimage.gaussian_filter(rng.random((30, 40, 50)), 1.5).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    hu = rng.integers(-100, 250, prob.shape).astype(np.int16)
    region = np.zeros(prob.shape, bool)
    region[:, :, :30] = True
    everywhere = np.ones(prob.shape, bool)
    for where, max_mean_hu, min_peak in ((region, 80.0, 0.0), (everywhere, 1000.0, 0.7)):
        expected = _plain_postprocess(prob, (2.0, 1.0, 1.0), 0.55, 20.0, hu, max_mean_hu, where, min_peak)
        by_size = _plain_postprocess(prob, (2.0, 1.0, 1.0), 0.55, 20.0, hu, 1000.0, everywhere, 0.0)
        assert 0 < expected.sum() < by_size.sum()  # some components kept, some dropped by the rule
        for voxels in (1, 2000, 10**9):  # one slice per slab .. the whole box at once
            got = postprocess(prob, (2.0, 1.0, 1.0), 0.55, 20.0, hu=hu, max_mean_hu=max_mean_hu, region=where,
                              min_peak=min_peak, voxels=voxels)
            assert got.dtype == np.uint8 and np.array_equal(got, expected), voxels


def test_postprocess_memory_beyond_its_output_is_a_few_bytes_per_voxel():
    """A mask filling the volume: the mask, its int32 component ids and the output (6 bytes per voxel),
    plus about a slab; the whole-box sums took 20 (int64 ids and float64 weights per voxel)."""
    import tracemalloc

    shape = (32, 128, 128)
    prob = np.full(shape, 0.9, np.float32)
    prob[:, :, 64] = 0.0  # two large components
    hu, region = np.zeros(shape, np.int16), np.ones(shape, bool)
    args = (prob, (1.0, 1.0, 1.0), 0.5, 10.0)
    postprocess(*args, hu=hu, max_mean_hu=100.0, region=region)  # imports scipy outside the trace
    tracemalloc.start()
    try:
        out = postprocess(*args, hu=hu, max_mean_hu=100.0, region=region, voxels=2**14)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.sum() == prob.size - 32 * 128
    assert peak < 7 * prob.size + 40 * 2**14, peak / prob.size


def test_probabilities_on_ct_in_slabs_match_one_resampling(tiny_model, small_ct):
    from lnq_napari.inference import probabilities_on_ct
    from lnq_napari.preprocess import prepare, to_ct_grid

    predictor = Predictor(tiny_model, device="cpu")
    prepared = prepare(small_ct, predictor.config.preprocessing)
    rng = np.random.default_rng(0)
    prob = (rng.random(prepared.image.shape) * 1.2 - 0.1).astype(np.float32)  # beyond 0..1: clipped
    whole = np.clip(to_ct_grid(prob, prepared, small_ct), 0.0, 1.0)
    plane = small_ct.shape[1] * small_ct.shape[2]
    for voxels in (plane, 3 * plane + 1, 10**9):
        got = probabilities_on_ct(prob, prepared, small_ct, voxels=voxels)
        assert got.dtype == np.float32 and got.shape == small_ct.shape
        assert np.allclose(got, whole, atol=1e-6, rtol=0), voxels
    assert whole.min() == 0.0 and whole.max() == 1.0  # values beyond 0..1 were clipped


# ---------------------------------------------------------------- out of memory: fall back, never crash
def _oom_when(predictor, monkeypatch, failing):
    """Make the network raise torch's out-of-memory error on the inputs ``failing(x)`` picks."""
    forward = predictor.network.forward

    def fake(x):
        if failing(x):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(x)

    monkeypatch.setattr(predictor.network, "forward", fake)


def test_windows_go_through_the_network_two_at_a_time(tiny_model, small_ct, monkeypatch):
    predictor = Predictor(tiny_model, device="cpu")
    assert predictor.config.inference.sw_batch_size == 1  # the model asks for one window at a time
    forward, batches = predictor.network.forward, []

    def counted(x):
        batches.append(x.shape[0])
        return forward(x)

    monkeypatch.setattr(predictor.network, "forward", counted)
    paired = predictor.predict(small_ct)
    assert len(batches) > 2 and set(batches[:-1]) == {2}, batches
    single = Predictor(tiny_model, device="cpu")
    single.max_batch = 1
    alone = single.predict(small_ct)
    assert np.allclose(paired.probabilities.array, alone.probabilities.array, atol=1e-5)
    assert np.array_equal(paired.mask.array, alone.mask.array)


def test_out_of_memory_runs_fewer_windows_at_once(tiny_model, small_ct, monkeypatch):
    expected = Predictor(tiny_model, device="cpu").predict(small_ct)
    predictor = Predictor(tiny_model, device="cpu")
    predictor.config.inference.sw_batch_size = predictor.max_batch = 4
    _oom_when(predictor, monkeypatch, lambda x: x.shape[0] > 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = predictor.predict(small_ct)
    said = [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert any("4 windows at once" in m and "2 at a time" in m for m in said), said
    assert any("2 windows at once" in m and "1 at a time" in m for m in said), said
    assert predictor.max_batch == 1
    assert np.allclose(pred.probabilities.array, expected.probabilities.array, atol=1e-5)
    assert np.array_equal(pred.mask.array, expected.mask.array)


def test_out_of_memory_on_the_gpu_moves_to_the_cpu(tiny_model, small_ct, monkeypatch):
    expected = Predictor(tiny_model, device="cpu").predict(small_ct)
    predictor = Predictor(tiny_model, device="cpu")
    predictor.device = torch.device("meta")  # stands in for a GPU: inputs go there and run out of memory
    _oom_when(predictor, monkeypatch, lambda x: x.device.type != "cpu")
    with pytest.warns(RuntimeWarning, match="on the CPU from now on"):
        pred = predictor.predict(small_ct)
    assert predictor.device.type == "cpu"
    assert np.allclose(pred.probabilities.array, expected.probabilities.array, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later predictions stay on the CPU without a word
        assert np.array_equal(predictor.predict(small_ct).mask.array, expected.mask.array)


def test_out_of_memory_on_the_cpu_is_one_line_error(tiny_model, small_ct, monkeypatch):
    from lnq_napari import inference

    predictor = Predictor(tiny_model, device="cpu")
    _oom_when(predictor, monkeypatch, lambda x: True)
    with pytest.raises(LNQError, match="out of memory"):
        predictor.predict(small_ct)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(inference, "postprocess", no_memory)
    with pytest.raises(LNQError, match=r"out of memory predicting a 72x72x20 CT"):
        Predictor(tiny_model, device="cpu").predict(small_ct)
