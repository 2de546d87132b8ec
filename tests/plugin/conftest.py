"""GUI test fixtures: a small phantom case on disk and a stand-in predictor (a test double).

GUI tests need a display (CI runs them under Xvfb; pytest-xvfb starts one when it is installed).
Without any display they are skipped with a reason instead of crashing in Qt.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest

from lnq_napari.io.volume import Volume
from lnq_napari.model.config import ModelConfig


def has_display() -> bool:
    """A display Qt can use (checked late: pytest-xvfb sets DISPLAY when pytest starts)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin",
        "win32",
    )


def pytest_collection_modifyitems(config, items):
    if has_display():
        return
    skip = pytest.mark.skip(reason="no display: GUI tests need X (run under Xvfb, e.g. `xvfb-run pytest`)")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@dataclass
class PhantomFiles:
    ct: object
    seg: object
    case: object


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> PhantomFiles:
    """A small phantom case written in LNQ layout: ``<case>-ct.nrrd`` and partial ``<case>-seg.nrrd``."""
    from lnq_napari.io.readers import write_volume
    from lnq_napari.phantom import make_case

    case = make_case(3, shape=(36, 160, 160), spacing=(2.0, 2.0, 4.0), case_id="lnq2023-train-0003")
    folder = tmp_path_factory.mktemp("case")
    ct = write_volume(folder / f"{case.case_id}-ct.nrrd", case.ct)
    seg = write_volume(folder / f"{case.case_id}-seg.nrrd", case.partial)
    return PhantomFiles(ct, seg, case)


@dataclass
class StandInPrediction:
    probabilities: Volume
    mask: Volume
    model_version: str


class StandInPredictor:
    """TEST DOUBLE with the interface of ``lnq_napari.inference.Predictor.predict(ct, progress, cancel)``.

    Its "prediction" is built from the phantom truth: all target nodes at probability 0.9, except
    ``missed`` (left out entirely: a node to click), ``unsure`` (probability 0.35: a suggestion) and
    ``halved`` (only half of it at 0.9: an incomplete outline).
    ``delay`` seconds of sleeping in small steps exercise progress, cancel and the worker thread.
    """

    def __init__(self, case, missed: int, unsure: int, delay: float = 0.0, halved: int = 0) -> None:
        self.case, self.missed, self.unsure, self.delay = case, missed, unsure, delay
        self.halved = halved  # a node outlined only on its low-x half (an incomplete outline)
        self.calls = 0
        self.config = ModelConfig()  # post-processing settings as the bundled model's (max_mean_hu 100)

    def predict(self, ct, progress=None, cancel=None):
        from lnq_napari.errors import Cancelled

        self.calls += 1
        steps = 20
        for i in range(steps):
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            if progress is not None:
                progress(i / steps, f"stand-in step {i + 1}/{steps}")
            time.sleep(self.delay / steps)
        inst = np.asarray(self.case.instances.array)
        prob = np.where(inst > 0, 0.9, 0.0).astype(np.float32)
        prob[inst == self.missed] = 0.0
        prob[inst == self.unsure] = 0.35
        if self.halved:
            own = inst == self.halved
            cut = int(np.median(np.nonzero(own)[2]))
            prob[:, :, cut:][own[:, :, cut:]] = 0.0
        mask = (prob >= 0.5).astype(np.uint8)
        return StandInPrediction(ct.with_array(prob), ct.with_array(mask), "stand-in-0")


def target_nodes(case) -> list[dict]:
    """Target nodes of a fair size that touch no other node (the phantom may change; tests must not)."""
    from scipy import ndimage

    inst = np.asarray(case.instances.array)
    out = []
    for n in case.nodes:
        own = inst == n["id"]
        if not n["target"] or own.sum() <= 50:
            continue
        ring = ndimage.binary_dilation(own, iterations=3) & ~own
        if not (inst[ring] > 0).any():
            out.append(n)
    return out


@pytest.fixture
def stand_in(phantom_files):
    nodes = target_nodes(phantom_files.case)
    missed = next(n for n in nodes if not n["labelled"])
    unsure = next(n for n in nodes if n["id"] != missed["id"])
    return StandInPredictor(phantom_files.case, missed=missed["id"], unsure=unsure["id"])


@pytest.fixture
def autosave_dir(tmp_path, monkeypatch):
    folder = tmp_path / "autosave"
    monkeypatch.setenv("LNQ_NAPARI_AUTOSAVE_DIR", str(folder))
    return folder


@pytest.fixture
def halved_stand_in(phantom_files):
    """A stand-in prediction that outlines only half of the largest isolated target node."""
    inst = np.asarray(phantom_files.case.instances.array)
    nodes = sorted(target_nodes(phantom_files.case), key=lambda n: -int((inst == n["id"]).sum()))
    halved, unsure = nodes[0]["id"], nodes[1]["id"]
    return StandInPredictor(phantom_files.case, missed=0, unsure=unsure, halved=halved)


@pytest.fixture
def save_and_wait(qtbot):
    """``save_and_wait(widget)``: press a Save widget's Save and wait for it to end (it writes in a worker
    thread); returns the saved file, or None when nothing was saved."""
    def save(widget, timeout_ms: int = 60000):
        with qtbot.waitSignal(widget.saved, timeout=timeout_ms) as blocker:
            widget.save()
        return blocker.args[0]

    return save


@pytest.fixture
def crash():
    """``crash(session)``: what a crash leaves of a viewer session's autosave: its files as last written,
    its locks gone with its process (no more writes)."""
    def crashed(session) -> None:
        session.autosaver.stop_writing()
        session.autosaver.files.close(remove=False)

    return crashed
