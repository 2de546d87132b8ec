"""Undo and redo of a review session's actions, one step each: a paint of the node layer (a click or a
brush stroke, undone by napari's own labels history), a mark placed or taken back, a suggestion
accepted (its paint and its drop together) or rejected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One undoable action: what undoes it and what does it again."""

    undo: Callable[[], None]
    redo: Callable[[], None]


@dataclass(frozen=True)
class Position:
    """Where the steps stood at one moment (:meth:`EditHistory.position`): the last step done, and how
    many steps had been forgotten by then."""

    top: Step | None
    forgotten: int


class EditHistory:
    """The session's undo and redo stacks; a new step clears the redo stack, as napari's does, and the
    oldest steps beyond ``limit`` are forgotten (napari keeps 100 labels steps: a deeper session history
    undid the rest of an accept whose paint napari had forgotten)."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = max(int(limit), 1)
        self.done: list[Step] = []
        self.undone: list[Step] = []
        self._clean: Step | None = None  # the last step done when the labels were opened or saved
        self._clean_lost = False  # the saved state's step was forgotten: no undo reaches it again
        self._epoch = 0  # outside edits so far
        self._forgotten = 0  # steps forgotten so far (beyond ``limit``)
        self._stamps: dict[int, int] = {}  # id of each step kept -> the outside edits made before it
        self.stale = False  # the last undo or redo was of a step older than an outside edit

    def position(self) -> Position:
        """Where the steps stand now: what a Save that runs in the background while edits go on holds."""
        return Position(self.top(), self._forgotten)

    def mark_clean(self, at: Position | None = None) -> None:
        """The state at ``at`` (default: now) is the saved one (after a Save of that state). Steps done
        since it stay unsaved edits; undo or redo reaches it again while its step is kept."""
        at = at or self.position()
        if at.top is None:  # nothing done: reached by undoing all, unless a step was forgotten since
            reachable = at.forgotten == self._forgotten
        else:
            reachable = any(step is at.top for step in (*self.done, *self.undone))
        self._clean, self._clean_lost = at.top, not reachable

    def at_clean(self) -> bool:
        """Whether undo and redo have brought the steps back to the saved state."""
        return not self._clean_lost and self.top() is self._clean

    def push(self, step: Step) -> None:
        self.done.append(step)
        self._stamps[id(step)] = self._epoch
        forgotten = self.done[:-self.limit]
        del self.done[:-self.limit]
        self._forgotten += len(forgotten)
        if forgotten and (self._clean is None or any(s is self._clean for s in forgotten)):
            self._clean_lost = True  # the saved state lies at or before a forgotten step
        for gone in (*forgotten, *self.undone):
            self._stamps.pop(id(gone), None)
        self.undone.clear()

    def adopt(self, done: list[Step], undone: list[Step]) -> None:
        """Begin with steps taken before this history: ``done`` oldest first, ``undone`` the next to redo
        last. The state before ``done`` is the saved one; out of reach when the steps fill the history
        (older ones may have been forgotten)."""
        for step in done:
            self.push(step)
        self.undone.extend(undone)
        self._stamps.update((id(step), self._epoch) for step in undone)
        self._clean_lost = len(done) + len(undone) >= self.limit

    def outside_edit(self) -> None:
        """An edit the history does not hold was made (a mark moved with napari's Points tools): a step
        recorded before it may no longer take the state back to where it was."""
        self._epoch += 1

    def top(self) -> Step | None:
        """The last step done (None when there is none): what :meth:`replace_since` folds back to."""
        return self.done[-1] if self.done else None

    def replace_since(self, top: Step | None, step: Step) -> None:
        """Fold the steps pushed since ``top`` was the last one into ``step``."""
        while self.done and self.done[-1] is not top:
            self.done.pop()
        self.push(step)

    def undo(self) -> bool:
        """Undo the last step; False when there is none."""
        if not self.done:
            return False
        step = self.done.pop()
        step.undo()
        self.undone.append(step)
        self.stale = self._stamps.get(id(step), -1) < self._epoch
        return True

    def redo(self) -> bool:
        """Do the last undone step again; False when there is none."""
        if not self.undone:
            return False
        step = self.undone.pop()
        step.redo()
        self.done.append(step)
        self.stale = self._stamps.get(id(step), -1) < self._epoch
        return True
