"""The workspace cache: derived JSON data (review scores per model version), safe to delete."""

from __future__ import annotations

import json
from pathlib import Path

from lnq_napari.io.atomic import atomic_write_text


class Cache:
    """Named JSON files in one folder; a missing or unreadable file reads as empty."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str) -> dict:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return {}

    def write(self, name: str, data: dict) -> None:
        atomic_write_text(self.path(name), json.dumps(data, indent=1, default=float))
