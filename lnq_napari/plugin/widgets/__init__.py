"""Dock widgets: Segment, Correct, Nodes, Save, Review: thin QWidgets over the core and the session."""

from lnq_napari.plugin.widgets.compare import CompareWidget
from lnq_napari.plugin.widgets.correct import CorrectWidget
from lnq_napari.plugin.widgets.nodes import NodesWidget
from lnq_napari.plugin.widgets.review import ReviewWidget
from lnq_napari.plugin.widgets.save import SaveWidget
from lnq_napari.plugin.widgets.segment import SegmentWidget

__all__ = ["CompareWidget", "SegmentWidget", "CorrectWidget", "NodesWidget", "SaveWidget", "ReviewWidget"]
