"""api.save_labels: one versioning scheme, into a workspace or a folder's label store; never overwrites."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from conftest import full_disk_after, one_case_workspace, temps

from lnq_napari import api
from lnq_napari.errors import LNQError
from lnq_napari.io.readers import read_labels, write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import LabelStore, SavedLabels, Workspace

GRID = dict(spacing=(0.7, 0.7, 2.5), origin=(1.0, 2.0, 3.0))


def _labels(*more: tuple[int, int, int]) -> Volume:
    """One node; ``more``: a voxel each of further nodes."""
    labels = Volume(np.zeros((3, 8, 8), np.int32), **GRID)
    labels.array[1, 2:4, 2:4] = 3
    for k, at in enumerate(more):
        labels.array[at] = 4 + k
    return labels


def test_without_a_workspace_versions_go_to_the_folder_store(tmp_path):
    original = tmp_path / "c1-seg.nrrd"
    original.write_bytes(b"original")
    folder = tmp_path / "lnq-labels"
    saved = [api.save_labels(_labels(), "c1", folder=folder, model_version="m1", edits=k, layer="nodes")
             for k in (1, 2)]
    assert saved[1] == SavedLabels("c1", "v002", folder / "c1" / "v002.seg.nrrd")
    assert saved[0].path.name == "v001.seg.nrrd" and original.read_bytes() == b"original"
    prov = LabelStore(folder, "c1").info("v002")
    assert prov["source"] == "correction" and prov["edits"] == 2 and prov["parent"] == "v001"
    assert prov["layer"] == "nodes" and prov["model_version"] == "m1"
    back = read_labels(saved[1].path)
    assert np.array_equal(back.array, (_labels().array > 0).astype(np.uint8)) and back.same_grid(_labels())
    assert back.meta["lnq_edits"] == "2" and back.meta["lnq_model_version"] == "m1"


def test_with_a_workspace_the_version_and_its_path_come_from_it(tmp_path):
    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((3, 8, 8), np.int16)))
    ws = Workspace.init(tmp_path / "ws", data)
    saved = api.save_labels(_labels(), "c1", workspace=ws.root, folder=tmp_path / "unused", edits=4,
                            origin="napari")
    assert saved == SavedLabels("c1", "v001", ws.label_path("c1", "v001"))
    assert ws.corrected_cases() == ["c1"] and ws.version_info("c1", "v001")["origin"] == "napari"
    assert ws.journal("correction")[0]["edits"] == 4
    assert not (tmp_path / "unused").exists()


def test_nowhere_to_save_or_unknown_case_raise(tmp_path):
    with pytest.raises(LNQError, match="pass a workspace or a folder"):
        api.save_labels(_labels(), "c1")
    with pytest.raises(LNQError, match="source"):
        api.save_labels(_labels(), "c1", folder=tmp_path, source="guess")
    with pytest.raises(LNQError, match="not a lnq-napari workspace"):
        api.save_labels(_labels(), "c1", workspace=tmp_path)


def test_a_folder_that_cannot_hold_labels_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(LNQError, match=r"cannot save the labels of c1 in .*a-file.*choose a folder"):
        api.save_labels(_labels(), "c1", folder=blocker)
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("given", [np.zeros((3, 8, 8), np.uint8), "c1-seg.nrrd"], ids=["array", "path"])
def test_labels_without_a_grid_are_one_line(tmp_path, given):
    said = r"the labels to save must be an lnq_napari Volume \(got (numpy.ndarray|builtins.str)\)"
    with pytest.raises(LNQError, match=said):
        api.save_labels(given, "c1", folder=tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_touching_nodes_kept_apart_by_id_warn_that_the_saved_mask_joins_them(tmp_path):
    labels = _labels()
    labels.array[1, 4:6, 2:4] = 5  # touches node 3
    labels.array[2, 7, 7] = 6  # alone
    with pytest.warns(UserWarning, match=r"c1 v001: nodes 3 and 5 touch, so the saved version .* holds them "
                                         "as one node"):
        saved = api.save_labels(labels, "c1", folder=tmp_path)
    with pytest.warns(UserWarning, match="c1 v002: nodes 3 and 5 touch"):  # float ids: saved and warned
        api.save_labels(labels.with_array(labels.array.astype(np.float64)), "c1", folder=tmp_path)
    back = read_labels(saved.path)
    assert np.array_equal(back.array, (labels.array > 0).astype(np.uint8))  # saved all the same
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.save_labels(_labels(), "c1", folder=tmp_path)  # nothing touches: no warning


@pytest.mark.parametrize("case", ["../escape", "", "a/b", ".."])
def test_a_case_name_that_is_not_a_folder_name_is_refused_before_anything_is_written(tmp_path, case):
    """``case="../escape"`` wrote the version outside the label folder."""
    with pytest.raises(LNQError, match="cannot name a case"):
        api.save_labels(_labels(), case, folder=tmp_path / "store")
    assert not any(tmp_path.rglob("*.nrrd"))


def test_volumes_made_in_python_are_checked_and_measured():
    """A notebook's Volumes: measured as files are (was TypeError); a bool CT or a negative spacing is one
    line (was TypeError / a multi-line ITK error)."""
    rows, summary = api.measure(_labels())
    assert len(rows) == 1 and summary.n_nodes == 1
    # an array or a file name where a Volume goes: one line saying what to pass (TypeError, AttributeError)
    with pytest.raises(LNQError, match=r"the labels must be an lnq_napari Volume \(got numpy.ndarray\)"):
        api.measure(np.asarray(_labels().array))
    with pytest.raises(LNQError, match=r"the labels must be an lnq_napari Volume \(got builtins.str\)"):
        api.node_table("lnq2023-train-0001-seg.nrrd")
    with pytest.raises(LNQError, match="the CT holds True/False values"):
        api.find_nodes(_labels().with_array(np.zeros((3, 8, 8), bool)))
    bad = Volume(np.zeros((3, 8, 8), np.int16), spacing=(-0.7, 0.7, 2.5))
    with pytest.raises(LNQError, match=r"the CT has voxel spacing \(-0.7, 0.7, 2.5\) mm"):
        api.find_nodes(bad)


def test_a_save_for_the_workspace_opened_is_refused_once_another_workspace_is_at_its_path(tmp_path):
    """The Save widget checked the workspace's identity, then ``save_labels`` opened the path afresh and
    compared the workspace found there with itself: another workspace made at the path in between took
    the version. The identity given is checked where the save opens the workspace."""
    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((3, 8, 8), np.int16)))
    opened = Workspace.init(tmp_path / "ws", data).id
    (tmp_path / "ws").rename(tmp_path / "moved")
    with pytest.raises(LNQError, match="^the workspace .*ws is gone from there .*nothing was saved"):
        api.save_labels(_labels(), "c1", workspace=tmp_path / "ws", expected_id=opened)
    assert not (tmp_path / "ws").exists()  # nothing made at the old path
    new = Workspace.init(tmp_path / "ws", data)
    for where in (tmp_path / "ws", new):  # a path, or the workspace object found there
        with pytest.raises(LNQError, match="is gone from there .*another workspace is there now"):
            api.save_labels(_labels(), "c1", workspace=where, expected_id=opened)
    assert new.versions("c1") == [] and not any((tmp_path / "ws").rglob("*.seg.nrrd"))
    assert [e["action"] for e in new.journal()] == ["init"]
    saved = api.save_labels(_labels(), "c1", workspace=tmp_path / "moved", expected_id=opened)
    assert saved.version == "v001" and saved.path.is_relative_to(tmp_path / "moved")
    assert api.save_labels(_labels(), "c1", workspace=tmp_path / "ws", expected_id=new.id).version == "v001"


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "free space there, then save again"),
    (errno.EDQUOT, "remove files of yours or ask for a larger quota, then save again")])
def test_save_labels_on_a_full_disk_says_free_space_and_keeps_every_version(tmp_path, monkeypatch, code,
                                                                             said):
    """save_labels on a full disk said "make it writable": the workspace was writable, only full; a used-up
    quota was told to "free space there" (only the user's own files count)."""
    ws = one_case_workspace(tmp_path / "ws")
    case = ws.case_ids()[0]
    before = {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()}
    full_disk_after(monkeypatch, 1, code)
    labels = ws.latest_labels(case)
    with pytest.raises(LNQError, match=said):
        api.save_labels(labels.with_array(np.ones(labels.shape, np.uint8)), case, workspace=ws.root)
    assert {p.name: p.read_bytes() for p in (ws.labels_dir / case).iterdir()} == before
    assert not temps(ws.root)



def test_a_save_on_a_version_another_reviewer_saved_over_says_so_and_keeps_both(tmp_path):
    """Two reviewers opened v001; the second saved v002 first; the first's Save made v003, now the newest
    correction (the case opens with it, a fine-tune takes it) without the second's edits, without a word."""
    import warnings

    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((3, 8, 8), np.int16)))
    ws = Workspace.init(tmp_path / "ws", data)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version  # what both opened
    theirs = api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first, reviewer="B").version
    ws.add_label_version("c1", _labels(), "prediction", model_version="m2")  # a `next` meanwhile: no word
    with pytest.warns(UserWarning, match=f"c1: correction {theirs} was saved by another reviewer") as heard:
        mine = api.save_labels(_labels((2, 6, 1)), "c1", workspace=ws.root, parent=first, reviewer="A")
    said = str(heard[0].message)
    assert f"after {first}, which these labels were made on, with nodes these lack; {mine.version}, now " \
        "the newest" in said
    assert str(ws.label_path("c1", theirs)) in said and "\n" not in said
    assert [v["version"] for v in ws.versions("c1")] == ["v001", "v002", "v003", "v004"]  # both kept
    with warnings.catch_warnings():  # on the newest: nothing to say (a prediction above is no one's edits)
        warnings.simplefilter("error")
        api.save_labels(_labels(), "c1", workspace=ws.root, parent=mine.version)


def test_a_save_on_a_version_whose_case_folder_was_deleted_meanwhile_says_so(tmp_path):
    """The case's label folder deleted while napari had the case open: the Save said only "saved v001",
    a number the versions it was made on had used, its parent a version no longer there."""
    import shutil

    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((3, 8, 8), np.int16)))
    ws = Workspace.init(tmp_path / "ws", data)
    opened = api.save_labels(_labels(), "c1", workspace=ws.root).version
    shutil.rmtree(ws.label_store("c1").folder)
    with pytest.warns(UserWarning, match=f"c1: {opened}, which these labels were made on, is gone from"):
        saved = api.save_labels(_labels(), "c1", workspace=ws.root, parent=opened)
    assert saved.version == "v001" and ws.version_info("c1", "v001")["parent"] == opened


def _one_case(tmp_path) -> Workspace:
    data = tmp_path / "data"
    write_volume(data / "c1-ct.nrrd", _labels().with_array(np.zeros((3, 8, 8), np.int16)))
    return Workspace.init(tmp_path / "ws", data)


def test_a_correction_saved_meanwhile_without_nodes_of_its_own_is_not_named(tmp_path):
    """A reviewer who saved the case as it was (approved it): the other's Save was told that correction
    did not hold those edits and to paint its nodes in, although it held all of them."""
    import warnings

    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version
    api.save_labels(_labels(), "c1", workspace=ws.root, parent=first, reviewer="B")  # approved as it was
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first, reviewer="A")


def test_of_two_saves_close_together_the_one_that_is_not_the_newest_is_told(tmp_path, monkeypatch):
    """B took v002, A took v003 and committed first: at A's check v002 was not committed yet, and B's
    looked only below v002; both were told nothing, and v003, the newest, lacks B's edits."""
    import warnings

    from lnq_napari.workspace import labels as labels_module

    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version
    real_write, heard = labels_module.write_seg_nrrd_into, {}

    def write(*args, **kwargs):  # B's label file is written slowly: A's whole Save runs meanwhile
        if not heard:
            heard["A"] = None
            with warnings.catch_warnings(record=True) as a_heard:
                warnings.simplefilter("always")
                heard["A"] = (api.save_labels(_labels((2, 6, 1)), "c1", workspace=ws.root, parent=first,
                                              reviewer="A").version, [str(w.message) for w in a_heard])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(labels_module, "write_seg_nrrd_into", write)
    with warnings.catch_warnings(record=True) as b_heard:
        warnings.simplefilter("always")
        b = api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first, reviewer="B").version
    assert (b, heard["A"][0]) == ("v002", "v003")
    said = heard["A"][1] + [str(w.message) for w in b_heard]
    assert said, "neither Save was told"
    assert any("v003 is now the newest" in s and "does not hold these edits" in s for s in said), said


def test_a_save_whose_check_for_other_reviewers_fails_is_still_a_save(tmp_path, monkeypatch):
    """A version's file removed by hand while the note's check read it: the committed save came out of
    save_labels as a FileNotFoundError ("not saved" in napari, and the session kept its old parent)."""
    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version
    real_commit, real_committed, done = LabelStore._commit, LabelStore._committed, []

    def commit(self, *args):
        real_commit(self, *args)
        done.append(True)

    def committed(self, path):
        if done and path.name == f"{first}.json":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_committed(self, path)

    monkeypatch.setattr(LabelStore, "_commit", commit)
    monkeypatch.setattr(LabelStore, "_committed", committed)
    with pytest.warns(UserWarning, match="c1: v002 is saved; whether another reviewer saved this case since"):
        saved = api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first)
    assert saved.version == "v002"


def test_a_save_on_a_damaged_parent_names_the_repair_not_a_deletion(tmp_path):
    """v001's provenance torn: the Save said v001 was gone (deleted or moved away) and that v002 was
    numbered afresh; neither was true, and the fix is a repair."""
    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version
    (ws.label_store("c1").folder / f"{first}.json").write_text('{"version": "v0')
    with pytest.warns(UserWarning) as heard:
        api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first)
    said = " ".join(str(w.message) for w in heard)
    assert f"{first}, which these labels were made on, is damaged" in said
    assert "lnq-napari workspace repair" in said and "gone" not in said and "afresh" not in said


def test_a_save_s_check_reads_each_version_s_provenance_at_most_once(tmp_path, monkeypatch):
    """The note's check listed every version twice: two reads of each vNNN.json per Save, round trips on
    the share two reviewers work on."""
    from collections import Counter

    from lnq_napari.workspace import labels as labels_module

    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root).version
    for k in range(4):
        api.save_labels(_labels((0, 6, k)), "c1", workspace=ws.root, parent=first)
    real, real_check, reads, checking = labels_module._provenance, api._warn_saved_since, Counter(), []

    def provenance(path):
        reads[path.name] += bool(checking)
        return real(path)

    def check(*args):
        checking.append(True)
        try:
            real_check(*args)
        finally:
            checking.clear()

    monkeypatch.setattr(labels_module, "_provenance", provenance)
    monkeypatch.setattr(api, "_warn_saved_since", check)
    with pytest.warns(UserWarning):  # v002..v005 saved since v001
        api.save_labels(_labels(), "c1", workspace=ws.root, parent=first)
    assert reads and max(reads.values()) == 1, reads


def test_a_save_whose_parent_id_was_saved_afresh_by_another_is_not_taken_as_made_on_it(tmp_path):
    """The case's folder deleted while two reviewers had v001 open; B saved (a new v001); A's Save said
    nothing and its v002 looked made on B's v001, without B's nodes."""
    import shutil

    ws = _one_case(tmp_path)
    first = api.save_labels(_labels(), "c1", workspace=ws.root)
    sha = ws.version_info("c1", first.version)["sha256"]  # what napari keeps of the version it opened
    shutil.rmtree(ws.label_store("c1").folder)
    with pytest.warns(UserWarning, match="is gone from"):
        theirs = api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=first.version,
                                 parent_sha256=sha)
    assert theirs.version == first.version and ws.version_info("c1", theirs.version)["sha256"] != sha
    with pytest.warns(UserWarning) as heard:
        api.save_labels(_labels((2, 6, 1)), "c1", workspace=ws.root, parent=first.version, parent_sha256=sha)
    said = " ".join(str(w.message) for w in heard)
    assert f"the {first.version} there now is another save, not the one these were made on" in said
    assert f"correction {theirs.version}, saved there since, has nodes these lack" in said


def test_a_save_after_the_folder_went_names_the_corrections_saved_there_since(tmp_path):
    """The folder deleted; B saved afresh (v001); C, whose parent was v002, then saved v002 afresh and was
    told only that it was numbered afresh, not that B's v001, without C's nodes, came first."""
    import shutil

    ws = _one_case(tmp_path)
    api.save_labels(_labels(), "c1", workspace=ws.root)
    opened = api.save_labels(_labels(), "c1", workspace=ws.root).version
    shutil.rmtree(ws.label_store("c1").folder)
    with pytest.warns(UserWarning, match="numbered afresh"):
        api.save_labels(_labels((0, 6, 6)), "c1", workspace=ws.root, parent=opened)  # B: v001
    with pytest.warns(UserWarning) as heard:
        saved = api.save_labels(_labels((2, 6, 1)), "c1", workspace=ws.root, parent=opened)  # C: v002
    said = " ".join(str(w.message) for w in heard)
    assert saved.version == opened and "numbered afresh" in said
    assert "correction v001, saved there since, has nodes these lack" in said


@pytest.mark.parametrize("parent", ["v999", "garbage"])
def test_a_parent_that_is_no_version_of_the_case_is_named_so_not_as_a_deleted_folder(tmp_path, parent):
    """A parent given by hand that the case never had: v999 was said 'gone ... deleted or moved away ...
    numbered afresh' with older corrections listed as saved since; a parent that is no version id, nothing."""
    ws = _one_case(tmp_path)
    for _ in range(3):
        api.save_labels(_labels(), "c1", workspace=ws.root)
    with pytest.warns(UserWarning) as heard:
        saved = api.save_labels(_labels(), "c1", workspace=ws.root, parent=parent)
    said = " ".join(str(w.message) for w in heard)
    assert saved.version == "v004" and f"'{parent}', given as the version" in said and "is no version" in said
    assert "afresh" not in said and "deleted" not in said
