"""The ``lnq-napari`` parser and progress bar: every option explains itself, the bar reads in percent."""

from __future__ import annotations

import argparse
import re

import pytest

from lnq_napari.cli import _progress_bar, build_parser, main


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
    assert any(path == "lnq-napari workspace init" for path, _ in actions)
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
