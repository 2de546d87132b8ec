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
    """The session's undo and redo stacks; a new step clears the redo stack, as napari's does."""

    def __init__(self) -> None:
        self.done: list[Step] = []
        self.undone: list[Step] = []

    def push(self, step: Step) -> None:
        self.done.append(step)
        self.undone.clear()

    def replace_since(self, depth: int, step: Step) -> None:
        """Fold the steps pushed after the stack was ``depth`` deep into ``step``."""
        del self.done[depth:]
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
