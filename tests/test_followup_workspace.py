"""A workspace's cases grouped by patient and time point, and compared by patient (API and CLI)."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pytest
from scipy import ndimage

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import read_labels
from lnq_napari.phantom.followup import write_followup
from lnq_napari.workspace import TimePoint, Workspace

SHAPE, SPACING = (40, 128, 128), (2.6, 2.6, 6.0)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """A workspace over one phantom patient's two scans, each with its complete nodes saved as a
    correction, grouped as patient P1 at t0 and t1 (written in reverse order: the CSV order is free)."""
    root = tmp_path_factory.mktemp("followup-ws")
    t0, t1 = write_followup(root / "data", seed=3, shape=SHAPE, spacing=SPACING, scenario="progression")
    ws = Workspace.init(root / "ws", root / "data")
    cases = [p.name.replace("-ct.nrrd", "") for p in (t0, t1)]
    for case, ct in zip(cases, (t0, t1)):
        full = read_labels(str(ct).replace("-ct.nrrd", "-full.nrrd"))
        ws.add_label_version(case, full, "correction")
    groups = root / "groups.csv"
    groups.write_text(f"case,patient,timepoint\n{cases[1]},P1,t1\n{cases[0]},P1,t0\n")
    return ws, cases, groups, json.loads(open(str(t1).replace("-ct.nrrd", "-nodes.json")).read())


def test_group_records_patient_and_time_point_in_the_workspace(grouped):
    ws, cases, groups, _ = grouped
    points = api.group_cases(ws.root, groups)
    assert {p.case for p in points} == set(cases)
    again = Workspace.open(ws.root)  # on disk, for every later process
    assert again.time_points("P1") == [TimePoint(cases[0], "P1", "t0"), TimePoint(cases[1], "P1", "t1")]
    assert again.journal("group")[-1]["patients"] == 1


def test_spaces_around_a_csv_cell_are_not_part_of_the_patient_or_time_point(grouped, tmp_path):
    """"case, patient, timepoint" rows as a spreadsheet pads them: the case was stripped, the patient and
    time point were not, so " P1" and "P1" were two patients (and " 2024-01-01" no date)."""
    ws, cases, _, _ = grouped
    padded = tmp_path / "padded.csv"
    padded.write_text(f"case, patient, timepoint\n{cases[0]}, P1 , t0\n {cases[1]} ,P1, t1 \n")
    points = api.group_cases(ws.root, padded)
    assert {p.patient for p in points} == {"P1"} and {p.timepoint for p in points} == {"t0", "t1"}
    assert Workspace.open(ws.root).time_points("P1") == [TimePoint(cases[0], "P1", "t0"),
                                                         TimePoint(cases[1], "P1", "t1")]


def test_compare_by_patient_uses_the_reviewed_labels_first_to_last(grouped, tmp_path, capsys):
    ws, cases, groups, truth = grouped
    api.group_cases(ws.root, groups)
    out = tmp_path / "changes.csv"
    code = main(["compare", "--workspace", str(ws.root), "--patient", "P1", "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and out.exists() and "RECIST 1.1:" in captured.out
    first, last = Workspace.open(ws.root).time_points("P1")  # which scans, said before the table
    assert captured.out.splitlines()[0] == (f"patient P1: baseline {first.case} ({first.timepoint}), "
                                            f"follow-up {last.case} ({last.timepoint})")
    statuses = {c["status"] for c in truth["changes"]}
    result = api.compare_time_points(ws, "P1")  # no model loaded: both scans have corrections
    assert {r.status for r in result.rows} >= statuses - {"absent"}
    versions = [ws.latest_version(t.case, "correction")["version"] for t in (first, last)]
    assert result.sources == tuple(f"{t.case} correction {v}" for t, v in zip((first, last), versions))
    assert f"nodes: baseline {result.sources[0]}; follow-up {result.sources[1]}" in captured.out  # said


def test_bad_groups_and_patients_are_one_line_errors_and_change_nothing(grouped, tmp_path, capsys):
    ws, cases, _, _ = grouped
    before = (ws.root / "workspace.json").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(f"case,patient,timepoint\n{cases[0]},P2,t0\nno-such-case,P2,t1\n")
    with pytest.raises(LNQError, match="no-such-case"):
        api.group_cases(ws.root, bad)
    assert (ws.root / "workspace.json").read_text() == before  # the good row was not written either
    bad.write_text("case,who\nx,y\n")
    assert main(["workspace", "group", str(ws.root), str(bad)]) == 2
    assert "missing: patient, timepoint" in capsys.readouterr().err
    assert main(["compare", "--workspace", str(ws.root), "--patient", "nobody"]) == 2
    assert "patient 'nobody' has no grouped scans" in capsys.readouterr().err
    assert main(["compare", "--workspace", str(ws.root)]) == 2
    assert "--patient P" in capsys.readouterr().err


def test_time_points_sort_in_time_and_ambiguous_ones_are_refused(grouped, tmp_path):
    """t2 and t10 sorted as text (t10 first) and day-first dates out of order: compare by patient took
    the later scan as the baseline (a node that grew read -66 %)."""
    ws, cases, _, _ = grouped
    csv = tmp_path / "groups.csv"
    csv.write_bytes(("\ufeffcase, patient, timepoint\n"  # Excel's CSV UTF-8 (BOM) and spaced headers
                     f"{cases[0]},P1,t2\n{cases[1]},P1,t10\n").encode())
    api.group_cases(ws.root, csv)
    assert [t.case for t in Workspace.open(ws.root).time_points("P1")] == cases
    before = (ws.root / "workspace.json").read_text()
    for rows, said in ((f"{cases[0]},P1,05/01/2024\n{cases[1]},P1,01/03/2024\n", "day or month first"),
                       (f"{cases[0]},P1,2024-13-45\n{cases[1]},P1,2024-01-01\n", "is not a date"),
                       (f"{cases[0]},P1,t0\n{cases[0]},P1,t1\n", "listed more than once"),
                       (f"{cases[0]},P1,t0\n{cases[1]},P1,t0\n", "both patient P1 at t0"),
                       # sorted by their first number, by the day, or as text: the later scan first
                       (f"{cases[0]},P1,20240601\n{cases[1]},P1,2024-09-01\n", "written in different forms"),
                       (f"{cases[0]},P1,05-01-2024\n{cases[1]},P1,01-03-2024\n", "day or month first"),
                       (f"{cases[0]},P1,20241345\n{cases[1]},P1,20240101\n", "is not a date"),
                       (f"{cases[0]},P1,pre\n{cases[1]},P1,post\n", "carry no number or date")):
        csv.write_text("case,patient,timepoint\n" + rows)
        with pytest.raises(LNQError, match=said):
            api.group_cases(ws.root, csv)
        assert (ws.root / "workspace.json").read_text() == before


def test_group_without_a_csv_reads_patient_and_study_date_from_the_ct_headers(tmp_path, capsys):
    import numpy as np

    from lnq_napari.io.readers import write_volume
    from lnq_napari.io.volume import Volume

    data = tmp_path / "data"
    data.mkdir()
    dates = {"lnq2023-train-0000": "20240301", "lnq2023-train-0001": "20230915", "lnq2023-train-0002": None}
    for case, date in dates.items():
        meta = {"DICOM.PatientID": "P7"} | ({"DICOM.StudyDate": date} if date else {})
        write_volume(data / f"{case}-ct.nrrd", Volume(np.zeros((4, 6, 6), np.int16), meta=meta))
    ws = Workspace.init(tmp_path / "ws", data)
    assert main(["workspace", "group", str(ws.root)]) == 0
    assert "2 cases grouped, 1 patient" in capsys.readouterr().out
    assert [(t.case, t.timepoint) for t in ws.time_points("P7")] == [  # the case without a date left out
        ("lnq2023-train-0001", "20230915"), ("lnq2023-train-0000", "20240301")]
    bare = tmp_path / "bare"
    bare.mkdir()
    write_volume(bare / "lnq2023-train-0000-ct.nrrd", Volume(np.zeros((4, 6, 6), np.int16)))
    assert main(["workspace", "group", str(Workspace.init(tmp_path / "ws2", bare).root)]) == 2
    assert "give a CSV" in capsys.readouterr().err


def test_group_without_a_csv_reads_a_dicom_series_own_patient_and_study_date(tmp_path, capsys):
    """A workspace over DICOM series (read in place): the series' own PatientID and StudyDate group it."""
    import shutil
    from pathlib import Path

    series = Path(__file__).parent / "data" / "dcmqi" / "ct-3slice"
    shutil.copytree(series, tmp_path / "download" / "P" / "2-CT")
    ws = Workspace.init(tmp_path / "ws", tmp_path / "download")
    assert main(["workspace", "group", str(ws.root)]) == 0
    assert "1 case grouped, 1 patient" in capsys.readouterr().out
    assert [(t.case, t.timepoint) for t in ws.time_points("99000")] == [("P_2-CT", "20030417")]


def test_the_one_reader_warning_follows_where_each_scans_nodes_came_from(grouped, tmp_path):
    """A correction at one time point against the other's stored prediction compared silently; a stored
    prediction against one predicted now warned that only one scan had a SEG, though both were the model's."""
    import warnings

    from test_followup_compare import TruthPredictor

    ws0, cases, groups, _ = grouped
    full = [read_labels(str(ws0.ct_path(c)).replace("-ct.nrrd", "-full.nrrd")) for c in cases]
    said = "only the baseline scan's nodes are a reader's; the other's nodes are the model's"

    def one_reader_warning(sources: dict[int, str], name: str) -> bool:
        ws = Workspace.init(tmp_path / name, ws0.root.parent / "data")
        for k, source in sources.items():
            ws.add_label_version(cases[k], full[k], source)
        api.group_cases(ws.root, groups)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = api.compare_time_points(ws, "P1", model=TruthPredictor([full[1]]))
        return any(w.startswith(said) for w in result.warnings)

    assert one_reader_warning({0: "correction", 1: "prediction"}, "reader-vs-stored")
    assert not one_reader_warning({0: "prediction"}, "stored-vs-predicted-now")
    assert not one_reader_warning({0: "correction", 1: "correction"}, "both-readers")


@pytest.fixture(scope="module")
def three_scans(tmp_path_factory):
    """One patient's three scans: the targets shrank at t1 (t0 -> t1: 47.9 -> 41.0 mm) and grew back at t2,
    24 % over t1 but 6 % over t0."""
    tmp_path = tmp_path_factory.mktemp("three-scans")
    t0, t1 = write_followup(tmp_path / "data", seed=3, shape=SHAPE, spacing=SPACING, scenario="response")
    t2 = tmp_path / "data" / t1.name.replace("-t1-", "-t2-")  # t1's scan again: its nodes grown in-plane
    for kind in ("ct", "seg"):
        name = f"-{kind}.nrrd"
        shutil.copy(str(t1).replace("-ct.nrrd", name), str(t2).replace("-ct.nrrd", name))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    cases = [p.name.replace("-ct.nrrd", "") for p in (t0, t1, t2)]
    full = [read_labels(str(ct).replace("-ct.nrrd", "-full.nrrd")) for ct in (t0, t1)]
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    grown = ndimage.binary_dilation(np.asarray(full[1].array) > 0, structure=in_plane)
    for case, labels in zip(cases, full + [full[1].with_array(grown.astype(np.uint8))]):
        ws.add_label_version(case, labels, "correction")
    ws.group_cases([TimePoint(case, "P1", f"t{k}") for k, case in enumerate(cases)])
    return ws, cases


def test_compare_by_patient_measures_progression_from_a_smaller_sum_between(three_scans):
    """Only the first and last scans were compared: SD, where RECIST 1.1 (PD from the nadir, the smallest
    sum on study) says PD."""
    ws, cases = three_scans
    said = r"smallest sum on study: 41.0 mm at .*-t1 \(t1\), below the baseline"
    with pytest.warns(UserWarning, match=said):
        result = api.compare_time_points(ws, "P1")
    r = result.recist
    assert r.nadir_sum_mm == pytest.approx(41.0, abs=0.05) and r.baseline_sum_mm > r.followup_sum_mm * 0.9
    assert (r.target_response, r.overall) == ("PD", "PD")
    assert result.sources[1].startswith(cases[2])  # still the first against the last


def test_a_poorly_registered_scan_between_gives_no_nadir(three_scans, monkeypatch):
    from lnq_napari.followup import compare as compare_module

    ws, cases = three_scans
    monkeypatch.setattr(compare_module, "POOR_DISTANCE_MM", -1.0)  # every registration reads poor
    said = r"-t1 \(t1\) between the two is poorly registered .* not taken as the nadir"
    with pytest.warns(UserWarning, match=said):
        result = api.compare_time_points(ws, "P1")
    assert result.recist.nadir_sum_mm is None and result.recist.target_response == "SD"


def test_a_scan_between_that_read_pd_or_cr_is_named_for_the_last():
    """Only the scans between's sums were kept: a PD between went unsaid, and a target back to 10 mm after
    a CR just before read PR (EORTC FAQ "Abnormal lymph node": PD after a definitive CR)."""
    from types import SimpleNamespace

    from test_followup_recist import node

    from lnq_napari.api import _earlier_responses
    from lnq_napari.followup.recist import recist

    last = SimpleNamespace(recist=recist([node(1, 20.0), node(2, 20.0)], [node(11, 10.0), node(12, 7.0)],
                                         {1: 11, 2: 12}))
    assert last.recist.overall == "PR" and _earlier_responses([("s1 (t1)", "SD")], last, "s1 (t1)") == ""
    said = _earlier_responses([("s1 (t1)", "PD"), ("s2 (t2)", "CR")], last, "s2 (t2)")
    assert said.startswith("scan(s) between read s1 (t1) PD, s2 (t2) CR (each compared with the first); "
                           "the last reads PR")
    assert "progression at an earlier scan ends the response" in said
    assert "target node(s) 1 are 10 mm or more again after the CR at s2 (t2)" in said
    assert "target node(s)" not in _earlier_responses([("s2 (t2)", "CR"), ("s3", "SD")], last, "s3")
    sd = SimpleNamespace(recist=recist([node(1, 20.0)], [node(11, 18.0)], {1: 11}))
    assert "SD is a continuing PR if that PR was confirmed" in _earlier_responses([("s1", "PR")], sd, "s1")


def test_the_summary_line_gives_the_change_from_the_nadir_when_pd_is_measured_from_it(three_scans, capsys):
    """The summary printed "sum 47.9 -> 50.8 mm (+6 %); targets PD": PD from a nadir it did not show."""
    ws, cases = three_scans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["compare", "--workspace", str(ws.root), "--patient", "P1"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("RECIST 1.1:"))
    assert re.search(r"\(\+[\d.]+ %\); nadir 41\.0 mm \(\+2\d %\); targets PD", line), line


def _with_ball(labels, radius_mm: float = 6.5):
    """``labels`` with a ball (a new node, short axis about 13-14 mm) in an empty place near the middle."""
    array = np.asarray(labels.array).copy()
    zz, yy, xx = np.indices(array.shape)
    near = ndimage.binary_dilation(array > 0, iterations=3)
    cz, cy, cx = (n // 2 for n in array.shape)
    for dx in range(0, 40, 2):
        ball = ((xx - cx - dx) * SPACING[0]) ** 2 + ((yy - cy) * SPACING[1]) ** 2 \
            + ((zz - cz) * SPACING[2]) ** 2 <= radius_mm ** 2
        if not near[ball].any():
            break
    array[ball] = array.max() + 1
    return labels.with_array(array)


@pytest.mark.parametrize("between_too", [True, False])
def test_an_equivocal_new_node_still_there_at_the_next_scan_is_confirmed_pd(tmp_path, between_too):
    """RECIST 1.1 4.3.2: an equivocal new lesion confirmed at the next scan is PD, dated to the scan that
    first showed it. The last scan was compared with the baseline alone, so the node read "equivocal,
    confirm at the next scan" at every scan, never PD."""
    t0, t1 = write_followup(tmp_path / "data", seed=3, shape=SHAPE, spacing=SPACING, scenario="stable")
    t2 = tmp_path / "data" / t1.name.replace("-t1-", "-t2-")
    for name in ("-ct.nrrd", "-seg.nrrd"):
        shutil.copy(str(t1).replace("-ct.nrrd", name), str(t2).replace("-ct.nrrd", name))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    cases = [p.name.replace("-ct.nrrd", "") for p in (t0, t1, t2)]
    full = [read_labels(str(ct).replace("-ct.nrrd", "-full.nrrd")) for ct in (t0, t1)]
    grown = _with_ball(full[1])
    for case, labels in zip(cases, (full[0], grown if between_too else full[1], grown)):
        ws.add_label_version(case, labels, "correction")
    ws.group_cases([TimePoint(case, "P1", f"t{k}") for k, case in enumerate(cases)])
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        r = api.compare_time_points(ws, "P1").recist
    said = [str(w.message) for w in heard if "confirmed (RECIST 1.1 4.3.2)" in str(w.message)]
    if between_too:
        assert r.overall == "PD" and r.equivocal_new == () and len(r.new_lesions) == 1
        assert r.confirmed_new == {r.new_lesions[0]: f"{cases[1]} (t1)"}
        assert len(said) == 1 and f"dated to {cases[1]} (t1)" in said[0]
    else:  # first seen at the last scan: equivocal still
        assert (r.overall, r.new_lesions, len(r.equivocal_new), r.confirmed_new) == ("SD", (), 1, {})
        assert not said


def test_a_target_back_at_10_mm_up_to_float_rounding_is_named_after_a_cr():
    """The reappearance check used its own ``>= 10.0``: a target at 10 mm less float noise read "< 10 mm"
    there and ">= 10 mm" (:func:`~lnq_napari.quantify.reaches`) in the response beside it."""
    from types import SimpleNamespace

    from test_followup_recist import node

    from lnq_napari.api import _earlier_responses
    from lnq_napari.followup.recist import recist

    last = SimpleNamespace(recist=recist([node(1, 20.0), node(2, 20.0)],
                                         [node(11, 10.0 - 1e-9), node(12, 7.0)], {1: 11, 2: 12}))
    assert last.recist.target_response == "PR"  # not CR: target 1 reaches 10 mm
    said = _earlier_responses([("s2 (t2)", "CR")], last, "s2 (t2)")
    assert "target node(s) 1 are 10 mm or more again after the CR at s2 (t2)" in said
