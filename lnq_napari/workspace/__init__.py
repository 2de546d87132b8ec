"""A review workspace: cases, versioned labels with provenance, an action journal and model versions.

:class:`Workspace` is the facade; each job has its own module: ``cases`` (workspace.json), ``labels``
(:class:`LabelStore`, also used without a workspace), ``journal``, ``save_lines`` (each save's journal
line, kept through a kill), ``registry`` (:class:`ModelRegistry`),
``cache``, ``autosave`` (the rolling crash-autosave file), ``recovery`` (the unsaved edits an autosave
holds), ``repair`` (a version's provenance rebuilt from its label file's header) and ``review_stats`` (a
case's review figures in the journal).
"""

from lnq_napari.workspace.cases import FORMAT, FORMAT_VERSION, CaseTable, TimePoint
from lnq_napari.workspace.journal import Journal
from lnq_napari.workspace.labels import LABELS_FOLDER, SOURCES, LabelStore, SavedLabels
from lnq_napari.workspace.registry import ModelRegistry
from lnq_napari.workspace.repair import Repair
from lnq_napari.workspace.workspace import Workspace

__all__ = [
    "FORMAT", "FORMAT_VERSION", "LABELS_FOLDER", "SOURCES",
    "CaseTable", "Journal", "LabelStore", "ModelRegistry", "Repair", "SavedLabels", "TimePoint", "Workspace",
]
