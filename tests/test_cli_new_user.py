"""The command line and the api as a new user meets them: outputs that are never written over a user's
file, plain counts, a verdict before figures, errors that name what the caller gave."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.io import GridWarning, read_labels, read_volume, write_volume

DATA = Path(__file__).parent / "data" / "dcmqi"
SERIES = DATA / "ct-3slice"
CASE = "lnq2023-train-0001"


@pytest.fixture(scope="module")
def ct():
    return read_volume(SERIES)


@pytest.fixture(scope="module")
def liver(ct):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        return read_labels(DATA / "liver_spine_seg.nrrd", reference=ct)


def _node(labels, value: int):
    """The voxels of ``labels`` equal to ``value`` as a 0/1 mask on its grid."""
    return labels.with_array((labels.array == value).astype(np.uint8))


def _workspace(tmp_path: Path, ct, liver) -> Path:
    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", ct)
    write_volume(tmp_path / "data" / f"{CASE}-seg.nrrd", _node(liver, 2))
    api.init_workspace(tmp_path / "ws", data=tmp_path / "data")
    return tmp_path / "ws"


def test_workspace_export_keeps_reviewed_labels_it_did_not_export(tmp_path, ct, liver, capsys):
    """`workspace export -o X.dcm` wrote over X.dcm when napari's Save had written it (reviewed labels of a
    viewer without a workspace, kept nowhere else): now refused in one line, the file as it was; its own
    journaled export is still written again."""
    ws = _workspace(tmp_path, ct, liver)
    saved = tmp_path / "reviewed.dcm"
    api.export_dicom_seg(saved, _node(liver, 1), SERIES)  # napari's Save (v001 is node 2's: empty here)
    before = saved.read_bytes()
    assert main(["workspace", "export", str(ws), CASE, "-o", str(saved), "--ct", str(SERIES)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reviewed labels that this workspace did not export" in err[0]
    assert saved.read_bytes() == before
    ours = tmp_path / "ours.dcm"
    for _ in range(2):  # its own export, unchanged: written again
        assert main(["workspace", "export", str(ws), CASE, "-o", str(ours), "--ct", str(SERIES)]) == 0
    api.export_dicom_seg(ours, _node(liver, 1), SERIES)  # saved over with other labels
    changed = ours.read_bytes()
    assert main(["workspace", "export", str(ws), CASE, "-o", str(ours), "--ct", str(SERIES)]) == 2
    assert ours.read_bytes() == changed


def test_workspace_export_writes_again_over_its_own_unjournaled_export(tmp_path, ct, liver, capsys):
    """Exports journaled without a sha256 (before it was recorded), or not journaled at all (a read-only
    workspace misses the line), were refused as "this workspace did not export" when written again. Now
    written again: the SEG on disk holds a stored version of the case. One saved over since is refused."""
    import json

    ws = _workspace(tmp_path, ct, liver)
    journal = ws / "journal.jsonl"
    old, missed = tmp_path / "old.dcm", tmp_path / "missed.dcm"
    for out in (old, missed):
        assert main(["workspace", "export", str(ws), CASE, "-o", str(out), "--ct", str(SERIES)]) == 0
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        if line["action"] == "export":
            if Path(line["file"]).name == "missed.dcm":
                continue  # the line a read-only workspace could not write
            line.pop("sha256", None)  # as a journal written before the sha256 was recorded
        kept.append(line)
    assert len(kept) == len(lines) - 1
    journal.write_text("".join(json.dumps(line) + "\n" for line in kept))
    for out in (old, missed):
        assert main(["workspace", "export", str(ws), CASE, "-o", str(out), "--ct", str(SERIES)]) == 0
        assert "did not export" not in capsys.readouterr().err
    api.export_dicom_seg(old, _node(liver, 1), SERIES)  # napari's Save over the old export: other labels
    changed = old.read_bytes()
    assert main(["workspace", "export", str(ws), CASE, "-o", str(old), "--ct", str(SERIES)]) == 2
    assert "did not export" in capsys.readouterr().err
    assert old.read_bytes() == changed


def test_one_case_is_said_in_the_singular(tmp_path, ct, liver, capsys):
    """`workspace init` and `workspace group` said "1 cases" and "1 patient(s)"."""
    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", ct)
    write_volume(tmp_path / "data" / f"{CASE}-seg.nrrd", _node(liver, 2))
    assert main(["workspace", "init", str(tmp_path / "ws"), "--data", str(tmp_path / "data")]) == 0
    assert f"{tmp_path / 'ws'}: 1 case; model" in capsys.readouterr().out
    (tmp_path / "groups.csv").write_text(f"case,patient,timepoint\n{CASE},p1,t0\n")
    assert main(["workspace", "group", str(tmp_path / "ws"), str(tmp_path / "groups.csv")]) == 0
    assert f"{tmp_path / 'ws'}: 1 case grouped, 1 patient\n" in capsys.readouterr().out


def test_activating_the_active_model_says_so_and_journals_nothing(tmp_path, ct, liver, capsys):
    """`workspace activate W m001` with m001 active printed "active model: m001 (was m001)" and journaled
    an activation that changed nothing."""
    import json

    from lnq_napari.workspace import Workspace

    ws = Workspace.open(_workspace(tmp_path, ct, liver))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    ws.register_model(model, parent=None, training_cases=[CASE], metrics={})
    assert main(["workspace", "activate", str(ws.root), "m001"]) == 0
    capsys.readouterr()
    for version in ("m001", "bundled"):
        journal = ws.journal_path.read_bytes()
        assert main(["workspace", "activate", str(ws.root), version]) == 0
        assert main(["workspace", "activate", str(ws.root), version]) == 0  # again: already active
        said = capsys.readouterr().out.splitlines()[-1]
        assert said == f"{version} is already the active model; nothing changed"
        added = len(ws.journal_path.read_bytes().splitlines()) - len(journal.splitlines())
        assert added == (version != "m001")
    assert [e["version"] for e in ws.journal("activate")] == ["m001", "bundled"]


def test_activating_the_active_model_still_checks_its_files(tmp_path, ct, liver, capsys):
    """`workspace activate W m001` with m001 active but its weights changed since said "already the active
    model; nothing changed" (exit 0); activating checks the files first: refused in one line."""
    import json

    from lnq_napari.workspace import Workspace

    ws = Workspace.open(_workspace(tmp_path, ct, liver))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"w")
    ws.register_model(model, parent=None, training_cases=[CASE], metrics={})
    assert main(["workspace", "activate", str(ws.root), "m001"]) == 0
    capsys.readouterr()
    (Path(ws.model_path("m001")) / "weights.safetensors").write_bytes(b"damaged")
    journal = ws.journal_path.read_bytes()
    assert main(["workspace", "activate", str(ws.root), "m001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "m001" in err[0]
    assert ws.journal_path.read_bytes() == journal


def _fake_finetune(monkeypatch, during=lambda: None) -> list:
    """``api.finetune`` stood in for (no training): a finished run whose candidate m002 is activated;
    ``during`` runs inside it. Returns the list its calls are appended to."""
    from types import SimpleNamespace

    figures = SimpleNamespace(cases=[1, 2], dice_mean=0.5, recall=0.5, fp_per_case=1.0)
    result = SimpleNamespace(metrics_after=figures, metrics_before=figures, validated_on_training=False,
                             to_dict=lambda: {"new_version": "m002"}, activated=True, new_version="m002",
                             reason="better held-out Dice")
    calls: list = []
    monkeypatch.setattr(api, "finetune", lambda *a, **k: calls.append(k) or during() or result)
    return calls


def test_finetune_prints_its_verdict_when_the_json_cannot_be_written(tmp_path, monkeypatch, capsys):
    """`finetune --json F`, F's folder replaced by a file during the run: the command ended on the write
    error (a traceback for EEXIST) and never said m002 was activated. Now the verdict, then one warning."""
    import shutil

    folder = tmp_path / "res"
    folder.mkdir()

    def folder_gone() -> None:
        shutil.rmtree(folder)
        folder.write_text("x")

    _fake_finetune(monkeypatch, folder_gone)
    assert main(["finetune", "--workspace", str(tmp_path), "--json", str(folder / "f.json")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "m002 activated: better held-out Dice"
    err = err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lnq-napari: warning: m002 is kept, but --json ")
    assert folder.read_text() == "x"


def test_finetune_json_is_not_written_over_a_users_file(tmp_path, monkeypatch, capsys):
    """`finetune --json F` over a file of the user's is refused before the run; the file stays."""
    calls = _fake_finetune(monkeypatch)
    users = tmp_path / "notes.json"
    users.write_text('{"mine": 1}\n')
    assert main(["finetune", "--workspace", str(tmp_path), "--json", str(users)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert users.read_text() == '{"mine": 1}\n' and calls == []


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """A small follow-up pair on disk: (baseline CT, its SEG, follow-up CT, its SEG)."""
    from lnq_napari.phantom.followup import write_followup

    out = tmp_path_factory.mktemp("followup")
    ct0, ct1 = write_followup(out, shape=(40, 128, 128), spacing=(2.6, 2.6, 6.0))
    return ct0, out / ct0.name.replace("-ct.", "-full."), ct1, out / ct1.name.replace("-ct.", "-full.")


def test_compare_refuses_a_model_it_would_not_use_and_one_seg_given_twice(scans, tmp_path, capsys):
    """`compare` with a SEG for both scans ignored --model without a word; the baseline's SEG given again
    for the follow-up was said to "look swapped" (or compared as no change)."""
    ct0, seg0, ct1, seg1 = map(str, scans)
    assert main(["compare", "--baseline", ct0, seg0, "--followup", ct1, seg1, "--model",
                 str(tmp_path / "my-model"), "--csv", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model" in err[0] and "both scans have one" in err[0]
    assert main(["compare", "--baseline", ct0, seg0, "--followup", ct1, seg0]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the baseline and follow-up SEGs are the same file" in err[0]
    assert not (tmp_path / "c.csv").exists()


def test_api_compare_refuses_a_model_with_both_segs(scans, tmp_path):
    """`api.compare(..., model=M)` with a SEG for both scans ignored M without a word (only the CLI
    refused it); now the api refuses it, in words an api caller gave, before writing the CSV."""
    from lnq_napari.errors import LNQError

    ct0, seg0, ct1, seg1 = scans
    with pytest.raises(LNQError, match=r"^a model predicts .* both scans have one; leave out the model "
                                       r"\(--model on the command line\)"):
        api.compare(ct0, ct1, seg0, seg1, csv_path=tmp_path / "c.csv", model=tmp_path / "my-model")
    assert not (tmp_path / "c.csv").exists()


def test_labels_saved_cropped_to_a_box_of_the_ct_are_placed_on_its_grid(tmp_path, ct, liver):
    """`api.save_labels` refused labels on a box of the CT's grid (same spacing and direction, whole-voxel
    offset), as a crop around the nodes is stored: now pasted in place; one with labelled voxels beyond
    the CT is still refused (none is dropped), saying how many lie beyond (it said "on different grids")."""
    from lnq_napari.errors import LNQError
    from lnq_napari.io import Volume
    from lnq_napari.workspace import Workspace

    ws = _workspace(tmp_path, ct, liver)
    full = (np.asarray(liver.array) != 0).astype(np.uint8)
    nz = np.argwhere(full)
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    origin = tuple(ct.index_to_physical(np.asarray([lo]))[0])
    assert tuple(hi - lo) != ct.shape
    cropped = Volume(full[box].copy(), ct.spacing, origin, ct.direction)
    saved = api.save_labels(cropped, CASE, workspace=ws)
    stored = Workspace.open(ws).read_labels(CASE, saved.version)
    assert stored.shape == ct.shape
    np.testing.assert_array_equal(np.asarray(stored.array), full)
    beyond = Volume(np.ones((2, 4, 4), np.uint8), ct.spacing,
                    tuple(ct.index_to_physical(np.asarray([[-1, -2, -2]]))[0]), ct.direction)
    inside = np.prod([min(o + s, n) - max(o, 0) for o, s, n in zip((-1, -2, -2), beyond.shape, ct.shape)])
    versions = Workspace.open(ws).versions(CASE)
    with pytest.raises(LNQError, match=rf"with {beyond.array.size - inside} of their {beyond.array.size} "
                                       "labelled voxels beyond the CT; nothing is saved"):
        api.save_labels(beyond, CASE, workspace=ws)
    assert Workspace.open(ws).versions(CASE) == versions


def test_api_errors_of_init_workspace_and_finetune_say_flags_as_the_command_lines(tmp_path, ct, liver):
    """`api.init_workspace(model=...)` said "--model X is not a model folder" and `api.finetune(resume=True,
    iterations=...)` "--resume continues ...; leave out --iterations": flags an api caller never typed. Now
    the argument in words, the flag named as the command line's."""
    from lnq_napari.errors import LNQError

    write_volume(tmp_path / "data" / f"{CASE}-ct.nrrd", ct)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(LNQError, match=r"^the model .*not-a-model is not a model folder .*"
                                       r"\(--model on the command line\)$"):
        api.init_workspace(tmp_path / "ws", data=tmp_path / "data", model=tmp_path / "not-a-model")
    assert not (tmp_path / "ws").exists()
    with pytest.raises(LNQError, match=r"^resume continues the interrupted fine-tune .* \(--resume, "
                                       r"--iterations and --set on the command line\)$"):
        api.finetune(tmp_path / "ws", iterations=3, resume=True)


def test_api_errors_name_no_command_line_flag(tmp_path, liver):
    """`api.evaluate("missing", ...)` said "--pred missing does not exist" and a folder as json_path
    "--json ... is a folder": flags an API user never typed. Now what the argument is, in words."""
    from lnq_napari.errors import LNQError

    write_volume(tmp_path / "a-seg.nrrd", liver.with_array((liver.array == 2).astype(np.uint8)))
    empty = tmp_path / "empty"
    empty.mkdir()
    said = []
    for pred, gt, kwargs in ((tmp_path / "missing", tmp_path, {}), (tmp_path, tmp_path / "missing", {}),
                             (empty, tmp_path, {}), (tmp_path / "a-seg.nrrd", tmp_path / "a-seg.nrrd",
                                                     {"json_path": tmp_path})):
        with pytest.raises(LNQError) as caught:
            api.evaluate(pred, gt, **kwargs)
        said.append(str(caught.value))
    assert not any("--" in line for line in said), said
    assert said[0].startswith("the prediction ") and said[1].startswith("the ground truth ")
    assert said[2].startswith("the prediction folder ") and said[3].startswith("the JSON file ")


def test_a_nifti_whose_header_gives_another_unit_for_mm_values_is_refused_naming_it(tmp_path, capsys):
    """A NIfTI of mm values whose xyzt_units say micrometres was refused as "in another unit (metres?)";
    metres (voxels of metres) and micrometres (of micrometres) are both refused in one line, nothing
    written, the micrometre case naming micrometres."""
    import nibabel as nib

    array = np.where(np.random.default_rng(0).random((40, 40, 12)) > 0.9, 1, 0).astype(np.uint8)
    for unit in ("micron", "meter"):
        image = nib.Nifti1Image(array, np.diag([0.8, 0.8, 3.0, 1.0]))
        image.header.set_xyzt_units(xyz=unit)
        nib.save(image, tmp_path / f"{unit}-seg.nii.gz")
        assert main(["measure", str(tmp_path / f"{unit}-seg.nii.gz"), "--csv", str(tmp_path / "n.csv")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "fix the file's header" in err[0] and not (tmp_path / "n.csv").exists()
        assert ("micrometres" in err[0]) == (unit == "micron")


def test_workspace_export_over_a_file_of_the_users_names_the_file_not_a_folder(tmp_path, ct, liver, capsys):
    """`workspace export W C -o notes.txt` said "the SEG's folder . already holds notes.txt ...: give another
    output folder", though -o names a file."""
    ws = _workspace(tmp_path, ct, liver)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["workspace", "export", str(ws), CASE, "-o", str(notes), "--ct", str(SERIES)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "folder" not in err[0] and "another file name" in err[0]
    assert notes.read_text() == "mine"


def test_comparing_a_slab_of_three_slices_says_it_is_too_thin_not_that_the_scans_do_not_overlap(capsys):
    """`compare` of a 3-slice series with itself said "the two scans do not overlap enough to be
    registered ...: check that both CTs show the chest of the same patient"."""
    seg = str(DATA / "liver_spine_seg.nrrd")
    assert main(["compare", "--baseline", str(SERIES), seg, "--followup", str(SERIES), seg]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "too thin to be registered" in err and "do not overlap" not in err


def test_export_nnunet_refuses_a_ct_whose_header_gives_metres_for_mm_values(tmp_path, capsys):
    """`train` refused a NIfTI of mm values whose header says metres (60 m long); `export-nnunet` wrote it
    into an nnU-Net dataset (exit 0) to be trained on as such."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for kind, array in (("ct", rng.integers(-1000, 400, (40, 40, 12)).astype(np.int16)),
                        ("seg", (rng.random((40, 40, 12)) > 0.95).astype(np.uint8))):
        image = nib.Nifti1Image(array, np.diag([0.8, 0.8, 3.0, 1.0]))
        image.header.set_xyzt_units(xyz="meter")
        nib.save(image, data / f"{CASE}-{kind}.nii.gz")
    raw = tmp_path / "raw"
    assert main(["export-nnunet", "--data", str(data), "--out", str(raw), "--dataset-id", "7",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"lnq-napari: error: case {CASE}: the CT spans ") and "fix the file's header" in err
    assert not raw.exists() or not list(raw.iterdir())


def test_api_output_errors_name_no_command_line_flag(tmp_path):
    """`api.predict(ct, a_file)` said "--output a_file is a file", `api.train` and `api.demo` "--out ...":
    flags an API user never typed."""
    from lnq_napari.errors import LNQError

    afile = tmp_path / "afile"
    afile.write_text("mine")
    said = []
    for call in (lambda: api.predict(SERIES, afile), lambda: api.train(tmp_path, afile),
                 lambda: api.demo(None, out=afile), lambda: api.predict(SERIES, tmp_path / "o", format="x")):
        with pytest.raises(LNQError) as caught:
            call()
        said.append(str(caught.value))
    assert not any("--" in line for line in said), said
    assert all(line.startswith(f"the output folder {afile} is a file") for line in said[:3])
    assert afile.read_text() == "mine"
