"""notebooks/04_followup.ipynb runs top to bottom and finds the phantom's true matching."""

from __future__ import annotations

import re

import pytest
from test_notebooks import run_notebook


@pytest.mark.slow
def test_followup_notebook_runs_and_matches_the_truth(tmp_path, monkeypatch):
    nb = run_notebook("04_followup.ipynb", tmp_path, monkeypatch)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    match = re.search(r"matching right for (\d+) of (\d+) nodes", text)
    assert match and match.group(1) == match.group(2) and int(match.group(2)) > 0
    assert "RECIST 1.1: targets" in text and "registration: affine" in text
    assert "cut by the image edge: " in text  # what a cut node does to RECIST, or that none counts
