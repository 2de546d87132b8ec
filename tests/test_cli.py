"""The ``lnq-napari`` parser and progress bar: every option explains itself, the bar reads in percent;
``workspace models`` and ``workspace activate``: a table, the user's choice journalled, errors in one line."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lnq_napari.cli import _progress_bar, build_parser, main
from lnq_napari.io.readers import write_volume
from lnq_napari.io.volume import Volume
from lnq_napari.workspace import Workspace


def walk(parser: argparse.ArgumentParser, path: str = "lnq-napari"):
    """Yield ``(command path, action)`` for every action of the parser and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", argparse.Action([name], name, help=helps.get(name))
                yield from walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_subcommand_and_option_has_a_help_line():
    actions = list(walk(build_parser()))
    assert len(actions) > 30  # the walk reaches into every subcommand, `workspace init` included
    assert {"lnq-napari workspace init", "lnq-napari workspace models", "lnq-napari workspace activate"} <= {
        path for path, _ in actions}
    bare = [f"{path}: {'/'.join(a.option_strings) or a.dest}" for path, a in actions
            if not a.help or a.help == argparse.SUPPRESS]
    assert bare == []


@pytest.mark.parametrize("command", ["train", "predict", "next", "finetune"])
def test_help_shows_no_bare_flag(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.split("options:")[1].splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        if line.startswith("  -") and not re.search(r"\S {2,}\S", line.strip()):  # help not on this line
            assert re.match(r" {3,}[^ -]", after), f"{command}: {line.strip()} has no help text"


def test_progress_bar_appears_only_at_the_first_update(capsys):
    with _progress_bar("predict"):
        pass
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_percent_time_and_message(capsys):
    with _progress_bar("predict") as progress:
        progress(0.0, "loading model")
        progress(0.375, "patch 3 of 8")
        progress(1.5, "")  # clamped
    err = capsys.readouterr().err
    assert "predict:" in err and "38%" in err and "100%" in err and "patch 3 of 8" in err
    assert re.search(r"\[\d\d:\d\d<", err)  # elapsed<remaining
    assert "‰" not in err and "/s" not in err and "it]" not in err


@pytest.mark.parametrize("missing", ["napari", "qtpy", "PyQt6.QtCore"])
def test_viewer_without_the_gui_extra_is_one_error_line(missing, monkeypatch, capsys):
    """In a core-only install (no `gui` extra) `view` says what to install, in one line, exit 2."""
    def view(args):
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    monkeypatch.setattr("lnq_napari.cli._cmd_view", view)
    assert main(["view"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lnq-napari: error:") and len(err.splitlines()) == 1
    assert missing in err and "lnq-napari[all]" in err


def test_other_missing_modules_are_not_disguised(monkeypatch):
    def view(args):
        raise ModuleNotFoundError("No module named 'lnq_napari.nowhere'", name="lnq_napari.nowhere")

    monkeypatch.setattr("lnq_napari.cli._cmd_view", view)
    with pytest.raises(ModuleNotFoundError):
        main(["view"])


# ------------------------------------------------------------------ workspace models / activate
FIGURES = {"candidate_dice": 0.8, "parent_dice": 0.65, "dice_vs_parent": 0.15,
           "surface_dice_vs_parent": -0.03, "recall_vs_parent": 0.2, "false_nodes_vs_parent": 0.25}


@pytest.fixture
def ws(tmp_path):
    """A one-case workspace with m001 (active) and m002, a fine-tune of it the rule refused."""
    write_volume(tmp_path / "data" / "lnq2023-train-0000-ct.nrrd", Volume(np.zeros((4, 6, 6), np.int16)))
    ws = Workspace.init(tmp_path / "ws", tmp_path / "data")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"name": "tiny"}))
    (model / "weights.safetensors").write_bytes(b"weights")
    ws.activate(ws.register_model(model, training_cases=["a"]))
    reason = "refuse (false nodes vs parent +0.25/case): vs parent: Dice +0.150; 3 held-out cases"
    ws.register_model(model, parent="m001", training_cases=["a", "b", "replayed"],
                      metrics={"reason": reason, "figures": FIGURES, "activate": False},
                      corrected_cases=["a", "b"], replay_cases=["replayed"])
    return ws


def test_workspace_models_prints_versions_figures_and_verdicts(ws, capsys):
    assert main(["workspace", "models", str(ws.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["version", "parent", "active", "created", "corrected", "cases", "Dice", "vs",
                              "parent", "surface", "Dice", "vs", "parent", "recall", "vs", "parent", "false",
                              "nodes", "vs", "parent", "verdict"]
    rows = {line.split()[0]: line.split() for line in out[1:4]}
    assert list(rows) == ["bundled", "m001", "m002"]
    assert "*" in rows["m001"] and "*" not in rows["m002"] and "*" not in rows["bundled"]
    assert rows["m002"][1] == "m001" and rows["m002"][-5:] == ["+0.150", "-0.030", "+0.20", "+0.25", "refuse"]
    assert rows["m002"][-6] == "2"  # its corrections, not the replayed case
    assert out[4].startswith("m002: refuse (false nodes vs parent +0.25/case)")


def test_workspace_models_shows_the_surface_dice_the_rule_judged_on_thin_evidence(ws, capsys):
    """A version judged with the prior's cases of no change shows that figure beside the raw difference,
    so a -0.060 the rule let pass is not read as a breach of its -0.02 margin."""
    figures = {**FIGURES, "surface_dice_vs_parent": -0.06, "surface_dice_vs_parent_judged": -0.02}
    ws.register_model(ws.root.parent / "model", parent="m002", training_cases=["a"],
                      metrics={"reason": "activate", "figures": figures, "activate": True},
                      corrected_cases=["a"])
    assert main(["workspace", "models", str(ws.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "judged" in out[0].split()
    rows = {line.split()[0]: line.split() for line in out[1:5]}
    assert rows["m003"][-5:-2] == ["-0.060", "-0.020", "+0.20"]
    assert rows["m002"][-4:-2] == ["-0.030", "+0.20"]  # no judged figure: the column left empty


def test_workspace_activate_and_roll_back(ws, capsys):
    assert main(["workspace", "activate", str(ws.root), "m002", "--reason", "fine on my cases"]) == 0
    assert capsys.readouterr().out.strip() == "active model: m002 (was m001)"
    assert main(["workspace", "activate", str(ws.root), "bundled"]) == 0
    assert capsys.readouterr().out.strip() == "active model: bundled (was m002)"
    assert Workspace.open(ws.root).active_model() is None
    lines = [(e["version"], e["previous"], e["decided_by"], e["reason"]) for e in ws.journal("activate")]
    assert lines[1:] == [("m002", "m001", "user", "fine on my cases"), ("bundled", "m002", "user", "")]


def _half_written(ws):
    (ws.model_path("m002") / "weights.safetensors").write_bytes(b"wei")


def _other_workspace(ws):
    other = ws.root.parent / "other" / "models" / "m001"
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    (other / "weights.safetensors").write_bytes(b"w")
    (other.parent / "registry.json").write_text('{"versions": []}')  # a workspace's models folder
    return str(other)


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda ws: "m007", "'m007' is not registered"),
    (lambda ws: _half_written(ws) or "m002", "does not match the sha256"),
    (_other_workspace, "from another workspace"),
    (lambda ws: str(Path(ws.root).parent / "data"), "is not a model folder (no config.json"),
    (lambda ws: f"nnunet:{Path(ws.root).parent / 'none'}", "none does not exist"),
])
def test_workspace_activate_errors_are_one_line_and_change_nothing(ws, capsys, breaks, message):
    version = breaks(ws)
    before = ws.registry.file.read_bytes(), ws.journal_path.read_bytes()
    assert main(["workspace", "activate", str(ws.root), version]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("lnq-napari: error:") and message in captured.err
    assert (ws.registry.file.read_bytes(), ws.journal_path.read_bytes()) == before


def test_workspace_models_of_a_folder_that_is_no_workspace(tmp_path, capsys):
    assert main(["workspace", "models", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_warning_during_a_progress_bar_is_one_line_of_its_own(monkeypatch, capsys):
    """A core warning while the bar runs reads in full on its own line (written plainly, the bar's redraw
    overwrote its text); the command still succeeds, and the warning hook is restored afterwards."""
    import warnings

    def predict(*args, progress=None, **kwargs):
        progress(0.3, "window 3/10")
        warnings.warn("no lungs found in this CT", UserWarning, stacklevel=2)
        progress(1.0, "done")
        return []

    monkeypatch.setattr("lnq_napari.cli.api.predict", predict)
    hook = warnings.showwarning
    assert main(["predict", "ct.nrrd", "--output", "out"]) == 0
    lines = re.split(r"[\r\n]", capsys.readouterr().err)
    assert "lnq-napari: warning: no lungs found in this CT" in [line.strip() for line in lines]
    assert warnings.showwarning is hook


def test_figures_of_identical_scans_print_as_zero_not_float_noise():
    """compare of a scan with itself printed changes of -3.553e-15 mm and -0.0 %."""
    from lnq_napari.cli import _fmt, _pct

    assert (_fmt(-3.553e-15), _fmt(-0.0), _fmt(0.1234567)) == ("0", "0", "0.1235")
    assert (_pct(-0.04), _pct(-0.06), _pct(None)) == ("+0.0 %", "-0.1 %", "n/a")


def test_finetune_nnunet_prints_a_model_string_a_shell_takes_whole(monkeypatch, capsys, tmp_path):
    """``?`` and ``&`` in the printed ``--model nnunet:...?tile_step=0.75&mirroring=off``: pasted into a
    shell, the command ran in the background with its options cut off."""
    import shlex
    from types import SimpleNamespace

    from lnq_napari import cli

    model = f"nnunet:{tmp_path / 'w s' / 'm002' / 'T__P__3d'}?tile_step=0.75&mirroring=off"
    done = SimpleNamespace(version="m002", parent_version="m001", train_cases=["a"], model_string=model,
                           new_version="m002", parent="m001", activated=True, reason="activate: ...")
    monkeypatch.setattr(cli.api, "finetune_nnunet", lambda *a, **k: done)
    assert cli.main(["finetune-nnunet", "--workspace", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    assert shlex.split(printed.split("use it with ")[1]) == ["--model", model]


def test_measure_shows_the_short_axis_as_the_node_table_does(monkeypatch, capsys):
    """`measure` printed a short axis of 9.99996 mm as "10" beside False (its own .4g format): now rounded
    down to 0.1 mm, "10.0" only where the >= 10 mm flag is set."""
    import types

    from lnq_napari import api
    from lnq_napari.quantify import ENLARGED_MM, NodeRow, reaches

    rows = [NodeRow(id=i, voxels=10, volume_mm3=500.0, volume_cm3=0.5, centroid_mm=(0.0, 0.0, 0.0),
                    long_axis_mm=20.0, short_axis_mm=short, principal_axes_mm=(20.0, short, short),
                    ge_10mm=reaches(short, ENLARGED_MM), side="right")
            for i, short in ((1, 9.99996), (2, 10.0 - 2e-15))]
    monkeypatch.setattr(api, "measure", lambda *a, **k: (rows, types.SimpleNamespace(text=lambda: "")))
    assert main(["measure", "labels.seg.nrrd"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()[1:3]]
    assert [(line[4], line[5]) for line in table] == [("9.9", "False"), ("10.0", "True")]
