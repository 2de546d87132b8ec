"""One-to-one node matching after registration, on hand-made label volumes."""

from __future__ import annotations

import numpy as np

from lnq_napari.followup.match import match_nodes
from lnq_napari.followup.register import Registration
from lnq_napari.io.volume import Volume
from lnq_napari.quantify import measure_nodes


def ball(shape, centre, radius) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def labels(balls, shape=(40, 64, 64)) -> Volume:
    out = np.zeros(shape, dtype=np.int32)
    for nid, (centre, radius) in balls.items():
        out[ball(shape, centre, radius)] = nid
    return Volume(out, spacing=(1.0, 1.0, 1.0))


def shifted(shift_xyz) -> Registration:
    import SimpleITK as sitk

    return Registration(sitk.TranslationTransform(3, [float(v) for v in shift_xyz]), "rigid", 0.0, 1.0, 1.0,
                        (0.0, 0.0, 0.0))


def test_nodes_pair_by_overlap_through_the_registration_and_leftovers_stay_unmatched():
    base = labels({1: ((10, 20, 20), 5), 2: ((10, 20, 44), 6), 3: ((30, 45, 30), 4)})
    # follow-up: the patient lies 6 mm further in +x; node 2 grew, node 3 vanished, node 7 is new
    follow = labels({4: ((10, 20, 26), 5), 5: ((10, 20, 50), 8), 7: ((30, 10, 50), 5)})
    b_rows, f_rows = measure_nodes(base), measure_nodes(follow)
    pairs = match_nodes(base, follow, b_rows, f_rows, shifted((6.0, 0.0, 0.0)))
    assert {(p.baseline_id, p.followup_id) for p in pairs} == {(1, 4), (2, 5)}
    one = next(p for p in pairs if p.baseline_id == 1)
    assert one.dice > 0.95 and one.distance_mm < 0.5
    # without the registration's shift the two left-hand nodes still overlap, but less
    plain = match_nodes(base, follow, b_rows, f_rows, shifted((0.0, 0.0, 0.0)))
    assert next(p for p in plain if p.baseline_id == 1).dice < one.dice


def test_the_assignment_is_one_to_one_and_prefers_the_closer_node():
    base = labels({1: ((20, 30, 20), 4), 2: ((20, 30, 36), 4)})
    follow = labels({1: ((20, 30, 22), 4), 2: ((20, 30, 34), 4)})  # each a little towards the middle
    pairs = match_nodes(base, follow, measure_nodes(base), measure_nodes(follow), shifted((0.0, 0.0, 0.0)))
    assert sorted((p.baseline_id, p.followup_id) for p in pairs) == [(1, 1), (2, 2)]


def test_far_apart_nodes_that_do_not_overlap_are_not_matched():
    base = labels({1: ((20, 20, 15), 4)})
    follow = labels({1: ((20, 20, 45), 4)})  # 30 mm away
    assert match_nodes(base, follow, measure_nodes(base), measure_nodes(follow), shifted((0, 0, 0))) == []
    near = labels({1: ((20, 20, 24), 4)})  # 9 mm away, no overlap: within reach
    pairs = match_nodes(base, near, measure_nodes(base), measure_nodes(near), shifted((0, 0, 0)))
    assert [(p.baseline_id, p.followup_id) for p in pairs] == [(1, 1)] and pairs[0].dice == 0.0
