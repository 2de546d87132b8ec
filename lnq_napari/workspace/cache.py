"""The workspace cache: derived JSON data (review scores per model version), safe to delete.

Files are replaced atomically; :meth:`Cache.update` merges entries under the workspace lock, so two
processes scoring at once keep each other's entries.
"""

from __future__ import annotations

import json
from pathlib import Path

from lnq_napari.io.atomic import atomic_write_text
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
            atomic_write_text(self.path(name), json.dumps(data, indent=1, default=float))

    def update(self, name: str, entries: dict) -> dict:
        """Merge ``entries`` into the file ``name`` (read, update, write under the lock); returns it."""
        with self._lock:
            data = self.read(name)
            data.update(entries)
            self.write(name, data)
        return data
