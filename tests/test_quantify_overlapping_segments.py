"""A 3D Slicer segmentation whose node segments overlap (segments in separate layers share voxels): the
node table measures each segment's nodes whole, as 3D Slicer's Segment Statistics does; the one id per
voxel map gave every shared voxel to the later segment, so the earlier node lost volume silently."""

from __future__ import annotations

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume

SPACING = 2.0
SHAPE = (16, 20, 20)  # z, y, x


def _masks() -> tuple[np.ndarray, np.ndarray]:
    first, second = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    first[5:10, 5:10, 5:10] = 1
    second[5:10, 5:10, 7:13] = 1  # shares 5 x 5 x 3 voxels with the first
    return first, second


def _write_layers(path, masks, names=("lymph node 1", "lymph node 2")):
    import nrrd

    header = {"type": "uint8", "dimension": 4, "space": "left-posterior-superior",
              "kinds": ["list", "domain", "domain", "domain"], "encoding": "gzip",
              "space directions": np.vstack([np.full(3, np.nan), np.eye(3) * SPACING]),
              "space origin": np.zeros(3), "Segmentation_MasterRepresentation": "Binary labelmap"}
    for i, name in enumerate(names):
        header.update({f"Segment{i}_ID": f"Segment_{i + 1}", f"Segment{i}_Name": name,
                       f"Segment{i}_LabelValue": "1", f"Segment{i}_Layer": str(i)})
    nrrd.write(str(path), np.stack(masks, axis=-1), header, index_order="C")  # header order: layer first
    return path


def test_overlapping_node_segments_are_measured_whole(tmp_path):
    first, second = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    rows, summary = api.measure(seg)
    assert [r.id for r in rows] == [1, 2]
    assert [r.voxels for r in rows] == [int(first.sum()), int(second.sum())]
    assert [r.volume_mm3 for r in rows] == [pytest.approx(m.sum() * SPACING ** 3) for m in (first, second)]
    # the node tissue: each shared voxel once (the rows, each node whole, count it in both)
    assert summary.total_volume_cm3 == pytest.approx(((first > 0) | (second > 0)).sum() * SPACING ** 3 / 1000)


def test_overlapping_segments_on_a_ct_stored_flipped(tmp_path):
    """With a CT stored x-reversed (the same points): each node whole, its mean HU over all its voxels."""
    first, second = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    hu = np.where(np.arange(SHAPE[2]) < 8, 30, 70).astype(np.int16)[None, None, :].repeat(SHAPE[0], 0)
    hu = np.ascontiguousarray(hu.repeat(SHAPE[1], 1))
    hu[:, :2, :] = -1000  # some air: a CT in HU
    direction = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    origin = (SPACING * (SHAPE[2] - 1), 0.0, 0.0)
    ct = write_volume(tmp_path / "case-ct.nrrd",
                      Volume(hu[:, :, ::-1].copy(), (SPACING,) * 3, origin, direction))
    rows, _ = api.measure(seg, ct)
    assert [r.voxels for r in rows] == [int(first.sum()), int(second.sum())]
    for row, mask in zip(rows, (first, second)):
        assert row.mean_hu == pytest.approx(float(hu[mask > 0].mean()))


def test_segments_that_do_not_overlap_keep_their_table(tmp_path):
    first, second = _masks()
    second[:, :, 7:10] = 0  # now apart: touching, not shared
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    rows, _ = api.measure(seg)
    assert [(r.id, r.voxels) for r in rows] == [(1, int(first.sum())), (2, int(second.sum()))]


def test_a_map_of_one_id_per_voxel_says_it_shows_shared_voxels_once(tmp_path):
    """napari's node layer and ``compare`` read the segmentation as one id per voxel: a warning counts the
    shared voxels (the earlier node shows smaller there); ``measure``, exact, says nothing."""
    import warnings

    from lnq_napari.quantify import read_node_ids

    first, second = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    shared = int(((first > 0) & (second > 0)).sum())
    with pytest.warns(UserWarning, match=rf"{shared} voxels lie in more than one node segment"):
        ids = read_node_ids(seg)
    assert np.count_nonzero(ids.array) == int(((first > 0) | (second > 0)).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.measure(seg)


def test_voxels_shared_by_three_segments_are_counted_once(tmp_path):
    """A segment duplicated twice (3 layers on the same voxels): each shared voxel counts once."""
    from lnq_napari.quantify import read_node_ids

    first, _ = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, first, first),
                       names=("lymph node 1", "lymph node 2", "lymph node 3"))
    with pytest.warns(UserWarning, match=rf"^case.seg.nrrd: {int(first.sum())} voxels lie in more than one"):
        read_node_ids(seg)


def _crop_beyond_the_ct(tmp_path):
    """Segment 1: a node below the CT (lost on its grid) and one inside; segment 2 overlaps the second."""
    first, second = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    first[0:2, 2:4, 2:4] = 1
    first[8:12, 5:10, 5:10] = 1
    second[8:12, 5:10, 8:13] = 1
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    hu = np.full((SHAPE[0] - 4,) + SHAPE[1:], 40, np.int16)
    hu[:, :2] = -1000
    ct = write_volume(tmp_path / "ct.nrrd", Volume(hu, (SPACING,) * 3, (0.0, 0.0, 4 * SPACING)))
    return seg, ct, first, second


def test_measure_keeps_the_ids_the_id_map_shows_when_a_node_is_lost_on_the_ct(tmp_path):
    """The rows' ids are the node layer's and compare's (the id map on the CT's grid), each node whole."""
    import warnings

    from lnq_napari.io.geometry import align_to
    from lnq_napari.io.readers import read_volume
    from lnq_napari.quantify import read_node_ids

    seg, ct, first, second = _crop_beyond_the_ct(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, _ = api.measure(seg, ct)
        shown = np.asarray(align_to(read_volume(ct), read_node_ids(seg)).array)
    inside = (first[4:].sum(), second[4:].sum())  # what lies on the CT of each segment
    assert [r.id for r in rows] == [int(i) for i in np.unique(shown) if i]
    assert [r.voxels for r in rows] == [int(n) for n in inside]


def test_measure_warns_of_a_grid_change_once(tmp_path):
    seg, ct, *_ = _crop_beyond_the_ct(tmp_path)
    import warnings

    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        api.measure(seg, ct)
    said = [str(w.message) for w in heard if "grid" in str(w.message) or "dropped" in str(w.message)]
    assert said and len(said) == len(set(said))


def test_the_ct_s_midline_is_found_once_for_all_segments(tmp_path, monkeypatch):
    """The whole-CT work of the side of each node is done once, not once per segment."""
    from lnq_napari import quantify

    first, second = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, second))
    hu = np.full(SHAPE, 40, np.int16)
    hu[:, :2] = -1000
    ct = write_volume(tmp_path / "ct.nrrd", Volume(hu, (SPACING,) * 3))
    calls = []
    found = quantify.midline_x
    monkeypatch.setattr(quantify, "midline_x", lambda volume: calls.append(1) or found(volume))
    rows, _ = api.measure(seg, ct)
    assert len(rows) == 2 and len(calls) == 1


def test_a_duplicated_segment_is_one_node_s_tissue_in_the_summary(tmp_path):
    """3 layers on the same voxels (a segment duplicated in 3D Slicer): each row whole, the total once."""
    first, _ = _masks()
    seg = _write_layers(tmp_path / "case.seg.nrrd", (first, first, first),
                        names=("lymph node 1", "lymph node 2", "lymph node 3"))
    rows, summary = api.measure(seg)
    assert [r.voxels for r in rows] == [int(first.sum())] * 3
    assert summary.total_volume_cm3 == pytest.approx(first.sum() * SPACING ** 3 / 1000)
