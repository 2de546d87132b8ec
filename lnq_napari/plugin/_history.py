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


class EditHistory:
    """The session's undo and redo stacks; a new step clears the redo stack, as napari's does, and the
    oldest steps beyond ``limit`` are forgotten (napari keeps 100 labels steps: a deeper session history
    undid the rest of an accept whose paint napari had forgotten)."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = max(int(limit), 1)
        self.done: list[Step] = []
        self.undone: list[Step] = []

    def push(self, step: Step) -> None:
        self.done.append(step)
        del self.done[:-self.limit]
        self.undone.clear()

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
        return True

    def redo(self) -> bool:
        """Do the last undone step again; False when there is none."""
        if not self.undone:
            return False
        step = self.undone.pop()
        step.redo()
        self.done.append(step)
        return True
