"""The action journal: an append-only JSON-lines file that tolerates a line torn by a crash."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lnq_napari.workspace.files import now


class Journal:
    """``journal.jsonl``: one JSON object per action, appended, flushed and fsynced."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, action: str, **fields) -> dict:
        """Append one action (with the time); returns the entry."""
        entry = {"time": now(), "action": action, **fields}
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            prefix = "\n" if self._ends_torn() else ""  # a crash tore the last line: start a fresh one
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(prefix + line)
                handle.flush()
                os.fsync(handle.fileno())
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
