"""The workspace cache: derived data (review scores per model version as JSON, per-CT masks such as
the known background of label states), safe to delete.

Files are replaced atomically; :meth:`Cache.update` merges entries under the workspace lock, so two
processes scoring at once keep each other's entries. A mask file is named by its content's key, so two
processes writing one write the same bytes.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from lnq_napari.io.atomic import atomic_write, atomic_write_text
from lnq_napari.io.json_text import strict_json
from lnq_napari.workspace.lock import WorkspaceLock


class Cache:
    """Named JSON files in one folder; a missing or unreadable file reads as empty."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock = WorkspaceLock(self.folder.parent)

    def path(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str) -> dict:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return {}

    def write(self, name: str, data: dict) -> None:
        with self._lock:
            atomic_write_text(self.path(name), strict_json(data, indent=1))

    def update(self, name: str, entries: dict) -> dict:
        """Merge ``entries`` into the file ``name`` (read, update, write under the lock); returns it."""
        with self._lock:
            data = self.read(name)
            data.update(entries)
            self.write(name, data)
        return data

    def read_mask(self, name: str) -> np.ndarray | None:
        """The bool mask saved as ``name`` (``.npz``), or None when missing or unreadable."""
        try:
            with np.load(self.path(name)) as data:
                shape = tuple(int(n) for n in data["shape"])
                return np.unpackbits(data["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None

    def write_mask(self, name: str, mask: np.ndarray) -> None:
        """Save the bool ``mask`` as ``name`` (``.npz``, bits packed), atomically."""
        mask = np.asarray(mask, bool)
        with atomic_write(self.path(name), suffix=".npz") as tmp:
            np.savez_compressed(tmp, bits=np.packbits(mask.ravel()), shape=np.array(mask.shape))
