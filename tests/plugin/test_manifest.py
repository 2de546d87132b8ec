"""The npe2 manifest is valid and napari discovers the plugin (no display needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lnq_napari

MANIFEST = Path(lnq_napari.__file__).parent / "napari.yaml"


def test_npe2_validate_passes():
    for target in (str(MANIFEST), "lnq-napari"):
        result = subprocess.run(
            [sys.executable, "-m", "npe2", "validate", target], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_manifest_contributions_resolve():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "lnq-napari"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Panel", "Segment", "Correct", "Nodes", "Save", "Review", "Compare"}
    assert [s.display_name for s in manifest.contributions.sample_data] == ["Phantom case"]
    for command in manifest.contributions.commands:
        assert callable(_resolve(command.python_name))
    root = Path(__file__).parents[2] / "napari.yaml"
    assert root.exists() and PluginManifest.from_file(root).name == "lnq-napari"


def _resolve(python_name: str):
    import importlib

    module, _, attr = python_name.partition(":")
    return getattr(importlib.import_module(module), attr)
