"""The journal line of every label save, kept through a kill between the version's commit and its line.

A version is committed by its provenance file; its journal line comes after. Both are written under the
workspace lock, after a note naming the version (:data:`NOTE_FILE`), which goes once the line is in.
A note found later (the lock taken, so its writer is dead) names a save that may lack its line: the
version, if committed and not journaled, gets its line then, from its provenance, marked ``recovered``
with the time it was ``saved``; a reader that finds the lock held leaves that to a later writer, without
waiting. A live save whose line cannot be written (a full disk) is saved all the same: a warning says so,
and the note keeps the line for later. The label file itself is still written without the lock.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

from lnq_napari.errors import LNQError
from lnq_napari.io.atomic import atomic_write_text
from lnq_napari.workspace.journal import Journal
from lnq_napari.workspace.labels import LabelStore
from lnq_napari.workspace.lock import WorkspaceLock

NOTE_FILE = ".save-in-flight.json"  # in the workspace folder: the save whose line may be missing
RECOVERED = "the save was interrupted before its journal line; written from the version's provenance"


def _save_entry(prov: dict) -> tuple[str, dict]:
    """The journal action and fields of a saved label version, from its provenance."""
    action = "predict" if prov["source"] == "prediction" else prov["source"]
    return action, {"case": prov["case"], "version": prov["version"],
                    "model_version": prov.get("model_version"), "edits": int(prov.get("edits") or 0),
                    "parent": prov.get("parent")}


class SaveLines:
    """Journal lines of the label saves of the workspace ``root`` (labels under ``labels``)."""

    def __init__(self, root: str | Path, labels: str | Path, journal: Journal) -> None:
        self.note = Path(root) / NOTE_FILE
        self._labels = Path(labels)
        self._journal = journal
        self._lock = WorkspaceLock(root)

    @contextlib.contextmanager
    def committing(self, prov: dict) -> Iterator[None]:
        """Around the commit of the label version ``prov`` describes (for
        :meth:`~lnq_napari.workspace.labels.LabelStore.add`): then its journal line (a warning, the
        version saved, when it cannot be written now). A line a killed save left missing is written
        first."""
        with self._lock:
            self.recover()
            atomic_write_text(self.note, json.dumps({"case": prov["case"], "version": prov["version"]}))
            try:
                yield
            finally:  # committed (even if a later step of the write failed): its line; else nothing
                try:
                    self._settle(recovered=False)
                except OSError as exc:  # only the line's write raises: the version is saved
                    warnings.warn(f"{prov['case']} saved as {prov['version']}, but its journal line could "
                                  f"not be written ({exc.strerror or exc}); it is written by the next save "
                                  "or opening of the workspace", UserWarning, stacklevel=3)

    def recover(self) -> None:
        """Write the journal line of a save killed between its commit and its line, unless another
        program holds the lock now (then a later writer does; nothing waits). Costs one file check when
        no save was cut short."""
        if not self.note.exists():
            return
        with self._lock.if_free() as held:  # a live saver holds it from its note to its line: a note
            if held:  # seen with the lock taken is a dead one's
                self._settle(recovered=True)

    def _settle(self, recovered: bool) -> None:
        """Journal the noted version when it is committed (and, for a dead saver's, not journaled yet),
        then remove the note."""
        try:
            note = json.loads(self.note.read_text(encoding="utf-8"))
            prov = LabelStore(self._labels, note["case"]).info(note["version"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, LNQError):  # a torn note, or never committed
            prov = None
        if prov is not None and not (recovered and self._journaled(prov)):
            action, fields = _save_entry(prov)
            marks = {"saved": prov.get("time"), "recovered": RECOVERED} if recovered else {}
            self._journal.append(action, **fields, **marks)
        self.note.unlink(missing_ok=True)

    def _journaled(self, prov: dict) -> bool:
        action, fields = _save_entry(prov)
        return any(e.get("case") == fields["case"] and e.get("version") == fields["version"]
                   for e in self._journal.entries(action))
