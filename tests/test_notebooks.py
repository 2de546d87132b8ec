"""The notebooks run top to bottom in a fresh kernel (no display) and show their key results.

Each notebook is executed with nbclient in a temporary working folder, with ``LNQ_NOTEBOOK_TEST=1``
(no napari) and ``TMPDIR`` pointing there, so nothing is written into the repository. The executions
are marked ``slow`` (about a minute or two each on a 2-core CPU): ``pytest -m "not slow"`` skips them.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

from lnq_napari.model import bundled_model_path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NUMBER = r"(nan|-?\d+(?:\.\d+)?)"


def _needs_bundled_model() -> None:
    """Fail (not skip) when the bundled model is missing: the notebooks promise it."""
    config = bundled_model_path() / "config.json"
    assert config.is_file(), f"the bundled model is missing ({config}): the notebooks need it"


def run_notebook(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Execute ``notebooks/<name>`` in ``tmp_path``; returns the executed notebook (errors raise)."""
    monkeypatch.setenv("LNQ_NOTEBOOK_TEST", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile folders land here
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def text_of(nb) -> str:
    """All printed text and plain-text results of the executed notebook."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def count_images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def numbers_after(label: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(re.escape(label) + r"\s+" + NUMBER, text)]


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_are_clean(name):
    """Notebooks are committed without outputs or execution counts, for the python3 kernel."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear its outputs, then commit"


@pytest.mark.slow
def test_quickstart_notebook(tmp_path, monkeypatch):
    _needs_bundled_model()
    nb = run_notebook("01_quickstart.ipynb", tmp_path, monkeypatch)
    text = text_of(nb)
    dice = numbers_after("Dice", text)
    assert len(dice) == 1 and 0.0 <= dice[0] <= 1.0, text
    assert re.search(r"\d+ nodes, \d+ with short axis >= 10 mm", text), text
    assert re.search(r"cut by the image edge: \d+ of \d+ nodes", text), text  # the table has the column
    assert "no display: napari not opened" in text
    assert count_images(nb) >= 1
    assert any(tmp_path.rglob("overlay.png")) and any(tmp_path.rglob("nodes.csv"))
    assert any(tmp_path.rglob("prediction.seg.nrrd"))


@pytest.mark.slow
def test_active_learning_notebook(tmp_path, monkeypatch):
    _needs_bundled_model()
    nb = run_notebook("02_active_learning.ipynb", tmp_path, monkeypatch)
    text = text_of(nb)
    rounds = re.findall(r"round (\d+): Dice " + NUMBER + r", node recall " + NUMBER, text)
    assert [int(r[0]) for r in rounds] == [0, 1], text
    for _, dice, recall in rounds:
        assert 0.0 <= float(dice) <= 1.0
        assert recall == "nan" or 0.0 <= float(recall) <= 1.0
    assert re.search(r"reviewed \d+ case", text), text
    assert "forgetting check on 1 default-site phantom " in text, text  # the tests' CHECK_CASES
    assert count_images(nb) >= 1
    assert any(tmp_path.rglob("journal.jsonl"))


@pytest.mark.slow
def test_train_notebook(tmp_path, monkeypatch):
    nb = run_notebook("03_train_on_lnq.ipynb", tmp_path, monkeypatch)
    text = text_of(nb)
    assert list(tmp_path.rglob("weights.safetensors")), "no model was written"
    assert list(tmp_path.rglob("val-scores.json")), "lnq-napari evaluate wrote no scores"
    assert re.search(r"model version: \S+ - 4 iterations", text), text  # the tests' ITERATIONS
    dice = numbers_after("Dice", text)
    assert dice and all(0.0 <= d <= 1.0 for d in dice), text
    assert "lnq-napari train --data" in "".join(c.source for c in nb.cells)
