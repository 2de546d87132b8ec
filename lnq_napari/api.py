"""One function per job. The CLI, the napari widgets and the notebooks all call these.

Heavy imports (torch, napari) happen inside the functions, so importing this module stays cheap.
Each function's owner edits only that function's body.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


def make_phantom(out: str | Path, cases: int = 4, seed: int = 0, progress: Progress = None) -> list[Path]:
    """Write a synthetic LNQ-layout data set (ct, partial seg, full truth, nodes JSON) to ``out``."""
    raise NotImplementedError


def evaluate(pred: str | Path, gt: str | Path, json_path: str | Path | None = None) -> dict:
    """Challenge Dice/ASSD and node detection for files or folders paired by case id.

    Returns ``{"cases": [row per case], "summary": {...}}``.
    """
    raise NotImplementedError


def measure(seg: str | Path, ct: str | Path | None = None, csv_path: str | Path | None = None):
    """Node table of a label file. Returns ``(rows, summary)``."""
    raise NotImplementedError


def train(
    data: str | Path, out: str | Path, iterations: int = 2000, device: str = "auto", seed: int = 0,
    resume: bool = False, naive: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> Path:
    """Train a model on LNQ-layout data with partial labels; returns the model folder."""
    raise NotImplementedError


def predict(
    inputs: str | Path, out: str | Path, model: str | Path | None = None, device: str = "auto",
    probabilities: bool = False, progress: Progress = None, cancel: Cancel = None,
) -> list[Path]:
    """Predict node masks for a CT (file, DICOM folder or folder of CTs); returns written files."""
    raise NotImplementedError


def view(ct=None, seg=None, model=None, workspace=None, block: bool = False):
    """Open a napari viewer with the lnq-napari widgets docked; returns the viewer."""
    raise NotImplementedError


def demo(ct=None, out: str | Path = "lnq-demo", model=None, headless: bool = False, progress: Progress = None):
    """The main job: predict, measure, evaluate (phantom) and show or save pictures. Returns a report."""
    raise NotImplementedError


def init_workspace(path: str | Path, data: str | Path):
    """Create a review workspace over a data folder."""
    raise NotImplementedError


def next_cases(workspace: str | Path, n: int = 5, strategy: str = "uncertainty", progress: Progress = None):
    """The ``n`` cases most worth reviewing next, ranked."""
    raise NotImplementedError


def finetune(
    workspace: str | Path, iterations: int = 200, device: str = "auto", resume: bool = False,
    progress: Progress = None, cancel: Cancel = None,
) -> dict:
    """Fine-tune the active model on the workspace's corrections; returns what happened."""
    raise NotImplementedError
