"""The model registry of a workspace: ``models/registry.json`` and one folder per model version.

Each entry: id (``m001``), path (relative to the workspace when inside it), parent, training cases,
metrics, created, active. At most one version is active: predictions and fine-tuning start from it,
and from the bundled model while none is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.model import resolve_model
from lnq_napari.workspace.files import now, sha256

REGISTRY_FILE = "registry.json"
MODEL_FILES = ("weights.safetensors", "config.json")
_MODEL_ID = re.compile(r"m\d+")


class ModelRegistry:
    """Model versions registered under ``folder`` (``<workspace>/models``) of the workspace ``root``."""

    def __init__(self, folder: str | Path, root: str | Path) -> None:
        self.folder = Path(folder)
        self.root = Path(root)

    @property
    def file(self) -> Path:
        return self.folder / REGISTRY_FILE

    def create(self) -> None:
        """Write an empty registry."""
        self._save({"versions": []})

    def entries(self) -> list[dict]:
        """Registered versions, oldest first."""
        return self._load()["versions"]

    def next_version(self) -> str:
        """One above every registered id and every ``m<N>`` folder."""
        numbers = [int(v["id"][1:]) for v in self.entries() if _MODEL_ID.fullmatch(v["id"])]
        if self.folder.is_dir():
            numbers += [int(p.name[1:]) for p in self.folder.iterdir() if _MODEL_ID.fullmatch(p.name)]
        return f"m{max(numbers, default=0) + 1:03d}"

    def register(
        self, path: str | Path, parent: str | None = None, training_cases: list[str] | None = None,
        metrics: dict | None = None, version: str | None = None, copy: bool = True, **fields,
    ) -> dict:
        """Add a model folder (copied to ``<folder>/<version>`` unless ``copy`` is False); returns its
        entry, not active."""
        src = Path(path)
        if not (src / "config.json").is_file():
            raise LNQError(f"{src} is not a model folder (no config.json); give a trained model folder")
        version = version or self.next_version()
        if any(v["id"] == version for v in self.entries()):
            raise LNQError(f"model version {version} is already registered; pick another id")
        dest = self._place(src, version, copy)
        entry = {"id": version, "path": self._relative(dest), "parent": parent,
                 "training_cases": list(training_cases or []), "metrics": metrics or {},
                 "created": now(), "active": False, **fields}
        registry = self._load()
        registry["versions"].append(entry)
        self._save(registry)
        return entry

    def info(self, version: str) -> dict:
        for entry in self.entries():
            if entry["id"] == version:
                return entry
        raise LNQError(f"model version {version!r} is not registered in {self.root}; see `models()`")

    def path(self, version: str) -> Path:
        path = Path(self.info(version)["path"])
        return path if path.is_absolute() else self.root / path

    def activate(self, version: str) -> None:
        """Make ``version`` the only active one; LNQError when it is not registered."""
        self.info(version)
        registry = self._load()
        for entry in registry["versions"]:
            entry["active"] = entry["id"] == version
        self._save(registry)

    def active(self) -> dict | None:
        """The active entry with an absolute ``path``, or None."""
        for entry in self.entries():
            if entry.get("active"):
                return {**entry, "path": str(self.path(entry["id"]))}
        return None

    def prediction_model(self) -> tuple[Path, str]:
        """``(model folder, version key)``: the active model, else the bundled one (key
        ``bundled-<hash of its files>``, so caches follow a new release)."""
        active = self.active()
        if active is not None:
            return Path(active["path"]), active["id"]
        path = Path(resolve_model(None))
        return path, bundled_key(path)

    def _place(self, src: Path, version: str, copy: bool) -> Path:
        dest = self.folder / version
        if src.resolve() == dest.resolve():
            return dest
        if not copy:
            return src.resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.folder))
        for name in MODEL_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, staging / name)
        os.replace(staging, dest)
        return dest

    def _relative(self, dest: Path) -> str:
        try:
            return str(dest.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(dest.resolve())

    def _load(self) -> dict:
        if not self.file.exists():
            return {"versions": []}
        return json.loads(self.file.read_text())

    def _save(self, registry: dict) -> None:
        atomic_write_text(self.file, json.dumps(registry, indent=1, default=str))


def bundled_key(path: Path) -> str:
    """``bundled-<first 10 hex of the hash of config.json and weights.safetensors>``."""
    digest = hashlib.sha256()
    for name in ("config.json", "weights.safetensors"):
        if (path / name).is_file():
            digest.update(sha256(path / name).encode())
    return f"bundled-{digest.hexdigest()[:10]}"
