"""Counts in the plugin's status lines: one of a thing in the singular ("1 edit", not "1 edits")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lnq_napari.plugin.widgets.save import SaveWidget


@pytest.mark.parametrize("n", [0, 1, 3])
def test_the_save_tab_says_one_edit_in_the_singular(n, tmp_path):
    """The Save tab's state line read "1 edits" after a radiologist's first edit."""
    noun = "edit" if n == 1 else "edits"
    plain = SimpleNamespace(edits=n, autosaver=None)
    assert SaveWidget._state_line(plain) == f"{n} {noun}"
    autosaver = SimpleNamespace(last_error=None, last_path=tmp_path / "a.nrrd")
    saved = SimpleNamespace(edits=n, autosaver=autosaver)
    assert SaveWidget._state_line(saved).startswith(f"{n} {noun}; autosaved to ")
    failed = SimpleNamespace(edits=n, autosaver=SimpleNamespace(last_error="disk full", last_path=None))
    assert SaveWidget._state_line(failed).startswith(f"{n} {noun}; autosave failed (disk full)")
