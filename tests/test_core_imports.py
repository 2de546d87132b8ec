"""The dependency rules hold: the contracts in pyproject.toml (checked by import-linter, lazy imports
included), no GUI library loaded by the core at run time, and ``import lnq_napari`` stays cheap (no torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.api import read_configuration

import lnq_napari

PACKAGE = Path(lnq_napari.__file__).parent
REPO = Path(__file__).resolve().parents[1]
GUI = ["napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy"]
FRONT_ENDS = {"lnq_napari.plugin", "lnq_napari.cli", "lnq_napari.launch"}


def core_modules() -> list[str]:
    """Every module of the package outside ``lnq_napari.plugin`` (found on disk, nothing imported)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("plugin",) or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def top_level_modules() -> set[str]:
    """``lnq_napari.<name>`` for every module and subpackage directly in the package."""
    names = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return {f"lnq_napari.{n}" for n in names - {"__init__", "__main__"}}


def contract(contract_id: str) -> dict:
    config = read_configuration(str(REPO / "pyproject.toml"))
    (found,) = [c for c in config["contracts_options"] if c.get("id") == contract_id]
    return found


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


def test_import_contracts_hold():
    """``lint-imports`` keeps every contract of pyproject.toml (its report names each broken import)."""
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(result.stdout[result.stdout.find("Contracts:"):] + result.stderr[-2000:], pytrace=False)


def test_core_contract_names_every_core_module():
    """A new top-level module is covered by the no-GUI contract, unless it is a front end."""
    sources = set(contract("core-no-gui")["source_modules"])
    assert sources == top_level_modules() - FRONT_ENDS
