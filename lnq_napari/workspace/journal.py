"""The action journal: an append-only JSON-lines file that tolerates a line torn by a crash.

Each line is appended whole (one ``write`` of an ``O_APPEND`` descriptor) under the workspace lock, so
lines of several processes never interleave.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lnq_napari.io.json_text import strict_json
from lnq_napari.workspace.files import now
from lnq_napari.workspace.lock import WorkspaceLock

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)


class Journal:
    """``journal.jsonl``: one JSON object per action, appended, flushed and fsynced."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = WorkspaceLock(self.path.parent)

    def append(self, action: str, **fields) -> dict:
        """Append one action (with the time); returns the entry."""
        entry = {"time": now(), "action": action, **fields}
        line = (strict_json(entry, indent=None) + "\n").encode("utf-8")
        with self._lock:
            prefix = b"\n" if self._ends_torn() else b""  # a crash tore the last line: start a fresh one
            fd = os.open(self.path, _APPEND, 0o666)
            try:
                os.write(fd, prefix + line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def entries(self, action: str | None = None) -> list[dict]:
        """Entries, oldest first (optionally of one action). Torn lines are skipped."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (action is None or entry.get("action") == action):
                entries.append(entry)
        return entries

    def _ends_torn(self) -> bool:
        if not self.path.exists() or not self.path.stat().st_size:
            return False
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
