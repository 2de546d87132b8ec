"""The Save widget's status: a refusal or a problem of the last Save is kept above the edits' line (an
autosave ending seconds later overwrote why the Save was refused) until the next Save or another case."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import lnq_napari.api as api
import lnq_napari.plugin.widgets.save as save_module
from lnq_napari.errors import LNQError
from lnq_napari.plugin.app import open_viewer

pytestmark = pytest.mark.gui


@pytest.fixture
def edited(make_napari_viewer, qtbot, phantom_files, autosave_dir, tmp_path):
    """The phantom case open as ``lnq-napari view`` opens it, one voxel painted: the viewer, its Save widget
    (saving under ``tmp_path``: not beside the phantom case other tests save beside)."""
    viewer = open_viewer(ct=phantom_files.ct, seg=phantom_files.seg, viewer=make_napari_viewer())
    save = viewer.window.dock_widgets["lnq-napari"].widgets["Save"]
    save.folder.setText(str(tmp_path / "labels"))
    nodes = viewer.layers["nodes"]
    nodes.data_setitem((np.array([nodes.data.shape[0] // 2]), np.array([3]), np.array([3])), 7)
    return viewer, save


def _autosaved(save) -> str:
    """The status once an autosave of the case has ended."""
    session = save.tracker.session
    session.autosaver.schedule()
    assert session.autosaver.flush() is not None
    return save.status.text()


def _raising(error: Exception):
    def raised(*args, **kwargs):
        raise error

    return raised


def _refused_in_the_worker(monkeypatch) -> None:
    monkeypatch.setattr(api, "save_labels", _raising(LNQError("the disk is full")))


def test_a_refusal_before_the_worker_starts_is_kept_through_an_autosave_and_goes_with_another_case(
        edited, monkeypatch, save_and_wait, phantom_files):
    from lnq_napari.plugin._case import add_case, read_case

    viewer, save = edited
    with monkeypatch.context() as patch:  # labels Save cannot take (off the CT's grid): refused in request()
        patch.setattr(save.tracker.session, "labels_volume", _raising(LNQError("off grid")))
        assert save_and_wait(save) is None
    said = _autosaved(save)
    assert said.startswith("not saved: off grid\n") and "autosaved to" in said
    viewer.layers.clear()
    add_case(viewer, *read_case(phantom_files.ct, phantom_files.seg))
    assert save.tracker.session is not None and "off grid" not in save.status.text()
    assert "off grid" not in _autosaved(save)


def test_a_refusal_goes_with_the_next_save_that_succeeds(edited, monkeypatch, save_and_wait):
    viewer, save = edited
    with monkeypatch.context() as patch:
        _refused_in_the_worker(patch)
        assert save_and_wait(save) is None
    assert _autosaved(save).startswith("not saved: the disk is full\n")
    assert save_and_wait(save) is not None
    viewer.layers["nodes"].data_setitem((np.array([1]), np.array([4]), np.array([4])), 7)
    said = _autosaved(save)
    assert re.fullmatch(r"\d+ edits; autosaved to \S+", said), said


def test_three_refusals_show_one_line(edited, monkeypatch, save_and_wait):
    _, save = edited
    _refused_in_the_worker(monkeypatch)
    for _ in range(3):
        assert save_and_wait(save) is None
    assert _autosaved(save).count("the disk is full") == 1


@pytest.mark.parametrize("problem", ["unplaced", "no DICOM SEG", "warning"])
def test_a_saved_version_s_note_is_kept_through_an_autosave(edited, monkeypatch, save_and_wait, problem):
    """The version is saved, but part of it was not written or it needs a look: said until the next Save."""
    _, save = edited
    if problem == "unplaced":  # the CT has no grid of its own
        monkeypatch.setattr(save_module, "unplaced_note", lambda layer: "note: the CT has no grid")
        expected = "note: the CT has no grid"
    elif problem == "no DICOM SEG":  # the CT is a DICOM series and its SEG could not be written
        monkeypatch.setattr(save_module, "is_dicom_path", lambda path: True)
        monkeypatch.setattr(api, "export_dicom_seg", _raising(OSError("full")))
        expected = "no DICOM SEG: OSError: full"
    else:  # a warning heard while saving
        real = api.save_labels

        def warned(*args, **kwargs):
            warnings.warn("a warning to read", UserWarning, stacklevel=1)
            return real(*args, **kwargs)

        monkeypatch.setattr(api, "save_labels", warned)
        expected = "note: a warning to read"
    assert save_and_wait(save) is not None
    said = _autosaved(save)
    assert said.startswith("saved v") and expected in said and "autosaved to" in said, said
