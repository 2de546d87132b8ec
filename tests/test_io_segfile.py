"""3D Slicer .seg.nrrd: choosing segments when reading, writing files slicerio/Slicer open."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import nrrd
import numpy as np
import pytest
import slicerio
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from lnq_napari.errors import LNQError
from lnq_napari.io import Volume, read_labels, read_volume, write_seg_nrrd, write_volume

SEGMENTATION = Path(slicerio.get_testdata_file("Segmentation.seg.nrrd"))
OVERLAPPING = Path(slicerio.get_testdata_file("SegmentationOverlapping.seg.nrrd"))
CT = Path(slicerio.get_testdata_file("CTChest4.nrrd"))


def slicerio_mask(path: Path, name: str) -> np.ndarray:
    """Oracle: slicerio's own mask of a segment, in (z, y, x) order."""
    segmentation = slicerio.read_segmentation(str(path))
    segment = slicerio.segment_from_name(segmentation, name)
    return slicerio.segment_mask(segmentation, segment).transpose(2, 1, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def ct() -> Volume:
    return read_volume(CT)


@pytest.mark.parametrize(("segment", "name"), [("left lung", "left lung"), ("RIBS", "ribs"), (6, "left lung"),
                                               ("Segment_2", "cervical vertebral column")])
def test_choose_segment_by_name_id_or_value(segment, name, ct):
    labels = read_labels(SEGMENTATION, reference=ct, segment=segment)
    expected = slicerio_mask(SEGMENTATION, name)
    assert expected.any()
    np.testing.assert_array_equal(labels.array, expected)
    assert labels.array.dtype == np.uint8
    assert labels.meta["selected_segments"] == [name]
    assert (labels.spacing, labels.origin, labels.direction) == (ct.spacing, ct.origin, ct.direction)


def test_unknown_segment_lists_the_segments():
    with pytest.raises(LNQError, match="has no segment 'spleen'.*'left lung'"):
        read_labels(SEGMENTATION, segment="spleen")
    with pytest.raises(LNQError, match="has no segment 42"):
        read_labels(SEGMENTATION, segment=42)


def test_without_node_segment_all_segments_are_used_with_a_warning():
    with pytest.warns(UserWarning, match="no segment is named or coded like a lymph node; using all 7"):
        labels = read_labels(SEGMENTATION)
    voxels = slicerio.read_segmentation(str(SEGMENTATION))["voxels"].transpose(2, 1, 0)
    np.testing.assert_array_equal(labels.array, (voxels != 0).astype(np.uint8))


def test_overlapping_layers():
    sphere = read_labels(OVERLAPPING, segment="overlapping sphere")
    ribs = read_labels(OVERLAPPING, segment="ribs")
    np.testing.assert_array_equal(sphere.array, slicerio_mask(OVERLAPPING, "overlapping sphere"))
    np.testing.assert_array_equal(ribs.array, slicerio_mask(OVERLAPPING, "ribs"))
    assert (sphere.array & ribs.array).any()  # they do overlap: that is why they are in two layers
    with pytest.raises(LNQError, match="label value 1 is used by several segments"):
        read_labels(OVERLAPPING, segment=1)
    with pytest.warns(UserWarning):
        union = read_labels(OVERLAPPING)
    assert np.all(union.array >= sphere.array) and np.all(union.array >= ribs.array)
    with pytest.raises(LNQError, match="4D.*a label file: give it where labels go"):
        read_volume(OVERLAPPING)


def _random_segments(path, ct, names: list[str], seed: int) -> tuple:
    """A 3D Slicer segmentation on ``ct``'s grid with one random segment (1 % of voxels) per name, written to
    ``path``; the path and the masks by name (i j k)."""
    shape_ijk = ct.shape[::-1]
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = ct.direction_matrix * np.asarray(ct.spacing)[None, :]
    ijk_to_lps[:3, 3] = ct.origin
    segmentation = slicerio.create_segmentation(shape_ijk, ijk_to_lps)
    rng = np.random.default_rng(seed)
    masks = {name: rng.random(shape_ijk) < 0.01 for name in names}
    for name, mask in masks.items():
        slicerio.add_segment(segmentation, mask, {"name": name})
    slicerio.write_segmentation(str(path), segmentation)
    return path, masks


@pytest.mark.parametrize("names, nodes", [
    (["Trachea", "Mediastinal Lymph Nodes", "aorta"], ["Mediastinal Lymph Nodes"]),
    # radiologists' abbreviation; the aorta beside them was counted as a node (every segment used, with a
    # warning, and a workspace took it into the case's labels)
    (["LN 4R", "aorta", "LN7", "LNQ scratch"], ["LN 4R", "LN7"]),
])
def test_segments_named_like_nodes_are_chosen(tmp_path, ct, names, nodes):
    path, masks = _random_segments(tmp_path / "named.seg.nrrd", ct, names, seed=len(names))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = read_labels(path, reference=ct)
    assert labels.meta["selected_segments"] == nodes
    expected = np.logical_or.reduce([masks[name] for name in nodes]).transpose(2, 1, 0)
    np.testing.assert_array_equal(labels.array, expected.astype(np.uint8))


def test_segments_coded_as_lymph_nodes_are_chosen_whatever_their_names(tmp_path, monkeypatch):
    """Slicer users name node segments by station ("4R", "7") and keep the terminology "Lymph node"
    (SNOMED CT 59441001) they picked: those are the node segments, as a DICOM SEG's coded segments are;
    the aorta beside them was counted as a node (every segment used, names matching no node)."""
    from lnq_napari import api

    shape_ijk = (30, 20, 4)
    segmentation = slicerio.create_segmentation(shape_ijk, np.diag([0.8, 0.8, 3.0, 1.0]))
    node = {"contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
            "category": ["SCT", "123037004", "Anatomical Structure"],
            "type": ["SCT", "59441001", "Lymph node"]}
    aorta = {**node, "type": ["SCT", "15825003", "Aorta"]}
    older = {**node, "type": ["SRT", "T-C4000", "Lymph node"]}  # SNOMED RT, as older Slicer files code it
    masks = {name: np.zeros(shape_ijk, bool) for name in ("4R", "7", "aorta")}
    masks["4R"][2:6, 2:6, 1:3], masks["7"][10:14, 2:6, 1:3], masks["aorta"][20:28, 5:15, :] = True, True, True
    for name, terminology in (("4R", node), ("7", older), ("aorta", aorta)):
        slicerio.add_segment(segmentation, masks[name], {"name": name, "terminology": terminology})
    path = tmp_path / "stations.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "using all segments"
        labels = read_labels(path)
        rows, summary = api.measure(path)
    assert labels.meta["selected_segments"] == ["4R", "7"]
    np.testing.assert_array_equal(labels.array, (masks["4R"] | masks["7"]).transpose(2, 1, 0))
    assert summary.n_nodes == 2 and sorted(r.voxels for r in rows) == [32, 32]

    def refuse(*args, **kwargs):
        raise ValueError("a header slicerio rejects")

    monkeypatch.setattr(slicerio, "read_segmentation", refuse)  # the keys read by lnq-napari itself
    assert read_labels(path).meta["selected_segments"] == ["4R", "7"]


def test_written_seg_opens_in_slicerio_with_name_value_and_provenance(tmp_path, ct):
    array = np.zeros(ct.shape, dtype=np.int16)
    array[10:14, 40:50, 60:75] = 1
    array[20, 30, 31] = 255  # any non-zero -> 1
    labels = ct.with_array(array)
    extra = {"model_version": "lnq-unet 0.3 (sha 1a2b)", "source": "predict",
             "created": "2026-11-27T10:00:00"}
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", labels, extra=extra)
    segmentation = slicerio.read_segmentation(str(path))
    (segment,) = segmentation["segments"]
    assert segment["name"] == "lymph node" and segment["labelValue"] == 1 and segment["layer"] == 0
    assert segment["terminology"]["type"][1] == "59441001"  # SNOMED CT lymph node
    np.testing.assert_allclose(segment["color"], [0.85, 0.65, 0.13])
    assert segment["extent"] == [31, 74, 30, 49, 10, 20]
    np.testing.assert_array_equal(segmentation["voxels"].transpose(2, 1, 0), (array != 0).astype(np.uint8))
    expected_ijk = np.eye(4)
    expected_ijk[:3, :3] = ct.direction_matrix * np.asarray(ct.spacing)[None, :]
    expected_ijk[:3, 3] = ct.origin
    np.testing.assert_allclose(segmentation["ijkToLPS"], expected_ijk, atol=1e-9)
    header = nrrd.read_header(str(path))
    assert header["encoding"] == "gzip" and header["type"] in ("uint8", "unsigned char")
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_SourceRepresentation"] == "Binary labelmap"
    back = read_labels(path, reference=ct)
    for key, value in extra.items():
        assert back.meta[key] == value
    assert back.meta["selected_segments"] == ["lymph node"]
    np.testing.assert_array_equal(back.array, (array != 0).astype(np.uint8))


def test_empty_mask_extent_and_write_volume_seg_suffix(tmp_path, ct):
    path = write_volume(tmp_path / "empty.seg.nrrd", ct.with_array(np.zeros(ct.shape, dtype=np.uint8)))
    assert nrrd.read_header(str(path))["Segment0_Extent"] == "0 -1 0 -1 0 -1"
    assert read_labels(path).array.sum() == 0


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, ct, monkeypatch):
    labels = ct.with_array((ct.array > 200).astype(np.uint8))
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", labels)
    before = path.read_bytes()

    def broken_write(filename, data, header, **kwargs):
        Path(filename).write_bytes(b"NRRD0005\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(nrrd, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_seg_nrrd(path, labels.with_array(np.zeros(ct.shape, dtype=np.uint8)))
    with pytest.raises(OSError, match="disk full"):
        write_seg_nrrd(tmp_path / "new.seg.nrrd", labels)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.seg.nrrd"]


@pytest.mark.parametrize("extra", [{"type": "x"}, {"a:b": "x"}, {"Segment0_Name": "x"},
                                   {"note": "two\nlines"}, {"Segmentation_Foo": "x"}])
def test_bad_extra_fields_are_refused_before_writing(tmp_path, ct, extra):
    with pytest.raises(LNQError):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", ct.with_array(np.zeros(ct.shape, np.uint8)), extra=extra)
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_nrrd_name(tmp_path, ct):
    with pytest.raises(LNQError, match="seg.nrrd"):
        write_seg_nrrd(tmp_path / "x.nii.gz", ct.with_array(np.zeros(ct.shape, np.uint8)))


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 7)] * 3), spacing=st.tuples(*[st.floats(0.3, 6.0)] * 3),
       origin=st.tuples(*[st.floats(-400.0, 400.0)] * 3), seed=st.integers(0, 2**31 - 1),
       flips=st.tuples(*[st.booleans()] * 3))
def test_seg_round_trip_random_grids(shape, spacing, origin, seed, flips):
    rng = np.random.default_rng(seed)
    direction = Rotation.random(random_state=seed).as_matrix() * np.where(flips, -1.0, 1.0)[None, :]
    labels = Volume((rng.random(shape) < 0.3).astype(np.uint8), spacing, origin, direction.ravel())
    with tempfile.TemporaryDirectory() as tmp:
        path = write_seg_nrrd(Path(tmp) / "r.seg.nrrd", labels, extra={"seed": str(seed)})
        back = read_labels(path)
        np.testing.assert_array_equal(back.array, labels.array)
        np.testing.assert_allclose(back.spacing, spacing, atol=1e-9, rtol=0)
        np.testing.assert_allclose(back.origin, origin, atol=1e-9, rtol=0)
        np.testing.assert_allclose(back.direction, direction.ravel(), atol=1e-9, rtol=0)
        assert back.meta["seed"] == str(seed)
        ijk = slicerio.read_segmentation(str(path), skip_voxels=True)["ijkToLPS"]
        np.testing.assert_allclose(ijk[:3, :3], direction * np.asarray(spacing)[None, :], atol=1e-9)


def test_atomic_write_gives_files_the_usual_mode(tmp_path):
    import os

    from lnq_napari.io.atomic import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_segmentation_scored_against_itself_scores_every_node(tmp_path):
    """A 3D Slicer segmentation with two node segments (label values 1 and 2) given as the prediction was
    read raw, label 1 alone: evaluate(seg, seg) gave Dice 0.47; its node segments are now the prediction."""
    from lnq_napari import api

    shape_ijk, spacing = (40, 30, 6), (0.7, 0.7, 3.0)
    segmentation = slicerio.create_segmentation(shape_ijk, np.diag([*spacing, 1.0]))
    first, second = np.zeros(shape_ijk, bool), np.zeros(shape_ijk, bool)
    first[2:18, 2:18, 1:5], second[22:38, 12:28, 1:5] = True, True  # 11 mm wide: counted nodes
    for name, mask in (("lymph node 1", first), ("lymph node 2", second)):
        slicerio.add_segment(segmentation, mask, {"name": name})
    path = tmp_path / "nodes.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    row = api.evaluate(path, path).cases[0].scores
    assert row.dice == 1.0 and row.nodes_gt == row.nodes_hit == 2 and row.fp_nodes == 0


def test_node_segments_touching_are_measured_apart(tmp_path):
    """Two touching nodes drawn as two segments (as Slicer users draw them) and a segment holding two
    separate nodes: four nodes, each with its own volume (the union of the segments read as three,
    the touching pair as one node of twice the size); read_labels still gives the 0/1 union."""
    from lnq_napari import api

    shape_ijk, spacing = (40, 30, 6), (0.7, 0.7, 3.0)
    segmentation = slicerio.create_segmentation(shape_ijk, np.diag([*spacing, 1.0]))
    left, right, pair = (np.zeros(shape_ijk, bool) for _ in range(3))
    left[5:20, 5:25, 1:4], right[20:35, 5:25, 1:4] = True, True  # side by side, touching
    pair[2:6, 26:29, 1:3], pair[30:34, 26:29, 1:3] = True, True  # apart, one segment
    for name, mask in (("lymph node 1", left), ("lymph node 2", right), ("lymph nodes", pair)):
        slicerio.add_segment(segmentation, mask, {"name": name})
    path = tmp_path / "nodes.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)

    rows, summary = api.measure(path)
    assert summary.n_nodes == 4
    assert sorted(r.voxels for r in rows) == sorted([int(m.sum()) for m in (left, right)] + [24, 24])
    union = read_labels(path)
    assert set(np.unique(union.array)) == {0, 1}
    assert int(union.array.sum()) == int((left | right | pair).sum())


def test_a_slicer_4_10_segmentation_keeps_every_segment(tmp_path):
    """3D Slicer 4.10 and earlier wrote one segment per layer with no ``SegmentN_Layer`` or
    ``_LabelValue`` keys (Slicer's reader puts segment i in layer i): every segment after the first was
    left out ("label values that no segment describes")."""
    from lnq_napari import api

    first, second = np.zeros((2, 6, 30, 40), np.uint8)  # z, y, x
    first[1:4, 5:20, 5:15], second[1:4, 5:20, 25:35] = 1, 1
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": [[np.nan] * 3, [0.7, 0, 0], [0, 0.7, 0], [0, 0, 3.0]],
              "space origin": [0.0, 0.0, 0.0], "Segmentation_MasterRepresentation": "Binary labelmap"}
    for i in range(2):
        header.update({f"Segment{i}_ID": f"Segment_{i + 1}", f"Segment{i}_Name": f"lymph node {i + 1}",
                       f"Segment{i}_Extent": "0 39 0 29 0 5"})
    path = tmp_path / "old.seg.nrrd"
    layers = np.stack([first, second]).transpose(0, 3, 2, 1)  # NRRD order: layer, x, y, z
    nrrd.write(str(path), np.ascontiguousarray(layers), header, index_order="F")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "values no segment describes"
        union = read_labels(path)
        rows, summary = api.measure(path)
    assert int(union.array.sum()) == int(first.sum() + second.sum())
    assert summary.n_nodes == 2 and sorted(r.voxels for r in rows) == [450, 450]
