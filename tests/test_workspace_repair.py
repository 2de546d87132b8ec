"""workspace repair: a label file whose vNNN.json is missing or damaged gets it back from its header, with
its number, parent, edits, model version and time; what cannot be recovered is said; files a save may be
writing, unreadable provenance and torn label files are left alone (never deleted)."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import warnings

import numpy as np
import pytest
from conftest import one_case_workspace

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace

CASE = "lnq2023-train-0000"
MARK = {"centre_zyx": [2, 3, 3], "radius_mm": 10.0}
REJECTED = {"centre_zyx": [1, 1, 1], "radius_mm": 4.0}


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """v001 original, v002 prediction, v003 the reviewer's correction of v002 (marks and a rejection)."""
    ws = one_case_workspace(tmp_path / "my ws", (4, 8, 8), node_end=5)
    labels = ws.read_labels(CASE, "v001")
    ws.add_label_version(CASE, labels, "prediction", model_version="bundled")
    ws.add_label_version(CASE, labels, "correction", model_version="bundled", edits=5, parent="v002",
                         marked=[MARK], rejected=[REJECTED], origin="/data/ct a")
    return ws


def _folder(ws: Workspace) -> pathlib.Path:
    return ws.root / "labels" / CASE


def _aged(*paths: pathlib.Path) -> None:
    for path in paths:
        stamp = path.stat().st_mtime - 2 * 3600
        os.utime(path, (stamp, stamp))


def _files(ws: Workspace) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in _folder(ws).iterdir()}


def test_a_deleted_provenance_is_rebuilt_from_the_header_keeping_number_and_parent(ws, capsys):
    """The warning's fix was to open the file in napari and Save: a new version, parented on the newest one
    (a prediction `next` stored meanwhile), with 0 edits and no model version. Repair keeps v003 as it was
    saved but for the lists only its JSON held, and says so."""
    side = _folder(ws) / "v003.json"
    before = json.loads(side.read_text())
    side.unlink()
    with pytest.warns(UserWarning, match=r"workspace repair '.*my ws'"):
        ws.warn_lost_corrections("ranked")
    assert main(["workspace", "repair", str(ws.root)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{CASE} v003: v003.json rebuilt from the header of v003.seg.nrrd (correction, parent "
                   "v002, edits 5, model bundled); not recoverable: its marked nodes and rejected "
                   "suggestions, if it had any (kept only in v003.json): recorded as lost, so a fine-tune "
                   "takes nothing it removed as background")
    after = ws.version_info(CASE, "v003")
    assert after["marks_lost"] is True and "rejections_lost" not in after  # lost rejections: nothing taught
    assert {k: v for k, v in after.items() if k not in ("repaired", "marks_lost")} == {
        k: v for k, v in before.items() if k not in ("marked", "rejected")}
    assert ws.latest_version(CASE, "correction")["version"] == "v003"
    assert ws.journal("repair")[-1]["versions"] == [f"{CASE}/v003"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ws.warn_lost_corrections("ranked")  # nothing left to warn of
    assert main(["workspace", "repair", str(ws.root)]) == 0
    said = capsys.readouterr().out.strip()
    assert said == f"nothing to repair: every label file of {ws.root} has its provenance"


def test_a_provenance_edited_beyond_use_keeps_its_marks_and_is_kept_aside(ws):
    side = _folder(ws) / "v003.json"
    damaged = json.dumps({**json.loads(side.read_text()), "bytes": "many"}).encode()
    side.write_bytes(damaged)
    _aged(side)
    (repair,) = api.repair_workspace(ws.root)
    assert repair.repaired and repair.note.endswith("; nothing lost"), repair.note
    info = ws.version_info(CASE, "v003")
    assert info["marked"] == [MARK] and info["rejected"] == [REJECTED] and info["edits"] == 5
    assert "marks_lost" not in info and "rejections_lost" not in info
    assert (_folder(ws) / "v003.json.damaged").read_bytes() == damaged


def test_a_save_that_may_still_be_writing_is_left_alone(ws):
    """An empty placeholder beside a label file changed within the hour is a save in flight."""
    side = _folder(ws) / "v003.json"
    side.write_text("")
    before = _files(ws)
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and "a save may still be writing it" in repair.note
    assert _files(ws) == before and ws.journal("repair") == []


def test_a_provenance_that_cannot_be_read_is_a_permission_problem_not_restored(ws, monkeypatch):
    """Another account's save under umask 077: the warning said "restore v003.json from a backup"."""
    side = _folder(ws) / "v003.json"
    _aged(side, _folder(ws) / "v003.seg.nrrd")
    read_text = pathlib.Path.read_text

    def refused(self, *args, **kwargs):
        if self == side:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", refused)
    before = _files(ws)
    with pytest.warns(UserWarning) as caught:
        ws.warn_lost_corrections("ranked")
    (said,) = [str(w.message) for w in caught]
    assert "a permission problem, not damage" in said and "backup" not in said and "repair" not in said
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and "a permission problem" in repair.note and "chmod a+r" in repair.note
    assert _files(ws) == before


def test_a_torn_label_file_is_named_with_the_way_out_and_never_deleted(ws):
    """An old version's killed save: a label file cut short beside an empty placeholder, an hour old."""
    folder = _folder(ws)
    whole = (folder / "v003.seg.nrrd").read_bytes()
    (folder / "v004.seg.nrrd").write_bytes(whole[:len(whole) - 40])
    (folder / "v004.json").write_text("")
    _aged(folder / "v004.seg.nrrd", folder / "v004.json")
    before = _files(ws)
    (repair,) = api.repair_workspace(ws.root)
    assert not repair.repaired and repair.version == "v004"
    assert "though its header says correction: a torn leftover; delete" in repair.note, repair.note
    assert "(repair never deletes)" in repair.note
    assert _files(ws) == before


def test_a_torn_correction_s_warning_and_exit_status_say_delete_or_restore_not_repair(ws, capsys):
    """The warning said "run lnq-napari workspace repair ... to rebuild it", which then left the file alone
    (and exited 0, as when all was rebuilt)."""
    folder = _folder(ws)
    whole = (folder / "v003.seg.nrrd").read_bytes()
    (folder / "v004.seg.nrrd").write_bytes(whole[:len(whole) - 40])
    _aged(folder / "v004.seg.nrrd")
    with pytest.warns(UserWarning) as caught:
        ws.warn_lost_corrections("ranked")
    (said,) = [str(w.message) for w in caught]
    assert "workspace repair" not in said and "a torn leftover" in said, said
    assert f"delete {shlex.quote(str(folder / 'v004.seg.nrrd'))}" in said and "from a backup" in said, said
    assert main(["workspace", "repair", str(ws.root)]) == 1
    assert "v004: v004.seg.nrrd cannot be read" in capsys.readouterr().out


def _other_workspace(tmp_path: pathlib.Path, shape: tuple[int, int, int]) -> Workspace:
    """A workspace of the same case id on a CT of ``shape`` (another patient's, or another time point)."""
    ct = np.random.default_rng(1).integers(-1000, 400, shape).astype(np.int16)
    seg = np.zeros(shape, np.uint8)
    seg[1:3, 1:3, 1:3] = 1
    write_volume(tmp_path / "other" / f"{CASE}-ct.nrrd", Volume(ct))
    write_volume(tmp_path / "other" / f"{CASE}-seg.nrrd", Volume(seg))
    return Workspace.init(tmp_path / "other ws", tmp_path / "other")


@pytest.mark.parametrize("copied", ["another version", "another grid"])
def test_a_label_file_copied_in_is_left_alone_never_made_this_case_s_correction(ws, tmp_path, capsys, copied):
    """Repair made a label file copied from another case (or version) the case's newest correction, with
    the other one's parent; on another grid every fine-tune then stopped ("the CT file was replaced")."""
    folder = _folder(ws)
    if copied == "another version":  # v003 copied as v009: its header names v003
        (folder / "v009.seg.nrrd").write_bytes((folder / "v003.seg.nrrd").read_bytes())
        want = f"its header names {CASE} v003: copied here from there?; "
    else:  # another workspace's v009 of a case of the same id, on another grid: its header names v009
        other = _other_workspace(tmp_path, (5, 6, 7))
        while other.add_label_version(CASE, other.read_labels(CASE, "v001"), "correction") != "v009":
            pass
        (folder / "v009.seg.nrrd").write_bytes((other.root / "labels" / CASE / "v009.seg.nrrd").read_bytes())
        want = f"v009.seg.nrrd and the CT of {CASE} are on different grids"
    _aged(folder / "v009.seg.nrrd")
    before = _files(ws)
    with pytest.warns(UserWarning) as caught:
        ws.warn_lost_corrections("ranked")
    (said,) = [str(w.message) for w in caught]
    assert want in said and "workspace repair" not in said, said
    assert main(["workspace", "repair", str(ws.root)]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{CASE} v009: ") and want in out and len(out.splitlines()) == 1, out
    assert _files(ws) == before and ws.latest_version(CASE, "correction")["version"] == "v003"
    assert ws.journal("repair") == []


def _removed_and_marked(tmp_path: pathlib.Path) -> tuple[Workspace, tuple[slice, ...]]:
    """v002 a prediction of two nodes; v003 the correction that keeps one, removes the other and marks it
    "node here, outline unknown" (the growth leaked)."""
    shape = (8, 16, 16)
    ct = np.random.default_rng(0).integers(-1000, 400, shape).astype(np.int16)
    kept, removed = (slice(2, 5), slice(2, 6), slice(2, 6)), (slice(2, 5), slice(9, 13), slice(9, 13))
    predicted = np.zeros(shape, np.uint8)
    predicted[kept] = predicted[removed] = 1
    corrected = np.zeros(shape, np.uint8)
    corrected[kept] = 1
    write_volume(tmp_path / "data2" / f"{CASE}-ct.nrrd", Volume(ct))
    write_volume(tmp_path / "data2" / f"{CASE}-seg.nrrd", Volume(corrected))
    ws = Workspace.init(tmp_path / "ws2", tmp_path / "data2")
    ws.add_label_version(CASE, Volume(predicted), "prediction", model_version="bundled")
    ws.add_label_version(CASE, Volume(corrected), "correction", model_version="bundled", edits=2,
                         parent="v002", marked=[{"centre_zyx": [3, 11, 11], "radius_mm": 6.0}])
    return ws, removed


def test_a_repaired_correction_whose_marks_are_lost_teaches_nothing_it_removed_as_background(tmp_path):
    """Lost marks read as no marks: the fine-tune took the removed, marked node for one removed as false
    and taught it as background."""
    from lnq_napari.finetuning.reviewed import read_reviewed
    from lnq_napari.training.labels import BACKGROUND

    ws, removed = _removed_and_marked(tmp_path)
    quiet = np.zeros((8, 16, 16), bool)  # no known background from the CT itself
    marked = read_reviewed(ws, CASE, "v003").states(quiet)
    assert not (marked[removed] == BACKGROUND).any()  # the mark keeps it unknown, its core a node
    side = ws.root / "labels" / CASE / "v003.json"
    side.unlink()
    (repair,) = api.repair_workspace(ws.root)
    reviewed = read_reviewed(ws, CASE, "v003")
    assert reviewed.marks == () and not (reviewed.states(quiet)[removed] == BACKGROUND).any()
    assert repair.repaired and "recorded as lost" in repair.note and reviewed.marks_lost


def test_an_unreadable_mark_in_a_damaged_provenance_is_dropped_and_counted_as_lost(ws):
    """Repair kept a hand-edited list as it was and said "nothing lost"; the fine-tune then ended in a
    KeyError traceback (centre_zyx)."""
    from lnq_napari.finetuning.reviewed import read_reviewed

    side = _folder(ws) / "v003.json"
    old = json.loads(side.read_text())
    side.write_text(json.dumps({**old, "source": None, "marked": [MARK, {"x": 1}]}))
    _aged(side)
    (repair,) = api.repair_workspace(ws.root)
    assert repair.repaired and "not recoverable: 1 of its marked entries" in repair.note, repair.note
    info = ws.version_info(CASE, "v003")
    assert info["marked"] == [MARK] and info["rejected"] == [REJECTED] and info["marks_lost"] is True
    assert "rejections_lost" not in info
    assert read_reviewed(ws, CASE, "v003").marks_lost


def test_another_version_s_damaged_provenance_lends_no_marks(ws):
    side = _folder(ws) / "v003.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "version": "v002"}))
    _aged(side)
    (repair,) = api.repair_workspace(ws.root)
    assert repair.repaired and "its damaged v003.json is v002's" in repair.note, repair.note
    info = ws.version_info(CASE, "v003")
    assert "marked" not in info and info["marks_lost"] is True


def test_a_mark_edited_by_hand_is_dropped_as_lost_by_the_fine_tune_as_napari_and_repair_drop_it(ws):
    """The fine-tune refused with "fix or remove them in that file"; removing them lost the loss record, so
    what the reviewer removed was then taught as background. napari and repair drop such an entry and
    record the marks as lost: the fine-tune now does the same, in one warning line."""
    from lnq_napari.finetuning.reviewed import read_reviewed

    side = _folder(ws) / "v003.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "marked": [MARK, {"centre": [1, 2, 3]}]}))
    with pytest.warns(UserWarning) as said:
        reviewed = read_reviewed(ws, CASE, "v003")
    (line,) = {str(w.message) for w in said}
    assert line.startswith(f"case {CASE}: 1 entry of marked nodes in v003.json cannot be read (edited by "
                           "hand?): dropped and taken as lost marks"), line
    assert "\n" not in line and reviewed.marks_lost and [m.to_dict() for m in reviewed.marks] == [MARK]


def test_a_dry_run_lists_what_would_be_done_and_writes_nothing(ws, capsys):
    (_folder(ws) / "v003.json").unlink()
    before, journal = _files(ws), ws.journal_path.read_bytes()
    assert main(["workspace", "repair", str(ws.root), "--dry-run"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{CASE} v003: v003.json would be rebuilt from the header of v003.seg.nrrd "
                          "(correction, parent v002, edits 5, model bundled); not recoverable"), out
    assert _files(ws) == before and ws.journal_path.read_bytes() == journal
    with pytest.raises(SystemExit):
        main(["workspace", "repair", "--help"])
    assert "1 when some were left alone" in " ".join(capsys.readouterr().out.split())


def test_a_dry_run_on_a_folder_that_cannot_be_written_says_what_the_real_run_does(ws, capsys, monkeypatch):
    """The dry run said "v003.json would be rebuilt" (exit 0) where the real run left it alone (exit 1)."""
    import errno
    import tempfile

    folder = _folder(ws).resolve()
    (folder / "v003.json").unlink()
    access, mkstemp = os.access, tempfile.mkstemp

    def no_write(path, mode, *a, **k):  # a read-only share (chmod does not stop root)
        here = mode & os.W_OK and pathlib.Path(path).resolve() == folder
        return False if here else access(path, mode, *a, **k)

    def refused(*a, dir=None, **k):
        if dir is not None and pathlib.Path(dir).resolve() == folder:
            raise OSError(errno.EACCES, "Permission denied", str(dir))
        return mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(os, "access", no_write)
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    before = _files(ws)
    assert main(["workspace", "repair", str(ws.root), "--dry-run"]) == 1
    dry = capsys.readouterr().out.strip()
    assert dry == (f"{CASE}: its folder {_folder(ws)} cannot be written (Permission denied); v003 left "
                   "alone: make the folder writable and run repair again"), dry
    assert _files(ws) == before
    assert main(["workspace", "repair", str(ws.root)]) == 1
    assert capsys.readouterr().out.strip() == dry and _files(ws) == before


def test_repair_of_one_case_leaves_the_others_as_they_are(ws, tmp_path, capsys):
    other = "lnq2023-train-0001"
    table = json.loads((ws.root / "workspace.json").read_text())
    table["cases"][other] = dict(table["cases"][CASE])
    (ws.root / "workspace.json").write_text(json.dumps(table))
    ws = Workspace.open(ws.root)
    ws.add_label_version(other, ws.read_labels(CASE, "v001"), "correction", edits=1)
    (ws.root / "labels" / other / "v001.json").unlink()
    (_folder(ws) / "v003.json").unlink()
    assert main(["workspace", "repair", str(ws.root), other]) == 0
    assert capsys.readouterr().out.startswith(f"{other} v001: v001.json rebuilt")
    assert not (_folder(ws) / "v003.json").exists()
    assert ws.journal("repair")[-1]["versions"] == [f"{other}/v001"]


def test_a_correction_whose_marks_are_lost_gets_no_mined_negatives_nor_removed_background_in_export(
        tmp_path):
    """Mining took a predicted component on no corrected node and no mark as known background: the
    removed, marked node too, once repair had lost the mark; export-nnunet likewise took it as removed."""
    from types import SimpleNamespace

    from lnq_napari.finetuning.reviewed import read_reviewed
    from lnq_napari.finetuning.workflow import _mined_negatives
    from lnq_napari.nnunet.export import jobs_from_workspace
    from lnq_napari.training.trainer import STATE_DIR, TrainingCase

    ws, removed = _removed_and_marked(tmp_path)
    (ws.root / "labels" / CASE / "v003.json").unlink()
    api.repair_workspace(ws.root)
    reviewed = read_reviewed(ws, CASE, "v003")
    predicted = np.zeros((8, 16, 16), np.uint8)
    predicted[removed] = 1  # the half-trained model finds the marked node again

    class Predictor:
        def predict(self, ct, cancel=None, prepared=None):
            return SimpleNamespace(mask=Volume(predicted))

    folder = tmp_path / "staging"
    (folder / STATE_DIR).mkdir(parents=True)
    plan = SimpleNamespace(corrections={CASE: "v003"}, device="cpu")
    case = TrainingCase(CASE, reviewed.ct, reviewed.states(np.zeros((8, 16, 16), bool)))
    mined = _mined_negatives(ws, plan, folder, [case], lambda path, device: Predictor(), None)
    assert not mined.get(CASE, np.zeros(1, bool)).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (job,) = jobs_from_workspace(ws)[0]
    assert job.kind == "correction" and job.prediction is None and job.marks == ()


def test_a_correction_saved_on_one_whose_marks_are_lost_keeps_them_lost(tmp_path):
    """The next Save of the repaired correction (napari opened it with no marks: ``marked=[]``) dropped
    ``marks_lost``: the fine-tune took that child and taught the removed, marked node as background again."""
    from lnq_napari.finetuning.reviewed import read_reviewed
    from lnq_napari.training.labels import BACKGROUND

    ws, removed = _removed_and_marked(tmp_path)
    (ws.root / "labels" / CASE / "v003.json").unlink()
    api.repair_workspace(ws.root)
    labels = ws.read_labels(CASE, "v003")
    child = api.save_labels(labels, CASE, workspace=ws.root, source="correction", parent="v003", edits=1,
                            marked=[], rejected=[])
    info = ws.version_info(CASE, child.version)
    assert info["marks_lost"] is True
    quiet = np.zeros((8, 16, 16), bool)
    reviewed = read_reviewed(ws, CASE, child.version)
    assert reviewed.marks_lost and not (reviewed.states(quiet)[removed] == BACKGROUND).any()
    mark = {"centre_zyx": [3, 4, 4], "radius_mm": 5.0}  # marked again: kept, the old ones still unknown
    again = api.save_labels(labels, CASE, workspace=ws.root, source="correction", parent=child.version,
                            marked=[mark])
    info = ws.version_info(CASE, again.version)
    assert info["marked"] == [mark] and info["marks_lost"] is True
    with warnings.catch_warnings(record=True) as heard:  # the corrections since hold no node these lack
        warnings.simplefilter("always")
        fresh = api.save_labels(labels, CASE, workspace=ws.root, source="correction", parent="v002")
    assert not [w for w in heard if "another reviewer" in str(w.message)]
    assert "marks_lost" not in ws.version_info(CASE, fresh.version)  # on the prediction: nothing lost


@pytest.mark.parametrize("keeps_flag", [True, False])
def test_a_loss_recorded_before_survives_a_repair_of_a_damaged_but_readable_provenance(ws, keeps_flag):
    """A correction saved on a repaired one carries ``marks_lost`` (its JSON and its header); once its JSON
    was damaged but still read, repair wrote it back without the flag, and the fine-tune then taught what
    the reviewer removed as background again."""
    from lnq_napari.finetuning.reviewed import read_reviewed

    (_folder(ws) / "v003.json").unlink()
    api.repair_workspace(ws.root)
    child = api.save_labels(ws.read_labels(CASE, "v003"), CASE, workspace=ws.root, source="correction",
                            parent="v003", edits=1, marked=[], rejected=[])
    side = _folder(ws) / f"{child.version}.json"
    old = {k: v for k, v in json.loads(side.read_text()).items() if keeps_flag or not k.endswith("_lost")}
    side.write_text(json.dumps({**old, "bytes": "many"}))
    _aged(side)
    (repair,) = api.repair_workspace(ws.root)
    assert repair.repaired, repair.note
    info = ws.version_info(CASE, child.version)
    assert info["marks_lost"] is True
    assert read_reviewed(ws, CASE, child.version).marks_lost


def test_a_ct_that_cannot_be_read_is_said_as_the_ct_s_problem_never_delete_the_correction(ws, capsys):
    """With the CT gone (a data drive not mounted), repair said the correction was copied in from another
    case: "move .../v003.seg.nrrd out of ..., or delete it if it is not wanted"; so did next's warning."""
    side = _folder(ws) / "v003.json"
    side.unlink()
    _aged(_folder(ws) / "v003.seg.nrrd")
    ct = ws.ct_path(CASE)
    ct.rename(ct.with_name(ct.name + ".moved"))
    before = _files(ws)
    want = (f"the case's CT {ct} cannot be read (it is not there: a data drive not mounted, or the file "
            "moved?), so v003.seg.nrrd cannot be checked against it")
    assert main(["workspace", "repair", str(ws.root)]) == 1
    out = capsys.readouterr().out.strip()
    assert out == f"{CASE} v003: {want}; left alone: put it back and run repair again", out
    fresh = Workspace.open(ws.root)  # no CT grid read before
    with pytest.warns(UserWarning) as caught:
        fresh.warn_lost_corrections("ranked")
    (said,) = [str(w.message) for w in caught]
    assert f"{want}; put it back and run repair again" in said and "delete" not in said, said
    assert _files(ws) == before and not side.exists()
