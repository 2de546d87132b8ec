"""`lnq-napari evaluate` and `measure`, and every command's output folder: user mistakes give one error
line, exit 2 and no output file."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_case_workspace

from lnq_napari import api
from lnq_napari.cli import main
from lnq_napari.io.json_text import strict_json
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume

SPACING = (0.8, 0.8, 3.0)
SHAPE = (12, 40, 40)
CASE = "lnq2023-val-0001"


def node_mask(shift: int = 0) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:8, 10 + shift:22 + shift, 10:24] = 1
    mask[5:7, 30:36, 30:36] = 1
    return mask


def write(path, array, spacing=SPACING, origin=(0.0, 0.0, 0.0)):
    return write_volume(path, Volume(np.asarray(array), spacing, origin))


def write_2d(path):
    import nrrd

    nrrd.write(str(path), np.zeros((20, 20), np.uint8), {"encoding": "raw"})
    return path


def run_cli(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lnq-napari: error:")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]


@pytest.fixture
def case(tmp_path):
    """A ground truth, a CT and a matching prediction on one grid."""
    gt = write(tmp_path / f"{CASE}-full.nrrd", node_mask())
    ct = write(tmp_path / f"{CASE}-ct.nrrd", np.full(SHAPE, 40, np.int16))
    pred = write(tmp_path / f"{CASE}-pred.nrrd", node_mask(shift=2))
    return {"gt": gt, "ct": ct, "pred": pred, "dir": tmp_path}


def bad_inputs(tmp_path):
    text = tmp_path / "notes.nrrd"
    text.write_text("this is not an image\n")
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    return {
        "missing": (tmp_path / "nowhere-seg.nrrd", "does not exist"),
        "not_nrrd": (text, "notes.nrrd"),
        "not_image": (other, "notes.txt"),
        "2d": (write_2d(tmp_path / "flat.nrrd"), "3D"),
    }


@pytest.mark.parametrize("which", ["missing", "not_nrrd", "not_image", "2d"])
@pytest.mark.parametrize("side", ["pred", "gt"])
def test_evaluate_bad_files(case, capsys, which, side):
    path, word = bad_inputs(case["dir"])[which]
    out = case["dir"] / "out" / "scores.json"
    args = {"pred": case["pred"], "gt": case["gt"], side: path}
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(args["pred"]), "--gt", str(args["gt"]),
                                    "--json", str(out)])
    assert_one_line_error(code, err, word)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize("which", ["missing", "not_nrrd", "not_image", "2d"])
def test_measure_bad_files(case, capsys, which):
    path, word = bad_inputs(case["dir"])[which]
    out = case["dir"] / "out" / "nodes.csv"
    code, _, err = run_cli(capsys, ["measure", str(path), "--csv", str(out)])
    assert_one_line_error(code, err, word)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    code, _, err = run_cli(capsys, ["measure", str(case["gt"]), "--ct", str(path), "--csv", str(out)])
    assert_one_line_error(code, err, word)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_evaluate_probability_map_as_truth_is_refused(case, capsys):
    probabilities = write(case["dir"] / "truth-full.nrrd", node_mask().astype(np.float32) * 0.7)
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(case["pred"]), "--gt", str(probabilities),
                                    "--json", str(out)])
    assert_one_line_error(code, err, "non-integer")
    assert not out.exists()


@pytest.mark.parametrize(("values", "word"), [(-1, "negative"), (0.5, "non-integer")])
def test_measure_wrong_label_values(case, capsys, values, word):
    bad = write(case["dir"] / "bad-seg.nrrd", node_mask().astype(np.float32) * values)
    out = case["dir"] / "nodes.csv"
    code, _, err = run_cli(capsys, ["measure", str(bad), "--csv", str(out)])
    assert_one_line_error(code, err, word, "bad-seg.nrrd")
    assert not out.exists()


@pytest.mark.parametrize(
    "grid",
    [{"origin": (0.0, 0.0, 1.5)}, {"spacing": (0.8, 0.8, 2.5)}, {"shape": (11, 40, 40)}],
)
def test_evaluate_prediction_on_another_grid(case, capsys, grid):
    shape = grid.get("shape", SHAPE)
    pred = write(case["dir"] / "moved" / f"{CASE}-pred.nrrd", node_mask()[: shape[0]],
                 grid.get("spacing", SPACING), grid.get("origin", (0.0, 0.0, 0.0)))
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(pred.parent), "--gt", str(case["dir"]),
                                    "--json", str(out)])
    assert_one_line_error(code, err, CASE, "resample")
    assert not out.exists()


def test_measure_with_a_ct_that_does_not_overlap(case, capsys):
    far = write(case["dir"] / "far-ct.nrrd", np.zeros(SHAPE, np.int16), origin=(500.0, 500.0, 500.0))
    out = case["dir"] / "nodes.csv"
    code, _, err = run_cli(capsys, ["measure", str(case["gt"]), "--ct", str(far), "--csv", str(out)])
    assert_one_line_error(code, err, "overlap")
    assert not out.exists()


def test_evaluate_unpaired_cases_are_named(case, capsys):
    preds = case["dir"] / "preds"
    write(preds / f"{CASE}-pred.nrrd", node_mask())
    write(preds / "lnq2023-val-0099-pred.nrrd", node_mask())
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(preds), "--gt", str(case["dir"]),
                                    "--json", str(out)])
    assert_one_line_error(code, err, "lnq2023-val-0099", "unpaired")
    assert not out.exists()


def test_evaluate_does_not_take_a_slicer_segmentation_of_other_structures_as_truth(case, capsys):
    """A ground-truth folder's ``p1.seg.nrrd`` holding a lung alone (3D Slicer names any segmentation so)
    was scored as p1's truth; a data folder's case lookup already left it out."""
    import nrrd

    from lnq_napari.io.segfile import write_seg_nrrd

    gts, preds = case["dir"] / "gts", case["dir"] / "preds"
    lung = write_seg_nrrd(gts / "p1.seg.nrrd", Volume(node_mask(), SPACING), name="Lung")
    array, header = nrrd.read(str(lung))  # named, not coded, as a Slicer user's lung segment is
    nrrd.write(str(lung), array, {k: v for k, v in header.items() if k != "Segment0_Tags"})
    write(preds / "p1-pred.nrrd", node_mask())
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(preds), "--gt", str(gts), "--json", str(out)])
    warning, error = err.strip().splitlines()
    assert "p1.seg.nrrd is not taken as p1's labels: none of its segments ('Lung')" in warning
    assert_one_line_error(code, error, "unpaired cases: no ground truth for p1")
    assert not out.exists()


def test_evaluate_of_one_folder_never_scores_a_prediction_against_itself(case, capsys):
    """``--pred D --gt D`` with ``p1-ct.nrrd``, ``p1-pred.nrrd`` and ``p1-ct.seg.nrrd`` of the lungs alone:
    the lung file left out, the ground-truth lookup fell through to ``p1-pred.nrrd`` and scored it against
    itself (Dice 1.0); with a bare ``p1.nrrd`` (the CT) beside a lung file, the CT was taken for truth."""
    import nrrd

    from lnq_napari.io.segfile import write_seg_nrrd

    folder = case["dir"] / "both"
    write(folder / "p1-ct.nrrd", np.full(SHAPE, -100, np.int16))
    write(folder / "p1-pred.nrrd", node_mask(shift=2))
    lung = write_seg_nrrd(folder / "p1-ct.seg.nrrd", Volume(node_mask(), SPACING), name="Lung")
    array, header = nrrd.read(str(lung))
    nrrd.write(str(lung), array, {k: v for k, v in header.items() if k != "Segment0_Tags"})
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(folder), "--gt", str(folder),
                                    "--json", str(out)])
    warning, error = err.strip().splitlines()
    assert "p1-ct.seg.nrrd is not taken as p1's labels" in warning
    assert_one_line_error(code, error, "unpaired cases: no ground truth for p1")
    lung.rename(folder / "p1.seg.nrrd")
    (folder / "p1-ct.nrrd").rename(folder / "p1.nrrd")  # the CT named as Slicer names volumes
    (folder / "p1-pred.nrrd").rename(case["dir"] / "p1-pred.nrrd")
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(case["dir"] / "p1-pred.nrrd"),
                                    "--gt", str(folder), "--json", str(out)])
    assert_one_line_error(code, err.strip().splitlines()[-1], "no ground truth for p1")
    assert not out.exists()


def test_evaluate_refuses_a_case_whose_prediction_and_truth_are_one_file(case, capsys):
    """A folder holding ``p1-seg.nrrd`` alone given as both ``--pred`` and ``--gt``: each lookup took it, and
    the case scored Dice 1.0 against itself."""
    folder = case["dir"] / "one"
    write(folder / "p1-seg.nrrd", node_mask())
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(folder), "--gt", str(folder),
                                    "--json", str(out)])
    assert_one_line_error(code, err, "p1: the prediction and the ground truth are the same file")
    assert not out.exists()


def test_output_path_that_is_a_folder(case, capsys):
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(case["pred"]), "--gt", str(case["gt"]),
                                    "--json", str(case["dir"])])
    assert_one_line_error(code, err, "folder")
    code, _, err = run_cli(capsys, ["measure", str(case["gt"]), "--csv", str(case["dir"])])
    assert_one_line_error(code, err, "folder")


@pytest.mark.parametrize("argv", [
    ["predict", "{ct}", "--output", "{file}"], ["demo", "--out", "{file}", "--headless"],
    ["train", "--data", "{dir}", "--out", "{file}", "--iterations", "1"],
    ["phantom", "{file}", "--cases", "1"],
    ["export-nnunet", "--out", "{file}", "--dataset-id", "7", "--data", "{dir}"],
    ["workspace", "init", "{file}", "--data", "{dir}"]])
def test_output_folder_that_is_a_file(case, capsys, argv):
    """An output folder given as an existing file: one line naming it, before anything is computed (it
    was a traceback from ``mkdir`` for predict and train; `workspace init` said "exists and is not empty");
    the file is left as it was."""
    blocker = case["dir"] / "results"
    blocker.write_text("mine")
    fill = {"ct": str(case["ct"]), "file": str(blocker), "dir": str(case["dir"])}
    code, _, err = run_cli(capsys, [a.format(**fill) for a in argv])
    assert_one_line_error(code, err, str(blocker), "is a file; give a folder for")
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("argv", [["predict", "{ct}", "--output", ""], ["demo", "--out", "", "--headless"],
                                  ["phantom", "", "--cases", "1"],
                                  ["workspace", "init", "", "--data", "{dir}"]])
def test_an_empty_output_folder_is_refused(case, capsys, argv, monkeypatch):
    """`predict CT -o ""` wrote into the current folder."""
    monkeypatch.chdir(case["dir"])
    before = sorted(p.name for p in case["dir"].iterdir())
    code, _, err = run_cli(capsys, [a.format(ct=case["ct"], dir=case["dir"]) for a in argv])
    assert_one_line_error(code, err, "is empty; give a folder for")
    assert sorted(p.name for p in case["dir"].iterdir()) == before


@pytest.mark.parametrize("argv", [["workspace", "init", "{out}", "--data", ""],
                                  ["export-nnunet", "--out", "{out}", "--dataset-id", "7", "--data", ""],
                                  ["train", "--data", "", "--out", "{out}", "--iterations", "1"]])
def test_an_empty_data_folder_is_refused(case, capsys, argv, monkeypatch):
    """`workspace init W --data ""` made a workspace over the current folder."""
    monkeypatch.chdir(case["dir"])  # a folder of cases: read as --data, it would have been taken
    before = sorted(p.name for p in case["dir"].iterdir())
    code, _, err = run_cli(capsys, [a.format(out=case["dir"] / "out") for a in argv])
    assert_one_line_error(code, err, "is an empty path; give the folder of cases")
    assert sorted(p.name for p in case["dir"].iterdir()) == before


@pytest.mark.parametrize("argv", [
    ["predict", "{ct}", "--output", "{under}"], ["demo", "--out", "{under}", "--headless"],
    ["train", "--data", "{dir}", "--out", "{under}", "--iterations", "1"],
    ["phantom", "{under}", "--cases", "1"],
    ["export-nnunet", "--out", "{under}", "--dataset-id", "7", "--data", "{dir}"],
    ["workspace", "init", "{under}", "--data", "{dir}"],
    ["measure", "{gt}", "--csv", "{under}"],
    ["evaluate", "--pred", "{pred}", "--gt", "{gt}", "--json", "{under}"]])
def test_output_under_a_file(case, capsys, argv):
    """An output whose folder is a file: one line naming it, before anything runs (predict predicted the
    whole CT first, then raised ENOTDIR's traceback); the file is left as it was."""
    blocker = case["dir"] / "results"
    blocker.write_text("mine")
    fill = {"ct": str(case["ct"]), "gt": str(case["gt"]), "pred": str(case["pred"]),
            "under": str(blocker / "out"), "dir": str(case["dir"])}
    code, _, err = run_cli(capsys, [a.format(**fill) for a in argv])
    assert_one_line_error(code, err, str(blocker), "which is a file")
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("argv", [
    ["measure", "{gt}", "--csv", "{gt}"], ["measure", "{gt}", "--ct", "{ct}", "--csv", "{ct}"],
    ["evaluate", "--pred", "{pred}", "--gt", "{gt}", "--json", "{gt}"],
    ["measure", "{gt}", "--csv", "{dir}/table.nii.gz"]])
def test_a_table_never_replaces_an_input_or_an_image(case, capsys, argv):
    """``measure seg --csv seg`` turned the user's labels into CSV (exit 0): refused in one line, the
    files unchanged and no table written under an image's name."""
    fill = {k: str(v) for k, v in case.items()}
    before = {k: case[k].read_bytes() for k in ("gt", "ct", "pred")}
    code, _, err = run_cli(capsys, [a.format(**fill) for a in argv])
    assert_one_line_error(code, err)
    assert "one of this command's inputs" in err or "names an image or label file" in err
    assert {k: case[k].read_bytes() for k in before} == before
    assert not (case["dir"] / "table.nii.gz").exists()


def test_train_into_a_model_folder_leaves_the_model_as_it_is(case, capsys, tmp_path):
    """`train --out` on a trained model's folder replaced it with a 2-iteration model (the bundled one with
    an editable install); without --resume it is refused before any case is read."""
    import shutil

    from lnq_napari.model import bundled_model_path

    model = Path(shutil.copytree(bundled_model_path(), tmp_path / "model"))
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, ["train", "--data", str(case["dir"]), "--out", str(model),
                                    "--iterations", "2"])
    assert_one_line_error(code, err, "already holds a model or its training (config.json, "
                                     "weights.safetensors)", "resume that training (--resume")
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before


def test_a_name_too_long_for_the_file_system_is_one_line(case, capsys):
    code, _, err = run_cli(capsys, ["measure", str(case["gt"]), "--csv", str(case["dir"] / ("n" * 300))])
    assert_one_line_error(code, err, "cannot write")


# ------------------------------------------------ the same commands succeed on good input
def test_evaluate_folders_pair_by_case_and_prefer_full_truth(case, capsys):
    write(case["dir"] / f"{CASE}-seg.nrrd", node_mask(shift=2))  # partial label: must not be used
    preds = case["dir"] / "preds"
    write(preds / f"{CASE}-pred.nrrd", node_mask(shift=2))
    write(preds / f"{CASE}-ct.nrrd", np.zeros(SHAPE, np.int16))  # ignored
    out = case["dir"] / "scores.json"
    code, stdout, _ = run_cli(capsys, ["evaluate", "--pred", str(preds), "--gt", str(case["dir"]),
                                       "--json", str(out)])
    assert code == 0 and CASE in stdout
    result = json.loads(out.read_text())
    (row,) = result["cases"]
    assert row["case"] == CASE and row["gt"].endswith("-full.nrrd")
    gt, pred = node_mask(), node_mask(shift=2)
    expected = 2 * (gt & pred).sum() / (gt.sum() + pred.sum())
    assert row["dice"] == pytest.approx(expected, abs=1e-6)
    assert result["summary"]["n_cases"] == 1


def test_evaluate_scores_a_prediction_stored_in_another_axis_order(case, capsys, tmp_path):
    """The same voxels stored x-flipped and sagittal-first were refused as another grid ('resample');
    they are the same points in space, so they are scored as the truth's grid stores them."""
    from lnq_napari import api
    from lnq_napari.io.readers import read_volume

    pred = read_volume(case["pred"])
    steps = pred.direction_matrix * np.asarray(pred.spacing)[None, :]
    steps = np.stack([-steps[:, 0], steps[:, 2], steps[:, 1]], axis=1)  # x flipped; then z before y
    spacing = np.linalg.norm(steps, axis=0)
    origin = pred.index_to_physical(np.array([[0.0, 0.0, SHAPE[2] - 1]]))[0]
    ijk = np.asarray(pred.array).transpose(2, 1, 0)[::-1].transpose(0, 2, 1)
    other = write_volume(tmp_path / f"{CASE}-pred.nrrd", Volume(
        np.ascontiguousarray(ijk.transpose(2, 1, 0)), tuple(spacing), tuple(origin),
        tuple((steps / spacing).ravel())))
    expected = api.evaluate(case["pred"], case["gt"]).cases[0].scores
    scored = api.evaluate(other, case["gt"]).cases[0].scores
    assert (scored.dice, scored.assd_mm, scored.nodes_hit, scored.fp_nodes) == (
        expected.dice, expected.assd_mm, expected.nodes_hit, expected.fp_nodes)
    shifted = write_volume(tmp_path / "shifted-pred.nrrd", Volume(
        np.asarray(read_volume(other).array), tuple(spacing), tuple(np.add(origin, 1.0)),
        tuple((steps / spacing).ravel())))
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(shifted), "--gt", str(case["gt"])])
    assert_one_line_error(code, err, "grid")  # other points in space: still refused


def test_evaluate_empty_and_255_predictions_warn_but_score(case, capsys, tmp_path):
    from lnq_napari import api

    empty = write(tmp_path / "e" / f"{CASE}-pred.nrrd", np.zeros(SHAPE, np.uint8))
    out = tmp_path / "scores.json"
    result = api.evaluate(empty, case["gt"], json_path=out)
    assert result.cases[0].scores.dice == 0.0 and math.isnan(result.cases[0].scores.assd_mm)
    assert json.loads(out.read_text())["cases"][0]["assd_mm"] is None  # JSON has no NaN
    wrong = write(tmp_path / "w" / f"{CASE}-pred.nrrd", node_mask() * 255)
    with pytest.warns(UserWarning, match="255"):
        result = api.evaluate(wrong, case["gt"])
    assert result.cases[0].scores.dice == 0.0
    floats = write(tmp_path / "f" / f"{CASE}-pred.nrrd", node_mask().astype(np.float32) * 0.9)
    with pytest.warns(UserWarning, match="float"):
        result = api.evaluate(floats, case["gt"])
    assert result.cases[0].scores.dice == 0.0  # truncated to empty, as the challenge did



def test_evaluate_returns_typed_rows_and_writes_them_as_before(case, tmp_path):
    """evaluate's result is typed (rows of files and CaseScores, a ScoreSummary), its JSON what it wrote
    when the result was a dict."""
    from lnq_napari import api
    from lnq_napari.metrics import CaseScores, ScoreSummary

    out = tmp_path / "scores.json"
    result = api.evaluate(case["pred"], case["gt"], json_path=out)
    (row,) = result.cases
    assert isinstance(row.scores, CaseScores) and isinstance(result.summary, ScoreSummary)
    assert row.case == CASE and row.gt == str(case["gt"]) and result.summary.n_cases == 1
    assert json.loads(out.read_text()) == json.loads(strict_json(result.to_dict()))
    assert list(json.loads(out.read_text())["cases"][0])[:4] == ["case", "pred", "gt", "dice"]
    assert CaseScores.from_dict(json.loads(out.read_text())["cases"][0]) == row.scores


def test_measure_writes_the_table(case, capsys):
    out = case["dir"] / "nodes.csv"
    argv = ["measure", str(case["gt"]), "--ct", str(case["ct"]), "--csv", str(out)]
    code, stdout, _ = run_cli(capsys, argv)
    assert code == 0
    assert "2 nodes" in stdout
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and "mean_hu" in lines[0]
    empty = write(case["dir"] / "empty-seg.nrrd", np.zeros(SHAPE, np.uint8))  # no node: the same columns
    assert run_cli(capsys, ["measure", str(empty), "--ct", str(case["ct"]), "--csv", str(out)])[0] == 0
    assert out.read_text().splitlines() == lines[:1]


def test_export_nnunet_refuses_workers_below_one(case, capsys):
    code, _, err = run_cli(capsys, ["export-nnunet", "--out", str(case["dir"] / "raw"), "--dataset-id", "7",
                                    "--data", str(case["dir"]), "--workers", "0"])
    assert_one_line_error(code, err, "workers must be a whole number of at least 1")
    assert not (case["dir"] / "raw").exists()


def test_a_folder_without_dicom_is_one_line_without_itk_warnings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lnq_napari.cli", "measure", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert "without a DICOM series" in proc.stderr


def test_real_process_prints_one_line_and_exits_2(tmp_path):
    missing = tmp_path / "missing-seg.nrrd"
    proc = subprocess.run([sys.executable, "-m", "lnq_napari.cli", "measure", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("lnq-napari: error:") and "Traceback" not in proc.stderr


def test_a_folder_that_cannot_be_written_is_one_line(monkeypatch, capsys):
    """A read-only workspace (or a full disk) gave OSError's traceback from the command that wrote."""
    import errno

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "/data/ws/.lnq.lock")

    monkeypatch.setattr("lnq_napari.cli._cmd_phantom", read_only)
    code, _, err = run_cli(capsys, ["phantom", "/data/ws"])
    assert_one_line_error(code, err, "cannot write /data/ws/.lnq.lock (Read-only file system)")


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path):
    """``lnq-napari ... | head``: the reader stops early; no BrokenPipeError traceback."""
    script = ("import sys\nfrom lnq_napari import cli\n"
              "cli._cmd_phantom = lambda args: [print('line', i) for i in range(200000)]\n"
              "sys.exit(cli.main(['phantom', 'x']))\n")
    run = subprocess.run(f"{sys.executable} -c \"{script}\" | head -1", shell=True, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.stdout == "line 0\n" and "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr


def test_a_single_dicom_slice_without_a_thickness_is_refused_without_the_thickness_warning(case, capsys):
    """predict refuses a DICOM series of one slice; the reader's warning that its thickness (not given) was
    taken as 1 mm was printed just before, as noise. Read alone, it still warns."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    from lnq_napari.io import read_volume
    from lnq_napari.io.geometry import SliceThicknessWarning

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, generate_uid(), generate_uid()
    ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SamplesPerPixel, ds.PhotometricInterpretation = [0.8, 0.8], 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 40, 40, 16, 16, 15
    ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = 1, -1024, 1
    ds.PixelData = np.full((40, 40), 1064, np.int16).tobytes()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CTImageStorage, \
        ds.SOPInstanceUID
    (case["dir"] / "one").mkdir()
    ds.save_as(case["dir"] / "one" / "slice.dcm", enforce_file_format=True)
    code, _, err = run_cli(capsys, ["predict", str(case["dir"] / "one"), "-o", str(case["dir"] / "out")])
    assert_one_line_error(code, err, "not in a single slice; give the whole series")
    with pytest.warns(SliceThicknessWarning, match="gives no slice thickness"):
        read_volume(case["dir"] / "one")


def test_a_single_slice_is_refused_and_a_label_file_as_the_ct_warned_about(case, capsys):
    one = write(case["dir"] / "slice-ct.nrrd", np.full((1, 40, 40), 40, np.int16))
    out = case["dir"] / "predicted"
    code, _, err = run_cli(capsys, ["predict", str(one), "-o", str(out)])
    assert_one_line_error(code, err, "not in a single slice; give the whole series")
    assert not out.exists()
    code, printed, err = run_cli(capsys, ["measure", str(case["gt"]), "--ct", str(case["gt"])])
    assert code == 0 and "not in Hounsfield units" in err  # mean HU of a label file would read 1


def test_api_evaluate_takes_volumes_and_names_what_else_it_takes(case):
    """evaluate(Volume, Volume) raised TypeError (Path of a Volume); now it scores the pair as one case,
    a Volume beside a label file too, and names anything else."""
    from lnq_napari import api
    from lnq_napari.errors import LNQError
    from lnq_napari.io.readers import read_labels, read_volume

    by_files = api.evaluate(case["pred"], case["gt"]).cases[0]
    pred, gt = read_volume(case["pred"]), read_labels(case["gt"])
    for args, named in (((pred, gt), "case"), ((pred, case["gt"]), by_files.case),
                        ((str(case["pred"]), gt), by_files.case)):  # a file's case, as the CLI names it
        row = api.evaluate(*args).cases[0]
        assert row.case == named and row.scores.dice == by_files.scores.dice > 0
    with pytest.raises(LNQError, match="the ground truth .* is not a file; beside a Volume give a label"):
        api.evaluate(pred, case["dir"])
    with pytest.raises(LNQError, match="the prediction must be a file or folder path or an lnq_napari Volume "
                                       r"\(got numpy.ndarray\)"):
        api.evaluate(np.asarray(pred.array), case["gt"])


def test_api_evaluate_reads_a_truth_volume_as_a_truth_file(case):
    """A truth Volume was scored as it was where a truth file is read as its non-zero voxels: 0/255 truth
    scored Dice 0 with no truth node, one id per node scored only id 1, a CT was scored (Dice 0.001)."""
    from lnq_napari import api
    from lnq_napari.errors import LNQError
    from lnq_napari.io.readers import read_volume

    want = api.evaluate(case["pred"], case["gt"]).cases[0].scores
    truth = read_volume(case["gt"])
    ids = np.asarray(truth.array).astype(np.int32)
    ids[:, :, 28:] *= 2  # the second node gets id 2
    keys = ("dice", "nodes_gt", "nodes_hit", "fp_nodes")
    for array in (np.asarray(truth.array) * 255, ids):
        got = api.evaluate(case["pred"], truth.with_array(array.astype(array.dtype))).cases[0].scores
        assert [getattr(got, k) for k in keys] == [getattr(want, k) for k in keys]
    ct = truth.with_array(np.where(np.asarray(truth.array) > 0, 40, -1000).astype(np.int16))
    with pytest.raises(LNQError, match="the ground truth holds negative values .* looks like a CT"):
        api.evaluate(case["pred"], ct)


def test_api_refuses_a_volume_that_is_not_3d_in_one_line(case):
    """A 2D or 4D array in a Volume gave scipy's, numpy's or SimpleITK's traceback (or "a single slice")."""
    from lnq_napari import api
    from lnq_napari.errors import LNQError

    flat = Volume(np.ones((40, 40), np.uint8), (1.0, 1.0, 1.0))
    stacked = Volume(np.zeros((1, *SHAPE), np.int16))
    for call in (lambda: api.measure(flat), lambda: api.node_table(flat), lambda: api.find_nodes(flat),
                 lambda: api.evaluate(flat, flat), lambda: api.find_nodes(stacked)):
        with pytest.raises(LNQError, match=r"holds a [24]D array \(shape .*\); a CT or label volume is 3D"):
            call()


def test_view_without_a_display_is_one_line(case, capsys, monkeypatch):
    """Qt aborted the process (exit 134) with its own lines when no display was there."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    code, _, err = run_cli(capsys, ["view", str(case["ct"])])
    assert_one_line_error(code, err, "no display to open napari on")
    from lnq_napari.errors import LNQError
    from lnq_napari.plugin.app import view  # from Jupyter on a server: the kernel died (Qt's abort)

    with pytest.raises(LNQError, match="no display to open napari on"):
        view(case["ct"])


@pytest.mark.parametrize("model", ["{dir}/nonexist", "{dir}", "nnunet:{dir}", "nnunet:"])
def test_view_names_a_model_that_is_none_before_a_window_opens(case, capsys, monkeypatch, model):
    """`view --model nonexist` opened napari and said nothing (predict and demo refuse it at once)."""
    from lnq_napari import api
    from lnq_napari.plugin import app

    monkeypatch.setattr(api, "has_display", lambda: True)
    monkeypatch.setattr(app, "view", lambda *a, **k: pytest.fail("napari opened"))
    code, _, err = run_cli(capsys, ["view", str(case["ct"]), "--model", model.format(dir=case["dir"])])
    assert_one_line_error(code, err)
    assert "model" in err or "nnU-Net" in err


def test_evaluate_refuses_a_ct_given_as_the_prediction(case, capsys):
    """A CT passed as --pred was scored with a warning: 72,060 false nodes and exit 0."""
    hu = np.full(SHAPE, 40, np.int16)
    hu[:, :5] = -1000  # air around the body
    ct = write(case["dir"] / "scan-ct.nrrd", hu)
    out = case["dir"] / "scores.json"
    code, _, err = run_cli(capsys, ["evaluate", "--pred", str(ct), "--gt", str(case["gt"]),
                                    "--json", str(out)])
    assert_one_line_error(code, err, "negative values", "no label mask")
    assert not out.exists()


def test_api_evaluate_scores_a_find_nodes_result_as_its_binary_mask(case):
    """The node-id mask find_nodes returns was scored as the challenge scores it (label 1 only): Dice 0.34
    and recall 1 of 5 for a prediction whose 0/1 mask scores 0.88 and 5 of 5."""
    from lnq_napari import api
    from lnq_napari.components import label_components
    from lnq_napari.io.readers import read_labels, read_volume

    pred = read_volume(case["pred"])
    ids = pred.with_array(label_components(np.asarray(pred.array) > 0)[0].astype(np.int32))
    result = api.NodeResult(ids, ids.with_array(np.zeros(ids.shape, np.float32)), "m", [], [])
    want = api.evaluate(pred, read_labels(case["gt"])).cases[0].scores
    got = api.evaluate(result, case["gt"]).cases[0].scores
    keys = ("dice", "nodes_hit", "fp_nodes")
    assert [getattr(got, k) for k in keys] == [getattr(want, k) for k in keys]
    with pytest.warns(UserWarning, match=r"score its binary_mask\(\)"):
        api.evaluate(ids, case["gt"])


def test_an_interrupted_finetune_says_how_to_continue(tmp_path, capsys, monkeypatch):
    """Ctrl-C during finetune printed only "interrupted"; its plan is kept for --resume."""
    from lnq_napari import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "finetune", interrupted)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "pending.json").write_text("{}")  # its plan (none yet: the last test here)
    assert main(["finetune", "--workspace", str(tmp_path)]) == 130
    assert "interrupted; run it again with --resume" in capsys.readouterr().err
    monkeypatch.setattr(api, "list_models", interrupted)
    assert main(["workspace", "models", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "lnq-napari: interrupted"


def test_workspace_init_inside_a_workspace_is_one_line_and_makes_nothing(case, capsys):
    outer = case["dir"] / "ws"
    assert run_cli(capsys, ["workspace", "init", str(outer), "--data", str(case["dir"])])[0] == 0
    before = sorted(outer.rglob("*"))
    code, _, err = run_cli(capsys, ["workspace", "init", str(outer / "sub"), "--data", str(case["dir"])])
    assert_one_line_error(code, err, "is inside the workspace", "choose a folder outside it")
    assert sorted(outer.rglob("*")) == before


@pytest.mark.parametrize("argv", [["workspace", "models", "{ws}"],
                                  ["workspace", "activate", "{ws}", "bundled"],
                                  ["next", "--workspace", "{ws}", "-n", "1"],
                                  ["finetune", "--workspace", "{ws}", "--iterations", "1"]])
def test_a_workspace_of_a_newer_format_is_refused_and_left_as_it_is(case, capsys, argv):
    """workspace.json of format version 99 was read as version 1: listed, ranked, activated into (a newer
    version's files rewritten by an older lnq-napari). A missing workspace path said "no workspace.json"."""
    from lnq_napari.workspace.cases import META_FILE, new_meta, write_meta

    ws = case["dir"] / "ws"
    ws.mkdir()
    write_meta(ws, {**new_meta(case["dir"], ws), "format_version": 99})
    before = sorted((p.name, p.read_bytes()) for p in ws.rglob("*") if p.is_file())
    code, _, err = run_cli(capsys, [a.format(ws=ws) for a in argv])
    assert_one_line_error(code, err, "workspace.json has format_version 99, newer than this lnq-napari reads",
                          "upgrade lnq-napari (pip install -U lnq-napari) to open the workspace")
    assert sorted((p.name, p.read_bytes()) for p in ws.rglob("*") if p.is_file()) == before
    assert (ws / META_FILE).exists()
    code, _, err = run_cli(capsys, [a.format(ws=case["dir"] / "nowhere") for a in argv])
    assert_one_line_error(code, err, "nowhere does not exist; check the path")
    assert not (case["dir"] / "nowhere").exists()


@pytest.mark.parametrize("version", ["1", 1.0, None, 0])
def test_a_workspace_format_version_edited_by_hand_is_not_called_newer(case, capsys, version):
    """format_version "1", 1.0 or null (edited by hand) was refused as "written by a newer lnq-napari" (the
    newer-version refusal's old words)."""
    from lnq_napari.workspace.cases import new_meta, write_meta

    ws = case["dir"] / "ws"
    ws.mkdir()
    write_meta(ws, {**new_meta(case["dir"], ws), "format_version": version})
    code, _, err = run_cli(capsys, ["workspace", "models", str(ws)])
    assert_one_line_error(code, err, f"has format_version {json.dumps(version)}, which is not a valid "
                                     "workspace format version", "restore the file from a backup")
    assert "newer" not in err


def test_an_interrupted_train_or_predict_says_what_is_left(tmp_path, capsys, monkeypatch):
    """Ctrl-C during train printed only "interrupted", though `train --resume` continues from a checkpoint
    when one was written (and there is nothing to resume before the first); predict said nothing of the
    cases it had written."""
    from lnq_napari import api
    from lnq_napari.training.trainer import STATE_DIR

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    monkeypatch.setattr(api, "predict", interrupted)
    out = tmp_path / "model"
    argv = ["train", "--data", str(tmp_path), "--out", str(out)]
    assert main(argv) == 130
    assert "nothing to resume, run it again" in capsys.readouterr().err
    (out / STATE_DIR).mkdir(parents=True)
    (out / STATE_DIR / "state.pt").write_bytes(b"x")
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("lnq-napari: interrupted; run it again with --resume")
    assert len(err.splitlines()) == 1
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "p")]) == 130
    assert "before it are whole, the others missing: run it again" in capsys.readouterr().err


def test_demo_of_a_label_file_given_as_the_ct_leaves_no_results_folder(case, capsys):
    """`demo seg.nrrd --out D` refused the labels as a CT after making D: an empty results folder was left."""
    out = case["dir"] / "results"
    code, _, err = run_cli(capsys, ["demo", str(case["gt"]), "--out", str(out), "--headless"])
    assert_one_line_error(code, err, "looks like a label map, not a CT")
    assert not out.exists()


def test_a_damaged_picture_is_one_line_without_libpng_s_own(tmp_path):
    """A .png given as the CT: ITK's PNG reader printed libpng's line ("invalid chunk type") above ours."""
    picture = tmp_path / "scan.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    proc = subprocess.run([sys.executable, "-m", "lnq_napari.cli", "measure", str(picture)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert "scan.png is a picture, not a supported image" in proc.stderr


@pytest.mark.parametrize("argv", [
    ["predict", "{ct}", "--output", "{out}"], ["demo", "{ct}", "--out", "{out}", "--headless"],
    ["train", "--data", "{dir}", "--out", "{out}", "--iterations", "1"], ["phantom", "{out}", "--cases", "1"],
    ["export-nnunet", "--out", "{out}", "--dataset-id", "7", "--data", "{dir}"],
    ["workspace", "init", "{out}", "--data", "{dir}"], ["measure", "{gt}", "--csv", "{out}/nodes.csv"],
    ["evaluate", "--pred", "{pred}", "--gt", "{gt}", "--json", "{out}.json"],
    ["compare", "--baseline", "{ct}", "{gt}", "--followup", "{ct}", "{pred}", "--csv", "{out}.csv"]])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(case, capsys, monkeypatch, argv):
    """An output folder on a read-only disk: predict read and predicted the CT (for a folder of cases, the
    first case), then failed at its first write with a temp file's name; compare registered the scans before
    its table failed."""
    import errno
    import tempfile

    from lnq_napari import api

    read_only = case["dir"] / "mounted"
    read_only.mkdir()
    mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(read_only.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(api, "load_predictor", lambda *a, **k: pytest.fail("a model was loaded"))
    fill = {**{k: str(v) for k, v in case.items()}, "out": str(read_only / "out")}
    code, _, err = run_cli(capsys, [a.format(**fill) for a in argv])
    assert_one_line_error(code, err, f"nothing can be written in {read_only} (Read-only file system)")
    assert list(read_only.iterdir()) == []


def test_a_write_check_file_that_cannot_be_removed_at_once_does_not_refuse_the_folder(
        case, capsys, monkeypatch):
    """On Windows a virus scanner holds a new file open a moment, so removing the write check's file
    failed: `measure --csv` was refused as "cannot write .../.write-check.xxxxxxxx.tmp"."""
    import os

    from lnq_napari.io.atomic import is_temp

    unlink = os.unlink

    def held_open(path, *args, **kwargs):
        if Path(path).name.startswith(".write-check."):
            raise PermissionError(13, "The process cannot access the file", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", held_open)
    out = case["dir"] / "tables"
    out.mkdir()
    code, _, err = run_cli(capsys, ["measure", str(case["gt"]), "--csv", str(out / "nodes.csv")])
    assert code == 0, err
    assert (out / "nodes.csv").is_file()
    assert all(is_temp(p) for p in out.iterdir() if p.name != "nodes.csv")  # swept by remove_stale_temps


def test_ctrl_c_before_a_finetune_s_plan_does_not_send_to_resume(tmp_path, monkeypatch, capsys):
    """A fine-tune stopped before its plan was written said "run it again with --resume", which then
    answered "no interrupted fine-tune to resume"."""
    ws = one_case_workspace(tmp_path / "ws")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "finetune", stopped)
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("lnq-napari: interrupted;") and "--resume" not in err, err
    (ws.models_dir / "pending.json").write_text("{}")  # a plan pending: --resume is the way on
    assert main(["finetune", "--workspace", str(ws.root), "--iterations", "2"]) == 130
    assert "--resume" in capsys.readouterr().err

