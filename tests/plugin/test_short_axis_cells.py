"""The tables show a short axis rounded down to 0.1 mm: "10.0" only beside the >= 10 mm flag, "15.0" only
for a node RECIST may take as a target; sorting keeps the measured value."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from lnq_napari.plugin.widgets import NodesWidget
from lnq_napari.plugin.widgets import compare as compare_widget
from lnq_napari.plugin.widgets.nodes import COLUMNS, SORT_ROLE
from lnq_napari.quantify import NodeRow

pytestmark = pytest.mark.gui


def _row(nid: int, short: float) -> NodeRow:
    return NodeRow(id=nid, voxels=10, volume_mm3=500.0, volume_cm3=0.5, centroid_mm=(0.0, 0.0, 0.0),
                   long_axis_mm=20.0, short_axis_mm=short, principal_axes_mm=(20.0, short, short),
                   ge_10mm=short >= 10.0 - 1e-6, side="right")


def test_a_9_96_mm_node_shows_9_9_and_no_not_10_0(make_napari_viewer):
    table = NodesWidget(make_napari_viewer())
    table._fill([_row(1, 9.96), _row(2, 10.0 - 2e-15), _row(3, 15.04)])
    short, flag = (next(c for c, (key, _, _) in enumerate(COLUMNS) if key == k) for k in ("short_axis_mm",
                                                                                            "ge_10mm"))
    table.table.sortItems(0, Qt.SortOrder.AscendingOrder)
    cells = [(table.table.item(r, short).text(), table.table.item(r, flag).text()) for r in range(3)]
    assert cells == [("9.9", "no"), ("10.0", "yes"), ("15.0", "yes")]
    assert table.table.item(0, short).data(SORT_ROLE) == 9.96  # full precision to sort by


def test_the_compare_table_rounds_short_axes_down_as_the_node_table_does():
    """14.96 mm is no target (RECIST: >= 15 mm), so the compare table must not show "15.0"."""
    formats = {key: fmt for _, key, fmt in compare_widget.COLUMNS}
    for key in ("short_axis_baseline_mm", "short_axis_followup_mm", "recist_followup_short_axis_mm"):
        fmt = formats[key]
        text = fmt if callable(fmt) else fmt.format
        assert text(14.96) == "14.9" and text(9.96) == "9.9" and text(15.0 - 2e-15) == "15.0"
