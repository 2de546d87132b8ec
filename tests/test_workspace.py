"""Workspace (the facade): creation, label versions with journal lines, registry, crash safety, and two
writers on one folder (two objects, two processes) never sharing a version number."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.errors import LNQError
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace

GRID = dict(spacing=(0.8, 0.8, 2.0), origin=(-10.0, 5.0, 30.0))


def _case(seed: int) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(seed)
    ct = Volume(rng.integers(-200, 200, (6, 12, 10)).astype(np.int16), **GRID)
    seg = np.zeros(ct.shape, np.uint8)
    seg[2:4, 3:6, 3:5] = 1
    return ct, Volume(seg, **GRID)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    for i in range(3):
        ct, seg = _case(i)
        write_volume(folder / f"lnq2023-train-{i:04d}-ct.nrrd", ct)
        if i < 2:
            write_volume(folder / f"lnq2023-train-{i:04d}-seg.nrrd", seg)
    write_volume(folder / "lnq2023-train-0000-full.nrrd", seg)
    return folder


@pytest.fixture
def ws(tmp_path, data):
    return Workspace.init(tmp_path / "ws", data)


def test_init_names_the_case_whose_labels_do_not_fit_and_leaves_no_workspace(tmp_path, data):
    """A seg that does not overlap its CT in a folder of many cases was refused without the case's name."""
    _, seg = _case(1)
    write_volume(data / "lnq2023-train-0001-seg.nrrd", Volume(seg.array, GRID["spacing"], (9e3, 9e3, 9e3)))
    with pytest.raises(LNQError, match=r"^case lnq2023-train-0001: the labels .* do not overlap the CT"):
        Workspace.init(tmp_path / "ws", data)
    assert not (tmp_path / "ws").exists()


def test_init_imports_cases_and_original_labels(ws, data):
    assert ws.case_ids() == [f"lnq2023-train-{i:04d}" for i in range(3)]
    assert ws.ct_path("lnq2023-train-0001").name == "lnq2023-train-0001-ct.nrrd"
    assert ws.full_path("lnq2023-train-0000").name == "lnq2023-train-0000-full.nrrd"
    assert ws.full_path("lnq2023-train-0001") is None
    versions = ws.versions("lnq2023-train-0000")
    assert [v["version"] for v in versions] == ["v001"] and versions[0]["source"] == "original"
    assert ws.versions("lnq2023-train-0002") == []  # no seg file
    labels = ws.latest_labels("lnq2023-train-0000")
    _, seg = _case(0)
    np.testing.assert_array_equal(labels.array, seg.array)
    assert labels.same_grid(seg)
    assert [e["action"] for e in ws.journal()] == ["init"]
    reopened = Workspace.open(ws.root)
    assert reopened.case_ids() == ws.case_ids()


def test_bad_inputs_raise(tmp_path, data, ws):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LNQError, match="ct.nrrd"):
        Workspace.init(tmp_path / "w2", empty)
    with pytest.raises(LNQError, match="already exists"):
        Workspace.init(ws.root, data)
    with pytest.raises(LNQError, match="not a lnq-napari workspace"):
        Workspace.open(data)
    with pytest.raises(LNQError, match="not in workspace"):
        ws.ct_path("nope")
    with pytest.raises(LNQError, match="source"):
        ws.add_label_version("lnq2023-train-0000", _case(0)[1], "guess")
    assert not (tmp_path / "w2").exists()


def test_init_through_a_symlink_makes_the_workspace_where_it_points(tmp_path, data):
    """A symlink to an empty folder (on a bigger disk), or a path through a dangling symlink, was refused
    ("cannot write ... (Not a directory)") or crashed with a traceback (FileExistsError)."""
    empty = tmp_path / "big" / "empty"
    empty.mkdir(parents=True)
    (tmp_path / "link").symlink_to(empty)
    ws = Workspace.init(tmp_path / "link", data)
    assert (empty / "workspace.json").is_file() and (tmp_path / "link").is_symlink()
    assert ws.versions("lnq2023-train-0000") and Workspace.open(empty).case_ids() == ws.case_ids()
    (tmp_path / "later").symlink_to(tmp_path / "big" / "later")  # dangling: its folder is made
    Workspace.init(tmp_path / "later" / "ws", data)
    assert Workspace.open(tmp_path / "big" / "later" / "ws").case_ids() == ws.case_ids()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(LNQError):
        Workspace.init(tmp_path / "loop" / "ws", data)
    assert not list(tmp_path.glob("**/.*.init-*"))


def _read_only(monkeypatch, *folders: Path) -> None:
    """Nothing can be made directly in ``folders`` (a read-only mount; chmod does not stop root)."""
    import errno
    import tempfile

    mkstemp, mkdtemp = tempfile.mkstemp, tempfile.mkdtemp
    refused = {f.resolve() for f in folders}

    def check(dir):
        if dir is not None and Path(dir).resolve() in refused:
            raise OSError(errno.EROFS, "Read-only file system", str(dir))

    for name, make in (("mkstemp", mkstemp), ("mkdtemp", mkdtemp)):
        def refused_there(*a, dir=None, make=make, **k):
            return check(dir) or make(*a, dir=dir, **k)
        monkeypatch.setattr(tempfile, name, refused_there)


def test_init_through_a_dangling_symlink_in_a_read_only_folder_is_made_where_it_points(
        tmp_path, data, monkeypatch):
    """ro/ws -> w/ws with ro read-only: the write check tested ro (the link's folder) and refused, though
    the workspace is made in w."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "ro" / "ws").symlink_to(tmp_path / "w" / "ws")
    _read_only(monkeypatch, tmp_path / "ro")
    Workspace.init(tmp_path / "ro" / "ws", data)
    assert (tmp_path / "w" / "ws" / "workspace.json").is_file()


def test_init_of_an_empty_folder_in_a_read_only_folder_is_refused_before_any_work(
        tmp_path, data, monkeypatch):
    """The workspace is built next to its folder and renamed into place: an empty writable folder whose
    parent is read-only passed the check (it tested the folder), then failed at the staging folder."""
    (tmp_path / "ro" / "empty").mkdir(parents=True)
    _read_only(monkeypatch, tmp_path / "ro")
    monkeypatch.setattr(Workspace, "_build", classmethod(lambda *a: pytest.fail("the workspace was built")))
    said = (f"the workspace path {tmp_path / 'ro' / 'empty'}: nothing can be written in "
            f"{(tmp_path / 'ro').resolve()} (Read-only file system)")
    with pytest.raises(LNQError, match=re.escape(said)):
        Workspace.init(tmp_path / "ro" / "empty", data)
    assert list((tmp_path / "ro").iterdir()) == [tmp_path / "ro" / "empty"]


@pytest.mark.parametrize("made", [False, True])
def test_init_racing_another_init_of_the_same_folder_is_a_one_line_error(tmp_path, data, monkeypatch, made):
    """Two `workspace init` of one folder at once: the second crashed with OSError (Directory not empty).
    Whatever the other one made stays; no staging copy is left."""
    root = tmp_path / "ws"
    if made:
        root.mkdir()  # the user made the (empty) folder first
    build = Workspace._build.__func__

    def racing(cls, folder, meta, progress):
        build(cls, folder, meta, progress)
        root.mkdir(exist_ok=True)
        (root / "theirs.txt").write_text("the other init's")

    monkeypatch.setattr(Workspace, "_build", classmethod(racing))
    with pytest.raises(LNQError, match="filled by another program"):
        Workspace.init(root, data)
    assert [p.name for p in root.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ws"]


def test_init_whose_empty_folder_another_init_removed_meanwhile_still_lands(tmp_path, data, monkeypatch):
    """The other init removed the empty folder just before this one's ``rmdir``: FileNotFoundError escaped
    as a traceback; the folder is free, so the workspace lands there."""
    root = tmp_path / "ws"
    root.mkdir()
    rmdir = Path.rmdir

    def beaten(self):
        if self == root:  # the other init's rmdir came first
            rmdir(self)
            raise FileNotFoundError(2, "No such file or directory", str(self))
        rmdir(self)

    monkeypatch.setattr(Path, "rmdir", beaten)
    ws = Workspace.init(root, data)
    assert (ws.root / "workspace.json").is_file()
    assert not list(tmp_path.glob(".*.init-*"))


@pytest.mark.parametrize("inner", ["ws/sub", "ws/labels/new", "link/sub"])
def test_init_inside_a_workspace_is_refused_and_makes_nothing(ws, tmp_path, data, inner):
    """`workspace init W/sub` with W a workspace made one inside the other (W's files taken for its own)."""
    (tmp_path / "link").symlink_to(ws.root)  # a path into W through a symlink
    before = sorted(p.relative_to(ws.root) for p in ws.root.rglob("*"))
    with pytest.raises(LNQError, match=f"is inside the workspace {ws.root.resolve()}, .*choose a folder "
                                       "outside it"):
        Workspace.init(tmp_path / inner, data)
    assert sorted(p.relative_to(ws.root) for p in ws.root.rglob("*")) == before
    with pytest.raises(LNQError, match="exists and is not empty"):  # the folder holding W: refused too
        Workspace.init(tmp_path, data)


def test_init_under_a_folder_with_another_program_s_workspace_json_is_not_refused(tmp_path, data):
    """An Nx monorepo's (or a home folder's) own workspace.json was taken for a lnq-napari workspace:
    `workspace init` refused every folder below it."""
    project = tmp_path / "nx-monorepo"
    project.mkdir()
    (project / "workspace.json").write_text(json.dumps({"version": 2, "projects": {}}))
    ws = Workspace.init(project / "studies" / "ws1", data)
    assert Workspace.open(ws.root).case_ids() == ws.case_ids()
    with pytest.raises(LNQError, match="is not a lnq-napari workspace file"):
        Workspace.open(project)


def test_a_save_after_the_workspace_was_renamed_is_refused_and_makes_no_empty_shell(ws, tmp_path):
    """The Review widget keeps its workspace open: renamed meanwhile, a save made labels/, the journal
    and the lock at the old path again, said v001 was saved, and the renamed workspace lacked it."""
    case = "lnq2023-train-0001"
    labels = ws.read_labels(case, "v001")
    old = ws.root
    old.rename(tmp_path / "renamed")
    with pytest.raises(LNQError, match="is gone from there .* open it where it is now"):
        ws.add_label_version(case, labels, "correction")
    with pytest.raises(LNQError, match="is gone from there"):
        ws.log("review", case=case)
    with pytest.raises(LNQError, match="is gone from there"):
        ws.update_cache("scores", {"x": 1})
    with pytest.raises(LNQError, match="is gone from there"):
        ws.register_model(tmp_path / "nowhere")
    assert not old.exists()
    assert [v["version"] for v in Workspace.open(tmp_path / "renamed").versions(case)] == ["v001"]


def test_nothing_done_on_a_workspace_opened_before_it_moved_makes_its_folder_again(ws, tmp_path):
    """Activating a version made the old folder again with its lock file (the lock was taken before the
    check): a later ``mv renamed ws`` then moved the workspace into that folder."""
    old = ws.root
    old.rename(tmp_path / "renamed")
    for step in (lambda: ws.activate("bundled"), lambda: ws.cache.write("scores", {}), ws.locked().__enter__,
                 ws.running_finetune().__enter__, ws.registry.create):
        with pytest.raises(LNQError, match="is gone from there"):
            step()
        assert not old.exists()
    assert ws.journal() == [] and not old.exists()  # reading it neither (nor the save-line recovery)
    assert Workspace.open(tmp_path / "renamed").active_model() is None


def test_a_save_after_another_workspace_was_made_at_the_path_is_refused(ws, tmp_path, data):
    """Renamed and a new workspace made at its old path: a save of the workspace opened before went into
    the new one (only "is there a workspace.json" was asked)."""
    case = "lnq2023-train-0001"
    labels = ws.read_labels(case, "v001")
    old = ws.root
    old.rename(tmp_path / "renamed")
    Workspace.init(old, data)
    with pytest.raises(LNQError, match="is gone from there .*another workspace is there now"):
        ws.add_label_version(case, labels, "correction")
    assert [v["version"] for v in Workspace.open(old).versions(case)] == ["v001"]
    assert Workspace.open(tmp_path / "renamed").add_label_version(case, labels, "correction") == "v002"


def test_grouping_after_another_workspace_was_made_at_the_path_is_refused(ws, tmp_path, data):
    """Renamed and a new workspace made at its old path: grouping cases from the workspace opened before
    wrote the new one's workspace.json (and only then was refused)."""
    from lnq_napari.workspace import TimePoint

    old = ws.root
    old.rename(tmp_path / "renamed")
    Workspace.init(old, data)
    with pytest.raises(LNQError, match="is gone from there"):
        ws.group_cases([TimePoint("lnq2023-train-0001", "P1", "t0")])
    assert Workspace.open(old).time_points() == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_new_workspace_has_the_mode_a_plain_folder_gets_so_other_reviewers_can_open_it(tmp_path, data):
    """Built in a ``tempfile.mkdtemp`` folder (0700) and renamed into place, a workspace kept every other
    user out, whatever the umask (a second reviewer in the same group could not open it)."""
    old = os.umask(0o002)
    try:
        ws = Workspace.init(tmp_path / "ws", data)
    finally:
        os.umask(old)
    assert ws.root.stat().st_mode & 0o777 == 0o775


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_new_workspace_in_a_setgid_folder_keeps_the_bit_so_its_files_get_the_shared_group(tmp_path, data):
    """A shared project folder (``chmod 2775``): a plain mkdir keeps the setgid bit, so files made below
    belong to the project's group; the staging folder's chmod had cleared it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    if not shared.stat().st_mode & 0o2000:
        pytest.skip("this file system drops the setgid bit")
    ws = Workspace.init(shared / "ws", data)
    assert ws.root.stat().st_mode & 0o2000


def test_label_versions_round_trip_with_provenance(ws):
    case = "lnq2023-train-0001"
    ct, seg = _case(1)
    pred = seg.with_array(np.zeros(seg.shape, np.uint8))
    pred.array[1:3, 6:9, 6:9] = 1
    v_pred = ws.add_label_version(case, pred, "prediction", model_version="m001")
    corr = pred.with_array(np.maximum(pred.array, seg.array))
    v_corr = ws.add_label_version(case, corr, "correction", model_version="m001", edits=2)
    assert (v_pred, v_corr) == ("v002", "v003")
    prov = ws.version_info(case, v_corr)
    assert prov["parent"] == "v002" and prov["edits"] == 2 and prov["model_version"] == "m001"
    np.testing.assert_array_equal(ws.latest_labels(case).array, corr.array)
    np.testing.assert_array_equal(ws.latest_labels(case, "prediction").array, pred.array)
    np.testing.assert_array_equal(ws.latest_labels(case, "original").array, seg.array)
    assert ws.corrected_cases() == [case]
    actions = [(e["action"], e.get("version")) for e in ws.journal()]
    assert actions[1:] == [("predict", "v002"), ("correction", "v003")]
    assert ws.journal("correction")[0]["edits"] == 2


def test_interrupted_label_write_keeps_previous_version(ws, monkeypatch):
    case = "lnq2023-train-0000"
    _, seg = _case(0)
    new = seg.with_array(np.ones(seg.shape, np.uint8))
    # killed placing the label file (a hard link of its temp file), writing the note of the save in flight
    # (save_lines: a replace), writing its provenance into the number's placeholder
    for name in ("link", "replace", "write"):
        real = getattr(os, name)

        def killed(*args, **kwargs):
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(os, name, killed)
        with pytest.raises(KeyboardInterrupt):
            ws.add_label_version(case, new, "correction")
        monkeypatch.setattr(os, name, real)
        reopened = Workspace.open(ws.root)
        assert [v["version"] for v in reopened.versions(case)] == ["v001"]
        np.testing.assert_array_equal(reopened.latest_labels(case).array, seg.array)
        assert not any(p.name.startswith(".") for p in (ws.root / "labels" / case).iterdir())
    # the next save still works and never reuses the number of a leftover file
    version = ws.add_label_version(case, new, "correction")
    assert version != "v001"
    np.testing.assert_array_equal(ws.latest_labels(case).array, new.array)


def test_truncated_label_file_is_ignored(ws):
    case = "lnq2023-train-0000"
    _, seg = _case(0)
    version = ws.add_label_version(case, seg.with_array(np.ones(seg.shape, np.uint8)), "autosave")
    path = ws.root / "labels" / case / f"{version}.seg.nrrd"
    path.write_bytes(path.read_bytes()[:20])
    assert ws.latest_version(case)["version"] == "v001"


def test_journal_survives_a_torn_line(ws):
    with open(ws.journal_path, "a") as handle:
        handle.write('{"action": "predi')  # killed mid-append
    ws.log("predict", case="x")
    assert [e["action"] for e in ws.journal()] == ["init", "predict"]


def test_grouping_while_another_workspace_is_made_at_the_path_after_the_check_is_refused(
        ws, tmp_path, data, monkeypatch):
    """The still-there check ran before the lock and workspace.json was read again under it without
    comparing identities: another workspace made at the path in between got the grouping written in."""
    import lnq_napari.workspace.workspace as module
    from lnq_napari.workspace import TimePoint

    old, real = ws.root, module.read_meta

    def replaced_first(root):  # renamed and another made at the path between the check and the lock
        old.rename(tmp_path / "renamed")
        Workspace.init(old, data)
        monkeypatch.setattr(module, "read_meta", real)
        return real(root)

    monkeypatch.setattr(module, "read_meta", replaced_first)
    with pytest.raises(LNQError, match="is gone from there"):
        ws.group_cases([TimePoint("lnq2023-train-0001", "P1", "t0")])
    assert Workspace.open(old).time_points() == []


def test_model_registry_and_activation(ws, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    assert ws.active_model() is None
    m1 = ws.register_model(model, parent=None, training_cases=["a"], metrics={"dice": 0.5})
    m2 = ws.register_model(model, parent=m1, training_cases=["a", "b"], metrics={"dice": 0.6})
    assert (m1, m2) == ("m001", "m002")
    assert ws.active_model() is None
    ws.activate(m2, reason="better")
    active = Workspace.open(ws.root).active_model()
    assert active["id"] == "m002" and active["parent"] == "m001"
    assert (ws.model_path(m2) / "config.json").is_file()
    ws.activate(m1)
    assert ws.active_model()["id"] == "m001"
    assert [e["version"] for e in ws.journal("activate")] == ["m002", "m001"]
    with pytest.raises(LNQError):
        ws.activate("m999")
    with pytest.raises(LNQError, match="config.json"):
        ws.register_model(tmp_path)


def test_activating_after_another_workspace_was_made_at_the_path_is_refused_and_changes_nothing(
        ws, tmp_path, data):
    """Renamed and a new workspace made at its old path: activating a version from the workspace opened
    before made it active in the new one's registry (only the journal line after it was refused)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    ws.register_model(model)
    old = ws.root
    old.rename(tmp_path / "renamed")
    Workspace.init(old, data).register_model(model)
    with pytest.raises(LNQError, match="is gone from there"):
        ws.activate("m001")
    assert Workspace.open(old).active_model() is None
    assert Workspace.open(tmp_path / "renamed").active_model() is None


def test_the_case_opens_with_the_active_model_s_prediction_after_a_roll_back(ws, tmp_path):
    """After rolling back from m001 to the bundled model, Open case showed m001's prediction (the newest):
    the reviewer corrected, and the next fine-tune learnt from, the model they had just set aside."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    case, labels = "lnq2023-train-0000", _case(0)[1]
    bundled = ws.prediction_model()[1]
    mine = ws.add_label_version(case, labels, "prediction", model_version=bundled)
    ws.activate(ws.register_model(model, parent=None, training_cases=["a"], metrics={}))
    theirs = ws.add_label_version(case, labels, "prediction", model_version="m001")
    assert ws.preferred_version(case, ("correction", "prediction"))["version"] == theirs
    ws.activate("bundled")
    assert ws.preferred_version(case, ("correction", "prediction"))["version"] == mine
    corrected = ws.add_label_version(case, labels, "correction", edits=1)
    assert ws.preferred_version(case, ("correction", "prediction"))["version"] == corrected


def test_label_path_comes_from_the_workspace(ws):
    case = "lnq2023-train-0000"
    version = ws.add_label_version(case, _case(0)[1], "correction", edits=1, origin="napari")
    assert ws.label_path(case, version) == ws.root / "labels" / case / "v002.seg.nrrd"
    assert ws.version_info(case, version)["origin"] == "napari"
    assert ws.journal("correction")[-1]["parent"] == "v001"


def test_two_workspace_objects_saving_alternately_share_no_version(ws):
    case = "lnq2023-train-0002"
    _, seg = _case(2)
    other = Workspace.open(ws.root)
    saved = [(ws if i % 2 else other).add_label_version(case, seg, "correction", edits=i) for i in range(8)]
    assert saved == [f"v{i:03d}" for i in range(1, 9)]
    assert [v["edits"] for v in Workspace.open(ws.root).versions(case)] == list(range(8))
    assert [e["version"] for e in ws.journal("correction")] == saved


def _save_many(root: str, case: str, worker: int, saves: int, barrier) -> None:
    """One process of the concurrency test: wait for the other, then save ``saves`` versions."""
    ws = Workspace.open(root)
    _, seg = _case(0)
    barrier.wait()
    for i in range(saves):
        ws.add_label_version(case, seg, "correction", edits=i, worker=worker)


def test_two_processes_saving_at_once_share_no_version_and_lose_nothing(ws):
    case, saves = "lnq2023-train-0001", 10
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    procs = [context.Process(target=_save_many, args=(str(ws.root), case, w, saves, barrier)) for w in (0, 1)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    versions = ws.versions(case)[1:]  # after the original v001
    assert [v["version"] for v in versions] == [f"v{i:03d}" for i in range(2, 2 + 2 * saves)]
    for worker in (0, 1):
        assert sorted(v["edits"] for v in versions if v["worker"] == worker) == list(range(saves))
    logged = [e["version"] for e in ws.journal("correction")]
    assert sorted(logged) == [v["version"] for v in versions]
    assert all(ws.read_labels(case, v["version"]).array.any() for v in versions)


def test_labels_on_another_grid_than_the_cases_ct_are_refused_and_nothing_is_written(ws, data):
    """A correction cropped, shifted or transposed against the case's CT would be trained voxel for voxel
    in the wrong place (or fail a fine-tune later): refused in one line naming the case, no version added;
    the CT grid is read once per workspace object."""
    case = "lnq2023-train-0002"  # no labels yet
    _, seg = _case(0)
    shifted = Volume(seg.array, seg.spacing, (seg.origin[0] + 7.0, *seg.origin[1:]), seg.direction)
    cropped = Volume(seg.array[:5], seg.spacing, (seg.origin[0] + seg.spacing[0] / 2, *seg.origin[1:]),
                     seg.direction)  # off the CT's voxels: a crop on them is pasted in place
    high = np.zeros_like(seg.array)
    high[2:4, 9:12, 3:5] = 1  # y 9-11: x 9-11 once swapped, beyond the CT's 10 columns
    swapped = Volume(np.ascontiguousarray(high.transpose(0, 2, 1)), seg.spacing, seg.origin, seg.direction)
    inside = np.zeros_like(seg.array)
    inside[2:4, 1:3, 5:7] = 1  # at y 5-6, x 1-2 once swapped: the wrong place, though inside the CT
    swapped_inside = Volume(np.ascontiguousarray(inside.transpose(0, 2, 1)), seg.spacing, seg.origin,
                            seg.direction)  # a box reaching past the CT's 10 columns: not a crop of it
    for bad, words in ((shifted, "origin"), (cropped, "size"), (swapped_inside, "size")):
        with pytest.raises(LNQError, match=f"labels to save for {case} and its CT are on different grids "
                                           f"\\({words}"):
            ws.add_label_version(case, bad, "correction")
    beyond = int((swapped.array[:, :, 10:] != 0).sum())  # a box of the grid (else pasted) reaching past it
    with pytest.raises(LNQError, match=f"labels to save for {case} are a box of its CT's grid reaching past "
                                       f"its edge, with {beyond} of their {int(high.sum())} labelled voxels"):
        ws.add_label_version(case, swapped, "correction")
    assert ws.latest_version(case) is None and not list(ws.label_store(case).folder.glob("v*"))
    version = ws.add_label_version(case, seg, "correction")  # on the CT's grid
    assert ws.read_labels(case, version).same_grid(ws.read_ct(case))
    assert ws.ct_grid(case).array.strides == (0, 0, 0)  # the grid without the CT's voxels


def test_labels_a_label_map_cannot_hold_are_refused_before_a_version_number_is_taken(ws):
    """A probability map, negative values or NaN saved as a correction would be stored as "node wherever
    non-zero": refused in one line, no version and no placeholder left."""
    case = "lnq2023-train-0002"
    _, seg = _case(0)
    for array, words in ((seg.array * 0.6, "non-integer values"), (seg.array.astype(np.int8) * -1,
                                                                    "negative"),
                         (np.where(seg.array > 0, np.nan, 0.0), "NaN")):
        with pytest.raises(LNQError, match=f"labels to save for {case} holds {words}"):
            ws.add_label_version(case, seg.with_array(array), "correction")
    assert not list(ws.label_store(case).folder.glob("v*"))
    version = ws.add_label_version(case, seg.with_array(seg.array * 3), "correction")  # values 0 and 3
    assert ws.read_labels(case, version).array.max() == 1


def test_init_removes_the_stale_staging_folder_of_a_killed_init_but_not_a_running_one(tmp_path, data):
    """`workspace init` killed mid-way left its hidden ``.NAME.init-XXXXXXXX`` folder beside the workspace
    for ever; a later init removes it once stale, never one another init may still be building."""
    from lnq_napari.io.atomic import STALE_SECONDS

    old, fresh = tmp_path / ".ws.init-abcd1234", tmp_path / ".other.init-efgh5678"
    mine = tmp_path / ".notes.init-old"  # not a staging name: the user's
    for folder in (old, fresh, mine):
        (folder / "labels").mkdir(parents=True)
        (folder / "workspace.json").write_text("{}")
    past = os.stat(old).st_mtime - STALE_SECONDS - 60
    for folder in (old, mine):
        os.utime(folder, (past, past))
    Workspace.init(tmp_path / "ws", data)
    assert not old.exists()
    assert fresh.is_dir() and mine.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.init-old", ".other.init-efgh5678", "data",
                                                          "ws"]


def test_activate_takes_a_version_pasted_with_spaces_around_it(ws, tmp_path, capsys):
    """`workspace activate W "m001 "` (copied from the models table) was an unknown version."""
    from lnq_napari.cli import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    ws.register_model(model, parent=None, training_cases=["a"], metrics={})
    assert main(["workspace", "activate", str(ws.root), " m001 "]) == 0
    assert Workspace.open(ws.root).active_model()["id"] == "m001"
    assert main(["workspace", "activate", str(ws.root), "\tbundled\n"]) == 0
    assert Workspace.open(ws.root).active_model() is None
    assert [e["version"] for e in ws.journal("activate")] == ["m001", "bundled"]
    assert "active model: bundled (was m001)" in capsys.readouterr().out


def test_a_save_while_another_workspace_is_made_at_the_path_during_its_write_commits_nothing_there(
        ws, tmp_path, data, monkeypatch):
    """The identity was checked before the label file was written (without the lock): the workspace
    renamed and another made at its path meanwhile got the version committed and journaled in it."""
    import lnq_napari.workspace.labels as module

    case, real = "lnq2023-train-0001", module.now  # called once the number is taken, before the write
    labels, old = ws.read_labels(case, "v001"), ws.root

    def replaced_first(*args, **kwargs):
        monkeypatch.setattr(module, "now", real)
        old.rename(tmp_path / "renamed")
        Workspace.init(old, data)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "now", replaced_first)
    with pytest.raises(LNQError, match="is gone from there .*another workspace is there now"):
        ws.add_label_version(case, labels, "correction")
    new = Workspace.open(old)
    assert [v["version"] for v in new.versions(case)] == ["v001"]
    assert sorted(p.name for p in (old / "labels" / case).iterdir()) == ["v001.json", "v001.seg.nrrd"]
    assert [e["action"] for e in new.journal()] == ["init"]
    renamed = Workspace.open(tmp_path / "renamed")  # its number reserved before the move stays unused
    version = renamed.add_label_version(case, labels, "correction")
    assert [v["version"] for v in renamed.versions(case)] == ["v001", version]


def test_a_correction_whose_provenance_is_gone_is_warned_of_with_the_fix(ws):
    """A correction's label file whose v00N.json was deleted was left out of export, next and finetune
    without a word; now a warning names the file, what is wrong and how to get it back (the fix it gave, a
    Save in napari, lost the marks, edits and model version and took the wrong parent). One a later
    intact correction replaces, and a prediction's (its header says so), are not warned of."""
    import warnings

    case = "lnq2023-train-0000"
    labels = _case(0)[1]
    older = ws.add_label_version(case, labels, "correction")
    prediction = ws.add_label_version(case, labels, "prediction")
    for version in (older, prediction):
        (ws.root / "labels" / case / f"{version}.json").unlink()
    with pytest.warns(UserWarning, match="provenance") as caught:
        ws.warn_lost_corrections("fine-tuned")
    said = [str(w.message) for w in caught]
    path = ws.root / "labels" / case / f"{older}.seg.nrrd"
    assert said == [f"case {case}: the correction {path} is not a saved version, since its provenance "
                    f"{older}.json is missing; fine-tuned without it (restore {older}.json from a backup, or "
                    f"run lnq-napari workspace repair {ws.root} to rebuild it from the file's header; "
                    f"delete {path} if it is not wanted)"]
    ws.add_label_version(case, labels, "correction")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ws.warn_lost_corrections("fine-tuned")
    assert [str(w.message) for w in caught] == []


def test_only_a_lost_correction_newer_than_the_one_used_is_warned_of(ws):
    """v002 (a correction, its file deleted) and v003 (a later intact correction, the one export-nnunet,
    next and finetune take): v002 was warned of, though restoring it would change nothing."""
    import warnings

    case = "lnq2023-train-0000"
    labels = _case(0)[1]
    older = ws.add_label_version(case, labels, "correction")
    newer = ws.add_label_version(case, labels, "correction")
    ws.label_path(case, older).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ws.warn_lost_corrections("exported")
    assert [str(w.message) for w in caught] == []
    ws.label_path(case, newer).unlink()  # no correction left: the work takes the original labels
    with pytest.warns(UserWarning, match="gone or damaged") as caught:
        ws.warn_lost_corrections("exported")
    said = [str(w.message) for w in caught if "gone or damaged" in str(w.message)]
    assert [m.split(" (")[0] for m in said] == [f"case {case}: the file of correction {v}"
                                                for v in (older, newer)]


def test_labels_on_another_series_of_the_case_folder_are_refused_naming_that_cause(tmp_path):
    """A workspace made before the axial series was preferred holds labels on the grid of the larger
    coronal reformat beside it; re-saving them was refused as 'on different grids' with no word of why:
    the refusal now says the folder holds several series and labels saved on another lie on its grid."""
    import shutil
    import warnings

    from test_io_dicom_choice import _coronal_reformat
    from test_io_dicom_series import hu, series

    from lnq_napari.io.dicom_headers import VOLUME_SLICES
    from lnq_napari.io.readers import read_volume

    reformat, case_dir = tmp_path / "reformat", tmp_path / "data" / "case1"
    _coronal_reformat(reformat, 4 * VOLUME_SLICES)
    series(case_dir, hu(VOLUME_SLICES), "ax")
    for file in reformat.iterdir():
        shutil.copy(file, case_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = read_volume(reformat)  # the grid an earlier lnq-napari read this case on
        ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
        labels = old.with_array(np.zeros(old.shape, np.uint8))
        labels.array[2:4, 2:5, 2:5] = 1
        with pytest.raises(LNQError, match=r"different grids .*resample them onto it \(io.align_to\) \(case1 "
                                           r"holds 2 DICOM series and its CT is read from one: labels saved "
                                           r"when an earlier lnq-napari read another"):
            ws.add_label_version("case1", labels, "correction")
    assert ws.latest_version("case1") is None
