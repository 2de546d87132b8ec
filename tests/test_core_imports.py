"""The core never imports GUI libraries, and ``import lnq_napari`` stays cheap (no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lnq_napari

PACKAGE = Path(lnq_napari.__file__).parent
GUI = ["napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui"]


def core_modules() -> list[str]:
    """Every module of the package outside ``lnq_napari.plugin`` (found on disk, nothing imported)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("plugin",) or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run_python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_modules_are_found():
    modules = core_modules()
    assert "lnq_napari" in modules and "lnq_napari.io.readers" in modules
    assert not any(m.startswith("lnq_napari.plugin") for m in modules)


def test_core_imports_no_gui():
    code = f"""
import importlib, json, sys
gui = {GUI!r}
offenders = {{}}
for name in {core_modules()!r}:
    importlib.import_module(name)
    loaded = [g for g in gui if g in sys.modules]
    if loaded:
        offenders[name] = loaded
        break
print(json.dumps(offenders))
"""
    assert run_python(code) == {}, "a core module imports a GUI library (first offender shown)"


def test_import_package_imports_no_torch_or_gui():
    code = f"""
import json, sys
import lnq_napari
print(json.dumps(sorted(m for m in ["torch", "monai", *{GUI!r}] if m in sys.modules)))
"""
    assert run_python(code) == []
