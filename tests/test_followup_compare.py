"""Comparing a phantom baseline with its follow-up: truth recovered, bad input refused, API and CLI."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from conftest import cut_node

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import LNQError
from lnq_napari.followup import compare_nodes
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.model.config import ModelConfig
from lnq_napari.phantom.followup import Motion, make_followup, write_followup

SHAPE, SPACING = (40, 128, 128), (2.6, 2.6, 6.0)
MOTION = Motion(rotation_deg=(0.0, 1.0, 2.0), shift_mm=(6.0, -5.0, 9.0), breathing_mm=4.0)


def truth_labels(case) -> Volume:
    """The case's target nodes, each with its phantom id (the truth's ids)."""
    inst = np.asarray(case.instances.array).astype(np.int32)
    return case.instances.with_array(np.where(np.asarray(case.full.array) > 0, inst, 0))


@pytest.fixture(scope="module")
def pair():
    return make_followup(11, shape=SHAPE, spacing=SPACING, scenario="mixed", motion=MOTION)


@pytest.fixture(scope="module")
def result(pair):
    return compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), pair.followup.ct,
                         truth_labels(pair.followup))


def test_phantom_followup_records_the_changes_it_made(pair):
    changes = pair.truth["changes"]
    assert {c["status"] for c in changes} >= {"matched", "vanished"}
    follow_ids = set(np.unique(pair.followup.instances.array).tolist())
    for c in changes:
        if c["status"] == "vanished":
            assert c["baseline_id"] in set(np.unique(pair.baseline.instances.array).tolist())
        if c["status"] == "matched":
            assert c["followup_id"] in follow_ids
            grown = c["volume_followup_ml"] / c["volume_baseline_ml"] - 1.0
            assert np.sign(round(grown, 1)) == np.sign(round(c["volume_change_pct"] / 100.0, 1)) or abs(
                c["volume_change_pct"]) < 15
    # the same anatomy, moved: the CTs differ but hold the same tissue
    assert not np.array_equal(pair.baseline.ct.array, pair.followup.ct.array)
    assert abs(float(np.mean(pair.baseline.ct.array)) - float(np.mean(pair.followup.ct.array))) < 30


def test_comparison_recovers_the_true_matching_and_volume_changes(pair, result):
    rows = {(r.baseline_id, r.followup_id): r for r in result.rows}
    errors, on_voxels = [], []
    for c in pair.truth["changes"]:
        if c["status"] == "absent":
            continue
        row = rows.get((c["baseline_id"], c["followup_id"]))
        assert row is not None and row.status == c["status"], c
        if c["status"] == "matched":
            errors.append(abs(row.volume_change_pct - c["volume_change_pct"]))
            on_voxels.append(abs(row.volume_change_pct - c["voxel_change_pct"]))
    assert float(np.median(errors)) <= 10.0  # of the shapes: the grid's partial volumes differ
    assert float(np.median(on_voxels)) < 0.5  # of the truth masks the table measured
    assert result.quality.mean_distance_mm < 4.0 and not result.quality.poor
    # the registration moved the nodes: without it the matched centroids lie further apart
    raw = [np.linalg.norm(np.subtract(r.centroid_baseline_mm, r.centroid_followup_mm))
           for r in result.rows if r.status == "matched"]
    assert np.mean(raw) > 2 * result.quality.mean_distance_mm


def test_seg_elsewhere_or_swapped_is_refused_before_any_work(pair):
    cropped = Volume(pair.followup.ct.array[2:], pair.followup.ct.spacing,
                     tuple(np.add(pair.followup.ct.origin, (0, 0, 2 * SPACING[2]))))
    seg = truth_labels(pair.baseline)
    with pytest.raises(LNQError, match="swapped"):
        compare_nodes(pair.baseline.ct, seg, cropped, seg)
    # the other scan's SEG with float noise or stored flipped was resampled, not named as swapped
    noisy = Volume(seg.array, seg.spacing, tuple(np.add(seg.origin, 0.005)), seg.direction)
    flipped = reordered_onto_flipped(seg)
    for other in (noisy, flipped):
        with pytest.raises(LNQError, match="the follow-up SEG is on the other CT's grid: the files look"):
            compare_nodes(pair.baseline.ct, seg, cropped, other)
    far = Volume(np.zeros((10, 20, 20), np.uint8), origin=(5000.0, 5000.0, 5000.0))
    with pytest.raises(LNQError, match="baseline SEG .* do not overlap the CT"):
        compare_nodes(pair.baseline.ct, far, pair.followup.ct, truth_labels(pair.followup))


def reordered_onto_flipped(labels: Volume) -> Volume:
    """The same voxels stored with the x axis flipped (another direction and origin, the same points)."""
    array = np.ascontiguousarray(np.asarray(labels.array)[:, :, ::-1])
    direction = np.asarray(labels.direction, dtype=float).reshape(3, 3).copy()
    far = labels.index_to_physical(np.array([[0, 0, labels.shape[2] - 1]], dtype=float))[0]
    direction[:, 0] *= -1
    return Volume(array, labels.spacing, tuple(far), tuple(direction.ravel()))


def test_a_seg_off_its_ct_grid_by_float_noise_is_put_on_it_as_measure_does(pair, result):
    """A SEG whose origin was written 0.001 mm off (a DICOM SEG's rounding) was refused as "on the grid
    of neither CT", where ``measure`` reads it: now both put it on the CT grid."""
    seg = truth_labels(pair.followup)
    shifted = Volume(seg.array, seg.spacing, tuple(np.add(seg.origin, 0.001)), seg.direction)
    said = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), pair.followup.ct, shifted,
                         registration=result.registration)
    assert [(r.baseline_id, r.followup_id, r.status) for r in said.rows] == \
        [(r.baseline_id, r.followup_id, r.status) for r in result.rows]
    assert said.recist == result.recist and said.volume == result.volume
    # a coarser grid over the same box: resampled, and said in the result (the panel shows its warnings)
    coarse = Volume(np.asarray(seg.array)[:, ::2, ::2], (seg.spacing[0] * 2, seg.spacing[1] * 2,
                                                         seg.spacing[2]), seg.origin, seg.direction)
    with pytest.warns(UserWarning, match="follow-up SEG grid differs from the CT grid"):
        noted = api.compare(pair.baseline.ct, pair.followup.ct, truth_labels(pair.baseline), coarse,
                            registration=result.registration)
    assert any("follow-up SEG grid differs from the CT grid" in note for note in noted.warnings)  # the panel


def test_an_empty_segmentation_is_named_before_its_response_is_trusted(pair, result):
    """An empty follow-up file gave "overall CR" without a word (an empty baseline "PD")."""
    empty = truth_labels(pair.followup)
    empty = empty.with_array(np.zeros_like(empty.array))
    with pytest.warns(UserWarning, match="the follow-up segmentation holds no node"):
        said = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), pair.followup.ct, empty,
                             registration=result.registration)
    assert any("holds no node" in note for note in said.warnings)
    assert not any("holds no node" in note for note in result.warnings)


def test_segs_with_no_node_in_common_are_named_before_the_response_is_trusted(pair, result):
    """Each scan given the other's SEG (one grid for both): every node vanished or new, PD, without a
    word."""
    base, follow = truth_labels(pair.baseline), truth_labels(pair.followup)
    moved = follow.with_array(np.roll(np.asarray(follow.array), 40, axis=2))  # no node where one was
    with pytest.warns(UserWarning, match=r"no node matched: all .*\(swapped files\?\)"):
        said = compare_nodes(pair.baseline.ct, base, pair.followup.ct, moved,
                             registration=result.registration)
    assert not any(r.status == "matched" for r in said.rows)
    assert not any("no node matched" in note for note in result.warnings)
    shown = repr(said)  # a notebook cell's last line: a summary, not every voxel of the labels
    assert shown.startswith(f"CompareResult({len(said.baseline_nodes)} vanished, {len(said.followup_nodes)} ")
    assert "; RECIST PD; " in shown and len(shown) < 200


def test_one_scan_given_as_both_is_said(pair):
    """The baseline CT given twice (a slip of tab completion) compared silently: all matched, SD."""
    labels = truth_labels(pair.baseline)
    with pytest.warns(UserWarning, match="the baseline and follow-up CT are the same scan"):
        same = compare_nodes(pair.baseline.ct, labels, pair.baseline.ct, labels)
    assert any("same scan" in w for w in same.warnings)


def test_scans_that_do_not_overlap_are_refused(pair):
    slab = pair.followup.ct.with_array(np.full(pair.followup.ct.shape, 40, np.int16))  # no chest at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LNQError, match="do not overlap"):
            compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), slab, slab.with_array(
                np.zeros(slab.shape, np.uint8)))


def test_two_scans_without_lungs_are_compared_on_their_chest_overlap(pair):
    """A crop with no lungs in view (both scans): the lung overlap is undefined, not 0 (it refused two
    copies of one scan as "not overlapping"); the chest overlap decides, and every node matches."""
    ct = pair.baseline.ct
    hu = np.asarray(ct.array)
    no_lungs = ct.with_array(np.where(hu < -500, np.int16(-1000), hu).astype(np.int16))
    no_lungs.array[:, 20:-20, 20:-20] = np.maximum(no_lungs.array[:, 20:-20, 20:-20], 0)  # the body, solid
    labels = truth_labels(pair.baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no lungs found"
        same = compare_nodes(no_lungs, labels, no_lungs, labels)
    assert np.isnan(same.quality.lung_dice)
    assert {r.status for r in same.rows} == {"matched"}


class TruthPredictor:
    """TEST DOUBLE of ``inference.Predictor``: "predicts" the given masks, in call order."""

    def __init__(self, masks):
        self.masks, self.config, self.calls = list(masks), ModelConfig(), 0

    def predict(self, ct, progress=None, cancel=None):
        from types import SimpleNamespace

        mask = self.masks[self.calls]
        self.calls += 1
        binary = (np.asarray(mask.array) > 0).astype(np.uint8)
        return SimpleNamespace(mask=ct.with_array(binary), probabilities=ct.with_array(binary * 0.9),
                               model_version="truth-0")


def test_api_compare_predicts_missing_segs_warns_on_other_patient_and_writes_csv(pair, tmp_path):
    base = Volume(pair.baseline.ct.array, pair.baseline.ct.spacing, pair.baseline.ct.origin,
                  meta={"PatientID": "A"})
    follow = Volume(pair.followup.ct.array, pair.followup.ct.spacing, pair.followup.ct.origin,
                    meta={"PatientID": "B"})
    predictor = TruthPredictor([pair.followup.full])
    out = tmp_path / "changes.csv"
    with pytest.warns(UserWarning) as heard:  # every warning caught: none left to pytest's summary
        result = api.compare(base, follow, baseline_seg=truth_labels(pair.baseline), model=predictor,
                             csv_path=out)
    assert predictor.calls == 1  # only the follow-up had no SEG
    assert any("different patients" in w for w in result.warnings)
    said = "only the baseline scan's nodes are a reader's; the other's nodes are the model's"
    assert any("different patients" in str(w.message) for w in heard)
    assert any(str(w.message).startswith(said) for w in heard)
    # the SEG's untouched nodes were new lesions (PD), unsaid
    assert any(w.startswith(said) for w in result.warnings)
    with open(out) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(result.rows)
    assert {r["status"] for r in table} <= {"matched", "new", "vanished"}
    n_truth = sum(c["status"] in ("matched", "vanished") for c in pair.truth["changes"])
    assert sum(r["baseline_id"] != "" for r in table) == n_truth


def test_cli_compare_prints_table_writes_csv_warns_on_poor_registration(tmp_path, capsys, monkeypatch):
    from lnq_napari.followup import compare as compare_module

    t0, t1 = write_followup(tmp_path, seed=3, shape=SHAPE, spacing=SPACING, scenario="progression")
    seg0, seg1 = (str(p).replace("-ct.nrrd", "-full.nrrd") for p in (t0, t1))
    truth = json.loads(open(str(t1).replace("-ct.nrrd", "-nodes.json")).read())
    assert truth["baseline"] in str(t0) and truth["changes"]
    monkeypatch.setattr(compare_module, "POOR_DISTANCE_MM", 0.0)  # any residual counts as poor
    out = tmp_path / "c.csv"
    code = main(["compare", "--baseline", str(t0), seg0, "--followup", str(t1), seg1, "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and out.exists()
    assert "RECIST 1.1:" in captured.out and "registration: affine" in captured.out
    assert "warning: registration looks poor" in captured.err
    bad = tmp_path / "bad-seg.nrrd"
    write_volume(bad, Volume(np.zeros((5, 6, 7), np.uint8), origin=(5000.0, 5000.0, 5000.0)))
    code = main(["compare", "--baseline", str(t0), str(bad), "--followup", str(t1), seg1])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("lnq-napari: error: the baseline SEG (") and "do not overlap the CT" in err[-1]


def test_registration_recovers_a_known_motion_of_a_real_chest_ct():
    import SimpleITK as sitk

    from lnq_napari.followup.register import register

    slicerio = pytest.importorskip("slicerio")
    from lnq_napari.io.readers import read_volume

    ct = read_volume(slicerio.get_testdata_file("CTChest4.nrrd"))  # real CT, 3 x 3 x 10 mm
    image = ct.to_sitk()
    centre = image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()])
    motion = sitk.Euler3DTransform()
    motion.SetCenter(centre)
    motion.SetRotation(0.0, 0.0, float(np.deg2rad(3.0)))
    motion.SetTranslation([8.0, -6.0, 10.0])
    moved = sitk.Resample(image, image, motion, sitk.sitkLinear, -1000.0, image.GetPixelID())
    followup = Volume.from_sitk(moved)
    registration = register(ct, followup)
    points = np.array([centre, np.add(centre, [30.0, 20.0, 10.0]), np.add(centre, [-40.0, 10.0, -20.0])])
    inverse = motion.GetInverse()  # tissue at baseline p shows at the follow-up point q with motion(q) = p
    truth = np.array([inverse.TransformPoint([float(v) for v in p]) for p in points])
    assert np.linalg.norm(registration.to_followup(points) - truth, axis=1).max() < 1.0
    assert registration.lung_dice > 0.9


def test_api_compare_refuses_an_unknown_organ_and_bare_arrays_before_any_work(pair, monkeypatch):
    """These raised KeyError after both predictions, and errors from deep inside the SEG reader."""
    monkeypatch.setattr(api, "load_predictor", lambda *a, **k: pytest.fail("predicted before refusing"))
    base, follow = pair.baseline.ct, pair.followup.ct
    with pytest.raises(LNQError, match="organ must be one of 'nodes', 'side' \\(got 'lungs'\\)"):
        api.compare(base, follow, organ="lungs")
    with pytest.raises(LNQError, match="the follow-up segmentation must be an lnq_napari Volume or a file"):
        api.compare(base, follow, truth_labels(pair.baseline), np.asarray(truth_labels(pair.followup).array))
    with pytest.raises(LNQError, match="the baseline CT must be an lnq_napari Volume or a file path"):
        api.compare(np.asarray(base.array), follow)


@pytest.mark.parametrize(("offset", "said"), [(1024, "not in Hounsfield units"), (-1024, "about 1024 below")])
def test_a_ct_not_in_hounsfield_units_is_named_not_called_another_patient(pair, offset, said):
    """A follow-up exported without its rescale intercept (or with it twice): its lungs were not found and
    the error said the scans do not overlap, "check that both CTs show the chest of the same patient"."""
    ct = pair.followup.ct
    moved = ct.with_array((np.asarray(ct.array).astype(np.int32) + offset).clip(-3024, None).astype(np.int16))
    with pytest.raises(LNQError, match=f"^the follow-up CT.*{said}") as caught:
        api.compare(pair.baseline.ct, moved, truth_labels(pair.baseline), truth_labels(pair.followup))
    assert "same patient" not in str(caught.value)


def test_nodes_beyond_a_shorter_scan_are_not_evaluable_not_vanished(pair, result):
    """A follow-up cut short (another field of view): the baseline nodes beyond its last slice were
    reported vanished and the targets among them counted 0 mm, turning the response into CR or PR."""
    from lnq_napari.followup.report import BEYOND

    keep = 18
    ct, nodes = pair.followup.ct, truth_labels(pair.followup)
    grid = {"spacing": ct.spacing, "origin": ct.origin, "direction": ct.direction}
    short_ct = Volume(np.ascontiguousarray(ct.array[:keep]), **grid)
    short_nodes = Volume(np.ascontiguousarray(np.asarray(nodes.array)[:keep]), **grid)
    with pytest.warns(UserWarning, match="beyond the other scan's field of view: not evaluable"):
        short = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), short_ct, short_nodes)
    whole = {r.baseline_id: r.status for r in result.rows if r.baseline_id is not None}
    beyond = [r for r in short.rows if r.status == BEYOND]
    assert beyond and all(r.recist.endswith("not evaluable") for r in beyond)
    carried = short.registration.to_followup([r.centroid_baseline_mm for r in beyond])
    assert np.all(short_ct.physical_to_index(carried)[:, 0] > keep - 0.5)  # past its last slice indeed
    assert "matched" in {whole[r.baseline_id] for r in beyond}  # a node still there was called vanished
    assert short.recist.targets == result.recist.targets  # chosen at baseline, whatever the follow-up shows
    vanished = {r.baseline_id for r in short.rows if r.status == "vanished"}
    assert vanished and all(whole[b] == "vanished" for b in vanished)  # no node vanishes by the crop


def test_a_target_beyond_a_shorter_follow_up_makes_the_response_not_evaluable(pair, result):
    """A follow-up that stops above the largest baseline node (another field of view): the targets were
    chosen among the nodes it shows, a smaller node stood in, and RECIST read SD from the rest (the truth:
    that node vanished, PR). RECIST 1.1: a target not assessed leaves the target response NE."""
    keep = 24
    ct, nodes = pair.followup.ct, truth_labels(pair.followup)
    grid = {"spacing": ct.spacing, "origin": ct.origin, "direction": ct.direction}
    said = r"target\(s\) 2 not assessed at follow-up: RECIST target response NE"
    with pytest.warns(UserWarning, match=said):
        short = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline),
                              Volume(np.ascontiguousarray(ct.array[:keep]), **grid),
                              Volume(np.ascontiguousarray(np.asarray(nodes.array)[:keep]), **grid))
    largest = max(result.baseline_nodes, key=lambda r: r.short_axis_mm).id
    assert largest in result.recist.targets and largest in short.recist.unassessed_targets
    assert short.recist.targets == result.recist.targets
    assert (short.recist.target_response, short.recist.overall) == ("NE", "NE")
    assert short.recist.sum_change_pct is None
    assert short.row_for(baseline_id=largest).recist == "target, not evaluable"


def test_a_pathological_node_where_the_baseline_did_not_scan_is_a_new_lesion(pair, result):
    """A baseline that stops short (a shorter field of view) and a follow-up that shows a node of 10 mm or
    more beyond it: the response read PR with "not counted as vanished or new", where RECIST 1.1 4.3.2
    counts a lesion in a place not scanned at baseline as new (PD); then a warning said so beside an SD."""
    from lnq_napari.followup.compare import NEW_UNSCANNED

    keep = 20
    ct, nodes = pair.baseline.ct, truth_labels(pair.baseline)
    grid = {"spacing": ct.spacing, "origin": ct.origin, "direction": ct.direction}
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        short = compare_nodes(Volume(np.ascontiguousarray(ct.array[:keep]), **grid),
                              Volume(np.ascontiguousarray(np.asarray(nodes.array)[:keep]), **grid),
                              pair.followup.ct, truth_labels(pair.followup))
    unscanned = [r for r in short.rows if r.status == "beyond the other scan" and r.baseline_id is None
                 and r.short_axis_followup_mm >= 10.0]
    assert unscanned and short.recist.overall == "PD" and all(r.recist == NEW_UNSCANNED for r in unscanned)
    assert short.recist.unscanned_new == tuple(r.followup_id for r in unscanned)
    assert set(short.recist.new_lesions) >= set(short.recist.unscanned_new)
    said = [str(w.message) for w in heard if "where the baseline did not scan" in str(w.message)]
    assert len(said) == 1 and said == [n for n in short.warnings if "did not scan" in n]
    assert f"node(s) {', '.join(str(r.followup_id) for r in unscanned)} (short axis >= 10 mm)" in said[0]
    assert "new lesion(s) by RECIST 1.1" in said[0] and "overall PD" in said[0]


def test_a_normal_node_grown_past_10_mm_is_a_new_lesion():
    """A 7 mm baseline node grown to 13 mm (by more than 5 mm: unequivocal) beside a stable target: the
    response read SD, though the same node left out of the baseline SEG read PD (a new lesion)."""
    from test_followup_merge_split import ball
    from test_followup_merge_split import compare as compare_balls

    base, follow = np.zeros(ball((0, 0, 0), 1).shape, np.uint8), np.zeros(ball((0, 0, 0), 1).shape, np.uint8)
    base[ball((100, 60, 40), 12)] = follow[ball((100, 60, 40), 12)] = 1  # a target, the same
    base[ball((40, 60, 40), 3.5)] = 1
    follow[ball((40, 60, 40), 6.5)] = 1
    result = compare_balls(base, follow)
    small = result.row_for(baseline_id=next(r.id for r in result.baseline_nodes if r.short_axis_mm < 10))
    assert small.status == "matched" and small.recist == "new lesion (normal at baseline)"
    assert result.recist.new_lesions == (small.followup_id,) and result.recist.overall == "PD"
    note = next(n for n in result.warnings if "grew from a normal baseline node" in n)
    assert f"node(s) {small.followup_id} (" in note and note.endswith("overall PD")


def test_a_node_split_in_two_by_its_segmentation_is_measured_as_one(pair, result):
    """A slice left out of one follow-up node (a 0/1 mask, as a prediction gives): its second piece was
    a new lesion (overall PD) and the node read -60 %."""
    base_ids = truth_labels(pair.baseline)
    after = np.asarray(truth_labels(pair.followup).array)
    whole = {r.baseline_id: r for r in result.rows if r.status == "matched"}
    target = max((r for r in whole.values()), key=lambda r: r.volume_followup_cm3)  # the largest node
    zs = np.nonzero((after == target.followup_id).any(axis=(1, 2)))[0]
    assert len(zs) >= 3
    cut = (after > 0).astype(np.uint8)
    erased = after[zs[len(zs) // 2]] == target.followup_id
    cut[zs[len(zs) // 2]][erased] = 0  # one slice of it left out: two pieces
    mask = pair.followup.ct.with_array(cut)
    with pytest.warns(UserWarning, match=r"follow-up node\(s\) .* measured as one node"):
        split = compare_nodes(pair.baseline.ct, base_ids, pair.followup.ct, mask)
    row = next(r for r in split.rows if r.baseline_id == target.baseline_id)
    erased_cm3 = erased.sum() * float(np.prod(pair.followup.ct.spacing)) / 1000.0
    assert row.status == "matched" and row.volume_followup_cm3 == pytest.approx(
        target.volume_followup_cm3 - erased_cm3)  # both pieces, measured as one node
    assert [r.status for r in split.rows if r.baseline_id is None] == \
        [r.status for r in result.rows if r.baseline_id is None]  # no new node from the second piece
    assert split.recist.overall == result.recist.overall


def test_labels_by_row_number_a_matched_pair_alike_on_the_baseline_grid(result):
    """The viewer's change layers: each node numbered by its table row, a matched pair sharing it."""
    before, after = result.labels_by_row()
    assert before.shape == after.shape == result.baseline_labels.shape
    for k, row in enumerate(result.rows, start=1):
        if row.baseline_id is not None:
            node = np.asarray(result.baseline_labels.array) == row.baseline_id
            assert (before[node] == k).all()
        if row.status == "matched":
            assert (after == k).any() and (before == k).any()  # the pair shares its number
    assert set(np.unique(before)) <= set(range(len(result.rows) + 1))


def test_nodes_sharing_a_class_value_are_compared_as_separate_nodes(pair, result):
    """Segmentations holding class values (each node 1 or 2) were read as node ids: the nodes of a class
    were one node, measured and matched as one. Each blob is a node, as with one id per node."""
    def classes(case) -> Volume:
        ids = np.asarray(truth_labels(case).array)
        return case.ct.with_array(np.where(ids > 0, 1 + ids % 2, 0).astype(np.uint8))

    got = compare_nodes(pair.baseline.ct, classes(pair.baseline), pair.followup.ct, classes(pair.followup),
                        registration=result.registration)

    def table(res) -> list[tuple]:
        return sorted((r.status, round(r.volume_baseline_cm3 or 0.0, 6),
                       round(r.volume_followup_cm3 or 0.0, 6)) for r in res.rows)

    assert len(result.rows) > 2 and table(got) == table(result)
    assert got.recist.overall == result.recist.overall


def test_a_followup_showing_only_the_upper_chest_is_registered_by_its_part_of_the_lungs():
    """The follow-up cut to the upper 60 % of the lungs, the patient moved 40 mm along the table: the
    search started from the lungs' centroids (off by the part left out) and from no shift, both ended
    wrong, and every node was vanished or new. The lungs' area profiles place the part, and the lungs'
    overlap is judged where both scans reach (the whole lungs against a part were 'poor')."""
    motion = Motion(rotation_deg=(2.0, 3.0, 5.0), shift_mm=(30.0, -25.0, 40.0), breathing_mm=4.0)
    moved = make_followup(11, shape=(48, 96, 96), spacing=(4.0, 4.0, 6.0), scenario="mixed", motion=motion)
    before = truth_labels(moved.baseline)
    ct, nodes = moved.followup.ct, truth_labels(moved.followup)
    keep = 14  # of 48 slices, from the feet: the lungs' upper 60 %
    grid = {"spacing": ct.spacing, "origin": tuple(ct.index_to_physical(np.array([[keep, 0.0, 0.0]]))[0]),
            "direction": ct.direction}
    upper = Volume(np.ascontiguousarray(ct.array[keep:]), **grid)
    upper_nodes = Volume(np.ascontiguousarray(np.asarray(nodes.array)[keep:]), **grid)
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        whole = compare_nodes(moved.baseline.ct, before, ct, nodes)
        part = compare_nodes(moved.baseline.ct, before, upper, upper_nodes)
    said = " | ".join(str(w.message) for w in heard)
    assert "no node matched" not in said and "registration looks poor" not in said
    assert not part.quality.poor and part.quality.lung_dice > 0.9
    pairs = {(r.baseline_id, r.followup_id) for r in part.rows if r.status == "matched"}
    truth = {(r.baseline_id, r.followup_id) for r in whole.rows if r.status == "matched"}
    in_view = {f for f in np.unique(upper_nodes.array).tolist() if f}
    assert pairs == {(b, f) for b, f in truth if f in in_view} and pairs
    assert {r.status for r in part.rows if r.baseline_id is None} <= {"new"}


def test_two_nodes_that_coalesced_at_follow_up_stay_two_nodes_at_baseline(pair, result):
    """Two separate baseline nodes coalesced into one follow-up node: the unmatched one was joined with
    the other at baseline as 'pieces of one node', changing the baseline's own measurements (a node's
    volume, the targets' sum) after the fact. Each keeps its baseline row; one is matched to the
    coalesced node, the other is 'merged' into it (0 mm in RECIST, its coalesced node counted once)."""
    after = np.asarray(truth_labels(pair.followup).array).copy()
    f_rows = {r.followup_id: r for r in result.rows if r.status == "matched"}
    dist, a, b = min((float(np.linalg.norm(np.subtract(f_rows[i].centroid_followup_mm,
                                                       f_rows[j].centroid_followup_mm))), i, j)
                     for i in f_rows for j in f_rows if i < j)
    ct = pair.followup.ct
    ca, cb = (np.asarray(f_rows[k].centroid_followup_mm) for k in (a, b))
    box = np.argwhere(np.isin(after, (a, b)))
    lo, hi = np.maximum(box.min(0) - 3, 0), np.minimum(box.max(0) + 4, after.shape)
    index = np.indices(hi - lo).reshape(3, -1).T + lo
    points = ct.index_to_physical(index.astype(float))
    t = np.clip((points - ca) @ (cb - ca) / float((cb - ca) @ (cb - ca)), 0.0, 1.0)
    bridge = index[np.linalg.norm(points - (ca + t[:, None] * (cb - ca)), axis=1) < 6.0]
    after[tuple(bridge.T)] = a
    after[after == b] = a  # one conglomerate
    with pytest.warns(UserWarning, match="merged into follow-up node"):
        merged = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), ct, ct.with_array(after),
                               registration=result.registration)
    base = {(r.baseline_id, round(r.volume_baseline_cm3, 6)) for r in result.rows if r.baseline_id}
    assert {(r.baseline_id, round(r.volume_baseline_cm3, 6)) for r in merged.rows if r.baseline_id} == base
    assert merged.recist.baseline_sum_mm == pytest.approx(result.recist.baseline_sum_mm)
    assert merged.recist.targets == result.recist.targets
    pair_ids = {f_rows[a].baseline_id, f_rows[b].baseline_id}
    rows = [r for r in merged.rows if r.baseline_id in pair_ids]
    assert sorted(r.status for r in rows) == sorted(["matched", "merged"])
    assert {r.followup_id for r in rows} == {a}
    assert dist > 12.0  # two nodes apart, not pieces of one


def test_a_target_cut_by_the_followup_edge_is_named_and_its_response_flagged(pair, result):
    """A follow-up ending halfway through a target node: the node is measured on what is visible (a lower
    bound), so its row names the edge and the response says it rests on a cut node."""
    target = next(t for t in result.recist.targets if result.row_for(baseline_id=t).status == "matched")
    partner = result.row_for(baseline_id=target).followup_id
    ct, nodes = pair.followup.ct, truth_labels(pair.followup)
    slices = np.nonzero((np.asarray(result.followup_labels.array) == partner).any(axis=(1, 2)))[0]
    keep = int(slices[len(slices) // 2]) + 1  # its last slice the image's last
    grid = {"spacing": ct.spacing, "origin": ct.origin, "direction": ct.direction}
    short_ct = Volume(np.ascontiguousarray(ct.array[:keep]), **grid)
    short_nodes = Volume(np.ascontiguousarray(np.asarray(nodes.array)[:keep]), **grid)
    with pytest.warns(UserWarning, match="rests on node.s. cut by the image edge: follow-up .*lower bounds"):
        short = compare_nodes(pair.baseline.ct, truth_labels(pair.baseline), short_ct, short_nodes)
    row = short.row_for(baseline_id=target)
    assert row.status == "matched" and row.cut_by_edge_followup and not row.cut_by_edge_baseline
    assert row.followup_id in short.recist.cut_followup and short.recist.cut_note()
    assert row.cut_by_edge_credited == row.cut_by_edge_followup  # "RECIST fu" then a lower bound too
    assert not result.recist.cut_note()  # the whole scans: no node cut


def test_cli_compare_marks_the_figures_of_a_cut_node_and_names_its_edges(capsys, monkeypatch):
    """``lnq-napari compare``: "+" after the cut scan's volume and short axis, a column per scan naming the
    edges; that the response rests on the cut node is compare's warning (one line), not repeated in the
    RECIST line."""
    from types import SimpleNamespace

    from lnq_napari import api
    from lnq_napari.followup.recist import recist
    from lnq_napari.followup.report import ChangeRow, VolumeSummary

    before, after = cut_node(1, 20.0), cut_node(11, 12.0, ("superior", "left"))
    result = SimpleNamespace(
        rows=[ChangeRow.of(before, after, "target"),
              ChangeRow.of(cut_node(2, 6.0), cut_node(12, 6.0), "normal")],
        recist=recist([before, cut_node(2, 6.0)], [after, cut_node(12, 6.0)], {1: 11, 2: 12}),
        volume=VolumeSummary(1.0, 1.0, 0.0, 2, 0, 0, 0, 0), sources=("SEG", "SEG"),
        quality=SimpleNamespace(mean_distance_mm=1.0, lung_dice=0.9, stage="affine", seconds=1.0))
    monkeypatch.setattr(api, "compare", lambda *args, **kwargs: result)
    assert main(["compare", "--baseline", "b.nrrd", "--followup", "f.nrrd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[-2:] == ["cut_by_edge_baseline", "cut_by_edge_followup"]
    ends = [lines[0].index(name) + len(name) for name in header]  # cells right-aligned under their names

    def cells(line):
        return {name: line[start:end].strip() for name, start, end in zip(header, [0, *ends], ends)}

    cut, whole = cells(lines[1]), cells(lines[2])
    assert cut["cut_by_edge_followup"] == "superior left" and cut["cut_by_edge_baseline"] == ""
    assert cut["volume_followup_cm3"] == "0.5+" and cut["short_axis_followup_mm"] == "12+"
    assert cut["volume_baseline_cm3"] == "0.5" and cut["short_axis_baseline_mm"] == "20"
    assert not any(cell.endswith("+") for cell in whole.values())
    recist_line = next(line for line in lines if line.startswith("RECIST 1.1:"))
    assert recist_line.endswith("; overall PR")  # the cut note: compare's warning only (it was shown twice)


def test_cli_compare_marks_the_credited_short_axis_when_its_follow_up_node_is_cut(capsys, monkeypatch):
    """The "RECIST fu" cell (``recist_followup_short_axis_mm``, what enters the sum) ends in "+" when a
    follow-up node it is taken from is cut (here a split fragment of a whole partner); else not."""
    import dataclasses
    from types import SimpleNamespace

    from lnq_napari import api
    from lnq_napari.followup.recist import recist
    from lnq_napari.followup.report import ChangeRow, VolumeSummary

    before, after, piece = cut_node(1, 20.0), cut_node(11, 12.0), cut_node(13, 6.0, ("inferior",))
    summary = recist([before, cut_node(2, 16.0)], [after, cut_node(12, 15.0), piece], {1: 11, 2: 12},
                     pieces={13: 1})
    rows = [dataclasses.replace(ChangeRow.of(before, after, "target"), recist_followup_short_axis_mm=12.0,
                                cut_by_edge_credited=summary.credited_cut.get(1, ())),
            dataclasses.replace(ChangeRow.of(cut_node(2, 16.0), cut_node(12, 15.0), "target"),
                                recist_followup_short_axis_mm=15.0),
            ChangeRow.of(None, piece, "fragment")]
    result = SimpleNamespace(rows=rows, recist=summary, volume=VolumeSummary(1.0, 1.0, 0.0, 2, 0, 0, 0, 0),
                             sources=("SEG", "SEG"), quality=SimpleNamespace(
                                 mean_distance_mm=1.0, lung_dice=0.9, stage="affine", seconds=1.0))
    monkeypatch.setattr(api, "compare", lambda *args, **kwargs: result)
    assert main(["compare", "--baseline", "b.nrrd", "--followup", "f.nrrd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    ends = [lines[0].index(name) + len(name) for name in header]

    def cells(line):
        return {name: line[start:end].strip() for name, start, end in zip(header, [0, *ends], ends)}

    assert cells(lines[1])["recist_followup_short_axis_mm"] == "12+"
    assert cells(lines[1])["short_axis_followup_mm"] == "12"  # the partner itself is whole
    assert cells(lines[2])["recist_followup_short_axis_mm"] == "15"


def test_the_compare_csv_names_the_edges_of_the_node_the_credited_short_axis_rests_on(tmp_path):
    """The CSV's ``cut_by_edge_credited``: the edges cutting a follow-up node the credited short axis
    (``recist_followup_short_axis_mm``) is taken from (a split fragment here, its partner whole), so a CSV
    reader sees it is a lower bound as the table's "+" says (the CSV had only each scan's own edges)."""
    import dataclasses

    from lnq_napari.followup.report import ChangeRow, write_csv

    credited = dataclasses.replace(ChangeRow.of(cut_node(1, 20.0), cut_node(11, 12.0), "target"),
                                   recist_followup_short_axis_mm=12.0,
                                   cut_by_edge_credited=("inferior", "left"))
    whole = ChangeRow.of(cut_node(2, 16.0), cut_node(12, 15.0), "target")
    with open(write_csv([credited, whole], tmp_path / "c.csv"), newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["cut_by_edge_credited"] for r in table] == ["inferior left", ""]
    assert [r["cut_by_edge_followup"] for r in table] == ["", ""]


def test_api_compare_takes_find_nodes_results_as_the_model_s_nodes(pair, result):
    """``api.compare(ct0, ct1, api.find_nodes(ct0), api.find_nodes(ct1))`` was refused (got NodeResult);
    now each result's nodes are compared, named as the model's, and a reader's SEG beside one warns."""
    def found(case) -> api.NodeResult:
        labels = truth_labels(case)
        return api.NodeResult(labels, labels.with_array(np.zeros(labels.shape, np.float32)),
                              "lnq-unet-20261127-1053-356336d7+ft-20261202-1521-ae70d27d", [], [])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both the model's: nothing to warn of
        compared = api.compare(pair.baseline.ct, pair.followup.ct, found(pair.baseline), found(pair.followup))
    assert [(r.baseline_id, r.followup_id, r.status) for r in compared.rows] == [
        (r.baseline_id, r.followup_id, r.status) for r in result.rows]
    assert compared.sources == ("predicted by model lnq-unet 2026-11-27 10:53 +1 ft",) * 2
    with pytest.warns(UserWarning, match="only the follow-up scan's nodes are a reader's"):
        api.compare(pair.baseline.ct, pair.followup.ct, found(pair.baseline), truth_labels(pair.followup),
                    registration=compared.registration)

